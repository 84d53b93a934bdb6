//! A minimal HTTPS/1.1 client over rustls (one request per connection), enough for tests
//! that must send what real clients would refuse to (oversized, malformed or mislabelled
//! bodies) or must choose their credentials: the kubeconfig's admin certificate, none, a
//! bearer token, or a certificate of a CA the server does not know.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::HttpResponse;

/// A TLS connection to the server.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// What the server URL, CA and admin credentials of a kubeconfig are.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    /// `server:` (https://HOST:PORT).
    pub server: String,
    /// `certificate-authority-data`, decoded (PEM).
    pub ca_pem: String,
    /// `client-certificate-data`, decoded (PEM).
    pub cert_pem: String,
    /// `client-key-data`, decoded (PEM).
    pub key_pem: String,
}

impl Kubeconfig {
    /// Reads the kubeconfig `berth server` writes (one cluster, one user).
    pub fn read(path: &Path) -> std::io::Result<Kubeconfig> {
        let text = std::fs::read_to_string(path)?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .ok_or_else(|| std::io::Error::other(format!("no {name} in {}", path.display())))
        };
        let decoded = |name: &str| -> std::io::Result<String> {
            let bytes =
                base64::engine::general_purpose::STANDARD.decode(field(name)?).map_err(std::io::Error::other)?;
            String::from_utf8(bytes).map_err(std::io::Error::other)
        };
        Ok(Kubeconfig {
            server: field("server:")?,
            ca_pem: decoded("certificate-authority-data:")?,
            cert_pem: decoded("client-certificate-data:")?,
            key_pem: decoded("client-key-data:")?,
        })
    }
}

/// The credentials an [`HttpClient`] presents.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// The kubeconfig's client certificate.
    Admin,
    /// Nothing.
    Anonymous,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// This client certificate and key (PEM).
    Certificate {
        /// Certificate.
        cert_pem: String,
        /// Key.
        key_pem: String,
    },
}

/// An HTTPS client of one server.
#[derive(Clone)]
pub struct HttpClient {
    addr: String,
    config: Arc<rustls::ClientConfig>,
    bearer: Option<String>,
}

fn certs(pem: &str) -> std::io::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(std::io::Error::other)
}

impl HttpClient {
    /// A client of `addr` (HOST:PORT) trusting the kubeconfig's CA, with `credentials`.
    pub fn new(addr: &str, kubeconfig: &Kubeconfig, credentials: Credentials) -> std::io::Result<HttpClient> {
        Self::trusting(addr, &kubeconfig.ca_pem, kubeconfig, credentials)
    }

    /// A client of `addr` trusting `ca_pem` (which may not be the server's).
    pub fn trusting(
        addr: &str,
        ca_pem: &str,
        kubeconfig: &Kubeconfig,
        credentials: Credentials,
    ) -> std::io::Result<HttpClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(ca_pem)? {
            roots.add(cert).map_err(std::io::Error::other)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots);
        let identity = |cert: &str, key: &str| -> std::io::Result<_> {
            Ok((certs(cert)?, PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(std::io::Error::other)?))
        };
        let (config, bearer) = match credentials {
            Credentials::Admin => {
                let (c, k) = identity(&kubeconfig.cert_pem, &kubeconfig.key_pem)?;
                (builder.with_client_auth_cert(c, k).map_err(std::io::Error::other)?, None)
            }
            Credentials::Certificate { cert_pem, key_pem } => {
                let (c, k) = identity(&cert_pem, &key_pem)?;
                (builder.with_client_auth_cert(c, k).map_err(std::io::Error::other)?, None)
            }
            Credentials::Anonymous => (builder.with_no_client_auth(), None),
            Credentials::Bearer(token) => (builder.with_no_client_auth(), Some(token)),
        };
        Ok(HttpClient { addr: addr.to_string(), config: Arc::new(config), bearer })
    }

    /// Opens a TLS connection (read timeout 30 s); the handshake completes here.
    pub fn connect(&self) -> std::io::Result<TlsStream> {
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h);
        self.connect_as(host.trim_matches(['[', ']']))
    }

    /// Like [`HttpClient::connect`], verifying the server's certificate for `server_name`
    /// (a DNS name or an IP address) instead of the address dialled.
    pub fn connect_as(&self, server_name: &str) -> std::io::Result<TlsStream> {
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let name = ServerName::try_from(server_name.to_string()).map_err(std::io::Error::other)?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(stream)
    }

    /// The request head's credential header, if any.
    pub fn auth_header(&self) -> String {
        self.bearer.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default()
    }

    /// One request with extra header lines (`Name: value`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let mut stream = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{}",
            self.addr,
            body.len(),
            self.auth_header()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        // The server may answer (413) before reading a large body; ignore a broken pipe.
        let _ = stream.write_all(body);
        let _ = stream.flush();
        crate::read_response(BufReader::new(stream))
    }

    /// A GET of `path` on an open connection, which stays open (`keep-alive`) for the next.
    pub fn get_on(&self, stream: &mut TlsStream, path: &str) -> std::io::Result<HttpResponse> {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{}\r\n", self.addr, self.auth_header());
        stream.write_all(head.as_bytes())?;
        stream.flush()?;
        crate::read_response(BufReader::new(stream))
    }

    /// One request.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        self.request_with(method, path, &[], content_type, body)
    }
}
