//! PodTopologySpread: `topologySpreadConstraints`. DoNotSchedule constraints filter
//! (skew = pods in the node's domain + self − the global minimum must stay ≤ maxSkew,
//! with minDomains, nodeAffinityPolicy and nodeTaintsPolicy); ScheduleAnyway ones score.
//! A pod without constraints that a Service, ReplicationController, ReplicaSet or
//! StatefulSet selects gets the cluster defaults over the pods those objects select: with
//! `defaultingType: System` (the default) zone maxSkew 5 and hostname maxSkew 3,
//! ScheduleAnyway; with `List`, the plugin args' `defaultConstraints`.
//!
//! When every node with the topology key is eligible (no node requirement honoured, taints
//! ignored, one topology key) the counts come from the cache's incremental per-domain
//! counts ([`Cache::group_counts`], [`Cache::node_domains`]): O(domains) per cycle.
//! Otherwise the eligible nodes are walked and the matching pods found by label.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};

use crate::cache::{Cache, DomainCounts, GroupKey, NodeInfo, PodInfo};
use crate::framework::{Change, MAX_NODE_SCORE, Plugin, Prepared, Rejection};
use crate::plugins::node_affinity::Required;
use crate::selectors::{Selector, untolerated};

/// The PodTopologySpread filter and score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodTopologySpread {
    /// The constraints of pods without their own.
    pub defaults: Defaults,
}

/// Where default constraints come from (`defaultingType`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Defaults {
    /// Kubernetes' built-in defaults (zone maxSkew 5, hostname maxSkew 3, ScheduleAnyway).
    #[default]
    System,
    /// The configured `defaultConstraints` (none: no defaults).
    List(Vec<DefaultConstraint>),
}

/// One configured default constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultConstraint {
    /// maxSkew (≥ 1).
    pub max_skew: i32,
    /// topologyKey.
    pub topology_key: String,
    /// `DoNotSchedule` or `ScheduleAnyway`.
    pub when_unsatisfiable: String,
}

