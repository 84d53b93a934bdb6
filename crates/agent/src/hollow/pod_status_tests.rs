//! Unit tests of QoS classes and the statuses hollow nodes write.

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

fn spec(containers: serde_json::Value) -> PodSpec {
    serde_json::from_value(json!({ "containers": containers })).unwrap()
}

fn c(requests: serde_json::Value, limits: serde_json::Value) -> serde_json::Value {
    json!({ "name": "c", "image": "busybox", "resources": { "requests": requests, "limits": limits } })
}

#[test]
fn qos_classes() {
    let cases = [
        (json!([{ "name": "c", "image": "i" }]), "BestEffort"),
        (json!([c(json!({}), json!({}))]), "BestEffort"),
        // Only cpu and memory count.
        (json!([c(json!({ "nvidia.com/gpu": "1" }), json!({ "nvidia.com/gpu": "1" }))]), "BestEffort"),
        (json!([c(json!({ "cpu": "0" }), json!({}))]), "BestEffort"),
        (json!([c(json!({ "cpu": "100m" }), json!({}))]), "Burstable"),
        (
            json!([c(json!({ "cpu": "100m", "memory": "1Gi" }), json!({ "cpu": "100m", "memory": "1Gi" }))]),
            "Guaranteed",
        ),
        // Equal values in different notations.
        (
            json!([c(json!({ "cpu": "0.1", "memory": "1024Mi" }), json!({ "cpu": "100m", "memory": "1Gi" }))]),
            "Guaranteed",
        ),
        (json!([c(json!({ "cpu": "50m", "memory": "1Gi" }), json!({ "cpu": "100m", "memory": "1Gi" }))]), "Burstable"),
        // Limits on cpu only: not guaranteed.
        (json!([c(json!({ "cpu": "100m" }), json!({ "cpu": "100m" }))]), "Burstable"),
        // One container without limits spoils it for the pod.
        (
            json!([c(json!({ "cpu": "1", "memory": "1Gi" }), json!({ "cpu": "1", "memory": "1Gi" })), { "name": "d", "image": "i" }]),
            "Burstable",
        ),
    ];
    for (containers, expect) in cases {
        assert_eq!(qos_class(&spec(containers.clone())), expect, "{containers}");
    }
}

fn pod(extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({
        "nodeName": "n0",
        "initContainers": [{ "name": "init", "image": "busybox:1" }],
        "containers": [{ "name": "app", "image": "nginx:1.27" }, { "name": "side", "image": "busybox:1" }],
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": { "name": "p", "namespace": "default", "uid": "u-1" },
        "spec": spec,
        "status": { "phase": "Pending", "qosClass": "BestEffort", "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" },
            { "type": "example.com/gate", "status": "True" },
        ] },
    }))
    .unwrap()
}

const AT: Placement<'static> = Placement { host_ip: "10.128.0.1", pod_ip: "10.0.0.5" };

fn now() -> Timestamp {
    "2026-11-29T01:02:03Z".parse().unwrap()
}

#[test]
fn running_status_has_ready_containers() {
    let s = serde_json::to_value(running_status(&pod(json!({})), AT, now())).unwrap();
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["hostIP"], "10.128.0.1");
    assert_eq!(s["podIP"], "10.0.0.5");
    assert_eq!(s["podIPs"], json!([{ "ip": "10.0.0.5" }]));
    assert_eq!(s["startTime"], "2026-11-29T01:02:03Z");
    assert_eq!(s["qosClass"], "BestEffort");
    let types: Vec<(&str, &str)> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True"),
            ("example.com/gate", "True"),
        ]
    );
    // PodScheduled keeps its transition time.
    assert_eq!(s["conditions"][4]["lastTransitionTime"], "2026-01-01T00:00:00Z");
    let app = &s["containerStatuses"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["ready"], true);
    assert_eq!(app["started"], true);
    assert_eq!(app["restartCount"], 0);
    assert_eq!(app["image"], "nginx:1.27");
    assert_eq!(app["imageID"], "hollow://nginx:1.27");
    assert_eq!(app["containerID"], "hollow://u-1/app/app");
    assert_eq!(app["state"]["running"]["startedAt"], "2026-11-29T01:02:03Z");
    assert_eq!(s["containerStatuses"].as_array().unwrap().len(), 2);
    let init = &s["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(init["state"]["terminated"]["exitCode"], 0);
}

#[test]
fn readiness_gates_hold_ready_back_and_sidecars_run() {
    let p = pod(json!({
        "readinessGates": [{ "conditionType": "example.com/other" }],
        "initContainers": [{ "name": "sidecar", "image": "envoy", "restartPolicy": "Always" }],
    }));
    let s = serde_json::to_value(running_status(&p, AT, now())).unwrap();
    let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ReadinessGatesNotReady");
    assert!(s["initContainerStatuses"][0]["state"]["running"].is_object(), "{s}");
    let p = pod(json!({ "readinessGates": [{ "conditionType": "example.com/gate" }] }));
    let s = serde_json::to_value(running_status(&p, AT, now())).unwrap();
    let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");
}

#[test]
fn ready_follows_readiness_gates_later() {
    let mut p = pod(json!({ "readinessGates": [{ "conditionType": "example.com/other" }] }));
    p.status = Some(running_status(&p, AT, now()));
    // Nothing changed: no update.
    assert!(ready_from_gates(&p, now()).is_none());
    // A controller sets the gate's condition: Ready turns True, other conditions kept.
    let mut conditions = p.status.as_ref().unwrap().conditions.clone().unwrap();
    conditions.push(serde_json::from_value(json!({ "type": "example.com/other", "status": "True" })).unwrap());
    p.status.as_mut().unwrap().conditions = Some(conditions);
    let updated = ready_from_gates(&p, now()).expect("Ready changes");
    let ready = updated.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", None));
    assert!(updated.iter().any(|c| c.type_ == "example.com/other"));
    // Pods without gates are never touched.
    let mut plain = pod(json!({}));
    plain.status = Some(running_status(&plain, AT, now()));
    assert!(ready_from_gates(&plain, now()).is_none());
}

#[test]
fn completed_status_terminates_containers() {
    let mut p = pod(json!({ "restartPolicy": "Never" }));
    p.status = Some(running_status(&p, AT, now()));
    let later: Timestamp = "2026-11-29T01:02:04Z".parse().unwrap();
    let s = serde_json::to_value(completed_status(&p, AT, later)).unwrap();
    assert_eq!(s["phase"], "Succeeded");
    let app = &s["containerStatuses"][0];
    assert_eq!(app["ready"], false);
    assert_eq!(app["state"]["terminated"]["exitCode"], 0);
    assert_eq!(app["state"]["terminated"]["reason"], "Completed");
    assert_eq!(app["state"]["terminated"]["startedAt"], "2026-11-29T01:02:03Z");
    assert_eq!(app["state"]["terminated"]["finishedAt"], "2026-11-29T01:02:04Z");
    let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("PodCompleted")));
}

#[test]
fn which_pods_complete() {
    assert!(!runs_to_completion(&pod(json!({}))));
    assert!(!runs_to_completion(&pod(json!({ "restartPolicy": "Always" }))));
    assert!(runs_to_completion(&pod(json!({ "restartPolicy": "Never" }))));
    assert!(runs_to_completion(&pod(json!({ "restartPolicy": "OnFailure" }))));
    let mut job_pod = pod(json!({}));
    job_pod.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({ "apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "j-1" })).unwrap(),
    ]);
    assert!(runs_to_completion(&job_pod));
}
