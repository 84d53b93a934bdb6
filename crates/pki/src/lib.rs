//! The cluster's certificates and keys, made with `rcgen` at first start and kept in the
//! server's data dir (every file mode 0600), as k3s lays them out under `server/tls`:
//!
//! - three CAs: `server-ca` (signs serving certificates; clients trust it), `client-ca`
//!   (signs client certificates the API server accepts), `request-header-ca` (front
//!   proxies);
//! - leaf certificates signed by them: the API server's serving certificate
//!   (`serving-kube-apiserver`, re-issued when a SAN is missing, it nears expiry or the
//!   current CA's key does not verify its signature) and
//!   client certificates such as the admin's (`client-admin`, CN `system:admin`, O
//!   `system:masters`);
//! - `service.key`, the key that signs ServiceAccount tokens.
//!
//! CAs are valid for 10 years, leaf certificates for one year, and a leaf certificate
//! within [`RENEW_BEFORE`] of its end is renewed when it is next asked for. The node token
//! agents join with is in [`token`].

pub mod bootstrap;
pub mod csr;
pub mod jws;
pub mod token;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::Duration;
pub use time::OffsetDateTime;

/// How long a CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a leaf certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// A leaf certificate this close to its end is renewed (and the server warns about it).
pub const RENEW_BEFORE: Duration = Duration::days(90);

/// The test-only environment variable that shortens leaf certificates:
/// `VALIDITY_SECONDS:RENEW_BEFORE_SECONDS` (e.g. `40:30`), so that a test sees a running
/// server renew its certificates and outlive the old ones. Not for production use.
pub const TEST_LIFETIME_ENV: &str = "BERTH_TEST_LEAF_LIFETIME";

/// How long leaf certificates are valid and how close to their end they are renewed:
/// [`LEAF_VALIDITY`] and [`RENEW_BEFORE`], unless [`TEST_LIFETIME_ENV`] says otherwise.
pub fn leaf_lifetime() -> (Duration, Duration) {
    static LIFETIME: std::sync::OnceLock<(Duration, Duration)> = std::sync::OnceLock::new();
    *LIFETIME.get_or_init(|| {
        let given = std::env::var(TEST_LIFETIME_ENV).ok().and_then(|v| {
            let (validity, before) = v.split_once(':')?;
            let (validity, before) = (validity.trim().parse::<i64>().ok()?, before.trim().parse::<i64>().ok()?);
            (0 < before && before < validity).then(|| (Duration::seconds(validity), Duration::seconds(before)))
        });
        if given.is_some() {
            tracing::warn!(env = TEST_LIFETIME_ENV, ?given, "short-lived leaf certificates (for tests only)");
        }
        given.unwrap_or((LEAF_VALIDITY, RENEW_BEFORE))
    })
}

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A certificate or key could not be made or parsed.
    #[error("{what}: {source}")]
    Certificate {
        /// Which certificate or key.
        what: String,
        /// What rcgen reported.
        source: rcgen::Error,
    },
    /// A stored certificate is not valid X.509 PEM.
    #[error("{0}: not a valid PEM certificate")]
    BadCertificate(PathBuf),
    /// Rotation was asked for a certificate the directory does not hold.
    #[error("no certificate named {name:?} to rotate (there are: {known})")]
    UnknownCertificate {
        /// The name asked for.
        name: String,
        /// The leaf certificates there are, comma-separated.
        known: String,
    },
}

/// Certificates by name with their ends of validity.
pub type Ends = Vec<(String, OffsetDateTime)>;

/// Result with the PKI's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertKey {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
    /// The end of its validity.
    pub not_after: OffsetDateTime,
}

/// Which CA signs a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    /// Signs serving certificates.
    Server,
    /// Signs client certificates.
    Client,
    /// Signs front-proxy client certificates.
    RequestHeader,
}

impl CaKind {
    fn file(self) -> &'static str {
        match self {
            CaKind::Server => "server-ca",
            CaKind::Client => "client-ca",
            CaKind::RequestHeader => "request-header-ca",
        }
    }
}

