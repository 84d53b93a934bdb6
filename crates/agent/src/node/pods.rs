//! The pods bound to this node: one watch (field selector `spec.nodeName`), one worker task
//! per pod. A worker runs the pod's sandbox, then its init containers in order, then its
//! containers, restarts them per restartPolicy with back-off, writes the status back, and on
//! deletion stops the containers within the grace period, removes the sandbox and deletes
//! the pod object (grace 0, uid precondition).
//!
//! A worker looks at its pod when the pod object changes, when the node's relist saw its
//! containers change state ([`super::relist`]), when the eviction manager picks it, and
//! otherwise every second while something is under way (starting, backing off, probing)
//! or every [`STEADY_RESYNC`] once its containers all run.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, EphemeralContainer, HostIP, Node, Pod, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::hooks::{self, Hook};
use super::probes::{self, ProbeState, Verdict};
use super::sources::Sources;
use super::status::{self, Observed};
use super::{Shared, admission, containers, dns, register, shutdown, static_pods, termination, volumes};
use crate::runtime::cri::v1 as cri;

/// A pod worker: its inbox (the latest object; None once gone from the API), its task, and
/// where a node shutdown is asked of it (taken once asked).
struct Worker {
    pod: watch::Sender<Option<Pod>>,
    task: AbortHandle,
    shutdown: Option<oneshot::Sender<ShutDown>>,
    /// The node's admission verdict on the pod.
    admission: Admission,
}

/// A node shutdown asked of a pod worker: stop the pod within `grace` seconds, then say so.
struct ShutDown {
    grace: i64,
    done: oneshot::Sender<()>,
}

/// The worker of each pod in hand, by uid, and whether every source of pods (the API
/// server's pods of this node, the static pod manifests) was read once: until then a
/// sandbox without a worker may still be claimed by a pod not yet seen.
#[derive(Clone, Default)]
pub(crate) struct Workers {
    map: Arc<Mutex<HashMap<String, Worker>>>,
    api_listed: Arc<AtomicBool>,
    static_read: Arc<AtomicBool>,
}

impl Workers {
    /// Aborts every worker (the agent stops; sandboxes are removed by the caller).
    pub(crate) fn abort_all(&self) {
        for (_, worker) in self.map.lock().expect("workers lock").drain() {
            worker.task.abort();
        }
    }

    /// The pods of this node in the API server were listed (each has its worker).
    pub(crate) fn mark_api_listed(&self) {
        self.api_listed.store(true, Ordering::Release);
    }

    /// The static pod manifests were read (each has its worker), or there are none.
    pub(crate) fn mark_static_read(&self) {
        self.static_read.store(true, Ordering::Release);
    }

    /// Whether every source of pods was read once (the kubelet's `sourcesReady`).
    fn sources_ready(&self) -> bool {
        self.api_listed.load(Ordering::Acquire) && self.static_read.load(Ordering::Acquire)
    }

    /// Whether pod `uid` has a worker.
    fn has(&self, uid: &str) -> bool {
        self.map.lock().expect("workers lock").contains_key(uid)
    }

    fn send(&self, shared: &Arc<Shared>, uid: String, pod: Option<Pod>) {
        let mut map = self.map.lock().expect("workers lock");
        if let Some(worker) = map.get(&uid) {
            worker.pod.send_replace(pod);
            return;
        }
        if pod.is_none() {
            return;
        }
        let (tx, rx) = watch::channel(pod);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let task = tokio::spawn(run(shared.clone(), uid.clone(), rx, shutdown_rx, self.clone()));
        map.insert(
            uid,
            Worker { pod: tx, task: task.abort_handle(), shutdown: Some(shutdown_tx), admission: Admission::Undecided },
        );
    }

    /// Asks the workers of the pods of `phase` (critical or not) to stop them for a node
    /// shutdown, each with its grace period ([`shutdown::grace`]); each receiver completes
    /// once its pod is stopped (or its worker ended).
    pub(crate) fn shut_down(&self, phase: shutdown::Phase) -> Vec<oneshot::Receiver<()>> {
        let mut map = self.map.lock().expect("workers lock");
        let mut done = Vec::new();
        for worker in map.values_mut() {
            let Some(pod) = worker.pod.borrow().clone() else { continue };
            if shutdown::is_critical(&pod) != phase.critical {
                continue;
            }
            let Some(ask) = worker.shutdown.take() else { continue };
            let (done_tx, done_rx) = oneshot::channel();
            if ask.send(ShutDown { grace: shutdown::grace(&pod, phase.budget_secs), done: done_tx }).is_ok() {
                done.push(done_rx);
            }
        }
        done
    }

    /// Hands pod `uid` (None: gone) to its worker, starting one if needed (static pods).
    pub(crate) fn send_pod(&self, shared: &Arc<Shared>, uid: String, pod: Option<Pod>) {
        self.send(shared, uid, pod);
    }

    fn remove(&self, uid: &str) {
        self.map.lock().expect("workers lock").remove(uid);
    }

    /// The kubelet's admission of `pod` (uid `uid`), first seen Pending, on `node`: the
    /// predicates of [`admission::admit`] against the pods this node admitted before it and
    /// that are not finished, in the order their workers asked. A pod asking for a host port
    /// that an older pod of this node still holds (not finished; deleting ones hold theirs
    /// until they are gone) is refused too even when that one is not admitted yet: of two
    /// conflicting pods the older one runs whichever worker looks first (older means created
    /// earlier, then the smaller uid). The verdict is recorded: an admitted pod counts
    /// against the later ones, a rejected one never does.
    fn admit(&self, uid: &str, pod: &Pod, node: &Node) -> Result<(), admission::Rejection> {
        let age = |p: &Pod| (p.metadata.creation_timestamp.clone().map(|t| t.0), p.metadata.uid.clone());
        let finished =
            |p: &Pod| matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let mut map = self.map.lock().expect("workers lock");
        let verdict = {
            let others: Vec<(Admission, Pod)> = map
                .iter()
                .filter(|(other, _)| other.as_str() != uid)
                .filter_map(|(_, w)| w.pod.borrow().clone().map(|p| (w.admission, p)))
                .filter(|(_, p)| !finished(p))
                .collect();
            let admitted: Vec<&Pod> =
                others.iter().filter(|(a, _)| *a == Admission::Admitted).map(|(_, p)| p).collect();
            let wanted = admission::host_ports(pod);
            let mine = age(pod);
            let older_holds_port = others.iter().any(|(a, other)| {
                *a != Admission::Rejected
                    && age(other) < mine
                    && admission::host_ports(other).iter().any(|h| wanted.iter().any(|w| w.conflicts(h)))
            });
            if older_holds_port {
                Err(admission::Rejection {
                    reason: admission::NODE_PORTS_REASON.into(),
                    message: admission::node_ports_message(),
                })
            } else {
                admission::admit(pod, node, &admitted, static_pods::is_static(pod))
            }
        };
        if let Some(worker) = map.get_mut(uid) {
            worker.admission = if verdict.is_ok() { Admission::Admitted } else { Admission::Rejected };
        }
        verdict
    }

    /// Pod `uid` was running before this agent saw it (adopted): it counts as admitted.
    fn mark_admitted(&self, uid: &str) {
        if let Some(worker) = self.map.lock().expect("workers lock").get_mut(uid) {
            worker.admission = Admission::Admitted;
        }
    }
}

/// The node's admission verdict on a pod, recorded in its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Admission {
    /// Not looked at yet.
    #[default]
    Undecided,
    /// Admitted (or found running): its requests and ports count against later pods.
    Admitted,
    /// Refused: it never runs.
    Rejected,
}

/// The Node this agent runs, as the kubelet's getNodeAnyWay: from the API server, else as
/// this agent registers it (labels, taints, allocatable).
async fn current_node(shared: &Shared) -> Node {
    let api: Api<Node> = Api::all(shared.client.clone());
    match api.get(&shared.config.node_name).await {
        Ok(node) => node,
        Err(e) => {
            tracing::warn!(%e, "reading this node for admission; using its local settings");
            let mut node = register::node_object(shared);
            node["status"] = register::node_status(shared, shared.started, Timestamp::now());
            serde_json::from_value(node).unwrap_or_default()
        }
    }
}

