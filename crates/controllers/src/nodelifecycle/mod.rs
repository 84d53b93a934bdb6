//! Node lifecycle controller: a node whose Lease (in `kube-node-lease`) and Ready heartbeat
//! stop changing for the grace period turns `Unknown`, its pods not ready; the node gets
//! the not-ready/unreachable taints its Ready condition calls for; pods on NoExecute-tainted
//! nodes are evicted once their tolerations run out. NoExecute taints are paced per zone
//! ([`zones`]). Decisions live in [`decide`].

mod decide;
mod zones;

pub use zones::EvictionLimits;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};

use crate::informers::Cache;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::Events;
use decide::Eviction;

/// The namespace of the nodes' Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What was last seen of a node's heartbeats, and when (by this controller's clock).
struct Probe {
    lease_renewed: Option<String>,
    ready_heartbeat: Option<String>,
    seen_at: Instant,
}

pub(crate) async fn run(
    client: kube::Client,
    grace: Duration,
    limits: EvictionLimits,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
) {
    let (leases, lease_writer) = reflector::store::<Lease>();
    let follow_leases = watcher(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE), watcher::Config::default())
        .backoff(crate::backoff::watch())
        .reflect(lease_writer)
        .for_each(|_| async {});
    let monitor = monitor(client, grace, limits, nodes, Cache::of(leases), pods);
    tokio::join!(follow_leases, monitor);
}

async fn monitor(
    client: kube::Client,
    grace: Duration,
    limits: EvictionLimits,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    pods: Cache<Pod>,
) {
    let events = Events::new(client.clone(), "node-controller");
    let mut zones = zones::Zones::new(limits);
    let mut standing_still = false;
    let period = (grace / 8).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut probes: HashMap<String, Probe> = HashMap::new();
    nodes.wait_until_ready().await;
    leases.wait_until_ready().await;
    pods.wait_until_ready().await;
    loop {
        let now = Time(jiff::Timestamp::now());
        let all = nodes.state();
        probes.retain(|name, _| all.iter().any(|n| n.name_any() == *name));
        // First every node's health, then the zones' states from it, then the taints: so
        // that nodes going down together count together (as Kubernetes' monitor pass does).
        let mut checked = Vec::with_capacity(all.len());
        for node in all.iter() {
            let name = node.name_any();
            let lease = leases.get(&reflector::ObjectRef::new(&name).within(LEASE_NAMESPACE));
            let lease_renewed = lease.and_then(|l| l.spec.clone()?.renew_time).map(|t| t.0.to_string());
            let ready_heartbeat = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string());
            let probe = probes.entry(name.clone()).or_insert_with(|| Probe {
                lease_renewed: lease_renewed.clone(),
                ready_heartbeat: ready_heartbeat.clone(),
                seen_at: Instant::now(),
            });
            if probe.lease_renewed != lease_renewed || probe.ready_heartbeat != ready_heartbeat {
                *probe = Probe { lease_renewed, ready_heartbeat, seen_at: Instant::now() };
            }
            let mut node = (**node).clone();
            if probe.seen_at.elapsed() > grace
                && let Some(conditions) = decide::unknown_conditions(&node, &now)
            {
                if let Err(e) = set_unknown(&client, &name, &conditions, &pods).await {
                    tracing::debug!(node = %name, error = %e, "node lifecycle: status update failed");
                    continue;
                }
                tracing::info!(node = %name, "node lifecycle: node stopped reporting, Ready=Unknown");
                events
                    .normal(&node_ref(&node), "NodeNotReady", format!("Node {name} status is now: NodeNotReady"))
                    .await;
                node.status.get_or_insert_with(Default::default).conditions = Some(conditions);
            }
            checked.push(node);
        }
        zones.observe(&checked, Instant::now());
        if zones.all_fully_disrupted() != standing_still {
            standing_still = !standing_still;
            if standing_still {
                tracing::warn!(
                    "node lifecycle: every zone is fully disrupted: assuming the control plane is cut off; \
                     no NoExecute taints until some node is Ready"
                );
            } else {
                tracing::info!("node lifecycle: some zone is healthy again: NoExecute taints resume");
            }
        }
        for mut node in checked {
            let name = node.name_any();
            let no_execute = if standing_still {
                false
            } else if decide::has_no_execute(&node) {
                true
            } else {
                decide::wants_no_execute(&node) && zones.admit(&node, Instant::now())
            };
            if decide::wants_no_execute(&node) && !no_execute && !standing_still {
                let zone = zones.state_of(&node);
                tracing::debug!(node = %name, ?zone, "node lifecycle: NoExecute taint held back by the zone's rate");
            }
            if let Some(taints) = decide::desired_taints(&node, &now, no_execute) {
                let patch = json!({ "spec": { "taints": taints } });
                match Api::<Node>::all(client.clone())
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => node.spec.get_or_insert_with(Default::default).taints = Some(taints),
                    Err(e) => tracing::debug!(node = %name, error = %e, "node lifecycle: taint update failed"),
                }
            }
            evict(&client, &events, &node, &pods, now.0).await;
        }
        tokio::time::sleep(period).await;
    }
}

fn node_ref(node: &Node) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Writes the Unknown conditions and marks the node's pods not ready.
async fn set_unknown(
    client: &kube::Client,
    name: &str,
    conditions: &[k8s_openapi::api::core::v1::NodeCondition],
    pods: &Store<Pod>,
) -> Result<(), kube::Error> {
    let patch = json!({ "status": { "conditions": conditions } });
    Api::<Node>::all(client.clone()).patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    for pod in pods.state().iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name)) {
        let Some(status) = pod.status.as_ref() else { continue };
        let mut conditions = status.conditions.clone().unwrap_or_default();
        let mut changed = false;
        for c in conditions.iter_mut().filter(|c| c.type_ == "Ready" && c.status != "False") {
            c.status = "False".into();
            c.last_transition_time = Some(Time(jiff::Timestamp::now()));
            changed = true;
        }
        if changed {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({ "status": { "conditions": conditions } });
            if let Err(e) = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "node lifecycle: marking pod not ready failed");
            }
        }
    }
    Ok(())
}

/// The condition the taint manager sets on a pod before deleting it.
const TAINT_EVICTION: crate::pods::Disruption = crate::pods::Disruption {
    reason: "DeletionByTaintManager",
    message: "Taint manager: deleting due to NoExecute taint",
};

/// Deletes the pods of `node` whose tolerations of its NoExecute taints ran out, each
/// marked `DisruptionTarget` first.
async fn evict(client: &kube::Client, events: &Events, node: &Node, pods: &Store<Pod>, now: jiff::Timestamp) {
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    if !taints.iter().any(|t| t.effect == "NoExecute") {
        return;
    }
    let name = node.name_any();
    for pod in pods.state().iter() {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(name.as_str())
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Eviction::At(at) = decide::eviction(pod, &taints, now) else { continue };
        if at > now {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // Marked first, as Kubernetes' taint manager does, for Jobs' podFailurePolicy.
        if let Err(e) = crate::pods::mark_disrupted(&api, pod, Some(&TAINT_EVICTION), false).await {
            tracing::debug!(pod = %pod.name_any(), error = %e, "node lifecycle: marking the pod failed");
            continue;
        }
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %pod.name_any(), node = %name, "node lifecycle: evicting pod from tainted node");
                let regarding = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(ns),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                };
                events
                    .normal(&regarding, "TaintManagerEviction", format!("Marking for deletion Pod {}", pod.name_any()))
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "node lifecycle: eviction failed"),
        }
    }
}
