//! Bad input gets a Kubernetes `Status` with the right code and reason, and nothing is written.

use std::path::Path;

use berth_testkit::TestServer;
use serde_json::{Value, json};

/// A server whose `default` namespace holds only what the test writes (no kube-root-ca.crt).
fn server() -> TestServer {
    TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-controllers", "root-ca-cert-publisher"])
}

fn configmap(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": "v" } })
}

fn assert_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

fn count_configmaps(s: &TestServer) -> usize {
    let (code, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    assert_eq!(code, 200);
    list["items"].as_array().unwrap().len()
}

#[test]
fn invalid_object_gets_422_with_field_causes_and_is_not_written() {
    let s = server();
    let pod =
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "Bad_Name" }, "spec": { "containers": [] } });
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/pods", Some(&pod));
    assert_eq!(code, 422);
    assert_status(&v, 422, "Invalid");
    let fields: Vec<&str> =
        v["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"metadata.name"), "{v}");
    assert!(fields.contains(&"spec.containers"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("spec.containers: Required value"), "{v}");
    let (code, _) = s.http_json("GET", "/api/v1/namespaces/default/pods/Bad_Name", None);
    assert_eq!(code, 404);
}

#[test]
fn kubectl_reports_validation_errors() {
    let s = server();
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: -1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: other}\n    spec:\n      containers:\n      - name: c\n        image: nginx\n";
    let err = s.kubectl_err(&["create", "-f", "-"], Some(bad));
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
    assert!(err.contains("selector"), "{err}");
}

#[test]
fn unknown_field_under_strict_is_rejected_and_warned_otherwise() {
    let s = server();
    let mut cm = configmap("strict");
    cm["bogus"] = json!(1);
    let body = serde_json::to_vec(&cm).unwrap();
    let r =
        s.http("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", Some("application/json"), &body);
    assert_eq!(r.status, 400);
    assert_status(&r.json(), 400, "BadRequest");
    assert!(r.json()["message"].as_str().unwrap().contains("unknown field \"bogus\""), "{}", r.json());
    assert_eq!(count_configmaps(&s), 0);

    let r =
        s.http("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", Some("application/json"), &body);
    assert_eq!(r.status, 201);
    assert!(r.header_all("warning").iter().any(|w| w.contains("unknown field")), "{:?}", r.headers);
    assert!(r.json().get("bogus").is_none(), "unknown fields are pruned");

    // kubectl validates strictly by default.
    let err = s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {a: b}\nspexx: 1\n"),
    );
    assert!(err.contains("unknown field") && err.contains("spexx"), "{err}");
}

#[test]
fn duplicate_fields_under_strict_are_rejected() {
    let s = server();
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup2"},"data":{}}"#;
    let r =
        s.http("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", Some("application/json"), body);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["message"].as_str().unwrap().contains("duplicate field"), "{}", r.json());
    assert_eq!(count_configmaps(&s), 0);
}

#[test]
fn repeated_yaml_keys_fail_under_strict_and_keep_the_last_value_otherwise() {
    let s = server();
    let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\ndata:\n  a: \"1\"\n  a: \"2\"\n";
    let r =
        s.http("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", Some("application/yaml"), body);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("strict decoding error"), "{}", r.json());
    assert_eq!(count_configmaps(&s), 0);
    let r =
        s.http("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Ignore", Some("application/yaml"), body);
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["data"]["a"], "2");
}

#[test]
fn stale_update_gets_409_conflict() {
    let s = server();
    let (code, created) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&configmap("c")));
    assert_eq!(code, 201);
    let mut first = created.clone();
    first["data"]["k"] = json!("one");
    let (code, _) = s.http_json("PUT", "/api/v1/namespaces/default/configmaps/c", Some(&first));
    assert_eq!(code, 200);
    let mut stale = created;
    stale["data"]["k"] = json!("two");
    let (code, v) = s.http_json("PUT", "/api/v1/namespaces/default/configmaps/c", Some(&stale));
    assert_eq!(code, 409);
    assert_status(&v, 409, "Conflict");
    assert!(v["message"].as_str().unwrap().contains("the object has been modified"), "{v}");
    let (_, now) = s.http_json("GET", "/api/v1/namespaces/default/configmaps/c", None);
    assert_eq!(now["data"]["k"], "one");
}

