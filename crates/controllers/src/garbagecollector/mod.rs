//! Garbage collector: deletes objects whose owners are gone, as kube-controller-manager's
//! `garbagecollector` does.
//!
//! A metadata watch on every resource that supports list, watch and delete (found by
//! discovery, refreshed when CustomResourceDefinitions change) feeds an ownerReferences
//! [`graph::Graph`]. A work queue of UIDs then applies the three propagation policies:
//! Background (an object whose owners are all gone is deleted), Foreground (an owner with
//! the `foregroundDeletion` finalizer waits until its blocking dependents are gone) and
//! Orphan (an owner with the `orphan` finalizer has its references removed from its
//! dependents first). The decisions are pure functions in [`graph`]; this module does the IO.

mod graph;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ObjectMeta, PartialObjectMeta, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::core::DynamicResourceScope;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;
use tokio::sync::mpsc;

use crate::discovery::{Resource, Resources};
use graph::{FOREGROUND, Graph, Node, ORPHAN, OwnerState, Plan, Propagation};

/// Resources the collector does not watch: events churn and are never owned.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// How many queue items are processed at once.
const WORKERS: usize = 8;

/// The longest wait before an object whose processing failed is looked at again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What the collector reads of an object it watches: the metadata, without managedFields.
///
/// The watches are of whole objects (one encoding on the server, shared with every other
/// watcher of the kind). kube's `PartialObjectMeta` decodes them through a flattened field,
/// which makes serde buffer the spec and status of every object into a tree of values only to
/// drop it; this type skips them unread, and skips the managedFields ([`crate::lean`]).
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct Meta {
    #[serde(default, deserialize_with = "crate::lean::object_meta")]
    metadata: ObjectMeta,
}

impl kube::Resource for Meta {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    resources: Mutex<Option<Arc<Resources>>>,
    queue: mpsc::UnboundedSender<String>,
    queued: Mutex<HashSet<String>>,
    /// Failures in a row per object uid, for the retry back-off (forgotten on success).
    failures: Mutex<HashMap<String, u32>>,
}

pub(crate) async fn run(client: kube::Client) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gc = Arc::new(Collector {
        client,
        graph: Mutex::new(Graph::default()),
        resources: Mutex::new(None),
        queue: tx,
        queued: Mutex::new(HashSet::new()),
        failures: Mutex::new(HashMap::new()),
    });
    tokio::join!(gc.clone().discover_loop(), gc.work_loop(rx));
}

