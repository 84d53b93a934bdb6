//! Pod and ownership helpers shared by the workload controllers: activity, readiness and
//! availability (with `minReadySeconds`), controller references, label selectors, pods from
//! templates, and the ranking of pods for deletion (least valuable first), as Kubernetes'
//! `pkg/controller/controller_utils.go` does them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// The annotation that lowers (or raises) the cost of deleting a pod on scale-down.
pub(crate) const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The controller reference of an object (`ownerReferences[].controller == true`), if any.
pub(crate) fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, as a controller sets it on what it creates or adopts.
pub(crate) fn owner_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `selector` selects `labels`. A missing selector selects nothing, an empty one
/// everything (as `metav1.LabelSelectorAsSelector`); an unparsable one nothing.
pub(crate) fn selects(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector else { return false };
    let empty = BTreeMap::new();
    match Selector::try_from(selector.clone()) {
        Ok(s) => s.matches(labels.unwrap_or(&empty)),
        Err(_) => false,
    }
}

/// The controllers (of `kind` in `api_version`) to sync when `pod` changes: its controller
/// if it has one of that kind, else every one in its namespace whose selector selects it
/// (which may adopt it).
pub(crate) fn owners_of<K: Resource<DynamicType = ()> + Clone>(
    owners: &Store<K>,
    api_version: &str,
    kind: &str,
    selector_of: impl Fn(&K) -> Option<LabelSelector>,
    pod: &Pod,
) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_ref(&pod.metadata) {
        if r.kind == kind && r.api_version == api_version {
            return vec![ObjectRef::new(&r.name).within(&ns)];
        }
        return vec![];
    }
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|o| selects(selector_of(o).as_ref(), pod.metadata.labels.as_ref()))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Whether the pod counts towards its controller's replicas: not finished, not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    phase != Some("Succeeded") && phase != Some("Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is being deleted.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Since when the pod has been Ready, if it is.
pub(crate) fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    if cond.status != "True" {
        return None;
    }
    // A Ready condition without a transition time counts as ready since forever.
    Some(cond.last_transition_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// How long until a ready pod that is not yet available becomes available, the shortest
/// over `pods`: when the controller must look again with no other change to wake it.
pub(crate) fn next_available_in(pods: &[&Pod], min_ready_seconds: i32, now: Timestamp) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter_map(|p| ready_since(p))
        .map(|since| since.as_second() + i64::from(min_ready_seconds) - now.as_second())
        .filter(|left| *left > 0)
        .min()
        .map(|left| std::time::Duration::from_secs(left as u64 + 1))
}

fn restarts(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0)).unwrap_or(0)
}

fn deletion_cost(pod: &Pod) -> i64 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1, // Unknown
    }
}

/// Orders pods for deletion, least valuable first (Kubernetes' `ActivePods` ordering):
/// unscheduled before scheduled, Pending before Unknown before Running, not ready before
/// ready, lower `pod-deletion-cost` first, ready for less time first, more restarts first,
/// newer first.
pub(crate) fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // Both ready (or both not): the one ready more recently goes first.
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The objects of a namespace as one owner sees them.
#[derive(Debug)]
pub(crate) struct Claims<'a, T> {
    /// Objects it controls and still selects.
    pub(crate) owned: Vec<&'a T>,
    /// Orphans it selects: to adopt.
    pub(crate) adopt: Vec<&'a T>,
    /// Objects it controls but no longer selects: to release.
    pub(crate) release: Vec<&'a T>,
}

/// Sorts `objects` (of the owner's namespace) into owned, to adopt and to release, as
/// Kubernetes' `ControllerRefManager.ClaimObject`: an owner being deleted adopts and
/// releases nothing; objects being deleted are neither adopted nor released.
pub(crate) fn claim<'a, T: Resource>(
    owner: &ObjectMeta,
    selector: Option<&LabelSelector>,
    objects: impl IntoIterator<Item = &'a T>,
) -> Claims<'a, T> {
    let uid = owner.uid.as_deref();
    let owner_deleting = owner.deletion_timestamp.is_some();
    let mut claims = Claims { owned: Vec::new(), adopt: Vec::new(), release: Vec::new() };
    for obj in objects {
        let meta = obj.meta();
        let selected = selects(selector, meta.labels.as_ref());
        let deleting = meta.deletion_timestamp.is_some();
        match controller_ref(meta) {
            Some(r) if Some(r.uid.as_str()) == uid => {
                if selected {
                    claims.owned.push(obj);
                } else if !deleting && !owner_deleting {
                    claims.release.push(obj);
                }
            }
            Some(_) => {}
            None => {
                if selected && !owner_deleting && !deleting {
                    claims.adopt.push(obj);
                }
            }
        }
    }
    claims
}

/// The `n` least valuable of `pods`, in deletion order.
pub(crate) fn pick_for_deletion<'a>(pods: &[&'a Pod], n: usize) -> Vec<&'a Pod> {
    let mut sorted = pods.to_vec();
    sorted.sort_by(|a, b| deletion_order(a, b));
    sorted.truncate(n);
    sorted
}

/// A pod to create from `template`, owned by `owner` (named `<prefix>-<random>` by the server).
pub(crate) fn pod_from_template(template: &PodTemplateSpec, owner: OwnerReference, prefix: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Sizes of the slow-start batches for creating `n` objects: 1, 2, 4, ... (the last one
/// what is left), so a failing template costs one request, not `n`.
pub(crate) fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut size, mut left) = (1usize, n);
    while left > 0 {
        let b = size.min(left);
        batches.push(b);
        left -= b;
        size *= 2;
    }
    batches
}

#[cfg(test)]
mod tests;

/// Why a controller deletes a pod it did not fail itself, as the `DisruptionTarget`
/// condition's reason and message say (Kubernetes' taint manager and PodGC).
pub(crate) struct Disruption {
    pub(crate) reason: &'static str,
    pub(crate) message: &'static str,
}

/// The status patch that marks `pod` before a disruptive deletion (Kubernetes'
/// `addConditionAndDeletePod` and PodGC's `markFailedAndDeletePodWithCondition`):
/// `DisruptionTarget=True` unless it has it already, and, when `fail` is set and the pod
/// had not finished, phase Failed (PodGC's pods have no kubelet left to finish them).
/// None when there is nothing to change. PodGC adds no condition to a pod already finished.
pub(crate) fn disruption_patch(
    pod: &Pod,
    disruption: Option<&Disruption>,
    fail: bool,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    if fail && finished {
        return None;
    }
    let marked = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True"));
    let mut status = serde_json::Map::new();
    if let Some(d) = disruption.filter(|_| !marked) {
        status.insert(
            "conditions".into(),
            serde_json::json!([{ "type": "DisruptionTarget", "status": "True", "reason": d.reason,
                "message": d.message, "lastTransitionTime": now.to_string() }]),
        );
    }
    if fail {
        status.insert("phase".into(), "Failed".into());
    }
    (!status.is_empty()).then(|| serde_json::json!({ "status": status }))
}

/// Applies [`disruption_patch`] to the pod's status (conditions merge by type); a pod
/// already gone is no error.
pub(crate) async fn mark_disrupted(
    api: &kube::Api<Pod>,
    pod: &Pod,
    disruption: Option<&Disruption>,
    fail: bool,
) -> kube::Result<()> {
    let Some(patch) = disruption_patch(pod, disruption, fail, Timestamp::now()) else { return Ok(()) };
    let params = kube::api::PatchParams::default();
    match api.patch_status(&pod.name_any(), &params, &kube::api::Patch::Strategic(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
