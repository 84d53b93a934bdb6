//! Container probes (startup, liveness, readiness) as the kubelet runs them: exec through
//! CRI ExecSync, httpGet (2xx/3xx is success), tcpSocket and grpc (the standard
//! `grpc.health.v1.Health/Check` over plain HTTP/2; SERVING is success) from the node to the
//! pod IP; initialDelaySeconds, periodSeconds, timeoutSeconds, success and failure thresholds.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::runtime::cri::Cri;

/// What a probe's results have added up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet (initial delay, or thresholds not reached from the start).
    Unknown,
    /// Passing.
    Success,
    /// Failing.
    Failure,
}

/// One probe's running state for one container run.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// When the container (this run) started.
    started: Instant,
    next: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The verdict so far.
    pub verdict: Verdict,
}

impl ProbeState {
    /// A fresh state for a container started at `started`.
    pub fn new(started: Instant) -> ProbeState {
        ProbeState { started, next: None, successes: 0, failures: 0, verdict: Verdict::Unknown }
    }

    /// Whether the probe is due at `now`.
    pub fn due(&self, probe: &Probe, now: Instant) -> bool {
        let first = self.started + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        now >= self.next.unwrap_or(first)
    }

    /// Records one result at `now` and returns the verdict.
    pub fn record(&mut self, probe: &Probe, ok: bool, now: Instant) -> Verdict {
        self.next = Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.verdict = Verdict::Success;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.verdict = Verdict::Failure;
            }
        }
        self.verdict
    }
}

/// The container port a probe names (a number, or the name of one of the container's ports).
pub(crate) fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Runs `probe` once against the container: Ok on success, else the output the kubelet puts
/// in its `Unhealthy` event (`<Kind> probe failed: <output>`).
pub async fn run(
    cri: &Cri,
    container_id: &str,
    pod_ip: Option<&str>,
    container: &Container,
    probe: &Probe,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match cri.exec_sync(container_id, cmd.clone(), timeout.as_secs() as i64).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            // The kubelet's output: what the command wrote, stdout then stderr.
            Ok(r) => Err(String::from_utf8_lossy(&[r.stdout, r.stderr].concat()).into_owned()),
            Err(e) => Err(format!("command {:?} failed: {e}", cmd.join(" "))),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().or(pod_ip.map(str::to_string));
        let Some(host) = host else { return Err("the pod has no IP yet".into()) };
        let Some(port) = port(container, &tcp.port) else { return Err(format!("invalid port {:?}", tcp.port)) };
        return match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(g) = &probe.grpc {
        let Some(host) = pod_ip else { return Err("the pod has no IP yet".into()) };
        let Ok(port) = u16::try_from(g.port) else { return Err(format!("invalid port {}", g.port)) };
        let service = g.service.clone().unwrap_or_default();
        return match grpc_health(host, port, service, timeout).await? {
            SERVING => Ok(()),
            other => Err(format!("service unhealthy (responded with {other})")),
        };
    }
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().filter(|h| !h.is_empty()).or(pod_ip.map(str::to_string));
        let Some(host) = host else { return Err("the pod has no IP yet".into()) };
        let Some(port) = port(container, &http.port) else { return Err(format!("invalid port {:?}", http.port)) };
        return http_get(http, &host, port, timeout).await;
    }
    Err("the probe has no handler".into())
}

/// An httpGet probe against `host:port` (HTTPS without verifying the certificate, as the
/// kubelet): a 2xx or 3xx status is success; else the kubelet's failure output.
pub(crate) async fn http_get(http: &HTTPGetAction, host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let path = http.path.clone().unwrap_or_else(|| "/".into());
    let https = http.scheme.as_deref() == Some("HTTPS");
    let url = format!("{}://{host}:{port}{path}", if https { "https" } else { "http" });
    let mut headers = String::new();
    for h in http.http_headers.iter().flatten() {
        headers.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\n{headers}\r\n"
    );
    let get = async {
        let stream = TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
        if https {
            let tls = connect_tls(stream, host).await.map_err(|e| e.to_string())?;
            first_bytes(tls, &request).await
        } else {
            first_bytes(stream, &request).await
        }
    };
    match tokio::time::timeout(timeout, get).await {
        Ok(Ok(head)) => match http_status(&head) {
            Some(code) if (200..400).contains(&code) => Ok(()),
            Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
            None => Err(format!("Get {url:?}: malformed HTTP response")),
        },
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => Err(format!("Get {url:?}: context deadline exceeded")),
    }
}

