//! NodeName: a pod that names a node fits only that node.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Plugin, Rejection};

/// The NodeName filter.
pub struct NodeName;

/// The reason Kubernetes gives.
pub const REASON: &str = "node(s) didn't match the requested node name";

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &PodInfo, _: &crate::framework::Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        match pod.spec().node_name.as_deref() {
            Some(n) if !n.is_empty() && n != node.name => Err(Rejection::unresolvable(REASON)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{feasible, node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let nodes = [node("a", json!({})), node("b", json!({}))];
        assert_eq!(feasible(&NodeName, &nodes, &pod(json!({"nodeName": "b"}))), ["b"]);
        assert_eq!(feasible(&NodeName, &nodes, &pod(json!({}))), ["a", "b"]);
    }
}
