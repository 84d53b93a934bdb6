//! The ReplicaSet/ReplicationController decisions, pure functions over typed objects: which
//! pods to adopt, keep and release, how many to create or which to delete, and the status.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

use crate::pods;

/// At most this many pods are created or deleted by one sync (Kubernetes' `burstReplicas`).
pub(crate) const BURST: usize = 500;

/// Which of the two kinds a [`Replicated`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ReplicaSet,
    ReplicationController,
}

impl Kind {
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "apps/v1",
            Kind::ReplicationController => "v1",
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::ReplicationController => "ReplicationController",
        }
    }

    /// The `reportingController` of its events.
    pub(crate) fn controller(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "replicaset-controller",
            Kind::ReplicationController => "replication-controller",
        }
    }
}

/// A ReplicaSet or ReplicationController, in the ReplicaSet's terms.
#[derive(Debug, Clone)]
pub(crate) struct Replicated {
    pub(crate) meta: ObjectMeta,
    pub(crate) selector: Option<LabelSelector>,
    pub(crate) replicas: i32,
    pub(crate) min_ready_seconds: i32,
    pub(crate) template: Option<PodTemplateSpec>,
    pub(crate) status: ReplicaSetStatus,
}

impl From<&ReplicaSet> for Replicated {
    fn from(rs: &ReplicaSet) -> Replicated {
        let spec = rs.spec.clone().unwrap_or_default();
        Replicated {
            meta: rs.metadata.clone(),
            selector: Some(spec.selector),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            template: spec.template,
            status: rs.status.clone().unwrap_or_default(),
        }
    }
}

impl From<&ReplicationController> for Replicated {
    fn from(rc: &ReplicationController) -> Replicated {
        let spec = rc.spec.clone().unwrap_or_default();
        // An RC's selector defaults to its template's labels (the API server defaults it too).
        let labels = spec.selector.or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone());
        // The two statuses have the same fields and JSON form.
        let status = rc.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        Replicated {
            meta: rc.metadata.clone(),
            selector: labels.map(|l| LabelSelector { match_labels: Some(l), match_expressions: None }),
            replicas: spec.replicas.unwrap_or(1),
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            template: spec.template,
            status: status.and_then(|s| serde_json::from_value(s).ok()).unwrap_or_default(),
        }
    }
}

/// Sorts `pods` (of the owner's namespace) into owned, to adopt and to release, as
/// Kubernetes' `PodControllerRefManager.ClaimPods`.
pub(crate) fn claim<'a>(owner: &Replicated, pods: impl IntoIterator<Item = &'a Pod>) -> pods::Claims<'a, Pod> {
    pods::claim(&owner.meta, owner.selector.as_ref(), pods)
}

/// What one sync does to the pod count.
#[derive(Debug, PartialEq)]
pub(crate) enum Plan<'a> {
    Create(usize),
    Delete(Vec<&'a Pod>),
    Nothing,
}

/// Create or delete to reach the desired count, at most [`BURST`] at a time; deletes the
/// least valuable pods first.
pub(crate) fn plan<'a>(desired: i32, active: &[&'a Pod]) -> Plan<'a> {
    let diff = i64::from(desired.max(0)) - active.len() as i64;
    if diff > 0 {
        Plan::Create((diff as usize).min(BURST))
    } else if diff < 0 {
        Plan::Delete(pods::pick_for_deletion(active, ((-diff) as usize).min(BURST)))
    } else {
        Plan::Nothing
    }
}

/// A failure to create or delete pods, for the ReplicaFailure condition.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// The status for `owner` with `active` owned pods at `now`; `failure` is the last sync's
/// create/delete error, if any.
pub(crate) fn status(
    owner: &Replicated,
    active: &[&Pod],
    now: Timestamp,
    failure: Option<&Failure>,
) -> ReplicaSetStatus {
    let template_labels = owner.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.is_none_or(|want| want.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)))
        })
        .count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active.iter().filter(|p| pods::is_available(p, owner.min_ready_seconds, now)).count();
    let mut conditions: Vec<ReplicaSetCondition> = owner.status.conditions.clone().unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == "ReplicaFailure");
    match (failure, existing) {
        (Some(f), None) => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    let count = |n: usize| Some(n as i32);
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(ready),
        available_replicas: count(available),
        observed_generation: owner.meta.generation,
        conditions: if conditions.is_empty() { None } else { Some(conditions) },
        terminating_replicas: owner.status.terminating_replicas,
    }
}

/// The status as a JSON merge patch: fields that are unset become `null`, so they are cleared.
pub(crate) fn status_patch(status: &ReplicaSetStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        for key in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration", "conditions"] {
            obj.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": v })
}
