//! Node lifecycle decisions without IO: conditions of a node that stopped reporting, the
//! not-ready/unreachable taints its Ready condition calls for, and when a pod on a
//! NoExecute-tainted node is evicted (its tolerations' `tolerationSeconds`).

pub(crate) use berth_api::node_match::tolerates;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Taint key of a node whose Ready condition is False.
pub(crate) const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of a node whose Ready condition is Unknown.
pub(crate) const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The node's conditions once it stopped reporting for the grace period: every condition
/// `Unknown` (Ready added when the kubelet never posted one). `None` when already so.
pub(crate) fn unknown_conditions(node: &Node, now: &Time) -> Option<Vec<NodeCondition>> {
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        });
        changed = true;
    }
    for c in conditions.iter_mut().filter(|c| c.status != "Unknown") {
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
        c.last_transition_time = Some(now.clone());
        changed = true;
    }
    changed.then_some(conditions)
}

/// The node's Ready status (`True`, `False`, `Unknown`), if it has a Ready condition.
pub(crate) fn ready_status(node: &Node) -> Option<String> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
}

/// The lifecycle taint key the node's Ready condition calls for: `not-ready` for False,
/// `unreachable` for Unknown, none for True.
fn wanted_key(node: &Node) -> Option<&'static str> {
    match ready_status(node).as_deref() {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    }
}

/// Whether the node carries a lifecycle (not-ready/unreachable) NoExecute taint.
pub(crate) fn has_no_execute(node: &Node) -> bool {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.into_iter().flatten().any(|t| (t.key == NOT_READY || t.key == UNREACHABLE) && t.effect == "NoExecute")
}

/// Whether the node's Ready condition calls for a lifecycle NoExecute taint.
pub(crate) fn wants_no_execute(node: &Node) -> bool {
    wanted_key(node).is_some()
}

/// The NoSchedule taints other conditions call for (Kubernetes' TaintNodesByCondition):
/// condition type, the status that calls for it, taint key.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
];
/// The taint of a cordoned node (`spec.unschedulable`).
pub(crate) const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The condition NoSchedule taint keys the node's conditions and `spec.unschedulable` call for.
fn condition_keys(node: &Node) -> Vec<&'static str> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(kind, status, _)| conditions.into_iter().flatten().any(|c| c.type_ == *kind && c.status == *status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

fn is_condition_key(key: &str) -> bool {
    key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
}

/// The node's taints as its conditions want them: for Ready, `not-ready` for False,
/// `unreachable` for Unknown (NoSchedule, and NoExecute with its time added when
/// `no_execute`: the zone rate limits decide that), none of them for True; a NoSchedule
/// taint for each pressure condition that holds, NetworkUnavailable and `spec.unschedulable`.
/// `None` when the taints are already right.
pub(crate) fn desired_taints(node: &Node, now: &Time, no_execute: bool) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let want_key = wanted_key(node);
    let condition_keys = condition_keys(node);
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let lifecycle = t.key == NOT_READY || t.key == UNREACHABLE;
            let by_condition = t.effect == "NoSchedule" && is_condition_key(&t.key);
            if by_condition {
                return condition_keys.contains(&t.key.as_str());
            }
            !lifecycle || (Some(t.key.as_str()) == want_key && (no_execute || t.effect != "NoExecute"))
        })
        .cloned()
        .collect();
    for key in condition_keys {
        if !taints.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
            taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), time_added: None, value: None });
        }
    }
    if let Some(key) = want_key {
        for effect in ["NoSchedule", "NoExecute"].into_iter().filter(|e| no_execute || *e != "NoExecute") {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                taints.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then(|| now.clone()),
                    value: None,
                });
            }
        }
    }
    (taints != current).then_some(taints)
}

/// When a pod on a node with `taints` is evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// It tolerates every NoExecute taint for ever.
    Never,
    /// At this time (the taint's time added plus the shortest tolerationSeconds).
    At(jiff::Timestamp),
}

/// When the pod is to be evicted from a node with `taints` (as the NoExecute taint manager).
pub(crate) fn eviction(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Eviction {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut due: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::At(now);
        }
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let since = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = since + jiff::SignedDuration::from_secs(seconds.max(0));
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due.map_or(Eviction::Never, Eviction::At)
}

#[cfg(test)]
mod tests;
