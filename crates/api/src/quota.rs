//! Resource quota arithmetic, shared by the API server's quota admission and the
//! resource quota controller: what one object uses of each quota resource
//! (`pods`, `requests.cpu`, `limits.memory`, `services.nodeports`,
//! `count/deployments.apps`, `requests.storage`, ...), and quantities rendered back as
//! Kubernetes renders them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validation::parse_quantity;

/// Quota usage: resource name → amount.
pub type Usage = BTreeMap<String, f64>;

/// The short quota name of an object count (`pods`, `services`, ...), if the resource
/// has one besides `count/<resource>[.<group>]`.
fn short_count(group: &str, plural: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

/// The `count/...` name of a resource.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

/// What `obj` (of `group`/`plural`) uses. Pods that have finished use nothing.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    if group.is_empty() && plural == "pods" {
        let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            return u;
        }
        pod_compute(obj, &mut u);
    }
    u.insert(count_name(group, plural), 1.0);
    if let Some(short) = short_count(group, plural) {
        u.insert(short.to_string(), 1.0);
    }
    if group.is_empty() && plural == "services" {
        let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
        let node_ports = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n > 0)).count())
            .unwrap_or(0);
        if kind == "LoadBalancer" {
            u.insert("services.loadbalancers".into(), 1.0);
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            u.insert("services.nodeports".into(), node_ports as f64);
        }
    }
    if group.is_empty() && plural == "persistentvolumeclaims" {
        let storage = obj.pointer("/spec/resources/requests/storage").and_then(quantity).unwrap_or(0.0);
        u.insert("requests.storage".into(), storage);
        if let Some(class) = obj.pointer("/spec/storageClassName").and_then(Value::as_str) {
            let prefix = format!("{class}.storageclass.storage.k8s.io");
            u.insert(format!("{prefix}/requests.storage"), storage);
            u.insert(format!("{prefix}/persistentvolumeclaims"), 1.0);
        }
    }
    u
}

fn quantity(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A pod's effective requests and limits: the larger of the sum over its containers and
/// the largest init container, plus overhead, as Kubernetes computes them for quota.
fn pod_compute(pod: &Value, u: &mut Usage) {
    for field in ["requests", "limits"] {
        let mut sum: BTreeMap<String, f64> = BTreeMap::new();
        let mut init_max: BTreeMap<String, f64> = BTreeMap::new();
        for (list, target) in [("containers", &mut sum), ("initContainers", &mut init_max)] {
            for c in
                pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
            {
                for (res, q) in
                    c.pointer(&format!("/resources/{field}")).and_then(Value::as_object).into_iter().flatten()
                {
                    let q = quantity(q).unwrap_or(0.0);
                    let e = target.entry(res.clone()).or_default();
                    *e = if list == "containers" { *e + q } else { e.max(q) };
                }
            }
        }
        for (res, q) in init_max {
            let e = sum.entry(res).or_default();
            *e = e.max(q);
        }
        for (res, q) in pod.pointer("/spec/overhead").and_then(Value::as_object).into_iter().flatten() {
            *sum.entry(res.clone()).or_default() += quantity(q).unwrap_or(0.0);
        }
        for (res, q) in sum {
            u.insert(format!("{field}.{res}"), q);
            if field == "requests" && (res == "cpu" || res == "memory" || res == "ephemeral-storage") {
                u.insert(res, q);
            }
        }
    }
}

/// The containers of a pod that set no `field` (`requests`/`limits`) for `resource`.
pub fn containers_missing(pod: &Value, field: &str, resource: &str) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array).cloned().unwrap_or_default())
        .filter(|c| c.pointer(&format!("/resources/{field}/{resource}")).is_none())
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or("").to_string())
        .collect()
}

/// A quota amount as Kubernetes renders it: counts and whole numbers plain, fractions
/// in millis, byte amounts of memory and storage with a binary suffix when exact.
pub fn format(resource: &str, v: f64) -> String {
    let bytes = resource.contains("memory") || resource.contains("storage");
    if (v - v.round()).abs() > 1e-9 {
        return format!("{}m", (v * 1000.0).round() as i64);
    }
    let n = v.round() as i64;
    if bytes && n != 0 {
        for (suffix, unit) in
            [("Ei", 1i64 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)]
        {
            if n % unit == 0 {
                return format!("{}{suffix}", n / unit);
            }
        }
    }
    n.to_string()
}

/// Parses a quota amount (a quantity string or number).
pub fn amount(v: &Value) -> Option<f64> {
    quantity(v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pod_usage_takes_init_containers_and_overhead_into_account() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}}}],
            "overhead": {"memory": "64Mi"}}});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], 1.0);
        assert_eq!(u["count/pods"], 1.0);
        assert_eq!(u["requests.cpu"], 2.0, "the init container's 2 beats 750m");
        assert_eq!(u["cpu"], 2.0);
        assert_eq!(format("requests.memory", u["requests.memory"]), "192Mi");
        assert_eq!(format("limits.memory", u["limits.memory"]), "320Mi");
        assert_eq!(containers_missing(&pod, "limits", "cpu"), ["i", "a", "b"]);
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
    }

    #[test]
    fn services_claims_and_other_kinds() {
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}]}});
        let u = usage("", "services", &lb);
        assert_eq!((u["services"], u["services.loadbalancers"], u["services.nodeports"]), (1.0, 1.0, 2.0));
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(format("requests.storage", u["requests.storage"]), "5Gi");
        assert_eq!(u["fast.storageclass.storage.k8s.io/persistentvolumeclaims"], 1.0);
        let u = usage("apps", "deployments", &json!({}));
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        assert_eq!(format("requests.cpu", 1.5), "1500m");
        assert_eq!(format("pods", 3.0), "3");
    }
}
