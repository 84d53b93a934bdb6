//! The scheduling framework: filter and score plugin traits, a profile (plugins with
//! weights), and one scheduling cycle for one pod: pre-filter, filtering across nodes
//! (stopping once enough feasible nodes are found, as Kubernetes'
//! `percentageOfNodesToScore`; on several threads once a cycle has checked many nodes),
//! scoring with normalization and weights (on several threads for many feasible nodes),
//! host selection.

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::{Cache, NodeInfo, PodInfo};

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a plugin rejects a node (or the pod, from pre-filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Whether preempting pods on the node could help.
    pub resolvable: bool,
    /// Reasons as Kubernetes words them (`Insufficient cpu`, `node(s) were unschedulable`).
    pub reasons: Vec<Cow<'static, str>>,
    /// The rejecting plugin's name, set by the framework (for the queueing hints).
    pub plugin: &'static str,
}

impl Rejection {
    /// A rejection preemption may resolve.
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection { resolvable: true, reasons: vec![reason.into()], plugin: "" }
    }

    /// A rejection preemption cannot resolve.
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection { resolvable: false, reasons: vec![reason.into()], plugin: "" }
    }
}

/// Per-cycle data a plugin computes in pre-filter or pre-score and reads per node; shared,
/// so that preemption and nominated pods can work on a cheap copy of the whole cycle state.
pub type State = Option<Arc<dyn Any + Send + Sync>>;

/// What pre-filter decided for one plugin.
#[derive(Default, Clone)]
pub struct Prepared {
    /// The plugin has nothing to check for this pod (its filter is not called).
    pub skip: bool,
    /// Data for `filter`.
    pub state: State,
}

impl Prepared {
    /// The plugin has nothing to check.
    pub fn skip() -> Prepared {
        Prepared { skip: true, state: None }
    }

    /// Data for the filter.
    pub fn with<T: Any + Send + Sync>(value: T) -> Prepared {
        Prepared { skip: false, state: Some(Arc::new(value)) }
    }

    /// The data, downcast.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.state.as_ref().and_then(|s| s.downcast_ref())
    }
}

/// Whether a pod is added to a node or removed from it, for [`Plugin::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The pod is counted as running on the node (a nominated pod, a spared victim).
    Add,
    /// The pod is no longer counted on the node (a preemption victim).
    Remove,
}

impl Change {
    /// +1 or -1.
    pub fn sign(self) -> i64 {
        match self {
            Change::Add => 1,
            Change::Remove => -1,
        }
    }
}

/// A scheduling plugin: any of pre-filter, filter, pre-score, score and normalize.
pub trait Plugin: Send + Sync {
    /// The plugin's name as in KubeSchedulerConfiguration (`NodeResourcesFit`).
    fn name(&self) -> &'static str;

    /// Whether the plugin filters.
    fn filters(&self) -> bool {
        true
    }

    /// Whether the plugin scores.
    fn scores(&self) -> bool {
        false
    }

    /// Computes per-pod data once per cycle; a rejection here rejects every node.
    fn pre_filter(&self, _pod: &PodInfo, _cache: &Cache) -> Result<Prepared, Rejection> {
        Ok(Prepared::default())
    }

    /// Updates pre-filter data as if `other` were added to or removed from `node`
    /// (Kubernetes' PreFilterExtensions AddPod/RemovePod); only plugins whose pre-filter
    /// data depends on other pods implement it.
    fn update(
        &self,
        _pod: &PodInfo,
        _prepared: &mut Prepared,
        _change: Change,
        _other: &PodInfo,
        _node: &NodeInfo,
        _cache: &Cache,
    ) {
    }

    /// Whether the pod fits the node.
    fn filter(&self, _pod: &PodInfo, _prepared: &Prepared, _node: &NodeInfo) -> Result<(), Rejection> {
        Ok(())
    }

    /// Computes per-pod data for scoring, given the feasible nodes.
    fn pre_score(&self, _pod: &PodInfo, _cache: &Cache, _feasible: &[&NodeInfo]) -> Prepared {
        Prepared::default()
    }

    /// The node's raw score.
    fn score(&self, _pod: &PodInfo, _prepared: &Prepared, _node: &NodeInfo) -> i64 {
        0
    }

