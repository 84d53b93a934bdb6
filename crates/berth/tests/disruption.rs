//! PodDisruptionBudget status from the disruption controller, and `kubectl drain` blocked
//! by a budget, then allowed, against the real server (pods' readiness played through the API).

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";
const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/budget";

fn ready_pod(s: &TestServer, name: &str) {
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "labels": { "app": "db" } },
        "spec": { "nodeName": "n1", "terminationGracePeriodSeconds": 0,
            "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
    let (code, mut p) = s.http_json("POST", PODS, Some(&pod));
    assert_eq!(code, 201, "{p}");
    p["status"] = json!({ "phase": "Running", "podIP": "10.42.0.9",
        "conditions": [{ "type": "Ready", "status": "True" }] });
    let (code, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
    assert_eq!(code, 200, "{v}");
}

fn budget(s: &TestServer) -> Value {
    s.http_json("GET", PDB, None).1
}

fn pods_left(s: &TestServer) -> usize {
    s.http_json("GET", PODS, None).1["items"].as_array().map_or(0, Vec::len)
}

/// Waits until the budget's status has caught up with its spec and reports `allowed`.
fn wait_allowed(s: &TestServer, allowed: i64) -> Value {
    assert!(
        wait_until(WAIT, || {
            let b = budget(s);
            b["status"]["observedGeneration"] == b["metadata"]["generation"]
                && b["status"]["disruptionsAllowed"] == allowed
        }),
        "budget: {}\n{}",
        budget(s),
        s.log()
    );
    budget(s)
}

#[test]
fn drain_is_blocked_by_a_budget_then_allowed() {
    // The node has no Lease: a long grace period keeps the node lifecycle controller out of this.
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--node-monitor-grace-period", "1h"],
    );
    let (code, v) = s.http_json(
        "POST",
        "/api/v1/nodes",
        Some(&json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } })),
    );
    assert_eq!(code, 201, "{v}");
    ready_pod(&s, "a");
    ready_pod(&s, "b");
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: budget }\nspec: { minAvailable: 2, selector: { matchLabels: { app: db } } }\n"),
    );
    let b = wait_allowed(&s, 0);
    assert_eq!(b["status"]["currentHealthy"], 2);
    assert_eq!(b["status"]["desiredHealthy"], 2);
    assert_eq!(b["status"]["expectedPods"], 2);
    let cond = &b["status"]["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str(), cond["reason"].as_str()),
        (Some("DisruptionAllowed"), Some("False"), Some("InsufficientPods"))
    );
    // kubectl shows the budget.
    let out = s.kubectl_ok(&["get", "pdb", "budget"]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()[..4] == ["budget", "2", "N/A", "0"]),
        "{out}"
    );

    // Blocked: kubectl drain retries the eviction until its timeout.
    let drain = ["drain", "n1", "--force", "--ignore-daemonsets", "--timeout=8s"];
    let err = s.kubectl_err(&drain, None);
    assert!(err.contains("disruption budget"), "{err}");
    assert_eq!(pods_left(&s), 2);
    let (_, node) = s.http_json("GET", "/api/v1/nodes/n1", None);
    assert_eq!(node["spec"]["unschedulable"], true, "drain cordons the node");

    // One disruption allowed: one pod goes, the other still blocks.
    s.kubectl_ok(&["patch", "pdb", "budget", "--type=merge", "-p", r#"{"spec":{"minAvailable":1}}"#]);
    wait_allowed(&s, 1);
    s.kubectl_err(&drain, None);
    assert_eq!(pods_left(&s), 1);
    assert!(wait_until(WAIT, || budget(&s)["status"]["currentHealthy"] == 1), "{}", budget(&s));
    let b = wait_allowed(&s, 0);
    assert_eq!(b["status"]["expectedPods"], 1);

    // None required: the drain completes.
    s.kubectl_ok(&["patch", "pdb", "budget", "--type=merge", "-p", r#"{"spec":{"minAvailable":0}}"#]);
    wait_allowed(&s, 1);
    s.kubectl_ok(&drain);
    assert_eq!(pods_left(&s), 0);
    // The evicted pods are gone: nothing healthy, nothing expected, no disruption pending.
    assert!(
        wait_until(WAIT, || {
            let st = &budget(&s)["status"];
            st["currentHealthy"] == 0
                && st["expectedPods"] == 0
                && st["disruptionsAllowed"] == 0
                && st.get("disruptedPods").is_none_or(|d| d.as_object().is_none_or(|m| m.is_empty()))
        }),
        "{}",
        budget(&s)
    );
}

#[test]
fn percentages_need_controllers() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    ready_pod(&s, "bare");
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: budget }\nspec: { maxUnavailable: 50%, selector: { matchLabels: { app: db } } }\n"),
    );
    assert!(
        wait_until(WAIT, || budget(&s)["status"]["conditions"][0]["reason"] == "SyncFailed"),
        "budget: {}",
        budget(&s)
    );
    let b = budget(&s);
    assert_eq!(b["status"]["disruptionsAllowed"], 0);
    assert!(b["status"]["conditions"][0]["message"].as_str().unwrap_or("").contains("found no controllers"), "{b}");
}
