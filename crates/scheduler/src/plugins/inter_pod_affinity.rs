//! InterPodAffinity: required pod affinity and anti-affinity by topology key (the pod's
//! own terms, and existing pods' anti-affinity against it) filter; preferred terms of
//! both sides, and existing pods' required affinity (weight 1), score.
//!
//! The pre-filter is O(terms + domains), not O(pods): the cache keeps matching pods per
//! domain for each term in use ([`Cache::group_counts`]) and existing pods' anti-affinity
//! terms per distinct term and domain ([`Cache::existing_anti_affinity`]). Terms with a
//! namespaceSelector are counted by a walk of the pods their selector may select.

use std::collections::HashMap;

use crate::cache::{AffinityTerm, Cache, DomainCounts, GroupKey, NodeInfo, PodInfo, bump_domain};
use crate::framework::{Change, MAX_NODE_SCORE, Plugin, Prepared, Rejection};

/// The InterPodAffinity filter and score.
pub struct InterPodAffinity {
    /// Weight of existing pods' required affinity terms in the score (hardPodAffinityWeight).
    pub hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity { hard_pod_affinity_weight: 1 }
    }
}

/// Reason: an existing pod's anti-affinity forbids the node.
pub const EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
/// Reason: the pod's affinity is not satisfied.
pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason: the pod's anti-affinity is violated.
pub const ANTI: &str = "node(s) didn't match pod anti-affinity rules";

/// Counts per topology key and value.
type Counts = HashMap<String, HashMap<String, i64>>;

fn bump(counts: &mut Counts, key: &str, value: &str, by: i64) {
    *counts.entry(key.to_string()).or_default().entry(value.to_string()).or_insert(0) += by;
}

/// Pods other than `pod` that `term` selects, per domain of its topology key: the
/// cache's incremental counts, or a walk of the candidates for a namespaceSelector term.
fn term_counts(term: &AffinityTerm, pod: &PodInfo, cache: &Cache) -> DomainCounts {
    let mut counts = match GroupKey::of_term(term) {
        Some(key) => cache.group_counts(&key),
        None => {
            let mut counts = HashMap::new();
            for (existing, node) in cache.candidates(&term.selector) {
                if term.matches(existing, &cache.namespaces)
                    && let Some(v) = term_domain(term, node)
                {
                    *counts.entry(v.to_string()).or_insert(0) += 1;
                }
            }
            DomainCounts::new(counts)
        }
    };
    // The pod itself is not in the cache while it is scheduled; if it is (a stale
    // placement), it does not count against itself.
    if let Some(v) = cache.placed_domain(&pod.key, &term.topology_key)
        && term.matches(pod, &cache.namespaces)
    {
        let map = std::sync::Arc::make_mut(&mut counts);
        if let Some(c) = map.get_mut(&v) {
            *c -= 1;
            if *c <= 0 {
                map.remove(&v);
            }
        }
    }
    counts
}

#[derive(Clone)]
struct FilterState {
    /// Existing pods' anti-affinity terms that match the incoming pod, each with the pods
    /// carrying it per domain.
    existing_anti: Vec<(AffinityTerm, DomainCounts)>,
    /// Per required affinity term (by index): matching pods per domain.
    affinity: Vec<DomainCounts>,
    /// Per required anti-affinity term (by index): matching pods per domain.
    anti: Vec<DomainCounts>,
    /// The pod matches its own affinity terms: when no pod anywhere matches them, it is
    /// the first of its group and may go anywhere.
    matches_own_affinity: bool,
}

