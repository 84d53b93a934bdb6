//! pvc-protection: a PersistentVolumeClaim being deleted keeps its
//! `kubernetes.io/pvc-protection` finalizer (added at creation by the API server's
//! StorageObjectInUseProtection admission) while a pod that is not terminated uses it,
//! as kube-controller-manager's PVC protection controller does; then the finalizer goes
//! and the claim with it. Claims made before the admission existed get the finalizer here.
//!
//! A pod uses a claim when one of its volumes names it (`persistentVolumeClaim.claimName`,
//! or the `<pod>-<volume>` claim of a generic ephemeral volume), scheduled or not, while its
//! phase is neither Succeeded nor Failed. The shared pod cache decides first; before the
//! finalizer is removed the pods of the namespace are listed from the API server, so a pod
//! the cache has not seen yet still holds the claim.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use crate::finalizers;
use crate::informers::{Cache, Feed};

/// The finalizer this controller owns.
pub(crate) const FINALIZER: &str = "kubernetes.io/pvc-protection";

/// What to do with a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A live claim without the finalizer: add it.
    AddFinalizer,
    /// A claim being deleted that no pod uses: let it go.
    RemoveFinalizer,
    /// A claim being deleted that a pod still uses: keep it.
    InUse,
    /// Nothing to do.
    Nothing,
}

fn terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The claims `pod` names in its volumes (its namespace's), terminated or not.
pub(crate) fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = pod.name_any();
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter_map(move |v| {
        if let Some(c) = &v.persistent_volume_claim {
            Some(c.claim_name.clone())
        } else {
            v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
        }
    })
}

/// Whether `pod` keeps the claim `namespace/name` in use.
pub(crate) fn pod_uses(pod: &Pod, namespace: &str, name: &str) -> bool {
    pod.namespace().as_deref() == Some(namespace) && !terminated(pod) && claims_of(pod).any(|c| c == name)
}

/// The decision for `claim` given the pods (of any namespace) known to use claims.
pub(crate) fn decide<'a>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'a Pod>) -> Decision {
    let protected = finalizers::has(claim, FINALIZER);
    if claim.metadata.deletion_timestamp.is_none() {
        return if protected { Decision::Nothing } else { Decision::AddFinalizer };
    }
    if !protected {
        return Decision::Nothing;
    }
    let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    if pods.into_iter().any(|p| pod_uses(p, &ns, &name)) { Decision::InUse } else { Decision::RemoveFinalizer }
}

struct Ctx {
    client: kube::Client,
    pods: Cache<Pod>,
}

pub(crate) async fn run(client: kube::Client, pods: Feed<Pod>) {
    let api = Api::<PersistentVolumeClaim>::all(client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let claims = controller.store();
    let ctx = Arc::new(Ctx { client, pods: pods.store.clone() });
    let (reconcile, error_policy) = crate::backoff::wrap("pvc-protection", reconcile);
    controller
        // A pod that changes (finishes, goes) may free the claims it names, when they are
        // being deleted.
        .watches_shared_stream(pods.shared(), move |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            claims_of(&pod)
                .map(|c| ObjectRef::new(&c).within(&ns))
                .filter(|r| claims.get(r).is_some_and(|c| c.metadata.deletion_timestamp.is_some()))
                .collect::<Vec<_>>()
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let ns = claim.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.pods.wait_until_ready().await;
    let cached = ctx.pods.state();
    match decide(&claim, cached.iter().map(Arc::as_ref)) {
        Decision::AddFinalizer => finalizers::add(&api, &claim, FINALIZER).await?,
        Decision::RemoveFinalizer => {
            // The cache may lag behind a pod just created: ask the API server.
            let live = Api::<Pod>::namespaced(ctx.client.clone(), &ns).list(&Default::default()).await?;
            if decide(&claim, live.items.iter()) == Decision::RemoveFinalizer {
                finalizers::remove(&api, &claim, FINALIZER).await?;
                tracing::info!(claim = %format!("{ns}/{}", claim.name_any()), "pvc-protection: released");
            }
        }
        Decision::InUse | Decision::Nothing => {}
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn claim(deleting: bool, finalizers: Value) -> PersistentVolumeClaim {
        let mut meta = json!({ "name": "data", "namespace": "default", "finalizers": finalizers });
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({ "metadata": meta, "spec": {} })).unwrap()
    }

    fn pod(ns: &str, node: Option<&str>, phase: &str, volume: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": ns },
            "spec": { "nodeName": node, "containers": [], "volumes": [volume] },
            "status": { "phase": phase },
        }))
        .unwrap()
    }

    fn uses_data() -> Value {
        json!({ "name": "v", "persistentVolumeClaim": { "claimName": "data" } })
    }

    #[test]
    fn decisions() {
        let f = json!([FINALIZER]);
        let running = pod("default", Some("n1"), "Running", uses_data());
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<Pod>, Decision)> = vec![
            ("a new claim gets the finalizer", claim(false, json!([])), vec![], Decision::AddFinalizer),
            ("a protected live claim is left alone", claim(false, f.clone()), vec![running.clone()], Decision::Nothing),
            ("deleted while a running pod uses it", claim(true, f.clone()), vec![running.clone()], Decision::InUse),
            (
                "a pod not yet scheduled uses it too",
                claim(true, f.clone()),
                vec![pod("default", None, "Pending", uses_data())],
                Decision::InUse,
            ),
            (
                "a finished pod does not",
                claim(true, f.clone()),
                vec![pod("default", Some("n1"), "Succeeded", uses_data()), pod("default", None, "Failed", uses_data())],
                Decision::RemoveFinalizer,
            ),
            (
                "a pod of another namespace does not",
                claim(true, f.clone()),
                vec![pod("other", Some("n1"), "Running", uses_data())],
                Decision::RemoveFinalizer,
            ),
            (
                "a pod using another claim does not",
                claim(true, f.clone()),
                vec![pod(
                    "default",
                    Some("n1"),
                    "Running",
                    json!({ "name": "v", "persistentVolumeClaim": { "claimName": "logs" } }),
                )],
                Decision::RemoveFinalizer,
            ),
            (
                "a generic ephemeral volume's claim is <pod>-<volume>",
                claim(true, f.clone()),
                vec![{
                    let mut p = pod("default", Some("n1"), "Running", json!({ "name": "data", "ephemeral": {} }));
                    p.metadata.name = Some("web".into());
                    p.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0].name = "data".into();
                    p
                }],
                Decision::RemoveFinalizer,
            ),
            ("no pods: released", claim(true, f.clone()), vec![], Decision::RemoveFinalizer),
            (
                "deleting without the finalizer: nothing",
                claim(true, json!(["other"])),
                vec![running],
                Decision::Nothing,
            ),
        ];
        for (what, c, pods, want) in cases {
            assert_eq!(decide(&c, pods.iter()), want, "{what}");
        }
        let mut eph = pod("default", Some("n1"), "Running", json!({ "name": "scratch", "ephemeral": {} }));
        eph.metadata.name = Some("web".into());
        assert!(pod_uses(&eph, "default", "web-scratch"));
    }
}
