//! Unit tests of the CEL side of admission policies: compiling, JSON conversion, verdicts.

use serde_json::json;

use super::*;

fn eval(source: &str, object: Value) -> Result<cel::Value, String> {
    let expr = Expr::compile(source);
    let mut cx = cel::Context::with_env(ENV.clone());
    cx.add_variable_from_value("object", to_cel(&object));
    let budget = cost::Budget::new(cost::PER_EXPRESSION_LIMIT);
    cost::bind(&mut cx, budget.clone());
    expr.eval(&cx, &budget)
}

#[test]
fn expressions_evaluate_on_json() {
    let obj = json!({
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "replicas": 3,
            "ratio": 0.5,
            "paused": false,
            "containers": [{ "name": "a", "image": "busybox:1" }, { "name": "b", "image": "nginx" }],
            "missing": null,
        },
    });
    let cases: &[(&str, cel::Value)] = &[
        ("object.spec.replicas <= 5", cel::Value::Bool(true)),
        ("object.spec.replicas + 1", cel::Value::Int(4)),
        ("object.spec.ratio < 1.0", cel::Value::Bool(true)),
        ("!object.spec.paused", cel::Value::Bool(true)),
        ("has(object.spec.replicas)", cel::Value::Bool(true)),
        ("has(object.spec.nothere)", cel::Value::Bool(false)),
        ("object.spec.missing == null", cel::Value::Bool(true)),
        ("size(object.spec.containers)", cel::Value::Int(2)),
        ("object.spec.containers.all(c, c.image != '')", cel::Value::Bool(true)),
        ("object.spec.containers.exists(c, c.image.startsWith('nginx'))", cel::Value::Bool(true)),
        ("object.spec.containers.map(c, c.name) == ['a', 'b']", cel::Value::Bool(true)),
        ("size(object.spec.containers.filter(c, c.image.contains(':'))) == 1", cel::Value::Bool(true)),
        ("object.metadata.name.matches('^w.b$')", cel::Value::Bool(true)),
        ("'app' in object.metadata.labels", cel::Value::Bool(true)),
        ("object.metadata.name.upperAscii() == 'WEB'", cel::Value::Bool(true)),
        ("object.spec.containers.map(c, c.name).join(',') == 'a,b'", cel::Value::Bool(true)),
    ];
    for (source, want) in cases {
        assert_eq!(eval(source, obj.clone()).as_ref(), Ok(want), "{source}");
    }
}

#[test]
fn runtime_errors_are_errors() {
    let obj = json!({ "spec": { "replicas": 3 } });
    for source in ["object.spec.nothere > 1", "object.spec.replicas / 0 == 1", "object.spec.replicas > 'x'"] {
        assert!(eval(source, obj.clone()).is_err(), "{source}");
    }
}

#[test]
fn compile_errors_are_reported_as_kubernetes_does() {
    let cases: &[(&str, &str)] = &[
        ("object.spec.replicas <=", "compilation failed: ERROR: <input>:1:"),
        ("object.spec.(", "compilation failed: ERROR: <input>:1:"),
        ("foo.spec > 1", "compilation failed: ERROR: <input>:1:1: undeclared reference to 'foo'"),
        (
            "object.spec.containers.all(c, c.name == y)",
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'y'",
        ),
        // A comprehension's variable is bound only inside it.
        (
            "object.spec.containers.all(c, true) && c.name == ''",
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'c'",
        ),
    ];
    for (source, want) in cases {
        let e = Expr::compile(source);
        let got = e.error().unwrap_or_default();
        assert!(got.starts_with(want), "{source}: {got}");
    }
    for ok in [
        "object.spec.containers.all(c, c.name != '')",
        "object.spec.containers.all(c, c.ports.exists(p, p.containerPort > 0 && c.name != ''))",
        "object.spec.containers.map(c, c.name).filter(n, n.startsWith('a')) == []",
        "variables.x && params.y",
        "request.operation == 'CREATE'",
        "type(object) == map && {'a': object.metadata.name}.a != ''",
    ] {
        assert_eq!(Expr::compile(ok).error(), None, "{ok}");
    }
}

