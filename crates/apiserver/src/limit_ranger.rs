//! LimitRanger admission (Kubernetes' `LimitRanger` plugin): the LimitRanges of a
//! namespace give containers of new pods their default requests and limits (recorded in
//! the `kubernetes.io/limit-ranger` annotation), and refuse pods and
//! PersistentVolumeClaims outside their min, max and max limit/request ratio, with
//! Kubernetes' messages (403 Forbidden).

use berth_api::validation::parse_quantity;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

/// The `limits` items of the namespace's LimitRanges.
fn items(ctx: &Ctx, ns: &str) -> Vec<Value> {
    let (ranges, _) = ctx.app.cache.list(&format!("/registry/core/limitranges/{ns}/"));
    ranges
        .iter()
        .flat_map(|r| r.value.pointer("/spec/limits").and_then(Value::as_array).cloned().unwrap_or_default())
        .collect()
}

fn is_pods(ctx: &Ctx) -> bool {
    ctx.served.info.group.is_empty() && ctx.served.info.plural == "pods"
}

fn is_claims(ctx: &Ctx) -> bool {
    ctx.served.info.group.is_empty() && ctx.served.info.plural == "persistentvolumeclaims"
}

fn map<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn quantity(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets default requests and limits on the containers of a pod being created (after
/// the API defaults, so a container with only a limit already requests it).
pub fn apply_defaults(ctx: &Ctx, obj: &mut Value) {
    let Some(ns) = ctx.namespace() else { return };
    if !is_pods(ctx) {
        return;
    }
    let items = items(ctx, ns);
    let Some(item) = items.iter().find(|i| i.get("type").and_then(Value::as_str) == Some("Container")) else {
        return;
    };
    berth_api::defaults::apply(&ctx.served.info, obj);
    let mut notes = Vec::new();
    for kind in ["initContainers", "containers"] {
        let Some(list) = obj.pointer_mut(&format!("/spec/{kind}")).and_then(Value::as_array_mut) else { continue };
        for c in list {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let resources = &mut c["resources"];
            if !resources.is_object() {
                *resources = json!({});
            }
            for (field, default_key, what) in
                [("requests", "defaultRequest", "request"), ("limits", "default", "limit")]
            {
                let Some(defaults) = map(item, default_key) else { continue };
                let mut set = Vec::new();
                for (res, value) in defaults {
                    let target = &mut resources[field];
                    if !target.is_object() {
                        *target = json!({});
                    }
                    if target.get(res).is_none() {
                        target[res] = value.clone();
                        set.push(res.clone());
                    }
                }
                if !set.is_empty() {
                    let who = if kind == "containers" { "container" } else { "init container" };
                    notes.push(format!("{} {what} for {who} {name}", set.join(", ")));
                }
            }
            // A container left with empty maps has none.
            if let Some(r) = resources.as_object_mut() {
                r.retain(|_, v| v.as_object().is_none_or(|m| !m.is_empty()));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    // The QoS class follows the resources now set (the API defaults compute it again).
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.remove("qosClass");
    }
    if let Some(meta) = crate::object::meta_mut(obj) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        annotations["kubernetes.io/limit-ranger"] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Refuses a pod or claim being created that is outside the namespace's limits.
pub fn validate(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else { return Ok(()) };
    let (pods, claims) = (is_pods(ctx), is_claims(ctx));
    if !pods && !claims {
        return Ok(());
    }
    let mut problems = Vec::new();
    for item in items(ctx, ns) {
        match (item.get("type").and_then(Value::as_str), pods) {
            (Some("Container"), true) => {
                for c in containers(obj) {
                    let r = c.get("resources").unwrap_or(&Value::Null);
                    check(&item, "Container", map(r, "requests"), map(r, "limits"), &mut problems);
                }
            }
            (Some("Pod"), true) => {
                let (requests, limits) = pod_totals(obj);
                check(&item, "Pod", Some(&requests), Some(&limits), &mut problems);
            }
            (Some("PersistentVolumeClaim"), false) => {
                let r = obj.pointer("/spec/resources").unwrap_or(&Value::Null);
                check(&item, "PersistentVolumeClaim", map(r, "requests"), map(r, "limits"), &mut problems);
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let why = if problems.len() == 1 { problems.remove(0) } else { format!("[{}]", problems.join(", ")) };
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    Err(ApiError::forbidden(&ctx.served.info, name, why))
}

fn containers(obj: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"].into_iter().flat_map(move |k| {
        obj.pointer(&format!("/spec/{k}")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    })
}

/// A pod's requests and limits: the sum over its containers (a resource some container
/// leaves unset is left out of the pod's totals, as Kubernetes does for limits).
fn pod_totals(obj: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut out = (Map::new(), Map::new());
    for (field, total) in [("requests", &mut out.0), ("limits", &mut out.1)] {
        let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
        let mut missing = std::collections::BTreeSet::new();
        let list: Vec<&Value> = containers(obj).collect();
        for c in &list {
            let values = c.pointer(&format!("/resources/{field}")).and_then(Value::as_object);
            for (res, v) in values.into_iter().flatten() {
                *sums.entry(res.clone()).or_default() += quantity(v).unwrap_or(0.0);
            }
        }
        for res in sums.keys() {
            if list.iter().any(|c| c.pointer(&format!("/resources/{field}/{res}")).is_none()) {
                missing.insert(res.clone());
            }
        }
        for (res, sum) in sums {
            if !(field == "limits" && missing.contains(&res)) {
                total.insert(res, json!(format_quantity(sum)));
            }
        }
    }
    out
}

/// A plain rendering of a summed quantity (whole numbers as integers, else millis).
fn format_quantity(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{}m", (v * 1000.0).round() as i64)
    }
}

/// Min, max and ratio of one LimitRange item against one container, pod or claim.
fn check(
    item: &Value,
    what: &str,
    requests: Option<&Map<String, Value>>,
    limits: Option<&Map<String, Value>>,
    problems: &mut Vec<String>,
) {
    let get = |m: Option<&Map<String, Value>>, res: &str| m.and_then(|m| m.get(res)).cloned();
    for (res, min) in map(item, "min").into_iter().flatten() {
        let min_q = quantity(min).unwrap_or(0.0);
        match get(requests, res) {
            None => problems.push(format!("minimum {res} usage per {what} is {}.  No request is specified", show(min))),
            Some(r) if quantity(&r).unwrap_or(0.0) < min_q => {
                problems.push(format!("minimum {res} usage per {what} is {}, but request is {}", show(min), show(&r)))
            }
            Some(_) => {}
        }
        if let Some(l) = get(limits, res)
            && quantity(&l).unwrap_or(0.0) < min_q
        {
            problems.push(format!("minimum {res} usage per {what} is {}, but limit is {}", show(min), show(&l)));
        }
    }
    for (res, max) in map(item, "max").into_iter().flatten() {
        let max_q = quantity(max).unwrap_or(0.0);
        match get(limits, res) {
            None if what != "PersistentVolumeClaim" => {
                problems.push(format!("maximum {res} usage per {what} is {}.  No limit is specified", show(max)))
            }
            Some(l) if quantity(&l).unwrap_or(0.0) > max_q => {
                problems.push(format!("maximum {res} usage per {what} is {}, but limit is {}", show(max), show(&l)))
            }
            _ => {}
        }
        if let Some(r) = get(requests, res)
            && quantity(&r).unwrap_or(0.0) > max_q
        {
            problems.push(format!("maximum {res} usage per {what} is {}, but request is {}", show(max), show(&r)));
        }
    }
    for (res, ratio) in map(item, "maxLimitRequestRatio").into_iter().flatten() {
        let (Some(l), Some(r)) = (get(limits, res), get(requests, res)) else {
            if get(limits, res).is_none() {
                problems.push(format!(
                    "{res} max limit to request ratio per {what} is {}, but no limit is specified",
                    show(ratio)
                ));
            }
            continue;
        };
        let (l, r) = (quantity(&l).unwrap_or(0.0), quantity(&r).unwrap_or(0.0));
        if r > 0.0 && l / r > quantity(ratio).unwrap_or(f64::MAX) {
            problems.push(format!(
                "{res} max limit to request ratio per {what} is {}, but provided ratio is {:.6}",
                show(ratio),
                l / r
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(item: Value, requests: Value, limits: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&item, "Container", requests.as_object(), limits.as_object(), &mut out);
        out
    }

    #[test]
    fn min_max_and_ratio_messages() {
        let item = json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "2", "memory": "1Gi"},
            "maxLimitRequestRatio": {"cpu": "4"}});
        assert_eq!(
            problems(item.clone(), json!({"cpu": "50m"}), json!({"cpu": "3"})),
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 2, but limit is 3",
                "maximum memory usage per Container is 1Gi.  No limit is specified",
                "cpu max limit to request ratio per Container is 4, but provided ratio is 60.000000",
            ]
        );
        assert!(
            problems(item, json!({"cpu": "500m", "memory": "64Mi"}), json!({"cpu": "1", "memory": "128Mi"})).is_empty()
        );
    }

    #[test]
    fn pod_totals_sum_containers() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m"}}}]}});
        let (requests, limits) = pod_totals(&pod);
        assert_eq!(requests.get("cpu"), Some(&json!("500m")));
        assert_eq!(limits.get("cpu"), Some(&json!("1500m")));
        assert_eq!(limits.get("memory"), None, "b sets no memory limit: the pod has none");
    }
}
