//! Tests of the StatefulSet decisions: the next steps under each policy and strategy,
//! identities, claims and status.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::sync::{self, Rev, Step};

fn set(replicas: i32, extra: Value) -> StatefulSet {
    let mut spec = json!({ "replicas": replicas, "serviceName": "db",
        "selector": { "matchLabels": { "app": "db" } },
        "template": { "metadata": { "labels": { "app": "db" } }, "spec": { "containers": [{ "name": "c", "image": "v1" }] } },
        "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": { "accessModes": ["ReadWriteOnce"] } }] });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(
        json!({ "metadata": { "name": "db", "namespace": "ns", "uid": "u", "generation": 2 }, "spec": spec }),
    )
    .unwrap()
}

/// A pod of `db`: ordinal, revision, "ready" / "pending" / "failed" / "deleting".
fn pod(ordinal: i32, revision: &str, state: &str) -> Pod {
    let (phase, ready) = match state {
        "ready" | "deleting" => ("Running", "True"),
        "failed" => ("Failed", "False"),
        _ => ("Pending", "False"),
    };
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": { "name": format!("db-{ordinal}"), "labels": { "app": "db", "controller-revision-hash": revision } },
        "status": { "phase": phase, "conditions": [{ "type": "Ready", "status": ready }] }
    }))
    .unwrap();
    if state == "deleting" {
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
    }
    p
}

fn create(ordinal: i32, revision: Rev) -> Step {
    Step::Create { ordinal, revision }
}

fn delete(ordinal: i32, condemned: bool) -> Step {
    Step::Delete { name: format!("db-{ordinal}"), condemned }
}

