//! The scheduler's writes: bindings (`POST pods/<name>/binding`), the PodScheduled
//! condition and `nominatedNodeName` of unschedulable pods, deletion of preemption
//! victims, and the `Scheduled` / `FailedScheduling` / `Preempted` events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Shared;
use crate::cache::PodInfo;
use crate::preemption::Victims;

/// How many bindings may be in flight at once.
const MAX_BINDS_IN_FLIGHT: usize = 64;
/// How many PodScheduled status writes (with their preemptions) may be in flight at once;
/// the others wait their turn. Each request in flight holds an HTTP/1.1 connection of its
/// own, so this also bounds the connections (and their TLS buffers) the writes open.
const MAX_STATUS_WRITES_IN_FLIGHT: usize = 16;
/// Events waiting to be sent beyond this are dropped, as client-go's event broadcaster
/// drops them beyond its queue of 1,000 (`maxQueuedEvents`).
const EVENT_BACKLOG: usize = 1_000;
/// Events sent concurrently.
const EVENT_CONCURRENCY: usize = 16;
/// An event the same as the last one about the same pod (reason and message) is not
/// posted again within this window (Kubernetes' recorder folds such isomorphic events
/// into one series).
const EVENT_REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(6 * 60);
/// Per pod, at most this many events in a burst (the recorder's spam filter)...
const EVENT_BURST: f64 = 25.0;
/// ...then one more per this many seconds.
const EVENT_REFILL_SECS: f64 = 300.0;

/// Limits the events posted about each pod, as Kubernetes' event recorder does: an event
/// repeating the pod's last one within [`EVENT_REPEAT_WINDOW`] is skipped, and each pod
/// has a token bucket of [`EVENT_BURST`] refilled one per [`EVENT_REFILL_SECS`].
#[derive(Debug, Default)]
pub struct EventLimiter {
    pods: std::collections::HashMap<String, PodEvents>,
}

#[derive(Debug)]
struct PodEvents {
    last: (&'static str, String),
    last_at: std::time::Instant,
    tokens: f64,
}

impl EventLimiter {
    /// Whether an event `reason`/`message` about pod `key` may be posted now (and counts it).
    pub fn allow(&mut self, key: &str, reason: &'static str, message: &str, now: std::time::Instant) -> bool {
        if self.pods.len() > 50_000 {
            self.pods.retain(|_, p| now.duration_since(p.last_at) < EVENT_REPEAT_WINDOW);
        }
        let Some(p) = self.pods.get_mut(key) else {
            self.pods.insert(
                key.to_string(),
                PodEvents { last: (reason, message.to_string()), last_at: now, tokens: EVENT_BURST - 1.0 },
            );
            return true;
        };
        let elapsed = now.duration_since(p.last_at);
        if p.last.0 == reason && p.last.1 == message && elapsed < EVENT_REPEAT_WINDOW {
            return false;
        }
        p.tokens = (p.tokens + elapsed.as_secs_f64() / EVENT_REFILL_SECS).min(EVENT_BURST);
        if p.tokens < 1.0 {
            return false;
        }
        p.tokens -= 1.0;
        p.last = (reason, message.to_string());
        p.last_at = now;
        true
    }

