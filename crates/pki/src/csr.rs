//! Certificate signing requests (PKCS#10): making one for a node's new key ([`new_request`]),
//! reading the subject of one ([`parse_request`]), and signing one with a CA as the
//! CertificateSigningRequest signer does ([`Signer`]).

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

/// Errors of CSRs.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// The request is not a PEM PKCS#10 request with a valid self-signature.
    #[error("invalid certificate request: {0}")]
    Request(String),
    /// The CA certificate or key cannot be used.
    #[error("invalid CA: {0}")]
    Ca(String),
    /// A usage the signer does not know.
    #[error("unsupported key usage {0:?}")]
    Usage(String),
    /// rcgen failed to make or sign.
    #[error("signing failed: {0}")]
    Signing(#[from] rcgen::Error),
}

/// What a request asks for, as the approver checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// Whether the request carries subject alternative names (DNS, IP, email or URI).
    pub has_sans: bool,
    /// Its DNS names.
    pub dns_names: Vec<String>,
    /// Its IP addresses.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Whether it carries SANs that are neither DNS names nor IP addresses (email, URI...).
    pub other_sans: bool,
}

/// A new ECDSA P-256 key and a PEM request for CN `common_name`, O `organizations`:
/// `(key_pem, request_pem)`.
pub fn new_request(common_name: &str, organizations: &[&str]) -> Result<(String, String), CsrError> {
    new_request_with_sans(common_name, organizations, &[], &[])
}

/// Like [`new_request`], with subject alternative names (a kubelet serving certificate's
/// host names and addresses).
pub fn new_request_with_sans(
    common_name: &str,
    organizations: &[&str],
    dns_names: &[String],
    ip_addresses: &[std::net::IpAddr],
) -> Result<(String, String), CsrError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = crate::name(common_name, organizations);
    for dns in dns_names {
        let name = dns.clone().try_into().map_err(|_| CsrError::Request(format!("invalid DNS name {dns:?}")))?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(name));
    }
    params.subject_alt_names.extend(ip_addresses.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    let request = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), request.pem()?))
}

/// Parses and verifies the PEM request `pem`.
pub fn parse_request(pem: &str) -> Result<RequestInfo, CsrError> {
    let parsed =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CsrError::Request(format!("not PEM: {e}")))?.1;
    if parsed.label != "CERTIFICATE REQUEST" {
        return Err(CsrError::Request(format!("PEM block is {:?}, not CERTIFICATE REQUEST", parsed.label)));
    }
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&parsed.contents)
        .map_err(|e| CsrError::Request(e.to_string()))?;
    csr.verify_signature().map_err(|e| CsrError::Request(format!("bad signature: {e}")))?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().unwrap_or_default().to_string();
    let (mut dns_names, mut ip_addresses, mut other_sans) = (Vec::new(), Vec::new(), false);
    for ext in csr.requested_extensions().into_iter().flatten() {
        let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(sans) = ext else { continue };
        for name in &sans.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                    Some(ip) => ip_addresses.push(ip),
                    None => other_sans = true,
                },
                _ => other_sans = true,
            }
        }
    }
    Ok(RequestInfo {
        common_name: subject.iter_common_name().next().map(text).unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        has_sans: other_sans || !dns_names.is_empty() || !ip_addresses.is_empty(),
        dns_names,
        ip_addresses,
        other_sans,
    })
}

/// An IPv4 or IPv6 address from its 4 or 16 bytes.
fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Signs requests with one CA (the client CA for the kube-apiserver-client signers).
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the CA certificate `ca_pem` and its key `ca_key_pem`.
    pub fn new(ca_pem: &str, ca_key_pem: &str) -> Result<Signer, CsrError> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| CsrError::Ca(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| CsrError::Ca(e.to_string()))?;
        Ok(Signer { issuer, ca_pem: ca_pem.to_string() })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate (PEM) for the request `pem` with the Kubernetes key `usages` ("digital
    /// signature", "client auth"...), valid from now (less 5 minutes of clock skew) for
    /// `validity`. The subject and SANs are the request's; nothing else of it is kept.
    pub fn sign(&self, pem: &str, usages: &[String], validity: Duration) -> Result<String, CsrError> {
        let request = CertificateSigningRequestParams::from_pem(pem).map_err(|e| CsrError::Request(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = request.params.distinguished_name.clone();
        params.subject_alt_names = request.params.subject_alt_names.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        for usage in usages {
            match usage.as_str() {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "content commitment" => params.key_usages.push(KeyUsagePurpose::ContentCommitment),
                "data encipherment" => params.key_usages.push(KeyUsagePurpose::DataEncipherment),
                "key agreement" => params.key_usages.push(KeyUsagePurpose::KeyAgreement),
                "client auth" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth),
                "code signing" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::CodeSigning),
                "email protection" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::EmailProtection),
                "timestamping" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::TimeStamping),
                "ocsp signing" => params.extended_key_usages.push(ExtendedKeyUsagePurpose::OcspSigning),
                other => return Err(CsrError::Usage(other.to_string())),
            }
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let signing = CertificateSigningRequestParams { params, public_key: request.public_key };
        Ok(signing.signed_by(&self.issuer)?.pem())
    }
}

