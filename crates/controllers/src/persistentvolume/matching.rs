//! Which volume a claim gets: Kubernetes' `findMatchingVolume` rules (class, capacity,
//! access modes, volume mode, label selector, node affinity, pre-binding), as pure
//! functions over the cached objects.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;

const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// A claim's phase ("" before the controller has set one).
pub(crate) fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// A volume's phase ("" before the controller has set one).
pub(crate) fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The claim's class from the beta annotation, which wins over the field (as Kubernetes).
pub(crate) fn claim_class_annotation(claim: &PersistentVolumeClaim) -> Option<&String> {
    claim.annotations().get(CLASS_ANNOTATION)
}

/// The claim's StorageClass name; "" for none.
pub(crate) fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim_class_annotation(claim)
        .cloned()
        .or_else(|| claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// The volume's StorageClass name; "" for none.
pub(crate) fn volume_class(pv: &PersistentVolume) -> String {
    pv.annotations()
        .get(CLASS_ANNOTATION)
        .cloned()
        .or_else(|| pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// The claims a pod mounts.
pub(crate) fn pod_claims(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
}

/// Whether the volume's claimRef names `namespace/name` (whatever its uid).
pub(crate) fn claim_ref_names(pv: &PersistentVolume, namespace: &str, name: &str) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.namespace.as_deref() == Some(namespace) && r.name.as_deref() == Some(name))
}

/// Whom a volume's claimRef points at, seen from one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimRef {
    /// Nobody: the volume is free.
    None,
    /// This claim (by name, and by uid when the reference has one).
    Ours,
    /// Another claim.
    Other,
}

pub(crate) fn claim_ref_of(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> ClaimRef {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return ClaimRef::None;
    };
    let same_name = claim_ref_names(pv, &claim.namespace().unwrap_or_default(), &claim.name_any());
    let uid = r.uid.as_deref().unwrap_or("");
    if same_name && (uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref()) {
        ClaimRef::Ours
    } else {
        ClaimRef::Other
    }
}

fn storage(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> f64 {
    q.and_then(|q| berth_api::validation::parse_quantity(&q.0)).unwrap_or(0.0)
}

fn requested(claim: &PersistentVolumeClaim) -> f64 {
    storage(claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()?.get("storage")))
}

fn capacity(pv: &PersistentVolume) -> f64 {
    storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")))
}

fn volume_mode_matches(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let volume_mode = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    claim_mode == volume_mode
}

fn access_modes_match(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let offered = pv.spec.as_ref().and_then(|s| s.access_modes.as_ref());
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| offered.is_some_and(|o| o.contains(m)))
}

fn selector_matches(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => true,
        Some(selector) => crate::selector::matches(selector, pv.metadata.labels.as_ref()),
    }
}

fn reachable_from(pv: &PersistentVolume, node: &Node) -> bool {
    match pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) {
        None => true,
        Some(required) => required.node_selector_terms.iter().any(|t| crate::daemonset::sync::term_matches(t, node)),
    }
}

/// The hostnames a volume's required node affinity selects with `kubernetes.io/hostname In`.
pub(crate) fn affinity_hostnames(pv: &PersistentVolume) -> Vec<String> {
    let required = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required
        .iter()
        .flat_map(|r| r.node_selector_terms.iter())
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
        .flat_map(|e| e.values.iter().flatten().cloned())
        .collect()
}

/// Whether a volume the claim names (or that is pre-bound to it) can serve it: capacity,
/// volume mode, access modes and class (Kubernetes checks these for a requested volume).
pub(crate) fn fits(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    capacity(pv) >= requested(claim)
        && volume_mode_matches(claim, pv)
        && access_modes_match(claim, pv)
        && volume_class(pv) == claim_class(claim)
}

