//! Pod status decisions (pure): container states from CRI statuses, termination reasons,
//! restarts and their back-off, the pod phase and conditions.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::cri::v1 as cri;

/// The first restart back-off.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest restart back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The back-off before restart number `restarts + 1`: 10 s, doubling, at most 5 min.
pub fn backoff_delay(restarts: u32) -> Duration {
    BACKOFF_INITIAL.saturating_mul(1u32 << restarts.min(16)).min(BACKOFF_MAX)
}

/// When a container that exited is restarted: the back-offs it counts (`backoffs` restarts
/// since its back-off last started over) and the wait. The first restart is immediate, then
/// 10 s doubling to 5 min; a run of more than twice the longest back-off (10 min, from
/// `started_at` to `finished_at`, CRI nanoseconds) starts the back-off over, as the
/// kubelet's back-off entry expires after 2 × its maximum without a restart.
pub fn restart_delay(backoffs: u32, started_at: i64, finished_at: i64) -> (u32, Duration) {
    let healthy_run = i64::try_from(2 * BACKOFF_MAX.as_nanos()).unwrap_or(i64::MAX);
    let backoffs = if finished_at.saturating_sub(started_at) > healthy_run { 0 } else { backoffs };
    match backoffs {
        0 => (0, Duration::ZERO),
        n => (n, backoff_delay(n - 1)),
    }
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The reason of a termination: OOMKilled as the runtime reports it, Completed on exit 0,
/// else Error.
pub fn terminated_reason(exit_code: i32, runtime_reason: &str) -> &'static str {
    if runtime_reason == "OOMKilled" {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

fn time_from_nanos(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok().map(Time)).flatten()
}

/// The Kubernetes `terminated` state of an exited CRI container.
pub fn terminated(status: &cri::ContainerStatus) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: status.exit_code,
        reason: Some(terminated_reason(status.exit_code, &status.reason).to_string()),
        message: (!status.message.is_empty()).then(|| status.message.clone()),
        started_at: time_from_nanos(status.started_at),
        finished_at: time_from_nanos(status.finished_at),
        container_id: Some(format!("containerd://{}", status.id)),
        signal: None,
    }
}

/// The Kubernetes state of a CRI container.
pub fn container_state(status: &cri::ContainerStatus) -> ContainerState {
    match cri::ContainerState::try_from(status.state) {
        Ok(cri::ContainerState::ContainerRunning) => ContainerState {
            running: Some(ContainerStateRunning { started_at: time_from_nanos(status.started_at) }),
            ..Default::default()
        },
        Ok(cri::ContainerState::ContainerExited) => {
            ContainerState { terminated: Some(terminated(status)), ..Default::default() }
        }
        _ => waiting("ContainerCreating", ""),
    }
}

/// A waiting state with `reason` and `message`.
pub fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

/// What the phase is decided from, per regular container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Not started yet (creating, image missing, config error).
    NotStarted,
    /// Running.
    Running,
    /// Exited and waiting for its restart (back-off).
    Restarting,
    /// Exited for good, with this code.
    Exited(i32),
}

/// The pod phase (the kubelet's rules): Pending until initialized and every container has
/// started once; Running while any runs or will restart; Succeeded when all exited 0 for
/// good; Failed when all exited for good and one failed.
pub fn phase(initialized: bool, init_failed: bool, containers: &[Observed]) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !initialized || containers.contains(&Observed::NotStarted) {
        return "Pending";
    }
    if containers.iter().any(|c| matches!(c, Observed::Running | Observed::Restarting)) {
        return "Running";
    }
    if containers.iter().all(|c| *c == Observed::Exited(0)) { "Succeeded" } else { "Failed" }
}

