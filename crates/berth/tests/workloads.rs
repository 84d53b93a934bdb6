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
        let url = s.url.clone();
        rt.spawn(async move {
            let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
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
