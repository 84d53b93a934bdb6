//! Join tokens and node certificates end to end, on the real `berth server` over HTTPS:
//! `berth token create|list|delete`; a bootstrap token authenticates as
//! `system:bootstrap:<id>`, may create CSRs but not read secrets, and stops working once
//! deleted or expired (and the tokencleaner deletes expired ones); node client CSRs are
//! auto-approved and signed, and the certificate authenticates as the node; others wait for
//! a human (`kubectl certificate approve|deny`); a hollow agent joins with a join token,
//! keeps its certificate and restarts with it after the token is revoked.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use berth_testkit::{AgentProcess, Credentials, TestServer, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const WAIT: Duration = Duration::from_secs(60);

fn berth_token(s: &TestServer, args: &[&str]) -> Output {
    Command::new(BIN).arg("token").arg("--kubeconfig").arg(&s.kubeconfig).args(args).output().expect("run berth token")
}

fn berth_token_ok(s: &TestServer, args: &[&str]) -> String {
    let out = berth_token(s, args);
    assert!(out.status.success(), "berth token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// SelfSubjectReview as `credentials`: the user, or the HTTP status.
fn whoami(s: &TestServer, credentials: Credentials) -> Result<Value, u16> {
    let body = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
    let r = s
        .client_as(credentials)
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .expect("request");
    if r.status == 201 { Ok(r.json()["status"]["userInfo"].clone()) } else { Err(r.status) }
}

fn bearer(token: &str) -> Credentials {
    Credentials::Bearer(token.to_string())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A CSR object for a new key with CN `cn` and O `orgs`; `(object, key_pem)`.
fn csr(name: &str, cn: &str, orgs: &[&str], signer: &str, usages: &[&str]) -> (Value, String) {
    let (key_pem, request_pem) = berth_pki::csr::new_request(cn, orgs).expect("request");
    let object = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "name": name },
        "spec": { "request": b64(&request_pem), "signerName": signer, "usages": usages },
    });
    (object, key_pem)
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
const NODE_USAGES: &[&str] = &["digital signature", "client auth"];

fn post_csr(s: &TestServer, credentials: Credentials, object: &Value) -> (u16, Value) {
    let r = s
        .client_as(credentials)
        .request("POST", CSRS, Some("application/json"), object.to_string().as_bytes())
        .expect("request");
    (r.status, r.json())
}

fn get_csr(s: &TestServer, name: &str) -> Value {
    let (code, csr) = s.http_json("GET", &format!("{CSRS}/{name}"), None);
    assert_eq!(code, 200, "{csr}");
    csr
}

/// The issued certificate (PEM) once there is one.
fn wait_certificate(s: &TestServer, name: &str) -> String {
    let mut csr = Value::Null;
    let signed = wait_until(WAIT, || {
        csr = get_csr(s, name);
        csr["status"]["certificate"].is_string()
    });
    assert!(signed, "CSR {name} was not signed: {csr}");
    let der = base64::engine::general_purpose::STANDARD.decode(csr["status"]["certificate"].as_str().unwrap()).unwrap();
    String::from_utf8(der).expect("PEM")
}

fn condition_types(csr: &Value) -> Vec<String> {
    csr["status"]["conditions"]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["type"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

fn new_token(s: &TestServer, extra: &[&str]) -> String {
    let mut args = vec!["create"];
    args.extend(extra);
    let token = berth_token_ok(s, &args).trim().to_string();
    assert!(berth_apiserver::authn::BootstrapToken::parse(&token).is_some(), "{token:?}");
    token
}

#[test]
fn tokens_are_created_listed_and_deleted_with_the_cli() {
    let s = TestServer::start(Path::new(BIN));
    let token = new_token(&s, &["--ttl", "2h", "--description", "for rack 1"]);
    let id = &token[..6];
    let fixed = new_token(&s, &["abcdef.0123456789abcdef", "--ttl", "0"]);
    assert_eq!(fixed, "abcdef.0123456789abcdef");
    // The Secret is the one Kubernetes defines.
    let secret = s.kubectl_ok(&["get", "secret", "-n", "kube-system", &format!("bootstrap-token-{id}"), "-o", "json"]);
    let secret: Value = serde_json::from_str(&secret).unwrap();
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    let data = |k: &str| {
        let v = secret["data"][k].as_str().unwrap_or_else(|| panic!("no {k} in {secret}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
    };
    assert_eq!(data("token-id"), id);
    assert_eq!(data("token-secret"), &token[7..]);
    assert_eq!(data("usage-bootstrap-authentication"), "true");
    assert_eq!(data("usage-bootstrap-signing"), "true");
    assert_eq!(data("auth-extra-groups"), "system:bootstrappers:kubeadm:default-node-token");
    assert_eq!(data("description"), "for rack 1");
    assert!(data("expiration").parse::<jiff::Timestamp>().is_ok());

    let list = berth_token_ok(&s, &["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("TOKEN") && lines[0].contains("TTL") && lines[0].ends_with("EXTRA GROUPS"), "{list}");
    let row = lines.iter().find(|l| l.starts_with(&token)).unwrap_or_else(|| panic!("{token} not listed:\n{list}"));
    assert!(row.contains(" 1h ") || row.contains(" 2h ") || row.contains(" 119m "), "{row}");
    assert!(row.contains("authentication,signing") && row.contains("for rack 1"), "{row}");
    let fixed_row = lines.iter().find(|l| l.starts_with("abcdef.")).expect("fixed token listed");
    assert!(fixed_row.contains("<forever>") && fixed_row.contains("<never>"), "{fixed_row}");

    // Bad input fails clearly and creates nothing.
    for (args, says) in [
        (&["create", "--ttl", "5x"][..], "unknown unit"),
        (&["create", "ABCDEF.0123456789abcdef"][..], "is not of the form"),
        (&["create", "--groups", "system:masters"][..], "must start with system:bootstrappers:"),
        (&["create", "--usages", "everything"][..], "unknown usage"),
        (&["create", "abcdef.0123456789abcdef"][..], "already exists"),
        (&["delete", "no!"][..], "is neither a token id"),
        (&["delete", "zzzzzz"][..], "not found"),
    ] {
        let out = berth_token(&s, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "berth token {args:?}: {err}");
    }

    assert!(berth_token_ok(&s, &["delete", id, "abcdef.0123456789abcdef"]).contains("deleted"));
    let list = berth_token_ok(&s, &["list"]);
    assert_eq!(list.lines().count(), 1, "only the header is left:\n{list}");
    let missing =
        Command::new(BIN).args(["token", "list", "--kubeconfig", "/nonexistent/kubeconfig"]).output().unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("reading the kubeconfig"), "{err}");
}

#[test]
fn a_bootstrap_token_authenticates_until_deleted_or_expired() {
    let s = TestServer::start(Path::new(BIN));
    let token = new_token(&s, &[]);
    let id = &token[..6];
    let user = whoami(&s, bearer(&token)).expect("the token authenticates");
    assert_eq!(user["username"], format!("system:bootstrap:{id}"));
    assert_eq!(
        user["groups"],
        json!(["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"])
    );
    // `kubectl auth whoami` with the token reads the same.
    let kubeconfig = s.dir.path().join("bootstrap.kubeconfig");
    let admin = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let ca_line = admin.lines().find(|l| l.trim_start().starts_with("certificate-authority-data:")).unwrap().trim();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    {ca_line}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            s.url
        ),
    )
    .unwrap();
    let out = Command::new(berth_testkit::KUBECTL)
        .args(["auth", "whoami", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("system:bootstrap:{id}")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // It may create a CSR (which records who asked, whatever the body says) but not read secrets.
    let (mut object, _) = csr("from-token", "system:node:n9", &["system:nodes"], CLIENT_SIGNER, &["client auth"]);
    object["spec"]["username"] = json!("system:admin");
    object["spec"]["groups"] = json!(["system:masters"]);
    let (code, created) = post_csr(&s, bearer(&token), &object);
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["username"], format!("system:bootstrap:{id}"));
    assert_eq!(created["spec"]["groups"][0], "system:bootstrappers");
    let secrets =
        s.client_as(bearer(&token)).request("GET", "/api/v1/namespaces/kube-system/secrets", None, b"").unwrap();
    assert_eq!(secrets.status, 403, "{}", String::from_utf8_lossy(&secrets.body));
    let body = secrets.json()["message"].as_str().unwrap_or_default().to_string();
    let says = format!("User \"system:bootstrap:{id}\" cannot list resource \"secrets\"");
    assert!(body.contains(&says), "{body}");

    // A wrong secret for a real id, and a well-formed token nobody made: 401.
    let wrong = format!("{id}.{}", "0".repeat(16));
    assert_eq!(whoami(&s, bearer(&wrong)), Err(401));
    assert_eq!(whoami(&s, bearer("zzzzzz.0123456789abcdef")), Err(401));

    // Deleted: refused at once.
    berth_token_ok(&s, &["delete", id]);
    assert_eq!(whoami(&s, bearer(&token)), Err(401));

    // Expired (a Secret made by hand): refused, and the tokencleaner deletes it.
    let expired = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": { "name": "bootstrap-token-old123", "namespace": "kube-system" },
        "data": {
            "token-id": b64("old123"), "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"), "expiration": b64("2020-01-01T00:00:00Z"),
        },
    });
    let (code, body) = s.http_json("POST", "/api/v1/namespaces/kube-system/secrets", Some(&expired));
    assert_eq!(code, 201, "{body}");
    assert_eq!(whoami(&s, bearer("old123.0123456789abcdef")), Err(401));
    let cleaned = wait_until(WAIT, || {
        s.http_json("GET", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-old123", None).0 == 404
    });
    assert!(cleaned, "the tokencleaner did not delete the expired token:\n{}", s.log());

    // A token that may not authenticate (signing only) is refused too.
    let signing_only = new_token(&s, &["--usages", "signing"]);
    assert_eq!(whoami(&s, bearer(&signing_only)), Err(401));
}

#[test]
fn node_client_csrs_are_auto_approved_and_signed_and_others_wait() {
    let s = TestServer::start(Path::new(BIN));
    let token = new_token(&s, &[]);
    // Not node client certificates: a wrong subject, wrong usages, another signer.
    let bad = [
        csr("bad-cn", "admin", &["system:masters"], KUBELET_SIGNER, NODE_USAGES).0,
        csr(
            "bad-usages",
            "system:node:n1",
            &["system:nodes"],
            KUBELET_SIGNER,
            &["digital signature", "client auth", "server auth"],
        )
        .0,
        csr("other-signer", "system:node:n1", &["system:nodes"], CLIENT_SIGNER, &["client auth"]).0,
    ];
    for object in &bad {
        let (code, body) = post_csr(&s, bearer(&token), object);
        assert_eq!(code, 201, "{body}");
    }
    let (object, key_pem) = csr("node-n1", "system:node:n1", &["system:nodes"], KUBELET_SIGNER, NODE_USAGES);
    let (code, body) = post_csr(&s, bearer(&token), &object);
    assert_eq!(code, 201, "{body}");
    let cert_pem = wait_certificate(&s, "node-n1");
    let approved = get_csr(&s, "node-n1");
    let approval = &approved["status"]["conditions"][0];
    assert_eq!((approval["type"].as_str(), approval["reason"].as_str()), (Some("Approved"), Some("AutoApproved")));
    let node = Credentials::Certificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() };
    let user = whoami(&s, node).expect("the node certificate authenticates");
    assert_eq!(user["username"], "system:node:n1");
    assert_eq!(user["groups"], json!(["system:nodes", "system:authenticated"]));
    // kubectl shows it as Kubernetes does.
    let table = s.kubectl_ok(&["get", "csr", "node-n1"]);
    assert!(table.contains("Approved,Issued") && table.contains(KUBELET_SIGNER), "{table}");

    // The node renews its own certificate (selfnodeclient), but may not get another node's.
    let node = || Credentials::Certificate { cert_pem: cert_pem.clone(), key_pem: key_pem.clone() };
    let (renewal, _) = csr("node-n1-renewal", "system:node:n1", &["system:nodes"], KUBELET_SIGNER, NODE_USAGES);
    assert_eq!(post_csr(&s, node(), &renewal).0, 201);
    let (other, _) = csr("node-n2-by-n1", "system:node:n2", &["system:nodes"], KUBELET_SIGNER, NODE_USAGES);
    assert_eq!(post_csr(&s, node(), &other).0, 201);
    wait_certificate(&s, "node-n1-renewal");
    let renewed = get_csr(&s, "node-n1-renewal");
    assert!(
        renewed["status"]["conditions"][0]["message"].as_str().unwrap().contains("self kubelet client"),
        "{renewed}"
    );

    // The approver has seen every request by now (they came before the ones it approved):
    // the others are still pending.
    wait_certificate(&s, "node-n1");
    for name in ["bad-cn", "bad-usages", "other-signer", "node-n2-by-n1"] {
        let pending = get_csr(&s, name);
        assert!(
            condition_types(&pending).is_empty() && pending["status"]["certificate"].is_null(),
            "{name}: {pending}"
        );
    }
    // Approved by a human, a request the kubelet signer refuses fails instead of being signed.
    s.kubectl_ok(&["certificate", "approve", "bad-cn"]);
    let failed = wait_until(WAIT, || condition_types(&get_csr(&s, "bad-cn")).contains(&"Failed".to_string()));
    let bad_cn = get_csr(&s, "bad-cn");
    assert!(failed && bad_cn["status"]["certificate"].is_null(), "{bad_cn}");
}

#[test]
fn kubectl_certificate_approve_and_deny_work_for_client_csrs() {
    let s = TestServer::start(Path::new(BIN));
    let (mut object, key_pem) = csr("alice", "alice", &["team-a"], CLIENT_SIGNER, &["client auth"]);
    object["spec"]["expirationSeconds"] = json!(3600);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&object.to_string()));
    let table = s.kubectl_ok(&["get", "csr", "alice"]);
    assert!(table.contains("Pending") && table.contains("system:admin"), "{table}");
    let out = s.kubectl_ok(&["certificate", "approve", "alice"]);
    assert!(out.contains("approved"), "{out}");
    let cert_pem = wait_certificate(&s, "alice");
    let (from, to) = berth_pki::csr::validity(&cert_pem).expect("a certificate");
    let lifetime = (to - from).whole_minutes();
    // One hour, plus the five minutes of clock skew the signer backdates by.
    assert!((60..=66).contains(&lifetime), "{lifetime} minutes");
    let user = whoami(&s, Credentials::Certificate { cert_pem, key_pem }).expect("alice authenticates");
    assert_eq!(user["username"], "alice");
    assert_eq!(user["groups"], json!(["team-a", "system:authenticated"]));

    let (bob, _) = csr("bob", "bob", &[], CLIENT_SIGNER, &["client auth"]);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&bob.to_string()));
    s.kubectl_ok(&["certificate", "deny", "bob"]);
    let denied = get_csr(&s, "bob");
    assert_eq!(condition_types(&denied), vec!["Denied"]);
    // Approved and Denied exclude each other; the approval subresource cannot drop Denied.
    let err = s.kubectl_err(&["certificate", "approve", "bob"], None);
    assert!(err.contains("Denied") || err.contains("mutually exclusive"), "{err}");
    let mut cleared = denied.clone();
    cleared["status"]["conditions"] = json!([]);
    let (code, body) = s.http_json("PUT", &format!("{CSRS}/bob/approval"), Some(&cleared));
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("may not remove"), "{body}");
    // Nobody signs a denied request; the spec cannot change.
    assert!(get_csr(&s, "bob")["status"]["certificate"].is_null());
    let mut changed = get_csr(&s, "bob");
    changed["spec"]["signerName"] = json!("example.com/other");
    let (code, after) = s.http_json("PUT", &format!("{CSRS}/bob"), Some(&changed));
    assert_eq!((code, after["spec"]["signerName"].as_str()), (200, Some(CLIENT_SIGNER)), "{after}");
    // The status subresource may not set a certificate on an unapproved request.
    let (carol, _) = csr("carol", "carol", &[], "example.com/manual", &["client auth"]);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&carol.to_string()));
    let mut forged = get_csr(&s, "carol");
    forged["status"] = json!({ "certificate": b64("junk") });
    let (code, body) = s.http_json("PUT", &format!("{CSRS}/carol/status"), Some(&forged));
    assert_eq!(code, 422, "{body}");

    // Bad requests are refused with Kubernetes' field errors.
    let bad = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": { "name": "bad" },
        "spec": { "request": b64("not a request"), "signerName": "nodomain", "usages": ["flying"], "expirationSeconds": 5 },
    });
    let (code, body) = s.http_json("POST", CSRS, Some(&bad));
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> =
        body["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["spec.request", "spec.signerName", "spec.usages[0]", "spec.expirationSeconds"], "{body}");
}

