//! TLS bootstrapping of an agent, as a kubelet does it: with a join (bootstrap) token
//! `K10<CA hash>::<id>.<secret>` the agent fetches the server CA from `/cacerts`, checks it
//! against the hash, then, authenticated as `system:bootstrap:<id>`, posts a
//! CertificateSigningRequest (signer `kubernetes.io/kube-apiserver-client-kubelet`, CN
//! `system:node:<name>`, O `system:nodes`) for a key it made, waits for the certificate and
//! keeps key, certificate and CA under DATA_DIR/pki (mode 0600). From then on (restarts
//! included, no token needed) it authenticates with that certificate; once 80 % of the
//! certificate's lifetime has passed it renews it through a CSR sent with the old
//! certificate (auto-approved as `selfnodeclient`): at start, and while running
//! ([`super::rotation`]).
//!
//! With a bare token `<id>.<secret>` (kubeadm's token discovery) the agent reads the
//! kube-public/cluster-info ConfigMap without verification and trusts the CA in its
//! kubeconfig only if the bootstrap signer's `jws-kubeconfig-<id>` signature verifies with
//! the token: only the server that knows the token's secret could have signed it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::rotation::{NodeCredentials, RotatingClient};

/// The signer of kubelet client certificates.
const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// How long to wait for the certificate (approval and signing are automatic).
const WAIT: Duration = Duration::from_secs(300);

/// A join token: the CA hash (when given in the `K10` form) and the bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinToken {
    /// sha256 of the server CA PEM, lowercase hex.
    pub ca_hash: Option<String>,
    /// `<id>.<secret>` (or the node token's secret, which a real node trades the same way).
    pub token: String,
}

impl JoinToken {
    /// `K10<CA hash>::<id>.<secret>` or a bare `<id>.<secret>`; `None` for anything else
    /// (such as the node token `K10…::server:<secret>`).
    pub(crate) fn parse(text: &str) -> Option<JoinToken> {
        let text = text.trim();
        let (ca_hash, token) = match text.strip_prefix("K10") {
            Some(rest) => {
                let (hash, token) = rest.split_once("::")?;
                let hex_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex_ok {
                    return None;
                }
                (Some(hash.to_ascii_lowercase()), token)
            }
            None => (None, text),
        };
        berth_apiserver::authn::BootstrapToken::parse(token)?;
        Some(JoinToken { ca_hash, token: token.to_string() })
    }
}

/// Where a node keeps its credentials.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    dir: PathBuf,
}

impl Credentials {
    /// The credentials under `data_dir/pki`.
    pub(crate) fn new(data_dir: &Path) -> Credentials {
        Credentials { dir: data_dir.join("pki") }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("kubelet-client.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("kubelet-client.key")
    }

    fn read(&self) -> Option<(String, String, String)> {
        let read = |p: PathBuf| std::fs::read_to_string(p).ok();
        Some((read(self.ca())?, read(self.cert())?, read(self.key())?))
    }

    pub(crate) fn write(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("restricting {}", self.dir.display()))?;
        crate::server::write_private(&self.ca(), ca_pem)?;
        // The key first: a certificate on disk always has its key.
        crate::server::write_private(&self.key(), key_pem)?;
        crate::server::write_private(&self.cert(), cert_pem)
    }
}

/// The share of a certificate's lifetime after which it is renewed.
pub(crate) const RENEW_AT: f64 = 0.8;

/// Whether `cert_pem` is still valid at `now` and whether it is due for renewal.
fn freshness(cert_pem: &str, now: berth_pki::OffsetDateTime) -> Option<(bool, bool)> {
    let (from, to) = berth_pki::csr::validity(cert_pem)?;
    let renew_after = from + (to - from) * RENEW_AT;
    Some((now < to, now >= renew_after))
}

/// A client for the node `node_name` at `server`, with the stored certificate (renewed first
/// when due), else a new one obtained with `token`; the certificate is then kept renewed
/// while the process runs ([`RotatingClient::keep_renewed`]).
pub(crate) async fn client(
    server: &str,
    token: Option<&JoinToken>,
    node_name: &str,
    data_dir: &Path,
) -> anyhow::Result<kube::Client> {
    let url: hyper::Uri = server.parse().with_context(|| format!("--server {server:?} is not a URL"))?;
    let creds = credentials(&url, server, token, node_name, data_dir).await?;
    let rotating = RotatingClient::new(url, &creds)?;
    let client = rotating.client();
    tokio::spawn(rotating.keep_renewed(creds, node_name.to_string(), Credentials::new(data_dir)));
    Ok(client)
}

