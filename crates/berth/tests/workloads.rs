//! The workload controllers in `berth server`, driven by the real kubectl over HTTP, with a
//! small harness that plays the kubelet through the API (no node agent runs): it marks the
//! pods it sees Running and Ready and finishes the deletion of pods being deleted.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

/// Plays the kubelet: pods become Running and Ready (unless an image says `never-ready`),
/// and pods being deleted go away. Stops when dropped.
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
    // Plays the scheduler for daemon pods: bind a pod pinned to a node by name.
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
    if spec.containers.iter().any(|c| c.image.as_deref().unwrap_or_default().contains("never-ready")) {
        return;
    }
    let status = pod.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    if ready && status.phase.as_deref() == Some("Running") {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({ "name": c.name, "image": c.image, "imageID": "", "ready": true, "restartCount": 0, "started": true,
            "state": { "running": { "startedAt": now } } })
        })
        .collect();
    let patch = json!({ "status": { "phase": "Running", "podIP": "10.42.0.10", "startTime": now,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Initialized", "status": "True", "lastTransitionTime": now },
            { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": "True", "lastTransitionTime": now }],
        "containerStatuses": containers } });
    let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
}

fn get_json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&s.kubectl_ok(&all)).unwrap()
}

/// Pods (JSON) of the default namespace with the label selector `sel`.
fn pods(s: &TestServer, sel: &str) -> Vec<Value> {
    let v = get_json(s, &["get", "pods", "-l", sel]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn live_pods(s: &TestServer, sel: &str) -> Vec<Value> {
    pods(s, sel).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
}

fn wait(s: &TestServer, what: &str, mut cond: impl FnMut() -> bool) {
    assert!(wait_until(TIMEOUT, &mut cond), "timed out waiting for {what}\n{}", s.log());
}

fn owner_uid(p: &Value) -> Option<String> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(String::from))
}

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: { name: web }
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
"#;

#[test]
fn a_replicaset_keeps_its_pods_adopts_orphans_and_releases_relabelled_pods() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    // An orphan that matches the selector exists first: it is adopted, so only two are created.
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"orphan","labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}"#),
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(RS));
    let rs = get_json(&s, &["get", "rs", "web"]);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    wait(&s, "3 ready pods", || {
        let rs = get_json(&s, &["get", "rs", "web"]);
        rs["status"]["readyReplicas"] == 3 && rs["status"]["availableReplicas"] == 3
    });
    let all = live_pods(&s, "app=web");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|p| owner_uid(p).as_deref() == Some(uid.as_str())), "all owned: {all:?}");
    let orphan = get_json(&s, &["get", "pod", "orphan"]);
    let r = &orphan["metadata"]["ownerReferences"][0];
    assert_eq!((r["kind"].as_str(), r["blockOwnerDeletion"].as_bool()), (Some("ReplicaSet"), Some(true)), "{orphan}");
    let rs = get_json(&s, &["get", "rs", "web"]);
    assert_eq!(rs["status"]["replicas"], 3);
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 3);
    assert_eq!(rs["status"]["observedGeneration"], rs["metadata"]["generation"]);

    // A deleted pod is replaced.
    let victim = all.iter().find(|p| p["metadata"]["name"] != "orphan").unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    s.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    wait(&s, "a replacement", || {
        let now = live_pods(&s, "app=web");
        now.len() == 3 && now.iter().all(|p| p["metadata"]["name"] != victim.as_str())
    });

    // A relabelled pod is released (its controller reference removed) and replaced.
    s.kubectl_ok(&["label", "pod", "orphan", "app=other", "--overwrite"]);
    wait(&s, "the relabelled pod released", || owner_uid(&get_json(&s, &["get", "pod", "orphan"])).is_none());
    wait(&s, "3 pods again", || live_pods(&s, "app=web").len() == 3);

    // Scaling down deletes; scaling up creates.
    s.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    wait(&s, "1 pod", || live_pods(&s, "app=web").len() == 1);
    s.kubectl_ok(&["scale", "rs", "web", "--replicas=5"]);
    wait(&s, "5 ready", || get_json(&s, &["get", "rs", "web"])["status"]["readyReplicas"] == 5);
    assert_eq!(live_pods(&s, "app=web").len(), 5, "no double creation");

    let describe = s.kubectl_ok(&["describe", "rs", "web"]);
    assert!(describe.contains("SuccessfulCreate") && describe.contains("Created pod: web-"), "{describe}");
    assert!(describe.contains("SuccessfulDelete"), "{describe}");
}

