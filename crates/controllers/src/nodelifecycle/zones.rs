//! Zone-aware rate limits on NoExecute tainting, as Kubernetes' node lifecycle controller
//! applies them: nodes are grouped into zones by their region and zone labels; each zone
//! is Normal, PartialDisruption (more than two nodes and at least
//! `unhealthy_zone_threshold` of them not Ready) or FullDisruption (none Ready); unhealthy
//! nodes of a zone get their NoExecute taint at the zone's rate (a token bucket of burst
//! one): `eviction_rate` when Normal or FullDisruption, `secondary_eviction_rate` in a
//! partially disrupted zone larger than `large_cluster_size_threshold` nodes, none in a
//! smaller one. When every zone is fully disrupted the controller assumes it, not the
//! nodes, is cut off: it taints nothing and removes the NoExecute taints it set.

use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;

use super::decide;

/// The limits (kube-controller-manager's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvictionLimits {
    /// Nodes per second tainted NoExecute in a healthy zone (`--node-eviction-rate`, 0.1).
    pub eviction_rate: f64,
    /// Nodes per second in a large, partially disrupted zone (`--secondary-node-eviction-rate`, 0.01).
    pub secondary_eviction_rate: f64,
    /// Share of not-Ready nodes (more than two) that makes a zone partially disrupted
    /// (`--unhealthy-zone-threshold`, 0.55).
    pub unhealthy_zone_threshold: f64,
    /// Zones of at most this many nodes stop tainting when partially disrupted
    /// (`--large-cluster-size-threshold`, 50).
    pub large_cluster_size_threshold: usize,
}

impl Default for EvictionLimits {
    fn default() -> EvictionLimits {
        EvictionLimits {
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}

/// A zone's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneState {
    /// Few nodes down.
    Normal,
    /// Many, not all, nodes down.
    PartialDisruption,
    /// No node Ready.
    FullDisruption,
}

/// The zone a node is in: its region and zone labels (empty when it has none).
pub(crate) fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let label =
        |new: &str, old: &str| labels.and_then(|l| l.get(new).or_else(|| l.get(old))).cloned().unwrap_or_default();
    let region = label("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = label("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() { String::new() } else { format!("{region}:\0:{zone}") }
}

/// A zone's state from its Ready and not-Ready node counts.
pub(crate) fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Nodes per second a zone in `state` with `size` nodes may have tainted.
pub(crate) fn zone_rate(state: ZoneState, size: usize, limits: &EvictionLimits) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => limits.eviction_rate,
        ZoneState::PartialDisruption if size > limits.large_cluster_size_threshold => limits.secondary_eviction_rate,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// A token bucket of burst one.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(1.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The zones as of the last look, and their buckets.
#[derive(Debug)]
pub(crate) struct Zones {
    limits: EvictionLimits,
    states: HashMap<String, (ZoneState, usize)>,
    buckets: HashMap<String, Bucket>,
}

impl Zones {
    pub(crate) fn new(limits: EvictionLimits) -> Zones {
        Zones { limits, states: HashMap::new(), buckets: HashMap::new() }
    }

