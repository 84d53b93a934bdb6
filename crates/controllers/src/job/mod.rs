//! Job controller: runs a Job's pods to completion (parallelism, completions, Indexed
//! mode, back-off, deadline, pod failure policy, suspend), tracks them with the
//! `batch.kubernetes.io/job-tracking` finalizer, and reports status and conditions.
//! Each sync is decided by [`sync::sync`]; this module does the IO, with expectations so a
//! sync never acts before the watch has shown its own last creations and deletions.

pub(crate) mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::Events;
use crate::replicaset::Expectations;

struct Ctx {
    client: kube::Client,
    pods: crate::informers::Cache<Pod>,
    expectations: Expectations,
    events: Events,
}

pub(crate) async fn run(client: kube::Client, feed: crate::informers::Feed<Pod>) {
    let (pods, pod_events) = (feed.store.clone(), feed.shared());
    let events = Events::new(client.clone(), "job-controller");
    let ctx = Arc::new(Ctx { client: client.clone(), pods, expectations: Expectations::default(), events });
    let controller = Controller::new(Api::<Job>::all(client), watcher::Config::default());
    let orphans = release_orphans(ctx.clone(), crate::informers::Cache::of(controller.store()));
    let (reconcile, error_policy) = crate::backoff::wrap("job", reconcile);
    let run = controller
        .owns_shared_stream(pod_events)
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    tokio::join!(run, orphans);
}

/// Pods still tracked by a Job that is gone (deleted without the controller seeing it)
/// lose the tracking finalizer, as Kubernetes' orphan pod finalizer removal does.
async fn release_orphans(ctx: Arc<Ctx>, jobs: crate::informers::Cache<Job>) {
    jobs.wait_until_ready().await;
    ctx.pods.wait_until_ready().await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let all = ctx.pods.state();
        for pod in all.iter().filter(|p| p.metadata.finalizers.iter().flatten().any(|f| f == sync::TRACKING)) {
            let Some(owner) = pod.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Job")
            else {
                continue;
            };
            if jobs.state().iter().any(|j| j.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let live = Api::<Job>::namespaced(ctx.client.clone(), &ns).get_opt(&owner.name).await;
            if matches!(&live, Ok(Some(j)) if j.metadata.uid.as_deref() == Some(owner.uid.as_str())) || live.is_err() {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            if let Err(e) = remove_finalizer(&api, &all, &ns, &pod.name_any()).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "job controller: releasing an orphan failed");
            }
        }
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    if job.metadata.deletion_timestamp.is_some() {
        // Its pods go with it (garbage collector); let them go now.
        let ns = job.namespace().unwrap_or_default();
        release_all(&ctx, &job, &ns).await?;
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", job.name_any());
    if !ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        // The watch has not shown this controller's last pods yet: a sync now would
        // count too few and create duplicates. Their events trigger the next sync.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let all = ctx.pods.state();
    let pods: Vec<&Pod> = all
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .map(|p| p.as_ref())
        .collect();
    let plan = sync::sync(&job, &pods, jiff::Timestamp::now());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // The status first: counted pods are recorded before they lose their finalizer.
    if job.status.as_ref() != Some(&plan.status) {
        let patch = json!({ "status": plan.status });
        jobs.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    for name in &plan.remove_finalizers {
        remove_finalizer(&pod_api, &all, &ns, name).await?;
    }
    let mut created = Vec::new();
    let mut deleted = Vec::new();
    let result = change_pods(&ctx, &job, &plan, &pods, &pod_api, &mut created, &mut deleted).await;
    ctx.expectations.expect(&key, created, deleted);
    result?;
    for (warning, reason, message) in plan.events {
        if warning {
            ctx.events.warning(&job_ref(&job), &reason, message).await;
        } else {
            ctx.events.normal(&job_ref(&job), &reason, message).await;
        }
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(Duration::from_millis(d.as_millis().clamp(100, i128::from(u32::MAX)) as u64)),
        None => Action::await_change(),
    })
}

/// Deletes and creates the pods `plan` names, recording what it did in `created` (names)
/// and `deleted` (uids) even when a call fails part-way.
async fn change_pods(
    ctx: &Ctx,
    job: &Job,
    plan: &sync::Plan,
    pods: &[&Pod],
    pod_api: &Api<Pod>,
    created: &mut Vec<String>,
    deleted: &mut Vec<String>,
) -> crate::Result<()> {
    for name in &plan.delete {
        match pod_api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                if let Some(p) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str())) {
                    deleted.push(p.metadata.uid.clone().unwrap_or_default());
                }
                ctx.events.normal(&job_ref(job), "SuccessfulDelete", format!("Deleted pod: {name}")).await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for index in &plan.create {
        let failures = index.and_then(|i| plan.index_failures.get(&i).copied()).unwrap_or(0);
        let pod = sync::new_pod(job, *index, failures);
        match pod_api.create(&PostParams::default(), &pod).await {
            Ok(pod) => {
                created.push(pod.name_any());
                ctx.events.normal(&job_ref(job), "SuccessfulCreate", format!("Created pod: {}", pod.name_any())).await
            }
            Err(e) => {
                ctx.events.warning(&job_ref(job), "FailedCreate", format!("Error creating: {e}")).await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Removes the tracking finalizer of pod `name` (guarded by the finalizer list it had).
async fn remove_finalizer(api: &Api<Pod>, all: &[Arc<Pod>], ns: &str, name: &str) -> Result<(), kube::Error> {
    let Some(pod) = all.iter().find(|p| p.name_any() == name && p.namespace().as_deref() == Some(ns)) else {
        return Ok(());
    };
    let old = pod.metadata.finalizers.clone().unwrap_or_default();
    let left: Vec<&String> = old.iter().filter(|f| *f != sync::TRACKING).collect();
    let ops = json!([
        { "op": "test", "path": "/metadata/finalizers", "value": old },
        { "op": "replace", "path": "/metadata/finalizers", "value": left },
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    match api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Drops the tracking finalizer from every pod of a Job being deleted.
async fn release_all(ctx: &Ctx, job: &Job, ns: &str) -> Result<(), kube::Error> {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let all = ctx.pods.state();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    for pod in all.iter().filter(|p| p.owner_references().iter().any(|o| o.uid == uid)) {
        if pod.metadata.finalizers.iter().flatten().any(|f| f == sync::TRACKING) {
            remove_finalizer(&api, &all, ns, &pod.name_any()).await?;
        }
    }
    Ok(())
}
