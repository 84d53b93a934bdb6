//! ServiceAccount controller: every active namespace has a `default` ServiceAccount,
//! re-created if it is deleted.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

const DEFAULT: &str = "default";

pub(crate) async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let (reconcile, error_policy) = crate::backoff::wrap("serviceaccount", reconcile);
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, watcher::Config::default().fields("metadata.name=default"), |sa| {
            sa.namespace().map(|ns| ObjectRef::new(&ns))
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<kube::Client>) -> crate::Result<Action> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &name);
    if api.get_opt(DEFAULT).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.to_string()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(namespace = %name, "created the default ServiceAccount"),
            // Created meanwhile, or the namespace began terminating: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::await_change())
}
