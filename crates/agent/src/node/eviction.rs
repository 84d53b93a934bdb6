//! Node-pressure eviction, as the kubelet's eviction manager: hard thresholds on
//! `memory.available`, `nodefs.available`, `nodefs.inodesFree`, `imagefs.available`,
//! `imagefs.inodesFree` and `pid.available` (`--eviction-hard`, the kubelet's syntax), the
//! node conditions they raise (MemoryPressure, DiskPressure, PIDPressure; kept True for the
//! pressure transition period after the last breach), and, while a memory or disk threshold
//! is breached, one pod evicted per interval, ranked as the kubelet ranks them: pods whose
//! usage exceeds their requests first, then by priority (lowest first), then by usage over
//! requests (largest first).
//!
//! `memory.available` is the kernel's `MemAvailable` (the kubelet computes it from the root
//! cgroup; in a container the root cgroup is not the machine's).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use super::Shared;
use super::stats::{self, FsStats, Snapshot};
use crate::hollow::config::parse_quantity;

/// How often thresholds are checked (the kubelet's housekeeping interval).
pub const MONITOR_EVERY: Duration = Duration::from_secs(10);

/// How long a pressure condition stays True after its last breach (the kubelet's
/// `--eviction-pressure-transition-period` default).
pub const TRANSITION_PERIOD: Duration = Duration::from_secs(300);

/// The priority from which pods are critical and never evicted (system-cluster-critical).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A measured eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `memory.available`.
    MemoryAvailable,
    /// `nodefs.available`.
    NodefsAvailable,
    /// `nodefs.inodesFree`.
    NodefsInodesFree,
    /// `imagefs.available`.
    ImagefsAvailable,
    /// `imagefs.inodesFree`.
    ImagefsInodesFree,
    /// `pid.available`.
    PidAvailable,
}

impl Signal {
    /// The signal's name in flags.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::NodefsInodesFree,
            Signal::ImagefsAvailable,
            Signal::ImagefsInodesFree,
            Signal::PidAvailable,
        ]
        .into_iter()
        .find(|sig| sig.name() == s)
    }

    /// The node condition the signal raises.
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::Memory,
            Signal::PidAvailable => Condition::Pid,
            _ => Condition::Disk,
        }
    }

    /// The resource named in the eviction message.
    fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable => "ephemeral-storage",
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }
}

/// A threshold's value: an absolute quantity or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Bytes (or inodes, or PIDs).
    Quantity(u64),
    /// Percent of the capacity.
    Percentage(f64),
}

/// One hard eviction threshold: breached while the signal is below the amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// The limit.
    pub amount: Amount,
}

impl Threshold {
    /// The threshold in absolute units for a resource of `capacity`.
    pub fn quantity(&self, capacity: u64) -> u64 {
        match self.amount {
            Amount::Quantity(q) => q,
            Amount::Percentage(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }

    fn describe(&self) -> String {
        match self.amount {
            Amount::Quantity(q) => format_quantity(self.signal, q),
            Amount::Percentage(p) => format!("{p}%"),
        }
    }
}

/// A bad `--eviction-hard` value.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid eviction threshold {input:?}: {reason}")]
pub struct ThresholdError {
    /// The offending part.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`); an empty value
/// gives no thresholds.
pub fn parse_thresholds(input: &str) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out: Vec<Threshold> = Vec::new();
    for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let err = |reason: &str| ThresholdError { input: part.to_string(), reason: reason.to_string() };
        let (name, value) = part.split_once('<').ok_or_else(|| err("expected SIGNAL<QUANTITY or SIGNAL<PERCENT%"))?;
        let signal = Signal::parse(name.trim()).ok_or_else(|| {
            err("unknown signal (memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available)")
        })?;
        let value = value.trim();
        let amount = match value.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| err("bad percentage"))?;
                if !(0.0..=100.0).contains(&p) || p.is_nan() {
                    return Err(err("a percentage must be within 0% and 100%"));
                }
                Amount::Percentage(p)
            }
            None => {
                let nano = parse_quantity(value).map_err(|e| err(&e.to_string()))?;
                if nano < 0 {
                    return Err(err("a quantity must not be negative"));
                }
                Amount::Quantity(
                    u64::try_from((nano + 999_999_999) / 1_000_000_000).map_err(|_| err("quantity too large"))?,
                )
            }
        };
        if out.iter().any(|t| t.signal == signal) {
            return Err(err("the signal is given twice"));
        }
        out.push(Threshold { signal, amount });
    }
    Ok(out)
}

/// The kubelet's default hard thresholds: `memory.available<100Mi, nodefs.available<10%,
/// imagefs.available<15%, nodefs.inodesFree<5%`.
pub fn default_thresholds() -> Vec<Threshold> {
    parse_thresholds("memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%")
        .expect("valid defaults")
}