    /// Maps raw scores into 0..=100.
    fn normalize(&self, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// A scheduling profile: the plugins of one scheduler name, with score weights.
pub struct Profile {
    /// The `spec.schedulerName` this profile serves.
    pub scheduler_name: String,
    /// Filter plugins, in order.
    pub filters: Vec<Arc<dyn Plugin>>,
    /// Score plugins with their weights.
    pub scores: Vec<(Arc<dyn Plugin>, i64)>,
    /// percentageOfNodesToScore; 0 = adaptive as Kubernetes.
    pub percentage_of_nodes_to_score: u32,
}

/// Why no node fits, per node and before any node (pre-filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Nodes considered.
    pub num_all_nodes: usize,
    /// A pre-filter rejection (every node).
    pub pre_filter: Option<Rejection>,
    /// Each rejected node (its index in [`Cache::nodes`] when the cycle ran: valid while
    /// the cache is not changed) and its rejection, in the order the nodes were checked.
    pub nodes: Vec<(usize, Rejection)>,
}

impl Diagnosis {
    /// The part of the FailedScheduling message before the preemption part:
    /// `0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 3 Insufficient cpu.`
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(pre) = &self.pre_filter {
            msg.push_str(&format!(" {}.", pre.reasons.join(", ")));
            return msg;
        }
        let histogram = count_reasons(self.nodes.iter().flat_map(|(_, r)| &r.reasons));
        let mut parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        if !parts.is_empty() {
            msg.push_str(&format!(" {}.", parts.join(", ")));
        }
        msg
    }
}

/// How many times each reason occurs: a short list, as there are few distinct reasons
/// however many nodes there are (a map keyed by string would compare every one of them).
pub(crate) fn count_reasons<'a>(reasons: impl IntoIterator<Item = &'a Cow<'static, str>>) -> Vec<(&'a str, usize)> {
    let mut histogram: Vec<(&str, usize)> = Vec::new();
    for reason in reasons {
        let reason = reason.as_ref();
        match histogram.iter_mut().find(|(r, _)| std::ptr::eq(*r, reason) || *r == reason) {
            Some((_, n)) => *n += 1,
            None => histogram.push((reason, 1)),
        }
    }
    histogram
}

/// The number of feasible nodes to find before scoring, as Kubernetes' `numFeasibleNodesToFind`.
pub fn feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE || percentage >= 100 {
        return all;
    }
    let pct = if percentage == 0 { (50i64 - all as i64 / 125).max(5) as usize } else { percentage as usize };
    (all * pct / 100).max(MIN_FEASIBLE)
}

/// The outcome of filtering: feasible node indexes into `cache.nodes()`.
struct Filtered {
    feasible: Vec<usize>,
    rejected: Vec<(usize, Rejection)>,
    visited: usize,
}

fn run_filters(profile: &Profile, prepared: &[Prepared], pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    for (plugin, p) in profile.filters.iter().zip(prepared) {
        if !p.skip {
            plugin.filter(pod, p, node).map_err(|r| Rejection { plugin: plugin.name(), ..r })?;
        }
    }
    Ok(())
}

/// Runs every filter plugin's pre-filter.
pub fn pre_filter(profile: &Profile, pod: &PodInfo, cache: &Cache) -> Result<Vec<Prepared>, Rejection> {
    profile.filters.iter().map(|p| p.pre_filter(pod, cache).map_err(|r| Rejection { plugin: p.name(), ..r })).collect()
}

/// Updates every plugin's pre-filter data for `other` added to or removed from `node`.
pub fn update_state(
    profile: &Profile,
    prepared: &mut [Prepared],
    pod: &PodInfo,
    change: Change,
    other: &PodInfo,
    node: &NodeInfo,
    cache: &Cache,
) {
    for (plugin, p) in profile.filters.iter().zip(prepared.iter_mut()) {
        if !p.skip {
            plugin.update(pod, p, change, other, node, cache);
        }
    }
}

/// Whether the pod passes every filter on `node`, given pre-filter data, as Kubernetes'
/// `RunFilterPluginsWithNominatedPods`: the pod must pass both with the pods nominated to
/// the node with at least its priority counted as running there (resources, and the
/// affinity and spread room they take) and without them (a nominated pod that may not
/// come must not be what satisfies the pod's affinity). A node rejecting it with them gives
/// the reasons with them, whether or not it also rejects it without; one accepting it with
/// them gives those without (Kubernetes checks with them first; the order does not change
/// the outcome).
pub fn fits(
    profile: &Profile,
    prepared: &[Prepared],
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &Cache,
) -> Result<(), Rejection> {
    let mut nominated = node.nominated.iter().filter(|p| p.key != pod.key && p.priority >= pod.priority).peekable();
    if nominated.peek().is_none() {
        return run_filters(profile, prepared, pod, node);
    }
    let without = run_filters(profile, prepared, pod, node);
    if let Err(r) = &without
        && let Some(with) = short_with_nominees(profile, prepared, pod, node, r, nominated.clone())
    {
        return Err(with);
    }
    let mut with = node.clone();
    with.nominated.clear();
    let mut state = prepared.to_vec();
    for p in nominated {
        with.add_pod(p.clone());
        update_state(profile, &mut state, pod, Change::Add, p, &with, cache);
    }
    run_filters(profile, &state, pod, &with)?;
    without
}