/// Fails a pod the node cannot admit, as the kubelet's rejectPod: a Warning event with the
/// predicate's message, phase Failed with its reason and "Pod was rejected: <message>".
/// Its containers never start.
async fn reject(shared: &Shared, pod: &Pod, rejection: admission::Rejection) {
    let admission::Rejection { reason, message } = rejection;
    let reason = reason.as_str();
    tracing::info!(pod = pod_name(pod), reason, message, "rejecting the pod");
    shared.events.warning(pod, reason, message.clone()).await;
    let body =
        json!({ "status": { "phase": "Failed", "reason": reason, "message": format!("Pod was rejected: {message}") } });
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let name = pod.metadata.name.clone().unwrap_or_default();
    if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await {
        tracing::warn!(pod = pod_name(pod), %e, "writing the status of a rejected pod");
    }
}

/// Watches the pods bound to this node and hands each to its worker.
pub(crate) async fn watch(shared: Arc<Shared>, workers: Workers) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.config.node_name);
    let mut events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            // Mirror pods only show static pods, which run from their manifests.
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) | watcher::Event::Delete(pod))
                if is_mirror(&pod) => {}
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    workers.send(&shared, uid, Some(pod));
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    workers.send(&shared, uid, None);
                }
            }
            Ok(watcher::Event::InitDone) => workers.mark_api_listed(),
            Ok(_) => {}
            Err(e) => tracing::warn!(%e, "watching pods"),
        }
    }
}

/// Stops and removes the sandboxes of this node (from `sandboxes`, a recent list) whose pod
/// has no worker once every source of pods was read: pods deleted or static pod manifests
/// removed while no agent ran (`--keep-pods`), as the kubelet's housekeeping kills the
/// running pods it was not asked for. Their volume directories go with them.
pub(crate) async fn remove_orphans(shared: &Shared, workers: &Workers, sandboxes: &[cri::PodSandbox]) {
    if !workers.sources_ready() {
        return;
    }
    for s in sandboxes {
        if s.labels.get(containers::NODE_LABEL) != Some(&shared.config.node_name) {
            continue;
        }
        let Some(uid) = s.labels.get("io.kubernetes.pod.uid").filter(|u| !u.is_empty()) else { continue };
        if workers.has(uid) {
            continue;
        }
        let name = s.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default();
        tracing::info!(pod = name, uid, sandbox = s.id, "removing a sandbox no pod claims");
        if let Err(e) = shared.cri.stop_pod_sandbox(&s.id).await {
            tracing::warn!(%e, sandbox = s.id, "stopping an orphaned sandbox");
            continue;
        }
        if let Err(e) = shared.cri.remove_pod_sandbox(&s.id).await {
            tracing::warn!(%e, sandbox = s.id, "removing an orphaned sandbox");
        }
        // A worker that started meanwhile owns the directory.
        if !workers.has(uid) {
            let dir = shared.config.data_dir.join("pods").join(uid);
            volumes::unmount_all(&dir).await;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(super::static_pods::MIRROR_ANNOTATION))
}

/// One container's record in its pod's worker.
#[derive(Default)]
struct Record {
    /// The current CRI container.
    id: Option<String>,
    /// Its latest CRI status.
    cri: Option<cri::ContainerStatus>,
    restart_count: i32,
    /// Restarts since its back-off last started over (see [`status::restart_delay`]).
    backoffs: u32,
    last_state: Option<ContainerStateTerminated>,
    /// When the next restart may happen (set while backing off).
    restart_at: Option<Instant>,
    /// Why it is not running (image, config, back-off).
    waiting: Option<(String, String)>,
    /// An init container that exited 0.
    done: bool,
    /// Image pulls tried (the second failure on is ImagePullBackOff).
    pull_failures: u32,
    /// This run's startup, liveness and readiness probes.
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
    /// An ephemeral container's target: the CRI id of the container whose PID namespace it
    /// joins (CRI NamespaceMode TARGET, as the kubelet's `targetContainerName`).
    pid_target: Option<String>,
    /// An ephemeral container: created at most once (the kubelet never restarts one).
    ephemeral: bool,
}

impl Record {
    /// Running and, with a readiness probe, passing it.
    fn ready(&self) -> bool {
        let running = self.waiting.is_none()
            && self.cri.as_ref().is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32);
        running && self.started() && self.readiness.as_ref().is_none_or(|r| r.verdict == Verdict::Success)
    }

    /// Past its startup probe (or without one).
    fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|r| r.verdict == Verdict::Success)
    }
}

/// Runs the container's due probes; a failed liveness probe stops the container (it is then
/// restarted per the restart policy). Each failure is a Warning `Unhealthy` event, as the
/// kubelet records it.
async fn probe(shared: &Shared, pod: &Pod, pod_ip: Option<&str>, c: &Container, rec: &mut Record) {
    let Some(id) = rec.id.clone() else { return };
    let now = Instant::now();
    // Until the startup probe succeeds, the other probes wait; its failure restarts.
    if let (Some(p), Some(state)) = (&c.startup_probe, rec.startup.as_mut())
        && state.verdict != Verdict::Success
    {
        if state.due(p, now) {
            let result = probes::run(&shared.cri, &id, pod_ip, c, p).await;
            let verdict = state.record(p, result.is_ok(), Instant::now());
            unhealthy(shared, pod, "Startup", result).await;
            if verdict == Verdict::Failure {
                tracing::info!(
                    pod = pod_name(pod),
                    container = c.name,
                    "startup probe failed: restarting the container"
                );
                let why = probe_kill_message(pod, c, "startup");
                kill_because(shared, pod, pod_ip, c, &id, probe_grace(pod, p), why).await;
                rec.startup = None;
            }
        }
        if rec.startup.as_ref().is_none_or(|s| s.verdict != Verdict::Success) {
            return;
        }
        // Started: the other probes count from now.
        rec.liveness = c.liveness_probe.as_ref().map(|_| ProbeState::new(Instant::now()));
        rec.readiness = c.readiness_probe.as_ref().map(|_| ProbeState::new(Instant::now()));
    }
    if let (Some(p), Some(state)) = (&c.readiness_probe, rec.readiness.as_mut())
        && state.due(p, now)
    {
        let result = probes::run(&shared.cri, &id, pod_ip, c, p).await;
        state.record(p, result.is_ok(), Instant::now());
        unhealthy(shared, pod, "Readiness", result).await;
    }
    if let (Some(p), Some(state)) = (&c.liveness_probe, rec.liveness.as_mut())
        && state.due(p, now)
    {
        let result = probes::run(&shared.cri, &id, pod_ip, c, p).await;
        let verdict = state.record(p, result.is_ok(), Instant::now());
        unhealthy(shared, pod, "Liveness", result).await;
        if verdict == Verdict::Failure {
            tracing::info!(pod = pod_name(pod), container = c.name, "liveness probe failed: restarting the container");
            let why = probe_kill_message(pod, c, "liveness");
            kill_because(shared, pod, pod_ip, c, &id, probe_grace(pod, p), why).await;
            rec.liveness = None;
        }
    }
}

/// The Warning `Unhealthy` event of a failed probe: `<Kind> probe failed: <output>`.
async fn unhealthy(shared: &Shared, pod: &Pod, kind: &str, result: Result<(), String>) {
    if let Err(output) = result {
        shared.events.warning(pod, "Unhealthy", format!("{kind} probe failed: {output}")).await;
    }
}

/// The kubelet's Killing message for a container that failed its `kind` probe.
fn probe_kill_message(pod: &Pod, c: &Container, kind: &str) -> String {
    let never = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let restarted = if never { "" } else { ", will be restarted" };
    format!("Container {} failed {kind} probe{restarted}", c.name)
}

/// The grace period of a container that failed its liveness or startup probe.
fn probe_grace(pod: &Pod, p: &k8s_openapi::api::core::v1::Probe) -> i64 {
    p.termination_grace_period_seconds.unwrap_or_else(|| pod_grace(pod))
}

/// The pod's terminationGracePeriodSeconds (default 30).
fn pod_grace(pod: &Pod) -> i64 {
    pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0)
}

/// The pod as the kubelet names it in messages: `name_namespace(uid)`.
fn kubelet_pod_name(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    )
}

/// Stops a container as the kubelet kills one: its preStop hook first (when it has one, is
/// running and there is a grace period), within `grace` seconds; then SIGTERM, and SIGKILL
/// after what is left of the grace period (at least 2 s after a hook).
async fn kill(shared: &Shared, pod: &Pod, pod_ip: Option<&str>, c: &Container, id: &str, grace: i64) {
    kill_because(shared, pod, pod_ip, c, id, grace, format!("Stopping container {}", c.name)).await;
}

