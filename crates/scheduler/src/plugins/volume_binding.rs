//! VolumeBinding: every PersistentVolumeClaim the pod mounts must exist; a bound claim's
//! PersistentVolume node affinity must match the node; an unbound claim keeps the pod
//! pending unless its StorageClass binds on first consumer (`WaitForFirstConsumer`), as
//! the volume controller binds Immediate claims first. An unbound WaitForFirstConsumer
//! claim needs, on the node, an Available volume that fits it (class, capacity, access and
//! volume modes, label selector, node affinity; one volume per claim of the pod), or a
//! class that provisions (not `kubernetes.io/no-provisioner`) whose allowedTopologies take
//! the node, as Kubernetes' `FindPodVolumes`. The volumes chosen for a placed pod are held
//! in the cache ([`chosen_volumes`], `Cache::assume_volumes`) until the
//! persistentvolume-binder binds the claims on the node the pod is bound to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection};
use crate::selectors::{Labels, NodeTerm, Selector, any_term_matches};

/// The VolumeBinding filter.
pub struct VolumeBinding;

/// Reason: a bound volume cannot be reached from the node.
pub const CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Reason: an Immediate claim is not bound yet.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// Reason: no free volume on the node fits a delayed-binding claim, and none can be provisioned there.
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";

/// The class of volumes that are never provisioned (local volumes made by an administrator).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

fn affinity_terms(pv: &PersistentVolume) -> Option<Vec<NodeTerm>> {
    let req = pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(req.node_selector_terms.iter().map(NodeTerm::new).collect())
}

const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
        .or(claim.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()))
        .map_or("", String::as_str)
}

fn volume_class(pv: &PersistentVolume) -> &str {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLASS_ANNOTATION))
        .or(pv.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()))
        .map_or("", String::as_str)
}

fn bytes(q: Option<&Quantity>) -> f64 {
    q.and_then(|q| berth_api::validation::parse_quantity(&q.0)).unwrap_or(0.0)
}

/// A free volume that could serve one claim, wherever its node affinity allows.
struct Candidate {
    name: String,
    size: f64,
    /// Pre-bound to the claim by its claimRef: taken before any other.
    ours: bool,
    /// `None`: reachable from every node.
    terms: Option<Vec<NodeTerm>>,
}

/// One unbound delayed-binding claim: the volumes that could serve it (pre-bound first,
/// then smallest first) and, when its class provisions, the class's allowed topologies.
struct Unbound {
    /// The claim, `namespace/name`.
    claim: String,
    candidates: Vec<Candidate>,
    /// `Some` when the class provisions: (label key → allowed values) per allowed-topology term.
    provisions: Option<Vec<BTreeMap<String, Vec<String>>>>,
}

/// What the filter checks per node.
struct Claims {
    /// Node affinity of each bound claim's volume.
    bound: Vec<Vec<NodeTerm>>,
    /// Unbound WaitForFirstConsumer claims.
    unbound: Vec<Unbound>,
}

