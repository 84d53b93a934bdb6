//! The HTTPS listener: rustls (ring) over each accepted connection, HTTP/2 and HTTP/1.1
//! (ALPN `h2`, then `http/1.1`, as kube-apiserver): HTTP/2 carries many requests and
//! watches over one connection (client-go and the server's own components use it); the
//! upgrades of exec, attach and port-forward need HTTP/1.1, which kubectl asks for on
//! those connections. Client certificates are
//! optional at the TLS layer and verified against the client CA when given; the user a
//! verified certificate names is attached to every request of its connection for
//! [`crate::authn`].
//!
//! The serving certificate is re-read from its files when they change (as kube-apiserver's
//! dynamic serving certificate is), so `berth certificate rotate` takes effect on new
//! connections without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::authn::PeerCertificate;

/// The server's TLS material, PEM.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Serving certificate (chain).
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The CA client certificates are verified against.
    pub client_ca_pem: String,
    /// The CA that signed the serving certificate (served at `/cacerts`).
    pub server_ca_pem: String,
    /// The files `cert_pem` and `key_pem` were read from, if any: the server then serves
    /// what they hold after they change (checked at most every few seconds).
    pub cert_files: Option<(PathBuf, PathBuf)>,
}

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM certificate or key did not parse.
    #[error("{what}: {source}")]
    Pem {
        /// Which one.
        what: &'static str,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A serving certificate file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// rustls refused the material.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be used.
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

impl TlsConfig {
    /// The rustls server configuration: ring, TLS 1.2 and 1.3, optional client
    /// certificates, ALPN `h2` and `http/1.1`.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
            roots.add(cert.map_err(|source| TlsError::Pem { what: "client CA", source })?)?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()?;
        let serving = ServingCert {
            current: Mutex::new(Current {
                key: Arc::new(certified_key(&self.cert_pem, &self.key_pem, &provider)?),
                modified: self.cert_files.as_ref().and_then(|(cert, _)| modified(cert)),
                checked: Instant::now(),
            }),
            files: self.cert_files.clone(),
            provider: provider.clone(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(serving));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert_pem: &str, key_pem: &str, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what: "serving certificate", source })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|source| TlsError::Pem { what: "serving key", source })?;
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// How often, at most, the serving certificate's file is looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The serving certificate rustls asks for at each handshake.
#[derive(Debug)]
struct ServingCert {
    current: Mutex<Current>,
    files: Option<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    /// The certificate file's modification time when `key` was read.
    modified: Option<SystemTime>,
    checked: Instant,
}

impl ServingCert {
    /// Re-reads the files if the certificate's changed since `current` was read. A pair that
    /// does not load (a key that does not match: rotation writes the key first, then the
    /// certificate) keeps the old one and is tried again at the next check.
    fn reload_if_changed(&self, current: &mut Current) {
        let Some((cert_path, key_path)) = &self.files else { return };
        let now = modified(cert_path);
        if now.is_none() || now == current.modified {
            return;
        }
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.clone(), source })
        };
        let loaded = read(cert_path)
            .and_then(|cert| Ok((cert, read(key_path)?)))
            .and_then(|(cert, key)| certified_key(&cert, &key, &self.provider));
        match loaded {
            Ok(key) => {
                current.key = Arc::new(key);
                current.modified = now;
                tracing::info!(certificate = %cert_path.display(), "serving certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate changed but does not load yet; keeping the old one")
            }
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            self.reload_if_changed(&mut current);
        }
        Some(current.key.clone())
    }
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent HTTP/2 streams a client may open on one connection: kube-apiserver's
/// default (`--http2-max-streams-per-connection`). Each watch holds one for its life,
/// and a client at the limit waits for a free stream rather than opening a connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 1000;

/// Serves `router` over TLS on `listener` until `stop` resolves, then stops accepting and
/// waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| PeerCertificate::of(c))
                .unwrap_or_default();
            let service = router.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req.extensions_mut().insert(axum::extract::ConnectInfo(remote));
                req
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