impl Collector {
    /// Re-runs discovery at start, when CRDs change and every 30 s; watches new resources
    /// and forgets removed ones.
    async fn discover_loop(self: Arc<Self>) {
        let crds: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(self.client.clone());
        let mut crd_events = watcher(crds, watcher::Config::default()).backoff(crate::backoff::watch()).boxed();
        let mut watched: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            match Resources::discover(self.client.clone()).await {
                Ok(found) => {
                    let found = Arc::new(found);
                    *lock(&self.resources) = Some(found.clone());
                    let want: HashMap<String, Resource> = found
                        .all()
                        .into_iter()
                        .filter(|r| r.supports(&["list", "watch", "delete"]))
                        .filter(|r| !IGNORED.contains(&(r.api.group.as_str(), r.api.plural.as_str())))
                        .map(|r| (r.key(), r))
                        .collect();
                    let gone: Vec<String> = watched.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
                    for key in gone {
                        if let Some(task) = watched.remove(&key) {
                            task.abort();
                        }
                        let touched = lock(&self.graph).remove_resource(&key);
                        self.enqueue(touched);
                    }
                    for (key, res) in want {
                        if let std::collections::hash_map::Entry::Vacant(slot) = watched.entry(key) {
                            tracing::debug!(resource = %slot.key(), "garbage collector: watching");
                            slot.insert(tokio::spawn(self.clone().watch_resource(Arc::new(res))));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
            }
            tokio::select! {
                _ = crd_events.next() => {
                    // Let a burst of CRD changes settle, then rediscover once.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while let Some(Some(_)) = crd_events.next().now_or_never() {}
                }
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    /// Follows one resource's objects into the graph.
    async fn watch_resource(self: Arc<Self>, res: Arc<Resource>) {
        let api: Api<Meta> = Api::all_with(self.client.clone(), &res.api);
        let mut events = watcher(api, watcher::Config::default()).backoff(crate::backoff::watch()).boxed();
        let key = res.key();
        let mut seen: Option<BTreeSet<String>> = None;
        while let Some(event) = events.next().await {
            let touched = match event {
                Ok(Event::Init) => {
                    seen = Some(BTreeSet::new());
                    Vec::new()
                }
                Ok(Event::InitApply(obj)) => {
                    if let (Some(seen), Some(uid)) = (seen.as_mut(), obj.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    self.apply(&res, obj)
                }
                Ok(Event::InitDone) => {
                    let seen = seen.take().unwrap_or_default();
                    let mut g = lock(&self.graph);
                    let stale = g.stale(&key, &seen);
                    stale.iter().flat_map(|uid| g.remove(uid)).collect()
                }
                Ok(Event::Apply(obj)) => self.apply(&res, obj),
                Ok(Event::Delete(obj)) => match obj.metadata.uid {
                    Some(uid) => lock(&self.graph).remove(&uid),
                    None => Vec::new(),
                },
                Err(e) => {
                    tracing::debug!(resource = %key, error = %e, "garbage collector: watch error");
                    Vec::new()
                }
            };
            self.enqueue(touched);
        }
    }

    fn apply(&self, res: &Arc<Resource>, obj: Meta) -> Vec<String> {
        let meta = obj.metadata;
        let Some(uid) = meta.uid else { return Vec::new() };
        let node = Node {
            resource: res.clone(),
            namespace: meta.namespace,
            name: meta.name.unwrap_or_default(),
            uid,
            owners: meta.owner_references.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.unwrap_or_default(),
        };
        lock(&self.graph).upsert(node)
    }

    fn enqueue(&self, uids: Vec<String>) {
        let mut queued = lock(&self.queued);
        for uid in uids {
            if queued.insert(uid.clone()) {
                let _ = self.queue.send(uid);
            }
        }
    }

    async fn work_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<String>) {
        futures::stream::poll_fn(|cx| rx.poll_recv(cx))
            .for_each_concurrent(WORKERS, |uid| {
                let gc = self.clone();
                async move {
                    lock(&gc.queued).remove(&uid);
                    match gc.process(&uid).await {
                        Ok(()) => {
                            lock(&gc.failures).remove(&uid);
                        }
                        Err(e) => {
                            // Per-object exponential back-off from 5 ms as the controllers',
                            // capped at 5 s: the collector's failures wait on other watches
                            // and discovery catching up (a new resource kind, an owner not yet
                            // seen) with no event of the object itself to re-trigger it, so
                            // longer delays only leave garbage behind for longer.
                            let n = {
                                let mut failures = lock(&gc.failures);
                                let n = failures.entry(uid.clone()).or_insert(0);
                                *n = n.saturating_add(1);
                                *n
                            };
                            let wait = crate::backoff::delay(n).min(MAX_RETRY_DELAY);
                            tracing::debug!(uid, error = %e, ?wait, "garbage collector: retrying");
                            let gc = gc.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(wait).await;
                                gc.enqueue(vec![uid]);
                            });
                        }
                    }
                }
            })
            .await;
    }

    /// Looks at one object: an owner being deleted, or a dependent whose owners may be gone.
    async fn process(&self, uid: &str) -> Result<(), Error> {
        let (node, dependents) = {
            let g = lock(&self.graph);
            let Some(node) = g.get(uid) else { return Ok(()) };
            (node.clone(), g.dependents(uid).into_iter().cloned().collect::<Vec<Node>>())
        };
        if node.orphaning() {
            for dep in &dependents {
                self.remove_references(dep, std::slice::from_ref(&node.uid)).await?;
            }
            return self.remove_finalizer(&node, ORPHAN).await;
        }
        if node.deleting_dependents() {
            let refs: Vec<&Node> = dependents.iter().collect();
            if !graph::blocked(&node.uid, &refs) {
                self.remove_finalizer(&node, FOREGROUND).await?;
            }
            return Ok(());
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(());
        }
        let mut states = Vec::with_capacity(node.owners.len());
        for owner in &node.owners {
            states.push((owner.uid.clone(), self.owner_state(&node, owner).await?));
        }
        match graph::plan_dependent(&states, &node.finalizers, !dependents.is_empty()) {
            Plan::Keep => Ok(()),
            Plan::RemoveReferences(uids) => self.remove_references(&node, &uids).await,
            Plan::Delete(policy) => {
                tracing::debug!(kind = %node.resource.api.kind, name = %node.name, ?policy, "garbage collector: deleting");
                self.delete(&node, policy).await
            }
        }
    }

    /// The state of `dependent`'s owner `owner`: from the graph when it is there, else by
    /// a live read (the graph may lag behind, and must never cause a wrong deletion).
    async fn owner_state(&self, dependent: &Node, owner: &OwnerReference) -> Result<OwnerState, Error> {
        if let Some(n) = lock(&self.graph).get(&owner.uid) {
            return Ok(if n.deleting_dependents() { OwnerState::WaitingForDependents } else { OwnerState::Solid });
        }
        let resources = lock(&self.resources).clone().ok_or(Error::NotDiscovered)?;
        let Some(res) = resources.resolve(&owner.api_version, &owner.kind) else {
            return Err(Error::UnknownKind(owner.api_version.clone(), owner.kind.clone()));
        };
        let api: Api<DynamicObject> = match (res.namespaced, &dependent.namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &res.api),
            // A cluster-scoped dependent cannot have a namespaced owner: the reference is invalid.
            (true, None) => return Ok(OwnerState::Dangling),
            (false, _) => Api::all_with(self.client.clone(), &res.api),
        };
        Ok(match api.get_metadata_opt(&owner.name).await? {
            None => OwnerState::Dangling,
            Some(found) if found.metadata.uid.as_deref() != Some(owner.uid.as_str()) => OwnerState::Dangling,
            Some(found) => {
                let deleting = found.metadata.deletion_timestamp.is_some();
                let foreground = found.metadata.finalizers.unwrap_or_default().iter().any(|f| f == FOREGROUND);
                if deleting && foreground { OwnerState::WaitingForDependents } else { OwnerState::Solid }
            }
        })
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &node.resource.api),
            None => Api::all_with(self.client.clone(), &node.resource.api),
        }
    }

