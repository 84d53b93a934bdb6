//! root-ca-cert-publisher: every active namespace has ConfigMap `kube-root-ca.crt` whose
//! `ca.crt` is the server CA (PEM), re-created when deleted and put back when changed,
//! as Kubernetes' controller of that name does (pods read it to trust the API server).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

/// The ConfigMap's name.
pub const CONFIGMAP: &str = "kube-root-ca.crt";
/// Its key.
pub const KEY: &str = "ca.crt";

struct Ctx {
    client: kube::Client,
    ca_pem: String,
}

pub(crate) async fn run(client: kube::Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let configmaps: Api<ConfigMap> = Api::all(client.clone());
    let (reconcile, error_policy) = crate::backoff::wrap("root-ca-cert-publisher", reconcile);
    Controller::new(namespaces, watcher::Config::default())
        .watches(configmaps, watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}")), |cm| {
            cm.namespace().map(|ns| ObjectRef::new(&ns))
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(Ctx { client, ca_pem }))
        .for_each(|_| async {})
        .await;
}

fn wanted(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(KEY.to_string(), ca_pem.to_string())])
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = wanted(&ctx.ca_pem);
    match api.get_opt(CONFIGMAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some(CONFIGMAP.to_string()), ..ObjectMeta::default() },
                data: Some(data),
                ..ConfigMap::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => tracing::debug!(namespace = %name, "published the root CA"),
                // Created meanwhile, or the namespace began terminating: nothing to do.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(mut cm) if cm.data.as_ref() != Some(&data) => {
            cm.data = Some(data);
            match api.replace(CONFIGMAP, &PostParams::default(), &cm).await {
                Ok(_) => tracing::debug!(namespace = %name, "restored the root CA"),
                // A conflict or a deletion: the watch brings the namespace back.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}
