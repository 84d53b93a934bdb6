//! Many pods the scheduler cannot place, driven over the real API of `berth server`: each
//! gets its PodScheduled=False condition and one FailedScheduling event, cluster events
//! that re-queue them without changing why they fail write nothing more (no repeated
//! condition patch, no repeated event), and a Node added later gets them all scheduled.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const EVENTS: &str = "/api/v1/namespaces/default/events";
const WAIT: Duration = Duration::from_secs(90);
const N: usize = 50;
const NO_NODES: &str = "no nodes available to schedule pods";

fn name(i: usize) -> String {
    format!("pending-{i:02}")
}

/// The pods, by name.
fn pods(s: &TestServer) -> HashMap<String, Value> {
    let (code, list) = s.http_json("GET", PODS, None);
    assert_eq!(code, 200, "{list}");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items.into_iter().map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_string(), p)).collect()
}

fn scheduled_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")
}

/// The number of events of `reason` per involved pod.
fn events(s: &TestServer, reason: &str) -> HashMap<String, usize> {
    let (code, list) = s.http_json("GET", EVENTS, None);
    assert_eq!(code, 200, "{list}");
    let mut counts = HashMap::new();
    for e in list["items"].as_array().into_iter().flatten().filter(|e| e["reason"] == reason) {
        *counts.entry(e["involvedObject"]["name"].as_str().unwrap_or_default().to_string()).or_insert(0) += 1;
    }
    counts
}

fn all_pending_with(s: &TestServer, message: &str) -> bool {
    let pods = pods(s);
    (0..N).all(|i| {
        pods.get(&name(i))
            .and_then(scheduled_condition)
            .is_some_and(|c| c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == message)
    })
}

#[test]
fn unschedulable_pods_get_one_condition_and_event_each_and_a_later_node_takes_them_all() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    for i in 0..N {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name(i)},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}});
        let (code, v) = s.http_json("POST", PODS, Some(&pod));
        assert_eq!(code, 201, "{v}");
    }
    // Every pod gets the condition, with Kubernetes' message for an empty cluster...
    assert!(wait_until(WAIT, || all_pending_with(&s, NO_NODES)), "pods not all marked unschedulable: {:?}", pods(&s));
    // ...and one FailedScheduling event.
    assert!(
        wait_until(WAIT, || events(&s, "FailedScheduling").len() == N),
        "FailedScheduling events: {:?}",
        events(&s, "FailedScheduling")
    );
    let versions: HashMap<String, Value> =
        pods(&s).into_iter().map(|(n, p)| (n, p["metadata"]["resourceVersion"].clone())).collect();

    // Cluster events that re-queue every unschedulable pod (a new StorageClass could help
    // a pod waiting for a volume) but do not change why these fail.
    for i in 0..3 {
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": format!("class-{i}")}, "provisioner": "example.com/none"});
        let (code, v) = s.http_json("POST", "/apis/storage.k8s.io/v1/storageclasses", Some(&class));
        assert_eq!(code, 201, "{v}");
    }
    // The re-tries (after a back-off of 1-2 s) write nothing: the same condition is not
    // patched again and the same event is not posted again. Watched for a while: any
    // extra write within it fails the test.
    let rewritten = wait_until(Duration::from_secs(8), || {
        let now = pods(&s);
        let counts = events(&s, "FailedScheduling");
        now.iter().any(|(n, p)| versions.get(n) != Some(&p["metadata"]["resourceVersion"]))
            || counts.values().any(|c| *c > 1)
    });
    assert!(!rewritten, "a re-try wrote again: events {:?}", events(&s, "FailedScheduling"));

    // A node with room for all of them: they are all scheduled.
    let alloc = json!({"cpu": "64", "memory": "64Gi", "pods": "110"});
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "roomy", "labels": {"kubernetes.io/hostname": "roomy", "kubernetes.io/os": "linux"}},
        "status": {"capacity": alloc, "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
    assert!(
        wait_until(WAIT, || {
            let pods = pods(&s);
            (0..N).all(|i| pods.get(&name(i)).is_some_and(|p| p["spec"]["nodeName"] == "roomy"))
        }),
        "not every pod was scheduled on the new node: {:?}",
        pods(&s)
            .values()
            .filter(|p| p["spec"]["nodeName"].is_null())
            .map(|p| &p["metadata"]["name"])
            .collect::<Vec<_>>()
    );
    assert!(wait_until(WAIT, || events(&s, "Scheduled").len() == N), "Scheduled events: {:?}", events(&s, "Scheduled"));
    // Still one FailedScheduling event per pod.
    let failed = events(&s, "FailedScheduling");
    assert_eq!(failed.len(), N, "{failed:?}");
    assert!(failed.values().all(|c| *c == 1), "{failed:?}");
}

fn add_node(s: &TestServer, name: &str, cpu: &str, taints: Value) {
    let alloc = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints},
        "status": {"capacity": alloc, "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
}

#[test]
fn a_new_reason_is_written_with_its_event_and_the_transition_time_kept() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    add_node(&s, "small", "2", json!([]));
    // Too big for the node.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "4"}}}]}});
    let (code, v) = s.http_json("POST", PODS, Some(&pod));
    assert_eq!(code, 201, "{v}");
    let condition = |s: &TestServer| {
        let (_, p) = s.http_json("GET", &format!("{PODS}/big"), None);
        scheduled_condition(&p).cloned().unwrap_or_default()
    };
    let message = |s: &TestServer| condition(s)["message"].as_str().unwrap_or_default().to_string();
    assert!(
        wait_until(WAIT, || message(&s).starts_with("0/1 nodes are available: 1 Insufficient cpu.")),
        "{}",
        message(&s)
    );
    let first = condition(&s);
    // A new node big enough for it re-queues the pod (NodeResourcesFit's queueing hint: a
    // node too small would not); it fails again for another reason as well, which the
    // condition and a second event report.
    add_node(&s, "tainted", "8", json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]));
    assert!(wait_until(WAIT, || message(&s).starts_with("0/2 nodes are available:")), "{}", message(&s));
    let second = condition(&s);
    assert_eq!(second["status"], "False");
    assert!(second["message"].as_str().is_some_and(|m| m.contains("untolerated taint {dedicated: infra}")), "{second}");
    // Still False: the transition time stays that of the first write.
    assert_eq!(second["lastTransitionTime"], first["lastTransitionTime"], "{first} {second}");
    assert!(
        wait_until(WAIT, || events(&s, "FailedScheduling").get("big") == Some(&2)),
        "{:?}",
        events(&s, "FailedScheduling")
    );
}
