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
    let p = new_pod(&j, Some(2), 0);
    assert_eq!(p.metadata.generate_name.as_deref(), Some("j-2-"));
    assert_eq!(p.metadata.annotations.unwrap().get(INDEX).map(String::as_str), Some("2"));
    let spec = p.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("j-2"));
    let env = spec.containers[0].env.clone().unwrap();
    assert_eq!((env[0].name.as_str(), env[0].value.as_deref()), ("JOB_COMPLETION_INDEX", Some("2")));
    assert_eq!(p.metadata.finalizers, Some(vec![TRACKING.to_string()]));
    assert_eq!(p.metadata.owner_references.unwrap()[0].uid, "job-uid");
}

fn indexed_pod(name: &str, index: i32, phase: &str, failures_before: i32, finished: &str) -> Pod {
    let mut p = pod(name, phase, true, finished);
    let annotations = p.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(INDEX.into(), index.to_string());
    annotations.insert(INDEX_FAILURES.into(), failures_before.to_string());
    p
}

fn condition_of(status: &JobStatus, type_: &str) -> Option<(String, String)> {
    let c = status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")?;
    Some((c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

#[test]
fn backoff_limit_per_index_fails_indexes_and_then_the_job() {
    let spec = json!({ "completionMode": "Indexed", "completions": 3, "parallelism": 3,
        "backoffLimitPerIndex": 1, "backoffLimit": i32::MAX });
    let j = job(spec.clone(), json!({}));
    // Index 0 failed once: it is retried after its back-off, its pod says one failure before.
    let f0 = indexed_pod("f0", 0, "Failed", 0, "2026-01-01T00:00:10Z");
    let r1 = indexed_pod("r1", 1, "Running", 0, "");
    let r2 = indexed_pod("r2", 2, "Running", 0, "");
    let plan = sync(&j, &[&f0, &r1, &r2], at("2026-01-01T00:00:11Z"));
    assert_eq!(plan.status.failed_indexes.as_deref(), Some(""));
    assert!(plan.create.is_empty(), "index 0 backs off: {:?}", plan.create);
    assert_eq!(plan.requeue, Some(jiff::SignedDuration::from_secs(9)));
    let plan = sync(&j, &[&f0, &r1, &r2], at("2026-01-01T00:00:21Z"));
    assert_eq!(plan.create, [Some(0)]);
    assert_eq!(plan.index_failures.get(&0), Some(&1));
    assert_eq!(new_pod(&j, Some(0), 1).metadata.annotations.unwrap()[INDEX_FAILURES], "1");
    // Its second failure is over the limit: the index fails, is not retried, the others go on.
    let f0b = indexed_pod("f0b", 0, "Failed", 1, "2026-01-01T00:00:30Z");
    let plan = sync(&j, &[&f0, &f0b, &r1, &r2], at("2026-01-01T00:01:00Z"));
    assert_eq!(plan.status.failed_indexes.as_deref(), Some("0"));
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert!(types(&plan.status).is_empty(), "{:?}", plan.status.conditions);
    // When every index is finished and one failed, the Job fails with FailedIndexes.
    let s1 = indexed_pod("s1", 1, "Succeeded", 0, "2026-01-01T00:01:00Z");
    let s2 = indexed_pod("s2", 2, "Succeeded", 0, "2026-01-01T00:01:00Z");
    let j = job(spec.clone(), json!({ "failedIndexes": "0", "completedIndexes": "" }));
    let plan = sync(&j, &[&s1, &s2], at("2026-01-01T00:01:01Z"));
    assert_eq!(plan.status.completed_indexes.as_deref(), Some("1-2"));
    assert_eq!(condition_of(&plan.status, "FailureTarget").unwrap().0, "FailedIndexes");
    assert!(condition_of(&plan.status, "Complete").is_none());
    // maxFailedIndexes: one failed index more than allowed fails the Job at once.
    let mut spec = spec;
    spec["maxFailedIndexes"] = json!(0);
    let j = job(spec, json!({}));
    let plan = sync(&j, &[&f0, &f0b, &r1, &r2], at("2026-01-01T00:01:00Z"));
    let (reason, message) = condition_of(&plan.status, "FailureTarget").unwrap();
    assert_eq!(reason, "MaxFailedIndexesExceeded");
    assert_eq!(message, "Job has exceeded the specified maximal number of failed indexes");
    assert_eq!(plan.delete, ["r1", "r2"]);
}

#[test]
fn a_fail_index_rule_fails_the_index_at_once() {
    let j = job(
        json!({ "completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimitPerIndex": 5,
            "podFailurePolicy": { "rules": [{ "action": "FailIndex", "onExitCodes": { "operator": "In", "values": [3] } }] } }),
        json!({}),
    );
    let f1 = indexed_pod("f1", 1, "Failed", 0, "2026-01-01T00:00:10Z");
    let plan = sync(&j, &[&f1], at("2026-01-01T00:00:11Z"));
    assert_eq!(plan.status.failed_indexes.as_deref(), Some("1"));
    assert_eq!(plan.create, [Some(0)]);
}

#[test]
fn success_policy_meets_criteria_then_completes() {
    let spec = json!({ "completionMode": "Indexed", "completions": 5, "parallelism": 5,
        "successPolicy": { "rules": [{ "succeededIndexes": "0,2-3" }, { "succeededCount": 2 }] } });
    let j = job(spec.clone(), json!({}));
    let s0 = indexed_pod("s0", 0, "Succeeded", 0, "2026-01-01T00:00:10Z");
    let r1 = indexed_pod("r1", 1, "Running", 0, "");
    let plan = sync(&j, &[&s0, &r1], at("2026-01-01T00:00:11Z"));
    assert!(condition_of(&plan.status, "SuccessCriteriaMet").is_none(), "one success is not enough");
    let s4 = indexed_pod("s4", 4, "Succeeded", 0, "2026-01-01T00:00:10Z");
    let plan = sync(&j, &[&s0, &s4, &r1], at("2026-01-01T00:00:11Z"));
    // The second rule (two successes) matches; the running pods are terminated.
    assert_eq!(
        condition_of(&plan.status, "SuccessCriteriaMet"),
        Some(("SuccessPolicy".into(), "Matched rules at index 1".into()))
    );
    assert_eq!(plan.delete, ["r1"]);
    assert!(condition_of(&plan.status, "Complete").is_none(), "Complete waits for the pods");
    // With the pods gone and counted, Complete carries the same reason.
    let done = job(spec, serde_json::to_value(&plan.status).unwrap());
    let s0c = indexed_pod("s0", 0, "Succeeded", 0, "2026-01-01T00:00:10Z");
    let mut s0c = s0c;
    s0c.metadata.finalizers = Some(vec![]);
    let mut s4c = s4.clone();
    s4c.metadata.finalizers = Some(vec![]);
    let plan = sync(&done, &[&s0c, &s4c], at("2026-01-01T00:00:12Z"));
    assert_eq!(condition_of(&plan.status, "Complete").map(|c| c.0).as_deref(), Some("SuccessPolicy"));
    // succeededIndexes alone needs all of them.
    let set: BTreeSet<i32> = [0, 2].into();
    let j = job(
        json!({ "completionMode": "Indexed", "completions": 5,
        "successPolicy": { "rules": [{ "succeededIndexes": "0,2-3" }] } }),
        json!({}),
    );
    assert_eq!(success_policy_rule(&j, &set), None);
    assert_eq!(success_policy_rule(&j, &[0, 2, 3].into()), Some(0));
}

#[test]
fn failed_replacement_policy_waits_for_terminating_pods() {
    let mut terminating = pod("t", "Running", true, "");
    terminating.metadata.deletion_timestamp = Some(Time(at("2026-01-01T00:00:05Z")));
    let j = job(json!({ "podReplacementPolicy": "Failed", "backoffLimit": 6 }), json!({}));
    let plan = sync(&j, &[&terminating], at("2026-01-01T00:00:06Z"));
    assert_eq!(plan.status.terminating, Some(1));
    assert!(plan.create.is_empty(), "Failed: no replacement while the pod terminates");
    let j = job(json!({ "podReplacementPolicy": "TerminatingOrFailed" }), json!({}));
    let plan = sync(&j, &[&terminating], at("2026-01-01T00:00:06Z"));
    assert_eq!(plan.status.terminating, Some(1));
}

#[test]
fn a_terminating_pod_fails_at_once_only_without_a_failed_replacement_policy() {
    let mut terminating = pod("t", "Running", true, "");
    terminating.metadata.deletion_timestamp = Some(Time(at("2026-01-01T00:00:05Z")));
    let now = at("2026-01-01T00:00:06Z");
    // TerminatingOrFailed: a deleted pod counts as failed at once (an orphan may never reach Failed).
    let j = job(json!({ "podReplacementPolicy": "TerminatingOrFailed" }), json!({}));
    let plan = sync(&j, &[&terminating], now);
    assert_eq!(plan.status.uncounted_terminated_pods.unwrap().failed, Some(vec!["t-uid".to_string()]));
    // Failed, or a podFailurePolicy: not until its kubelet fails it; the tracking finalizer stays.
    for spec in [
        json!({ "podReplacementPolicy": "Failed" }),
        json!({ "podReplacementPolicy": "Failed", "podFailurePolicy": { "rules": [
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget" }] }] } }),
    ] {
        let j = job(spec.clone(), json!({}));
        let plan = sync(&j, &[&terminating], now);
        assert_eq!(plan.status.uncounted_terminated_pods.unwrap().failed, Some(vec![]), "{spec}");
        assert!(plan.remove_finalizers.is_empty(), "{spec}");
        let mut failed = terminating.clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let plan = sync(&j, &[&failed], now);
        assert_eq!(plan.status.uncounted_terminated_pods.unwrap().failed, Some(vec!["t-uid".to_string()]), "{spec}");
    }
}
