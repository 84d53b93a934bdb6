//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection};
use crate::selectors::tolerates;

/// The NodeUnschedulable filter.
pub struct NodeUnschedulable;

/// The reason Kubernetes gives.
pub const REASON: &str = "node(s) were unschedulable";

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Taint::default() };
        if pod.spec().tolerations.iter().flatten().any(|t| tolerates(t, &taint)) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{feasible, node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_need_a_toleration() {
        let nodes = [node("a", json!({"unschedulable": true})), node("b", json!({}))];
        assert_eq!(feasible(&NodeUnschedulable, &nodes, &pod(json!({}))), ["b"]);
        let tolerant = pod(json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}));
        assert_eq!(feasible(&NodeUnschedulable, &nodes, &tolerant), ["a", "b"]);
    }
}
