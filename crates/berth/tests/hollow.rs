//! Hollow nodes end to end: the real `berth server`, `berth agent --hollow` as a child
//! process with the node token, and the real kubectl: nodes register Ready with their labels, taints and
//! capacity; bound pods run, complete and delete as with a kubelet; leases advance; a
//! restarted agent takes its nodes and pods over; `--pod-start-delay` holds pods Pending;
//! bad flags fail clearly; the scheduler spreads a Deployment over two agents' zones and
//! moves its pods off a removed zone.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{AgentProcess, TestServer, wait_until};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// `berth agent --hollow` for `s` with the server's node token, with `flags`: the identity
/// hollow processes run as (`system:node-agent` in `berth:hollow-nodes`), which holds only
/// what they do (node_authz.rs shows what it cannot).
fn start_agent(s: &TestServer, flags: &[&str]) -> AgentProcess {
    let token = std::fs::read_to_string(s.dir.path().join("token")).expect("the node token");
    s.spawn_agent(&[&["--hollow", "--server", &s.url, "--token", token.trim()], flags].concat())
}

/// SIGTERM; the agent must stop by itself (within 30 s), successfully.
fn stop_cleanly(agent: &mut AgentProcess) {
    let status = agent.terminate();
    assert!(status.is_some_and(|s| s.success()), "agent exit {status:?}:\n{}", agent.log());
}

fn json_of(s: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&s.kubectl_ok(&all)).expect("kubectl json")
}

