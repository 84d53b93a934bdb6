//! NodeResourcesFit: the pod's requests (containers, init containers, overhead, extended
//! resources, one pod slot) must fit the node's allocatable minus what its pods request.
//! Scores by LeastAllocated (default), MostAllocated or RequestedToCapacityRatio.

use std::borrow::Cow;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{MAX_NODE_SCORE, Plugin, Prepared, Rejection};
use crate::resources::Resources;

/// How nodes are scored.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Prefer nodes with the most free resources.
    LeastAllocated,
    /// Prefer the fullest nodes (bin packing).
    MostAllocated,
    /// Score by a piecewise-linear function of utilization: (utilization %, score 0–10) points.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

/// The NodeResourcesFit filter and score.
pub struct NodeResourcesFit {
    /// Scoring strategy.
    pub strategy: Strategy,
    /// Resources scored, with weights (cpu and memory, weight 1, by default).
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            strategy: Strategy::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
        }
    }
}

/// What the node lacks for the pod, as Kubernetes words it; `resolvable` is false when
/// the request is larger than the node's whole allocatable.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    insufficient_in(pod, &node.allocatable, &node.requested)
}

/// [`insufficient`] for a node with this allocatable whose pods request `used`.
pub fn insufficient_in(pod: &PodInfo, alloc: &Resources, used: &Resources) -> Option<Rejection> {
    let req = &pod.requests.requests;
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    let mut resolvable = true;
    if used.pods + 1 > alloc.pods {
        reasons.push("Too many pods".into());
        resolvable &= alloc.pods > 0;
    }
    let mut check = |reason: &'static str, want: i64, have: i64, taken: i64| {
        if want > 0 && want > have - taken {
            reasons.push(Cow::Borrowed(reason));
            resolvable &= want <= have;
        }
    };
    check("Insufficient cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("Insufficient memory", req.memory, alloc.memory, used.memory);
    check("Insufficient ephemeral-storage", req.ephemeral_storage, alloc.ephemeral_storage, used.ephemeral_storage);
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let taken = used.scalar.get(name).copied().unwrap_or(0);
        if *want > 0 && *want > have - taken {
            reasons.push(Cow::Owned(format!("Insufficient {name}")));
            resolvable &= *want <= have;
        }
    }
    if reasons.is_empty() { None } else { Some(Rejection { resolvable, reasons, plugin: "" }) }
}

/// (requested with the pod, allocatable) of one resource, as the scorers see it.
fn amounts(pod: &PodInfo, node: &NodeInfo, resource: &str) -> (i64, i64) {
    match resource {
        "cpu" => (node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu, node.allocatable.milli_cpu),
        "memory" => (node.non_zero_memory + pod.requests.non_zero_memory, node.allocatable.memory),
        other => (node.requested.get(other) + pod.requests.requests.get(other), node.allocatable.get(other)),
    }
}

fn interpolate(shape: &[(i64, i64)], utilization: i64) -> i64 {
    let Some(first) = shape.first() else {
        return 0;
    };
    if utilization <= first.0 {
        return first.1 * 10;
    }
    for w in shape.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if utilization <= x1 {
            return (y0 * 10) + (y1 - y0) * 10 * (utilization - x0) / (x1 - x0).max(1);
        }
    }
    shape.last().map(|l| l.1 * 10).unwrap_or(0)
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        match insufficient(pod, node) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    fn pre_score(&self, _: &PodInfo, _: &Cache, _: &[&NodeInfo]) -> Prepared {
        Prepared::default()
    }

    fn score(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> i64 {
        let (mut total, mut weights) = (0i64, 0i64);
        for (resource, weight) in &self.resources {
            let (requested, allocatable) = amounts(pod, node, resource);
            // Resources the node does not have are not scored (as Kubernetes).
            if allocatable == 0 {
                continue;
            }
            let s = match &self.strategy {
                Strategy::LeastAllocated => {
                    if requested > allocatable {
                        0
                    } else {
                        (allocatable - requested) * MAX_NODE_SCORE / allocatable
                    }
                }
                Strategy::MostAllocated => requested.min(allocatable) * MAX_NODE_SCORE / allocatable,
                Strategy::RequestedToCapacityRatio(shape) => {
                    interpolate(shape, requested.min(allocatable) * 100 / allocatable)
                }
            };
            total += s * weight;
            weights += weight;
        }
        if weights == 0 { 0 } else { total / weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{bound, feasible_in, node, pod, reasons, scores};
    use serde_json::json;

    fn req(r: serde_json::Value) -> serde_json::Value {
        json!({"containers": [{"name": "c", "resources": {"requests": r}}]})
    }

    #[test]
    fn requests_must_fit() {
        let nodes = vec![
            node("small", json!({"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"}})),
            node("big", json!({"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110", "nvidia.com/gpu": "2"}})),
        ];
        let pods = vec![bound("x", "small", req(json!({"cpu": "500m"})))];
        let f = |p| feasible_in(&NodeResourcesFit::default(), nodes.clone(), pods.clone(), &p);
        assert_eq!(f(pod(req(json!({"cpu": "500m"})))), ["big", "small"]);
        assert_eq!(f(pod(req(json!({"cpu": "600m"})))), ["big"]);
        assert_eq!(f(pod(req(json!({"nvidia.com/gpu": "1"})))), ["big"]);
        assert_eq!(f(pod(req(json!({"nvidia.com/gpu": "3"})))), Vec::<String>::new());
        // Init containers and overhead count.
        let init = json!({"containers": [{"name": "c"}], "initContainers": [{"name": "i", "resources": {"requests": {"memory": "2Gi"}}}]});
        assert_eq!(f(pod(init)), ["big"]);
        let over = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "400m"}}}], "overhead": {"cpu": "200m"}});
        assert_eq!(f(pod(over)), ["big"]);
        let r = reasons(
            &NodeResourcesFit::default(),
            nodes.clone(),
            pods.clone(),
            &pod(req(json!({"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"}))),
        );
        assert_eq!(
            r,
            [("small".to_string(), "Insufficient cpu, Insufficient memory, Insufficient nvidia.com/gpu".to_string())]
        );
        // The pod count.
        let full = vec![bound("x", "small", json!({})), bound("y", "small", json!({}))];
        let r = reasons(&NodeResourcesFit::default(), nodes, full, &pod(json!({})));
        assert_eq!(r, [("small".to_string(), "Too many pods".to_string())]);
    }

    #[test]
    fn strategies_rank_nodes() {
        let nodes = vec![node("empty", json!({})), node("half", json!({}))];
        let pods = vec![bound("x", "half", req(json!({"cpu": "2", "memory": "4Gi"})))];
        let p = pod(req(json!({"cpu": "1", "memory": "1Gi"})));
        let least = scores(&NodeResourcesFit::default(), nodes.clone(), pods.clone(), &p);
        assert_eq!(least, [("empty".to_string(), 81), ("half".to_string(), 31)]);
        let most = NodeResourcesFit { strategy: Strategy::MostAllocated, ..Default::default() };
        assert_eq!(
            scores(&most, nodes.clone(), pods.clone(), &p),
            [("empty".to_string(), 18), ("half".to_string(), 68)]
        );
        let ratio = NodeResourcesFit {
            strategy: Strategy::RequestedToCapacityRatio(vec![(0, 0), (100, 10)]),
            ..Default::default()
        };
        assert_eq!(scores(&ratio, nodes, pods, &p), [("empty".to_string(), 18), ("half".to_string(), 68)]);
    }
}
