//! The scale subresource: an `autoscaling/v1` Scale view of a workload's replicas,
//! for built-in kinds and for custom resources with a scale subresource.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::resources::Served;

/// (spec replicas path, status replicas path, label selector path) as JSON pointers.
fn paths(served: &Served) -> ApiResult<(String, String, Option<String>)> {
    if let Some(custom) = &served.custom {
        let s = custom.scale.as_ref().ok_or_else(ApiError::unknown_resource)?;
        let ptr = |k: &str| {
            s.get(k)
                .and_then(Value::as_str)
                .map(|p| p.trim_start_matches('.').replace('.', "/"))
                .map(|p| format!("/{p}"))
        };
        return Ok((
            ptr("specReplicasPath").unwrap_or_else(|| "/spec/replicas".into()),
            ptr("statusReplicasPath").unwrap_or_else(|| "/status/replicas".into()),
            ptr("labelSelectorPath"),
        ));
    }
    Ok(("/spec/replicas".into(), "/status/replicas".into(), None))
}

/// Renders a metav1.LabelSelector as the string form (`app=web,tier in (a,b)`).
pub fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// The Scale object of `obj`.
pub fn to_scale(served: &Served, obj: &Value) -> ApiResult<Value> {
    let (spec, status, selector_path) = paths(served)?;
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    let selector = match selector_path {
        Some(p) => obj.pointer(&p).and_then(Value::as_str).unwrap_or("").to_string(),
        None => obj
            .pointer("/spec/selector")
            .map(|s| if s.is_object() { selector_string(s) } else { s.as_str().unwrap_or("").to_string() })
            .unwrap_or_default(),
    };
    let mut status_v = json!({ "replicas": obj.pointer(&status).and_then(Value::as_i64).unwrap_or(0) });
    if !selector.is_empty() {
        status_v["selector"] = json!(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": { "replicas": obj.pointer(&spec).and_then(Value::as_i64).unwrap_or(0) },
        "status": status_v,
    }))
}

/// Writes the replicas of `scale` into `obj`.
pub fn apply_scale(served: &Served, obj: &mut Value, scale: &Value) -> ApiResult<()> {
    let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
                crate::object::name(obj)
            ),
        ));
    }
    let (spec, _, _) = paths(served)?;
    let mut cur = obj;
    let parts: Vec<&str> = spec.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if let Some(o) = cur.as_object_mut() {
                o.insert((*p).to_string(), json!(replicas));
            }
            break;
        }
        let o = cur.as_object_mut().ok_or_else(|| ApiError::internal("scale path is not an object"))?;
        cur = o.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_strings() {
        let sel = json!({ "matchLabels": { "app": "web" }, "matchExpressions": [
            { "key": "tier", "operator": "In", "values": ["a", "b"] },
            { "key": "x", "operator": "DoesNotExist" }
        ]});
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b),!x");
    }
}