/// The cluster's PKI in one directory.
pub struct Pki {
    dir: PathBuf,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// File stem in the PKI directory (`serving-kube-apiserver`, `client-admin`).
    pub name: String,
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations (Kubernetes groups, for client certificates).
    pub organizations: Vec<String>,
    /// DNS names and IP addresses (serving certificates).
    pub sans: Vec<String>,
    /// The CA that signs it.
    pub ca: CaKind,
}

impl LeafSpec {
    /// The API server's serving certificate for `sans`.
    pub fn serving(sans: &[String]) -> LeafSpec {
        LeafSpec {
            name: "serving-kube-apiserver".into(),
            common_name: "kube-apiserver".into(),
            organizations: Vec::new(),
            sans: sans.to_vec(),
            ca: CaKind::Server,
        }
    }

    /// A client certificate `client-<name>` for user `common_name` in `organizations`.
    pub fn client(name: &str, common_name: &str, organizations: &[&str]) -> LeafSpec {
        LeafSpec {
            name: format!("client-{name}"),
            common_name: common_name.into(),
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            sans: Vec::new(),
            ca: CaKind::Client,
        }
    }
}

impl Pki {
    /// Opens the PKI in `dir`, creating the directory, the three CAs and the ServiceAccount
    /// signing key if they do not exist yet. Existing files are kept as they are.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let pki = Pki { dir: dir.to_path_buf() };
        for kind in [CaKind::Server, CaKind::Client, CaKind::RequestHeader] {
            if !pki.path(kind.file(), "crt").exists() {
                pki.create_ca(kind)?;
            }
        }
        if !pki.path("service", "key").exists() {
            let key =
                KeyPair::generate().map_err(|source| Error::Certificate { what: "service.key".into(), source })?;
            write_private(&pki.path("service", "key"), &key.serialize_pem())?;
        }
        Ok(pki)
    }

    /// The files servers of one cluster share (the CAs' certificates and keys, the
    /// ServiceAccount signing key), by name in the directory; leaf certificates are each
    /// server's own.
    pub const SHARED: [&'static str; 7] = [
        "server-ca.crt",
        "server-ca.key",
        "client-ca.crt",
        "client-ca.key",
        "request-header-ca.crt",
        "request-header-ca.key",
        "service.key",
    ];

    /// Whether `dir` already holds a PKI (its server CA).
    pub fn exists(dir: &Path) -> bool {
        dir.join("server-ca.crt").exists()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stem: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{stem}.{ext}"))
    }

    /// The certificate and key files of the leaf named `name` (e.g. `serving-kube-apiserver`).
    pub fn leaf_files(&self, name: &str) -> (PathBuf, PathBuf) {
        (self.path(name, "crt"), self.path(name, "key"))
    }

    /// The leaf certificates within [`RENEW_BEFORE`] of their end, issued anew (same
    /// subjects, SANs and CAs), and the CA certificates that near theirs (a CA is not
    /// replaced: that takes every client's trust with it). What it renewed is returned.
    pub fn renew_expiring(&self) -> Result<(Ends, Ends)> {
        let now = OffsetDateTime::now_utc();
        let renew_before = leaf_lifetime().1;
        let all = self.expiries()?;
        let leaves: Vec<String> = self.stored_leaves()?.into_iter().map(|l| l.name).collect();
        let expiring: Vec<String> =
            all.iter().filter(|(n, t)| *t - now < renew_before && leaves.contains(n)).map(|(n, _)| n.clone()).collect();
        let renewed = if expiring.is_empty() { Vec::new() } else { self.rotate(&expiring)? };
        let cas = [CaKind::Server, CaKind::Client, CaKind::RequestHeader].map(CaKind::file);
        let cas = all.into_iter().filter(|(n, t)| *t - now < RENEW_BEFORE && cas.contains(&n.as_str())).collect();
        Ok((renewed, cas))
    }

    /// The PEM certificate of a CA (what clients trust, or what the server trusts clients by).
    pub fn ca_pem(&self, kind: CaKind) -> Result<String> {
        read(&self.path(kind.file(), "crt"))
    }

    /// The PEM private key of a CA (the CertificateSigningRequest signer signs with the
    /// client CA's).
    pub fn ca_key_pem(&self, kind: CaKind) -> Result<String> {
        read(&self.path(kind.file(), "key"))
    }

    /// The PEM key that signs ServiceAccount tokens.
    pub fn service_account_key_pem(&self) -> Result<String> {
        read(&self.path("service", "key"))
    }

    fn create_ca(&self, kind: CaKind) -> Result<()> {
        let what = || format!("{} certificate", kind.file());
        let key = KeyPair::generate().map_err(|source| Error::Certificate { what: what(), source })?;
        let mut params = CertificateParams::default();
        params.distinguished_name =
            name(&format!("berth-{}@{}", kind.file(), OffsetDateTime::now_utc().unix_timestamp()), &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(|source| Error::Certificate { what: what(), source })?;
        write_private(&self.path(kind.file(), "key"), &key.serialize_pem())?;
        write_private(&self.path(kind.file(), "crt"), &cert.pem())
    }

    /// The leaf certificate `spec` describes: the stored one if it has every SAN and the
    /// subject asked for and is not within [`RENEW_BEFORE`] of its end, else a new one
    /// (written over the old).
    pub fn leaf(&self, spec: &LeafSpec) -> Result<CertKey> {
        if let Some(existing) = self.stored_leaf(spec)? {
            return Ok(existing);
        }
        self.issue(spec)
    }

    /// Issues `spec` anew, whatever is stored (certificate rotation).
    pub fn issue(&self, spec: &LeafSpec) -> Result<CertKey> {
        let what = || format!("{} certificate", spec.name);
        let ca_key_pem = read(&self.path(spec.ca.file(), "key"))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| Error::Certificate { what: what(), source })?;
        let ca_pem = self.ca_pem(spec.ca)?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|source| Error::Certificate { what: what(), source })?;
        let key = KeyPair::generate().map_err(|source| Error::Certificate { what: what(), source })?;
        let mut params =
            CertificateParams::new(spec.sans.clone()).map_err(|source| Error::Certificate { what: what(), source })?;
        let orgs: Vec<&str> = spec.organizations.iter().map(String::as_str).collect();
        params.distinguished_name = name(&spec.common_name, &orgs);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![match spec.ca {
            CaKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
            CaKind::Client | CaKind::RequestHeader => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + leaf_lifetime().0;
        let cert = params.signed_by(&key, &issuer).map_err(|source| Error::Certificate { what: what(), source })?;
        let leaf = CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem(), not_after: params.not_after };
        // The key first: a certificate on disk always has its key.
        write_private(&self.path(&spec.name, "key"), &leaf.key_pem)?;
        write_private(&self.path(&spec.name, "crt"), &leaf.cert_pem)?;
        Ok(leaf)
    }

    fn stored_leaf(&self, spec: &LeafSpec) -> Result<Option<CertKey>> {
        let (crt, key) = (self.path(&spec.name, "crt"), self.path(&spec.name, "key"));
        if !crt.exists() || !key.exists() {
            return Ok(None);
        }
        let cert_pem = read(&crt)?;
        let ca_path = self.path(spec.ca.file(), "crt");
        let ca_pem = read(&ca_path)?;
        if let Some(why) = unfit(spec, &crt, &cert_pem, &ca_path, &ca_pem, OffsetDateTime::now_utc())? {
            tracing::info!(certificate = %spec.name, reason = why, "issuing the certificate anew");
            return Ok(None);
        }
        let not_after = inspect(&crt, &cert_pem)?.not_after;
        Ok(Some(CertKey { cert_pem, key_pem: read(&key)?, not_after }))
    }

    /// The leaf certificates stored in the directory, each described as [`LeafSpec`] (its
    /// subject, SANs and signing CA read back from the certificate), by name. Files
    /// signed by none of the CAs (left from a replaced CA) are skipped: [`Pki::leaf`]
    /// issues those anew when they are next asked for.
    pub fn stored_leaves(&self) -> Result<Vec<LeafSpec>> {
        let mut cas = Vec::new();
        for kind in [CaKind::Server, CaKind::Client, CaKind::RequestHeader] {
            let path = self.path(kind.file(), "crt");
            cas.push((kind, inspect(&path, &read(&path)?)?.key_id));
        }
        let mut leaves = Vec::new();
        for (name, _) in self.expiries()? {
            let path = self.path(&name, "crt");
            if cas.iter().any(|(kind, _)| kind.file() == name) || !self.path(&name, "key").exists() {
                continue;
            }
            let pem = read(&path)?;
            let info = inspect(&path, &pem)?;
            let Some((ca, _)) = cas.iter().find(|(_, id)| id.is_some() && *id == info.key_id) else { continue };
            let ca_path = self.path(ca.file(), "crt");
            if !signed_by(&path, &pem, &ca_path, &read(&ca_path)?)? {
                continue;
            }
            leaves.push(LeafSpec {
                name,
                common_name: info.common_name,
                organizations: info.organizations,
                sans: info.sans,
                ca: *ca,
            });
        }
        leaves.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(leaves)
    }

    /// Issues the stored leaf certificates named in `names` (all of them when empty) anew
    /// under the same CAs, with the same subjects and SANs: certificate rotation. Clients
    /// trust the CAs, not the leaves, so they keep working. Nothing is written when a name
    /// is unknown. Returns the rotated certificates' names and new ends of validity.
    pub fn rotate(&self, names: &[String]) -> Result<Ends> {
        let leaves = self.stored_leaves()?;
        for name in names {
            if !leaves.iter().any(|l| &l.name == name) {
                let known = leaves.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(Error::UnknownCertificate { name: name.clone(), known });
            }
        }
        let mut rotated = Vec::new();
        for leaf in leaves.iter().filter(|l| names.is_empty() || names.contains(&l.name)) {
            rotated.push((leaf.name.clone(), self.issue(leaf)?.not_after));
        }
        Ok(rotated)
    }

    /// Every certificate in the directory with its end of validity, soonest first.
    pub fn expiries(&self) -> Result<Ends> {
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::Io { path: self.dir.clone(), source })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                let info = inspect(&path, &read(&path)?)?;
                let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                out.push((stem, info.not_after));
            }
        }
        out.sort_by_key(|(_, t)| *t);
        Ok(out)
    }
}

