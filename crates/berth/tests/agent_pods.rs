//! Pods on the real node agent end to end, for what tests/agent.rs leaves out: init
//! containers, the status fields of a real pod, pod-to-pod traffic on one node, hostPorts,
//! Secret volume updates and optional keys, hostPath types, startup probe failures, SIGKILL after the grace
//! period, `kubectl attach` with stdin and a tty, and port-forward over plain SPDY. Real
//! `berth server`, `berth agent` (containerd, runc, CNI), busybox pods, real kubectl.
//!
//! Bridges `btest52` and `btest53` (pod CIDRs 10.88.<n>.0/24), each held by one test at a
//! time through [`Node`]'s bridge lock; the guard stops the agent by PID and deletes its
//! bridge even when a test fails. Traffic goes only to pod IPs on those bridges and to
//! 127.0.0.1. Without containerd the tests skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::{TestServer, wait_until};
use common::node_with_own_kubelet_port as node;
use common::*;
use serde_json::{Value, json};

fn container(name: &str, command: &str) -> Value {
    json!({ "name": name, "image": "localhost/busybox:1", "imagePullPolicy": "Never",
            "command": ["sh", "-c", command] })
}

/// A pod left to the scheduler (the test's node is the cluster's only one).
fn pod(name: &str, restart: &str, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": containers },
    })
}

fn status_named<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    let all = pod["status"][list].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

fn condition<'a>(pod: &'a Value, type_: &str) -> &'a Value {
    let all = pod["status"]["conditions"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// An RFC 3339 time of the API (seconds, UTC, `Z`): such strings sort as the times do.
fn time<'a>(v: &'a Value, what: &str) -> &'a str {
    let t = v.as_str().unwrap_or_else(|| panic!("{what} is not a time: {v}"));
    assert!(t.len() == 20 && t.ends_with('Z'), "{what}: {t}");
    t
}

/// Seconds between two API times (`later` − `earlier`).
fn seconds_between(earlier: &str, later: &str) -> i64 {
    let secs = |t: &str| {
        let out = Command::new("date").args(["-u", "-d", t, "+%s"]).output().expect("date");
        String::from_utf8_lossy(&out.stdout).trim().parse::<i64>().expect("epoch seconds")
    };
    secs(later) - secs(earlier)
}

