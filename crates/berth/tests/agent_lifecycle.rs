//! Container lifecycle on the real node agent: postStart and preStop hooks (exec, httpGet,
//! sleep), gRPC health probes, and the eviction of pods whose emptyDir outgrows its
//! sizeLimit. Real `berth server`, `berth agent` (containerd, runc, CNI), busybox pods,
//! real kubectl.
//!
//! Bridges `btest40`–`btest43`, pod CIDRs 10.88.<n>.0/24; the [`Node`] guard stops the
//! agent by PID and deletes its bridge even when a test fails. Without containerd the tests
//! skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use base64::Engine;
use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

/// The Events about pod `name` in `default`.
fn pod_events(s: &TestServer, name: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let (_, list) = s.http_json("GET", &path, None);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits for a Warning event `reason` about pod `name` whose message contains `text`.
fn wait_event(s: &TestServer, node: &Node, name: &str, reason: &str, text: &str) -> Value {
    let mut found = None;
    let ok = wait_until(TIMEOUT, || {
        found = pod_events(s, name).into_iter().find(|e| {
            e["reason"] == reason && e["type"] == "Warning" && e["message"].as_str().is_some_and(|m| m.contains(text))
        });
        found.is_some()
    });
    assert!(ok, "no {reason} event with {text:?} for {name}: {:#?}\nagent log:\n{}", pod_events(s, name), node.log());
    found.unwrap()
}

fn status_of<'a>(pod: &'a Value, container: &str) -> &'a Value {
    let all = pod["status"]["containerStatuses"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["name"] == container)).unwrap_or(&Value::Null)
}

fn ready(pod: &Value) -> Option<&str> {
    let conditions = pod["status"]["conditions"].as_array()?;
    conditions.iter().find(|c| c["type"] == "Ready")?["status"].as_str()
}

#[test]
fn post_start_hooks_run_after_the_start_and_a_failing_one_kills_the_container() {
    let s = server();
    let Some(node) = Node::start(&s, 40) else { return };
    // An exec hook that writes a page the container serves; a sleep hook on a second container.
    let mut pod = busybox_pod(
        "hooked",
        &node,
        json!({ "command": httpd_command("main"), "lifecycle": { "postStart": { "exec": {
            "command": ["sh", "-c", "mkdir -p /tmp/www && echo started > /tmp/www/poststart"] } } } }),
        "Always",
    );
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
        "name": "napper", "image": "localhost/busybox:1", "imagePullPolicy": "Never", "command": ["sleep", "3600"],
        "lifecycle": { "postStart": { "sleep": { "seconds": 1 } } } }));
    apply(&s, &pod);
    let p = wait_pod(&s, &node, "hooked", "ran", |p| {
        p["status"]["phase"] == "Running" && status_of(p, "napper")["state"]["running"].is_object()
    });
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    let mut page = None;
    let served = wait_until(TIMEOUT, || {
        page = http_get(&ip, 8080, "/poststart");
        page.is_some()
    });
    assert!(served, "the hook's page is not served; agent log:\n{}", node.log());
    assert_eq!(page.unwrap().trim(), "started");
    assert_eq!(status_of(&p, "main")["restartCount"], 0, "{p:#}");

    // A failing exec hook: the container is killed, and with restartPolicy Never the pod fails.
    apply(
        &s,
        &busybox_pod(
            "hook-fails",
            &node,
            json!({ "command": ["sleep", "3600"], "lifecycle": { "postStart": { "exec": {
                "command": ["sh", "-c", "echo oops >&2; exit 7"] } } } }),
            "Never",
        ),
    );
    let event = wait_event(&s, &node, "hook-fails", "FailedPostStartHook", "exited with 7");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("Exec lifecycle hook ([sh -c echo oops >&2; exit 7]) for Container \"main\""),
        "{event:#}"
    );
    assert!(message.contains("oops"), "{event:#}");
    let p = wait_pod(&s, &node, "hook-fails", "failed", |p| p["status"]["phase"] == "Failed");
    assert!(status_of(&p, "main")["state"]["terminated"].is_object(), "{p:#}");
    assert_eq!(status_of(&p, "main")["restartCount"], 0, "{p:#}");

    // A failing httpGet hook (nothing listens): killed and, under Always, restarted.
    apply(
        &s,
        &busybox_pod(
            "http-hook-fails",
            &node,
            json!({ "command": ["sleep", "3600"], "lifecycle": { "postStart": { "httpGet": {
                "path": "/started", "port": 9999 } } } }),
            "Always",
        ),
    );
    wait_event(&s, &node, "http-hook-fails", "FailedPostStartHook", "HTTP lifecycle hook (/started)");
    wait_pod(&s, &node, "http-hook-fails", "restarted", |p| {
        status_of(p, "main")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    // kubectl describe shows the events.
    let described = s.kubectl_ok(&["describe", "pod", "hook-fails"]);
    assert!(described.contains("FailedPostStartHook"), "{described}");
}

#[test]
fn pre_stop_hooks_run_before_sigterm_when_a_pod_is_deleted() {
    let s = server();
    let Some(node) = Node::start(&s, 41) else { return };
    let logs = tempfile::tempdir().unwrap();
    // Each container logs its start and its SIGTERM; `main` has an exec preStop hook that
    // logs too, `napper` a sleep one.
    let looping = |name: &str| {
        format!(
            "trap 'echo term >> /log/{name}; exit 0' TERM; echo started >> /log/{name}; while true; do sleep 1; done"
        )
    };
    let mut pod = busybox_pod(
        "stopper",
        &node,
        json!({ "command": ["sh", "-c", looping("main")], "volumeMounts": [{ "name": "log", "mountPath": "/log" }],
            "lifecycle": { "preStop": { "exec": { "command": ["sh", "-c", "echo prestop >> /log/main"] } } } }),
        "Always",
    );
    pod["spec"]["terminationGracePeriodSeconds"] = json!(20);
    pod["spec"]["volumes"] = json!([{ "name": "log", "hostPath": { "path": logs.path(), "type": "Directory" } }]);
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
        "name": "napper", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
        "command": ["sh", "-c", looping("napper")], "volumeMounts": [{ "name": "log", "mountPath": "/log" }],
        "lifecycle": { "preStop": { "sleep": { "seconds": 2 } } } }));
    apply(&s, &pod);
    wait_pod(&s, &node, "stopper", "ran", |p| p["status"]["phase"] == "Running");
    let read = |name: &str| std::fs::read_to_string(logs.path().join(name)).unwrap_or_default();
    assert!(
        wait_until(TIMEOUT, || read("main").contains("started") && read("napper").contains("started")),
        "the containers did not start; agent log:\n{}",
        node.log()
    );
    s.kubectl_ok(&["delete", "pod", "stopper", "--timeout=60s"]);
    assert!(!s.kubectl(&["get", "pod", "stopper"]).status.success(), "the pod is gone once deleted");
    let main: Vec<String> = read("main").lines().map(str::to_string).collect();
    assert_eq!(main, ["started", "prestop", "term"], "agent log:\n{}", node.log());
    let napper: Vec<String> = read("napper").lines().map(str::to_string).collect();
    assert_eq!(napper, ["started", "term"], "agent log:\n{}", node.log());
    let events = pod_events(&s, "stopper");
    assert!(events.iter().all(|e| e["reason"] != "FailedPreStopHook"));
    // As the kubelet, one Normal `Killing` event per container stopped.
    let mut killing: Vec<&str> = events
        .iter()
        .filter(|e| e["reason"] == "Killing" && e["type"] == "Normal")
        .filter_map(|e| e["message"].as_str())
        .collect();
    killing.sort();
    assert_eq!(killing, ["Stopping container main", "Stopping container napper"], "{events:?}");
}

