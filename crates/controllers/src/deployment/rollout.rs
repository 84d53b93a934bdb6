//! The Deployment decisions, pure functions over typed objects (Kubernetes'
//! `pkg/controller/deployment` and `deployment/util`): surge and unavailability arithmetic,
//! which ReplicaSet is new, how far to scale the new and the old ones in a rolling update,
//! proportional scaling, revisions and annotations, history cleanup, status and conditions.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::revisions;

/// The label (and selector key) that tells a Deployment's ReplicaSets apart.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet (and of its Deployment).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (when rolled back to).
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when the ReplicaSet was last scaled.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of a Deployment not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The replicas a Deployment asks for.
pub(crate) fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas`.
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn annotation<'a>(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A ReplicaSet's revision (0 without one).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether the Deployment uses the Recreate strategy.
pub(crate) fn is_recreate(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// `value` (an int, or a percentage of `total`) as a count; percentages round up or down.
pub(crate) fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = pct * i64::from(total);
            let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            v as i32
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) of a rolling update; both zero
/// would deadlock, so unavailability is then 1 (Kubernetes' `ResolveFenceposts`).
pub(crate) fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge_v = ru.map(|r| r.max_surge.as_ref()).unwrap_or(Some(&default));
    let unavail_v = ru.map(|r| r.max_unavailable.as_ref()).unwrap_or(Some(&default));
    let n = replicas(d);
    let surge = scaled_value(surge_v, n, true);
    let unavailable = scaled_value(unavail_v, n, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// `template` without the pod-template-hash label, for comparing templates.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    t
}

/// `template` without the hash label as JSON, empty fields dropped ([`revisions::prune`]).
fn normalized(template: &PodTemplateSpec) -> serde_json::Value {
    revisions::prune(serde_json::to_value(without_hash(template)).unwrap_or_default()).unwrap_or_default()
}

/// Whether two templates are equal but for the pod-template-hash label.
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// The hash of a template (and the collision count), as Kubernetes' `ComputeHash`.
pub(crate) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    revisions::hash(&serde_json::to_vec(&normalized(template)).unwrap_or_default(), collision_count)
}

/// The ReplicaSet whose template is the Deployment's (the oldest, if several), and the others.
pub(crate) fn split_new<'a>(d: &Deployment, rses: &[&'a ReplicaSet]) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let Some(template) = d.spec.as_ref().map(|s| &s.template) else { return (None, rses.to_vec()) };
    let mut sorted = rses.to_vec();
    sorted.sort_by(|a, b| creation_order(a, b));
    let new = sorted
        .iter()
        .copied()
        .find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template)));
    let olds = sorted.into_iter().filter(|rs| new.is_none_or(|n| n.metadata.uid != rs.metadata.uid)).collect();
    (new, olds)
}

fn creation_order(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The next revision: one more than the highest of `olds`.
pub(crate) fn next_revision(olds: &[&ReplicaSet]) -> i64 {
    olds.iter().map(|rs| revision(rs)).max().unwrap_or(0) + 1
}

/// The annotations a new (or newly current) ReplicaSet should have: the Deployment's own
/// (but the ones kept per ReplicaSet), its revision (recording an earlier one in the history)
/// and the replica annotations.
pub(crate) fn new_rs_annotations(
    d: &Deployment,
    current: Option<&BTreeMap<String, String>>,
    next_revision: i64,
) -> BTreeMap<String, String> {
    let mut a = current.cloned().unwrap_or_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            a.insert(k.clone(), v.clone());
        }
    }
    let old: i64 = a.get(REVISION).and_then(|v| v.parse().ok()).unwrap_or(0);
    if old < next_revision {
        if old > 0 {
            let history = match a.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.to_string(),
            };
            a.insert(REVISION_HISTORY.into(), history);
        }
        a.insert(REVISION.into(), next_revision.to_string());
    }
    let (surge, _) = fenceposts(d);
    a.insert(DESIRED_REPLICAS.into(), replicas(d).to_string());
    a.insert(MAX_REPLICAS.into(), (replicas(d) + surge).to_string());
    a
}

/// The size of the new ReplicaSet in this step of a rollout.
pub(crate) fn new_rs_target(d: &Deployment, new: &ReplicaSet, all: &[&ReplicaSet]) -> i32 {
    let want = replicas(d);
    let current = rs_replicas(new);
    if is_recreate(d) || current >= want {
        return want;
    }
    let (surge, _) = fenceposts(d);
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = want + surge;
    if total >= max_total {
        return current;
    }
    current + (max_total - total).min(want - current)
}

/// One step of a Recreate rollout (Kubernetes' `rolloutRecreate`): the old ReplicaSets go
/// to 0 first, then nothing happens while any of their pods still runs, and only then is
/// the new ReplicaSet created (or scaled) at the Deployment's size, so old and new pods
/// never run together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecreateStep {
    /// Scale these old ReplicaSets down to 0.
    ScaleDownOld(Vec<String>),
    /// Old pods still run (terminating ones too): wait for them to go.
    WaitForOldPods,
    /// No ReplicaSet has the template yet: create it at the Deployment's size.
    CreateNew(i32),
    /// Scale the new ReplicaSet to this size (it may be its size already).
    ScaleNew(i32),
}

/// The next step of a Recreate rollout; `old_pods_running` is [`old_pods_running`]'s answer.
pub(crate) fn recreate_step(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    olds: &[&ReplicaSet],
    old_pods_running: bool,
) -> RecreateStep {
    let active: Vec<String> =
        olds.iter().filter(|rs| rs_replicas(rs) > 0).filter_map(|rs| rs.metadata.name.clone()).collect();
    if !active.is_empty() {
        return RecreateStep::ScaleDownOld(active);
    }
    if old_pods_running {
        return RecreateStep::WaitForOldPods;
    }
    match new {
        None => RecreateStep::CreateNew(replicas(d)),
        Some(_) => RecreateStep::ScaleNew(replicas(d)),
    }
}

/// Whether pods of the old ReplicaSets still run (Kubernetes' `oldPodsRunning`): an old
/// ReplicaSet reports replicas, or one of `pods` it controls has not finished, being
/// deleted or not.
pub(crate) fn old_pods_running<'a>(olds: &[&ReplicaSet], pods: impl IntoIterator<Item = &'a Pod>) -> bool {
    if olds.iter().any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0)) {
        return true;
    }
    let uids: Vec<&str> = olds.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
    pods.into_iter().any(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        let owner = crate::pods::controller_ref(&p.metadata).map(|r| r.uid.as_str());
        owner.is_some_and(|u| uids.contains(&u)) && phase != Some("Succeeded") && phase != Some("Failed")
    })
}

/// Target sizes for the old ReplicaSets in a rolling-update step: first the unhealthy
/// replicas go, then healthy ones as far as maxUnavailable allows (oldest first).
pub(crate) fn old_rs_targets(d: &Deployment, new: &ReplicaSet, olds: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let old_total: i32 = olds.iter().map(|rs| rs_replicas(rs)).sum();
    if old_total == 0 {
        return vec![];
    }
    let all_total = old_total + rs_replicas(new);
    let (_, max_unavailable) = fenceposts(d);
    let min_available = replicas(d) - max_unavailable;
    let new_unavailable = rs_replicas(new) - rs_available(new);
    let max_scale_down = all_total - min_available - new_unavailable;
    if max_scale_down <= 0 {
        return vec![];
    }
    let mut sizes: Vec<(String, i32, i32)> = olds
        .iter()
        .map(|rs| (rs.metadata.name.clone().unwrap_or_default(), rs_replicas(rs), rs_available(rs)))
        .collect();
    // Unhealthy replicas first.
    let mut cleaned = 0;
    for (_, size, available) in sizes.iter_mut() {
        if cleaned >= max_scale_down {
            break;
        }
        let unhealthy = (*size - *available).max(0);
        let n = unhealthy.min(max_scale_down - cleaned);
        *size -= n;
        cleaned += n;
    }
    // Then available ones, keeping minAvailable.
    let available_total: i32 = rs_available(new) + sizes.iter().map(|(_, s, a)| (*a).min(*s)).sum::<i32>();
    let mut budget = (available_total - min_available).max(0);
    for (_, size, _) in sizes.iter_mut() {
        if budget == 0 {
            break;
        }
        let n = (*size).min(budget);
        *size -= n;
        budget -= n;
    }
    sizes
        .into_iter()
        .zip(olds)
        .filter(|((_, size, _), rs)| *size != rs_replicas(rs))
        .map(|((name, size, _), _)| (name, size))
        .collect()
}

/// Whether the Deployment's size changed since its ReplicaSets were last scaled.
pub(crate) fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    let want = replicas(d).to_string();
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .any(|rs| annotation(&rs.metadata, DESIRED_REPLICAS).is_some_and(|v| v != want))
}

/// Target sizes when the Deployment is scaled (or paused): one active ReplicaSet takes all;
/// a saturated new one lets the old go; otherwise replicas are added or removed in
/// proportion to each ReplicaSet's size (Kubernetes' `scale`).
pub(crate) fn scale_targets(d: &Deployment, new: Option<&ReplicaSet>, olds: &[&ReplicaSet]) -> Vec<(String, i32)> {
    let want = replicas(d);
    let name = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
    let active: Vec<&ReplicaSet> =
        new.into_iter().chain(olds.iter().copied()).filter(|rs| rs_replicas(rs) > 0).collect();
    let single = match active.len() {
        0 => new.or_else(|| olds.iter().copied().max_by(|a, b| creation_order(a, b))),
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = single {
        return if rs_replicas(rs) == want { vec![] } else { vec![(name(rs), want)] };
    }
    if let Some(n) = new {
        let desired = annotation(&n.metadata, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok());
        if rs_replicas(n) == want && desired == Some(want) && rs_available(n) == want {
            return olds.iter().filter(|rs| rs_replicas(rs) > 0).map(|rs| (name(rs), 0)).collect();
        }
    }
    if is_recreate(d) {
        return vec![];
    }
    let (surge, _) = fenceposts(d);
    let total: i32 = active.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if want > 0 { want + surge } else { 0 };
    let to_add = allowed - total;
    if to_add == 0 {
        return vec![];
    }
    let mut sorted = active.clone();
    // Largest first; ties: newer first when growing, older first when shrinking.
    sorted.sort_by(|a, b| {
        rs_replicas(b)
            .cmp(&rs_replicas(a))
            .then_with(|| if to_add > 0 { creation_order(b, a) } else { creation_order(a, b) })
    });
    let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let mut added = 0;
    let mut sizes: Vec<(String, i32, i32)> = Vec::new();
    for rs in &sorted {
        let size = rs_replicas(rs);
        let proportion = if size == 0 || added == to_add {
            0
        } else {
            let fraction = if want == 0 {
                -size
            } else {
                let before = annotation(&rs.metadata, MAX_REPLICAS)
                    .and_then(|v| v.parse::<i32>().ok())
                    .filter(|v| *v > 0)
                    .unwrap_or(status_replicas);
                if before == 0 {
                    0
                } else {
                    (f64::from(size) * f64::from(want + surge) / f64::from(before)).round() as i32 - size
                }
            };
            let left = to_add - added;
            if to_add > 0 { fraction.min(left) } else { fraction.max(left) }
        };
        added += proportion;
        sizes.push((name(rs), size, size + proportion));
    }
    if let Some(first) = sizes.first_mut() {
        first.2 = (first.2 + to_add - added).max(0);
    }
    sizes.into_iter().filter(|(_, before, after)| before != after).map(|(n, _, after)| (n, after)).collect()
}

/// Old ReplicaSets to delete beyond revisionHistoryLimit: empty ones, lowest revision first.
pub(crate) fn history_to_delete(d: &Deployment, olds: &[&ReplicaSet]) -> Vec<String> {
    let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
    let mut empty: Vec<&ReplicaSet> = olds
        .iter()
        .copied()
        .filter(|rs| {
            rs_replicas(rs) == 0
                && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if empty.len() <= limit {
        return vec![];
    }
    empty.sort_by(|a, b| revision(a).cmp(&revision(b)).then_with(|| creation_order(a, b)));
    empty.iter().take(empty.len() - limit).filter_map(|rs| rs.metadata.name.clone()).collect()
}

/// The Deployment's status counts from its ReplicaSets, with the Available condition.
pub(crate) fn status(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    all: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentStatus {
    let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let total_spec: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let actual: i32 = all.iter().map(|rs| st(rs).replicas).sum();
    let ready: i32 = all.iter().map(|rs| st(rs).ready_replicas.unwrap_or(0)).sum();
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let updated = new.map(|rs| st(rs).replicas).unwrap_or(0);
    let old = d.status.clone().unwrap_or_default();
    let mut s = DeploymentStatus {
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        observed_generation: d.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
        terminating_replicas: old.terminating_replicas,
    };
    let (_, max_unavailable) = fenceposts(d);
    let cond = if available >= replicas(d) - max_unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), now)
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut s, cond);
    s
}

/// A Deployment condition at `now`.
pub(crate) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition; one of the same status and reason is kept as it is, and the
/// transition time only moves when the status changes.
pub(crate) fn set_condition(s: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conditions = s.conditions.get_or_insert_with(Vec::new);
    if let Some(i) = conditions.iter().position(|c| c.type_ == cond.type_) {
        let cur = &conditions[i];
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
        conditions.remove(i);
    }
    conditions.push(cond);
}

fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Whether the rollout is complete: every replica updated and available, the spec observed.
pub(crate) fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation >= d.metadata.generation
}

/// The Progressing condition after a sync (Kubernetes' `syncRolloutStatus`); returns how
/// long until the deadline passes, when the rollout is still under way.
pub(crate) fn progress(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    s: &mut DeploymentStatus,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let deadline = d.spec.as_ref().and_then(|sp| sp.progress_deadline_seconds).unwrap_or(600);
    let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
    let new_name = new.and_then(|rs| rs.metadata.name.clone()).unwrap_or_default();
    let old = d.status.clone().unwrap_or_default();
    let current = get_condition(s, "Progressing").cloned();
    let complete_before = s.replicas == s.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    if paused || complete_before {
        return None;
    }
    if is_complete(d, s) {
        let msg = format!("ReplicaSet \"{new_name}\" has successfully progressed.");
        set_condition(s, condition("Progressing", "True", "NewReplicaSetAvailable", msg, now));
        return None;
    }
    let progressed = s.updated_replicas > old.updated_replicas
        || s.replicas.unwrap_or(0) < old.replicas.unwrap_or(0)
        || s.ready_replicas > old.ready_replicas
        || s.available_replicas > old.available_replicas;
    if progressed {
        let msg = format!("ReplicaSet \"{new_name}\" is progressing.");
        let mut cond = condition("Progressing", "True", "ReplicaSetUpdated", msg, now);
        if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
        if let Some(conds) = s.conditions.as_mut() {
            conds.retain(|c| c.type_ != "Progressing");
        }
        set_condition(s, cond);
        return Some(std::time::Duration::from_secs(deadline.max(0) as u64 + 1));
    }
    let cur = current?;
    if cur.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return None;
    }
    let since = cur.last_update_time.as_ref().map(|t| t.0.as_second()).unwrap_or(now.as_second());
    let left = since + i64::from(deadline) - now.as_second();
    if left < 0 {
        let msg = format!("ReplicaSet \"{new_name}\" has timed out progressing.");
        set_condition(s, condition("Progressing", "False", "ProgressDeadlineExceeded", msg, now));
        None
    } else {
        Some(std::time::Duration::from_secs(left as u64 + 1))
    }
}
