//! NodeAffinity: `nodeSelector` and required node affinity filter; preferred node
//! affinity terms score (sum of the weights of the matching terms, normalized).

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Plugin, Prepared, Rejection, default_normalize};
use crate::selectors::{NodeTerm, Selector, any_term_matches};

/// The NodeAffinity filter and score.
pub struct NodeAffinity;

/// The reason Kubernetes gives.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// A pod's compiled node requirements.
pub struct Required {
    selector: Option<Selector>,
    terms: Option<Vec<NodeTerm>>,
}

impl Required {
    /// Compiles the pod's nodeSelector and required node affinity.
    pub fn of(pod: &PodInfo) -> Required {
        let spec = pod.spec();
        let selector = spec.node_selector.as_ref().filter(|m| !m.is_empty()).map(Selector::from_map);
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|r| r.node_selector_terms.iter().map(NodeTerm::new).collect());
        Required { selector, terms }
    }

    /// Whether the pod has any node requirement.
    pub fn is_empty(&self) -> bool {
        self.selector.is_none() && self.terms.is_none()
    }

    /// Whether `node` satisfies them.
    pub fn matches(&self, node: &NodeInfo) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(&node.labels))
            && self.terms.as_ref().is_none_or(|t| any_term_matches(t, &node.name, &node.labels))
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, pod: &PodInfo, _: &Cache) -> Result<Prepared, Rejection> {
        let r = Required::of(pod);
        Ok(if r.is_empty() { Prepared::skip() } else { Prepared::with(r) })
    }

    fn filter(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        match prepared.get::<Required>() {
            Some(r) if !r.matches(node) => Err(Rejection::unresolvable(REASON)),
            _ => Ok(()),
        }
    }

    fn pre_score(&self, pod: &PodInfo, _: &Cache, _: &[&NodeInfo]) -> Prepared {
        let terms: Vec<(i32, NodeTerm)> = pod
            .spec()
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .map(|p| (p.weight, NodeTerm::new(&p.preference)))
            .collect();
        if terms.is_empty() { Prepared::skip() } else { Prepared::with(terms) }
    }

    fn score(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> i64 {
        let Some(terms) = prepared.get::<Vec<(i32, NodeTerm)>>() else {
            return 0;
        };
        terms.iter().filter(|(_, t)| t.matches(&node.name, &node.labels)).map(|(w, _)| *w as i64).sum()
    }

    fn normalize(&self, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{feasible, node, pod, scores};
    use serde_json::json;

    fn nodes() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node("a", json!({"labels": {"zone": "z1", "disk": "ssd"}})),
            node("b", json!({"labels": {"zone": "z2"}})),
            node("c", json!({"labels": {"zone": "z3", "disk": "hdd"}})),
        ]
    }

    #[test]
    fn selector_and_required_terms() {
        assert_eq!(feasible(&NodeAffinity, &nodes(), &pod(json!({"nodeSelector": {"disk": "ssd"}}))), ["a"]);
        let req = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2", "z3"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}});
        assert_eq!(feasible(&NodeAffinity, &nodes(), &pod(req)), ["a", "b", "c"]);
        let req = json!({"nodeSelector": {"zone": "z3"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}]}}}});
        assert_eq!(feasible(&NodeAffinity, &nodes(), &pod(req)), Vec::<String>::new());
    }

    #[test]
    fn preferred_terms_score() {
        let p = pod(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}));
        assert_eq!(scores(&NodeAffinity, nodes(), vec![], &p), [("a".into(), 100), ("b".into(), 0), ("c".into(), 20)]);
    }
}
