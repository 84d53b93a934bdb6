//! Endpoints and EndpointSlices: the `endpoints` controller writes each selector Service's
//! Endpoints, the `endpointslice` controller its IPv4 EndpointSlices, from the pods the
//! selector picks and their readiness; `endpointslicemirroring` mirrors the manual
//! Endpoints of selector-less Services into slices. Decisions live in [`desired`].

mod desired;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use desired::{CONTROLLER, MANAGED_BY, MIRRORING, SERVICE_NAME, SKIP_MIRROR};

/// Which object a pod-driven controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// core/v1 Endpoints.
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlices.
    Slices,
}

impl Output {
    /// The controller's name, as `--disable-controllers` takes it.
    fn name(self) -> &'static str {
        match self {
            Output::Endpoints => "endpoints",
            Output::Slices => "endpointslice",
        }
    }
}

struct Ctx {
    client: kube::Client,
    pods: crate::informers::Cache<Pod>,
    output: Output,
}

/// Runs the `endpoints` or the `endpointslice` controller.
pub(crate) async fn run(client: kube::Client, output: Output, feed: crate::informers::Feed<Pod>) {
    let services: Api<Service> = Api::all(client.clone());
    let (pods, pod_events) = (feed.store.clone(), feed.shared());
    let controller = Controller::new(services, watcher::Config::default());
    let svc_store = controller.store();
    // Pods trigger the services that select them now or selected them before.
    let matched: Mutex<HashMap<ObjectRef<Pod>, HashSet<ObjectRef<Service>>>> = Mutex::new(HashMap::new());
    let mapper = move |pod: Arc<Pod>| {
        let now: HashSet<ObjectRef<Service>> = svc_store
            .state()
            .iter()
            .filter(|s| s.namespace() == pod.namespace())
            .filter(|s| {
                s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_some_and(|sel| desired::selects(sel, &pod))
            })
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let mut m = matched.lock().unwrap_or_else(|e| e.into_inner());
        let key = ObjectRef::from_obj(&*pod);
        let before = if now.is_empty() { m.remove(&key) } else { m.insert(key, now.clone()) };
        now.into_iter().chain(before.into_iter().flatten()).collect::<HashSet<_>>()
    };
    let ctx = Arc::new(Ctx { client: client.clone(), pods, output });
    let controller = controller.watches_shared_stream(pod_events, mapper);
    let controller = match output {
        Output::Endpoints => controller.watches(Api::<Endpoints>::all(client), watcher::Config::default(), |ep| {
            Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace()?))
        }),
        Output::Slices => controller.owns(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER}")),
        ),
    };
    let (reconcile, error_policy) = crate::backoff::wrap(output.name(), reconcile);
    controller.trigger_backoff(crate::backoff::watch()).run(reconcile, error_policy, ctx).for_each(|_| async {}).await;
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    let Some(ns) = svc.namespace() else { return Ok(Action::await_change()) };
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.clone()).filter(|s| !s.is_empty()) else {
        // Selector-less: endpoints are the user's (and mirrored into slices by another controller).
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Before the first list, an empty cache would empty every Service's endpoints (a new
    // leader would cut traffic until its cache filled).
    ctx.pods.wait_until_ready().await;
    let all = ctx.pods.state();
    let pods: Vec<&Pod> = all
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && desired::selects(&selector, p))
        .map(|p| p.as_ref())
        .collect();
    match ctx.output {
        Output::Endpoints => write_endpoints(&ctx.client, &ns, desired::endpoints(&svc, &pods)).await?,
        Output::Slices => {
            let owner = desired::controller_ref("Service", &svc.metadata);
            write_slices(&ctx.client, &svc, CONTROLLER, owner, desired::slices(&svc, &pods)).await?
        }
    }
    Ok(Action::await_change())
}