fn ready_nodes(s: &TestServer) -> Vec<String> {
    let nodes = json_of(s, &["get", "nodes"]);
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn pod_gone(s: &TestServer, name: &str) -> bool {
    let out = s.kubectl(&["get", "pod", name]);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

fn renew_times(s: &TestServer) -> Vec<(String, String)> {
    let leases = json_of(s, &["get", "leases", "-n", "kube-node-lease"]);
    let mut out: Vec<(String, String)> = leases["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["spec"]["leaseDurationSeconds"], 40, "{l}");
            assert_eq!(l["spec"]["holderIdentity"], l["metadata"]["name"], "{l}");
            assert_eq!(l["metadata"]["ownerReferences"][0]["kind"], "Node", "{l}");
            (l["metadata"]["name"].as_str().unwrap().to_string(), l["spec"]["renewTime"].as_str().unwrap().to_string())
        })
        .collect();
    out.sort();
    out
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: hollow-node-1
  tolerations: [{key: dedicated, operator: Exists}]
  initContainers: [{name: init, image: busybox:1.36}]
  containers:
  - name: app
    image: nginx:1.27
    readinessProbe: {httpGet: {port: 80, path: /}}
    resources: {limits: {cpu: 100m, memory: 64Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  nodeName: hollow-node-2
  restartPolicy: Never
  containers: [{name: job, image: busybox:1.36}]
"#;

#[test]
fn hollow_nodes_register_run_pods_and_renew_leases() {
    // The test assigns a podCIDR itself: the node IPAM controller stays out of it.
    let s = TestServer::start_with(Path::new(BIN), &["--disable-controllers", "nodeipam"]);
    let flags = [
        "--nodes",
        "3",
        "--node-labels",
        "topology.kubernetes.io/zone=zone-a,team=infra",
        "--node-taints",
        "dedicated=infra:NoSchedule",
        "--capacity",
        "cpu=16,nvidia.com/gpu=8",
    ];
    let mut agent = start_agent(&s, &flags);
    assert!(
        wait_until(Duration::from_secs(60), || ready_nodes(&s).len() == 3),
        "3 Ready nodes expected: {}\n{}",
        s.kubectl_ok(&["get", "nodes"]),
        agent.log()
    );
    let out = s.kubectl_ok(&["get", "nodes"]);
    for i in 0..3 {
        assert!(out.contains(&format!("hollow-node-{i}")), "{out}");
    }
    assert_eq!(out.matches(" Ready ").count(), 3, "{out}");
    let node = json_of(&s, &["get", "node", "hollow-node-1"]);
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "hollow-node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].as_str().is_some_and(|a| !a.is_empty()), "{labels}");
    assert_eq!(labels["topology.kubernetes.io/zone"], "zone-a");
    assert_eq!(labels["team"], "infra");
    assert_eq!(
        node["spec"]["taints"],
        serde_json::json!([{ "key": "dedicated", "value": "infra", "effect": "NoSchedule" }])
    );
    let status = &node["status"];
    assert_eq!(status["capacity"]["cpu"], "16");
    assert_eq!(status["capacity"]["memory"], "256Gi");
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["capacity"]["nvidia.com/gpu"], "8");
    assert_eq!(status["allocatable"], status["capacity"]);
    assert_eq!(status["nodeInfo"]["kubeletVersion"], "v1.33.0");
    assert_eq!(status["nodeInfo"]["containerRuntimeVersion"], "hollow://1.0");
    assert_eq!(status["nodeInfo"]["operatingSystem"], "linux");
    assert_eq!(status["addresses"][0], serde_json::json!({ "type": "InternalIP", "address": "10.128.0.2" }));
    assert_eq!(status["addresses"][1], serde_json::json!({ "type": "Hostname", "address": "hollow-node-1" }));
    for cond in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == cond).unwrap();
        assert_eq!(c["status"], "False", "{c}");
        assert!(c["lastHeartbeatTime"].is_string(), "{c}");
    }
    // kubectl shows the capacity too.
    let described = s.kubectl_ok(&["describe", "node", "hollow-node-1"]);
    assert!(described.contains("nvidia.com/gpu:") && described.contains("dedicated=infra:NoSchedule"), "{described}");

    // A bound pod runs, with an address from its node's range and ready containers.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(PODS));
    s.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=60s"]);
    let web = json_of(&s, &["get", "pod", "web"]);
    assert_eq!(web["status"]["phase"], "Running");
    assert_eq!(web["status"]["hostIP"], "10.128.0.2");
    let ip = web["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10.0.1."), "pod IP {ip} not in node 1's 10.0.1.0/24");
    assert_eq!(web["status"]["podIPs"][0]["ip"], ip);
    assert!(web["status"]["startTime"].is_string(), "{web}");
    // Burstable, not Guaranteed: the init container has no limits (the server computed it).
    assert_eq!(web["status"]["qosClass"], "Burstable");
    let app = &web["status"]["containerStatuses"][0];
    assert_eq!(
        (app["ready"].as_bool(), app["started"].as_bool(), app["restartCount"].as_i64()),
        (Some(true), Some(true), Some(0))
    );
    assert!(app["containerID"].as_str().unwrap().starts_with("hollow://"), "{app}");
    assert!(app["state"]["running"]["startedAt"].is_string(), "{app}");
    assert_eq!(web["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    let table = s.kubectl_ok(&["get", "pod", "web"]);
    assert!(table.contains("1/1") && table.contains("Running"), "{table}");

    // restartPolicy Never: Succeeded after its short run.
    s.kubectl_ok(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/once", "--timeout=60s"]);
    let once = json_of(&s, &["get", "pod", "once"]);
    let job = &once["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((job["exitCode"].as_i64(), job["reason"].as_str()), (Some(0), Some("Completed")), "{once}");

    // Leases exist for every node and advance.
    let first = renew_times(&s);
    assert_eq!(
        first.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["hollow-node-0", "hollow-node-1", "hollow-node-2"]
    );
    assert!(
        wait_until(Duration::from_secs(60), || renew_times(&s)
            .iter()
            .zip(&first)
            .all(|((_, later), (_, before))| later > before)),
        "leases did not advance from {first:?}: {:?}\n{}",
        renew_times(&s),
        agent.log()
    );

    // Deletion waits for the grace period, then the agent removes the pod.
    let deleted_at = Instant::now();
    s.kubectl_ok(&["delete", "pod", "web", "--grace-period=3", "--wait=false"]);
    assert!(wait_until(Duration::from_secs(60), || pod_gone(&s, "web")), "web not removed:\n{}", agent.log());
    assert!(deleted_at.elapsed() >= Duration::from_secs(3), "removed before its grace period ended");
    // A finished pod goes too (kubectl waits for it to disappear).
    s.kubectl_ok(&["delete", "pod", "once", "--grace-period=1", "--timeout=60s"]);
    assert!(pod_gone(&s, "once"));

    // Stop on SIGTERM; nodes and leases stay.
    stop_cleanly(&mut agent);
    let uids = |s: &TestServer| {
        let nodes = json_of(s, &["get", "nodes"]);
        nodes["items"].as_array().unwrap().iter().map(|n| n["metadata"]["uid"].clone()).collect::<Vec<_>>()
    };
    let before = uids(&s);
    assert_eq!(before.len(), 3);

    // Pods may be bound while the agent is away; a podCIDR assigned meanwhile is used.
    s.kubectl_ok(&["patch", "node", "hollow-node-2", "-p", r#"{"spec":{"podCIDR":"10.244.7.0/24"}}"#]);
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: late}\nspec:\n  nodeName: hollow-node-2\n  tolerations: [{operator: Exists}]\n  containers: [{name: c, image: nginx:1.27}]\n"),
    );
    let mut agent = start_agent(&s, &flags);
    s.kubectl_ok(&["wait", "--for=condition=Ready", "pod/late", "--timeout=60s"]);
    assert_eq!(uids(&s), before, "the restarted agent must reuse its Nodes");
    let late = json_of(&s, &["get", "pod", "late"]);
    let ip = late["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10.244.7."), "pod IP {ip} not in the podCIDR 10.244.7.0/24");
    assert_eq!(ready_nodes(&s).len(), 3);
    stop_cleanly(&mut agent);
}

/// A pod bound to `node`, for `kubectl apply -f -`.
fn bound_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: c, image: nginx:1.27}}]\n"
    )
}