/// The volumes that could serve `claim` (Kubernetes' `FindMatchingVolume` rules without the
/// node, which the filter checks).
fn candidates(claim: &PersistentVolumeClaim, namespace: &str, name: &str, cache: &Cache) -> Vec<Candidate> {
    let spec = claim.spec.as_ref();
    let wanted = bytes(spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()?.get("storage")));
    let class = claim_class(claim);
    let mode = spec.and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let modes: &[String] = spec.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    let selector = spec.and_then(|s| s.selector.as_ref()).map(|s| Selector::from_label_selector(Some(s)));
    let uid = claim.metadata.uid.as_deref();
    let claim_key = format!("{namespace}/{name}");
    let mut out: Vec<Candidate> = Vec::new();
    for pv in cache.volumes.values() {
        let Some(pv_spec) = pv.spec.as_ref() else {
            continue;
        };
        let pv_name = pv.metadata.name.as_deref().unwrap_or("");
        // Chosen for another claim by an earlier cycle, not yet bound by the binder.
        if cache.volume_held_for(pv_name).is_some_and(|held| held != claim_key) {
            continue;
        }
        let size = bytes(pv_spec.capacity.as_ref().and_then(|c| c.get("storage")));
        if size < wanted
            || pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") != mode
            || pv.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let ours = match &pv_spec.claim_ref {
            None => false,
            Some(r) => {
                let named = r.namespace.as_deref() == Some(namespace) && r.name.as_deref() == Some(name);
                let same_uid = r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == uid);
                if !(named && same_uid) {
                    continue;
                }
                true
            }
        };
        if !ours {
            let offered: &[String] = pv_spec.access_modes.as_deref().unwrap_or(&[]);
            let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
            let labels = pv.metadata.labels.clone().unwrap_or_default();
            if !available
                || volume_class(pv) != class
                || !modes.iter().all(|m| offered.contains(m))
                || selector.as_ref().is_some_and(|s| !s.matches(&labels))
            {
                continue;
            }
        }
        out.push(Candidate {
            name: pv.metadata.name.clone().unwrap_or_default(),
            size,
            ours,
            terms: affinity_terms(pv),
        });
    }
    // A volume pre-bound to the claim is the only one it may get.
    if out.iter().any(|c| c.ours) {
        out.retain(|c| c.ours);
    }
    out.sort_by(|a, b| b.ours.cmp(&a.ours).then(a.size.total_cmp(&b.size)).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The allowed topologies of a provisioning class (`None` when it does not provision).
fn provisions(class: &StorageClass) -> Option<Vec<BTreeMap<String, Vec<String>>>> {
    if class.provisioner == NO_PROVISIONER {
        return None;
    }
    Some(
        class
            .allowed_topologies
            .iter()
            .flatten()
            .map(|t| {
                t.match_label_expressions
                    .iter()
                    .flatten()
                    .map(|e| (e.key.clone(), e.values.clone()))
                    .collect::<BTreeMap<_, _>>()
            })
            .collect(),
    )
}

fn topology_allows(terms: &[BTreeMap<String, Vec<String>>], labels: &Labels) -> bool {
    terms.is_empty()
        || terms.iter().any(|t| t.iter().all(|(k, values)| labels.get(k).is_some_and(|v| values.contains(v))))
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache) -> Result<Prepared, Rejection> {
        let claims: Vec<&str> = pod
            .spec()
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()))
            .collect();
        if claims.is_empty() {
            return Ok(Prepared::skip());
        }
        let mut state = Claims { bound: Vec::new(), unbound: Vec::new() };
        for name in claims {
            let Some(pvc) = cache.claims.get(&format!("{}/{name}", pod.namespace)) else {
                return Err(Rejection::unresolvable(format!("persistentvolumeclaim \"{name}\" not found")));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Err(Rejection::unresolvable(format!("persistentvolumeclaim \"{name}\" is being deleted")));
            }
            let spec = pvc.spec.as_ref();
            match spec.and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()) {
                Some(volume) => {
                    if let Some(t) = cache.volumes.get(volume).and_then(|pv| affinity_terms(pv)) {
                        state.bound.push(t);
                    }
                }
                None => {
                    let class = cache.storage_classes.get(claim_class(pvc));
                    let delayed =
                        class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
                    let Some(class) = class.filter(|_| delayed) else {
                        return Err(Rejection::unresolvable(UNBOUND_IMMEDIATE));
                    };
                    let candidates = candidates(pvc, &pod.namespace, name, cache);
                    let provisions = provisions(class);
                    // A provisioning class that takes every node, with no volume to prefer: nothing to check.
                    if provisions.as_ref().is_some_and(|t| t.is_empty()) && candidates.is_empty() {
                        continue;
                    }
                    state.unbound.push(Unbound { claim: format!("{}/{name}", pod.namespace), candidates, provisions });
                }
            }
        }
        Ok(if state.bound.is_empty() && state.unbound.is_empty() { Prepared::skip() } else { Prepared::with(state) })
    }

    fn filter(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        match prepared.get::<Claims>() {
            Some(state) => choose(state, node).map(drop),
            None => Ok(()),
        }
    }
}

