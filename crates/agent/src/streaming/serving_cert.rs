//! The agent's serving certificate, as the kubelet's with `serverTLSBootstrap: true`: the
//! agent makes a key and posts a CertificateSigningRequest (signer
//! `kubernetes.io/kubelet-serving`, CN `system:node:NAME`, O `system:nodes`, usages digital
//! signature and server auth, SANs the node's name and InternalIP — its Node's addresses),
//! which berth's csrapproving approves when the node asks for itself and csrsigning signs
//! with the cluster CA; the API server verifies it against that CA. The certificate is kept
//! under DATA_DIR/pki (`kubelet-server.crt`/`.key`, mode 0600) for restarts, and renewed the
//! same way once 80 % of its lifetime has passed. [`ServingCertificate`] is the rustls
//! resolver that hands out the current one, so a renewal takes effect on the next handshake
//! without a restart; until the first is signed, handshakes fail (as the kubelet's do).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::node::Shared;

/// The signer of kubelet serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The usages the agent asks for (an ECDSA key: no key encipherment, as the kubelet).
const USAGES: [&str; 2] = ["digital signature", "server auth"];

/// The share of a certificate's lifetime after which it is renewed.
const RENEW_AT: f64 = 0.8;

/// How long one request waits for approval and signing before it is tried again.
const WAIT: Duration = Duration::from_secs(600);

/// The serving certificate rustls presents: none until the first is signed, then the
/// current one.
#[derive(Debug)]
pub(crate) struct ServingCertificate {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    provider: Arc<CryptoProvider>,
}

impl ServingCertificate {
    /// A resolver without a certificate yet.
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> ServingCertificate {
        ServingCertificate { current: RwLock::new(None), provider }
    }

