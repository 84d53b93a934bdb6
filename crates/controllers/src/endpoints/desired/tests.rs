//! Endpoints and slices computed from services and pods.

use super::*;
use serde_json::json;

fn svc(extra: serde_json::Value) -> Service {
    let mut v = json!({ "metadata": { "name": "web", "namespace": "ns", "uid": "svc-uid", "labels": { "app": "web" } },
        "spec": { "selector": { "app": "web" }, "ports": [
            { "name": "http", "port": 80, "targetPort": "http" },
            { "name": "metrics", "port": 9090, "targetPort": 9090 } ] } });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b.clone()) {
        for (k, v) in b {
            merge(a.entry(k).or_insert(serde_json::Value::Null), v);
        }
    } else {
        *a = b;
    }
}

/// A pod with `ip`, readiness, and container port `http` at `http_port` (none when 0).
fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
    let ports = if http_port > 0 { json!([{ "name": "http", "containerPort": http_port }]) } else { json!([]) };
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "ns", "uid": format!("{name}-uid"), "labels": { "app": "web" } },
        "spec": { "nodeName": "n1", "containers": [{ "name": "c", "image": "i", "ports": ports }] },
        "status": { "phase": "Running", "podIP": ip,
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] }
    }))
    .unwrap()
}

fn ips(addrs: &Option<Vec<EndpointAddress>>) -> Vec<String> {
    addrs.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[test]
fn endpoints_split_ready_and_not_ready_and_resolve_named_ports_per_pod() {
    let s = svc(json!({}));
    let a = pod("a", "10.0.0.1", true, 8080);
    let b = pod("b", "10.0.0.2", false, 8080);
    let c = pod("c", "10.0.0.3", true, 8081);
    let no_ip = pod("d", "", true, 8080);
    let no_named_port = pod("e", "10.0.0.5", true, 0);
    let subsets = endpoint_subsets(&s, &[&a, &b, &c, &no_ip, &no_named_port]);
    // Three port sets: 8080+9090 (a, b), 8081+9090 (c), 9090 only (e, whose named port is missing).
    assert_eq!(subsets.len(), 3, "{subsets:?}");
    let by_port = |n: i32| subsets.iter().find(|s| s.ports.iter().flatten().any(|p| p.port == n)).unwrap();
    let s8080 = by_port(8080);
    assert_eq!(ips(&s8080.addresses), ["10.0.0.1"]);
    assert_eq!(ips(&s8080.not_ready_addresses), ["10.0.0.2"]);
    assert_eq!(ips(&by_port(8081).addresses), ["10.0.0.3"]);
    let only_metrics = subsets.iter().find(|s| s.ports.as_ref().unwrap().len() == 1).unwrap();
    assert_eq!(ips(&only_metrics.addresses), ["10.0.0.5"]);
    let addr = &s8080.addresses.as_ref().unwrap()[0];
    assert_eq!(addr.node_name.as_deref(), Some("n1"));
    assert_eq!(addr.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    let ep = endpoints(&s, &[&a]);
    assert_eq!(ep.metadata.labels.unwrap().get(SKIP_MIRROR).map(String::as_str), Some("true"));
}

#[test]
fn publish_not_ready_addresses_and_terminal_and_terminating_pods() {
    let s = svc(json!({ "spec": { "publishNotReadyAddresses": true } }));
    let b = pod("b", "10.0.0.2", false, 8080);
    let subsets = endpoint_subsets(&s, &[&b]);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.2"]);
    let mut done = pod("done", "10.0.0.9", false, 8080);
    done.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    assert!(!should_be_in_endpoints(&done, true));
    let mut going = pod("going", "10.0.0.8", true, 8080);
    going.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
    assert!(!should_be_in_endpoints(&going, false));
    assert!(should_be_in_endpoints(&going, true));
    // In slices the terminating pod stays, serving but not ready.
    let plain = svc(json!({}));
    let contents = slices(&plain, &[&going]);
    let cond = contents[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!((cond.ready, cond.serving, cond.terminating), (Some(false), Some(true), Some(true)));
    assert!(endpoint_subsets(&plain, &[&going]).is_empty());
}

#[test]
fn slices_hold_at_most_100_endpoints_and_plans_reuse_slices() {
    let s = svc(json!({}));
    let pods: Vec<Pod> =
        (0..250).map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 200, i % 200), true, 8080)).collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let contents = slices(&s, &refs);
    assert_eq!(contents.iter().map(|c| c.endpoints.len()).collect::<Vec<_>>(), [100, 100, 50]);
    assert!(contents.iter().all(|c| c.ports.len() == 2));
    let owner = controller_ref("Service", &s.metadata);
    let objects: Vec<EndpointSlice> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut o = slice_object(&s, CONTROLLER, owner.clone(), None, c.clone());
            o.metadata.name = Some(format!("web-{i}"));
            o
        })
        .collect();
    let first = &objects[0];
    assert_eq!(first.address_type, "IPv4");
    let labels = first.metadata.labels.clone().unwrap();
    assert_eq!(labels.get(SERVICE_NAME).map(String::as_str), Some("web"));
    assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some(CONTROLLER));
    assert_eq!(first.metadata.generate_name.as_deref(), Some("web-"));
    // Nothing changed: nothing to write.
    assert_eq!(plan_slices(&objects, contents.clone()), SlicePlan::default());
    // One pod fewer: the slices from there on change in place, none created or deleted.
    let fewer = slices(&s, &refs[1..]);
    let plan = plan_slices(&objects, fewer);
    assert!(plan.create.is_empty() && plan.delete.is_empty() && !plan.update.is_empty(), "{plan:?}");
    // No pods: one placeholder slice is kept (the first one, rewritten empty), the rest deleted.
    let none = slices(&s, &[]);
    assert_eq!(none, [SliceContent { ports: Vec::new(), endpoints: Vec::new() }]);
    let plan = plan_slices(&objects, none.clone());
    assert_eq!((plan.update.len(), plan.create.len(), plan.delete.as_slice()), (1, 0, &[1, 2][..]));
    let placeholder = slice_object(&s, CONTROLLER, owner.clone(), None, none[0].clone());
    assert!(placeholder.ports.is_none() && placeholder.endpoints.is_empty());
    // An existing placeholder is left alone.
    assert_eq!(plan_slices(&[placeholder], none.clone()), SlicePlan::default());
    // Non-IPv4 addresses are left out.
    let v6 = pod("v6", "fd00::1", true, 8080);
    assert_eq!(slices(&s, &[&v6]), none);
}