#[test]
fn create_of_an_existing_name_gets_409_already_exists() {
    let s = server();
    assert_eq!(s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&configmap("twice"))).0, 201);
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&configmap("twice")));
    assert_eq!(code, 409);
    assert_status(&v, 409, "AlreadyExists");
    assert_eq!(v["message"], "configmaps \"twice\" already exists");
}

#[test]
fn oversized_body_gets_413() {
    let s = server();
    let mut cm = configmap("big");
    cm["data"]["k"] = json!("x".repeat(3 * 1024 * 1024 + 10));
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    assert_eq!(code, 413);
    assert_status(&v, 413, "RequestEntityTooLarge");
    assert_eq!(count_configmaps(&s), 0);
}

#[test]
fn malformed_yaml_and_json_get_400_naming_the_position() {
    let s = server();
    let r = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x\n",
    );
    assert_eq!(r.status, 400);
    assert_status(&r.json(), 400, "BadRequest");
    // The flow sequence opened on line 3 is never closed: the message says where.
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("line 3") || message.contains("line 4"), "{message}");
    let r = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        b"{\"apiVersion\": \"v1\",\n \"kind\": }",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("line 2"), "{}", r.json());
    assert_eq!(count_configmaps(&s), 0);
}

#[test]
fn wrong_kind_for_the_url_gets_400() {
    let s = server();
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" } });
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&secret));
    assert_eq!(code, 400);
    assert_status(&v, 400, "BadRequest");
    let wrong_version = json!({ "apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": { "name": "s" } });
    assert_eq!(s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&wrong_version)).0, 400);
    assert_eq!(count_configmaps(&s), 0);
}

#[test]
fn wrong_type_gets_400() {
    let s = server();
    let d = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "d" },
        "spec": { "replicas": "three", "selector": { "matchLabels": { "a": "b" } },
                  "template": { "metadata": { "labels": { "a": "b" } }, "spec": { "containers": [{ "name": "c", "image": "i" }] } } } });
    let (code, v) = s.http_json("POST", "/apis/apps/v1/namespaces/default/deployments", Some(&d));
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("spec.replicas"), "{v}");
}

#[test]
fn create_in_missing_namespace_gets_404_and_in_terminating_one_403() {
    let s = server();
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/nowhere/configmaps", Some(&configmap("c")));
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");
    assert_eq!(v["message"], "namespaces \"nowhere\" not found");

    // A namespace held in Terminating by a finalizer on its content.
    s.kubectl_ok(&["create", "namespace", "closing"]);
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(s.http_json("POST", "/api/v1/namespaces/closing/configmaps", Some(&held)).0, 201);
    assert_eq!(s.http_json("DELETE", "/api/v1/namespaces/closing", None).0, 200);
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/closing/configmaps", Some(&configmap("late")));
    assert_eq!(code, 403, "{v}");
    assert_status(&v, 403, "Forbidden");
    assert!(v["message"].as_str().unwrap().contains("being terminated"), "{v}");
}

