//! Disruptions and rollouts observed through a watch against the real server, the test
//! playing the kubelets through the API: the taint manager and the pod GC mark pods
//! (`DisruptionTarget`, phase Failed) before deleting them, and DaemonSet (maxSurge,
//! OnDelete) and StatefulSet (maxUnavailable as a percentage) updates keep their bounds at
//! every step the watch shows, not only at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";

fn server(args: &[&str]) -> TestServer {
    TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), args)
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn get(s: &TestServer, path: &str) -> Value {
    s.http_json("GET", path, None).1
}

fn merge_patch(s: &TestServer, path: &str, body: Value) {
    let r = s.http("PATCH", path, Some("application/merge-patch+json"), body.to_string().as_bytes());
    assert_eq!(r.status, 200, "PATCH {path}: {}", r.json());
}

/// Registers a node as a kubelet does: the Node, its Ready condition (`ready`), its Lease.
fn register(s: &TestServer, name: &str, ready: &str) {
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } });
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    merge_patch(
        s,
        &format!("/api/v1/nodes/{name}/status"),
        json!({ "status": { "conditions": [{ "type": "Ready", "status": ready, "reason": "KubeletReady",
            "lastHeartbeatTime": t, "lastTransitionTime": t }] } }),
    );
    let lease = json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": name },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now() } });
    let (code, v) = s.http_json("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", Some(&lease));
    assert_eq!(code, 201, "{v}");
}