/// The node's credentials: the stored certificate (renewed first when due), else a new one
/// obtained with `token`.
async fn credentials(
    url: &hyper::Uri,
    server: &str,
    token: Option<&JoinToken>,
    node_name: &str,
    data_dir: &Path,
) -> anyhow::Result<NodeCredentials> {
    if url.scheme_str() != Some("https") {
        bail!("--server {server:?} must be an https:// URL");
    }
    let creds = Credentials::new(data_dir);
    let now = berth_pki::OffsetDateTime::now_utc();
    let want_cn = format!("system:node:{node_name}");
    if let Some((ca_pem, cert_pem, key_pem)) = creds.read() {
        let subject_ok = cert_common_name(&cert_pem).as_deref() == Some(want_cn.as_str());
        let checked_ca =
            token.and_then(|t| t.ca_hash.as_deref()).is_none_or(|h| berth_pki::token::ca_hash(&ca_pem) == h);
        match freshness(&cert_pem, now) {
            Some((true, false)) if subject_ok && checked_ca => {
                tracing::info!(node = node_name, "using the stored node client certificate");
                return Ok(NodeCredentials { ca_pem, cert_pem, key_pem });
            }
            Some((true, true)) if subject_ok && checked_ca => {
                tracing::info!(node = node_name, "renewing the node client certificate (80 % of its lifetime passed)");
                let old = NodeCredentials { ca_pem, cert_pem, key_pem };
                let client = RotatingClient::new(url.clone(), &old)?.client();
                match request_certificate(&client, node_name).await {
                    Ok((cert_pem, key_pem)) => {
                        creds.write(&old.ca_pem, &cert_pem, &key_pem)?;
                        return Ok(NodeCredentials { ca_pem: old.ca_pem, cert_pem, key_pem });
                    }
                    Err(e) if token.is_none() => {
                        tracing::warn!(error = %e, "renewal failed: using the old certificate until it expires");
                        return Ok(old);
                    }
                    Err(e) => tracing::warn!(error = %e, "renewal failed: joining again with the token"),
                }
            }
            _ => tracing::info!(node = node_name, "the stored node certificate is expired, invalid or another node's"),
        }
    }
    let Some(token) = token else {
        bail!("no valid node certificate in {}: give --token to join", creds.dir.display());
    };
    let ca_pem = match &token.ca_hash {
        Some(hash) => {
            let ca_pem = fetch_ca(url).await?;
            let actual = berth_pki::token::ca_hash(&ca_pem);
            if &actual != hash {
                bail!(
                    "refusing {server}: the server's CA (sha256 {actual}) is not the one the token names (sha256 {hash})"
                );
            }
            ca_pem
        }
        None => match creds.read() {
            Some((ca_pem, _, _)) => ca_pem,
            None => discover_ca(url, &token.token).await?,
        },
    };
    let mut bootstrap = kube::Config::new(url.clone());
    bootstrap.root_cert = Some(ca_roots(&ca_pem)?);
    bootstrap.auth_info = serde_json::from_value(serde_json::json!({ "token": token.token }))
        .context("building the bootstrap credentials")?;
    let client = kube::Client::try_from(bootstrap).context("building the bootstrap client")?;
    let (cert_pem, key_pem) = request_certificate(&client, node_name).await.context("joining with the token")?;
    creds.write(&ca_pem, &cert_pem, &key_pem)?;
    tracing::info!(node = node_name, dir = %creds.dir.display(), "joined: node client certificate stored");
    Ok(NodeCredentials { ca_pem, cert_pem, key_pem })
}

fn cert_common_name(pem: &str) -> Option<String> {
    berth_apiserver::authn::user_from_certificate(&pem_der(pem)?).map(|u| u.username)
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok().map(|c| c.to_vec())
}

pub(crate) fn ca_roots(ca_pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .context("the server CA is not PEM")
}

/// How long a bare token's signature may take to appear in cluster-info (the bootstrap
/// signer adds it when the token is created).
const DISCOVERY_WAIT: Duration = Duration::from_secs(60);