#[test]
fn numbers_convert_to_cel_kinds() {
    assert_eq!(to_cel(&json!(5)), cel::Value::Int(5));
    assert_eq!(to_cel(&json!(-5)), cel::Value::Int(-5));
    assert_eq!(to_cel(&json!(u64::MAX)), cel::Value::UInt(u64::MAX));
    assert_eq!(to_cel(&json!(1.5)), cel::Value::Float(1.5));
    assert_eq!(to_cel(&json!(null)), cel::Value::Null);
}

fn policy(spec: Value) -> Policy {
    Policy::compile(&json!({ "metadata": { "name": "p", "uid": "u", "generation": 1 }, "spec": spec }))
}

fn verdict(p: &Policy, object: Value, params: Value) -> Option<String> {
    let request = json!({ "operation": "CREATE" });
    let namespace = json!({ "metadata": { "name": "team-a" } });
    let base = base_context(Some(&object), None, &request, Some(&namespace));
    match evaluate_one(p, &base, Some(&params)) {
        Verdict::Admit => None,
        Verdict::Deny { message, .. } => Some(message),
    }
}

#[test]
fn verdicts_follow_conditions_variables_messages_and_failure_policy() {
    let p = policy(json!({
        "matchConditions": [{ "name": "not-team-b", "expression": "namespaceObject.metadata.name != 'team-b'" }],
        "variables": [{ "name": "limit", "expression": "has(params.max) ? int(params.max) : 5" }],
        "validations": [
            { "expression": "object.spec.replicas <= variables.limit",
              "messageExpression": "'replicas ' + string(object.spec.replicas) + ' > ' + string(variables.limit)" },
            { "expression": "object.metadata.name != 'bad'", "message": "bad name" },
            { "expression": "object.metadata.name != 'worse'" },
        ],
    }));
    let obj = |name: &str, replicas: i64| json!({ "metadata": { "name": name }, "spec": { "replicas": replicas } });
    assert_eq!(verdict(&p, obj("ok", 5), json!({})), None);
    assert_eq!(verdict(&p, obj("ok", 6), json!({})).as_deref(), Some("replicas 6 > 5"));
    assert_eq!(verdict(&p, obj("ok", 6), json!({ "max": "10" })), None);
    assert_eq!(verdict(&p, obj("bad", 1), json!({})).as_deref(), Some("bad name"));
    assert_eq!(
        verdict(&p, obj("worse", 1), json!({})).as_deref(),
        Some("failed expression: object.metadata.name != 'worse'")
    );
    // A runtime error denies under the default Fail, and is ignored under Ignore.
    let erring = |policy_kind: &str| {
        policy(json!({ "failurePolicy": policy_kind, "validations": [{ "expression": "object.spec.nothere > 1" }] }))
    };
    let denied = verdict(&erring("Fail"), obj("x", 1), json!({})).unwrap_or_default();
    assert!(denied.starts_with("expression 'object.spec.nothere > 1' resulted in error: "), "{denied}");
    assert_eq!(verdict(&erring("Ignore"), obj("x", 1), json!({})), None);
}

#[test]
fn rules_match_as_kubernetes_does() {
    let m = MatchResources::from_value(&json!({
        "resourceRules": [{ "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"] }],
        "excludeResourceRules": [{ "apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["deployments"], "resourceNames": ["skip-me"] }],
    }));
    let t = |op: &'static str, resource: &str, sub: &str, name: &str| Target {
        operation: op,
        group: "apps".into(),
        version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        namespaced: true,
        name: name.into(),
    };
    let obj = json!({ "metadata": { "name": "x" } });
    let data = RequestData { object: Some(&obj), old: None, namespace: None };
    let cases = [
        (t("CREATE", "deployments", "", "x"), true),
        (t("DELETE", "deployments", "", "x"), false),
        (t("CREATE", "replicasets", "", "x"), false),
        (t("UPDATE", "deployments", "status", "x"), false),
        (t("CREATE", "deployments", "", "skip-me"), false),
    ];
    for (target, want) in cases {
        assert_eq!(m.matches(&target, &data, true), Ok(want), "{target:?}");
    }
}