/// [`kill`] with the message of its Normal `Killing` event.
async fn kill_because(
    shared: &Shared,
    pod: &Pod,
    pod_ip: Option<&str>,
    c: &Container,
    id: &str,
    grace: i64,
    message: String,
) {
    let mut grace = grace.max(0);
    shared.events.normal(pod, "Killing", message).await;
    let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
    if let Some(handler) = pre_stop.filter(|_| grace > 0) {
        let running = matches!(
            shared.cri.container_status(id).await,
            Ok(Some(s)) if s.state == cri::ContainerState::ContainerRunning as i32
        );
        if running {
            let started = Instant::now();
            let name = kubelet_pod_name(pod);
            let target = hooks::Target { pod: &name, pod_ip, container: c, container_id: id };
            let timeout = Duration::from_secs(grace as u64);
            if let Err(message) = hooks::run(&shared.cri, &target, handler, timeout).await {
                tracing::info!(pod = pod_name(pod), container = c.name, %message, "preStop hook failed");
                shared.events.warning(pod, Hook::PreStop.failed_reason(), message).await;
            }
            grace = hooks::remaining_grace(grace, started.elapsed());
        }
    }
    if let Err(e) = shared.cri.stop_container(id, grace).await {
        tracing::warn!(pod = pod_name(pod), container = c.name, %e, "stopping a container");
    }
}

/// Milestones of a pod's start in ms after its worker first saw it, logged at debug level
/// (`pod started`) once the pod is posted Running; `berth bench pods` reads them.
struct StartTrace {
    seen: Instant,
    /// The wall-clock time it was seen (to set against the pod's creation elsewhere).
    seen_unix_ms: i64,
    /// Waiting for a pod start permit.
    queued_ms: u128,
    sandbox_ms: u128,
    volumes_ms: u128,
    started_ms: u128,
}

impl StartTrace {
    fn new() -> StartTrace {
        let seen_unix_ms = Timestamp::now().as_millisecond();
        StartTrace { seen: Instant::now(), seen_unix_ms, queued_ms: 0, sandbox_ms: 0, volumes_ms: 0, started_ms: 0 }
    }

    fn ms(&self) -> u128 {
        self.seen.elapsed().as_millis()
    }
}

#[derive(Default)]
struct PodState {
    sandbox: Option<(String, cri::PodSandboxConfig)>,
    /// The sandbox was stopped: the pod finished (Succeeded or Failed).
    sandbox_stopped: bool,
    pod_ip: Option<String>,
    init: Vec<Record>,
    containers: Vec<Record>,
    /// The ephemeral containers', in spec order (the list only grows).
    ephemeral: Vec<Record>,
    init_failed: bool,
    start_time: Option<Time>,
    last_posted: Option<serde_json::Value>,
    /// The pod's volumes on this node, once made.
    volumes: Option<HashMap<String, PathBuf>>,
    /// The pod's uid (its volume directory's name).
    uid: String,
    /// Tokens and refresh times of the pod's volumes.
    volume_state: volumes::VolumeState,
    /// The start-up milestones, until the pod is posted Running.
    trace: Option<StartTrace>,
    /// The FailedMount events' messages and when each was last recorded.
    mount_events: HashMap<String, Instant>,
    /// Since when the pod's volumes wait to be set up.
    mount_waiting_since: Option<Instant>,
    /// Why the pod was evicted (its containers are stopped and it stays Failed).
    evicted: Option<String>,
    /// The node's admission checks ran (when the worker first saw the pod).
    admission_done: bool,
    /// The node refused the pod (a host port taken): it stays Failed, nothing runs.
    rejected: bool,
    /// When emptyDir usage was last measured against the sizeLimits.
    usage_checked: Option<Instant>,
    /// A static pod's mirror pod the status was posted to (a new one gets it again).
    mirror_uid: Option<String>,
    /// Stopped by a node shutdown ([`shutdown`]): the status says so.
    shut_down: bool,
}

/// How often a pod's emptyDir usage is measured (the kubelet's eviction manager: 10 s).
const USAGE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often a volume that still cannot be mounted is reported again.
const MOUNT_EVENT_EVERY: Duration = Duration::from_secs(60);

/// How long a pod waits for its volumes before the summary event (the kubelet's
/// podAttachAndMountTimeout, 2 min 3 s).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(123);

/// How often a pod whose containers all run (no probes, nothing under way) is looked at
/// when nothing wakes it: its volumes' contents follow their sources at this pace.
const STEADY_RESYNC: Duration = volumes::RESYNC;

async fn run(
    shared: Arc<Shared>,
    uid: String,
    mut rx: watch::Receiver<Option<Pod>>,
    mut shutdown_rx: oneshot::Receiver<ShutDown>,
    workers: Workers,
) {
    let mut state = PodState { uid: uid.clone(), trace: Some(StartTrace::new()), ..PodState::default() };
    let wake = shared.pod_wakers.register(&uid);
    // Whether a node shutdown may still be asked (the asking end is there).
    let mut may_shut_down = true;
    loop {
        let pod = rx.borrow_and_update().clone();
        match pod {
            None => {
                teardown(&shared, &mut state, 0).await;
                break;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                terminate(&shared, &pod, &mut state).await;
                break;
            }
            // Admitted (or not) once, when first seen, as the kubelet does; a pod already
            // running (adopted after a restart) or finished keeps its state.
            Some(pod) if !state.admission_done => {
                state.admission_done = true;
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
                if phase != "Pending" {
                    workers.mark_admitted(&uid);
                } else {
                    let node = current_node(&shared).await;
                    if let Err(rejection) = workers.admit(&uid, &pod, &node) {
                        reject(&shared, &pod, rejection).await;
                        state.rejected = true;
                    }
                }
            }
            // Rejected: nothing runs; the worker waits for the pod's deletion.
            Some(_) if state.rejected => {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            Some(pod) => {
                let wait = sync(&shared, &pod, &mut state).await;
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    asked = &mut shutdown_rx, if may_shut_down => match asked {
                        Ok(ask) => {
                            let pod = rx.borrow().clone().unwrap_or(pod);
                            shut_down(&shared, &pod, &mut state, ask.grace).await;
                            let _ = ask.done.send(());
                            break;
                        }
                        Err(_) => may_shut_down = false,
                    },
                }
            }
        }
    }
    shared.pod_wakers.unregister(&uid);
    workers.remove(&uid);
}

