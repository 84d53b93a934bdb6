//! CronJob schedules over a controlled clock.

use super::*;
use serde_json::json;

fn cronjob(spec: serde_json::Value, status: serde_json::Value) -> CronJob {
    let mut full = json!({ "schedule": "*/5 * * * *", "timeZone": "UTC", "concurrencyPolicy": "Allow", "suspend": false,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
        "jobTemplate": { "spec": { "template": { "spec": { "containers": [] } } } } });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({ "metadata": { "name": "cj", "namespace": "ns", "uid": "cj-uid",
        "creationTimestamp": "2026-01-01T00:00:00Z" }, "spec": full, "status": status }))
    .unwrap()
}

fn job(name: &str, condition: Option<(&str, &str)>) -> Job {
    let conditions = match condition {
        Some((t, at)) => json!([{ "type": t, "status": "True", "lastTransitionTime": at }]),
        None => json!([]),
    };
    serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "ns", "uid": format!("{name}-uid") },
        "spec": { "template": { "spec": { "containers": [] } } }, "status": { "conditions": conditions } }))
    .unwrap()
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn run(cj: &CronJob, jobs: &[&Job], now: &str) -> Plan {
    sync(cj, &Schedule::of(cj).unwrap(), jobs, at(now))
}

#[test]
fn runs_the_latest_missed_time_and_requeues_for_the_next() {
    let cj = cronjob(json!({}), json!({}));
    let plan = run(&cj, &[], "2026-01-01T00:03:00Z");
    assert_eq!(plan.run, None);
    assert_eq!(plan.requeue, Some(jiff::SignedDuration::from_millis(120_100)));
    let plan = run(&cj, &[], "2026-01-01T00:11:00Z");
    assert_eq!(plan.run, Some(at("2026-01-01T00:10:00Z")));
    assert_eq!(plan.status.last_schedule_time.map(|t| t.0), Some(at("2026-01-01T00:10:00Z")));
    assert_eq!(
        job_name(&cj, at("2026-01-01T00:10:00Z")),
        format!("cj-{}", at("2026-01-01T00:10:00Z").as_second() / 60)
    );
    // Already scheduled: nothing more until the next time.
    let cj = cronjob(json!({}), json!({ "lastScheduleTime": "2026-01-01T00:10:00Z" }));
    assert_eq!(run(&cj, &[], "2026-01-01T00:14:59Z").run, None);
    assert_eq!(run(&cj, &[], "2026-01-01T00:15:00Z").run, Some(at("2026-01-01T00:15:00Z")));
}

#[test]
fn time_zones_and_descriptors() {
    // 09:00 in Tokyo is 00:00 UTC.
    let cj = cronjob(json!({ "schedule": "0 9 * * *", "timeZone": "Asia/Tokyo" }), json!({}));
    assert_eq!(run(&cj, &[], "2026-01-02T00:00:30Z").run, Some(at("2026-01-02T00:00:00Z")));
    let job = new_job(&cj, &Schedule::of(&cj).unwrap(), at("2026-01-02T00:00:00Z"));
    assert_eq!(job.metadata.annotations.unwrap()[SCHEDULED], "2026-01-02T09:00:00+09:00");
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
    let hourly = cronjob(json!({ "schedule": "@hourly" }), json!({}));
    assert_eq!(run(&hourly, &[], "2026-01-01T01:00:01Z").run, Some(at("2026-01-01T01:00:00Z")));
    assert!(Schedule::of(&cronjob(json!({ "schedule": "61 * * * *" }), json!({}))).is_err());
    assert!(Schedule::of(&cronjob(json!({ "timeZone": "Mars/Olympus" }), json!({}))).is_err());
}

