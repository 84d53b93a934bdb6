//! The real node agent end to end: `berth server` plus `berth agent` (its own containerd,
//! runc, CNI bridge) running busybox pods built locally, driven with the real kubectl.
//!
//! Each test has its own node name, data dir, bridge (`btest<n>`) and pod CIDR
//! (10.88.<n>.0/24); the [`Node`] guard stops the agent by PID (the agent removes its
//! sandboxes, stops containerd and deletes its bridge) and deletes the bridge again, even
//! when the test fails. Without containerd the tests skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

#[test]
fn a_busybox_pod_serves_http_on_its_pod_ip_and_deletion_cleans_up() {
    let s = server();
    let Some(node) = Node::start(&s, 1) else { return };
    let node_obj: Value = serde_json::from_str(&s.kubectl_ok(&["get", "node", &node.name, "-o", "json"])).unwrap();
    assert_eq!(node_obj["status"]["capacity"]["pods"], "110");
    assert!(node_obj["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().starts_with("containerd://"));
    let lease =
        s.kubectl_ok(&["get", "lease", "-n", "kube-node-lease", &node.name, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(lease, node.name);

    apply(
        &s,
        &busybox_pod(
            "web",
            &node,
            json!({ "command": httpd_command("hello from berth"),
        "ports": [{ "containerPort": 8080 }] }),
            "Always",
        ),
    );
    let pod = wait_pod(&s, &node, "web", "ran with a pod IP", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    });
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.88.1."), "{pod:#}");
    let status = &pod["status"]["containerStatuses"][0];
    assert!(status["containerID"].as_str().unwrap().starts_with("containerd://"), "{pod:#}");
    assert!(status["state"]["running"].is_object(), "{pod:#}");
    let mut body = None;
    assert!(
        wait_until(TIMEOUT, || {
            body = http_get(&ip, 8080, "/index.html");
            body.is_some()
        }),
        "no HTTP answer from {ip}:8080; agent log:\n{}",
        node.log()
    );
    assert_eq!(body.unwrap().trim(), "hello from berth");
    let ready = wait_pod(&s, &node, "web", "became Ready", |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    });
    assert_eq!(ready["status"]["qosClass"], "BestEffort");

    let before = node.containers();
    assert_eq!(before.len(), 2, "a sandbox and a container: {before:?}");
    s.kubectl_ok(&["delete", "pod", "web", "--timeout=60s"]);
    let out = s.kubectl(&["get", "pod", "web"]);
    assert!(!out.status.success(), "the pod is gone once deleted");
    assert!(wait_until(TIMEOUT, || node.containers().is_empty()), "left behind: {:?}", node.containers());
    assert!(http_get(&ip, 8080, "/index.html").is_none(), "the pod no longer answers");
}

fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

#[test]
fn env_comes_from_a_config_map_a_secret_and_the_downward_api() {
    let s = server();
    let Some(node) = Node::start(&s, 2) else { return };
    s.kubectl_ok(&["create", "configmap", "greeting", "--from-literal=GREETING=hello", "--from-literal=WHO=world"]);
    s.kubectl_ok(&["create", "secret", "generic", "token", "--from-literal=TOKEN=s3cret"]);
    let page = "$GREETING $WHO $TOKEN $POD_NAME $NODE $EXPANDED";
    apply(
        &s,
        &busybox_pod(
            "env",
            &node,
            json!({
                "command": httpd_command(page),
                "envFrom": [{ "configMapRef": { "name": "greeting" } }],
                "env": [
                    { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "token", "key": "TOKEN" } } },
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "EXPANDED", "value": "$(GREETING)-again" },
                ],
            }),
            "Always",
        ),
    );
    let pod =
        wait_pod(&s, &node, "env", "ran", |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let mut body = None;
    assert!(
        wait_until(TIMEOUT, || {
            body = http_get(&ip, 8080, "/index.html");
            body.is_some()
        }),
        "no HTTP answer; agent log:\n{}",
        node.log()
    );
    assert_eq!(body.unwrap().trim(), format!("hello world s3cret env {} hello-again", node.name));

    // A missing ConfigMap key: the container waits with CreateContainerConfigError.
    apply(
        &s,
        &busybox_pod(
            "env-missing",
            &node,
            json!({
                "command": ["sleep", "3600"],
                "env": [{ "name": "X", "valueFrom": { "configMapKeyRef": { "name": "greeting", "key": "NOPE" } } }],
            }),
            "Always",
        ),
    );
    let pod = wait_pod(&s, &node, "env-missing", "reported the config error", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert!(container_status(&pod)["state"]["waiting"]["message"].as_str().unwrap().contains("NOPE"), "{pod:#}");
    assert_eq!(pod["status"]["phase"], "Pending");
}

#[test]
fn a_failing_container_restarts_into_crash_loop_back_off() {
    let s = server();
    let Some(node) = Node::start(&s, 3) else { return };
    apply(&s, &busybox_pod("crash", &node, json!({ "command": ["sh", "-c", "exit 3"] }), "Always"));
    let pod = wait_pod(&s, &node, "crash", "backed off after restarts", |p| {
        let c = container_status(p);
        c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = container_status(&pod);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{pod:#}");
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error", "{pod:#}");
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    // The back-off ends (10 s) and it runs again: the count grows.
    wait_pod(&s, &node, "crash", "restarted again", |p| container_status(p)["restartCount"].as_i64().unwrap_or(0) >= 2);
    let out = s.kubectl_ok(&["get", "pod", "crash"]);
    assert!(out.contains("CrashLoopBackOff") || out.contains("Error") || out.contains("Running"), "{out}");
}

#[test]
fn run_to_completion_pods_succeed_or_fail_with_reasons() {
    let s = server();
    let Some(node) = Node::start(&s, 4) else { return };
    apply(&s, &busybox_pod("done", &node, json!({ "command": ["sh", "-c", "echo done"] }), "Never"));
    apply(&s, &busybox_pod("failed", &node, json!({ "command": ["sh", "-c", "exit 2"] }), "Never"));
    apply(&s, &busybox_pod("onfailure", &node, json!({ "command": ["true"] }), "OnFailure"));
    for name in ["done", "onfailure"] {
        let pod = wait_pod(&s, &node, name, "succeeded", |p| p["status"]["phase"] == "Succeeded");
        let t = &container_status(&pod)["state"]["terminated"];
        assert_eq!(t["exitCode"], 0, "{pod:#}");
        assert_eq!(t["reason"], "Completed", "{pod:#}");
        assert_eq!(container_status(&pod)["restartCount"], 0, "{pod:#}");
    }
    let pod = wait_pod(&s, &node, "failed", "failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(container_status(&pod)["state"]["terminated"]["exitCode"], 2, "{pod:#}");
    assert_eq!(container_status(&pod)["state"]["terminated"]["reason"], "Error", "{pod:#}");
    let out = s.kubectl_ok(&["get", "pod", "done"]);
    assert!(out.contains("Completed"), "{out}");
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let s = server();
    let Some(node) = Node::start(&s, 5) else { return };
    // dd allocates its 64 MiB block size at once: over the 16 MiB limit.
    apply(
        &s,
        &busybox_pod(
            "oom",
            &node,
            json!({
                "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"],
                "resources": { "limits": { "memory": "16Mi" } },
            }),
            "Never",
        ),
    );
    let pod = wait_pod(&s, &node, "oom", "failed", |p| p["status"]["phase"] == "Failed");
    let t = &container_status(&pod)["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{pod:#}");
    assert_eq!(t["exitCode"], 137, "{pod:#}");
    assert_eq!(pod["status"]["qosClass"], "Burstable", "{pod:#}");
}

#[test]
fn a_missing_image_is_reported_and_never_pulled() {
    let s = server();
    let Some(node) = Node::start(&s, 6) else { return };
    apply(&s, &{
        let mut p = busybox_pod(
            "noimage",
            &node,
            json!({ "image": "localhost/nope:1", "command": ["sleep", "3600"] }),
            "Always",
        );
        p["spec"]["terminationGracePeriodSeconds"] = json!(1);
        p
    });
    let pod = wait_pod(&s, &node, "noimage", "reported the image", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    let message = container_status(&pod)["state"]["waiting"]["message"].as_str().unwrap();
    assert!(message.contains("localhost/nope:1") && message.contains("Never"), "{message}");
    assert_eq!(pod["status"]["phase"], "Pending");
    // IfNotPresent: ErrImagePull, then ImagePullBackOff, with a message that says what to do.
    apply(
        &s,
        &busybox_pod(
            "nopull",
            &node,
            json!({ "image": "localhost/nope:1", "imagePullPolicy": "IfNotPresent" }),
            "Always",
        ),
    );
    let pod = wait_pod(&s, &node, "nopull", "backed off", |p| {
        container_status(p)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let message = container_status(&pod)["state"]["waiting"]["message"].as_str().unwrap();
    assert!(message.contains("berth image import"), "{message}");
    // Deleting a pod that never ran works too.
    s.kubectl_ok(&["delete", "pod", "nopull", "--timeout=60s"]);

    // `berth image import` of an archive with the missing name: the waiting pod starts.
    let ctr = |args: &[&str]| {
        let out = Command::new("ctr").arg("-a").arg(node.socket()).args(["-n", "k8s.io"]).args(args).output().unwrap();
        assert!(out.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let archive = node.dir.path().join("nope.tar");
    ctr(&["images", "tag", "localhost/busybox:1", "localhost/nope:1"]);
    ctr(&["images", "export", archive.to_str().unwrap(), "localhost/nope:1"]);
    ctr(&["images", "rm", "localhost/nope:1"]);
    let data_dir = node.dir.path().join("data");
    let berth = |args: &[&str]| {
        let out =
            Command::new(env!("CARGO_BIN_EXE_berth")).args(args).arg("--data-dir").arg(&data_dir).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = berth(&["image", "ls"]);
    assert!(ok && out.contains("localhost/busybox:1") && out.contains("localhost/pause:1"), "{out}");
    assert!(!out.contains("localhost/nope:1"), "{out}");
    let (ok, out) = berth(&["image", "import", "/nonexistent.tar"]);
    assert!(!ok && out.contains("/nonexistent.tar is not a file"), "{out}");
    let (ok, out) = berth(&["image", "import", archive.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = berth(&["image", "ls"]);
    assert!(ok && out.contains("localhost/nope:1"), "{out}");
    wait_pod(&s, &node, "noimage", "ran once its image was imported", |p| p["status"]["phase"] == "Running");

    s.kubectl_ok(&["delete", "pod", "noimage", "--timeout=60s"]);
    assert!(wait_until(TIMEOUT, || node.containers().is_empty()), "left behind: {:?}", node.containers());
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

#[test]
fn probes_gate_readiness_and_restart_failing_containers() {
    let s = server();
    let Some(node) = Node::start(&s, 7) else { return };
    let exec = |cmd: &str, period: i32, failures: i32| json!({ "exec": { "command": ["sh", "-c", cmd] }, "periodSeconds": period, "failureThreshold": failures });
    // Readiness by exec: not Ready until the file exists.
    apply(
        &s,
        &busybox_pod(
            "late",
            &node,
            json!({
                "command": ["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 3600"],
                "readinessProbe": exec("cat /tmp/ready", 1, 1),
            }),
            "Always",
        ),
    );
    // Liveness by exec: the file goes away after 3 s, the container is restarted.
    let mut dying = busybox_pod(
        "dying",
        &node,
        json!({
            "command": ["sh", "-c", "touch /tmp/alive; sleep 3; rm /tmp/alive; exec sleep 3600"],
            "livenessProbe": exec("cat /tmp/alive", 1, 1),
        }),
        "Always",
    );
    dying["spec"]["terminationGracePeriodSeconds"] = json!(1);
    apply(&s, &dying);
    // httpGet readiness on a named port and tcpSocket liveness: Ready and never restarted.
    // The liveness probe allows three misses: like the kubelet, the agent probes as soon as
    // the container runs, which on a loaded machine can be before httpd listens.
    apply(
        &s,
        &busybox_pod(
            "web",
            &node,
            json!({
                "command": httpd_command("ok"),
                "ports": [{ "name": "http", "containerPort": 8080 }],
                "readinessProbe": { "httpGet": { "path": "/index.html", "port": "http" }, "periodSeconds": 1 },
                "livenessProbe": { "tcpSocket": { "port": 8080 }, "periodSeconds": 1, "failureThreshold": 3 },
            }),
            "Always",
        ),
    );

    // A startup probe holds the other probes and readiness back until it passes.
    apply(
        &s,
        &busybox_pod(
            "slow",
            &node,
            json!({
                "command": ["sh", "-c", "sleep 3; touch /tmp/up; exec sleep 3600"],
                "startupProbe": exec("cat /tmp/up", 1, 30),
                "livenessProbe": exec("cat /tmp/up", 1, 1),
            }),
            "Always",
        ),
    );
    let pod = wait_pod(&s, &node, "late", "ran", |p| p["status"]["phase"] == "Running");
    if !ready(&pod) {
        assert_eq!(container_status(&pod)["ready"], false, "{pod:#}");
    }
    wait_pod(&s, &node, "late", "became Ready", ready);
    wait_pod(&s, &node, "web", "became Ready", ready);
    let pod = wait_pod(&s, &node, "dying", "was restarted by its liveness probe", |p| {
        container_status(p)["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    // Stopped by the agent: SIGTERM (143), or SIGKILL after the grace period (137).
    let code = container_status(&pod)["lastState"]["terminated"]["exitCode"].as_i64();
    assert!(matches!(code, Some(137 | 143)), "{pod:#}");
    let slow = wait_pod(&s, &node, "slow", "started", |p| container_status(p)["started"] == true && ready(p));
    assert_eq!(container_status(&slow)["restartCount"], 0, "the liveness probe waited: {slow:#}");
    let web = get_pod(&s, "web");
    assert_eq!(container_status(&web)["restartCount"], 0, "{web:#}");
    // A readiness failure takes Ready away again without a restart.
    let mut flaky = busybox_pod(
        "flaky",
        &node,
        json!({
            "command": ["sh", "-c", "touch /tmp/ready; sleep 5; rm /tmp/ready; exec sleep 3600"],
            "readinessProbe": exec("cat /tmp/ready", 1, 1),
        }),
        "Always",
    );
    flaky["spec"]["terminationGracePeriodSeconds"] = json!(1);
    apply(&s, &flaky);
    wait_pod(&s, &node, "flaky", "became Ready", ready);
    let pod = wait_pod(&s, &node, "flaky", "lost Ready", |p| p["status"]["phase"] == "Running" && !ready(p));
    assert_eq!(container_status(&pod)["restartCount"], 0, "{pod:#}");
}

#[test]
fn config_map_secret_and_empty_dir_volumes_are_mounted() {
    let s = server();
    let Some(node) = Node::start(&s, 8) else { return };
    s.kubectl_ok(&[
        "create",
        "configmap",
        "site",
        "--from-literal=index.html=from a configmap",
        "--from-literal=other=x",
    ]);
    s.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=hunter2"]);
    let mut pod = busybox_pod(
        "vols",
        &node,
        json!({
            "command": ["sh", "-c", "cat /secret/pw > /www/pw.txt; cp /site/index.html /www/; cp /cfg/page /www/page; \
                                    exec httpd -f -p 8080 -h /www"],
            "volumeMounts": [
                { "name": "site", "mountPath": "/site", "readOnly": true },
                { "name": "items", "mountPath": "/cfg" },
                { "name": "creds", "mountPath": "/secret" },
                { "name": "scratch", "mountPath": "/www" },
            ],
        }),
        "Always",
    );
    pod["spec"]["volumes"] = json!([
        { "name": "site", "configMap": { "name": "site" } },
        { "name": "items", "configMap": { "name": "site", "items": [{ "key": "index.html", "path": "page" }] } },
        { "name": "creds", "secret": { "secretName": "creds", "items": [{ "key": "password", "path": "pw" }] } },
        { "name": "scratch", "emptyDir": {} },
    ]);
    apply(&s, &pod);
    let p =
        wait_pod(&s, &node, "vols", "ran", |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let mut got = None;
    assert!(
        wait_until(TIMEOUT, || {
            got = http_get(&ip, 8080, "/index.html");
            got.is_some()
        }),
        "no HTTP answer; agent log:\n{}",
        node.log()
    );
    assert_eq!(got.unwrap(), "from a configmap");
    assert_eq!(http_get(&ip, 8080, "/pw.txt").as_deref(), Some("hunter2"));
    assert_eq!(http_get(&ip, 8080, "/page").as_deref(), Some("from a configmap"));

    // A missing ConfigMap: the pod waits in ContainerCreating and says why.
    let mut missing = busybox_pod(
        "novol",
        &node,
        json!({ "command": ["sleep", "3600"],
        "volumeMounts": [{ "name": "v", "mountPath": "/v" }] }),
        "Always",
    );
    missing["spec"]["volumes"] = json!([{ "name": "v", "configMap": { "name": "absent" } }]);
    apply(&s, &missing);
    let p = wait_pod(&s, &node, "novol", "reported the missing volume", |p| {
        container_status(p)["state"]["waiting"]["message"].as_str().is_some_and(|m| m.contains("absent"))
    });
    assert_eq!(container_status(&p)["state"]["waiting"]["reason"], "ContainerCreating", "{p:#}");
    assert_eq!(p["status"]["phase"], "Pending");
    // Deletion removes the pod's volume directories.
    let uid = get_pod(&s, "vols")["metadata"]["uid"].as_str().unwrap().to_string();
    let dir = node.dir.path().join("data/pods").join(&uid);
    assert!(dir.join("volumes/scratch/pw.txt").exists(), "{}", dir.display());
    s.kubectl_ok(&["delete", "pod", "vols", "novol", "--timeout=60s"]);
    assert!(wait_until(TIMEOUT, || !dir.exists()), "{} left behind", dir.display());

    // Graceful deletion: the container gets SIGTERM and its handler runs (seen through a
    // hostPath volume) before the pod object goes away.
    let host = node.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let mut graceful = busybox_pod(
        "graceful",
        &node,
        json!({
            "command": ["sh", "-c", "trap 'echo bye > /host/term; exit 0' TERM; touch /host/started; \
                                    while true; do sleep 1; done"],
            "volumeMounts": [{ "name": "host", "mountPath": "/host" }],
        }),
        "Always",
    );
    graceful["spec"]["terminationGracePeriodSeconds"] = json!(30);
    graceful["spec"]["volumes"] = json!([{ "name": "host", "hostPath": { "path": host.display().to_string() } }]);
    apply(&s, &graceful);
    wait_pod(&s, &node, "graceful", "ran", |p| p["status"]["phase"] == "Running");
    assert!(wait_until(TIMEOUT, || host.join("started").exists()), "the container never started");
    s.kubectl_ok(&["delete", "pod", "graceful", "--timeout=60s"]);
    assert_eq!(std::fs::read_to_string(host.join("term")).unwrap_or_default().trim(), "bye");
    assert!(!s.kubectl(&["get", "pod", "graceful"]).status.success(), "the pod is gone");
}

#[test]
fn a_restarted_agent_adopts_running_pods_without_restarting_them() {
    let s = server();
    let Some(mut node) = Node::start_with(&s, 9, &["--keep-pods"]) else { return };
    apply(&s, &busybox_pod("kept", &node, json!({ "command": httpd_command("still here") }), "Always"));
    let before =
        wait_pod(&s, &node, "kept", "ran", |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
    let ip = before["status"]["podIP"].as_str().unwrap().to_string();
    assert!(wait_until(TIMEOUT, || http_get(&ip, 8080, "/index.html").is_some()), "no HTTP answer");

    node.stop();
    // The agent and its containerd are gone; the pod still serves.
    assert_eq!(http_get(&ip, 8080, "/index.html").as_deref().map(str::trim), Some("still here"));

    // The next agent (without --keep-pods, so the guard's stop cleans everything up) adopts it.
    node.spawn(&s, &[]);
    assert!(wait_until(TIMEOUT, || node.log().contains("adopted a running pod")), "agent log:\n{}", node.log());
    let after = wait_pod(&s, &node, "kept", "stayed Running", |p| p["status"]["phase"] == "Running");
    let id = |p: &Value| container_status(p)["containerID"].clone();
    assert_eq!(id(&after), id(&before), "the same container: {after:#}");
    assert_eq!(container_status(&after)["restartCount"], 0, "{after:#}");
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
    assert_eq!(node.containers().len(), 2, "no second sandbox: {:?}", node.containers());
    assert_eq!(http_get(&ip, 8080, "/index.html").as_deref().map(str::trim), Some("still here"));
}

#[test]
fn the_server_runs_its_own_node_and_stops_with_it() {
    if !runtime_installed() {
        return;
    }
    let _bridge = BridgeGuard("btest16");
    let mut s = TestServer::start_with_agent(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--node-name", "server-node", "--bridge-name", "btest16", "--pod-cidr", "10.88.16.0/24"],
    );
    let ready = wait_until(TIMEOUT, || {
        s.kubectl(&["get", "node", "server-node", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
            .stdout
            == b"True"
    });
    assert!(ready, "the server's node never became Ready:\n{}", s.log());
    // The node holds its own identity, not the admin's.
    assert!(s.dir.path().join("tls/client-kubelet.crt").exists());
    let lease = s.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "server-node",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease, "server-node");
    // A pod without a nodeName is scheduled onto it and serves on its pod IP.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "terminationGracePeriodSeconds": 3, "containers": [{
            "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
            "command": httpd_command("served by the server's node"), "ports": [{ "containerPort": 8080 }] }] },
    });
    apply(&s, &pod);
    let mut last = Value::Null;
    let running = wait_until(TIMEOUT, || {
        last = get_pod(&s, "web");
        last["status"]["phase"] == "Running" && last["status"]["podIP"].is_string()
    });
    assert!(running, "{last:#}\n{}", s.log());
    assert_eq!(last["spec"]["nodeName"], "server-node");
    let ip = last["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.88.16."), "{last:#}");
    let mut body = None;
    assert!(wait_until(TIMEOUT, || {
        body = http_get(&ip, 8080, "/index.html");
        body.is_some()
    }));
    assert_eq!(body.unwrap().trim(), "served by the server's node");
    // SIGTERM stops the node with the server: its pods and containerd go.
    let status = s.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}\n{}", s.log());
    assert!(http_get(&ip, 8080, "/index.html").is_none(), "the pod still answers after the server stopped");
    assert!(
        !s.dir.path().join("agent/containerd/containerd.sock").exists() || {
            let out = Command::new("ctr")
                .arg("-a")
                .arg(s.dir.path().join("agent/containerd/containerd.sock"))
                .args(["-n", "k8s.io", "containers", "ls", "-q"])
                .output()
                .expect("ctr");
            !out.status.success()
        }
    );
}

#[test]
fn a_server_whose_node_cannot_start_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["server", "--https-listen-port", "0", "--node-name", "no-runtime", "--bridge-name", "btest17"])
        .args(["--containerd-socket", "/nonexistent/containerd.sock"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run berth server");
    let _ = Command::new("ip").args(["link", "del", "btest17"]).stderr(Stdio::null()).status();
    assert!(!out.status.success(), "the server ran without its node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("starting this server's node (or run with --disable-agent)"), "{stderr}");
    assert!(stderr.contains("/nonexistent/containerd.sock"), "{stderr}");
}
