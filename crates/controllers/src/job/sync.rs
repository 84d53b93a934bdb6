//! One Job sync as a pure function: from the Job, its pods and the clock, the status to
//! write, the pods to create or delete, the tracking finalizers to remove, and when to
//! look again (as Kubernetes' job controller, with finalizer-based pod tracking).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub(crate) const TRACKING: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's index.
pub(crate) const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with how many pods of the same index failed before this one (`backoffLimitPerIndex`).
pub(crate) const INDEX_FAILURES: &str = "batch.kubernetes.io/job-index-failure-count";
/// First back-off delay after a failure; it doubles per failure up to [`MAX_BACKOFF`].
pub(crate) const BACKOFF: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);
/// Longest back-off delay.
pub(crate) const MAX_BACKOFF: jiff::SignedDuration = jiff::SignedDuration::from_secs(360);

/// What one sync decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The Job's new status (written when it differs).
    pub(crate) status: JobStatus,
    /// Pods to create: `None` for NonIndexed, the index for Indexed.
    pub(crate) create: Vec<Option<i32>>,
    /// Failures so far per index, for the new pods' [`INDEX_FAILURES`] annotation.
    pub(crate) index_failures: BTreeMap<i32, i32>,
    /// Active pods to delete (names).
    pub(crate) delete: Vec<String>,
    /// Pods whose tracking finalizer goes, once `status` is written (names).
    pub(crate) remove_finalizers: Vec<String>,
    /// Look again after this long (back-off, deadline).
    pub(crate) requeue: Option<jiff::SignedDuration>,
    /// Events: (warning?, reason, message).
    pub(crate) events: Vec<(bool, String, String)>,
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING)
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// The pod's completion index (Indexed Jobs).
pub(crate) fn index_of(p: &Pod) -> Option<i32> {
    p.metadata.annotations.as_ref()?.get(INDEX)?.parse().ok()
}

/// When the pod finished: its containers' latest finish time, else its creation.
fn finished_at(p: &Pod) -> Option<jiff::Timestamp> {
    let latest = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    latest.or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn condition_true(status: &JobStatus, type_: &str) -> bool {
    status.conditions.iter().flatten().any(|c| c.type_ == type_ && c.status == "True")
}

fn condition(type_: &str, reason: &str, message: &str, now: &Time) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

fn set_condition(status: &mut JobStatus, c: JobCondition) {
    let list = status.conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(old) if old.status == c.status => {}
        Some(old) => *old = c,
        None => list.push(c),
    }
}

/// `0-2,4` from a set of indexes.
pub(crate) fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// The indexes in `0-2,4`.
pub(crate) fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out
}

/// What a pod failure policy says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicyAction {
    /// Counted towards the back-off limit (no rule matched, or a Count rule).
    Count,
    /// Not counted.
    Ignore,
    /// The whole Job fails (with this message).
    FailJob(String),
    /// The pod's index fails at once (`backoffLimitPerIndex`).
    FailIndex,
}

/// The first matching rule of the Job's podFailurePolicy for a failed pod.
pub(crate) fn policy_action(job: &Job, pod: &Pod) -> PolicyAction {
    let rules: Vec<PodFailurePolicyRule> =
        job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()).map(|p| p.rules.clone()).unwrap_or_default();
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let mut matched: Option<String> = None;
        if let Some(on) = &rule.on_exit_codes {
            for c in &statuses {
                if on.container_name.as_ref().is_some_and(|n| *n != c.name) {
                    continue;
                }
                let Some(code) = c.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code) else {
                    continue;
                };
                if code == 0 {
                    continue;
                }
                let hit = match on.operator.as_str() {
                    "In" => on.values.contains(&code),
                    "NotIn" => !on.values.contains(&code),
                    _ => false,
                };
                if hit {
                    matched = Some(format!(
                        "Container {} for pod {}/{} failed with exit code {code} matching {} rule at index {i}",
                        c.name,
                        pod.metadata.namespace.clone().unwrap_or_default(),
                        pod.metadata.name.clone().unwrap_or_default(),
                        rule.action
                    ));
                    break;
                }
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let want = pattern.status.as_str();
            if conditions.iter().any(|c| c.type_ == pattern.type_ && c.status == want) {
                matched = Some(format!(
                    "Pod {}/{} has condition {} matching {} rule at index {i}",
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                    pattern.type_,
                    rule.action
                ));
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => PolicyAction::FailJob(message),
                "FailIndex" => PolicyAction::FailIndex,
                "Ignore" => PolicyAction::Ignore,
                _ => PolicyAction::Count,
            };
        }
    }
    PolicyAction::Count
}