#[test]
fn pod_start_delay_holds_pods_pending_until_it_has_passed() {
    // Two agents: `slow-0` starts pods after 4 s, `fast-0` at once. A pod bound to the slow
    // node first, then (once it is seen Pending) one bound to the fast node: in the order a
    // watch sees them, the fast one runs first, while the slow one is still Pending; the
    // slow one runs after.
    let s = TestServer::start_with(Path::new(BIN), &["--disable-controllers", "nodeipam"]);
    let mut slow = start_agent(&s, &["--nodes", "1", "--node-name-prefix", "slow-", "--pod-start-delay", "4s"]);
    let mut fast = start_agent(&s, &["--nodes", "1", "--node-name-prefix", "fast-", "--pod-start-delay", "0"]);
    assert!(
        wait_until(Duration::from_secs(60), || ready_nodes(&s).len() == 2),
        "2 Ready nodes expected: {}\n{}\n{}",
        s.kubectl_ok(&["get", "nodes"]),
        slow.log(),
        fast.log()
    );
    let (mut watch, lines) = s.kubectl_lines(&[
        "get",
        "pods",
        "--watch",
        "--no-headers",
        "-o",
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase,IP:.status.podIP",
    ]);
    let mut seen: Vec<(String, String)> = Vec::new();
    let wait_for = |seen: &mut Vec<(String, String)>, name: &str, phase: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.iter().any(|(n, p)| n == name && p == phase) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                return false;
            };
            let mut fields = line.split_whitespace();
            if let (Some(n), Some(p)) = (fields.next(), fields.next()) {
                seen.push((n.to_string(), p.to_string()));
            }
        }
        true
    };
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&bound_pod("delayed", "slow-0")));
    assert!(wait_for(&mut seen, "delayed", "Pending"), "delayed never seen Pending: {seen:?}");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&bound_pod("prompt", "fast-0")));
    assert!(wait_for(&mut seen, "prompt", "Running"), "prompt never Running: {seen:?}\n{}", fast.log());
    assert!(
        !seen.iter().any(|(n, p)| n == "delayed" && p != "Pending"),
        "delayed left Pending before prompt ran: {seen:?}"
    );
    assert!(wait_for(&mut seen, "delayed", "Running"), "delayed never Running: {seen:?}\n{}", slow.log());
    let _ = watch.kill();
    let _ = watch.wait();
    let delayed = json_of(&s, &["get", "pod", "delayed"]);
    assert!(delayed["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].is_string(), "{delayed}");
    stop_cleanly(&mut slow);
    stop_cleanly(&mut fast);
}

const SPREAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: app, image: nginx:1.27, resources: {requests: {cpu: 500m}}}
"#;

