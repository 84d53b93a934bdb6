//! Ephemeral containers end to end: `kubectl debug` on a real node (containerd, runc, CNI)
//! starts a debug container in the running pod, in its target's PID namespace, whose logs,
//! status and exec work; and the `pods/ephemeralcontainers` subresource over HTTP refuses
//! what Kubernetes refuses (changed or removed containers, ports, unknown targets, stale
//! resourceVersions, PodSecurity violations) and ignores the rest of the pod.
//!
//! Bridge `btest30` (10.88.30.0/24) for the node test; the others need no node. Without
//! containerd the node test skips, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::path::Path;

use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

const SUB: &str = "/api/v1/namespaces/default/pods/target/ephemeralcontainers";

/// The status of ephemeral container `name` in `pod`.
fn ephemeral_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let all = pod["status"]["ephemeralContainerStatuses"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let all = pod["status"]["containerStatuses"].as_array();
    all.and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

/// PATCH of `path` with `content_type`: status and body.
fn patch(s: &TestServer, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
    let r = s.http("PATCH", path, Some(content_type), body.to_string().as_bytes());
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

const SMP: &str = "application/strategic-merge-patch+json";

#[test]
fn kubectl_debug_runs_a_container_in_the_target_s_pid_namespace() {
    let s = server();
    let Some(mut node) = Node::start_with(&s, 30, &["--keep-pods"]) else { return };
    let app =
        busybox_pod("debugged", &node, json!({ "name": "app", "command": ["sh", "-c", "exec sleep 3601"] }), "Always");
    apply(&s, &app);
    wait_pod(&s, &node, "debugged", "ran", |p| p["status"]["phase"] == "Running");

    // PID 1 of the target's namespace is the app's process (the pod's namespace would show the
    // pause process); the hostname is the pod's.
    s.kubectl_ok(&[
        "debug",
        "debugged",
        "--image=localhost/busybox:1",
        "--image-pull-policy=Never",
        "-c",
        "dbg",
        "--target=app",
        "--",
        "sh",
        "-c",
        "echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); echo host=$(hostname)",
    ]);
    let p = wait_pod(&s, &node, "debugged", "ran the debug container", |p| {
        ephemeral_status(p, "dbg")["state"]["terminated"].is_object()
    });
    let dbg = ephemeral_status(&p, "dbg");
    assert_eq!(dbg["state"]["terminated"]["exitCode"], 0, "{p:#}");
    assert_eq!(dbg["state"]["terminated"]["reason"], "Completed", "{p:#}");
    assert!(dbg["containerID"].as_str().is_some_and(|id| id.starts_with("containerd://")), "{dbg:#}");
    assert!(dbg["imageID"].as_str().is_some_and(|id| !id.is_empty()), "{dbg:#}");
    assert_eq!(dbg["ready"], false, "{dbg:#}");
    let logs = s.kubectl_ok(&["logs", "debugged", "-c", "dbg"]);
    assert!(logs.contains("pid1=sleep 3601"), "{logs}\nagent log:\n{}", node.log());
    assert!(logs.contains("host=debugged"), "{logs}");

    // The pod keeps running and ready; its container was not restarted; the debug container
    // that exited is not started again.
    assert_eq!(p["status"]["phase"], "Running", "{p:#}");
    assert_eq!(container_status(&p, "app")["restartCount"], 0, "{p:#}");
    let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned();
    assert_eq!(ready.unwrap()["status"], "True", "{p:#}");

    // A second, long-running one: exec reaches it by name, and it is stopped with the pod.
    s.kubectl_ok(&[
        "debug",
        "debugged",
        "--image=localhost/busybox:1",
        "--image-pull-policy=Never",
        "-c",
        "shell",
        "--",
        "sleep",
        "3600",
    ]);
    wait_pod(&s, &node, "debugged", "ran the second debug container", |p| {
        ephemeral_status(p, "shell")["state"]["running"].is_object()
    });
    let out = s.kubectl_ok(&["exec", "debugged", "-c", "shell", "--", "sh", "-c", "echo in-$(hostname)"]);
    assert_eq!(out.trim(), "in-debugged");
    let p = get_pod(&s, "debugged");
    assert_eq!(ephemeral_status(&p, "dbg")["state"]["terminated"]["exitCode"], 0, "the exited one restarted: {p:#}");
    assert_eq!(ephemeral_status(&p, "dbg")["restartCount"], 0, "{p:#}");
    assert_eq!(p["metadata"]["generation"], 3, "two ephemeral containers added: {p:#}");

    // A restarted agent adopts them as they are: the exited one is not run again, the running
    // one keeps its container.
    let ids = |p: &Value| {
        (ephemeral_status(p, "dbg")["containerID"].clone(), ephemeral_status(p, "shell")["containerID"].clone())
    };
    let before = ids(&p);
    node.stop();
    node.spawn(&s, &[]);
    // The app and both ephemeral containers (the exited one too) are taken over.
    let adopted = wait_until(TIMEOUT, || {
        node.log().lines().any(|l| l.contains("adopted a running pod") && l.contains("containers=3"))
    });
    assert!(adopted, "agent log:\n{}", node.log());
    s.kubectl_ok(&["label", "pod", "debugged", "poke=1"]);
    let p = wait_pod(&s, &node, "debugged", "was adopted", |p| {
        p["metadata"]["labels"]["poke"] == "1" && ephemeral_status(p, "shell")["state"]["running"].is_object()
    });
    assert_eq!(ids(&p), before, "{p:#}\nagent log:\n{}", node.log());
    assert_eq!(ephemeral_status(&p, "dbg")["state"]["terminated"]["exitCode"], 0, "{p:#}");
    let logs = s.kubectl_ok(&["logs", "debugged", "-c", "dbg"]);
    assert_eq!(logs.matches("pid1=").count(), 1, "the debug container ran again: {logs}");
    let out = s.kubectl_ok(&["exec", "debugged", "-c", "shell", "--", "echo", "still"]);
    assert_eq!(out.trim(), "still");

    s.kubectl_ok(&["delete", "pod", "debugged", "--wait=true", "--timeout=60s"]);
    let gone = wait_until(TIMEOUT, || node.containers().is_empty());
    assert!(gone, "containers left after the pod was deleted: {:?}", node.containers());
}

/// A pod `target` with container `app` in `default` (no node: only the API is exercised).
fn target_pod(s: &TestServer) -> Value {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "target" },
        "spec": { "containers": [{ "name": "app", "image": "busybox:1.36" }],
                  "initContainers": [{ "name": "setup", "image": "busybox:1.36" }] },
    });
    let (code, created) = s.http_json("POST", "/api/v1/namespaces/default/pods", Some(&pod));
    assert_eq!(code, 201, "{created:#}");
    created
}

