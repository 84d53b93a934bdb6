//! The pods' streaming subresources (`log`, `exec`, `attach`, `portforward`) proxied to
//! the node agent's own HTTPS endpoint, as kube-apiserver proxies them to the kubelet.
//!
//! The pod's node gives the address (its InternalIP) and the port
//! (`status.daemonEndpoints.kubeletEndpoint.Port`); the API server authenticates to the
//! agent with its kubelet client certificate ([`KubeletClient`]) and verifies the agent's
//! serving certificate against the kubelet certificate authority (as kube-apiserver with
//! `--kubelet-certificate-authority`; berth's default is the cluster CA, which signs the
//! agents' `kubernetes.io/kubelet-serving` CSRs) for the address it dials. An agent
//! without a signed serving certificate yet, or with one the CA did not sign, is refused
//! with a 503 Status saying so.
//! Requests that upgrade (WebSocket or SPDY for exec, attach and port-forward) are passed
//! through byte for byte both ways once the agent answers 101.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::resources::ResourcePath;
use crate::server::App;

/// The client certificate the API server presents to node agents (PEM).
#[derive(Debug, Clone)]
pub struct KubeletClient {
    /// Certificate (CN `system:kube-apiserver`), signed by the client CA.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The CA agents' serving certificates must chain to (PEM).
    pub ca_pem: String,
    /// The files `cert_pem` and `key_pem` were read from, if any: each connection to an
    /// agent then presents what they hold now (a renewed certificate without a restart).
    pub cert_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl KubeletClient {
    /// The certificate and key to present now: the files' (when they read), else the ones given.
    fn identity(&self) -> (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>) {
        use std::borrow::Cow;
        let read = self
            .cert_files
            .as_ref()
            .and_then(|(cert, key)| Some((std::fs::read_to_string(cert).ok()?, std::fs::read_to_string(key).ok()?)));
        match read {
            Some((cert, key)) => (Cow::Owned(cert), Cow::Owned(key)),
            None => (Cow::Borrowed(self.cert_pem.as_str()), Cow::Borrowed(self.key_pem.as_str())),
        }
    }
}

/// How long connecting to a node agent (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// True for the pod subresources this module serves.
pub fn is_streaming(rp: &ResourcePath) -> bool {
    rp.group.is_empty()
        && rp.plural == "pods"
        && rp.name.is_some()
        && matches!(rp.subresource.as_deref(), Some("log" | "exec" | "attach" | "portforward"))
}

/// Serves `pods/{log,exec,attach,portforward}` of the pod `rp` names by proxying to its node.
pub async fn proxy(app: Arc<App>, rp: ResourcePath, req: Request) -> ApiResult<Response> {
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let sub = rp.subresource.clone().unwrap_or_default();
    let method = req.method().clone();
    let allowed = match sub.as_str() {
        "log" => method == http::Method::GET,
        _ => method == http::Method::GET || method == http::Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let catalog = app.resources.catalog();
    let pods = catalog.find("", "v1", "pods").ok_or_else(ApiError::unknown_resource)?;
    let pod = app.cache.get(&pods.key(Some(&ns), &name)).ok_or_else(|| ApiError::not_found(&pods.info, &name))?;
    let pod = &pod.value;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let asked = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str());
        let container = container_name(pod, &name, asked)?;
        if sub != "log" {
            ensure_running(pod, &name, &container)?;
        } else {
            ensure_logs_available(pod, &name, &container, query.iter().any(|(k, v)| k == "previous" && v == "true"))?;
        }
        let prefix = match sub.as_str() {
            "log" => "containerLogs",
            other => other,
        };
        format!("/{prefix}/{ns}/{name}/{container}")
    };
    let rest: Vec<(String, String)> = query.into_iter().filter(|(k, _)| k != "container").collect();
    let mut target = path;
    if !rest.is_empty() {
        target.push('?');
        target.push_str(&form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish());
    }
    let nodes = catalog.find("", "v1", "nodes").ok_or_else(ApiError::unknown_resource)?;
    let node = app.cache.get(&nodes.key(None, node_name)).ok_or_else(|| {
        ApiError::unavailable(format!("error dialing backend: node {node_name:?} of pod {name} not found"))
    })?;
    let (host, port) = node_endpoint(&node.value)
        .ok_or_else(|| ApiError::unavailable(format!("node {node_name:?} has no InternalIP and kubelet port")))?;
    let client = app.config.kubelet_client.clone().ok_or_else(|| {
        ApiError::unavailable("this server has no kubelet client certificate: cannot reach node agents")
    })?;
    forward(&client, &host, port, &target, req).await
}

/// For `/api/v1/nodes/{name}/proxy/{path}`: the node's name and the path on its agent
/// (`/stats/summary`, `/healthz`, ...).
pub fn node_proxy_target(path: &str) -> Option<(&str, String)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (node, tail) = rest.split_once("/proxy")?;
    (!node.is_empty() && !node.contains('/') && (tail.is_empty() || tail.starts_with('/')))
        .then(|| (node, if tail.is_empty() { "/".to_string() } else { tail.to_string() }))
}

