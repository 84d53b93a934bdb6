//! Preemption (Kubernetes' DefaultPreemption): when no node fits a pod, find the node
//! where evicting the fewest, least important lower-priority pods makes it fit, sparing
//! pods protected by a PodDisruptionBudget where possible. The pod is then nominated to
//! that node (`status.nominatedNodeName`) and the victims are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Change, Diagnosis, Prepared, Profile, fits, pre_filter, update_state};
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

fn priority_of(p: &PodInfo) -> i32 {
    p.priority
}

/// Budgets of the pod's namespace: (selector, disruptions still allowed).
fn budgets_for(cache: &Cache, namespace: &str) -> Vec<(Selector, i32)> {
    cache
        .budgets
        .values()
        .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
        .map(|b| {
            let sel = Selector::from_label_selector(b.spec.as_ref().and_then(|s| s.selector.as_ref()));
            (sel, b.status.as_ref().map(|s| s.disruptions_allowed).unwrap_or(0))
        })
        .collect()
}

/// Splits victims (most important first) into those whose eviction would violate a
/// budget and the others, as Kubernetes' `filterPodsWithPDBViolation`.
fn split_by_budget(cache: &Cache, pods: Vec<Arc<PodInfo>>) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut budgets: BTreeMap<String, Vec<(Selector, i32)>> = BTreeMap::new();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let list = budgets.entry(p.namespace.clone()).or_insert_with(|| budgets_for(cache, &p.namespace));
        let mut violates = false;
        for (sel, allowed) in list.iter_mut() {
            if !p.labels.is_empty() && sel.matches(&p.labels) {
                *allowed -= 1;
                if *allowed < 0 {
                    violates = true;
                }
            }
        }
        if violates { violating.push(p) } else { fine.push(p) }
    }
    (violating, fine)
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
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<Victims, Vec<std::borrow::Cow<'static, str>>> {
    let mut sim = node.clone();
    let mut state = prepared.to_vec();
    let mut potential: Vec<Arc<PodInfo>> =
        node.pods.iter().filter(|p| priority_of(p) < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.into()]);
    }
    for p in &potential {
        sim.remove_pod(&p.key);
        update_state(profile, &mut state, pod, Change::Remove, p, &sim, cache);
    }
    if let Err(r) = fits(profile, &state, pod, &sim, cache) {
        return Err(r.reasons);
    }
    // Most important first: higher priority, then older.
    potential.sort_by(|a, b| {
        priority_of(b).cmp(&priority_of(a)).then_with(|| {
            let start = |p: &PodInfo| p.pod.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| t.0);
            start(a).cmp(&start(b))
        })
    });
    let (violating, fine) = split_by_budget(cache, potential);
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

/// Finds victims for `pod`, or says why preemption cannot help (the message that follows
/// the filter reasons in FailedScheduling).
pub fn preempt(profile: &Profile, cache: &Cache, pod: &PodInfo, diagnosis: &Diagnosis) -> Result<Victims, String> {
    let spec = pod.spec();
    if spec.preemption_policy.as_deref() == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    if let Some(nominated) = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref())
        && let Some(node) = cache.node(nominated)
        && node.pods.iter().any(|p| p.terminating() && p.priority < pod.priority)
    {
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
    let mut histogram: BTreeMap<std::borrow::Cow<'static, str>, usize> = BTreeMap::new();
    let mut best: Option<Victims> = None;
    // As Kubernetes, stop after max(10% of the nodes, 100) candidates (minCandidateNodes*).
    let wanted = (n / 10).max(100);
    let mut candidates = 0usize;
    for (name, rejection) in &diagnosis.nodes {
        if candidates >= wanted {
            break;
        }
        let Some(node) = cache.node(name).filter(|n| n.node.is_some()) else {
            continue;
        };
        if !rejection.resolvable {
            *histogram.entry(NOT_HELPFUL.into()).or_insert(0) += 1;
            continue;
        }
        match select_victims(profile, &prepared, cache, pod, node) {
            Err(reasons) => {
                for r in reasons {
                    *histogram.entry(r).or_insert(0) += 1;
                }
            }
            Ok(v) => {
                candidates += 1;
                if best.as_ref().is_none_or(|b| better(&v, b)) {
                    best = Some(v);
                }
            }
        }
    }
    if let Some(v) = best {
        return Ok(v);
    }
    let mut parts: Vec<String> = histogram.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    Err(format!("preemption: 0/{n} nodes are available: {}.", parts.join(", ")))
}

/// Kubernetes' `pickOneNodeForPreemption` order: fewest budget violations, then the
/// lowest highest-priority victim, then the lowest priority sum, then fewest victims.
fn better(a: &Victims, b: &Victims) -> bool {
    let key = |v: &Victims| {
        let highest = v.pods.iter().map(|p| p.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = v.pods.iter().map(|p| i64::from(p.priority) + i64::from(i32::MAX) + 1).sum();
        (v.pdb_violations, highest, sum, v.pods.len(), v.node.clone())
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
        preempt(profile, cache, pod, &d)
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
}
