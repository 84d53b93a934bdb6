//! csrsigning: signs approved CertificateSigningRequests of the signers berth runs
//! (`kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kube-apiserver-client`)
//! with the client CA the API server trusts, and `kubernetes.io/kubelet-serving` with the
//! cluster (server) CA the API server verifies node agents' serving certificates against,
//! as Kubernetes' controller of that name does:
//! a request the signer refuses (a kubelet request that is not a node client or serving
//! certificate, usages beyond client authentication) gets a `Failed` condition; the certificate lasts
//! `spec.expirationSeconds` (at least 10 minutes), at most the cluster signing duration
//! (`berth server --cluster-signing-duration`, one year by default).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use crate::csr_approving::{
    KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, has_condition, kubelet_client_usages, kubelet_serving_usages,
    node_client_subject, serving_subject_node,
};

/// The signer of client certificates for the API server.
pub(crate) const API_SERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// How long a signed certificate lasts at most by default (kube-controller-manager's
/// `--cluster-signing-duration`, one year).
pub const CLUSTER_SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Shortest lifetime `spec.expirationSeconds` may ask for.
const MIN_EXPIRATION: Duration = Duration::from_secs(600);

/// The CA the signer signs with.
#[derive(Clone)]
pub struct CsrSigning {
    /// The client CA certificate (PEM).
    pub ca_pem: String,
    /// Its private key (PEM).
    pub ca_key_pem: String,
    /// The cluster (server) CA certificate (PEM), which signs kubelet serving certificates.
    pub serving_ca_pem: String,
    /// Its private key (PEM).
    pub serving_ca_key_pem: String,
    /// The longest a signed certificate lasts ([`CLUSTER_SIGNING_DURATION`] by default).
    pub duration: Duration,
}

impl std::fmt::Debug for CsrSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsrSigning").finish_non_exhaustive()
    }
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing: not ours, not approved, denied, failed or signed already.
    Skip,
    /// Sign for this long.
    Sign(Duration),
    /// Refuse with this message (a `Failed` condition).
    Fail(String),
}

/// The signer's judgement of `csr`.
pub(crate) fn decide(csr: &CertificateSigningRequest, max: Duration) -> Decision {
    let spec = &csr.spec;
    let ours =
        [KUBELET_CLIENT_SIGNER, API_SERVER_CLIENT_SIGNER, KUBELET_SERVING_SIGNER].contains(&spec.signer_name.as_str());
    let signed = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    if !ours
        || signed
        || !has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed")
    {
        return Decision::Skip;
    }
    let usages = spec.usages.as_deref().unwrap_or_default();
    let Ok(info) = std::str::from_utf8(&spec.request.0)
        .map_err(|e| e.to_string())
        .and_then(|pem| berth_pki::csr::parse_request(pem).map_err(|e| e.to_string()))
    else {
        return Decision::Fail("the request is not a valid PEM certificate request".into());
    };
    if spec.signer_name == KUBELET_SERVING_SIGNER {
        if serving_subject_node(&info).is_none() || !kubelet_serving_usages(usages) {
            return Decision::Fail(
                "invalid kubelet serving certificate: CN must be system:node:NAME, O system:nodes, DNS/IP SANs only, usages digital signature and server auth".into(),
            );
        }
    } else if spec.signer_name == KUBELET_CLIENT_SIGNER {
        if !node_client_subject(&info) || !kubelet_client_usages(usages) {
            return Decision::Fail(
                "invalid kubelet client certificate: CN must be system:node:NAME, O system:nodes, no SANs, usages digital signature and client auth".into(),
            );
        }
    } else {
        let allowed = ["digital signature", "key encipherment", "client auth"];
        if !usages.iter().any(|u| u == "client auth") || usages.iter().any(|u| !allowed.contains(&u.as_str())) {
            return Decision::Fail(format!(
                "invalid usages for {API_SERVER_CLIENT_SIGNER}: {usages:?} (client auth, with digital signature and key encipherment allowed)"
            ));
        }
        if info.common_name.is_empty() {
            return Decision::Fail("the certificate request has no common name".into());
        }
    }
    let asked = spec
        .expiration_seconds
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)).max(MIN_EXPIRATION))
        .unwrap_or(max);
    Decision::Sign(asked.min(max))
}

struct Ctx {
    client: kube::Client,
    signer: berth_pki::csr::Signer,
    serving: berth_pki::csr::Signer,
    duration: Duration,
}

