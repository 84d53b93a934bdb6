//! NodePorts: a pod's host ports must be free on the node.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection};

/// The NodePorts filter.
pub struct NodePorts;

/// The reason Kubernetes gives.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn pre_filter(&self, pod: &PodInfo, _: &crate::cache::Cache) -> Result<Prepared, Rejection> {
        Ok(if pod.host_ports.is_empty() { Prepared::skip() } else { Prepared::default() })
    }

    fn filter(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        if pod.host_ports.iter().any(|p| node.used_ports.iter().any(|u| u.conflicts(p))) {
            Err(Rejection::unschedulable(REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{bound, feasible_in, node, pod};
    use serde_json::json;

    fn with_port(port: i32, ip: Option<&str>) -> serde_json::Value {
        let mut p = json!({"containerPort": 80, "hostPort": port});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        json!({"containers": [{"name": "c", "ports": [p]}]})
    }

    #[test]
    fn host_ports_conflict() {
        let nodes = vec![node("a", json!({})), node("b", json!({}))];
        let pods = vec![bound("x", "a", with_port(8080, None))];
        assert_eq!(feasible_in(&NodePorts, nodes.clone(), pods.clone(), &pod(with_port(8080, None))), ["b"]);
        assert_eq!(feasible_in(&NodePorts, nodes.clone(), pods.clone(), &pod(with_port(8081, None))), ["a", "b"]);
        // 0.0.0.0 collides with any address.
        assert_eq!(feasible_in(&NodePorts, nodes, pods, &pod(with_port(8080, Some("10.0.0.1")))), ["b"]);
    }
}
