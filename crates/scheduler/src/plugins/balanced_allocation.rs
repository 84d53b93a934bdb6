//! NodeResourcesBalancedAllocation: prefer nodes whose CPU and memory would be used in
//! equal proportion (score = (1 − standard deviation of the fractions) × 100).

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{MAX_NODE_SCORE, Plugin, Prepared};

/// The BalancedAllocation score.
pub struct BalancedAllocation {
    /// Resources compared (cpu and memory by default).
    pub resources: Vec<String>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation { resources: vec!["cpu".into(), "memory".into()] }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn filters(&self) -> bool {
        false
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(&self, pod: &PodInfo, _: &Cache, _: &[&NodeInfo]) -> Prepared {
        // A pod requesting nothing scored does not change the balance (Kubernetes skips it).
        let any = self.resources.iter().any(|r| pod.requests.requests.get(r) > 0);
        if any { Prepared::default() } else { Prepared::skip() }
    }

    fn score(&self, pod: &PodInfo, _: &Prepared, node: &NodeInfo) -> i64 {
        // The fractions on the stack: this runs for every feasible node of every pod.
        let mut fixed = [0.0f64; 8];
        let mut more = Vec::new();
        let mut n = 0;
        for r in &self.resources {
            let alloc = node.allocatable.get(r);
            if alloc == 0 {
                continue;
            }
            let used = node.requested.get(r) + pod.requests.requests.get(r);
            let fraction = (used as f64 / alloc as f64).min(1.0);
            match fixed.get_mut(n) {
                Some(slot) => *slot = fraction,
                None => more.push(fraction),
            }
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        let all: Vec<f64>;
        let fractions: &[f64] = if more.is_empty() {
            &fixed[..n]
        } else {
            all = fixed.iter().copied().chain(more).collect();
            &all
        };
        let std = if fractions.len() == 2 {
            (fractions[0] - fractions[1]).abs() / 2.0
        } else {
            let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
            (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / fractions.len() as f64).sqrt()
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{bound, node, pod, scores};
    use serde_json::json;

    #[test]
    fn balanced_nodes_rank_higher() {
        let nodes = vec![node("cpu-heavy", json!({})), node("even", json!({}))];
        let pods = vec![
            bound("x", "cpu-heavy", json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]})),
            bound(
                "y",
                "even",
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}),
            ),
        ];
        let p = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}));
        assert_eq!(
            scores(&BalancedAllocation::default(), nodes, pods, &p),
            [("cpu-heavy".to_string(), 62), ("even".to_string(), 100)]
        );
    }
}