/// Why the stored leaf `cert_pem` (at `path`) cannot serve as `spec` at `now`, if it cannot:
/// not signed by the CA `ca_pem` there is now (its signature is verified against that CA's
/// key: the CA changes when a server adopts a cluster's, or when its files are replaced),
/// not yet valid or within [`RENEW_BEFORE`] of its end, another subject, or a SAN missing.
fn unfit(
    spec: &LeafSpec,
    path: &Path,
    cert_pem: &str,
    ca_path: &Path,
    ca_pem: &str,
    now: OffsetDateTime,
) -> Result<Option<String>> {
    let info = inspect(path, cert_pem)?;
    if !signed_by(path, cert_pem, ca_path, ca_pem)? {
        return Ok(Some(format!("not signed by the current {}", spec.ca.file())));
    }
    if info.not_before > now {
        return Ok(Some(format!("not valid before {}", info.not_before)));
    }
    let renew_before = leaf_lifetime().1;
    if info.not_after - now <= renew_before {
        return Ok(Some(format!("ends at {}, within {} days", info.not_after, renew_before.whole_days())));
    }
    if info.common_name != spec.common_name || info.organizations != spec.organizations {
        return Ok(Some("another subject".into()));
    }
    let missing: Vec<&str> = spec.sans.iter().filter(|s| !info.sans.contains(s)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Ok(Some(format!("no SAN {}", missing.join(", "))));
    }
    Ok(None)
}

