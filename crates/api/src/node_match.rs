//! Matching a pod's node selector terms and tolerations against a Node, as Kubernetes'
//! `corev1 helpers` do it: shared by the scheduler, the controllers (DaemonSets, node
//! lifecycle, volume node affinity) and the node agent's admission.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

/// Whether `toleration` tolerates `taint`, as Kubernetes' `ToleratesTaint`: the same effect
/// (or any), the same key (or any), and `Exists` or an equal value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration], effects: &[&str]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether one node selector requirement holds for `value` (the label's or field's value,
/// None when the node has none): In, NotIn, Exists, DoesNotExist, and Gt/Lt on integers.
pub fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (value.and_then(number), values.first().and_then(|v| number(v))) else {
                return false;
            };
            if requirement.operator == "Gt" { have > bound } else { have < bound }
        }
        _ => false,
    }
}

/// Whether a node selector term matches the node named `node_name` with `labels`: all its
/// label expressions and field expressions (only `metadata.name` exists) hold. An empty
/// term matches no node.
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| requirement_matches(r, (r.key == "metadata.name").then_some(node_name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(value: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(value).expect("term")
    }

    #[test]
    fn terms_match_labels_and_the_node_name() {
        let labels: BTreeMap<String, String> =
            [("zone", "a"), ("cores", "8")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let cases = [
            (json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}), true),
            (json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}), false),
            (json!({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}), true),
            (json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}), true),
            (json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}), true),
            (json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}), true),
            (json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}), false),
            (json!({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["4"]}]}), false),
            (json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}), true),
            (json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}), false),
            (json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}), false),
            (json!({}), false),
        ];
        for (t, want) in cases {
            assert_eq!(term_matches(&term(t.clone()), "n1", &labels), want, "{t}");
        }
    }

    #[test]
    fn untolerated_finds_the_first_taint_of_the_effects_asked() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": "a", "effect": "NoSchedule"},
            {"key": "b", "value": "1", "effect": "NoExecute"},
        ]))
        .expect("taints");
        let tolerations: Vec<Toleration> =
            serde_json::from_value(json!([{"key": "b", "operator": "Equal", "value": "1"}])).expect("tolerations");
        assert_eq!(untolerated(&taints, &tolerations, &["NoExecute"]), None);
        assert_eq!(untolerated(&taints, &tolerations, &["NoSchedule", "NoExecute"]).map(|t| t.key.as_str()), Some("a"));
        assert_eq!(untolerated(&taints, &[], &["NoExecute"]).map(|t| t.key.as_str()), Some("b"));
    }
}
