//! Unit tests of policy parsing, rule matching and rotation.

use axum::response::IntoResponse;

use super::*;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-proxy"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "pods/log", "*/scale"]
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: ""
        resources: ["configmaps"]
        resourceNames: ["audited"]
    omitStages: ["ResponseComplete"]
    omitManagedFields: true
  - level: Request
    userGroups: ["team-a"]
    namespaces: ["a"]
  - level: Metadata
    nonResourceURLs: ["/healthz*", "/version"]
  - level: None
"#;

fn attrs(user: &str, groups: &[&str], method: Method, path: &str) -> Attributes {
    let u = UserInfo::new(user, groups.iter().map(|g| g.to_string()));
    Attributes::from_request(u, &method, path, None)
}

fn level(p: &Policy, user: &str, groups: &[&str], method: Method, path: &str) -> Level {
    p.evaluate(&attrs(user, groups, method, path)).level
}

#[test]
fn rules_match_in_order() {
    let p = Policy::parse(POLICY).unwrap();
    use Level::*;
    let cases: &[(&str, &[&str], Method, &str, Level)] = &[
        ("system:kube-proxy", &[], Method::GET, "/api/v1/namespaces/a/secrets/s", None),
        ("alice", &[], Method::GET, "/api/v1/namespaces/a/secrets/s", Metadata),
        ("alice", &[], Method::GET, "/api/v1/namespaces/a/pods/p/log", Metadata),
        ("alice", &[], Method::GET, "/api/v1/namespaces/a/pods/p/exec", None),
        ("alice", &[], Method::PUT, "/apis/apps/v1/namespaces/a/deployments/d/scale", None),
        ("alice", &[], Method::PUT, "/api/v1/namespaces/a/replicationcontrollers/r/scale", Metadata),
        ("alice", &[], Method::PUT, "/api/v1/namespaces/b/configmaps/audited", RequestResponse),
        ("alice", &[], Method::PUT, "/api/v1/namespaces/b/configmaps/other", None),
        ("alice", &[], Method::GET, "/api/v1/namespaces/b/configmaps/audited", None),
        ("bob", &["team-a"], Method::GET, "/api/v1/namespaces/a/configmaps", Request),
        ("bob", &["team-a"], Method::GET, "/api/v1/namespaces/b/configmaps", None),
        ("bob", &["team-a"], Method::GET, "/healthz/etcd", Metadata),
        ("bob", &["team-a"], Method::GET, "/version", Metadata),
        ("bob", &["team-a"], Method::GET, "/version/x", None),
        ("bob", &[], Method::GET, "/metrics", None),
    ];
    for (user, groups, method, path, expect) in cases {
        assert_eq!(level(&p, user, groups, method.clone(), path), *expect, "{user} {method} {path}");
    }
    let d = p.evaluate(&attrs("a", &[], Method::PUT, "/api/v1/namespaces/b/configmaps/audited"));
    assert_eq!(d.omit_stages, vec![Stage::RequestReceived, Stage::ResponseComplete]);
    assert!(d.omit_managed_fields);
    let d = p.evaluate(&attrs("a", &[], Method::GET, "/api/v1/namespaces/a/secrets"));
    assert_eq!(d.omit_stages, vec![Stage::RequestReceived]);
    assert!(!d.omit_managed_fields);
}

#[test]
fn empty_rule_matches_everything_and_bad_policies_are_refused() {
    let p = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n").unwrap();
    assert_eq!(level(&p, "x", &[], Method::GET, "/healthz"), Level::RequestResponse);
    assert_eq!(level(&p, "x", &[], Method::DELETE, "/api/v1/nodes/n"), Level::RequestResponse);
    for bad in [
        "apiVersion: v1\nkind: ConfigMap\nrules:\n- level: None\n",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Sometimes]\nrules:\n- level: None\n",
        "{",
    ] {
        assert!(Policy::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn micro_times_have_six_digits() {
    let t: jiff::Timestamp = "2026-11-29T10:00:00.0123Z".parse().unwrap();
    assert_eq!(micro_time(t), "2026-11-29T10:00:00.012300Z");
}

#[test]
fn the_log_rotates_by_size_and_keeps_max_backup_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let config = AuditConfig {
        path: path.clone(),
        policy: Policy::parse(POLICY).unwrap(),
        max_size_mb: 1,
        max_backup: 2,
        max_age_days: 0,
    };
    let mut w = Writer::open(&config).unwrap();
    let line = vec![b'x'; 300 * 1024];
    for _ in 0..12 {
        w.write(&line);
    }
    w.flush();
    let backups = Writer::backups(dir.path(), "audit", ".log");
    assert_eq!(backups.len(), 2, "{backups:?}");
    for (_, b) in &backups {
        let len = std::fs::metadata(b).unwrap().len();
        assert!(len <= 1024 * 1024 && len > 0, "{len}");
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("audit-") && name.ends_with(".log"), "{name}");
    }
    assert!(std::fs::metadata(&path).unwrap().len() <= 1024 * 1024);
}

#[tokio::test]
async fn a_panic_is_recorded_at_the_panic_stage_and_unwinds_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let policy = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n").unwrap();
    let config = AuditConfig { path: path.clone(), policy, max_size_mb: 0, max_backup: 0, max_age_days: 0 };
    let auditor = Auditor::start(&config).unwrap();
    let pending = Pending { auditor, event: json!({ "auditID": "a1", "verb": "get" }), omit: vec![] };
    let fine = recording_panics(&pending, async { axum::http::StatusCode::OK.into_response() }).await;
    assert_eq!(fine.status(), 200);
    let rest = async {
        if std::hint::black_box(true) {
            panic!("handler bug");
        }
        axum::http::StatusCode::OK.into_response()
    };
    let unwound =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(recording_panics(&pending, rest))).await;
    assert!(unwound.is_err(), "the panic goes on to the recovery layer");
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_string).collect();
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 1, "only the panic is an event here: {lines:?}");
    let event: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["stage"], "Panic");
    assert_eq!(event["auditID"], "a1");
    assert_eq!(event["responseStatus"]["code"], 500);
    assert_eq!(event["responseStatus"]["message"], "APIServer panic'd: handler bug");
}
