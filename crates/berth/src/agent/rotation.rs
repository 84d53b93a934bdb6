//! A node client certificate renewed while the agent runs, as the kubelet's certificate
//! manager does: once 80 % of its life has passed the agent asks for a new one through a
//! CertificateSigningRequest (sent with the current certificate, so it is auto-approved as
//! `selfnodeclient`), stores it under DATA_DIR/pki, presents it on every new TLS handshake,
//! and closes the connections made with the old one so that watches reconnect with the new
//! one (the API server checks a client certificate's expiry on every request).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use anyhow::Context;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::join::{Credentials, RENEW_AT, request_certificate};

/// A node's certificate and key (PEM) with the CA it trusts, as stored under DATA_DIR/pki.
#[derive(Debug, Clone)]
pub(crate) struct NodeCredentials {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// The client certificate rustls presents: the current one, swapped on renewal.
#[derive(Debug)]
struct NodeCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl NodeCertificate {
    fn set(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        let key = certified_key(cert_pem, key_pem, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }
}

impl ResolvesClientCert for NodeCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(cert_pem: &str, key_pem: &str, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the node certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("the node key is not PEM")?;
    CertifiedKey::from_der(certs, key, provider).context("the node certificate does not match its key")
}

/// The open connections of one client, so that a renewal can close them.
#[derive(Debug, Default)]
struct Connections(Mutex<Vec<Weak<Closing>>>);

impl Connections {
    fn track(&self) -> Arc<Closing> {
        let state = Arc::new(Closing::default());
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|c| c.strong_count() > 0);
        all.push(Arc::downgrade(&state));
        state
    }

    /// Closes every connection open now; returns how many there were.
    fn close_all(&self) -> usize {
        let all = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        all.iter().filter_map(Weak::upgrade).map(|c| c.close()).count()
    }
}

/// One connection's "closed" flag and the waker of the task reading from it.
#[derive(Debug, Default)]
struct Closing {
    closed: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Closing {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(w) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A TCP connection that reads as ended and refuses writes once closed.
struct Closable {
    io: TokioIo<tokio::net::TcpStream>,
    state: Arc<Closing>,
}

impl hyper::rt::Read for Closable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // The waker first, then the flag: a close in between still wakes this task.
        *self.state.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.state.is_closed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Closable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.state.is_closed() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for Closable {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

/// A TCP connector whose connections a renewal can close.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    connections: Arc<Connections>,
}

impl tower::Service<http::Uri> for Connector {
    type Response = Closable;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Closable, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.tcp.call(uri);
        let connections = self.connections.clone();
        Box::pin(async move {
            let io = connecting.await?;
            Ok(Closable { io, state: connections.track() })
        })
    }
}

/// How the agent's client reaches the API server with a certificate it keeps renewed.
/// HTTP/2 when the server offers it (berth's does): all its requests and watches share
/// one connection instead of one connection each.
pub(crate) struct RotatingClient {
    identity: Arc<NodeCertificate>,
    connections: Arc<Connections>,
    client: kube::Client,
}

impl RotatingClient {
    /// A client of `url` trusting only `creds.ca_pem` and presenting `creds`' certificate.
    pub(crate) fn new(url: hyper::Uri, creds: &NodeCredentials) -> anyhow::Result<RotatingClient> {
        use kube::client::ConfigExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(&creds.cert_pem, &creds.key_pem, &provider)?;
        let identity = Arc::new(NodeCertificate { current: RwLock::new(Arc::new(key)), provider });
        let mut config = kube::Config::new(url);
        config.root_cert = Some(super::join::ca_roots(&creds.ca_pem)?);
        let mut tls = config.rustls_client_config().context("the TLS client configuration")?;
        tls.client_auth_cert_resolver = identity.clone();
        // A resumed TLS session keeps the identity of the handshake it resumes: the old
        // certificate. Every connection does a full handshake with the current one.
        tls.resumption = rustls::client::Resumption::disabled();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(config.connect_timeout);
        let connections = Arc::new(Connections::default());
        let connector = Connector { tcp, connections: connections.clone() };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
        let service = tower::ServiceBuilder::new().layer(config.base_uri_layer()).service(http);
        let client = kube::Client::new(service, config.default_namespace);
        Ok(RotatingClient { identity, connections, client })
    }

    /// The API client (clones share the certificate and its renewals).
    pub(crate) fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Presents `cert_pem` from now on and closes the connections made with the old one.
    pub(crate) fn switch(&self, cert_pem: &str, key_pem: &str) -> anyhow::Result<usize> {
        self.identity.set(cert_pem, key_pem)?;
        Ok(self.connections.close_all())
    }

