//! A PodDisruptionBudget's status from its pods and their controllers' scale, without IO
//! (as Kubernetes' disruption controller computes it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// How long an eviction's entry in `disruptedPods` waits for the pod's deletion.
pub(crate) const DELETION_TIMEOUT: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// Why a budget's status cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BudgetError {
    /// A percentage or maxUnavailable needs the pods' controllers, and some pod has none.
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    /// minAvailable/maxUnavailable is not an integer or a percentage.
    #[error("invalid value {0:?}: an integer or a percentage is required")]
    BadValue(String),
}

/// A percentage (`"50%"`) or an integer of `total`, rounded up (`intstr.GetScaledValueFromIntOrPercent`).
pub(crate) fn scaled(value: &IntOrString, total: i32) -> Result<i32, BudgetError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 =
                s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| BudgetError::BadValue(s.clone()))?;
            Ok(((pct * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// True when the pod's `Ready` condition is `True`.
fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the budget needs from the pods' controllers: `None` when an integer minAvailable
/// suffices (then the pod count is the expected count).
pub(crate) fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.clone().unwrap_or_default();
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// The budget's new status: `pods` are those its selector picks, `expected` the sum of
/// their controllers' scale (when [`needs_scale`]), `now` the clock. Also returns when to
/// look again (the next expiry of a `disruptedPods` entry).
pub(crate) fn status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    expected: Option<i32>,
    now: jiff::Timestamp,
) -> Result<(PodDisruptionBudgetStatus, Option<jiff::Timestamp>), BudgetError> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let old = pdb.status.clone().unwrap_or_default();
    // Evictions whose pods are not gone yet, for at most DELETION_TIMEOUT.
    let mut disrupted: BTreeMap<String, Time> = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    for (name, at) in old.disrupted_pods.clone().unwrap_or_default() {
        let Some(pod) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str())) else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = at.0 + DELETION_TIMEOUT;
        if expires <= now {
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r: jiff::Timestamp| r.min(expires)));
        disrupted.insert(name, at);
    }
    let current_healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
        .filter(|p| ready(p))
        .count() as i32;
    let (expected_pods, desired_healthy) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = expected.unwrap_or(0);
            (expected, (expected - scaled(max, expected)?).max(0))
        }
        (None, Some(IntOrString::Int(min))) => (pods.len() as i32, *min),
        (None, Some(min)) => {
            let expected = expected.unwrap_or(0);
            (expected, scaled(min, expected)?)
        }
        (None, None) => (pods.len() as i32, 0),
    };
    let allowed = (current_healthy - desired_healthy).max(0);
    let condition = if allowed > 0 {
        ("True", "SufficientPods", String::new())
    } else {
        ("False", "InsufficientPods", String::new())
    };
    let conditions = vec![disruption_condition(&old.conditions.unwrap_or_default(), condition, pdb, now)];
    Ok((
        PodDisruptionBudgetStatus {
            current_healthy,
            desired_healthy,
            disruptions_allowed: allowed,
            expected_pods,
            observed_generation: pdb.metadata.generation,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            conditions: Some(conditions),
        },
        recheck,
    ))
}

/// The status of a budget whose computation failed (nothing may be disrupted).
pub(crate) fn failed_status(
    pdb: &PodDisruptionBudget,
    error: &BudgetError,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let condition = ("False", "SyncFailed", error.to_string());
    PodDisruptionBudgetStatus {
        disruptions_allowed: 0,
        observed_generation: pdb.metadata.generation,
        conditions: Some(vec![disruption_condition(&old.conditions.unwrap_or_default(), condition, pdb, now)]),
        ..old
    }
}

fn disruption_condition(
    old: &[Condition],
    (status, reason, message): (&str, &str, String),
    pdb: &PodDisruptionBudget,
    now: jiff::Timestamp,
) -> Condition {
    let previous = old.iter().find(|c| c.type_ == "DisruptionAllowed");
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: pdb.metadata.generation,
    }
}

#[cfg(test)]
mod tests;