/// The Deployment's live pods (not being deleted, not failed): name, node, phase.
fn web_pods(s: &TestServer) -> Vec<(String, String, String)> {
    let pods = json_of(s, &["get", "pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] != "Failed")
        .map(|p| {
            let field = |v: &Value| v.as_str().unwrap_or("").to_string();
            (field(&p["metadata"]["name"]), field(&p["spec"]["nodeName"]), field(&p["status"]["phase"]))
        })
        .collect()
}

/// Running pods per zone, when all `want` pods run (on nodes named `zone-X-N`).
fn running_by_zone(s: &TestServer, want: usize) -> Option<std::collections::BTreeMap<String, usize>> {
    let pods = web_pods(s);
    if pods.len() != want || pods.iter().any(|(_, node, phase)| node.is_empty() || phase != "Running") {
        return None;
    }
    let mut zones = std::collections::BTreeMap::new();
    for (_, node, _) in pods {
        let zone = node.rsplit_once('-').map_or(node.clone(), |(zone, _)| zone.to_string());
        *zones.entry(zone).or_insert(0) += 1;
    }
    Some(zones)
}

#[test]
fn the_scheduler_spreads_pods_over_hollow_zones_and_moves_them_off_a_removed_node() {
    // The controllers run: the Deployment makes the pods, pod GC removes those of a
    // deleted node and the ReplicaSet replaces them.
    let s = TestServer::start(Path::new(BIN));
    let zone = |z: &str| {
        let (prefix, labels) = (format!("zone-{z}-"), format!("topology.kubernetes.io/zone=zone-{z}"));
        start_agent(
            &s,
            &["--nodes", "2", "--node-name-prefix", &prefix, "--node-labels", &labels, "--capacity", "cpu=4"],
        )
    };
    let mut zone_a = zone("a");
    let mut zone_b = zone("b");
    assert!(
        wait_until(Duration::from_secs(60), || ready_nodes(&s).len() == 4),
        "4 Ready nodes expected: {}\n{}\n{}",
        s.kubectl_ok(&["get", "nodes", "-L", "topology.kubernetes.io/zone"]),
        zone_a.log(),
        zone_b.log()
    );

    // Six replicas, at most one apart between the zones: three each, all running.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(SPREAD));
    let mut zones = None;
    assert!(
        wait_until(Duration::from_secs(90), || {
            zones = running_by_zone(&s, 6);
            zones.is_some()
        }),
        "6 running pods expected: {:?}\n{}",
        web_pods(&s),
        s.kubectl_ok(&["get", "events"])
    );
    let zones = zones.unwrap();
    assert_eq!(zones.into_iter().collect::<Vec<_>>(), [("zone-a".to_string(), 3), ("zone-b".to_string(), 3)]);
    // Each scheduled pod got its Scheduled event from the default scheduler.
    let events = json_of(&s, &["get", "events", "--field-selector", "reason=Scheduled"]);
    let scheduled = events["items"].as_array().unwrap();
    assert!(scheduled.len() >= 6, "{events}");
    assert!(scheduled.iter().all(|e| e["source"]["component"] == "default-scheduler"), "{events}");

    // Zone b goes away mid-way: its agent stops and its Nodes are deleted. Its pods are
    // garbage-collected, the ReplicaSet makes replacements, and the scheduler places those
    // on the nodes that remain (zone b is no longer a domain of the spread).
    stop_cleanly(&mut zone_b);
    s.kubectl_ok(&["delete", "node", "zone-b-0", "zone-b-1"]);
    let mut zones = None;
    assert!(
        wait_until(Duration::from_secs(120), || {
            zones = running_by_zone(&s, 6);
            zones.as_ref().is_some_and(|z| z.len() == 1)
        }),
        "6 running pods in zone a expected: {:?}\n{}",
        web_pods(&s),
        zone_a.log()
    );
    assert_eq!(zones.unwrap().into_iter().collect::<Vec<_>>(), [("zone-a".to_string(), 6)]);
    let nodes: std::collections::BTreeSet<String> = web_pods(&s).into_iter().map(|(_, node, _)| node).collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["zone-a-0", "zone-a-1"], "both remaining nodes take pods");

    // More replicas than the remaining CPUs hold: the rest wait with the scheduler's reason.
    s.kubectl_ok(&["scale", "deployment", "web", "--replicas=20"]);
    let pending = |s: &TestServer| web_pods(s).into_iter().filter(|(_, node, _)| node.is_empty()).count();
    assert!(
        wait_until(Duration::from_secs(90), || {
            let pods = web_pods(&s);
            pods.len() == 20 && pending(&s) == 4 && pods.iter().filter(|(_, _, phase)| phase == "Running").count() == 16
        }),
        "16 running and 4 pending pods expected: {:?}",
        web_pods(&s)
    );
    let pods = json_of(&s, &["get", "pods", "-l", "app=web"]);
    let waiting = pods["items"].as_array().unwrap().iter().find(|p| p["spec"]["nodeName"].is_null()).unwrap();
    let mut message = String::new();
    let name = waiting["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let p = json_of(&s, &["get", "pod", &name]);
            message = p["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable"))
                .and_then(|c| c["message"].as_str())
                .unwrap_or("")
                .to_string();
            message.starts_with("0/2 nodes are available: 2 Insufficient cpu.")
        }),
        "pending pod {name}: {message:?}"
    );
    stop_cleanly(&mut zone_a);
}

/// Runs `berth agent` with `args` expecting failure; returns stderr.
fn agent_fails(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("agent").args(args).output().expect("run berth agent");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "berth agent {args:?} should fail; stderr: {stderr}");
    stderr
}