/// Filters whose outcome depends on the node alone, not on the pods there.
const NODE_ONLY_FILTERS: [&str; 4] = ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity"];

/// The rejection with the nominees counted, for a node NodeResourcesFit rejects without
/// them when every filter before it that runs looks at the node alone: those pass with the
/// nominees too, and NodeResourcesFit rejects with them (they only add requests), for the
/// reasons their requests added to the node's give. Saves copying the node (preemption
/// churn nominates pods to thousands of full nodes). `None`: another case, filter a copy.
fn short_with_nominees<'a>(
    profile: &Profile,
    prepared: &[Prepared],
    pod: &PodInfo,
    node: &NodeInfo,
    without: &Rejection,
    nominated: impl Iterator<Item = &'a Arc<PodInfo>>,
) -> Option<Rejection> {
    if without.plugin != "NodeResourcesFit" {
        return None;
    }
    for (plugin, p) in profile.filters.iter().zip(prepared) {
        match plugin.name() {
            "NodeResourcesFit" => break,
            _ if p.skip => {}
            name if NODE_ONLY_FILTERS.contains(&name) => {}
            _ => return None,
        }
    }
    let mut requested = node.requested.clone();
    for p in nominated {
        requested.add(&p.requests.requests);
    }
    let r = crate::plugins::node_resources_fit::insufficient_in(pod, &node.allocatable, &requested)?;
    Some(Rejection { plugin: without.plugin, ..r })
}

/// Nodes checked on the scheduling thread alone before the rest of a cycle's filtering is
/// spread over threads: most cycles find their feasible nodes among the first few hundred
/// checked (thread start and join would cost more than they save); a cycle that has not
/// (most nodes rejected, or `percentageOfNodesToScore` near 100 on a large cluster) has
/// thousands of checks left, worth the threads.
pub const SEQUENTIAL_FILTER_NODES: usize = 512;

/// Feasible nodes from which scoring is spread over threads.
pub const PARALLEL_SCORE_NODES: usize = 512;

/// Nodes a filter thread takes at a time.
const BLOCK: usize = 64;

/// A node's index (from the round-robin start) and what filtering it gave (`None`: no Node object).
type Checked = (usize, Option<Result<(), Rejection>>);

/// Filters nodes from `start` (round robin) until `want` feasible ones are found: the
/// first [`SEQUENTIAL_FILTER_NODES`] on this thread, the rest on `threads` threads. The
/// result is the same whatever `threads` is.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn filter_nodes(
    profile: &Profile,
    cache: &Cache,
    prepared: &[Prepared],
    pod: &PodInfo,
    nodes: &[NodeInfo],
    start: usize,
    want: usize,
    threads: usize,
) -> Filtered {
    let n = nodes.len();
    let check = |i: usize| -> Option<Result<(), Rejection>> {
        let node = &nodes[(start + i) % n];
        node.node.as_ref()?;
        Some(fits(profile, prepared, pod, node, cache))
    };
    let mut out = Filtered { feasible: Vec::new(), rejected: Vec::new(), visited: 0 };
    let record = |out: &mut Filtered, i: usize, result: Option<Result<(), Rejection>>| {
        out.visited = i + 1;
        match result {
            Some(Ok(())) => out.feasible.push((start + i) % n),
            Some(Err(r)) => out.rejected.push(((start + i) % n, r)),
            None => {}
        }
    };
    let sequential = if threads <= 1 { n } else { SEQUENTIAL_FILTER_NODES.min(n) };
    for i in 0..sequential {
        if out.feasible.len() >= want {
            return out;
        }
        record(&mut out, i, check(i));
    }
    if out.feasible.len() >= want || sequential == n {
        return out;
    }
    // The rest on `threads` threads, each taking blocks of nodes in order until enough
    // feasible nodes are found between them.
    let missing = want - out.feasible.len();
    let next = AtomicUsize::new(sequential);
    let found = AtomicUsize::new(0);
    let parts: Vec<Vec<Checked>> = std::thread::scope(|scope| {
        let work = || {
            let mut local = Vec::new();
            while found.load(Ordering::Relaxed) < missing {
                let from = next.fetch_add(BLOCK, Ordering::Relaxed);
                if from >= n {
                    break;
                }
                for i in from..(from + BLOCK).min(n) {
                    let r = check(i);
                    if matches!(r, Some(Ok(()))) {
                        found.fetch_add(1, Ordering::Relaxed);
                    }
                    local.push((i, r));
                }
            }
            local
        };
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(helpers.into_iter().map(|h| h.join().unwrap_or_default()));
        parts
    });
    // In node order, the first `missing` feasible nodes are those a single thread finds:
    // every node before the last of them was checked (blocks are taken in order).
    let mut all: Vec<Checked> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    for (i, r) in all {
        if out.feasible.len() >= want {
            return out;
        }
        record(&mut out, i, r);
    }
    out.visited = n;
    out
}