/// A node condition eviction signals raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// MemoryPressure.
    Memory,
    /// DiskPressure.
    Disk,
    /// PIDPressure.
    Pid,
}

impl Condition {
    /// The condition's type, status, reason and message in the Node status.
    pub fn describe(self, pressure: bool) -> (&'static str, &'static str, &'static str, &'static str) {
        match (self, pressure) {
            (Condition::Memory, false) => {
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            }
            (Condition::Memory, true) => {
                ("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            }
            (Condition::Disk, false) => {
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            }
            (Condition::Disk, true) => ("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure"),
            (Condition::Pid, false) => {
                ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
            }
            (Condition::Pid, true) => {
                ("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            }
        }
    }
}

/// One signal's measurement: what is available and of what capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Available now.
    pub available: u64,
    /// The whole.
    pub capacity: u64,
}

/// The signals measured in a snapshot.
pub fn observe(snapshot: &Snapshot) -> HashMap<Signal, Observation> {
    let mut out = HashMap::new();
    let n = &snapshot.node;
    if let Some(available) = n.memory.available_bytes {
        let capacity = available + n.memory.working_set_bytes;
        out.insert(Signal::MemoryAvailable, Observation { available, capacity });
    }
    let mut fs = |fs: &Option<FsStats>, bytes: Signal, inodes: Signal| {
        if let Some(f) = fs {
            out.insert(bytes, Observation { available: f.available_bytes, capacity: f.capacity_bytes });
            if f.inodes > 0 {
                out.insert(inodes, Observation { available: f.inodes_free, capacity: f.inodes });
            }
        }
    };
    fs(&n.fs, Signal::NodefsAvailable, Signal::NodefsInodesFree);
    fs(&n.image_fs, Signal::ImagefsAvailable, Signal::ImagefsInodesFree);
    if n.max_pid > 0 {
        let available = n.max_pid.saturating_sub(n.num_of_running_processes);
        out.insert(Signal::PidAvailable, Observation { available, capacity: n.max_pid });
    }
    out
}

/// The thresholds breached by `observed`, with their observation.
pub fn breached(thresholds: &[Threshold], observed: &HashMap<Signal, Observation>) -> Vec<(Threshold, Observation)> {
    thresholds
        .iter()
        .filter_map(|t| {
            let o = observed.get(&t.signal)?;
            (o.available < t.quantity(o.capacity)).then_some((*t, *o))
        })
        .collect()
}

/// A pod considered for eviction.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The pod's uid.
    pub uid: String,
    /// Its priority (0 unless set).
    pub priority: i32,
    /// Its usage of the starved resource.
    pub usage: u64,
    /// Its request of that resource (0 without one).
    pub request: u64,
}

/// Orders candidates as the kubelet does: usage above requests first, then lower priority,
/// then larger usage over requests.
pub fn rank(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage > c.request;
        let over = |c: &Candidate| c.usage as i128 - c.request as i128;
        exceeds(b).cmp(&exceeds(a)).then(a.priority.cmp(&b.priority)).then(over(b).cmp(&over(a)))
    });
}

/// Pressure, transition times and the evictions the manager asked pod workers for.
#[derive(Default)]
pub struct State {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// When each condition's threshold was last seen breached.
    last_breach: HashMap<Condition, Instant>,
    /// Each condition's status and when it last changed.
    status: HashMap<Condition, (bool, Timestamp)>,
    /// Pods to evict (uid → message), taken by their workers.
    evict: HashMap<String, String>,
}

impl State {
    /// Each condition's pressure and last transition (None: unchanged since the start).
    pub fn conditions(&self) -> Vec<(Condition, bool, Option<Timestamp>)> {
        let inner = self.inner.lock().expect("eviction lock");
        [Condition::Memory, Condition::Disk, Condition::Pid]
            .into_iter()
            .map(|c| match inner.status.get(&c) {
                Some((p, at)) => (c, *p, Some(*at)),
                None => (c, false, None),
            })
            .collect()
    }

    /// The eviction message if the manager picked pod `uid` (taken once).
    pub(crate) fn take(&self, uid: &str) -> Option<String> {
        self.inner.lock().expect("eviction lock").evict.remove(uid)
    }

    /// Records the breached conditions now; returns whether any condition's status changed.
    fn update(&self, breached: &[Condition], now: Instant) -> bool {
        let mut inner = self.inner.lock().expect("eviction lock");
        for c in breached {
            inner.last_breach.insert(*c, now);
        }
        let mut changed = false;
        for c in [Condition::Memory, Condition::Disk, Condition::Pid] {
            let pressure = inner.last_breach.get(&c).is_some_and(|at| now.duration_since(*at) < TRANSITION_PERIOD);
            let was = inner.status.get(&c).is_some_and(|(p, _)| *p);
            if pressure != was {
                inner.status.insert(c, (pressure, Timestamp::now()));
                changed = true;
            }
        }
        changed
    }

