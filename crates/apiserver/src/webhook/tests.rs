//! Unit tests of rule matching, answers and configuration validation.

use super::*;

fn target(op: Operation, group: &str, version: &str, resource: &str, sub: &str, namespaced: bool) -> Target {
    Target {
        operation: op,
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespaced,
    }
}

fn rule(v: Value) -> Rule {
    Rule::from_value(&v)
}

#[test]
fn resources_and_subresources() {
    let cases = [
        ("pods", "pods", "", true),
        ("pods", "pods", "status", false),
        ("*", "pods", "", true),
        ("*", "pods", "status", false),
        ("pods/status", "pods", "status", true),
        ("pods/status", "pods", "", false),
        ("pods/*", "pods", "status", true),
        ("pods/*", "pods", "", false),
        ("*/scale", "deployments", "scale", true),
        ("*/scale", "deployments", "status", false),
        ("*/*", "deployments", "", true),
        ("*/*", "deployments", "status", true),
        ("configmaps", "pods", "", false),
    ];
    for (pattern, resource, sub, expect) in cases {
        assert_eq!(resource_matches(pattern, resource, sub), expect, "{pattern} vs {resource}/{sub}");
    }
}

#[test]
fn rules_match_operations_groups_versions_and_scope() {
    let r = rule(json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}));
    assert!(r.matches(&target(Operation::Create, "", "v1", "pods", "", true), false));
    assert!(!r.matches(&target(Operation::Update, "", "v1", "pods", "", true), false));
    assert!(!r.matches(&target(Operation::Create, "apps", "v1", "pods", "", true), false));
    let any = rule(
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}),
    );
    assert!(any.matches(&target(Operation::Delete, "", "v1", "nodes", "", false), false));
    assert!(!any.matches(&target(Operation::Delete, "", "v1", "pods", "", true), false));
    let ns = rule(
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Namespaced"}),
    );
    assert!(ns.matches(&target(Operation::Create, "apps", "v1", "deployments", "", true), false));
    assert!(!ns.matches(&target(Operation::Create, "", "v1", "namespaces", "", false), false));
    // Equivalent: another version of the same group and resource matches.
    let old = rule(
        json!({"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1beta1"], "resources": ["deployments"]}),
    );
    let t = target(Operation::Create, "apps", "v1", "deployments", "", true);
    assert!(!old.matches(&t, false));
    assert!(old.matches(&t, true));
}

fn hook(v: Value) -> Hook {
    Hook::from_value("c", &v)
}

#[test]
fn match_policy_exact_and_equivalent() {
    let base = json!({"name": "a.b.c", "sideEffects": "None", "clientConfig": {"url": "https://127.0.0.1:1/"},
        "rules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1beta1"], "resources": ["deployments"]}]});
    let t = target(Operation::Create, "apps", "v1", "deployments", "", true);
    assert!(hook(base.clone()).matches_rules(&t));
    let mut exact = base;
    exact["matchPolicy"] = json!("Exact");
    let h = hook(exact);
    assert!(!h.matches_rules(&t));
    assert!(h.fail_closed);
    assert!(h.dry_run_safe);
    assert_eq!(h.timeout, Duration::from_secs(10));
}

#[test]
fn hooks_parse_policies_and_endpoints() {
    let h = hook(json!({"name": "a.b.c", "failurePolicy": "Ignore", "sideEffects": "Unknown", "timeoutSeconds": 2,
        "reinvocationPolicy": "IfNeeded", "clientConfig": {"service": {"namespace": "n", "name": "s", "path": "/m"}}}));
    assert!(!h.fail_closed && !h.dry_run_safe && h.reinvoke);
    assert_eq!(h.timeout, Duration::from_secs(2));
    assert_eq!(h.endpoint, Endpoint::Service { namespace: "n".into(), name: "s".into(), port: 443, path: "/m".into() });
    // No caBundle: nothing is trusted, so the call fails at the TLS handshake.
    assert!(h.tls.is_ok());
    let bad = hook(json!({"name": "a.b.c", "clientConfig": {"url": "https://x/", "caBundle": "!!"}}));
    assert!(bad.tls.unwrap_err().contains("base64"));
}

#[test]
fn answers_are_checked() {
    let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "u1", "allowed": true, "warnings": ["w"], "auditAnnotations": {"k": "v"},
        "patchType": "JSONPatch", "patch": "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"}});
    let a = parse_answer(ok.to_string().as_bytes(), "u1").unwrap();
    assert!(a.allowed);
    assert_eq!(a.patch, Some(json!([{"op": "add", "path": "/a", "value": 1}])));
    assert_eq!(a.warnings, vec!["w".to_string()]);
    assert_eq!(a.audit_annotations.get("k").map(String::as_str), Some("v"));
    let e = parse_answer(ok.to_string().as_bytes(), "u2").unwrap_err();
    assert_eq!(e, r#"received invalid webhook response: expected response.uid="u2", got "u1""#);
    let v1beta1 =
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u1"}});
    assert!(
        parse_answer(v1beta1.to_string().as_bytes(), "u1")
            .unwrap_err()
            .contains("expected webhook response of admission.k8s.io/v1")
    );
    assert!(parse_answer(b"not json", "u1").is_err());
    let bad_type = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": "u1", "allowed": true, "patchType": "Merge", "patch": "e30="}});
    assert!(parse_answer(bad_type.to_string().as_bytes(), "u1").unwrap_err().contains("invalid patchType"));
    let no_response = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    assert!(parse_answer(no_response.to_string().as_bytes(), "u1").unwrap_err().contains("absent"));
}

