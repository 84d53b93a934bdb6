//! The DaemonSet decisions, pure functions over typed objects (Kubernetes'
//! `pkg/controller/daemon`): which nodes a daemon pod belongs on (nodeSelector, required
//! node affinity, taints against tolerations with the ones DaemonSets add), the pod for a
//! node, what to create and delete (with rolling updates), and the status.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::node_match;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};

use crate::deployment::rollout::scaled_value;
use crate::pods;
use crate::revisions::HASH_LABEL;

/// Tolerations every daemon pod gets (Kubernetes' `AddOrUpdateDaemonPodTolerations`), as
/// (key, effect); the last only for host-network pods.
const AUTO_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The template's tolerations plus the ones DaemonSets add.
pub(crate) fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut all = spec.tolerations.clone().unwrap_or_default();
    let mut auto: Vec<(&str, &str)> = AUTO_TOLERATIONS.to_vec();
    if spec.host_network == Some(true) {
        auto.push((NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    for (key, effect) in auto {
        let present = all.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            all.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            });
        }
    }
    all
}

/// Whether a node selector term matches `node` (its labels and name).
pub(crate) fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    node_match::term_matches(term, node.metadata.name.as_deref().unwrap_or_default(), &labels)
}

/// Whether a pod with `spec` should run on `node`, and whether one already there may keep
/// running (only NoExecute taints evict), as Kubernetes' `NodeShouldRunDaemonPod`.
pub(crate) fn eligibility(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    let affinity_ok = required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    if !selector_ok || !affinity_ok {
        return (false, false);
    }
    let tolerations = daemon_tolerations(spec);
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let no_execute = node_match::untolerated(&taints, &tolerations, &["NoExecute"]).is_some();
    let no_schedule = node_match::untolerated(&taints, &tolerations, &["NoSchedule"]).is_some();
    (!no_execute && !no_schedule, !no_execute)
}

/// The spec of the daemon pod for `node`: the template's, with the daemon tolerations and
/// required node affinity pinning it to the node by name (`matchFields metadata.name`).
pub(crate) fn pod_spec_for(template: &PodSpec, node: &str) -> PodSpec {
    let mut spec = template.clone();
    spec.tolerations = Some(daemon_tolerations(template));
    let pin = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(pin);
    spec
}

/// The node a daemon pod is for: its nodeName, or the node its affinity pins it to.
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        (r.key == "metadata.name" && r.operator == "In").then(|| r.values.as_ref()?.first().cloned()).flatten()
    })
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str)
}

/// What one sync does: nodes to create a pod on, pods to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) create: Vec<String>,
    pub(crate) delete: Vec<String>,
    /// Failed pods among `delete`, with their node: replaced subject to a per-node back-off.
    pub(crate) failed: Vec<(String, String)>,
}

/// The pods of `ds` by the node they are for.
pub(crate) fn by_node<'a>(owned: &[&'a Pod]) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in owned {
        if let Some(n) = target_node(p) {
            map.entry(n).or_default().push(p);
        }
    }
    map
}

