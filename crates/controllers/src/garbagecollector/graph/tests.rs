//! The collector's decisions on small graphs.

use super::*;
use OwnerState::*;

fn check(owners: &[(&str, OwnerState)], finalizers: &[&str], has_dependents: bool, expect: Plan) {
    let owners: Vec<(String, OwnerState)> = owners.iter().map(|(u, s)| (u.to_string(), *s)).collect();
    let finalizers: Vec<String> = finalizers.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        plan_dependent(&owners, &finalizers, has_dependents),
        expect,
        "owners {owners:?}, finalizers {finalizers:?}"
    );
}

#[test]
fn dependent_plans() {
    check(&[], &[], false, Plan::Keep);
    check(&[("a", Solid)], &[], false, Plan::Keep);
    check(&[("a", Dangling)], &[], false, Plan::Delete(Propagation::Background));
    check(&[("a", Dangling)], &[ORPHAN], true, Plan::Delete(Propagation::Orphan));
    check(&[("a", Dangling)], &[FOREGROUND], true, Plan::Delete(Propagation::Foreground));
    check(&[("a", Solid), ("b", Dangling)], &[], false, Plan::RemoveReferences(vec!["b".into()]));
    check(&[("a", Solid), ("b", WaitingForDependents)], &[], false, Plan::RemoveReferences(vec!["b".into()]));
    check(&[("a", WaitingForDependents)], &[], false, Plan::Delete(Propagation::Background));
    check(&[("a", WaitingForDependents)], &[], true, Plan::Delete(Propagation::Foreground));
    check(&[("a", WaitingForDependents), ("b", Dangling)], &[], true, Plan::Delete(Propagation::Foreground));
}

fn res() -> Arc<Resource> {
    Arc::new(Resource {
        api: kube::discovery::ApiResource {
            group: "".into(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        },
        namespaced: true,
        verbs: vec![],
    })
}

fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
    Node {
        resource: res(),
        namespace: Some("ns".into()),
        name: uid.into(),
        uid: uid.into(),
        owners: owners
            .iter()
            .map(|(o, block)| OwnerReference {
                uid: o.to_string(),
                name: o.to_string(),
                kind: "ConfigMap".into(),
                api_version: "v1".into(),
                block_owner_deletion: Some(*block),
                controller: None,
            })
            .collect(),
        deleting: false,
        finalizers: vec![],
    }
}

#[test]
fn graph_tracks_dependents_and_what_to_revisit() {
    let mut g = Graph::default();
    assert_eq!(g.upsert(node("owner", &[])), vec!["owner".to_string()]);
    let touched = g.upsert(node("dep", &[("owner", true)]));
    assert!(touched.contains(&"dep".to_string()) && touched.contains(&"owner".to_string()));
    assert_eq!(g.dependents("owner").len(), 1);
    assert!(blocked("owner", &g.dependents("owner")));
    // The owner's removal revisits the dependent.
    assert!(g.remove("owner").contains(&"dep".to_string()));
    // The dependent still points at it (a dangling reference).
    assert_eq!(g.dependents("owner").len(), 1);
    // The dependent dropping the reference unlinks it.
    let touched = g.upsert(node("dep", &[]));
    assert!(touched.contains(&"owner".to_string()));
    assert!(g.dependents("owner").is_empty());
    let other = node("other", &[("x", false)]);
    g.upsert(other);
    assert!(!blocked("x", &g.dependents("x")));
    let seen: BTreeSet<String> = ["dep".to_string()].into();
    assert_eq!(g.stale("/v1/configmaps", &seen), vec!["other".to_string()]);
    g.remove_resource("/v1/configmaps");
    assert!(g.get("dep").is_none() && g.get("other").is_none());
}

#[test]
fn a_write_that_changes_no_reference_or_deletion_state_touches_nothing() {
    let mut g = Graph::default();
    g.upsert(node("dep", &[("owner", true)]));
    assert!(g.upsert(node("dep", &[("owner", true)])).is_empty(), "a status write");
    let mut renamed = node("dep", &[("owner", true)]);
    renamed.name = "dep-renamed".into();
    assert!(g.upsert(renamed).is_empty());
    assert_eq!(g.get("dep").unwrap().name, "dep-renamed", "the node is still replaced");
    let mut finalized = node("dep", &[("owner", true)]);
    finalized.finalizers = vec![FOREGROUND.to_string()];
    assert_eq!(g.upsert(finalized.clone()), vec!["dep".to_string(), "owner".to_string()]);
    finalized.deleting = true;
    assert_eq!(g.upsert(finalized), vec!["dep".to_string(), "owner".to_string()]);
    assert_eq!(g.upsert(node("dep", &[])), vec!["dep".to_string(), "owner".to_string()]);
}

#[test]
fn without_drops_only_the_named_references() {
    let n = node("d", &[("a", false), ("b", true)]);
    let left = without(&n.owners, &["a".to_string()]);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, "b");
}
