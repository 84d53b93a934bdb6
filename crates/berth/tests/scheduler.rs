//! The scheduler inside `berth server`, driven over the real API: nodes created through
//! the API (no node agent), pods placed by zone spread, anti-affinity, taints, extended
//! resources, priority (globalDefault classes, preemption and nomination) and local
//! volumes; pending pods report why, as Kubernetes does; gated pods are marked and keep
//! their gates.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

fn add_node(s: &TestServer, name: &str, labels: Value, taints: Value, allocatable: Value) {
    let mut all = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    for (k, v) in labels.as_object().expect("labels") {
        all[k] = v.clone();
    }
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": all},
        "spec": {"taints": taints},
        "status": {"capacity": allocatable, "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
}

fn cpu(n: &str) -> Value {
    json!({"cpu": n, "memory": "8Gi", "pods": "110"})
}

fn create_pod(s: &TestServer, name: &str, labels: Value, spec: Value) -> (u16, Value) {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox:1.36"}]);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec});
    s.http_json("POST", PODS, Some(&pod))
}

fn create_ok(s: &TestServer, name: &str, labels: Value, spec: Value) {
    let (code, v) = create_pod(s, name, labels, spec);
    assert_eq!(code, 201, "{v}");
}

fn get_pod(s: &TestServer, name: &str) -> Value {
    s.http_json("GET", &format!("{PODS}/{name}"), None).1
}

fn exists(s: &TestServer, name: &str) -> bool {
    s.http_json("GET", &format!("{PODS}/{name}"), None).0 != 404
}

fn node_of(s: &TestServer, name: &str) -> Option<String> {
    get_pod(s, name)["spec"]["nodeName"].as_str().map(str::to_string)
}

fn wait_bound(s: &TestServer, name: &str) -> String {
    let mut node = None;
    assert!(
        wait_until(WAIT, || {
            node = node_of(s, name);
            node.is_some()
        }),
        "pod {name} never bound: {}\n{}",
        get_pod(s, name),
        s.log()
    );
    node.unwrap_or_default()
}

/// Waits for PodScheduled=False with a message `want` accepts, and returns the message.
/// The scheduler may first try the pod before its cache has every node the test made; it
/// tries again when nodes arrive and rewrites the message, so the test waits for the
/// message it expects rather than the first one.
fn wait_unschedulable(s: &TestServer, name: &str, want: impl Fn(&str) -> bool) -> String {
    let mut message = String::new();
    assert!(
        wait_until(WAIT, || {
            let p = get_pod(s, name);
            let cond = p["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned());
            match cond {
                Some(c) if c["status"] == "False" && c["reason"] == "Unschedulable" => {
                    message = c["message"].as_str().unwrap_or("").to_string();
                    want(&message)
                }
                _ => false,
            }
        }),
        "pod {name} never marked unschedulable as expected (last message {message:?}): {}",
        get_pod(s, name)
    );
    assert!(node_of(s, name).is_none());
    message
}

/// Waits for PodScheduled=False with exactly this message.
fn wait_unschedulable_with(s: &TestServer, name: &str, expected: &str) {
    wait_unschedulable(s, name, |m| m == expected);
}

fn events_for(s: &TestServer, pod: &str) -> Vec<Value> {
    let (_, list) = s.http_json(
        "GET",
        &format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{pod}"),
        None,
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

fn wait_event(s: &TestServer, pod: &str, reason: &str) -> Value {
    let mut found = Value::Null;
    assert!(
        wait_until(WAIT, || {
            found = events_for(s, pod).into_iter().find(|e| e["reason"] == reason).unwrap_or(Value::Null);
            !found.is_null()
        }),
        "no {reason} event for {pod}: {:?}",
        events_for(s, pod)
    );
    found
}

#[test]
fn pods_spread_across_zones_and_get_scheduled_events() {
    let s = server();
    for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
        add_node(&s, name, json!({"topology.kubernetes.io/zone": zone}), json!([]), cpu("4"));
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    let mut zones = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        create_ok(&s, &name, json!({"app": "web"}), spread.clone());
        // One at a time: each placement must keep the skew within 1.
        let node = wait_bound(&s, &name);
        *zones.entry(node[..1].to_string()).or_default() += 1;
        let (a, b) = (zones.get("a").copied().unwrap_or(0), zones.get("b").copied().unwrap_or(0));
        assert!(a.abs_diff(b) <= 1, "{zones:?}");
    }
    assert_eq!(zones.values().copied().collect::<Vec<_>>(), [3, 3]);
    let e = wait_event(&s, "web-0", "Scheduled");
    let node = node_of(&s, "web-0").unwrap_or_default();
    assert_eq!(e["message"], format!("Successfully assigned default/web-0 to {node}"));
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["source"]["component"], "default-scheduler");
    let p = get_pod(&s, "web-0");
    let cond =
        p["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned());
    assert_eq!(cond.map(|c| c["status"].clone()), Some(json!("True")));
    // kubectl shows where the pods went.
    let wide = s.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&node), "{wide}");
}

#[test]
fn anti_affinity_exhaustion_leaves_pods_pending_with_the_reason() {
    let s = server();
    add_node(&s, "n1", json!({}), json!([]), cpu("4"));
    add_node(&s, "n2", json!({}), json!([]), cpu("4"));
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    create_ok(&s, "db-0", json!({"app": "db"}), anti.clone());
    create_ok(&s, "db-1", json!({"app": "db"}), anti.clone());
    let n0 = wait_bound(&s, "db-0");
    let n1 = wait_bound(&s, "db-1");
    assert_ne!(n0, n1);
    create_ok(&s, "db-2", json!({"app": "db"}), anti);
    let message = "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
    wait_unschedulable_with(&s, "db-2", message);
    let e = wait_event(&s, "db-2", "FailedScheduling");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["message"], message);
    // Deleting one of them frees a node: the pending pod takes it.
    let (code, v) = s.http_json("DELETE", &format!("{PODS}/db-0?gracePeriodSeconds=0"), None);
    assert!(code == 200 || code == 202, "{v}");
    assert!(wait_until(WAIT, || !exists(&s, "db-0")), "db-0 not gone");
    assert_eq!(wait_bound(&s, "db-2"), n0);
}