#[test]
fn a_replication_controller_keeps_its_pods() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(
            r#"{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"old"},"spec":{"replicas":2,
            "template":{"metadata":{"labels":{"app":"old"}},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}}}"#,
        ),
    );
    wait(&s, "2 ready", || get_json(&s, &["get", "rc", "old"])["status"]["readyReplicas"] == 2);
    let all = live_pods(&s, "app=old");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["metadata"]["ownerReferences"][0]["kind"], "ReplicationController");
    s.kubectl_ok(&["scale", "rc", "old", "--replicas=0"]);
    wait(&s, "no pods", || live_pods(&s, "app=old").is_empty());
    wait(&s, "status 0", || get_json(&s, &["get", "rc", "old"])["status"]["replicas"] == 0);
}

#[test]
fn min_ready_seconds_delays_availability() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&RS.replace("replicas: 3", "replicas: 2\n  minReadySeconds: 3")));
    wait(&s, "2 ready", || get_json(&s, &["get", "rs", "web"])["status"]["readyReplicas"] == 2);
    // Available only once ready for 3 s: the controller looks again by itself.
    wait(&s, "2 available", || get_json(&s, &["get", "rs", "web"])["status"]["availableReplicas"] == 2);
}

/// The ReplicaSets of the default namespace with `sel`, as (name, spec.replicas, revision),
/// by revision.
fn replicasets(s: &TestServer, sel: &str) -> Vec<(String, i64, String)> {
    let v = get_json(s, &["get", "rs", "-l", sel]);
    let mut all: Vec<(String, i64, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["name"].as_str().unwrap().to_string(),
                rs["spec"]["replicas"].as_i64().unwrap(),
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    all.sort_by_key(|r| r.2.parse::<i64>().unwrap_or(0));
    all
}

fn rollout_status(s: &TestServer, what: &str) -> String {
    s.kubectl_ok(&["rollout", "status", what, "--timeout=60s"])
}

#[test]
fn a_deployment_rolls_out_rolls_back_and_keeps_its_history() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    s.kubectl_ok(&["create", "deployment", "web", "--image=busybox:1.36", "--replicas=3"]);
    let out = rollout_status(&s, "deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = get_json(&s, &["get", "deployment", "web"]);
    assert_eq!(d["status"]["readyReplicas"], 3, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let conds = d["status"]["conditions"].as_array().unwrap();
    let reason = |t: &str| conds.iter().find(|c| c["type"] == t).map(|c| c["reason"].clone()).unwrap_or_default();
    assert_eq!(reason("Available"), "MinimumReplicasAvailable", "{d}");
    assert_eq!(reason("Progressing"), "NewReplicaSetAvailable", "{d}");
    let rs = replicasets(&s, "app=web");
    assert_eq!(rs.len(), 1);
    let first = rs[0].0.clone();
    let rs_json = get_json(&s, &["get", "rs", &first]);
    let hash = rs_json["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert_eq!(first, format!("web-{hash}"));
    assert_eq!(rs_json["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash.as_str());
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "3");
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"], "4");
    assert!(live_pods(&s, "app=web").iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()));

    // A new image rolls out through a second ReplicaSet; the first is scaled to 0 and kept.
    s.kubectl_ok(&["set", "image", "deployment/web", "busybox=busybox:1.37"]);
    s.kubectl_ok(&["annotate", "deployment/web", "kubernetes.io/change-cause=to 1.37"]);
    rollout_status(&s, "deployment/web");
    let rs = replicasets(&s, "app=web");
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!((rs[0].1, rs[0].2.as_str()), (0, "1"), "{rs:?}");
    assert_eq!((rs[1].1, rs[1].2.as_str()), (3, "2"), "{rs:?}");
    let pods_now = live_pods(&s, "app=web");
    assert_eq!(pods_now.len(), 3);
    assert!(pods_now.iter().all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37"));
    let history = s.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION") && history.lines().any(|l| l.starts_with('1')), "{history}");
    assert!(history.lines().any(|l| l.starts_with('2')), "{history}");
    let rev1 = s.kubectl_ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("busybox:1.36"), "{rev1}");

    // Undo goes back to the first template: its ReplicaSet becomes revision 3.
    s.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&s, "deployment/web");
    let rs = replicasets(&s, "app=web");
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert_eq!((rs[1].0.as_str(), rs[1].1, rs[1].2.as_str()), (first.as_str(), 3, "3"), "{rs:?}");
    assert_eq!(rs[0].1, 0, "{rs:?}");
    let rs_json = get_json(&s, &["get", "rs", &first]);
    assert_eq!(rs_json["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    assert!(live_pods(&s, "app=web").iter().all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.36"));
    wait(&s, "revision 3 on the deployment", || {
        get_json(&s, &["get", "deployment", "web"])["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            == "3"
    });

    let describe = s.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(describe.contains(&format!("Scaled up replica set {first} from 0 to 3")), "{describe}");
    assert!(describe.contains("Scaled down replica set"), "{describe}");
    let wide = s.kubectl_ok(&["get", "rs", "-o", "wide"]);
    assert!(wide.contains(&first), "{wide}");
}

const STALLED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: big }
spec:
  replicas: 10
  selector: { matchLabels: { app: big } }
  strategy: { type: RollingUpdate, rollingUpdate: { maxSurge: 3, maxUnavailable: 0 } }
  template:
    metadata: { labels: { app: big } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
"#;

#[test]
fn scaling_mid_rollout_is_proportional_and_pause_holds_the_rollout() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(STALLED));
    rollout_status(&s, "deployment/big");
    // The new pods never become ready: the rollout stops at the surge (10 old + 3 new).
    s.kubectl_ok(&["set", "image", "deployment/big", "c=never-ready:1"]);
    wait(&s, "10 + 3", || replicasets(&s, "app=big").iter().map(|r| r.1).collect::<Vec<_>>() == [10, 3]);
    // Scaling to 20 adds 10 in proportion: 10 -> 18 and 3 -> 5 (as Kubernetes rounds).
    s.kubectl_ok(&["scale", "deployment/big", "--replicas=20"]);
    wait(&s, "18 + 5", || replicasets(&s, "app=big").iter().map(|r| r.1).collect::<Vec<_>>() == [18, 5]);
    // The Deployment's status follows its ReplicaSets' (it may lag them by a sync).
    wait(&s, "18 available", || get_json(&s, &["get", "deployment", "big"])["status"]["availableReplicas"] == 18);

    // Paused: a template change starts nothing, a resize still applies.
    s.kubectl_ok(&["rollout", "undo", "deployment/big"]);
    rollout_status(&s, "deployment/big");
    s.kubectl_ok(&["rollout", "pause", "deployment/big"]);
    s.kubectl_ok(&["set", "image", "deployment/big", "c=busybox:1.38"]);
    wait(&s, "the paused condition", || {
        let d = get_json(&s, &["get", "deployment", "big"]);
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["conditions"].as_array().unwrap().iter().any(|c| c["reason"] == "DeploymentPaused")
    });
    let rs = replicasets(&s, "app=big");
    assert_eq!(rs.len(), 2, "no new ReplicaSet while paused: {rs:?} {}", get_json(&s, &["get", "deployment", "big"]));
    s.kubectl_ok(&["scale", "deployment/big", "--replicas=4"]);
    wait(&s, "scaled while paused", || replicasets(&s, "app=big").iter().map(|r| r.1).max() == Some(4));
    s.kubectl_ok(&["rollout", "resume", "deployment/big"]);
    rollout_status(&s, "deployment/big");
    let rs = replicasets(&s, "app=big");
    assert_eq!(rs.len(), 3, "{rs:?}");
    assert_eq!(rs.last().map(|r| r.1), Some(4), "{rs:?}");
    assert!(live_pods(&s, "app=big").iter().all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.38"));
}

#[test]
fn recreate_replaces_all_pods_and_history_is_trimmed() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    let overlap = Overlap::watch(&s, "app=rec");
    let manifest = STALLED
        .replace("name: big", "name: rec")
        .replace("app: big", "app: rec")
        .replace("replicas: 10", "replicas: 2\n  revisionHistoryLimit: 1")
        .replace("{ type: RollingUpdate, rollingUpdate: { maxSurge: 3, maxUnavailable: 0 } }", "{ type: Recreate }");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    rollout_status(&s, "deployment/rec");
    for tag in ["1.37", "1.38", "1.39"] {
        s.kubectl_ok(&["set", "image", "deployment/rec", &format!("c=busybox:{tag}")]);
        rollout_status(&s, "deployment/rec");
        let pods_now = live_pods(&s, "app=rec");
        assert!(pods_now.iter().all(|p| p["spec"]["containers"][0]["image"] == format!("busybox:{tag}").as_str()));
    }
    // Revision 4 is current; one old one is kept.
    wait(&s, "history trimmed to 1", || {
        replicasets(&s, "app=rec").iter().map(|r| r.2.clone()).collect::<Vec<_>>() == ["3", "4"]
    });
    // Every rollout had old and new pods apart: the new ReplicaSet's first pod came only
    // after the last old pod (terminating ones included) was gone.
    let seen = overlap.stop();
    assert!(seen.hashes >= 4, "the watch saw {} templates", seen.hashes);
    assert_eq!(seen.overlaps, Vec::<String>::new(), "old and new pods ran at the same time");
}

/// What [`Overlap`] saw: how many pod templates, and every moment pods of two templates
/// existed together (unfinished, deleted or not).
struct Seen {
    hashes: usize,
    overlaps: Vec<String>,
}

/// Follows the pods of a selector through one watch (each event applied in order, so every
/// state the API server went through is seen) and records pods of different
/// pod-template-hashes existing at once.
struct Overlap {
    rt: tokio::runtime::Runtime,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
}

impl Overlap {
    fn watch(s: &TestServer, selector: &str) -> Overlap {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen { hashes: 0, overlaps: vec![] }));
        let (kubeconfig, selector, out) = (s.kubeconfig.clone(), selector.to_string(), seen.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let client = berth_testkit::kube_client(&kubeconfig).await;
            let api: Api<Pod> = Api::default_namespaced(client);
            let config = watcher::Config::default().labels(&selector);
            let mut events = std::pin::pin!(watcher(api, config));
            let mut live: std::collections::BTreeMap<String, String> = Default::default();
            let mut hashes = std::collections::BTreeSet::new();
            while let Some(ev) = events.next().await {
                let mut apply = |p: &Pod, live: &mut std::collections::BTreeMap<String, String>| {
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                    let hash = p.labels().get("pod-template-hash").cloned().unwrap_or_default();
                    hashes.insert(hash.clone());
                    if phase == "Succeeded" || phase == "Failed" {
                        live.remove(&p.name_any());
                    } else {
                        live.insert(p.name_any(), hash);
                    }
                };
                match ev {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => apply(&p, &mut live),
                    Ok(watcher::Event::Delete(p)) => {
                        live.remove(&p.name_any());
                    }
                    Ok(watcher::Event::Init) => live.clear(),
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready_tx.send(());
                    }
                    Err(_) => continue,
                }
                let templates: std::collections::BTreeSet<&String> = live.values().collect();
                let mut seen = out.lock().unwrap();
                seen.hashes = hashes.len();
                if templates.len() > 1 {
                    seen.overlaps.push(format!("{live:?}"));
                }
            }
        });
        ready_rx.recv_timeout(TIMEOUT).expect("the pod watch started");
        Overlap { rt, seen }
    }

    fn stop(self) -> Seen {
        self.rt.shutdown_background();
        std::mem::replace(&mut *self.seen.lock().unwrap(), Seen { hashes: 0, overlaps: vec![] })
    }
}

