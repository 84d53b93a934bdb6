//! Kubelet serving certificates and the checks around them, on the real `berth server`
//! over HTTPS: the in-process agent obtains a serving certificate through a
//! `kubernetes.io/kubelet-serving` CSR, signed by the cluster CA with the Node's addresses
//! as SANs, and `kubectl logs`/`exec` work through the proxy that verifies it; a serving
//! CSR naming an address that is not the node's stays pending; the proxy refuses an agent
//! whose serving certificate the CA did not sign; the CSR admission refuses approvals
//! without `approve` on the signer; the agent's port refuses users without `nodes/proxy`;
//! a real `berth agent` given the node token ends up with its own node and serving
//! certificates; the serving certificate is renewed without a restart. Real nodes use
//! bridges `btest80`–`btest82` and pod CIDRs 10.88.80–82.0/24 (unused by other tests).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use berth_testkit::{Credentials, TestServer, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const WAIT: Duration = Duration::from_secs(90);
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A client certificate of the cluster's client CA for `cn` in `orgs`.
fn user_cert(s: &TestServer, name: &str, cn: &str, orgs: &[&str]) -> berth_pki::CertKey {
    let pki = berth_pki::Pki::load_or_create(&s.dir.path().join("tls")).expect("the server's PKI");
    pki.leaf(&berth_pki::LeafSpec::client(name, cn, orgs)).expect("a client certificate")
}

fn as_cert(c: &berth_pki::CertKey) -> Credentials {
    Credentials::Certificate { cert_pem: c.cert_pem.clone(), key_pem: c.key_pem.clone() }
}

fn request(s: &TestServer, who: Credentials, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = s.client_as(who).request(method, path, Some("application/json"), body.to_string().as_bytes()).unwrap();
    (r.status, r.json())
}

/// A serving CSR object for a new key of node `node` with these SANs.
fn serving_csr(name: &str, node: &str, dns: &[&str], ips: &[&str]) -> Value {
    let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
    let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
    let cn = format!("system:node:{node}");
    let (_key, pem) = berth_pki::csr::new_request_with_sans(&cn, &["system:nodes"], &dns, &ips).unwrap();
    json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": { "name": name },
        "spec": { "request": b64(&pem), "signerName": SERVING_SIGNER,
                  "usages": ["digital signature", "key encipherment", "server auth"] },
    })
}

fn conditions(csr: &Value) -> Vec<String> {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect()
}

fn get_csr(s: &TestServer, name: &str) -> Value {
    let (code, csr) = s.http_json("GET", &format!("{CSRS}/{name}"), None);
    assert_eq!(code, 200, "{csr}");
    csr
}