/// A hollow `berth agent` named `joined-0` with its data in `data_dir`.
fn start_agent(s: &TestServer, data_dir: &Path, args: &[&str]) -> AgentProcess {
    let data_dir = data_dir.to_str().expect("a UTF-8 path");
    s.spawn_agent(&[&["--hollow", "--node-name-prefix", "joined-", "--data-dir", data_dir], args].concat())
}

fn node_ready(s: &TestServer, name: &str) -> bool {
    let (code, node) = s.http_json("GET", &format!("/api/v1/nodes/{name}"), None);
    code == 200
        && node["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn lease_renew_time(s: &TestServer, name: &str) -> Option<String> {
    let (_, lease) =
        s.http_json("GET", &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"), None);
    lease["spec"]["renewTime"].as_str().map(str::to_string)
}

#[test]
fn a_hollow_agent_joins_with_a_join_token_and_keeps_its_certificate() {
    let s = TestServer::start(Path::new(BIN));
    let join = berth_token_ok(&s, &["create", "--print-join-command"]);
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(&words[..3], ["berth", "agent", "--server"], "{join}");
    let (server, join_token) = (words[3], words[5]);
    assert_eq!(server, s.url);
    let token = join_token.rsplit_once("::").unwrap().1.to_string();
    let data_dir = s.dir.path().join("agent");
    let mut agent = start_agent(&s, &data_dir, &["--server", server, "--token", join_token]);
    assert!(wait_until(WAIT, || node_ready(&s, "joined-0")), "node not Ready:\n{}", agent.log());

    // The agent's identity is its node's, from a CSR its token made.
    let pki = data_dir.join("pki");
    for file in ["ca.crt", "kubelet-client.crt", "kubelet-client.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(pki.join(file)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let cert_pem = std::fs::read_to_string(pki.join("kubelet-client.crt")).unwrap();
    let key_pem = std::fs::read_to_string(pki.join("kubelet-client.key")).unwrap();
    let user = whoami(&s, Credentials::Certificate { cert_pem: cert_pem.clone(), key_pem }).unwrap();
    assert_eq!(user["username"], "system:node:joined-0");
    let (_, csrs) = s.http_json("GET", CSRS, None);
    let mine: Vec<&Value> = csrs["items"].as_array().unwrap().iter().collect();
    assert_eq!(mine.len(), 1, "{csrs}");
    assert_eq!(mine[0]["spec"]["username"], format!("system:bootstrap:{}", &token[..6]));

    // The token is revoked; the agent restarts on its certificate, without the token.
    agent.terminate();
    berth_token_ok(&s, &["delete", &token[..6]]);
    assert_eq!(whoami(&s, bearer(&token)), Err(401));
    let before = lease_renew_time(&s, "joined-0");
    let agent = start_agent(&s, &data_dir, &["--server", server]);
    let renewed = wait_until(WAIT, || lease_renew_time(&s, "joined-0") != before && node_ready(&s, "joined-0"));
    assert!(renewed, "the restarted agent did not renew its lease:\n{}", agent.log());
    assert!(agent.log().contains("using the stored node client certificate"), "{}", agent.log());
    assert_eq!(std::fs::read_to_string(pki.join("kubelet-client.crt")).unwrap(), cert_pem);
    let mut agent = agent;
    agent.terminate();

    // A certificate past 80 % of its lifetime is renewed at start through a CSR the node
    // sends as itself (selfnodeclient): here one the client CA signed for 6 minutes, 5 of
    // them already gone (the signer backdates by 5 minutes).
    let tls = s.dir.path().join("tls");
    let ca = berth_pki::Pki::load_or_create(&tls).unwrap();
    let signer = berth_pki::csr::Signer::new(
        &ca.ca_pem(berth_pki::CaKind::Client).unwrap(),
        &ca.ca_key_pem(berth_pki::CaKind::Client).unwrap(),
    )
    .unwrap();
    let (short_key, request) = berth_pki::csr::new_request("system:node:joined-0", &["system:nodes"]).unwrap();
    let usages = ["digital signature".to_string(), "client auth".to_string()];
    let short = signer.sign(&request, &usages, berth_pki::csr::duration(Duration::from_secs(60))).unwrap();
    std::fs::write(pki.join("kubelet-client.key"), &short_key).unwrap();
    std::fs::write(pki.join("kubelet-client.crt"), &short).unwrap();
    let agent = start_agent(&s, &data_dir, &["--server", server]);
    let renewed = wait_until(WAIT, || {
        let now = std::fs::read_to_string(pki.join("kubelet-client.crt")).unwrap_or_default();
        now != short && !now.is_empty()
    });
    assert!(renewed, "the certificate was not renewed:\n{}", agent.log());
    assert!(agent.log().contains("renewing the node client certificate"), "{}", agent.log());
    let (from, to) =
        berth_pki::csr::validity(&std::fs::read_to_string(pki.join("kubelet-client.crt")).unwrap()).unwrap();
    assert!((to - from).whole_days() >= 364, "the renewed certificate lasts a year");
    let (_, csrs) = s.http_json("GET", CSRS, None);
    let by_node: Vec<&Value> =
        csrs["items"].as_array().unwrap().iter().filter(|c| c["spec"]["username"] == "system:node:joined-0").collect();
    assert_eq!(by_node.len(), 1, "{csrs}");
    assert!(by_node[0]["status"]["conditions"][0]["message"].as_str().unwrap().contains("self kubelet client"));
    let before = lease_renew_time(&s, "joined-0");
    assert!(wait_until(WAIT, || lease_renew_time(&s, "joined-0") != before), "{}", agent.log());
    drop(agent);

    // A new node with the revoked token cannot join; nor can one with neither token nor certificate.
    let fresh = s.dir.path().join("fresh");
    let mut refused = start_agent(&s, &fresh, &["--server", server, "--token", join_token]);
    let status = refused.exit_status(WAIT).expect("the agent exits");
    assert!(!status.success());
    assert!(refused.log().contains("Unauthorized") || refused.log().contains("401"), "{}", refused.log());
    let mut bare = start_agent(&s, &fresh, &["--server", server]);
    assert!(!bare.exit_status(WAIT).expect("the agent exits").success());
    assert!(bare.log().contains("give --token to join"), "{}", bare.log());
    // Several hollow nodes cannot share one node identity.
    let mut many = start_agent(&s, &fresh, &["--server", server, "--token", join_token, "--nodes", "2"]);
    assert!(!many.exit_status(WAIT).expect("the agent exits").success());
    assert!(many.log().contains("one node identity"), "{}", many.log());
}

/// kube-public/cluster-info as anyone may read it (anonymously).
fn cluster_info(s: &TestServer) -> Value {
    let r = s
        .client_as(Credentials::Anonymous)
        .request("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info", None, b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn a_bare_token_joins_by_the_signed_cluster_info_and_a_wrong_one_is_refused() {
    let s = TestServer::start(Path::new(BIN));
    let token = new_token(&s, &[]);
    let (id, secret) = token.split_once('.').unwrap();
    // The bootstrap signer signs cluster-info's kubeconfig with the token.
    let key = format!("jws-kubeconfig-{id}");
    // The server publishes cluster-info once it serves: it may be a moment behind readiness.
    let published = || s.kubectl(&["get", "configmap", "cluster-info", "-n", "kube-public"]).status.success();
    assert!(wait_until(WAIT, published), "cluster-info was never published");
    assert!(wait_until(WAIT, || cluster_info(&s)["data"][&key].is_string()), "{}", cluster_info(&s));
    let info = cluster_info(&s);
    let kubeconfig = info["data"]["kubeconfig"].as_str().unwrap();
    let ca =
        berth_pki::Pki::load_or_create(&s.dir.path().join("tls")).unwrap().ca_pem(berth_pki::CaKind::Server).unwrap();
    assert!(kubeconfig.contains(&b64(&ca)), "{kubeconfig}");
    assert!(berth_pki::jws::verify_detached(info["data"][&key].as_str().unwrap(), kubeconfig.as_bytes(), id, secret));
    // Anonymous reads stop at cluster-info: not other ConfigMaps, not writes.
    let anonymous = s.client_as(Credentials::Anonymous);
    let other = anonymous.request("GET", "/api/v1/namespaces/kube-public/configmaps", None, b"").unwrap();
    assert_eq!(other.status, 401);
    let write =
        anonymous.request("DELETE", "/api/v1/namespaces/kube-public/configmaps/cluster-info", None, b"").unwrap();
    assert_eq!(write.status, 403, "{}", String::from_utf8_lossy(&write.body));

    // A wrong secret for the same id: the signature does not verify, nothing is joined.
    let wrong = format!("{id}.{}", "0".repeat(16));
    let refused_dir = s.dir.path().join("refused");
    let mut refused = start_agent(&s, &refused_dir, &["--server", &s.url, "--token", &wrong]);
    let status = refused.exit_status(WAIT);
    assert!(status.is_some_and(|st| !st.success()), "{}", refused.log());
    assert!(refused.log().contains("does not verify"), "{}", refused.log());
    assert!(!refused_dir.join("pki").join("ca.crt").exists());
    // The right token: the agent trusts the CA the signature covers and joins.
    let data_dir = s.dir.path().join("agent");
    let mut agent = start_agent(&s, &data_dir, &["--server", &s.url, "--token", &token]);
    assert!(wait_until(WAIT, || node_ready(&s, "joined-0")), "node not Ready:\n{}", agent.log());
    assert_eq!(std::fs::read_to_string(data_dir.join("pki").join("ca.crt")).unwrap(), ca);
    assert!(agent.log().contains("verified by the token's cluster-info signature"), "{}", agent.log());
    agent.terminate();

    // A deleted token's signature goes away.
    berth_token_ok(&s, &["delete", id]);
    assert!(wait_until(WAIT, || cluster_info(&s)["data"].get(&key).is_none()), "{}", cluster_info(&s));
}

/// A running agent renews its certificate as the kubelet's certificate manager does: with
/// `--cluster-signing-duration 40s` it asks for a new one after 80 % of the time it got,
/// presents it from then on and drops the connections made with the old one, so its Lease
/// keeps being renewed after the first certificate has expired (the server checks a
/// certificate's expiry on every request, not only at the handshake).
#[test]
fn a_running_agent_renews_its_certificate_before_it_expires() {
    let s = TestServer::start_with(Path::new(BIN), &["--cluster-signing-duration", "40s"]);
    let join = berth_token_ok(&s, &["create", "--print-join-command"]);
    let words: Vec<&str> = join.split_whitespace().collect();
    let (server, join_token) = (words[3], words[5]);
    let data_dir = s.dir.path().join("agent");
    let agent = start_agent(&s, &data_dir, &["--server", server, "--token", join_token]);
    assert!(wait_until(WAIT, || node_ready(&s, "joined-0")), "node not Ready:\n{}", agent.log());
    let cert_file = data_dir.join("pki").join("kubelet-client.crt");
    let first = std::fs::read_to_string(&cert_file).unwrap();
    let (_, first_end) = berth_pki::csr::validity(&first).unwrap();

    let renewed = wait_until(Duration::from_secs(120), || {
        std::fs::read_to_string(&cert_file).is_ok_and(|now| !now.is_empty() && now != first)
    });
    assert!(renewed, "the certificate was not renewed while running:\n{}", agent.log());
    let second = std::fs::read_to_string(&cert_file).unwrap();
    let (_, second_end) = berth_pki::csr::validity(&second).unwrap();
    assert!(second_end > first_end, "the new certificate ends later");
    assert!(wait_until(WAIT, || agent.log().contains("node client certificate renewed")), "{}", agent.log());
    let (_, csrs) = s.http_json("GET", CSRS, None);
    let by_node =
        csrs["items"].as_array().unwrap().iter().filter(|c| c["spec"]["username"] == "system:node:joined-0").count();
    assert!(by_node >= 1, "the renewal's CSR was sent with the node's own certificate: {csrs}");

    // Past the first certificate's end, the node still renews its Lease (with the new one).
    let lease_time = |s: &TestServer| {
        lease_renew_time(s, "joined-0").and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| t.as_second())
    };
    let renewed_after_expiry = wait_until(WAIT, || lease_time(&s).is_some_and(|t| t > first_end.unix_timestamp() + 1));
    assert!(renewed_after_expiry, "no Lease renewal after the first certificate ended:\n{}", agent.log());
    assert!(node_ready(&s, "joined-0"));
    assert!(!agent.log().contains("Unauthorized"), "{}", agent.log());
}
