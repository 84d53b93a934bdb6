//! Stopping a real node agent: an agent killed with SIGKILL (its containerd dies with it, the
//! pods run on, the next agent on the data dir adopts them), then graceful node shutdown (the
//! Node turns NotReady, regular pods stop before critical ones, preStop hooks and SIGTERM,
//! SIGKILL only after the grace period, each pod's status written Failed/Terminated with a
//! DisruptionTarget condition, read from the API server that outlives the agent). Real
//! `berth server --disable-agent`, `berth agent` (containerd, runc, CNI), busybox pods, real
//! kubectl. (`--shutdown-grace-period 0s` is in tests/agent_dns.rs, whose node runs with it.)
//!
//! Bridge `btest50`, pod CIDR 10.88.50.0/24; the [`Node`] guard stops the agent by PID,
//! kills what a killed agent left and deletes its bridge even when a test fails. Without
//! containerd the tests skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

/// A busybox pod on `node` that appends `<tag>-started` to /log/`file` on start and runs
/// `on_term` on SIGTERM, with the host directory `log` at /log.
fn logging_pod(name: &str, node: &Node, log: &std::path::Path, file: &str, on_term: &str) -> Value {
    let script = format!(
        "trap '{on_term}' TERM; echo {name}-started >> /log/{file}; while true; do \
         if [ -f /tmp/termed ]; then echo {name}-alive >> /log/{file}; fi; sleep 1; done"
    );
    let mut pod = busybox_pod(
        name,
        node,
        json!({ "command": ["sh", "-c", script], "volumeMounts": [{ "name": "log", "mountPath": "/log" }] }),
        "Always",
    );
    pod["spec"]["volumes"] = json!([{ "name": "log", "hostPath": { "path": log, "type": "Directory" } }]);
    pod
}

