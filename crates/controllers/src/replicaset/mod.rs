//! ReplicaSet and ReplicationController controllers: keep `replicas` pods matching the
//! selector, adopting orphans and releasing pods that no longer match, creating in
//! slow-start batches and deleting the least valuable pods first, with expectations so a
//! sync never acts before the watch has seen its own last writes (Kubernetes'
//! `pkg/controller/replicaset`). The decisions are in [`sync`]; this module does the IO.

pub(crate) mod sync;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::{NamespaceResourceScope, serde::de::DeserializeOwned};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::pods;
use sync::{Failure, Kind, Plan, Replicated};

/// How long an unmet expectation holds back a sync before it is assumed lost (Kubernetes' 5 minutes).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the ReplicaSet controller.
pub(crate) async fn run_replicasets(client: kube::Client, pods: crate::informers::Feed<Pod>) {
    run::<ReplicaSet>(client, Kind::ReplicaSet, |rs| Replicated::from(rs), pods).await;
}

/// Runs the ReplicationController controller.
pub(crate) async fn run_replicationcontrollers(client: kube::Client, pods: crate::informers::Feed<Pod>) {
    run::<ReplicationController>(client, Kind::ReplicationController, |rc| Replicated::from(rc), pods).await;
}

/// Pod creations and deletions a sync made that the watch has not shown yet.
#[derive(Default)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Records what a sync of `key` (namespace/name) created (pod names) and deleted (pod uids).
    pub(crate) fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(
            key.to_string(),
            Pending {
                created: created.into_iter().collect(),
                deleted: deleted.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// Whether the watch (`pods`) shows everything `key`'s last sync did, or it timed out.
    pub(crate) fn satisfied(&self, key: &str, namespace: &str, pods: &Store<Pod>) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get_mut(key) else { return true };
        p.created.retain(|name| pods.get(&ObjectRef::new(name).within(namespace)).is_none());
        p.deleted.retain(|uid| {
            pods.find(|pod| pod.metadata.uid.as_deref() == Some(uid.as_str()) && !pods::is_terminating(pod)).is_some()
        });
        let done = (p.created.is_empty() && p.deleted.is_empty()) || p.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            pending.remove(key);
        }
        done
    }
}

struct Ctx<K: Resource<DynamicType = ()> + 'static> {
    client: kube::Client,
    kind: Kind,
    convert: fn(&K) -> Replicated,
    pods: crate::informers::Cache<Pod>,
    expectations: Expectations,
    events: Events,
}

