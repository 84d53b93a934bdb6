//! Jobs against the real server, the test playing the kubelet (pods' phases written
//! through the API): completions, finalizer tracking, failures with back-off, Indexed mode.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const PODS: &str = "/api/v1/namespaces/default/pods";
const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

fn create_job(s: &TestServer, name: &str, spec: Value) {
    let mut full = json!({ "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox:1.36" }] } } });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let (code, v) = s.http_json(
        "POST",
        JOBS,
        Some(&json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": name }, "spec": full })),
    );
    assert_eq!(code, 201, "{v}");
}

fn pods_of(s: &TestServer, job: &str) -> Vec<Value> {
    let path = format!("{PODS}?labelSelector=batch.kubernetes.io%2Fjob-name%3D{job}");
    let mut items = s.http_json("GET", &path, None).1["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|p| {
        p["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string()
            + p["metadata"]["name"].as_str().unwrap_or("")
    });
    items
}

fn active_pods(s: &TestServer, job: &str) -> Vec<Value> {
    pods_of(s, job)
        .into_iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect()
}

/// Plays the kubelet: the pod's container exits with `code`.
fn finish(s: &TestServer, pod: &Value, code: i32) {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let mut p = s.http_json("GET", &format!("{PODS}/{name}"), None).1;
    let t = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    p["status"] = json!({ "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{ "name": "c", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "startedAt": t, "finishedAt": t } } }] });
    let (status, v) = s.http_json("PUT", &format!("{PODS}/{name}/status"), Some(&p));
    assert_eq!(status, 200, "{v}");
}

fn job(s: &TestServer, name: &str) -> Value {
    s.http_json("GET", &format!("{JOBS}/{name}"), None).1
}

fn condition(job: &Value, type_: &str) -> Option<Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_ && c["status"] == "True").cloned()
}

#[test]
fn a_job_runs_its_completions_and_releases_its_pods() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(&s, "two", json!({ "completions": 2, "parallelism": 1 }));
    assert!(wait_until(WAIT, || active_pods(&s, "two").len() == 1), "no pod:\n{}", s.log());
    let first = active_pods(&s, "two").remove(0);
    assert_eq!(first["metadata"]["finalizers"], json!(["batch.kubernetes.io/job-tracking"]));
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert!(wait_until(WAIT, || job(&s, "two")["status"]["active"] == 1));
    finish(&s, &first, 0);
    // The next pod starts; the first is counted and released.
    assert!(
        wait_until(WAIT, || active_pods(&s, "two").len() == 1 && pods_of(&s, "two").len() == 2),
        "{:?}",
        pods_of(&s, "two")
    );
    assert!(wait_until(WAIT, || job(&s, "two")["status"]["succeeded"] == 1), "{}", job(&s, "two"));
    let released = s.http_json("GET", &format!("{PODS}/{}", first["metadata"]["name"].as_str().unwrap()), None).1;
    assert!(
        released["metadata"].get("finalizers").is_none_or(|f| f.as_array().is_some_and(Vec::is_empty)),
        "{released}"
    );
    finish(&s, &active_pods(&s, "two").remove(0), 0);
    assert!(wait_until(WAIT, || condition(&job(&s, "two"), "Complete").is_some()), "{}", job(&s, "two"));
    let j = job(&s, "two");
    assert_eq!(j["status"]["succeeded"], 2);
    assert!(j["status"]["completionTime"].is_string());
    assert!(condition(&j, "SuccessCriteriaMet").is_some());
    s.kubectl_ok(&["wait", "--for=condition=complete", "job/two", "--timeout=30s"]);
    let out = s.kubectl_ok(&["get", "job", "two"]);
    assert!(out.contains("2/2"), "{out}");
    let described = s.kubectl_ok(&["describe", "job", "two"]);
    assert!(described.contains("SuccessfulCreate") && described.contains("Completed"), "{described}");
    // Deleting the job takes its pods (garbage collector).
    s.kubectl_ok(&["delete", "job", "two"]);
    assert!(wait_until(WAIT, || pods_of(&s, "two").is_empty()), "{:?}", pods_of(&s, "two"));
}