    /// Whether pod `uid`'s eviction is not yet taken by its worker.
    fn pending(&self, uid: &str) -> bool {
        self.inner.lock().expect("eviction lock").evict.contains_key(uid)
    }

    fn request_eviction(&self, uid: String, message: String) {
        self.inner.lock().expect("eviction lock").evict.insert(uid, message);
    }
}

/// Checks the thresholds every [`MONITOR_EVERY`], keeps the node conditions, and evicts one
/// pod per interval while memory or disk is short.
pub(crate) async fn manager(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(MONITOR_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let snapshot = shared.stats.latest();
        if snapshot.time.is_none() {
            continue;
        }
        // Memory is measured now, not at the last sample: pressure moves fast.
        let mut snapshot = (*snapshot).clone();
        if let Some(m) = stats::node_memory() {
            snapshot.node.memory = m;
        }
        let observed = observe(&snapshot);
        let hits = breached(&shared.config.eviction_hard, &observed);
        let conditions: Vec<Condition> = hits.iter().map(|(t, _)| t.signal.condition()).collect();
        if shared.eviction.update(&conditions, Instant::now()) {
            super::register::post_node_status(&shared).await;
        }
        // PID pressure only sets the condition (as the kubelet: pods are not ranked by PIDs here).
        if let Some((threshold, observation)) = hits.into_iter().find(|(t, _)| t.signal != Signal::PidAvailable)
            && let Some(uid) = evict_one(&shared, &snapshot, threshold, observation).await
        {
            // As the kubelet, wait (up to 30 s) for the evicted pod's cleanup before looking
            // again, so one breach does not cost two pods.
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let latest = stats::sample(&shared).await;
                if shared.eviction.pending(&uid) || latest.pods.iter().any(|p| p.uid == uid) {
                    continue;
                }
                break;
            }
        }
    }
}

/// Picks the first pod by [`rank`] for `threshold` and hands it to its worker.
async fn evict_one(
    shared: &Shared,
    snapshot: &Snapshot,
    threshold: Threshold,
    observation: Observation,
) -> Option<String> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let selector = format!("spec.nodeName={}", shared.config.node_name);
    let pods = api.list(&ListParams::default().fields(&selector)).await.ok()?;
    let memory = threshold.signal == Signal::MemoryAvailable;
    let resource = if memory { "memory" } else { "ephemeral-storage" };
    let mut candidates = Vec::new();
    let mut by_uid = HashMap::new();
    for pod in pods.items {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let running =
            pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Running" || p == "Pending");
        let mirror = pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let Some(stats) = snapshot.pods.iter().find(|p| p.uid == uid) else { continue };
        if !running || mirror || pod.metadata.deletion_timestamp.is_some() || priority >= CRITICAL_PRIORITY {
            continue;
        }
        let usage = if memory { stats.working_set_bytes() } else { stats.ephemeral_used_bytes() };
        let request = requests(&pod, resource).iter().map(|(_, r)| r).sum();
        candidates.push(Candidate { uid: uid.clone(), priority, usage, request });
        by_uid.insert(uid, (pod, stats.clone()));
    }
    rank(&mut candidates);
    let Some(first) = candidates.first() else {
        tracing::warn!(signal = threshold.signal.name(), "under pressure, but no pod can be evicted");
        return None;
    };
    let (pod, stats) = by_uid.remove(&first.uid)?;
    let mut message = format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        threshold.signal.resource(),
        threshold.describe(),
        format_quantity(threshold.signal, observation.available),
    );
    if memory {
        let requested: HashMap<String, u64> = requests(&pod, resource).into_iter().collect();
        for c in &stats.containers {
            let req = requested.get(&c.name).copied().unwrap_or(0);
            if c.memory.working_set_bytes > req {
                message.push_str(&format!(
                    "Container {} was using {}, request is {}, has larger consumption of memory. ",
                    c.name,
                    format_quantity(Signal::MemoryAvailable, c.memory.working_set_bytes),
                    format_quantity(Signal::MemoryAvailable, req),
                ));
            }
        }
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    tracing::info!(pod = name, signal = threshold.signal.name(), "node-pressure eviction");
    shared.eviction.request_eviction(first.uid.clone(), message.trim_end().to_string());
    shared.pod_wakers.wake(&first.uid);
    Some(first.uid.clone())
}

