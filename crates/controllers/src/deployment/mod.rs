//! Deployment controller: rolls a Deployment's pod template out through ReplicaSets
//! (RollingUpdate with maxSurge/maxUnavailable, or Recreate), scales them proportionally
//! when the Deployment is resized mid-rollout, keeps revisions so `kubectl rollout
//! history/undo` work, trims the history, and reports status with the Progressing and
//! Available conditions (Kubernetes' `pkg/controller/deployment`). Decisions are in
//! [`rollout`]; this module does the IO.

pub(crate) mod rollout;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::pods;
use crate::replicaset::adopt_and_release;
use rollout::{HASH_LABEL, REVISION};

struct Ctx {
    client: kube::Client,
    replicasets: crate::informers::Cache<ReplicaSet>,
    pods: crate::informers::Cache<Pod>,
    events: Events,
}

/// Runs the Deployment controller. Pods are followed (from the shared informer) only for
/// Recreate rollouts waiting on their old pods to go.
pub(crate) async fn run(client: kube::Client, pods: crate::informers::Feed<Pod>) {
    let (rs_reader, rs_writer) = reflector::store::<ReplicaSet>();
    let rs_events = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .backoff(crate::backoff::watch())
        .reflect(rs_writer)
        .touched_objects();
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        replicasets: crate::informers::Cache::of(rs_reader.clone()),
        pods: pods.store.clone(),
        events: Events::new(client, "deployment-controller"),
    });
    let waiting = deployments.clone();
    let (reconcile, error_policy) = crate::backoff::wrap("deployment", reconcile);
    controller
        .watches_stream(rs_events, move |rs: ReplicaSet| deployments_of(&deployments, &rs))
        .watches_shared_stream(pods.shared(), move |pod: Arc<Pod>| recreate_waiting_on(&waiting, &rs_reader, &pod))
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The Deployments to sync when `rs` changes: its controller, or those selecting it.
fn deployments_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = pods::controller_ref(&rs.metadata) {
        return if r.kind == "Deployment" { vec![ObjectRef::new(&r.name).within(&ns)] } else { vec![] };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|d| pods::selects(d.spec.as_ref().map(|s| &s.selector), rs.metadata.labels.as_ref()))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    ctx.replicasets.wait_until_ready().await;
    ctx.pods.wait_until_ready().await;
    let ns = d.namespace().unwrap_or_default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let in_ns = ctx.replicasets.state_filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()));
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let claims = pods::claim(&d.metadata, selector, in_ns.iter().map(Arc::as_ref));
    let ours = pods::owner_ref("apps/v1", "Deployment", &d.metadata);
    let owned = adopt_and_release(&rs_api, claims, &ours).await?;
    let sync = Sync { ctx: &ctx, d: &d, rs_api: &rs_api };
    let now = Timestamp::now();
    let mut status = d.status.clone().unwrap_or_default();

    if d.metadata.deletion_timestamp.is_some() {
        let (new, _) = rollout::split_new(&d, &owned);
        return sync.write_status(new, &owned, status, now).await;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let paused_before = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
    if paused && !paused_before {
        let c = rollout::condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), now);
        rollout::set_condition(&mut status, c);
    } else if !paused && paused_before {
        let c = rollout::condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), now);
        rollout::set_condition(&mut status, c);
    }

    let (new, olds) = rollout::split_new(&d, &owned);
    if paused || rollout::is_scaling_event(&d, &owned) {
        // Only resize; a paused Deployment starts no rollout.
        let mut changed = false;
        for (name, target) in rollout::scale_targets(&d, new, &olds) {
            if let Some(rs) = owned.iter().find(|rs| rs.metadata.name.as_deref() == Some(name.as_str())) {
                changed |= sync.scale(rs, target).await?;
            }
        }
        if paused && !changed {
            sync.cleanup(&olds).await?;
        }
        return sync.write_status(new, &owned, status, now).await;
    }

    if rollout::is_recreate(&d) {
        return recreate(&sync, new, &olds, &owned, status, now).await;
    }
    let new = match new {
        Some(rs) => sync.sync_new(rs, &olds).await?,
        None => match sync.create_found(&owned, &olds, &mut status, now).await? {
            Some(rs) => rs,
            // A hash collision: collisionCount went up; try again with the new name.
            None => return Ok(Action::requeue(Duration::from_millis(100))),
        },
    };
    found_condition(&mut status, &new, now);
    let mut all: Vec<&ReplicaSet> = olds.clone();
    all.push(&new);

    let target = rollout::new_rs_target(&d, &new, &all);
    if target != rollout::rs_replicas(&new) && sync.scale(&new, target).await? {
        return sync.write_status(Some(&new), &all, status, now).await;
    }
    let mut changed = false;
    for (name, target) in rollout::old_rs_targets(&d, &new, &olds) {
        if let Some(rs) = olds.iter().find(|rs| rs.metadata.name.as_deref() == Some(name.as_str())) {
            changed |= sync.scale(rs, target).await?;
        }
    }
    if changed {
        return sync.write_status(Some(&new), &all, status, now).await;
    }
    sync.finish(&new, &olds, status, now).await
}

