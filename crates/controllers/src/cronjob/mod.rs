//! CronJob controller: creates a CronJob's Jobs on its schedule (time zones, concurrency
//! policy, starting deadline, suspend), keeps its history within the limits and reports
//! active Jobs and last schedule/success times. Decisions live in [`schedule`].

mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::Events;

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
    events: Events,
}

pub(crate) async fn run(client: kube::Client) {
    let (jobs, writer) = reflector::store::<Job>();
    let job_events = watcher(Api::<Job>::all(client.clone()), watcher::Config::default())
        .backoff(crate::backoff::watch())
        .reflect(writer)
        .touched_objects();
    let events = Events::new(client.clone(), "cronjob-controller");
    let ctx = Arc::new(Ctx { client: client.clone(), jobs, events });
    let (reconcile, error_policy) = crate::backoff::wrap("cronjob", reconcile);
    Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .owns_stream(job_events)
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn cronjob_ref(cj: &CronJob) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("CronJob".into()),
        namespace: cj.metadata.namespace.clone(),
        name: cj.metadata.name.clone(),
        uid: cj.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let schedule = match schedule::Schedule::of(&cj) {
        Ok(s) => s,
        Err(e) => {
            ctx.events.warning(&cronjob_ref(&cj), "UnparseableSchedule", e.to_string()).await;
            return Ok(Action::await_change());
        }
    };
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let all = ctx.jobs.state();
    let jobs: Vec<&Job> = all
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .map(|j| j.as_ref())
        .collect();
    let plan = schedule::sync(&cj, &schedule, &jobs, jiff::Timestamp::now());
    let job_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for name in &plan.delete {
        let params = DeleteParams::background();
        match job_api.delete(name, &params).await {
            Ok(_) => ctx.events.normal(&cronjob_ref(&cj), "SuccessfulDelete", format!("Deleted job {name}")).await,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut status = plan.status.clone();
    if let Some(scheduled) = plan.run {
        let job = schedule::new_job(&cj, &schedule, scheduled);
        match job_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                let name = created.name_any();
                ctx.events.normal(&cronjob_ref(&cj), "SuccessfulCreate", format!("Created job {name}")).await;
                let reference = ObjectReference {
                    api_version: Some("batch/v1".into()),
                    kind: Some("Job".into()),
                    name: Some(name),
                    namespace: Some(ns.clone()),
                    uid: created.metadata.uid.clone(),
                    ..ObjectReference::default()
                };
                status.active.get_or_insert_with(Vec::new).push(reference);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                ctx.events.warning(&cronjob_ref(&cj), "FailedCreate", format!("Error creating job: {e}")).await;
                return Err(e.into());
            }
        }
    }
    for (warning, reason, message) in &plan.events {
        if *warning {
            ctx.events.warning(&cronjob_ref(&cj), reason, message.clone()).await;
        } else {
            ctx.events.normal(&cronjob_ref(&cj), reason, message.clone()).await;
        }
    }
    if cj.status.as_ref() != Some(&status) {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        let mut body = serde_json::to_value(&status).unwrap_or(json!({}));
        if status.active.is_none() {
            body["active"] = serde_json::Value::Null;
        }
        api.patch_status(&cj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({ "status": body }))).await?;
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(Duration::from_millis(d.as_millis().clamp(100, 24 * 3600 * 1000) as u64)),
        None => Action::await_change(),
    })
}