/// The certificates of the node's serving CSRs that carry one, oldest request first.
fn signed_serving_certificates(s: &TestServer, node: &str) -> Vec<String> {
    let (_, list) = s.http_json("GET", CSRS, None);
    let mut items: Vec<&Value> = list["items"].as_array().into_iter().flatten().collect();
    items.sort_by_key(|c| c["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string());
    items
        .into_iter()
        .filter(|c| c["spec"]["signerName"] == SERVING_SIGNER)
        .filter(|c| c["spec"]["username"] == format!("system:node:{node}"))
        .filter_map(|c| c["status"]["certificate"].as_str())
        .map(|c| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(c).unwrap()).unwrap())
        .collect()
}

/// Runs curl against the agent's port with the PEM credentials `cert`; the HTTP code and body.
fn curl_agent(dir: &Path, url: &str, cert: Option<(&str, &str)>) -> (String, String) {
    let mut args: Vec<String> =
        vec!["-sk".into(), "--max-time".into(), "10".into(), "-w".into(), "\n%{http_code}".into()];
    if let Some((cert_pem, key_pem)) = cert {
        let (cp, kp) = (dir.join("curl.crt"), dir.join("curl.key"));
        std::fs::write(&cp, cert_pem).unwrap();
        std::fs::write(&kp, key_pem).unwrap();
        args.extend(["--cert".into(), cp.display().to_string(), "--key".into(), kp.display().to_string()]);
    }
    let out = Command::new("curl").args(&args).arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// Whether the container runtime the in-process agent needs is installed.
fn runtime_installed() -> bool {
    let missing = ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/lib/cni/bridge", "/bin/busybox"]
        .iter()
        .any(|p| !Path::new(p).exists());
    if missing {
        assert!(std::env::var("BERTH_REQUIRE_CONTAINERD").is_err(), "the container runtime is missing");
        eprintln!("skipping: the container runtime is not installed");
    }
    !missing
}

#[test]
fn the_in_process_agent_serves_a_cluster_signed_certificate_and_streaming_works_through_the_verified_proxy() {
    if !runtime_installed() {
        return;
    }
    let s = TestServer::start_with_agent(
        Path::new(BIN),
        &["--node-name", "kc-node", "--bridge-name", "btest80", "--pod-cidr", "10.88.80.0/24", "--kubelet-port", "0"],
    );
    let _bridge = Bridge("btest80");
    let node = "kc-node";
    assert!(
        wait_until(WAIT, || !signed_serving_certificates(&s, node).is_empty()),
        "no serving certificate: {}",
        s.log()
    );
    let (_, n) = s.http_json("GET", &format!("/api/v1/nodes/{node}"), None);
    let addresses: Vec<String> = n["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap().to_string())
        .collect();
    let internal_ip = n["status"]["addresses"].as_array().unwrap().iter().find(|a| a["type"] == "InternalIP").unwrap()
        ["address"]
        .as_str()
        .unwrap()
        .to_string();
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap();

    // The certificate the agent serves is the signed one: the cluster CA's, for the Node's addresses.
    let ca = s.kubeconfig().ca_pem;
    let ca_path = s.dir.path().join("cluster-ca.crt");
    std::fs::write(&ca_path, &ca).unwrap();
    let served = wait_until(WAIT, || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {internal_ip}:{port} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509",
                ca_path.display()
            ))
            .output()
            .expect("openssl");
        out.status.success() && !out.stdout.is_empty()
    });
    assert!(served, "the agent's port does not serve a certificate the cluster CA verifies");
    let certs = signed_serving_certificates(&s, node);
    let (dns, ips) = berth_pki::csr::certificate_sans(&certs[0]).unwrap();
    let mut sans: Vec<String> = dns.into_iter().chain(ips.iter().map(|i| i.to_string())).collect();
    let mut wanted = addresses.clone();
    sans.sort();
    wanted.sort();
    assert_eq!(sans, wanted, "the SANs are the Node's addresses");
    let stored = std::fs::read_to_string(s.dir.path().join("agent/pki/kubelet-server.crt")).unwrap();
    assert!(certs.contains(&stored), "the stored certificate is a signed one");

    // logs and exec through the proxy, which verifies that certificate.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "talker", "namespace": "default" },
        "spec": { "nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo hello-from-talker; exec sleep 3600"] }] },
    });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&pod.to_string()));
    assert!(
        wait_until(WAIT, || String::from_utf8_lossy(&s.kubectl(&["logs", "talker"]).stdout)
            .contains("hello-from-talker")),
        "kubectl logs never showed the output: {}",
        String::from_utf8_lossy(&s.kubectl(&["logs", "talker"]).stderr)
    );
    let out = s.kubectl_ok(&["exec", "talker", "--", "echo", "exec-works"]);
    assert_eq!(out.trim(), "exec-works");

    // The agent's port: a user without nodes/proxy gets the kubelet's 403; the admin gets in.
    let url = format!("https://{internal_ip}:{port}/containerLogs/default/talker/main");
    let alice = user_cert(&s, "alice", "alice", &["team-a"]);
    let alice = Some((alice.cert_pem.as_str(), alice.key_pem.as_str()));
    let (code, body) = curl_agent(s.dir.path(), &url, alice);
    assert_eq!(code, "403", "{body}");
    assert_eq!(body, "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)");
    let admin = s.kubeconfig();
    let (code, body) = curl_agent(s.dir.path(), &url, Some((&admin.cert_pem, &admin.key_pem)));
    assert_eq!((code.as_str(), body.contains("hello-from-talker")), ("200", true), "{body}");
    let (code, _) = curl_agent(s.dir.path(), &url, None);
    assert_eq!(code, "401");
    // Granted nodes/proxy, alice gets in (after the agent's 30 s cache of the refusal).
    let role = json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "node-proxier" },
        "rules": [{ "apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"] }] });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&role.to_string()));
    s.kubectl_ok(&["create", "clusterrolebinding", "alice-proxy", "--clusterrole=node-proxier", "--user=alice"]);
    assert!(wait_until(WAIT, || curl_agent(s.dir.path(), &url, alice).0 == "200"), "alice never got in");
}

