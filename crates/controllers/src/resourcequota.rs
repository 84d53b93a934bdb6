//! Resource quota controller: keeps each ResourceQuota's `status.hard` equal to its
//! `spec.hard` and `status.used` equal to what the namespace holds now (the API
//! server's quota admission raises `used` as objects are created; this controller
//! brings it back down as they go, and corrects any over-count). Quotas are recomputed
//! every few seconds, as kube-controller-manager's quota controller resyncs them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_api::quota;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// How often every quota is recomputed.
const PERIOD: Duration = Duration::from_secs(3);

/// The resource (group, plural) whose objects a quota resource name counts.
fn source(resource: &str) -> Option<(String, String)> {
    let core = |p: &str| Some((String::new(), p.to_string()));
    match resource {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        r if r.starts_with("requests.") && r != "requests.storage" => core("pods"),
        r if r.starts_with("limits.") => core("pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(resource),
        "persistentvolumeclaims" | "requests.storage" => core("persistentvolumeclaims"),
        r if r.contains(".storageclass.storage.k8s.io/") => core("persistentvolumeclaims"),
        r => {
            let counted = r.strip_prefix("count/")?;
            match counted.split_once('.') {
                Some((plural, group)) => Some((group.to_string(), plural.to_string())),
                None => core(counted),
            }
        }
    }
}

/// The API resource of (group, plural), found by discovery.
async fn api_resource(client: &kube::Client, group: &str, plural: &str) -> Option<ApiResource> {
    let g = kube::discovery::group(client, group).await.ok()?;
    let version = g.preferred_version_or_latest().to_string();
    g.versioned_resources(&version).into_iter().map(|(ar, _)| ar).find(|ar| ar.plural == plural)
}

/// What the namespace uses of each of `resources`.
async fn used(
    client: &kube::Client,
    ns: &str,
    resources: &BTreeSet<String>,
) -> Result<BTreeMap<String, f64>, kube::Error> {
    let mut sources: BTreeMap<(String, String), Vec<&String>> = BTreeMap::new();
    for r in resources {
        if let Some(s) = source(r) {
            sources.entry(s).or_default().push(r);
        }
    }
    let mut totals: BTreeMap<String, f64> = resources.iter().map(|r| (r.clone(), 0.0)).collect();
    for ((group, plural), wanted) in sources {
        let Some(ar) = api_resource(client, &group, &plural).await else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for obj in api.list(&ListParams::default()).await? {
            let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
            let usage = quota::usage(&group, &plural, &value);
            for r in &wanted {
                *totals.entry((*r).clone()).or_default() += usage.get(*r).copied().unwrap_or(0.0);
            }
        }
    }
    Ok(totals)
}

/// Recomputes one quota; writes its status when it changed.
async fn sync(client: &kube::Client, q: &ResourceQuota) -> Result<(), kube::Error> {
    let ns = q.namespace().unwrap_or_default();
    let hard = q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let resources: BTreeSet<String> = hard.keys().cloned().collect();
    let totals = used(client, &ns, &resources).await?;
    let used: BTreeMap<String, Value> = totals.iter().map(|(r, v)| (r.clone(), json!(quota::format(r, *v)))).collect();
    let status = q.status.clone().unwrap_or_default();
    let same_hard = status.hard.as_ref() == Some(&hard);
    let current: BTreeMap<String, Value> =
        status.used.unwrap_or_default().into_iter().map(|(k, v)| (k, json!(v.0))).collect();
    if same_hard && current == used {
        return Ok(());
    }
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"status": {"hard": hard, "used": used}});
    api.patch_status(&q.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Runs the controller until dropped.
pub(crate) async fn run(client: kube::Client) {
    let quotas: Api<ResourceQuota> = Api::all(client.clone());
    loop {
        match quotas.list(&ListParams::default()).await {
            Ok(list) => {
                for q in &list {
                    if let Err(e) = sync(&client, q).await {
                        tracing::debug!(quota = %q.name_any(), error = %e, "recomputing quota usage");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "listing resource quotas"),
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_resources_map_to_what_they_count() {
        let s = |r: &str| source(r).map(|(g, p)| format!("{g}/{p}"));
        assert_eq!(s("requests.cpu").as_deref(), Some("/pods"));
        assert_eq!(s("memory").as_deref(), Some("/pods"));
        assert_eq!(s("services.nodeports").as_deref(), Some("/services"));
        assert_eq!(s("requests.storage").as_deref(), Some("/persistentvolumeclaims"));
        assert_eq!(s("gold.storageclass.storage.k8s.io/requests.storage").as_deref(), Some("/persistentvolumeclaims"));
        assert_eq!(s("count/deployments.apps").as_deref(), Some("apps/deployments"));
        assert_eq!(s("count/configmaps").as_deref(), Some("/configmaps"));
        assert_eq!(s("nonsense"), None);
    }
}