fn pod_name(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

/// One pass over the pod: sandbox, init containers, containers, status. Returns when to look again.
/// Writes the pod's volumes (or refreshes the contents that follow their sources).
async fn prepare_volumes(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
) -> Result<std::collections::HashMap<String, std::path::PathBuf>, volumes::MountFailure> {
    let Shared { client, sources, config, node_ip, .. } = shared;
    volumes::prepare(client, sources, &config.data_dir, pod, *node_ip, &mut state.volume_state).await
}

async fn sync(shared: &Shared, pod: &Pod, state: &mut PodState) -> Duration {
    let spec = pod.spec.clone().unwrap_or_default();
    if state.evicted.is_some() {
        post_status(shared, pod, state, &spec, true, &[], "Failed").await;
        return Duration::from_secs(60);
    }
    let mirror_uid = pod.metadata.annotations.as_ref().and_then(|a| a.get(super::static_pods::MIRROR_UID_ANNOTATION));
    if mirror_uid.is_some() && mirror_uid != state.mirror_uid.as_ref() {
        state.mirror_uid = mirror_uid.cloned();
        state.last_posted = None;
    }
    // Picked by the eviction manager (node-pressure eviction).
    if let Some(message) = shared.eviction.take(&state.uid) {
        evict(shared, pod, state, &spec, message).await;
        return Duration::from_secs(60);
    }
    let phase_now = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if state.sandbox.is_none() && (phase_now == "Succeeded" || phase_now == "Failed") {
        return Duration::from_secs(60); // finished before we saw it: nothing to run
    }
    state.start_time.get_or_insert_with(|| {
        pod.status.as_ref().and_then(|s| s.start_time.clone()).unwrap_or(Time(Timestamp::now()))
    });
    state.init.resize_with(spec.init_containers.as_ref().map_or(0, Vec::len), Record::default);
    state.containers.resize_with(spec.containers.len(), Record::default);
    state.ephemeral.resize_with(spec.ephemeral_containers.as_ref().map_or(0, Vec::len), Record::default);
    // A new pod waits for a start permit, held for this pass (sandbox, volumes, first containers).
    let _permit = match state.sandbox {
        None => shared.pod_starts.acquire().await.ok(),
        Some(_) => None,
    };
    if let Some(t) = state.trace.as_mut().filter(|t| t.queued_ms == 0) {
        t.queued_ms = t.ms().max(1);
    }
    if state.sandbox.is_none() {
        adopt(shared, pod, &spec, state).await;
    }
    if state.sandbox.is_none() {
        let config = sandbox_config(shared, pod, true).await;
        match shared.cri.run_pod_sandbox(config.clone()).await {
            Ok(id) => {
                let ip = shared
                    .cri
                    .pod_sandbox_status(&id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .filter(|ip| !ip.is_empty());
                state.pod_ip = ip.or_else(|| host_network_ip(shared, &spec));
                state.sandbox = Some((id, config));
                if let Some(t) = state.trace.as_mut() {
                    t.sandbox_ms = t.ms();
                }
            }
            Err(e) => {
                tracing::warn!(pod = pod_name(pod), %e, "creating the pod sandbox");
                return Duration::from_secs(2);
            }
        }
    }
    let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
    if state.volumes.is_some() && state.volume_state.due() {
        // Contents of configMap/secret/downwardAPI/projected volumes follow their sources;
        // a failed refresh keeps the files the containers have.
        let refreshed = prepare_volumes(shared, pod, state).await;
        if let Err(failure) = refreshed {
            tracing::warn!(pod = pod_name(pod), messages = ?failure.messages, "refreshing volumes");
        }
    }
    if state.volumes.is_none() {
        match prepare_volumes(shared, pod, state).await {
            Ok(v) => {
                state.volumes = Some(v);
                if let Some(t) = state.trace.as_mut() {
                    t.volumes_ms = t.ms();
                }
            }
            Err(failure) => {
                // A Warning FailedMount event per failure when it is new, and again each
                // minute; once the pod waited past the kubelet's attach-and-mount timeout,
                // the summary too (unless a claim could not be resolved: that one says why).
                let since = *state.mount_waiting_since.get_or_insert_with(Instant::now);
                let mut due: Vec<(String, Duration)> =
                    failure.messages.iter().map(|m| (m.clone(), MOUNT_EVENT_EVERY)).collect();
                if !failure.unprocessed && since.elapsed() >= MOUNT_TIMEOUT {
                    due.push((failure.timed_out(), MOUNT_TIMEOUT));
                }
                for (message, every) in due {
                    let repeat = state.mount_events.get(&message).is_none_or(|at| at.elapsed() >= every);
                    if repeat {
                        shared.events.warning(pod, "FailedMount", message.clone()).await;
                        state.mount_events.insert(message, Instant::now());
                    }
                }
                let message = failure.messages.first().cloned().unwrap_or_default();
                for rec in state.init.iter_mut().chain(state.containers.iter_mut()) {
                    rec.waiting = Some(("ContainerCreating".into(), message.clone()));
                }
                let observed = vec![Observed::NotStarted; spec.containers.len()];
                post_status(shared, pod, state, &spec, false, &observed, "Pending").await;
                return Duration::from_secs(2);
            }
        }
    }
    let vols = state.volumes.clone().unwrap_or_default();
    let mut initialized = true;
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        if state.init[i].done {
            continue;
        }
        // Init containers restart on failure unless the pod's policy is Never.
        let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
        let (sandbox_id, sandbox_config) = state.sandbox.clone().expect("sandbox");
        let ip = state.pod_ip.clone();
        match drive(
            shared,
            pod,
            (&sandbox_id, &sandbox_config),
            ip.as_deref(),
            &vols,
            c,
            &mut state.init[i],
            init_policy,
        )
        .await
        {
            Observed::Exited(0) => state.init[i].done = true,
            Observed::Exited(_) => {
                state.init_failed = true;
                initialized = false;
                break;
            }
            _ => {
                initialized = false;
                break;
            }
        }
    }
    let mut observed = Vec::with_capacity(spec.containers.len());
    if initialized {
        for (i, c) in spec.containers.iter().enumerate() {
            let (sandbox_id, sandbox_config) = state.sandbox.clone().expect("sandbox");
            let ip = state.pod_ip.clone();
            let o = drive(
                shared,
                pod,
                (&sandbox_id, &sandbox_config),
                ip.as_deref(),
                &vols,
                c,
                &mut state.containers[i],
                &policy,
            )
            .await;
            observed.push(o);
        }
    } else {
        observed = vec![Observed::NotStarted; spec.containers.len()];
    }
    run_ephemeral(shared, pod, &spec, state, &vols).await;
    let size_limited =
        spec.volumes.iter().flatten().any(|v| v.empty_dir.as_ref().is_some_and(|e| e.size_limit.is_some()));
    if size_limited && state.usage_checked.is_none_or(|t| t.elapsed() >= USAGE_CHECK_EVERY) {
        state.usage_checked = Some(Instant::now());
        let data_dir = shared.config.data_dir.clone();
        let of = pod.clone();
        let over = tokio::task::spawn_blocking(move || volumes::empty_dir_over_limit(&data_dir, &of)).await;
        if let Ok(Some(message)) = over {
            evict(shared, pod, state, &spec, message).await;
            return Duration::from_secs(60);
        }
    }
    let phase = status::phase(initialized, state.init_failed, &observed);
    if phase == "Running"
        && let Some(t) = state.trace.as_mut().filter(|t| t.started_ms == 0)
    {
        t.started_ms = t.ms();
    }
    post_status(shared, pod, state, &spec, initialized, &observed, phase).await;
    if (phase == "Succeeded" || phase == "Failed") && !state.sandbox_stopped {
        stop_finished(shared, pod, state).await;
    }
    let posted = state.last_posted.as_ref().and_then(|b| b["status"]["phase"].as_str());
    if posted == Some("Running")
        && let Some(t) = state.trace.take()
    {
        tracing::debug!(
            pod = %pod_name(pod),
            seen_unix_ms = t.seen_unix_ms,
            queued_ms = t.queued_ms as u64,
            sandbox_ms = t.sandbox_ms as u64,
            volumes_ms = t.volumes_ms as u64,
            started_ms = t.started_ms as u64,
            posted_ms = t.ms() as u64,
            "pod started"
        );
    } else if posted.is_some_and(|p| p != "Pending") {
        state.trace = None;
    }
    if phase == "Succeeded" || phase == "Failed" {
        Duration::from_secs(30)
    } else if posted == Some("Running") && steady(&spec, state, &observed) {
        if size_limited { USAGE_CHECK_EVERY } else { STEADY_RESYNC }
    } else {
        Duration::from_secs(1)
    }
}

/// Stops a finished pod's containers and sandbox (its pause process goes, its IP is
/// released) as the kubelet does once a pod is terminal; the containers, their logs and the
/// pod's status stay until the pod is deleted.
async fn stop_finished(shared: &Shared, pod: &Pod, state: &mut PodState) {
    let ids: Vec<String> = state.init.iter().chain(&state.containers).filter_map(|r| r.id.clone()).collect();
    futures::future::join_all(ids.iter().map(|id| shared.cri.stop_container(id, 0))).await;
    let Some((id, _)) = &state.sandbox else { return };
    match shared.cri.stop_pod_sandbox(id).await {
        Ok(()) => {
            tracing::debug!(pod = pod_name(pod), sandbox = id, "stopped the sandbox of a finished pod");
            state.sandbox_stopped = true;
        }
        // Tried again on the next pass.
        Err(e) => tracing::warn!(pod = pod_name(pod), %e, sandbox = id, "stopping the sandbox of a finished pod"),
    }
}

/// Starts the pod's ephemeral containers as the kubelet does: once each, in the running
/// sandbox, never restarted (restartPolicy Never whatever the pod's), never probed; one with
/// a `targetContainerName` joins that container's PID namespace once the target runs. They
/// do not count for the pod's phase or readiness.
async fn run_ephemeral(
    shared: &Shared,
    pod: &Pod,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    state: &mut PodState,
    vols: &HashMap<String, PathBuf>,
) {
    let Some((sandbox_id, sandbox_config)) = state.sandbox.clone() else { return };
    let ip = state.pod_ip.clone();
    for (i, ec) in spec.ephemeral_containers.iter().flatten().enumerate() {
        state.ephemeral[i].ephemeral = true;
        let c = ephemeral_as_container(ec);
        if state.ephemeral[i].id.is_none()
            && let Some(target) = ec.target_container_name.as_deref()
        {
            let named = |list: &[Container], records: &[Record]| {
                let j = list.iter().position(|c| c.name == target)?;
                records.get(j).and_then(|r| r.id.clone())
            };
            let init = spec.init_containers.as_deref().unwrap_or_default();
            let target_id = named(&spec.containers, &state.containers).or_else(|| named(init, &state.init));
            match target_id {
                Some(id) => state.ephemeral[i].pid_target = Some(id),
                None => {
                    state.ephemeral[i].waiting =
                        Some(("ContainerCreating".into(), format!("waiting for target container {target:?}")));
                    continue;
                }
            }
        }
        let rec = &mut state.ephemeral[i];
        drive(shared, pod, (&sandbox_id, &sandbox_config), ip.as_deref(), vols, &c, rec, "Never").await;
    }
}

/// An ephemeral container as a container (the same fields; the target is handled apart).
fn ephemeral_as_container(ec: &EphemeralContainer) -> Container {
    Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        command: ec.command.clone(),
        args: ec.args.clone(),
        working_dir: ec.working_dir.clone(),
        env: ec.env.clone(),
        env_from: ec.env_from.clone(),
        volume_mounts: ec.volume_mounts.clone(),
        volume_devices: ec.volume_devices.clone(),
        image_pull_policy: ec.image_pull_policy.clone(),
        security_context: ec.security_context.clone(),
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        tty: ec.tty,
        termination_message_path: ec.termination_message_path.clone(),
        termination_message_policy: ec.termination_message_policy.clone(),
        ..Default::default()
    }
}