/// Each container's request of `resource`, in bytes.
fn requests(pod: &Pod, resource: &str) -> Vec<(String, u64)> {
    let containers = pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
    containers
        .into_iter()
        .map(|c| {
            let q = c.resources.and_then(|r| r.requests).and_then(|r| r.get(resource).cloned());
            let bytes = q.and_then(|q| parse_quantity(&q.0).ok()).map_or(0, |n| (n.max(0) / 1_000_000_000) as u64);
            (c.name, bytes)
        })
        .collect()
}

/// Bytes as the kubelet prints them (`1234Ki`, `0`), counts as plain numbers.
fn format_quantity(signal: Signal, v: u64) -> String {
    match signal {
        Signal::MemoryAvailable | Signal::NodefsAvailable | Signal::ImagefsAvailable => match v {
            0 => "0".into(),
            v if v % (1 << 20) == 0 => format!("{}Mi", v >> 20),
            v => format!("{}Ki", v.div_ceil(1024)),
        },
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_quantities_and_percentages() {
        let got = parse_thresholds("memory.available<100Mi, nodefs.available<10%,pid.available<1k").expect("valid");
        assert_eq!(
            got,
            vec![
                Threshold { signal: Signal::MemoryAvailable, amount: Amount::Quantity(100 << 20) },
                Threshold { signal: Signal::NodefsAvailable, amount: Amount::Percentage(10.0) },
                Threshold { signal: Signal::PidAvailable, amount: Amount::Quantity(1000) },
            ]
        );
        assert_eq!(parse_thresholds("").expect("empty"), vec![]);
        assert_eq!(default_thresholds().len(), 4);
        assert_eq!(got[1].quantity(1000), 100);
        assert_eq!(got[0].quantity(1), 100 << 20);
    }

    #[test]
    fn bad_thresholds_are_refused() {
        for bad in [
            "memory.available>100Mi",
            "memory.available",
            "cpu.available<1",
            "memory.available<lots",
            "memory.available<-1Mi",
            "nodefs.available<120%",
            "nodefs.available<x%",
            "memory.available<1Mi,memory.available<2Mi",
        ] {
            let e = parse_thresholds(bad).expect_err(bad);
            assert!(!e.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn breaches_compare_available_with_the_threshold() {
        let t = parse_thresholds("memory.available<100Mi,nodefs.available<10%").expect("valid");
        let obs = |mem: u64, fs: u64| {
            HashMap::from([
                (Signal::MemoryAvailable, Observation { available: mem, capacity: 1 << 40 }),
                (Signal::NodefsAvailable, Observation { available: fs, capacity: 1000 }),
            ])
        };
        assert!(breached(&t, &obs(200 << 20, 500)).is_empty());
        let hits = breached(&t, &obs(50 << 20, 99));
        let signals: Vec<Signal> = hits.iter().map(|(t, _)| t.signal).collect();
        assert_eq!(signals, vec![Signal::MemoryAvailable, Signal::NodefsAvailable]);
        assert_eq!(hits[0].0.signal.condition(), Condition::Memory);
        assert_eq!(hits[1].0.signal.condition(), Condition::Disk);
    }

    fn c(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate { uid: uid.into(), priority, usage, request }
    }

    #[test]
    fn ranking_puts_pods_over_their_requests_first_then_priority_then_excess() {
        let mut pods = vec![
            c("guaranteed-within", 0, 50, 100),
            c("burstable-over-small", 0, 150, 100),
            c("besteffort-big", 0, 400, 0),
            c("besteffort-high-priority", 1000, 900, 0),
            c("low-priority-within", -10, 10, 100),
        ];
        rank(&mut pods);
        let order: Vec<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        assert_eq!(
            order,
            vec![
                "besteffort-big",
                "burstable-over-small",
                "besteffort-high-priority",
                "low-priority-within",
                "guaranteed-within"
            ]
        );
    }

    #[test]
    fn conditions_follow_breaches_and_stay_for_the_transition_period() {
        let state = State::default();
        let t0 = Instant::now();
        assert!(!state.update(&[], t0));
        assert!(state.update(&[Condition::Memory], t0));
        let now: Vec<bool> = state.conditions().iter().map(|(_, p, _)| *p).collect();
        assert_eq!(now, vec![true, false, false]);
        assert!(!state.update(&[], t0 + Duration::from_secs(60)), "still within the transition period");
        assert!(state.update(&[], t0 + TRANSITION_PERIOD + Duration::from_secs(1)));
        assert!(state.conditions().iter().all(|(_, p, _)| !p));
    }

    #[test]
    fn quantities_print_as_the_kubelet_prints_them() {
        assert_eq!(format_quantity(Signal::MemoryAvailable, 100 << 20), "100Mi");
        assert_eq!(format_quantity(Signal::MemoryAvailable, 1536), "2Ki");
        assert_eq!(format_quantity(Signal::MemoryAvailable, 0), "0");
        assert_eq!(format_quantity(Signal::PidAvailable, 42), "42");
    }
}