impl PodTopologySpread {
    /// The plugin from its `PodTopologySpreadArgs` (`defaultConstraints`, `defaultingType`),
    /// checked as Kubernetes' `ValidatePodTopologySpreadArgs`.
    pub fn from_args(args: &serde_json::Value) -> Result<PodTopologySpread, String> {
        let defaulting = args.get("defaultingType").and_then(|t| t.as_str()).unwrap_or("System");
        let list = args.get("defaultConstraints").and_then(|l| l.as_array()).cloned().unwrap_or_default();
        if args.get("defaultConstraints").is_some_and(|l| !l.is_array() && !l.is_null()) {
            return Err("defaultConstraints: must be a list".into());
        }
        let mut constraints: Vec<DefaultConstraint> = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let field = format!("defaultConstraints[{i}]");
            let max_skew = c.get("maxSkew").and_then(|m| m.as_i64()).unwrap_or(0);
            if max_skew <= 0 || max_skew > i64::from(i32::MAX) {
                return Err(format!("{field}.maxSkew: Invalid value: {max_skew}: must be greater than zero"));
            }
            let topology_key = c.get("topologyKey").and_then(|k| k.as_str()).unwrap_or("").to_string();
            if topology_key.is_empty() {
                return Err(format!("{field}.topologyKey: Required value: can not be empty"));
            }
            let when = c.get("whenUnsatisfiable").and_then(|w| w.as_str()).unwrap_or("").to_string();
            if when != "DoNotSchedule" && when != "ScheduleAnyway" {
                return Err(format!(
                    "{field}.whenUnsatisfiable: Unsupported value: {when:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                ));
            }
            if c.get("labelSelector").is_some_and(|l| !l.is_null()) {
                return Err(format!(
                    "{field}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                ));
            }
            if constraints.iter().any(|o| o.topology_key == topology_key && o.when_unsatisfiable == when) {
                return Err(format!("{field}: Duplicate value: {{{topology_key:?}, {when:?}}}"));
            }
            constraints.push(DefaultConstraint { max_skew: max_skew as i32, topology_key, when_unsatisfiable: when });
        }
        match defaulting {
            "System" if constraints.is_empty() => Ok(PodTopologySpread { defaults: Defaults::System }),
            "System" => Err("defaultConstraints: Invalid value: when .defaultingType is \"System\", .defaultConstraints must be empty".into()),
            "List" => Ok(PodTopologySpread { defaults: Defaults::List(constraints) }),
            other => Err(format!(
                "defaultingType: Unsupported value: {other:?}: supported values: \"List\", \"System\""
            )),
        }
    }
}

/// Reason: the skew would exceed maxSkew.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Reason: the node lacks a constraint's topology key.
pub const MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

#[derive(Clone)]
struct Constraint {
    max_skew: i64,
    key: String,
    selector: Selector,
    min_domains: usize,
    honor_affinity: bool,
    honor_taints: bool,
    self_match: i64,
    /// A system default: nodes lacking another constraint's key still count for this one.
    system_default: bool,
}

/// The zone label.
pub const ZONE: &str = "topology.kubernetes.io/zone";
/// The hostname label.
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// The pods the objects selecting `pod` select, as Kubernetes' `DefaultSelector`: the
/// selectors of the Services of its namespace that select it, and of the
/// ReplicationController, ReplicaSet or StatefulSet that controls it. `None` when none.
pub fn default_selector(pod: &PodInfo, cache: &Cache) -> Option<Selector> {
    let mut selector = Selector::everything();
    for svc in cache.services.values() {
        let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if svc.metadata.namespace.as_deref() == Some(pod.namespace.as_str()) {
            let sel = Selector::from_map(sel);
            if sel.matches(&pod.labels) {
                selector.and(&sel);
            }
        }
    }
    let owner = pod.pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    if let Some(o) = owner {
        let key = format!("{}/{}", pod.namespace, o.name);
        let owned = match (o.api_version.as_str(), o.kind.as_str()) {
            ("v1", "ReplicationController") => cache
                .replication_controllers
                .get(&key)
                .and_then(|rc| rc.spec.as_ref()?.selector.as_ref().map(Selector::from_map)),
            ("apps/v1", "ReplicaSet") => cache
                .replica_sets
                .get(&key)
                .and_then(|rs| rs.spec.as_ref().map(|s| Selector::from_label_selector(Some(&s.selector)))),
            ("apps/v1", "StatefulSet") => cache
                .stateful_sets
                .get(&key)
                .and_then(|ss| ss.spec.as_ref().map(|s| Selector::from_label_selector(Some(&s.selector)))),
            _ => None,
        };
        if let Some(sel) = owned {
            selector.and(&sel);
        }
    }
    (!selector.is_everything()).then_some(selector)
}

/// One constraint's counts.
#[derive(Clone)]
struct Counted {
    /// Matching pods per domain (eligible nodes only; a domain absent has none).
    pods: DomainCounts,
    /// How many eligible domains there are.
    domains: usize,
    /// The fewest matching pods in an eligible domain.
    min: i64,
}

impl Counted {
    /// From counts holding every eligible domain (0 for those without pods).
    fn of_all(pods: HashMap<String, i64>) -> Counted {
        let min = pods.values().copied().min().unwrap_or(0);
        Counted { domains: pods.len(), min, pods: DomainCounts::new(pods) }
    }
}

#[derive(Clone)]
struct Spread {
    constraints: Vec<Constraint>,
    /// Per constraint: its counts.
    counts: Vec<Counted>,
    /// Whether a node lacking one of the constraints' keys is ignored (scores 0): when the
    /// pod has constraints of its own or they come from configured defaults, not from the
    /// system defaults (Kubernetes' `requireAllTopologies`).
    require_all: bool,
}

/// The raw score of a node that `Spread::require_all` ignores; normalized to 0.
const IGNORED: i64 = -1;

fn compile(defaults: &Defaults, pod: &PodInfo, when: &str, cache: &Cache) -> Vec<Constraint> {
    let own = pod.spec().topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty());
    if !own {
        let wanted: Vec<(&str, i64)> = match defaults {
            Defaults::System if when == "ScheduleAnyway" => vec![(ZONE, 5), (HOSTNAME, 3)],
            Defaults::System => Vec::new(),
            Defaults::List(list) => list
                .iter()
                .filter(|c| c.when_unsatisfiable == when)
                .map(|c| (c.topology_key.as_str(), i64::from(c.max_skew)))
                .collect(),
        };
        if wanted.is_empty() {
            return Vec::new();
        }
        let Some(selector) = default_selector(pod, cache) else {
            return Vec::new();
        };
        let self_match = i64::from(selector.matches(&pod.labels));
        let system_default = matches!(defaults, Defaults::System);
        return wanted
            .into_iter()
            .map(|(key, max_skew)| Constraint {
                max_skew,
                key: key.to_string(),
                selector: selector.clone(),
                min_domains: 1,
                honor_affinity: true,
                honor_taints: false,
                self_match,
                system_default,
            })
            .collect();
    }
    pod.spec()
        .topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c: &TopologySpreadConstraint| {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = pod.labels.get(key) {
                    selector.and_equals(key, v);
                }
            }
            let self_match = i64::from(selector.matches(&pod.labels));
            Constraint {
                max_skew: i64::from(c.max_skew.max(1)),
                key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                self_match,
                system_default: false,
            }
        })
        .collect()
}

