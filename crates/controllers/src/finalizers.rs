//! Adding and removing one finalizer of an object with a guarded JSON patch: the patch
//! tests the uid and the finalizer list it started from, so a concurrent change makes it
//! fail (and the controller retry) instead of dropping someone else's finalizer.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Whether `obj` carries `finalizer`.
pub(crate) fn has<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta().finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Adds `finalizer` to `obj` unless it is there.
pub(crate) async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> crate::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has(obj, finalizer) {
        return Ok(());
    }
    let current = obj.meta().finalizers.clone();
    let mut ops = vec![json!({ "op": "test", "path": "/metadata/uid", "value": obj.meta().uid })];
    match current {
        Some(list) => {
            ops.push(json!({ "op": "test", "path": "/metadata/finalizers", "value": list }));
            ops.push(json!({ "op": "add", "path": "/metadata/finalizers/-", "value": finalizer }));
        }
        None => ops.push(json!({ "op": "add", "path": "/metadata/finalizers", "value": [finalizer] })),
    }
    patch(api, obj, ops).await
}

/// Removes `finalizer` from `obj` if it is there (a gone object is fine).
pub(crate) async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> crate::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !has(obj, finalizer) {
        return Ok(());
    }
    let current = obj.meta().finalizers.clone().unwrap_or_default();
    let left: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
    let ops = vec![
        json!({ "op": "test", "path": "/metadata/uid", "value": obj.meta().uid }),
        json!({ "op": "test", "path": "/metadata/finalizers", "value": current }),
        json!({ "op": "replace", "path": "/metadata/finalizers", "value": left }),
    ];
    patch(api, obj, ops).await
}

async fn patch<K>(api: &Api<K>, obj: &K, ops: Vec<serde_json::Value>) -> crate::Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| crate::Error::Sync(e.to_string()))?;
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
