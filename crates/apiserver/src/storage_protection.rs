//! StorageObjectInUseProtection admission (Kubernetes' plugin of that name): every new
//! PersistentVolumeClaim gets the `kubernetes.io/pvc-protection` finalizer and every new
//! PersistentVolume `kubernetes.io/pv-protection`, so that deleting one in use leaves it
//! Terminating until the controller manager's pvc-protection / pv-protection controllers
//! see it unused and remove the finalizer.

use serde_json::{Value, json};

use crate::handler::Ctx;

/// The finalizer of claims.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer of volumes.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds the protection finalizer to a claim or volume being created; other kinds are left alone.
pub fn admit(ctx: &Ctx, obj: &mut Value) {
    let info = &ctx.served.info;
    if !info.group.is_empty() {
        return;
    }
    let finalizer = match info.plural.as_str() {
        "persistentvolumeclaims" => PVC_PROTECTION,
        "persistentvolumes" => PV_PROTECTION,
        _ => return,
    };
    add_finalizer(obj, finalizer);
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_once() {
        let cases = [
            (json!({ "metadata": { "name": "a" } }), json!([PVC_PROTECTION])),
            (json!({ "metadata": { "name": "a", "finalizers": null } }), json!([PVC_PROTECTION])),
            (json!({ "metadata": { "name": "a", "finalizers": ["x"] } }), json!(["x", PVC_PROTECTION])),
            (json!({ "metadata": { "name": "a", "finalizers": [PVC_PROTECTION] } }), json!([PVC_PROTECTION])),
        ];
        for (mut obj, want) in cases {
            add_finalizer(&mut obj, PVC_PROTECTION);
            assert_eq!(obj["metadata"]["finalizers"], want, "{obj}");
        }
    }
}
