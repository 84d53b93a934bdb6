//! The audit log end to end: the real `berth server` with `--audit-policy-file` and
//! `--audit-log-path`, driven by real kubectl; the JSON lines it writes, the levels the
//! policy gives (no Secret data in the log), and rotation by size.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: None
"#;

/// Starts a server auditing to DIR/audit/audit.log; returns it and the log path.
fn server(extra: &[&str]) -> (TestServer, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let log = dir.path().join("audit").join("audit.log");
    let mut args = vec!["--audit-policy-file", policy.to_str().unwrap(), "--audit-log-path", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    (TestServer::start_with(Path::new(BIN), &args), dir, log)
}

fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until an event matching `pred` is in the log; returns it.
fn find(log: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            found = events(log).into_iter().find(|e| pred(e));
            found.is_some()
        }),
        "no audit event for {what} in:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    found.unwrap()
}

fn is(e: &Value, verb: &str, resource: &str, name: &str, stage: &str) -> bool {
    e["verb"] == verb && e["objectRef"]["resource"] == resource && e["objectRef"]["name"] == name && e["stage"] == stage
}

#[test]
fn kubectl_actions_are_recorded_at_the_policy_levels() {
    let (s, _dir, log) = server(&[]);
    let secret_value = "hunter2-very-secret";
    s.kubectl_ok(&["create", "secret", "generic", "s1", "--from-literal", &format!("password={secret_value}")]);
    s.kubectl_ok(&["get", "secret", "s1", "-o", "yaml"]);
    s.kubectl_ok(&["create", "configmap", "c1", "--from-literal", "k=visible-value"]);
    s.kubectl_ok(&["get", "configmap", "c1"]);
    s.kubectl_ok(&["delete", "configmap", "c1"]);
    s.kubectl_ok(&["get", "pods"]);
    let missing = s.kubectl_err(&["get", "configmap", "nothing-here"], None);
    assert!(missing.contains("NotFound"), "{missing}");
    let forbidden = s.kubectl_err(&["get", "configmaps", "--as", "alice"], None);
    assert!(forbidden.contains("Forbidden"), "{forbidden}");

    // Secrets: Metadata only.
    let created = find(&log, "the secret's create", |e| is(e, "create", "secrets", "s1", "ResponseComplete"));
    assert_eq!(created["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(created["kind"], "Event");
    assert_eq!(created["level"], "Metadata");
    assert_eq!(created["user"]["username"], "system:admin");
    assert_eq!(created["user"]["groups"], json!(["system:masters", "system:authenticated"]));
    assert_eq!(
        created["objectRef"],
        json!({ "resource": "secrets", "namespace": "default", "name": "s1", "apiVersion": "v1" })
    );
    assert_eq!(created["responseStatus"]["code"], 201);
    assert_eq!(created["requestURI"].as_str().map(|u| u.starts_with("/api/v1/namespaces/default/secrets")), Some(true));
    assert!(created["userAgent"].as_str().is_some_and(|ua| ua.starts_with("kubectl")), "{created}");
    assert_eq!(created["sourceIPs"], json!(["127.0.0.1"]));
    assert_eq!(created["annotations"]["authorization.k8s.io/decision"], "allow");
    assert!(created.get("requestObject").is_none() && created.get("responseObject").is_none(), "{created}");
    let received = find(&log, "the secret's RequestReceived", |e| {
        e["auditID"] == created["auditID"] && e["stage"] == "RequestReceived"
    });
    assert_eq!(received["requestReceivedTimestamp"], created["requestReceivedTimestamp"]);
    assert!(received.get("responseStatus").is_none());
    let read = find(&log, "the secret's get", |e| is(e, "get", "secrets", "s1", "ResponseComplete"));
    assert_eq!(read["responseStatus"]["code"], 200);
    assert!(read.get("responseObject").is_none());
    // Neither the value nor its base64 is anywhere in the log.
    use base64::Engine;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret_value));
    assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode(secret_value)));

    // ConfigMaps: RequestResponse.
    let created = find(&log, "the configmap's create", |e| is(e, "create", "configmaps", "c1", "ResponseComplete"));
    assert_eq!(created["level"], "RequestResponse");
    assert_eq!(created["requestObject"]["data"], json!({ "k": "visible-value" }));
    assert_eq!(created["responseObject"]["metadata"]["name"], "c1");
    assert!(created["responseObject"]["metadata"]["uid"].is_string());
    assert_eq!(created["responseStatus"]["code"], 201);
    let read = find(&log, "the configmap's get", |e| is(e, "get", "configmaps", "c1", "ResponseComplete"));
    assert!(read.get("requestObject").is_none());
    // kubectl get asks for a Table: what was sent is what is recorded.
    assert_eq!(read["responseObject"]["kind"], "Table");
    assert_eq!(read["responseObject"]["rows"][0]["object"]["metadata"]["name"], "c1");
    let deleted = find(&log, "the configmap's delete", |e| is(e, "delete", "configmaps", "c1", "ResponseComplete"));
    assert_eq!(deleted["responseStatus"]["code"], 200);
    let missing =
        find(&log, "the missing configmap", |e| is(e, "get", "configmaps", "nothing-here", "ResponseComplete"));
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound");
    let denied = find(&log, "alice's list", |e| {
        e["verb"] == "list" && e["impersonatedUser"]["username"] == "alice" && e["stage"] == "ResponseComplete"
    });
    assert_eq!(denied["user"]["username"], "system:admin");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["annotations"]["authorization.k8s.io/decision"], "forbid");

    // A request that fails authentication: one ResponseStarted event, no user.
    let bad = s.client_as(berth_testkit::Credentials::Bearer("not-a-token".into()));
    let r = bad.request("GET", "/api/v1/namespaces/default/configmaps/c1", None, b"").unwrap();
    assert_eq!(r.status, 401);
    let audit_id = r.header_all("audit-id").first().map(|s| s.to_string()).expect("an Audit-Id header");
    let refused = find(&log, "the 401", |e| e["auditID"] == audit_id.as_str());
    assert_eq!(refused["stage"], "ResponseStarted");
    assert_eq!(refused["user"], json!({}));
    assert_eq!(refused["level"], "RequestResponse");
    assert_eq!(refused["objectRef"]["name"], "c1");
    assert_eq!(
        refused["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    assert_eq!(events(&log).iter().filter(|e| e["auditID"] == audit_id.as_str()).count(), 1);

    // A watch: ResponseStarted, then ResponseComplete when it ends.
    let r = s.http("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", None, b"");
    assert_eq!(r.status, 200);
    let audit_id = r.header_all("audit-id").first().map(|s| s.to_string()).expect("an Audit-Id header");
    find(&log, "the watch's start", |e| e["auditID"] == audit_id.as_str() && e["stage"] == "ResponseStarted");
    let done = find(&log, "the watch's end", |e| e["auditID"] == audit_id.as_str() && e["stage"] == "ResponseComplete");
    assert_eq!(done["verb"], "watch");

    // Level None: nothing about pods (or anything else).
    for e in events(&log) {
        let resource = e["objectRef"]["resource"].as_str().unwrap_or("");
        assert!(resource == "secrets" || resource == "configmaps", "{e}");
        assert!(e["stageTimestamp"].as_str().is_some_and(|t| t.len() == "2026-11-29T10:00:00.000000Z".len()), "{e}");
    }
}

#[test]
fn the_log_rotates_by_size() {
    let (s, _dir, log) = server(&["--audit-log-maxsize", "1", "--audit-log-maxbackup", "2"]);
    let big = "x".repeat(200 * 1024);
    for i in 0..12 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("big-{i}") }, "data": { "k": big } });
        let (code, body) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
        assert_eq!(code, 201, "{body}");
    }
    find(&log, "the last create", |e| is(e, "create", "configmaps", "big-11", "ResponseComplete"));
    let dir = log.parent().unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    let backups: Vec<&PathBuf> = files.iter().filter(|p| *p != &log).collect();
    // 12 creates of 2 × 200 KiB each are about 5 MiB: many rotations, 2 backups kept.
    assert_eq!(backups.len(), 2, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 1024 * 1024, "{f:?}: {len}");
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("audit") && name.ends_with(".log"), "{name}");
        // Every line of every file is a whole event.
        for line in std::fs::read_to_string(f).unwrap().lines() {
            assert!(serde_json::from_str::<Value>(line).is_ok(), "{name}: a broken line");
        }
    }
}

#[test]
fn bad_audit_flags_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let bad_policy = dir.path().join("bad.yaml");
    std::fs::write(&bad_policy, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n").unwrap();
    let log = dir.path().join("audit.log");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["--audit-log-path", log.to_str().unwrap()], "--audit-log-path needs --audit-policy-file"),
        (vec!["--audit-policy-file", bad_policy.to_str().unwrap()], "--audit-policy-file needs --audit-log-path"),
        (
            vec!["--audit-log-path", log.to_str().unwrap(), "--audit-policy-file", bad_policy.to_str().unwrap()],
            "audit policy",
        ),
    ];
    for (i, (flags, expect)) in cases.iter().enumerate() {
        let data = dir.path().join(format!("data-{i}"));
        let out = std::process::Command::new(BIN)
            .args(["server", "--disable-agent", "--https-listen-port", "0", "--data-dir"])
            .arg(&data)
            .args(flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{flags:?}: {err}");
    }
}