/// Every container runs, none has a probe, is waiting or backing off: nothing to do until
/// the relist sees a container change (or the pod changes).
fn steady(spec: &k8s_openapi::api::core::v1::PodSpec, state: &PodState, observed: &[Observed]) -> bool {
    let probed = spec
        .containers
        .iter()
        .any(|c| c.startup_probe.is_some() || c.liveness_probe.is_some() || c.readiness_probe.is_some());
    !probed
        && observed.iter().all(|o| *o == Observed::Running)
        && state.containers.iter().all(|r| r.waiting.is_none() && r.restart_at.is_none() && r.id.is_some())
}

/// Evicts the pod as the kubelet's eviction manager does: a Warning `Evicted` event, every
/// container killed at once (no grace period), the status Failed with reason `Evicted` and
/// `message`, the sandbox and volumes removed. The pod object stays.
async fn evict(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    message: String,
) {
    tracing::info!(pod = pod_name(pod), %message, "evicting the pod");
    shared.events.warning(pod, "Evicted", message.clone()).await;
    let ids: Vec<String> =
        state.init.iter().chain(&state.containers).chain(&state.ephemeral).filter_map(|r| r.id.clone()).collect();
    futures::future::join_all(ids.iter().map(|id| shared.cri.stop_container(id, 0))).await;
    for rec in state.init.iter_mut().chain(state.containers.iter_mut()).chain(state.ephemeral.iter_mut()) {
        if let Some(id) = &rec.id {
            rec.cri = shared.cri.container_status(id).await.ok().flatten();
        }
        rec.waiting = None;
    }
    state.evicted = Some(message);
    post_status(shared, pod, state, spec, true, &[], "Failed").await;
    teardown(shared, state, 0).await;
}

/// Takes over the pod's sandbox and containers left running by an earlier agent on this
/// data dir (`--keep-pods`): the same containers, restart counts from their attempts.
async fn adopt(shared: &Shared, pod: &Pod, spec: &k8s_openapi::api::core::v1::PodSpec, state: &mut PodState) {
    let Ok(sandboxes) = shared.cri.list_pod_sandboxes().await else { return };
    let found = sandboxes.into_iter().find(|s| {
        s.state == cri::PodSandboxState::SandboxReady as i32
            && s.labels.get("io.kubernetes.pod.uid") == Some(&state.uid)
            && s.labels.get(containers::NODE_LABEL) == Some(&shared.config.node_name)
    });
    let Some(sandbox) = found else { return };
    let Ok(list) = shared.cri.list_containers(&sandbox.id).await else { return };
    let now = Instant::now();
    let mut adopted = 0;
    let ephemeral: Vec<Container> = spec.ephemeral_containers.iter().flatten().map(ephemeral_as_container).collect();
    for (records, specs) in [
        (&mut state.init, spec.init_containers.clone().unwrap_or_default()),
        (&mut state.containers, spec.containers.clone()),
        (&mut state.ephemeral, ephemeral),
    ] {
        for (rec, c) in records.iter_mut().zip(&specs) {
            // The latest attempt of this container.
            let latest = list
                .iter()
                .filter(|k| k.metadata.as_ref().is_some_and(|m| m.name == c.name))
                .max_by_key(|k| k.metadata.as_ref().map_or(0, |m| m.attempt));
            let Some(k) = latest else { continue };
            rec.id = Some(k.id.clone());
            rec.restart_count = k.metadata.as_ref().map_or(0, |m| m.attempt) as i32;
            rec.backoffs = rec.restart_count.max(0) as u32;
            rec.cri = shared.cri.container_status(&k.id).await.ok().flatten();
            // (Only init containers look at `done`.)
            rec.done = rec
                .cri
                .as_ref()
                .is_some_and(|s| s.state == cri::ContainerState::ContainerExited as i32 && s.exit_code == 0);
            rec.startup = c.startup_probe.as_ref().map(|_| ProbeState::new(now));
            rec.liveness = c.liveness_probe.as_ref().map(|_| ProbeState::new(now));
            rec.readiness = c.readiness_probe.as_ref().map(|_| ProbeState::new(now));
            adopted += 1;
        }
    }
    let ip = shared.cri.pod_sandbox_status(&sandbox.id).await.ok().flatten().and_then(|s| s.network).map(|n| n.ip);
    state.pod_ip = ip.filter(|ip| !ip.is_empty()).or_else(|| host_network_ip(shared, spec));
    let config = sandbox_config(shared, pod, false).await;
    tracing::info!(pod = pod_name(pod), sandbox = sandbox.id, containers = adopted, "adopted a running pod");
    state.sandbox = Some((sandbox.id, config));
}

/// The pod's sandbox config ([`containers::sandbox_config`]) with its DNS config and
/// hostname ([`dns`]). With `report`, what the kubelet warns about while forming the DNS
/// config becomes events (and the fall-back from ClusterFirst one log line per agent).
async fn sandbox_config(shared: &Shared, pod: &Pod, report: bool) -> cri::PodSandboxConfig {
    let settings = &shared.config.dns;
    let mut config = containers::sandbox_config(pod, &shared.config.node_name, &shared.config.data_dir);
    let (node, error) = dns::read_node_resolver(settings.resolv_conf.as_deref());
    let formed = dns::form(pod, settings, node.as_ref());
    config.dns_config = Some(formed.config);
    let spec = pod.spec.as_ref();
    let (hostname, domain) = dns::hostname_and_domain(pod, &settings.cluster_domain);
    if spec.and_then(|s| s.set_hostname_as_fqdn) == Some(true) && !domain.is_empty() && !config.hostname.is_empty() {
        config.hostname = format!("{hostname}.{domain}");
    }
    if !report {
        return config;
    }
    if let Some(e) = error {
        tracing::warn!(%e, path = ?settings.resolv_conf, "reading the node's resolv.conf for a pod's DNS");
    }
    if formed.fell_back {
        let message = format!(
            "pod: {:?}. kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" \
             policy. Falling back to \"Default\" policy.",
            kubelet_pod_name(pod)
        );
        if !shared.dns_fallback_logged.swap(true, Ordering::Relaxed) {
            tracing::info!("no --cluster-dns: pods with dnsPolicy ClusterFirst use the node's resolv.conf (Default)");
        }
        shared.events.warning(pod, "MissingClusterDNS", message).await;
    }
    for warning in formed.warnings {
        shared.events.warning(pod, "DNSConfigForming", warning).await;
    }
    config
}

/// A hostNetwork pod's IP: the node's (the runtime reports none without a pod network).
fn host_network_ip(shared: &Shared, spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    (spec.host_network == Some(true)).then(|| shared.node_ip.to_string())
}

