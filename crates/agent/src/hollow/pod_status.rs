//! The pod statuses a hollow node reports, built as the kubelet builds them: Running with
//! ready containers, Succeeded with containers terminated `Completed`, and the QoS class
//! as Kubernetes computes it. Pure functions of the pod and the time: no IO.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
    PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::config::parse_quantity;

/// Where a pod runs: its node's address and its own.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The node's InternalIP.
    pub host_ip: &'a str,
    /// The pod's IP (the node's for hostNetwork pods).
    pub pod_ip: &'a str,
}

/// The QoS class Kubernetes gives a pod: `Guaranteed` when every container has cpu and
/// memory limits and the summed requests equal the summed limits, `BestEffort` when no
/// container requests or limits cpu or memory, else `Burstable`.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        let Some(res) = &c.resources else {
            guaranteed = false;
            continue;
        };
        for (name, q) in res.requests.iter().flatten() {
            if let ("cpu" | "memory", Ok(v)) = (name.as_str(), parse_quantity(&q.0))
                && v != 0
            {
                *requests.entry(if name == "cpu" { "cpu" } else { "memory" }).or_default() += v;
            }
        }
        let mut found = 0;
        for (name, q) in res.limits.iter().flatten() {
            if let ("cpu" | "memory", Ok(v)) = (name.as_str(), parse_quantity(&q.0))
                && v != 0
            {
                found += 1;
                *limits.entry(if name == "cpu" { "cpu" } else { "memory" }).or_default() += v;
            }
        }
        if found < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        return "Guaranteed";
    }
    "Burstable"
}

/// True when the pod's containers run to completion: restartPolicy Never or OnFailure, or
/// the pod belongs to a Job.
pub fn runs_to_completion(pod: &Pod) -> bool {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let job_owned =
        pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "Job" && o.api_version.starts_with("batch/"));
    policy != "Always" || job_owned
}

/// The status of a pod whose containers all started at `now` and are ready (readiness
/// probes count as passing).
pub fn running_status(pod: &Pod, placement: Placement<'_>, now: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let started = old.start_time.clone().unwrap_or(Time(now));
    let gates_ready = readiness_gates_ready(pod);
    let mut ready_condition = condition(&old, "Ready", true, None, now);
    if !gates_ready {
        ready_condition = condition(&old, "Ready", false, Some("ReadinessGatesNotReady"), now);
    }
    PodStatus {
        phase: Some("Running".into()),
        conditions: Some(with_others(
            &old,
            vec![
                condition(&old, "PodReadyToStartContainers", true, None, now),
                condition(&old, "Initialized", true, None, now),
                ready_condition,
                condition(&old, "ContainersReady", true, None, now),
                condition(&old, "PodScheduled", true, None, now),
            ],
        )),
        host_ip: Some(placement.host_ip.into()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: placement.host_ip.into() }]),
        pod_ip: Some(placement.pod_ip.into()),
        pod_ips: Some(vec![PodIP { ip: placement.pod_ip.into() }]),
        start_time: Some(started.clone()),
        qos_class: Some(old.qos_class.clone().unwrap_or_else(|| qos_class(&spec).into())),
        init_container_statuses: init_statuses(pod, &started, now),
        container_statuses: Some(
            spec.containers.iter().map(|c| running_container(pod, c, Time(now), true, "app")).collect(),
        ),
        ..Default::default()
    }
}

/// The status of a pod whose containers all exited 0 at `now`: phase Succeeded, containers
/// terminated with reason Completed. Also what a deleted pod reports once its containers stopped.
pub fn completed_status(pod: &Pod, placement: Placement<'_>, now: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let started = old.start_time.clone().unwrap_or(Time(now));
    let finished = |c: &Container, kind: &str| {
        // Keep when each container started, if it was reported running.
        let started_at = old
            .container_statuses
            .iter()
            .chain(old.init_container_statuses.iter())
            .flatten()
            .find(|s| s.name == c.name)
            .and_then(|s| s.state.as_ref())
            .and_then(|s| s.running.as_ref().and_then(|r| r.started_at.clone()))
            .unwrap_or_else(|| started.clone());
        ContainerStatus {
            state: Some(ContainerState { terminated: Some(completed(started_at, now)), ..Default::default() }),
            ready: false,
            started: Some(false),
            ..running_container(pod, c, Time(now), false, kind)
        }
    };
    let done = |t: &str| condition(&old, t, false, Some("PodCompleted"), now);
    PodStatus {
        phase: Some("Succeeded".into()),
        conditions: Some(with_others(
            &old,
            vec![
                condition(&old, "PodReadyToStartContainers", false, None, now),
                condition(&old, "Initialized", true, Some("PodCompleted"), now),
                done("Ready"),
                done("ContainersReady"),
                condition(&old, "PodScheduled", true, None, now),
            ],
        )),
        host_ip: Some(placement.host_ip.into()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP { ip: placement.host_ip.into() }]),
        pod_ip: Some(placement.pod_ip.into()),
        pod_ips: Some(vec![PodIP { ip: placement.pod_ip.into() }]),
        start_time: Some(started.clone()),
        qos_class: Some(old.qos_class.clone().unwrap_or_else(|| qos_class(&spec).into())),
        init_container_statuses: spec
            .init_containers
            .as_ref()
            .map(|cs| cs.iter().map(|c| finished(c, "init")).collect()),
        container_statuses: Some(spec.containers.iter().map(|c| finished(c, "app")).collect()),
        ..Default::default()
    }
}

