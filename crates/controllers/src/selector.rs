//! Label selectors (`matchLabels` and `matchExpressions`) evaluated on typed objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// True when `labels` satisfy `selector` (an empty selector matches everything).
pub(crate) fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let by_label = selector.match_labels.iter().flatten().all(|(k, v)| get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => get(&e.key).is_some(),
                "DoesNotExist" => get(&e.key).is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(selector: serde_json::Value, labels: &[(&str, &str)], expect: bool) {
        let sel: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(matches(&sel, Some(&labels)), expect, "{selector} on {labels:?}");
    }

    #[test]
    fn selectors() {
        check(json!({}), &[], true);
        check(json!({ "matchLabels": { "a": "1" } }), &[("a", "1")], true);
        check(json!({ "matchLabels": { "a": "1" } }), &[("a", "2")], false);
        check(
            json!({ "matchExpressions": [{ "key": "a", "operator": "In", "values": ["1", "2"] }] }),
            &[("a", "2")],
            true,
        );
        check(json!({ "matchExpressions": [{ "key": "a", "operator": "NotIn", "values": ["1"] }] }), &[], true);
        check(
            json!({ "matchExpressions": [{ "key": "a", "operator": "NotIn", "values": ["1"] }] }),
            &[("a", "1")],
            false,
        );
        check(json!({ "matchExpressions": [{ "key": "a", "operator": "Exists" }] }), &[("a", "")], true);
        check(json!({ "matchExpressions": [{ "key": "a", "operator": "DoesNotExist" }] }), &[("a", "")], false);
        check(json!({ "matchExpressions": [{ "key": "a", "operator": "Bogus" }] }), &[("a", "")], false);
    }
}
