//! The node agent's resource usage and node-pressure eviction: the Summary API
//! (`/stats/summary`) read through the API server's node proxy with real kubectl, compared
//! with the container's cgroup, with the disk use of an emptyDir and a writable layer; memory pressure made real by a threshold just below what the
//! machine has available and a BestEffort pod filling a Memory emptyDir, which is evicted
//! (Failed, Evicted, the kubelet's message, an Event, MemoryPressure) while a Guaranteed pod
//! stays. Real `berth server`, `berth agent` (containerd, runc, CNI), busybox pods.
//!
//! Bridges `btest60`–`btest61`, pod CIDRs 10.88.<n>.0/24; the [`Node`] guard stops the agent
//! by PID and deletes its bridge even when a test fails. Without containerd the tests skip,
//! unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

/// The node's Summary through `kubectl get --raw`.
fn summary(s: &TestServer, node: &Node) -> Value {
    let out = s.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{}/proxy/stats/summary", node.name)]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn pod_summary<'a>(summary: &'a Value, name: &str) -> Option<&'a Value> {
    summary["pods"].as_array()?.iter().find(|p| p["podRef"]["name"] == name && p["podRef"]["namespace"] == "default")
}

fn container_summary<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["containers"].as_array()?.iter().find(|c| c["name"] == name)
}

fn volume_summary<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["volume"].as_array()?.iter().find(|v| v["name"] == name)
}

/// A number in the summary (0 when absent).
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The container's own cgroup v1 or v2 memory usage (bytes), read from the host.
fn cgroup_memory_usage(container_id: &str) -> Option<u64> {
    let v2 = format!("/sys/fs/cgroup/k8s.io/{container_id}/memory.current");
    let v1 = format!("/sys/fs/cgroup/memory/k8s.io/{container_id}/memory.usage_in_bytes");
    let text = std::fs::read_to_string(v2).or_else(|_| std::fs::read_to_string(v1)).ok()?;
    text.trim().parse().ok()
}

