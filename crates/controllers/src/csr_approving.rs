//! csrapproving: auto-approves kubelet client certificates, as Kubernetes' controller of
//! that name does. A pending `kubernetes.io/kube-apiserver-client-kubelet` request whose
//! certificate request is a node client certificate (CN `system:node:NAME`, O exactly
//! `system:nodes`, no SANs, usages digital signature + client auth, with key encipherment
//! allowed) is approved when a SubjectAccessReview says its requester may `create`
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own certificate: the
//! requester is the CN) or `certificatesigningrequests/nodeclient` (a bootstrap token, through
//! the binding to group `system:bootstrappers`). Anything else is left for a human.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

/// The signer of kubelet client certificates.
pub(crate) const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Why a request may be auto-approved: the pseudo-subresource the requester must be allowed
/// to create, and the message of the Approved condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recognizer {
    /// `selfnodeclient` or `nodeclient`.
    pub subresource: &'static str,
    /// The Approved condition's message.
    pub message: &'static str,
}

const SELF_NODE_CLIENT: Recognizer = Recognizer {
    subresource: "selfnodeclient",
    message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
};
const NODE_CLIENT: Recognizer = Recognizer {
    subresource: "nodeclient",
    message: "Auto approving kubelet client certificate after SubjectAccessReview.",
};

/// Whether the request carries a condition of `kind`.
pub(crate) fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == kind))
}

/// Whether `usages` are a kubelet client certificate's: digital signature and client auth,
/// with key encipherment allowed (the legacy set).
pub(crate) fn kubelet_client_usages(usages: &[String]) -> bool {
    let set: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let modern = BTreeSet::from(["digital signature", "client auth"]);
    let legacy = BTreeSet::from(["digital signature", "key encipherment", "client auth"]);
    set.len() == usages.len() && (set == modern || set == legacy)
}

/// Whether `info` (the PEM request's subject) is a node client certificate's.
pub(crate) fn node_client_subject(info: &berth_pki::csr::RequestInfo) -> bool {
    info.organizations == ["system:nodes"]
        && info.common_name.strip_prefix("system:node:").is_some_and(|n| !n.is_empty())
        && !info.has_sans
}

/// The recognizers to try for `csr`, most specific first: none when it is not a pending
/// kubelet client request for a node client certificate.
pub(crate) fn recognize(csr: &CertificateSigningRequest) -> Vec<Recognizer> {
    let spec = &csr.spec;
    if spec.signer_name != KUBELET_CLIENT_SIGNER
        || has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
        || !kubelet_client_usages(spec.usages.as_deref().unwrap_or_default())
    {
        return Vec::new();
    }
    let Ok(pem) = std::str::from_utf8(&spec.request.0) else { return Vec::new() };
    let Ok(info) = berth_pki::csr::parse_request(pem) else { return Vec::new() };
    if !node_client_subject(&info) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if spec.username.as_deref() == Some(info.common_name.as_str()) {
        out.push(SELF_NODE_CLIENT);
    }
    out.push(NODE_CLIENT);
    out
}

pub(crate) async fn run(client: kube::Client) {
    Controller::new(Api::<CertificateSigningRequest>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

/// Asks the API server whether the requester of `csr` may create its `subresource`.
async fn allowed(client: &kube::Client, csr: &CertificateSigningRequest, subresource: &str) -> crate::Result<bool> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, client: Arc<kube::Client>) -> crate::Result<Action> {
    for recognizer in recognize(&csr) {
        if !allowed(&client, &csr, recognizer.subresource).await? {
            continue;
        }
        let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let now = Time(jiff::Timestamp::now());
        conditions.push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(recognizer.message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": csr.resource_version() },
            "status": { "conditions": conditions },
        });
        let api: Api<CertificateSigningRequest> = Api::all((*client).clone());
        match api.patch_approval(&csr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => tracing::info!(csr = %csr.name_any(), via = recognizer.subresource, "csrapproving: approved"),
            // Changed meanwhile: the watch brings it back.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        break;
    }
    Ok(Action::await_change())
}

fn error_policy(_csr: Arc<CertificateSigningRequest>, error: &crate::Error, _client: Arc<kube::Client>) -> Action {
    tracing::debug!(%error, "csrapproving: retrying");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestSpec, CertificateSigningRequestStatus};

    fn csr(cn: &str, orgs: &[&str], usages: &[&str], username: &str, signer: &str) -> CertificateSigningRequest {
        let (_, request) = berth_pki::csr::new_request(cn, orgs).unwrap();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(username.into()),
                ..CertificateSigningRequestSpec::default()
            },
            ..CertificateSigningRequest::default()
        }
    }

    fn subresources(csr: &CertificateSigningRequest) -> Vec<&'static str> {
        recognize(csr).iter().map(|r| r.subresource).collect()
    }

    #[test]
    fn node_client_requests_are_recognized() {
        let usages = ["digital signature", "client auth"];
        let n1 = "system:node:n1";
        let orgs = ["system:nodes"];
        let s = KUBELET_CLIENT_SIGNER;
        assert_eq!(subresources(&csr(n1, &orgs, &usages, "system:bootstrap:abcdef", s)), vec!["nodeclient"]);
        assert_eq!(subresources(&csr(n1, &orgs, &usages, n1, s)), vec!["selfnodeclient", "nodeclient"]);
        let legacy = ["key encipherment", "digital signature", "client auth"];
        assert_eq!(subresources(&csr(n1, &orgs, &legacy, n1, s)), vec!["selfnodeclient", "nodeclient"]);
        // Wrong subject, organizations, usages or signer: left for a human.
        let none: Vec<&str> = Vec::new();
        assert_eq!(subresources(&csr("admin", &orgs, &usages, n1, s)), none);
        assert_eq!(subresources(&csr("system:node:", &orgs, &usages, n1, s)), none);
        assert_eq!(subresources(&csr(n1, &["system:masters"], &usages, n1, s)), none);
        assert_eq!(subresources(&csr(n1, &["system:nodes", "system:masters"], &usages, n1, s)), none);
        assert_eq!(subresources(&csr(n1, &orgs, &["client auth"], n1, s)), none);
        assert_eq!(subresources(&csr(n1, &orgs, &["digital signature", "client auth", "server auth"], n1, s)), none);
        assert_eq!(subresources(&csr(n1, &orgs, &["digital signature", "client auth", "client auth"], n1, s)), none);
        assert_eq!(subresources(&csr(n1, &orgs, &usages, n1, "kubernetes.io/kube-apiserver-client")), none);
        let mut approved = csr(n1, &orgs, &usages, n1, s);
        approved.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..CertificateSigningRequestCondition::default()
            }]),
            ..CertificateSigningRequestStatus::default()
        });
        assert_eq!(subresources(&approved), none);
        let mut garbage = csr(n1, &orgs, &usages, n1, s);
        garbage.spec.request = ByteString(b"not a request".to_vec());
        assert_eq!(subresources(&garbage), none);
    }
}