async fn write_endpoints(client: &kube::Client, ns: &str, want: Endpoints) -> Result<(), kube::Error> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let name = want.metadata.name.clone().unwrap_or_default();
    match api.get_opt(&name).await? {
        None => {
            ignore_conflict(api.create(&PostParams::default(), &want).await.map(|_| ()))?;
        }
        Some(mut have) => {
            let labels = want.metadata.labels.clone();
            // Other annotations are kept; the over-capacity one is set or removed.
            let mut annotations = have.metadata.annotations.clone().unwrap_or_default();
            match want.metadata.annotations.as_ref().and_then(|a| a.get(desired::OVER_CAPACITY)) {
                Some(v) => annotations.insert(desired::OVER_CAPACITY.into(), v.clone()),
                None => annotations.remove(desired::OVER_CAPACITY),
            };
            let annotations = (!annotations.is_empty()).then_some(annotations);
            if have.subsets.clone().unwrap_or_default() != want.subsets.clone().unwrap_or_default()
                || have.metadata.labels != labels
                || have.metadata.annotations.clone().filter(|a| !a.is_empty()) != annotations
            {
                have.subsets = want.subsets;
                have.metadata.labels = labels;
                have.metadata.annotations = annotations;
                api.replace(&name, &PostParams::default(), &have).await?;
            }
        }
    }
    Ok(())
}

/// Makes the slices `manager` keeps for `svc` hold `contents`.
async fn write_slices(
    client: &kube::Client,
    svc: &Service,
    manager: &str,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    contents: Vec<desired::SliceContent>,
) -> Result<(), kube::Error> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let selector = format!("{SERVICE_NAME}={},{MANAGED_BY}={manager}", svc.name_any());
    let mut existing = api.list(&ListParams::default().labels(&selector)).await?.items;
    existing.sort_by_key(|s| s.name_any());
    let plan = desired::plan_slices(&existing, contents);
    for (i, content) in plan.update {
        let base = &existing[i];
        let slice = desired::slice_object(svc, manager, owner.clone(), Some(base), content);
        api.replace(&base.name_any(), &PostParams::default(), &slice).await?;
    }
    for content in plan.create {
        let slice = desired::slice_object(svc, manager, owner.clone(), None, content);
        api.create(&PostParams::default(), &slice).await?;
    }
    for i in plan.delete {
        match api.delete(&existing[i].name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn ignore_conflict(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other,
    }
}

/// Runs the `endpointslicemirroring` controller: the manual Endpoints of a selector-less
/// Service mirrored into slices.
pub(crate) async fn run_mirroring(client: kube::Client) {
    let endpoints: Api<Endpoints> = Api::all(client.clone());
    let (reconcile_mirror, error_policy) = crate::backoff::wrap("endpointslicemirroring", reconcile_mirror);
    Controller::new(endpoints, watcher::Config::default())
        .watches(Api::<Service>::all(client.clone()), watcher::Config::default(), |svc| {
            Some(ObjectRef::new(&svc.name_any()).within(&svc.namespace()?))
        })
        .owns(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY}={MIRRORING}")),
        )
        .trigger_backoff(crate::backoff::watch())
        .run(reconcile_mirror, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile_mirror(ep: Arc<Endpoints>, client: Arc<kube::Client>) -> crate::Result<Action> {
    let Some(ns) = ep.namespace() else { return Ok(Action::await_change()) };
    let services: Api<Service> = Api::namespaced((*client).clone(), &ns);
    let svc = services.get_opt(&ep.name_any()).await?;
    let skip = ep.labels().get(SKIP_MIRROR).is_some_and(|v| v == "true");
    let mirror = svc.as_ref().filter(|s| {
        !skip
            && ep.metadata.deletion_timestamp.is_none()
            && s.spec.as_ref().and_then(|sp| sp.selector.as_ref()).is_none_or(BTreeMap::is_empty)
    });
    match mirror {
        Some(svc) => {
            let owner = desired::controller_ref("Endpoints", &ep.metadata);
            write_slices(&client, svc, MIRRORING, owner, desired::mirrored(&ep)).await?;
        }
        None => {
            // Nothing to mirror: drop the slices mirrored before.
            let slices: Api<EndpointSlice> = Api::namespaced((*client).clone(), &ns);
            let selector = format!("{SERVICE_NAME}={},{MANAGED_BY}={MIRRORING}", ep.name_any());
            for s in slices.list(&ListParams::default().labels(&selector)).await?.items {
                let _ = slices.delete(&s.name_any(), &DeleteParams::default()).await;
            }
        }
    }
    Ok(Action::await_change())
}