    /// Recomputes every zone's state from `nodes`; a zone whose rate changed gets a new
    /// (full) bucket, as Kubernetes swaps its limiter.
    pub(crate) fn observe<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>, now: Instant) {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for node in nodes {
            let entry = counts.entry(zone_key(node)).or_default();
            if decide::ready_status(node).as_deref() == Some("True") {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        self.states = counts
            .into_iter()
            .map(|(zone, (ready, not_ready))| {
                (zone, (zone_state(ready, not_ready, self.limits.unhealthy_zone_threshold), ready + not_ready))
            })
            .collect();
        self.buckets.retain(|zone, _| self.states.contains_key(zone));
        for (zone, (state, size)) in &self.states {
            let rate = zone_rate(*state, *size, &self.limits);
            let same = self.buckets.get(zone).is_some_and(|b| b.rate == rate);
            if !same {
                self.buckets.insert(zone.clone(), Bucket { rate, tokens: 1.0, at: now });
            }
        }
    }

    /// Every zone is fully disrupted: taint nothing, untaint what was tainted.
    pub(crate) fn all_fully_disrupted(&self) -> bool {
        !self.states.is_empty() && self.states.values().all(|(s, _)| *s == ZoneState::FullDisruption)
    }

    /// The state of `node`'s zone.
    pub(crate) fn state_of(&self, node: &Node) -> Option<ZoneState> {
        self.states.get(&zone_key(node)).map(|(s, _)| *s)
    }

    /// Whether `node`'s zone may have one more node tainted now (takes the token).
    pub(crate) fn admit(&mut self, node: &Node, now: Instant) -> bool {
        self.buckets.get_mut(&zone_key(node)).is_some_and(|b| b.take(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use std::time::Duration;

    fn node(name: &str, zone: &str, ready: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        if !zone.is_empty() {
            n.metadata.labels = Some([("topology.kubernetes.io/zone".to_string(), zone.to_string())].into());
        }
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: ready.into(), ..Default::default() }]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn zone_states_follow_kubernetes_thresholds() {
        for (ready, not_ready, want) in [
            (0, 0, ZoneState::Normal),
            (5, 0, ZoneState::Normal),
            (0, 1, ZoneState::FullDisruption),
            (0, 3, ZoneState::FullDisruption),
            (1, 2, ZoneState::Normal),             // two down is never a disruption
            (1, 3, ZoneState::PartialDisruption),  // 75 %
            (3, 3, ZoneState::Normal),             // 50 % < 55 %
            (9, 11, ZoneState::PartialDisruption), // 55 %
        ] {
            assert_eq!(zone_state(ready, not_ready, 0.55), want, "{ready} ready, {not_ready} not");
        }
        let limits = EvictionLimits::default();
        assert_eq!(zone_rate(ZoneState::Normal, 3, &limits), 0.1);
        assert_eq!(zone_rate(ZoneState::FullDisruption, 3, &limits), 0.1);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 50, &limits), 0.0);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 51, &limits), 0.01);
    }

    #[test]
    fn zone_keys_use_region_and_zone_labels() {
        assert_eq!(zone_key(&node("a", "", "True")), "");
        assert_eq!(zone_key(&node("a", "z1", "True")), ":\0:z1");
        let mut old = node("b", "", "True");
        old.metadata.labels = Some(
            [
                ("failure-domain.beta.kubernetes.io/region".to_string(), "r".to_string()),
                ("failure-domain.beta.kubernetes.io/zone".to_string(), "z".to_string()),
            ]
            .into(),
        );
        assert_eq!(zone_key(&old), "r:\0:z");
    }

    #[test]
    fn buckets_pace_each_zone_and_a_new_rate_starts_full() {
        let limits = EvictionLimits { eviction_rate: 1.0, ..EvictionLimits::default() };
        let t0 = Instant::now();
        let a = [node("a1", "a", "False"), node("a2", "a", "True"), node("a3", "a", "True")];
        let b = [node("b1", "b", "Unknown"), node("b2", "b", "True")];
        let mut zones = Zones::new(limits);
        zones.observe(a.iter().chain(&b), t0);
        assert_eq!(zones.state_of(&a[0]), Some(ZoneState::Normal));
        // One at once per zone, the next a second later.
        assert!(zones.admit(&a[0], t0));
        assert!(!zones.admit(&a[0], t0 + Duration::from_millis(500)));
        assert!(zones.admit(&b[0], t0));
        assert!(zones.admit(&a[0], t0 + Duration::from_millis(1000)));
        // Zone a loses every node: fully disrupted, same rate, same bucket (no new token).
        let down = [node("a1", "a", "False"), node("a2", "a", "Unknown"), node("a3", "a", "False")];
        zones.observe(down.iter().chain(&b), t0 + Duration::from_millis(1000));
        assert_eq!(zones.state_of(&down[0]), Some(ZoneState::FullDisruption));
        assert!(!zones.admit(&down[1], t0 + Duration::from_millis(1000)));
        assert!(!zones.all_fully_disrupted());
        // Three of four down in a zone of at most 50 nodes: partial, no tainting at all.
        let partial =
            [node("a1", "a", "False"), node("a2", "a", "False"), node("a3", "a", "False"), node("a4", "a", "True")];
        zones.observe(partial.iter().chain(&b), t0 + Duration::from_secs(5));
        assert_eq!(zones.state_of(&partial[0]), Some(ZoneState::PartialDisruption));
        assert!(!zones.admit(&partial[0], t0 + Duration::from_secs(60)));
        // Every zone down: the controller stands still.
        let b_down = [node("b1", "b", "Unknown"), node("b2", "b", "Unknown")];
        zones.observe(down.iter().chain(&b_down), t0 + Duration::from_secs(61));
        assert!(zones.all_fully_disrupted());
    }
}