/// Whether the certificate `cert_pem` names the CA `ca_pem` as its issuer and carries a
/// signature that the CA's public key verifies.
fn signed_by(path: &Path, cert_pem: &str, ca_path: &Path, ca_pem: &str) -> Result<bool> {
    let (_, leaf) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| Error::BadCertificate(path.to_path_buf()))?;
    let leaf = leaf.parse_x509().map_err(|_| Error::BadCertificate(path.to_path_buf()))?;
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|_| Error::BadCertificate(ca_path.to_path_buf()))?;
    let ca = ca.parse_x509().map_err(|_| Error::BadCertificate(ca_path.to_path_buf()))?;
    Ok(leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok())
}

/// What the PKI needs to know of a stored certificate.
#[derive(Debug)]
struct CertInfo {
    common_name: String,
    /// Subject key identifier (CAs) or authority key identifier (leaves): which key signed.
    key_id: Option<Vec<u8>>,
    organizations: Vec<String>,
    sans: Vec<String>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

fn inspect(path: &Path, pem: &str) -> Result<CertInfo> {
    let bad = || Error::BadCertificate(path.to_path_buf());
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| bad())?;
    let cert = pem.parse_x509().map_err(|_| bad())?;
    let subject = cert.subject();
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| attr.as_str().unwrap_or_default().to_string();
    let common_name = subject.iter_common_name().next().map(text).unwrap_or_default();
    let organizations = subject.iter_organization().map(text).collect();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).map_err(|_| bad())?),
                        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).map_err(|_| bad())?),
                        _ => return Err(bad()),
                    };
                    sans.push(ip.to_string());
                }
                _ => {}
            }
        }
    }
    let mut key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) if cert.is_ca() => {
                key_id = Some(id.0.to_vec())
            }
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) if !cert.is_ca() => {
                key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => {}
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        common_name,
        key_id,
        organizations,
        sans,
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
    })
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Writes `contents` to `path` with mode 0600, atomically (a temp file renamed over it).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sans() -> Vec<String> {
        ["localhost", "kubernetes", "kubernetes.default.svc.cluster.local", "127.0.0.1", "10.43.0.1"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn first_start_creates_cas_and_keys_private_to_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("tls")).unwrap();
        let serving = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        pki.leaf(&LeafSpec::client("admin", "system:admin", &["system:masters"])).unwrap();
        let mut files: Vec<String> =
            fs::read_dir(pki.dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(
            files,
            [
                "client-admin.crt",
                "client-admin.key",
                "client-ca.crt",
                "client-ca.key",
                "request-header-ca.crt",
                "request-header-ca.key",
                "server-ca.crt",
                "server-ca.key",
                "service.key",
                "serving-kube-apiserver.crt",
                "serving-kube-apiserver.key",
            ]
        );
        for f in &files {
            let mode = fs::metadata(pki.dir().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let info = inspect(Path::new("serving"), &serving.cert_pem).unwrap();
        assert_eq!(info.common_name, "kube-apiserver");
        assert_eq!(info.sans, sans());
        let left = serving.not_after - OffsetDateTime::now_utc();
        assert!(left > Duration::days(364) && left <= LEAF_VALIDITY, "{left}");
        let admin =
            inspect(&pki.dir().join("client-admin.crt"), &read(&pki.dir().join("client-admin.crt")).unwrap()).unwrap();
        assert_eq!(
            (admin.common_name.as_str(), admin.organizations),
            ("system:admin", vec!["system:masters".to_string()])
        );
    }

    #[test]
    fn leaves_are_kept_until_a_san_is_missing_or_rotation_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let first = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        // Reopened: the same CA and the same serving certificate.
        let ca = pki.ca_pem(CaKind::Server).unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(pki.ca_pem(CaKind::Server).unwrap(), ca);
        assert_eq!(pki.leaf(&LeafSpec::serving(&sans())).unwrap().cert_pem, first.cert_pem);
        // A subset of the SANs is served by the same certificate; a new SAN re-issues it.
        assert_eq!(pki.leaf(&LeafSpec::serving(&sans()[..2])).unwrap().cert_pem, first.cert_pem);
        let mut more = sans();
        more.push("berth.example.com".into());
        let second = pki.leaf(&LeafSpec::serving(&more)).unwrap();
        assert_ne!(second.cert_pem, first.cert_pem);
        assert!(inspect(Path::new("x"), &second.cert_pem).unwrap().sans.contains(&"berth.example.com".to_string()));
        // Rotation issues a new one regardless, under the same CA.
        let third = pki.issue(&LeafSpec::serving(&more)).unwrap();
        assert_ne!(third.cert_pem, second.cert_pem);
        assert_eq!(pki.ca_pem(CaKind::Server).unwrap(), ca);
        let expiries = pki.expiries().unwrap();
        assert_eq!(expiries.first().map(|(n, _)| n.as_str()), Some("serving-kube-apiserver"));
        assert_eq!(expiries.len(), 4);
    }

    #[test]
    fn leaves_of_a_replaced_ca_are_issued_anew() {
        let (mine, cluster) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pki = Pki::load_or_create(mine.path()).unwrap();
        let before = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        let admin = pki.leaf(&LeafSpec::client("admin", "system:admin", &["system:masters"])).unwrap();
        // Adopting another cluster's CAs (what a joining server does) replaces the shared files.
        Pki::load_or_create(cluster.path()).unwrap();
        for name in Pki::SHARED {
            fs::copy(cluster.path().join(name), mine.path().join(name)).unwrap();
        }
        let pki = Pki::load_or_create(mine.path()).unwrap();
        let after = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        assert_ne!(after.cert_pem, before.cert_pem);
        let ca_id = inspect(Path::new("ca"), &pki.ca_pem(CaKind::Server).unwrap()).unwrap().key_id;
        assert!(ca_id.is_some());
        assert_eq!(inspect(Path::new("leaf"), &after.cert_pem).unwrap().key_id, ca_id);
        let admin_after = pki.leaf(&LeafSpec::client("admin", "system:admin", &["system:masters"])).unwrap();
        assert_ne!(admin_after.cert_pem, admin.cert_pem);
        // Unchanged CAs keep their leaves.
        assert_eq!(pki.leaf(&LeafSpec::serving(&sans())).unwrap().cert_pem, after.cert_pem);
    }

    #[test]
    fn a_certificate_near_its_end_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        // A client certificate that ends in 30 days, made by hand with the client CA.
        let spec = LeafSpec::client("old", "old-user", &[]);
        let ca_key = KeyPair::from_pem(&read(&pki.path("client-ca", "key")).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&pki.ca_pem(CaKind::Client).unwrap(), ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = name("old-user", &[]);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).unwrap();
        write_private(&pki.path("client-old", "key"), &key.serialize_pem()).unwrap();
        write_private(&pki.path("client-old", "crt"), &cert.pem()).unwrap();
        // Renewal of what nears its end touches that one alone.
        let serving = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        let (renewed, cas) = pki.renew_expiring().unwrap();
        assert_eq!(renewed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["client-old"]);
        assert!(cas.is_empty(), "{cas:?}");
        assert_eq!(read(&pki.path("serving-kube-apiserver", "crt")).unwrap(), serving.cert_pem);
        let stored = read(&pki.path("client-old", "crt")).unwrap();
        let info = inspect(Path::new("old"), &stored).unwrap();
        assert!(info.not_after - OffsetDateTime::now_utc() > RENEW_BEFORE);
        assert_eq!(info.common_name, "old-user");
        assert!(pki.renew_expiring().unwrap().0.is_empty(), "nothing left to renew");
        // leaf() renews too (here: the renewed one is kept).
        let renewed = pki.leaf(&spec).unwrap();
        assert_eq!(renewed.cert_pem, stored);
        assert_ne!(renewed.cert_pem, cert.pem());
        assert!(renewed.not_after - OffsetDateTime::now_utc() > RENEW_BEFORE);
    }

    #[test]
    fn rotation_reissues_stored_leaves_with_their_subjects_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let serving = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        let admin = pki.leaf(&LeafSpec::client("admin", "system:admin", &["system:masters"])).unwrap();
        let specs = pki.stored_leaves().unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["client-admin", "serving-kube-apiserver"]);
        let read_back = specs.iter().find(|s| s.name == "serving-kube-apiserver").unwrap();
        assert_eq!((read_back.ca, read_back.common_name.as_str()), (CaKind::Server, "kube-apiserver"));
        assert_eq!(read_back.sans, sans());
        let client = specs.iter().find(|s| s.name == "client-admin").unwrap();
        assert_eq!((client.ca, client.organizations.clone()), (CaKind::Client, vec!["system:masters".to_string()]));

        // An unknown name rotates nothing.
        let err = pki.rotate(&["client-admin".into(), "nope".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"no certificate named "nope" to rotate (there are: client-admin, serving-kube-apiserver)"#
        );
        assert_eq!(read(&pki.path("client-admin", "crt")).unwrap(), admin.cert_pem);

        // One by name: only that one changes.
        let rotated = pki.rotate(&["client-admin".into()]).unwrap();
        assert_eq!(rotated.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["client-admin"]);
        let new_admin = read(&pki.path("client-admin", "crt")).unwrap();
        assert_ne!(new_admin, admin.cert_pem);
        assert_eq!(read(&pki.path("serving-kube-apiserver", "crt")).unwrap(), serving.cert_pem);
        // All: the serving certificate too, same names, same CA; leaf() then keeps it.
        assert_eq!(pki.rotate(&[]).unwrap().len(), 2);
        let new_serving = read(&pki.path("serving-kube-apiserver", "crt")).unwrap();
        assert_ne!(new_serving, serving.cert_pem);
        assert_eq!(inspect(Path::new("s"), &new_serving).unwrap().sans, sans());
        assert_eq!(pki.leaf(&LeafSpec::serving(&sans())).unwrap().cert_pem, new_serving);
    }

    #[test]
    fn a_leaf_naming_the_ca_but_signed_by_another_key_is_issued_anew() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let genuine = pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        let ca_pem = pki.ca_pem(CaKind::Server).unwrap();
        // A forger's CA with the real CA's name and key identifier but its own key: the
        // leaf it signs names the real CA as issuer and authority key.
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans()).unwrap();
        params.distinguished_name = name("kube-apiserver", &[]);
        params.use_authority_key_identifier_extension = true;
        params.not_after = OffsetDateTime::now_utc() + LEAF_VALIDITY;
        let forged = params.signed_by(&key, &issuer).unwrap().pem();
        let forged_info = inspect(Path::new("f"), &forged).unwrap();
        assert_eq!(forged_info.key_id, inspect(Path::new("g"), &genuine.cert_pem).unwrap().key_id);
        write_private(&pki.path("serving-kube-apiserver", "crt"), &forged).unwrap();
        write_private(&pki.path("serving-kube-apiserver", "key"), &key.serialize_pem()).unwrap();

        let (crt, ca) = (pki.path("serving-kube-apiserver", "crt"), pki.path("server-ca", "crt"));
        let spec = LeafSpec::serving(&sans());
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            unfit(&spec, &crt, &forged, &ca, &ca_pem, now).unwrap().as_deref(),
            Some("not signed by the current server-ca")
        );
        let reissued = pki.leaf(&spec).unwrap();
        assert_ne!(reissued.cert_pem, forged);
        assert!(signed_by(&crt, &reissued.cert_pem, &ca, &ca_pem).unwrap());
        assert_eq!(pki.leaf(&spec).unwrap().cert_pem, reissued.cert_pem, "kept once it is sound");
        assert_eq!(unfit(&spec, &crt, &reissued.cert_pem, &ca, &ca_pem, now).unwrap(), None);
        // The other reasons, in words.
        let later = now + LEAF_VALIDITY - RENEW_BEFORE;
        assert!(unfit(&spec, &crt, &reissued.cert_pem, &ca, &ca_pem, later).unwrap().unwrap().starts_with("ends at"));
        let earlier = now - Duration::hours(1);
        assert!(
            unfit(&spec, &crt, &reissued.cert_pem, &ca, &ca_pem, earlier)
                .unwrap()
                .unwrap()
                .starts_with("not valid before")
        );
        let mut more = sans();
        more.push("berth.example.com".into());
        assert_eq!(
            unfit(&LeafSpec::serving(&more), &crt, &reissued.cert_pem, &ca, &ca_pem, now).unwrap().as_deref(),
            Some("no SAN berth.example.com")
        );
        let client = LeafSpec::client("x", "kube-apiserver", &["g"]);
        assert_eq!(
            unfit(&client, &crt, &reissued.cert_pem, &ca, &ca_pem, now).unwrap().as_deref(),
            Some("another subject")
        );
    }

    #[test]
    fn a_corrupt_certificate_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        pki.leaf(&LeafSpec::serving(&sans())).unwrap();
        fs::write(pki.path("serving-kube-apiserver", "crt"), "garbage").unwrap();
        let err = pki.leaf(&LeafSpec::serving(&sans())).unwrap_err();
        assert!(err.to_string().ends_with("serving-kube-apiserver.crt: not a valid PEM certificate"), "{err}");
    }
}