/// Sets Progressing to FoundNewReplicaSet when there is no Progressing condition yet.
fn found_condition(status: &mut DeploymentStatus, new: &ReplicaSet, now: Timestamp) {
    if status.conditions.iter().flatten().all(|c| c.type_ != "Progressing") {
        let msg = format!("Found new replica set \"{}\"", new.name_any());
        rollout::set_condition(status, rollout::condition("Progressing", "True", "FoundNewReplicaSet", msg, now));
    }
}

/// A Recreate rollout (Kubernetes' `rolloutRecreate`): the old ReplicaSets go to 0, and the
/// new one is created or scaled up only once none of their pods runs any more. Pod events
/// of scaled-down ReplicaSets wake this Deployment ([`recreate_waiting_on`]).
async fn recreate(
    sync: &Sync<'_>,
    new: Option<&ReplicaSet>,
    olds: &[&ReplicaSet],
    owned: &[&ReplicaSet],
    mut status: DeploymentStatus,
    now: Timestamp,
) -> crate::Result<Action> {
    let d = sync.d;
    // The revision of an existing new ReplicaSet is brought up to date first; a missing one
    // is not created yet, so that nothing scales up before the old pods are gone.
    let new = match new {
        Some(rs) => Some(sync.sync_new(rs, olds).await?),
        None => None,
    };
    let mut all: Vec<&ReplicaSet> = olds.to_vec();
    all.extend(new.as_ref());
    let ns = d.namespace().unwrap_or_default();
    let running = rollout::old_pods_running(
        olds,
        sync.ctx.pods.state().iter().filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str())).map(Arc::as_ref),
    );
    match rollout::recreate_step(d, new.as_ref(), olds, running) {
        rollout::RecreateStep::ScaleDownOld(names) => {
            for rs in olds.iter().filter(|rs| rs.metadata.name.as_ref().is_some_and(|n| names.contains(n))) {
                sync.scale(rs, 0).await?;
            }
            sync.write_status(new.as_ref(), &all, status, now).await
        }
        rollout::RecreateStep::WaitForOldPods => sync.write_status(new.as_ref(), &all, status, now).await,
        rollout::RecreateStep::CreateNew(_) => match sync.create_found(owned, olds, &mut status, now).await? {
            Some(created) => {
                all.push(&created);
                sync.write_status(Some(&created), &all, status, now).await
            }
            None => Ok(Action::requeue(Duration::from_millis(100))),
        },
        rollout::RecreateStep::ScaleNew(target) => {
            let Some(new) = new.as_ref() else { return Ok(Action::await_change()) };
            found_condition(&mut status, new, now);
            if sync.scale(new, target).await? {
                return sync.write_status(Some(new), &all, status, now).await;
            }
            sync.finish(new, olds, status, now).await
        }
    }
}

/// The Deployments in Recreate whose rollout may wait on `pod`: the controller of its
/// ReplicaSet, when that ReplicaSet is scaled to 0 (an old one being emptied).
fn recreate_waiting_on(
    deployments: &Store<Deployment>,
    replicasets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let r = pods::controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&r.name).within(&ns))?;
    if rollout::rs_replicas(&rs) != 0 {
        return None;
    }
    let owner = pods::controller_ref(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    let key = ObjectRef::new(&owner.name).within(&ns);
    deployments.get(&key).filter(|d| rollout::is_recreate(d)).map(|_| key)
}

/// One sync of one Deployment.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: &'a Deployment,
    rs_api: &'a Api<ReplicaSet>,
}