fn term_domain<'a>(term: &AffinityTerm, node: &'a NodeInfo) -> Option<&'a str> {
    node.labels.get(&term.topology_key).map(String::as_str)
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache) -> Result<Prepared, Rejection> {
        let any_existing_anti = cache.any_required_anti_affinity();
        if pod.required_affinity.is_empty() && pod.required_anti_affinity.is_empty() && !any_existing_anti {
            return Ok(Prepared::skip());
        }
        let existing_anti = cache
            .existing_anti_affinity()
            .filter(|(term, _)| term.matches(pod, &cache.namespaces))
            .map(|(term, counts)| (term.clone(), counts.clone()))
            .collect();
        let affinity: Vec<DomainCounts> = pod.required_affinity.iter().map(|t| term_counts(t, pod, cache)).collect();
        let anti = pod.required_anti_affinity.iter().map(|t| term_counts(t, pod, cache)).collect();
        let matches_own_affinity = pod.required_affinity.iter().all(|t| t.matches(pod, &cache.namespaces));
        let state = FilterState { existing_anti, affinity, anti, matches_own_affinity };
        Ok(Prepared::with(state))
    }

    fn update(
        &self,
        pod: &PodInfo,
        prepared: &mut Prepared,
        change: Change,
        other: &PodInfo,
        node: &NodeInfo,
        cache: &Cache,
    ) {
        let Some(s) = prepared.get::<FilterState>() else {
            return;
        };
        let by = change.sign();
        let mut s = s.clone();
        for t in &other.required_anti_affinity {
            if let Some(v) = term_domain(t, node)
                && t.matches(pod, &cache.namespaces)
            {
                match s.existing_anti.iter_mut().find(|(term, _)| term == t) {
                    Some((_, counts)) => bump_domain(counts, v, by),
                    None if by > 0 => {
                        let mut counts = DomainCounts::default();
                        bump_domain(&mut counts, v, by);
                        s.existing_anti.push((t.clone(), counts));
                    }
                    None => {}
                }
            }
        }
        for (terms, counts) in [(&pod.required_affinity, &mut s.affinity), (&pod.required_anti_affinity, &mut s.anti)] {
            for (t, c) in terms.iter().zip(counts.iter_mut()) {
                if let Some(v) = term_domain(t, node)
                    && t.matches(other, &cache.namespaces)
                {
                    bump_domain(c, v, by);
                }
            }
        }
        *prepared = Prepared::with(s);
    }

    fn filter(&self, pod: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(s) = prepared.get::<FilterState>() else {
            return Ok(());
        };
        // As Kubernetes: the first pod of a group whose affinity terms select itself may
        // go anywhere when no pod matches them yet.
        let first_of_group = s.matches_own_affinity && s.affinity.iter().all(|c| c.values().all(|n| *n <= 0));
        for (i, term) in pod.required_affinity.iter().enumerate() {
            let Some(v) = term_domain(term, node) else {
                return Err(Rejection::unresolvable(AFFINITY));
            };
            if !first_of_group && s.affinity[i].get(v).copied().unwrap_or(0) <= 0 {
                return Err(Rejection::unresolvable(AFFINITY));
            }
        }
        for (term, counts) in pod.required_anti_affinity.iter().zip(&s.anti) {
            if let Some(v) = term_domain(term, node)
                && counts.get(v).is_some_and(|c| *c > 0)
            {
                return Err(Rejection::unschedulable(ANTI));
            }
        }
        if s.existing_anti.iter().any(|(t, m)| term_domain(t, node).is_some_and(|v| m.get(v).is_some_and(|c| *c > 0))) {
            return Err(Rejection::unschedulable(EXISTING_ANTI));
        }
        Ok(())
    }

    fn pre_score(&self, pod: &PodInfo, cache: &Cache, _: &[&NodeInfo]) -> Prepared {
        let mut scores = Counts::new();
        for (w, sign) in
            pod.preferred_affinity.iter().map(|w| (w, 1)).chain(pod.preferred_anti_affinity.iter().map(|w| (w, -1)))
        {
            for (v, n) in term_counts(&w.term, pod, cache).iter() {
                bump(&mut scores, &w.term.topology_key, v, sign * w.weight as i64 * n);
            }
        }
        for (existing, node) in cache.pods_with_scoring_terms() {
            for t in &existing.required_affinity {
                if self.hard_pod_affinity_weight > 0
                    && t.matches(pod, &cache.namespaces)
                    && let Some(v) = term_domain(t, node)
                {
                    bump(&mut scores, &t.topology_key, v, self.hard_pod_affinity_weight);
                }
            }
            for w in &existing.preferred_affinity {
                if w.term.matches(pod, &cache.namespaces)
                    && let Some(v) = term_domain(&w.term, node)
                {
                    bump(&mut scores, &w.term.topology_key, v, w.weight as i64);
                }
            }
            for w in &existing.preferred_anti_affinity {
                if w.term.matches(pod, &cache.namespaces)
                    && let Some(v) = term_domain(&w.term, node)
                {
                    bump(&mut scores, &w.term.topology_key, v, -(w.weight as i64));
                }
            }
        }
        if scores.is_empty() { Prepared::skip() } else { Prepared::with(scores) }
    }

    fn score(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> i64 {
        let Some(scores) = prepared.get::<Counts>() else {
            return 0;
        };
        scores.iter().map(|(k, m)| node.labels.get(k).and_then(|v| m.get(v)).copied().unwrap_or(0)).sum()
    }

    fn normalize(&self, _: &PodInfo, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = if max > min { MAX_NODE_SCORE * (*s - min) / (max - min) } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{bound_labelled, feasible_in, labelled, node, reasons, scores};
    use serde_json::json;

    fn zones() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node("a1", json!({"labels": {"zone": "a"}})),
            node("a2", json!({"labels": {"zone": "a"}})),
            node("b1", json!({"labels": {"zone": "b"}})),
            node("nozone", json!({})),
        ]
    }

    fn term(kind: &str, key: &str, app: &str) -> serde_json::Value {
        json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}})
    }

    #[test]
    fn required_affinity_and_anti_affinity() {
        let pods = vec![bound_labelled("db", "a1", json!({"app": "db"}), json!({}))];
        let p = labelled(json!({"app": "web"}), term("podAffinity", "zone", "db"));
        assert_eq!(feasible_in(&InterPodAffinity::default(), zones(), pods.clone(), &p), ["a1", "a2"]);
        let p = labelled(json!({"app": "web"}), term("podAntiAffinity", "zone", "db"));
        assert_eq!(feasible_in(&InterPodAffinity::default(), zones(), pods.clone(), &p), ["b1", "nozone"]);
        let p = labelled(json!({"app": "web"}), term("podAntiAffinity", "kubernetes.io/hostname", "db"));
        assert_eq!(feasible_in(&InterPodAffinity::default(), zones(), pods.clone(), &p), ["a2", "b1", "nozone"]);
        // The first pod of a group that selects itself may go anywhere with the key.
        let p = labelled(json!({"app": "cache"}), term("podAffinity", "zone", "cache"));
        assert_eq!(feasible_in(&InterPodAffinity::default(), zones(), pods.clone(), &p), ["a1", "a2", "b1"]);
        let r = reasons(
            &InterPodAffinity::default(),
            zones(),
            pods,
            &labelled(json!({}), term("podAffinity", "zone", "db")),
        );
        assert_eq!(r[0], ("b1".to_string(), AFFINITY.to_string()));
    }

    #[test]
    fn existing_pods_anti_affinity_is_honoured() {
        let pods = vec![bound_labelled("lonely", "a1", json!({"app": "x"}), term("podAntiAffinity", "zone", "web"))];
        let p = labelled(json!({"app": "web"}), json!({}));
        assert_eq!(feasible_in(&InterPodAffinity::default(), zones(), pods.clone(), &p), ["b1", "nozone"]);
        let r = reasons(&InterPodAffinity::default(), zones(), pods, &p);
        assert_eq!(r[0], ("a1".to_string(), EXISTING_ANTI.to_string()));
    }

    #[test]
    fn preferred_terms_score() {
        let pods = vec![bound_labelled("db", "b1", json!({"app": "db"}), json!({}))];
        let p = labelled(
            json!({}),
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}),
        );
        let s = scores(&InterPodAffinity::default(), zones(), pods, &p);
        assert_eq!(s, [("a1".into(), 0), ("a2".into(), 0), ("b1".into(), 100), ("nozone".into(), 0)]);
    }

    #[test]
    fn preferred_anti_affinity_scores_down_the_domain() {
        let pods = vec![bound_labelled("db", "b1", json!({"app": "db"}), json!({}))];
        let p = labelled(
            json!({}),
            json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}),
        );
        let s = scores(&InterPodAffinity::default(), zones(), pods, &p);
        // Raw -50 in zone b, 0 elsewhere (a node without the key counts nothing), scaled over min..max.
        assert_eq!(s, [("a1".into(), 100), ("a2".into(), 100), ("b1".into(), 0), ("nozone".into(), 100)]);
    }

    #[test]
    fn existing_pods_terms_score_symmetrically() {
        let preferred = |kind: &str, weight: i32| {
            json!({"affinity": {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": weight, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}]}}})
        };
        let pods = vec![
            // Prefers web pods out of zone a: -30 there.
            bound_labelled("lonely", "a1", json!({"app": "x"}), preferred("podAntiAffinity", 30)),
            // Prefers web pods in zone b: +20 there.
            bound_labelled("friend", "b1", json!({"app": "y"}), preferred("podAffinity", 20)),
            // Requires web pods on its own node: hardPodAffinityWeight there.
            bound_labelled(
                "needy",
                "nozone",
                json!({"app": "z"}),
                term("podAffinity", "kubernetes.io/hostname", "web"),
            ),
        ];
        let p = labelled(json!({"app": "web"}), json!({}));
        let s = scores(&InterPodAffinity::default(), zones(), pods.clone(), &p);
        // Raw: a1 -30, a2 -30, b1 20, nozone 1; (raw - min) * 100 / (max - min).
        assert_eq!(s, [("a1".into(), 0), ("a2".into(), 0), ("b1".into(), 100), ("nozone".into(), 62)]);
        let heavy = InterPodAffinity { hard_pod_affinity_weight: 100 };
        let s = scores(&heavy, zones(), pods.clone(), &p);
        assert_eq!(s, [("a1".into(), 0), ("a2".into(), 0), ("b1".into(), 38), ("nozone".into(), 100)]);
        let off = InterPodAffinity { hard_pod_affinity_weight: 0 };
        let s = scores(&off, zones(), pods.clone(), &p);
        assert_eq!(s, [("a1".into(), 0), ("a2".into(), 0), ("b1".into(), 100), ("nozone".into(), 60)]);
        // A pod none of the terms select gets no score from them.
        let other = labelled(json!({"app": "other"}), json!({}));
        let s = scores(&InterPodAffinity::default(), zones(), pods, &other);
        assert!(s.iter().all(|(_, v)| *v == 0), "{s:?}");
    }

    #[test]
    fn namespace_selector_picks_namespaces_by_label() {
        use crate::plugins::testing::cache_of;
        let mut db = bound_labelled("db", "a1", json!({"app": "db"}), json!({})).pod.as_ref().clone();
        db.metadata.namespace = Some("data".into());
        let db = std::sync::Arc::new(PodInfo::new(std::sync::Arc::new(db)));
        let mut cache = cache_of(zones(), vec![db]);
        let anti = |ns_selector: serde_json::Value| {
            labelled(
                json!({"app": "web"}),
                json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone",
                 "namespaceSelector": ns_selector}]}}}),
            )
        };
        let feasible = |cache: &Cache, p: &PodInfo| -> Vec<String> {
            let plugin = InterPodAffinity::default();
            let prepared = plugin.pre_filter(p, cache).expect("pre-filter");
            let mut names: Vec<String> = cache
                .nodes()
                .iter()
                .filter(|n| n.node.is_some() && plugin.filter(p, &prepared, n).is_ok())
                .map(|n| n.name.clone())
                .collect();
            names.sort();
            names
        };
        let tiered = anti(json!({"matchLabels": {"tier": "storage"}}));
        // The namespace is unknown or unlabelled: the db pod is not looked at.
        assert_eq!(feasible(&cache, &tiered), ["a1", "a2", "b1", "nozone"]);
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": "data", "labels": {"tier": "storage"}}})).unwrap();
        cache.namespaces.insert("data".into(), std::sync::Arc::new(ns));
        assert_eq!(feasible(&cache, &tiered), ["b1", "nozone"]);
        assert_eq!(feasible(&cache, &anti(json!({"matchLabels": {"tier": "web"}}))), ["a1", "a2", "b1", "nozone"]);
        // `{}` selects every namespace; no selector means the pod's own ("default").
        assert_eq!(feasible(&cache, &anti(json!({}))), ["b1", "nozone"]);
        let own = labelled(json!({"app": "web"}), term("podAntiAffinity", "zone", "db"));
        assert_eq!(feasible(&cache, &own), ["a1", "a2", "b1", "nozone"]);
    }
}