    async fn delete(&self, node: &Node, policy: Propagation) -> Result<(), Error> {
        let params = DeleteParams {
            propagation_policy: Some(match policy {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            }),
            preconditions: Some(Preconditions { uid: Some(node.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        ignore_gone(self.api(node).delete(&node.name, &params).await.map(|_| ()))
    }

    /// Drops `dependent`'s references to the owners `uids` (guarded by the UID and the old list).
    async fn remove_references(&self, dependent: &Node, uids: &[String]) -> Result<(), Error> {
        let left = graph::without(&dependent.owners, uids);
        if left.len() == dependent.owners.len() {
            return Ok(());
        }
        let mut ops = vec![
            json!({ "op": "test", "path": "/metadata/uid", "value": dependent.uid }),
            json!({ "op": "test", "path": "/metadata/ownerReferences", "value": dependent.owners }),
        ];
        ops.push(if left.is_empty() {
            json!({ "op": "remove", "path": "/metadata/ownerReferences" })
        } else {
            json!({ "op": "replace", "path": "/metadata/ownerReferences", "value": left })
        });
        self.json_patch(dependent, ops).await
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let ops = vec![
            json!({ "op": "test", "path": "/metadata/uid", "value": node.uid }),
            json!({ "op": "test", "path": "/metadata/finalizers", "value": node.finalizers }),
            json!({ "op": "replace", "path": "/metadata/finalizers", "value": left }),
        ];
        self.json_patch(node, ops).await
    }

    async fn json_patch(&self, node: &Node, ops: Vec<serde_json::Value>) -> Result<(), Error> {
        let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops)).map_err(Error::Patch)?;
        let result = self.api(node).patch(&node.name, &PatchParams::default(), &Patch::<()>::Json(patch)).await;
        ignore_gone(result.map(|_| ()))
    }
}

/// A 404 means the object went meanwhile: nothing left to do.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<(), Error> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map_err(Error::Api),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the collector retries an object.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovery has not run yet")]
    NotDiscovered,
    #[error("owner kind {1} of {0} is not served")]
    UnknownKind(String, String),
    #[error("building a JSON patch: {0}")]
    Patch(serde_json::Error),
}
