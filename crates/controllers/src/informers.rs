//! Shared informers: one watch per kind for all the controllers that follow it, as
//! kube-controller-manager's SharedInformerFactory does.
//!
//! Ten controllers follow Pods. With a watch each, every Pod write was sent, decoded and
//! cached ten times in this process; measured on a release build, that was 1.7 ms of
//! server CPU per Pod create, five times the API server's own work for it. A [`Shared`]
//! decodes each event once, keeps one cache ([`Store`]) and hands every subscriber the
//! changed object behind an `Arc`.
//!
//! A shared cache is waited on by many tasks at once, which kube-runtime's
//! `Store::wait_until_ready` does not support: all clones of a `Store` share one oneshot
//! receiver, which keeps only the last waker registered, so of several waiters all but one
//! may sleep forever (a ReplicaSet controller that took over leadership never synced). A
//! [`Cache`] carries a readiness signal any number of tasks can wait on; clippy.toml forbids
//! calling `Store::wait_until_ready` anywhere else.

use std::fmt::Debug;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use crate::lean::Lean;

/// A cache (kube-runtime's [`Store`], reachable through `Deref`) and whether its first list
/// has arrived, which any number of tasks can wait for.
pub(crate) struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: watch::Receiver<bool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache { store: self.store.clone(), synced: self.synced.clone() }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Deref for Cache<K> {
    type Target = Store<K>;
    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Cache<K> {
    /// Wraps a store filled by someone else's reflector (a controller's own). One spawned
    /// task is the store's only `wait_until_ready` waiter and passes readiness on.
    pub(crate) fn of(store: Store<K>) -> Cache<K> {
        let (tx, synced) = watch::channel(false);
        let waiter = store.clone();
        tokio::spawn(async move {
            #[allow(clippy::disallowed_methods)] // the one waiter; see the module doc
            if waiter.wait_until_ready().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Cache { store, synced }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// Waits until the first list has been applied; returns at once if the writer is gone
    /// without one (as `Store::wait_until_ready` errs then).
    pub(crate) async fn wait_until_ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|ready| *ready).await;
    }
}

/// One kind's shared watch, cache and subscribers. Take every [`Shared::feed`] and
/// [`Shared::store`] before running [`Shared::run`]: subscribers added later are not fed.
pub(crate) struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    cache: Cache<K>,
    synced: watch::Sender<bool>,
    state: Mutex<State<K>>,
}

struct State<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Option<reflector::store::Writer<K>>,
    subscribers: Vec<mpsc::UnboundedSender<Arc<K>>>,
    used: bool,
}

/// What a controller gets from a [`Shared`]: the cache, and the objects that changed
/// (added, modified, deleted, or listed at a (re)start) in watch order.
pub(crate) struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub(crate) store: Cache<K>,
    pub(crate) changed: mpsc::UnboundedReceiver<Arc<K>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Feed<K> {
    /// The changed objects, shared: the input of a controller's `watches_shared_stream` or
    /// `owns_shared_stream`. Every subscriber gets the one object decoded for the event (a
    /// stream of owned objects would copy the whole object once per subscriber: eleven
    /// controllers follow Pods, and those copies were most of their share of a Pod write).
    pub(crate) fn shared(self) -> impl Stream<Item = Arc<K>> + Send + 'static
    where
        K: Send + Sync,
    {
        futures::stream::unfold(self.changed, |mut rx| async move {
            let obj = rx.recv().await?;
            Some((obj, rx))
        })
    }
}

