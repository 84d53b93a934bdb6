//! ValidatingAdmissionPolicy end to end: the real `berth server` over HTTPS and real
//! kubectl creating policies and bindings, then Deployments and ConfigMaps that the
//! policies deny, warn about, audit, or let through.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const API: &str = "/apis/admissionregistration.k8s.io/v1";

fn create(s: &TestServer, plural: &str, obj: &Value) {
    let (code, status) = s.http_json("POST", &format!("{API}/{plural}"), Some(obj));
    assert_eq!(code, 201, "{status}");
}

/// A policy on Deployments (CREATE and UPDATE) with `spec` merged in.
fn policy(name: &str, spec: Value) -> Value {
    let mut p = json!({ "metadata": { "name": name }, "spec": {
        "matchConstraints": { "resourceRules": [{ "apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["deployments"] }] },
    } });
    for (k, v) in spec.as_object().cloned().unwrap_or_default() {
        p["spec"][k] = v;
    }
    p
}

fn binding(name: &str, policy: &str, actions: &[&str]) -> Value {
    json!({ "metadata": { "name": name }, "spec": { "policyName": policy, "validationActions": actions } })
}

fn deployment(name: &str, namespace: &str, replicas: i64) -> String {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name, "namespace": namespace },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "busybox" }] } } } })
    .to_string()
}

/// Waits until a server-side dry run of `manifest` fails (policies are read from the watch
/// cache, so a new binding takes effect a moment after it is stored); returns kubectl's stderr.
fn wait_denied(s: &TestServer, manifest: &str) -> String {
    let mut last = String::new();
    let denied = wait_until(Duration::from_secs(30), || {
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(manifest));
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success()
    });
    assert!(denied, "the policy never took effect: {last}\n{}", s.log());
    last
}

/// Waits until a server-side dry run of `manifest` succeeds.
fn wait_admitted(s: &TestServer, manifest: &str) {
    let mut last = String::new();
    let admitted = wait_until(Duration::from_secs(30), || {
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(manifest));
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success()
    });
    assert!(admitted, "the request was never admitted: {last}");
}

#[test]
fn deny_and_warn_bindings_and_a_deleted_binding_stops_enforcing() {
    let s = TestServer::start(Path::new(BIN));
    create(
        &s,
        "validatingadmissionpolicies",
        &policy("replica-limit", json!({ "validations": [{ "expression": "object.spec.replicas <= 5" }] })),
    );
    // The policy alone enforces nothing.
    s.kubectl_in_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&deployment("six", "default", 6)));
    create(&s, "validatingadmissionpolicybindings", &binding("replica-limit-deny", "replica-limit", &["Deny"]));
    let err = wait_denied(&s, &deployment("six", "default", 6));
    assert!(
        err.contains(r#"The deployments "six" is invalid: : ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-deny' denied request: failed expression: object.spec.replicas <= 5"#),
        "{err}"
    );
    // The Status as Kubernetes sends it: 422 Invalid unless the validation names a reason.
    let body: Value = serde_json::from_str(&deployment("six", "default", 6)).unwrap();
    let (code, status) = s.http_json("POST", "/apis/apps/v1/namespaces/default/deployments", Some(&body));
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "deployments.apps \"six\" is forbidden: ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-deny' denied request: failed expression: object.spec.replicas <= 5"
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&deployment("five", "default", 5)));
    // Updates are validated too (the rule lists UPDATE).
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&deployment("five", "default", 7)));
    assert!(err.contains("denied request: failed expression: object.spec.replicas <= 5"), "{err}");
    // reason Forbidden: 403 with the validation's message.
    create(
        &s,
        "validatingadmissionpolicies",
        &policy(
            "no-latest",
            json!({ "validations": [{ "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))",
                "message": "images must be pinned", "reason": "Forbidden" }] }),
        ),
    );
    create(&s, "validatingadmissionpolicybindings", &binding("no-latest", "no-latest", &["Deny"]));
    let latest = deployment("latest", "default", 1).replace("\"busybox\"", "\"busybox:latest\"");
    let err = wait_denied(&s, &latest);
    assert!(
        err.contains(r#"deployments.apps "latest" is forbidden: ValidatingAdmissionPolicy 'no-latest' with binding 'no-latest' denied request: images must be pinned"#),
        "{err}"
    );
    let (code, status) = s.http_json(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(&serde_json::from_str(&latest).unwrap()),
    );
    assert_eq!((code, status["reason"].as_str()), (403, Some("Forbidden")), "{status}");
    // Warn: kubectl prints the warning and the object is created.
    create(
        &s,
        "validatingadmissionpolicies",
        &policy(
            "replica-advice",
            json!({ "validations": [{ "expression": "object.spec.replicas >= 2",
                "messageExpression": "'only ' + string(object.spec.replicas) + ' replica(s)'" }] }),
        ),
    );
    create(&s, "validatingadmissionpolicybindings", &binding("replica-advice-warn", "replica-advice", &["Warn"]));
    let mut stderr = String::new();
    let warned = wait_until(Duration::from_secs(30), || {
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&deployment("one", "default", 1)));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr.contains("Warning:")
    });
    assert!(warned, "no warning: {stderr}");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("one", "default", 1)));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'replica-advice' with binding 'replica-advice-warn': only 1 replica(s)"),
        "{stderr}"
    );
    s.kubectl_ok(&["get", "deployment", "one"]);
    // Policies and bindings are listed by kubectl like any resource.
    let listed = s.kubectl_ok(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(listed.contains("validatingadmissionpolicy.admissionregistration.k8s.io/replica-limit"), "{listed}");
    // Deleting the binding stops the enforcement; the policy stays.
    s.kubectl_ok(&["delete", "validatingadmissionpolicybinding", "replica-limit-deny"]);
    wait_admitted(&s, &deployment("six", "default", 6));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&deployment("six", "default", 6)));
    s.kubectl_ok(&["get", "validatingadmissionpolicy", "replica-limit"]);
}