/// The image pull policy in effect (Kubernetes' default: Always for `:latest` or no tag).
fn pull_policy(c: &Container) -> &str {
    if let Some(p) = c.image_pull_policy.as_deref() {
        return p;
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Moves one container on: start it (image and config permitting), follow it, restart it per
/// `policy` with back-off. Returns what the phase is decided from.
#[allow(clippy::too_many_arguments)]
async fn drive(
    shared: &Shared,
    pod: &Pod,
    (sandbox_id, sandbox_config): (&str, &cri::PodSandboxConfig),
    pod_ip: Option<&str>,
    vols: &HashMap<String, PathBuf>,
    c: &Container,
    rec: &mut Record,
    policy: &str,
) -> Observed {
    if let Some(id) = rec.id.clone() {
        // The full status only when the relist saw the state move since the last one read.
        let relisted = shared.relist.state(&id);
        let cached = rec.cri.clone().filter(|s| s.id == id && Some(s.state) == relisted);
        let status = match cached {
            Some(s) => Ok(Some(s)),
            None => match shared.cri.container_status(&id).await {
                Ok(Some(s)) => {
                    let mut s = settle_oom(shared, &id, s).await;
                    termination::enrich(c, &mut s);
                    Ok(Some(s))
                }
                other => other,
            },
        };
        match status {
            Ok(Some(s)) => {
                let st = cri::ContainerState::try_from(s.state);
                rec.cri = Some(s.clone());
                match st {
                    Ok(cri::ContainerState::ContainerRunning) => {
                        rec.waiting = None;
                        probe(shared, pod, pod_ip, c, rec).await;
                        return Observed::Running;
                    }
                    Ok(cri::ContainerState::ContainerExited) => {
                        if !status::should_restart(policy, s.exit_code) {
                            rec.waiting = None;
                            return Observed::Exited(s.exit_code);
                        }
                        let now = Instant::now();
                        // The first restart is immediate; then 10 s doubling to 5 min, from
                        // the start again after a long healthy run.
                        if rec.restart_at.is_none() {
                            let (backoffs, delay) = status::restart_delay(rec.backoffs, s.started_at, s.finished_at);
                            rec.backoffs = backoffs;
                            rec.restart_at = Some(now + delay);
                        }
                        let at = rec.restart_at.unwrap_or(now);
                        if now < at {
                            let delay = status::backoff_delay(rec.backoffs.saturating_sub(1));
                            rec.waiting = Some((
                                "CrashLoopBackOff".into(),
                                format!(
                                    "back-off {}s restarting failed container={} pod={}",
                                    delay.as_secs(),
                                    c.name,
                                    pod.metadata.name.as_deref().unwrap_or("")
                                ),
                            ));
                            return Observed::Restarting;
                        }
                        rec.last_state = Some(status::terminated(&s));
                        rec.restart_at = None;
                        rec.restart_count += 1;
                        rec.backoffs += 1;
                        if let Some(old) = rec.id.take() {
                            let _ = shared.cri.remove_container(&old).await;
                        }
                        rec.cri = None;
                    }
                    _ => return Observed::NotStarted,
                }
            }
            // An ephemeral container is not created again: it keeps its last known state.
            Ok(None) | Err(_) if rec.ephemeral => return Observed::NotStarted,
            Ok(None) | Err(_) => {
                // Gone from the runtime: start it again.
                rec.id = None;
                rec.cri = None;
            }
        }
    }
    // Start (or restart) it.
    let image = c.image.clone().unwrap_or_default();
    let found = match shared.cri.image_status(&image).await {
        Ok(i) => i,
        Err(e) => {
            rec.waiting = Some(("ErrImagePull".into(), e.to_string()));
            return not_started(rec);
        }
    };
    let Some(found) = found else {
        rec.pull_failures += 1;
        let (reason, message) = if pull_policy(c) == "Never" {
            ("ErrImageNeverPull", format!("Container image \"{image}\" is not present with pull policy of Never"))
        } else {
            (
                if rec.pull_failures > 1 { "ImagePullBackOff" } else { "ErrImagePull" },
                format!(
                    "image \"{image}\" is not on this node and berth does not pull from registries yet: \
                     import it with `berth image import FILE.tar`"
                ),
            )
        };
        rec.waiting = Some((reason.into(), message));
        return not_started(rec);
    };
    let env = match resolve_env(shared, pod, pod_ip, c).await {
        Ok(env) => env,
        Err(message) => {
            rec.waiting = Some(("CreateContainerConfigError".into(), message));
            return not_started(rec);
        }
    };
    // After the environment, as the kubelet's generateContainerConfig.
    if let Err(message) = containers::verify_run_as_non_root(pod, &kubelet_pod_name(pod), c, &found) {
        rec.waiting = Some(("CreateContainerConfigError".into(), message));
        return not_started(rec);
    }
    let mut config = containers::container_config(pod, c, rec.restart_count as u32, env);
    if let Some(target) = &rec.pid_target {
        containers::share_pid_with(&mut config, target);
    }
    let termination_log = termination::prepare(&shared.config.data_dir, pod, c, rec.restart_count as u32);
    // The kubelet's managed /etc/hosts, unless the container mounts its own.
    let hosts = |m: &[cri::Mount]| {
        let own = m.iter().any(|m| m.container_path == "/etc/hosts");
        let domain = &shared.config.dns.cluster_domain;
        (!own).then(|| dns::hosts_mount(&shared.config.data_dir, pod, pod_ip, domain)).flatten()
    };
    let mounts = volumes::mounts(pod, c, vols).and_then(|m| {
        let hosts = hosts(&m);
        Ok([m, vec![termination_log?], hosts.into_iter().collect()].concat())
    });
    match mounts {
        Ok(m) => config.mounts = m,
        Err(message) => {
            rec.waiting = Some(("CreateContainerConfigError".into(), message));
            return not_started(rec);
        }
    }
    let id = match shared.cri.create_container(sandbox_id, config, sandbox_config.clone()).await {
        Ok(id) => id,
        Err(e) => {
            rec.waiting = Some(("CreateContainerError".into(), e.to_string()));
            return not_started(rec);
        }
    };
    if let Err(e) = shared.cri.start_container(&id).await {
        rec.waiting = Some(("RunContainerError".into(), e.to_string()));
        let _ = shared.cri.remove_container(&id).await;
        return not_started(rec);
    }
    rec.id = Some(id.clone());
    rec.waiting = None;
    if let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let name = kubelet_pod_name(pod);
        let target = hooks::Target { pod: &name, pod_ip, container: c, container_id: &id };
        if let Err(message) = hooks::run(&shared.cri, &target, handler, POST_START_TIMEOUT).await {
            // The kubelet kills the container; its restart policy then applies.
            tracing::info!(pod = pod_name(pod), container = c.name, %message, "postStart hook failed");
            shared.events.warning(pod, Hook::PostStart.failed_reason(), message).await;
            kill(shared, pod, pod_ip, c, &id, pod_grace(pod)).await;
            rec.cri = shared.cri.container_status(&id).await.ok().flatten();
            let code = rec.cri.as_ref().map_or(137, |s| s.exit_code);
            return if status::should_restart(policy, code) { Observed::Restarting } else { Observed::Exited(code) };
        }
    }
    let now = Instant::now();
    rec.startup = c.startup_probe.as_ref().map(|_| ProbeState::new(now));
    rec.liveness = c.liveness_probe.as_ref().map(|_| ProbeState::new(now));
    rec.readiness = c.readiness_probe.as_ref().map(|_| ProbeState::new(now));
    rec.cri = shared.cri.container_status(&id).await.ok().flatten();
    // One that exited at once is seen on the next pass.
    Observed::Running
}

/// The longest a postStart hook may run (the kubelet sets none; a hung hook would keep the
/// container from ever running).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// NotStarted, or Restarting for a container that ran before.
fn not_started(rec: &Record) -> Observed {
    if rec.restart_count > 0 || rec.last_state.is_some() { Observed::Restarting } else { Observed::NotStarted }
}

/// The container's environment: envFrom, then env (value with `$(VAR)` expansion, fieldRef,
/// resourceFieldRef, configMapKeyRef, secretKeyRef). An error names the missing source.
async fn resolve_env(
    shared: &Shared,
    pod: &Pod,
    pod_ip: Option<&str>,
    c: &Container,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let sources = &shared.sources;
    let mut cm_cache: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    let mut secret_cache: HashMap<String, Option<BTreeMap<String, ByteString>>> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = out.iter_mut().find(|(n, _)| *n == k) {
            e.1 = v;
        } else {
            out.push((k, v));
        }
    };
    async fn cm(
        sources: &Sources,
        ns: &str,
        cache: &mut HashMap<String, Option<BTreeMap<String, String>>>,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        if let Some(v) = cache.get(name) {
            return Ok(v.clone());
        }
        let v = sources.config_map(ns, name).await.map_err(|e| format!("reading configmap {name:?}: {e}"))?;
        let data = v.map(|c| c.data.clone().unwrap_or_default());
        cache.insert(name.to_string(), data.clone());
        Ok(data)
    }
    async fn secret(
        sources: &Sources,
        ns: &str,
        cache: &mut HashMap<String, Option<BTreeMap<String, ByteString>>>,
        name: &str,
    ) -> Result<Option<BTreeMap<String, ByteString>>, String> {
        if let Some(v) = cache.get(name) {
            return Ok(v.clone());
        }
        let v = sources.secret(ns, name).await.map_err(|e| format!("reading secret {name:?}: {e}"))?;
        let data = v.map(|s| s.data.clone().unwrap_or_default());
        cache.insert(name.to_string(), data.clone());
        Ok(data)
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cm(sources, &ns, &mut cm_cache, &r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| set(&mut out, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secret(sources, &ns, &mut secret_cache, &r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| {
                    set(&mut out, format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned())
                }),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let vars: HashMap<String, String> = out.iter().cloned().collect();
        let value = if let Some(v) = &e.value {
            containers::expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, pod_ip, shared.node_ip, &f.field_path)
                    .ok_or_else(|| format!("unsupported fieldRef {:?}", f.field_path))?
            } else if let Some(r) = &from.config_map_key_ref {
                match cm(sources, &ns, &mut cm_cache, &r.name).await?.map(|d| d.get(&r.key).cloned()) {
                    Some(Some(v)) => v,
                    _ if r.optional == Some(true) => continue,
                    Some(None) => return Err(format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name)),
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match secret(sources, &ns, &mut secret_cache, &r.name).await?.map(|d| d.get(&r.key).cloned()) {
                    Some(Some(v)) => String::from_utf8_lossy(&v.0).into_owned(),
                    _ if r.optional == Some(true) => continue,
                    Some(None) => return Err(format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name)),
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &from.resource_field_ref {
                // In env, the container defaults to this one.
                let mut r = r.clone();
                if r.container_name.as_deref().is_none_or(str::is_empty) {
                    r.container_name = Some(c.name.clone());
                }
                volumes::resource_value(pod, &r)?
            } else {
                continue;
            }
        } else {
            String::new()
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// The value of a downward-API field path.
pub(crate) fn field_value(pod: &Pod, pod_ip: Option<&str>, node_ip: Ipv4Addr, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let from_map = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|l| l.get(key).cloned()).unwrap_or_default())
    };
    match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => {
            Some(pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default())
        }
        "status.hostIP" | "status.hostIPs" => Some(node_ip.to_string()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.unwrap_or("").to_string()),
        p if p.starts_with("metadata.labels") => from_map(&m.labels, &p["metadata.labels".len()..]),
        p if p.starts_with("metadata.annotations") => from_map(&m.annotations, &p["metadata.annotations".len()..]),
        _ => None,
    }
}

