//! DaemonSet controller: one pod on every eligible node, pinned to it by required node
//! affinity on `metadata.name` (the scheduler binds it), updated through ControllerRevisions
//! (RollingUpdate with maxUnavailable/maxSurge, or OnDelete), as Kubernetes'
//! `pkg/controller/daemon`. Decisions are in [`sync`]; this module does the IO.

pub(crate) mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::pods;
use crate::replicaset::{Expectations, adopt_and_release};
use crate::revisions::{self, HASH_LABEL};

struct Ctx {
    client: kube::Client,
    pods: crate::informers::Cache<Pod>,
    nodes: crate::informers::Cache<Node>,
    expectations: Expectations,
    events: Events,
    failed_pods_backoff: Backoff,
}

/// First delay before a failed daemon pod on a node is replaced again (Kubernetes' failedPodsBackoff).
const FAILED_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest such delay.
const FAILED_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Per-key exponential back-off as client-go's `flowcontrol.Backoff`: each step doubles the
/// delay up to the maximum; an entry idle for twice the maximum starts over.
#[derive(Default)]
pub(crate) struct Backoff {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Duration)>>,
}

impl Backoff {
    /// How long `key` must still wait at `now` (None when it may act).
    pub(crate) fn remaining(&self, key: &str, now: std::time::Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (last, delay) = entries.get(key)?;
        let since = now.saturating_duration_since(*last);
        (since < *delay).then(|| *delay - since)
    }

    /// Records an action for `key` at `now`: the next one waits twice as long (from 1 s).
    pub(crate) fn next(&self, key: &str, now: std::time::Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(key.to_string()).or_insert((now, Duration::ZERO));
        let expired = now.saturating_duration_since(entry.0) > 2 * FAILED_BACKOFF_MAX;
        entry.1 =
            if entry.1.is_zero() || expired { FAILED_BACKOFF_INITIAL } else { (entry.1 * 2).min(FAILED_BACKOFF_MAX) };
        entry.0 = now;
    }
}

