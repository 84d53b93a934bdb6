//! A minimal keep-alive HTTP/1.1 client: one TCP connection per [`Conn`], so a benchmark
//! with N clients holds exactly N connections to the server. Over TLS with the admin
//! client certificate once [`use_tls`] is set (the server benchmarks start serves HTTPS),
//! with a bearer token on every request once [`use_bearer`] is set.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection to the API server.
pub(crate) struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let sender = handshake(addr).await?;
        Ok(Conn { addr, sender })
    }

    /// Sends one request and returns the response head with its streaming body.
    /// Reconnects once if the server closed the idle connection.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Response<Incoming>> {
        self.send_as(method, path, body, "application/json").await
    }

    /// Like [`Conn::send`], with the body's `Content-Type` (a patch type, for instance).
    pub(crate) async fn send_as(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> anyhow::Result<Response<Incoming>> {
        if self.sender.ready().await.is_err() {
            self.sender = handshake(self.addr).await?;
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, content_type);
        }
        if let Some(token) = BEARER.read().unwrap_or_else(|e| e.into_inner()).as_deref() {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::new(body.unwrap_or_default())).context("building a request")?;
        self.sender.send_request(req).await.with_context(|| format!("{method} {path}"))
    }

    /// Sends one request, reads the whole body, and fails unless the status is a success.
    pub(crate) async fn call(&mut self, method: Method, path: &str, body: Option<Bytes>) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call_any(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(400)]));
        }
        Ok(bytes)
    }

    /// Sends one request and reads the whole body, whatever the status.
    pub(crate) async fn call_any(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(method.clone(), path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the body of {method} {path}"))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// The TLS configuration new connections use (`None`: plain HTTP).
static TLS: RwLock<Option<Arc<rustls::ClientConfig>>> = RwLock::new(None);

/// Makes every new [`Conn`] speak TLS with `config`.
pub(crate) fn use_tls(config: Arc<rustls::ClientConfig>) {
    *TLS.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
}

/// The bearer token every request carries (`None`: no `Authorization` header).
static BEARER: RwLock<Option<String>> = RwLock::new(None);

/// Makes every request carry `Authorization: Bearer TOKEN` (or no header with `None`).
pub(crate) fn use_bearer(token: Option<String>) {
    *BEARER.write().unwrap_or_else(|e| e.into_inner()) = token;
}

/// A TLS client configuration trusting `ca_pem` and presenting `cert_pem`/`key_pem`.
pub(crate) fn tls_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the client key")?;
    let config = tls_builder(ca_pem)?.with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A TLS client configuration trusting `ca_pem` that presents no certificate (the requests
/// then authenticate with a bearer token).
pub(crate) fn tls_config_without_certificate(ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(tls_builder(ca_pem)?.with_no_client_auth()))
}

fn tls_builder(
    ca_pem: &str,
) -> anyhow::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the server CA")?).context("the server CA")?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots))
}

async fn handshake(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let tls = TLS.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(tls) = tls else {
        return start(addr, TokioIo::new(tcp)).await;
    };
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    start(addr, TokioIo::new(stream)).await
}

async fn start<T>(addr: SocketAddr, io: T) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(io).await.with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors then surface on the sender.
        let _ = conn.await;
    });
    Ok(sender)
}