#[test]
fn params_match_conditions_failure_policies_audit_and_invalid_policies() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_policy = audit_dir.path().join("policy.yaml");
    std::fs::write(
        &audit_policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources: [{group: apps, resources: [deployments]}]\n- level: None\n",
    )
    .unwrap();
    let audit_log = audit_dir.path().join("audit.log");
    let s = TestServer::start_with(
        Path::new(BIN),
        &["--audit-policy-file", audit_policy.to_str().unwrap(), "--audit-log-path", audit_log.to_str().unwrap()],
    );
    for ns in ["team-a", "team-b"] {
        s.kubectl_ok(&["create", "namespace", ns]);
    }
    // A limit read from a ConfigMap in the request's namespace; team-b is excluded by a
    // matchCondition.
    create(
        &s,
        "validatingadmissionpolicies",
        &policy(
            "param-limit",
            json!({
                "paramKind": { "apiVersion": "v1", "kind": "ConfigMap" },
                "matchConditions": [{ "name": "not-team-b", "expression": "request.namespace != 'team-b'" }],
                "variables": [{ "name": "limit", "expression": "int(params.data.maxReplicas)" }],
                "validations": [{ "expression": "object.spec.replicas <= variables.limit",
                    "messageExpression": "'replicas must be at most ' + string(variables.limit)" }],
            }),
        ),
    );
    let mut b = binding("param-limit", "param-limit", &["Deny", "Audit"]);
    b["spec"]["paramRef"] = json!({ "name": "limits", "parameterNotFoundAction": "Deny" });
    create(&s, "validatingadmissionpolicybindings", &b);
    // kubectl's columns, as Kubernetes' printers give them.
    let table = s.kubectl_ok(&["get", "validatingadmissionpolicies", "param-limit", "--no-headers"]);
    assert_eq!(table.split_whitespace().take(3).collect::<Vec<_>>(), ["param-limit", "1", "v1/ConfigMap"], "{table}");
    let table = s.kubectl_ok(&["get", "validatingadmissionpolicybindings", "param-limit", "--no-headers"]);
    assert_eq!(
        table.split_whitespace().take(3).collect::<Vec<_>>(),
        ["param-limit", "param-limit", "*/limits"],
        "{table}"
    );
    // No ConfigMap yet: parameterNotFoundAction Deny refuses.
    let err = wait_denied(&s, &deployment("d", "team-a", 1));
    assert!(err.contains("no params found for policy binding with `Deny` parameterNotFoundAction"), "{err}");
    s.kubectl_ok(&["create", "configmap", "limits", "-n", "team-a", "--from-literal=maxReplicas=3"]);
    wait_admitted(&s, &deployment("d", "team-a", 3));
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&deployment("d", "team-a", 4)));
    assert!(
        err.contains("ValidatingAdmissionPolicy 'param-limit' with binding 'param-limit' denied request: replicas must be at most 3"),
        "{err}"
    );
    // Params are looked up before matchConditions run (they may use `params`), as in
    // Kubernetes: team-b needs its ConfigMap too, then its matchCondition skips the policy.
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&deployment("d", "team-b", 40)));
    assert!(err.contains("no params found for policy binding with `Deny` parameterNotFoundAction"), "{err}");
    s.kubectl_ok(&["create", "configmap", "limits", "-n", "team-b", "--from-literal=maxReplicas=3"]);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&deployment("d", "team-b", 40)));
    // The denial bound with Audit is in the audit event.
    let mut annotation = String::new();
    let audited = wait_until(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        annotation = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete" && e["objectRef"]["namespace"] == "team-a")
            .filter_map(|e| {
                e["annotations"]["validation.policy.admission.k8s.io/validation_failure"].as_str().map(String::from)
            })
            .find(|a| a.contains("at most 3"))
            .unwrap_or_default();
        !annotation.is_empty()
    });
    assert!(audited, "no audit annotation in {}", std::fs::read_to_string(&audit_log).unwrap_or_default());
    let failures: Value = serde_json::from_str(&annotation).unwrap();
    assert_eq!(
        failures,
        json!([{ "message": "replicas must be at most 3", "policy": "param-limit", "binding": "param-limit",
            "expressionIndex": 0, "validationActions": ["Deny", "Audit"] }])
    );

    // An expression that fails at run time: Fail denies, Ignore admits.
    for (name, failure) in [("erring-fail", "Fail"), ("erring-ignore", "Ignore")] {
        create(
            &s,
            "validatingadmissionpolicies",
            &policy(
                name,
                json!({ "failurePolicy": failure,
                    "matchConditions": [{ "name": "labelled", "expression": format!("has(object.metadata.labels) && object.metadata.labels['policy'] == '{name}'") }],
                    "validations": [{ "expression": "object.spec.nothere > 1" }] }),
            ),
        );
        create(&s, "validatingadmissionpolicybindings", &binding(name, name, &["Deny"]));
    }
    let labelled = |name: &str, policy: &str| {
        let mut d: Value = serde_json::from_str(&deployment(name, "team-b", 1)).unwrap();
        d["metadata"]["labels"] = json!({ "policy": policy });
        d.to_string()
    };
    let err = wait_denied(&s, &labelled("e1", "erring-fail"));
    assert!(
        err.contains("ValidatingAdmissionPolicy 'erring-fail' with binding 'erring-fail' denied request: expression 'object.spec.nothere > 1' resulted in error: "),
        "{err}"
    );
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&labelled("e2", "erring-ignore")));

    // Expressions that do not compile are refused at create with 422, naming the field.
    let bad = policy("bad", json!({ "validations": [{ "expression": "object.spec.replicas <=" }] }));
    let (code, status) = s.http_json("POST", &format!("{API}/validatingadmissionpolicies"), Some(&bad));
    assert_eq!(code, 422, "{status}");
    let message = status["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(r#"ValidatingAdmissionPolicy "bad" is invalid: spec.validations[0].expression: Invalid value: "object.spec.replicas <=": compilation failed: ERROR: <input>:1:"#),
        "{message}"
    );
    let mut manifest = bad.clone();
    manifest["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    manifest["kind"] = json!("ValidatingAdmissionPolicy");
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&manifest.to_string()));
    assert!(
        err.contains("spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed"),
        "{err}"
    );
    // Bad bindings too.
    let (code, status) = s.http_json(
        "POST",
        &format!("{API}/validatingadmissionpolicybindings"),
        Some(&binding("bad", "", &["Deny", "Warn"])),
    );
    assert_eq!(code, 422, "{status}");
    let message = status["message"].as_str().unwrap_or("");
    assert!(message.contains("spec.policyName: Required value"), "{message}");
    assert!(message.contains("must not contain both Deny and Warn"), "{message}");
    // Bad JSON for the rules is a 400/422, never a crash; the server still answers.
    let (code, _) = s.http_json(
        "POST",
        &format!("{API}/validatingadmissionpolicies"),
        Some(&json!({ "metadata": { "name": "junk" }, "spec": { "matchConstraints": "nope", "validations": 7 } })),
    );
    assert!(code == 400 || code == 422, "{code}");
    s.kubectl_ok(&["get", "validatingadmissionpolicies"]);
}

