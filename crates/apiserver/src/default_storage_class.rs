//! DefaultStorageClass admission (Kubernetes' plugin of that name): a
//! PersistentVolumeClaim created without `spec.storageClassName` (absent, not `""`) gets
//! the default StorageClass, the newest of those annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`; with no default class it is left
//! without one (the persistentvolume-binder assigns one later if a default appears).

use serde_json::{Value, json};

use crate::handler::Ctx;

/// Where StorageClasses are stored.
const PREFIX: &str = "/registry/storage.k8s.io/storageclasses/";
const DEFAULT: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
const CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn is_default(class: &Value) -> bool {
    [DEFAULT, DEFAULT_BETA]
        .iter()
        .any(|k| class.pointer(&format!("/metadata/annotations/{}", k.replace('/', "~1"))) == Some(&json!("true")))
}

/// The default class's name: the newest default class (by creation time, then name).
fn default_class(ctx: &Ctx) -> Option<String> {
    let (all, _) = ctx.app.cache.list(PREFIX);
    all.iter()
        .filter(|o| is_default(&o.value))
        .map(|o| {
            let created =
                o.value.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string();
            let name = o.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            (created, name)
        })
        .max()
        .map(|(_, name)| name)
}

/// Gives a claim being created the default class when it names none; other kinds are left alone.
pub fn admit(ctx: &Ctx, obj: &mut Value) {
    let info = &ctx.served.info;
    if !(info.group.is_empty() && info.plural == "persistentvolumeclaims") {
        return;
    }
    let annotated = obj.pointer(&format!("/metadata/annotations/{}", CLASS_ANNOTATION.replace('/', "~1"))).is_some();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if annotated || spec.get("storageClassName").is_some_and(|v| !v.is_null()) {
        return;
    }
    if let Some(class) = default_class(ctx) {
        spec.insert("storageClassName".into(), Value::String(class));
    }
}