/// A container just killed by SIGKILL (exit 137) may have been OOM-killed: containerd
/// records the OOM event after the exit, so its status is read again for up to 5 s
/// before the reason is taken as plain Error. "Just" is within 30 s of its exit: on a
/// busy node the agent may see the exit itself late.
async fn settle_oom(shared: &Shared, id: &str, status: cri::ContainerStatus) -> cri::ContainerStatus {
    let exited = status.state == cri::ContainerState::ContainerExited as i32;
    let now_ns = Timestamp::now().as_nanosecond();
    let recent = now_ns.saturating_sub(i128::from(status.finished_at)) < 30_000_000_000;
    if !(exited && status.exit_code == 137 && status.reason != "OOMKilled" && recent) {
        return status;
    }
    // Up to 5 s: on a busy node containerd records the OOM event well after the exit.
    for _ in 0..25 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if let Ok(Some(again)) = shared.cri.container_status(id).await
            && again.reason == "OOMKilled"
        {
            return again;
        }
    }
    status
}

fn container_status(c: &Container, rec: &Record) -> ContainerStatus {
    let state = if let Some((reason, message)) = &rec.waiting {
        status::waiting(reason, message)
    } else if let Some(s) = &rec.cri {
        status::container_state(s)
    } else {
        status::waiting("ContainerCreating", "")
    };
    let running = state.running.is_some();
    let ready = running && rec.ready();
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: rec.cri.as_ref().map(|s| s.image_ref.clone()).unwrap_or_default(),
        container_id: rec.id.as_ref().map(|id| format!("containerd://{id}")),
        ready,
        started: Some(running && rec.started()),
        restart_count: rec.restart_count,
        state: Some(state),
        last_state: rec
            .last_state
            .clone()
            .map(|t| ContainerState { terminated: Some(t), ..Default::default() })
            .or(Some(ContainerState::default())),
        ..Default::default()
    }
}

async fn post_status(
    shared: &Shared,
    pod: &Pod,
    state: &mut PodState,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    initialized: bool,
    observed: &[Observed],
    phase: &str,
) {
    // As the kubelet: containers not created yet wait in PodInitializing while the pod has
    // init containers, and an init container that completed is ready.
    let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .zip(&state.containers)
        .map(|(c, r)| {
            let mut s = container_status(c, r);
            if has_init && r.id.is_none() && r.cri.is_none() && r.waiting.is_none() {
                s.state = Some(status::waiting("PodInitializing", ""));
            }
            s
        })
        .collect();
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .zip(&state.init)
        .map(|(c, r)| {
            let s = container_status(c, r);
            let completed = s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code == 0);
            ContainerStatus { ready: s.ready || completed, ..s }
        })
        .collect();
    // Ephemeral containers are reported once the kubelet has tried them (never ready).
    let ephemeral_statuses: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .zip(&state.ephemeral)
        .filter(|(_, r)| r.id.is_some() || r.waiting.is_some() || r.cri.is_some())
        .map(|(c, r)| ContainerStatus { ready: false, ..container_status(&ephemeral_as_container(c), r) })
        .collect();
    let all_ready = !observed.is_empty()
        && observed.iter().all(|o| *o == Observed::Running)
        && state.containers.iter().all(Record::ready);
    let previous = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let host_ip = shared.node_ip.to_string();
    let now = Timestamp::now();
    let mut conditions = status::conditions(&previous, state.sandbox.is_some(), initialized, all_ready, phase, now);
    let (reason, message) = match (&state.evicted, state.shut_down) {
        (Some(message), _) => (Some("Evicted".to_string()), Some(message.clone())),
        (None, true) => {
            conditions.push(shutdown::disruption_condition(&previous, now));
            (Some(shutdown::REASON.to_string()), Some(shutdown::MESSAGE.to_string()))
        }
        (None, false) => (None, None),
    };
    let status = PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: host_ip }]),
        pod_ip: state.pod_ip.clone(),
        pod_ips: state.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: state.start_time.clone(),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty()).then_some(ephemeral_statuses),
        qos_class: Some(crate::hollow::pod_status::qos_class(spec).to_string()),
        reason,
        message,
        ..Default::default()
    };
    let body = json!({ "status": status });
    if state.last_posted.as_ref() == Some(&body) {
        return;
    }
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await {
        Ok(_) => state.last_posted = Some(body),
        Err(e) => tracing::warn!(pod = pod_name(pod), %e, "writing the pod status"),
    }
}

/// Stops every container (SIGTERM, SIGKILL after `grace` seconds), then stops and removes the sandbox.
async fn teardown(shared: &Shared, state: &mut PodState, grace: i64) {
    let ids: Vec<String> =
        state.init.iter().chain(&state.containers).chain(&state.ephemeral).filter_map(|r| r.id.clone()).collect();
    futures::future::join_all(ids.iter().map(|id| shared.cri.stop_container(id, grace))).await;
    if let Some((id, _)) = state.sandbox.take() {
        if let Err(e) = shared.cri.stop_pod_sandbox(&id).await {
            tracing::warn!(%e, sandbox = id, "stopping the sandbox");
        }
        if let Err(e) = shared.cri.remove_pod_sandbox(&id).await {
            tracing::warn!(%e, sandbox = id, "removing the sandbox");
        }
    }
    if !state.uid.is_empty() {
        let dir = shared.config.data_dir.join("pods").join(&state.uid);
        volumes::unmount_all(&dir).await;
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%e, dir = %dir.display(), "removing the pod's volumes");
        }
    }
}