#[test]
fn taints_tolerations_and_the_kubernetes_message() {
    let s = server();
    add_node(&s, "infra", json!({}), json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]), cpu("8"));
    for n in ["w1", "w2", "w3"] {
        add_node(&s, n, json!({}), json!([]), cpu("1"));
    }
    let big = json!({"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "2"}}}]});
    create_ok(&s, "big", json!({}), big.clone());
    wait_unschedulable_with(
        &s,
        "big",
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 3 Insufficient cpu. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
    );
    let mut tolerant = big;
    tolerant["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
    create_ok(&s, "tolerant", json!({}), tolerant);
    assert_eq!(wait_bound(&s, "tolerant"), "infra");
    // Small pods without the toleration never land on the tainted node.
    for i in 0..3 {
        create_ok(&s, &format!("small-{i}"), json!({}), json!({}));
    }
    for i in 0..3 {
        assert_ne!(wait_bound(&s, &format!("small-{i}")), "infra");
    }
}

#[test]
fn extended_resources_are_counted() {
    let s = server();
    add_node(
        &s,
        "gpu",
        json!({}),
        json!([]),
        json!({"cpu": "8", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "2"}),
    );
    add_node(&s, "plain", json!({}), json!([]), cpu("8"));
    let gpu = json!({"containers": [{"name": "c", "image": "busybox:1.36",
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}]});
    for i in 0..2 {
        create_ok(&s, &format!("g{i}"), json!({}), gpu.clone());
    }
    assert_eq!(wait_bound(&s, "g0"), "gpu");
    assert_eq!(wait_bound(&s, "g1"), "gpu");
    create_ok(&s, "g2", json!({}), gpu);
    wait_unschedulable(&s, "g2", |m| m.starts_with("0/2 nodes are available: 2 Insufficient nvidia.com/gpu."));
}

#[test]
fn priority_classes_resolve_and_preemption_evicts_lower_priority_pods() {
    let s = server();
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
    let (code, v) = s.http_json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", Some(&pc));
    assert_eq!(code, 201, "{v}");
    // Unknown classes are refused as Kubernetes refuses them.
    let (code, v) = create_pod(&s, "bad", json!({}), json!({"priorityClassName": "nope"}));
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["message"], "pods \"bad\" is forbidden: no PriorityClass with name nope was found");
    let (code, v) = create_pod(
        &s,
        "crit",
        json!({}),
        json!({"priorityClassName": "system-cluster-critical", "nodeName": "elsewhere"}),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["spec"]["priority"], 2_000_000_000);
    add_node(&s, "only", json!({}), json!([]), cpu("2"));
    let one_cpu = |extra: Value| {
        let mut spec = json!({"terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "1"}}}]});
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        spec
    };
    create_ok(&s, "low-1", json!({}), one_cpu(json!({})));
    create_ok(&s, "low-2", json!({}), one_cpu(json!({})));
    wait_bound(&s, "low-1");
    wait_bound(&s, "low-2");
    // preemptionPolicy Never waits instead of evicting.
    create_ok(
        &s,
        "polite",
        json!({}),
        one_cpu(json!({"priority": 1000, "priorityClassName": "high", "preemptionPolicy": "PreemptLowerPriority"})),
    );
    let (code, v) =
        create_pod(&s, "never", json!({}), one_cpu(json!({"priorityClassName": "high", "preemptionPolicy": "Never"})));
    assert_eq!(code, 403, "the class says PreemptLowerPriority: {v}");
    assert_eq!(wait_bound(&s, "polite"), "only");
    assert_eq!(get_pod(&s, "polite")["spec"]["priority"], 1000);
    let gone = |n: &str| !exists(&s, n);
    assert!(wait_until(WAIT, || gone("low-1") || gone("low-2")), "no victim deleted");
    assert!(!(gone("low-1") && gone("low-2")), "one victim is enough");
    let victim = if gone("low-1") { "low-1" } else { "low-2" };
    let e = wait_event(&s, victim, "Preempted");
    assert!(e["message"].as_str().unwrap_or("").ends_with("on node only"), "{e}");
}

#[test]
fn a_preemptor_is_nominated_while_its_victim_terminates() {
    let s = server();
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
    assert_eq!(s.http_json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", Some(&pc)).0, 201);
    add_node(&s, "only", json!({}), json!([]), cpu("2"));
    let two_cpus =
        json!({"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "2"}}}]});
    // No node agent runs: the victim's graceful deletion is never confirmed, so it stays
    // Terminating and keeps its CPUs.
    let mut slow = two_cpus.clone();
    slow["terminationGracePeriodSeconds"] = json!(3600);
    create_ok(&s, "low", json!({}), slow);
    assert_eq!(wait_bound(&s, "low"), "only");
    let mut vip = two_cpus;
    vip["priorityClassName"] = json!("high");
    create_ok(&s, "vip", json!({}), vip);
    let nominated = || get_pod(&s, "vip")["status"]["nominatedNodeName"].clone();
    assert!(wait_until(WAIT, || nominated() == "only"), "vip not nominated: {}", get_pod(&s, "vip"));
    // The scheduler nominates, then marks and deletes the victim.
    let mut low = Value::Null;
    assert!(
        wait_until(WAIT, || {
            low = get_pod(&s, "low");
            low["metadata"]["deletionTimestamp"].is_string()
        }),
        "victim not deleted: {low}"
    );
    let target =
        low["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").cloned();
    assert_eq!(
        target.as_ref().map(|c| (&c["status"], &c["reason"])),
        Some((&json!("True"), &json!("PreemptionByScheduler")))
    );
    wait_event(&s, "low", "Preempted");
    // While the victim terminates the preemptor waits, nominated, and preempts nobody else.
    wait_unschedulable(&s, "vip", |m| m.starts_with("0/1 nodes are available: 1 Insufficient cpu."));
    assert_eq!(nominated(), "only");
    let wide = s.kubectl_ok(&["get", "pod", "vip", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or("");
    let column = header.find("NOMINATED NODE").expect("the NOMINATED NODE column");
    assert_eq!(wide.lines().nth(1).and_then(|l| l.get(column..column + 4)), Some("only"), "{wide}");
    // The victim is gone: the preemptor takes the room it was nominated to.
    let (code, v) = s.http_json("DELETE", &format!("{PODS}/low?gracePeriodSeconds=0"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(wait_bound(&s, "vip"), "only");
}

/// A pod asking for `cpu` CPUs and `memory`, at `priority_class` (none: priority 0), whose
/// deletion is never confirmed (no node agent runs) unless forced.
fn requesting(cpu: &str, memory: &str, priority_class: Option<&str>) -> Value {
    let mut spec = json!({"terminationGracePeriodSeconds": 3600, "containers": [{"name": "c", "image": "busybox:1.36",
        "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
    if let Some(class) = priority_class {
        spec["priorityClassName"] = json!(class);
    }
    spec
}

fn high_priority_class(s: &TestServer) {
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
    assert_eq!(s.http_json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", Some(&pc)).0, 201);
}

#[test]
fn a_preemptor_waiting_for_its_victim_takes_room_freed_elsewhere() {
    let s = server();
    high_priority_class(&s);
    add_node(&s, "only", json!({}), json!([]), cpu("2"));
    create_ok(&s, "low", json!({}), requesting("2", "0", None));
    assert_eq!(wait_bound(&s, "low"), "only");
    // A second node, full with a pod of the preemptor's priority (not a victim).
    add_node(&s, "other", json!({}), json!([]), cpu("2"));
    let mut busy = requesting("2", "0", Some("high"));
    busy["nodeName"] = json!("other");
    create_ok(&s, "busy", json!({}), busy);
    create_ok(&s, "vip", json!({}), requesting("2", "0", Some("high")));
    assert!(
        wait_until(WAIT, || get_pod(&s, "vip")["status"]["nominatedNodeName"] == "only"),
        "vip not nominated: {}",
        get_pod(&s, "vip")
    );
    wait_event(&s, "low", "Preempted");
    wait_unschedulable(&s, "vip", |m| m.starts_with("0/2 nodes are available: 2 Insufficient cpu."));
    // Its victim keeps terminating; room it fits is freed on the other node: it goes there
    // now, as Kubernetes' NodeResourcesFit hint moves it (not after the 5-minute retry).
    let (code, v) = s.http_json("DELETE", &format!("{PODS}/busy?gracePeriodSeconds=0"), None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(wait_bound(&s, "vip"), "other");
    assert!(get_pod(&s, "low")["metadata"]["deletionTimestamp"].is_string());
}

#[test]
fn a_node_rejecting_with_and_without_its_nominees_gives_the_reasons_with_them() {
    let s = server();
    high_priority_class(&s);
    add_node(&s, "only", json!({}), json!([]), json!({"cpu": "4", "memory": "8Gi", "pods": "110"}));
    create_ok(&s, "busy", json!({}), requesting("3", "0", Some("high")));
    assert_eq!(wait_bound(&s, "busy"), "only");
    create_ok(&s, "low", json!({}), requesting("1", "0", None));
    assert_eq!(wait_bound(&s, "low"), "only");
    // vip preempts low (which keeps terminating) and holds 1 CPU and 7 GiB there.
    create_ok(&s, "vip", json!({}), requesting("1", "7Gi", Some("high")));
    assert!(
        wait_until(WAIT, || get_pod(&s, "vip")["status"]["nominatedNodeName"] == "only"),
        "vip not nominated: {}",
        get_pod(&s, "vip")
    );
    wait_event(&s, "low", "Preempted");
    // Without the nominee the node is short of CPU only; with it, of memory too: the
    // reasons are those with it, as Kubernetes gives them.
    create_ok(&s, "mid", json!({}), requesting("1", "2Gi", None));
    let message = wait_unschedulable(&s, "mid", |m| m.starts_with("0/1 nodes are available: "));
    assert!(message.starts_with("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."), "{message}");
}

#[test]
fn a_global_default_priority_class_applies_to_pods_without_one() {
    let s = server();
    const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";
    let class = |name: &str, value: i64, default: bool| {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "globalDefault": default})
    };
    assert_eq!(s.http_json("POST", CLASSES, Some(&class("standard", 500, true))).0, 201);
    // Only one default: a second is refused, as Kubernetes' Priority admission refuses it.
    let (code, v) = s.http_json("POST", CLASSES, Some(&class("another", 700, true)));
    assert_eq!((code, v["reason"].as_str()), (403, Some("Forbidden")), "{v}");
    assert_eq!(
        v["message"],
        "priorityclasses.scheduling.k8s.io \"another\" is forbidden: PriorityClass standard is marked as default. Only one default can exist"
    );
    assert_eq!(s.http_json("GET", &format!("{CLASSES}/another"), None).0, 404, "nothing written");
    // Nor may an existing class become a second default; the default itself may be updated.
    assert_eq!(s.http_json("POST", CLASSES, Some(&class("batch", 100, false))).0, 201);
    let r = s.http(
        "PATCH",
        &format!("{CLASSES}/batch"),
        Some("application/merge-patch+json"),
        br#"{"globalDefault":true}"#,
    );
    assert_eq!(r.status, 403, "{}", r.json());
    let r = s.http(
        "PATCH",
        &format!("{CLASSES}/standard"),
        Some("application/merge-patch+json"),
        br#"{"description":"what pods get by default"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    // A pod that names no class gets the default's name, value and policy.
    create_ok(&s, "plain", json!({}), json!({"nodeName": "elsewhere"}));
    let spec = &get_pod(&s, "plain")["spec"];
    assert_eq!(
        (&spec["priorityClassName"], &spec["priority"], &spec["preemptionPolicy"]),
        (&json!("standard"), &json!(500), &json!("PreemptLowerPriority"))
    );
    // A pod that names one keeps it.
    create_ok(&s, "batchy", json!({}), json!({"priorityClassName": "batch", "nodeName": "elsewhere"}));
    assert_eq!(get_pod(&s, "batchy")["spec"]["priority"], 100);
    // With the default gone, pods get priority 0 and no class.
    assert_eq!(s.http_json("DELETE", &format!("{CLASSES}/standard"), None).0, 200);
    let mut tries = 0;
    let mut late = Value::Null;
    assert!(wait_until(WAIT, || {
        tries += 1;
        let name = format!("late-{tries}");
        create_ok(&s, &name, json!({}), json!({"nodeName": "elsewhere"}));
        late = get_pod(&s, &name);
        late["spec"]["priority"] == 0
    }));
    assert!(late["spec"]["priorityClassName"].is_null(), "{late}");
}

#[test]
fn preemption_recounts_anti_affinity_without_the_victims() {
    let s = server();
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
    assert_eq!(s.http_json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", Some(&pc)).0, 201);
    add_node(&s, "only", json!({}), json!([]), cpu("4"));
    let quick = json!({"terminationGracePeriodSeconds": 0});
    create_ok(&s, "db", json!({"app": "db"}), quick.clone());
    create_ok(&s, "bystander", json!({"app": "other"}), quick);
    wait_bound(&s, "db");
    wait_bound(&s, "bystander");
    // Room enough, but the guard's anti-affinity excludes the db pod's node: preemption
    // must count the affinity without the db pod to see that evicting it helps.
    create_ok(
        &s,
        "guard",
        json!({"app": "guard"}),
        json!({"priorityClassName": "high", "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
    );
    assert!(wait_until(WAIT, || !exists(&s, "db")), "db not preempted: {}", get_pod(&s, "guard"));
    assert_eq!(wait_bound(&s, "guard"), "only");
    assert!(exists(&s, "bystander"), "only the pod in the way is evicted");
    let e = wait_event(&s, "db", "Preempted");
    assert!(e["message"].as_str().unwrap_or("").ends_with("on node only"), "{e}");
}

#[test]
fn wait_for_first_consumer_claims_go_where_a_local_volume_is() {
    let s = server();
    add_node(&s, "n1", json!({}), json!([]), cpu("4"));
    add_node(&s, "n2", json!({}), json!([]), cpu("4"));
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-disks"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"});
    let (code, v) = s.http_json("POST", "/apis/storage.k8s.io/v1/storageclasses", Some(&class));
    assert_eq!(code, 201, "{v}");
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "disk-n2"},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-disks",
            "local": {"path": "/mnt/disks/a"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}});
    let (code, v) = s.http_json("POST", "/api/v1/persistentvolumes", Some(&pv));
    assert_eq!(code, 201, "{v}");
    for (claim, size) in [("data", "1Gi"), ("big", "10Gi")] {
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"storageClassName": "local-disks", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}}}});
        let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/persistentvolumeclaims", Some(&pvc));
        assert_eq!(code, 201, "{v}");
    }
    let mounting = |claim: &str| json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]});
    create_ok(&s, "app", json!({}), mounting("data"));
    assert_eq!(wait_bound(&s, "app"), "n2");
    let claim_volume = || {
        s.http_json("GET", "/api/v1/namespaces/default/persistentvolumeclaims/data", None).1["spec"]["volumeName"]
            .clone()
    };
    assert!(wait_until(WAIT, || claim_volume() == "disk-n2"), "claim not bound: {}", claim_volume());
    // No local volume is big enough for the second claim: it fits nowhere.
    create_ok(&s, "app2", json!({}), mounting("big"));
    wait_unschedulable_with(
        &s,
        "app2",
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    );
}

#[test]
fn one_local_volume_is_not_promised_to_two_pods() {
    let s = server();
    add_node(&s, "n1", json!({}), json!([]), cpu("4"));
    add_node(&s, "n2", json!({}), json!([]), cpu("4"));
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-disks"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(s.http_json("POST", "/apis/storage.k8s.io/v1/storageclasses", Some(&class)).0, 201);
    let local_volume = |name: &str, node: &str| {
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-disks",
                "local": {"path": "/mnt/disks/a"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}});
        let (code, v) = s.http_json("POST", "/api/v1/persistentvolumes", Some(&pv));
        assert_eq!(code, 201, "{v}");
    };
    local_volume("disk-n2", "n2");
    for claim in ["data-1", "data-2"] {
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"storageClassName": "local-disks", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}});
        let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/persistentvolumeclaims", Some(&pvc));
        assert_eq!(code, 201, "{v}");
    }
    // Both pods are created at once: the scheduler places the first before the binder has
    // bound its claim, and must not count the same volume for the second.
    for i in ["1", "2"] {
        create_ok(
            &s,
            &format!("app-{i}"),
            json!({}),
            json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": format!("data-{i}")}}]}),
        );
    }
    let message = "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    let (mut placed, mut waiting) = (String::new(), String::new());
    assert!(
        wait_until(WAIT, || {
            let bound: Vec<(String, Option<String>)> =
                ["app-1", "app-2"].iter().map(|p| (p.to_string(), node_of(&s, p))).collect();
            match bound.as_slice() {
                [(p, Some(n)), (q, None)] | [(q, None), (p, Some(n))] if n == "n2" => {
                    (placed, waiting) = (p.clone(), q.clone());
                    true
                }
                _ => false,
            }
        }),
        "one pod on n2 expected: {} {}",
        get_pod(&s, "app-1"),
        get_pod(&s, "app-2")
    );
    wait_unschedulable_with(&s, &waiting, message);
    let claim_of = |pod: &str| format!("data-{}", &pod[4..]);
    let volume_of = |claim: &str| {
        s.http_json("GET", &format!("/api/v1/namespaces/default/persistentvolumeclaims/{claim}"), None).1["spec"]
            ["volumeName"]
            .clone()
    };
    assert!(wait_until(WAIT, || volume_of(&claim_of(&placed)) == "disk-n2"), "{}", volume_of(&claim_of(&placed)));
    assert_eq!(node_of(&s, &waiting), None, "still no volume for the other claim");
    assert!(volume_of(&claim_of(&waiting)).is_null());
    // A volume for it appears on n1: the waiting pod goes there.
    local_volume("disk-n1", "n1");
    assert_eq!(wait_bound(&s, &waiting), "n1");
    assert!(wait_until(WAIT, || volume_of(&claim_of(&waiting)) == "disk-n1"), "{}", volume_of(&claim_of(&waiting)));
}