/// The Events about pod `name` in `default`.
fn pod_events(s: &TestServer, name: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let (_, list) = s.http_json("GET", &path, None);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits for an event `type_`/`reason` about pod `name` whose message starts with `prefix`.
fn wait_event(s: &TestServer, node: &Node, name: &str, type_: &str, reason: &str, prefix: &str) -> Value {
    let mut found = None;
    let ok = wait_until(TIMEOUT, || {
        found = pod_events(s, name).into_iter().find(|e| {
            e["reason"] == reason && e["type"] == type_ && e["message"].as_str().is_some_and(|m| m.starts_with(prefix))
        });
        found.is_some()
    });
    assert!(ok, "no {reason} event {prefix:?} for {name}: {:#?}\nagent log:\n{}", pod_events(s, name), node.log());
    found.unwrap()
}

/// The STATUS column of `kubectl get pod`.
fn shown_status(s: &TestServer, name: &str) -> String {
    let out = s.kubectl_ok(&["get", "pod", name, "--no-headers"]);
    out.split_whitespace().nth(2).unwrap_or_default().to_string()
}

fn exec(s: &TestServer, pod: &str, command: &str) -> Output {
    kubectl_timed(s, &["exec", pod, "--", "sh", "-c", command], None, TIMEOUT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_containers_run_in_order_before_the_app_and_real_pods_report_their_status() {
    let s = server();
    let Some(node) = node(&s, 52) else { return };
    let mut p = pod(
        "inits",
        "Always",
        vec![json!({ "name": "app", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                     "command": ["sh", "-c", "cat /work/order; exec sleep 3600"],
                     "volumeMounts": [{ "name": "work", "mountPath": "/work" }],
                     "readinessProbe": { "exec": { "command": ["true"] }, "periodSeconds": 1 } })],
    );
    let init = |name: &str, cmd: &str| {
        let mut c = container(name, cmd);
        c["volumeMounts"] = json!([{ "name": "work", "mountPath": "/work" }]);
        c
    };
    p["spec"]["initContainers"] =
        json!([init("first", "echo first >> /work/order; sleep 1"), init("second", "echo second >> /work/order")]);
    p["spec"]["volumes"] = json!([{ "name": "work", "emptyDir": {} }]);
    apply(&s, &p);
    let ready = |p: &Value| condition(p, "Ready")["status"] == "True";
    let p = wait_pod(&s, &node, "inits", "became Ready", ready);
    assert_eq!(s.kubectl_ok(&["logs", "inits", "-c", "app"]), "first\nsecond\n", "the init containers ran in order");
    let (first, second) =
        (status_named(&p, "initContainerStatuses", "first"), status_named(&p, "initContainerStatuses", "second"));
    for c in [first, second] {
        let t = &c["state"]["terminated"];
        assert_eq!((t["exitCode"].as_i64(), t["reason"].as_str()), (Some(0), Some("Completed")), "{p:#}");
        assert_eq!(c["ready"], true, "a completed init container is ready, as the kubelet reports it: {p:#}");
        assert_eq!(c["started"], false, "{p:#}");
        assert_eq!(c["restartCount"], 0, "{p:#}");
        assert!(c["containerID"].as_str().is_some_and(|id| id.starts_with("containerd://")), "{p:#}");
    }
    let first_done = time(&first["state"]["terminated"]["finishedAt"], "first finishedAt");
    let second_started = time(&second["state"]["terminated"]["startedAt"], "second startedAt");
    let second_done = time(&second["state"]["terminated"]["finishedAt"], "second finishedAt");
    assert!(first_done <= second_started, "second started before first finished: {p:#}");
    let app = status_named(&p, "containerStatuses", "app");
    let app_started = time(&app["state"]["running"]["startedAt"], "app startedAt");
    assert!(second_done <= app_started, "the app started before the init containers finished: {p:#}");
    assert!(time(&condition(&p, "Initialized")["lastTransitionTime"], "Initialized") >= second_done, "{p:#}");

    // The fields of a real pod's status.
    let node_obj: Value = serde_json::from_str(&s.kubectl_ok(&["get", "node", &node.name, "-o", "json"])).unwrap();
    let internal = node_obj["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .map(|a| a["address"].clone())
        .expect("an InternalIP");
    assert_eq!(p["spec"]["nodeName"], node.name.as_str(), "scheduled onto the test's node");
    assert_eq!(p["status"]["hostIP"], internal, "{p:#}");
    assert_eq!(p["status"]["hostIPs"], json!([{ "ip": internal }]), "{p:#}");
    assert_eq!(p["status"]["podIPs"], json!([{ "ip": p["status"]["podIP"] }]), "{p:#}");
    let start = time(&p["status"]["startTime"], "startTime");
    assert!(start <= time(&first["state"]["terminated"]["startedAt"], "first startedAt"), "{p:#}");
    assert!(app["containerID"].as_str().is_some_and(|id| id.starts_with("containerd://")), "{p:#}");
    assert!(app["imageID"].as_str().is_some_and(|id| id.contains("sha256:")), "{p:#}");
    assert_eq!(app["image"], "localhost/busybox:1", "{p:#}");
    assert_eq!((&app["started"], &app["ready"]), (&json!(true), &json!(true)), "{p:#}");
    // Every condition True, each no earlier than the one it follows.
    let order = ["PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"];
    let mut previous = "";
    for type_ in order {
        let c = condition(&p, type_);
        assert_eq!(c["status"], "True", "{type_}: {p:#}");
        let t = time(&c["lastTransitionTime"], type_);
        assert!(t >= previous, "{type_} at {t}, before {previous}: {p:#}");
        previous = t;
    }
    assert_eq!(
        condition(&p, "ContainersReady")["lastTransitionTime"],
        condition(&p, "Ready")["lastTransitionTime"],
        "{p:#}"
    );

    // A failing init container under restartPolicy Never: the pod fails, the app never runs.
    let mut failing = pod("init-fails", "Never", vec![container("app", "echo app ran")]);
    failing["spec"]["initContainers"] = json!([container("setup", "echo setting up; exit 3")]);
    apply(&s, &failing);
    let p = wait_pod(&s, &node, "init-fails", "failed", |p| p["status"]["phase"] == "Failed");
    let setup = status_named(&p, "initContainerStatuses", "setup");
    assert_eq!(setup["state"]["terminated"]["exitCode"], 3, "{p:#}");
    assert_eq!(setup["state"]["terminated"]["reason"], "Error", "{p:#}");
    assert_eq!(setup["ready"], false, "{p:#}");
    let app = status_named(&p, "containerStatuses", "app");
    assert!(app["containerID"].is_null() && app["state"]["terminated"].is_null(), "the app ran: {p:#}");
    assert_eq!(app["state"]["waiting"]["reason"], "PodInitializing", "{p:#}");
    assert_eq!(condition(&p, "Initialized")["status"], "False", "{p:#}");
    assert_eq!(condition(&p, "Initialized")["reason"], "ContainersNotInitialized", "{p:#}");
    assert_eq!(shown_status(&s, "init-fails"), "Init:Error");

    // Under restartPolicy Always it is restarted with back-off.
    let mut looping = pod("init-loops", "Always", vec![container("app", "exec sleep 3600")]);
    looping["spec"]["initContainers"] = json!([container("setup", "exit 1")]);
    apply(&s, &looping);
    let p = wait_pod(&s, &node, "init-loops", "backed off", |p| {
        let setup = status_named(p, "initContainerStatuses", "setup");
        setup["restartCount"].as_i64() >= Some(1) && setup["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let setup = status_named(&p, "initContainerStatuses", "setup");
    assert_eq!(setup["lastState"]["terminated"]["exitCode"], 1, "{p:#}");
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    assert_eq!(condition(&p, "Initialized")["reason"], "ContainersNotInitialized", "{p:#}");
    assert_eq!(status_named(&p, "containerStatuses", "app")["state"]["waiting"]["reason"], "PodInitializing");
    let shown = wait_until(TIMEOUT, || shown_status(&s, "init-loops") == "Init:CrashLoopBackOff");
    assert!(shown, "kubectl shows {:?}", shown_status(&s, "init-loops"));
}

/// A port no one listens on now (the system's pick, closed again).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn pods_reach_each_other_on_one_node_and_host_ports_reach_pods() {
    let s = server();
    let Some(node) = node(&s, 53) else { return };
    let host_port = free_port();
    let mut web = container("web", "mkdir -p /www && echo from-web > /www/index.html && exec httpd -f -p 8080 -h /www");
    web["ports"] = json!([{ "containerPort": 8080, "hostPort": host_port }]);
    apply(&s, &pod("web", "Always", vec![web.clone()]));
    apply(&s, &pod("client", "Always", vec![container("main", "exec sleep 3600")]));
    let running = |p: &Value| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string();
    let w = wait_pod(&s, &node, "web", "ran", running);
    let c = wait_pod(&s, &node, "client", "ran", running);
    let web_ip = w["status"]["podIP"].as_str().unwrap().to_string();
    assert_ne!(web_ip, c["status"]["podIP"].as_str().unwrap(), "two pods, two IPs");
    assert!(web_ip.starts_with("10.88.53."), "{w:#}");

    // Pod to pod by pod IP, from inside the client (busybox nc: Debian's static busybox
    // wget crashes, on the host too).
    let mut out = None;
    let get = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {web_ip} 8080");
    let reached = wait_until(TIMEOUT, || {
        let o = exec(&s, "client", &get);
        let answer = stdout(&o);
        let ok = answer.starts_with("HTTP/1.") && answer.lines().next().is_some_and(|l| l.contains(" 200 OK"));
        out = Some(o);
        ok
    });
    assert!(reached, "client never reached {web_ip}: {out:?}\nagent log:\n{}", node.log());
    assert!(stdout(out.as_ref().unwrap()).ends_with("\r\n\r\nfrom-web\n"), "{out:?}");

    // The hostPort from the host, on the loopback address (portmap's DNAT).
    let mut body = None;
    let served = wait_until(TIMEOUT, || {
        body = http_get("127.0.0.1", host_port, "/index.html");
        body.is_some()
    });
    assert!(served, "nothing on 127.0.0.1:{host_port}; agent log:\n{}", node.log());
    assert_eq!(body.unwrap(), "from-web\n");

    // A second pod asking for the same hostPort does not fit the node: the scheduler
    // leaves it Pending and says why.
    apply(&s, &pod("web-2", "Always", vec![web.clone()]));
    let p = wait_pod(&s, &node, "web-2", "was found unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    let message = condition(&p, "PodScheduled")["message"].as_str().unwrap_or_default();
    assert!(message.contains("1 node(s) didn't have free ports for the requested pod ports"), "{p:#}");
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    assert!(p["spec"]["nodeName"].is_null(), "{p:#}");

    // Deleting the first pod frees the port: the second one is scheduled and serves it.
    s.kubectl_ok(&["delete", "pod", "web", "--timeout=60s"]);
    let p = wait_pod(&s, &node, "web-2", "ran", running);
    let mut body = None;
    let served = wait_until(TIMEOUT, || {
        body = http_get("127.0.0.1", host_port, "/index.html");
        body.is_some()
    });
    assert!(served, "web-2 is not reached on its hostPort: {p:#}\nagent log:\n{}", node.log());

    // A pod bound to the node past the scheduler with the same hostPort: the node refuses
    // it as the kubelet's admission does, and web-2 keeps the port.
    let mut bound = pod("web-3", "Always", vec![web]);
    bound["spec"]["nodeName"] = json!(node.name);
    apply(&s, &bound);
    let p = wait_pod(&s, &node, "web-3", "was rejected", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "NodePorts", "{p:#}");
    let message = "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports";
    assert_eq!(p["status"]["message"], format!("Pod was rejected: {message}"), "{p:#}");
    assert!(status_named(&p, "containerStatuses", "web")["containerID"].is_null(), "{p:#}");
    wait_event(&s, &node, "web-3", "Warning", "NodePorts", message);
    assert_eq!(http_get("127.0.0.1", host_port, "/index.html").as_deref(), Some("from-web\n"));
    s.kubectl_ok(&["delete", "pod", "web-3", "--timeout=60s"]);
}

#[test]
fn secret_volumes_optional_sources_and_host_path_types_behave_as_the_kubelet() {
    let s = server();
    let Some(node) = node(&s, 52) else { return };
    s.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=one", "--from-literal=user=me"]);
    let mut p = pod("reader", "Always", vec![container("main", "exec sleep 3600")]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        { "name": "creds", "mountPath": "/creds" },
        { "name": "some", "mountPath": "/some" },
        { "name": "later", "mountPath": "/later" },
    ]);
    p["spec"]["volumes"] = json!([
        { "name": "creds", "secret": { "secretName": "creds" } },
        // An optional item whose key is missing is left out; the others are written.
        { "name": "some", "secret": { "secretName": "creds", "optional": true, "items": [
            { "key": "user", "path": "who" }, { "key": "absent", "path": "nothing" }] } },
        // An optional Secret that does not exist yet: an empty directory, filled once it exists.
        { "name": "later", "secret": { "secretName": "not-yet", "optional": true } },
    ]);
    apply(&s, &p);
    wait_pod(&s, &node, "reader", "ran", |p| p["status"]["phase"] == "Running");
    let read = |path: &str| stdout(&exec(&s, "reader", &format!("cat {path}")));
    assert_eq!(read("/creds/password"), "one");
    assert_eq!(read("/some/who"), "me");
    // (The atomic writer's `..data` and timestamped directories are hidden, as the kubelet's.)
    assert_eq!(stdout(&exec(&s, "reader", "ls /some; echo; ls /later")), "who\n\n");

    // The Secret changes: so do the mounted files.
    s.kubectl_ok(&["patch", "secret", "creds", "--type=merge", "-p", r#"{"stringData":{"password":"two"}}"#]);
    let mut seen = String::new();
    let updated = wait_until(TIMEOUT, || {
        seen = read("/creds/password");
        seen == "two"
    });
    assert!(updated, "/creds/password is still {seen:?}; agent log:\n{}", node.log());
    s.kubectl_ok(&["create", "secret", "generic", "not-yet", "--from-literal=token=now"]);
    let appeared = wait_until(TIMEOUT, || read("/later/token") == "now");
    assert!(appeared, "the optional Secret's files never appeared; agent log:\n{}", node.log());

    // A missing key that is not optional: the volume cannot be set up.
    let mut bad = pod("bad-key", "Always", vec![container("main", "exec sleep 3600")]);
    bad["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "creds", "mountPath": "/creds" }]);
    bad["spec"]["volumes"] =
        json!([{ "name": "creds", "secret": { "secretName": "creds", "items": [{ "key": "absent", "path": "x" }] } }]);
    apply(&s, &bad);
    let event = wait_event(&s, &node, "bad-key", "Warning", "FailedMount", "");
    let message = "MountVolume.SetUp failed for volume \"creds\" : references non-existent secret key: absent";
    assert_eq!(event["message"], message, "{event:#}");
    let p = get_pod(&s, "bad-key");
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    assert_eq!(status_named(&p, "containerStatuses", "main")["state"]["waiting"]["reason"], "ContainerCreating");
    // A ConfigMap that does not exist, as the kubelet words it.
    let mut absent = pod("absent-config", "Always", vec![container("main", "exec sleep 3600")]);
    absent["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "cfg", "mountPath": "/cfg" }]);
    absent["spec"]["volumes"] = json!([{ "name": "cfg", "configMap": { "name": "nowhere" } }]);
    apply(&s, &absent);
    let message = "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nowhere\" not found";
    wait_event(&s, &node, "absent-config", "Warning", "FailedMount", message);

    // hostPath types: FileOrCreate makes an empty file; Directory on a file fails the mount.
    let host = |name: &str| node.dir.path().join(name).display().to_string();
    std::fs::write(host("a-file"), b"x").unwrap();
    let mut typed = pod("typed", "Always", vec![container("main", "exec sleep 3600")]);
    typed["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "made", "mountPath": "/made" }]);
    typed["spec"]["volumes"] =
        json!([{ "name": "made", "hostPath": { "path": host("made"), "type": "FileOrCreate" } }]);
    apply(&s, &typed);
    wait_pod(&s, &node, "typed", "ran", |p| p["status"]["phase"] == "Running");
    assert_eq!(std::fs::read(host("made")).unwrap(), b"", "FileOrCreate made an empty file");
    let mut wrong = pod("wrong-type", "Always", vec![container("main", "exec sleep 3600")]);
    wrong["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "dir", "mountPath": "/dir" }]);
    wrong["spec"]["volumes"] = json!([{ "name": "dir", "hostPath": { "path": host("a-file"), "type": "Directory" } }]);
    apply(&s, &wrong);
    let event = wait_event(&s, &node, "wrong-type", "Warning", "FailedMount", "");
    let expected = format!(
        "MountVolume.SetUp failed for volume \"dir\" : hostPath type check failed: {} is not a directory",
        host("a-file")
    );
    assert_eq!(event["message"], expected.as_str(), "{event:#}");
    let p = get_pod(&s, "wrong-type");
    assert_eq!(status_named(&p, "containerStatuses", "main")["state"]["waiting"]["reason"], "ContainerCreating");
}

#[test]
fn a_startup_probe_that_never_passes_restarts_the_container_and_holds_liveness_back() {
    let s = server();
    let Some(node) = node(&s, 53) else { return };
    let host = node.dir.path().join("probes");
    std::fs::create_dir_all(&host).unwrap();
    let mut p = pod("never-starts", "Always", vec![container("main", "exec sleep 3600")]);
    let c = &mut p["spec"]["containers"][0];
    c["startupProbe"] = json!({ "exec": { "command": ["sh", "-c", "echo not yet; exit 1"] },
                                "periodSeconds": 1, "failureThreshold": 3 });
    // Would leave a trace on the host if it ever ran.
    c["livenessProbe"] =
        json!({ "exec": { "command": ["sh", "-c", "echo ran >> /probes/liveness"] }, "periodSeconds": 1 });
    c["volumeMounts"] = json!([{ "name": "probes", "mountPath": "/probes" }]);
    p["spec"]["volumes"] = json!([{ "name": "probes", "hostPath": { "path": host.display().to_string() } }]);
    apply(&s, &p);
    let p = wait_pod(&s, &node, "never-starts", "restarted twice", |p| {
        status_named(p, "containerStatuses", "main")["restartCount"].as_i64() >= Some(2)
    });
    let main = status_named(&p, "containerStatuses", "main");
    assert_eq!(main["started"], false, "{p:#}");
    assert_eq!(main["ready"], false, "{p:#}");
    // Killed after failureThreshold × periodSeconds: three failures, a second apart.
    let last = &main["lastState"]["terminated"];
    let ran = seconds_between(time(&last["startedAt"], "startedAt"), time(&last["finishedAt"], "finishedAt"));
    assert!(ran >= 2, "killed after {ran}s: {p:#}");
    wait_event(&s, &node, "never-starts", "Warning", "Unhealthy", "Startup probe failed: not yet");
    wait_event(
        &s,
        &node,
        "never-starts",
        "Normal",
        "Killing",
        "Container main failed startup probe, will be restarted",
    );
    assert!(!host.join("liveness").exists(), "the liveness probe ran before the startup probe passed");
    let described = s.kubectl_ok(&["describe", "pod", "never-starts"]);
    assert!(described.contains("Startup probe failed"), "{described}");
}

#[test]
fn a_container_ignoring_sigterm_is_killed_after_the_grace_period() {
    let s = server();
    let Some(node) = node(&s, 52) else { return };
    let host = node.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let mut p = pod(
        "stubborn",
        "Always",
        vec![container(
            "main",
            "trap 'echo term >> /host/term' TERM; touch /host/started; while true; do sleep 1; done",
        )],
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(30);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{ "name": "host", "mountPath": "/host" }]);
    p["spec"]["volumes"] = json!([{ "name": "host", "hostPath": { "path": host.display().to_string() } }]);
    apply(&s, &p);
    wait_pod(&s, &node, "stubborn", "ran", |p| p["status"]["phase"] == "Running");
    assert!(wait_until(TIMEOUT, || host.join("started").exists()), "the container never started");

    let fields = "{.type} {.object.metadata.deletionTimestamp} {.object.status.phase} \
                  {.object.status.containerStatuses[0].state.terminated.exitCode} \
                  {.object.status.containerStatuses[0].state.terminated.reason} \
                  {.object.status.containerStatuses[0].state.terminated.finishedAt}{\"\\n\"}";
    let (child, lines) = s.kubectl_lines(&[
        "get",
        "pod",
        "stubborn",
        "-w",
        "--output-watch-events",
        "-o",
        &format!("jsonpath={fields}"),
    ]);
    let _watch = Killed(child);
    let first = lines.recv_timeout(TIMEOUT).expect("the watch started");
    assert!(first.starts_with("ADDED "), "{first}");
    s.kubectl_ok(&["delete", "pod", "stubborn", "--grace-period=3", "--wait=false"]);
    let mut seen = vec![first];
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline && !seen.last().is_some_and(|l| l.starts_with("DELETED")) {
        if let Ok(l) = lines.recv_timeout(Duration::from_secs(1)) {
            seen.push(l);
        }
    }
    assert!(seen.last().is_some_and(|l| l.starts_with("DELETED")), "the pod never went: {seen:#?}");
    // SIGTERM came first (and was ignored), then SIGKILL: 137, reported before the pod went.
    assert!(std::fs::read_to_string(host.join("term")).unwrap_or_default().contains("term"), "no SIGTERM");
    let killed = seen
        .iter()
        .find(|l| l.starts_with("MODIFIED") && l.split_whitespace().nth(3) == Some("137"))
        .unwrap_or_else(|| panic!("no status with exit code 137 before the deletion: {seen:#?}"));
    let f: Vec<&str> = killed.split_whitespace().collect();
    assert_eq!((f[2], f[4]), ("Failed", "Error"), "{killed}");
    // The container lasted until the grace period ran out: its end is no earlier than the
    // deletion timestamp (the request's time plus the 3 s).
    assert!(f[5] >= f[1], "finished at {} before the grace period's end {}: {killed}", f[5], f[1]);
}

#[test]
fn attach_with_stdin_and_a_tty_and_port_forward_over_plain_spdy() {
    let s = server();
    let Some(node) = node(&s, 53) else { return };
    let with_stdin = |name: &str, command: &[&str], tty: bool| {
        let mut p = pod(name, "Never", vec![container("main", "")]);
        let c = &mut p["spec"]["containers"][0];
        c["command"] = json!(command);
        c["stdin"] = json!(true);
        c["stdinOnce"] = json!(true);
        c["tty"] = json!(tty);
        p
    };
    apply(&s, &with_stdin("echo", &["cat"], false));
    apply(&s, &with_stdin("shell", &["sh"], true));
    let serve = "mkdir -p /www && echo forwarded-page > /www/index.html && exec httpd -f -p 8080 -h /www";
    apply(&s, &pod("web", "Always", vec![container("main", serve)]));
    let running = |p: &Value| p["status"]["phase"] == "Running";

    // attach -i: what goes in comes back from cat; the end of stdin ends cat (stdinOnce).
    wait_pod(&s, &node, "echo", "ran", running);
    let out = kubectl_timed(&s, &["attach", "-i", "echo"], Some(b"hello\nworld\n"), TIMEOUT);
    assert_eq!(stdout(&out), "hello\nworld\n", "{out:?}\nagent log:\n{}", node.log());
    assert!(out.status.success(), "{out:?}");
    let p = wait_pod(&s, &node, "echo", "completed", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(status_named(&p, "containerStatuses", "main")["state"]["terminated"]["exitCode"], 0, "{p:#}");

    // attach -it under `script` (kubectl wants a terminal): the shell has one.
    wait_pod(&s, &node, "shell", "ran", running);
    let inner = format!("{} --kubeconfig {} attach -it shell", berth_testkit::KUBECTL, s.kubeconfig.display());
    let mut script = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("HOME", s.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    // script's stdin stays open (held here) until it ends, so no EOF reaches the terminal.
    let mut input = script.stdin.take().expect("stdin");
    input.write_all(b"[ -t 0 ] && echo is-a-tty; echo done-$((6*7)); exit\n").unwrap();
    let finished = wait_until(TIMEOUT, || matches!(script.try_wait(), Ok(Some(_))));
    if !finished {
        let _ = script.kill();
    }
    drop(input);
    let out = script.wait_with_output().expect("script output");
    let shown = stdout(&out);
    assert!(shown.contains("is-a-tty") && shown.contains("done-42"), "{out:?}\nagent log:\n{}", node.log());
    wait_pod(&s, &node, "shell", "completed", |p| p["status"]["phase"] == "Succeeded");

    // port-forward without WebSockets: kubectl upgrades the POST to SPDY/3.1 itself.
    wait_pod(&s, &node, "web", "ran", running);
    let log = s.dir.path().join("port-forward.log");
    let mut child = Command::new(berth_testkit::KUBECTL)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["port-forward", "pod/web", ":8080", "-v=6"])
        .env("HOME", s.dir.path())
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn kubectl");
    let mut out = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    let port: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("unexpected port-forward output {line:?}: {}", std::fs::read_to_string(&log).unwrap())
        });
    for _ in 0..3 {
        let mut body = None;
        let ok = wait_until(TIMEOUT, || {
            body = http_get("127.0.0.1", port, "/index.html");
            body.is_some()
        });
        assert!(ok, "no answer through the forwarded port; kubectl:\n{}", std::fs::read_to_string(&log).unwrap());
        assert_eq!(body.unwrap().trim(), "forwarded-page");
    }
    let verbose = std::fs::read_to_string(&log).unwrap();
    assert!(verbose.contains("POST") && verbose.contains("/portforward"), "not the SPDY upgrade:\n{verbose}");
}
