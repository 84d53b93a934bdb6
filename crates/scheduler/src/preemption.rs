//! Preemption (Kubernetes' DefaultPreemption): when no node fits a pod, find the node
//! where evicting the fewest, least important lower-priority pods makes it fit, sparing
//! pods protected by a PodDisruptionBudget where possible. The pod is then nominated to
//! that node (`status.nominatedNodeName`) and the victims are deleted.

use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{
    Change, Diagnosis, Prepared, Profile, count_reasons, fits, nominated_node, pre_filter, update_state,
};
use crate::selectors::Selector;

/// The pods to evict on the chosen node.
#[derive(Debug, Clone)]
pub struct Victims {
    /// The node the preemptor is nominated to.
    pub node: String,
    /// Pods to delete.
    pub pods: Vec<Arc<PodInfo>>,
    /// How many victims are protected by an exhausted PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Reason for nodes where preemption cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Reason for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Share of the potential nodes dry-run for victims (Kubernetes' DefaultPreemption
/// `minCandidateNodesPercentage`).
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// Fewest potential nodes dry-run (`minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// How many candidates to find among `potential` nodes, as Kubernetes'
/// `calculateNumCandidates`: 10 % of them, at least 100, at most all.
pub fn candidates_wanted(potential: usize) -> usize {
    (potential * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(potential)
}

/// The budgets of the cluster, read once per preemption: (namespace, selector,
/// disruptions still allowed).
struct Budgets(Vec<(String, Selector, i32)>);

impl Budgets {
    fn of(cache: &Cache) -> Budgets {
        Budgets(
            cache
                .budgets
                .values()
                .map(|b| {
                    let sel = Selector::from_label_selector(b.spec.as_ref().and_then(|s| s.selector.as_ref()));
                    let allowed = b.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0);
                    (b.metadata.namespace.clone().unwrap_or_default(), sel, allowed)
                })
                .collect(),
        )
    }

    /// Splits victims (most important first) into those whose eviction would violate a
    /// budget and the others, as Kubernetes' `filterPodsWithPDBViolation`.
    fn split(&self, pods: Vec<Arc<PodInfo>>) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
        if self.0.is_empty() {
            return (Vec::new(), pods);
        }
        let mut allowed: Vec<i32> = self.0.iter().map(|(_, _, a)| *a).collect();
        let (mut violating, mut fine) = (Vec::new(), Vec::new());
        for p in pods {
            let mut violates = false;
            for ((namespace, sel, _), left) in self.0.iter().zip(allowed.iter_mut()) {
                if *namespace == p.namespace && !p.labels.is_empty() && sel.matches(&p.labels) {
                    *left -= 1;
                    if *left < 0 {
                        violates = true;
                    }
                }
            }
            if violates { violating.push(p) } else { fine.push(p) }
        }
        (violating, fine)
    }
}

/// The fewest, least important victims on `node` that make `pod` fit, or the reasons it
/// still would not fit, as Kubernetes' `SelectVictimsOnNode`: every lower-priority pod is
/// taken off a copy of the node and out of a copy of the pre-filter data (so that the
/// affinity and spread counts no longer see them), the pod must then fit (nominated pods
/// included), and victims are given back one by one, most important first and those a
/// budget protects before the others, while the pod still fits.
fn select_victims(
    profile: &Profile,
    prepared: &[Prepared],
    cache: &Cache,
    budgets: &Budgets,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<Victims, Vec<std::borrow::Cow<'static, str>>> {
    if !node.pods.iter().any(|p| p.priority < pod.priority) {
        return Err(vec![NO_VICTIMS.into()]);
    }
    let mut sim = node.clone();
    let mut state = prepared.to_vec();
    let mut potential: Vec<Arc<PodInfo>> = Vec::with_capacity(node.pods.len());
    for p in node.pods.iter().filter(|p| p.priority < pod.priority) {
        sim.remove_pod(&p.key);
        update_state(profile, &mut state, pod, Change::Remove, p, &sim, cache);
        potential.push(p.clone());
    }
    if let Err(r) = fits(profile, &state, pod, &sim, cache) {
        return Err(r.reasons);
    }
    // Most important first: higher priority, then older (Kubernetes' MoreImportantPod).
    let start = |p: &PodInfo| p.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    potential.sort_by_cached_key(|p| (std::cmp::Reverse(p.priority), start(p)));
    let (violating, fine) = budgets.split(potential);
    let mut victims = Victims { node: node.name.clone(), pods: Vec::new(), pdb_violations: 0 };
    for (group, counts) in [(violating, true), (fine, false)] {
        for p in group {
            sim.add_pod(p.clone());
            update_state(profile, &mut state, pod, Change::Add, &p, &sim, cache);
            if fits(profile, &state, pod, &sim, cache).is_err() {
                sim.remove_pod(&p.key);
                update_state(profile, &mut state, pod, Change::Remove, &p, &sim, cache);
                if counts {
                    victims.pdb_violations += 1;
                }
                victims.pods.push(p);
            }
        }
    }
    Ok(victims)
}