#[test]
fn a_deployments_min_ready_seconds_reaches_its_current_replicaset() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    let manifest = STALLED
        .replace("name: big", "name: mrs")
        .replace("app: big", "app: mrs")
        .replace("replicas: 10", "replicas: 2");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    rollout_status(&s, "deployment/mrs");
    let rs_name = replicasets(&s, "app=mrs")[0].0.clone();
    // The template is unchanged, so the same ReplicaSet stays current and takes the new value.
    s.kubectl_ok(&["patch", "deployment", "mrs", "--type=merge", "-p", r#"{"spec":{"minReadySeconds":500}}"#]);
    wait(&s, "minReadySeconds on the ReplicaSet", || {
        get_json(&s, &["get", "rs", &rs_name])["spec"]["minReadySeconds"] == 500
    });
    assert_eq!(replicasets(&s, "app=mrs").len(), 1);
    // Readiness now has to last 500 s (below the 600 s progress deadline, as validation
    // requires): the pods ready so far and a new one are ready, none is available.
    s.kubectl_ok(&["scale", "deployment", "mrs", "--replicas=3"]);
    wait(&s, "3 ready, 0 available", || {
        let st = &get_json(&s, &["get", "deployment", "mrs"])["status"];
        st["readyReplicas"] == 3 && st["availableReplicas"] == 0
    });
    // Back to 0: it is available at once.
    s.kubectl_ok(&["patch", "deployment", "mrs", "--type=merge", "-p", r#"{"spec":{"minReadySeconds":0}}"#]);
    wait(&s, "3 available", || get_json(&s, &["get", "deployment", "mrs"])["status"]["availableReplicas"] == 3);
    assert_eq!(get_json(&s, &["get", "rs", &rs_name])["spec"]["minReadySeconds"].as_i64().unwrap_or(0), 0);
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    let manifest = STALLED
        .replace("name: big", "name: stuck")
        .replace("app: big", "app: stuck")
        .replace("replicas: 10", "replicas: 2\n  progressDeadlineSeconds: 2")
        .replace("busybox:1.36", "never-ready:1");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    let err = s.kubectl_err(&["rollout", "status", "deployment/stuck", "--timeout=60s"], None);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = get_json(&s, &["get", "deployment", "stuck"]);
    let progressing =
        d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").cloned();
    assert_eq!(progressing.as_ref().map(|c| c["reason"].clone()), Some(json!("ProgressDeadlineExceeded")), "{d}");
    assert_eq!(progressing.map(|c| c["status"].clone()), Some(json!("False")));
    let available = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Available").cloned();
    assert_eq!(available.map(|c| c["reason"].clone()), Some(json!("MinimumReplicasUnavailable")), "{d}");
    assert_eq!(d["status"]["unavailableReplicas"], 2, "{d}");
}

#[test]
fn bad_workloads_are_rejected_with_field_errors() {
    let s = server();
    let mismatched = RS.replace(
        "template:\n    metadata: { labels: { app: web } }",
        "template:\n    metadata: { labels: { app: other } }",
    );
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&mismatched));
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    let deployment = STALLED.replace(
        "template:\n    metadata: { labels: { app: big } }",
        "template:\n    metadata: { labels: { app: x } }",
    );
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&deployment));
    assert!(err.contains("spec.template.metadata.labels"), "{err}");
    // The selector of a Deployment cannot change.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(STALLED));
    let changed = STALLED.replace("app: big", "app: big2");
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&changed));
    assert!(err.contains("spec.selector") && err.contains("immutable"), "{err}");
    // An invalid selector.
    let bad =
        STALLED.replace("selector: { matchLabels: { app: big } }", "selector: { matchLabels: { \"bad key!\": big } }");
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&bad.replace("name: big", "name: big3")));
    assert!(err.contains("spec.selector"), "{err}");
}

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db }
spec:
  replicas: 3
  serviceName: db
  selector: { matchLabels: { app: db } }
  template:
    metadata: { labels: { app: db } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
  volumeClaimTemplates:
  - metadata: { name: data }
    spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }
"#;

fn pod_names(s: &TestServer, sel: &str) -> Vec<String> {
    let mut names: Vec<String> =
        live_pods(s, sel).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn sts_observed(s: &TestServer, name: &str) -> Value {
    let mut out = Value::Null;
    wait(s, "the set observed", || {
        out = get_json(s, &["get", "statefulset", name]);
        out["status"]["observedGeneration"] == out["metadata"]["generation"]
    });
    out
}

#[test]
fn a_statefulset_makes_named_pods_with_claims_in_order() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(STS));
    let out = rollout_status(&s, "statefulset/db");
    assert!(out.contains("roll out complete") || out.contains("rolling update complete"), "{out}");
    assert_eq!(pod_names(&s, "app=db"), ["db-0", "db-1", "db-2"]);
    let p = get_json(&s, &["get", "pod", "db-1"]);
    assert_eq!(p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "db-1");
    assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(p["spec"]["hostname"], "db-1");
    assert_eq!(p["spec"]["subdomain"], "db");
    let volume = p["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "data").cloned().unwrap();
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "data-db-1");
    let set = sts_observed(&s, "db");
    let hash = p["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap();
    assert_eq!(set["status"]["updateRevision"], hash, "{set}");
    assert_eq!(set["status"]["currentRevision"], hash, "{set}");
    assert_eq!(set["status"]["readyReplicas"], 3);
    let claims = s.kubectl_ok(&["get", "pvc", "-o", "name"]);
    for c in ["data-db-0", "data-db-1", "data-db-2"] {
        assert!(claims.contains(c), "{claims}");
    }
    // Scale-down removes the highest ordinals and keeps the claims (Retain).
    s.kubectl_ok(&["scale", "statefulset", "db", "--replicas=1"]);
    wait(&s, "one pod", || pod_names(&s, "app=db") == ["db-0"]);
    let claims = s.kubectl_ok(&["get", "pvc", "-o", "name"]);
    assert!(claims.contains("data-db-2"), "{claims}");
    let describe = s.kubectl_ok(&["describe", "statefulset", "db"]);
    assert!(describe.contains("create Pod db-0 in StatefulSet db successful"), "{describe}");
    assert!(describe.contains("delete Pod db-2 in StatefulSet db successful"), "{describe}");

    // OrderedReady waits for each pod to be ready; Parallel does not.
    for (policy, set, expect) in [
        ("OrderedReady", "ordered", vec!["ordered-0"]),
        ("Parallel", "parallel", vec!["parallel-0", "parallel-1", "parallel-2"]),
    ] {
        let manifest = STS
            .replace("name: db }", &format!("name: {set} }}"))
            .replace("app: db", &format!("app: {set}"))
            .replace("serviceName: db", &format!("serviceName: {set}\n  podManagementPolicy: {policy}"))
            .replace("busybox:1.36", "never-ready:1");
        s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
        let selector = format!("app={set}");
        wait(&s, "the first pods", || pod_names(&s, &selector).len() == expect.len());
        sts_observed(&s, set);
        assert_eq!(pod_names(&s, &selector), expect, "{policy}");
    }

    // Ordinals can start elsewhere.
    let manifest =
        STS.replace("replicas: 3", "replicas: 2\n  ordinals: { start: 5 }").replace("name: db }", "name: five }");
    let manifest = manifest.replace("app: db", "app: five");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    wait(&s, "five-5 and five-6", || pod_names(&s, "app=five") == ["five-5", "five-6"]);
}