#[test]
fn the_subresource_adds_ephemeral_containers_and_nothing_else() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    let created = target_pod(&s);
    assert_eq!(created["metadata"]["generation"], 1);

    let (code, got) = s.http_json("GET", SUB, None);
    assert_eq!((code, got["kind"].as_str()), (200, Some("Pod")), "{got:#}");

    // The ephemeral container is added and defaulted; the label and the container change in
    // the same patch are ignored.
    let (code, p) = patch(
        &s,
        SUB,
        SMP,
        &json!({ "metadata": { "labels": { "sneaky": "yes" } },
                 "spec": { "activeDeadlineSeconds": 5,
                           "ephemeralContainers": [{ "name": "dbg", "image": "busybox", "targetContainerName": "app" }] } }),
    );
    assert_eq!(code, 200, "{p:#}");
    let dbg = &p["spec"]["ephemeralContainers"][0];
    assert_eq!(dbg["name"], "dbg");
    assert_eq!(dbg["terminationMessagePath"], "/dev/termination-log", "{dbg:#}");
    assert_eq!(dbg["terminationMessagePolicy"], "File", "{dbg:#}");
    assert_eq!(dbg["imagePullPolicy"], "Always", "{dbg:#}");
    assert!(p["metadata"]["labels"].get("sneaky").is_none(), "{p:#}");
    assert!(p["spec"].get("activeDeadlineSeconds").is_none(), "{p:#}");
    assert_eq!(p["metadata"]["generation"], 2, "{p:#}");
    let rv_after_add = p["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let invalid = |code: u16, body: &Value, text: &str| {
        assert_eq!(code, 422, "{body:#}");
        assert_eq!(body["reason"], "Invalid", "{body:#}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("Pod \"target\" is invalid: "), "{message}");
        assert!(message.contains(text), "{message}\nwanted: {text}");
    };
    // An existing one may not change, nor go.
    let (code, body) = patch(
        &s,
        SUB,
        "application/json-patch+json",
        &json!([{ "op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": "busybox:1.37" }]),
    );
    invalid(
        code,
        &body,
        "spec.ephemeralContainers.dbg: Forbidden: existing ephemeral containers \"dbg\" may not be changed",
    );
    let (code, body) = patch(
        &s,
        SUB,
        "application/json-patch+json",
        &json!([{ "op": "remove", "path": "/spec/ephemeralContainers/0" }]),
    );
    invalid(
        code,
        &body,
        "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed",
    );
    // What an ephemeral container may not have. (A strategic merge patch without
    // `$setElementOrder` puts its new items first, as Kubernetes' does.)
    let add = |c: Value| json!({ "spec": { "ephemeralContainers": [c] } });
    let (code, body) =
        patch(&s, SUB, SMP, &add(json!({ "name": "web", "image": "busybox", "ports": [{ "containerPort": 80 }] })));
    invalid(code, &body, "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container");
    let (code, body) = patch(
        &s,
        SUB,
        SMP,
        &add(json!({ "name": "probed", "image": "busybox", "readinessProbe": { "exec": { "command": ["true"] } } })),
    );
    invalid(
        code,
        &body,
        "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
    );
    let (code, body) =
        patch(&s, SUB, SMP, &add(json!({ "name": "lost", "image": "busybox", "targetContainerName": "nope" })));
    invalid(code, &body, "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"");
    let (code, body) = patch(&s, SUB, SMP, &add(json!({ "name": "setup", "image": "busybox" })));
    invalid(code, &body, "spec.ephemeralContainers[0].name: Duplicate value: \"setup\"");
    let (code, body) = patch(&s, SUB, SMP, &add(json!({ "name": "noimage" })));
    invalid(code, &body, "spec.ephemeralContainers[0].image: Required value");
    // None of the refused writes changed the pod.
    let (_, now) = s.http_json("GET", "/api/v1/namespaces/default/pods/target", None);
    assert_eq!(now["metadata"]["resourceVersion"], rv_after_add.as_str(), "{now:#}");

    // PUT of the subresource: a second container added under the current resourceVersion;
    // the same body again is stale.
    let mut put = now.clone();
    put["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(json!({ "name": "dbg2", "image": "busybox:1.36" }));
    let (code, body) = s.http_json("PUT", SUB, Some(&put));
    assert_eq!(code, 200, "{body:#}");
    assert_eq!(body["spec"]["ephemeralContainers"][1]["imagePullPolicy"], "IfNotPresent", "{body:#}");
    put["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(json!({ "name": "dbg3", "image": "busybox" }));
    let (code, body) = s.http_json("PUT", SUB, Some(&put));
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")), "{body:#}");
    let stale = json!({ "metadata": { "resourceVersion": rv_after_add },
                        "spec": { "ephemeralContainers": [{ "name": "dbg3", "image": "busybox" }] } });
    let (code, body) = patch(&s, SUB, SMP, &stale);
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")), "{body:#}");

    // The pod itself cannot take ephemeral containers (Kubernetes' pod update rule).
    let (_, mut pod) = s.http_json("GET", "/api/v1/namespaces/default/pods/target", None);
    pod["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(json!({ "name": "sneak", "image": "busybox" }));
    let (code, body) = s.http_json("PUT", "/api/v1/namespaces/default/pods/target", Some(&pod));
    invalid(code, &body, "spec: Forbidden: pod updates may not change fields other than");

    // kubectl reads the subresource as a Pod.
    let out = s.kubectl_ok(&["get", "--raw", SUB]);
    let names: Vec<String> = serde_json::from_str::<Value>(&out).unwrap()["spec"]["ephemeralContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["dbg", "dbg2"]);
}

#[test]
fn pod_security_enforces_on_the_subresource() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    s.kubectl_ok(&["create", "namespace", "locked"]);
    s.kubectl_ok(&["label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted"]);
    let hardened = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "hardened" },
        "spec": {
            "securityContext": { "runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{ "name": "app", "image": "busybox:1.36", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } } }],
        },
    });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/locked/pods", Some(&hardened));
    assert_eq!(code, 201, "{body:#}");
    let sub = "/api/v1/namespaces/locked/pods/hardened/ephemeralcontainers";
    let debug = |sc: Value| json!({ "spec": { "ephemeralContainers": [{ "name": "dbg", "image": "busybox", "securityContext": sc }] } });

    let (code, body) = patch(&s, sub, SMP, &debug(json!({ "privileged": true })));
    assert_eq!((code, body["reason"].as_str()), (403, Some("Forbidden")), "{body:#}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pods \"hardened\" is forbidden: violates PodSecurity \"restricted:latest\": "),
        "{message}"
    );
    assert!(
        message.contains("privileged (container \"dbg\" must not set securityContext.privileged=true)"),
        "{message}"
    );
    let (_, pod) = s.http_json("GET", "/api/v1/namespaces/locked/pods/hardened", None);
    assert!(pod["spec"].get("ephemeralContainers").is_none(), "{pod:#}");

    // A debug container within the policy is let in.
    let (code, body) =
        patch(&s, sub, SMP, &debug(json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } })));
    assert_eq!(code, 200, "{body:#}");
    assert_eq!(body["spec"]["ephemeralContainers"][0]["name"], "dbg");
}