/// The server CA from kube-public/cluster-info, fetched without verification and trusted
/// only once the signature made with `token` (`<id>.<secret>`) verifies.
async fn discover_ca(url: &hyper::Uri, token: &str) -> anyhow::Result<String> {
    let (id, secret) = token.split_once('.').context("a bare join token is <id>.<secret>")?;
    let mut insecure = kube::Config::new(url.clone());
    insecure.accept_invalid_certs = true;
    let client = kube::Client::try_from(insecure).context("building the discovery client")?;
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "kube-public");
    let key = format!("jws-kubeconfig-{id}");
    let deadline = std::time::Instant::now() + DISCOVERY_WAIT;
    let (kubeconfig, signature) = loop {
        let cm = api.get("cluster-info").await.with_context(|| format!("reading {url} kube-public/cluster-info"))?;
        let mut data = cm.data.unwrap_or_default();
        if let (Some(kubeconfig), Some(signature)) = (data.remove("kubeconfig"), data.remove(&key)) {
            break (kubeconfig, signature);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "{url}: cluster-info holds no signature for token {id}: the token is unknown, expired or not for signing (berth token create --usages signing,authentication)"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if !berth_pki::jws::verify_detached(&signature, kubeconfig.as_bytes(), id, secret) {
        bail!(
            "refusing {url}: its cluster-info signature for token {id} does not verify (a wrong token secret, or not the server the token belongs to)"
        );
    }
    let config = kube::config::Kubeconfig::from_yaml(&kubeconfig).context("cluster-info's kubeconfig")?;
    let ca = config
        .clusters
        .iter()
        .find_map(|c| c.cluster.as_ref()?.certificate_authority_data.clone())
        .context("cluster-info's kubeconfig names no CA")?;
    let pem = base64::engine::general_purpose::STANDARD.decode(ca.trim()).context("cluster-info's CA is not base64")?;
    let pem = String::from_utf8(pem).context("cluster-info's CA is not PEM")?;
    tracing::info!(server = %url, token = id, "the server CA is verified by the token's cluster-info signature");
    Ok(pem)
}

/// The server CA from `/cacerts`, fetched without verification (the caller checks it).
async fn fetch_ca(url: &hyper::Uri) -> anyhow::Result<String> {
    let mut insecure = kube::Config::new(url.clone());
    insecure.accept_invalid_certs = true;
    let request = hyper::Request::get("/cacerts").body(Vec::new()).context("building the /cacerts request")?;
    kube::Client::try_from(insecure)
        .context("building the discovery client")?
        .request_text(request)
        .await
        .with_context(|| format!("fetching {url}/cacerts"))
}

/// Posts a CSR for a new key as `system:node:<node_name>` and waits for its certificate:
/// `(cert_pem, key_pem)`.
pub(crate) async fn request_certificate(client: &kube::Client, node_name: &str) -> anyhow::Result<(String, String)> {
    let (key_pem, request_pem) = berth_pki::csr::new_request(&format!("system:node:{node_name}"), &["system:nodes"])
        .context("making the certificate request")?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("node-csr-".into()), ..ObjectMeta::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await.context("creating the CertificateSigningRequest")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, "waiting for the node client certificate");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let csr = api.get(&name).await.with_context(|| format!("reading CertificateSigningRequest {name}"))?;
        if let Some(status) = &csr.status {
            if let Some(cert) = status.certificate.as_ref().filter(|c| !c.0.is_empty()) {
                let cert_pem = String::from_utf8(cert.0.clone()).context("the issued certificate is not PEM")?;
                return Ok((cert_pem, key_pem));
            }
            for c in status.conditions.iter().flatten() {
                if matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True" {
                    bail!(
                        "CertificateSigningRequest {name} {}: {}",
                        c.type_.to_lowercase(),
                        c.message.as_deref().unwrap_or("")
                    );
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("CertificateSigningRequest {name} was not signed within {} s", WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_parse() {
        let hash = "a".repeat(64);
        let full = JoinToken::parse(&format!("K10{hash}::abcdef.0123456789abcdef")).unwrap();
        assert_eq!(full.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(full.token, "abcdef.0123456789abcdef");
        assert_eq!(JoinToken::parse("abcdef.0123456789abcdef").unwrap().ca_hash, None);
        for other in [
            format!("K10{hash}::server:0123abcd"),
            format!("K10{}::abcdef.0123456789abcdef", "a".repeat(63)),
            "K10::abcdef.0123456789abcdef".to_string(),
            "0123abcd".to_string(),
            "abcdef.0123456789ABCDEF".to_string(),
        ] {
            assert_eq!(JoinToken::parse(&other), None, "{other}");
        }
    }

    #[test]
    fn certificates_are_renewed_after_80_percent_of_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let pki = berth_pki::Pki::load_or_create(dir.path()).unwrap();
        let cert = pki.leaf(&berth_pki::LeafSpec::client("n", "system:node:n", &["system:nodes"])).unwrap();
        let (from, to) = berth_pki::csr::validity(&cert.cert_pem).unwrap();
        let at = |share: f64| from + (to - from) * share;
        assert_eq!(freshness(&cert.cert_pem, at(0.5)), Some((true, false)));
        assert_eq!(freshness(&cert.cert_pem, at(0.81)), Some((true, true)));
        assert_eq!(freshness(&cert.cert_pem, at(1.01)), Some((false, true)));
        assert_eq!(freshness("junk", at(0.5)), None);
        assert_eq!(cert_common_name(&cert.cert_pem).as_deref(), Some("system:node:n"));
    }
}
