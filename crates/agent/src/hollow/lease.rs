//! Node leases in `kube-node-lease`, as the kubelet keeps them: one per node, owned by the
//! Node, `leaseDurationSeconds` 40, `renewTime` advanced every 10 s. One task renews all
//! of them, node `i` at offset `i/N` of the interval, so the writes are spread evenly; it
//! also re-posts each node's status every `node_status_report_interval`, spread the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Shared, is_code, node, with_retries};

/// The namespace of node leases.
pub(crate) const NAMESPACE: &str = "kube-node-lease";

fn lease_object(shared: &Shared, index: usize) -> Value {
    let node = &shared.nodes[index];
    let uid = node.uid.lock().expect("uid lock").clone();
    let owners = if uid.is_empty() {
        json!([])
    } else {
        json!([{ "apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid }])
    };
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": node.name, "namespace": NAMESPACE, "ownerReferences": owners },
        "spec": {
            "holderIdentity": node.name,
            "leaseDurationSeconds": shared.config.lease_duration_seconds,
            "renewTime": MicroTime(Timestamp::now()),
        },
    })
}

/// Creates node `index`'s lease, or renews it when it exists.
pub(crate) async fn ensure(shared: &Shared, index: usize) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), NAMESPACE);
    let _permit = shared.lease_writes.acquire().await.expect("semaphore open");
    let lease: Lease = serde_json::from_value(lease_object(shared, index)).expect("a valid Lease");
    let pp = PostParams::default();
    match with_retries("create lease", || api.create(&pp, &lease)).await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, 409) => renew_once(shared, &api, index).await,
        Err(e) => Err(e),
    }
}

/// Advances the lease's renewTime (and holder/duration, in case another process changed them).
async fn renew_once(shared: &Shared, api: &Api<Lease>, index: usize) -> Result<(), kube::Error> {
    let name = &shared.nodes[index].name;
    let patch = json!({ "spec": {
        "holderIdentity": name,
        "leaseDurationSeconds": shared.config.lease_duration_seconds,
        "renewTime": MicroTime(Timestamp::now()),
    } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
}

/// Renews node `index`'s lease, re-creating it if someone deleted it; posts the node status
/// too when `with_status`.
async fn renew(shared: Arc<Shared>, index: usize, with_status: bool) {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), NAMESPACE);
    let result = {
        let _permit = shared.lease_writes.acquire().await.expect("semaphore open");
        renew_once(&shared, &api, index).await
    };
    let result = match result {
        Err(e) if is_code(&e, 404) => ensure(&shared, index).await,
        other => other,
    };
    if let Err(e) = result {
        tracing::warn!(node = shared.nodes[index].name, %e, "renewing the node lease");
    }
    if with_status && let Err(e) = node::post_status(&shared, index).await {
        tracing::warn!(node = shared.nodes[index].name, %e, "posting node status");
    }
    shared.nodes[index].renewing.store(false, Ordering::Release);
}

/// Renews every lease once per interval, node `i` at offset `i/N`; a renewal still in flight
/// when its next turn comes is not doubled.
pub(crate) async fn renew_loop(shared: Arc<Shared>) {
    let n = shared.nodes.len() as u32;
    let period = shared.config.lease_renew_interval;
    let status_every =
        (shared.config.node_status_report_interval.as_millis() / period.as_millis().max(1)).max(1) as u64;
    let start = Instant::now();
    for round in 0u64.. {
        for i in 0..n {
            let at = start + period * (round as u32) + period * i / n;
            tokio::time::sleep_until(at).await;
            let index = i as usize;
            if !shared.nodes[index].registered.load(Ordering::Acquire)
                || shared.nodes[index].renewing.swap(true, Ordering::AcqRel)
            {
                continue;
            }
            let with_status = (round + u64::from(i)) % status_every == 0;
            tokio::spawn(renew(shared.clone(), index, with_status));
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