/// A validating webhook over HTTPS that allows everything, for the cost comparison.
struct AllowWebhook {
    client_config: Value,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for AllowWebhook {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl AllowWebhook {
    fn start() -> AllowWebhook {
        use base64::Engine;
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
        let ca = pki.ca_pem(berth_pki::CaKind::Server).unwrap();
        let leaf = pki.leaf(&berth_pki::LeafSpec::serving(&["127.0.0.1".to_string()])).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                use rustls::pki_types::pem::PemObject;
                let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(certs, key)
                    .unwrap();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => continue },
                    };
                    let (acceptor, counter) = (acceptor.clone(), counter.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            async move {
                                let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let out = json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                "response": { "uid": review["request"]["uid"], "allowed": true } });
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(out.to_string())))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        let client_config = json!({ "url": format!("https://{addr}/allow"),
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca) });
        AllowWebhook { client_config, calls, stop: Some(stop_tx), thread: Some(thread), _dir: dir }
    }
}

/// p50 and p99 of `samples`, in microseconds.
/// A policy on ConfigMaps (CREATE and UPDATE) with `spec` merged in.
fn configmap_policy(name: &str, spec: Value) -> Value {
    let mut p = policy(name, spec);
    p["spec"]["matchConstraints"]["resourceRules"] = json!([{ "apiGroups": [""], "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"] }]);
    p
}