/// Renews `name`'s Lease every 300 ms while the returned guard lives.
struct Renewer {
    on: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewer {
    fn start(s: &TestServer, name: &str) -> Renewer {
        let on = Arc::new(AtomicBool::new(true));
        let (flag, client) = (on.clone(), s.client());
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
        let thread = std::thread::spawn(move || {
            while flag.load(Ordering::SeqCst) {
                let body = json!({ "spec": { "renewTime": now() } }).to_string();
                let _ = client.request("PATCH", &path, Some("application/merge-patch+json"), body.as_bytes());
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Renewer { on, thread: Some(thread) }
    }
}

impl Drop for Renewer {
    fn drop(&mut self) {
        self.on.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pod bound to `node` in `phase` (Ready when Running), with `tolerations` and `finalizers`.
fn bound_pod(s: &TestServer, name: &str, node: &str, phase: &str, tolerations: Value) {
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "nodeName": node, "tolerations": tolerations, "restartPolicy": "Never",
            "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
    let (code, mut p) = s.http_json("POST", PODS, Some(&pod));
    assert_eq!(code, 201, "{p}");
    let ready = if phase == "Running" { "True" } else { "False" };
    p["status"] = json!({ "phase": phase, "conditions": [{ "type": "Ready", "status": ready }] });
    let (code, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
    assert_eq!(code, 200, "{v}");
}

/// Every version of the default namespace's pods a watch delivered, in order: (deleted, pod).
struct Recorder {
    log: Arc<Mutex<Vec<(bool, Value)>>>,
    /// How many entries the initial list made.
    listed: usize,
    _rt: tokio::runtime::Runtime,
}

impl Recorder {
    /// Starts watching and returns once the initial list is in.
    fn start(s: &TestServer) -> Recorder {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let synced = Arc::new(AtomicBool::new(false));
        let (into, done, kubeconfig) = (log.clone(), synced.clone(), s.kubeconfig.clone());
        rt.spawn(async move {
            let client = berth_testkit::kube_client(&kubeconfig).await;
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(ev) = events.next().await {
                let (deleted, pod) = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (false, p),
                    Ok(watcher::Event::Delete(p)) => (true, p),
                    Ok(watcher::Event::InitDone) => {
                        done.store(true, Ordering::SeqCst);
                        continue;
                    }
                    _ => continue,
                };
                let value = serde_json::to_value(&pod).unwrap_or_default();
                into.lock().unwrap().push((deleted, value));
            }
        });
        assert!(wait_until(WAIT, || synced.load(Ordering::SeqCst)), "the watch never listed:\n{}", s.log());
        let listed = log.lock().unwrap().len();
        Recorder { log, listed, _rt: rt }
    }

    fn events(&self) -> Vec<(bool, Value)> {
        self.log.lock().unwrap().clone()
    }

    /// The versions of pod `name`, in order.
    fn of(&self, name: &str) -> Vec<(bool, Value)> {
        self.events().into_iter().filter(|(_, p)| p["metadata"]["name"] == name).collect()
    }

    /// The pods (by uid) after each event that followed the initial list, with that event.
    fn states(&self) -> Vec<((bool, Value), BTreeMap<String, Value>)> {
        let mut state = BTreeMap::new();
        let mut out = Vec::new();
        for (i, (deleted, pod)) in self.events().into_iter().enumerate() {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            if deleted {
                state.remove(&uid);
            } else {
                state.insert(uid, pod.clone());
            }
            if i >= self.listed {
                out.push(((deleted, pod), state.clone()));
            }
        }
        out
    }
}

fn condition(pod: &Value, type_: &str) -> Option<Value> {
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_ && c["status"] == "True").cloned()
}

fn deleting(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

fn ready(pod: &Value) -> bool {
    !deleting(pod) && pod["status"]["phase"] == "Running" && condition(pod, "Ready").is_some()
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

/// Checks the versions of an evicted pod: marked `DisruptionTarget` with `reason` while not
/// yet deleting, the deletion after that; returns the first version being deleted.
fn marked_then_deleted(versions: &[(bool, Value)], reason: &str, message: &str) -> Value {
    let marked = versions
        .iter()
        .position(|(_, p)| condition(p, "DisruptionTarget").is_some())
        .unwrap_or_else(|| panic!("never marked: {versions:#?}"));
    let deleted = versions.iter().position(|(gone, p)| *gone || deleting(p)).expect("never deleted");
    assert!(marked < deleted, "deleted before it was marked: {versions:#?}");
    let c = condition(&versions[marked].1, "DisruptionTarget").unwrap();
    assert_eq!((c["reason"].as_str(), c["message"].as_str()), (Some(reason), Some(message)), "{c}");
    assert!(!deleting(&versions[marked].1), "the condition comes first: {:#}", versions[marked].1);
    versions[deleted].1.clone()
}

#[test]
fn the_taint_manager_marks_pods_disrupted_before_evicting_them_after_their_toleration() {
    // A rate high enough not to pace the two taints apart (pacing is unit-tested in
    // nodelifecycle::zones).
    let s = server(&["--node-monitor-grace-period", "3s", "--node-eviction-rate", "1000", "--disable-scheduler"]);
    let recorder = Recorder::start(&s);
    // "dark" stops renewing its Lease (unreachable); "sick" renews it but reports NotReady.
    // Three healthy nodes keep the zone Normal (2 of 5 down is under the 55 % that would
    // make it partially disrupted, which stops evictions in a small cluster).
    let mut renewers = Vec::new();
    for name in ["dark", "sick", "well-1", "well-2", "well-3"] {
        register(&s, name, "True");
        if name != "dark" {
            renewers.push(Renewer::start(&s, name));
        }
    }
    let toleration =
        |key: &str| json!([{ "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3 }]);
    bound_pod(&s, "quick-dark", "dark", "Running", toleration("node.kubernetes.io/unreachable"));
    bound_pod(&s, "quick-sick", "sick", "Running", toleration("node.kubernetes.io/not-ready"));
    bound_pod(&s, "patient", "dark", "Running", json!([]));
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    merge_patch(
        &s,
        "/api/v1/nodes/sick/status",
        json!({ "status": { "conditions": [{ "type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "lastHeartbeatTime": t, "lastTransitionTime": t }] } }),
    );
    for pod in ["quick-dark", "quick-sick"] {
        assert!(
            wait_until(WAIT, || recorder.of(pod).iter().any(|(gone, p)| *gone || deleting(p))),
            "{pod} not evicted: {}\n{}",
            get(&s, &format!("{PODS}/{pod}")),
            s.log()
        );
    }
    for (pod, node, key) in [
        ("quick-dark", "dark", "node.kubernetes.io/unreachable"),
        ("quick-sick", "sick", "node.kubernetes.io/not-ready"),
    ] {
        let first_deleting = marked_then_deleted(
            &recorder.of(pod),
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
        );
        // The taint manager does not fail the pod: its kubelet does that while stopping it.
        assert_eq!(first_deleting["status"]["phase"], "Running", "{first_deleting:#}");
        // Not before the toleration ran out: evicted (deletionTimestamp less the grace period)
        // at least 3 s after the taint was added (both have a one-second resolution).
        let n = get(&s, &format!("/api/v1/nodes/{node}"));
        let taint = n["spec"]["taints"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["key"] == key && t["effect"] == "NoExecute").cloned())
            .unwrap_or_else(|| panic!("{node} has no {key} NoExecute taint: {n}"));
        let grace = first_deleting["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap();
        let evicted = ts(&first_deleting["metadata"]["deletionTimestamp"]) - jiff::SignedDuration::from_secs(grace);
        let added = ts(&taint["timeAdded"]);
        assert!(
            evicted >= added + jiff::SignedDuration::from_secs(2),
            "{pod} evicted at {evicted}, taint added {added}"
        );
    }
    // The pod tolerating the taint for the default 300 s stays, unmarked.
    let patient = get(&s, &format!("{PODS}/patient"));
    assert!(!deleting(&patient) && condition(&patient, "DisruptionTarget").is_none(), "{patient:#}");
}

#[test]
fn pod_gc_fails_and_marks_the_pods_of_a_deleted_node_then_removes_them() {
    let s = server(&["--disable-scheduler"]);
    let recorder = Recorder::start(&s);
    register(&s, "doomed", "True");
    bound_pod(&s, "orphan", "doomed", "Running", json!([]));
    bound_pod(&s, "finished", "doomed", "Succeeded", json!([]));
    s.kubectl_ok(&["delete", "node", "doomed"]);
    for pod in ["orphan", "finished"] {
        assert!(
            wait_until(WAIT, || recorder.of(pod).last().is_some_and(|(gone, _)| *gone)
                && s.http_json("GET", &format!("{PODS}/{pod}"), None).0 == 404),
            "{pod} not collected: {}\n{}",
            get(&s, &format!("{PODS}/{pod}")),
            s.log()
        );
    }
    let orphan = recorder.of("orphan");
    marked_then_deleted(&orphan, "DeletionByPodGC", "PodGC: node no longer exists");
    let failed = orphan.iter().position(|(_, p)| p["status"]["phase"] == "Failed").expect("never Failed");
    let marked = orphan.iter().position(|(_, p)| condition(p, "DisruptionTarget").is_some()).unwrap();
    assert_eq!(failed, marked, "Failed and the condition in one write: {orphan:#?}");
    // Force-deleted: gone without a grace period.
    assert!(orphan.last().is_some_and(|(gone, _)| *gone), "{orphan:#?}");
    // A pod that had finished keeps its phase and gets no condition.
    let finished = recorder.of("finished");
    assert!(
        finished.iter().all(|(_, p)| p["status"]["phase"] != "Failed" && condition(p, "DisruptionTarget").is_none()),
        "{finished:#?}"
    );
    assert_eq!(finished.last().unwrap().1["status"]["phase"], "Succeeded", "{finished:#?}");
    assert!(finished.last().is_some_and(|(gone, _)| *gone), "{finished:#?}");
}

#[test]
fn pod_gc_fails_unscheduled_terminating_pods() {
    let s = server(&["--disable-scheduler"]);
    let unscheduled = |name: &str, finalizers: Value| {
        let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "finalizers": finalizers },
            "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } });
        let (code, v) = s.http_json("POST", PODS, Some(&pod));
        assert_eq!(code, 201, "{v}");
    };
    // A finalizer of the test's own holds the deleted pod; the other is never deleted.
    unscheduled("limbo", json!(["example.com/hold"]));
    unscheduled("waiting", json!([]));
    s.kubectl_ok(&["delete", "pod", "limbo", "--wait=false"]);
    assert!(deleting(&get(&s, &format!("{PODS}/limbo"))));
    assert!(
        wait_until(WAIT, || get(&s, &format!("{PODS}/limbo"))["status"]["phase"] == "Failed"),
        "not failed: {}\n{}",
        get(&s, &format!("{PODS}/limbo")),
        s.log()
    );
    // Kubernetes gives an unscheduled pod no DisruptionTarget condition (only orphans get one).
    let limbo = get(&s, &format!("{PODS}/limbo"));
    assert!(condition(&limbo, "DisruptionTarget").is_none(), "{limbo:#}");
    assert_eq!(limbo["metadata"]["deletionGracePeriodSeconds"], 0, "{limbo:#}");
    assert_eq!(limbo["metadata"]["finalizers"], json!(["example.com/hold"]));
    // The same pass left the pod that is not being deleted alone.
    let waiting = get(&s, &format!("{PODS}/waiting"));
    assert!(!deleting(&waiting) && waiting["status"]["phase"] == "Pending", "{waiting:#}");
    // Its finalizer gone, the pod goes.
    s.kubectl_ok(&["patch", "pod", "limbo", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    assert!(wait_until(WAIT, || s.http_json("GET", &format!("{PODS}/limbo"), None).0 == 404));
}

/// Plays the kubelet (and the scheduler for daemon pods pinned to a node by name): pods
/// become Running and Ready, pods being deleted go away. Stops when dropped.
struct Kubelet {
    _rt: tokio::runtime::Runtime,
}

impl Kubelet {
    fn start(s: &TestServer) -> Kubelet {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let kubeconfig = s.kubeconfig.clone();
        rt.spawn(async move {
            let client = berth_testkit::kube_client(&kubeconfig).await;
            let all: Api<Pod> = Api::all(client.clone());
            let mut pods = std::pin::pin!(watcher(all, watcher::Config::default()).default_backoff().applied_objects());
            while let Some(ev) = pods.next().await {
                let Ok(pod) = ev else { continue };
                let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
                tokio::spawn(async move { play(&api, &pod).await });
            }
        });
        Kubelet { _rt: rt }
    }
}

async fn play(api: &Api<Pod>, pod: &Pod) {
    let name = pod.name_any();
    if pod.metadata.deletion_timestamp.is_some() {
        let _ = api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await;
        return;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.node_name.as_deref().unwrap_or_default().is_empty() {
        let pinned = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| {
            let terms = &n.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
            terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| r.values.as_ref()?.first().cloned())
        });
        if let Some(node) = pinned {
            let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
                "target": { "apiVersion": "v1", "kind": "Node", "name": node } });
            let _ = api
                .create_subresource::<Value, Value>("binding", &name, &kube::api::PostParams::default(), &binding)
                .await;
        }
    }
    let status = pod.status.clone().unwrap_or_default();
    let is_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if is_ready && status.phase.as_deref() == Some("Running") {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({ "status": { "phase": "Running", "podIP": "10.42.0.10", "startTime": now,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Initialized", "status": "True", "lastTransitionTime": now },
            { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": "True", "lastTransitionTime": now }] } });
    let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
}

fn bare_node(s: &TestServer, name: &str) {
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } });
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
}

fn live(s: &TestServer, selector: &str) -> Vec<Value> {
    let v = get(s, &format!("{PODS}?labelSelector={selector}"));
    v["items"].as_array().cloned().unwrap_or_default().into_iter().filter(|p| !deleting(p)).collect()
}

fn hash(p: &Value) -> String {
    p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap_or_default().to_string()
}

/// The hash of the newest ControllerRevision of the set `name` (the revision name's suffix).
fn newest_revision_hash(s: &TestServer, name: &str) -> String {
    let list = get(s, "/apis/apps/v1/namespaces/default/controllerrevisions");
    let newest = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["metadata"]["ownerReferences"][0]["name"] == name)
        .max_by_key(|r| r["revision"].as_i64())
        .unwrap_or_else(|| panic!("no revisions: {list}"));
    let rev_name = newest["metadata"]["name"].as_str().unwrap();
    rev_name.strip_prefix(&format!("{name}-")).unwrap().to_string()
}

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: agent }
spec:
  selector: { matchLabels: { app: agent } }
  updateStrategy: STRATEGY
  template:
    metadata: { labels: { app: agent } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
"#;

fn ds_server() -> TestServer {
    // The nodes post no status: a long grace period keeps them from turning Unknown (and
    // tainted) while the test runs.
    server(&["--disable-scheduler", "--node-monitor-grace-period", "1h"])
}

#[test]
fn a_daemonset_surges_each_new_pod_in_before_its_old_one_goes() {
    let s = ds_server();
    let _kubelet = Kubelet::start(&s);
    for n in ["n1", "n2", "n3"] {
        bare_node(&s, n);
    }
    let manifest = DS.replace("STRATEGY", "{ type: RollingUpdate, rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    s.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let old: Vec<String> = live(&s, "app%3Dagent").iter().map(hash).collect();
    assert_eq!(old.len(), 3, "{old:?}");
    let recorder = Recorder::start(&s);
    s.kubectl_ok(&["set", "image", "daemonset/agent", "c=busybox:1.37"]);
    s.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    let new_hash = newest_revision_hash(&s, "agent");
    assert!(
        wait_until(WAIT, || {
            let pods = live(&s, "app%3Dagent");
            pods.len() == 3 && pods.iter().all(|p| hash(p) == new_hash && ready(p))
        }),
        "{:#?}",
        live(&s, "app%3Dagent")
    );
    // The node a daemon pod is for: bound, or pinned by its affinity until it is.
    let node_of = |p: &Value| {
        let pinned = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"][0];
        p["spec"]["nodeName"].as_str().or(pinned.as_str()).unwrap_or_default().to_string()
    };
    let mut most_surging = 0;
    for ((deleted, pod), state) in recorder.states() {
        let live: Vec<&Value> = state.values().filter(|p| !deleting(p)).collect();
        // Surging nodes run their old pod beside a new one that is not ready yet: at most
        // maxSurge (1) of them at any time. (The delete of an old pod whose successor is
        // ready may land after the next node's surge pod is created, as in Kubernetes,
        // which issues a sync's creates and deletes together.)
        let surging = ["n1", "n2", "n3"]
            .iter()
            .filter(|n| {
                let here: Vec<&&Value> = live.iter().filter(|p| node_of(p) == **n).collect();
                assert!(here.len() <= 2, "more than an old and a new pod on {n}: {here:#?}");
                here.iter().any(|p| hash(p) != new_hash) && here.iter().any(|p| hash(p) == new_hash && !ready(p))
            })
            .count();
        assert!(surging <= 1, "beyond maxSurge 1 after {}: {state:#?}", pod["metadata"]["name"]);
        most_surging = most_surging.max(surging);
        // maxUnavailable 0: never a node without a ready pod.
        for n in ["n1", "n2", "n3"] {
            assert!(
                state.values().any(|p| node_of(p) == n && ready(p)),
                "maxUnavailable 0, yet {n} has no ready pod after {}: {state:#?}",
                pod["metadata"]["name"]
            );
        }
        // An old pod is deleted only once the new pod beside it is ready.
        if (deleted || deleting(&pod)) && hash(&pod) != new_hash {
            let node = node_of(&pod);
            assert!(
                state.values().any(|p| node_of(p) == node && hash(p) == new_hash && ready(p)),
                "{} went before its successor was ready: {state:#?}",
                pod["metadata"]["name"]
            );
        }
    }
    assert_eq!(most_surging, 1, "the rollout surged one node at a time");
}

#[test]
fn an_on_delete_daemonset_replaces_a_pod_only_when_it_is_deleted() {
    let s = ds_server();
    let _kubelet = Kubelet::start(&s);
    for n in ["n1", "n2"] {
        bare_node(&s, n);
    }
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&DS.replace("STRATEGY", "{ type: OnDelete }")));
    // (kubectl rollout status follows only RollingUpdate DaemonSets.)
    assert!(
        wait_until(WAIT, || {
            let pods = live(&s, "app%3Dagent");
            pods.len() == 2 && pods.iter().all(ready)
        }),
        "{:#?}",
        live(&s, "app%3Dagent")
    );
    let before: Vec<Value> = live(&s, "app%3Dagent");
    let first_hash = hash(&before[0]);
    s.kubectl_ok(&["set", "image", "daemonset/agent", "c=busybox:1.37"]);
    // Once the controller has seen the new template (observedGeneration, a new revision),
    // the pods are still the old ones: a sync deletes before it writes its status.
    let ds_path = "/apis/apps/v1/namespaces/default/daemonsets/agent";
    assert!(wait_until(WAIT, || {
        let ds = get(&s, ds_path);
        ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
    }));
    let new_hash = newest_revision_hash(&s, "agent");
    assert_ne!(new_hash, first_hash);
    let ds = get(&s, ds_path);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 0, "{ds:#}");
    let names = |pods: &[Value]| -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&live(&s, "app%3Dagent")), names(&before));
    assert!(live(&s, "app%3Dagent").iter().all(|p| hash(p) == first_hash));
    // A deleted pod comes back on the new template and revision, on the same node.
    let gone = before[0]["metadata"]["name"].as_str().unwrap().to_string();
    let node = before[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    s.kubectl_ok(&["delete", "pod", &gone, "--wait=false"]);
    assert!(
        wait_until(WAIT, || live(&s, "app%3Dagent")
            .iter()
            .any(|p| p["spec"]["nodeName"] == node.as_str() && p["metadata"]["name"] != gone.as_str() && ready(p))),
        "{:#?}",
        live(&s, "app%3Dagent")
    );
    let pods = live(&s, "app%3Dagent");
    let replacement = pods.iter().find(|p| p["spec"]["nodeName"] == node.as_str()).unwrap();
    assert_eq!(hash(replacement), new_hash, "{replacement:#}");
    assert_eq!(replacement["spec"]["containers"][0]["image"], "busybox:1.37");
    let other = pods.iter().find(|p| p["spec"]["nodeName"] != node.as_str()).unwrap();
    assert_eq!(other["metadata"]["name"], before[1]["metadata"]["name"]);
    assert_eq!((hash(other), other["spec"]["containers"][0]["image"].clone()), (first_hash, json!("busybox:1.36")));
    assert!(wait_until(WAIT, || get(&s, ds_path)["status"]["updatedNumberScheduled"] == 1), "{}", get(&s, ds_path));
}

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db }
spec:
  replicas: 4
  serviceName: db
  selector: { matchLabels: { app: db } }
  updateStrategy: { type: RollingUpdate, rollingUpdate: { maxUnavailable: 50% } }
  template:
    metadata: { labels: { app: db } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
"#;

#[test]
fn a_statefulset_rolls_at_most_half_of_four_pods_at_once() {
    let s = server(&["--disable-scheduler"]);
    let _kubelet = Kubelet::start(&s);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(STS));
    s.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let recorder = Recorder::start(&s);
    s.kubectl_ok(&["set", "image", "statefulset/db", "c=busybox:1.37"]);
    s.kubectl_ok(&["rollout", "status", "statefulset/db", "--timeout=60s"]);
    let sts_path = "/apis/apps/v1/namespaces/default/statefulsets/db";
    assert!(
        wait_until(WAIT, || {
            let set = get(&s, sts_path);
            set["status"]["updatedReplicas"] == 4 && set["status"]["currentRevision"] == set["status"]["updateRevision"]
        }),
        "{}",
        get(&s, sts_path)
    );
    let mut most_down = 0;
    for ((_, pod), state) in recorder.states() {
        let up = (0..4)
            .filter(|o| state.values().any(|p| p["metadata"]["name"] == format!("db-{o}").as_str() && ready(p)))
            .count();
        let down = 4 - up;
        assert!(down <= 2, "{down} pods down after {}: {state:#?}", pod["metadata"]["name"]);
        most_down = most_down.max(down);
    }
    assert_eq!(most_down, 2, "maxUnavailable 50% of 4 lets two pods update at once");
    // StatefulSet pods carry the whole revision name.
    let update_revision = get(&s, sts_path)["status"]["updateRevision"].as_str().unwrap().to_string();
    assert_eq!(update_revision, format!("db-{}", newest_revision_hash(&s, "db")));
    let pods = live(&s, "app%3Ddb");
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter().all(|p| hash(p) == update_revision && p["spec"]["containers"][0]["image"] == "busybox:1.37"),
        "{pods:#?}"
    );
}