/// Deletes a bridge device when dropped.
struct Bridge(&'static str);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).stderr(Stdio::null()).status();
    }
}

#[test]
fn a_serving_csr_naming_an_address_that_is_not_the_nodes_is_not_approved() {
    let s = TestServer::start(Path::new(BIN));
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&node.to_string()));
    let status = json!({ "status": { "addresses": [
        { "type": "InternalIP", "address": "10.1.2.3" }, { "type": "Hostname", "address": "n1" }] } });
    s.kubectl_ok(&["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    let n1 = as_cert(&user_cert(&s, "n1", "system:node:n1", &["system:nodes"]));
    let n2 = as_cert(&user_cert(&s, "n2", "system:node:n2", &["system:nodes"]));

    let (code, body) = request(&s, n1.clone(), "POST", CSRS, &serving_csr("foreign-ip", "n1", &["n1"], &["10.9.9.9"]));
    assert_eq!(code, 201, "{body}");
    let (code, body) =
        request(&s, n1.clone(), "POST", CSRS, &serving_csr("foreign-dns", "n1", &["evil.example.com"], &[]));
    assert_eq!(code, 201, "{body}");
    // Another node asking for n1's certificate.
    let (code, body) = request(&s, n2, "POST", CSRS, &serving_csr("other-node", "n1", &["n1"], &["10.1.2.3"]));
    assert_eq!(code, 201, "{body}");
    let (code, body) = request(&s, n1, "POST", CSRS, &serving_csr("good", "n1", &["n1"], &["10.1.2.3"]));
    assert_eq!(code, 201, "{body}");

    // The good one, posted last, is approved and signed by the cluster CA...
    assert!(wait_until(WAIT, || get_csr(&s, "good")["status"]["certificate"].is_string()), "{}", get_csr(&s, "good"));
    assert_eq!(conditions(&get_csr(&s, "good")), ["Approved"]);
    let cert = get_csr(&s, "good")["status"]["certificate"].as_str().unwrap().to_string();
    let cert = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(cert).unwrap()).unwrap();
    let dir = s.dir.path();
    std::fs::write(dir.join("good.crt"), &cert).unwrap();
    std::fs::write(dir.join("ca.crt"), s.kubeconfig().ca_pem).unwrap();
    let verified = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("good.crt"))
        .output()
        .expect("openssl");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    // ... and the others stay pending, for a human.
    std::thread::sleep(Duration::from_secs(2));
    for name in ["foreign-ip", "foreign-dns", "other-node"] {
        let csr = get_csr(&s, name);
        assert!(conditions(&csr).is_empty(), "{name}: {csr}");
        assert!(csr["status"]["certificate"].is_null(), "{name}: {csr}");
    }
}