#[test]
fn bad_flags_give_clear_errors() {
    let kc = ["--kubeconfig", "/nonexistent/kubeconfig.yaml"];
    let cases: &[(&[&str], &str)] = &[
        (&["--kubeconfig", "k"], "reading the kubeconfig k"),
        (&["--kubeconfig", "k", "--pod-cidr", "10.0.0.0/40"], "invalid pod CIDR \"10.0.0.0/40\""),
        (&["--kubeconfig", "k", "--node-ip", "nope"], "invalid value 'nope' for '--node-ip"),
        (&["--hollow", "--node-taints", "a=b:Sometimes"], "effect \"Sometimes\" is not one of NoSchedule"),
        (&["--hollow", "--node-labels", "novalue"], "invalid label \"novalue\": expected key=value"),
        (&["--hollow", "--capacity", "cpu=lots"], "invalid quantity \"lots\""),
        (&["--hollow", "--capacity", "nvidia.com/gpu=0.5"], "extended resources must be whole numbers"),
        (&["--hollow", "--pod-start-delay", "5"], "invalid duration \"5\""),
        (&["--hollow", "--nodes", "0"], "--nodes must be at least 1"),
        (&["--hollow", "--nodes", "many"], "invalid value 'many' for '--nodes"),
        (&["--hollow", "--node-name-prefix", "Bad_"], "is not a valid node name"),
        (&["--hollow"], "give --kubeconfig PATH, or --server URL with --token TOKEN"),
        (&["--hollow", "--server", "http://127.0.0.1:1"], "must be an https:// URL"),
        // --server alone uses the node certificate a join stored (tests/join.rs).
        (&["--hollow", "--server", "https://127.0.0.1:1", "--data-dir", "/nonexistent"], "give --token to join"),
        (&["--hollow", "--server", "not a url", "--token", "t"], "is not a URL"),
        (&["--hollow", kc[0], kc[1]], "reading the kubeconfig /nonexistent/kubeconfig.yaml"),
    ];
    for (args, expect) in cases {
        let stderr = agent_fails(args);
        assert!(stderr.contains(expect), "berth agent {args:?}: {stderr:?} does not contain {expect:?}");
    }
}

/// The library API the benchmarks use: hollow nodes in the test's own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_run_in_process() {
    use berth_agent::hollow::{HollowConfig, HollowNodes};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams, PostParams};

    // The test binds its pods itself through pods/binding.
    let s = TestServer::start_with(Path::new(BIN), &["--disable-scheduler"]);
    let client = s.kube_client().await;
    let config = HollowConfig {
        nodes: 2,
        node_name_prefix: "inproc-".into(),
        pod_start_delay: Duration::ZERO,
        ..HollowConfig::default()
    };
    let handle = HollowNodes::start(client.clone(), config).await.expect("start hollow nodes");
    assert_eq!(handle.node_names().collect::<Vec<_>>(), ["inproc-0", "inproc-1"]);
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(nodes.list(&ListParams::default()).await.unwrap().items.len(), 2);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "p" },
        "spec": { "nodeName": "inproc-0", "containers": [{ "name": "c", "image": "nginx:1.27" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = pods.get("p").await.unwrap();
        if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            break;
        }
        assert!(Instant::now() < deadline, "pod not Running within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A pod bound after creation (as a scheduler binds, through pods/binding) runs too.
    let unbound: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "q" },
        "spec": { "containers": [{ "name": "c", "image": "nginx:1.27" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &unbound).await.unwrap();
    let binding = serde_json::json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "q" },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "inproc-1" } });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/default/pods/q/binding", Some(&binding));
    assert_eq!(code, 201, "{body}");
    loop {
        let p = pods.get("q").await.unwrap();
        let status = p.status.unwrap_or_default();
        if status.phase.as_deref() == Some("Running") {
            assert_eq!(status.host_ip.as_deref(), Some("10.128.0.2"));
            break;
        }
        assert!(Instant::now() < deadline, "bound pod not Running within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Readiness gates: Ready waits for the gate's condition, set later by some controller.
    let gated: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "gated" },
        "spec": { "nodeName": "inproc-0", "readinessGates": [{ "conditionType": "example.com/lb" }],
                  "containers": [{ "name": "c", "image": "nginx:1.27" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &gated).await.unwrap();
    let ready_of = |p: &Pod| {
        let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.status)
    };
    loop {
        let p = pods.get("gated").await.unwrap();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            assert_eq!(ready_of(&p).as_deref(), Some("False"), "{:?}", p.status);
            break;
        }
        assert!(Instant::now() < deadline, "gated pod not Running within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gate = serde_json::json!({ "status": { "conditions": [{ "type": "example.com/lb", "status": "True" }] } });
    pods.patch_status("gated", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&gate)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready_of(&pods.get("gated").await.unwrap()).as_deref() != Some("True") {
        assert!(Instant::now() < deadline, "Ready did not follow the readiness gate within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.stop().await;
}
