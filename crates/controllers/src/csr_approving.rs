//! csrapproving: auto-approves kubelet client certificates, as Kubernetes' controller of
//! that name does. A pending `kubernetes.io/kube-apiserver-client-kubelet` request whose
//! certificate request is a node client certificate (CN `system:node:NAME`, O exactly
//! `system:nodes`, no SANs, usages digital signature + client auth, with key encipherment
//! allowed) is approved when a SubjectAccessReview says its requester may `create`
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own certificate: the
//! requester is the CN) or `certificatesigningrequests/nodeclient` (a bootstrap token, through
//! the binding to group `system:bootstrappers`). Anything else is left for a human.
//!
//! Kubelet serving certificates (`kubernetes.io/kubelet-serving`) are approved too, as the
//! external approvers Kubernetes leaves them to (kubelet-csr-approver) do it: the requester
//! is the node itself (`system:node:NAME` in `system:nodes`), the subject is CN
//! `system:node:NAME`, O `system:nodes`, the usages are a serving certificate's, and every
//! SAN is a DNS name or IP address among that Node's `status.addresses` (its hostname is
//! one). A request that fails a check stays pending for a human.

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

/// The signer of kubelet serving certificates.
pub(crate) const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

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

/// Whether `usages` are a kubelet serving certificate's: digital signature and server auth,
/// with key encipherment allowed (the kubelet adds it for RSA keys).
pub(crate) fn kubelet_serving_usages(usages: &[String]) -> bool {
    let set: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let modern = BTreeSet::from(["digital signature", "server auth"]);
    let legacy = BTreeSet::from(["digital signature", "key encipherment", "server auth"]);
    set.len() == usages.len() && (set == modern || set == legacy)
}

/// The node a kubelet serving request's subject names (CN `system:node:NAME`, O exactly
/// `system:nodes`, only DNS and IP SANs, at least one), if it is one.
pub(crate) fn serving_subject_node(info: &berth_pki::csr::RequestInfo) -> Option<&str> {
    let node = info.common_name.strip_prefix("system:node:").filter(|n| !n.is_empty())?;
    let sans = !info.dns_names.is_empty() || !info.ip_addresses.is_empty();
    (info.organizations == ["system:nodes"] && sans && !info.other_sans).then_some(node)
}

/// The checks of a pending kubelet serving request before the Node is looked at: the node it
/// is for, or why it is left for a human. `None` when it is not a pending serving request.
pub(crate) fn serving_request_node(csr: &CertificateSigningRequest) -> Option<Result<String, String>> {
    let spec = &csr.spec;
    if spec.signer_name != KUBELET_SERVING_SIGNER || has_condition(csr, "Approved") || has_condition(csr, "Denied") {
        return None;
    }
    let check = || {
        if !kubelet_serving_usages(spec.usages.as_deref().unwrap_or_default()) {
            return Err("usages are not digital signature and server auth (key encipherment allowed)".to_string());
        }
        let pem = std::str::from_utf8(&spec.request.0).map_err(|e| e.to_string())?;
        let info = berth_pki::csr::parse_request(pem).map_err(|e| e.to_string())?;
        let node = serving_subject_node(&info)
            .ok_or("the subject is not CN system:node:NAME, O system:nodes with DNS/IP SANs only")?;
        let requester = format!("system:node:{node}");
        let in_nodes = spec.groups.iter().flatten().any(|g| g == "system:nodes");
        if spec.username.as_deref() != Some(requester.as_str()) || !in_nodes {
            return Err(format!("the requester is not {requester} in group system:nodes"));
        }
        Ok(node.to_string())
    };
    Some(check())
}

