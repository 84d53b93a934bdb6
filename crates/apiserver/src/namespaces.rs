//! Namespaces: the ones that exist at start (default, kube-system, kube-public,
//! kube-node-lease). A deleted namespace turns Terminating here (`write::delete_one`);
//! the namespace controller (berth-controllers) deletes its content and removes the
//! `kubernetes` finalizer, as in Kubernetes.

use bytes::Bytes;
use serde_json::json;

use crate::error::ApiResult;
use crate::object;
use crate::server::App;

const NS_PREFIX: &str = "/registry/core/namespaces/";

/// Creates the default namespaces when missing.
pub async fn bootstrap(app: &App) -> ApiResult<()> {
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let key = format!("{NS_PREFIX}{name}");
        if app.store.get(&key).await?.is_some() {
            continue;
        }
        let ns = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": object::now(),
                "labels": { "kubernetes.io/metadata.name": name },
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        });
        match app.store.create(&key, Bytes::from(object::encode_for_store(&ns))).await {
            Ok(_) | Err(berth_store::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
