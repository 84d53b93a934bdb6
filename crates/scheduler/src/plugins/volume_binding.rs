//! VolumeBinding (basics): every PersistentVolumeClaim the pod mounts must exist; a bound
//! claim's PersistentVolume node affinity must match the node; an unbound claim is fine
//! when its StorageClass binds on first consumer (`WaitForFirstConsumer`), and keeps the
//! pod pending otherwise (the volume controller binds Immediate claims first).

use k8s_openapi::api::core::v1::PersistentVolume;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection};
use crate::selectors::{NodeTerm, any_term_matches};

/// The VolumeBinding filter.
pub struct VolumeBinding;

/// Reason: a bound volume cannot be reached from the node.
pub const CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Reason: an Immediate claim is not bound yet.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

fn affinity_terms(pv: &PersistentVolume) -> Option<Vec<NodeTerm>> {
    let req = pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(req.node_selector_terms.iter().map(NodeTerm::new).collect())
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
        let mut terms: Vec<Vec<NodeTerm>> = Vec::new();
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
                        terms.push(t);
                    }
                }
                None => {
                    let class = spec.and_then(|s| s.storage_class_name.as_deref()).unwrap_or("");
                    let delayed = cache
                        .storage_classes
                        .get(class)
                        .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
                    if !delayed {
                        return Err(Rejection::unresolvable(UNBOUND_IMMEDIATE));
                    }
                }
            }
        }
        Ok(if terms.is_empty() { Prepared::skip() } else { Prepared::with(terms) })
    }

    fn filter(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(all) = prepared.get::<Vec<Vec<NodeTerm>>>() else {
            return Ok(());
        };
        if all.iter().all(|terms| any_term_matches(terms, &node.name, &node.labels)) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(CONFLICT))
        }
    }
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
}
