//! Admission webhooks end to end: the real `berth server` over HTTPS, real kubectl, and
//! a webhook HTTPS server started by the test (its CA in `caBundle`) that denies,
//! patches, records or stalls, and keeps every AdmissionReview it receives.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// The test's webhook server: `/deny`, `/patch`, `/allow`, `/slow` (5 s), `/baduid`.
struct Hooks {
    addr: SocketAddr,
    ca_bundle: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Hooks {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(path: &str, review: &Value) -> Value {
    let uid = review["request"]["uid"].as_str().unwrap_or("").to_string();
    let mut response = json!({ "uid": uid, "allowed": true });
    match path {
        "/deny" => {
            response["allowed"] = json!(false);
            response["status"] =
                json!({ "code": 403, "reason": "Forbidden", "message": "configmaps labelled deny are refused" });
        }
        "/patch" => {
            let mut labels = review["request"]["object"]["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels["patched"] = json!("yes");
            let patch = json!([{ "op": "add", "path": "/metadata/labels", "value": labels }]);
            use base64::Engine;
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
            response["warnings"] = json!(["patched by the test webhook"]);
        }
        "/allow" => {
            response["auditAnnotations"] = json!({ "seen": "yes" });
        }
        "/baduid" => {
            response["uid"] = json!("not-the-uid");
        }
        _ => {}
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

impl Hooks {
    fn start() -> Hooks {
        let dir = tempfile::tempdir().unwrap();
        let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
        let ca = pki.ca_pem(berth_pki::CaKind::Server).unwrap();
        let leaf = pki
            .leaf(&berth_pki::LeafSpec::serving(&["127.0.0.1".to_string(), "webhook.default.svc".to_string()]))
            .unwrap();
        use base64::Engine;
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&ca);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let recorded = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                use rustls::pki_types::pem::PemObject;
                let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(certs, key)
                    .unwrap();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::pin!(stop_rx);
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => match accepted { Ok((tcp, _)) => tcp, Err(_) => continue },
                    };
                    let (acceptor, recorded) = (acceptor.clone(), recorded.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let recorded = recorded.clone();
                            async move {
                                let path = req.uri().path().to_string();
                                let query = req.uri().query().unwrap_or("").to_string();
                                let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                                let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                                let mut record = review.clone();
                                record["query"] = json!(query);
                                recorded.lock().unwrap().push((path.clone(), record));
                                if path == "/slow" {
                                    tokio::time::sleep(Duration::from_secs(5)).await;
                                }
                                let out = answer(&path, &review).to_string();
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(out)))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Hooks { addr, ca_bundle, seen, stop: Some(stop_tx), thread: Some(thread), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn client_config(&self, path: &str) -> Value {
        json!({ "url": self.url(path), "caBundle": self.ca_bundle })
    }

    /// The reviews received on `path`.
    fn reviews(&self, path: &str) -> Vec<Value> {
        self.seen.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, r)| r.clone()).collect()
    }

    fn all(&self) -> Vec<Value> {
        self.seen.lock().unwrap().iter().map(|(_, r)| r.clone()).collect()
    }
}

fn rule(operations: &[&str], resources: &[&str]) -> Value {
    json!({ "operations": operations, "apiGroups": ["*"], "apiVersions": ["*"], "resources": resources })
}

fn create(s: &TestServer, plural: &str, obj: &Value) {
    let (code, body) = s.http_json("POST", &format!("/apis/admissionregistration.k8s.io/v1/{plural}"), Some(obj));
    assert_eq!(code, 201, "{body}");
}

fn configmap(name: &str, labels: Value) -> String {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": labels }, "data": { "k": "v" } })
        .to_string()
}

#[test]
fn webhooks_deny_patch_and_see_who_asks_what() {
    let s = TestServer::start(Path::new(BIN));
    let hooks = Hooks::start();
    s.kubectl_ok(&["create", "namespace", "hooked"]);
    s.kubectl_ok(&["label", "namespace", "hooked", "webhooks=on"]);
    s.kubectl_ok(&["create", "namespace", "plain"]);
    let on = json!({ "matchLabels": { "webhooks": "on" } });
    create(
        &s,
        "validatingwebhookconfigurations",
        &json!({ "metadata": { "name": "deny" }, "webhooks": [{
            "name": "deny.berth.test", "clientConfig": hooks.client_config("/deny"),
            "rules": [rule(&["CREATE"], &["configmaps"])], "namespaceSelector": on,
            "objectSelector": { "matchExpressions": [{ "key": "deny", "operator": "Exists" }] },
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] }),
    );
    create(
        &s,
        "validatingwebhookconfigurations",
        &json!({ "metadata": { "name": "record" }, "webhooks": [{
            "name": "record.berth.test", "clientConfig": hooks.client_config("/allow"),
            "rules": [rule(&["UPDATE", "DELETE"], &["*"])], "namespaceSelector": on,
            "sideEffects": "NoneOnDryRun", "admissionReviewVersions": ["v1", "v1beta1"] }] }),
    );
    // Runs before "patch" (configurations in name order) and again after it changed the object.
    create(
        &s,
        "mutatingwebhookconfigurations",
        &json!({ "metadata": { "name": "a-reinvoked" }, "webhooks": [{
            "name": "reinvoked.berth.test", "clientConfig": hooks.client_config("/reinvoke"),
            "rules": [rule(&["CREATE"], &["configmaps"])], "reinvocationPolicy": "IfNeeded",
            "objectSelector": { "matchLabels": { "again": "yes" } },
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] }),
    );
    create(
        &s,
        "mutatingwebhookconfigurations",
        &json!({ "metadata": { "name": "patch" }, "webhooks": [{
            "name": "patch.berth.test", "clientConfig": hooks.client_config("/patch"),
            "rules": [rule(&["CREATE", "UPDATE"], &["configmaps"])], "namespaceSelector": on,
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] }),
    );
    // The server follows the configurations through its watch cache: wait until it denies.
    let denied = configmap("denied", json!({ "deny": "yes" }));
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = s.kubectl_stdin(&["create", "-n", "hooked", "--dry-run=server", "-f", "-"], Some(&denied));
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            !out.status.success()
        }),
        "the deny webhook never took effect: {last}\n{}",
        s.log()
    );
    let err = s.kubectl_err(&["create", "-n", "hooked", "-f", "-"], Some(&denied));
    assert!(
        err.contains(r#"admission webhook "deny.berth.test" denied the request: configmaps labelled deny are refused"#),
        "{err}"
    );
    assert!(err.contains("Forbidden"), "{err}");
    let (code, status) = s.http_json("GET", "/api/v1/namespaces/hooked/configmaps/denied", None);
    assert_eq!(code, 404, "{status}");
    // The same object where the namespaceSelector does not select is created, untouched.
    s.kubectl_in_ok(&["create", "-n", "plain", "-f", "-"], Some(&denied));
    let (_, plain) = s.http_json("GET", "/api/v1/namespaces/plain/configmaps/denied", None);
    assert_eq!(plain["metadata"]["labels"], json!({ "deny": "yes" }));
    assert!(hooks.all().iter().all(|r| r["request"]["namespace"] != "plain"));
    // objectSelector: without the deny label the deny webhook is not asked; the patch applies.
    let before = hooks.reviews("/deny").len();
    let out =
        s.kubectl_stdin(&["create", "-n", "hooked", "-f", "-"], Some(&configmap("patched", json!({ "app": "a" }))));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("patched by the test webhook"));
    assert_eq!(hooks.reviews("/deny").len(), before);
    let (_, stored) = s.http_json("GET", "/api/v1/namespaces/hooked/configmaps/patched", None);
    assert_eq!(stored["metadata"]["labels"], json!({ "app": "a", "patched": "yes" }));
    // What the patch webhook was sent for that create.
    let review = hooks.reviews("/patch").into_iter().rev().find(|r| r["request"]["name"] == "patched").unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["query"], "timeout=10s");
    let req = &review["request"];
    assert_eq!(req["operation"], "CREATE");
    assert_eq!(req["kind"], json!({ "group": "", "version": "v1", "kind": "ConfigMap" }));
    assert_eq!(req["resource"], json!({ "group": "", "version": "v1", "resource": "configmaps" }));
    assert_eq!(req["namespace"], "hooked");
    assert_eq!(req["userInfo"]["username"], "system:admin");
    assert_eq!(req["userInfo"]["groups"], json!(["system:masters", "system:authenticated"]));
    assert_eq!(req["object"]["data"], json!({ "k": "v" }));
    assert_eq!(req["oldObject"], Value::Null);
    assert_eq!(req["dryRun"], false);
    assert_eq!(req["options"]["kind"], "CreateOptions");
    assert!(req["uid"].as_str().is_some_and(|u| u.len() == 36));
    // reinvocationPolicy IfNeeded: called again once the patch webhook changed the object.
    s.kubectl_in_ok(&["create", "-n", "hooked", "-f", "-"], Some(&configmap("again", json!({ "again": "yes" }))));
    let calls: Vec<Value> =
        hooks.reviews("/reinvoke").into_iter().filter(|r| r["request"]["name"] == "again").collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["request"]["object"]["metadata"]["labels"], json!({ "again": "yes" }));
    assert_eq!(calls[1]["request"]["object"]["metadata"]["labels"], json!({ "again": "yes", "patched": "yes" }));
    // UPDATE (a patch) as someone else: oldObject and object, the impersonated user.
    s.kubectl_ok(&[
        "label",
        "configmap",
        "patched",
        "-n",
        "hooked",
        "extra=1",
        "--as",
        "bob",
        "--as-group",
        "system:masters",
    ]);
    let update = hooks.reviews("/allow").into_iter().rev().find(|r| r["request"]["operation"] == "UPDATE").unwrap();
    let req = &update["request"];
    assert_eq!(req["name"], "patched");
    assert_eq!(req["userInfo"]["username"], "bob");
    assert_eq!(req["oldObject"]["metadata"]["labels"], json!({ "app": "a", "patched": "yes" }));
    assert_eq!(req["object"]["metadata"]["labels"], json!({ "app": "a", "patched": "yes", "extra": "1" }));
    assert_eq!(req["options"]["kind"], "PatchOptions");
    // DELETE: the old object, no object.
    s.kubectl_ok(&["delete", "configmap", "patched", "-n", "hooked"]);
    let delete = hooks.reviews("/allow").into_iter().rev().find(|r| r["request"]["operation"] == "DELETE").unwrap();
    assert_eq!(delete["request"]["oldObject"]["metadata"]["name"], "patched");
    assert_eq!(delete["request"]["object"], Value::Null);
    assert_eq!(delete["request"]["options"]["kind"], "DeleteOptions");
    // The webhook configurations themselves are never sent, though "*" matches them.
    s.kubectl_ok(&["label", "validatingwebhookconfiguration", "deny", "touched=yes"]);
    s.kubectl_ok(&["label", "namespace", "hooked", "touched=yes"]);
    assert!(wait_until(Duration::from_secs(30), || hooks
        .reviews("/allow")
        .iter()
        .any(|r| r["request"]["resource"]["resource"] == "namespaces")));
    assert!(hooks.all().iter().all(|r| r["request"]["resource"]["group"] != "admissionregistration.k8s.io"));
}

#[test]
fn failing_webhooks_fail_closed_or_open_and_configurations_are_validated() {
    // Audited, to see the fail-open annotation.
    let audit_dir = tempfile::tempdir().unwrap();
    let policy = audit_dir.path().join("policy.yaml");
    std::fs::write(&policy, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources: [{group: \"\", resources: [configmaps]}]\n- level: None\n").unwrap();
    let audit_log = audit_dir.path().join("audit.log");
    let s = TestServer::start_with(
        Path::new(BIN),
        &["--audit-policy-file", policy.to_str().unwrap(), "--audit-log-path", audit_log.to_str().unwrap()],
    );
    let hooks = Hooks::start();
    let hook = |name: &str, path: &str, policy: &str, selector: Value| {
        json!({ "name": name, "clientConfig": hooks.client_config(path), "rules": [rule(&["CREATE"], &["configmaps"])],
            "objectSelector": { "matchLabels": selector }, "failurePolicy": policy, "timeoutSeconds": 1,
            "sideEffects": "None", "admissionReviewVersions": ["v1"] })
    };
    create(
        &s,
        "validatingwebhookconfigurations",
        &json!({ "metadata": { "name": "failing" }, "webhooks": [
            hook("slow-fail.berth.test", "/slow", "Fail", json!({ "slow": "fail" })),
            hook("slow-ignore.berth.test", "/slow", "Ignore", json!({ "slow": "ignore" })),
            hook("bad-uid.berth.test", "/baduid", "Fail", json!({ "bad": "uid" })),
        ] }),
    );
    let slow_fail = configmap("slow-fail", json!({ "slow": "fail" }));
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = s.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&slow_fail));
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            !out.status.success()
        }),
        "the failing webhook never took effect: {last}\n{}",
        s.log()
    );
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&slow_fail));
    let expect = format!(
        r#"Internal error occurred: failed calling webhook "slow-fail.berth.test": failed to call webhook: Post "{}?timeout=1s": context deadline exceeded"#,
        hooks.url("/slow")
    );
    assert!(err.contains(&expect), "{err}");
    let (code, _) = s.http_json("GET", "/api/v1/namespaces/default/configmaps/slow-fail", None);
    assert_eq!(code, 404);
    // Ignore: the call fails the same way, the create goes on.
    s.kubectl_in_ok(&["create", "-f", "-"], Some(&configmap("slow-ignore", json!({ "slow": "ignore" }))));
    let (code, _) = s.http_json("GET", "/api/v1/namespaces/default/configmaps/slow-ignore", None);
    assert_eq!(code, 200);
    let mut annotations = Value::Null;
    assert!(wait_until(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        annotations = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| {
                e["verb"] == "create" && e["objectRef"]["name"] == "slow-ignore" && e["stage"] == "ResponseComplete"
            })
            .map(|e| e["annotations"].clone())
            .unwrap_or(Value::Null);
        !annotations.is_null()
    }));
    assert_eq!(
        annotations["failed-open.validating.webhook.admission.k8s.io/round_0_index_1"],
        "slow-ignore.berth.test"
    );
    // An answer to another request is a failed call.
    let body: Value = serde_json::from_str(&configmap("bad-uid", json!({ "bad": "uid" }))).unwrap();
    let (code, status) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&body));
    assert_eq!(code, 500, "{status}");
    assert_eq!(status["reason"], "InternalError");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"Internal error occurred: failed calling webhook "bad-uid.berth.test": received invalid webhook response: expected response.uid="#),
        "{message}"
    );
    // Objects no webhook selects are not sent anywhere.
    let before = hooks.all().len();
    s.kubectl_in_ok(&["create", "-f", "-"], Some(&configmap("quiet", json!({}))));
    assert_eq!(hooks.all().len(), before);
    // A webhook with side effects may not be configured (v1), so dry runs never reach one.
    let bad = json!({ "metadata": { "name": "bad" }, "webhooks": [{
        "name": "effects.berth.test", "clientConfig": hooks.client_config("/allow"),
        "rules": [rule(&["CREATE"], &["configmaps"])], "sideEffects": "Unknown", "admissionReviewVersions": ["v2"] }] });
    let (code, status) =
        s.http_json("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", Some(&bad));
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        r#"ValidatingWebhookConfiguration "bad" is invalid: [webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1, webhooks[0].sideEffects: Unsupported value: "Unknown": supported values: "None", "NoneOnDryRun"]"#
    );
    let err = s.kubectl_err(
        &["create", "-f", "-"],
        Some(
            &json!({ "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": { "name": "bad" }, "webhooks": [{ "name": "nodots", "clientConfig": { "url": "http://127.0.0.1/" },
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] })
            .to_string(),
        ),
    );
    assert!(err.contains(r#"webhooks[0].name: Invalid value: "nodots": should be a domain with at least three segments separated by dots"#), "{err}");
    assert!(err.contains(r#"webhooks[0].clientConfig.url: Invalid value: "http://127.0.0.1/": 'https' is the only allowed URL scheme"#), "{err}");
}

#[test]
fn a_service_reference_reaches_the_webhook_through_its_endpoints() {
    let s = TestServer::start(Path::new(BIN));
    let hooks = Hooks::start();
    let port = hooks.addr.port();
    create(
        &s,
        "validatingwebhookconfigurations",
        &json!({ "metadata": { "name": "by-service" }, "webhooks": [{
            "name": "service.berth.test",
            "clientConfig": { "service": { "namespace": "default", "name": "webhook", "path": "/deny" }, "caBundle": hooks.ca_bundle },
            "rules": [rule(&["CREATE"], &["configmaps"])],
            "objectSelector": { "matchExpressions": [{ "key": "deny", "operator": "Exists" }] },
            "sideEffects": "None", "admissionReviewVersions": ["v1"] }] }),
    );
    let denied = configmap("denied", json!({ "deny": "yes" }));
    // No Service yet: the call fails, and failurePolicy Fail refuses the create.
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = s.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&denied));
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            !out.status.success()
        }),
        "the webhook never took effect: {last}"
    );
    assert!(last.contains(r#"failed calling webhook "service.berth.test""#), "{last}");
    assert!(last.contains(r#"service "default/webhook" not found"#), "{last}");
    let svc = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "webhook" },
        "spec": { "ports": [{ "name": "https", "port": 443, "targetPort": port }] } });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc));
    assert_eq!(code, 201, "{body}");
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&denied));
    assert!(err.contains(r#"service "default/webhook" has no ready endpoints"#), "{err}");
    let ep = json!({ "apiVersion": "v1", "kind": "Endpoints", "metadata": { "name": "webhook" },
        "subsets": [{ "addresses": [{ "ip": "127.0.0.1" }], "ports": [{ "name": "https", "port": port }] }] });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/default/endpoints", Some(&ep));
    assert_eq!(code, 201, "{body}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&denied));
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            last.contains(
                r#"admission webhook "service.berth.test" denied the request: configmaps labelled deny are refused"#,
            )
        }),
        "{last}"
    );
    // Dialled at the endpoint, verified as webhook.default.svc.
    assert!(hooks.reviews("/deny").iter().any(|r| r["request"]["name"] == "denied" && r["query"] == "timeout=10s"));
}
