//! The StatefulSet decisions, pure functions over typed objects (Kubernetes'
//! `pkg/controller/statefulset`): pod identities, what to create or delete next under
//! OrderedReady or Parallel management and the update strategy, pods and claims from the
//! template, and the status.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::deployment::rollout::scaled_value;
use crate::pods;
use crate::revisions::HASH_LABEL;

/// The label with a pod's name.
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a pod's ordinal.
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The replicas the set asks for.
pub(crate) fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The first ordinal (`spec.ordinals.start`).
pub(crate) fn start(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

fn parallel(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) == Some("Parallel")
}

/// Whether pods are only updated when deleted by someone else.
pub(crate) fn on_delete(set: &StatefulSet) -> bool {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete")
}

fn partition(set: &StatefulSet) -> i32 {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0)
}

fn max_unavailable(set: &StatefulSet) -> i32 {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    let value = strategy.and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.as_ref());
    if value.is_none() {
        return 1;
    }
    // A percentage rounds down (Kubernetes' getStatefulSetMaxUnavailable), but never below 1.
    scaled_value(value, replicas(set), false).max(1)
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// The ordinal of a pod of `set` from its name (`<set>-<ordinal>`).
pub(crate) fn ordinal(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// Whether `claim` (a claim's name) is the claim of one of `set`'s pods from one of its
/// volumeClaimTemplates: `<template>-<set>-<ordinal>`.
pub(crate) fn is_claim_of(set: &StatefulSet, claim: &str) -> bool {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let templates = set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref());
    templates.into_iter().flatten().any(|t| {
        claim
            .strip_prefix(t.metadata.name.as_deref().unwrap_or_default())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|pod| ordinal(set_name, pod))
            .is_some()
    })
}

/// The revision a pod was made from.
pub(crate) fn pod_revision(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str)
}

/// Which of the two revisions a pod is created from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rev {
    Current,
    Update,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Create the pod (and its claims) of this ordinal.
    Create { ordinal: i32, revision: Rev },
    /// Delete this pod; `condemned` if it is beyond the replicas (scale-down).
    Delete { name: String, condemned: bool },
}

fn healthy(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    running && !pods::is_terminating(pod) && pods::is_available(pod, min_ready_seconds, now)
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed") | Some("Succeeded"))
}

/// What to do next, in order (Kubernetes' `updateStatefulSet`): create missing and replace
/// failed pods in ordinal order, then remove pods beyond the replicas from the highest
/// ordinal, then roll pods at or above the partition onto the update revision from the
/// highest ordinal, at most maxUnavailable at a time. Under OrderedReady each step waits
/// for every earlier pod to be Running and Ready.
pub(crate) fn next_steps(set: &StatefulSet, owned: &[&Pod], update_revision: &str, now: Timestamp) -> Vec<Step> {
    let name = set.metadata.name.as_deref().unwrap_or_default();
    let (first, end) = (start(set), start(set) + replicas(set).max(0));
    let monotonic = !parallel(set);
    let min_ready = min_ready(set);
    let by_ordinal: BTreeMap<i32, &Pod> = owned
        .iter()
        .filter_map(|p| ordinal(name, p.metadata.name.as_deref().unwrap_or_default()).map(|o| (o, *p)))
        .collect();
    let rolling_partition = first + partition(set);
    let revision_for = |ord: i32| if !on_delete(set) && ord < rolling_partition { Rev::Current } else { Rev::Update };
    let mut steps = Vec::new();

    for ord in first..end {
        match by_ordinal.get(&ord) {
            None => {
                steps.push(Step::Create { ordinal: ord, revision: revision_for(ord) });
                if monotonic {
                    return steps;
                }
            }
            Some(p) if finished(p) && !pods::is_terminating(p) => {
                steps.push(Step::Delete { name: p.metadata.name.clone().unwrap_or_default(), condemned: false });
                if monotonic {
                    return steps;
                }
            }
            Some(p) if monotonic && !healthy(p, min_ready, now) => return steps,
            Some(_) => {}
        }
    }

    let condemned: Vec<&Pod> =
        by_ordinal.iter().rev().filter(|(o, _)| **o < first || **o >= end).map(|(_, p)| *p).collect();
    for (i, p) in condemned.iter().enumerate() {
        if pods::is_terminating(p) {
            if monotonic {
                return steps;
            }
            continue;
        }
        // Under OrderedReady, a pod goes only when all others (but lower condemned ones) are healthy.
        if monotonic && condemned[i + 1..].iter().any(|q| !healthy(q, min_ready, now)) {
            return steps;
        }
        steps.push(Step::Delete { name: p.metadata.name.clone().unwrap_or_default(), condemned: true });
        if monotonic {
            return steps;
        }
    }
    if !steps.is_empty() || on_delete(set) {
        return steps;
    }

    let mut unavailable =
        (first..end).filter_map(|o| by_ordinal.get(&o)).filter(|p| !healthy(p, min_ready, now)).count() as i32;
    let budget = max_unavailable(set);
    for ord in (rolling_partition.max(first)..end).rev() {
        let Some(p) = by_ordinal.get(&ord) else { continue };
        if pod_revision(p) != Some(update_revision) && !pods::is_terminating(p) {
            if unavailable >= budget {
                break;
            }
            steps.push(Step::Delete { name: p.metadata.name.clone().unwrap_or_default(), condemned: false });
            if healthy(p, min_ready, now) {
                unavailable += 1;
            }
        }
    }
    steps
}