    /// Presents `cert_pem` (with `key_pem`) from the next handshake on.
    fn set(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the serving certificate is not PEM: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key is not PEM: {e}"))?;
        let key = CertifiedKey::from_der(certs, key, &self.provider)
            .map_err(|e| format!("the serving certificate does not match its key: {e}"))?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
        Ok(())
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The names the certificate is for: the node's name (its Hostname address) and InternalIP.
fn wanted_names(shared: &Shared) -> (Vec<String>, Vec<IpAddr>) {
    (vec![shared.config.node_name.clone()], vec![IpAddr::V4(shared.node_ip)])
}

fn files(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("pki");
    (dir.join("kubelet-server.crt"), dir.join("kubelet-server.key"))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

fn store(data_dir: &Path, cert_pem: &str, key_pem: &str) -> std::io::Result<()> {
    let (cert, key) = files(data_dir);
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    }
    // The key first: a certificate on disk always has its key.
    write_private(&key, key_pem)?;
    write_private(&cert, cert_pem)
}

/// The stored certificate and key, if they are for exactly `names`, not yet due, and
/// signed by the cluster's CA `ca_pem` (a data dir that joined another cluster, or whose
/// cluster's CA was replaced, holds one the API server would refuse).
fn stored(data_dir: &Path, names: &(Vec<String>, Vec<IpAddr>), ca_pem: &str) -> Option<(String, String)> {
    let (cert, key) = files(data_dir);
    let (cert_pem, key_pem) = (std::fs::read_to_string(cert).ok()?, std::fs::read_to_string(key).ok()?);
    let now = berth_pki::OffsetDateTime::now_utc();
    let (from, to) = berth_pki::csr::validity(&cert_pem)?;
    let due = from + (to - from) * RENEW_AT;
    let fits = berth_pki::csr::certificate_sans(&cert_pem).as_ref() == Some(names) && now < due;
    if fits && !berth_pki::csr::issued_by(&cert_pem, ca_pem) {
        tracing::info!(
            "the stored kubelet serving certificate is not signed by the cluster's CA: asking for a new one"
        );
        return None;
    }
    fits.then_some((cert_pem, key_pem))
}

/// The cluster's CA as the API server serves it (`/cacerts`, over the connection that
/// already trusts it): the CA that signs kubelet serving certificates.
async fn cluster_ca(client: &kube::Client) -> Option<String> {
    let request = http::Request::get("/cacerts").body(Vec::new()).ok()?;
    client.request_text(request).await.ok().filter(|pem| pem.contains("BEGIN CERTIFICATE"))
}

/// How long until `cert_pem`, obtained at `obtained`, is due for renewal: [`RENEW_AT`] of the
/// time from then (or its notBefore, if later; signers backdate notBefore) to its notAfter.
fn renewal_wait(cert_pem: &str, obtained: berth_pki::OffsetDateTime) -> Duration {
    let Some((from, to)) = berth_pki::csr::validity(cert_pem) else { return Duration::ZERO };
    let start = from.max(obtained);
    let due = start + (to - start) * RENEW_AT;
    Duration::try_from(due - berth_pki::OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
}

/// Obtains a signed certificate through a CSR: `(cert_pem, key_pem)`.
async fn request(shared: &Shared, names: &(Vec<String>, Vec<IpAddr>)) -> Result<(String, String), String> {
    let node = &shared.config.node_name;
    let cn = format!("system:node:{node}");
    let (key_pem, request_pem) =
        berth_pki::csr::new_request_with_sans(&cn, &["system:nodes"], &names.0, &names.1).map_err(|e| e.to_string())?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("csr-".into()), ..ObjectMeta::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(USAGES.iter().map(|u| u.to_string()).collect()),
            ..CertificateSigningRequestSpec::default()
        },
        ..CertificateSigningRequest::default()
    };
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(shared.client.clone());
    let created = api.create(&PostParams::default(), &csr).await.map_err(|e| format!("creating the CSR: {e}"))?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(node = %node, csr = %name, "asked for a kubelet serving certificate");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        match api.get_opt(&name).await {
            Ok(Some(csr)) => {
                let status = csr.status.unwrap_or_default();
                if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "Denied" || c.type_ == "Failed")
                {
                    return Err(format!("CSR {name} {}: {}", c.type_, c.message.clone().unwrap_or_default()));
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    let cert_pem = String::from_utf8(cert.0).map_err(|_| format!("CSR {name}: not PEM"))?;
                    return Ok((cert_pem, key_pem));
                }
            }
            Ok(None) => return Err(format!("CSR {name} was deleted")),
            Err(e) => tracing::debug!(error = %e, csr = %name, "reading the CSR"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("CSR {name} was not approved and signed within {WAIT:?} (approve it with kubectl certificate approve)"))
}

/// Keeps `cert` holding a signed serving certificate for this node: the stored one when it
/// is still good, else a new one, renewed after [`RENEW_AT`] of its life; runs until aborted.
pub(crate) async fn keep_renewed(shared: Arc<Shared>, cert: Arc<ServingCertificate>) {
    let names = wanted_names(&shared);
    let data_dir = shared.config.data_dir.clone();
    // Without the CA to check it against, the stored certificate is not trusted.
    let ca_pem = cluster_ca(&shared.client).await.unwrap_or_default();
    let mut current = stored(&data_dir, &names, &ca_pem).and_then(|(c, k)| match cert.set(&c, &k) {
        Ok(()) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "the stored serving certificate is unusable");
            None
        }
    });
    if current.is_some() {
        tracing::info!(node = %shared.config.node_name, "serving the stored kubelet serving certificate");
    }
    let mut obtained = berth_pki::OffsetDateTime::now_utc();
    let mut retry = Duration::from_secs(2);
    loop {
        if let Some(c) = &current {
            tokio::time::sleep(renewal_wait(c, obtained)).await;
        }
        match request(&shared, &names).await.and_then(|(c, k)| cert.set(&c, &k).map(|()| (c, k))) {
            Ok((c, k)) => {
                tracing::info!(node = %shared.config.node_name, "serving a signed kubelet serving certificate");
                if let Err(e) = store(&data_dir, &c, &k) {
                    tracing::warn!(error = %e, "could not store the serving certificate: serving it anyway");
                }
                current = Some(c);
                obtained = berth_pki::OffsetDateTime::now_utc();
                retry = Duration::from_secs(2);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?retry, "obtaining a kubelet serving certificate failed");
                tokio::time::sleep(retry).await;
                // A failed renewal keeps serving the current certificate (due already: the
                // next round asks again at once).
                retry = (retry * 2).min(Duration::from_secs(300));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubelet serving certificate for `names` signed by the server CA of `pki`.
    fn signed(pki: &berth_pki::Pki, names: &(Vec<String>, Vec<IpAddr>)) -> (String, String) {
        let kind = berth_pki::CaKind::Server;
        let signer = berth_pki::csr::Signer::new(&pki.ca_pem(kind).unwrap(), &pki.ca_key_pem(kind).unwrap()).unwrap();
        let (key_pem, request) =
            berth_pki::csr::new_request_with_sans("system:node:n", &["system:nodes"], &names.0, &names.1).unwrap();
        let usages: Vec<String> = USAGES.iter().map(|u| u.to_string()).collect();
        let cert_pem = signer.sign(&request, &usages, berth_pki::csr::duration(Duration::from_secs(86_400))).unwrap();
        (cert_pem, key_pem)
    }

    #[test]
    fn a_stored_certificate_is_reused_only_when_the_cluster_ca_signed_it_for_these_names() {
        let (dir, cluster, other) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cluster = berth_pki::Pki::load_or_create(cluster.path()).unwrap();
        let other = berth_pki::Pki::load_or_create(other.path()).unwrap();
        let ca = cluster.ca_pem(berth_pki::CaKind::Server).unwrap();
        let names = (vec!["n".to_string()], vec![IpAddr::from([10, 88, 66, 2])]);
        let (cert, key) = signed(&cluster, &names);
        store(dir.path(), &cert, &key).unwrap();
        assert_eq!(stored(dir.path(), &names, &ca), Some((cert.clone(), key.clone())));
        // Other names, no CA known, or another cluster's CA: asked for anew.
        let renamed = (vec!["m".to_string()], names.1.clone());
        assert_eq!(stored(dir.path(), &renamed, &ca), None);
        assert_eq!(stored(dir.path(), &names, ""), None);
        let (foreign, foreign_key) = signed(&other, &names);
        store(dir.path(), &foreign, &foreign_key).unwrap();
        assert_eq!(stored(dir.path(), &names, &ca), None);
        assert!(stored(dir.path(), &names, &other.ca_pem(berth_pki::CaKind::Server).unwrap()).is_some());
    }
}