#[test]
fn refusals_read_as_kubernetes_words_them() {
    let e = denied("deny.example.com", Some(&json!({"code": 403, "message": "no pods today", "reason": "Forbidden"})));
    assert_eq!((e.code, e.reason), (403, "Forbidden"));
    assert_eq!(e.message, r#"admission webhook "deny.example.com" denied the request: no pods today"#);
    let e = denied("deny.example.com", None);
    assert_eq!((e.code, e.reason), (400, ""));
    assert_eq!(e.message, r#"admission webhook "deny.example.com" denied the request without explanation"#);
    let e = denied("d.e.f", Some(&json!({"code": 200, "reason": "Nope"})));
    assert_eq!(e.code, 400);
    assert_eq!(e.message, r#"admission webhook "d.e.f" denied the request: Nope"#);
    let e = call_failed(
        "slow.example.com",
        "failed to call webhook: Post \"https://x/?timeout=1s\": context deadline exceeded",
    );
    assert_eq!(e.code, 500);
    assert_eq!(
        e.message,
        r#"Internal error occurred: failed calling webhook "slow.example.com": failed to call webhook: Post "https://x/?timeout=1s": context deadline exceeded"#
    );
}

fn check_config(kind: &str, obj: Value, expect: &[&str]) {
    let info = berth_api::registry::find_builtin(
        "admissionregistration.k8s.io",
        "v1",
        if kind == "M" { "mutatingwebhookconfigurations" } else { "validatingwebhookconfigurations" },
    )
    .unwrap();
    let got: Vec<String> = validate_configuration(info, &obj).iter().map(ToString::to_string).collect();
    assert_eq!(got, expect, "{obj}");
}

#[test]
fn configurations_are_validated() {
    let good = json!({"webhooks": [{"name": "a.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
        "clientConfig": {"url": "https://127.0.0.1:8443/x"},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
    check_config("M", good.clone(), &[]);
    check_config("V", good, &[]);
    check_config(
        "V",
        json!({"webhooks": [{"name": "short", "sideEffects": "Some", "admissionReviewVersions": ["v2"], "timeoutSeconds": 31,
            "failurePolicy": "Maybe", "clientConfig": {"url": "http://x/"},
            "rules": [{"operations": ["GET"], "apiGroups": [""], "apiVersions": ["v1"], "resources": []}]}]}),
        &[
            r#"webhooks[0].name: Invalid value: "short": should be a domain with at least three segments separated by dots"#,
            r#"webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1"#,
            r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#,
            r#"webhooks[0].failurePolicy: Unsupported value: "Maybe": supported values: "Fail", "Ignore""#,
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            r#"webhooks[0].clientConfig.url: Invalid value: "http://x/": 'https' is the only allowed URL scheme"#,
            "webhooks[0].rules[0].resources: Required value",
            r#"webhooks[0].rules[0].operations[0]: Unsupported value: "GET": supported values: "*", "CONNECT", "CREATE", "DELETE", "UPDATE""#,
        ],
    );
    check_config(
        "M",
        json!({"webhooks": [{"name": "a.b.c", "reinvocationPolicy": "Always", "clientConfig": {}},
            {"name": "a.b.c", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {"service": {"name": "s"}}}]}),
        &[
            "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            "webhooks[0].sideEffects: Required value",
            r#"webhooks[0].reinvocationPolicy: Unsupported value: "Always": supported values: "Never", "IfNeeded""#,
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            r#"webhooks[1].name: Duplicate value: "a.b.c""#,
            "webhooks[1].clientConfig.service.namespace: Required value",
        ],
    );
}

#[test]
fn dry_runs_reach_only_webhooks_without_side_effects() {
    for (effects, refused) in [("None", false), ("NoneOnDryRun", false), ("Unknown", true), ("Some", true)] {
        let h = hook(json!({"name": "fx.berth.test", "sideEffects": effects, "clientConfig": {"url": "https://x/"}}));
        assert!(dry_run_refusal(&h, false).is_none());
        let e = dry_run_refusal(&h, true);
        assert_eq!(e.is_some(), refused, "{effects}");
        if let Some(e) = e {
            assert_eq!(
                (e.code, e.message.as_str()),
                (400, r#"admission webhook "fx.berth.test" does not support dry run"#)
            );
        }
    }
}