/// The volume for `claim`: one pre-bound to it if it fits, else the smallest Available free
/// volume of its class that fits and matches its selector; with `node` (delayed binding),
/// only volumes reachable from that node.
pub(crate) fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl Iterator<Item = &'a PersistentVolume>,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let wanted = requested(claim);
    let class = claim_class(claim);
    let mut best: Option<(&PersistentVolume, f64)> = None;
    for pv in volumes {
        let size = capacity(pv);
        if size < wanted || !volume_mode_matches(claim, pv) || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let reachable = node.is_none_or(|n| reachable_from(pv, n));
        match claim_ref_of(pv, claim) {
            ClaimRef::Ours => return reachable.then_some(pv),
            ClaimRef::Other => continue,
            ClaimRef::None => {}
        }
        let usable = volume_phase(pv) == "Available"
            && selector_matches(claim, pv)
            && volume_class(pv) == class
            && access_modes_match(claim, pv)
            && reachable;
        if usable && best.is_none_or(|(_, s)| size < s) {
            best = Some((pv, size));
        }
    }
    best.map(|(pv, _)| pv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": { "name": name, "labels": { "tier": "fast" } },
            "spec": { "capacity": { "storage": size }, "accessModes": ["ReadWriteOnce"], "hostPath": { "path": "/x" } },
            "status": { "phase": "Available" },
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn pvc(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": { "name": "data", "namespace": "default", "uid": "u1" },
            "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": size } } },
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn pick<'a>(
        claim: &PersistentVolumeClaim,
        volumes: &'a [PersistentVolume],
        node: Option<&Node>,
    ) -> Option<&'a str> {
        find_match(claim, volumes.iter(), node).map(|pv| pv.metadata.name.as_deref().unwrap())
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let volumes = [pv("big", "10Gi", json!({})), pv("small", "1Gi", json!({})), pv("tiny", "100Mi", json!({}))];
        assert_eq!(pick(&pvc("500Mi", json!({})), &volumes, None), Some("small"));
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, None), Some("small"));
        assert_eq!(pick(&pvc("20Gi", json!({})), &volumes, None), None);
    }

    #[test]
    fn class_modes_selector_phase_and_binding_filter() {
        let volumes = [
            pv("other-class", "1Gi", json!({ "spec": { "storageClassName": "gold" } })),
            pv("rwx", "2Gi", json!({ "spec": { "accessModes": ["ReadWriteMany"] } })),
            pv("slow", "3Gi", json!({ "metadata": { "labels": { "tier": "slow" } } })),
            pv("released", "1Gi", json!({ "status": { "phase": "Released" } })),
            pv("taken", "1Gi", json!({ "spec": { "claimRef": { "namespace": "default", "name": "x", "uid": "u9" } } })),
            pv("block", "1Gi", json!({ "spec": { "volumeMode": "Block" } })),
            pv("plain", "5Gi", json!({})),
        ];
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, None), Some("slow"));
        let fast = json!({ "spec": { "selector": { "matchLabels": { "tier": "fast" } } } });
        assert_eq!(pick(&pvc("1Gi", fast), &volumes, None), Some("plain"));
        let gold = json!({ "spec": { "storageClassName": "gold" } });
        assert_eq!(pick(&pvc("1Gi", gold), &volumes, None), Some("other-class"));
        let rwx = json!({ "spec": { "accessModes": ["ReadWriteMany"] } });
        assert_eq!(pick(&pvc("1Gi", rwx), &volumes, None), Some("rwx"));
        let block = json!({ "spec": { "volumeMode": "Block" } });
        assert_eq!(pick(&pvc("1Gi", block), &volumes, None), Some("block"));
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_is_taken_even_when_not_the_smallest() {
        let volumes = [
            pv("small", "1Gi", json!({})),
            pv("mine", "8Gi", json!({ "spec": { "claimRef": { "namespace": "default", "name": "data" } } })),
        ];
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, None), Some("mine"));
        // Pre-bound to an earlier claim of the same name (another uid): not ours.
        let volumes = [pv(
            "old",
            "8Gi",
            json!({ "spec": { "claimRef": { "namespace": "default", "name": "data", "uid": "u0" } } }),
        )];
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, None), None);
    }

    #[test]
    fn node_affinity_limits_delayed_binding() {
        let on = |host: &str| {
            json!({ "spec": { "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "kubernetes.io/hostname", "operator": "In", "values": [host] }] }] } } } })
        };
        let volumes = [pv("on-a", "1Gi", on("a")), pv("on-b", "2Gi", on("b"))];
        let node = |name: &str| -> Node {
            serde_json::from_value(
                json!({ "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } } }),
            )
            .unwrap()
        };
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, Some(&node("b"))), Some("on-b"));
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, Some(&node("c"))), None);
        assert_eq!(pick(&pvc("1Gi", json!({})), &volumes, None), Some("on-a"));
    }

    #[test]
    fn a_named_volume_must_fit() {
        let claim = pvc("2Gi", json!({}));
        assert!(fits(&claim, &pv("ok", "2Gi", json!({}))));
        assert!(!fits(&claim, &pv("small", "1Gi", json!({}))));
        assert!(!fits(&claim, &pv("gold", "5Gi", json!({ "spec": { "storageClassName": "gold" } }))));
    }
}
