//! certificates.k8s.io/v1 CertificateSigningRequests, as Kubernetes' registry strategy treats
//! them: on create the requester's identity goes into `spec.username`, `spec.uid`,
//! `spec.groups` and `spec.extra` (whatever the body said) and the request is validated (a
//! PEM `CERTIFICATE REQUEST` with a valid self-signature, a qualified signer name, known
//! usages, `expirationSeconds` of at least 10 minutes); the spec is immutable afterwards;
//! the `approval` subresource changes only `status.conditions` (Approved and Denied exclude
//! each other and, once there, stay); the `status` subresource may not add or remove
//! Approved/Denied, and may set `status.certificate` only on an approved request, once.

use serde_json::{Map, Value, json};

use berth_api::field_error::FieldError;

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

/// The usages Kubernetes knows (`certificates.KeyUsage`).
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

fn is_csr(ctx: &Ctx) -> bool {
    ctx.served.info.group == "certificates.k8s.io" && ctx.served.info.kind == "CertificateSigningRequest"
}

/// On create: the requester's identity into the spec, then validation. Other kinds pass.
pub fn prepare_create(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if !is_csr(ctx) {
        return Ok(());
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(invalid(ctx, obj, vec![FieldError::required("spec", "")]));
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    if let Some(user) = &ctx.user {
        spec.insert("username".into(), json!(user.username));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        spec.insert("groups".into(), json!(user.groups));
        if !user.extra.is_empty() {
            spec.insert("extra".into(), json!(user.extra));
        }
    }
    let errors = validate_spec(obj.get("spec").unwrap_or(&Value::Null));
    if !errors.is_empty() {
        return Err(invalid(ctx, obj, errors));
    }
    Ok(())
}

fn invalid(ctx: &Ctx, obj: &Value, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid(&ctx.served.info, object::name(obj), &errors)
}

/// Kubernetes' validation of a new request's spec.
pub fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match spec.get("request").and_then(Value::as_str) {
        None | Some("") => errors.push(FieldError::required("spec.request", "")),
        Some(b64) => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Err(_) => errors.push(FieldError::invalid("spec.request", "<bytes>", "must be base64 encoded")),
                Ok(pem) => {
                    if let Err(e) = check_request_pem(&pem) {
                        errors.push(FieldError::invalid("spec.request", "<bytes>", e));
                    }
                }
            }
        }
    }
    match spec.get("signerName").and_then(Value::as_str) {
        None | Some("") => errors.push(FieldError::required("spec.signerName", "")),
        Some(name) => {
            let qualified = name
                .split_once('/')
                .is_some_and(|(domain, path)| domain.contains('.') && !path.is_empty() && !domain.is_empty());
            if !qualified {
                errors.push(FieldError::invalid(
                    "spec.signerName",
                    name,
                    "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                ));
            }
        }
    }
    match spec.get("usages").and_then(Value::as_array) {
        None => errors.push(FieldError::required("spec.usages", "")),
        Some(usages) if usages.is_empty() => errors.push(FieldError::required("spec.usages", "")),
        Some(usages) => {
            let mut seen = Vec::new();
            for (i, usage) in usages.iter().enumerate() {
                let u = usage.as_str().unwrap_or("");
                if !KNOWN_USAGES.contains(&u) {
                    errors.push(FieldError::not_supported(format!("spec.usages[{i}]"), u, KNOWN_USAGES));
                } else if seen.contains(&u) {
                    errors.push(FieldError::new(
                        berth_api::field_error::FieldErrorKind::Duplicate,
                        format!("spec.usages[{i}]"),
                        u.to_string(),
                    ));
                }
                seen.push(u);
            }
        }
    }
    if let Some(seconds) = spec.get("expirationSeconds").filter(|v| !v.is_null()) {
        match seconds.as_i64() {
            Some(s) if s >= 600 => {}
            _ => errors.push(FieldError::invalid(
                "spec.expirationSeconds",
                seconds,
                "may not specify a duration less than 600 seconds (10 minutes)",
            )),
        }
    }
    errors
}

/// A PEM `CERTIFICATE REQUEST` block whose self-signature verifies.
fn check_request_pem(pem: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| "PEM block type must be CERTIFICATE REQUEST")?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("invalid certificate request: {e}"))?;
    csr.verify_signature().map_err(|e| format!("invalid certificate request signature: {e}"))?;
    Ok(())
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn has_condition(conds: &[Value], kind: &str) -> bool {
    conds.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Fills `lastUpdateTime` and `lastTransitionTime` of conditions that lack them.
fn stamp(conds: &mut [Value], old: &[Value]) {
    let now = object::now();
    for c in conds.iter_mut() {
        let Some(o) = c.as_object_mut() else { continue };
        if o.get("lastUpdateTime").is_none_or(Value::is_null) {
            o.insert("lastUpdateTime".into(), json!(now));
        }
        if o.get("lastTransitionTime").is_none_or(Value::is_null) {
            let kind = o.get("type").cloned();
            let status = o.get("status").cloned();
            let same = old.iter().find(|p| p.get("type") == kind.as_ref() && p.get("status") == status.as_ref());
            let at = same.and_then(|p| p.get("lastTransitionTime").cloned()).unwrap_or(json!(now));
            o.insert("lastTransitionTime".into(), at);
        }
    }
}

/// What an update of a request may change, by subresource: `new` becomes the object to
/// write; the returned subresource is how the generic update path goes on (`approval`
/// continues as a status write of the merged object). Other kinds pass unchanged.
pub fn carry_over<'a>(
    ctx: &Ctx,
    new: &mut Value,
    old: &Value,
    subresource: Option<&'a str>,
) -> ApiResult<Option<&'a str>> {
    if !is_csr(ctx) {
        return Ok(subresource);
    }
    let old_conditions = conditions(old);
    let mut errors = Vec::new();
    let next = match subresource {
        Some("approval") => {
            let mut conds = conditions(new);
            stamp(&mut conds, &old_conditions);
            let mut merged = old.clone();
            set_conditions(&mut merged, conds);
            *new = merged;
            Some("status")
        }
        Some("status") => {
            // Approved and Denied conditions are the approval subresource's: keep the old ones.
            let mut conds: Vec<Value> = conditions(new)
                .into_iter()
                .filter(|c| !matches!(c.get("type").and_then(Value::as_str), Some("Approved" | "Denied")))
                .collect();
            conds.extend(
                old_conditions
                    .iter()
                    .filter(|c| matches!(c.get("type").and_then(Value::as_str), Some("Approved" | "Denied")))
                    .cloned(),
            );
            stamp(&mut conds, &old_conditions);
            new["spec"] = old.get("spec").cloned().unwrap_or(Value::Null);
            set_conditions(new, conds);
            let old_cert = old.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("");
            let new_cert = new.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("");
            if !old_cert.is_empty() && old_cert != new_cert {
                errors.push(FieldError::invalid("status.certificate", "<bytes>", "field is immutable once set"));
            }
            if !new_cert.is_empty() && old_cert.is_empty() {
                let approved = has_condition(&old_conditions, "Approved");
                let failed = has_condition(&conditions(new), "Failed");
                if !approved || failed {
                    errors.push(FieldError::invalid(
                        "status.certificate",
                        "<bytes>",
                        "certificate can only be set if the Approved condition is present and the Failed condition is not",
                    ));
                }
            }
            Some("status")
        }
        other => {
            if let Some(spec) = old.get("spec") {
                new["spec"] = spec.clone();
            }
            other
        }
    };
    let conds = conditions(new);
    for kind in ["Approved", "Denied"] {
        if has_condition(&old_conditions, kind) && !has_condition(&conds, kind) {
            errors.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    for (i, c) in conds.iter().enumerate() {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        if kind.is_empty() {
            errors.push(FieldError::required(format!("status.conditions[{i}].type"), ""));
        }
        if matches!(kind, "Approved" | "Denied") && status != "True" {
            errors.push(FieldError::not_supported(format!("status.conditions[{i}].status"), status, &["True"]));
        }
    }
    if has_condition(&conds, "Approved") && has_condition(&conds, "Denied") {
        errors.push(FieldError::invalid(
            "status.conditions",
            "Approved, Denied",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    if !errors.is_empty() {
        return Err(invalid(ctx, old, errors));
    }
    Ok(next)
}

fn set_conditions(obj: &mut Value, conds: Vec<Value>) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = Value::Object(Map::new());
    }
    if conds.is_empty() {
        if let Some(s) = obj["status"].as_object_mut() {
            s.remove("conditions");
        }
    } else {
        obj["status"]["conditions"] = Value::Array(conds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(request: &str, signer: &str, usages: Value, expiration: Value) -> Value {
        json!({"request": request, "signerName": signer, "usages": usages, "expirationSeconds": expiration})
    }

    fn fields(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn specs_are_validated() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let not_a_request = b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let errors =
            validate_spec(&spec(&not_a_request, "example", json!(["bogus", "client auth", "client auth"]), json!(60)));
        assert_eq!(
            fields(&errors),
            vec!["spec.request", "spec.signerName", "spec.usages[0]", "spec.usages[2]", "spec.expirationSeconds"]
        );
        let errors = validate_spec(&json!({}));
        assert_eq!(fields(&errors), vec!["spec.request", "spec.signerName", "spec.usages"]);
        let errors = validate_spec(&spec("%%%", "kubernetes.io/kube-apiserver-client", json!([]), Value::Null));
        assert_eq!(fields(&errors), vec!["spec.request", "spec.usages"]);
    }
}