#[test]
fn manual_endpoints_are_mirrored() {
    let ep: Endpoints = serde_json::from_value(json!({ "metadata": { "name": "ext", "namespace": "ns" },
        "subsets": [{ "addresses": [{ "ip": "192.168.1.1" }], "notReadyAddresses": [{ "ip": "192.168.1.2" }],
            "ports": [{ "name": "db", "port": 5432 }] }] }))
    .unwrap();
    let contents = mirrored(&ep);
    assert_eq!(contents.len(), 1);
    let readiness: Vec<(String, Option<bool>)> =
        contents[0].endpoints.iter().map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready)).collect();
    assert_eq!(readiness, [("192.168.1.1".to_string(), Some(true)), ("192.168.1.2".to_string(), Some(false))]);
    assert_eq!(contents[0].ports[0].port, Some(5432));
    assert_eq!(contents[0].ports[0].protocol.as_deref(), Some("TCP"));
}

#[test]
fn selectors_need_every_label() {
    let p = pod("a", "10.0.0.1", true, 80);
    assert!(selects(&[("app".to_string(), "web".to_string())].into(), &p));
    assert!(!selects(&[("app".to_string(), "db".to_string())].into(), &p));
    assert!(!selects(&BTreeMap::new(), &p), "an empty selector selects nothing here");
}

fn addresses(prefix: &str, n: usize) -> Option<Vec<EndpointAddress>> {
    Some(
        (0..n)
            .map(|i| EndpointAddress { ip: format!("{prefix}.{}.{}", i / 250, i % 250), ..Default::default() })
            .collect(),
    )
}

#[test]
fn endpoints_over_capacity_are_truncated_as_kubernetes_does() {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    // Within capacity: untouched.
    let mut fine = vec![EndpointSubset {
        addresses: addresses("10.0", 600),
        not_ready_addresses: addresses("10.1", 400),
        ports: None,
    }];
    assert!(!truncate(&mut fine));
    assert_eq!((len(&fine[0].addresses), len(&fine[0].not_ready_addresses)), (600, 400));
    // Too many with the not-ready ones: only those are cut.
    let mut some = vec![EndpointSubset {
        addresses: addresses("10.0", 900),
        not_ready_addresses: addresses("10.1", 200),
        ports: None,
    }];
    assert!(truncate(&mut some));
    assert_eq!((len(&some[0].addresses), len(&some[0].not_ready_addresses)), (900, 100));
    // Too many ready ones: every not-ready one goes, each subset keeps its share rounded up.
    let mut many = vec![
        EndpointSubset { addresses: addresses("10.0", 800), not_ready_addresses: addresses("10.1", 50), ports: None },
        EndpointSubset { addresses: addresses("10.2", 400), not_ready_addresses: None, ports: None },
    ];
    assert!(truncate(&mut many));
    assert_eq!((len(&many[0].addresses), len(&many[1].addresses)), (667, 333));
    assert!(many.iter().all(|s| s.not_ready_addresses.is_none()));
}