fn configmap(name: &str, keys: usize) -> String {
    let data: serde_json::Map<String, Value> = (0..keys).map(|i| (format!("k{i}"), json!("v"))).collect();
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "team-a" }, "data": data })
        .to_string()
}

/// A server-side dry run of `manifest` as `user` (impersonated by the admin): kubectl's
/// stderr, empty when admitted.
fn dry_run_as(s: &TestServer, user: &str, manifest: &str) -> String {
    let out = s.kubectl_stdin(&["apply", "--dry-run=server", "--as", user, "-f", "-"], Some(manifest));
    if out.status.success() { String::new() } else { String::from_utf8_lossy(&out.stderr).into_owned() }
}

#[test]
fn the_authorizer_answers_for_the_requester_and_a_runaway_expression_is_cancelled() {
    let s = TestServer::start(Path::new(BIN));
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    // alice may write ConfigMaps in team-a; bob may also read its Secrets.
    s.kubectl_ok(&[
        "create",
        "role",
        "cm-writer",
        "-n",
        "team-a",
        "--verb=get,create,update,patch",
        "--resource=configmaps",
    ]);
    s.kubectl_ok(&["create", "role", "secret-reader", "-n", "team-a", "--verb=get", "--resource=secrets"]);
    for user in ["alice", "bob"] {
        s.kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("{user}-cm"),
            "-n",
            "team-a",
            "--role=cm-writer",
            "--user",
            user,
        ]);
    }
    s.kubectl_ok(&["create", "rolebinding", "bob-secrets", "-n", "team-a", "--role=secret-reader", "--user=bob"]);
    // Only those who can read the namespace's Secrets may write its ConfigMaps.
    create(
        &s,
        "validatingadmissionpolicies",
        &configmap_policy(
            "secret-readers-only",
            json!({
                "validations": [{
                    "expression": "authorizer.group('').resource('secrets').namespace(request.namespace).check('get').allowed()",
                    "messageExpression": "request.userInfo.username + ' cannot get secrets in ' + request.namespace",
                    "reason": "Forbidden",
                }, {
                    "expression": "authorizer.requestResource.check('patch').allowed() && !authorizer.requestResource.check('delete').allowed()",
                    "message": "writers of ConfigMaps may patch them and not delete them",
                }],
            }),
        ),
    );
    create(&s, "validatingadmissionpolicybindings", &binding("secret-readers-only", "secret-readers-only", &["Deny"]));
    let cm = configmap("settings", 3);
    let mut denied = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            denied = dry_run_as(&s, "alice", &cm);
            !denied.is_empty()
        }),
        "alice was never refused
{}",
        s.log()
    );
    assert!(
        denied.contains("ValidatingAdmissionPolicy 'secret-readers-only' with binding 'secret-readers-only' denied request: alice cannot get secrets in team-a"),
        "{denied}"
    );
    assert!(denied.contains("(Forbidden)") || denied.contains("forbidden"), "{denied}");
    assert_eq!(dry_run_as(&s, "bob", &cm), "", "bob reads secrets: admitted");
    // The admin may delete ConfigMaps: the second validation refuses it.
    let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(&cm));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writers of ConfigMaps may patch them and not delete them"), "{err}");
    s.kubectl_ok(&["delete", "validatingadmissionpolicybinding", "secret-readers-only"]);

    // A runaway comprehension: 200³ iterations over the ConfigMap's keys pass the cost
    // budget; the request fails per failurePolicy (Fail), and a small ConfigMap passes.
    let runaway = "object.data.all(a, object.data.all(b, object.data.all(c, a != b || b != c || c == a)))";
    create(
        &s,
        "validatingadmissionpolicies",
        &configmap_policy("runaway", json!({ "validations": [{ "expression": runaway }] })),
    );
    create(&s, "validatingadmissionpolicybindings", &binding("runaway", "runaway", &["Deny"]));
    let big = configmap("big", 200);
    let err = wait_denied(&s, &big);
    assert!(
        err.contains(&format!(
            "ValidatingAdmissionPolicy 'runaway' with binding 'runaway' denied request: expression '{runaway}' resulted in error: operation cancelled: actual cost limit exceeded"
        )),
        "{err}"
    );
    wait_admitted(&s, &configmap("small", 3));
    // failurePolicy Ignore lets it through.
    s.kubectl_ok(&[
        "patch",
        "validatingadmissionpolicy",
        "runaway",
        "--type=merge",
        "-p",
        r#"{"spec":{"failurePolicy":"Ignore"}}"#,
    ]);
    wait_admitted(&s, &big);
}

