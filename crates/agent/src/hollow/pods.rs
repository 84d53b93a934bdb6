//! The pod lifecycle on hollow nodes, from one watch of bound pods for all nodes:
//! a pod bound to one of ours is reported Running after the start delay (with an address
//! from its node's range), run-to-completion pods are reported Succeeded after the run
//! duration, and a deleted pod is removed after its grace period (capped for hollow
//! containers), with `gracePeriodSeconds=0` and a uid precondition as the kubelet does.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::pod_status::{self, Placement};
use super::{Shared, is_code, with_retries};

/// Where a tracked pod is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the start delay, or its Running status being written.
    Starting,
    /// Reported Running.
    Running,
    /// Succeeded or Failed.
    Done,
    /// Deleted: waiting for the grace period.
    Deleting,
}

/// One pod bound to a hollow node.
#[derive(Debug)]
struct Tracked {
    node: usize,
    stage: Stage,
    /// The address allocated from the node's range (not for hostNetwork pods).
    ip: Option<Ipv4Addr>,
    /// The task playing the pod's next step.
    task: Option<AbortHandle>,
    /// When the pod is to be removed, once deleted.
    delete_at: Option<Instant>,
}

/// The pods bound to this process's nodes, by uid.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pods: Mutex<HashMap<String, Tracked>>,
}

impl Tracker {
    /// Aborts every pod task (on stop).
    pub(crate) fn abort_all(&self) {
        for t in self.pods.lock().expect("tracker lock").values_mut() {
            if let Some(task) = t.task.take() {
                task.abort();
            }
        }
    }
}

/// Watches the bound pods and plays the lifecycle of those on our nodes.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    // One node: let the server filter exactly; more: all bound pods, filtered here.
    let selector = match shared.nodes.as_slice() {
        [only] => format!("spec.nodeName={}", only.name),
        _ => "spec.nodeName!=".to_string(),
    };
    let mut events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => observe(&shared, pod),
            Ok(watcher::Event::Delete(pod)) => forget(&shared, pod.metadata.uid.as_deref().unwrap_or("")),
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                observe(&shared, pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods gone while the watch was down were deleted.
                if let Some(seen) = relisted.take() {
                    let gone: Vec<String> = {
                        let pods = shared.pods.pods.lock().expect("tracker lock");
                        pods.keys().filter(|uid| !seen.contains(*uid)).cloned().collect()
                    };
                    for uid in gone {
                        forget(&shared, &uid);
                    }
                }
            }
            Err(e) => tracing::warn!(%e, "watching pods"),
        }
    }
}

/// Acts on the latest version of a pod: start it, adopt it after a restart, or schedule
/// its removal once deleted.
fn observe(shared: &Arc<Shared>, pod: Pod) {
    let Some(node) =
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| shared.by_name.get(n)).copied()
    else {
        return;
    };
    let Some(uid) = pod.metadata.uid.clone() else { return };
    let mut pods = shared.pods.pods.lock().expect("tracker lock");
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
        let at = Instant::now() + Duration::from_secs(grace).min(shared.config.max_termination_grace);
        let t = pods.entry(uid).or_insert_with(|| Tracked::new(node, Stage::Deleting));
        if t.delete_at.is_some_and(|d| d <= at) {
            return; // already due no later
        }
        if let Some(task) = t.task.take() {
            task.abort();
        }
        t.stage = Stage::Deleting;
        t.delete_at = Some(at);
        t.task = Some(tokio::spawn(remove(shared.clone(), pod, at)).abort_handle());
        return;
    }
    if let Some(t) = pods.get(&uid) {
        // In hand (our own status writes come back here); readiness gates may flip Ready.
        if t.stage == Stage::Running
            && let Some(conditions) = pod_status::ready_from_gates(&pod, Timestamp::now())
        {
            let shared = shared.clone();
            tokio::spawn(async move {
                let status =
                    k8s_openapi::api::core::v1::PodStatus { conditions: Some(conditions), ..Default::default() };
                patch_status(&shared, &pod, &status).await;
            });
        }
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match phase {
        "Succeeded" | "Failed" => {
            pods.insert(uid, Tracked::new(node, Stage::Done));
        }
        "Running" => {
            // Started by an earlier run of this agent: keep its address, finish it if it completes.
            let mut t = Tracked::new(node, Stage::Running);
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
            if let Some(ip) = ip.filter(|ip| *ip != shared.nodes[node].ip) {
                shared.nodes[node].pods.lock().expect("pods lock").reserve(ip);
                t.ip = Some(ip);
            }
            if pod_status::runs_to_completion(&pod) {
                t.task = Some(tokio::spawn(complete(shared.clone(), pod, uid.clone())).abort_handle());
            }
            pods.insert(uid, t);
        }
        _ => {
            let mut t = Tracked::new(node, Stage::Starting);
            t.task = Some(tokio::spawn(start(shared.clone(), pod, uid.clone())).abort_handle());
            pods.insert(uid, t);
        }
    }
}