/// The claims of `app=keep` and their owners' kinds, by name.
fn claim_owner_kinds(s: &TestServer) -> Vec<(String, Vec<String>)> {
    let list = get_json(s, &["get", "pvc", "-l", "app=keep"]);
    let mut out: Vec<(String, Vec<String>)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
        .map(|c| {
            let kinds = c["metadata"]["ownerReferences"]
                .as_array()
                .map(|o| o.iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (c["metadata"]["name"].as_str().unwrap().to_string(), kinds)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn claim_retention_policies_give_claims_their_owners_and_the_collector_acts_on_them() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    let manifest = STS.replace("name: db }", "name: keep }").replace("app: db", "app: keep").replace(
        "serviceName: db",
        "serviceName: keep\n  persistentVolumeClaimRetentionPolicy: { whenDeleted: Retain, whenScaled: Delete }",
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    wait(&s, "three pods", || pod_names(&s, "app=keep").len() == 3);
    sts_observed(&s, "keep");
    // whenScaled: Delete: a scale-down gives the condemned pods' claims to the pods, and the
    // garbage collector removes them with the pods; the others have no owner.
    s.kubectl_ok(&["scale", "statefulset", "keep", "--replicas=1"]);
    wait(&s, "the scaled-away claims gone", || {
        claim_owner_kinds(&s).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>() == ["data-keep-0"]
    });
    assert_eq!(claim_owner_kinds(&s), [("data-keep-0".to_string(), Vec::<String>::new())]);
    let set_policy = |policy: &str| {
        let patch = format!(r#"{{"spec":{{"persistentVolumeClaimRetentionPolicy":{policy}}}}}"#);
        s.kubectl_ok(&["patch", "statefulset", "keep", "--type=merge", "-p", &patch]);
    };
    // A claim owner of its own is kept while the policy changes to whenDeleted: Delete.
    let keeper = get_json(&s, &["create", "configmap", "keeper"]);
    let foreign =
        json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": keeper["metadata"]["uid"] }]);
    s.kubectl_ok(&[
        "patch",
        "pvc",
        "data-keep-0",
        "--type=merge",
        "-p",
        &json!({"metadata": {"ownerReferences": foreign}}).to_string(),
    ]);
    set_policy(r#"{"whenDeleted":"Delete","whenScaled":"Delete"}"#);
    wait(&s, "the set owning its claim", || {
        claim_owner_kinds(&s) == [("data-keep-0".to_string(), vec!["ConfigMap".to_string(), "StatefulSet".to_string()])]
    });
    // Back to Retain: the set's reference goes, the other owner stays.
    set_policy(r#"{"whenDeleted":"Retain","whenScaled":"Retain"}"#);
    wait(&s, "the set's reference gone", || {
        claim_owner_kinds(&s) == [("data-keep-0".to_string(), vec!["ConfigMap".to_string()])]
    });
    // whenDeleted: Delete again, the foreign owner removed: deleting the set takes the claim.
    set_policy(r#"{"whenDeleted":"Delete"}"#);
    s.kubectl_ok(&[
        "patch",
        "pvc",
        "data-keep-0",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences/0"}]"#,
    ]);
    wait(&s, "the set owning its claim again", || {
        claim_owner_kinds(&s) == [("data-keep-0".to_string(), vec!["StatefulSet".to_string()])]
    });
    s.kubectl_ok(&["delete", "statefulset", "keep"]);
    wait(&s, "the claim deleted with its set", || claim_owner_kinds(&s).is_empty());
}

#[test]
fn statefulset_updates_respect_partitions_and_roll_back() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    let manifest = STS.replace(
        "serviceName: db",
        "serviceName: db\n  updateStrategy: { type: RollingUpdate, rollingUpdate: { partition: 2 } }",
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&manifest));
    rollout_status(&s, "statefulset/db");
    // A pod being replaced is briefly gone: no image then.
    let image = |pod: &str| {
        let out = s.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.containers[0].image}"]);
        if out.status.success() { String::from_utf8_lossy(&out.stdout).into_owned() } else { String::new() }
    };
    s.kubectl_ok(&["set", "image", "statefulset/db", "c=busybox:1.37"]);
    // Only ordinals at or above the partition move to the new revision.
    wait(&s, "db-2 updated", || image("db-2") == "busybox:1.37");
    wait(&s, "status updated 1", || get_json(&s, &["get", "sts", "db"])["status"]["updatedReplicas"] == 1);
    assert_eq!((image("db-0"), image("db-1")), ("busybox:1.36".to_string(), "busybox:1.36".to_string()));
    let set = get_json(&s, &["get", "sts", "db"]);
    assert_ne!(set["status"]["currentRevision"], set["status"]["updateRevision"], "{set}");
    // Partition 0: everything rolls, and the update revision becomes current.
    s.kubectl_ok(&[
        "patch",
        "statefulset",
        "db",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    rollout_status(&s, "statefulset/db");
    wait(&s, "all updated", || ["db-0", "db-1", "db-2"].iter().all(|p| image(p) == "busybox:1.37"));
    wait(&s, "current = update", || {
        let set = get_json(&s, &["get", "sts", "db"]);
        set["status"]["currentRevision"] == set["status"]["updateRevision"] && set["status"]["updatedReplicas"] == 3
    });
    let history = s.kubectl_ok(&["rollout", "history", "statefulset/db"]);
    assert!(history.lines().any(|l| l.starts_with('1')) && history.lines().any(|l| l.starts_with('2')), "{history}");
    s.kubectl_ok(&["rollout", "undo", "statefulset/db"]);
    rollout_status(&s, "statefulset/db");
    wait(&s, "rolled back", || ["db-0", "db-1", "db-2"].iter().all(|p| image(p) == "busybox:1.36"));
    let revisions = get_json(&s, &["get", "controllerrevisions"]);
    let mut numbers: Vec<i64> =
        revisions["items"].as_array().unwrap().iter().map(|r| r["revision"].as_i64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3], "the first revision came back as the third: {revisions}");

    // OnDelete: a new template waits until a pod is deleted.
    s.kubectl_ok(&[
        "patch",
        "statefulset",
        "db",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/updateStrategy","value":{"type":"OnDelete"}}]"#,
    ]);
    s.kubectl_ok(&["set", "image", "statefulset/db", "c=busybox:1.38"]);
    sts_observed(&s, "db");
    assert_eq!(image("db-1"), "busybox:1.36");
    s.kubectl_ok(&["delete", "pod", "db-1", "--wait=false"]);
    wait(&s, "db-1 recreated on the new template", || image("db-1") == "busybox:1.38");
    assert_eq!(image("db-0"), "busybox:1.36");
}

fn node(s: &TestServer, name: &str, labels: Value, taints: Value) {
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": labels }, "spec": { "taints": taints } });
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
}

/// The nodes the pods with `sel` are bound to, sorted.
fn pod_nodes(s: &TestServer, sel: &str) -> Vec<String> {
    let mut nodes: Vec<String> =
        live_pods(s, sel).iter().map(|p| p["spec"]["nodeName"].as_str().unwrap_or("?").to_string()).collect();
    nodes.sort();
    nodes
}

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: agent }
spec:
  selector: { matchLabels: { app: agent } }
  template:
    metadata: { labels: { app: agent } }
    spec: { containers: [{ name: c, image: "busybox:1.36" }] }
"#;

#[test]
fn a_daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    node(&s, "n1", json!({ "disk": "hdd" }), json!([]));
    node(&s, "n2", json!({ "disk": "hdd" }), json!([{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }]));
    node(&s, "n3", json!({ "disk": "ssd" }), json!([]));
    // Taints every DaemonSet tolerates by itself.
    node(
        &s,
        "n4",
        json!({ "disk": "hdd" }),
        json!([{ "key": "node.kubernetes.io/not-ready", "effect": "NoExecute" },
               { "key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule" }]),
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(DS));
    wait(&s, "pods on n1, n3, n4", || pod_nodes(&s, "app=agent") == ["n1", "n3", "n4"]);
    let p = &live_pods(&s, "app=agent")[0];
    let term = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0];
    assert_eq!(term["matchFields"][0]["key"], "metadata.name", "{p}");
    let tolerations = p["spec"]["tolerations"].as_array().unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.iter().any(|t| t["key"] == key), "{key} in {tolerations:?}");
    }
    let out = rollout_status(&s, "daemonset/agent");
    assert!(out.contains("successfully rolled out"), "{out}");
    let ds = get_json(&s, &["get", "ds", "agent"]);
    assert_eq!(ds["status"]["desiredNumberScheduled"], 3, "{ds}");
    assert_eq!(ds["status"]["currentNumberScheduled"], 3);
    assert_eq!(ds["status"]["numberReady"], 3);
    assert_eq!(ds["status"]["numberAvailable"], 3);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 3);
    assert_eq!(ds["status"]["numberMisscheduled"], 0);

    // A toleration for the dedicated taint adds n2; a nodeSelector narrows to n3.
    let tolerant = DS.replace("name: agent }", "name: tolerant }").replace("app: agent", "app: tolerant").replace(
        "spec: { containers",
        "spec: { tolerations: [{ key: dedicated, operator: Equal, value: db, effect: NoSchedule }], containers",
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&tolerant));
    wait(&s, "tolerant on all four", || pod_nodes(&s, "app=tolerant") == ["n1", "n2", "n3", "n4"]);
    let ssd = DS
        .replace("name: agent }", "name: ssd }")
        .replace("app: agent", "app: ssd")
        .replace("spec: { containers", "spec: { nodeSelector: { disk: ssd }, containers");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&ssd));
    wait(&s, "ssd only on n3", || pod_nodes(&s, "app=ssd") == ["n3"]);

    // A new node gets a pod; an untolerated NoExecute taint evicts it; a deleted node's pod goes.
    node(&s, "n5", json!({}), json!([]));
    wait(&s, "a pod on n5", || pod_nodes(&s, "app=agent") == ["n1", "n3", "n4", "n5"]);
    s.kubectl_ok(&["taint", "node", "n5", "evict=yes:NoExecute"]);
    wait(&s, "n5's pod gone", || pod_nodes(&s, "app=agent") == ["n1", "n3", "n4"]);
    s.kubectl_ok(&["delete", "node", "n1"]);
    wait(&s, "n1's pod gone", || pod_nodes(&s, "app=agent") == ["n3", "n4"]);

    // A rolling update replaces every pod; history and undo work.
    s.kubectl_ok(&["set", "image", "daemonset/agent", "c=busybox:1.37"]);
    rollout_status(&s, "daemonset/agent");
    let images = || -> Vec<String> {
        live_pods(&s, "app=agent")
            .iter()
            .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap().to_string())
            .collect()
    };
    wait(&s, "all on 1.37", || images().len() == 2 && images().iter().all(|i| i == "busybox:1.37"));
    let history = s.kubectl_ok(&["rollout", "history", "daemonset/agent"]);
    assert!(history.lines().any(|l| l.starts_with('2')), "{history}");
    s.kubectl_ok(&["rollout", "undo", "daemonset/agent"]);
    wait(&s, "back on 1.36", || images().len() == 2 && images().iter().all(|i| i == "busybox:1.36"));
    rollout_status(&s, "daemonset/agent");
}