#[test]
fn concurrency_deadline_suspend_and_history() {
    let running = job("cj-old", None);
    let forbid =
        cronjob(json!({ "concurrencyPolicy": "Forbid" }), json!({ "lastScheduleTime": "2026-01-01T00:05:00Z" }));
    let plan = run(&forbid, &[&running], "2026-01-01T00:10:05Z");
    assert_eq!(plan.run, None);
    assert_eq!(plan.events[0].1, "JobAlreadyActive");
    let replace =
        cronjob(json!({ "concurrencyPolicy": "Replace" }), json!({ "lastScheduleTime": "2026-01-01T00:05:00Z" }));
    let plan = run(&replace, &[&running], "2026-01-01T00:10:05Z");
    assert_eq!(plan.run, Some(at("2026-01-01T00:10:00Z")));
    assert_eq!(plan.delete, ["cj-old"]);
    let allow = cronjob(json!({}), json!({ "lastScheduleTime": "2026-01-01T00:05:00Z" }));
    let plan = run(&allow, &[&running], "2026-01-01T00:10:05Z");
    assert!(plan.run.is_some() && plan.delete.is_empty());
    assert_eq!(plan.status.active.map(|a| a.len()), Some(1));
    // Too late for the starting deadline: missed.
    let strict =
        cronjob(json!({ "startingDeadlineSeconds": 10 }), json!({ "lastScheduleTime": "2026-01-01T00:05:00Z" }));
    let plan = run(&strict, &[], "2026-01-01T00:10:30Z");
    assert_eq!(plan.run, None);
    assert_eq!(plan.events[0].1, "MissSchedule");
    assert!(run(&strict, &[], "2026-01-01T00:10:09Z").run.is_some());
    let suspended = cronjob(json!({ "suspend": true }), json!({}));
    assert_eq!(run(&suspended, &[], "2026-01-01T01:00:00Z").run, None);
    // History: 4 successes, 2 failures → the oldest success and the oldest failure go.
    let done: Vec<Job> =
        (0..4).map(|i| job(&format!("ok-{i}"), Some(("Complete", &format!("2026-01-01T00:0{i}:00Z"))))).collect();
    let failed: Vec<Job> =
        (0..2).map(|i| job(&format!("bad-{i}"), Some(("Failed", &format!("2026-01-01T00:0{i}:30Z"))))).collect();
    let all: Vec<&Job> = done.iter().chain(failed.iter()).collect();
    let plan = run(&allow, &all, "2026-01-01T00:06:00Z");
    assert_eq!(plan.delete, ["ok-0", "bad-0"]);
    assert_eq!(plan.status.last_successful_time.map(|t| t.0), Some(at("2026-01-01T00:03:00Z")));
}

#[test]
fn every_runs_at_a_constant_delay_from_the_last_schedule() {
    // Created at 00:00:00: @every 90s runs at 00:01:30, then 00:03:00, ...
    let cj = cronjob(json!({ "schedule": "@every 1m30s" }), json!({}));
    let plan = run(&cj, &[], "2026-01-01T00:01:00Z");
    assert_eq!(plan.run, None);
    assert_eq!(plan.requeue, Some(jiff::SignedDuration::from_millis(30_100)));
    assert_eq!(run(&cj, &[], "2026-01-01T00:01:31Z").run, Some(at("2026-01-01T00:01:30Z")));
    // Missed several: the latest one runs.
    assert_eq!(run(&cj, &[], "2026-01-01T00:05:00Z").run, Some(at("2026-01-01T00:04:30Z")));
    let cj = cronjob(json!({ "schedule": "@every 1m30s" }), json!({ "lastScheduleTime": "2026-01-01T00:04:30Z" }));
    assert_eq!(run(&cj, &[], "2026-01-01T00:05:59Z").run, None);
    assert_eq!(run(&cj, &[], "2026-01-01T00:06:00Z").run, Some(at("2026-01-01T00:06:00Z")));
    // Below a second rounds up to one, fractions of a second are dropped (robfig/cron).
    let s = Schedule::of(&cronjob(json!({ "schedule": "@every 100ms" }), json!({}))).unwrap();
    assert_eq!(s.next_after(at("2026-01-01T00:00:00.5Z")), Some(at("2026-01-01T00:00:01Z")));
    let s = Schedule::of(&cronjob(json!({ "schedule": "@every 2.7s" }), json!({}))).unwrap();
    assert_eq!(s.next_after(at("2026-01-01T00:00:00Z")), Some(at("2026-01-01T00:00:02Z")));
    assert!(Schedule::of(&cronjob(json!({ "schedule": "@every soon" }), json!({}))).is_err());
}