#[test]
fn the_default_and_system_namespaces_cannot_be_deleted() {
    let s = server();
    for ns in ["default", "kube-system", "kube-public"] {
        let (code, v) = s.http_json("DELETE", &format!("/api/v1/namespaces/{ns}"), None);
        assert_eq!(code, 403, "{v}");
        assert_status(&v, 403, "Forbidden");
        assert_eq!(v["message"], format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted"));
        let (_, after) = s.http_json("GET", &format!("/api/v1/namespaces/{ns}"), None);
        assert_eq!(after["status"]["phase"], "Active", "{after}");
        assert!(after["metadata"].get("deletionTimestamp").is_none(), "{after}");
    }
    let err = s.kubectl_err(&["delete", "namespace", "kube-system"], None);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
    // Any other namespace still goes.
    s.kubectl_ok(&["create", "namespace", "mortal"]);
    assert_eq!(s.http_json("DELETE", "/api/v1/namespaces/mortal", None).0, 200);
}

#[test]
fn unknown_resources_and_methods() {
    let s = server();
    let (code, v) = s.http_json("GET", "/api/v1/namespaces/default/gizmos", None);
    assert_eq!(code, 404);
    assert_status(&v, 404, "NotFound");
    assert_eq!(s.http_json("GET", "/apis/nothing.example.com/v1/things", None).0, 404);
    let r = s.http("POST", "/api/v1/namespaces/default/configmaps", Some("text/csv"), b"a,b");
    assert_eq!(r.status, 415);
    assert_eq!(s.http_json("PUT", "/api/v1/namespaces/default/configmaps", Some(&configmap("x"))).0, 405);
}

#[test]
fn dry_run_writes_nothing() {
    let s = server();
    let (code, v) = s.http_json("POST", "/api/v1/namespaces/default/configmaps?dryRun=All", Some(&configmap("dry")));
    assert_eq!(code, 201);
    assert_eq!(v["metadata"]["name"], "dry");
    assert_eq!(count_configmaps(&s), 0);
}

/// `dryRun=All` on every other verb: the response is what would be written, the store
/// keeps what it had (same data, same resourceVersion).
#[test]
fn dry_run_of_updates_patches_deletes_and_subresources_writes_nothing() {
    let s = server();
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(s.http_json("POST", cms, Some(&configmap("kept"))).0, 201);
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    assert_eq!(s.http_json("POST", deployments, Some(&deployment)).0, 201);
    let (_, stored) = s.http_json("GET", &format!("{cms}/kept"), None);

    let mut changed = stored.clone();
    changed["data"]["k"] = json!("put");
    let (code, v) = s.http_json("PUT", &format!("{cms}/kept?dryRun=All"), Some(&changed));
    assert_eq!((code, v["data"]["k"].clone()), (200, json!("put")), "{v}");
    let r = s.http(
        "PATCH",
        &format!("{cms}/kept?dryRun=All"),
        Some("application/merge-patch+json"),
        br#"{"data":{"k":"merge"}}"#,
    );
    assert_eq!((r.status, r.json()["data"]["k"].clone()), (200, json!("merge")), "{}", r.json());
    let apply = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kept"},"data":{"k":"applied"}}"#;
    let r = s.http(
        "PATCH",
        &format!("{cms}/kept?dryRun=All&fieldManager=dry&force=true"),
        Some("application/apply-patch+yaml"),
        apply,
    );
    assert_eq!((r.status, r.json()["data"]["k"].clone()), (200, json!("applied")), "{}", r.json());
    let (code, v) = s.http_json("DELETE", &format!("{cms}/kept?dryRun=All"), None);
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.http_json("DELETE", &format!("{cms}?dryRun=All"), None);
    assert_eq!(code, 200, "{v}");
    let r = s.http(
        "PATCH",
        &format!("{deployments}/d/scale?dryRun=All"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":7}}"#,
    );
    assert_eq!((r.status, r.json()["spec"]["replicas"].clone()), (200, json!(7)), "{}", r.json());
    let r = s.http(
        "PATCH",
        &format!("{deployments}/d/status?dryRun=All"),
        Some("application/merge-patch+json"),
        br#"{"status":{"observedGeneration":99}}"#,
    );
    assert_eq!((r.status, r.json()["status"]["observedGeneration"].clone()), (200, json!(99)), "{}", r.json());

    let (_, after) = s.http_json("GET", &format!("{cms}/kept"), None);
    assert_eq!(after, stored, "the ConfigMap is as it was (its resourceVersion too)");
    let (_, d) = s.http_json("GET", &format!("{deployments}/d"), None);
    assert_eq!(d["spec"]["replicas"], 1, "{d}");
    assert_ne!(d["status"]["observedGeneration"], 99, "{d}");
    let (code, v) = s.http_json("POST", &format!("{cms}?dryRun=Maybe"), Some(&configmap("odd")));
    assert_eq!(code, 400, "{v}");
    assert_status(&v, 400, "BadRequest");
}