#[test]
fn stats_summary_reports_the_pods_cpu_and_memory_through_the_node_proxy() {
    let s = server();
    // Only a memory threshold: a machine short of disk (the kubelet's default nodefs/imagefs
    // thresholds) must not evict the pod measured here.
    let Some(node) = Node::start_with(&s, 60, &["--eviction-hard", "memory.available<1Mi"]) else { return };
    // 24 MiB in /dev/shm (charged to the container's cgroup), 5 MiB in an emptyDir, 2 MiB in
    // its writable layer, and a little CPU every second.
    let mut pod = busybox_pod(
        "busy",
        &node,
        json!({ "command": ["sh", "-c",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; \
             dd if=/dev/zero of=/scratch/fill bs=1M count=5 2>/dev/null; \
             dd if=/dev/zero of=/tmp/layer bs=1M count=2 2>/dev/null; \
             while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 1; done"],
            "volumeMounts": [{ "name": "scratch", "mountPath": "/scratch" }] }),
        "Always",
    );
    pod["spec"]["volumes"] = json!([{ "name": "scratch", "emptyDir": {} }]);
    apply(&s, &pod);
    let p = wait_pod(&s, &node, "busy", "ran", |p| p["status"]["phase"] == "Running");
    let id = p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().trim_start_matches("containerd://");
    let id = id.to_string();

    // Two samples (10 s apart) give a CPU rate; wait for it and for the memory to be written.
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(90), || {
        last = summary(&s, &node);
        let c = pod_summary(&last, "busy").and_then(|p| container_summary(p, "main"));
        let disk = pod_summary(&last, "busy").and_then(|p| volume_summary(p, "scratch"));
        c.is_some_and(|c| {
            n(&c["cpu"]["usageNanoCores"]) > 0
                && n(&c["memory"]["workingSetBytes"]) >= 24 << 20
                && n(&c["rootfs"]["usedBytes"]) >= 2 << 20
        }) && disk.is_some_and(|v| n(&v["usedBytes"]) >= 5 << 20)
    });
    assert!(ok, "no CPU rate or memory for busy/main: {last:#}\nagent log:\n{}", node.log());
    let pod = pod_summary(&last, "busy").unwrap();
    let c = container_summary(pod, "main").unwrap();
    assert!(n(&c["cpu"]["usageCoreNanoSeconds"]) > 0, "{c:#}");
    assert!(c["startTime"].is_string(), "{c:#}");
    let working_set = n(&c["memory"]["workingSetBytes"]);
    assert!(n(&c["memory"]["usageBytes"]) >= working_set, "{c:#}");
    // The cgroup's usage now is about what the summary reported (the pod holds its memory).
    let cgroup = cgroup_memory_usage(&id);
    let cgroup = cgroup.unwrap_or_else(|| panic!("no memory cgroup for {id}\nagent log:\n{}", node.log()));
    assert!(
        working_set <= cgroup + (8 << 20) && cgroup <= working_set + (64 << 20),
        "summary working set {working_set} vs cgroup usage {cgroup}"
    );
    assert!(c["logs"]["capacityBytes"].as_u64().is_some(), "{c:#}");
    assert_eq!(pod["podRef"]["uid"], p["metadata"]["uid"]);
    assert!(n(&pod["memory"]["workingSetBytes"]) >= working_set, "{pod:#}");
    let eth0 = pod["network"]["interfaces"].as_array().unwrap().iter().any(|i| i["name"] == "eth0");
    assert!(eth0, "the pod's network has eth0: {pod:#}");
    // Disk: the emptyDir with its filesystem, the writable layer, their sum in ephemeral-storage.
    let scratch = volume_summary(pod, "scratch").unwrap();
    assert!(n(&scratch["capacityBytes"]) > 0 && n(&scratch["availableBytes"]) > 0, "{scratch:#}");
    assert!(n(&scratch["inodesUsed"]) >= 2, "{scratch:#}");
    assert!(scratch["time"].is_string(), "{scratch:#}");
    let rootfs = &c["rootfs"];
    assert!(n(&rootfs["capacityBytes"]) > 0 && n(&rootfs["availableBytes"]) > 0, "{rootfs:#}");
    assert!(n(&rootfs["usedBytes"]) < 64 << 20, "only the container's own files: {rootfs:#}");
    let ephemeral = &pod["ephemeral-storage"];
    assert!(n(&ephemeral["usedBytes"]) >= 7 << 20, "{ephemeral:#}");
    assert!(n(&ephemeral["capacityBytes"]) > 0 && n(&ephemeral["availableBytes"]) > 0, "{ephemeral:#}");
    // The node's own figures.
    let nd = &last["node"];
    assert_eq!(nd["nodeName"], node.name.as_str());
    assert!(n(&nd["memory"]["availableBytes"]) > 0 && n(&nd["memory"]["workingSetBytes"]) > 0, "{nd:#}");
    assert!(n(&nd["cpu"]["usageCoreNanoSeconds"]) > 0, "{nd:#}");
    for fs in [&nd["fs"], &nd["runtime"]["imageFs"]] {
        let (capacity, available, used) = (n(&fs["capacityBytes"]), n(&fs["availableBytes"]), n(&fs["usedBytes"]));
        assert!(capacity > 0 && available > 0 && used > 0 && available <= capacity, "{nd:#}");
    }
    // The images' bytes: at least the busybox layer.
    assert!(n(&nd["runtime"]["imageFs"]["usedBytes"]) >= 1 << 20, "{nd:#}");
    assert!(n(&nd["rlimit"]["maxpid"]) > 0 && n(&nd["rlimit"]["curproc"]) > 0, "{nd:#}");

    // Bad input: an unknown node is 404, an unknown agent path is the agent's 404.
    let err = s.kubectl_err(&["get", "--raw", "/api/v1/nodes/no-such-node/proxy/stats/summary"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    let err = s.kubectl_err(&["get", "--raw", &format!("/api/v1/nodes/{}/proxy/no/such/path", node.name)], None);
    assert!(err.contains("404") || err.contains("not found") || err.contains("NotFound"), "{err}");
    // The agent itself refuses callers without a client certificate.
    let port = node.port(&s);
    let anonymous = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &format!("https://127.0.0.1:{port}/stats/summary")])
        .output();
    if let Ok(out) = anonymous {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    }
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemAvailable:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn condition<'a>(node: &'a Value, type_: &str) -> &'a Value {
    let all = node["status"]["conditions"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

#[test]
fn memory_pressure_evicts_the_best_effort_pod_and_keeps_the_guaranteed_one() {
    let s = server();
    // A threshold 600 MiB below what the machine has now: the agent and containerd take some
    // of it, the BestEffort pod's 1500 MiB the rest, whatever the machine's other load does.
    let threshold_mib = mem_available() / (1 << 20) - 600;
    let flag = format!("memory.available<{threshold_mib}Mi");
    let Some(node) = Node::start_with(&s, 61, &["--eviction-hard", &flag]) else { return };
    let mut hog = busybox_pod(
        "hog",
        &node,
        json!({ "command": ["sh", "-c",
            "while [ ! -e /tmp/go ]; do sleep 1; done; dd if=/dev/zero of=/fill/data bs=1M count=1500; sleep 3600"],
            "volumeMounts": [{ "name": "fill", "mountPath": "/fill" }] }),
        "Always",
    );
    hog["spec"]["volumes"] = json!([{ "name": "fill", "emptyDir": { "medium": "Memory" } }]);
    apply(&s, &hog);
    wait_pod(&s, &node, "hog", "ran", |p| p["status"]["phase"] == "Running");
    let resources =
        json!({ "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "cpu": "50m", "memory": "64Mi" } });
    apply(&s, &busybox_pod("steady", &node, json!({ "command": ["sleep", "3600"], "resources": resources }), "Always"));
    let steady = wait_pod(&s, &node, "steady", "ran", |p| p["status"]["phase"] == "Running");
    assert_eq!(steady["status"]["qosClass"], "Guaranteed");

    s.kubectl_ok(&["exec", "hog", "--", "touch", "/tmp/go"]);
    let evicted = wait_pod(&s, &node, "hog", "was evicted", |p| p["status"]["reason"] == "Evicted");
    assert_eq!(evicted["status"]["phase"], "Failed", "{evicted:#}");
    assert_eq!(evicted["status"]["qosClass"], "BestEffort");
    let message = evicted["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("The node was low on resource: memory. Threshold quantity: {threshold_mib}Mi")),
        "{message}"
    );
    assert!(message.contains("Container main was using") && message.contains("request is 0"), "{message}");
    // The ranking: the pod within its requests stays.
    let steady = get_pod(&s, "steady");
    assert_eq!(steady["status"]["phase"], "Running", "{steady:#}\nagent log:\n{}", node.log());
    assert!(steady["status"]["reason"].is_null(), "{steady:#}");

    // The Event, and the node condition (True for the transition period after the breach).
    let events = s.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=hog", "-o", "json"]);
    let events: Value = serde_json::from_str(&events).unwrap();
    let evicted_event = events["items"].as_array().unwrap().iter().any(|e| {
        e["reason"] == "Evicted"
            && e["type"] == "Warning"
            && e["message"].as_str().is_some_and(|m| m.contains("memory"))
    });
    assert!(evicted_event, "{events:#}");
    let mut last = Value::Null;
    let pressure = wait_until(TIMEOUT, || {
        last = serde_json::from_str(&s.kubectl_ok(&["get", "node", &node.name, "-o", "json"])).unwrap_or_default();
        condition(&last, "MemoryPressure")["status"] == "True"
    });
    assert!(pressure, "{:#}", last["status"]["conditions"]);
    assert_eq!(condition(&last, "MemoryPressure")["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(condition(&last, "DiskPressure")["status"], "False");
    assert_eq!(condition(&last, "Ready")["status"], "True");
}

#[test]
fn bad_eviction_thresholds_stop_the_agent_with_a_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--server", "https://127.0.0.1:1", "--token", "x", "--eviction-hard", "memory.available>1Gi"])
        .output()
        .expect("run berth agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--eviction-hard") && err.contains("memory.available>1Gi"), "{err}");
}