/// Sends `request` and reads the first bytes of the answer (enough for its status line).
async fn first_bytes<S>(mut stream: S, request: &str) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    head.truncate(n);
    Ok(head)
}

/// A TLS client over `stream` that accepts any server certificate, as the kubelet's probes
/// and hooks do (`InsecureSkipVerify`): a pod's serving certificate is its own business.
pub(crate) async fn connect_tls(
    stream: TcpStream,
    host: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    // An IP (the pod's, usually) or a name; SNI is only sent for names.
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await
}

/// A certificate verifier that takes any certificate (signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    /// UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3.
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: i32 = 1;

/// One `grpc.health.v1.Health/Check` call to `host:port` over a fresh plain HTTP/2
/// connection (as the kubelet's probe dials each time): the serving status, or why none.
async fn grpc_health(host: &str, port: u16, service: String, timeout: Duration) -> Result<i32, String> {
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| e.to_string())?
        .user_agent("kube-probe/1.33")
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| format!("connecting to {authority}: {e}"))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| e.to_string())?;
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let answer = grpc
            .unary(tonic::Request::new(HealthCheckRequest { service }), path, codec)
            .await
            .map_err(|status| format!("health check: {status}"))?;
        Ok(answer.into_inner().status)
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| format!("timed out after {}s", timeout.as_secs()))?
}

