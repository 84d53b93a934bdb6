//! The real node agent's admission of pods bound past the scheduler (`spec.nodeName` set by
//! their author), as the kubelet's: a pod that does not fit the node's allocatable less the
//! pods it admitted (OutOfcpu, OutOfpods), whose nodeSelector does not match (NodeAffinity)
//! or that does not tolerate a NoExecute taint (TaintToleration) is Failed with the
//! kubelet's reason and message and a Warning event, never started, and does not count
//! against the pods after it. Real `berth server`, `berth agent` (containerd, runc, CNI),
//! busybox pods, real kubectl.
//!
//! Bridge `btest54` (pod CIDR 10.88.54.0/24), held through [`Node`]'s bridge lock; the guard
//! stops the agent by PID and deletes its bridge even when the test fails. Without
//! containerd the test skips, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use berth_testkit::TestServer;
use common::*;
use serde_json::{Value, json};

/// A sleeping busybox pod bound to `node` with `cpu` requested (milli-CPUs; none if 0).
fn bound(name: &str, node: &Node, cpu: u64) -> Value {
    let mut container = json!({ "command": ["sh", "-c", "exec sleep 3600"] });
    if cpu > 0 {
        container["resources"] = json!({ "requests": { "cpu": format!("{cpu}m") } });
    }
    let mut pod = busybox_pod(name, node, container, "Always");
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    pod
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

/// Waits for pod `name` to be rejected and checks its status, its event and that nothing
/// of it ran; returns the message after "Pod was rejected: ".
fn rejected(s: &TestServer, node: &Node, name: &str, reason: &str) -> String {
    let p = wait_pod(s, node, name, "was rejected", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], reason, "{p:#}");
    let message = p["status"]["message"].as_str().unwrap_or_default();
    let message = message.strip_prefix("Pod was rejected: ").unwrap_or_else(|| panic!("{p:#}")).to_string();
    assert!(p["status"]["containerStatuses"][0]["containerID"].is_null(), "it ran: {p:#}");
    // kubectl shows the reason as the pod's STATUS.
    let shown = s.kubectl_ok(&["get", "pod", name, "--no-headers"]);
    assert_eq!(shown.split_whitespace().nth(2), Some(reason), "{shown}");
    let path = format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let (_, events) = s.http_json("GET", &path, None);
    let found = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["type"] == "Warning" && e["reason"] == reason && e["message"] == message.as_str());
    assert!(found, "no Warning {reason} event {message:?}: {events:#}");
    message
}

#[test]
fn pods_bound_past_the_scheduler_are_admitted_as_the_kubelet_does() {
    let s = server();
    let Some(node) = Node::start_with(&s, 54, &["--max-pods", "3", "--node-labels", "disk=ssd"]) else { return };
    let allocatable = s.kubectl_ok(&["get", "node", &node.name, "-o", "jsonpath={.status.allocatable.cpu}"]);
    let allocatable = allocatable.trim();
    let capacity: u64 = match allocatable.strip_suffix('m') {
        Some(milli) => milli.parse().unwrap(),
        None => allocatable.parse::<u64>().unwrap() * 1000,
    };
    let half = capacity / 2;

    // Half the node's CPU runs; asking for more than the other half is refused.
    apply(&s, &bound("half", &node, half));
    wait_pod(&s, &node, "half", "ran", running);
    apply(&s, &bound("too-much", &node, capacity - half + 100));
    let message = rejected(&s, &node, "too-much", "OutOfcpu");
    let want = format!(
        "Node didn't have enough resource: cpu, requested: {}, used: {half}, capacity: {capacity}",
        capacity - half + 100
    );
    assert_eq!(message, want);

    // The rejected pod holds nothing: the other half still fits.
    apply(&s, &bound("other-half", &node, capacity - half));
    wait_pod(&s, &node, "other-half", "ran", running);

    // A matching nodeSelector runs; the node's three pods are then all it takes.
    let mut selected = bound("selected", &node, 0);
    selected["spec"]["nodeSelector"] = json!({ "disk": "ssd" });
    apply(&s, &selected);
    wait_pod(&s, &node, "selected", "ran", running);
    apply(&s, &bound("fourth", &node, 0));
    let message = rejected(&s, &node, "fourth", "OutOfpods");
    assert_eq!(message, "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3");

    // Once a pod is gone its place is free again; a nodeSelector that does not match is refused.
    s.kubectl_ok(&["delete", "pod", "other-half", "--timeout=60s"]);
    let mut elsewhere = bound("elsewhere", &node, 0);
    elsewhere["spec"]["nodeSelector"] = json!({ "disk": "hdd" });
    apply(&s, &elsewhere);
    let message = rejected(&s, &node, "elsewhere", "NodeAffinity");
    assert_eq!(message, "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector");

    // A NoExecute taint added to the Node: a pod without a toleration is refused, one with
    // a toleration runs (the refused one leaves it its place).
    s.kubectl_ok(&["taint", "node", &node.name, "dedicated=db:NoExecute"]);
    let mut untolerated = bound("untolerated", &node, 0);
    untolerated["spec"]["tolerations"] = json!([{ "key": "dedicated", "value": "web", "effect": "NoExecute" }]);
    apply(&s, &untolerated);
    let message = rejected(&s, &node, "untolerated", "TaintToleration");
    assert_eq!(message, "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate");
    let mut tolerated = bound("tolerated", &node, 0);
    tolerated["spec"]["tolerations"] = json!([{ "key": "dedicated", "value": "db", "effect": "NoExecute" }]);
    apply(&s, &tolerated);
    wait_pod(&s, &node, "tolerated", "ran", running);
}