/// Whether every SAN of the serving request `pem` is one of the Node's `addresses` (any
/// type: InternalIP, ExternalIP, Hostname, InternalDNS, ExternalDNS); else the first that is not.
pub(crate) fn serving_sans_match(pem: &str, addresses: &[String]) -> Result<(), String> {
    let info = berth_pki::csr::parse_request(pem).map_err(|e| e.to_string())?;
    let known = |name: &str| addresses.iter().any(|a| a.eq_ignore_ascii_case(name));
    if let Some(dns) = info.dns_names.iter().find(|d| !known(d)) {
        return Err(format!("DNS name {dns:?} is not an address of the node"));
    }
    let ip_known =
        |ip: &std::net::IpAddr| addresses.iter().any(|a| a.parse::<std::net::IpAddr>().is_ok_and(|a| a == *ip));
    if let Some(ip) = info.ip_addresses.iter().find(|ip| !ip_known(ip)) {
        return Err(format!("IP address {ip} is not an address of the node"));
    }
    Ok(())
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
    let (reconcile, error_policy) = crate::backoff::wrap("csrapproving", reconcile);
    Controller::new(Api::<CertificateSigningRequest>::all(client.clone()), watcher::Config::default())
        .trigger_backoff(crate::backoff::watch())
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

/// Approves a pending kubelet serving request whose SANs are its Node's addresses.
async fn reconcile_serving(
    csr: &CertificateSigningRequest,
    node: Result<String, String>,
    client: &kube::Client,
) -> crate::Result<Action> {
    let name = csr.name_any();
    let node = match node {
        Ok(n) => n,
        Err(why) => {
            tracing::info!(csr = %name, why, "csrapproving: kubelet serving request left for a human");
            return Ok(Action::await_change());
        }
    };
    let Some(found) = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()).get_opt(&node).await? else {
        // The node registers before it asks; a moment later it may exist.
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    let addresses: Vec<String> =
        found.status.and_then(|s| s.addresses).unwrap_or_default().into_iter().map(|a| a.address).collect();
    let pem = std::str::from_utf8(&csr.spec.request.0).unwrap_or_default();
    if let Err(why) = serving_sans_match(pem, &addresses) {
        tracing::info!(csr = %name, node, why, "csrapproving: kubelet serving request left for a human");
        return Ok(Action::await_change());
    }
    approve(csr, client, "Auto approving kubelet serving certificate: its SANs are the node's addresses.").await?;
    tracing::info!(csr = %name, node, "csrapproving: approved a kubelet serving certificate");
    Ok(Action::await_change())
}

/// Adds the Approved condition through the `approval` subresource (a request changed
/// meanwhile comes back through the watch).
async fn approve(csr: &CertificateSigningRequest, client: &kube::Client, message: &str) -> crate::Result<bool> {
    let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    conditions.push(CertificateSigningRequestCondition {
        type_: "Approved".into(),
        status: "True".into(),
        reason: Some("AutoApproved".into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": csr.resource_version() },
        "status": { "conditions": conditions },
    });
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    match api.patch_approval(&csr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, client: Arc<kube::Client>) -> crate::Result<Action> {
    if let Some(node) = serving_request_node(&csr) {
        return reconcile_serving(&csr, node, &client).await;
    }
    for recognizer in recognize(&csr) {
        if !allowed(&client, &csr, recognizer.subresource).await? {
            continue;
        }
        if approve(&csr, &client, recognizer.message).await? {
            tracing::info!(csr = %csr.name_any(), via = recognizer.subresource, "csrapproving: approved");
        }
        break;
    }
    Ok(Action::await_change())
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

    fn serving(
        cn: &str,
        dns: &[&str],
        ips: &[&str],
        usages: &[&str],
        user: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
        let (_, request) = berth_pki::csr::new_request_with_sans(cn, &["system:nodes"], &dns, &ips).unwrap();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: KUBELET_SERVING_SIGNER.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..CertificateSigningRequestSpec::default()
            },
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn serving_requests_name_their_node_only_when_the_node_asks_for_itself() {
        let usages = ["digital signature", "key encipherment", "server auth"];
        let (n1, nodes) = ("system:node:n1", ["system:nodes"]);
        let good = serving(n1, &["n1"], &["10.0.0.2"], &usages, n1, &nodes);
        assert_eq!(serving_request_node(&good), Some(Ok("n1".to_string())));
        let modern = serving(n1, &["n1"], &[], &["digital signature", "server auth"], n1, &nodes);
        assert_eq!(serving_request_node(&modern), Some(Ok("n1".to_string())));
        // Another requester, a node outside system:nodes, client usages, no SANs: left pending.
        for bad in [
            serving(n1, &["n1"], &[], &usages, "system:node:n2", &nodes),
            serving(n1, &["n1"], &[], &usages, n1, &["system:authenticated"]),
            serving(n1, &["n1"], &[], &["digital signature", "client auth"], n1, &nodes),
            serving(n1, &["n1"], &[], &["digital signature", "server auth", "client auth"], n1, &nodes),
            serving(n1, &[], &[], &usages, n1, &nodes),
            serving("alice", &["n1"], &[], &usages, "alice", &nodes),
        ] {
            assert!(matches!(serving_request_node(&bad), Some(Err(_))), "{:?}", bad.spec.username);
        }
        // Not a serving request at all: the client recognizers' business.
        let mut client = good.clone();
        client.spec.signer_name = KUBELET_CLIENT_SIGNER.into();
        assert_eq!(serving_request_node(&client), None);
    }

    #[test]
    fn every_serving_san_must_be_one_of_the_node_addresses() {
        let addresses = ["10.0.0.2".to_string(), "n1".to_string(), "fd00::2".to_string()];
        let check = |dns: &[&str], ips: &[&str]| {
            let dns: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
            let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
            let (_, pem) =
                berth_pki::csr::new_request_with_sans("system:node:n1", &["system:nodes"], &dns, &ips).unwrap();
            serving_sans_match(&pem, &addresses)
        };
        assert_eq!(check(&["n1"], &["10.0.0.2"]), Ok(()));
        assert_eq!(check(&["N1"], &["fd00:0::2"]), Ok(()));
        assert_eq!(check(&[], &["10.0.0.2"]), Ok(()));
        assert_eq!(
            check(&["n1", "evil.example.com"], &["10.0.0.2"]).unwrap_err(),
            "DNS name \"evil.example.com\" is not an address of the node"
        );
        assert_eq!(check(&["n1"], &["10.0.0.3"]).unwrap_err(), "IP address 10.0.0.3 is not an address of the node");
        // An IP address written as a DNS name does not match the IP SAN rule, nor vice versa.
        assert!(check(&["10.0.0.9"], &[]).is_err());
        assert!(serving_sans_match("garbage", &addresses).is_err());
    }
}