#[test]
fn failures_back_off_and_exceed_the_limit() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(&s, "flaky", json!({ "backoffLimit": 1 }));
    assert!(wait_until(WAIT, || active_pods(&s, "flaky").len() == 1), "no pod:\n{}", s.log());
    finish(&s, &active_pods(&s, "flaky").remove(0), 1);
    assert!(wait_until(WAIT, || job(&s, "flaky")["status"]["failed"] == 1), "{}", job(&s, "flaky"));
    // Back-off: 10 s before the replacement (a slow machine only makes it later).
    std::thread::sleep(Duration::from_secs(4));
    assert!(active_pods(&s, "flaky").is_empty(), "replaced during the back-off");
    assert!(wait_until(WAIT, || active_pods(&s, "flaky").len() == 1), "never replaced");
    finish(&s, &active_pods(&s, "flaky").remove(0), 1);
    assert!(wait_until(WAIT, || condition(&job(&s, "flaky"), "Failed").is_some()), "{}", job(&s, "flaky"));
    let failed = condition(&job(&s, "flaky"), "Failed").unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert!(condition(&job(&s, "flaky"), "FailureTarget").is_some());
    assert_eq!(job(&s, "flaky")["status"]["failed"], 2);
    std::thread::sleep(Duration::from_secs(1));
    assert!(active_pods(&s, "flaky").is_empty(), "no pod after the job failed");
}