/// Serves `nodes/{name}/proxy/{path}`: the request, with its query, forwarded to the node's agent.
pub async fn proxy_to_node(app: Arc<App>, node_name: &str, path: String, req: Request) -> ApiResult<Response> {
    let nodes = app.resources.catalog().find("", "v1", "nodes").ok_or_else(ApiError::unknown_resource)?;
    let node = app.cache.get(&nodes.key(None, node_name)).ok_or_else(|| ApiError::not_found(&nodes.info, node_name))?;
    let (host, port) = node_endpoint(&node.value)
        .ok_or_else(|| ApiError::unavailable(format!("node {node_name:?} has no InternalIP and kubelet port")))?;
    let client = app.config.kubelet_client.clone().ok_or_else(|| {
        ApiError::unavailable("this server has no kubelet client certificate: cannot reach node agents")
    })?;
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    forward(&client, &host, port, &target, req).await
}

/// The container a request addresses: the asked one (it must exist), else the only one.
fn container_name(pod: &Value, pod_name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    match asked.filter(|a| !a.is_empty()) {
        Some(a) => {
            let all: Vec<String> = [names("initContainers"), containers.clone(), names("ephemeralContainers")].concat();
            if all.iter().any(|n| n == a) {
                Ok(a.to_string())
            } else {
                Err(ApiError::bad_request(format!("container {a} is not valid for pod {pod_name}")))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .flat_map(|f| pod["status"][*f].as_array().into_iter().flatten())
        .find(|s| s["name"] == container)
}

/// exec and attach need a running container.
fn ensure_running(pod: &Value, pod_name: &str, container: &str) -> ApiResult<()> {
    let running = container_status(pod, container).is_some_and(|s| s["state"]["running"].is_object());
    if running {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("container {container} is not running in pod {pod_name}")))
    }
}

/// Logs need a container that started at least once (or, with `previous`, a terminated one).
fn ensure_logs_available(pod: &Value, pod_name: &str, container: &str, previous: bool) -> ApiResult<()> {
    let status = container_status(pod, container);
    if previous {
        let has_previous = status.is_some_and(|s| s["lastState"]["terminated"].is_object());
        if !has_previous {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
            )));
        }
        return Ok(());
    }
    match status {
        Some(s) if s["state"]["waiting"].is_object() && !s["lastState"]["terminated"].is_object() => {
            let reason = s["state"]["waiting"]["reason"].as_str().unwrap_or("ContainerCreating");
            Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{pod_name}\" is waiting to start: {reason}"
            )))
        }
        Some(_) => Ok(()),
        None => Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" is waiting to start: ContainerCreating"
        ))),
    }
}

/// The node's InternalIP (else its first address) and kubelet port.
fn node_endpoint(node: &Value) -> Option<(String, u16)> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .and_then(|a| a["address"].as_str())?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    Some((ip.to_string(), port))
}

fn tls_config(client: &KubeletClient) -> ApiResult<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert_pem, key_pem) = client.identity();
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("kubelet client certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ApiError::internal(format!("kubelet client key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client.ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| ApiError::internal(format!("kubelet certificate authority: {e}")))?;
        roots.add(ca).map_err(|e| ApiError::internal(format!("kubelet certificate authority: {e}")))?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ApiError::internal(format!("kubelet certificate authority: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ApiError::internal)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .map_err(ApiError::internal)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What a failed connection to an agent means, in words: TLS failures say whose fault.
fn tls_failure(e: &std::io::Error, host: &str, port: u16) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "tls: failed to verify the node agent's serving certificate for {host} against the kubelet certificate authority: {why:?}"
        ),
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "tls: the node agent at {host}:{port} refused the handshake ({alert:?}): it has no signed serving certificate yet (is its kubelet-serving CSR approved?)"
        ),
        _ => e.to_string(),
    }
}

/// Headers not passed to the agent: the client's credentials and the hop's own.
fn forwarded_header(name: &header::HeaderName) -> bool {
    name != header::AUTHORIZATION && name != header::HOST && name != header::CONTENT_LENGTH
}

