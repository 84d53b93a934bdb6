//! Node registration and status, as the kubelet does them: create the Node (or take over
//! the existing one of the same name after a restart), post its status (capacity =
//! allocatable, conditions, addresses, nodeInfo), re-post it now and then as a heartbeat,
//! and follow `spec.podCIDR` when a controller assigns one.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use super::{Error, Result, Shared, is_code, lease, with_retries};

/// The kubelet version hollow nodes report.
pub(crate) const KUBELET_VERSION: &str = "v1.33.0";

/// Registers every node with its lease, a bounded number at a time.
pub(crate) async fn register_all(shared: &Arc<Shared>) -> Result<()> {
    let parallel = shared.config.max_concurrent_writes.clamp(1, 32);
    futures::stream::iter(0..shared.nodes.len())
        .map(|i| register(shared, i))
        .buffer_unordered(parallel)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(nodes = shared.nodes.len(), "hollow nodes registered");
    Ok(())
}

/// Creates (or takes over) node `index`, posts its status and creates its lease.
async fn register(shared: &Arc<Shared>, index: usize) -> Result<()> {
    let node = &shared.nodes[index];
    let api: Api<Node> = Api::all(shared.client.clone());
    let err = |source| Error::Register { node: node.name.clone(), source };
    let wanted: Node = serde_json::from_value(node_object(shared, index)).expect("a valid Node");
    let (pp, patch_params) = (PostParams::default(), PatchParams::default());
    let created = match with_retries("create node", || api.create(&pp, &wanted)).await {
        Ok(n) => n,
        Err(e) if is_code(&e, 409) => {
            // A restart: take the existing Node over, with this run's labels and taints.
            let patch = json!({
                "metadata": { "labels": wanted.metadata.labels },
                "spec": { "taints": wanted.spec.as_ref().and_then(|s| s.taints.clone()) },
            });
            let patch = Patch::Merge(&patch);
            with_retries("update node", || api.patch(&node.name, &patch_params, &patch)).await.map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    *node.uid.lock().expect("uid lock") = created.metadata.uid.clone().unwrap_or_default();
    if let Some(cidr) = created.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
        node.pods.lock().expect("pods lock").set_cidr(cidr);
    }
    post_status(shared, index).await.map_err(err)?;
    lease::ensure(shared, index).await.map_err(err)?;
    node.registered.store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// The Node as created: labels (hostname, os, arch, the configured ones) and taints.
fn node_object(shared: &Shared, index: usize) -> Value {
    let config = &shared.config;
    let name = &shared.nodes[index].name;
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(config.architecture));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!(config.architecture));
    for (k, v) in &config.labels {
        labels.insert(k.clone(), json!(v));
    }
    let taints: Vec<Value> =
        config.taints.iter().map(|t| json!({ "key": t.key, "value": t.value, "effect": t.effect })).collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": { "node.alpha.kubernetes.io/ttl": "0", "berth.dev/hollow": "true" },
        },
        "spec": { "taints": taints },
    })
}

/// The Node status: capacity = allocatable, healthy conditions with heartbeat `now`,
/// addresses and nodeInfo.
pub(crate) fn node_status(shared: &Shared, index: usize, now: Timestamp) -> Value {
    let node = &shared.nodes[index];
    let heartbeat = json!(Time(now));
    let since = json!(Time(shared.started));
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since })
    };
    json!({
        "capacity": shared.config.capacity,
        "allocatable": shared.config.capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            { "type": "InternalIP", "address": node.ip.to_string() },
            { "type": "Hostname", "address": node.name },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
        "nodeInfo": {
            "machineID": format!("hollow-{}", node.name),
            "systemUUID": format!("hollow-{}", node.name),
            "bootID": format!("hollow-{}", shared.started.as_second()),
            "kernelVersion": "hollow",
            "osImage": "berth hollow node",
            "containerRuntimeVersion": "hollow://1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": shared.config.architecture,
        },
    })
}

/// Posts node `index`'s status (registration and the periodic heartbeat).
pub(crate) async fn post_status(shared: &Shared, index: usize) -> Result<(), kube::Error> {
    let name = &shared.nodes[index].name;
    let api: Api<Node> = Api::all(shared.client.clone());
    let params = PatchParams::default();
    let _permit = shared.writes.acquire().await.expect("semaphore open");
    with_retries("node status", || {
        let patch = json!({ "status": node_status(shared, index, Timestamp::now()) });
        let (api, params) = (&api, &params);
        async move { api.patch_status(name, params, &Patch::Merge(&patch)).await }
    })
    .await
    .map(drop)
}

/// Follows the Nodes for podCIDRs assigned to ours (one watch for all of them; only its
/// own Node for a single node, whose identity may read no other: the Node authorizer's
/// selector rule of Kubernetes 1.32+).
pub(crate) async fn watch_pod_cidrs(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let config = match shared.nodes.as_slice() {
        [only] => watcher::Config::default().fields(&format!("metadata.name={}", only.name)),
        _ => watcher::Config::default(),
    };
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let node = match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(%e, "watching nodes");
                continue;
            }
        };
        let (Some(name), Some(cidr)) = (node.metadata.name, node.spec.and_then(|s| s.pod_cidr)) else {
            continue;
        };
        if let Some(&i) = shared.by_name.get(&name) {
            let mut range = shared.nodes[i].pods.lock().expect("pods lock");
            if !range.set_cidr(&cidr) {
                tracing::warn!(
                    node = name,
                    cidr,
                    "podCIDR not usable (IPv4 /8 to /29 only); keeping the per-node range"
                );
            }
        }
    }
}
