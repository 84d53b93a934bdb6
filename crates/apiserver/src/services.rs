//! Service address allocation, as the Kubernetes API server does it: a cluster IP
//! from the service CIDR for every Service but headless and ExternalName ones, and a
//! node port from 30000–32767 for each port of NodePort and LoadBalancer Services.
//! The allocations in use are read from the live Services, so nothing leaks when a
//! Service is deleted. Also the `kubernetes` Service that points at the API server.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use berth_api::FieldError;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::server::App;

/// The service CIDR: 10.43.0.0/16 (as k3s).
const SERVICE_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The node port range.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;
const SERVICES: &str = "/registry/core/services/";

fn in_range(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_NET;
    let mask = u32::MAX << (32 - bits);
    let n = u32::from(ip);
    n & mask == u32::from(net) && n != u32::from(net) && n != (u32::from(net) | !mask)
}

fn needs_cluster_ip(spec: &Value) -> bool {
    spec["type"].as_str() != Some("ExternalName") && spec["clusterIP"].as_str() != Some("None")
}

fn needs_node_ports(spec: &Value) -> bool {
    matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"))
}

fn range_message() -> String {
    format!("{}/{}", SERVICE_NET.0, SERVICE_NET.1)
}

/// Assigns a cluster IP and node ports to `svc` (a create when `old` is None), keeping
/// what `old` had. Serialized by the caller so concurrent creates never pick the same address.
pub async fn allocate(app: &App, svc: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let _guard = app.service_alloc.lock().await;
    app.catch_up().await?;
    let own_key = format!("{}/{}", object::namespace(svc), object::name(svc));
    let (items, _) = app.cache.list(SERVICES);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for item in &items {
        let key = format!("{}/{}", object::namespace(&item.value), object::name(&item.value));
        if key == own_key {
            continue;
        }
        if let Some(ip) = item.value.pointer("/spec/clusterIP").and_then(Value::as_str) {
            ips.insert(ip.to_string());
        }
        for p in item.value.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                ports.insert(n);
            }
        }
    }
    let name = object::name(svc).to_string();
    let mut errors = Vec::new();
    let spec = &mut svc["spec"];
    if needs_cluster_ip(spec) {
        let given = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).map(String::from);
        let kept = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).filter(|s| !s.is_empty());
        let ip = match (given, kept) {
            (Some(ip), Some(k)) if ip == k => Some(ip),
            (Some(ip), _) => match ip.parse::<Ipv4Addr>() {
                Ok(addr) if !in_range(addr) => {
                    errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        format!("[\"{ip}\"]"),
                        format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}", range_message()),
                    ));
                    None
                }
                Ok(_) if ips.contains(&ip) => {
                    errors.push(FieldError::invalid(
                        "spec.clusterIPs",
                        format!("[\"{ip}\"]"),
                        format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    ));
                    None
                }
                Ok(_) => Some(ip),
                Err(_) => None, // validation reports the malformed address
            },
            (None, Some(k)) => Some(k.to_string()),
            (None, None) => {
                let (net, bits) = SERVICE_NET;
                let size = 1u32 << (32 - bits);
                // .1 is the kubernetes Service's; hand out the others in order.
                let found =
                    (2..size - 1).map(|i| Ipv4Addr::from(u32::from(net) + i)).find(|a| !ips.contains(&a.to_string()));
                match found {
                    Some(a) => Some(a.to_string()),
                    None => {
                        return Err(ApiError::new(
                            500,
                            "InternalError",
                            "range is full: no cluster IP left to allocate",
                        ));
                    }
                }
            }
        };
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
    }
    if needs_node_ports(spec) {
        let old_ports: Vec<Value> =
            old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut taken: HashSet<i64> = ports;
        if let Some(list) = spec["ports"].as_array_mut() {
            for (i, p) in list.iter_mut().enumerate() {
                match p["nodePort"].as_i64() {
                    Some(n) if !NODE_PORTS.contains(&n) => errors.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        n,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORTS.start(),
                            NODE_PORTS.end()
                        ),
                    )),
                    Some(n) if taken.contains(&n) => errors.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        n,
                        "provided port is already allocated",
                    )),
                    Some(n) => {
                        taken.insert(n);
                    }
                    None => {
                        let keep = old_ports
                            .iter()
                            .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                            .and_then(|o| o["nodePort"].as_i64());
                        let n = keep.or_else(|| NODE_PORTS.clone().find(|n| !taken.contains(n)));
                        match n {
                            Some(n) => {
                                taken.insert(n);
                                p["nodePort"] = json!(n);
                            }
                            None => {
                                return Err(ApiError::new(
                                    500,
                                    "InternalError",
                                    "range is full: no node port left to allocate",
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let info = berth_api::registry::find_builtin("", "v1", "services")
            .ok_or_else(|| ApiError::internal("no services resource"))?;
        Err(ApiError::invalid(info, &name, &errors))
    }
}

/// Creates the `kubernetes` Service, its Endpoints and its EndpointSlice in `default`,
/// pointing at this server.
pub async fn bootstrap(app: &App) -> ApiResult<()> {
    let (net, _) = SERVICE_NET;
    let ip = Ipv4Addr::from(u32::from(net) + 1).to_string();
    let port = app.config.port;
    let svc = json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": { "name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": object::now(),
                      "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": { "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                  "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                  "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": port }] },
        "status": { "loadBalancer": {} },
    });
    let endpoints = json!({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": { "name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": object::now(),
                      "labels": { "endpointslice.kubernetes.io/skip-mirror": "true" } },
        "subsets": [{ "addresses": [{ "ip": app.config.bind_address.to_string() }], "ports": [{ "name": "https", "port": port, "protocol": "TCP" }] }],
    });
    // Its EndpointSlice is written here too, as kube-apiserver's endpoint reconciler does
    // (hence skip-mirror on the Endpoints above), so that slice readers find the server.
    let slice = json!({
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": { "name": "kubernetes", "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": object::now(),
                      "labels": { "kubernetes.io/service-name": "kubernetes" } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [app.config.bind_address.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    });
    for (key, obj) in [
        (format!("{SERVICES}default/kubernetes"), svc),
        ("/registry/core/endpoints/default/kubernetes".to_string(), endpoints),
        ("/registry/discovery.k8s.io/endpointslices/default/kubernetes".to_string(), slice),
    ] {
        match app.store.get(&key).await? {
            None => match app.store.create(&key, Bytes::from(object::encode_for_store(&obj))).await {
                Ok(_) | Err(berth_store::Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Some(kv) if !key.starts_with(SERVICES) => {
                // The server's address or port may have changed since the last start.
                let mut current: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
                let mut changed = false;
                for field in ["subsets", "endpoints", "ports"] {
                    if obj.get(field).is_some() && current[field] != obj[field] {
                        current[field] = obj[field].clone();
                        changed = true;
                    }
                }
                if changed {
                    let _ =
                        app.store.update(&key, Bytes::from(object::encode_for_store(&current)), kv.mod_revision).await;
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_range() {
        assert!(in_range("10.43.0.1".parse().unwrap()));
        assert!(in_range("10.43.255.254".parse().unwrap()));
        assert!(!in_range("10.43.0.0".parse().unwrap()));
        assert!(!in_range("10.43.255.255".parse().unwrap()));
        assert!(!in_range("10.44.0.1".parse().unwrap()));
    }
}