/// Whether `node` counts for constraint `c`: a node lacking any constraint's key is not
/// counted (as Kubernetes), nor one the policies exclude.
fn eligible(
    node: &NodeInfo,
    c: &Constraint,
    constraints: &[Constraint],
    required: &Required,
    tolerations: &[Toleration],
) -> bool {
    node.node.is_some()
        && (if c.system_default {
            node.labels.contains_key(&c.key)
        } else {
            constraints.iter().all(|c| node.labels.contains_key(&c.key))
        })
        && (!c.honor_affinity || required.matches(node))
        && (!c.honor_taints || untolerated(&node.taints, tolerations, &["NoSchedule", "NoExecute"]).is_none())
}

/// Counts matching pods per domain over the nodes the constraints consider: every
/// eligible node's domain is present (with 0 when it has no matching pod); the matching
/// pods are found through the cache's label index, not by walking every pod.
fn count(pod: &PodInfo, cache: &Cache, constraints: &[Constraint], only: Option<&[&NodeInfo]>) -> Vec<Counted> {
    let required = Required::of(pod);
    let every_node = constraints.iter().all(|c| {
        (c.system_default || c.key == constraints[0].key)
            && (!c.honor_affinity || required.is_empty())
            && !c.honor_taints
    });
    if only.is_none() && every_node {
        return constraints
            .iter()
            .map(|c| {
                let key = GroupKey {
                    namespaces: vec![pod.namespace.clone()],
                    all_namespaces: false,
                    selector: c.selector.clone(),
                    topology_key: c.key.clone(),
                    skip_terminating: true,
                };
                let pods = cache.group_counts(&key);
                let domains = cache.node_domains(&c.key).len();
                // A domain without pods is absent from `pods`: then the minimum is 0.
                let min = if pods.len() < domains { 0 } else { pods.values().copied().min().unwrap_or(0) };
                Counted { pods, domains, min }
            })
            .collect();
    }
    let tolerations = pod.spec().tolerations.clone().unwrap_or_default();
    let eligible = |node: &NodeInfo, c: &Constraint| eligible(node, c, constraints, &required, &tolerations);
    let mut counts = vec![HashMap::new(); constraints.len()];
    let only_names: Option<std::collections::HashSet<&str>> = only.map(|n| n.iter().map(|n| n.name.as_str()).collect());
    for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
        let mut register = |node: &NodeInfo| {
            if eligible(node, c) {
                let value = &node.labels[&c.key];
                if !counts.contains_key(value) {
                    counts.insert(value.clone(), 0i64);
                }
            }
        };
        match only {
            Some(nodes) => nodes.iter().for_each(|n| register(n)),
            None => cache.nodes().iter().for_each(&mut register),
        }
        for (existing, node) in cache.candidates(&c.selector) {
            if existing.namespace != pod.namespace || existing.terminating() || !c.selector.matches(&existing.labels) {
                continue;
            }
            if only_names.as_ref().is_some_and(|names| !names.contains(node.name.as_str())) || !eligible(node, c) {
                continue;
            }
            if let Some(n) = counts.get_mut(&node.labels[&c.key]) {
                *n += 1;
            }
        }
    }
    counts.into_iter().map(Counted::of_all).collect()
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache) -> Result<Prepared, Rejection> {
        let constraints = compile(&self.defaults, pod, "DoNotSchedule", cache);
        if constraints.is_empty() {
            return Ok(Prepared::skip());
        }
        let counts = count(pod, cache, &constraints, None);
        Ok(Prepared::with(Spread { constraints, counts, require_all: true }))
    }

    fn update(
        &self,
        pod: &PodInfo,
        prepared: &mut Prepared,
        change: Change,
        other: &PodInfo,
        node: &NodeInfo,
        _cache: &Cache,
    ) {
        let Some(s) = prepared.get::<Spread>() else {
            return;
        };
        if other.namespace != pod.namespace || other.terminating() {
            return;
        }
        let required = Required::of(pod);
        let tolerations = pod.spec().tolerations.clone().unwrap_or_default();
        let mut s = s.clone();
        for (c, counted) in s.constraints.iter().zip(s.counts.iter_mut()) {
            if !c.selector.matches(&other.labels) || !eligible(node, c, &s.constraints, &required, &tolerations) {
                continue;
            }
            let pods = std::sync::Arc::make_mut(&mut counted.pods);
            *pods.entry(node.labels[&c.key].clone()).or_insert(0) += change.sign();
            // A domain left out of `pods` has no pods: the minimum is then 0.
            counted.min = if pods.len() < counted.domains { 0 } else { pods.values().copied().min().unwrap_or(0) };
        }
        *prepared = Prepared::with(s);
    }

    fn filter(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(s) = prepared.get::<Spread>() else {
            return Ok(());
        };
        for (c, counts) in s.constraints.iter().zip(&s.counts) {
            let Some(value) = node.labels.get(&c.key) else {
                return Err(Rejection::unresolvable(MISSING_LABEL));
            };
            let min = if counts.domains < c.min_domains { 0 } else { counts.min };
            let here = counts.pods.get(value).copied().unwrap_or(0);
            if here + c.self_match - min > c.max_skew {
                return Err(Rejection::unschedulable(REASON));
            }
        }
        Ok(())
    }

    fn pre_score(&self, pod: &PodInfo, cache: &Cache, feasible: &[&NodeInfo]) -> Prepared {
        let constraints = compile(&self.defaults, pod, "ScheduleAnyway", cache);
        if constraints.is_empty() {
            return Prepared::skip();
        }
        // Hostname domains are counted over the feasible nodes only, others cluster-wide.
        let by_host = constraints.iter().all(|c| c.key == "kubernetes.io/hostname");
        let counts = count(pod, cache, &constraints, by_host.then_some(feasible));
        let own = pod.spec().topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty());
        let require_all = own || !matches!(self.defaults, Defaults::System);
        Prepared::with(Spread { constraints, counts, require_all })
    }

    fn score(&self, _: &PodInfo, prepared: &Prepared, node: &NodeInfo) -> i64 {
        let Some(s) = prepared.get::<Spread>() else {
            return 0;
        };
        if s.require_all && s.constraints.iter().any(|c| !node.labels.contains_key(&c.key)) {
            return IGNORED;
        }
        let mut total = 0.0;
        for (c, counts) in s.constraints.iter().zip(&s.counts) {
            let Some(value) = node.labels.get(&c.key) else {
                continue;
            };
            let weight = ((counts.domains + 2) as f64).ln();
            total += counts.pods.get(value).copied().unwrap_or(0) as f64 * weight + (c.max_skew - 1) as f64;
        }
        total.round() as i64
    }

    fn normalize(&self, _: &PodInfo, scores: &mut [i64]) {
        // Fewer matching pods is better; ignored nodes (without the topology keys) get 0
        // and take no part in the minimum and maximum.
        let counted = || scores.iter().copied().filter(|s| *s != IGNORED);
        let (min, max) = (counted().min().unwrap_or(0), counted().max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{bound_labelled, feasible_in, labelled, node, reasons, scores};
    use serde_json::json;

    fn nodes() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node("a1", json!({"labels": {"zone": "a"}})),
            node("b1", json!({"labels": {"zone": "b"}})),
            node("c1", json!({"labels": {"zone": "c"}, "taints": [{"key": "t", "effect": "NoSchedule"}]})),
            node("nozone", json!({})),
        ]
    }

    fn spread(when: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"topologySpreadConstraints": [c]})
    }

    fn web(name: &str, node: &str) -> std::sync::Arc<PodInfo> {
        bound_labelled(name, node, json!({"app": "web"}), json!({}))
    }

    #[test]
    fn skew_is_bounded() {
        let p = labelled(json!({"app": "web"}), spread("DoNotSchedule", json!({})));
        // a has one, b and c none: a would make skew 2.
        let pods = vec![web("w1", "a1")];
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods.clone(), &p), ["b1", "c1"]);
        let r = reasons(&PodTopologySpread::default(), nodes(), pods.clone(), &p);
        assert_eq!(r, [("a1".into(), REASON.into()), ("nozone".into(), MISSING_LABEL.into())]);
        // Honouring taints drops c's empty domain: the minimum becomes 1.
        let pods = vec![web("w1", "a1"), web("w2", "b1")];
        let p = labelled(json!({"app": "web"}), spread("DoNotSchedule", json!({})));
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods.clone(), &p), ["c1"]);
        let p = labelled(json!({"app": "web"}), spread("DoNotSchedule", json!({"nodeTaintsPolicy": "Honor"})));
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods.clone(), &p), ["a1", "b1", "c1"]);
        // minDomains above the domain count makes the global minimum 0.
        let p = labelled(json!({"app": "web"}), spread("DoNotSchedule", json!({"minDomains": 5})));
        let pods = vec![web("w1", "a1"), web("w2", "b1"), web("w3", "c1")];
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods, &p), Vec::<String>::new());
    }

    #[test]
    fn node_affinity_policy_limits_domains() {
        let mut spec = spread("DoNotSchedule", json!({}));
        spec["nodeSelector"] = json!({"zone": "a"});
        let p = labelled(json!({"app": "web"}), spec.clone());
        // Only zone a counts (Honor): skew is always 0 there.
        let pods = vec![web("w1", "a1"), web("w2", "a1")];
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods.clone(), &p), ["a1", "b1", "c1"]);
        let mut c = spec;
        c["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
        let p = labelled(json!({"app": "web"}), c);
        assert_eq!(feasible_in(&PodTopologySpread::default(), nodes(), pods, &p), ["b1", "c1"]);
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let p = labelled(json!({"app": "web"}), spread("ScheduleAnyway", json!({})));
        let pods = vec![web("w1", "a1"), web("w2", "a1"), web("w3", "b1")];
        let s = scores(&PodTopologySpread::default(), nodes()[..3].to_vec(), pods, &p);
        assert!(s[2].1 > s[1].1 && s[1].1 > s[0].1, "{s:?}");
        assert_eq!(s[2].1, 100);
    }

    #[test]
    fn schedule_anyway_gives_a_node_without_the_key_the_lowest_score() {
        // The pod's own constraint: "nozone" lacks the key, so it is ignored (0), and it
        // does not move the others' normalization.
        let p = labelled(json!({"app": "web"}), spread("ScheduleAnyway", json!({})));
        let pods = vec![web("w1", "a1"), web("w2", "a1"), web("w3", "b1")];
        let s = scores(&PodTopologySpread::default(), nodes(), pods.clone(), &p);
        let of = |n: &str| s.iter().find(|(name, _)| name == n).map(|(_, v)| *v).unwrap();
        // Before, the node without the key scored raw 0 and normalized to the best, 100.
        assert_eq!(of("nozone"), 0, "{s:?}");
        assert_eq!(of("c1"), 100, "{s:?}");
        assert!(of("b1") > of("a1"), "{s:?}");
        assert_eq!(&s[..3], &scores(&PodTopologySpread::default(), nodes()[..3].to_vec(), pods, &p)[..], "{s:?}");
    }
}