    /// Renews the certificate after [`RENEW_AT`] of its life, again and again; runs until
    /// the process ends. A failed renewal is retried with back-off (up to 5 minutes) while
    /// the current certificate lasts.
    pub(crate) async fn keep_renewed(self, mut creds: NodeCredentials, node_name: String, store: Credentials) {
        let mut obtained = berth_pki::OffsetDateTime::now_utc();
        let mut retry = Duration::from_secs(5);
        loop {
            let Some(wait) = renewal_wait(&creds.cert_pem, obtained, berth_pki::OffsetDateTime::now_utc()) else {
                tracing::error!("the node certificate has no readable validity: it is not renewed");
                return;
            };
            tokio::time::sleep(wait).await;
            tracing::info!(node = %node_name, "renewing the node client certificate (80 % of its lifetime passed)");
            let renewed = match request_certificate(&self.client, &node_name).await {
                Ok((cert_pem, key_pem)) => match self.switch(&cert_pem, &key_pem) {
                    Ok(closed) => Ok((cert_pem, key_pem, closed)),
                    Err(e) => Err(e.context("the renewed node certificate is unusable")),
                },
                Err(e) => Err(e),
            };
            match renewed {
                Ok((cert_pem, key_pem, closed)) => {
                    tracing::info!(node = %node_name, closed, "node client certificate renewed; connections made with the old one closed");
                    if let Err(e) = store.write(&creds.ca_pem, &cert_pem, &key_pem) {
                        tracing::warn!(error = %e, "could not store the renewed node certificate: using it anyway");
                    }
                    creds.cert_pem = cert_pem;
                    creds.key_pem = key_pem;
                    obtained = berth_pki::OffsetDateTime::now_utc();
                    retry = Duration::from_secs(5);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?retry, "renewing the node client certificate failed");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(300));
                }
            }
        }
    }
}

/// How long until `cert_pem` is due for renewal: [`RENEW_AT`] of the time from when it was
/// `obtained` (or its notBefore, if later; signers backdate notBefore) to its notAfter. Zero
/// when due already; `None` when the certificate cannot be read.
fn renewal_wait(
    cert_pem: &str,
    obtained: berth_pki::OffsetDateTime,
    now: berth_pki::OffsetDateTime,
) -> Option<Duration> {
    let (from, to) = berth_pki::csr::validity(cert_pem)?;
    let start = from.max(obtained);
    let due = start + (to - start) * RENEW_AT;
    Some(Duration::try_from(due - now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_80_percent_of_the_life_left_when_obtained() {
        let dir = tempfile::tempdir().unwrap();
        let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
        let kind = berth_pki::CaKind::Client;
        let signer = berth_pki::csr::Signer::new(&pki.ca_pem(kind).unwrap(), &pki.ca_key_pem(kind).unwrap()).unwrap();
        let (_, request) = berth_pki::csr::new_request("system:node:n", &["system:nodes"]).unwrap();
        let usages = ["client auth".to_string()];
        let cert = signer.sign(&request, &usages, berth_pki::csr::duration(Duration::from_secs(1000))).unwrap();
        let (from, to) = berth_pki::csr::validity(&cert).unwrap();
        // Obtained at notBefore: due at 80 % of the whole life.
        let wait = renewal_wait(&cert, from, from).unwrap();
        assert_eq!(wait.as_secs(), ((to - from).whole_seconds() as f64 * RENEW_AT) as u64);
        // Obtained later (a backdated notBefore): 80 % of what was left then.
        let obtained = to - berth_pki::csr::duration(Duration::from_secs(100));
        assert_eq!(renewal_wait(&cert, obtained, obtained).unwrap().as_secs(), 80);
        // Past due: at once.
        assert_eq!(renewal_wait(&cert, from, to).unwrap(), Duration::ZERO);
        assert_eq!(renewal_wait("not a certificate", from, from), None);
    }

    #[test]
    fn closing_a_connection_wakes_its_reader_and_forgets_it() {
        let connections = Connections::default();
        let a = connections.track();
        let b = connections.track();
        drop(b);
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        *a.reader.lock().unwrap() = Some(Waker::from(Arc::new(Count(woken.clone()))));
        assert_eq!(connections.close_all(), 1, "the dropped connection is not counted");
        assert!(a.is_closed());
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(connections.close_all(), 0, "closed connections are forgotten");
    }
}
