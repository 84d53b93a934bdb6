//! Namespaces: the ones that exist at start (default, kube-system, kube-public,
//! kube-node-lease), and the life cycle of a deleted one: Terminating, its content
//! deleted, the `kubernetes` finalizer removed, then the namespace itself removed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::cache::CachedObject;
use crate::error::{ApiError, ApiResult};
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

/// Runs the namespace controller: finishes the deletion of Terminating namespaces.
pub fn spawn_controller(app: Arc<App>) {
    tokio::spawn(async move {
        let mut shutdown = app.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let (items, _) = app.cache.list(NS_PREFIX);
            for ns in items.iter().filter(|n| object::is_deleting(&n.value)) {
                if let Err(e) = finish(&app, ns).await {
                    tracing::debug!(namespace = object::name(&ns.value), error = %e.message, "namespace deletion pending");
                }
            }
        }
    });
}

/// Deletes everything in a terminating namespace, then the namespace.
async fn finish(app: &App, ns: &CachedObject) -> ApiResult<()> {
    let name = object::name(&ns.value).to_string();
    let catalog = app.resources.catalog();
    let mut remaining = 0usize;
    let mut seen_prefixes = std::collections::HashSet::new();
    for served in catalog.list.iter().filter(|s| s.info.namespaced) {
        let prefix = served.prefix_in(Some(&name));
        if !seen_prefixes.insert(prefix.clone()) {
            continue;
        }
        let (items, _) = app.cache.list(&prefix);
        for item in items {
            remaining += 1;
            delete_content(app, &item).await?;
        }
    }
    if remaining > 0 {
        return Err(ApiError::conflict_message(format!("{remaining} objects remain in namespace {name}")));
    }
    // Content gone: drop the kubernetes finalizer and remove the namespace.
    let Some(kv) = app.store.get(&ns.key).await? else { return Ok(()) };
    let Some(fresh) = CachedObject::from_kv(&kv) else { return Ok(()) };
    let finalizers = object::finalizers(&fresh.value);
    if finalizers.is_empty() {
        app.store.delete(&fresh.key, Some(fresh.revision)).await?;
    } else {
        let mut v = fresh.value.clone();
        v["spec"]["finalizers"] = json!([]);
        app.store.update(&fresh.key, Bytes::from(object::encode_for_store(&v)), fresh.revision).await?;
    }
    Ok(())
}

/// Deletes one object of a terminating namespace: immediately, unless it has
/// finalizers (then it is marked and waits for them).
async fn delete_content(app: &App, item: &CachedObject) -> ApiResult<()> {
    let Some(kv) = app.store.get(&item.key).await? else { return Ok(()) };
    let Some(fresh) = CachedObject::from_kv(&kv) else { return Ok(()) };
    if object::finalizers(&fresh.value).is_empty() {
        match app.store.delete(&fresh.key, Some(fresh.revision)).await {
            Ok(_) | Err(berth_store::Error::NotFound(_)) | Err(berth_store::Error::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    } else if !object::is_deleting(&fresh.value) {
        let mut v: Value = fresh.value.clone();
        if let Some(m) = object::meta_mut(&mut v) {
            m.insert("deletionTimestamp".into(), json!(object::now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        let _ = app.store.update(&fresh.key, Bytes::from(object::encode_for_store(&v)), fresh.revision).await;
    }
    Ok(())
}

impl ApiError {
    fn conflict_message(message: String) -> Self {
        ApiError::new(409, "Conflict", message)
    }
}