/// How many pods of this pod's index failed before it.
fn index_failures_before(p: &Pod) -> i32 {
    p.metadata.annotations.as_ref().and_then(|a| a.get(INDEX_FAILURES)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The first rule of the Job's successPolicy that the completed indexes meet (its position).
pub(crate) fn success_policy_rule(job: &Job, completed: &BTreeSet<i32>) -> Option<usize> {
    let rules = &job.spec.as_ref()?.success_policy.as_ref()?.rules;
    rules.iter().position(|rule| match (&rule.succeeded_indexes, rule.succeeded_count) {
        (Some(set), count) => {
            let wanted = parse_indexes(set);
            let hits = wanted.intersection(completed).count();
            hits >= count.map_or(wanted.len(), |c| c.max(0) as usize) && hits > 0
        }
        (None, Some(count)) => completed.len() >= count.max(0) as usize,
        (None, None) => false,
    })
}

/// Whether only pods in phase Failed count as failures (Kubernetes' onlyReplaceFailedPods):
/// with podReplacementPolicy Failed, or a podFailurePolicy, a deleted pod is not failed
/// until its kubelet (or the pod GC) has moved it to Failed, with its final conditions.
fn only_failed_pods(job: &Job) -> bool {
    job.spec
        .as_ref()
        .is_some_and(|s| s.pod_replacement_policy.as_deref() == Some("Failed") || s.pod_failure_policy.is_some())
}

/// True when the pod counts as failed (Kubernetes' isPodFailed): phase Failed, or, unless
/// `only_failed`, deleted before it succeeded (so orphans that never reach Failed count).
fn failed(only_failed: bool, p: &Pod) -> bool {
    phase(p) == "Failed"
        || (!only_failed && p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded" && has_finalizer(p))
}

/// The sync of `job` over its `pods` at `now`.
pub(crate) fn sync(job: &Job, pods: &[&Pod], now: jiff::Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let now_t = Time(now);
    let mut status = old.clone();
    let mut plan = Plan::default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let per_index_limit = spec.backoff_limit_per_index.filter(|_| indexed);
    let mut failed_indexes = parse_indexes(old.failed_indexes.as_deref().unwrap_or(""));

    // Finalizer-based tracking: terminated pods go into uncountedTerminatedPods (written
    // first), then lose their finalizer, then move into the counters.
    let mut uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_succeeded: BTreeSet<String> = uncounted.succeeded.take().unwrap_or_default().into_iter().collect();
    let mut unc_failed: BTreeSet<String> = uncounted.failed.take().unwrap_or_default().into_iter().collect();
    let by_uid: BTreeMap<String, &Pod> = pods.iter().map(|p| (uid(p), *p)).collect();
    let mut completed = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
    let mut fail_job: Option<String> = None;
    let only_failed = only_failed_pods(job);
    let failed = |p: &Pod| failed(only_failed, p);
    for p in pods.iter().filter(|p| has_finalizer(p)) {
        let u = uid(p);
        if unc_succeeded.contains(&u) || unc_failed.contains(&u) {
            plan.remove_finalizers.push(p.metadata.name.clone().unwrap_or_default());
            continue;
        }
        if phase(p) == "Succeeded" {
            if indexed {
                match index_of(p) {
                    Some(i) if !completed.contains(&i) => {
                        completed.insert(i);
                        unc_succeeded.insert(u);
                    }
                    // A second success of the same index is not counted again.
                    _ => plan.remove_finalizers.push(p.metadata.name.clone().unwrap_or_default()),
                }
            } else {
                unc_succeeded.insert(u);
            }
        } else if failed(p) {
            let action = policy_action(job, p);
            // backoffLimitPerIndex: an index fails once its pods failed more than the limit.
            if let (Some(limit), Some(i)) = (per_index_limit, index_of(p)) {
                let fails = match action {
                    PolicyAction::FailIndex => true,
                    PolicyAction::Count => index_failures_before(p) + 1 > limit,
                    _ => false,
                };
                if fails && !completed.contains(&i) {
                    failed_indexes.insert(i);
                }
            }
            match action {
                PolicyAction::Ignore => plan.remove_finalizers.push(p.metadata.name.clone().unwrap_or_default()),
                PolicyAction::FailJob(message) => {
                    fail_job.get_or_insert(message);
                    unc_failed.insert(u);
                }
                PolicyAction::Count | PolicyAction::FailIndex => {
                    unc_failed.insert(u);
                }
            }
        }
    }
    // Uncounted pods whose finalizer is gone (or that are gone) move into the counters.
    let settled = |u: &String| by_uid.get(u).is_none_or(|p| !has_finalizer(p));
    let moved_succeeded: Vec<String> = unc_succeeded.iter().filter(|u| settled(u)).cloned().collect();
    let moved_failed: Vec<String> = unc_failed.iter().filter(|u| settled(u)).cloned().collect();
    status.succeeded = Some(old.succeeded.unwrap_or(0) + moved_succeeded.len() as i32);
    status.failed = Some(old.failed.unwrap_or(0) + moved_failed.len() as i32);
    for u in &moved_succeeded {
        unc_succeeded.remove(u);
    }
    for u in &moved_failed {
        unc_failed.remove(u);
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: Some(unc_succeeded.iter().cloned().collect()),
        failed: Some(unc_failed.iter().cloned().collect()),
    });
    if indexed {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    if per_index_limit.is_some() {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
        // Each index's failures so far: the latest pod's count, plus one when it failed.
        for p in pods {
            if let Some(i) = index_of(p) {
                let ignored = failed(p) && policy_action(job, p) == PolicyAction::Ignore;
                let n = index_failures_before(p) + i32::from(failed(p) && !ignored);
                let slot = plan.index_failures.entry(i).or_insert(0);
                *slot = (*slot).max(n);
            }
        }
    }
    let succeeded = status.succeeded.unwrap_or(0) + unc_succeeded.len() as i32;
    let failures = status.failed.unwrap_or(0) + unc_failed.len() as i32;

    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed"))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed"))
        .count() as i32;
    status.active = Some(active.len() as i32);
    status.terminating = Some(terminating);
    status.ready = Some(
        active
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count() as i32,
    );

    if condition_true(&old, "Complete") || condition_true(&old, "Failed") {
        // Finished: only the finalizers of the remaining pods are left to remove.
        plan.remove_finalizers =
            pods.iter().filter(|p| has_finalizer(p)).map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        plan.status = status;
        return plan;
    }

    let delete_active = |plan: &mut Plan| {
        plan.delete = active.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
    };

    // Suspended: no pods run.
    if spec.suspend == Some(true) {
        delete_active(&mut plan);
        set_condition(&mut status, condition("Suspended", "JobSuspended", "Job suspended", &now_t));
        plan.status = status;
        return plan;
    }
    if let Some(c) =
        status.conditions.as_mut().and_then(|l| l.iter_mut().find(|c| c.type_ == "Suspended" && c.status == "True"))
    {
        c.status = "False".into();
        c.reason = Some("JobResumed".into());
        c.message = Some("Job resumed".into());
        c.last_transition_time = Some(now_t.clone());
        status.start_time = Some(now_t.clone());
    }
    let start = status.start_time.get_or_insert_with(|| now_t.clone()).clone();

    // Terminal decisions: first the target condition, then (pods gone) the final one.
    if !condition_true(&status, "FailureTarget") && !condition_true(&status, "SuccessCriteriaMet") {
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let deadline = spec.active_deadline_seconds.map(|s| start.0 + jiff::SignedDuration::from_secs(s));
        let completions = spec.completions;
        let done = match (indexed, completions) {
            (true, Some(c)) => (completed.len() + failed_indexes.len()) as i32 >= c,
            (false, Some(c)) => succeeded >= c,
            (_, None) => succeeded > 0 && active.is_empty(),
        };
        let too_many_failed_indexes =
            spec.max_failed_indexes.is_some_and(|max| failed_indexes.len() as i32 > max) && per_index_limit.is_some();
        let target = if let Some(message) = fail_job.clone() {
            Some(("FailureTarget", "PodFailurePolicy", message))
        } else if too_many_failed_indexes {
            Some((
                "FailureTarget",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".to_string(),
            ))
        } else if failures > backoff_limit {
            Some(("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit".to_string()))
        } else if deadline.is_some_and(|d| d <= now) {
            Some(("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline".to_string()))
        } else if let Some(rule) = indexed.then(|| success_policy_rule(job, &completed)).flatten() {
            Some(("SuccessCriteriaMet", "SuccessPolicy", format!("Matched rules at index {rule}")))
        } else if done && !failed_indexes.is_empty() {
            Some(("FailureTarget", "FailedIndexes", "Job has failed indexes".to_string()))
        } else if done {
            Some(("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods".to_string()))
        } else {
            None
        };
        if let Some((type_, reason, message)) = target {
            set_condition(&mut status, condition(type_, reason, &message, &now_t));
        } else if let Some(d) = deadline {
            plan.requeue = Some(d.duration_since(now));
        }
    }
    for (target, terminal) in [("FailureTarget", "Failed"), ("SuccessCriteriaMet", "Complete")] {
        let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == target && c.status == "True").cloned()
        else {
            continue;
        };
        delete_active(&mut plan);
        // Final once its pods are gone and every terminated pod is counted.
        if active.is_empty() && terminating == 0 && unc_succeeded.is_empty() && unc_failed.is_empty() {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            set_condition(&mut status, condition(terminal, &reason, &message, &now_t));
            if terminal == "Complete" {
                status.completion_time = Some(now_t.clone());
                plan.events.push((false, "Completed".into(), "Job completed".into()));
            } else {
                plan.events.push((true, reason, message));
            }
        }
        plan.status = status;
        return plan;
    }

    // backoffLimitPerIndex: each index backs off on its own failures (10 s doubling, capped).
    let mut backing_off: BTreeSet<i32> = BTreeSet::new();
    if per_index_limit.is_some() {
        for (i, n) in &plan.index_failures {
            let last =
                pods.iter().filter(|p| index_of(p) == Some(*i) && failed(p)).filter_map(|p| finished_at(p)).max();
            let (Some(last), true) = (last, *n > 0) else { continue };
            let mut delay = BACKOFF;
            for _ in 1..*n {
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            let ready_at = last + delay;
            if ready_at > now {
                backing_off.insert(*i);
                let wait = ready_at.duration_since(now);
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    // Back-off after failures: 10 s doubling per failure since the last success, capped.
    let last_success = pods.iter().filter(|p| phase(p) == "Succeeded").filter_map(|p| finished_at(p)).max();
    let recent: Vec<jiff::Timestamp> = pods
        .iter()
        .filter(|p| failed(p) || (phase(p) == "Failed"))
        .filter_map(|p| finished_at(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    if let Some(last) = recent.iter().max().filter(|_| per_index_limit.is_none()) {
        let mut delay = BACKOFF;
        for _ in 1..recent.len() {
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        let ready_at = *last + delay;
        if ready_at > now {
            plan.requeue =
                Some(plan.requeue.map_or(ready_at.duration_since(now), |r| r.min(ready_at.duration_since(now))));
            plan.status = status;
            return plan;
        }
    }

    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let replace_terminating = spec.pod_replacement_policy.as_deref() != Some("Failed");
    let busy = active.len() as i32 + if replace_terminating { 0 } else { terminating };
    if indexed {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
        let room = (parallelism - busy).max(0) as usize;
        plan.create = (0..spec.completions.unwrap_or(0))
            .filter(|i| {
                !completed.contains(i)
                    && !running.contains(i)
                    && !failed_indexes.contains(i)
                    && !backing_off.contains(i)
            })
            .take(room)
            .map(Some)
            .collect();
    } else {
        let want = match spec.completions {
            Some(c) => parallelism.min(c - succeeded),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        plan.create = vec![None; (want - busy).max(0) as usize];
    }
    plan.status = status;
    plan
}

/// A new pod of `job` (for `index` when Indexed), tracked by the job's finalizer.
pub(crate) fn new_pod(job: &Job, index: Option<i32>, index_failures: i32) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = meta.labels.take().unwrap_or_default();
    let mut annotations = meta.annotations.take().unwrap_or_default();
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone());
    labels.insert("job-name".into(), name.clone());
    if let Some(uid) = &job.metadata.uid {
        labels.insert("batch.kubernetes.io/controller-uid".into(), uid.clone());
        labels.insert("controller-uid".into(), uid.clone());
    }
    let generate_name = match index {
        Some(i) => {
            labels.insert(INDEX.into(), i.to_string());
            annotations.insert(INDEX.into(), i.to_string());
            if job.spec.as_ref().is_some_and(|s| s.backoff_limit_per_index.is_some()) {
                annotations.insert(INDEX_FAILURES.into(), index_failures.to_string());
            }
            spec.hostname = Some(format!("{name}-{i}"));
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let env = c.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                    env.push(EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: Some(i.to_string()),
                        value_from: None,
                    });
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(vec![TRACKING.into()]),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name,
                uid: job.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests;