#[test]
fn next_steps_follow_policy_and_strategy() {
    let parallel = json!({ "podManagementPolicy": "Parallel" });
    let partition =
        |p: i32| json!({ "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": p } } });
    let on_delete = json!({ "updateStrategy": { "type": "OnDelete" } });
    let two_at_a_time =
        json!({ "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 2 } } });
    let percent = |p: &str| {
        json!({ "podManagementPolicy": "Parallel",
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": p } } })
    };
    let cases: Vec<(&str, StatefulSet, Vec<Pod>, Vec<Step>)> = vec![
        ("ordered: one at a time", set(3, json!({})), vec![], vec![create(0, Rev::Update)]),
        ("ordered: waits for ready", set(3, json!({})), vec![pod(0, "new", "pending")], vec![]),
        ("ordered: next once ready", set(3, json!({})), vec![pod(0, "new", "ready")], vec![create(1, Rev::Update)]),
        (
            "parallel: all at once",
            set(3, parallel.clone()),
            vec![],
            vec![create(0, Rev::Update), create(1, Rev::Update), create(2, Rev::Update)],
        ),
        ("failed pods are replaced", set(1, json!({})), vec![pod(0, "new", "failed")], vec![delete(0, false)]),
        (
            "scale-down: highest first",
            set(1, json!({})),
            vec![pod(0, "new", "ready"), pod(1, "new", "ready"), pod(2, "new", "ready")],
            vec![delete(2, true)],
        ),
        (
            "scale-down waits for a terminating pod",
            set(1, json!({})),
            vec![pod(0, "new", "ready"), pod(1, "new", "ready"), pod(2, "new", "deleting")],
            vec![],
        ),
        (
            "parallel scale-down: all at once",
            set(1, parallel),
            vec![pod(0, "new", "ready"), pod(1, "new", "ready"), pod(2, "new", "ready")],
            vec![delete(2, true), delete(1, true)],
        ),
        (
            "rolling update: highest outdated first",
            set(3, json!({})),
            vec![pod(0, "old", "ready"), pod(1, "old", "ready"), pod(2, "new", "ready")],
            vec![delete(1, false)],
        ),
        (
            "rolling update waits for unhealthy pods",
            set(3, json!({})),
            vec![pod(0, "old", "ready"), pod(1, "new", "pending"), pod(2, "new", "ready")],
            vec![],
        ),
        (
            "partition keeps lower ordinals",
            set(3, partition(2)),
            vec![pod(0, "old", "ready"), pod(1, "old", "ready"), pod(2, "new", "ready")],
            vec![],
        ),
        (
            "below the partition, pods are made from the current revision",
            set(3, partition(2)),
            vec![],
            vec![create(0, Rev::Current)],
        ),
        (
            "maxUnavailable 2",
            set(3, two_at_a_time),
            vec![pod(0, "old", "ready"), pod(1, "old", "ready"), pod(2, "old", "ready")],
            vec![delete(2, false), delete(1, false)],
        ),
        ("on delete: nothing", set(2, on_delete), vec![pod(0, "old", "ready"), pod(1, "old", "ready")], vec![]),
        (
            "maxUnavailable 50% of 4 is 2",
            set(4, percent("50%")),
            (0..4).map(|o| pod(o, "old", "ready")).collect(),
            vec![delete(3, false), delete(2, false)],
        ),
        (
            "maxUnavailable 30% of 4 rounds down to 1",
            set(4, percent("30%")),
            (0..4).map(|o| pod(o, "old", "ready")).collect(),
            vec![delete(3, false)],
        ),
        (
            "maxUnavailable 10% of 4 is at least 1",
            set(4, percent("10%")),
            (0..4).map(|o| pod(o, "old", "ready")).collect(),
            vec![delete(3, false)],
        ),
    ];
    for (what, s, pods, expect) in cases {
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(sync::next_steps(&s, &refs, "new", Timestamp::now()), expect, "{what}");
    }
}

#[test]
fn identities_claims_and_status() {
    assert_eq!(sync::ordinal("db", "db-12"), Some(12));
    assert_eq!(sync::ordinal("db", "db-x"), None);
    assert_eq!(sync::ordinal("db", "dba-1"), None);
    assert_eq!(sync::ordinal("db", "db-"), None);
    let s = set(2, json!({ "ordinals": { "start": 3 } }));
    assert_eq!(sync::next_steps(&s, &[], "new", Timestamp::now()), [create(3, Rev::Update)]);
    let template = s.spec.as_ref().unwrap().template.clone();
    let owner = crate::pods::owner_ref("apps/v1", "StatefulSet", &s.metadata);
    let p = sync::pod_for(&s, 3, &template, "db-abc", owner);
    let labels = p.metadata.labels.clone().unwrap();
    assert_eq!(labels[sync::POD_NAME_LABEL], "db-3");
    assert_eq!(labels[sync::POD_INDEX_LABEL], "3");
    assert_eq!(labels["controller-revision-hash"], "db-abc");
    let spec = p.spec.unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("db-3"), Some("db")));
    assert_eq!(spec.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-db-3");
    let claims = sync::claims_for(&s, 3);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data-db-3"));
    assert!(claims[0].metadata.owner_references.is_none(), "Retain by default");
    let deleting =
        set(1, json!({ "persistentVolumeClaimRetentionPolicy": { "whenDeleted": "Delete", "whenScaled": "Delete" } }));
    assert_eq!(sync::claims_for(&deleting, 0)[0].metadata.owner_references.as_ref().unwrap()[0].kind, "StatefulSet");
    assert!(sync::delete_claims_on_scale_down(&deleting));

    let pods = [pod(0, "new", "ready"), pod(1, "old", "ready"), pod(2, "new", "pending")];
    let refs: Vec<&Pod> = pods.iter().collect();
    let st = sync::status(&set(3, json!({})), &refs, "old", "new", None, Timestamp::now());
    assert_eq!(
        (st.replicas, st.ready_replicas, st.current_replicas, st.updated_replicas),
        (3, Some(2), Some(1), Some(2))
    );
    assert_eq!(st.current_revision.as_deref(), Some("old"));
    let done = [pod(0, "new", "ready"), pod(1, "new", "ready")];
    let refs: Vec<&Pod> = done.iter().collect();
    let st = sync::status(&set(2, json!({})), &refs, "old", "new", None, Timestamp::now());
    assert_eq!(st.current_revision.as_deref(), Some("new"), "a finished update becomes current");
    assert_eq!(st.observed_generation, Some(2));
}

#[test]
fn claim_owners_follow_the_retention_policy() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let r = |kind: &str, name: &str, uid: &str| OwnerReference {
        api_version: "v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        ..OwnerReference::default()
    };
    let (set_ref, pod_ref, other) =
        (r("StatefulSet", "db", "s1"), r("Pod", "db-1", "p1"), r("ConfigMap", "keep", "c1"));
    let uids = |owners: &[OwnerReference]| owners.iter().map(|o| o.uid.clone()).collect::<Vec<_>>();
    assert_eq!(sync::claim_owners(&[], &set_ref, &pod_ref, false, false), None, "nothing wanted, nothing there");
    let both = sync::claim_owners(std::slice::from_ref(&other), &set_ref, &pod_ref, true, true).expect("added");
    assert_eq!(uids(&both), ["c1", "s1", "p1"], "added beside the other owner");
    assert_eq!(sync::claim_owners(&both, &set_ref, &pod_ref, true, true), None, "already right: no write");
    let retained = sync::claim_owners(&both, &set_ref, &pod_ref, false, false).expect("removed");
    assert_eq!(uids(&retained), ["c1"], "back to Retain: only the other owner stays");
    let set_only = sync::claim_owners(&both, &set_ref, &pod_ref, true, false).expect("pod removed");
    assert_eq!(uids(&set_only), ["c1", "s1"]);
    let stale = [r("Pod", "db-1", "earlier"), r("StatefulSet", "db", "earlier-set")];
    let renewed = sync::claim_owners(&stale, &set_ref, &pod_ref, true, true).expect("replaced");
    assert_eq!(uids(&renewed), ["s1", "p1"], "references to an earlier set or pod of the name are replaced");
}

#[test]
fn condemned_ordinals_are_those_beyond_the_replicas() {
    let s = set(2, json!({}));
    assert!(!sync::condemned(&s, 0) && !sync::condemned(&s, 1) && sync::condemned(&s, 2));
    let shifted = set(2, json!({ "ordinals": { "start": 5 } }));
    assert!(sync::condemned(&shifted, 4) && !sync::condemned(&shifted, 6) && sync::condemned(&shifted, 7));
}

#[test]
fn claims_of_a_set_are_known_by_their_names() {
    let s = set(2, json!({}));
    for (claim, ours) in [
        ("data-db-0", true),
        ("data-db-17", true),
        ("data-db-", false),
        ("data-db-x", false),
        ("data-dba-0", false),
        ("logs-db-0", false),
        ("data-db", false),
    ] {
        assert_eq!(sync::is_claim_of(&s, claim), ours, "{claim}");
    }
}