#[test]
fn preemption_policy_never_keeps_the_pod_pending() {
    let s = server();
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "polite"},
        "value": 1000, "preemptionPolicy": "Never"});
    assert_eq!(s.http_json("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", Some(&pc)).0, 201);
    add_node(&s, "only", json!({}), json!([]), cpu("1"));
    let spec = json!({"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "1"}}}]});
    create_ok(&s, "low", json!({}), spec.clone());
    wait_bound(&s, "low");
    let mut polite = spec;
    polite["priorityClassName"] = json!("polite");
    create_ok(&s, "waits", json!({}), polite);
    wait_unschedulable(&s, "waits", |m| m.contains("not eligible due to preemptionPolicy=Never"));
    assert!(node_of(&s, "low").is_some());
}

#[test]
fn nodes_added_later_and_removed_nodes() {
    let s = server();
    create_ok(&s, "early", json!({}), json!({}));
    wait_unschedulable_with(&s, "early", "no nodes available to schedule pods");
    add_node(&s, "late", json!({}), json!([]), cpu("4"));
    assert_eq!(wait_bound(&s, "early"), "late");
    // A node removed mid-way takes no more pods.
    add_node(&s, "other", json!({}), json!([]), cpu("4"));
    let (code, v) = s.http_json("DELETE", "/api/v1/nodes/late", None);
    assert_eq!(code, 200, "{v}");
    for i in 0..4 {
        create_ok(&s, &format!("after-{i}"), json!({}), json!({}));
    }
    for i in 0..4 {
        assert_eq!(wait_bound(&s, &format!("after-{i}")), "other");
    }
}

#[test]
fn other_schedulers_and_gated_pods_are_left_alone() {
    let s = server();
    add_node(&s, "n", json!({}), json!([]), cpu("4"));
    create_ok(&s, "theirs", json!({}), json!({"schedulerName": "other-scheduler"}));
    create_ok(&s, "gated", json!({}), json!({"schedulingGates": [{"name": "example.com/wait"}]}));
    create_ok(&s, "ours", json!({}), json!({}));
    assert_eq!(wait_bound(&s, "ours"), "n");
    // The scheduler is running and has seen all three; give it time to (wrongly) act.
    wait_event(&s, "ours", "Scheduled");
    std::thread::sleep(Duration::from_millis(500));
    for name in ["theirs", "gated"] {
        let p = get_pod(&s, name);
        assert!(p["spec"]["nodeName"].is_null(), "{p}");
        assert!(events_for(&s, name).is_empty(), "{:?}", events_for(&s, name));
    }
    // The API server marks a gated pod at create, as Kubernetes' pod strategy does.
    let conditions = get_pod(&s, "gated")["status"]["conditions"].clone();
    assert_eq!(conditions.as_array().map(Vec::len), Some(1), "{conditions}");
    let c = &conditions[0];
    assert_eq!(
        (&c["type"], &c["status"], &c["reason"], &c["message"]),
        (
            &json!("PodScheduled"),
            &json!("False"),
            &json!("SchedulingGated"),
            &json!("Scheduling is blocked due to non-empty scheduling gates")
        )
    );
    assert!(c["lastTransitionTime"].is_string(), "{c}");
    assert!(get_pod(&s, "theirs")["status"]["conditions"].is_null(), "no gates, no condition");
    let table = s.kubectl_ok(&["get", "pod", "gated"]);
    assert!(table.lines().nth(1).is_some_and(|l| l.contains("SchedulingGated")), "{table}");
    // Gates may only be removed: adding one is refused, with Kubernetes' field error.
    let r = s.http(
        "PATCH",
        &format!("{PODS}/gated"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"schedulingGates":[{"name":"example.com/wait"},{"name":"example.com/more"}]}}"#,
    );
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(
        r.json()["message"],
        "Pod \"gated\" is invalid: spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/more'"
    );
    let out = s.kubectl(&[
        "patch",
        "pod",
        "ours",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/schedulingGates","value":[{"name":"late"}]}]"#,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only deletion is allowed, but found new scheduling gate 'late'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nor may anyone bind a gated pod (Kubernetes' assignPod): 409, the pod stays unbound.
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "gated" },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "n" } });
    let r = s.http("POST", &format!("{PODS}/gated/binding"), Some("application/json"), binding.to_string().as_bytes());
    assert_eq!(r.status, 409, "{}", r.json());
    assert!(
        r.json()["message"].as_str().is_some_and(|m| m.ends_with("pod gated has non-empty .spec.schedulingGates")),
        "{}",
        r.json()
    );
    assert!(get_pod(&s, "gated")["spec"]["nodeName"].is_null());
    // Removing the gate lets the pod be scheduled.
    let r = s.http(
        "PATCH",
        &format!("{PODS}/gated"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"schedulingGates":null}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(wait_bound(&s, "gated"), "n");
    // Pods that name their node are not scheduled (nor rejected).
    create_ok(&s, "pinned", json!({}), json!({"nodeName": "somewhere"}));
    assert_eq!(node_of(&s, "pinned").as_deref(), Some("somewhere"));
}