/// The free volume each unbound delayed-binding claim takes on `node` (claim, volume), or
/// why the node does not do.
fn choose<'a>(state: &'a Claims, node: &NodeInfo) -> Result<Vec<(&'a str, &'a str)>, Rejection> {
    if !state.bound.iter().all(|terms| any_term_matches(terms, &node.name, &node.labels)) {
        return Err(Rejection::unresolvable(CONFLICT));
    }
    let mut chosen: Vec<(&str, &str)> = Vec::new();
    for claim in &state.unbound {
        let found = claim.candidates.iter().find(|c| {
            !chosen.iter().any(|(_, v)| *v == c.name)
                && c.terms.as_ref().is_none_or(|t| any_term_matches(t, &node.name, &node.labels))
        });
        match found {
            Some(c) => chosen.push((claim.claim.as_str(), c.name.as_str())),
            None if claim.provisions.as_ref().is_some_and(|t| topology_allows(t, &node.labels)) => {}
            None => return Err(Rejection::unresolvable(BIND_CONFLICT)),
        }
    }
    Ok(chosen)
}

/// The free volumes the pod's unbound WaitForFirstConsumer claims take on `node`, as
/// (volume, claim `namespace/name`): what the scheduler holds for them once the pod is
/// placed there, until the binder binds them (Kubernetes' `AssumePodVolumes` at Reserve),
/// so that a second pod is not placed on the strength of the same volume.
pub fn chosen_volumes(pod: &PodInfo, cache: &Cache, node: &str) -> Vec<(String, String)> {
    let Some(node) = cache.node(node) else {
        return Vec::new();
    };
    let Ok(prepared) = VolumeBinding.pre_filter(pod, cache) else {
        return Vec::new();
    };
    let Some(state) = prepared.get::<Claims>() else {
        return Vec::new();
    };
    choose(state, node)
        .unwrap_or_default()
        .into_iter()
        .map(|(claim, volume)| (volume.to_string(), claim.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache_of, node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn run(cache: &Cache, claim: &str) -> Result<Vec<String>, String> {
        let p = pod(json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}));
        let prepared = VolumeBinding.pre_filter(&p, cache).map_err(|r| r.reasons.join(", "))?;
        let mut names: Vec<String> = cache
            .nodes()
            .iter()
            .filter(|n| prepared.skip || VolumeBinding.filter(&p, &prepared, n).is_ok())
            .map(|n| n.name.clone())
            .collect();
        names.sort();
        Ok(names)
    }

    #[test]
    fn claims_and_volume_affinity() {
        let mut cache = cache_of(
            vec![node("a", json!({"labels": {"zone": "z1"}})), node("b", json!({"labels": {"zone": "z2"}}))],
            vec![],
        );
        let pvc = |name: &str, spec: serde_json::Value| {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
                    .unwrap(),
            )
        };
        cache.claims.insert("default/bound".into(), pvc("bound", json!({"volumeName": "pv1"})));
        cache.claims.insert("default/late".into(), pvc("late", json!({"storageClassName": "wffc"})));
        cache.claims.insert("default/now".into(), pvc("now", json!({"storageClassName": "imm"})));
        cache.volumes.insert(
            "pv1".into(),
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}]}}}}),
                )
                .unwrap(),
            ),
        );
        cache.storage_classes.insert(
            "wffc".into(),
            Arc::new(serde_json::from_value(json!({"metadata": {"name": "wffc"}, "provisioner": "x", "volumeBindingMode": "WaitForFirstConsumer"})).unwrap()),
        );
        assert_eq!(run(&cache, "bound"), Ok(vec!["b".to_string()]));
        assert_eq!(run(&cache, "late"), Ok(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(run(&cache, "now"), Err(UNBOUND_IMMEDIATE.to_string()));
        assert_eq!(run(&cache, "missing"), Err("persistentvolumeclaim \"missing\" not found".to_string()));
    }

    fn pv(name: &str, size: &str, node: &str, extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name}, "spec": {"storageClassName": "local",
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/x"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}});
        for (k, val) in extra.as_object().unwrap() {
            for (f, x) in val.as_object().unwrap() {
                v[k][f] = x.clone();
            }
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn claim(name: &str, class: &str, size: &str) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": size}}}}),
            )
            .unwrap(),
        )
    }

    fn class(name: &str, provisioner: &str, extra: serde_json::Value) -> Arc<StorageClass> {
        let mut v = json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": "WaitForFirstConsumer"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    /// Nodes the pod mounting `claims` may go to, or the reason per rejected node.
    fn place(cache: &Cache, claims: &[&str]) -> (Vec<String>, Vec<String>) {
        let volumes: Vec<_> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let p = pod(json!({"volumes": volumes}));
        let prepared = VolumeBinding.pre_filter(&p, cache).expect("pre-filter");
        let (mut ok, mut why) = (Vec::new(), Vec::new());
        for n in cache.nodes() {
            match VolumeBinding.filter(&p, &prepared, n) {
                Ok(()) => ok.push(n.name.clone()),
                Err(r) => why.push(format!("{}: {}", n.name, r.reasons.join(", "))),
            }
        }
        ok.sort();
        why.sort();
        (ok, why)
    }

    #[test]
    fn wait_for_first_consumer_claims_need_a_local_volume_on_the_node() {
        let nodes = vec![
            node("a", json!({"labels": {"zone": "z1"}})),
            node("b", json!({"labels": {"zone": "z2"}})),
            node("c", json!({})),
        ];
        let mut cache = cache_of(nodes, vec![]);
        cache.storage_classes.insert("local".into(), class("local", NO_PROVISIONER, json!({})));
        cache.storage_classes.insert("local-path".into(), class("local-path", "berth.io/local-path", json!({})));
        cache.storage_classes.insert(
            "zoned".into(),
            class(
                "zoned",
                "example.com/csi",
                json!({"allowedTopologies": [{"matchLabelExpressions": [
                {"key": "zone", "values": ["z2"]}]}]}),
            ),
        );
        cache.volumes.insert("pv-a".into(), pv("pv-a", "10Gi", "a", json!({})));
        cache.volumes.insert("pv-a2".into(), pv("pv-a2", "2Gi", "a", json!({})));
        cache.volumes.insert("pv-b".into(), pv("pv-b", "1Gi", "b", json!({})));
        cache.volumes.insert("pv-c".into(), pv("pv-c", "10Gi", "c", json!({"status": {"phase": "Bound"}})));
        cache.volumes.insert(
            "pv-c-rwx".into(),
            pv("pv-c-rwx", "10Gi", "c", json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
        );
        for (name, class, size) in [
            ("data", "local", "5Gi"),
            ("data2", "local", "5Gi"),
            ("small", "local", "1Gi"),
            ("other", "local", "1Gi"),
            ("dynamic", "local-path", "5Gi"),
            ("zoned", "zoned", "5Gi"),
        ] {
            cache.claims.insert(format!("default/{name}"), claim(name, class, size));
        }
        // Only a has a free volume big enough, of the class, with the access mode.
        let rejected = |nodes: &[&str]| nodes.iter().map(|n| format!("{n}: {BIND_CONFLICT}")).collect::<Vec<_>>();
        assert_eq!(place(&cache, &["data"]), (vec!["a".to_string()], rejected(&["b", "c"])));
        assert_eq!(place(&cache, &["small"]).0, ["a", "b"]);
        // Two claims cannot share one volume: b has one, a two but only one of 5Gi.
        assert_eq!(place(&cache, &["small", "other"]).0, ["a"]);
        assert_eq!(place(&cache, &["data", "other"]).0, ["a"]);
        assert_eq!(place(&cache, &["data", "data2"]), (vec![], rejected(&["a", "b", "c"])));
        // A provisioning class goes anywhere its allowed topologies allow.
        assert_eq!(place(&cache, &["dynamic"]).0, ["a", "b", "c"]);
        assert_eq!(place(&cache, &["zoned"]), (vec!["b".to_string()], rejected(&["a", "c"])));
        // A volume pre-bound to the claim is the only one it gets.
        cache.volumes.insert(
            "pv-pre".into(),
            pv("pv-pre", "5Gi", "c", json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}})),
        );
        assert_eq!(place(&cache, &["data"]).0, ["c"]);
    }

    #[test]
    fn a_volume_chosen_for_one_pod_is_held_until_its_claim_is_bound() {
        use crate::plugins::testing::bound;
        let mut cache = cache_of(vec![node("a", json!({})), node("b", json!({}))], vec![]);
        cache.storage_classes.insert("local".into(), class("local", NO_PROVISIONER, json!({})));
        // One local volume, on b, that either claim would fit.
        cache.volumes.insert("pv-b".into(), pv("pv-b", "5Gi", "b", json!({})));
        for name in ["first", "second"] {
            cache.claims.insert(format!("default/{name}"), claim(name, "local", "1Gi"));
        }
        let mounting = |claim: &str| json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]});
        let first = bound("first-pod", "b", mounting("first"));
        assert_eq!(place(&cache, &["first"]).0, ["b"]);
        // The scheduling loop places the first pod on b and holds the volume for its claim.
        let chosen = chosen_volumes(&first, &cache, "b");
        assert_eq!(chosen, [("pv-b".to_string(), "default/first".to_string())]);
        assert_eq!(chosen_volumes(&first, &cache, "a"), Vec::<(String, String)>::new(), "nothing fits on a");
        cache.assume(first.clone(), "b");
        cache.assume_volumes(&first.key, chosen);
        assert_eq!(cache.volume_held_for("pv-b"), Some("default/first"));
        // The second claim no longer finds it; the first claim still does (a retried pod).
        let rejected = |nodes: &[&str]| nodes.iter().map(|n| format!("{n}: {BIND_CONFLICT}")).collect::<Vec<_>>();
        assert_eq!(place(&cache, &["second"]), (vec![], rejected(&["a", "b"])));
        assert_eq!(place(&cache, &["first"]).0, ["b"]);
        // The binding fails: the pod and its volume are released.
        cache.forget(&first.key);
        assert_eq!(cache.volume_held_for("pv-b"), None);
        assert_eq!(place(&cache, &["second"]).0, ["b"]);
        // Held again, then confirmed by the pod's watch event: still held.
        cache.assume(first.clone(), "b");
        cache.assume_volumes(&first.key, vec![("pv-b".into(), "default/first".into())]);
        cache.add_pod(first.clone());
        assert_eq!(place(&cache, &["second"]).0, Vec::<String>::new());
        // The binder binds the claim: the hold ends (the volume's own status now keeps
        // other claims off it).
        let mut bound_claim = claim("first", "local", "1Gi").as_ref().clone();
        bound_claim.spec.as_mut().unwrap().volume_name = Some("pv-b".into());
        cache.claims.insert("default/first".into(), Arc::new(bound_claim));
        assert_eq!(cache.volume_held_for("pv-b"), None);
        // A deleted pod holds nothing either.
        cache.claims.insert("default/first".into(), claim("first", "local", "1Gi"));
        assert_eq!(cache.volume_held_for("pv-b"), Some("default/first"));
        cache.remove_pod(&first.key);
        assert_eq!(cache.volume_held_for("pv-b"), None);
        assert_eq!(place(&cache, &["second"]).0, ["b"]);
    }
}