impl<K> Shared<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub(crate) fn new() -> Shared<K> {
        let writer = reflector::store::Writer::<K>::default();
        let (synced, ready) = watch::channel(false);
        Shared {
            cache: Cache { store: writer.as_reader(), synced: ready },
            synced,
            state: Mutex::new(State { writer: Some(writer), subscribers: vec![], used: false }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared cache alone, for a controller that only reads it.
    pub(crate) fn store(&self) -> Cache<K> {
        self.state().used = true;
        self.cache.clone()
    }

    /// The cache and a stream of the objects that change.
    pub(crate) fn feed(&self) -> Feed<K> {
        let (tx, changed) = mpsc::unbounded_channel();
        let mut state = self.state();
        state.used = true;
        state.subscribers.push(tx);
        Feed { store: self.cache.clone(), changed }
    }

    /// Whether any controller took the store or a feed (else there is nothing to run).
    pub(crate) fn used(&self) -> bool {
        self.state().used
    }

    /// Watches every `K` for as long as the future is polled (kube-runtime's watcher re-lists
    /// after errors, with the controllers' [`crate::backoff::watch`] back-off), updating the
    /// cache and then feeding every subscriber. Objects are decoded without their
    /// managedFields ([`Lean`]): no controller reads them.
    pub(crate) async fn run(&self, client: kube::Client) {
        let api = Api::<Lean<K>>::all(client);
        let events =
            watcher(api, watcher::Config::default()).backoff(crate::backoff::watch()).map_ok(|event| match event {
                watcher::Event::Apply(Lean(o)) => watcher::Event::Apply(o),
                watcher::Event::InitApply(Lean(o)) => watcher::Event::InitApply(o),
                watcher::Event::Delete(Lean(o)) => watcher::Event::Delete(o),
                watcher::Event::Init => watcher::Event::Init,
                watcher::Event::InitDone => watcher::Event::InitDone,
            });
        self.fan_out(events).await;
    }

    async fn fan_out(&self, events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>) {
        let (mut writer, subscribers) = {
            let mut state = self.state();
            let Some(writer) = state.writer.take() else {
                tracing::error!(kind = %K::kind(&()), "a shared informer was run twice");
                return;
            };
            (writer, std::mem::take(&mut state.subscribers))
        };
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "shared watch failed; retrying");
                    continue;
                }
            };
            // The cache first, so that a subscriber woken by the object finds it there (as
            // kube-runtime's `reflect` orders it).
            writer.apply_watcher_event(&event);
            let obj = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => Arc::new(o),
                watcher::Event::InitDone => {
                    if !self.synced.send_replace(true) {
                        tracing::info!(kind = %K::kind(&()), objects = self.cache.len(), "shared informer synced");
                    }
                    continue;
                }
                watcher::Event::Init => continue,
            };
            for tx in &subscribers {
                // A subscriber that stopped has dropped its receiver: nothing to do.
                let _ = tx.send(obj.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn names(rx: &mut mpsc::UnboundedReceiver<Arc<Pod>>) -> Vec<String> {
        let mut out = vec![];
        while let Ok(p) = rx.try_recv() {
            out.push(format!("{}@{}", p.metadata.name.clone().unwrap(), p.metadata.resource_version.clone().unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_change_after_the_cache_has_it() {
        let shared = Shared::<Pod>::new();
        let mut a = shared.feed();
        let mut b = shared.feed();
        let store = shared.store();
        assert!(shared.used());
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(pod("p1", "1"))),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Apply(pod("p2", "2"))),
            Ok(watcher::Event::Apply(pod("p1", "3"))),
            Ok(watcher::Event::Delete(pod("p2", "4"))),
        ]);
        shared.fan_out(events).await;
        for feed in [&mut a, &mut b] {
            assert_eq!(names(&mut feed.changed), ["p1@1", "p2@2", "p1@3", "p2@4"]);
        }
        let cached: Vec<_> = store.state().iter().map(|p| p.metadata.resource_version.clone().unwrap()).collect();
        assert_eq!(cached, ["3"], "p1 at its last version; p2 deleted");
        store.wait_until_ready().await;
    }

    /// Eight tasks waiting, each on its own clone of `cache`.
    fn waiters(cache: &Cache<Pod>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..8)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.wait_until_ready().await })
            })
            .collect()
    }

    async fn all_wake(waiters: Vec<tokio::task::JoinHandle<()>>) {
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
                .await
                .expect("a waiter never woke")
                .unwrap();
        }
    }

    /// Many tasks waiting for one shared cache all wake when it syncs (kube-runtime's
    /// `Store::wait_until_ready` wakes only the last of them: see the module doc).
    #[tokio::test]
    async fn every_waiter_wakes_when_the_cache_syncs() {
        let shared = Arc::new(Shared::<Pod>::new());
        let waiters = waiters(&shared.store());
        // Let every waiter register before the list arrives.
        tokio::task::yield_now().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let runner = tokio::spawn({
            let shared = shared.clone();
            async move {
                let events = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
                shared.fan_out(events).await
            }
        });
        for event in [watcher::Event::Init, watcher::Event::InitApply(pod("p", "1")), watcher::Event::InitDone] {
            tx.send(Ok(event)).unwrap();
        }
        all_wake(waiters).await;
        assert_eq!(shared.store().len(), 1);
        drop(tx);
        runner.await.unwrap();
    }

    /// The same for a controller's own store wrapped by [`Cache::of`].
    #[tokio::test]
    async fn a_wrapped_store_wakes_every_waiter() {
        let mut writer = reflector::store::Writer::<Pod>::default();
        let cache = Cache::of(writer.as_reader());
        let waiters = waiters(&cache);
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        all_wake(waiters).await;
    }

    #[tokio::test]
    async fn a_feed_ends_when_its_controller_is_gone_without_stopping_the_others() {
        let shared = Shared::<Pod>::new();
        let gone = shared.feed();
        let mut kept = shared.feed();
        drop(gone);
        shared.fan_out(futures::stream::iter(vec![Ok(watcher::Event::Apply(pod("p", "1")))])).await;
        assert_eq!(names(&mut kept.changed), ["p@1"]);
        // Running again is refused (the writer was taken): nothing is fed twice.
        shared.fan_out(futures::stream::iter(vec![Ok(watcher::Event::Apply(pod("p", "2")))])).await;
        assert!(names(&mut kept.changed).is_empty());
    }

    #[test]
    fn an_unused_informer_says_so() {
        assert!(!Shared::<Pod>::new().used());
    }
}
