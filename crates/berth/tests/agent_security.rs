//! The real node agent's securityContext, environment, termination messages and Linux
//! namespaces end to end: `berth server` plus `berth agent` (its own containerd, runc, CNI
//! bridge) running busybox pods, driven with the real kubectl.
//!
//! Bridges `btest38` and `btest39`, pod CIDRs 10.88.<n>.0/24; the [`Node`] guard stops the
//! agent by PID and deletes its bridge, even when a test fails. Without containerd the tests
//! skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use common::*;
use serde_json::{Value, json};

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

/// Waits for the pod to succeed and returns its log.
fn succeeded_log(s: &berth_testkit::TestServer, node: &Node, name: &str) -> String {
    wait_pod(s, node, name, "succeeded", |p| p["status"]["phase"] == "Succeeded");
    s.kubectl_ok(&["logs", name])
}

#[test]
fn security_context_privileged_capabilities_non_root_and_read_only() {
    let s = server();
    let flags = [
        "--system-reserved",
        "cpu=100m,memory=100Mi",
        "--kube-reserved",
        "memory=50Mi",
        "--eviction-hard",
        "memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%",
    ];
    let Some(node) = Node::start_with(&s, 38, &flags) else { return };
    // Allocatable is the capacity less the reservations and the memory eviction threshold;
    // the node reports berth's version as /version does.
    let node_obj: Value = serde_json::from_str(&s.kubectl_ok(&["get", "node", &node.name, "-o", "json"])).unwrap();
    let status = &node_obj["status"];
    let kib = |v: &Value| v.as_str().unwrap().strip_suffix("Ki").unwrap().parse::<u64>().unwrap();
    assert_eq!(
        kib(&status["allocatable"]["memory"]),
        kib(&status["capacity"]["memory"]) - (100 + 50 + 100) * 1024,
        "{status:#}"
    );
    let cpus: u64 = status["capacity"]["cpu"].as_str().unwrap().parse().unwrap();
    assert_eq!(status["allocatable"]["cpu"], format!("{}m", cpus * 1000 - 100), "{status:#}");
    assert_eq!(status["allocatable"]["pods"], "110", "{status:#}");
    let version: Value = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(status["nodeInfo"]["kubeletVersion"], version["gitVersion"], "{status:#}");
    assert_eq!(status["nodeInfo"]["kubeletVersion"], "v1.33.0+berth");
    // Privileged: all capabilities (mount works) and the host's devices.
    let privileged = "mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && test -e /dev/kmsg && echo privileged-ok";
    apply(
        &s,
        &busybox_pod(
            "privileged",
            &node,
            json!({ "command": ["sh", "-c", privileged], "securityContext": { "privileged": true } }),
            "Never",
        ),
    );
    // The same without privileged fails: the check above can fail.
    apply(&s, &busybox_pod("unprivileged", &node, json!({ "command": ["sh", "-c", privileged] }), "Never"));
    // Capabilities: drop ALL, add NET_BIND_SERVICE (bit 10).
    apply(
        &s,
        &busybox_pod(
            "caps",
            &node,
            json!({ "command": ["sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/1/status"],
                    "securityContext": { "capabilities": { "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] } } }),
            "Never",
        ),
    );
    // A read-only root filesystem, and no privilege escalation.
    let probe =
        "grep NoNewPrivs /proc/self/status; if touch /written 2>/dev/null; then echo writable; else echo read-only; fi";
    apply(
        &s,
        &busybox_pod(
            "readonly",
            &node,
            json!({ "command": ["sh", "-c", probe],
                    "securityContext": { "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false } }),
            "Never",
        ),
    );
    // runAsNonRoot with an image that runs as root: never started.
    apply(
        &s,
        &busybox_pod(
            "nonroot",
            &node,
            json!({ "command": ["sleep", "3600"], "securityContext": { "runAsNonRoot": true } }),
            "Always",
        ),
    );
    // runAsNonRoot with a non-root runAsUser runs.
    apply(
        &s,
        &busybox_pod(
            "nonroot-user",
            &node,
            json!({ "command": ["id", "-u"], "securityContext": { "runAsNonRoot": true, "runAsUser": 1234 } }),
            "Never",
        ),
    );

    assert_eq!(succeeded_log(&s, &node, "privileged").trim(), "privileged-ok");
    let pod = wait_pod(&s, &node, "unprivileged", "failed", |p| p["status"]["phase"] == "Failed");
    assert_ne!(container_status(&pod)["state"]["terminated"]["exitCode"], 0, "{pod:#}");
    let caps = succeeded_log(&s, &node, "caps");
    assert!(caps.contains("CapEff:\t0000000000000400"), "{caps}");
    assert!(caps.contains("CapBnd:\t0000000000000400"), "{caps}");
    let readonly = succeeded_log(&s, &node, "readonly");
    assert!(readonly.contains("NoNewPrivs:\t1"), "{readonly}");
    assert!(readonly.contains("read-only"), "{readonly}");
    let pod = wait_pod(&s, &node, "nonroot", "reported the config error", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let message = container_status(&pod)["state"]["waiting"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("container has runAsNonRoot and image will run as root"), "{pod:#}");
    assert_eq!(pod["status"]["phase"], "Pending", "{pod:#}");
    assert_eq!(succeeded_log(&s, &node, "nonroot-user").trim(), "1234");
}

#[test]
fn env_resources_expansion_termination_messages_and_namespaces() {
    let s = server();
    let Some(node) = Node::start(&s, 39) else { return };
    // resourceFieldRef (divisors, an unset request is 0) and $(VAR) in command and args.
    apply(
        &s,
        &busybox_pod(
            "env",
            &node,
            json!({
                "command": ["echo", "$(GREETING)"],
                "args": ["$(CPU)", "$(MEM)", "$(REQ)", "$$(MEM)", "$(NOPE)"],
                "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } },
                "env": [
                    { "name": "GREETING", "value": "hi" },
                    { "name": "CPU", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "divisor": "1m" } } },
                    { "name": "MEM", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                    { "name": "REQ", "valueFrom": { "resourceFieldRef": { "resource": "requests.ephemeral-storage" } } },
                ],
            }),
            "Never",
        ),
    );
    assert_eq!(succeeded_log(&s, &node, "env").trim(), "hi 500 64 0 $(MEM) $(NOPE)");

    // Termination messages: the file at the default path, one at a custom path, and the
    // log's tail for FallbackToLogsOnError when the file is empty and the container failed.
    apply(
        &s,
        &busybox_pod(
            "message",
            &node,
            json!({ "command": ["sh", "-c", "echo written by the app > /dev/termination-log; exit 1"] }),
            "Never",
        ),
    );
    apply(
        &s,
        &busybox_pod(
            "message-path",
            &node,
            json!({ "command": ["sh", "-c", "echo custom path > /tmp/why"], "terminationMessagePath": "/tmp/why" }),
            "Never",
        ),
    );
    apply(
        &s,
        &busybox_pod(
            "message-fallback",
            &node,
            json!({ "command": ["sh", "-c", "echo first; echo last words; exit 2"],
                    "terminationMessagePolicy": "FallbackToLogsOnError" }),
            "Never",
        ),
    );
    let terminated = |name: &str, phase: &str| {
        let pod = wait_pod(&s, &node, name, "finished", |p| p["status"]["phase"] == phase);
        container_status(&pod)["state"]["terminated"].clone()
    };
    assert_eq!(terminated("message", "Failed")["message"], "written by the app\n");
    assert_eq!(terminated("message-path", "Succeeded")["message"], "custom path\n");
    assert_eq!(terminated("message-fallback", "Failed")["message"], "first\nlast words\n");

    // A finished pod's sandbox is stopped (no pause process, its IP released) while its
    // logs and status stay.
    for name in ["message", "message-fallback"] {
        assert!(
            berth_testkit::wait_until(TIMEOUT, || sandbox_stopped(&node, name)),
            "the sandbox of {name} still runs; agent log:\n{}",
            node.log()
        );
    }
    assert_eq!(s.kubectl_ok(&["logs", "message-fallback"]), "first\nlast words\n");

    // PID namespaces: one per container unless shareProcessNamespace.
    let look = "for i in 1 2 3 4 5 6 7 8 9 10; do \
                if cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -q 'sleep 360[1]'; then echo sees-the-other; exec sleep 3600; fi; \
                sleep 1; done; echo alone; exec sleep 3600";
    for (name, share) in [("separate", false), ("shared", true)] {
        let mut pod = busybox_pod(name, &node, json!({ "command": ["sleep", "3601"] }), "Always");
        pod["spec"]["shareProcessNamespace"] = json!(share);
        let second = json!({ "name": "look", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                             "command": ["sh", "-c", look] });
        pod["spec"]["containers"].as_array_mut().unwrap().push(second);
        apply(&s, &pod);
    }
    for (name, expected) in [("separate", "alone"), ("shared", "sees-the-other")] {
        let mut out = String::new();
        let done = berth_testkit::wait_until(TIMEOUT, || {
            out = String::from_utf8_lossy(&s.kubectl(&["logs", name, "-c", "look"]).stdout).into_owned();
            !out.trim().is_empty()
        });
        assert!(done, "no answer from {name}; agent log:\n{}", node.log());
        assert_eq!(out.trim(), expected, "{name}");
    }

    // hostNetwork: the node's IP and hostname; a port it listens on is the node's (loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let serve =
        format!("mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www");
    let mut pod = busybox_pod(
        "host",
        &node,
        json!({ "command": ["sh", "-c", serve], "ports": [{ "containerPort": port }] }),
        "Always",
    );
    pod["spec"]["hostNetwork"] = json!(true);
    apply(&s, &pod);
    let pod = wait_pod(&s, &node, "host", "ran", |p| p["status"]["phase"] == "Running");
    let node_ip = s.kubectl_ok(&[
        "get",
        "node",
        &node.name,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(pod["status"]["podIP"], node_ip.trim(), "{pod:#}");
    let mut body = None;
    let answered = berth_testkit::wait_until(TIMEOUT, || {
        body = http_get("127.0.0.1", port, "/index.html");
        body.is_some()
    });
    assert!(answered, "no answer on 127.0.0.1:{port}; agent log:\n{}", node.log());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(body.unwrap().trim(), hostname.trim());
}

/// Whether the pod's sandbox (its pause container's task) no longer runs.
fn sandbox_stopped(node: &Node, pod: &str) -> bool {
    let ctr = |args: &[&str]| {
        let out = std::process::Command::new("ctr")
            .arg("-a")
            .arg(node.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let filter = format!("labels.\"io.cri-containerd.kind\"==sandbox,labels.\"io.kubernetes.pod.name\"=={pod}");
    let ids = ctr(&["containers", "ls", "-q", &filter]);
    let Some(id) = ids.lines().next().filter(|l| !l.is_empty()) else { return false };
    let tasks = ctr(&["tasks", "ls"]);
    !tasks.lines().any(|l| l.starts_with(id) && l.contains("RUNNING"))
}