#[test]
fn configurations_are_validated() {
    let info = |kind: &str| {
        berth_api::registry::find_by_kind("admissionregistration.k8s.io", "v1", kind).cloned().expect("registered")
    };
    let vap = info("ValidatingAdmissionPolicy");
    let errs = validate_configuration(
        &vap,
        &json!({ "spec": {
            "failurePolicy": "Sometimes",
            "matchConstraints": { "resourceRules": [] },
            "validations": [{ "expression": "object.spec.replicas <=" }, { "expression": "" }],
        }}),
    );
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|e| e.starts_with("spec.failurePolicy: Unsupported value: \"Sometimes\"")), "{text:?}");
    assert!(text.iter().any(|e| e == "spec.matchConstraints.resourceRules: Required value"), "{text:?}");
    assert!(
        text.iter().any(|e| e.starts_with(
            "spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"
        )),
        "{text:?}"
    );
    assert!(text.iter().any(|e| e == "spec.validations[1].expression: Required value"), "{text:?}");
    let binding = info("ValidatingAdmissionPolicyBinding");
    let errs = validate_configuration(
        &binding,
        &json!({ "spec": { "validationActions": ["Deny", "Warn", "Nope"], "paramRef": { "name": "x" } } }),
    );
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|e| e == "spec.policyName: Required value"), "{text:?}");
    assert!(text.iter().any(|e| e.starts_with("spec.validationActions[2]: Unsupported value: \"Nope\"")), "{text:?}");
    assert!(text.iter().any(|e| e.contains("must not contain both Deny and Warn")), "{text:?}");
    assert!(text.iter().any(|e| e == "spec.paramRef.parameterNotFoundAction: Required value"), "{text:?}");
}

/// The in-process cost of bound policies on a Deployment: the request's CEL context (made
/// once per request) and each policy's evaluation (printed; `--no-capture` shows it). Asserts the verdicts
/// only: timings are not pass/fail material.
#[test]
fn evaluation_cost_per_request() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default", "labels": { "app": "web", "tier": "front" } },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [
                { "name": "web", "image": "nginx:1.27", "ports": [{ "containerPort": 80 }],
                  "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } },
                { "name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "3600"] } ] } } },
    });
    let small = policy(json!({ "validations": [{ "expression": "object.spec.replicas <= 5" }] }));
    let larger = policy(json!({ "validations": [
        { "expression": "object.spec.replicas <= 5" },
        { "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))" },
        { "expression": "has(object.metadata.labels) ? size(object.metadata.labels) < 64 : true" },
    ] }));
    let n = 2000;
    let request = json!({ "operation": "CREATE" });
    let start = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(base_context(Some(&deployment), None, &request, None));
    }
    eprintln!("request context (JSON -> CEL of the Deployment): {:?} ({n} runs)", start.elapsed() / n);
    let base = base_context(Some(&deployment), None, &request, None);
    for (what, p) in [("1 expression", &small), ("3 expressions", &larger)] {
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(matches!(evaluate_one(p, &base, None), Verdict::Admit));
        }
        eprintln!("policy with {what}: {:?} per evaluation ({n} runs)", start.elapsed() / n);
    }
}

#[test]
fn comprehensions_keep_their_meaning_once_metered() {
    let obj = json!({ "items": [0, 1, 2, 3] });
    let cases: &[(&str, cel::Value)] = &[
        ("object.items.map(x, x * 2) == [0, 2, 4, 6]", cel::Value::Bool(true)),
        ("object.items.map(x, x > 1, x) == [2, 3]", cel::Value::Bool(true)),
        ("object.items.filter(x, x % 2 == 1) == [1, 3]", cel::Value::Bool(true)),
        ("object.items.all(x, x >= 0)", cel::Value::Bool(true)),
        ("object.items.exists_one(x, x == 2)", cel::Value::Bool(true)),
        // An error beside a deciding element is absorbed, as in cel-go.
        ("object.items.exists(x, 6 / x == 2)", cel::Value::Bool(true)),
        ("object.items.all(x, object.items.exists(y, y == x))", cel::Value::Bool(true)),
        ("{'a': 1, 'b': 2}.all(k, k.size() == 1)", cel::Value::Bool(true)),
    ];
    for (source, want) in cases {
        assert_eq!(eval(source, obj.clone()).as_ref(), Ok(want), "{source}");
    }
}