/// The node shuts down ([`shutdown`]): a pod not yet finished has its containers stopped as
/// on deletion (preStop hooks, SIGTERM, SIGKILL after `grace` seconds), then its status is
/// written Failed with reason `Terminated` and a `DisruptionTarget`
/// condition, as the kubelet's shutdown manager does; then its sandbox and volumes go. The
/// pod object stays (its controller replaces it).
async fn shut_down(shared: &Shared, pod: &Pod, state: &mut PodState, grace: i64) {
    let posted = state.last_posted.as_ref().and_then(|b| b["status"]["phase"].as_str().map(str::to_string));
    let phase_now = posted.or_else(|| pod.status.as_ref().and_then(|s| s.phase.clone())).unwrap_or_default();
    let finished = phase_now == "Succeeded" || phase_now == "Failed";
    if state.sandbox.is_some() && !finished {
        tracing::info!(pod = pod_name(pod), grace, "stopping the pod: the node shuts down");
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = state.pod_ip.clone();
        let running =
            |r: &Record| r.cri.as_ref().is_none_or(|s| s.state != cri::ContainerState::ContainerExited as i32);
        let live: Vec<(&Container, String)> = spec
            .init_containers
            .iter()
            .flatten()
            .zip(&state.init)
            .chain(spec.containers.iter().zip(&state.containers))
            .filter(|(_, r)| running(r))
            .filter_map(|(c, r)| Some((c, r.id.clone()?)))
            .collect();
        futures::future::join_all(live.iter().map(|(c, id)| kill(shared, pod, pod_ip.as_deref(), c, id, grace))).await;
        for rec in state.init.iter_mut().chain(state.containers.iter_mut()) {
            if let Some(id) = &rec.id {
                rec.cri = shared.cri.container_status(id).await.ok().flatten();
            }
            rec.waiting = None;
            rec.restart_at = None;
        }
        state.shut_down = true;
        let initialized = state.init.iter().all(|r| r.done);
        post_status(shared, pod, state, &spec, initialized, &[], "Failed").await;
    }
    teardown(shared, state, 0).await;
}

/// The status of a deleted pod whose containers were stopped, before its object goes (the
/// kubelet's status manager writes it so): the containers' final states, and a terminal
/// phase, Succeeded when every container exited 0, else Failed.
async fn post_terminated(shared: &Shared, pod: &Pod, state: &mut PodState) {
    if state.rejected {
        return; // it keeps the rejection's reason
    }
    let spec = pod.spec.clone().unwrap_or_default();
    for rec in state.init.iter_mut().chain(state.containers.iter_mut()) {
        if let Some(id) = &rec.id {
            rec.cri = shared.cri.container_status(id).await.ok().flatten();
            rec.waiting = None;
        }
    }
    let exited = |r: &Record| {
        r.cri.as_ref().filter(|s| s.state == cri::ContainerState::ContainerExited as i32).map(|s| s.exit_code)
    };
    let observed: Vec<Observed> =
        state.containers.iter().map(|r| exited(r).map_or(Observed::NotStarted, Observed::Exited)).collect();
    let succeeded = !observed.is_empty() && observed.iter().all(|o| *o == Observed::Exited(0));
    let initialized = state.init.iter().all(|r| r.done);
    let phase = if succeeded { "Succeeded" } else { "Failed" };
    post_status(shared, pod, state, &spec, initialized, &observed, phase).await;
}

/// A deleted pod: stop it within its grace period, then remove its object.
async fn terminate(shared: &Shared, pod: &Pod, state: &mut PodState) {
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or_else(|| pod_grace(pod)).max(0);
    // The regular containers' preStop hooks, then SIGTERM/SIGKILL, all containers at once.
    let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    let pod_ip = state.pod_ip.clone();
    let running: Vec<(&Container, String)> =
        containers.iter().zip(&state.containers).filter_map(|(c, r)| Some((c, r.id.clone()?))).collect();
    futures::future::join_all(running.iter().map(|(c, id)| kill(shared, pod, pod_ip.as_deref(), c, id, grace))).await;
    post_terminated(shared, pod, state).await;
    teardown(shared, state, grace).await;
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = pod_name(pod), %e, "deleting the pod"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, created: &str, phase: &str, ports: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": uid, "namespace": "default", "uid": uid, "creationTimestamp": created },
            "spec": { "containers": [{ "name": "c", "ports": ports }] },
            "status": { "phase": phase },
        }))
        .unwrap()
    }

    /// Workers holding `pods` (idle tasks), with their admission verdicts.
    fn workers_with(pods: &[(Pod, Admission)]) -> Workers {
        let w = Workers::default();
        for (p, admission) in pods {
            let (tx, _) = watch::channel(Some(p.clone()));
            let task = tokio::spawn(std::future::pending::<()>());
            let worker = Worker { pod: tx, task: task.abort_handle(), shutdown: None, admission: *admission };
            w.map.lock().unwrap().insert(p.metadata.uid.clone().unwrap(), worker);
        }
        w
    }

    /// Workers holding `pods` not yet admitted.
    fn workers(pods: &[Pod]) -> Workers {
        workers_with(&pods.iter().map(|p| (p.clone(), Admission::Undecided)).collect::<Vec<_>>())
    }

    fn node() -> Node {
        serde_json::from_value(
            json!({ "metadata": { "name": "n" }, "status": { "allocatable": { "cpu": "1", "pods": "10" } } }),
        )
        .unwrap()
    }

    fn taken(w: &Workers, uid: &str, pod: &Pod) -> bool {
        w.admit(uid, pod, &node()).is_err_and(|r| r.reason == "NodePorts")
    }

    #[tokio::test]
    async fn a_host_port_goes_to_the_older_pod_until_it_finishes() {
        let port = |host_port: i32, ip: &str, protocol: &str| json!([{ "containerPort": 80, "hostPort": host_port, "hostIP": ip, "protocol": protocol }]);
        let old = pod("a", "2026-01-01T00:00:00Z", "Running", port(8080, "", "TCP"));
        let w = workers(std::slice::from_ref(&old));
        let new = |ports| pod("b", "2026-01-01T00:00:01Z", "Pending", ports);
        assert!(taken(&w, "b", &new(port(8080, "", "TCP"))));
        assert!(taken(&w, "b", &new(port(8080, "127.0.0.1", "TCP"))), "all addresses hold it");
        assert!(!taken(&w, "b", &new(port(8080, "", "UDP"))), "another protocol");
        assert!(!taken(&w, "b", &new(port(8081, "", "TCP"))));
        assert!(!taken(&w, "b", &new(json!([{ "containerPort": 8080 }]))), "no host port");
        assert!(!taken(&w, "a", &old), "not against itself");
        // The older of two pending pods gets it, whichever asks first.
        let twins = workers(&[
            pod("x", "2026-01-01T00:00:00Z", "Pending", port(9000, "", "TCP")),
            pod("y", "2026-01-01T00:00:05Z", "Pending", port(9000, "", "TCP")),
        ]);
        assert!(taken(&twins, "y", &pod("y", "2026-01-01T00:00:05Z", "Pending", port(9000, "", "TCP"))));
        assert!(!taken(&twins, "x", &pod("x", "2026-01-01T00:00:00Z", "Pending", port(9000, "", "TCP"))));
        // A finished pod holds nothing.
        let done = workers(&[pod("a", "2026-01-01T00:00:00Z", "Succeeded", port(8080, "", "TCP"))]);
        assert!(!taken(&done, "b", &new(port(8080, "", "TCP"))));
    }

    #[tokio::test]
    async fn only_admitted_unfinished_pods_count_against_resources() {
        let cpu = |uid: &str, phase: &str, cpu: &str| {
            let mut p = pod(uid, "2026-01-01T00:00:00Z", phase, json!([]));
            p.spec.as_mut().unwrap().containers[0].resources =
                Some(serde_json::from_value(json!({ "requests": { "cpu": cpu } })).unwrap());
            p
        };
        let w = workers_with(&[
            (cpu("admitted", "Running", "600m"), Admission::Admitted),
            (cpu("rejected", "Failed", "900m"), Admission::Rejected),
            (cpu("undecided", "Pending", "900m"), Admission::Undecided),
            (cpu("done", "Succeeded", "900m"), Admission::Admitted),
            (cpu("next", "Pending", "500m"), Admission::Undecided),
            (cpu("small", "Pending", "400m"), Admission::Undecided),
        ]);
        let refused = w.admit("next", &cpu("next", "Pending", "500m"), &node()).unwrap_err();
        assert_eq!(refused.reason, "OutOfcpu");
        assert_eq!(refused.message, "Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000");
        assert_eq!(w.map.lock().unwrap()["next"].admission, Admission::Rejected);
        // The rejected pod does not count; the admitted one then does.
        assert!(w.admit("small", &cpu("small", "Pending", "400m"), &node()).is_ok());
        assert_eq!(w.map.lock().unwrap()["small"].admission, Admission::Admitted);
        let full = w.admit("undecided", &cpu("undecided", "Pending", "100m"), &node()).unwrap_err();
        assert_eq!(full.message, "Node didn't have enough resource: cpu, requested: 100, used: 1000, capacity: 1000");
    }
}
