//! Job sync decisions.

use super::*;
use serde_json::json;

fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut full = json!({ "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
        "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "i" }] } } });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(
        json!({ "metadata": { "name": "j", "namespace": "ns", "uid": "job-uid" }, "spec": full, "status": status }),
    )
    .unwrap()
}

fn pod(name: &str, phase: &str, finalizer: bool, finished: &str) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name, "uid": format!("{name}-uid"), "namespace": "ns",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": if finalizer { json!([TRACKING]) } else { json!([]) } },
        "spec": { "containers": [] },
        "status": { "phase": phase, "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": if finished.is_empty() { json!({}) } else { json!({ "terminated": { "exitCode": if phase == "Failed" { 3 } else { 0 }, "finishedAt": finished } }) } }] } }))
    .unwrap()
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn types(status: &JobStatus) -> Vec<String> {
    status.conditions.iter().flatten().filter(|c| c.status == "True").map(|c| c.type_.clone()).collect()
}

#[test]
fn a_new_job_creates_up_to_parallelism() {
    let j = job(json!({ "parallelism": 3, "completions": 5 }), json!({}));
    let plan = sync(&j, &[], at("2026-01-01T00:00:00Z"));
    assert_eq!(plan.create, vec![None, None, None]);
    assert!(plan.status.start_time.is_some());
    let j = job(json!({ "parallelism": 3, "completions": 2 }), json!({}));
    assert_eq!(sync(&j, &[], at("2026-01-01T00:00:00Z")).create.len(), 2);
    let j = job(
        json!({ "parallelism": 2, "completions": 4, "completionMode": "Indexed" }),
        json!({ "completedIndexes": "0" }),
    );
    assert_eq!(sync(&j, &[], at("2026-01-01T00:00:00Z")).create, vec![Some(1), Some(2)]);
}

#[test]
fn tracking_records_then_releases_then_counts() {
    let j = job(json!({ "completions": 1 }), json!({}));
    let done = pod("a", "Succeeded", true, "2026-01-01T00:00:05Z");
    // 1. recorded as uncounted, finalizer kept until that is written.
    let plan = sync(&j, &[&done], at("2026-01-01T00:00:06Z"));
    assert_eq!(plan.status.uncounted_terminated_pods.as_ref().unwrap().succeeded, Some(vec!["a-uid".to_string()]));
    assert!(plan.remove_finalizers.is_empty());
    // 2. with the status written, the finalizer goes.
    let j2 = job(json!({ "completions": 1 }), serde_json::to_value(&plan.status).unwrap());
    let plan = sync(&j2, &[&done], at("2026-01-01T00:00:06Z"));
    assert_eq!(plan.remove_finalizers, ["a"]);
    // 3. released: counted, the job completes.
    let released = pod("a", "Succeeded", false, "2026-01-01T00:00:05Z");
    let plan = sync(&j2, &[&released], at("2026-01-01T00:00:07Z"));
    assert_eq!(plan.status.succeeded, Some(1));
    assert_eq!(types(&plan.status), ["SuccessCriteriaMet", "Complete"]);
    assert!(plan.status.completion_time.is_some());
    assert!(plan.create.is_empty());
}

#[test]
fn failures_back_off_then_exceed_the_limit() {
    let j = job(json!({ "backoffLimit": 2 }), json!({ "failed": 1, "startTime": "2026-01-01T00:00:00Z" }));
    let failed = pod("f1", "Failed", false, "2026-01-01T00:00:10Z");
    // 10 s after the failure, no new pod yet.
    let plan = sync(&j, &[&failed], at("2026-01-01T00:00:15Z"));
    assert!(plan.create.is_empty());
    assert_eq!(plan.requeue, Some(jiff::SignedDuration::from_secs(5)));
    let plan = sync(&j, &[&failed], at("2026-01-01T00:00:21Z"));
    assert_eq!(plan.create.len(), 1);
    // Two failures: 20 s.
    let failed2 = pod("f2", "Failed", false, "2026-01-01T00:00:30Z");
    let j = job(json!({ "backoffLimit": 2 }), json!({ "failed": 2, "startTime": "2026-01-01T00:00:00Z" }));
    assert_eq!(
        sync(&j, &[&failed, &failed2], at("2026-01-01T00:00:40Z")).requeue,
        Some(jiff::SignedDuration::from_secs(10))
    );
    // Three failures: over the limit.
    let j = job(json!({ "backoffLimit": 2 }), json!({ "failed": 3, "startTime": "2026-01-01T00:00:00Z" }));
    let plan = sync(&j, &[], at("2026-01-01T00:01:00Z"));
    assert_eq!(types(&plan.status), ["FailureTarget", "Failed"]);
    assert_eq!(plan.status.conditions.as_ref().unwrap()[1].reason.as_deref(), Some("BackoffLimitExceeded"));
}

#[test]
fn deadline_policy_and_suspend() {
    let running = pod("r", "Running", true, "");
    let j = job(json!({ "activeDeadlineSeconds": 30 }), json!({ "startTime": "2026-01-01T00:00:00Z" }));
    assert_eq!(sync(&j, &[&running], at("2026-01-01T00:00:10Z")).requeue, Some(jiff::SignedDuration::from_secs(20)));
    let plan = sync(&j, &[&running], at("2026-01-01T00:00:31Z"));
    assert_eq!(types(&plan.status), ["FailureTarget"], "waits for its pods");
    assert_eq!(plan.delete, ["r"]);
    let policy = json!({ "podFailurePolicy": { "rules": [
        { "action": "Ignore", "onExitCodes": { "operator": "In", "values": [1] } },
        { "action": "FailJob", "onExitCodes": { "containerName": "c", "operator": "In", "values": [3] } } ] } });
    let j = job(policy, json!({}));
    let failed = pod("f", "Failed", true, "2026-01-01T00:00:10Z");
    let plan = sync(&j, &[&failed], at("2026-01-01T00:00:11Z"));
    let target = plan.status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "FailureTarget").unwrap().clone();
    assert_eq!(target.reason.as_deref(), Some("PodFailurePolicy"));
    assert!(target.message.unwrap().contains("exit code 3 matching FailJob rule at index 1"));
    let j = job(json!({ "suspend": true, "parallelism": 2, "completions": 2 }), json!({}));
    let plan = sync(&j, &[&running], at("2026-01-01T00:00:00Z"));
    assert_eq!(plan.delete, ["r"]);
    assert!(plan.create.is_empty());
    assert_eq!(types(&plan.status), ["Suspended"]);
}

#[test]
fn indexes_and_new_pods() {
    let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
    assert_eq!(format_indexes(&set), "0-2,4,6-7");
    assert_eq!(parse_indexes("0-2,4,6-7"), set);
    let j = job(json!({ "completionMode": "Indexed", "completions": 3, "parallelism": 3 }), json!({}));
    let p = new_pod(&j, Some(2));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("j-2-"));
    assert_eq!(p.metadata.annotations.unwrap().get(INDEX).map(String::as_str), Some("2"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("j-2"));
    let env = spec.containers[0].env.clone().unwrap();
    assert_eq!((env[0].name.as_str(), env[0].value.as_deref()), ("JOB_COMPLETION_INDEX", Some("2")));
    assert_eq!(p.metadata.finalizers, Some(vec![TRACKING.to_string()]));
    assert_eq!(p.metadata.owner_references.unwrap()[0].uid, "job-uid");
}
