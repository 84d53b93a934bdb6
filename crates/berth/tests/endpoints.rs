//! Endpoints and EndpointSlices against the real server: a Service's pods, their
//! readiness played through the API (no node agent here), named ports, termination, and
//! manual Endpoints of a selector-less Service mirrored into slices.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, port: i32) -> Value {
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36", "ports": [{ "name": "http", "containerPort": port }] }] } })
}

/// A server whose pods the test runs itself: no scheduler (there are no nodes to bind to)
/// to write their status meanwhile, and no pod GC (which fails a deleted pod that has no
/// node, where these pods run on the test's word alone).
fn server() -> TestServer {
    TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--disable-controllers", "podgc"],
    )
}

/// Plays the kubelet: the pod runs at `ip` and is (not) ready.
fn set_status(s: &TestServer, name: &str, ip: &str, ready: bool) {
    let (code, mut p) = s.http_json("GET", &format!("{PODS}/{name}"), None);
    assert_eq!(code, 200, "{p}");
    let status = if ready { "True" } else { "False" };
    p["status"] = json!({ "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }], "hostIP": "192.168.0.10",
        "conditions": [{ "type": "Ready", "status": status }, { "type": "ContainersReady", "status": status }] });
    let (code, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
    assert_eq!(code, 200, "{v}");
}

fn endpoints(s: &TestServer, name: &str) -> Value {
    s.http_json("GET", &format!("/api/v1/namespaces/default/endpoints/{name}"), None).1
}

fn slices(s: &TestServer, service: &str) -> Vec<Value> {
    let path = format!(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{service}"
    );
    s.http_json("GET", &path, None).1["items"].as_array().cloned().unwrap_or_default()
}

fn ips(v: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_array().into_iter().flatten().filter_map(|a| a["ip"].as_str().map(String::from)).collect();
    out.sort();
    out
}

/// (address, ready, serving, terminating) of every endpoint of the service's slices.
fn slice_endpoints(s: &TestServer, service: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<(String, bool, bool, bool)> = slices(s, service)
        .iter()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["addresses"][0].as_str().unwrap_or("").to_string(),
                c["ready"] == true,
                c["serving"] == true,
                c["terminating"] == true,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn endpoints_follow_pod_readiness() {
    let s = server();
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Service
metadata: { name: web, labels: { tier: front } }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
"#,
        ),
    );
    for (name, port) in [("a", 8080), ("b", 8080), ("c", 9000)] {
        let (code, v) = s.http_json("POST", PODS, Some(&pod(name, port)));
        assert_eq!(code, 201, "{v}");
    }
    // No pod has an IP yet: an Endpoints object with no subsets, and one placeholder slice
    // with no endpoints.
    assert!(wait_until(WAIT, || endpoints(&s, "web")["metadata"]["name"] == "web"), "no Endpoints:\n{}", s.log());
    assert!(
        wait_until(WAIT, || {
            let sl = slices(&s, "web");
            sl.len() == 1 && sl[0]["endpoints"].as_array().is_none_or(Vec::is_empty) && sl[0]["ports"].is_null()
        }),
        "slices: {:?}",
        slices(&s, "web")
    );
    set_status(&s, "a", "10.42.0.1", true);
    set_status(&s, "b", "10.42.0.2", false);
    set_status(&s, "c", "10.42.0.3", true);
    assert!(
        wait_until(WAIT, || {
            let ep = endpoints(&s, "web");
            let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
            let ready: Vec<String> = subsets.iter().flat_map(|x| ips(&x["addresses"])).collect();
            let not_ready: Vec<String> = subsets.iter().flat_map(|x| ips(&x["notReadyAddresses"])).collect();
            ready.len() == 2 && not_ready == ["10.42.0.2"]
        }),
        "endpoints: {}",
        endpoints(&s, "web")
    );
    // Named target ports resolve per pod: c's port is 9000, a's 8080.
    let ep = endpoints(&s, "web");
    let port_of = |ip: &str| {
        ep["subsets"].as_array().unwrap().iter().find(|x| ips(&x["addresses"]).contains(&ip.to_string())).unwrap()["ports"][0]["port"]
            .clone()
    };
    assert_eq!(port_of("10.42.0.1"), 8080);
    assert_eq!(port_of("10.42.0.3"), 9000);
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    // kubectl shows them.
    let out = s.kubectl_ok(&["get", "endpoints", "web"]);
    assert!(out.contains("10.42.0.1:8080"), "{out}");

    // Slices: the same pods, with conditions.
    assert!(
        wait_until(WAIT, || slice_endpoints(&s, "web")
            == [
                ("10.42.0.1".into(), true, true, false),
                ("10.42.0.2".into(), false, false, false),
                ("10.42.0.3".into(), true, true, false)
            ]),
        "slices: {:?}",
        slices(&s, "web")
    );
    let sl = &slices(&s, "web")[0];
    assert_eq!(sl["addressType"], "IPv4");
    assert_eq!(sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(sl["metadata"]["ownerReferences"][0]["kind"], "Service");

    // b turns ready, a stops being ready.
    set_status(&s, "b", "10.42.0.2", true);
    set_status(&s, "a", "10.42.0.1", false);
    assert!(
        wait_until(WAIT, || slice_endpoints(&s, "web")
            == [
                ("10.42.0.1".into(), false, false, false),
                ("10.42.0.2".into(), true, true, false),
                ("10.42.0.3".into(), true, true, false)
            ]),
        "slices: {:?}",
        slice_endpoints(&s, "web")
    );
    // A terminating pod (held by a finalizer) leaves Endpoints but stays in slices as terminating.
    s.kubectl_ok(&["patch", "pod", "c", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold"]}}"#]);
    s.kubectl_ok(&["delete", "pod", "c", "--wait=false"]);
    assert!(
        wait_until(WAIT, || slice_endpoints(&s, "web").contains(&("10.42.0.3".into(), false, true, true))),
        "slices: {:?}",
        slice_endpoints(&s, "web")
    );
    assert!(wait_until(WAIT, || !endpoints(&s, "web").to_string().contains("10.42.0.3")));
    // Relabelled away from the selector, a pod leaves.
    s.kubectl_ok(&["label", "pod", "b", "app=other", "--overwrite"]);
    assert!(wait_until(WAIT, || !endpoints(&s, "web").to_string().contains("10.42.0.2")), "{}", endpoints(&s, "web"));
    assert!(wait_until(WAIT, || slice_endpoints(&s, "web").iter().all(|e| e.0 != "10.42.0.2")));
    // The Service deleted: its slices go with it (owner references, garbage collector).
    s.kubectl_ok(&["delete", "service", "web"]);
    assert!(wait_until(WAIT, || slices(&s, "web").is_empty()), "slices left: {:?}", slices(&s, "web"));
}

#[test]
fn the_kubernetes_service_has_a_slice_with_the_servers_address() {
    let s = server();
    let port: i64 = s.addr.rsplit(':').next().unwrap().parse().unwrap();
    let (code, sl) = s.http_json("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes", None);
    assert_eq!(code, 200, "{sl}");
    assert_eq!(sl["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes", "{sl}");
    assert_eq!(sl["addressType"], "IPv4");
    assert_eq!(sl["endpoints"], json!([{ "addresses": ["127.0.0.1"], "conditions": { "ready": true } }]));
    assert_eq!(sl["ports"], json!([{ "name": "https", "port": port, "protocol": "TCP" }]));
    // No controller claims it: it is still there, unchanged, once they have run.
    std::thread::sleep(Duration::from_secs(2));
    let (_, again) = s.http_json("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes", None);
    assert_eq!(again["metadata"]["resourceVersion"], sl["metadata"]["resourceVersion"]);
    let out = s.kubectl_ok(&["get", "endpointslices", "-n", "default"]);
    let line = out.lines().find(|l| l.starts_with("kubernetes ")).unwrap_or_default();
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[..4], ["kubernetes", "IPv4", port.to_string().as_str(), "127.0.0.1"], "{out}");
}

#[test]
fn publish_not_ready_addresses_and_many_pods_in_slices_of_100() {
    let s = server();
    let svc = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "many" },
        "spec": { "selector": { "app": "web" }, "publishNotReadyAddresses": true, "ports": [{ "port": 80, "targetPort": 8080 }] } });
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc));
    assert_eq!(code, 201, "{v}");
    for i in 0..150 {
        let name = format!("p{i}");
        let (code, v) = s.http_json("POST", PODS, Some(&pod(&name, 8080)));
        assert_eq!(code, 201, "{v}");
        set_status(&s, &name, &format!("10.42.{}.{}", i / 100, i % 100 + 1), false);
    }
    assert!(
        wait_until(WAIT, || {
            let sl = slices(&s, "many");
            let mut sizes: Vec<usize> = sl.iter().map(|x| x["endpoints"].as_array().map_or(0, Vec::len)).collect();
            sizes.sort();
            sizes == [50, 100]
        }),
        "slices: {:?}",
        slices(&s, "many").iter().map(|x| x["endpoints"].as_array().map_or(0, Vec::len)).collect::<Vec<_>>()
    );
    // Not ready, but published: ready everywhere.
    assert!(slice_endpoints(&s, "many").iter().all(|e| e.1 && e.2));
    // The Endpoints (another controller) catch up too.
    assert!(
        wait_until(WAIT, || endpoints(&s, "many")["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(150)),
        "{}",
        endpoints(&s, "many")
    );
    let ep = endpoints(&s, "many");
    assert!(ep["subsets"][0].get("notReadyAddresses").is_none());
}

#[test]
fn manual_endpoints_of_a_selectorless_service_are_mirrored() {
    let s = server();
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Service
metadata: { name: external }
spec:
  ports: [{ name: db, port: 5432 }]
---
apiVersion: v1
kind: Endpoints
metadata: { name: external }
subsets:
- addresses: [{ ip: 192.168.7.1 }, { ip: 192.168.7.2 }]
  notReadyAddresses: [{ ip: 192.168.7.3 }]
  ports: [{ name: db, port: 5432 }]
"#,
        ),
    );
    assert!(
        wait_until(WAIT, || slice_endpoints(&s, "external")
            == [
                ("192.168.7.1".into(), true, true, false),
                ("192.168.7.2".into(), true, true, false),
                ("192.168.7.3".into(), false, false, false)
            ]),
        "mirrored: {:?}\n{}",
        slices(&s, "external"),
        s.log()
    );
    let sl = &slices(&s, "external")[0];
    assert_eq!(
        sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(sl["ports"][0]["port"], 5432);
    // The controller leaves manual Endpoints alone.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ips(&endpoints(&s, "external")["subsets"][0]["addresses"]), ["192.168.7.1", "192.168.7.2"]);
    // An address removed from the Endpoints leaves the slice.
    s.kubectl_ok(&[
        "patch",
        "endpoints",
        "external",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/subsets/0/addresses/1"}]"#,
    ]);
    assert!(wait_until(WAIT, || slice_endpoints(&s, "external").len() == 2), "{:?}", slice_endpoints(&s, "external"));
    // The Endpoints deleted: the mirrored slices go.
    s.kubectl_ok(&["delete", "endpoints", "external"]);
    assert!(wait_until(WAIT, || slices(&s, "external").is_empty()), "{:?}", slices(&s, "external"));
}