/// Creates and deletes for one sync: a pod on every eligible node without one, none on
/// ineligible nodes, failed pods replaced, duplicates removed, and (RollingUpdate) old pods
/// replaced within maxUnavailable/maxSurge, as Kubernetes' `manage` and `rollingUpdate`.
pub(crate) fn plan(ds: &DaemonSet, nodes: &[&Node], owned: &[&Pod], update_hash: &str, now: Timestamp) -> Plan {
    let template = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let pods_by_node = by_node(owned);
    let node_names: BTreeSet<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
    let mut plan = Plan::default();
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let available = |p: &Pod| pods::is_available(p, min_ready, now) && !pods::is_terminating(p);
    let is_new = |p: &Pod| pod_hash(p) == Some(update_hash);
    let mut updating: Vec<(String, Vec<&Pod>)> = Vec::new();
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let (should_run, should_continue) = eligibility(&template, node);
        let here: Vec<&Pod> = pods_by_node.get(&node_name).cloned().unwrap_or_default();
        let active: Vec<&Pod> = here.iter().copied().filter(|p| !pods::is_terminating(p)).collect();
        if !should_continue || (!should_run && active.is_empty()) {
            plan.delete.extend(active.iter().map(|p| name(p)));
            continue;
        }
        if !should_run {
            // Already there and tolerated: it may stay.
            continue;
        }
        let failed: Vec<&Pod> = active
            .iter()
            .copied()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
            .collect();
        plan.delete.extend(failed.iter().map(|p| name(p)));
        plan.failed.extend(failed.iter().map(|p| (node_name.clone(), name(p))));
        let mut running: Vec<&Pod> =
            active.into_iter().filter(|p| !failed.iter().any(|f| f.metadata.uid == p.metadata.uid)).collect();
        if running.is_empty() {
            if !here.iter().any(|p| pods::is_terminating(p)) {
                plan.create.push(node_name);
            }
            continue;
        }
        running.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        updating.push((node_name, running));
    }
    // Pods for nodes that are gone.
    for (node, pods_there) in &pods_by_node {
        if !node_names.contains(node) {
            plan.delete.extend(pods_there.iter().filter(|p| !pods::is_terminating(p)).map(|p| name(p)));
        }
    }

    let desired = updating.len() as i32 + plan.create.len() as i32;
    let Some((surge, max_unavailable)) = rolling_limits(ds, desired) else {
        // OnDelete: only duplicates go (the oldest stays).
        for (_, running) in &updating {
            plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
        }
        return plan;
    };
    if surge == 0 {
        let mut unavailable =
            plan.create.len() as i32 + updating.iter().filter(|(_, r)| !r.iter().any(|p| available(p))).count() as i32;
        for (_, running) in &updating {
            // Duplicates: keep the newest-revision available one.
            if running.len() > 1 {
                let keep = running.iter().find(|p| is_new(p)).unwrap_or(&running[0]);
                plan.delete.extend(running.iter().filter(|p| p.metadata.uid != keep.metadata.uid).map(|p| name(p)));
            }
        }
        for (_, running) in &updating {
            let p = running[0];
            if running.len() > 1 || is_new(p) {
                continue;
            }
            if !available(p) {
                plan.delete.push(name(p));
            } else if unavailable < max_unavailable {
                plan.delete.push(name(p));
                unavailable += 1;
            }
        }
    } else {
        // Nodes waiting for their new pod to become available use the surge.
        let mut surging = updating
            .iter()
            .filter(|(_, r)| r.iter().any(|p| is_new(p) && !available(p)) && r.iter().any(|p| !is_new(p)))
            .count() as i32;
        for (node, running) in &updating {
            let old: Vec<&&Pod> = running.iter().filter(|p| !is_new(p)).collect();
            let new: Vec<&&Pod> = running.iter().filter(|p| is_new(p)).collect();
            match (old.is_empty(), new.first()) {
                (true, _) => plan.delete.extend(new.iter().skip(1).map(|p| name(p))),
                (false, Some(n)) if available(n) => plan.delete.extend(old.iter().map(|p| name(p))),
                (false, Some(_)) => {}
                (false, None) => {
                    if old.iter().all(|p| !available(p)) {
                        // An unavailable old pod gets its replacement beside it at once, outside
                        // the surge; it goes when the new one is available (Kubernetes keeps it
                        // until then too: with maxSurge nothing is deleted ahead of its successor).
                        plan.create.push(node.clone());
                    } else if surging < surge {
                        plan.create.push(node.clone());
                        surging += 1;
                    }
                }
            }
        }
    }
    plan
}

/// (maxSurge, maxUnavailable) of a rolling update over `desired` nodes; None for OnDelete.
fn rolling_limits(ds: &DaemonSet, desired: i32) -> Option<(i32, i32)> {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return None;
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = scaled_value(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let one = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1);
    let unavailable = scaled_value(Some(ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&one)), desired, true);
    Some(if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

/// The status over `nodes`.
pub(crate) fn status(
    ds: &DaemonSet,
    nodes: &[&Node],
    owned: &[&Pod],
    update_hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let template = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let pods_by_node = by_node(owned);
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..DaemonSetStatus::default()
    };
    let (mut available, mut updated) = (0, 0);
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let (should_run, _) = eligibility(&template, node);
        let here: Vec<&Pod> =
            pods_by_node.get(&node_name).into_iter().flatten().copied().filter(|p| !pods::is_terminating(p)).collect();
        if should_run {
            s.desired_number_scheduled += 1;
            if let Some(p) = here.first() {
                s.current_number_scheduled += 1;
                let newest = here.iter().find(|p| pod_hash(p) == Some(update_hash)).unwrap_or(p);
                if pods::is_ready(newest) {
                    s.number_ready += 1;
                    if pods::is_available(newest, min_ready, now) {
                        available += 1;
                    }
                }
                if here.iter().any(|p| pod_hash(p) == Some(update_hash)) {
                    updated += 1;
                }
            }
        } else if !here.is_empty() {
            s.number_misscheduled += 1;
        }
    }
    s.number_available = Some(available);
    s.updated_number_scheduled = Some(updated);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s
}
