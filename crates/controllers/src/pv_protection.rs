//! pv-protection: a PersistentVolume being deleted keeps its `kubernetes.io/pv-protection`
//! finalizer (added at creation by the API server's StorageObjectInUseProtection
//! admission) while it is Bound to a claim, as kube-controller-manager's PV protection
//! controller does; once the persistentvolume-binder calls it Released (its claim gone) or
//! it was never bound, the finalizer goes. Volumes made before the admission existed get
//! the finalizer here.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use crate::finalizers;

/// The finalizer this controller owns.
pub(crate) const FINALIZER: &str = "kubernetes.io/pv-protection";

/// What to do with a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A live volume without the finalizer: add it.
    AddFinalizer,
    /// A volume being deleted that is not bound: let it go.
    RemoveFinalizer,
    /// A volume being deleted that is still bound: keep it.
    InUse,
    /// Nothing to do.
    Nothing,
}

/// The decision for `pv`: in use while its phase is Bound (Kubernetes' rule; the binder
/// moves it to Released when its claim is gone).
pub(crate) fn decide(pv: &PersistentVolume) -> Decision {
    let protected = finalizers::has(pv, FINALIZER);
    if pv.metadata.deletion_timestamp.is_none() {
        return if protected { Decision::Nothing } else { Decision::AddFinalizer };
    }
    if !protected {
        return Decision::Nothing;
    }
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound { Decision::InUse } else { Decision::RemoveFinalizer }
}

pub(crate) async fn run(client: kube::Client) {
    let (reconcile, error_policy) = crate::backoff::wrap("pv-protection", reconcile);
    Controller::new(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(pv: Arc<PersistentVolume>, client: Arc<kube::Client>) -> crate::Result<Action> {
    let api = Api::<PersistentVolume>::all((*client).clone());
    match decide(&pv) {
        Decision::AddFinalizer => finalizers::add(&api, &pv, FINALIZER).await?,
        Decision::RemoveFinalizer => {
            finalizers::remove(&api, &pv, FINALIZER).await?;
            tracing::info!(volume = %pv.name_any(), "pv-protection: released");
        }
        Decision::InUse | Decision::Nothing => {}
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pv(deleting: bool, finalizers: Value, phase: &str) -> PersistentVolume {
        let mut meta = json!({ "name": "pv1", "finalizers": finalizers });
        if deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({ "metadata": meta, "spec": {}, "status": { "phase": phase } })).unwrap()
    }

    #[test]
    fn decisions() {
        let f = json!([FINALIZER]);
        let cases = [
            ("a new volume gets the finalizer", pv(false, json!(null), "Available"), Decision::AddFinalizer),
            ("a protected live volume is left alone", pv(false, f.clone(), "Bound"), Decision::Nothing),
            ("deleted while bound: kept", pv(true, f.clone(), "Bound"), Decision::InUse),
            ("deleted once released: let go", pv(true, f.clone(), "Released"), Decision::RemoveFinalizer),
            ("deleted while available: let go", pv(true, f.clone(), "Available"), Decision::RemoveFinalizer),
            ("deleted, failed: let go", pv(true, f, "Failed"), Decision::RemoveFinalizer),
            ("deleting without the finalizer: nothing", pv(true, json!(["x"]), "Bound"), Decision::Nothing),
        ];
        for (what, volume, want) in cases {
            assert_eq!(decide(&volume), want, "{what}");
        }
    }
}