/// The result of one scheduling cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Node(String),
    /// No node fits.
    Unschedulable(Diagnosis),
}

/// Scheduling state kept between cycles: the round-robin start and a random source for ties.
#[derive(Debug)]
pub struct Cycle {
    next_start: usize,
    rng: u64,
    threads: usize,
}

impl Default for Cycle {
    /// Filters and scores on half the machine's cores (at least 1, at most 16, Kubernetes'
    /// default parallelism), for the cycles with enough nodes to check
    /// ([`SEQUENTIAL_FILTER_NODES`], [`PARALLEL_SCORE_NODES`]); the others stay on the
    /// scheduling thread. Half, because the scheduler shares its process and cores with the
    /// API server that binds what it decides: on 2 cores, threads on every core made
    /// `berth bench scheduler` slower (5,000 nodes: anti-affinity 1,000 vs 1,240 pods/s,
    /// spread 1,300 vs 1,460, preemption 204 vs 240; plain alike), so there it is one thread.
    fn default() -> Self {
        Cycle::new(std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 16)))
    }
}

impl Cycle {
    /// Cycle state filtering on `threads` threads.
    pub fn new(threads: usize) -> Cycle {
        Cycle { next_start: 0, rng: 0x9E37_79B9_7F4A_7C15, threads: threads.max(1) }
    }