#[cfg(test)]
mod default_constraint_tests {
    use super::*;
    use crate::plugins::testing::{bound_labelled, cache_of, labelled, node};
    use serde_json::json;
    use std::sync::Arc;

    fn zoned() -> Vec<Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node("a1", json!({"labels": {ZONE: "a"}})),
            node("a2", json!({"labels": {ZONE: "a"}})),
            node("b1", json!({"labels": {ZONE: "b"}})),
            node("nozone", json!({})),
        ]
    }

    /// Normalized scores per node name (sorted), or `None` when pre-score skips.
    fn ranked(cache: &Cache, pod: &PodInfo) -> Option<Vec<(String, i64)>> {
        let mut feasible: Vec<&NodeInfo> = cache.nodes().iter().filter(|n| n.node.is_some()).collect();
        feasible.sort_by(|a, b| a.name.cmp(&b.name));
        let prepared = PodTopologySpread::default().pre_score(pod, cache, &feasible);
        if prepared.skip {
            return None;
        }
        let mut s: Vec<i64> = feasible.iter().map(|n| PodTopologySpread::default().score(pod, &prepared, n)).collect();
        PodTopologySpread::default().normalize(pod, &mut s);
        Some(feasible.iter().map(|n| n.name.clone()).zip(s).collect())
    }

    fn web_pods() -> Vec<Arc<PodInfo>> {
        let mut pods: Vec<Arc<PodInfo>> =
            (0..3).map(|i| bound_labelled(&format!("w{i}"), "a1", json!({"app": "web"}), json!({}))).collect();
        pods.push(bound_labelled("other", "b1", json!({"app": "db"}), json!({})));
        pods
    }

    #[test]
    fn a_service_gives_its_pods_zone_and_hostname_defaults() {
        let mut cache = cache_of(zoned(), web_pods());
        let pod = labelled(json!({"app": "web"}), json!({}));
        assert!(ranked(&cache, &pod).is_none(), "no service or controller: no default constraints");
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}}}),
        )
        .unwrap();
        cache.services.insert("default/web".into(), Arc::new(svc));
        let s = ranked(&cache, &pod).expect("defaults apply");
        let get = |n: &str| s.iter().find(|(name, _)| name == n).map(|(_, v)| *v).unwrap();
        // Three web pods on a1 (zone a): b1 (empty zone, empty host) ranks first, then a2
        // (empty host in the crowded zone), then a1.
        assert!(get("b1") > get("a2") && get("a2") > get("a1"), "{s:?}");
        // A service of another namespace, or one that does not select the pod, does not count.
        let db = labelled(json!({"app": "db"}), json!({}));
        assert!(ranked(&cache, &db).is_none());
        // Own constraints replace the defaults; the filter never uses them.
        assert!(PodTopologySpread::default().pre_filter(&pod, &cache).unwrap().skip);
    }

    #[test]
    fn a_controlling_replica_set_selects_the_group() {
        let mut cache = cache_of(zoned(), web_pods());
        let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}}}))
        .unwrap();
        cache.replica_sets.insert("default/web-1".into(), Arc::new(rs));
        let owned = |controller: bool| {
            let mut p = labelled(json!({"app": "web"}), json!({})).pod.as_ref().clone();
            p.metadata.owner_references = Some(vec![
                serde_json::from_value(json!({"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": controller}))
                .unwrap(),
            ]);
            PodInfo::new(Arc::new(p))
        };
        let s = ranked(&cache, &owned(true)).expect("defaults apply");
        let get = |n: &str| s.iter().find(|(name, _)| name == n).map(|(_, v)| *v).unwrap();
        assert!(get("b1") > get("a1"), "{s:?}");
        assert!(ranked(&cache, &owned(false)).is_none(), "only the controller counts");
    }
}