pub(crate) async fn run(client: kube::Client, signing: CsrSigning) {
    let signer = match berth_pki::csr::Signer::new(&signing.ca_pem, &signing.ca_key_pem) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "csrsigning: cannot use the client CA");
            return;
        }
    };
    let serving = match berth_pki::csr::Signer::new(&signing.serving_ca_pem, &signing.serving_ca_key_pem) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "csrsigning: cannot use the cluster CA");
            return;
        }
    };
    let ctx = Ctx { client, signer, serving, duration: signing.duration };
    let (reconcile, error_policy) = crate::backoff::wrap("csrsigning", reconcile);
    Controller::new(Api::<CertificateSigningRequest>::all(ctx.client.clone()), watcher::Config::default())
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let status = match decide(&csr, ctx.duration) {
        Decision::Skip => return Ok(Action::await_change()),
        Decision::Sign(validity) => {
            let pem = std::str::from_utf8(&csr.spec.request.0).unwrap_or_default();
            let usages = csr.spec.usages.clone().unwrap_or_default();
            let lifetime = berth_pki::csr::duration(validity);
            let signer = if csr.spec.signer_name == KUBELET_SERVING_SIGNER { &ctx.serving } else { &ctx.signer };
            match signer.sign(pem, &usages, lifetime) {
                Ok(cert) => serde_json::json!({ "certificate": ByteString(cert.into_bytes()) }),
                Err(e) => failed(&csr, &e.to_string()),
            }
        }
        Decision::Fail(message) => failed(&csr, &message),
    };
    let patch = serde_json::json!({ "metadata": { "resourceVersion": csr.resource_version() }, "status": status });
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api.patch_status(&csr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => tracing::info!(csr = %csr.name_any(), signer = %csr.spec.signer_name, "csrsigning: done"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// The status with a `Failed` condition added.
fn failed(csr: &CertificateSigningRequest, message: &str) -> serde_json::Value {
    tracing::info!(csr = %csr.name_any(), message, "csrsigning: refused");
    let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    conditions.push(CertificateSigningRequestCondition {
        type_: "Failed".into(),
        status: "True".into(),
        reason: Some("SignerValidationFailure".into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
    serde_json::json!({ "conditions": conditions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestSpec, CertificateSigningRequestStatus};

    fn csr(
        cn: &str,
        orgs: &[&str],
        usages: &[&str],
        signer: &str,
        conds: &[&str],
        seconds: Option<i32>,
    ) -> CertificateSigningRequest {
        let (_, request) = berth_pki::csr::new_request(cn, orgs).unwrap();
        let conditions = conds
            .iter()
            .map(|c| CertificateSigningRequestCondition {
                type_: c.to_string(),
                status: "True".into(),
                ..CertificateSigningRequestCondition::default()
            })
            .collect();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                expiration_seconds: seconds,
                ..CertificateSigningRequestSpec::default()
            },
            status: Some(CertificateSigningRequestStatus { conditions: Some(conditions), certificate: None }),
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn approved_requests_of_our_signers_are_signed_or_failed() {
        let kubelet = KUBELET_CLIENT_SIGNER;
        let client = API_SERVER_CLIENT_SIGNER;
        let usages = ["digital signature", "client auth"];
        let nodes = ["system:nodes"];
        let n1 = "system:node:n1";
        assert_eq!(
            decide(&csr(n1, &nodes, &usages, kubelet, &["Approved"], None), CLUSTER_SIGNING_DURATION),
            Decision::Sign(CLUSTER_SIGNING_DURATION)
        );
        assert_eq!(
            decide(&csr(n1, &nodes, &usages, kubelet, &["Approved"], Some(3600)), CLUSTER_SIGNING_DURATION),
            Decision::Sign(Duration::from_secs(3600))
        );
        assert_eq!(
            decide(&csr("alice", &[], &["client auth"], client, &["Approved"], Some(10)), CLUSTER_SIGNING_DURATION),
            Decision::Sign(MIN_EXPIRATION)
        );
        assert_eq!(decide(&csr(n1, &nodes, &usages, kubelet, &[], None), CLUSTER_SIGNING_DURATION), Decision::Skip);
        assert_eq!(
            decide(&csr(n1, &nodes, &usages, kubelet, &["Approved", "Failed"], None), CLUSTER_SIGNING_DURATION),
            Decision::Skip
        );
        assert_eq!(
            decide(&csr(n1, &nodes, &usages, "example.com/other", &["Approved"], None), CLUSTER_SIGNING_DURATION),
            Decision::Skip
        );
        assert!(matches!(
            decide(&csr("alice", &nodes, &usages, kubelet, &["Approved"], None), CLUSTER_SIGNING_DURATION),
            Decision::Fail(_)
        ));
        assert!(matches!(
            decide(&csr("alice", &[], &["server auth"], client, &["Approved"], None), CLUSTER_SIGNING_DURATION),
            Decision::Fail(_)
        ));
        let mut signed = csr(n1, &nodes, &usages, kubelet, &["Approved"], None);
        if let Some(s) = signed.status.as_mut() {
            s.certificate = Some(ByteString(b"x".to_vec()));
        }
        assert_eq!(decide(&signed, CLUSTER_SIGNING_DURATION), Decision::Skip);
        // Kubelet serving requests: a node's subject with DNS/IP SANs and serving usages.
        let serving_usages = ["digital signature", "key encipherment", "server auth"].map(String::from);
        let ip: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let (_, pem) = berth_pki::csr::new_request_with_sans(n1, &nodes, &["n1".to_string()], &[ip]).unwrap();
        let mut serving = csr(n1, &nodes, &usages, KUBELET_SERVING_SIGNER, &["Approved"], None);
        serving.spec.request = ByteString(pem.into_bytes());
        serving.spec.usages = Some(serving_usages.to_vec());
        assert_eq!(decide(&serving, CLUSTER_SIGNING_DURATION), Decision::Sign(CLUSTER_SIGNING_DURATION));
        let no_sans = csr(
            n1,
            &nodes,
            &["digital signature", "key encipherment", "server auth"],
            KUBELET_SERVING_SIGNER,
            &["Approved"],
            None,
        );
        assert!(matches!(decide(&no_sans, CLUSTER_SIGNING_DURATION), Decision::Fail(_)));
        serving.spec.usages = Some(vec!["digital signature".into(), "client auth".into()]);
        assert!(matches!(decide(&serving, CLUSTER_SIGNING_DURATION), Decision::Fail(_)));
        // A shorter cluster signing duration caps every request, with no 10-minute floor.
        let short = Duration::from_secs(30);
        assert_eq!(decide(&csr(n1, &nodes, &usages, kubelet, &["Approved"], None), short), Decision::Sign(short));
        assert_eq!(decide(&csr(n1, &nodes, &usages, kubelet, &["Approved"], Some(3600)), short), Decision::Sign(short));
    }
}