#[test]
fn a_bad_scheduler_config_stops_the_server_and_a_good_one_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "profiles: [{plugins: {score: {enabled: [{name: NoSuchPlugin}]}}}]").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["server", "--https-listen-port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--scheduler-config")
        .arg(&bad)
        .output()
        .expect("run berth server");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown plugin \"NoSuchPlugin\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second profile that packs pods (MostAllocated) serves its own scheduler name.
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n- schedulerName: packer\n  plugins:\n    score:\n      disabled: [{name: \"*\"}]\n      enabled: [{name: NodeResourcesFit, weight: 1}]\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy: {type: MostAllocated}\n",
    )
    .expect("write");
    let path = good.to_string_lossy().into_owned();
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--scheduler-config", &path]);
    add_node(&s, "full", json!({}), json!([]), cpu("4"));
    add_node(&s, "empty", json!({}), json!([]), cpu("4"));
    let req = |c: &str| json!({"schedulerName": "packer", "containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": c}}}]});
    create_ok(
        &s,
        "seed",
        json!({}),
        json!({"nodeName": "full", "containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "2"}}}]}),
    );
    for i in 0..3 {
        create_ok(&s, &format!("packed-{i}"), json!({}), req("500m"));
        assert_eq!(wait_bound(&s, &format!("packed-{i}")), "full");
    }
}