#[test]
fn a_runaway_comprehension_is_cancelled_by_its_budget() {
    let items: Vec<i64> = (0..200).collect();
    let obj = json!({ "items": items });
    // 200 iterations of a small step: well within the budget.
    assert_eq!(eval("object.items.all(x, x < 1000)", obj.clone()), Ok(cel::Value::Bool(true)));
    // 200³ iterations are not: cancelled, whatever the comprehensions' kinds.
    for source in [
        "object.items.all(a, object.items.all(b, object.items.all(c, a + b + c >= 0)))",
        "object.items.map(a, object.items.map(b, object.items.filter(c, c == a + b))).size() > 0",
        "object.items.exists(a, object.items.exists(b, object.items.exists(c, a + b + c < 0)))",
    ] {
        assert_eq!(eval(source, obj.clone()), Err(cost::EXCEEDED.to_string()), "{source}");
    }
    // The budget is per expression: the next one starts afresh.
    let budget = cost::Budget::new(10);
    assert!(budget.charge(10));
    assert!(!budget.charge(1));
    assert!(budget.exceeded());
    budget.reset();
    assert!(!budget.exceeded() && budget.charge(10));
}

#[test]
fn a_policy_over_budget_follows_its_failure_policy() {
    let items: Vec<i64> = (0..200).collect();
    let runaway = "object.items.all(a, object.items.all(b, object.items.all(c, a != b || b != c || c >= 0)))";
    let closed = policy(json!({ "validations": [{ "expression": runaway }] }));
    assert_eq!(
        verdict(&closed, json!({ "items": items }), json!({})),
        Some(format!("expression '{runaway}' resulted in error: {}", cost::EXCEEDED))
    );
    let open = policy(json!({ "failurePolicy": "Ignore", "validations": [{ "expression": runaway }] }));
    assert_eq!(verdict(&open, json!({ "items": items }), json!({})), None);
}

#[test]
fn the_authorizer_library_asks_the_authorizer_for_the_user() {
    use crate::authn::UserInfo;
    use crate::authz::{Authorizer, Modes};
    let request = json!({ "operation": "CREATE" });
    let resource = authorizer::RequestResource {
        group: "apps".into(),
        resource: "deployments".into(),
        namespace: "team-a".into(),
        name: "web".into(),
        ..Default::default()
    };
    let check = |modes: &str, user: UserInfo, source: &str| -> Result<cel::Value, String> {
        let authz = Arc::new(Authorizer::new(modes.parse::<Modes>().unwrap()));
        let base = base_context(None, None, &request, None).with_authorizer(authz, user, &resource);
        let expr = Expr::compile(source);
        let cx = base.cx.new_inner_scope();
        expr.eval(&cx, &base.budget)
    };
    let alice = || UserInfo::new("alice", []);
    let admin = || UserInfo::new("root", ["system:masters".to_string()]);
    let secrets = "authorizer.group('').resource('secrets').namespace('team-a').check('get')";
    // RBAC with no bindings: only system:masters may.
    assert_eq!(check("RBAC", alice(), &format!("{secrets}.allowed()")), Ok(cel::Value::Bool(false)));
    assert_eq!(check("RBAC", admin(), &format!("{secrets}.allowed()")), Ok(cel::Value::Bool(true)));
    assert_eq!(check("AlwaysAllow", alice(), &format!("{secrets}.allowed()")), Ok(cel::Value::Bool(true)));
    for source in [
        "authorizer.requestResource.check('delete').allowed()",
        "authorizer.requestResource.subresource('scale').check('update').allowed()",
        "authorizer.path('/healthz').check('get').allowed()",
        "authorizer.group('apps').resource('deployments').name('web').namespace('b').check('list').allowed()",
    ] {
        assert_eq!(check("RBAC", admin(), source), Ok(cel::Value::Bool(true)), "{source}");
        assert_eq!(check("RBAC", alice(), source), Ok(cel::Value::Bool(false)), "{source}");
    }
    // A ServiceAccount check is the account's, not the requester's.
    let sa = "authorizer.serviceAccount('team-a', 'ci').group('').resource('pods').check('list').allowed()";
    assert_eq!(check("RBAC", admin(), sa), Ok(cel::Value::Bool(false)), "the requester's groups do not carry over");
    assert_eq!(check("AlwaysAllow", alice(), sa), Ok(cel::Value::Bool(true)));
    let decision = format!("{secrets}.reason() == '' && !{secrets}.errored() && {secrets}.error() == ''");
    assert_eq!(check("RBAC", alice(), &decision), Ok(cel::Value::Bool(true)));
    // Calls on the wrong kind of value are errors, not answers.
    for bad in ["authorizer.resource('pods')", "authorizer.group('').check('get')", "'x'.allowed()"] {
        assert!(check("RBAC", admin(), bad).is_err(), "{bad}");
    }
}