#[test]
fn approving_needs_the_approve_verb_on_the_signer_and_signing_the_sign_verb() {
    let s = TestServer::start(Path::new(BIN));
    let role = json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "csr-approver" },
        "rules": [{ "apiGroups": ["certificates.k8s.io"], "verbs": ["get", "list", "update", "create"],
                    "resources": ["certificatesigningrequests", "certificatesigningrequests/approval",
                                  "certificatesigningrequests/status"] }] });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&role.to_string()));
    s.kubectl_ok(&["create", "clusterrolebinding", "bob-csr", "--clusterrole=csr-approver", "--user=bob"]);
    let bob = as_cert(&user_cert(&s, "bob", "bob", &[]));
    let signer = "example.com/widgets";
    let (_key, pem) = berth_pki::csr::new_request("widget", &[]).unwrap();
    let csr = json!({ "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": { "name": "widget" },
        "spec": { "request": b64(&pem), "signerName": signer, "usages": ["client auth"] } });
    // Creating a request for any signer needs only create on the resource.
    let (code, body) = request(&s, bob.clone(), "POST", CSRS, &csr);
    assert_eq!(code, 201, "{body}");
    let approve = |who: Credentials| {
        let mut csr = get_csr(&s, "widget");
        csr["status"]["conditions"] =
            json!([{ "type": "Approved", "status": "True", "reason": "Test", "message": "ok" }]);
        request(&s, who, "PUT", &format!("{CSRS}/widget/approval"), &csr)
    };
    let (code, body) = approve(bob.clone());
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "certificatesigningrequests.certificates.k8s.io \"widget\" is forbidden: user not permitted to approve requests with signerName \"{signer}\""
        )
    );
    // kubectl certificate approve as bob reads the same.
    let err = s.kubectl_err(&["certificate", "approve", "widget", "--as", "bob"], None);
    assert!(
        err.contains("user not permitted to approve requests with signerName") || err.contains("forbidden"),
        "{err}"
    );

    // `approve` on the domain's wildcard is enough.
    let grant = json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": "widget-signer" },
        "rules": [{ "apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                    "resourceNames": ["example.com/*"] }] });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&grant.to_string()));
    s.kubectl_ok(&["create", "clusterrolebinding", "bob-widgets", "--clusterrole=widget-signer", "--user=bob"]);
    assert!(wait_until(WAIT, || approve(bob.clone()).0 == 200), "approve on example.com/* did not let bob approve");
    assert_eq!(conditions(&get_csr(&s, "widget")), ["Approved"]);

    // Setting the certificate needs `sign` on the signer.
    let mut signed = get_csr(&s, "widget");
    signed["status"]["certificate"] = json!(b64("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"));
    let (code, body) = request(&s, bob.clone(), "PUT", &format!("{CSRS}/widget/status"), &signed);
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("user not permitted to sign requests with signerName \"{signer}\"")),
        "{body}"
    );
}

/// A TLS server on 127.0.0.1 presenting a certificate of a CA the cluster does not know;
/// records whether a handshake was attempted.
fn foreign_agent() -> (u16, Arc<AtomicBool>, tempfile::TempDir) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
    let leaf = pki.leaf(&berth_pki::LeafSpec::serving(&["127.0.0.1".to_string(), "localhost".to_string()])).unwrap();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reached = Arc::new(AtomicBool::new(false));
    let seen = reached.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            seen.store(true, Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nintrude");
        }
    });
    (port, reached, dir)
}

#[test]
fn the_proxy_refuses_an_agent_whose_serving_certificate_the_cluster_ca_did_not_sign() {
    let s = TestServer::start(Path::new(BIN));
    let (port, reached, _dir) = foreign_agent();
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "impostor" } });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&node.to_string()));
    let status = json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
                                     "daemonEndpoints": { "kubeletEndpoint": { "Port": port } } } });
    s.kubectl_ok(&["patch", "node", "impostor", "--subresource=status", "--type=merge", "-p", &status.to_string()]);
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "victim", "namespace": "default" },
        "spec": { "nodeName": "impostor", "containers": [{ "name": "c", "image": "localhost/busybox:1" }] } });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&pod.to_string()));
    let running = json!({ "status": { "containerStatuses": [{ "name": "c", "ready": true, "restartCount": 0,
        "image": "localhost/busybox:1", "imageID": "", "state": { "running": {} } }] } });
    s.kubectl_ok(&["patch", "pod", "victim", "--subresource=status", "--type=merge", "-p", &running.to_string()]);
    let (code, status) = s.http_json("GET", "/api/v1/namespaces/default/pods/victim/log", None);
    assert!(reached.load(Ordering::SeqCst), "the proxy never dialled the impostor");
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["kind"], "Status");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("error dialing backend: tls: failed to verify the node agent's serving certificate"),
        "{message}"
    );
    assert!(!message.contains("intrude"));
    let err = s.kubectl_err(&["logs", "victim"], None);
    assert!(err.contains("failed to verify the node agent's serving certificate"), "{err}");
}

/// A real `berth agent` stopped with SIGTERM when dropped (it stops its containerd and
/// pods), and its bridge deleted.
struct RealAgent {
    process: berth_testkit::AgentProcess,
    _bridge: Bridge,
}

impl Drop for RealAgent {
    fn drop(&mut self) {
        self.process.terminate();
    }
}

#[test]
fn a_real_agent_trades_the_node_token_for_its_own_certificates_without_a_human() {
    if !runtime_installed() {
        return;
    }
    let s = TestServer::start(Path::new(BIN));
    let token = std::fs::read_to_string(s.dir.path().join("token")).unwrap().trim().to_string();
    let data_dir = s.dir.path().join("joined-agent");
    let data_dir = data_dir.to_str().unwrap();
    let args = [
        "--server",
        &s.url,
        "--token",
        &token,
        "--data-dir",
        data_dir,
        "--node-name",
        "kc-joined",
        "--bridge-name",
        "btest81",
        "--pod-cidr",
        "10.88.81.0/24",
        "--kubelet-port",
        "0",
    ];
    let agent = RealAgent { process: s.spawn_agent(&args), _bridge: Bridge("btest81") };
    let node = "kc-joined";
    assert!(wait_until(WAIT, || !signed_serving_certificates(&s, node).is_empty()), "{}", agent.process.log());
    let (_, list) = s.http_json("GET", CSRS, None);
    let client_csrs: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet")
        .collect();
    assert_eq!(client_csrs.len(), 1, "{list}");
    assert_eq!(client_csrs[0]["spec"]["username"], "system:node-agent", "the node token asked for it");
    assert_eq!(conditions(client_csrs[0]), ["Approved"]);
    // From then on the agent is its node: it asked for its serving certificate as system:node:kc-joined.
    let stored = std::fs::read_to_string(Path::new(data_dir).join("pki/kubelet-client.crt")).unwrap();
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(stored.as_bytes()).unwrap()
    };
    let (cn, orgs) = berth_pki::csr::certificate_subject(&der).unwrap();
    assert_eq!((cn.as_str(), orgs), ("system:node:kc-joined", vec!["system:nodes".to_string()]));
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "joined-talker", "namespace": "default" },
        "spec": { "nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
            "command": ["sh", "-c", "echo hello-from-joined; exec sleep 3600"] }] },
    });
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&pod.to_string()));
    assert!(
        wait_until(WAIT, || String::from_utf8_lossy(&s.kubectl(&["logs", "joined-talker"]).stdout)
            .contains("hello-from-joined")),
        "kubectl logs never worked: {}",
        agent.process.log()
    );
    s.kubectl_ok(&["delete", "pod", "joined-talker", "--wait=true"]);
}

/// The DER of the first certificate in `pem`.
fn der(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem).ok().map(|c| c.to_vec())
}

#[test]
fn the_serving_certificate_is_renewed_and_served_without_a_restart() {
    if !runtime_installed() {
        return;
    }
    // Certificates last 40 s: renewed after ~32 s.
    let s = TestServer::start_with_agent(
        Path::new(BIN),
        &[
            "--node-name",
            "kc-renew",
            "--bridge-name",
            "btest82",
            "--pod-cidr",
            "10.88.82.0/24",
            "--kubelet-port",
            "0",
            "--cluster-signing-duration",
            "40s",
        ],
    );
    let _bridge = Bridge("btest82");
    let node = "kc-renew";
    let renewed = wait_until(Duration::from_secs(150), || signed_serving_certificates(&s, node).len() >= 2);
    assert!(renewed, "the serving certificate was not renewed: {}", s.log());
    let (_, n) = s.http_json("GET", &format!("/api/v1/nodes/{node}"), None);
    let ip =
        n["status"]["addresses"].as_array().unwrap().iter().find(|a| a["type"] == "InternalIP").unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string();
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap();
    let served = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl s_client -connect {ip}:{port} </dev/null 2>/dev/null | openssl x509"))
            .output()
            .expect("openssl");
        der(&out.stdout)
    };
    // The same process now serves a certificate from a later CSR than the first one.
    let first = der(signed_serving_certificates(&s, node)[0].as_bytes());
    let later = wait_until(WAIT, || {
        let now = served();
        now.is_some() && now != first && signed_serving_certificates(&s, node).iter().any(|c| der(c.as_bytes()) == now)
    });
    assert!(later, "the agent still serves its first certificate");
    assert!(s.log().matches("node agent running").count() <= 1, "the agent restarted");
}