/// A standard duration as the signer's [`Duration`] (saturating).
pub fn duration(d: std::time::Duration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::MAX)
}

/// The start and end of validity of the PEM certificate `pem`, if it parses.
pub fn validity(pem: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((cert.validity().not_before.to_datetime(), cert.validity().not_after.to_datetime()))
}

/// The subject (CN, O values) of the DER certificate `der`, as Kubernetes' x509
/// authenticator reads a user from it.
pub fn certificate_subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((cn, orgs))
}

/// Whether the PEM certificate `cert_pem` names the CA `ca_pem` as its issuer and its
/// signature verifies with that CA's key (false when either does not parse).
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |pem: &str| x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok().map(|(_, p)| p);
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else { return false };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else { return false };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The DNS names and IP addresses the PEM certificate `pem` is valid for.
pub fn certificate_sans(pem: &str) -> Option<(Vec<String>, Vec<std::net::IpAddr>)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.extend(ip_from_bytes(b)),
                _ => {}
            }
        }
    }
    Some((dns, ips))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaKind, Pki};

    #[test]
    fn a_request_is_signed_with_its_subject_and_the_asked_usages() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let (_key, request) = new_request("system:node:n1", &["system:nodes"]).unwrap();
        let info = parse_request(&request).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, vec!["system:nodes".to_string()]);
        assert!(!info.has_sans);
        let signer =
            Signer::new(&pki.ca_pem(CaKind::Client).unwrap(), &pki.ca_key_pem(CaKind::Client).unwrap()).unwrap();
        let usages = vec!["digital signature".to_string(), "client auth".to_string()];
        let cert = signer.sign(&request, &usages, Duration::hours(1)).unwrap();
        let (from, to) = validity(&cert).unwrap();
        assert!(to - from > Duration::minutes(64) && to - from < Duration::minutes(66));
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        assert_eq!(parsed.subject().iter_common_name().next().unwrap().as_str().unwrap(), "system:node:n1");
        assert!(parsed.extended_key_usage().unwrap().unwrap().value.client_auth);
        assert!(!parsed.is_ca());
        assert!(matches!(signer.sign(&request, &["bogus".to_string()], Duration::hours(1)), Err(CsrError::Usage(_))));
    }

    #[test]
    fn serving_requests_carry_their_names_and_addresses_into_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let (_key, request) =
            new_request_with_sans("system:node:n1", &["system:nodes"], &["n1".to_string()], &[ip]).unwrap();
        let info = parse_request(&request).unwrap();
        assert!(info.has_sans && !info.other_sans);
        assert_eq!((info.dns_names, info.ip_addresses), (vec!["n1".to_string()], vec![ip]));
        let signer =
            Signer::new(&pki.ca_pem(CaKind::Server).unwrap(), &pki.ca_key_pem(CaKind::Server).unwrap()).unwrap();
        let usages = ["digital signature", "key encipherment", "server auth"].map(String::from);
        let cert = signer.sign(&request, &usages, Duration::hours(1)).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let parsed = pem.parse_x509().unwrap();
        assert!(parsed.extended_key_usage().unwrap().unwrap().value.server_auth);
        let sans = parsed.subject_alternative_name().unwrap().unwrap().value.general_names.len();
        assert_eq!(sans, 2);
        assert_eq!(certificate_sans(&cert), Some((vec!["n1".to_string()], vec![ip])));
        let (_, der) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let subject = certificate_subject(&der.contents).unwrap();
        assert_eq!(subject, ("system:node:n1".to_string(), vec!["system:nodes".to_string()]));
        assert!(new_request_with_sans("x", &[], &["nö".to_string()], &[]).is_err());
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(parse_request("not pem").is_err());
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        // A certificate is not a request.
        assert!(parse_request(&pki.ca_pem(CaKind::Client).unwrap()).is_err());
    }
}
