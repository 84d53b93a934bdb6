//! Graceful node shutdown, as the kubelet's `nodeshutdown` manager: when the agent stops (not
//! with `--keep-pods`), the Node turns NotReady first (`KubeletNotReady`, "node is shutting
//! down") so nothing more is placed on it, then its pods are terminated in two phases —
//! regular pods within `shutdownGracePeriod - shutdownGracePeriodCriticalPods`, then critical
//! pods (priority ≥ system-cluster-critical) within `shutdownGracePeriodCriticalPods` — each
//! with its preStop hooks, SIGTERM, and SIGKILL after `min(terminationGracePeriodSeconds,
//! the phase's budget)`. Each pod's status is written Failed (reason `Terminated`, a
//! `DisruptionTarget` condition with reason `TerminationByKubelet`) before its sandbox goes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{Shared, pods, register};

/// Pods at or above this priority are critical (`system-cluster-critical`, the kubelet's
/// `SystemCriticalPriority`): they stop in the last phase.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The reason a pod stopped by a node shutdown gets.
pub const REASON: &str = "Terminated";
/// The message a pod stopped by a node shutdown gets (status and `DisruptionTarget`).
pub const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// The message of the Node's Ready=False condition while it shuts down.
pub const NODE_MESSAGE: &str = "node is shutting down";

/// How long a phase waits beyond its budget for its pods' status writes and sandbox
/// removals (the kill itself is bounded by the budget).
const PHASE_SLACK: Duration = Duration::from_secs(5);

/// One phase of a shutdown: the pods it stops and its time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Critical pods (else the regular ones).
    pub critical: bool,
    /// The phase's budget in seconds; no pod of the phase gets a longer grace period.
    pub budget_secs: i64,
}

/// Why shutdown grace periods are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "--shutdown-grace-period-critical-pods ({critical:?}) must not be longer than --shutdown-grace-period ({total:?})"
)]
pub struct PeriodsError {
    /// The whole period.
    pub total: Duration,
    /// The critical pods' part of it.
    pub critical: Duration,
}

/// The phases of a shutdown of `total` seconds of which `critical` go to critical pods (the
/// kubelet's migration of `shutdownGracePeriod`/`shutdownGracePeriodCriticalPods`): none when
/// `total` is zero, whatever `critical` (pods are then removed at once, as before graceful
/// shutdown); otherwise `critical` must fit in `total`, as the kubelet validates them.
pub fn phases(total: Duration, critical: Duration) -> Result<Vec<Phase>, PeriodsError> {
    if total.is_zero() {
        return Ok(Vec::new());
    }
    if critical > total {
        return Err(PeriodsError { total, critical });
    }
    let (total, critical) = (total.as_secs() as i64, critical.as_secs() as i64);
    Ok(vec![Phase { critical: false, budget_secs: total - critical }, Phase { critical: true, budget_secs: critical }])
}

/// Whether `pod` stops with the critical pods.
pub fn is_critical(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) >= SYSTEM_CRITICAL_PRIORITY
}

/// The grace period `pod` gets in a phase of `budget_secs`: its own when shorter.
pub fn grace(pod: &Pod, budget_secs: i64) -> i64 {
    let own = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
    own.filter(|g| *g <= budget_secs).unwrap_or(budget_secs).max(0)
}

/// The `DisruptionTarget` condition of a pod stopped by the shutdown (its transition time kept
/// from `previous` when it was already set).
pub fn disruption_condition(previous: &[PodCondition], now: Timestamp) -> PodCondition {
    let since = previous
        .iter()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(MESSAGE.into()),
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// Shuts the node down gracefully: Node NotReady, then the phases in order, each waiting for
/// its pods (at most its budget and a little slack). Returns at once when the grace period
/// is zero. Pods still running afterwards are removed by the caller.
pub(crate) async fn run(shared: &Arc<Shared>, workers: &pods::Workers) {
    let config = &shared.config;
    let Ok(phases) = phases(config.shutdown_grace_period, config.shutdown_grace_period_critical_pods) else {
        return;
    };
    if phases.is_empty() {
        return;
    }
    let _ = shared.shutting_down.set(Timestamp::now());
    tracing::info!(
        grace_period = ?config.shutdown_grace_period,
        critical_pods = ?config.shutdown_grace_period_critical_pods,
        "node shutting down: terminating pods"
    );
    register::post_node_status(shared).await;
    for phase in phases {
        let done = workers.shut_down(phase);
        if done.is_empty() {
            continue;
        }
        let wait = Duration::from_secs(phase.budget_secs as u64) + PHASE_SLACK;
        let n = done.len();
        if tokio::time::timeout(wait, futures::future::join_all(done)).await.is_err() {
            tracing::warn!(pods = n, critical = phase.critical, "pods still stopping when their shutdown phase ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(priority: Option<i32>, grace: Option<i64>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": { "containers": [], "priority": priority, "terminationGracePeriodSeconds": grace },
        }))
        .unwrap()
    }

    #[test]
    fn the_critical_part_comes_last_and_zero_means_no_phases() {
        let s = Duration::from_secs;
        assert_eq!(
            phases(s(30), s(10)).unwrap(),
            [Phase { critical: false, budget_secs: 20 }, Phase { critical: true, budget_secs: 10 }]
        );
        assert_eq!(
            phases(s(30), s(0)).unwrap(),
            [Phase { critical: false, budget_secs: 30 }, Phase { critical: true, budget_secs: 0 }]
        );
        assert_eq!(phases(s(0), s(0)).unwrap(), []);
        assert_eq!(phases(s(0), s(10)).unwrap(), [], "zero turns it off whatever the critical part");
        assert_eq!(phases(s(5), s(10)), Err(PeriodsError { total: s(5), critical: s(10) }));
    }

    #[test]
    fn critical_is_system_cluster_critical_and_above() {
        assert!(!is_critical(&pod(None, None)));
        assert!(!is_critical(&pod(Some(1_999_999_999), None)));
        assert!(is_critical(&pod(Some(2_000_000_000), None)));
        assert!(is_critical(&pod(Some(2_000_001_000), None)));
    }

    #[test]
    fn a_pod_gets_the_shorter_of_its_grace_and_the_budget() {
        assert_eq!(grace(&pod(None, Some(3)), 20), 3);
        assert_eq!(grace(&pod(None, Some(30)), 20), 20);
        assert_eq!(grace(&pod(None, None), 20), 20);
        assert_eq!(grace(&pod(None, Some(0)), 20), 0);
    }

    #[test]
    fn the_disruption_condition_keeps_its_first_time() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let first = disruption_condition(&[], t0);
        assert_eq!(first.reason.as_deref(), Some("TerminationByKubelet"));
        assert_eq!(first.message.as_deref(), Some(MESSAGE));
        let again = disruption_condition(&[first], t1);
        assert_eq!(again.last_transition_time, Some(Time(t0)));
    }
}