/// The node `pod` is nominated to, while lower-priority pods there are going (terminating,
/// or victims of its preemption being deleted): the pod waits for them.
pub fn waiting_on<'a>(cache: &'a Cache, pod: &'a PodInfo) -> Option<&'a str> {
    let nominated = nominated_node(cache, pod)?;
    let node = cache.node(nominated)?;
    node.pods.iter().any(|p| p.priority < pod.priority && cache.going(p)).then_some(nominated)
}

/// Finds victims for `pod`, or says why preemption cannot help (the message that follows
/// the filter reasons in FailedScheduling), as Kubernetes' DefaultPreemption: a pod whose
/// nominated node still has lower-priority pods going (terminating, or victims of its
/// earlier preemption being deleted) waits for them instead of preempting again; the
/// nodes where preemption may help (rejected for resolvable reasons) are dry-run from
/// `offset` (taken modulo their number; random in the scheduler), until
/// [`candidates_wanted`] of them have victims, at least one without budget violations;
/// the best of those by [`better`] is chosen.
pub fn preempt(
    profile: &Profile,
    cache: &Cache,
    pod: &PodInfo,
    diagnosis: &Diagnosis,
    offset: u64,
) -> Result<Victims, String> {
    let spec = pod.spec();
    if spec.preemption_policy.as_deref() == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    if waiting_on(cache, pod).is_some() {
        return Err("not eligible due to a terminating pod on the nominated node.".into());
    }
    let n = diagnosis.num_all_nodes;
    let all_unhelpful = || format!("preemption: 0/{n} nodes are available: {n} {NOT_HELPFUL}.");
    if diagnosis.pre_filter.is_some() {
        return Err(all_unhelpful());
    }
    let Ok(prepared) = pre_filter(profile, pod, cache) else {
        return Err(all_unhelpful());
    };
    let nodes = cache.nodes();
    let potential: Vec<usize> = diagnosis
        .nodes
        .iter()
        .filter(|(i, r)| r.resolvable && nodes.get(*i).is_some_and(|n| n.node.is_some()))
        .map(|(i, _)| *i)
        .collect();
    let mut reasons: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    let unhelpful = n.saturating_sub(potential.len());
    if potential.is_empty() {
        return Err(all_unhelpful());
    }
    let budgets = Budgets::of(cache);
    let wanted = candidates_wanted(potential.len());
    let offset = (offset % potential.len() as u64) as usize;
    let (mut best, mut found, mut clean) = (None::<Victims>, 0usize, 0usize);
    for k in 0..potential.len() {
        if clean > 0 && found >= wanted {
            break;
        }
        let node = &nodes[potential[(offset + k) % potential.len()]];
        match select_victims(profile, &prepared, cache, &budgets, pod, node) {
            Err(r) => reasons.extend(r),
            Ok(v) => {
                found += 1;
                if v.pdb_violations == 0 {
                    clean += 1;
                }
                if best.as_ref().is_none_or(|b| better(&v, b)) {
                    best = Some(v);
                }
            }
        }
    }
    if let Some(v) = best {
        return Ok(v);
    }
    let mut histogram: Vec<(&str, usize)> = count_reasons(&reasons);
    if unhelpful > 0 {
        histogram.push((NOT_HELPFUL, unhelpful));
    }
    let mut parts: Vec<String> = histogram.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    Err(format!("preemption: 0/{n} nodes are available: {}.", parts.join(", ")))
}