#[test]
fn indexed_jobs_and_pod_failure_policy() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(&s, "idx", json!({ "completions": 3, "parallelism": 3, "completionMode": "Indexed" }));
    assert!(wait_until(WAIT, || active_pods(&s, "idx").len() == 3), "{:?}", pods_of(&s, "idx"));
    let mut indexes: Vec<String> = active_pods(&s, "idx")
        .iter()
        .map(|p| {
            let i =
                p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap().to_string();
            assert_eq!(p["spec"]["hostname"], format!("idx-{i}"));
            let env = &p["spec"]["containers"][0]["env"];
            assert!(
                env.as_array().unwrap().iter().any(|e| e["name"] == "JOB_COMPLETION_INDEX" && e["value"] == i),
                "{env}"
            );
            i
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    for p in active_pods(&s, "idx") {
        finish(&s, &p, 0);
    }
    assert!(wait_until(WAIT, || condition(&job(&s, "idx"), "Complete").is_some()), "{}", job(&s, "idx"));
    assert_eq!(job(&s, "idx")["status"]["completedIndexes"], "0-2");

    create_job(
        &s,
        "policy",
        json!({ "backoffLimit": 5, "podFailurePolicy": { "rules": [
            { "action": "FailJob", "onExitCodes": { "operator": "In", "values": [42] } } ] } }),
    );
    assert!(wait_until(WAIT, || active_pods(&s, "policy").len() == 1));
    finish(&s, &active_pods(&s, "policy").remove(0), 42);
    assert!(wait_until(WAIT, || condition(&job(&s, "policy"), "Failed").is_some()), "{}", job(&s, "policy"));
    assert_eq!(condition(&job(&s, "policy"), "Failed").unwrap()["reason"], "PodFailurePolicy");

    // Suspended: no pods.
    create_job(&s, "later", json!({ "suspend": true }));
    assert!(wait_until(WAIT, || condition(&job(&s, "later"), "Suspended").is_some()));
    assert!(pods_of(&s, "later").is_empty());
    s.kubectl_ok(&["patch", "job", "later", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#]);
    assert!(wait_until(WAIT, || active_pods(&s, "later").len() == 1), "not resumed: {}", job(&s, "later"));
}

#[test]
fn an_evicted_pod_is_a_disruption_that_a_pod_failure_policy_can_ignore() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    // Any counted failure would fail this Job at once.
    create_job(
        &s,
        "evicted",
        json!({ "backoffLimit": 0, "podFailurePolicy": { "rules": [
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget" }] } ] } }),
    );
    assert!(wait_until(WAIT, || active_pods(&s, "evicted").len() == 1), "no pod:\n{}", s.log());
    let name = active_pods(&s, "evicted")[0]["metadata"]["name"].as_str().unwrap().to_string();
    let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": name } });
    let (code, v) = s.http_json("POST", &format!("{PODS}/{name}/eviction"), Some(&eviction));
    assert_eq!(code, 201, "{v}");
    // The eviction marked the pod before deleting it; the Job's tracking finalizer holds it
    // until the Job controller has seen it.
    let (code, evicted) = s.http_json("GET", &format!("{PODS}/{name}"), None);
    if code == 200 {
        let c = evicted["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget");
        assert_eq!(
            c.map(|c| (c["status"].clone(), c["reason"].clone())),
            Some((json!("True"), json!("EvictionByEvictionAPI"))),
            "{evicted}"
        );
    }
    // Ignored: a replacement pod, no failure counted, the Job goes on.
    assert!(
        wait_until(WAIT, || active_pods(&s, "evicted").iter().any(|p| p["metadata"]["name"] != name.as_str())),
        "no replacement: {}",
        job(&s, "evicted")
    );
    let j = job(&s, "evicted");
    assert_eq!(j["status"]["failed"].as_i64().unwrap_or(0), 0, "{j}");
    assert!(condition(&j, "Failed").is_none(), "{j}");
    assert!(wait_until(WAIT, || s.http_json("GET", &format!("{PODS}/{name}"), None).0 == 404));
}

fn index_of(pod: &Value) -> &str {
    pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap()
}

fn active_index(s: &TestServer, job: &str, index: &str) -> Option<Value> {
    active_pods(s, job).into_iter().find(|p| index_of(p) == index)
}

#[test]
fn backoff_limit_per_index_and_failed_indexes() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(
        &s,
        "perindex",
        json!({ "completions": 2, "parallelism": 2, "completionMode": "Indexed",
            "backoffLimitPerIndex": 1, "maxFailedIndexes": 1 }),
    );
    assert!(wait_until(WAIT, || active_pods(&s, "perindex").len() == 2), "{:?}", pods_of(&s, "perindex"));
    let first = active_index(&s, "perindex", "0").unwrap();
    assert_eq!(first["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "0");
    finish(&s, &first, 1);
    // Index 0 is retried (after its back-off) by a pod that knows one failure came before.
    assert!(wait_until(WAIT, || active_index(&s, "perindex", "0").is_some()), "{}", job(&s, "perindex"));
    let retry = active_index(&s, "perindex", "0").unwrap();
    assert_eq!(retry["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "1");
    assert_eq!(job(&s, "perindex")["status"]["failedIndexes"], "");
    finish(&s, &retry, 1);
    // Its second failure is over the limit: the index fails and is not retried; the Job goes on.
    assert!(wait_until(WAIT, || job(&s, "perindex")["status"]["failedIndexes"] == "0"), "{}", job(&s, "perindex"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(active_index(&s, "perindex", "0").is_none(), "a failed index is not retried");
    assert!(condition(&job(&s, "perindex"), "FailureTarget").is_none(), "{}", job(&s, "perindex"));
    // Once every index is finished, the failed one fails the Job.
    finish(&s, &active_index(&s, "perindex", "1").unwrap(), 0);
    assert!(wait_until(WAIT, || condition(&job(&s, "perindex"), "Failed").is_some()), "{}", job(&s, "perindex"));
    let j = job(&s, "perindex");
    assert_eq!(condition(&j, "Failed").unwrap()["reason"], "FailedIndexes");
    assert_eq!(condition(&j, "Failed").unwrap()["message"], "Job has failed indexes");
    assert_eq!((j["status"]["completedIndexes"].as_str(), j["status"]["failed"].as_i64()), (Some("1"), Some(2)));

    // maxFailedIndexes: one failed index over it fails the Job at once, its other pods stop.
    create_job(
        &s,
        "strict",
        json!({ "completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "backoffLimitPerIndex": 0, "maxFailedIndexes": 0 }),
    );
    assert!(wait_until(WAIT, || active_pods(&s, "strict").len() == 3), "{:?}", pods_of(&s, "strict"));
    finish(&s, &active_index(&s, "strict", "2").unwrap(), 1);
    assert!(wait_until(WAIT, || condition(&job(&s, "strict"), "Failed").is_some()), "{}", job(&s, "strict"));
    let failed = condition(&job(&s, "strict"), "Failed").unwrap();
    assert_eq!(failed["reason"], "MaxFailedIndexesExceeded");
    assert!(wait_until(WAIT, || active_pods(&s, "strict").is_empty()), "{:?}", active_pods(&s, "strict"));
    // Bad input: a negative backoffLimitPerIndex is refused.
    let (code, v) = s.http_json(
        "POST",
        JOBS,
        Some(&json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "bad" }, "spec": {
            "completions": 1, "completionMode": "Indexed", "backoffLimitPerIndex": -1,
            "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox:1.36" }] } } } })),
    );
    assert_eq!(code, 422, "{v}");
}

#[test]
fn success_policy_completes_early() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(
        &s,
        "leader",
        json!({ "completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "successPolicy": { "rules": [{ "succeededIndexes": "0" }] } }),
    );
    assert!(wait_until(WAIT, || active_pods(&s, "leader").len() == 3), "{:?}", pods_of(&s, "leader"));
    finish(&s, &active_index(&s, "leader", "1").unwrap(), 0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(condition(&job(&s, "leader"), "SuccessCriteriaMet").is_none(), "index 1 is not in the policy");
    finish(&s, &active_index(&s, "leader", "0").unwrap(), 0);
    // SuccessCriteriaMet, the remaining pod is terminated, then Complete with the same reason.
    assert!(wait_until(WAIT, || condition(&job(&s, "leader"), "Complete").is_some()), "{}", job(&s, "leader"));
    let j = job(&s, "leader");
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&j, type_).unwrap();
        assert_eq!(
            (c["reason"].as_str(), c["message"].as_str()),
            (Some("SuccessPolicy"), Some("Matched rules at index 0"))
        );
    }
    assert_eq!(j["status"]["completedIndexes"], "0-1");
    assert!(wait_until(WAIT, || active_pods(&s, "leader").is_empty()), "{:?}", active_pods(&s, "leader"));
    s.kubectl_ok(&["wait", "--for=condition=complete", "job/leader", "--timeout=30s"]);
}

#[test]
fn pod_replacement_policy_failed_waits_for_terminating_pods() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    // The pod runs on a node whose kubelet the test plays, slowly: the pod stays terminating
    // until that kubelet has stopped it. (A deleted pod that was never scheduled would not
    // wait: the pod GC fails it.)
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "worker" } });
    let (code, v) = s.http_json("POST", "/api/v1/nodes", Some(&node));
    assert_eq!(code, 201, "{v}");
    create_job(&s, "careful", json!({ "podReplacementPolicy": "Failed" }));
    assert!(wait_until(WAIT, || active_pods(&s, "careful").len() == 1), "no pod:\n{}", s.log());
    let name = active_pods(&s, "careful").remove(0)["metadata"]["name"].as_str().unwrap().to_string();
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name },
        "target": { "apiVersion": "v1", "kind": "Node", "name": "worker" } });
    let (code, v) = s.http_json("POST", &format!("{PODS}/{name}/binding"), Some(&binding));
    assert_eq!(code, 201, "{v}");
    // A finalizer of the test's own holds the deleted pod after the Job releases its own
    // (the API server removes a pod left without finalizers, kubelet or not).
    s.kubectl_ok(&[
        "patch",
        "pod",
        &name,
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/hold"}]"#,
    ]);
    s.kubectl_ok(&["delete", "pod", &name, "--wait=false"]);
    assert!(wait_until(WAIT, || job(&s, "careful")["status"]["terminating"] == 1), "{}", job(&s, "careful"));
    // Still terminating: no replacement (well past the 10 s back-off).
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(pods_of(&s, "careful").len(), 1, "{:?}", pods_of(&s, "careful"));
    let p = s.http_json("GET", &format!("{PODS}/{name}"), None).1;
    assert!(p["metadata"]["deletionTimestamp"].is_string() && p["status"]["phase"] == "Pending", "{p}");
    // Not failed yet (only a Failed phase counts under this policy): the Job keeps its
    // tracking finalizer and counts no failure.
    let finalizers = p["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    assert!(finalizers.contains(&json!("batch.kubernetes.io/job-tracking")), "{p}");
    assert_eq!(job(&s, "careful")["status"]["failed"].as_i64().unwrap_or(0), 0, "{}", job(&s, "careful"));
    // The kubelet has stopped the pod (Failed, its container killed): now it is counted,
    // released and replaced; the test's finalizer still holds it.
    finish(&s, &p, 137);
    assert!(wait_until(WAIT, || {
        let p = s.http_json("GET", &format!("{PODS}/{name}"), None).1;
        p["metadata"]["finalizers"] == json!(["example.com/hold"])
    }));
    assert!(
        wait_until(WAIT, || active_pods(&s, "careful").len() == 1
            && active_pods(&s, "careful")[0]["metadata"]["name"] != name.as_str()),
        "{:?}",
        pods_of(&s, "careful")
    );
    assert!(wait_until(WAIT, || job(&s, "careful")["status"]["terminating"] == 0), "{}", job(&s, "careful"));
    // Its last finalizer gone, the pod still waits for its kubelet's final delete (its
    // grace period is not over), as in Kubernetes; then it goes.
    s.kubectl_ok(&["patch", "pod", &name, "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    let (code, p) = s.http_json("GET", &format!("{PODS}/{name}"), None);
    assert_eq!(code, 200, "{p}");
    let (code, v) = s.http_json("DELETE", &format!("{PODS}/{name}?gracePeriodSeconds=0"), None);
    assert_eq!(code, 200, "{v}");
    assert!(wait_until(WAIT, || s.http_json("GET", &format!("{PODS}/{name}"), None).0 == 404));
    assert_eq!(job(&s, "careful")["status"]["failed"], 1);
}

#[test]
fn finished_jobs_go_after_their_ttl() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    create_job(&s, "brief", json!({ "ttlSecondsAfterFinished": 2 }));
    assert!(wait_until(WAIT, || active_pods(&s, "brief").len() == 1));
    finish(&s, &active_pods(&s, "brief").remove(0), 0);
    assert!(wait_until(WAIT, || condition(&job(&s, "brief"), "Complete").is_some()));
    assert!(
        wait_until(WAIT, || s.http_json("GET", &format!("{JOBS}/brief"), None).0 == 404),
        "not deleted:\n{}",
        s.log()
    );
    assert!(wait_until(WAIT, || pods_of(&s, "brief").is_empty()), "{:?}", pods_of(&s, "brief"));
}

#[test]
fn a_cronjob_runs_jobs_on_its_schedule() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: batch/v1
kind: CronJob
metadata: { name: tick }
spec:
  schedule: "* * * * *"
  timeZone: Etc/UTC
  jobTemplate:
    metadata: { labels: { app: tick } }
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{ name: c, image: busybox:1.36 }]
"#,
        ),
    );
    let cronjobs = "/apis/batch/v1/namespaces/default/cronjobs/tick";
    let tick_jobs = || -> Vec<Value> {
        s.http_json("GET", &format!("{JOBS}?labelSelector=app%3Dtick"), None).1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // The next minute starts a Job named after its scheduled minute.
    assert!(wait_until(Duration::from_secs(90), || !tick_jobs().is_empty()), "no job:\n{}", s.log());
    let j = tick_jobs().remove(0);
    let name = j["metadata"]["name"].as_str().unwrap().to_string();
    let scheduled =
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap().to_string();
    let minutes = scheduled.parse::<jiff::Timestamp>().unwrap().as_second() / 60;
    assert_eq!(name, format!("tick-{minutes}"));
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert!(
        wait_until(WAIT, || {
            let cj = s.http_json("GET", cronjobs, None).1;
            cj["status"]["lastScheduleTime"].is_string() && cj["status"]["active"][0]["name"] == name
        }),
        "{}",
        s.http_json("GET", cronjobs, None).1
    );
    // Its pod succeeds: the Job completes and the CronJob records the success.
    assert!(wait_until(WAIT, || active_pods(&s, &name).len() == 1));
    finish(&s, &active_pods(&s, &name).remove(0), 0);
    assert!(
        wait_until(WAIT, || s.http_json("GET", cronjobs, None).1["status"]["lastSuccessfulTime"].is_string()),
        "{}",
        s.http_json("GET", cronjobs, None).1
    );
    let out = s.kubectl_ok(&["get", "cronjob", "tick"]);
    assert!(out.contains("* * * * *"), "{out}");
}

