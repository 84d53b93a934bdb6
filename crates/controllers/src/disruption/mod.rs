//! Disruption controller: keeps each PodDisruptionBudget's status (healthy and expected
//! pods, disruptions allowed, the `DisruptionAllowed` condition, expired `disruptedPods`
//! entries) current, so that the eviction subresource (and `kubectl drain`) can honour it.
//! The computation is pure, in [`budget`].

mod budget;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::discovery::Resources;
use budget::BudgetError;

struct Ctx {
    client: kube::Client,
    events: crate::events::Events,
    pods: crate::informers::Cache<Pod>,
    discovery: Mutex<Option<(Instant, Arc<Resources>)>>,
}

pub(crate) async fn run(client: kube::Client, feed: crate::informers::Feed<Pod>) {
    let (pods, pod_events) = (feed.store.clone(), feed.shared());
    let controller = Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    // Any pod change may concern the budgets of its namespace (there are few of those).
    let mapper = move |pod: Arc<Pod>| {
        budgets
            .state()
            .iter()
            .filter(|b| b.namespace() == pod.namespace())
            .map(|b| ObjectRef::from_obj(b.as_ref()))
            .collect::<Vec<_>>()
    };
    let events = crate::events::Events::new(client.clone(), "controllermanager");
    let ctx = Arc::new(Ctx { client, events, pods, discovery: Mutex::new(None) });
    let (reconcile, error_policy) = crate::backoff::wrap("disruption", reconcile);
    controller
        .watches_shared_stream(pod_events, mapper)
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let Some(ns) = pdb.namespace() else { return Ok(Action::await_change()) };
    // Before the first list, an empty cache would read as "no healthy pods" and block evictions.
    ctx.pods.wait_until_ready().await;
    let all = ctx.pods.state();
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.clone());
    let pods: Vec<&Pod> = all
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selector.as_ref().is_some_and(|s| crate::selector::matches(s, p.metadata.labels.as_ref())))
        .map(|p| p.as_ref())
        .collect();
    let now = jiff::Timestamp::now();
    let expected = if budget::needs_scale(&pdb) { Some(ctx.expected_scale(&ns, &pods).await) } else { None };
    let computed = match expected {
        Some(Err(e)) => Err(e),
        Some(Ok(n)) => budget::status(&pdb, &pods, Some(n), now),
        None => budget::status(&pdb, &pods, None, now),
    };
    let (status, recheck) = match computed {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(pdb = %pdb.name_any(), error = %e, "disruption: cannot compute");
            if pdb
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(|c| c.iter().all(|c| c.reason != "SyncFailed"))
            {
                let regarding = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("policy/v1".into()),
                    kind: Some("PodDisruptionBudget".into()),
                    namespace: Some(ns.clone()),
                    name: pdb.metadata.name.clone(),
                    uid: pdb.metadata.uid.clone(),
                    ..Default::default()
                };
                let note = format!("Failed to calculate the number of expected pods: {e}");
                ctx.events.warning(&regarding, "CalculateExpectedPodCountFailed", note).await;
            }
            (budget::failed_status(&pdb, &e, now), None)
        }
    };
    if pdb.status.as_ref() != Some(&status) {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        // Merge patch: disruptedPods entries that went away are removed with nulls.
        let mut body = serde_json::to_value(&status).unwrap_or(json!({}));
        for name in pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()).into_iter().flatten().map(|(n, _)| n) {
            if status.disrupted_pods.as_ref().is_none_or(|d| !d.contains_key(name)) {
                body["disruptedPods"][name] = serde_json::Value::Null;
            }
        }
        let patch = json!({ "status": body });
        match api.patch_status(&pdb.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match recheck {
        Some(at) => Action::requeue(Duration::from_secs(at.duration_since(now).as_secs().max(1) as u64)),
        None => Action::await_change(),
    })
}

impl Ctx {
    /// The summed scale of the pods' controllers (a ReplicaSet's Deployment when it has one).
    async fn expected_scale(&self, ns: &str, pods: &[&Pod]) -> Result<i32, BudgetError> {
        let mut controllers = BTreeSet::new();
        for pod in pods {
            let Some(owner) = pod.owner_references().iter().find(|o| o.controller == Some(true)) else {
                return Err(BudgetError::NoController(pod.name_any()));
            };
            controllers.insert((owner.api_version.clone(), owner.kind.clone(), owner.name.clone()));
        }
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for (api_version, kind, name) in controllers {
            let (api_version, kind, name) = self.top_controller(ns, api_version, kind, name).await;
            if !seen.insert((api_version.clone(), kind.clone(), name.clone())) {
                continue;
            }
            total += self.scale_of(ns, &api_version, &kind, &name).await.unwrap_or(0);
        }
        Ok(total)
    }

    /// A ReplicaSet's Deployment, when it has one; else the controller itself.
    async fn top_controller(
        &self,
        ns: &str,
        api_version: String,
        kind: String,
        name: String,
    ) -> (String, String, String) {
        if api_version == "apps/v1" && kind == "ReplicaSet" {
            let rs: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            if let Ok(Some(rs)) = rs.get_opt(&name).await
                && let Some(d) =
                    rs.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Deployment")
            {
                return (d.api_version.clone(), d.kind.clone(), d.name.clone());
            }
        }
        (api_version, kind, name)
    }

    async fn scale_of(&self, ns: &str, api_version: &str, kind: &str, name: &str) -> Option<i32> {
        if api_version == "apps/v1" && kind == "Deployment" {
            let d = Api::<Deployment>::namespaced(self.client.clone(), ns).get_opt(name).await.ok()??;
            return Some(d.spec.and_then(|s| s.replicas).unwrap_or(1));
        }
        let resources = self.resources().await.ok()?;
        let res = resources.resolve(api_version, kind)?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &res.api);
        api.get_scale(name).await.ok()?.spec?.replicas
    }

    async fn resources(&self) -> Result<Arc<Resources>, kube::Error> {
        if let Some((at, r)) = self.discovery.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && at.elapsed() < Duration::from_secs(30)
        {
            return Ok(r.clone());
        }
        let r = Arc::new(Resources::discover(self.client.clone()).await?);
        *self.discovery.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), r.clone()));
        Ok(r)
    }
}