/// The pod conditions, keeping each one's transition time from `previous` when its status
/// did not change.
pub fn conditions(
    previous: &[PodCondition],
    sandbox_ready: bool,
    initialized: bool,
    containers_ready: bool,
    phase: &str,
    now: Timestamp,
) -> Vec<PodCondition> {
    let completed = phase == "Succeeded" || phase == "Failed";
    let make = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            last_transition_time: Some(since),
            ..Default::default()
        }
    };
    let ready = containers_ready && !completed;
    let not_ready = (!ready).then_some(if completed { "PodCompleted" } else { "ContainersNotReady" });
    // As the kubelet's GeneratePodInitializedCondition: a pod that failed before its init
    // containers completed is still ContainersNotInitialized; a Succeeded one is True with
    // PodCompleted.
    let init_reason = match (initialized, phase) {
        (false, _) => Some("ContainersNotInitialized"),
        (true, "Succeeded") => Some("PodCompleted"),
        (true, _) => None,
    };
    vec![
        make("PodReadyToStartContainers", sandbox_ready && !completed, None),
        make("Initialized", initialized, init_reason),
        make("Ready", ready, not_ready),
        make("ContainersReady", ready, not_ready),
        make("PodScheduled", true, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10s_to_5min() {
        let secs: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn the_back_off_starts_over_after_ten_healthy_minutes() {
        let secs = 1_000_000_000i64;
        let t0 = 1_700_000_000 * secs;
        assert_eq!(restart_delay(0, t0, t0 + secs), (0, Duration::ZERO), "the first restart is immediate");
        assert_eq!(restart_delay(1, t0, t0 + secs), (1, Duration::from_secs(10)));
        assert_eq!(restart_delay(3, t0, t0 + 60 * secs), (3, Duration::from_secs(40)));
        assert_eq!(restart_delay(9, t0, t0 + 600 * secs), (9, BACKOFF_MAX), "10 min is not more than 2 × 5 min");
        assert_eq!(restart_delay(9, t0, t0 + 601 * secs), (0, Duration::ZERO), "a long run starts over");
        // Unknown times (0) are no long run.
        assert_eq!(restart_delay(2, 0, 0), (2, Duration::from_secs(20)));
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("Always", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 2));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn reasons() {
        assert_eq!(terminated_reason(0, ""), "Completed");
        assert_eq!(terminated_reason(1, ""), "Error");
        assert_eq!(terminated_reason(137, "OOMKilled"), "OOMKilled");
    }

    #[test]
    fn phases() {
        use Observed::*;
        assert_eq!(phase(false, false, &[NotStarted]), "Pending");
        assert_eq!(phase(true, false, &[Running, NotStarted]), "Pending");
        assert_eq!(phase(true, false, &[Running]), "Running");
        assert_eq!(phase(true, false, &[Restarting]), "Running");
        assert_eq!(phase(true, false, &[Exited(0), Running]), "Running");
        assert_eq!(phase(true, false, &[Exited(0), Exited(0)]), "Succeeded");
        assert_eq!(phase(true, false, &[Exited(0), Exited(1)]), "Failed");
        assert_eq!(phase(false, true, &[NotStarted]), "Failed");
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let first = conditions(&[], true, true, false, "Pending", t0);
        let second = conditions(&first, true, true, true, "Running", t1);
        let get = |cs: &[PodCondition], t: &str| cs.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get(&second, "Initialized").last_transition_time, Some(Time(t0)));
        assert_eq!(get(&second, "Ready").last_transition_time, Some(Time(t1)));
        assert_eq!(get(&second, "Ready").status, "True");
        assert_eq!(get(&first, "Ready").reason.as_deref(), Some("ContainersNotReady"));
        let done = conditions(&second, true, true, true, "Succeeded", t1);
        assert_eq!(get(&done, "Ready").reason.as_deref(), Some("PodCompleted"));
        let initialized = get(&done, "Initialized");
        assert_eq!((initialized.status.as_str(), initialized.reason.as_deref()), ("True", Some("PodCompleted")));
        // Failed in an init container: not initialized, whatever the phase.
        let failed = conditions(&first, true, false, false, "Failed", t1);
        let initialized = get(&failed, "Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.reason.as_deref()),
            ("False", Some("ContainersNotInitialized"))
        );
        assert_eq!(get(&failed, "Ready").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(get(&failed, "PodReadyToStartContainers").status, "False");
    }
}
