//! Watches of nodes, pods, namespaces, volumes, claims, storage classes, disruption budgets,
//! and the services, replication controllers, replica sets and stateful sets that
//! PodTopologySpread's default constraints select pods by,
//! applied to the cache and the queue as events arrive (kube-runtime watchers: one LIST,
//! then WATCH, re-listing with back-off after errors). Objects are kept once, behind an
//! `Arc`, without their managedFields.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use crate::Shared;
use crate::cache::{Cache, NodeChange, PodInfo};
use crate::hints::{ClusterEvent, NodeFacts, Room};

/// Starts the watches; the returned future completes once nodes and pods are listed.
pub fn start(
    tasks: &mut tokio::task::JoinSet<()>,
    client: kube::Client,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + use<> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(2);
    let s = shared.clone();
    let t = tx.clone();
    tasks.spawn(watch(Api::<Node>::all(client.clone()), move |e| on_node(&s, e, &t)));
    let s = shared.clone();
    tasks.spawn(watch(Api::<Pod>::all(client.clone()), move |e| on_pod(&s, e, &tx)));
    let s = shared.clone();
    tasks.spawn(watch(Api::<PersistentVolumeClaim>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.claims, true, Some(ClusterEvent::Storage))
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<PersistentVolume>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.volumes, false, Some(ClusterEvent::Storage))
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<StorageClass>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.storage_classes, false, Some(ClusterEvent::Storage))
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<Namespace>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.namespaces, false, Some(ClusterEvent::Namespace))
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<Service>::all(client.clone()), move |e| keyed(&s, e, |c| &mut c.services, true, None)));
    let s = shared.clone();
    tasks.spawn(watch(Api::<ReplicationController>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.replication_controllers, true, None)
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<ReplicaSet>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.replica_sets, true, None)
    }));
    let s = shared.clone();
    tasks.spawn(watch(Api::<StatefulSet>::all(client.clone()), move |e| {
        keyed(&s, e, |c| &mut c.stateful_sets, true, None)
    }));
    let s = shared;
    tasks.spawn(watch(Api::<PodDisruptionBudget>::all(client), move |e| keyed(&s, e, |c| &mut c.budgets, true, None)));
    async move {
        for _ in 0..2 {
            if rx.recv().await.is_none() {
                return;
            }
        }
    }
}

async fn watch<K, F>(api: Api<K>, mut on: F)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: FnMut(Event<K>) + Send,
{
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            // managedFields are dropped, as kube-scheduler's informers do: the scheduler
            // never reads them, and they are often the largest part of a small object.
            Ok(e) => on(e.modify(|o| o.meta_mut().managed_fields = None)),
            Err(e) => tracing::warn!(error = %e, "scheduler watch error"),
        }
    }
}

fn on_node(shared: &Shared, event: Event<Node>, synced: &tokio::sync::mpsc::Sender<()>) {
    match event {
        Event::Apply(node) | Event::InitApply(node) => {
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut cache = shared.cache();
            let old = cache.node(&name).filter(|n| n.node.is_some()).map(NodeFacts::of);
            let change = cache.upsert_node(Arc::new(node));
            let new = if change == NodeChange::Unchanged { None } else { cache.node(&name).map(NodeFacts::of) };
            drop(cache);
            match (change, old, new) {
                (NodeChange::Updated, Some(old), Some(new)) => {
                    shared.queue.on_event(ClusterEvent::NodeUpdated { old, new })
                }
                (NodeChange::Added | NodeChange::Updated, _, Some(new)) => {
                    shared.queue.on_event(ClusterEvent::NodeAdded(new))
                }
                _ => {}
            }
        }
        Event::Delete(node) => shared.cache().remove_node(node.metadata.name.as_deref().unwrap_or("")),
        Event::InitDone => {
            let _ = synced.try_send(());
        }
        Event::Init => {}
    }
}

fn on_pod(shared: &Shared, event: Event<Pod>, synced: &tokio::sync::mpsc::Sender<()>) {
    let (pod, deleted) = match event {
        Event::Apply(p) | Event::InitApply(p) => (p, false),
        Event::Delete(p) => (p, true),
        Event::InitDone => {
            let _ = synced.try_send(());
            return;
        }
        Event::Init => return,
    };
    let info = Arc::new(PodInfo::new(Arc::new(pod)));
    let spec = info.spec();
    let assigned = spec.node_name.as_deref().is_some_and(|n| !n.is_empty());
    let phase = info.pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    let terminal = matches!(phase, "Succeeded" | "Failed");
    if deleted || (assigned && terminal) {
        let freed = {
            let mut cache = shared.cache();
            cache.clear_nomination(&info.key);
            if deleted {
                cache.unmark_victim(&info.key);
            }
            let node = cache.placement(&info.key).map(|(_, node)| node.to_string());
            node.filter(|_| cache.remove_pod(&info.key)).map(|node| {
                let room = cache.node(&node).filter(|n| n.node.is_some()).map(Room::of);
                (node, room)
            })
        };
        shared.queue.delete(&info.key);
        if let Some((node, room)) = freed {
            shared.queue.on_event(ClusterEvent::PodDeleted { pod: info, node, room });
        }
        return;
    }
    if assigned {
        let old = {
            let mut cache = shared.cache();
            let old = cache.placement(&info.key).map(|(p, _)| p.clone());
            cache.add_pod(info.clone());
            old
        };
        shared.queue.delete(&info.key);
        let node = spec.node_name.clone().unwrap_or_default();
        shared.queue.on_event(ClusterEvent::PodAssigned { pod: info, old, node });
        return;
    }
    let ours = shared.scheduler_names.iter().any(|n| Some(n.as_str()) == spec.scheduler_name.as_deref())
        || (spec.scheduler_name.is_none()
            && shared.scheduler_names.iter().any(|n| n == crate::config::DEFAULT_SCHEDULER_NAME));
    if terminal || info.terminating() || !ours {
        shared.queue.delete(&info.key);
        return;
    }
    shared.queue.add_or_update(info);
}

/// Keeps a map of objects by `namespace/name` (or name) current.
fn keyed<K: kube::Resource>(
    shared: &Shared,
    event: Event<K>,
    map: impl Fn(&mut Cache) -> &mut std::collections::HashMap<String, Arc<K>>,
    namespaced: bool,
    requeue: Option<ClusterEvent>,
) {
    let key = |o: &K| {
        let name = o.meta().name.clone().unwrap_or_default();
        if namespaced { format!("{}/{name}", o.meta().namespace.as_deref().unwrap_or("")) } else { name }
    };
    match event {
        Event::Apply(o) | Event::InitApply(o) => {
            let mut cache = shared.cache();
            map(&mut cache).insert(key(&o), Arc::new(o));
            drop(cache);
            // A new claim, volume, class or namespace may unblock pending pods.
            if let Some(event) = requeue {
                shared.queue.on_event(event);
            }
        }
        Event::Delete(o) => {
            map(&mut shared.cache()).remove(&key(&o));
        }
        Event::Init | Event::InitDone => {}
    }
}