/// For a running pod with readiness gates: its conditions with Ready set from the gates,
/// when that changes Ready (a controller set or cleared a gate's condition); else None.
pub fn ready_from_gates(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref()?;
    if spec.readiness_gates.as_ref().is_none_or(Vec::is_empty) || status.phase.as_deref() != Some("Running") {
        return None;
    }
    let want = readiness_gates_ready(pod);
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready")?;
    if (ready.status == "True") == want {
        return None;
    }
    let reason = if want { None } else { Some("ReadinessGatesNotReady") };
    let updated = condition(status, "Ready", want, reason, now);
    Some(
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| if c.type_ == "Ready" { updated.clone() } else { c.clone() })
            .collect(),
    )
}

/// Init containers: run-once ones terminated Completed, sidecars (restartPolicy Always) running.
fn init_statuses(pod: &Pod, started: &Time, now: Timestamp) -> Option<Vec<ContainerStatus>> {
    let spec = pod.spec.as_ref()?;
    let inits = spec.init_containers.as_ref()?;
    Some(
        inits
            .iter()
            .map(|c| {
                if c.restart_policy.as_deref() == Some("Always") {
                    running_container(pod, c, Time(now), true, "init")
                } else {
                    ContainerStatus {
                        state: Some(ContainerState {
                            terminated: Some(completed(started.clone(), now)),
                            ..Default::default()
                        }),
                        ready: true,
                        started: Some(false),
                        ..running_container(pod, c, Time(now), true, "init")
                    }
                }
            })
            .collect(),
    )
}

fn completed(started_at: Time, now: Timestamp) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: 0,
        reason: Some("Completed".into()),
        started_at: Some(started_at),
        finished_at: Some(Time(now)),
        ..Default::default()
    }
}

/// A running, started container with hollow image and container ids.
fn running_container(pod: &Pod, c: &Container, started_at: Time, ready: bool, kind: &str) -> ContainerStatus {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let image = c.image.clone().unwrap_or_default();
    ContainerStatus {
        name: c.name.clone(),
        image_id: format!("hollow://{image}"),
        image,
        container_id: Some(format!("hollow://{uid}/{kind}/{}", c.name)),
        ready,
        started: Some(true),
        restart_count: 0,
        state: Some(ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(started_at) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod condition; the transition time is kept when the status does not change.
fn condition(old: &PodStatus, type_: &str, status: bool, reason: Option<&str>, now: Timestamp) -> PodCondition {
    let status = if status { "True" } else { "False" };
    let previous = old.conditions.iter().flatten().find(|c| c.type_ == type_);
    let since = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        last_transition_time: Some(since),
        last_probe_time: None,
        ..Default::default()
    }
}

/// `ours` followed by the conditions others set (readiness gates, DisruptionTarget...): a
/// merge patch replaces the whole list, so they are carried over.
fn with_others(old: &PodStatus, mut ours: Vec<PodCondition>) -> Vec<PodCondition> {
    let others: Vec<PodCondition> =
        old.conditions.iter().flatten().filter(|c| !ours.iter().any(|o| o.type_ == c.type_)).cloned().collect();
    ours.extend(others);
    ours
}

/// True when every readiness gate of the pod has its condition True.
fn readiness_gates_ready(pod: &Pod) -> bool {
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    gates
        .into_iter()
        .flatten()
        .all(|g| conditions.into_iter().flatten().any(|c| c.type_ == g.condition_type && c.status == "True"))
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;
