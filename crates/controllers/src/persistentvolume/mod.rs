//! persistentvolume-binder: binds PersistentVolumeClaims to PersistentVolumes and keeps
//! both phases true, as kube-controller-manager's PV controller does, and provisions
//! volumes for the built-in `local-path` StorageClass (a directory on the node that runs
//! the claim's first pod, as k3s's local-path provisioner).
//!
//! - A Pending claim gets the smallest Available volume of its class whose capacity, access
//!   modes, volume mode and label selector fit (a volume pre-bound to it by `claimRef`, or
//!   named by its `volumeName`, first). The volume's `claimRef` is written first, with its
//!   resourceVersion (two claims racing for one volume: one gets 409 and looks again), then
//!   the claim's `volumeName` and both statuses.
//! - A claim of a `WaitForFirstConsumer` class waits until a pod using it is bound to a node
//!   (the scheduler keeps such pods schedulable); that node is recorded in the claim's
//!   `volume.kubernetes.io/selected-node` annotation and the volume must be reachable from
//!   it (node affinity).
//! - A volume whose claim is gone is Released; `Delete` reclaims delete volumes this
//!   controller provisioned (their `berth.io/local-path-cleanup` finalizer keeps them until
//!   the agent of their node removed the directory, or until that Node is gone: then it is
//!   dropped here), other `Delete` volumes fail (no deleter plugin), `Retain` ones stay
//!   Released. Volumes and claims being deleted keep their phases true (the pv-protection
//!   controller waits for a volume to leave Bound).
//! - A claim without a class gets the default StorageClass once one exists (Kubernetes'
//!   retroactive default class assignment).

mod matching;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::informers::{Cache, Feed};
use matching::{claim_class, find_match};

/// The provisioner of berth's built-in StorageClass.
pub const LOCAL_PATH_PROVISIONER: &str = "berth.io/local-path";
/// The built-in StorageClass's name.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The finalizer of a provisioned local-path volume until its node removed the directory.
pub(crate) const LOCAL_PATH_CLEANUP: &str = "berth.io/local-path-cleanup";
/// The node chosen for a delayed-binding claim (by its first pod's node).
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// How often Pending claims and unsettled volumes are looked at again (Kubernetes: 15 s).
const RESYNC: Duration = Duration::from_secs(15);

struct Ctx {
    client: kube::Client,
    /// The controllers' own stores: kube-runtime's controller waits for them itself (and a
    /// second waiter on one store may sleep forever, see `informers`), so they are read
    /// without waiting; a claim missing from the cache is looked up before a volume is
    /// released.
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Cache<StorageClass>,
    pods: Cache<Pod>,
    events: Events,
}

