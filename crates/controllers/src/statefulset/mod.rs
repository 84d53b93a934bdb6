//! StatefulSet controller: pods with stable names `<set>-<ordinal>` and their own claims
//! from volumeClaimTemplates, created and removed in order (OrderedReady) or all at once
//! (Parallel), updated through ControllerRevisions (RollingUpdate with partition and
//! maxUnavailable, or OnDelete), as Kubernetes' `pkg/controller/statefulset`. Decisions are
//! in [`sync`]; this module does the IO.

pub(crate) mod sync;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::replicaset::adopt_and_release;
use crate::{pods, revisions};
use sync::{Rev, Step};

struct Ctx {
    client: kube::Client,
    pods: crate::informers::Cache<Pod>,
    /// The claims (kube-controller-manager's PVC informer): the retention policy's owner
    /// references are checked against it on every sync, with no request per claim.
    claims: crate::informers::Cache<PersistentVolumeClaim>,
    events: Events,
}

/// Runs the StatefulSet controller.
pub(crate) async fn run(
    client: kube::Client,
    pods: crate::informers::Feed<Pod>,
    claims: crate::informers::Feed<PersistentVolumeClaim>,
) {
    let pods_reader = pods.store.clone();
    let pod_events = pods.shared();
    let claims_reader = claims.store.clone();
    let claim_events = claims.shared();
    let controller = Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let claim_sets = controller.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods_reader,
        claims: claims_reader,
        events: Events::new(client, "statefulset-controller"),
    });
    let (reconcile, error_policy) = crate::backoff::wrap("statefulset", reconcile);
    controller
        .watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
            pods::owners_of(&sets, "apps/v1", "StatefulSet", |s| s.spec.as_ref().map(|sp| sp.selector.clone()), &pod)
        })
        // A claim that changes is checked again by the sets whose policy deletes claims: a sync
        // that ran before the claim reached the cache left its owners for this one.
        .watches_shared_stream(claim_events, move |claim: Arc<PersistentVolumeClaim>| {
            let (ns, name) = (claim.namespace(), claim.name_any());
            claim_sets
                .state()
                .iter()
                .filter(|s| s.namespace() == ns && sync::is_claim_of(s, &name))
                .filter(|s| sync::delete_claims_with_set(s) || sync::delete_claims_on_scale_down(s))
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    ctx.pods.wait_until_ready().await;
    ctx.claims.wait_until_ready().await;
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let cr_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let set_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = set.spec.clone().unwrap_or_default();
    let ours = pods::owner_ref("apps/v1", "StatefulSet", &set.metadata);
    let in_ns = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let claims = pods::claim(&set.metadata, Some(&spec.selector), in_ns.iter().map(Arc::as_ref));
    let owned = adopt_and_release(&pod_api, claims, &ours).await?;

    // The revisions: the update one is the current template's.
    let history = revisions::list(&cr_api, &set.metadata).await?;
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let update =
        match revisions::ensure(&cr_api, ours.clone(), labels, &spec.template, &history, collision_count).await? {
            Ok(cr) => cr,
            Err(count) => {
                let patch = json!({ "status": { "collisionCount": count } });
                set_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
        };
    let update_name = update.name_any();
    let history = revisions::list(&cr_api, &set.metadata).await?;
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .and_then(|c| history.iter().find(|cr| cr.metadata.name.as_deref() == Some(c)))
        .unwrap_or(&update)
        .clone();
    let current_name = current.name_any();
    let current_template = revisions::template_of(&current).unwrap_or_else(|| spec.template.clone());

    let now = Timestamp::now();
    if set.metadata.deletion_timestamp.is_none() {
        for step in sync::next_steps(&set, &owned, &update_name, now) {
            match step {
                Step::Create { ordinal, revision } => {
                    let (template, rev_name) = match revision {
                        Rev::Current => (&current_template, &current_name),
                        Rev::Update => (&spec.template, &update_name),
                    };
                    create_pod(&ctx, &set, ordinal, template, rev_name, &ours).await?;
                }
                Step::Delete { name: pod_name, condemned } => {
                    if condemned
                        && sync::delete_claims_on_scale_down(&set)
                        && let Some(pod) = owned.iter().find(|p| p.metadata.name.as_deref() == Some(&pod_name))
                    {
                        reconcile_claim_owners(&ctx, &set, pod).await?;
                    }
                    match pod_api.delete(&pod_name, &DeleteParams::default()).await {
                        Ok(_) => {
                            let note = format!("delete Pod {pod_name} in StatefulSet {name} successful");
                            ctx.events.normal(&set.object_ref(&()), "SuccessfulDelete", note).await;
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    // The claims' owners follow the retention policy: checked on every sync while a
    // policy deletes claims, and once after any spec change (a policy set back to Retain
    // takes the references away).
    let policy_deletes = sync::delete_claims_with_set(&set) || sync::delete_claims_on_scale_down(&set);
    let spec_changed = set.status.as_ref().and_then(|s| s.observed_generation) != set.metadata.generation;
    if set.metadata.deletion_timestamp.is_none() && (policy_deletes || spec_changed) {
        for pod in owned.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            reconcile_claim_owners(&ctx, &set, pod).await?;
        }
    }

    let status = sync::status(&set, &owned, &current_name, &update_name, collision_count, now);
    if Some(&status) != set.status.as_ref() {
        let patch = json!({ "metadata": { "resourceVersion": set.metadata.resource_version }, "status": status });
        match set_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    // History beyond the limit, but never a revision in use.
    let mut keep: Vec<&str> = vec![current_name.as_str(), update_name.as_str()];
    keep.extend(owned.iter().filter_map(|p| sync::pod_revision(p)));
    let limit = spec.revision_history_limit.unwrap_or(10);
    revisions::delete(&cr_api, revisions::history_to_delete(&history, &keep, limit)).await?;

    Ok(match pods::next_available_in(&owned, spec.min_ready_seconds.unwrap_or(0), now) {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// Creates the claims of a pod (if missing), then the pod.
async fn create_pod(
    ctx: &Ctx,
    set: &StatefulSet,
    ordinal: i32,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    revision: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> crate::Result<()> {
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let regarding = set.object_ref(&());
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let pod = sync::pod_for(set, ordinal, template, revision, owner.clone());
    let pod_name = pod.name_any();
    for claim in sync::claims_for(set, ordinal) {
        let claim_name = claim.name_any();
        match pvc_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let note = format!("create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success");
                ctx.events.normal(&regarding, "SuccessfulCreate", note).await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                let note =
                    format!("create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}");
                ctx.events.warning(&regarding, "FailedCreate", note).await;
                return Err(e.into());
            }
        }
    }
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match pod_api.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            let note = format!("create Pod {pod_name} in StatefulSet {set_name} successful");
            ctx.events.normal(&regarding, "SuccessfulCreate", note).await;
            Ok(())
        }
        // Created already (the watch had not shown it yet).
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => {
            let note = format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}");
            ctx.events.warning(&regarding, "FailedCreate", note).await;
            Err(e.into())
        }
    }
}

/// Puts on `pod`'s claims the owner references the retention policy asks for (see
/// [`sync::claim_owners`]): with `whenScaled: Delete` a condemned pod owns its claims, so
/// the garbage collector removes them with it; with `whenDeleted: Delete` the set owns them.
/// The claims are read from the claim cache; each write carries the resourceVersion the cache
/// had, so no concurrent owner change is lost (a stale copy gets a 409 Conflict, and the
/// retry reads the cache again). A claim not in the cache yet is left to the sync its
/// arrival triggers, as Kubernetes' controller leaves it to the next one.
async fn reconcile_claim_owners(ctx: &Ctx, set: &StatefulSet, pod: &Pod) -> crate::Result<()> {
    let Some(ordinal) = pod.metadata.name.as_deref().and_then(|n| sync::ordinal(&set.name_any(), n)) else {
        return Ok(());
    };
    let ns = set.namespace().unwrap_or_default();
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let set_ref = pods::owner_ref("apps/v1", "StatefulSet", &set.metadata);
    let pod_ref = pods::owner_ref("v1", "Pod", &pod.metadata);
    let want_set = sync::delete_claims_with_set(set);
    let want_pod = sync::delete_claims_on_scale_down(set) && sync::condemned(set, ordinal);
    for template in sync::claims_for(set, ordinal) {
        let Some(claim) = ctx.claims.get(&ObjectRef::new(&template.name_any()).within(&ns)) else { continue };
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let existing = claim.metadata.owner_references.clone().unwrap_or_default();
        let Some(owners) = sync::claim_owners(&existing, &set_ref, &pod_ref, want_set, want_pod) else { continue };
        let patch = json!({ "metadata": {
            "ownerReferences": owners, "resourceVersion": claim.metadata.resource_version } });
        match pvc_api.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
