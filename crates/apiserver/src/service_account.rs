//! ServiceAccount admission (Kubernetes' `ServiceAccount` plugin), at pod creation: a pod
//! without `serviceAccountName` runs as `default`; the ServiceAccount must exist (the
//! `default` one is waited for a little, since the serviceaccount controller makes it just
//! after its namespace); unless `automountServiceAccountToken` is false on the pod (or,
//! when the pod does not say, on the ServiceAccount), a projected volume
//! `kube-api-access-XXXXX` (a bound token, the cluster CA from ConfigMap
//! `kube-root-ca.crt`, the namespace) is added and mounted read-only at
//! [`MOUNT_PATH`] in every container and init container that has nothing mounted there;
//! a pod without image pull secrets gets the ServiceAccount's. Mirror pods are left alone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

/// Where the token, CA and namespace are mounted.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Prefix of the injected volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";

/// Lifetime the kubelet asks for the projected token (Kubernetes' 1 h + 7 s).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// How often, and how long apart, a missing `default` ServiceAccount is looked up again
/// (Kubernetes retries the default account the same way).
const DEFAULT_ATTEMPTS: usize = 10;
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// The injected volume named `name`.
pub fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                { "serviceAccountToken": { "expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token" } },
                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                { "downwardAPI": { "items": [{ "path": "namespace",
                    "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
            ],
        },
    })
}

async fn lookup(ctx: &Ctx, ns: &str, name: &str) -> ApiResult<Option<Value>> {
    let key = format!("/registry/core/serviceaccounts/{ns}/{name}");
    if let Some(o) = ctx.app.cache.get(&key) {
        return Ok(Some(o.value.clone()));
    }
    // The cache may not have seen a ServiceAccount created just now: ask the store.
    match ctx.app.store.get(&key).await? {
        Some(kv) => Ok(Some(serde_json::from_slice(&kv.value).map_err(ApiError::internal)?)),
        None => Ok(None),
    }
}

/// Admits a pod being created (other kinds pass untouched).
pub async fn admit(ctx: &Ctx, pod: &mut Value) -> ApiResult<()> {
    let info = &ctx.served.info;
    if !(info.group.is_empty() && info.plural == "pods") || ctx.path.subresource.is_some() {
        return Ok(());
    }
    if pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return Ok(());
    }
    let ns = ctx.namespace().unwrap_or("default").to_string();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    let attempts = if sa_name == "default" { DEFAULT_ATTEMPTS } else { 1 };
    let mut sa = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
        sa = lookup(ctx, &ns, &sa_name).await?;
        if sa.is_some() {
            break;
        }
    }
    let Some(sa) = sa else {
        return Err(ApiError::forbidden(
            info,
            &name,
            format!("error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"),
        ));
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    let has_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !has_pull_secrets
        && let Some(secrets) = sa.get("imagePullSecrets").and_then(Value::as_array).filter(|a| !a.is_empty())
    {
        spec.insert("imagePullSecrets".into(), json!(secrets));
    }
    Ok(())
}

/// Adds the API access volume and its mounts to the pod spec.
fn mount_token(spec: &mut serde_json::Map<String, Value>) {
    let mounted_already = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH)))
    };
    let needs = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .any(|c| !mounted_already(c));
    if !needs {
        return;
    }
    // Reuse a volume the pod already has (a recreated pod keeps its spec).
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter().find_map(|v| {
                v.get("name")
                    .and_then(Value::as_str)
                    .filter(|n| n.starts_with(VOLUME_PREFIX) && v.get("projected").is_some())
            })
        })
        .map(str::to_string);
    let volume_name = match existing {
        Some(n) => n,
        None => {
            let n = format!("{VOLUME_PREFIX}{}", suffix());
            let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
            if !volumes.is_array() {
                *volumes = json!([]);
            }
            if let Some(a) = volumes.as_array_mut() {
                a.push(api_access_volume(&n));
            }
            n
        }
    };
    for key in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(key).and_then(Value::as_array_mut) else { continue };
        for c in containers.iter_mut().filter(|c| !mounted_already(c)) {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(a) = mounts.as_array_mut() {
                a.push(json!({ "name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_without_a_mount_gets_the_volume() {
        let mut spec = json!({
            "initContainers": [{ "name": "i" }],
            "containers": [
                { "name": "a" },
                { "name": "b", "volumeMounts": [{ "name": "own", "mountPath": MOUNT_PATH }] },
            ],
        });
        mount_token(spec.as_object_mut().unwrap());
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5, "{name}");
        assert_eq!(volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
        for c in [&spec["initContainers"][0], &spec["containers"][0]] {
            assert_eq!(c["volumeMounts"][0], json!({ "name": name, "readOnly": true, "mountPath": MOUNT_PATH }));
        }
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        // Nothing to add when every container mounts its own.
        let mut own =
            json!({ "containers": [{ "name": "b", "volumeMounts": [{ "name": "o", "mountPath": MOUNT_PATH }] }] });
        mount_token(own.as_object_mut().unwrap());
        assert!(own.get("volumes").is_none());
    }
}