#[test]
fn cronjob_every_descriptor_and_tz_in_schedule() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    // `@every <duration>` is accepted (as Kubernetes' cron parser does) and runs its Jobs
    // one period after the CronJob was created.
    s.kubectl_ok(&["create", "cronjob", "every", "--image=busybox:1.36", "--schedule=@every 1m"]);
    let cj = s.http_json("GET", "/apis/batch/v1/namespaces/default/cronjobs/every", None).1;
    let created = cj["metadata"]["creationTimestamp"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let jobs = || -> Vec<Value> {
        s.http_json("GET", JOBS, None).1["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == "every")
            .cloned()
            .collect()
    };
    assert!(wait_until(Duration::from_secs(150), || !jobs().is_empty()), "no job:\n{}", s.log());
    let scheduled = jobs()[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap();
    assert_eq!(scheduled.as_second(), created.as_second() + 60, "one period after creation");

    // Bad input, with Kubernetes' messages.
    for (schedule, message) in [
        ("@every 5", r#"failed to parse duration @every 5: time: missing unit in duration "5""#),
        ("@every often", r#"failed to parse duration @every often: time: invalid duration "often""#),
        ("TZ=UTC 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        ("CRON_TZ=Europe/Paris 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ] {
        let err = s.kubectl_err(
            &["create", "cronjob", "bad", "--image=busybox:1.36", &format!("--schedule={schedule}")],
            None,
        );
        assert!(err.contains("spec.schedule") && err.contains(message), "{schedule}: {err}");
    }
}