    /// Threads filtering and scoring nodes.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A pseudo-random number (ties between nodes, preemption's candidate offset).
    pub fn random(&mut self) -> u64 {
        // xorshift64*: enough to break ties between equally scored nodes.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Chooses a node for `pod`.
    pub fn schedule(&mut self, profile: &Profile, cache: &Cache, pod: &PodInfo) -> Decision {
        let num_all_nodes = cache.node_count();
        let mut diagnosis = Diagnosis { num_all_nodes, ..Diagnosis::default() };
        if num_all_nodes == 0 {
            return Decision::Unschedulable(diagnosis);
        }
        let prepared = match pre_filter(profile, pod, cache) {
            Ok(p) => p,
            Err(r) => {
                diagnosis.pre_filter = Some(r);
                return Decision::Unschedulable(diagnosis);
            }
        };
        let nodes = cache.nodes();
        // A nominated node (from an earlier preemption) is tried first, as Kubernetes'
        // `evaluateNominatedNode`: this scheduler's nomination, else the pod's status.
        if let Some(nominated) = nominated_node(cache, pod)
            && let Some(node) = cache.node(nominated)
            && node.node.is_some()
            && fits(profile, &prepared, pod, node, cache).is_ok()
        {
            return Decision::Node(nominated.to_string());
        }
        let want = feasible_nodes_to_find(profile.percentage_of_nodes_to_score, num_all_nodes);
        let start = self.next_start % nodes.len().max(1);
        let filtered = filter_nodes(profile, cache, &prepared, pod, nodes, start, want, self.threads);
        self.next_start = (start + filtered.visited) % nodes.len().max(1);
        if filtered.feasible.is_empty() {
            diagnosis.nodes = filtered.rejected;
            return Decision::Unschedulable(diagnosis);
        }
        let feasible: Vec<&NodeInfo> = filtered.feasible.iter().map(|i| &nodes[*i]).collect();
        if feasible.len() == 1 {
            return Decision::Node(feasible[0].name.clone());
        }
        let totals = score_on(profile, pod, cache, &feasible, self.threads);
        let best = self.select(&totals);
        Decision::Node(feasible[best].name.clone())
    }

    /// The index of the highest total, ties broken at random (reservoir sampling).
    fn select(&mut self, totals: &[i64]) -> usize {
        let mut best = 0;
        let mut ties = 1u64;
        for (i, t) in totals.iter().enumerate().skip(1) {
            if *t > totals[best] {
                best = i;
                ties = 1;
            } else if *t == totals[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        best
    }
}

/// The node a pod is nominated to: by this scheduler (its latest preemption), else as its
/// `status.nominatedNodeName` says.
pub fn nominated_node<'a>(cache: &'a Cache, pod: &'a PodInfo) -> Option<&'a str> {
    cache.nomination(&pod.key).or_else(|| pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()))
}

/// Weighted, normalized scores of the feasible nodes, summed per node (raw scores on
/// `threads` threads from [`PARALLEL_SCORE_NODES`] feasible nodes; the same totals either way).
pub fn score_on(profile: &Profile, pod: &PodInfo, cache: &Cache, feasible: &[&NodeInfo], threads: usize) -> Vec<i64> {
    let plugins: Vec<(&dyn Plugin, i64, Prepared)> = profile
        .scores
        .iter()
        .map(|(plugin, weight)| (plugin.as_ref(), *weight, plugin.pre_score(pod, cache, feasible)))
        .filter(|(_, _, prepared)| !prepared.skip)
        .collect();
    // raw[p][i]: plugin p's raw score of feasible node i.
    let raw_of = |nodes: &[&NodeInfo]| -> Vec<Vec<i64>> {
        plugins
            .iter()
            .map(|(plugin, _, prepared)| nodes.iter().map(|node| plugin.score(pod, prepared, node)).collect())
            .collect()
    };
    let mut raw: Vec<Vec<i64>> = if threads > 1 && feasible.len() >= PARALLEL_SCORE_NODES {
        let chunk = feasible.len().div_ceil(threads);
        let parts: Vec<Vec<Vec<i64>>> = std::thread::scope(|scope| {
            let mut chunks = feasible.chunks(chunk);
            let first = chunks.next().unwrap_or_default();
            let helpers: Vec<_> = chunks.map(|c| scope.spawn(move || raw_of(c))).collect();
            let mut parts = vec![raw_of(first)];
            parts.extend(helpers.into_iter().map(|h| h.join().unwrap_or_default()));
            parts
        });
        let mut raw = vec![Vec::with_capacity(feasible.len()); plugins.len()];
        for part in parts {
            for (all, some) in raw.iter_mut().zip(part) {
                all.extend(some);
            }
        }
        raw
    } else {
        raw_of(feasible)
    };
    let mut totals = vec![0i64; feasible.len()];
    for ((plugin, weight, _), scores) in plugins.iter().zip(raw.iter_mut()) {
        plugin.normalize(pod, scores);
        for (t, s) in totals.iter_mut().zip(scores.iter()) {
            *t += s * weight;
        }
    }
    totals
}

/// Weighted, normalized scores of the feasible nodes, summed per node, on this thread.
pub fn score(profile: &Profile, pod: &PodInfo, cache: &Cache, feasible: &[&NodeInfo]) -> Vec<i64> {
    score_on(profile, pod, cache, feasible, 1)
}

/// Scales scores to 0..=100 by the largest (`reverse`: the largest becomes 0), as
/// Kubernetes' `DefaultNormalizeScore`.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_counts_follow_kubernetes() {
        assert_eq!(feasible_nodes_to_find(0, 50), 50);
        assert_eq!(feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(feasible_nodes_to_find(0, 200), 100);
        assert_eq!(feasible_nodes_to_find(100, 5000), 5000);
        assert_eq!(feasible_nodes_to_find(0, 100_000), 5000);
    }

    #[test]
    fn message_is_a_sorted_histogram() {
        let mut d = Diagnosis { num_all_nodes: 4, ..Default::default() };
        d.nodes.push((0, Rejection::unresolvable("node(s) had untolerated taint {dedicated: infra}")));
        for n in 1..4 {
            d.nodes.push((n, Rejection::unschedulable("Insufficient cpu")));
        }
        assert_eq!(
            d.message(),
            "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 3 Insufficient cpu."
        );
    }

    #[test]
    fn normalize() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
    }

