//! The berth scheduler: assigns pending pods to nodes as Kubernetes' kube-scheduler does.
//!
//! Watches ([`informers`]) keep a node-state [`cache`] and the scheduling [`queue`]
//! current; one scheduling thread pops pods one at a time and runs the [`framework`]
//! (filter and score [`plugins`], weights from the [`config`] profile), falling back to
//! [`preemption`]; the chosen node is assumed in the cache while [`bind`] posts the
//! binding, status and events over HTTP. Only the API is touched: no store access.

pub mod bind;
pub mod cache;
pub mod config;
pub mod framework;
pub mod informers;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod selectors;

use std::sync::{Arc, Mutex};

pub use config::SchedulerConfig;

use crate::bind::Action;
use crate::cache::Cache;
use crate::framework::{Cycle, Decision, Profile};
use crate::queue::Queue;

/// Scheduler errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is unreadable or invalid.
    #[error("scheduler config: {0}")]
    Config(String),
    /// A task of the scheduler ended unexpectedly.
    #[error("scheduler task ended: {0}")]
    Stopped(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// State shared by the watch handlers, the scheduling thread and the binders.
pub struct Shared {
    /// The node-state cache.
    pub cache: Mutex<Cache>,
    /// The scheduling queue.
    pub queue: Queue,
    /// Scheduler names this scheduler serves (one per profile).
    pub scheduler_names: Vec<String>,
}

impl Shared {
    /// Locks the cache (a poisoned lock is taken over: the cache has no invariants a
    /// panicking reader could break).
    pub fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the queue when `run` is dropped, which ends the scheduling thread.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.queue.close();
    }
}

/// Runs the scheduler until the returned future is dropped (or a task fails).
pub async fn run(client: kube::Client, config: SchedulerConfig) -> Result<()> {
    let profiles = config.profiles()?;
    let shared = Arc::new(Shared {
        cache: Mutex::new(Cache::new()),
        queue: Queue::new(),
        scheduler_names: profiles.iter().map(|p| p.scheduler_name.clone()).collect(),
    });
    let _close = CloseOnDrop(shared.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let synced = informers::start(&mut tasks, client.clone(), shared.clone());
    synced.await;
    tracing::info!(nodes = shared.cache().node_count(), "scheduler caches synced");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let loop_shared = shared.clone();
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || scheduling_loop(&loop_shared, &profiles, &tx))
        .map_err(|e| Error::Stopped(format!("spawning the scheduling thread: {e}")))?;
    tasks.spawn(bind::act(client, shared.clone(), rx));
    match tasks.join_next().await {
        Some(Ok(())) | None => Err(Error::Stopped("a scheduler task returned".into())),
        Some(Err(e)) => Err(Error::Stopped(e.to_string())),
    }
}

/// Pops pods and decides where each goes, until the queue is closed.
fn scheduling_loop(shared: &Shared, profiles: &[Profile], tx: &tokio::sync::mpsc::UnboundedSender<Action>) {
    let mut cycle = Cycle::default();
    while let Some(popped) = shared.queue.pop() {
        let info = shared.queue.latest(&popped.info.key).unwrap_or(popped.info);
        let key = info.key.clone();
        let name = info.spec().scheduler_name.as_deref().unwrap_or(config::DEFAULT_SCHEDULER_NAME);
        let Some(profile) = profiles.iter().find(|p| p.scheduler_name == name) else {
            shared.queue.done(&key);
            continue;
        };
        if shared.queue.is_gone(&key) {
            shared.queue.done(&key);
            continue;
        }
        let mut cache = shared.cache();
        if cache.has_pod(&key) {
            drop(cache);
            shared.queue.done(&key);
            continue;
        }
        match cycle.schedule(profile, &cache, &info) {
            Decision::Node(node) => {
                cache.assume(info.clone(), &node);
                drop(cache);
                let _ = tx.send(Action::Bind { info, node });
            }
            Decision::Unschedulable(diagnosis) if diagnosis.num_all_nodes == 0 => {
                drop(cache);
                shared.queue.unschedulable(&key);
                let message = "no nodes available to schedule pods".to_string();
                let _ = tx.send(Action::Unschedulable {
                    info,
                    message,
                    victims: None,
                    profile: profile.scheduler_name.clone(),
                });
            }
            Decision::Unschedulable(diagnosis) => {
                let mut message = diagnosis.message();
                let victims = match preemption::preempt(profile, &cache, &info, &diagnosis) {
                    Ok(v) => {
                        cache.nominate(&info, &v.node);
                        Some(v)
                    }
                    Err(why) => {
                        message.push(' ');
                        message.push_str(&why);
                        None
                    }
                };
                drop(cache);
                shared.queue.unschedulable(&key);
                let _ =
                    tx.send(Action::Unschedulable { info, message, victims, profile: profile.scheduler_name.clone() });
            }
        }
    }
}