/// The server side of one `grpc.health.v1.Health/Check` call as raw HTTP/2 frames: SETTINGS,
/// the ACK of the client's, response headers, one message with `status` (1 SERVING,
/// 2 NOT_SERVING), trailers `grpc-status: 0`.
fn health_response(status: u8) -> Vec<u8> {
    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut out = Vec::new();
    frame(&mut out, 4, 0, 0, &[]);
    frame(&mut out, 4, 1, 0, &[]);
    // HPACK: `:status: 200` (static entry 8); content-type (static 31) without indexing.
    let mut headers = vec![0x88, 0x0f, 0x10, 16];
    headers.extend_from_slice(b"application/grpc");
    frame(&mut out, 1, 0x4, 1, &headers);
    frame(&mut out, 0, 0, 1, &[0, 0, 0, 0, 2, 0x08, status]);
    let mut trailers = vec![0x00, 11];
    trailers.extend_from_slice(b"grpc-status");
    trailers.extend_from_slice(&[1, b'0']);
    frame(&mut out, 1, 0x5, 1, &trailers);
    out
}

#[test]
fn grpc_probes_gate_readiness_and_restart_unhealthy_containers() {
    let s = server();
    let Some(node) = Node::start(&s, 42) else { return };
    // busybox's nc answers each connection with a canned gRPC health answer, once the
    // request has arrived; then it reads until the prober hangs up.
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "grpc", "namespace": "default" },
            "data": { "serve.sh": "sleep 1; cat /grpc/$1; cat > /dev/null\n" },
            "binaryData": { "serving": b64(health_response(1)), "not-serving": b64(health_response(2)) } }),
    );
    let grpc_pod = |name: &str, answer: &str, probe: Value| {
        let mut pod = busybox_pod(
            name,
            &node,
            json!({ "command": ["nc", "-ll", "-p", "50051", "-e", "/bin/sh", "/grpc/serve.sh", answer],
                "volumeMounts": [{ "name": "grpc", "mountPath": "/grpc" }] }),
            "Always",
        );
        pod["spec"]["volumes"] = json!([{ "name": "grpc", "configMap": { "name": "grpc" } }]);
        pod["spec"]["containers"][0].as_object_mut().unwrap().extend(probe.as_object().unwrap().clone());
        pod
    };
    let probe = json!({ "grpc": { "port": 50051, "service": "berth" }, "periodSeconds": 2, "timeoutSeconds": 5,
        "failureThreshold": 2 });
    apply(&s, &grpc_pod("grpc-ok", "serving", json!({ "readinessProbe": probe, "livenessProbe": probe })));
    apply(&s, &grpc_pod("grpc-sick", "not-serving", json!({ "readinessProbe": probe, "livenessProbe": probe })));
    let ok = wait_pod(&s, &node, "grpc-ok", "became Ready", |p| ready(p) == Some("True"));
    assert_eq!(status_of(&ok, "main")["ready"], true, "{ok:#}");
    let sick = wait_pod(&s, &node, "grpc-sick", "was restarted by its liveness probe", |p| {
        status_of(p, "main")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    assert_eq!(ready(&sick), Some("False"), "{sick:#}");
    // The healthy one keeps passing: not restarted, still Ready.
    let ok = get_pod(&s, "grpc-ok");
    assert_eq!(status_of(&ok, "main")["restartCount"], 0, "{ok:#}");
    assert_eq!(ready(&ok), Some("True"), "{ok:#}");
}

#[test]
fn a_pod_whose_empty_dir_outgrows_its_size_limit_is_evicted() {
    let s = server();
    let Some(node) = Node::start(&s, 43) else { return };
    let filler = |name: &str, limit: &str, megabytes: u32| {
        let mut pod = busybox_pod(
            name,
            &node,
            json!({ "command": ["sh", "-c", format!("dd if=/dev/zero of=/scratch/big bs=1M count={megabytes}; sleep 3600")],
                "volumeMounts": [{ "name": "scratch", "mountPath": "/scratch" }] }),
            "Always",
        );
        pod["spec"]["volumes"] = json!([{ "name": "scratch", "emptyDir": { "sizeLimit": limit } }]);
        pod
    };
    apply(&s, &filler("roomy", "10Mi", 1));
    apply(&s, &filler("filler", "1Mi", 2));
    // A Memory emptyDir is a tmpfs of the sizeLimit: writes stop there.
    let mut memory = busybox_pod(
        "in-memory",
        &node,
        json!({ "command": ["sh", "-c", "mkdir -p /tmp/www; grep ' /mem ' /proc/mounts > /tmp/www/mounts; \
            dd if=/dev/zero of=/mem/big bs=1M count=2 2> /tmp/www/dd; exec httpd -f -p 8080 -h /tmp/www"],
            "volumeMounts": [{ "name": "mem", "mountPath": "/mem" }] }),
        "Always",
    );
    memory["spec"]["volumes"] = json!([{ "name": "mem", "emptyDir": { "medium": "Memory", "sizeLimit": "1Mi" } }]);
    apply(&s, &memory);

    let p = wait_pod(&s, &node, "filler", "was evicted", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "Evicted", "{p:#}");
    assert_eq!(p["status"]["message"], "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\".", "{p:#}");
    assert!(status_of(&p, "main")["state"]["terminated"].is_object(), "containers stopped: {p:#}");
    wait_event(&s, &node, "filler", "Evicted", "exceeds the limit");
    let described = s.kubectl_ok(&["describe", "pod", "filler"]);
    assert!(described.lines().any(|l| l.starts_with("Reason:") && l.contains("Evicted")), "{described}");
    // It stays Failed: nothing restarts it.
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let gone = wait_until(TIMEOUT, || !node.dir.path().join(format!("data/pods/{uid}")).exists());
    assert!(gone, "the evicted pod's volumes are removed");
    assert_eq!(get_pod(&s, "filler")["status"]["phase"], "Failed");

    // Under its limit: running, never evicted.
    let roomy = wait_pod(&s, &node, "roomy", "ran", |p| p["status"]["phase"] == "Running");
    assert!(roomy["status"]["reason"].is_null(), "{roomy:#}");

    let p = wait_pod(&s, &node, "in-memory", "ran", |p| p["status"]["phase"] == "Running");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert!(wait_until(TIMEOUT, || http_get(&ip, 8080, "/dd").is_some()), "agent log:\n{}", node.log());
    let mounts = http_get(&ip, 8080, "/mounts").unwrap();
    assert!(mounts.starts_with("tmpfs /mem tmpfs") && mounts.contains("size=1024k"), "{mounts}");
    let dd = http_get(&ip, 8080, "/dd").unwrap();
    assert!(dd.contains("No space left on device"), "{dd}");
    assert_eq!(get_pod(&s, "in-memory")["status"]["phase"], "Running");
    // Deleting it unmounts the tmpfs (and its token volume's: the other pods' stay).
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_dir = node.dir.path().join(format!("data/pods/{uid}/"));
    let mounted = || {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines().any(|l| l.contains(pod_dir.to_str().unwrap()))
    };
    assert!(mounted(), "the tmpfs is mounted on the node");
    s.kubectl_ok(&["delete", "pod", "in-memory", "--timeout=60s"]);
    assert!(wait_until(TIMEOUT, || !mounted()), "the tmpfs is left mounted");
}
