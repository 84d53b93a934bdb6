//! TTL-after-finished controller: deletes a finished Job (with its pods, in the
//! foreground) once `ttlSecondsAfterFinished` has passed since it finished.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

/// When `job` is to be deleted: its finish time plus its TTL; `None` without a TTL or
/// while it runs.
pub(crate) fn expires_at(job: &Job) -> Option<jiff::Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .chain(status.completion_time.as_ref().map(|t| t.0))
        .min()?;
    Some(finished + jiff::SignedDuration::from_secs(i64::from(ttl)))
}

pub(crate) async fn run(client: kube::Client) {
    let (reconcile, error_policy) = crate::backoff::wrap("ttl-after-finished", reconcile);
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> crate::Result<Action> {
    let api: Api<Job> = Api::namespaced((*client).clone(), &job.namespace().unwrap_or_default());
    let at = expires_at(&job);
    let (action, deleted) = crate::expiry::delete_when_expired(&*job, &api, at, DeleteParams::foreground()).await?;
    if deleted {
        tracing::info!(job = %job.name_any(), "ttl-after-finished: deleted");
    }
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({ "metadata": { "name": "j" },
            "spec": { "ttlSecondsAfterFinished": ttl, "template": { "spec": { "containers": [] } } },
            "status": { "conditions": conditions } }))
        .unwrap()
    }

    #[test]
    fn expiry_counts_from_the_finish() {
        let done = json!([{ "type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }]);
        assert_eq!(expires_at(&job(Some(30), done.clone())), Some("2026-01-01T00:00:30Z".parse().unwrap()));
        assert_eq!(expires_at(&job(None, done)), None);
        let failed = json!([{ "type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z" }]);
        assert_eq!(expires_at(&job(Some(0), failed)), Some("2026-01-01T00:01:00Z".parse().unwrap()));
        let running = json!([{ "type": "Suspended", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }]);
        assert_eq!(expires_at(&job(Some(0), running)), None);
    }
}
