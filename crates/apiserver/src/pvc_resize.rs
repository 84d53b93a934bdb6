//! PersistentVolumeClaimResize admission (Kubernetes' plugin of that name): a claim's
//! storage request may grow only when it is Bound and its StorageClass (the same before and
//! after) sets `allowVolumeExpansion: true`; otherwise the update is refused with
//! Kubernetes' 403. Validation has already refused shrinking and other spec changes.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn storage(obj: &Value) -> f64 {
    obj.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(berth_api::validation::parse_quantity)
        .unwrap_or(0.0)
}

/// The claim's class: the beta annotation, else `spec.storageClassName`; "" for none.
fn class(obj: &Value) -> &str {
    obj.pointer(&format!("/metadata/annotations/{}", CLASS_ANNOTATION.replace('/', "~1")))
        .or_else(|| obj.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Why growing `new` from `old` is refused, if it is; `allows_expansion` answers for a class name.
pub(crate) fn refusal(new: &Value, old: &Value, allows_expansion: impl Fn(&str) -> bool) -> Option<&'static str> {
    if storage(new) <= storage(old) {
        return None;
    }
    if old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
        return Some("Only bound persistent volume claims can be expanded");
    }
    let name = class(new);
    if name.is_empty() || name != class(old) || !allows_expansion(name) {
        return Some(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        );
    }
    None
}

/// Checks an update of a claim (not of its status).
pub fn admit(ctx: &Ctx, new: &Value, old: Option<&Value>) -> ApiResult<()> {
    let info = &ctx.served.info;
    let Some(old) = old else { return Ok(()) };
    if !(info.group.is_empty() && info.plural == "persistentvolumeclaims") || ctx.path.subresource.is_some() {
        return Ok(());
    }
    let allows = |name: &str| {
        ctx.app
            .cache
            .get(&format!("/registry/storage.k8s.io/storageclasses/{name}"))
            .is_some_and(|c| c.value.get("allowVolumeExpansion").and_then(Value::as_bool) == Some(true))
    };
    match refusal(new, old, allows) {
        Some(why) => Err(ApiError::forbidden(info, object::name(new), why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(size: &str, class: &str, phase: &str) -> Value {
        json!({ "metadata": { "name": "c" }, "spec": { "storageClassName": class,
            "resources": { "requests": { "storage": size } } }, "status": { "phase": phase } })
    }

    #[test]
    fn growth_needs_a_bound_claim_of_an_expandable_class() {
        let allows = |c: &str| c == "grows";
        let cases = [
            (claim("2Gi", "grows", "Bound"), claim("1Gi", "grows", "Bound"), None),
            (claim("1Gi", "fixed", "Bound"), claim("1Gi", "fixed", "Bound"), None),
            (claim("512Mi", "fixed", "Bound"), claim("1Gi", "fixed", "Bound"), None),
            (
                claim("2Gi", "fixed", "Bound"),
                claim("1Gi", "fixed", "Bound"),
                Some(
                    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                ),
            ),
            (
                claim("2Gi", "", "Bound"),
                claim("1Gi", "", "Bound"),
                Some(
                    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                ),
            ),
            (
                claim("2Gi", "grows", "Pending"),
                claim("1Gi", "grows", "Pending"),
                Some("Only bound persistent volume claims can be expanded"),
            ),
        ];
        for (new, old, want) in cases {
            assert_eq!(refusal(&new, &old, allows), want, "{new} from {old}");
        }
    }
}