impl Sync<'_> {
    /// The end of a sync with nothing left to scale: old ReplicaSets beyond the history
    /// limit go once the rollout is complete; the status is written.
    async fn finish(
        &self,
        new: &ReplicaSet,
        olds: &[&ReplicaSet],
        status: DeploymentStatus,
        now: Timestamp,
    ) -> crate::Result<Action> {
        let mut all: Vec<&ReplicaSet> = olds.to_vec();
        all.push(new);
        let probe = rollout::status(self.d, Some(new), &all, now);
        if rollout::is_complete(self.d, &probe) {
            self.cleanup(olds).await?;
        }
        self.write_status(Some(new), &all, status, now).await
    }

    /// Creates the new ReplicaSet ([`Sync::create_new`]) and records it in the Progressing
    /// condition; None after a hash collision.
    async fn create_found(
        &self,
        owned: &[&ReplicaSet],
        olds: &[&ReplicaSet],
        status: &mut DeploymentStatus,
        now: Timestamp,
    ) -> crate::Result<Option<ReplicaSet>> {
        let Some(rs) = self.create_new(owned, olds, status, now).await? else { return Ok(None) };
        let msg = format!("Created new replica set \"{}\"", rs.name_any());
        rollout::set_condition(status, rollout::condition("Progressing", "True", "NewReplicaSetCreated", msg, now));
        Ok(Some(rs))
    }

    /// Scales `rs` to `target` (and records the Deployment's size on it); false if nothing changed.
    async fn scale(&self, rs: &ReplicaSet, target: i32) -> crate::Result<bool> {
        let (surge, _) = rollout::fenceposts(self.d);
        let want = rollout::replicas(self.d);
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let desired = want.to_string();
        let max = (want + surge).to_string();
        let from = rollout::rs_replicas(rs);
        if from == target
            && annotations.get(rollout::DESIRED_REPLICAS) == Some(&desired)
            && annotations.get(rollout::MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        let patch = json!({
            "metadata": { "resourceVersion": rs.metadata.resource_version,
                "annotations": { rollout::DESIRED_REPLICAS: desired, rollout::MAX_REPLICAS: max } },
            "spec": { "replicas": target } });
        self.rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        if from != target {
            let way = if target > from { "up" } else { "down" };
            let note = format!("Scaled {way} replica set {} from {from} to {target}", rs.name_any());
            self.ctx.events.normal(&self.d.object_ref(&()), "ScalingReplicaSet", note).await;
        }
        Ok(true)
    }

    /// Brings the current ReplicaSet's revision, annotations and minReadySeconds up to date
    /// (Kubernetes' `getNewReplicaSet`), and the Deployment's revision with it.
    async fn sync_new(&self, rs: &ReplicaSet, olds: &[&ReplicaSet]) -> crate::Result<ReplicaSet> {
        let annotations =
            rollout::new_rs_annotations(self.d, rs.metadata.annotations.as_ref(), rollout::next_revision(olds));
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let mut rs = rs.clone();
        let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if rs.metadata.annotations.as_ref() != Some(&annotations) || rs_min_ready != min_ready {
            let patch = json!({
                "metadata": { "resourceVersion": rs.metadata.resource_version, "annotations": annotations },
                "spec": { "minReadySeconds": min_ready } });
            rs = self.rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        self.sync_revision(&rs).await?;
        Ok(rs)
    }

    /// Sets the Deployment's revision annotation to its current ReplicaSet's.
    async fn sync_revision(&self, rs: &ReplicaSet) -> crate::Result<()> {
        let revision = rollout::revision(rs).to_string();
        let current = self.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION));
        if current != Some(&revision) {
            let api: Api<Deployment> =
                Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
            let patch = json!({ "metadata": { "annotations": { REVISION: revision } } });
            match api.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Creates the ReplicaSet for the Deployment's template; None after a hash collision
    /// (collisionCount is raised in `status`, and written).
    async fn create_new(
        &self,
        owned: &[&ReplicaSet],
        olds: &[&ReplicaSet],
        status: &mut DeploymentStatus,
        now: Timestamp,
    ) -> crate::Result<Option<ReplicaSet>> {
        let d = self.d;
        let spec = d.spec.clone().unwrap_or_default();
        let hash = rollout::template_hash(&spec.template, status.collision_count);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.namespace(),
                labels,
                annotations: Some(rollout::new_rs_annotations(d, None, rollout::next_revision(olds))),
                owner_references: Some(vec![pods::owner_ref("apps/v1", "Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = owned.to_vec();
        all.push(&rs);
        let target = rollout::new_rs_target(d, &rs, &all);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(target);
        }
        match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if target > 0 {
                    let note = format!("Scaled up replica set {name} from 0 to {target}");
                    self.ctx.events.normal(&d.object_ref(&()), "ScalingReplicaSet", note).await;
                }
                self.sync_revision(&created).await?;
                Ok(Some(created))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = self.rs_api.get(&name).await?;
                let ours =
                    pods::controller_ref(&existing.metadata).map(|r| r.uid.as_str()) == d.metadata.uid.as_deref();
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| rollout::equal_ignore_hash(t, &spec.template));
                if ours && same {
                    // Ours, and the watch had not shown it yet.
                    return Ok(Some(existing));
                }
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                self.write_status(None, owned, status.clone(), now).await?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, olds: &[&ReplicaSet]) -> crate::Result<()> {
        for name in rollout::history_to_delete(self.d, olds) {
            match self.rs_api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes the status (counts, Available and Progressing) if it changed; requeues for
    /// the progress deadline while a rollout is under way.
    async fn write_status(
        &self,
        new: Option<&ReplicaSet>,
        all: &[&ReplicaSet],
        base: DeploymentStatus,
        now: Timestamp,
    ) -> crate::Result<Action> {
        let d = self.d;
        let mut with_base = d.clone();
        with_base.status = Some(base);
        let mut status = rollout::status(&with_base, new, all, now);
        // Progress is judged against the counts the Deployment showed before this sync.
        let requeue = rollout::progress(d, new, &mut status, now);
        if Some(&status) != d.status.as_ref() {
            let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &d.namespace().unwrap_or_default());
            let patch = json!({ "metadata": { "resourceVersion": d.metadata.resource_version }, "status": status });
            match api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
    }
}