/// Sends `req` to `https://host:port{target}` and relays the answer; an upgrade is passed
/// through both ways.
async fn forward(client: &KubeletClient, host: &str, port: u16, target: &str, req: Request) -> ApiResult<Response> {
    let dial_err = |e: &dyn std::fmt::Display| ApiError::unavailable(format!("error dialing backend: {e}"));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(client)?));
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| dial_err(&e))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        let _ = tcp.set_nodelay(true);
        connector.connect(server_name, tcp).await
    };
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(dial_err(&tls_failure(&e, host, port))),
        Err(_) => return Err(dial_err(&format!("connecting to {host}:{port} timed out"))),
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| dial_err(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node agent connection ended");
        }
    });
    let mut req = req;
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder().method(parts.method.clone()).uri(target);
    for (k, v) in parts.headers.iter().filter(|(k, _)| forwarded_header(k)) {
        out = out.header(k, v);
    }
    out = out.header(header::HOST, HeaderValue::from_str(&format!("{host}:{port}")).map_err(ApiError::internal)?);
    let out = out.body(body).map_err(ApiError::internal)?;
    let mut resp = sender.send_request(out).await.map_err(|e| dial_err(&e))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal("the node agent switched protocols unasked"));
        };
        let agent_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client_io, agent_io) = match tokio::join!(client_upgrade, agent_upgrade) {
                (Ok(c), Ok(a)) => (c, a),
                (c, a) => {
                    tracing::debug!(client = c.is_ok(), agent = a.is_ok(), "upgrade failed");
                    return;
                }
            };
            let (mut c, mut a) = (TokioIo::new(client_io), TokioIo::new(agent_io));
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut a).await {
                tracing::debug!(error = %e, "streaming connection ended");
            }
        });
        let mut builder = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (k, v) in resp.headers() {
            builder = builder.header(k, v);
        }
        return builder.body(Body::empty()).map_err(ApiError::internal);
    }
    let (rparts, rbody) = resp.into_parts();
    let mut builder = Response::builder().status(rparts.status);
    for (k, v) in rparts.headers.iter().filter(|(k, _)| *k != header::CONNECTION && *k != header::TRANSFER_ENCODING) {
        builder = builder.header(k, v);
    }
    builder.body(Body::new(rbody)).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_proxy_paths_name_the_node_and_the_agent_path() {
        let got = node_proxy_target("/api/v1/nodes/n1/proxy/stats/summary");
        assert_eq!(got, Some(("n1", "/stats/summary".to_string())));
        assert_eq!(node_proxy_target("/api/v1/nodes/n1/proxy"), Some(("n1", "/".to_string())));
        assert_eq!(node_proxy_target("/api/v1/nodes/n1/status"), None);
        assert_eq!(node_proxy_target("/api/v1/nodes/n1/proxyx/a"), None);
        assert_eq!(node_proxy_target("/api/v1/nodes//proxy/a"), None);
    }

    #[test]
    fn container_names_are_defaulted_only_when_unambiguous() {
        let one = json!({ "spec": { "containers": [{ "name": "a" }] } });
        let two = json!({ "spec": { "containers": [{ "name": "a" }, { "name": "b" }], "initContainers": [{ "name": "i" }] } });
        assert_eq!(container_name(&one, "p", None).unwrap(), "a");
        assert_eq!(container_name(&two, "p", Some("b")).unwrap(), "b");
        assert_eq!(container_name(&two, "p", Some("i")).unwrap(), "i");
        let e = container_name(&two, "p", None).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "a container name must be specified for pod p, choose one of: [a b]")
        );
        let e = container_name(&two, "p", Some("c")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container c is not valid for pod p"));
    }

    #[test]
    fn the_node_endpoint_is_its_internal_ip_and_kubelet_port() {
        let node = json!({ "status": {
            "addresses": [{ "type": "Hostname", "address": "n" }, { "type": "InternalIP", "address": "10.0.0.2" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 41000 } } } });
        assert_eq!(node_endpoint(&node), Some(("10.0.0.2".into(), 41000)));
        let no_port = json!({ "status": { "addresses": [{ "type": "InternalIP", "address": "10.0.0.2" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } } } });
        assert_eq!(node_endpoint(&no_port), None);
    }

    #[test]
    fn exec_needs_a_running_container_and_logs_a_started_one() {
        let pod = json!({ "status": { "containerStatuses": [
            { "name": "a", "state": { "running": {} } },
            { "name": "w", "state": { "waiting": { "reason": "ImagePullBackOff" } } }] } });
        assert!(ensure_running(&pod, "p", "a").is_ok());
        assert_eq!(ensure_running(&pod, "p", "w").unwrap_err().code, 400);
        let e = ensure_logs_available(&pod, "p", "w", false).unwrap_err();
        assert_eq!(e.message, "container \"w\" in pod \"p\" is waiting to start: ImagePullBackOff");
        assert_eq!(ensure_logs_available(&pod, "p", "a", true).unwrap_err().code, 400);
    }

    #[test]
    fn tls_failures_say_whether_the_certificate_failed_or_the_agent_has_none() {
        use std::io::{Error, ErrorKind};
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let message = tls_failure(&Error::new(ErrorKind::InvalidData, unknown), "10.0.0.2", 10250);
        assert!(
            message.starts_with("tls: failed to verify the node agent's serving certificate for 10.0.0.2"),
            "{message}"
        );
        assert!(message.ends_with("UnknownIssuer"), "{message}");
        let refused = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        let message = tls_failure(&Error::new(ErrorKind::InvalidData, refused), "10.0.0.2", 10250);
        assert!(message.contains("10.0.0.2:10250 refused the handshake"), "{message}");
        assert!(message.contains("no signed serving certificate yet"), "{message}");
        assert_eq!(tls_failure(&Error::new(ErrorKind::ConnectionRefused, "refused"), "h", 1), "refused");
    }
}