fn pod_in(s: &TestServer, namespace: &str, name: &str) -> Value {
    let out = s.kubectl(&["get", "pod", "-n", namespace, name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn condition<'a>(object: &'a Value, type_: &str) -> &'a Value {
    let all = object["status"]["conditions"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

fn terminated(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["state"]["terminated"]
}

/// Asserts what the kubelet's shutdown manager writes on a pod it stopped.
fn assert_shut_down(pod: &Value) {
    let message = "Pod was terminated in response to imminent node shutdown.";
    assert_eq!(pod["status"]["phase"], "Failed", "{pod:#}");
    assert_eq!(pod["status"]["reason"], "Terminated", "{pod:#}");
    assert_eq!(pod["status"]["message"], message, "{pod:#}");
    let disruption = condition(pod, "DisruptionTarget");
    assert_eq!(disruption["status"], "True", "{pod:#}");
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{pod:#}");
    assert_eq!(disruption["message"], message, "{pod:#}");
    assert_eq!(condition(pod, "Ready")["status"], "False", "{pod:#}");
}

/// The PIDs of the node's processes whose command line contains `what`.
fn pids(node: &Node, what: &str) -> Vec<u32> {
    node.processes().into_iter().filter(|(_, cmdline)| cmdline.contains(what)).map(|(pid, _)| pid).collect()
}

#[test]
fn a_killed_agent_takes_containerd_along_and_a_stopping_one_shuts_its_pods_down_gracefully() {
    let s = server();
    let flags = ["--shutdown-grace-period", "30s", "--shutdown-grace-period-critical-pods", "10s"];
    let Some(mut node) = Node::start_with(&s, 50, &flags) else { return };
    let log = tempfile::tempdir().unwrap();
    let read = |file: &str| -> Vec<String> {
        std::fs::read_to_string(log.path().join(file)).unwrap_or_default().lines().map(str::to_string).collect()
    };
    // A regular pod with a preStop hook and a SIGTERM trap that exits.
    let mut graceful = logging_pod("graceful", &node, log.path(), "order", "echo graceful-term >> /log/order; exit 0");
    graceful["spec"]["containers"][0]["lifecycle"] =
        json!({ "preStop": { "exec": { "command": ["sh", "-c", "echo graceful-prestop >> /log/order"] } } });
    graceful["spec"]["terminationGracePeriodSeconds"] = json!(20);
    // A regular pod that ignores SIGTERM (it only notes it): SIGKILL after its 3 s.
    let mut stubborn =
        logging_pod("stubborn", &node, log.path(), "stubborn", "touch /tmp/termed; echo term >> /log/stubborn");
    stubborn["spec"]["terminationGracePeriodSeconds"] = json!(3);
    // A critical pod (system-cluster-critical, in kube-system): it stops in the last phase.
    let mut critical = logging_pod("critical", &node, log.path(), "order", "echo critical-term >> /log/order; exit 0");
    critical["metadata"]["namespace"] = json!("kube-system");
    critical["spec"]["priorityClassName"] = json!("system-cluster-critical");
    for pod in [&graceful, &stubborn, &critical] {
        apply(&s, pod);
    }
    for (ns, name) in [("default", "graceful"), ("default", "stubborn"), ("kube-system", "critical")] {
        let mut last = Value::Null;
        let running = wait_until(TIMEOUT, || {
            last = pod_in(&s, ns, name);
            last["status"]["phase"] == "Running"
        });
        assert!(running, "{name} never ran: {last:#}\nagent log:\n{}", node.log());
    }
    assert!(pod_in(&s, "kube-system", "critical")["spec"]["priority"].as_i64() >= Some(2_000_000_000));
    let started = wait_until(TIMEOUT, || {
        let order = read("order");
        order.contains(&"graceful-started".to_string())
            && order.contains(&"critical-started".to_string())
            && read("stubborn").contains(&"stubborn-started".to_string())
    });
    assert!(started, "the containers did not start; agent log:\n{}", node.log());

    // SIGKILL: containerd gets SIGTERM from the kernel (its parent-death signal) and exits;
    // the shims keep the pods running.
    let containerd = pids(&node, "containerd/config.toml");
    assert_eq!(containerd.len(), 1, "{:?}", node.processes());
    let shims = pids(&node, "containerd-shim");
    assert!(shims.len() >= 3, "a shim per pod: {:?}", node.processes());
    let graceful_id = |s: &TestServer| get_pod(s, "graceful")["status"]["containerStatuses"][0]["containerID"].clone();
    let before = graceful_id(&s);
    node.kill();
    assert!(wait_until(TIMEOUT, || !alive(containerd[0])), "containerd outlived its agent: {:?}", node.processes());
    assert!(shims.iter().all(|p| alive(*p)), "the shims went with containerd");
    // The next agent on the data dir adopts the running pods (same containers).
    node.spawn(&s, &flags);
    assert!(wait_until(TIMEOUT, || node.log().contains("adopted a running pod")), "agent log:\n{}", node.log());
    let adopted = wait_until(TIMEOUT, || {
        let p = get_pod(&s, "graceful");
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["containerID"] == before
    });
    assert!(adopted, "not adopted: {:#}\nagent log:\n{}", get_pod(&s, "graceful"), node.log());
    assert_eq!(get_pod(&s, "graceful")["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(graceful_id(&s), before);

    // SIGTERM to `berth agent`; the API server outlives it.
    node.stop();
    let order: Vec<String> = read("order").into_iter().filter(|l| !l.ends_with("-started")).collect();
    // The preStop hook before SIGTERM; the regular pods before the critical one.
    assert_eq!(order, ["graceful-prestop", "graceful-term", "critical-term"], "agent log:\n{}", node.log());
    // The stubborn container got SIGTERM, lived on, and was killed only later.
    let stubborn_log = read("stubborn");
    let term_at = stubborn_log.iter().position(|l| l == "term").expect("SIGTERM reached the stubborn container");
    assert!(
        stubborn_log[term_at..].iter().any(|l| l == "stubborn-alive"),
        "killed at once after SIGTERM: {stubborn_log:?}\nagent log:\n{}",
        node.log()
    );

    let graceful = get_pod(&s, "graceful");
    assert_shut_down(&graceful);
    assert_eq!(terminated(&graceful)["exitCode"], 0, "{graceful:#}");
    let stubborn = get_pod(&s, "stubborn");
    assert_shut_down(&stubborn);
    assert_eq!(terminated(&stubborn)["exitCode"], 137, "SIGKILL after the grace period: {stubborn:#}");
    let critical = pod_in(&s, "kube-system", "critical");
    assert_shut_down(&critical);
    assert_eq!(terminated(&critical)["exitCode"], 0, "{critical:#}");

    // The Node turned NotReady as the kubelet words a shutting-down node.
    let nodes = s.kubectl_ok(&["get", "node", &node.name, "-o", "json"]);
    let node_object: Value = serde_json::from_str(&nodes).unwrap();
    let ready = condition(&node_object, "Ready");
    assert_eq!(ready["status"], "False", "{node_object:#}");
    assert_eq!(ready["reason"], "KubeletNotReady", "{node_object:#}");
    assert_eq!(ready["message"], "node is shutting down", "{node_object:#}");
    assert!(node.log().contains("node shutting down"), "{}", node.log());
    // Nothing is left running: no containerd, no shim.
    assert_eq!(node.processes(), Vec::<(u32, String)>::new());
}

#[test]
fn shutdown_grace_periods_are_checked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["agent", "--server", "https://127.0.0.1:1", "--token", "x"])
        .args(["--shutdown-grace-period", "5s", "--shutdown-grace-period-critical-pods", "10s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--shutdown-grace-period-critical-pods (10s) must not be longer than --shutdown-grace-period (5s)"
        ),
        "{err}"
    );
}
