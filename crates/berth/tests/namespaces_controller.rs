//! The namespace controller against the real server: a deleted namespace's content is
//! deleted (custom resources included), what holds it up is reported in its conditions,
//! and the namespace goes once its content is gone.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A namespaced custom resource kind with any content (Widget).
const CRD: &str = include_str!("data/widgets-crd.yaml");

fn condition(ns: &Value, type_: &str) -> Option<(String, String, String)> {
    ns["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().unwrap_or("").to_string(),
            c["message"].as_str().unwrap_or("").to_string(),
        )
    })
}

#[test]
fn namespace_deletion_removes_content_and_reports_what_remains() {
    let s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(CRD));
    s.kubectl_ok(&["create", "namespace", "doomed"]);
    s.kubectl_ok(&["-n", "doomed", "create", "configmap", "c1", "--from-literal=a=b"]);
    s.kubectl_ok(&["-n", "doomed", "create", "secret", "generic", "s1", "--from-literal=a=b"]);
    s.kubectl_ok(&["-n", "doomed", "run", "p1", "--image=busybox:1.36"]);
    let widgets = "/apis/example.com/v1/namespaces/doomed/widgets";
    assert!(wait_until(WAIT, || s.http_json("GET", widgets, None).0 == 200));
    let (code, v) = s.http_json(
        "POST",
        widgets,
        Some(&json!({ "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": { "name": "held", "finalizers": ["example.com/hold"] } })),
    );
    assert_eq!(code, 201, "{v}");

    s.kubectl_ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let (_, ns) = s.http_json("GET", "/api/v1/namespaces/doomed", None);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
    // Creating in a terminating namespace is refused by the API server.
    let err = s.kubectl_err(&["-n", "doomed", "create", "configmap", "late"], None);
    assert!(err.contains("being terminated") || err.contains("Forbidden") || err.contains("forbidden"), "{err}");

    // The controller deletes what it can and reports the custom resource held by its finalizer.
    let ns_now = || s.http_json("GET", "/api/v1/namespaces/doomed", None).1;
    assert!(
        wait_until(WAIT, || condition(&ns_now(), "NamespaceFinalizersRemaining").is_some_and(|c| c.0 == "True")),
        "no NamespaceFinalizersRemaining condition: {}\n{}",
        ns_now(),
        s.log()
    );
    let ns = ns_now();
    let (_, reason, message) = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(reason, "SomeFinalizersRemain");
    assert!(message.contains("example.com/hold in 1 resource instances"), "{message}");
    let (status, reason, message) = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "SomeResourcesRemain"));
    assert!(message.contains("widgets.example.com has 1 resource instances"), "{message}");
    assert_eq!(condition(&ns, "NamespaceDeletionDiscoveryFailure").unwrap().0, "False");
    assert_eq!(condition(&ns, "NamespaceDeletionContentFailure").unwrap().0, "False");
    for path in [
        "/api/v1/namespaces/doomed/configmaps/c1",
        "/api/v1/namespaces/doomed/secrets/s1",
        "/api/v1/namespaces/doomed/pods/p1",
    ] {
        assert_eq!(s.http_json("GET", path, None).0, 404, "{path} should be deleted");
    }
    let (_, w) = s.http_json("GET", &format!("{widgets}/held"), None);
    assert!(w["metadata"]["deletionTimestamp"].is_string(), "the custom resource is marked for deletion: {w}");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]), "{ns}");

    // Its finalizer removed, the custom resource goes, and then the namespace.
    s.kubectl_ok(&[
        "-n",
        "doomed",
        "patch",
        "widget",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(
        wait_until(WAIT, || s.http_json("GET", "/api/v1/namespaces/doomed", None).0 == 404),
        "namespace not removed: {}\n{}",
        ns_now(),
        s.log()
    );
    // The name can be used again.
    s.kubectl_ok(&["create", "namespace", "doomed"]);
    s.kubectl_ok(&["-n", "doomed", "create", "configmap", "c1"]);
}

#[test]
fn without_the_controller_a_namespace_stays_terminating() {
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-scheduler", "--disable-controllers", "namespace"],
    );
    s.kubectl_ok(&["create", "namespace", "stuck"]);
    s.kubectl_ok(&["-n", "stuck", "create", "configmap", "c1"]);
    s.kubectl_ok(&["delete", "namespace", "stuck", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(2));
    let (code, ns) = s.http_json("GET", "/api/v1/namespaces/stuck", None);
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    // A status write does not remove a namespace whose spec finalizers remain.
    let (code, _) = s.http_json(
        "PUT",
        "/api/v1/namespaces/stuck/status",
        Some(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": ns["metadata"], "spec": ns["spec"], "status": ns["status"] })),
    );
    assert!(code == 200, "status update: {code}");
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/stuck", None).0, 200);
    // Finalizing by hand (what the controller does) removes it.
    let mut body = s.http_json("GET", "/api/v1/namespaces/stuck", None).1;
    body["spec"]["finalizers"] = json!([]);
    let (code, v) = s.http_json("PUT", "/api/v1/namespaces/stuck/finalize", Some(&body));
    assert_eq!(code, 200, "{v}");
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/stuck", None).0, 404);
}