/// Runs the controller: one loop over claims, one over volumes, sharing their caches.
pub(crate) async fn run(client: kube::Client, pods: Feed<Pod>) {
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let class_watch = reflector(class_writer, watcher(Api::<StorageClass>::all(client.clone()), Default::default()))
        .backoff(crate::backoff::watch())
        .touched_objects();

    let volume_api = Api::<PersistentVolume>::all(client.clone());
    let claim_api = Api::<PersistentVolumeClaim>::all(client.clone());
    let claim_controller = Controller::new(claim_api.clone(), watcher::Config::default());
    let volume_controller = Controller::new(volume_api.clone(), watcher::Config::default());
    let claims = claim_controller.store();
    let volumes = volume_controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        volumes: volumes.clone(),
        claims: claims.clone(),
        classes: Cache::of(classes),
        pods: pods.store.clone(),
        events: Events::new(client, "persistentvolume-controller"),
    });

    // Claims are looked at again when a volume changes (it may fit a Pending claim, or be
    // the one a claim is bound to), when a pod using them is bound to a node, and when
    // StorageClasses change (a new default class).
    let pending_claims = {
        let claims = claims.clone();
        move || {
            claims
                .state()
                .into_iter()
                .filter(|c| matching::claim_phase(c) != "Bound")
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        }
    };
    let on_volume = {
        let pending = pending_claims.clone();
        move |pv: PersistentVolume| {
            let mut refs = pending();
            if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
                && let (Some(ns), Some(name)) = (&r.namespace, &r.name)
            {
                refs.push(ObjectRef::new(name).within(ns));
            }
            refs
        }
    };
    let (reconcile_claim, claim_policy) = crate::backoff::wrap("persistentvolume-binder", reconcile_claim);
    let (reconcile_volume, volume_policy) = crate::backoff::wrap("persistentvolume-binder", reconcile_volume);
    let claim_loop = claim_controller
        .watches(volume_api, watcher::Config::default(), on_volume)
        .watches_shared_stream(pods.shared(), {
            // Only claims still waiting for their first consumer: a bound claim has nothing
            // to do when its pods' statuses change.
            let claims = claims.clone();
            move |pod: Arc<Pod>| {
                let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                let ns = pod.namespace().unwrap_or_default();
                matching::pod_claims(&pod)
                    .filter(|_| bound)
                    .map(|c| ObjectRef::new(&c).within(&ns))
                    .filter(|r| claims.get(r).is_none_or(|c| matching::claim_phase(&c) != "Bound"))
                    .collect::<Vec<_>>()
            }
        })
        .watches_stream(class_watch, move |_class: StorageClass| pending_claims())
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile_claim, claim_policy, ctx.clone())
        .for_each(|_| async {});
    let volume_loop = volume_controller
        .watches(claim_api, watcher::Config::default(), {
            let volumes = volumes.clone();
            move |claim: PersistentVolumeClaim| {
                let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
                volumes
                    .state()
                    .into_iter()
                    .filter(|pv| matching::claim_ref_names(pv, &ns, &name))
                    .map(|pv| ObjectRef::from_obj(&*pv))
                    .collect::<Vec<_>>()
            }
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile_volume, volume_policy, ctx)
        .for_each(|_| async {});
    futures::join!(claim_loop, volume_loop);
}