    /// Forgets a pod (bound or deleted): its next events start afresh.
    pub fn forget(&mut self, key: &str) {
        self.pods.remove(key);
    }
}

/// What the scheduling thread asks the async side to do.
#[derive(Debug)]
pub enum Action {
    /// Bind the (assumed) pod to the node.
    Bind {
        /// The pod.
        info: Arc<PodInfo>,
        /// The node.
        node: String,
    },
    /// Record that the pod does not fit, and carry out a preemption if one was found.
    Unschedulable {
        /// The pod.
        info: Arc<PodInfo>,
        /// The FailedScheduling message.
        message: String,
        /// Victims to delete, and the node to nominate.
        victims: Option<Victims>,
        /// The profile's scheduler name (the events' reporting component).
        profile: String,
    },
}

/// The pod an event is about: what its `involvedObject` names, and no more (an event
/// waiting to be posted does not keep the whole Pod alive).
#[derive(Debug, Clone)]
struct PodRef {
    key: String,
    namespace: String,
    name: String,
    uid: String,
    resource_version: Option<String>,
}

impl PodRef {
    fn of(info: &PodInfo) -> PodRef {
        PodRef {
            key: info.key.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            uid: info.uid.clone(),
            resource_version: info.pod.metadata.resource_version.clone(),
        }
    }
}

/// One event to post.
struct EventSpec {
    pod: PodRef,
    kind: &'static str,
    reason: &'static str,
    action: &'static str,
    message: String,
    component: String,
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

fn event_object(e: &EventSpec) -> Event {
    let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = jiff::Timestamp::now().as_nanosecond() as u64;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
    let v = json!({
        "metadata": {"name": format!("{}.{:x}", e.pod.name, nanos.wrapping_add(seq)), "namespace": e.pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": e.pod.namespace, "name": e.pod.name,
            "uid": e.pod.uid, "resourceVersion": e.pod.resource_version},
        "reason": e.reason, "message": e.message, "type": e.kind,
        "source": {"component": e.component},
        "firstTimestamp": now(), "lastTimestamp": now(), "count": 1,
        "eventTime": now_micro(), "action": e.action,
        "reportingComponent": e.component, "reportingInstance": format!("{}-{host}", e.component),
    });
    serde_json::from_value(v).unwrap_or_default()
}

/// Carries out the scheduling thread's decisions until the channel closes.
pub async fn act(client: kube::Client, shared: Arc<Shared>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Action>) {
    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<EventSpec>(EVENT_BACKLOG);
    let events_client = client.clone();
    tokio::spawn(async move {
        let mut limiter = EventLimiter::default();
        let stream = tokio_stream_from(events_rx).filter(move |e| {
            let allowed = limiter.allow(&e.pod.key, e.reason, &e.message, std::time::Instant::now());
            if e.reason == "Scheduled" {
                limiter.forget(&e.pod.key);
            }
            if !allowed {
                tracing::debug!(pod = %e.pod.key, reason = e.reason, "event skipped: repeated or over the pod's budget");
            }
            std::future::ready(allowed)
        });
        stream
            .for_each_concurrent(EVENT_CONCURRENCY, |e| {
                let client = events_client.clone();
                async move {
                    let url = <Event as kube::Resource>::url_path(&(), Some(&e.pod.namespace));
                    let body = serde_json::to_vec(&event_object(&e)).unwrap_or_default();
                    let request = kube::core::Request::new(url).create(&PostParams::default(), body);
                    if let Err(err) = send(&client, request).await {
                        tracing::debug!(error = %err, pod = %e.pod.key, "posting a scheduler event");
                    }
                }
            })
            .await;
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_BINDS_IN_FLIGHT));
    let status_permits = Arc::new(tokio::sync::Semaphore::new(MAX_STATUS_WRITES_IN_FLIGHT));
    while let Some(action) = rx.recv().await {
        match action {
            Action::Bind { info, node } => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (client, shared, events) = (client.clone(), shared.clone(), events_tx.clone());
                tokio::spawn(async move {
                    bind(client, &shared, info, node, &events).await;
                    drop(permit);
                });
            }
            Action::Unschedulable { info, message, victims, profile } => {
                let (client, shared, events, permits) =
                    (client.clone(), shared.clone(), events_tx.clone(), status_permits.clone());
                tokio::spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return;
                    };
                    unschedulable(client, &shared, info, message, victims, profile, &events).await
                });
            }
        }
    }
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Sends a request built with kube-core and drops the response body: the scheduler never
/// reads back what it wrote, so decoding a whole Pod (or Event) per write is saved.
async fn send(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> kube::Result<()> {
    client.request_text(request.map_err(kube::Error::BuildRequest)?).await.map(drop)
}

fn send_event(events: &tokio::sync::mpsc::Sender<EventSpec>, e: EventSpec) {
    if events.try_send(e).is_err() {
        tracing::debug!("scheduler event backlog full: event dropped");
    }
}

async fn bind(
    client: kube::Client,
    shared: &Shared,
    info: Arc<PodInfo>,
    node: String,
    events: &tokio::sync::mpsc::Sender<EventSpec>,
) {
    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some(info.name.clone()),
            namespace: Some(info.namespace.clone()),
            uid: Some(info.uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    let component = info.spec().scheduler_name.clone().unwrap_or_else(|| crate::config::DEFAULT_SCHEDULER_NAME.into());
    let url = <Pod as kube::Resource>::url_path(&(), Some(&info.namespace));
    let body = serde_json::to_vec(&binding).unwrap_or_default();
    let request = kube::core::Request::new(url).create_subresource("binding", &info.name, &PostParams::default(), body);
    match send(&client, request).await {
        Ok(_) => {
            shared.queue.done(&info.key);
            let message = format!("Successfully assigned {} to {node}", info.key);
            send_event(
                events,
                EventSpec {
                    pod: PodRef::of(&info),
                    kind: "Normal",
                    reason: "Scheduled",
                    action: "Binding",
                    message,
                    component,
                },
            );
        }
        Err(e) => {
            shared.cache().forget(&info.key);
            let not_found = matches!(&e, kube::Error::Api(s) if s.code == 404);
            if not_found {
                shared.queue.delete(&info.key);
                shared.queue.done(&info.key);
                return;
            }
            tracing::info!(pod = %info.key, node = %node, error = %e, "binding failed");
            shared.queue.retry(&info.key);
            let message = format!("Binding rejected: {e}");
            send_event(
                events,
                EventSpec {
                    pod: PodRef::of(&info),
                    kind: "Warning",
                    reason: "FailedScheduling",
                    action: "Scheduling",
                    message,
                    component,
                },
            );
        }
    }
}

async fn unschedulable(
    client: kube::Client,
    shared: &Shared,
    info: Arc<PodInfo>,
    message: String,
    victims: Option<Victims>,
    component: String,
    events: &tokio::sync::mpsc::Sender<EventSpec>,
) {
    let status = info.pod.status.as_ref();
    let current = status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(&message)
    });
    let nominated = victims.as_ref().map(|v| v.node.clone());
    let nominated_same = status.and_then(|s| s.nominated_node_name.clone()) == nominated || nominated.is_none();
    if !same || !nominated_same {
        // The transition time moves only when the status does (a new message alone keeps it).
        let transitioned = current
            .filter(|c| c.status == "False")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(now);
        let mut patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": transitioned}]}});
        if let Some(n) = &nominated {
            patch["status"]["nominatedNodeName"] = json!(n);
        }
        let url = <Pod as kube::Resource>::url_path(&(), Some(&info.namespace));
        let request = kube::core::Request::new(url).patch_subresource(
            "status",
            &info.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        );
        if let Err(e) = send(&client, request).await {
            tracing::debug!(pod = %info.key, error = %e, "updating PodScheduled");
        }
    }
    send_event(
        events,
        EventSpec {
            pod: PodRef::of(&info),
            kind: "Warning",
            reason: "FailedScheduling",
            action: "Scheduling",
            message,
            component: component.clone(),
        },
    );
    let Some(victims) = victims else {
        return;
    };
    for victim in victims.pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
        let condition = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
            "reason": "PreemptionByScheduler", "message": format!("{component}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": now()}]}});
        let _ = api.patch_status(&victim.name, &PatchParams::default(), &Patch::Strategic(&condition)).await;
        match api.delete(&victim.name, &DeleteParams::default()).await {
            Ok(_) => {
                let message = format!("Preempted by pod {} on node {}", info.uid, victims.node);
                send_event(
                    events,
                    EventSpec {
                        pod: PodRef::of(&victim),
                        kind: "Normal",
                        reason: "Preempted",
                        action: "Preempting",
                        message,
                        component: component.clone(),
                    },
                );
            }
            Err(e) => {
                // Not going after all (a 404 is the deletion the watch reports anyway):
                // the preemptor must not wait for it.
                shared.cache().unmark_victim(&victim.key);
                shared.queue.requeue(&info.key);
                tracing::info!(victim = %victim.key, error = %e, "deleting a preemption victim");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A client whose every request is answered with `code` (and a Status body when it is
    /// an error), counting the requests.
    fn answering(code: Arc<std::sync::atomic::AtomicU16>, seen: Arc<AtomicU64>) -> kube::Client {
        let service = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            let code = code.load(Ordering::SeqCst);
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = if code < 300 {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": code})
                } else {
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                        "reason": "InternalError", "message": "etcdserver: request timed out"})
                };
                http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap_or_default()))
            }
        });
        kube::Client::new(service, "default")
    }

    fn web() -> Arc<PodInfo> {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
        .unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_binding_is_forgotten_and_the_pod_retried() {
        use crate::cache::Cache;
        use crate::queue::Queue;
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
        .unwrap();
        let shared = Arc::new(Shared {
            cache: std::sync::Mutex::new(Cache::new()),
            queue: Queue::new(),
            scheduler_names: vec!["default-scheduler".into()],
        });
        shared.cache().upsert_node(Arc::new(node));
        let code = Arc::new(std::sync::atomic::AtomicU16::new(500));
        let seen = Arc::new(AtomicU64::new(0));
        let client = answering(code.clone(), seen.clone());
        let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(8);
        let info = web();
        shared.queue.add_or_update(info.clone());
        let popped = shared.queue.pop().expect("queued");
        assert_eq!(popped.attempts, 1);
        // The scheduling thread assumed the pod on n1; the API server fails the binding.
        shared.cache().assume(info.clone(), "n1");
        bind(client.clone(), &shared, info.clone(), "n1".into(), &events_tx).await;
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert!(!shared.cache().has_pod(&info.key), "the assumption is taken back");
        assert_eq!(shared.cache().node("n1").map(|n| n.pods.len()), Some(0));
        let e = events_rx.try_recv().expect("an event");
        assert_eq!((e.reason, e.kind), ("FailedScheduling", "Warning"));
        assert!(
            e.message.starts_with("Binding rejected: ") && e.message.contains("request timed out"),
            "{}",
            e.message
        );
        // The pod comes back after its back-off, for a second attempt.
        let q = shared.clone();
        let again = tokio::task::spawn_blocking(move || q.queue.pop()).await.unwrap().expect("retried");
        assert_eq!((again.info.key.as_str(), again.attempts), ("default/web", 2));
        // The second binding succeeds: the pod leaves the queue and stays assumed until its
        // watch event confirms it.
        code.store(201, Ordering::SeqCst);
        shared.cache().assume(info.clone(), "n1");
        bind(client.clone(), &shared, info.clone(), "n1".into(), &events_tx).await;
        assert!(shared.cache().has_pod(&info.key));
        assert!(shared.queue.is_empty());
        let e = events_rx.try_recv().expect("an event");
        assert_eq!((e.reason, e.message.as_str()), ("Scheduled", "Successfully assigned default/web to n1"));
        // A pod deleted meanwhile (404) is dropped without an event.
        code.store(404, Ordering::SeqCst);
        let gone = web();
        shared.queue.add_or_update(gone.clone());
        shared.queue.pop().expect("queued");
        shared.cache().assume(gone.clone(), "n1");
        bind(client, &shared, gone.clone(), "n1".into(), &events_tx).await;
        assert!(!shared.cache().has_pod(&gone.key));
        assert!(shared.queue.is_empty());
        assert!(events_rx.try_recv().is_err());
    }

    #[test]
    fn repeated_events_are_skipped_and_each_pod_has_a_budget() {
        let mut l = EventLimiter::default();
        let t = Instant::now();
        assert!(l.allow("ns/a", "FailedScheduling", "0/3 nodes", t));
        assert!(!l.allow("ns/a", "FailedScheduling", "0/3 nodes", t + Duration::from_secs(10)), "same event again");
        assert!(l.allow("ns/b", "FailedScheduling", "0/3 nodes", t), "another pod");
        assert!(l.allow("ns/a", "FailedScheduling", "0/4 nodes", t), "a new message");
        assert!(l.allow("ns/a", "FailedScheduling", "0/4 nodes", t + EVENT_REPEAT_WINDOW), "the window passed");
        // The burst runs out with ever-changing messages, then refills slowly.
        let mut l = EventLimiter::default();
        let allowed = (0..40).filter(|i| l.allow("ns/c", "FailedScheduling", &format!("m{i}"), t)).count();
        assert_eq!(allowed, EVENT_BURST as usize);
        let later = t + Duration::from_secs(EVENT_REFILL_SECS as u64);
        assert!(l.allow("ns/c", "FailedScheduling", "x", later));
        assert!(!l.allow("ns/c", "FailedScheduling", "y", later));
        l.forget("ns/c");
        assert!(l.allow("ns/c", "Scheduled", "y", later));
    }
}
