//! Pods through the API: defaults and status at creation, binding to a node, graceful
//! deletion of bound pods, eviction, and deletecollection with selectors.

use std::path::Path;

use berth_testkit::TestServer;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// These tests bind pods themselves: no scheduler.
fn server() -> TestServer {
    // The tests bind pods to nodes that do not exist and play the kubelet: no scheduler,
    // and no pod GC to collect pods of missing nodes.
    TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--disable-controllers", "podgc"],
    )
}

fn pod(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "labels": { "app": "p" } },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36", "resources": { "limits": { "cpu": "100m", "memory": "64Mi" } } }] } })
}

#[test]
fn a_new_pod_is_pending_with_defaults() {
    let s = server();
    let (code, p) = s.http_json("POST", PODS, Some(&pod("a")));
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    assert_eq!(p["spec"]["containers"][0]["resources"]["requests"]["cpu"], "100m");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let out = s.kubectl_ok(&["get", "pods"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert!(out.contains("0/1") && out.contains("Pending"), "{out}");
    // The spec of a pod is immutable but for images.
    let r = s.http(
        "PATCH",
        &format!("{PODS}/a"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"containers":[{"name":"c","command":["sh"]}]}}"#,
    );
    assert_eq!(r.status, 422, "{}", r.json());
    let r = s.http(
        "PATCH",
        &format!("{PODS}/a"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"containers":[{"name":"c","image":"busybox:1.37"}]}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
}

#[test]
fn binding_assigns_a_node_once_and_bound_pods_delete_gracefully() {
    let s = server();
    s.http_json("POST", PODS, Some(&pod("b")));
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "b" }, "target": { "apiVersion": "v1", "kind": "Node", "name": "node-1" } });
    let (code, v) = s.http_json("POST", &format!("{PODS}/b/binding"), Some(&binding));
    assert_eq!(code, 201, "{v}");
    let (_, p) = s.http_json("GET", &format!("{PODS}/b"), None);
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert!(
        p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "PodScheduled" && c["status"] == "True")
    );
    let (code, v) = s.http_json("POST", &format!("{PODS}/b/binding"), Some(&binding));
    assert_eq!(code, 409, "{v}");
    // A bound pod is only marked: its node stops it within the grace period.
    let (code, v) = s.http_json("DELETE", &format!("{PODS}/b"), None);
    assert_eq!(code, 200);
    assert_eq!(v["metadata"]["deletionGracePeriodSeconds"], 30, "{v}");
    assert!(s.kubectl_ok(&["get", "pods"]).contains("Terminating"));
    // The node's final delete (grace 0) removes it.
    let (code, _) = s.http_json("DELETE", &format!("{PODS}/b?gracePeriodSeconds=0"), None);
    assert_eq!(code, 200);
    assert_eq!(s.http_json("GET", &format!("{PODS}/b"), None).0, 404);
}

#[test]
fn unbound_pods_are_deleted_at_once_and_eviction_deletes() {
    let s = server();
    s.http_json("POST", PODS, Some(&pod("c")));
    assert_eq!(s.http_json("DELETE", &format!("{PODS}/c"), None).0, 200);
    assert_eq!(s.http_json("GET", &format!("{PODS}/c"), None).0, 404);
    s.http_json("POST", PODS, Some(&pod("d")));
    let eviction =
        json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "d", "namespace": "default" } });
    let (code, v) = s.http_json("POST", &format!("{PODS}/d/eviction"), Some(&eviction));
    assert_eq!(code, 201, "{v}");
    assert_eq!(s.http_json("GET", &format!("{PODS}/d"), None).0, 404);
}

#[test]
fn deletecollection_honours_selectors() {
    let s = server();
    for (name, app) in [("x1", "x"), ("x2", "x"), ("y1", "y")] {
        let mut p = pod(name);
        p["metadata"]["labels"]["app"] = json!(app);
        s.http_json("POST", PODS, Some(&p));
    }
    let (code, v) = s.http_json("DELETE", &format!("{PODS}?labelSelector=app%3Dx"), None);
    assert_eq!(code, 200, "{v}");
    let (_, list) = s.http_json("GET", PODS, None);
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["y1"]);
}