/// Creates the built-in `local-path` StorageClass (provisioning under `path` on each node)
/// unless it exists; it is the default class unless another one already is. `berth server`
/// runs it with its admin identity, as k3s deploys its local-path StorageClass.
pub async fn ensure_local_path_class(client: kube::Client, path: String) {
    let api = Api::<StorageClass>::all(client.clone());
    let mut backoff = Duration::from_millis(200);
    loop {
        let existing = match api.list(&Default::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::debug!(error = %e, "persistentvolume: listing StorageClasses");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if existing.iter().any(|c| c.name_any() == LOCAL_PATH_CLASS) {
            return;
        }
        let default = !existing.iter().any(is_default_class);
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {
                "name": LOCAL_PATH_CLASS,
                "annotations": { DEFAULT_CLASS: default.to_string() },
            },
            "provisioner": LOCAL_PATH_PROVISIONER,
            "parameters": { "path": path },
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
        .expect("a StorageClass");
        match api.create(&PostParams::default(), &class).await {
            Ok(_) => {
                tracing::info!(default, path, "created the local-path StorageClass");
                return;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => {
                tracing::debug!(error = %e, "persistentvolume: creating the local-path StorageClass");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn is_default_class(class: &StorageClass) -> bool {
    let annotations = class.metadata.annotations.as_ref();
    [DEFAULT_CLASS, DEFAULT_CLASS_BETA].iter().any(|k| annotations.and_then(|a| a.get(*k)).is_some_and(|v| v == "true"))
}

/// The default StorageClass: the newest of those marked default (as Kubernetes picks).
fn default_class(classes: &Store<StorageClass>) -> Option<Arc<StorageClass>> {
    classes.state().into_iter().filter(|c| is_default_class(c)).max_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
    })
}

fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    claim.object_ref(&())
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.classes.wait_until_ready().await;
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = claim.spec.clone().unwrap_or_default();
    let volume_name = spec.volume_name.clone().filter(|v| !v.is_empty());

    // Bound (or pre-bound by the user to a volume by name).
    if let Some(volume_name) = volume_name {
        let cached = ctx.volumes.get(&ObjectRef::new(&volume_name));
        let pv = match cached {
            Some(pv) => Some(pv),
            // Not cached (gone, or the volume cache still filling after a start): ask
            // before calling a bound claim lost.
            None => Api::<PersistentVolume>::all(ctx.client.clone()).get_opt(&volume_name).await?.map(Arc::new),
        };
        let Some(pv) = pv else {
            if matching::claim_phase(&claim) == "Bound" {
                set_claim_phase(&api, &name, "Lost").await?;
                let note = "Bound claim has lost its PersistentVolume. Data on the volume is lost!".to_string();
                ctx.events.warning(&claim_reference(&claim), "ClaimLost", note).await;
            }
            return Ok(Action::requeue(RESYNC));
        };
        return match matching::claim_ref_of(&pv, &claim) {
            matching::ClaimRef::Other => {
                if matching::claim_phase(&claim) == "Bound" {
                    set_claim_phase(&api, &name, "Lost").await?;
                    let note = "Two claims are bound to the same volume, this one is bound incorrectly".to_string();
                    ctx.events.warning(&claim_reference(&claim), "ClaimMisbound", note).await;
                } else {
                    let note = format!("volume \"{volume_name}\" already bound to a different claim.");
                    ctx.events.warning(&claim_reference(&claim), "FailedBinding", note).await;
                }
                Ok(Action::requeue(RESYNC))
            }
            matching::ClaimRef::None | matching::ClaimRef::Ours => {
                if !matching::fits(&claim, &pv) {
                    let note = format!(
                        "Cannot bind to requested volume \"{volume_name}\": requested PV is too small or does not fit the claim"
                    );
                    ctx.events.warning(&claim_reference(&claim), "VolumeMismatch", note).await;
                    return Ok(Action::requeue(RESYNC));
                }
                bind(&ctx, &claim, &pv, false).await?;
                Ok(Action::await_change())
            }
        };
    }

    // No class given: the default one, when there is one (retroactive assignment).
    if spec.storage_class_name.is_none()
        && matching::claim_class_annotation(&claim).is_none()
        && let Some(class) = default_class(&ctx.classes)
    {
        let patch = json!({ "spec": { "storageClassName": class.name_any() } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        return Ok(Action::await_change());
    }

    let class_name = claim_class(&claim);
    let class = (!class_name.is_empty()).then(|| ctx.classes.get(&ObjectRef::new(&class_name))).flatten();
    let delayed = class.as_ref().is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    let mut selected = claim.annotations().get(SELECTED_NODE).cloned();
    if delayed && selected.is_none() {
        // The first pod using the claim that is bound to a node chooses it.
        ctx.pods.wait_until_ready().await;
        let consumer = ctx.pods.state().into_iter().find_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            (p.namespace().as_deref() == Some(ns.as_str()) && matching::pod_claims(&p).any(|c| c == name))
                .then_some(node)
        });
        match consumer {
            Some(node) => {
                let patch = json!({ "metadata": { "annotations": { SELECTED_NODE: node } } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                selected = Some(node);
            }
            None => {
                let note = "waiting for first consumer to be created before binding".to_string();
                ctx.events.normal(&claim_reference(&claim), "WaitForFirstConsumer", note).await;
                return Ok(Action::await_change());
            }
        }
    }
    let node = match (&selected, delayed) {
        (Some(n), true) => match Api::<Node>::all(ctx.client.clone()).get_opt(n).await? {
            Some(node) => Some(node),
            None => {
                let note = format!("selected node \"{n}\" does not exist");
                ctx.events.warning(&claim_reference(&claim), "ProvisioningFailed", note).await;
                return Ok(Action::requeue(RESYNC));
            }
        },
        _ => None,
    };

    let volumes = ctx.volumes.state();
    if let Some(pv) = find_match(&claim, volumes.iter().map(Arc::as_ref), node.as_ref()) {
        let pv = Arc::new(pv.clone());
        bind(&ctx, &claim, &pv, true).await?;
        return Ok(Action::await_change());
    }

    // Nothing fits: provision, wait for someone else's provisioner, or say why not.
    match class {
        Some(class) if class.provisioner == LOCAL_PATH_PROVISIONER => {
            provision_local_path(&ctx, &claim, &class, node.as_ref()).await?;
            Ok(Action::requeue(RESYNC))
        }
        Some(class) if class.provisioner != "kubernetes.io/no-provisioner" => {
            if claim.annotations().get(STORAGE_PROVISIONER) != Some(&class.provisioner) {
                let patch = json!({ "metadata": { "annotations": {
                    STORAGE_PROVISIONER: class.provisioner,
                    "volume.beta.kubernetes.io/storage-provisioner": class.provisioner,
                } } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            let note = format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            );
            ctx.events.normal(&claim_reference(&claim), "ExternalProvisioning", note).await;
            Ok(Action::requeue(RESYNC))
        }
        _ => {
            let reference = claim_reference(&claim);
            if class_name.is_empty() {
                let note = "no persistent volumes available for this claim and no storage class is set".to_string();
                ctx.events.normal(&reference, "FailedBinding", note).await;
            } else if ctx.classes.get(&ObjectRef::new(&class_name)).is_none() {
                let note = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
                ctx.events.warning(&reference, "ProvisioningFailed", note).await;
            } else {
                let note = "no persistent volumes available for this claim".to_string();
                ctx.events.normal(&reference, "FailedBinding", note).await;
            }
            Ok(Action::requeue(RESYNC))
        }
    }
}

/// Binds `claim` and `pv`: the volume's claimRef (guarded by its resourceVersion), its
/// phase, then the claim's volumeName, annotations and status. `by_controller`: the
/// controller chose the volume (rather than the user naming it).
async fn bind(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
    by_controller: bool,
) -> crate::Result<()> {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let pv_api = Api::<PersistentVolume>::all(ctx.client.clone());
    let pv_name = pv.name_any();

    let mut updated = pv.clone();
    let wanted = claim_reference(claim);
    let current = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let needs_ref = current.is_none_or(|r| r.uid.as_deref().unwrap_or("").is_empty());
    if needs_ref {
        let spec = updated.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            uid: wanted.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..Default::default()
        });
        if current.is_none() {
            updated.annotations_mut().insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        updated = pv_api.replace(&pv_name, &PostParams::default(), &updated).await?;
    }
    if matching::volume_phase(&updated) != "Bound" {
        let status = PersistentVolumeStatus { phase: Some("Bound".into()), ..Default::default() };
        pv_api.patch_status(&pv_name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }

    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let has_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| v == pv_name);
    if !has_name || claim.annotations().get(BIND_COMPLETED).is_none() {
        let mut annotations = BTreeMap::from([(BIND_COMPLETED.to_string(), "yes".to_string())]);
        if by_controller && !has_name {
            annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        let patch = json!({
            "metadata": { "annotations": annotations },
            "spec": { "volumeName": pv_name },
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    let pv_spec = updated.spec.clone().unwrap_or_default();
    let current = claim.status.clone().unwrap_or_default();
    let settled = current.phase.as_deref() == Some("Bound")
        && current.access_modes == pv_spec.access_modes
        && current.capacity == pv_spec.capacity;
    if !settled {
        let status = PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            access_modes: pv_spec.access_modes.clone(),
            capacity: pv_spec.capacity.clone(),
            ..Default::default()
        };
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }
    if by_controller {
        tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, "persistentvolume: bound");
    }
    Ok(())
}

async fn set_claim_phase(api: &Api<PersistentVolumeClaim>, name: &str, phase: &str) -> crate::Result<()> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": { "phase": phase } }))).await?;
    Ok(())
}

/// Creates a hostPath volume for `claim` on `node` under the class's path, pre-bound to the
/// claim (the next pass binds it).
async fn provision_local_path(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<&Node>,
) -> crate::Result<()> {
    let reference = claim_reference(claim);
    let fail = |note: String| async move {
        ctx.events.warning(&claim_reference(claim), "ProvisioningFailed", note).await;
        Ok(())
    };
    let Some(node) = node else {
        return fail(format!(
            "the {LOCAL_PATH_PROVISIONER} provisioner needs a node: give StorageClass \"{}\" volumeBindingMode WaitForFirstConsumer",
            class.name_any()
        ))
        .await;
    };
    let spec = claim.spec.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.iter().any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod") {
        return fail(format!("{LOCAL_PATH_PROVISIONER} only supports ReadWriteOnce and ReadWriteOncePod access modes"))
            .await;
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return fail(format!("{LOCAL_PATH_PROVISIONER} does not support block volumes")).await;
    }
    let Some(base) = class.parameters.as_ref().and_then(|p| p.get("path")).cloned() else {
        return fail(format!("StorageClass \"{}\" has no \"path\" parameter", class.name_any())).await;
    };
    let Some(size) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")) else {
        return fail("the claim requests no storage size".to_string()).await;
    };
    let uid = reference.uid.clone().unwrap_or_default();
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let hostname = node.labels().get("kubernetes.io/hostname").cloned().unwrap_or_else(|| node.name_any());
    let volume_name = format!("pvc-{uid}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {
            "name": volume_name,
            "annotations": { PROVISIONED_BY: LOCAL_PATH_PROVISIONER },
            // The node's agent removes the directory, then this finalizer.
            "finalizers": [LOCAL_PATH_CLEANUP],
        },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.name_any(),
            "volumeMode": "Filesystem",
            "hostPath": { "path": format!("{}/{volume_name}_{ns}_{name}", base.trim_end_matches('/')), "type": "DirectoryOrCreate" },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                { "key": "kubernetes.io/hostname", "operator": "In", "values": [hostname] },
            ] }] } },
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": claim.metadata.resource_version,
            },
        },
    }))
    .expect("a PersistentVolume");
    match Api::<PersistentVolume>::all(ctx.client.clone()).create(&PostParams::default(), &pv).await {
        Ok(_) => {
            let note = format!("Successfully provisioned volume {volume_name}");
            ctx.events.normal(&reference, "ProvisioningSucceeded", note).await;
            Ok(())
        }
        // Made by an earlier pass whose claim update had not arrived yet.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    // A volume being deleted still gets its phase (Released once its claim is gone: the
    // pv-protection controller lets it go then) but is not reclaimed again.
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    let name = pv.name_any();
    let phase = matching::volume_phase(&pv);
    let set_phase = |phase: &'static str, message: Option<String>| {
        let api = api.clone();
        let name = name.clone();
        async move {
            let status = PersistentVolumeStatus { phase: Some(phase.into()), message, ..Default::default() };
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
            Ok::<_, crate::Error>(())
        }
    };
    let Some(reference) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        if phase != "Available" {
            set_phase("Available", None).await?;
        }
        return Ok(Action::await_change());
    };
    let claim = match (&reference.namespace, &reference.name) {
        (Some(ns), Some(n)) => match ctx.claims.get(&ObjectRef::new(n).within(ns)) {
            Some(c) if c.metadata.deletion_timestamp.is_none() => Some(c),
            // Not cached (gone, or the cache is still filling), or being deleted (this cache
            // may lag behind the deletion that woke the volume): ask.
            _ => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns).get_opt(n).await?.map(Arc::new),
        },
        _ => None,
    };
    let uid = reference.uid.as_deref().unwrap_or("");
    match claim {
        // Pre-bound by the user to a claim that may come later, or being bound right now.
        _ if uid.is_empty() => {
            if phase != "Available" && phase != "Bound" {
                set_phase("Available", None).await?;
            }
            Ok(Action::requeue(RESYNC))
        }
        Some(c) if c.metadata.uid.as_deref() == Some(uid) => {
            let claim_volume = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
            if claim_volume == name {
                if phase != "Bound" {
                    set_phase("Bound", None).await?;
                }
                Ok(Action::await_change())
            } else if claim_volume.is_empty() {
                // The claim's side of the binding is still to be written.
                Ok(Action::requeue(RESYNC))
            } else if pv.annotations().get(BOUND_BY_CONTROLLER).is_some() {
                // The claim went to another volume: this one is free again.
                let mut updated = (*pv).clone();
                if let Some(spec) = updated.spec.as_mut() {
                    spec.claim_ref = None;
                }
                updated.annotations_mut().remove(BOUND_BY_CONTROLLER);
                api.replace(&name, &PostParams::default(), &updated).await?;
                Ok(Action::await_change())
            } else {
                Ok(Action::requeue(RESYNC))
            }
        }
        // The claim is gone (or is another one of the same name): the volume is released.
        _ => reclaim(&ctx, &pv, phase, set_phase).await,
    }
}