#[test]
fn failed_daemon_pods_are_replaced_with_a_back_off() {
    let s = server();
    let _kubelet = Kubelet::start(&s);
    node(&s, "n1", json!({}), json!([]));
    // The image keeps the test kubelet from running it: the test fails its pods instead.
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: crashy }
spec:
  selector: { matchLabels: { app: crashy } }
  template:
    metadata: { labels: { app: crashy } }
    spec: { containers: [{ name: c, image: "example.com/never-ready:1" }] }
"#,
        ),
    );
    let pending = || -> Vec<String> {
        live_pods(&s, "app=crashy")
            .iter()
            .filter(|p| p["status"]["phase"] != "Failed")
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let fail = |name: &str| {
        let mut p = s.http_json("GET", &format!("/api/v1/namespaces/default/pods/{name}"), None).1;
        p["status"]["phase"] = json!("Failed");
        let (code, v) = s.http_json("PUT", &format!("/api/v1/namespaces/default/pods/{name}/status"), Some(&p));
        assert_eq!(code, 200, "{v}");
    };
    // Each failed pod is deleted and replaced; the delays before that grow 1 s, 2 s, 4 s.
    let mut seen = Vec::new();
    for _ in 0..4 {
        wait(&s, "a replacement pod", || pending().iter().any(|p| !seen.contains(p)));
        let name = pending().into_iter().find(|p| !seen.contains(p)).unwrap();
        fail(&name);
        seen.push(name);
    }
    // The fifth failure waits 8 s: the failed pod stays meanwhile, with no second pod beside it.
    wait(&s, "a fifth pod", || pending().iter().any(|p| !seen.contains(p)));
    let last = pending().into_iter().find(|p| !seen.contains(p)).unwrap();
    fail(&last);
    std::thread::sleep(Duration::from_secs(2));
    let names: Vec<String> =
        live_pods(&s, "app=crashy").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, std::slice::from_ref(&last), "the failed pod is kept during its back-off");
    wait(&s, "the fifth replacement", || pending().iter().any(|p| *p != last && !seen.contains(p)));
    let events = s.kubectl_ok(&["get", "events", "--field-selector", "reason=FailedDaemonPod", "-o", "name"]);
    assert!(!events.trim().is_empty(), "no FailedDaemonPod event");
    let described = s.kubectl_ok(&["describe", "daemonset", "crashy"]);
    assert!(described.contains("Found failed daemon pod default/"), "{described}");
}
