//! Node lifecycle, node IPAM and pod GC against the real server, the test playing the
//! kubelets: Nodes and their Leases in kube-node-lease, renewed (or not) through the API.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn merge_patch(s: &TestServer, path: &str, body: Value) -> Value {
    let r = s.http("PATCH", path, Some("application/merge-patch+json"), body.to_string().as_bytes());
    assert_eq!(r.status, 200, "PATCH {path}: {}", r.json());
    r.json()
}

/// Registers a node as a kubelet does: the Node, Ready, and its Lease.
fn register(s: &TestServer, name: &str) {
    let (code, v) = s.http_json(
        "POST",
        "/api/v1/nodes",
        Some(&json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } })),
    );
    assert_eq!(code, 201, "{v}");
    heartbeat(s, name);
    let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": name },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now() } });
    let (code, v) = s.http_json("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", Some(&lease));
    assert_eq!(code, 201, "{v}");
}

/// The kubelet's status: Ready, with a fresh heartbeat.
fn heartbeat(s: &TestServer, name: &str) {
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    merge_patch(
        s,
        &format!("/api/v1/nodes/{name}/status"),
        json!({ "status": { "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": t, "lastTransitionTime": t }] } }),
    );
}

fn renew(s: &TestServer, name: &str) {
    merge_patch(
        s,
        &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"),
        json!({ "spec": { "renewTime": now() } }),
    );
}