async fn reclaim<F, Fut>(ctx: &Ctx, pv: &PersistentVolume, phase: &str, set_phase: F) -> crate::Result<Action>
where
    F: Fn(&'static str, Option<String>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<()>>,
{
    let name = pv.name_any();
    let policy = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
    if phase != "Released" && phase != "Failed" {
        set_phase("Released", None).await?;
    }
    if pv.metadata.deletion_timestamp.is_some() {
        return cleanup_without_node(ctx, pv).await;
    }
    let reference = pv.object_ref(&());
    match policy {
        "Delete" if phase != "Failed" => {
            if pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER) {
                let api = Api::<PersistentVolume>::all(ctx.client.clone());
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(volume = %name, "persistentvolume: deleted the released volume");
                Ok(Action::await_change())
            } else {
                let message = format!(
                    "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
                );
                set_phase("Failed", Some(message.clone())).await?;
                ctx.events.warning(&reference, "VolumeFailedDelete", message).await;
                Ok(Action::await_change())
            }
        }
        "Recycle" if phase != "Failed" => {
            let message = "Recycle is not supported: delete the volume and create a new one".to_string();
            set_phase("Failed", Some(message.clone())).await?;
            ctx.events.warning(&reference, "VolumeFailedRecycle", message).await;
            Ok(Action::await_change())
        }
        _ => Ok(Action::await_change()),
    }
}

/// A deleted local-path volume waits for its node's agent to remove the directory; when no
/// Node carries the hostname its affinity names any more, nobody will, and the finalizer is
/// dropped here (the directory stays with the gone machine). Looked at again every [`RESYNC`]
/// while it waits.
async fn cleanup_without_node(ctx: &Ctx, pv: &PersistentVolume) -> crate::Result<Action> {
    if !crate::finalizers::has(pv, LOCAL_PATH_CLEANUP) {
        return Ok(Action::await_change());
    }
    let hosts = matching::affinity_hostnames(pv);
    let nodes = Api::<Node>::all(ctx.client.clone());
    for host in &hosts {
        let params = kube::api::ListParams::default().labels(&format!("kubernetes.io/hostname={host}"));
        if !nodes.list(&params).await?.items.is_empty() {
            return Ok(Action::requeue(RESYNC));
        }
    }
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    crate::finalizers::remove(&api, pv, LOCAL_PATH_CLEANUP).await?;
    let note = format!("node {hosts:?} of the volume is gone: its directory was not removed");
    ctx.events.warning(&pv.object_ref(&()), "VolumeCleanupSkipped", note).await;
    Ok(Action::await_change())
}