/// Runs the DaemonSet controller.
pub(crate) async fn run(client: kube::Client, pods: crate::informers::Feed<Pod>, nodes: crate::informers::Feed<Node>) {
    let pods_reader = pods.store.clone();
    let pod_events = pods.shared();
    let nodes_reader = nodes.store.clone();
    let node_events = nodes.shared();
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let all_sets = sets.clone();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods_reader,
        nodes: nodes_reader,
        expectations: Expectations::default(),
        events: Events::new(client, "daemonset-controller"),
        failed_pods_backoff: Backoff::default(),
    });
    let (reconcile, error_policy) = crate::backoff::wrap("daemonset", reconcile);
    controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            pods::owners_of(&sets, "apps/v1", "DaemonSet", |s| s.spec.as_ref().map(|sp| sp.selector.clone()), &pod)
        })
        .watches_shared_stream(node_events, move |_node: Arc<Node>| {
            all_sets.state().iter().map(|ds| ObjectRef::from_obj(ds.as_ref())).collect::<Vec<_>>()
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    ctx.pods.wait_until_ready().await;
    ctx.nodes.wait_until_ready().await;
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let cr_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = ds.spec.clone().unwrap_or_default();
    let ours = pods::owner_ref("apps/v1", "DaemonSet", &ds.metadata);
    let in_ns = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let claims = pods::claim(&ds.metadata, Some(&spec.selector), in_ns.iter().map(Arc::as_ref));
    let owned = adopt_and_release(&pod_api, claims, &ours).await?;

    let history = revisions::list(&cr_api, &ds.metadata).await?;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let update =
        match revisions::ensure(&cr_api, ours.clone(), labels, &spec.template, &history, collision_count).await? {
            Ok(cr) => cr,
            Err(count) => {
                let patch = json!({ "status": { "collisionCount": count } });
                ds_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
        };
    // Pods carry the hash part of the revision's name.
    let update_hash = update.name_any().strip_prefix(&format!("{name}-")).unwrap_or_default().to_string();

    let nodes_arc = ctx.nodes.state();
    let nodes: Vec<&Node> = nodes_arc.iter().map(Arc::as_ref).collect();
    let now = Timestamp::now();
    let mut backoff_wait: Option<Duration> = None;
    if ds.metadata.deletion_timestamp.is_none() && ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        let mut plan = sync::plan(&ds, &nodes, &owned, &update_hash, now);
        // Failed daemon pods are replaced with a per-node exponential back-off, so that a node
        // whose kubelet keeps rejecting the pod does not see it recreated in a hot loop.
        let clock = std::time::Instant::now();
        for (node, pod_name) in std::mem::take(&mut plan.failed) {
            let backoff_key = format!("{key}/{node}");
            if let Some(wait) = ctx.failed_pods_backoff.remaining(&backoff_key, clock) {
                plan.delete.retain(|p| *p != pod_name);
                plan.create.retain(|n| *n != node);
                backoff_wait = Some(backoff_wait.map_or(wait, |w: Duration| w.min(wait)));
                continue;
            }
            ctx.failed_pods_backoff.next(&backoff_key, clock);
            let note = format!("Found failed daemon pod {ns}/{pod_name} on node {node}, will try to kill it");
            ctx.events.warning(&ds.object_ref(&()), "FailedDaemonPod", note).await;
        }
        let regarding = ds.object_ref(&());
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let meta = spec.template.metadata.clone().unwrap_or_default();
        let creates = plan.create.iter().map(|node| {
            let mut labels = meta.labels.clone().unwrap_or_default();
            labels.insert(HASH_LABEL.into(), update_hash.clone());
            let pod = Pod {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    labels: Some(labels),
                    annotations: meta.annotations.clone(),
                    owner_references: Some(vec![ours.clone()]),
                    ..ObjectMeta::default()
                },
                spec: Some(sync::pod_spec_for(&template_spec, node)),
                status: None,
            };
            let api = pod_api.clone();
            async move { (node.clone(), api.create(&PostParams::default(), &pod).await) }
        });
        let mut failure = None;
        for (node, r) in futures::future::join_all(creates).await {
            match r {
                Ok(p) => {
                    let note = format!("Created pod: {}", p.name_any());
                    ctx.events.normal(&regarding, "SuccessfulCreate", note).await;
                    created.push(p.name_any());
                }
                Err(e) => {
                    let note = format!("Error creating: {e} (node {node})");
                    ctx.events.warning(&regarding, "FailedCreate", note.clone()).await;
                    failure.get_or_insert(note);
                }
            }
        }
        for pod_name in &plan.delete {
            match pod_api.delete(pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.events.normal(&regarding, "SuccessfulDelete", format!("Deleted pod: {pod_name}")).await;
                    if let Some(p) = owned.iter().find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str())) {
                        deleted.push(p.metadata.uid.clone().unwrap_or_default());
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        ctx.expectations.expect(&key, created, deleted);
        if let Some(f) = failure {
            return Err(crate::Error::Sync(f));
        }
    }

    let status = sync::status(&ds, &nodes, &owned, &update_hash, now);
    if Some(&status) != ds.status.as_ref() {
        let patch = json!({ "metadata": { "resourceVersion": ds.metadata.resource_version }, "status": status });
        match ds_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut keep: Vec<String> = vec![update.name_any()];
    keep.extend(
        owned.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).map(|h| format!("{name}-{h}"))),
    );
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    revisions::delete(&cr_api, revisions::history_to_delete(&history, &keep, limit)).await?;

    let next = pods::next_available_in(&owned, spec.min_ready_seconds.unwrap_or(0), now);
    Ok(match (next, backoff_wait) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(w), None) | (None, Some(w)) => Action::requeue(w),
        (None, None) => Action::await_change(),
    })
}