/// Renews `name`'s Lease every 300 ms until the flag drops.
fn keep_renewing(s: &TestServer, name: &'static str) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let on = Arc::new(AtomicBool::new(true));
    let flag = on.clone();
    let client = s.client();
    let handle = std::thread::spawn(move || {
        while flag.load(Ordering::SeqCst) {
            let body = json!({ "spec": { "renewTime": now() } }).to_string();
            let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
            let _ = client.request("PATCH", &path, Some("application/merge-patch+json"), body.as_bytes());
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    (on, handle)
}

fn bound_pod(s: &TestServer, name: &str, node: &str, tolerations: Value) {
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "nodeName": node, "tolerations": tolerations, "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
    let (code, mut p) = s.http_json("POST", PODS, Some(&pod));
    assert_eq!(code, 201, "{p}");
    p["status"] = json!({ "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] });
    let (code, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
    assert_eq!(code, 200, "{v}");
}

fn get(s: &TestServer, path: &str) -> Value {
    s.http_json("GET", path, None).1
}

fn ready(node: &Value) -> Value {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or(Value::Null)
}

fn taint_keys(node: &Value) -> Vec<String> {
    let mut keys: Vec<String> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or("")))
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_node_that_stops_renewing_its_lease_turns_unknown_and_its_pods_are_evicted() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--node-monitor-grace-period", "3s"]);
    register(&s, "n1");
    register(&s, "n2");
    let (renewing, renewer) = keep_renewing(&s, "n2");
    bound_pod(&s, "patient", "n1", json!([]));
    bound_pod(
        &s,
        "quick",
        "n1",
        json!([{ "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2 }]),
    );
    bound_pod(&s, "stay", "n2", json!([]));
    // Admission added the default tolerations (300 s) where the pod had none of its own.
    let patient = get(&s, &format!("{PODS}/patient"));
    let tolerations = patient["spec"]["tolerations"].to_string();
    assert!(tolerations.contains("node.kubernetes.io/unreachable") && tolerations.contains("300"), "{tolerations}");

    // Each node gets its own /24 of the cluster CIDR.
    assert!(wait_until(WAIT, || get(&s, "/api/v1/nodes/n1")["spec"]["podCIDR"].is_string()
        && get(&s, "/api/v1/nodes/n2")["spec"]["podCIDR"].is_string()));
    let (c1, c2) = (
        get(&s, "/api/v1/nodes/n1")["spec"]["podCIDR"].clone(),
        get(&s, "/api/v1/nodes/n2")["spec"]["podCIDR"].clone(),
    );
    assert_ne!(c1, c2);
    for c in [&c1, &c2] {
        let c = c.as_str().unwrap();
        assert!(c.starts_with("10.42.") && c.ends_with(".0/24"), "{c}");
    }
    assert_eq!(get(&s, "/api/v1/nodes/n1")["spec"]["podCIDRs"], json!([c1]));

    // n1's lease is not renewed: Unknown, tainted unreachable, its pods not ready.
    assert!(
        wait_until(WAIT, || ready(&get(&s, "/api/v1/nodes/n1"))["status"] == "Unknown"),
        "n1: {}\n{}",
        get(&s, "/api/v1/nodes/n1"),
        s.log()
    );
    assert_eq!(ready(&get(&s, "/api/v1/nodes/n1"))["reason"], "NodeStatusUnknown");
    assert!(wait_until(WAIT, || taint_keys(&get(&s, "/api/v1/nodes/n1"))
        == ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]));
    let n1 = get(&s, "/api/v1/nodes/n1");
    let no_execute =
        n1["spec"]["taints"].as_array().unwrap().iter().find(|t| t["effect"] == "NoExecute").unwrap().clone();
    assert!(no_execute["timeAdded"].is_string(), "{no_execute}");
    // The pod tolerating it for 2 s is evicted; the one with 300 s is not (yet), but is not ready.
    assert!(
        wait_until(WAIT, || get(&s, &format!("{PODS}/quick"))["metadata"]["deletionTimestamp"].is_string()),
        "quick not evicted: {}",
        get(&s, &format!("{PODS}/quick"))
    );
    let patient = get(&s, &format!("{PODS}/patient"));
    assert!(patient["metadata"]["deletionTimestamp"].is_null(), "{patient}");
    let patient_ready =
        patient["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(patient_ready["status"], "False");
    // The node that renews stays Ready and untainted, its pod untouched.
    let n2 = get(&s, "/api/v1/nodes/n2");
    assert_eq!(ready(&n2)["status"], "True", "{n2}");
    assert!(taint_keys(&n2).is_empty(), "{n2}");
    assert!(get(&s, &format!("{PODS}/stay"))["metadata"]["deletionTimestamp"].is_null());
    let events = s.kubectl_ok(&["get", "events", "-A"]);
    assert!(events.contains("NodeNotReady") && events.contains("TaintManagerEviction"), "{events}");

    // n1 comes back: Ready again, the taints go.
    renew(&s, "n1");
    heartbeat(&s, "n1");
    assert!(
        wait_until(WAIT, || taint_keys(&get(&s, "/api/v1/nodes/n1")).is_empty()),
        "{}",
        get(&s, "/api/v1/nodes/n1")
    );

    // n2 deleted: its pod is an orphan for the pod GC; its range is free for a new node.
    renewing.store(false, Ordering::SeqCst);
    renewer.join().unwrap();
    s.kubectl_ok(&["delete", "node", "n2"]);
    assert!(
        wait_until(WAIT, || s.http_json("GET", &format!("{PODS}/stay"), None).0 == 404),
        "orphan not collected:\n{}",
        s.log()
    );
    register(&s, "n3");
    assert!(
        wait_until(WAIT, || get(&s, "/api/v1/nodes/n3")["spec"]["podCIDR"] == c2),
        "n3: {}",
        get(&s, "/api/v1/nodes/n3")
    );
}

#[test]
fn terminated_pods_beyond_the_threshold_are_collected_oldest_first() {
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--terminated-pod-gc-threshold", "2"],
    );
    for i in 0..4 {
        let name = format!("done-{i}");
        let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
        let (code, mut p) = s.http_json("POST", PODS, Some(&pod));
        assert_eq!(code, 201, "{p}");
        p["status"] = json!({ "phase": "Succeeded" });
        let (code, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
        assert_eq!(code, 200, "{v}");
        // creationTimestamp has a one-second resolution: keep the order unambiguous.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let running = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "running" },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
    s.http_json("POST", PODS, Some(&running));
    let names = || -> Vec<String> {
        let mut n: Vec<String> = get(&s, PODS)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert!(wait_until(WAIT, || names() == ["done-2", "done-3", "running"]), "{:?}", names());
}

#[test]
fn bad_flags_are_refused() {
    for (flag, value) in [
        ("--cluster-cidr", "10.42.0.0/25"),
        ("--cluster-cidr", "nonsense"),
        ("--node-monitor-grace-period", "soon"),
        ("--node-eviction-rate", "NaN"),
        ("--secondary-node-eviction-rate", "fast"),
        ("--unhealthy-zone-threshold", "1.5"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["server", flag, value])
            .output()
            .expect("run berth");
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{err}");
    }
}

/// Registers a node in `zone` (label topology.kubernetes.io/zone).
fn register_in(s: &TestServer, name: &str, zone: &str) {
    register(s, name);
    merge_patch(
        s,
        &format!("/api/v1/nodes/{name}"),
        json!({ "metadata": { "labels": { "topology.kubernetes.io/zone": zone } } }),
    );
}

fn no_execute_tainted(s: &TestServer, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| taint_keys(&get(s, &format!("/api/v1/nodes/{n}"))).iter().any(|k| k.ends_with(":NoExecute")))
        .map(|n| n.to_string())
        .collect()
}

#[test]
fn no_execute_taints_stop_in_a_partly_down_zone_and_when_every_zone_is_down() {
    // A rate high enough not to hold anything back: only the zone states do here (the
    // pacing itself is unit-tested in nodelifecycle::zones).
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--node-monitor-grace-period", "3s", "--node-eviction-rate", "1000"],
    );
    let zone_a = ["a1", "a2", "a3", "a4"];
    for n in zone_a {
        register_in(&s, n, "a");
    }
    register_in(&s, "b1", "b");
    let (b_on, b_renewer) = keep_renewing(&s, "b1");
    let (a4_on, a4_renewer) = keep_renewing(&s, "a4");

    // Three of zone a's four nodes stop. Whichever of them went down while at most two
    // were down may be tainted NoExecute; once the third is down the zone is partially
    // disrupted (3 of 4 ≥ 55 %, and no larger than 50 nodes): no more NoExecute taints.
    let unreachable = |n: &str| {
        let keys = taint_keys(&get(&s, &format!("/api/v1/nodes/{n}")));
        keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
    };
    let down = ["a1", "a2", "a3"];
    assert!(
        wait_until(WAIT, || down.iter().all(|n| unreachable(n))),
        "{:?}\n{}",
        down.map(|n| taint_keys(&get(&s, &format!("/api/v1/nodes/{n}")))),
        s.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let tainted = no_execute_tainted(&s, &down);
    assert!(tainted.len() < 3, "all of a partly down zone were tainted NoExecute: {tainted:?}");

    // The fourth stops too: zone a is fully disrupted while b is healthy: all of a tainted.
    a4_on.store(false, Ordering::SeqCst);
    a4_renewer.join().unwrap();
    assert!(
        wait_until(WAIT, || no_execute_tainted(&s, &zone_a).len() == 4),
        "{:?}\n{}",
        no_execute_tainted(&s, &zone_a),
        s.log()
    );

    // Zone b goes down as well: every zone is down, the controller assumes it is the one cut
    // off and takes its NoExecute taints back (the NoSchedule ones stay).
    b_on.store(false, Ordering::SeqCst);
    b_renewer.join().unwrap();
    let all = ["a1", "a2", "a3", "a4", "b1"];
    // One monitor pass writes the nodes' taints one after another: wait for the last of them.
    assert!(
        wait_until(WAIT, || no_execute_tainted(&s, &all).is_empty() && all.iter().all(|n| unreachable(n))),
        "{:?} {:?}\n{}",
        no_execute_tainted(&s, &all),
        all.map(|n| taint_keys(&get(&s, &format!("/api/v1/nodes/{n}")))),
        s.log()
    );
    assert!(s.log().contains("every zone is fully disrupted"));
}
