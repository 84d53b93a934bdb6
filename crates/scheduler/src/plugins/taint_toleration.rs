//! TaintToleration: NoSchedule and NoExecute taints the pod does not tolerate exclude the
//! node; untolerated PreferNoSchedule taints lower its score.

use k8s_openapi::api::core::v1::Toleration;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection, default_normalize};
use crate::selectors::{tolerates, untolerated};

/// The TaintToleration filter and score.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        if node.taints.is_empty() {
            return Ok(());
        }
        let tolerations = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        match untolerated(&node.taints, tolerations, &["NoSchedule", "NoExecute"]) {
            Some(t) => Err(Rejection::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ))),
            None => Ok(()),
        }
    }

    /// The pod's tolerations that may tolerate PreferNoSchedule taints, once per pod.
    fn pre_score(&self, pod: &PodInfo, _: &Cache, _: &[&NodeInfo]) -> Prepared {
        let tolerations: Vec<Toleration> = pod
            .spec()
            .tolerations
            .iter()
            .flatten()
            .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
            .cloned()
            .collect();
        Prepared::with(tolerations)
    }

    fn score(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> i64 {
        if node.taints.is_empty() {
            return 0;
        }
        let tolerations = prepared.get::<Vec<Toleration>>().map_or(&[][..], Vec::as_slice);
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
            .count() as i64
    }

    fn normalize(&self, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{feasible, node, pod, reasons, scores};
    use serde_json::json;

    #[test]
    fn taints_filter_and_score() {
        let nodes = vec![
            node("infra", json!({"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]})),
            node("evict", json!({"taints": [{"key": "gone", "effect": "NoExecute"}]})),
            node("soft", json!({"taints": [{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]})),
            node("plain", json!({})),
        ];
        assert_eq!(feasible(&TaintToleration, &nodes, &pod(json!({}))), ["plain", "soft"]);
        let tol = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]}),
        );
        assert_eq!(feasible(&TaintToleration, &nodes, &tol), ["infra", "plain", "soft"]);
        assert_eq!(
            reasons(&TaintToleration, nodes.clone(), vec![], &pod(json!({})))[1],
            ("infra".to_string(), "node(s) had untolerated taint {dedicated: infra}".to_string())
        );
        let s = scores(&TaintToleration, nodes, vec![], &pod(json!({})));
        assert_eq!(s.iter().find(|(n, _)| n == "soft").unwrap().1, 0);
        assert_eq!(s.iter().find(|(n, _)| n == "plain").unwrap().1, 100);
    }
}
