//! The node agent's own HTTPS endpoint, as the kubelet's port 10250: the API server reaches
//! it to stream pods' logs ([`logs`]), exec and attach sessions (WebSocket
//! `v5.channel.k8s.io` from the client, relayed as SPDY to containerd's CRI streaming
//! server) and port-forwarding ([`spdy`] over WebSocket or a plain SPDY upgrade, to the
//! pod's IP), and the Summary API `/stats/summary` ([`crate::node::stats`]).
//!
//! Callers authenticate with a client certificate signed by the cluster's client CA, which
//! the agent reads as Kubernetes publishes it (ConfigMap
//! `kube-system/extension-apiserver-authentication`, key `client-ca-file`); anything else
//! gets 401. Each request is then authorized with a SubjectAccessReview on the Node's
//! subresources ([`authz`]); a refusal is 403. The serving certificate is signed by the
//! cluster CA through a CertificateSigningRequest and renewed without a restart
//! ([`serving_cert`]), and the API server verifies it.

pub mod logs;
pub mod serving_cert;
pub mod spdy;

mod authz;
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
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::node::{Error, Result, Shared};
use serving_cert::ServingCertificate;

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

fn tls_config(
    serving: Arc<ServingCertificate>,
    provider: Arc<CryptoProvider>,
    client_ca_pem: &str,
) -> Result<rustls::ServerConfig> {
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("streaming server {what}: {e}"));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("client CA", &e))?).map_err(|e| bad("client CA", &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("client CA", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the endpoint on `listener` until the task is aborted, with a serving certificate
/// obtained (and renewed) through CSRs meanwhile.
pub(crate) fn serve(shared: Arc<Shared>, listener: TcpListener, client_ca_pem: &str) -> Result<JoinHandle<()>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let serving = Arc::new(ServingCertificate::new(provider.clone()));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(serving.clone(), provider, client_ca_pem)?));
    let authorizer = Arc::new(authz::Authorizer::new(shared.client.clone(), shared.config.node_name.clone()));
    Ok(tokio::spawn(async move {
        let renewal = tokio::spawn(serving_cert::keep_renewed(shared.clone(), serving));
        let _renewal = AbortOnDrop(renewal.abort_handle());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, shared, authorizer) = (acceptor.clone(), shared.clone(), authorizer.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| authz::User::from_certificate(c));
                let service = hyper::service::service_fn(move |req| {
                    let (shared, authorizer, user) = (shared.clone(), authorizer.clone(), user.clone());
                    async move { Ok::<_, Infallible>(authorized(shared, &authorizer, user, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
                let _ = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await;
            });
        }
    }))
}

/// Authenticates (a verified client certificate) and authorizes (a SubjectAccessReview)
/// `req`, then handles it.
async fn authorized(
    shared: Arc<Shared>,
    authorizer: &authz::Authorizer,
    user: Option<authz::User>,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(user) = user else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let asked = authz::asked(req.method(), req.uri().path());
    match authorizer.allowed(&user, &asked).await {
        Ok(true) => handle(shared, req).await,
        Ok(false) => text(StatusCode::FORBIDDEN, format!("Forbidden ({})", authz::describe(&user, &asked))),
        Err(e) => {
            tracing::warn!(error = %e, "authorizing a request to the node agent's port");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("Authorization error ({})", authz::describe(&user, &asked)))
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
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