#[test]
fn endpoints_over_capacity_are_truncated_and_annotated() {
    let s = server();
    // 1,005 ready pods (played through the API): more than an Endpoints object holds.
    for i in 0..1005 {
        let name = format!("big-{i}");
        let mut p = pod(&name, 8080);
        p["metadata"]["labels"] = json!({ "app": "big" });
        let (code, v) = s.http_json("POST", PODS, Some(&p));
        assert_eq!(code, 201, "{v}");
        set_status(&s, &name, &format!("10.42.{}.{}", i / 250, i % 250 + 1), true);
    }
    // The Service comes last, so its Endpoints are computed once over all of them.
    let (code, v) = s.http_json(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "big" },
            "spec": { "selector": { "app": "big" }, "ports": [{ "port": 80, "targetPort": 8080 }] } })),
    );
    assert_eq!(code, 201, "{v}");
    let annotation = |e: &Value| e["metadata"]["annotations"]["endpoints.kubernetes.io/over-capacity"].clone();
    let count =
        |e: &Value| e["subsets"].as_array().into_iter().flatten().map(|s| ips(&s["addresses"]).len()).sum::<usize>();
    assert!(
        wait_until(WAIT, || {
            let e = endpoints(&s, "big");
            count(&e) == 1000 && annotation(&e) == "truncated"
        }),
        "{} addresses, annotations {}",
        count(&endpoints(&s, "big")),
        endpoints(&s, "big")["metadata"]["annotations"]
    );
    // EndpointSlices have no such limit: every pod is there.
    assert!(wait_until(WAIT, || slice_endpoints(&s, "big").len() == 1005), "{}", slice_endpoints(&s, "big").len());
    // Back under capacity: every address, and the annotation is gone.
    for i in 0..10 {
        let (code, v) = s.http_json("DELETE", &format!("{PODS}/big-{i}"), None);
        assert_eq!(code, 200, "{v}");
    }
    assert!(
        wait_until(WAIT, || {
            let e = endpoints(&s, "big");
            count(&e) == 995 && annotation(&e).is_null()
        }),
        "{}",
        endpoints(&s, "big")["metadata"]
    );
}
