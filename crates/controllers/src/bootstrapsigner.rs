//! bootstrapsigner: signs the `kubeconfig` of the kube-public/cluster-info ConfigMap with
//! every bootstrap token marked for signing (`usage-bootstrap-signing: "true"`, not
//! expired) as `jws-kubeconfig-<token-id>`, and drops the signatures of tokens that are
//! gone or expired, as Kubernetes' controller of that name does. An agent holding a token
//! verifies its signature and so trusts the CA in that kubeconfig (`berth_pki::jws`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// Where cluster-info lives.
const NAMESPACE: &str = "kube-public";
const NAME: &str = "cluster-info";
/// The prefix of a signature's key in cluster-info's data.
const SIGNATURE_PREFIX: &str = "jws-kubeconfig-";

struct Ctx {
    client: kube::Client,
    tokens: crate::informers::Cache<Secret>,
}

pub(crate) async fn run(client: kube::Client) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let controller = Controller::new(config_maps, watcher::Config::default().fields(&format!("metadata.name={NAME}")));
    let (tokens, writer) = reflector::store::<Secret>();
    let token_events = watcher(secrets, watcher::Config::default().fields("type=bootstrap.kubernetes.io/token"))
        .backoff(crate::backoff::watch())
        .reflect(writer)
        .touched_objects();
    let ctx = Arc::new(Ctx { client, tokens: crate::informers::Cache::of(tokens) });
    // Any token change may change the signatures: it re-syncs cluster-info.
    let (reconcile, error_policy) = crate::backoff::wrap("bootstrapsigner", reconcile);
    controller
        .watches_stream(token_events, |_| Some(ObjectRef::new(NAME).within(NAMESPACE)))
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// A bootstrap token that may sign: `(id, secret, expiration)`.
fn signer(secret: &Secret, now: jiff::Timestamp) -> Option<(String, String, Option<jiff::Timestamp>)> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
    if text("usage-bootstrap-signing").as_deref() != Some("true") || secret.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let expires = crate::tokencleaner::expires_at(secret);
    if expires.is_some_and(|at| at <= now) {
        return None;
    }
    Some((text("token-id")?, text("token-secret")?, expires))
}

/// The signatures cluster-info should carry for `kubeconfig`, and the next expiry.
fn signatures(
    kubeconfig: &str,
    tokens: &[Arc<Secret>],
    now: jiff::Timestamp,
) -> (BTreeMap<String, String>, Option<jiff::Timestamp>) {
    let mut out = BTreeMap::new();
    let mut next = None;
    for (id, secret, expires) in tokens.iter().filter_map(|s| signer(s, now)) {
        out.insert(
            format!("{SIGNATURE_PREFIX}{id}"),
            berth_pki::jws::sign_detached(kubeconfig.as_bytes(), &id, &secret),
        );
        next = match (next, expires) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    (out, next)
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    ctx.tokens.wait_until_ready().await;
    let data = cm.data.clone().unwrap_or_default();
    let Some(kubeconfig) = data.get("kubeconfig") else { return Ok(Action::await_change()) };
    let now = jiff::Timestamp::now();
    let (want, next_expiry) = signatures(kubeconfig, &ctx.tokens.state(), now);
    let have: BTreeMap<&String, &String> = data.iter().filter(|(k, _)| k.starts_with(SIGNATURE_PREFIX)).collect();
    let mut patch = serde_json::Map::new();
    for (key, sig) in &want {
        if have.get(key) != Some(&sig) {
            patch.insert(key.clone(), json!(sig));
        }
    }
    for key in have.keys().filter(|k| !want.contains_key(k.as_str())) {
        patch.insert((*key).clone(), Value::Null);
    }
    if !patch.is_empty() {
        // Guarded by the resourceVersion: signatures of another kubeconfig are not written.
        let body = json!({ "metadata": { "resourceVersion": cm.resource_version() }, "data": patch });
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), NAMESPACE);
        api.patch(NAME, &PatchParams::default(), &Patch::Merge(body)).await?;
    }
    // Drop a signature when its token expires (the token cleaner deletes the Secret too).
    Ok(match next_expiry {
        Some(at) => Action::requeue(Duration::from_millis(at.duration_since(now).as_millis().max(100) as u64)),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn token(id: &str, signing: bool, expiration: Option<&str>) -> Arc<Secret> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        put("token-id", id);
        put("token-secret", "0123456789abcdef");
        if signing {
            put("usage-bootstrap-signing", "true");
        }
        if let Some(at) = expiration {
            put("expiration", at);
        }
        Arc::new(Secret { type_: Some("bootstrap.kubernetes.io/token".into()), data: Some(data), ..Secret::default() })
    }

    #[test]
    fn signing_tokens_that_have_not_expired_sign() {
        let now: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let tokens = [
            token("aaaaaa", true, None),
            token("bbbbbb", false, None),
            token("cccccc", true, Some("2026-11-29T11:00:00Z")),
            token("dddddd", true, Some("2026-11-29T13:00:00Z")),
        ];
        let (sigs, next) = signatures("kc", &tokens, now);
        assert_eq!(sigs.keys().collect::<Vec<_>>(), ["jws-kubeconfig-aaaaaa", "jws-kubeconfig-dddddd"]);
        assert!(berth_pki::jws::verify_detached(&sigs["jws-kubeconfig-aaaaaa"], b"kc", "aaaaaa", "0123456789abcdef"));
        assert_eq!(next, Some("2026-11-29T13:00:00Z".parse().unwrap()));
    }
}