/// The status code of an HTTP response's first bytes.
pub(crate) fn http_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_decide_the_verdict() {
        let p = probe(serde_json::json!({ "periodSeconds": 2, "failureThreshold": 2, "successThreshold": 1 }));
        let t0 = Instant::now();
        let mut s = ProbeState::new(t0);
        assert!(s.due(&p, t0));
        assert_eq!(s.record(&p, true, t0), Verdict::Success);
        assert!(!s.due(&p, t0 + Duration::from_secs(1)));
        assert!(s.due(&p, t0 + Duration::from_secs(2)));
        assert_eq!(s.record(&p, false, t0 + Duration::from_secs(2)), Verdict::Success);
        assert_eq!(s.record(&p, false, t0 + Duration::from_secs(4)), Verdict::Failure);
        assert_eq!(s.record(&p, true, t0 + Duration::from_secs(6)), Verdict::Success);
    }

    #[test]
    fn initial_delay_postpones_the_first_probe() {
        let p = probe(serde_json::json!({ "initialDelaySeconds": 5 }));
        let t0 = Instant::now();
        let s = ProbeState::new(t0);
        assert!(!s.due(&p, t0 + Duration::from_secs(4)));
        assert!(s.due(&p, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn status_lines_and_named_ports() {
        assert_eq!(http_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(http_status(b"HTTP/1.1 503 x"), Some(503));
        assert_eq!(http_status(b"garbage"), None);
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{ "name": "http", "containerPort": 8080 }] }))
        .unwrap();
        assert_eq!(port(&c, &IntOrString::String("http".into())), Some(8080));
        assert_eq!(port(&c, &IntOrString::String("nope".into())), None);
        assert_eq!(port(&c, &IntOrString::Int(81)), Some(81));
    }

    /// Serves one TLS connection on `listener` with a certificate from a CA no one trusts,
    /// answering `answer`; returns the request's first line.
    pub(crate) async fn serve_tls_once(listener: tokio::net::TcpListener, answer: &'static [u8]) -> String {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let dir = tempfile::tempdir().unwrap();
        let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
        let leaf = pki.issue(&berth_pki::LeafSpec::serving(&["127.0.0.1".to_string()])).unwrap();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tls.read(&mut buf).await.unwrap();
        tls.write_all(answer).await.unwrap();
        tls.shutdown().await.unwrap();
        String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate() {
        let action = |scheme: &str| -> HTTPGetAction {
            serde_json::from_value(serde_json::json!({ "path": "/healthz", "port": 1, "scheme": scheme })).unwrap()
        };
        let t = Duration::from_secs(10);
        for (answer, expect) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], Ok(())),
            (&b"HTTP/1.1 302 Found\r\n\r\n"[..], Ok(())),
            (&b"HTTP/1.1 503 Unavailable\r\n\r\n"[..], Err("HTTP probe failed with statuscode: 503".to_string())),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let https = action("HTTPS");
            let (line, result) = tokio::join!(serve_tls_once(listener, answer), http_get(&https, "127.0.0.1", port, t));
            assert_eq!(line, "GET /healthz HTTP/1.0");
            assert_eq!(result, expect);
        }
        // Nothing listening: the error names the URL, as the kubelet's.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = http_get(&action("HTTPS"), "127.0.0.1", port, t).await.unwrap_err();
        assert!(err.starts_with(&format!("Get \"https://127.0.0.1:{port}/healthz\": ")), "{err}");
        let err = http_get(&action("HTTP"), "127.0.0.1", port, t).await.unwrap_err();
        assert!(err.starts_with(&format!("Get \"http://127.0.0.1:{port}/healthz\": ")), "{err}");
    }

    /// The server side of one `Health/Check` call, hand-written HTTP/2 frames: SETTINGS,
    /// the ACK of the client's, response headers, one message with `status`, trailers.
    fn health_response(status: u8) -> Vec<u8> {
        fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&[kind, flags]);
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(payload);
        }
        let mut out = Vec::new();
        frame(&mut out, 4, 0, 0, &[]);
        frame(&mut out, 4, 1, 0, &[]);
        // HPACK: `:status: 200` (static 8); content-type (static 31) without indexing.
        let mut headers = vec![0x88, 0x0f, 0x10, 16];
        headers.extend_from_slice(b"application/grpc");
        frame(&mut out, 1, 0x4, 1, &headers);
        frame(&mut out, 0, 0, 1, &[0, 0, 0, 0, 2, 0x08, status]);
        let mut trailers = vec![0x00, 11];
        trailers.extend_from_slice(b"grpc-status");
        trailers.extend_from_slice(&[1, b'0']);
        frame(&mut out, 1, 0x5, 1, &trailers);
        out
    }

    /// Serves one connection: reads the client's frames up to the end of its request, then
    /// answers with `status`; returns the request message's bytes.
    async fn serve_once(listener: &tokio::net::TcpListener, status: u8) -> Vec<u8> {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        s.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 9];
            s.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            s.read_exact(&mut payload).await.unwrap();
            if head[3] == 0 {
                message.extend_from_slice(&payload);
                if head[4] & 1 == 1 {
                    break;
                }
            }
        }
        s.write_all(&health_response(status)).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        message
    }

    #[tokio::test]
    async fn grpc_probes_call_the_standard_health_service() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = Duration::from_secs(5);
        let (served, answer) = tokio::join!(serve_once(&listener, 1), grpc_health("127.0.0.1", port, "db".into(), t));
        assert_eq!(answer, Ok(SERVING));
        // The request: uncompressed, 5 bytes long, field 1 = "db".
        assert_eq!(served, [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        let (_, answer) = tokio::join!(serve_once(&listener, 2), grpc_health("127.0.0.1", port, String::new(), t));
        assert_eq!(answer, Ok(2), "NOT_SERVING");
        drop(listener);
        let refused = grpc_health("127.0.0.1", port, String::new(), t).await.unwrap_err();
        assert!(refused.contains("connecting"), "{refused}");
    }
}
