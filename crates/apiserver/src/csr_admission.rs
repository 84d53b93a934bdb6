//! CertificateSigningRequest admission, as Kubernetes' `CertificateApproval` and
//! `CertificateSigning` plugins: an update of a request's `approval` subresource needs the
//! verb `approve`, and an update of its `status` that sets or changes the certificate the
//! verb `sign`, on the resource `signers` (group `certificates.k8s.io`) named by the
//! request's signerName or its `<domain>/*` wildcard. Creating requests is left to RBAC
//! (any signer may be asked).

use serde_json::Value;

use crate::authz::Attributes;
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

/// Whether the authorizer lets `ctx`'s user `verb` the signer `signer_name` (by name, or by
/// its domain's wildcard `<domain>/*`).
fn authorized_for_signer(ctx: &Ctx, verb: &str, signer_name: &str) -> bool {
    let Some(user) = &ctx.user else { return true };
    signer_resource_names(signer_name).iter().any(|name| {
        let attrs = Attributes::resource(user.clone(), verb, "certificates.k8s.io", "signers", "", "", name);
        ctx.app.authorizer.authorize(&attrs)
    })
}

/// The `signers` resource names that grant a verb on `signer_name`: itself and, for a
/// `<domain>/<name>` signer, `<domain>/*`.
pub fn signer_resource_names(signer_name: &str) -> Vec<String> {
    let mut names = vec![signer_name.to_string()];
    if let Some((domain, _)) = signer_name.split_once('/') {
        names.push(format!("{domain}/*"));
    }
    names
}

/// Refuses an update of the request `old` (to `new`, through `subresource`) the user may not
/// make for its signer. Other kinds and other updates pass.
pub fn admit(ctx: &Ctx, new: &Value, old: &Value, subresource: Option<&str>) -> ApiResult<()> {
    let info = &ctx.served.info;
    if info.group != "certificates.k8s.io" || info.kind != "CertificateSigningRequest" {
        return Ok(());
    }
    let signer = old.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
    let certificate = |v: &Value| v.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("").to_string();
    let verb = match subresource {
        Some("approval") => "approve",
        Some("status") if certificate(new) != certificate(old) => "sign",
        _ => return Ok(()),
    };
    if authorized_for_signer(ctx, verb, signer) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        info,
        crate::object::name(old),
        format_args!("user not permitted to {verb} requests with signerName {signer:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signer_is_authorized_by_name_or_by_its_domain_wildcard() {
        assert_eq!(
            signer_resource_names("kubernetes.io/kubelet-serving"),
            vec!["kubernetes.io/kubelet-serving".to_string(), "kubernetes.io/*".to_string()]
        );
        assert_eq!(signer_resource_names("nodomain"), vec!["nodomain".to_string()]);
    }
}
