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
pub mod hints;
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
    let cycle = config.cycle();
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
        .spawn(move || scheduling_loop(&loop_shared, &profiles, cycle, &tx))
        .map_err(|e| Error::Stopped(format!("spawning the scheduling thread: {e}")))?;
    tasks.spawn(bind::act(client, shared.clone(), rx));
    match tasks.join_next().await {
        Some(Ok(())) | None => Err(Error::Stopped("a scheduler task returned".into())),
        Some(Err(e)) => Err(Error::Stopped(e.to_string())),
    }
}

/// Where the scheduling thread's time goes, logged at debug level every few seconds
/// (`BERTH_LOG=berth_scheduler=debug`): cheap enough to keep on.
#[derive(Default)]
struct LoopProfile {
    cycles: u64,
    scheduled: u64,
    waiting: std::time::Duration,
    locking: std::time::Duration,
    deciding: std::time::Duration,
    preempting: std::time::Duration,
    since: Option<std::time::Instant>,
}

impl LoopProfile {
    fn report_every(&mut self, period: std::time::Duration) {
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < period {
            return;
        }
        tracing::debug!(
            cycles = self.cycles,
            scheduled = self.scheduled,
            waiting_ms = self.waiting.as_millis() as u64,
            locking_ms = self.locking.as_millis() as u64,
            deciding_ms = self.deciding.as_millis() as u64,
            preempting_ms = self.preempting.as_millis() as u64,
            over_ms = since.elapsed().as_millis() as u64,
            "scheduling loop profile"
        );
        *self = LoopProfile::default();
    }
}

/// Pops pods and decides where each goes, until the queue is closed.
fn scheduling_loop(
    shared: &Shared,
    profiles: &[Profile],
    mut cycle: Cycle,
    tx: &tokio::sync::mpsc::UnboundedSender<Action>,
) {
    let mut prof = LoopProfile::default();
    let profiling = tracing::enabled!(tracing::Level::DEBUG);
    loop {
        if profiling {
            prof.report_every(std::time::Duration::from_secs(2));
        }
        let t0 = std::time::Instant::now();
        let Some(popped) = shared.queue.pop() else {
            break;
        };
        prof.waiting += t0.elapsed();
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
        let t1 = std::time::Instant::now();
        let mut cache = shared.cache();
        prof.locking += t1.elapsed();
        prof.cycles += 1;
        if cache.has_pod(&key) {
            drop(cache);
            shared.queue.done(&key);
            continue;
        }
        let t2 = std::time::Instant::now();
        let decision = cycle.schedule(profile, &cache, &info);
        prof.deciding += t2.elapsed();
        match decision {
            Decision::Node(node) => {
                prof.scheduled += 1;
                let volumes = plugins::volume_binding::chosen_volumes(&info, &cache, &node);
                cache.assume(info.clone(), &node);
                if !volumes.is_empty() {
                    cache.assume_volumes(&key, volumes);
                }
                drop(cache);
                let _ = tx.send(Action::Bind { info, node });
            }
            Decision::Unschedulable(diagnosis) if diagnosis.num_all_nodes == 0 => {
                drop(cache);
                shared.queue.unschedulable(&key, hints::Rejected::default());
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
                let t3 = std::time::Instant::now();
                let preempted = preemption::preempt(profile, &cache, &info, &diagnosis, cycle.random());
                prof.preempting += t3.elapsed();
                let victims = match preempted {
                    Ok(v) => {
                        cache.nominate(info.clone(), &v.node);
                        cache.mark_victims(v.pods.iter().map(|p| p.key.as_str()));
                        Some(v)
                    }
                    Err(why) => {
                        message.push(' ');
                        message.push_str(&why);
                        None
                    }
                };
                let mut rejected = hints::Rejected::of(&diagnosis);
                rejected.waiting_on = preemption::waiting_on(&cache, &info).map(str::to_string);
                drop(cache);
                shared.queue.unschedulable(&key, rejected);
                let _ =
                    tx.send(Action::Unschedulable { info, message, victims, profile: profile.scheduler_name.clone() });
            }
        }
    }
}