impl Tracked {
    fn new(node: usize, stage: Stage) -> Tracked {
        Tracked { node, stage, ip: None, task: None, delete_at: None }
    }
}

/// Drops a pod that is gone from the API: aborts its task, frees its address.
fn forget(shared: &Shared, uid: &str) {
    let removed = shared.pods.pods.lock().expect("tracker lock").remove(uid);
    if let Some(mut t) = removed {
        if let Some(task) = t.task.take() {
            task.abort();
        }
        release_ip(shared, &mut t);
    }
}

fn release_ip(shared: &Shared, t: &mut Tracked) {
    if let Some(ip) = t.ip.take() {
        shared.nodes[t.node].pods.lock().expect("pods lock").release(ip);
    }
}

/// Sets the stage of a tracked pod (if it is still tracked and not being deleted).
fn set_stage(shared: &Shared, uid: &str, stage: Stage) {
    let mut pods = shared.pods.pods.lock().expect("tracker lock");
    if let Some(t) = pods.get_mut(uid).filter(|t| t.stage != Stage::Deleting) {
        t.stage = stage;
        if stage == Stage::Done {
            release_ip(shared, t);
        }
    }
}

/// The pod's addresses: its node's, and its own (allocated now unless it has one).
fn placement(shared: &Shared, pod: &Pod, uid: &str) -> Option<(String, String)> {
    let mut pods = shared.pods.pods.lock().expect("tracker lock");
    let t = pods.get_mut(uid)?;
    let node = &shared.nodes[t.node];
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let pod_ip = if host_network {
        node.ip
    } else if let Some(ip) = t.ip {
        ip
    } else {
        let ip = node.pods.lock().expect("pods lock").allocate()?;
        t.ip = Some(ip);
        ip
    };
    Some((node.ip.to_string(), pod_ip.to_string()))
}

/// Writes a pod's status with a merge patch.
async fn patch_status(shared: &Shared, pod: &Pod, status: &k8s_openapi::api::core::v1::PodStatus) -> bool {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
        return false;
    };
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let patch = json!({ "status": status });
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    let _permit = shared.writes.acquire().await.expect("semaphore open");
    match with_retries("pod status", || api.patch_status(name, &params, &patch)).await {
        Ok(_) => true,
        Err(e) if is_code(&e, 404) => false,
        Err(e) => {
            tracing::warn!(pod = name, namespace = ns, %e, "writing pod status");
            false
        }
    }
}

/// After the start delay: Running; then, for run-to-completion pods, Succeeded after the
/// run duration.
async fn start(shared: Arc<Shared>, mut pod: Pod, uid: String) {
    tokio::time::sleep(shared.config.pod_start_delay).await;
    let Some((host_ip, pod_ip)) = placement(&shared, &pod, &uid) else {
        tracing::warn!(pod = pod.metadata.name, "no free pod address on its node; left Pending");
        return;
    };
    let status = pod_status::running_status(&pod, Placement { host_ip: &host_ip, pod_ip: &pod_ip }, Timestamp::now());
    if !patch_status(&shared, &pod, &status).await {
        return;
    }
    set_stage(&shared, &uid, Stage::Running);
    if pod_status::runs_to_completion(&pod) {
        pod.status = Some(status);
        complete(shared, pod, uid).await;
    }
}

/// After the run duration: Succeeded.
async fn complete(shared: Arc<Shared>, pod: Pod, uid: String) {
    tokio::time::sleep(shared.config.pod_run_duration).await;
    let status = pod.status.clone().unwrap_or_default();
    let host_ip = status.host_ip.clone().unwrap_or_default();
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    let done = pod_status::completed_status(&pod, Placement { host_ip: &host_ip, pod_ip: &pod_ip }, Timestamp::now());
    if patch_status(&shared, &pod, &done).await {
        set_stage(&shared, &uid, Stage::Done);
    }
}

/// At `at` (the end of the grace period): containers terminated, then the pod removed with
/// `gracePeriodSeconds=0` and a uid precondition, so that a new pod of the same name is safe.
async fn remove(shared: Arc<Shared>, pod: Pod, at: Instant) {
    tokio::time::sleep_until(at).await;
    let (Some(ns), Some(name), Some(uid)) =
        (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref(), pod.metadata.uid.clone())
    else {
        return;
    };
    let status = pod.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some("Running") {
        let host_ip = status.host_ip.clone().unwrap_or_default();
        let pod_ip = status.pod_ip.clone().unwrap_or_default();
        let stopped =
            pod_status::completed_status(&pod, Placement { host_ip: &host_ip, pod_ip: &pod_ip }, Timestamp::now());
        patch_status(&shared, &pod, &stopped).await;
    }
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
        ..DeleteParams::default()
    };
    let _permit = shared.writes.acquire().await.expect("semaphore open");
    match with_retries("delete pod", || api.delete(name, &params)).await {
        Ok(_) => {}
        // Gone already, or replaced by a new pod of the same name.
        Err(e) if is_code(&e, 404) || is_code(&e, 409) => {}
        Err(e) => tracing::warn!(pod = name, namespace = ns, %e, "removing a deleted pod"),
    }
}