/// The name of a claim of a pod: `<claim>-<set>-<ordinal>`.
pub(crate) fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The pod of `ordinal` from `template` (of revision `revision`).
pub(crate) fn pod_for(
    set: &StatefulSet,
    ordinal: i32,
    template: &PodTemplateSpec,
    revision: &str,
    owner: OwnerReference,
) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(service) = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    for claim in set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
        let claim_template = claim.metadata.name.clone().unwrap_or_default();
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != claim_template);
        volumes.push(Volume {
            name: claim_template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&claim_template, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The claims of the pod of `ordinal`; owned by the set when the retention policy deletes
/// them with it.
pub(crate) fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let delete_with_set =
        spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
    let owner = delete_with_set.then(|| OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..pods::owner_ref("apps/v1", "StatefulSet", &set.metadata)
    });
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template.metadata.name.as_deref().unwrap_or_default(), &set_name, ordinal)),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Whether claims of pods removed by a scale-down are deleted with them.
pub(crate) fn delete_claims_on_scale_down(set: &StatefulSet) -> bool {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    policy.and_then(|p| p.when_scaled.as_deref()) == Some("Delete")
}

/// Whether claims are deleted with the set (`whenDeleted: Delete`).
pub(crate) fn delete_claims_with_set(set: &StatefulSet) -> bool {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete")
}

/// Whether the pod of `ordinal` is beyond the set's replicas (being scaled away).
pub(crate) fn condemned(set: &StatefulSet, ordinal: i32) -> bool {
    let spec = set.spec.as_ref();
    let start = spec.and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    ordinal < start || ordinal >= start + replicas
}

/// The owner references a claim should carry under the set's retention policy, as
/// Kubernetes' `updateClaimOwnerRefForSetAndPod`: the set's when `whenDeleted: Delete`,
/// the pod's when `whenScaled: Delete` and the pod is condemned; each added or removed on
/// its own, other owners kept, references to an earlier set or pod of the same name
/// (another uid) dropped. `None` when the claim already has what it should.
pub(crate) fn claim_owners(
    existing: &[OwnerReference],
    set_ref: &OwnerReference,
    pod_ref: &OwnerReference,
    want_set: bool,
    want_pod: bool,
) -> Option<Vec<OwnerReference>> {
    let same_object = |r: &OwnerReference, of: &OwnerReference| r.kind == of.kind && r.name == of.name;
    let mut out: Vec<OwnerReference> = existing
        .iter()
        .filter(|r| !(same_object(r, set_ref) && (r.uid != set_ref.uid || !want_set)))
        .filter(|r| !(same_object(r, pod_ref) && (r.uid != pod_ref.uid || !want_pod)))
        .cloned()
        .collect();
    for (want, reference) in [(want_set, set_ref), (want_pod, pod_ref)] {
        if want && !out.iter().any(|r| r.uid == reference.uid) {
            out.push(OwnerReference { controller: None, block_owner_deletion: None, ..reference.clone() });
        }
    }
    (out != existing).then_some(out)
}

/// The status from the owned pods and the two revisions.
pub(crate) fn status(
    set: &StatefulSet,
    owned: &[&Pod],
    current_revision: &str,
    update_revision: &str,
    collision_count: Option<i32>,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = min_ready(set);
    let mut s = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count,
        current_revision: Some(current_revision.into()),
        update_revision: Some(update_revision.into()),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        ..StatefulSetStatus::default()
    };
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for p in owned {
        let created = p.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|ph| !ph.is_empty());
        if created {
            s.replicas += 1;
        }
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if running && pods::is_ready(p) {
            ready += 1;
            if pods::is_available(p, min_ready, now) {
                available += 1;
            }
        }
        if created && !pods::is_terminating(p) {
            if pod_revision(p) == Some(current_revision) {
                current += 1;
            }
            if pod_revision(p) == Some(update_revision) {
                updated += 1;
            }
        }
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(current);
    s.updated_replicas = Some(updated);
    // A finished rolling update makes the update revision current.
    if !on_delete(set) && updated == s.replicas && ready == s.replicas && s.replicas == replicas(set) {
        s.current_replicas = Some(updated);
        s.current_revision = Some(update_revision.into());
    }
    s
}