    /// A pod preferring `disk=ssd` (NodeAffinity), and two nodes: `ssd` with the label and a
    /// PreferNoSchedule taint the pod does not tolerate (TaintToleration), `plain` with
    /// neither. Every other default score is equal on both.
    fn ssd_or_plain() -> (Cache, PodInfo) {
        use crate::plugins::testing::{cache_of, node, pod};
        use serde_json::json;
        let cache = cache_of(
            vec![
                node(
                    "ssd",
                    json!({"labels": {"disk": "ssd"}, "taints": [{"key": "noisy", "effect": "PreferNoSchedule"}]}),
                ),
                node("plain", json!({})),
            ],
            vec![],
        );
        let p = pod(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}));
        (cache, p)
    }

    #[test]
    fn weighted_scores_decide_the_node() {
        use crate::config::SchedulerConfig;
        let (cache, p) = ssd_or_plain();
        let decide = |profile: &Profile| match Cycle::new(1).schedule(profile, &cache, &p) {
            Decision::Node(n) => n,
            Decision::Unschedulable(d) => d.message(),
        };
        // Default weights: TaintToleration 3 x 100 for plain beats NodeAffinity 2 x 100 for ssd.
        let default = &SchedulerConfig::default().profiles().unwrap()[0];
        let feasible: Vec<&NodeInfo> = ["ssd", "plain"].iter().map(|n| cache.node(n).unwrap()).collect();
        let totals = score(default, &p, &cache, &feasible);
        assert_eq!(totals[1] - totals[0], 300 - 200, "{totals:?}");
        assert_eq!(decide(default), "plain");
        // NodeAffinity weighted up to 4: 400 for ssd beats 300 for plain.
        let heavier =
            SchedulerConfig::parse("profiles: [{plugins: {score: {enabled: [{name: NodeAffinity, weight: 4}]}}}]")
                .unwrap()
                .profiles()
                .unwrap();
        let totals = score(&heavier[0], &p, &cache, &feasible);
        assert_eq!(totals[0] - totals[1], 400 - 300, "{totals:?}");
        assert_eq!(decide(&heavier[0]), "ssd");
        // Scores only rank feasible nodes: the filters still decide which those are.
        let only_affinity = SchedulerConfig::parse(
            "profiles: [{plugins: {score: {disabled: [{name: \"*\"}], enabled: [{name: NodeAffinity, weight: 1}]}}}]",
        )
        .unwrap()
        .profiles()
        .unwrap();
        for _ in 0..20 {
            assert_eq!(decide(&only_affinity[0]), "ssd");
        }
    }

    #[test]
    fn the_nominated_node_is_tried_first() {
        use crate::config::SchedulerConfig;
        use crate::plugins::testing::{bound, cache_of, node, pod};
        use serde_json::json;
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let busy = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "6Gi"}}}]});
        // `full` is mostly used: every score prefers `empty`.
        let cache = cache_of(vec![node("empty", json!({})), node("full", json!({}))], vec![bound("big", "full", busy)]);
        let nominated_to = |node: &str, cpu: &str| {
            let mut p = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}))
                .pod
                .as_ref()
                .clone();
            p.status = Some(serde_json::from_value(json!({"nominatedNodeName": node})).unwrap());
            PodInfo::new(Arc::new(p))
        };
        let mut cycle = Cycle::new(1);
        let plain = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}));
        assert_eq!(cycle.schedule(profile, &cache, &plain), Decision::Node("empty".into()));
        // The pod preempted its way onto `full` earlier: it goes there while it fits.
        assert_eq!(cycle.schedule(profile, &cache, &nominated_to("full", "100m")), Decision::Node("full".into()));
        // It no longer fits there: the other nodes are filtered and scored as usual.
        assert_eq!(cycle.schedule(profile, &cache, &nominated_to("full", "2")), Decision::Node("empty".into()));
        // A nominated node that is gone is skipped.
        assert_eq!(cycle.schedule(profile, &cache, &nominated_to("gone", "100m")), Decision::Node("empty".into()));
    }

    #[test]
    fn threads_decide_as_one_thread_does() {
        use crate::config::SchedulerConfig;
        use crate::plugins::testing::{bound_labelled, cache_of, labelled, node};
        use serde_json::json;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        // 3,000 nodes of mixed sizes, zones and taints, some cordoned, with pods on them.
        let nodes: Vec<_> = (0..3000)
            .map(|i| {
                let taints = if random(7) == 0 {
                    json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
                } else {
                    json!([])
                };
                node(
                    &format!("n{i:04}"),
                    json!({"labels": {"zone": format!("z{}", random(5))}, "taints": taints,
                        "unschedulable": random(50) == 0,
                        "allocatable": {"cpu": format!("{}", 1 + random(8)), "memory": "16Gi", "pods": "110"}}),
                )
            })
            .collect();
        let pods: Vec<_> = (0..1500)
            .map(|i| {
                let node = format!("n{:04}", random(3000));
                let cpu = format!("{}m", 100 * (1 + random(9)));
                bound_labelled(
                    &format!("p{i}"),
                    &node,
                    json!({"app": format!("a{}", random(10))}),
                    json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
                )
            })
            .collect();
        let cache = cache_of(nodes, pods);
        let cpu = |cpu: &str| json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
        let mut anti = cpu("500m");
        anti["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "a3"}}, "topologyKey": "kubernetes.io/hostname"}],
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm":
            {"labelSelector": {"matchLabels": {"app": "a4"}}, "topologyKey": "zone"}}]}});
        anti["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "a3"}}}]);
        let mut tolerant = cpu("6");
        tolerant["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
        tolerant["nodeSelector"] = json!({"zone": "z2"});
        let incoming = [
            labelled(json!({"app": "a1"}), cpu("100m")), // fits almost anywhere
            labelled(json!({"app": "a2"}), cpu("7")),    // fits few nodes: most of them are checked
            labelled(json!({"app": "a3"}), cpu("100")),  // fits none: all of them
            labelled(json!({"app": "a3"}), anti),
            labelled(json!({"app": "a5"}), tolerant),
        ];
        let default = SchedulerConfig::default().profiles().unwrap();
        let all_nodes =
            SchedulerConfig::parse("profiles: [{percentageOfNodesToScore: 100}]").unwrap().profiles().unwrap();
        for profile in [&default[0], &all_nodes[0]] {
            let (mut one, mut four) = (Cycle::new(1), Cycle::new(4));
            for round in 0..4 {
                for (i, pod) in incoming.iter().enumerate() {
                    let (a, b) = (one.schedule(profile, &cache, pod), four.schedule(profile, &cache, pod));
                    assert_eq!(a, b, "round {round}, pod {i}");
                }
            }
            assert_eq!(one.next_start, four.next_start);
        }
        // Scores alone, over every node: the same totals on any number of threads.
        let feasible: Vec<&NodeInfo> = cache.nodes().iter().filter(|n| n.node.is_some()).collect();
        for pod in &incoming {
            let sequential = score_on(&default[0], pod, &cache, &feasible, 1);
            for threads in [2, 3, 8] {
                assert_eq!(score_on(&default[0], pod, &cache, &feasible, threads), sequential);
            }
        }
    }

    #[test]
    fn nominated_pods_hold_their_room() {
        use crate::config::SchedulerConfig;
        use crate::plugins::testing::{cache_of, labelled, node};
        use serde_json::json;
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let mut cache = cache_of(vec![node("a", json!({}))], vec![]);
        let nominee = labelled(
            json!({"app": "db"}),
            json!({"priority": 10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}),
        );
        let mut nominee = nominee.pod.as_ref().clone();
        nominee.metadata.name = Some("db".into());
        cache.nominate(Arc::new(PodInfo::new(Arc::new(nominee))), "a");
        let decide = |cache: &Cache, spec: serde_json::Value| match Cycle::new(1).schedule(
            profile,
            cache,
            &labelled(json!({"app": "web"}), spec),
        ) {
            Decision::Node(n) => n,
            Decision::Unschedulable(d) => d.message(),
        };
        let term = |kind: &str| {
            json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}})
        };
        let cpu = |priority: i32, cpu: &str| {
            json!({"priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})
        };
        // Resources: 3 of 4 CPUs are held for the nominee, for pods of its priority or lower.
        assert_eq!(decide(&cache, cpu(5, "2")), "0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(decide(&cache, cpu(20, "2")), "a");
        // Anti-affinity against the nominee: as if it ran there.
        let mut anti = cpu(5, "100m");
        anti["affinity"] = term("podAntiAffinity");
        assert_eq!(
            decide(&cache, anti.clone()),
            "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."
        );
        anti["priority"] = json!(20);
        assert_eq!(decide(&cache, anti), "a");
        // Affinity to the nominee: not satisfied by a pod that may never come.
        let mut with = cpu(5, "100m");
        with["affinity"] = term("podAffinity");
        assert_eq!(decide(&cache, with), "0/1 nodes are available: 1 node(s) didn't match pod affinity rules.");
        // Once the nominee is bound (or gone), the room is free.
        cache.clear_nomination("default/db");
        assert_eq!(decide(&cache, cpu(5, "2")), "a");
    }

    #[test]
    fn a_node_rejecting_with_and_without_its_nominees_gives_the_reasons_with_them() {
        use crate::config::SchedulerConfig;
        use crate::plugins::testing::{bound, cache_of, labelled, node};
        use serde_json::json;
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let requests =
            |cpu: &str, memory: &str| json!([{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]);
        // 3 of 4 CPUs are used; the nominee (priority 10) holds 7 of 8 GiB.
        let running = bound("running", "a", json!({"containers": requests("3", "0")}));
        let mut cache = cache_of(vec![node("a", json!({}))], vec![running]);
        let nominee = labelled(json!({}), json!({"priority": 10, "containers": requests("0", "7Gi")}));
        let mut nominee = nominee.pod.as_ref().clone();
        nominee.metadata.name = Some("nominee".into());
        cache.nominate(Arc::new(PodInfo::new(Arc::new(nominee))), "a");
        let pod = labelled(json!({}), json!({"priority": 5, "containers": requests("2", "2Gi")}));
        let prepared = pre_filter(profile, &pod, &cache).unwrap();
        let node = cache.node("a").unwrap();
        // Without the nominee only CPU is short; with it memory too, and those are the reasons.
        let without = run_filters(profile, &prepared, &pod, node).unwrap_err();
        assert_eq!(without.reasons, ["Insufficient cpu"]);
        let with = fits(profile, &prepared, &pod, node, &cache).unwrap_err();
        let with_reasons =
            || -> Vec<Cow<'static, str>> { vec!["Insufficient cpu".into(), "Insufficient memory".into()] };
        assert_eq!((with.plugin, with.reasons), ("NodeResourcesFit", with_reasons()));
        // A pod with a host port (NodePorts, before NodeResourcesFit, runs) is checked on a
        // copy of the node with the nominee: the same reasons.
        let mut ported = requests("2", "2Gi");
        ported[0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        let ported = labelled(json!({}), json!({"priority": 5, "containers": ported}));
        let prepared = pre_filter(profile, &ported, &cache).unwrap();
        assert!(!prepared.iter().all(|p| p.skip), "NodePorts runs");
        let copied = fits(profile, &prepared, &ported, node, &cache).unwrap_err();
        assert_eq!(copied.reasons, with_reasons());
        match Cycle::new(1).schedule(profile, &cache, &pod) {
            Decision::Unschedulable(d) => {
                assert_eq!(d.message(), "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spread_and_anti_affinity_hold_when_filtering_stops_early() {
        use crate::config::SchedulerConfig;
        use crate::plugins::testing::{cache_of, node};
        use serde_json::json;
        // 1,000 nodes in 4 zones: each cycle stops after 420 feasible nodes (adaptive
        // percentageOfNodesToScore), from where the previous one stopped.
        let nodes = (0..1000).map(|i| node(&format!("n{i:04}"), json!({"labels": {"zone": format!("z{}", i % 4)}})));
        let mut cache = cache_of(nodes.collect(), vec![]);
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let mut cycle = Cycle::new(1);
        let term = json!([{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]);
        let mut placed: Vec<String> = Vec::new();
        let mut early = 0;
        for i in 0..60 {
            let spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}}]});
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(json!({"metadata": {"name": format!("web{i}"),
                "namespace": "default", "labels": {"app": "web"}}, "spec": spec}))
                .unwrap();
            let info = Arc::new(PodInfo::new(Arc::new(pod)));
            let before = cycle.next_start;
            let Decision::Node(n) = cycle.schedule(profile, &cache, &info) else {
                panic!("web{i} should fit");
            };
            // Fewer than all nodes were filtered whenever the zones were even (every node
            // feasible); otherwise only the emptiest zones' 250 nodes are, and all are checked.
            if cycle.next_start != before {
                early += 1;
            }
            cache.assume(info, &n);
            placed.push(n);
        }
        // One pod per node (anti-affinity), and the zones at most one apart (spread).
        let mut distinct = placed.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), placed.len(), "{placed:?}");
        let mut zones = [0usize; 4];
        for n in &placed {
            zones[cache.node(n).unwrap().labels["zone"][1..].parse::<usize>().unwrap()] += 1;
        }
        assert_eq!(zones, [15, 15, 15, 15]);
        assert!(early >= 15, "{early} cycles stopped early");
    }
}
