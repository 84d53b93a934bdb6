//! tokencleaner: deletes bootstrap-token Secrets (kube-system, type
//! `bootstrap.kubernetes.io/token`) once their `expiration` has passed, as Kubernetes'
//! controller of that name does.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

/// The namespace bootstrap tokens live in.
const NAMESPACE: &str = "kube-system";

/// When the bootstrap-token `secret` expires: its `expiration` (RFC 3339); `None` for other
/// secrets, tokens without expiry, and unreadable expirations (Kubernetes keeps those too).
pub(crate) fn expires_at(secret: &Secret) -> Option<jiff::Timestamp> {
    if secret.type_.as_deref() != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    let raw = secret.data.as_ref()?.get("expiration")?;
    std::str::from_utf8(&raw.0).ok()?.trim().parse().ok()
}

pub(crate) async fn run(client: kube::Client) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let config = watcher::Config::default().fields("type=bootstrap.kubernetes.io/token");
    let (reconcile, error_policy) = crate::backoff::wrap("tokencleaner", reconcile);
    Controller::new(secrets, config)
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(secret: Arc<Secret>, client: Arc<kube::Client>) -> crate::Result<Action> {
    let api: Api<Secret> = Api::namespaced((*client).clone(), NAMESPACE);
    let at = expires_at(&secret);
    let (action, deleted) = crate::expiry::delete_when_expired(&*secret, &api, at, DeleteParams::default()).await?;
    if deleted {
        tracing::info!(secret = %secret.name_any(), "tokencleaner: deleted an expired bootstrap token");
    }
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, expiration: Option<&str>) -> Secret {
        Secret {
            type_: Some(kind.to_string()),
            data: Some(
                expiration.map(|e| ("expiration".to_string(), ByteString(e.as_bytes().to_vec()))).into_iter().collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn only_bootstrap_tokens_with_a_readable_expiration_expire() {
        let at: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(expires_at(&secret("bootstrap.kubernetes.io/token", Some("2026-01-01T00:00:00Z"))), Some(at));
        assert_eq!(expires_at(&secret("bootstrap.kubernetes.io/token", Some("2026-01-01T01:00:00+01:00"))), Some(at));
        assert_eq!(expires_at(&secret("bootstrap.kubernetes.io/token", Some("soon"))), None);
        assert_eq!(expires_at(&secret("bootstrap.kubernetes.io/token", None)), None);
        assert_eq!(expires_at(&secret("Opaque", Some("2026-01-01T00:00:00Z"))), None);
    }
}
