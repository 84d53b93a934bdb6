//! One CronJob sync as a pure function over a given `now`: which scheduled time (if any)
//! to run, which Jobs to delete (Replace, history limits), the status, and when to look
//! again (as Kubernetes' cronjob controller v2).

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// Annotation with the scheduled time a Job was created for.
pub(crate) const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are reported (and only the last one is run).
const TOO_MANY_MISSED: usize = 100;

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    /// The cron expression does not parse.
    #[error("unparseable schedule {0:?}: {1}")]
    Schedule(String, String),
    /// The time zone is not known.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
pub(crate) struct Schedule {
    kind: Kind,
    tz: jiff::tz::TimeZone,
}

enum Kind {
    /// Five fields or a descriptor such as `@hourly`.
    Cron(Box<croner::Cron>),
    /// `@every <duration>`: a constant delay, whole seconds, at least one second (as robfig/cron).
    Every(jiff::SignedDuration),
}

impl Schedule {
    /// The CronJob's schedule (standard five fields, a descriptor such as `@hourly`, or
    /// `@every <Go duration>`, as Kubernetes' robfig/cron `ParseStandard` accepts) in
    /// `spec.timeZone` (else the controller's local zone).
    pub(crate) fn of(cj: &CronJob) -> Result<Schedule, ScheduleError> {
        let spec = cj.spec.clone().unwrap_or_default();
        let text = spec.schedule.trim();
        let kind = if let Some(every) = text.strip_prefix("@every ") {
            let d = berth_api::validation::go_duration(every.trim())
                .map_err(|e| ScheduleError::Schedule(spec.schedule.clone(), e))?;
            let secs = d.as_secs().max(1);
            Kind::Every(jiff::SignedDuration::from_secs(secs))
        } else {
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Disallowed)
                .year(croner::parser::Year::Disallowed)
                .build();
            let cron = parser.parse(text).map_err(|e| ScheduleError::Schedule(spec.schedule.clone(), e.to_string()))?;
            Kind::Cron(Box::new(cron))
        };
        let tz = match spec.time_zone.as_deref() {
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?,
            None => jiff::tz::TimeZone::system(),
        };
        Ok(Schedule { kind, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub(crate) fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        match &self.kind {
            Kind::Cron(cron) => {
                let zoned = t.to_zoned(self.tz.clone());
                cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp())
            }
            // robfig/cron: the delay after `t`, dropping `t`'s fraction of a second.
            Kind::Every(d) => jiff::Timestamp::from_second(t.as_second()).ok()?.checked_add(*d).ok(),
        }
    }
}

/// What one sync decided.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The new status.
    pub(crate) status: CronJobStatus,
    /// Run the Job for this scheduled time.
    pub(crate) run: Option<jiff::Timestamp>,
    /// Jobs to delete (names): replaced active ones and history beyond the limits.
    pub(crate) delete: Vec<String>,
    /// Look again after this long.
    pub(crate) requeue: Option<jiff::SignedDuration>,
    /// Events: (warning?, reason, message).
    pub(crate) events: Vec<(bool, String, String)>,
}

fn finished(job: &Job) -> Option<(&'static str, jiff::Timestamp)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for (type_, label) in [("Complete", "Complete"), ("Failed", "Failed")] {
        if let Some(c) = conditions.iter().find(|c| c.type_ == type_ && c.status == "True") {
            let at = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .filter(|_| type_ == "Complete")
                .or(c.last_transition_time.as_ref())
                .map(|t| t.0)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            return Some((label, at));
        }
    }
    None
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub(crate) fn job_name(cj: &CronJob, scheduled: jiff::Timestamp) -> String {
    format!("{}-{}", cj.metadata.name.clone().unwrap_or_default(), scheduled.as_second() / 60)
}

/// The sync of `cj` over its `jobs` at `now`.
pub(crate) fn sync(cj: &CronJob, schedule: &Schedule, jobs: &[&Job], now: jiff::Timestamp) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let old = cj.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let mut status = old.clone();

    let active: Vec<&Job> =
        jobs.iter().copied().filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none()).collect();
    status.active = (!active.is_empty()).then(|| active.iter().map(|j| job_ref(j)).collect());
    let last_success = jobs.iter().filter_map(|j| finished(j)).filter(|(k, _)| *k == "Complete").map(|(_, t)| t).max();
    if let Some(t) = last_success
        && old.last_successful_time.as_ref().is_none_or(|o| o.0 < t)
    {
        status.last_successful_time = Some(Time(t));
    }

    // History: the oldest finished jobs beyond the limits go.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<(jiff::Timestamp, String)> = jobs
            .iter()
            .filter_map(|j| {
                finished(j).filter(|(k, _)| *k == kind).map(|(_, t)| (t, j.metadata.name.clone().unwrap_or_default()))
            })
            .collect();
        done.sort();
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        plan.delete.extend(done.into_iter().take(excess).map(|(_, n)| n));
    }

    // The most recent missed start time since the last schedule (or the creation).
    let since = old
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    let mut latest = None;
    let mut missed = 0usize;
    let mut cursor = since;
    let mut next = None;
    while let Some(t) = schedule.next_after(cursor) {
        if t > now {
            next = Some(t);
            break;
        }
        latest = Some(t);
        missed += 1;
        cursor = t;
        if missed > 100_000 {
            break;
        }
    }
    // The first time after `now` (for `@every`, counted from the last scheduled time).
    if let Some(next) = next.or_else(|| schedule.next_after(now)) {
        plan.requeue = Some(next.duration_since(now) + jiff::SignedDuration::from_millis(100));
    }
    if spec.suspend == Some(true) {
        plan.status = status;
        return plan;
    }
    let Some(scheduled) = latest else {
        plan.status = status;
        return plan;
    };
    if missed > TOO_MANY_MISSED {
        plan.events.push((
            true,
            "TooManyMissedTimes".into(),
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        ));
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled + jiff::SignedDuration::from_secs(deadline) < now
    {
        plan.events.push((
            true,
            "MissSchedule".into(),
            format!("Missed scheduled time to start a job: {}", scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ));
        plan.status = status;
        return plan;
    }
    // Already created for this time (the status may lag behind the Job).
    let name = job_name(cj, scheduled);
    if jobs.iter().any(|j| j.metadata.name.as_deref() == Some(name.as_str())) {
        status.last_schedule_time = Some(Time(scheduled));
        plan.status = status;
        return plan;
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            plan.events.push((
                false,
                "JobAlreadyActive".into(),
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            // Retried until it runs or misses its deadline.
            plan.requeue = Some(jiff::SignedDuration::from_secs(1)).min(plan.requeue);
            plan.status = status;
            return plan;
        }
        "Replace" => {
            for j in &active {
                plan.delete.push(j.metadata.name.clone().unwrap_or_default());
            }
        }
        _ => {}
    }
    plan.run = Some(scheduled);
    status.last_schedule_time = Some(Time(scheduled));
    plan.status = status;
    plan
}

/// The Job `cj` runs for `scheduled`.
pub(crate) fn new_job(cj: &CronJob, schedule: &Schedule, scheduled: jiff::Timestamp) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.take().unwrap_or_default();
    annotations
        .insert(SCHEDULED.into(), scheduled.to_zoned(schedule.tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.metadata.name.clone().unwrap_or_default(),
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests;
