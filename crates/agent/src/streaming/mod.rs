//! The node agent's own HTTPS endpoint, as the kubelet's port 10250: the API server reaches
//! it to stream pods' logs ([`logs`]), exec and attach sessions (WebSocket
//! `v5.channel.k8s.io` from the client, relayed as SPDY to containerd's CRI streaming
//! server) and port-forwarding ([`spdy`] over WebSocket or a plain SPDY upgrade, to the
//! pod's IP), and the Summary API `/stats/summary` ([`crate::node::stats`]).
//!
//! Callers authenticate with a client certificate signed by the cluster's client CA, which
//! the agent reads as Kubernetes publishes it (ConfigMap
//! `kube-system/extension-apiserver-authentication`, key `client-ca-file`); anything else
//! gets 401. Any holder of such a certificate is authorized (the kubelet would ask the API
//! server with a SubjectAccessReview). The serving certificate is self-signed by the agent:
//! kube-apiserver does not verify kubelet serving certificates unless configured to.

pub mod logs;
pub mod spdy;

mod remote;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::node::{Error, Result, Shared};

/// A response body.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// The ConfigMap (in kube-system) that carries the client CA.
pub const CLIENT_CA_CONFIGMAP: &str = "extension-apiserver-authentication";

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

/// A plain-text answer (the kubelet answers errors as text).
pub(crate) fn text(code: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(message.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Waits (up to a minute) for the client CA the API server publishes.
pub(crate) async fn client_ca(client: &kube::Client) -> Result<String> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    let mut last = String::new();
    for _ in 0..120 {
        match api.get_opt(CLIENT_CA_CONFIGMAP).await {
            Ok(Some(cm)) => {
                if let Some(ca) = cm.data.and_then(|d| d.get("client-ca-file").cloned()) {
                    return Ok(ca);
                }
                last = "no client-ca-file key".into();
            }
            Ok(None) => last = "not found".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::Config(format!("the client CA (ConfigMap kube-system/{CLIENT_CA_CONFIGMAP}): {last}")))
}

fn tls_config(shared: &Shared, client_ca_pem: &str) -> Result<rustls::ServerConfig> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("streaming server {what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("client CA", &e))?).map_err(|e| bad("client CA", &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("client CA", &e))?;
    let names = vec![shared.node_ip.to_string(), shared.config.node_name.clone(), "localhost".into()];
    let own = rcgen::generate_simple_self_signed(names).map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(own.signing_key.serialize_pem().as_bytes()).map_err(|e| bad("key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![own.cert.der().clone()], key)
        .map_err(|e| bad("TLS", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the endpoint on `listener` until the task is aborted.
pub(crate) fn serve(shared: Arc<Shared>, listener: TcpListener, client_ca_pem: &str) -> Result<JoinHandle<()>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&shared, client_ca_pem)?));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let authenticated = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(shared, authenticated, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
            });
        }
    }))
}

async fn handle(shared: Arc<Shared>, authenticated: bool, req: Request<Incoming>) -> Response<Body> {
    if !authenticated {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path: Vec<String> = req.uri().path().trim_matches('/').split('/').map(String::from).collect();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let get = req.method() == Method::GET;
    let get_or_post = get || req.method() == Method::POST;
    match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["healthz"] if get => text(StatusCode::OK, "ok"),
        ["stats", "summary"] if get => stats_summary(&shared),
        ["containerLogs", ns, pod, container] if get => {
            remote::container_logs(&shared, ns, pod, container, &query).await.unwrap_or_else(|e| e)
        }
        [kind @ ("exec" | "attach"), ns, pod, container] if get_or_post => {
            let attach = *kind == "attach";
            remote::exec(shared.clone(), ns, pod, container, &query, attach, req).await.unwrap_or_else(|e| e)
        }
        ["portForward", ns, pod] if get_or_post => {
            remote::port_forward(&shared, ns, pod, req).await.unwrap_or_else(|e| e)
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The Summary API (stats/v1alpha1) from the sampler's latest snapshot.
fn stats_summary(shared: &Shared) -> Response<Body> {
    let snapshot = shared.stats.latest();
    let body = crate::node::stats::summary_json(&shared.config.node_name, &snapshot, Some(shared.started));
    let mut r = Response::new(full(body.to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

/// The pod `ns/name`, or a 404 answer.
#[allow(clippy::result_large_err)] // the error is the answer itself
pub(crate) async fn pod(shared: &Shared, ns: &str, name: &str) -> Result<Pod, Response<Body>> {
    let api: kube::Api<Pod> = kube::Api::namespaced(shared.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, format!("pod \"{name}\" not found"))),
        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, format!("reading pod {ns}/{name}: {e}"))),
    }
}