fn percentiles(mut samples: Vec<Duration>) -> (u128, u128) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_micros();
    (at(0.50), at(0.99))
}

/// Latencies of `n` server-side dry-run creates of a Deployment over one kube-rs client
/// (kept-alive HTTPS); every one must answer `want`.
fn dry_run_creates(s: &TestServer, rt: &tokio::runtime::Runtime, n: usize, want: u16) -> Vec<Duration> {
    let body = deployment("bench", "default", 3).into_bytes();
    rt.block_on(async {
        let client = s.kube_client().await;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + 20 {
            let req = hyper::Request::post("/apis/apps/v1/namespaces/default/deployments?dryRun=All")
                .header("content-type", "application/json")
                .body(body.clone())
                .unwrap();
            let start = std::time::Instant::now();
            let resp = client.send(req.map(kube::client::Body::from)).await.expect("request");
            let code = resp.status().as_u16();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if i >= 20 {
                samples.push(start.elapsed());
            }
            assert_eq!(code, want, "request {i}");
        }
        samples
    })
}

/// The cost per request of bound policies against no admission configuration and against
/// one validating webhook (printed; `--no-capture` shows it, BENCHMARKS.md records it).
/// Asserts only the verdicts: timings on a shared machine are not pass/fail material.
#[test]
fn cost_per_request_of_bound_policies_and_of_a_webhook() {
    let n: usize = std::env::var("BERTH_VAP_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = TestServer::start(Path::new(BIN));
    let mut rows = Vec::new();
    rows.push(("none", percentiles(dry_run_creates(&s, &rt, n, 201))));
    let validation = json!({ "validations": [{ "expression": "object.spec.replicas <= 5" }] });
    create(&s, "validatingadmissionpolicies", &policy("p0", validation.clone()));
    create(&s, "validatingadmissionpolicybindings", &binding("p0", "p0", &["Deny"]));
    wait_denied(&s, &deployment("bench", "default", 6));
    rows.push(("1 policy (replicas <= 5)", percentiles(dry_run_creates(&s, &rt, n, 201))));
    for i in 1..10 {
        let name = format!("p{i}");
        let spec = json!({ "validations": [
            { "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))" },
            { "expression": "has(object.metadata.labels) ? size(object.metadata.labels) < 64 : true" },
            { "expression": format!("object.metadata.name != 'forbidden-{i}'") },
        ] });
        create(&s, "validatingadmissionpolicies", &policy(&name, spec));
        create(&s, "validatingadmissionpolicybindings", &binding(&name, &name, &["Deny"]));
    }
    let ninth = deployment("forbidden-9", "default", 1);
    wait_denied(&s, &ninth);
    rows.push(("10 policies (28 expressions)", percentiles(dry_run_creates(&s, &rt, n, 201))));
    for i in 0..10 {
        s.kubectl_ok(&["delete", "validatingadmissionpolicybinding", &format!("p{i}")]);
    }
    wait_admitted(&s, &ninth);
    let hook = AllowWebhook::start();
    create(
        &s,
        "validatingwebhookconfigurations",
        &json!({ "metadata": { "name": "allow" }, "webhooks": [{ "name": "allow.berth.test",
            "clientConfig": hook.client_config,
            "rules": [{ "operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"] }],
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] }),
    );
    // The webhook is in effect once a dry run reaches it.
    let reached = wait_until(Duration::from_secs(30), || {
        wait_admitted(&s, &deployment("bench", "default", 3));
        hook.calls.load(std::sync::atomic::Ordering::Relaxed) > 0
    });
    assert!(reached, "the webhook was never called");
    rows.push(("1 validating webhook (allow)", percentiles(dry_run_creates(&s, &rt, n, 201))));
    assert!(hook.calls.load(std::sync::atomic::Ordering::Relaxed) >= n);
    eprintln!("dry-run create of a Deployment, {n} requests each, one kept-alive HTTPS client:");
    for (what, (p50, p99)) in rows {
        eprintln!("  {what:<30} p50 {p50:>6} µs  p99 {p99:>6} µs");
    }
}

const LIMITS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: replicalimits.policy.berth.test
spec:
  group: policy.berth.test
  scope: Cluster
  names: { plural: replicalimits, singular: replicalimit, kind: ReplicaLimit }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          maxReplicas: { type: integer }
"#;

/// Params from custom resources chosen by a label selector: every selected param must pass,
/// none selected with `Allow` admits; the policy can also validate the objects' deletion.
#[test]
fn params_from_custom_resources_by_selector_and_deletes() {
    let s = TestServer::start(Path::new(BIN));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(LIMITS_CRD));
    let limit = |name: &str, max: i64, tier: &str| {
        json!({ "apiVersion": "policy.berth.test/v1", "kind": "ReplicaLimit",
            "metadata": { "name": name, "labels": { "tier": tier } }, "maxReplicas": max })
        .to_string()
    };
    let mut created = false;
    assert!(wait_until(Duration::from_secs(30), || {
        created = s.kubectl_stdin(&["apply", "-f", "-"], Some(&limit("loose", 8, "web"))).status.success();
        created
    }));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&limit("strict", 4, "web")));
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&limit("other", 1, "batch")));
    create(
        &s,
        "validatingadmissionpolicies",
        &policy(
            "crd-limit",
            json!({
                "paramKind": { "apiVersion": "policy.berth.test/v1", "kind": "ReplicaLimit" },
                "validations": [{ "expression": "object.spec.replicas <= params.maxReplicas",
                    "messageExpression": "'limit ' + params.metadata.name + ' allows ' + string(params.maxReplicas)" }],
            }),
        ),
    );
    let mut b = binding("crd-limit", "crd-limit", &["Deny"]);
    b["spec"]["paramRef"] =
        json!({ "selector": { "matchLabels": { "tier": "web" } }, "parameterNotFoundAction": "Allow" });
    create(&s, "validatingadmissionpolicybindings", &b);
    // 5 passes "loose" (8) but not "strict" (4): denied by the strict one.
    let err = wait_denied(&s, &deployment("web", "default", 5));
    assert!(err.contains("denied request: limit strict allows 4"), "{err}");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&deployment("web", "default", 4)));
    // No param selected, Allow: the binding does not apply.
    s.kubectl_ok(&["label", "replicalimit", "strict", "loose", "tier=none", "--overwrite"]);
    wait_admitted(&s, &deployment("web", "default", 9));

    // A policy on DELETE sees oldObject (object is null).
    create(
        &s,
        "validatingadmissionpolicies",
        &json!({ "metadata": { "name": "keep-protected" }, "spec": {
            "matchConstraints": { "resourceRules": [{ "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["DELETE"], "resources": ["configmaps"] }] },
            "validations": [{ "expression": "object == null && !(has(oldObject.metadata.labels) && 'protected' in oldObject.metadata.labels)",
                "message": "protected configmaps are not deleted" }] } }),
    );
    create(&s, "validatingadmissionpolicybindings", &binding("keep-protected", "keep-protected", &["Deny"]));
    s.kubectl_ok(&["create", "configmap", "keep"]);
    s.kubectl_ok(&["label", "configmap", "keep", "protected=yes"]);
    s.kubectl_ok(&["create", "configmap", "drop"]);
    let mut err = String::new();
    assert!(wait_until(Duration::from_secs(30), || {
        let out = s.kubectl(&["delete", "configmap", "keep", "--dry-run=server"]);
        err = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success()
    }));
    assert!(err.contains("protected configmaps are not deleted"), "{err}");
    s.kubectl_ok(&["delete", "configmap", "drop"]);
    s.kubectl_ok(&["get", "configmap", "keep"]);
}