/// Kubernetes' `pickOneNodeForPreemption` order: fewest budget violations, then the
/// lowest highest-priority victim, then the lowest priority sum, then fewest victims, then
/// the latest start among the highest-priority victims; on a tie the candidate found
/// first stays.
fn better(a: &Victims, b: &Victims) -> bool {
    let key = |v: &Victims| {
        let highest = v.pods.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v.pods.iter().map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1).sum();
        let earliest = v
            .pods
            .iter()
            .filter(|p| p.priority == highest)
            .map(|p| p.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0))
            .min()
            .flatten();
        (v.pdb_violations, highest, sum, v.pods.len(), std::cmp::Reverse(earliest))
    };
    key(a) < key(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchedulerConfig;
    use crate::framework::{Cycle, Decision};
    use crate::plugins::testing::{bound_labelled, cache_of, node};
    use serde_json::json;

    fn with(priority: i32, cpu: &str) -> serde_json::Value {
        json!({"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})
    }

    fn incoming(spec: serde_json::Value) -> PodInfo {
        PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "hi", "namespace": "default"}, "spec": spec})).unwrap(),
        ))
    }

    fn run(cache: &Cache, pod: &PodInfo) -> Result<Victims, String> {
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let Decision::Unschedulable(d) = Cycle::new(1).schedule(profile, cache, pod) else {
            panic!("the pod should not fit");
        };
        preempt(profile, cache, pod, &d, 0)
    }

    #[test]
    fn minimal_lower_priority_victims() {
        let cache = cache_of(
            vec![node("a", json!({})), node("b", json!({}))],
            vec![
                bound_labelled("a-low", "a", json!({}), with(1, "2")),
                bound_labelled("a-mid", "a", json!({}), with(5, "2")),
                bound_labelled("b-low1", "b", json!({}), with(1, "1")),
                bound_labelled("b-low2", "b", json!({}), with(1, "1")),
                bound_labelled("b-high", "b", json!({}), with(100, "2")),
            ],
        );
        // Needs 2 CPUs: on a, evicting a-low is enough (a-mid is spared); on b two pods go.
        let v = run(&cache, &incoming(with(10, "2"))).unwrap();
        assert_eq!(v.node, "a");
        assert_eq!(v.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a-low"]);
        // Nothing of lower priority frees enough.
        let e = run(&cache, &incoming(with(3, "3"))).unwrap_err();
        assert_eq!(e, "preemption: 0/2 nodes are available: 2 Insufficient cpu.");
        let mut never = with(10, "2");
        never["preemptionPolicy"] = json!("Never");
        assert_eq!(run(&cache, &incoming(never)).unwrap_err(), "not eligible due to preemptionPolicy=Never.");
    }

    #[test]
    fn budgets_are_spared_where_possible() {
        let mut cache = cache_of(
            vec![node("a", json!({})), node("b", json!({}))],
            vec![
                bound_labelled("a1", "a", json!({"app": "db"}), with(1, "4")),
                bound_labelled("b1", "b", json!({"app": "web"}), with(1, "4")),
            ],
        );
        cache.budgets.insert(
            "default/db".into(),
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0,
                "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
                .unwrap(),
            ),
        );
        let v = run(&cache, &incoming(with(10, "1"))).unwrap();
        assert_eq!(v.node, "b");
        assert_eq!(v.pdb_violations, 0);
    }

    fn victims_of(v: &Victims) -> Vec<&str> {
        let mut names: Vec<&str> = v.pods.iter().map(|p| p.name.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn anti_affinity_is_rechecked_without_the_victims() {
        let cache = cache_of(
            vec![node("a", json!({}))],
            vec![
                bound_labelled("db", "a", json!({"app": "db"}), with(1, "100m")),
                bound_labelled("cache", "a", json!({"app": "cache"}), with(1, "100m")),
            ],
        );
        let mut spec = with(10, "100m");
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        let v = run(&cache, &incoming(spec.clone())).unwrap();
        assert_eq!((v.node.as_str(), victims_of(&v)), ("a", vec!["db"]));
        // The other way round: the existing pod's anti-affinity keeps the incoming one out.
        let cache = cache_of(
            vec![node("a", json!({}))],
            vec![bound_labelled("lonely", "a", json!({"app": "x"}), {
                let mut s = with(1, "100m");
                s["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}});
                s
            })],
        );
        let web = PodInfo::new(Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": with(10, "100m")}),
            )
            .unwrap(),
        ));
        let v = run(&cache, &web).unwrap();
        assert_eq!(victims_of(&v), ["lonely"]);
        // A victim of higher priority than the pod is never taken.
        let low = PodInfo::new(Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                "spec": with(0, "100m")}),
            )
            .unwrap(),
        ));
        assert_eq!(
            run(&cache, &low).unwrap_err(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn spread_is_rechecked_and_only_the_needed_victims_go() {
        let web = |name: &str, node: &str| bound_labelled(name, node, json!({"app": "web"}), with(1, "100m"));
        let cache = cache_of(
            vec![node("a", json!({"labels": {"zone": "a"}})), node("b", json!({"labels": {"zone": "b"}}))],
            vec![
                web("w1", "a"),
                web("w2", "a"),
                web("w3", "b"),
                bound_labelled("blocker", "b", json!({}), with(100, "4")),
            ],
        );
        let mut spec = with(10, "100m");
        spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let pod = PodInfo::new(Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "new", "namespace": "default", "labels": {"app": "web"}},
                "spec": spec}),
            )
            .unwrap(),
        ));
        // a: 2 + 1 - 1 > 1, b is full of a more important pod: one web pod on a goes.
        let v = run(&cache, &pod).unwrap();
        assert_eq!(v.node, "a");
        assert_eq!(v.pods.len(), 1, "{:?}", victims_of(&v));
    }

    #[test]
    fn candidate_counts_follow_kubernetes() {
        assert_eq!(candidates_wanted(5), 5);
        assert_eq!(candidates_wanted(300), 100);
        assert_eq!(candidates_wanted(5000), 500);
    }

    /// `n` nodes of 4 CPUs, each full of one 4-CPU pod of priority 1, except those listed
    /// in `cheap`, whose pod has priority 0 (a better victim).
    fn full_nodes(n: usize, cheap: &[usize], labels: serde_json::Value) -> Cache {
        let nodes = (0..n).map(|i| node(&format!("n{i:03}"), json!({}))).collect();
        let pods = (0..n)
            .map(|i| {
                let priority = if cheap.contains(&i) { 0 } else { 1 };
                bound_labelled(&format!("low{i:03}"), &format!("n{i:03}"), labels.clone(), with(priority, "4"))
            })
            .collect();
        cache_of(nodes, pods)
    }

    fn preempt_from(cache: &Cache, pod: &PodInfo, offset: u64) -> Victims {
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        let Decision::Unschedulable(d) = Cycle::new(1).schedule(profile, cache, pod) else {
            panic!("the pod should not fit");
        };
        preempt(profile, cache, pod, &d, offset).unwrap()
    }

    #[test]
    fn candidates_are_sampled_from_the_offset() {
        // 300 potential nodes: 100 are dry-run, from the offset on; among equal
        // candidates the first found is taken.
        let cache = full_nodes(300, &[150], json!({}));
        let pod = incoming(with(10, "1"));
        assert_eq!(preempt_from(&cache, &pod, 0).node, "n000");
        assert_eq!(preempt_from(&cache, &pod, 7).node, "n007");
        assert_eq!(preempt_from(&cache, &pod, 307).node, "n007");
        // The better victim on n150 is found only when the sample reaches it.
        assert_eq!(preempt_from(&cache, &pod, 30).node, "n030");
        assert_eq!(preempt_from(&cache, &pod, 60).node, "n150");
        assert_eq!(preempt_from(&cache, &pod, 120).node, "n150");
        assert_eq!(preempt_from(&cache, &pod, 290).node, "n290");
    }

    #[test]
    fn sampling_goes_on_until_a_candidate_without_budget_violations() {
        let mut cache = full_nodes(150, &[], json!({"app": "db"}));
        // n130's pod is not the budget's.
        cache.remove_pod("default/low130");
        cache.add_pod(bound_labelled("web", "n130", json!({"app": "web"}), with(1, "4")));
        cache.budgets.insert(
            "default/db".into(),
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0,
                "currentHealthy": 150, "desiredHealthy": 150, "expectedPods": 150}}))
                .unwrap(),
            ),
        );
        let v = preempt_from(&cache, &incoming(with(10, "1")), 0);
        assert_eq!((v.node.as_str(), v.pdb_violations), ("n130", 0));
    }

    #[test]
    fn a_nominated_pod_waits_for_its_victims() {
        let mut cache = full_nodes(2, &[], json!({}));
        let pod = Arc::new(incoming(with(10, "1")));
        let v = preempt_from(&cache, &pod, 0);
        assert_eq!(victims_of(&v), ["low000"]);
        cache.nominate(pod.clone(), &v.node);
        cache.mark_victims(v.pods.iter().map(|p| p.key.as_str()));
        // Retried before the victim's deletion is seen: no second preemption.
        assert_eq!(run(&cache, &pod).unwrap_err(), "not eligible due to a terminating pod on the nominated node.");
        // Once it is gone, the nominated node is where the pod goes.
        cache.unmark_victim("default/low000");
        cache.remove_pod("default/low000");
        let profile = &SchedulerConfig::default().profiles().unwrap()[0];
        assert_eq!(Cycle::new(1).schedule(profile, &cache, &pod), Decision::Node("n000".into()));
        // Another pod of the same priority does not take the room held for it.
        let other = with(10, "4");
        let other = PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "other", "namespace": "default"}, "spec": other}))
                .unwrap(),
        ));
        assert!(matches!(Cycle::new(1).schedule(profile, &cache, &other), Decision::Unschedulable(_)));
        // A deletion that failed: the victim no longer counts as going, preemption runs again.
        let mut cache = full_nodes(2, &[], json!({}));
        cache.nominate(pod.clone(), "n001");
        cache.mark_victims(["default/low001"]);
        cache.unmark_victim("default/low001");
        assert!(run(&cache, &pod).is_ok());
    }
}