async fn run<K>(client: kube::Client, kind: Kind, convert: fn(&K) -> Replicated, pods: crate::informers::Feed<Pod>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let pods_reader = pods.store.clone();
    let pod_events = pods.shared();
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let owners = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        kind,
        convert,
        pods: pods_reader,
        expectations: Expectations::default(),
        events: Events::new(client, kind.controller()),
    });
    let (reconcile, error_policy) = crate::backoff::wrap(kind.controller(), reconcile::<K>);
    controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            pods::owners_of(&owners, kind.api_version(), kind.kind(), |o| convert(o).selector, &pod)
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile<K>(obj: Arc<K>, ctx: Arc<Ctx<K>>) -> crate::Result<Action>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    ctx.pods.wait_until_ready().await;
    let owner = (ctx.convert)(&obj);
    let ns = owner.meta.namespace.clone().unwrap_or_default();
    let name = owner.meta.name.clone().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let claims = sync::claim(&owner, all.iter().map(Arc::as_ref));

    let ours = pods::owner_ref(ctx.kind.api_version(), ctx.kind.kind(), &owner.meta);
    let owned = adopt_and_release(&pod_api, claims, &ours).await?;

    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| pods::is_active(p)).collect();
    let mut failure = None;
    let synced = ctx.expectations.satisfied(&key, &ns, &ctx.pods);
    if synced && owner.meta.deletion_timestamp.is_none() {
        match sync::plan(owner.replicas, &active) {
            Plan::Create(n) => failure = create_pods(&ctx, &obj, &owner, &pod_api, &key, n).await,
            Plan::Delete(victims) => {
                failure = delete_pods(&ctx, &obj, &pod_api, &key, &victims).await;
                let gone: HashSet<&str> = victims.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
                active.retain(|p| !gone.contains(p.metadata.uid.as_deref().unwrap_or_default()));
            }
            Plan::Nothing => {}
        }
    }

    // Status from what the watch shows (new pods are counted when they appear).
    let now = Timestamp::now();
    let status = sync::status(&owner, &active, now, failure.as_ref());
    if status != owner.status {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(sync::status_patch(&status))).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(f) = failure {
        return Err(crate::Error::Sync(f.message));
    }
    Ok(match pods::next_available_in(&active, owner.min_ready_seconds, now) {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// Adopts the orphans of `claims` and releases what no longer matches, each write guarded by
/// the object's resourceVersion; returns the owned objects, adopted ones included.
pub(crate) async fn adopt_and_release<'a, T>(
    api: &Api<T>,
    claims: pods::Claims<'a, T>,
    ours: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> crate::Result<Vec<&'a T>>
where
    T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut owned = claims.owned;
    for obj in claims.adopt {
        let meta = obj.meta();
        let mut refs = meta.owner_references.clone().unwrap_or_default();
        refs.push(ours.clone());
        let patch = json!({ "metadata": { "ownerReferences": refs, "resourceVersion": meta.resource_version } });
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => owned.push(obj),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for obj in claims.release {
        let meta = obj.meta();
        let refs: Vec<_> = meta.owner_references.iter().flatten().filter(|r| r.uid != ours.uid).cloned().collect();
        let refs = if refs.is_empty() { serde_json::Value::Null } else { json!(refs) };
        let patch = json!({ "metadata": { "ownerReferences": refs, "resourceVersion": meta.resource_version } });
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(owned)
}

/// Creates `n` pods in slow-start batches; returns the failure that stopped it, if any.
async fn create_pods<K: Resource<DynamicType = ()>>(
    ctx: &Ctx<K>,
    obj: &K,
    owner: &Replicated,
    api: &Api<Pod>,
    key: &str,
    n: usize,
) -> Option<Failure> {
    let template = owner.template.as_ref()?;
    let prefix = owner.meta.name.clone().unwrap_or_default();
    let pod = pods::pod_from_template(
        template,
        pods::owner_ref(ctx.kind.api_version(), ctx.kind.kind(), &owner.meta),
        &prefix,
    );
    let regarding = obj.object_ref(&());
    let mut created = Vec::new();
    let mut failure = None;
    for batch in pods::slow_start_batches(n) {
        let results =
            futures::future::join_all((0..batch).map(|_| async { api.create(&PostParams::default(), &pod).await }))
                .await;
        for r in results {
            match r {
                Ok(p) => {
                    let pod_name = p.name_any();
                    let events = ctx.events.clone();
                    let regarding = regarding.clone();
                    tokio::spawn(async move {
                        events.normal(&regarding, "SuccessfulCreate", format!("Created pod: {pod_name}")).await;
                    });
                    created.push(p.name_any());
                }
                // The namespace is being deleted: nothing to report.
                Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("terminat") => {}
                Err(e) => {
                    let message = format!("Error creating: {e}");
                    ctx.events.warning(&regarding, "FailedCreate", message.clone()).await;
                    failure.get_or_insert(Failure { reason: "FailedCreate", message });
                }
            }
        }
        if failure.is_some() {
            break;
        }
    }
    ctx.expectations.expect(key, created, vec![]);
    failure
}

/// Deletes `victims`; returns the first failure, if any.
async fn delete_pods<K: Resource<DynamicType = ()>>(
    ctx: &Ctx<K>,
    obj: &K,
    api: &Api<Pod>,
    key: &str,
    victims: &[&Pod],
) -> Option<Failure> {
    let regarding = obj.object_ref(&());
    let params = DeleteParams::default();
    let results = futures::future::join_all(
        victims.iter().map(|p| api.delete(p.metadata.name.as_deref().unwrap_or_default(), &params)),
    )
    .await;
    let mut deleted = Vec::new();
    let mut failure = None;
    for (pod, r) in victims.iter().zip(results) {
        let name = pod.name_any();
        match r {
            Ok(_) => {
                deleted.push(pod.metadata.uid.clone().unwrap_or_default());
                let events = ctx.events.clone();
                let regarding = regarding.clone();
                tokio::spawn(async move {
                    events.normal(&regarding, "SuccessfulDelete", format!("Deleted pod: {name}")).await;
                });
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let message = format!("Error deleting: {e}");
                ctx.events.warning(&regarding, "FailedDelete", message.clone()).await;
                failure.get_or_insert(Failure { reason: "FailedDelete", message });
            }
        }
    }
    ctx.expectations.expect(key, vec![], deleted);
    failure
}