#[test]
fn eviction_honours_pod_disruption_budgets() {
    // The budget's status is written by the test, not by the disruption controller.
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--disable-controllers", "disruption,podgc"],
    );
    s.http_json("POST", PODS, Some(&pod("r")));
    // Running, so a budget applies.
    let r = s.http(
        "PATCH",
        &format!("{PODS}/r/status"),
        Some("application/merge-patch+json"),
        br#"{"status":{"phase":"Running"}}"#,
    );
    assert_eq!(r.status, 200);
    let pdb = json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "budget" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "p" } } } });
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    assert_eq!(s.http_json("POST", pdbs, Some(&pdb)).0, 201);
    let eviction =
        json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "r", "namespace": "default" } });
    // No status computed yet: refused.
    let (code, v) = s.http_json("POST", &format!("{PODS}/r/eviction"), Some(&eviction));
    assert_eq!(code, 429, "{v}");
    assert_eq!(v["details"]["causes"][0]["reason"], "DisruptionBudget");
    // The budget allows none: refused.
    let status = |allowed: i64| {
        format!(
            r#"{{"status":{{"observedGeneration":1,"disruptionsAllowed":{allowed},"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}}}"#
        )
    };
    s.http("PATCH", &format!("{pdbs}/budget/status"), Some("application/merge-patch+json"), status(0).as_bytes());
    let (code, v) = s.http_json("POST", &format!("{PODS}/r/eviction"), Some(&eviction));
    assert_eq!(code, 429, "{v}");
    assert!(v["details"]["causes"][0]["message"].as_str().unwrap().contains("needs 1 healthy pods"), "{v}");
    assert_eq!(s.http_json("GET", &format!("{PODS}/r"), None).0, 200);
    // One allowed: the pod goes, and the budget is spent.
    s.http("PATCH", &format!("{pdbs}/budget/status"), Some("application/merge-patch+json"), status(1).as_bytes());
    let (code, v) = s.http_json("POST", &format!("{PODS}/r/eviction"), Some(&eviction));
    assert_eq!(code, 201, "{v}");
    assert_eq!(s.http_json("GET", &format!("{PODS}/r"), None).0, 404);
    let (_, budget) = s.http_json("GET", &format!("{pdbs}/budget"), None);
    assert_eq!(budget["status"]["disruptionsAllowed"], 0);
    assert!(budget["status"]["disruptedPods"]["r"].is_string(), "{budget}");
}

#[test]
fn bad_volumes_and_env_are_refused_with_every_cause() {
    let s = server();
    let mut p = pod("vols");
    p["spec"]["volumes"] = json!([{"name": "conf", "configMap": {"name": "m", "items": [{"key": "k", "path": "../escape"}]}},
        {"name": "host", "hostPath": {"path": "/var/../etc"}}]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "conf", "mountPath": "/etc/conf"}, {"name": "host", "mountPath": "/etc/conf"}]);
    p["spec"]["containers"][0]["env"] = json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}]);
    let (code, v) = s.http_json("POST", PODS, Some(&p));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["reason"], "Invalid");
    let causes: Vec<String> = v["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| format!("{}: {}", c["field"].as_str().unwrap_or(""), c["message"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        causes,
        [
            r#"spec.volumes[0].configMap.items[0].path: Invalid value: "../escape": must not contain '..'"#,
            r#"spec.volumes[1].hostPath.path: Invalid value: "/var/../etc": must not contain '..'"#,
            "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",
            r#"spec.containers[0].volumeMounts[0].name: Not found: "conf""#,
            r#"spec.containers[0].volumeMounts[1].name: Not found: "host""#,
            r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/etc/conf": must be unique"#,
        ],
        "{v}"
    );
    assert!(v["details"]["causes"].as_array().expect("causes").iter().any(|c| c["reason"] == "FieldValueNotFound"));
    // Nothing was written.
    assert_eq!(s.http_json("GET", &format!("{PODS}/vols"), None).0, 404);
    // The same pod with valid volumes is accepted and mounts them.
    p["spec"]["volumes"][0]["configMap"]["items"][0]["path"] = json!("conf/k");
    p["spec"]["volumes"][1]["hostPath"]["path"] = json!("/var/log");
    p["spec"]["containers"][0]["volumeMounts"][1]["mountPath"] = json!("/var/log/host");
    p["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"] = json!("password");
    let (code, v) = s.http_json("POST", PODS, Some(&p));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
}
