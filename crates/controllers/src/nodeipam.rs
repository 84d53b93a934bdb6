//! Node IPAM: every node gets a /24 of `--cluster-cidr` in `spec.podCIDR(s)`; a deleted
//! node's range is free again (ranges in use are read from the nodes themselves).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

/// The size of each node's range.
const NODE_PREFIX: u8 = 24;

/// An IPv4 CIDR (`10.42.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// `10.42.0.0/16`, k3s's default cluster CIDR.
    pub const DEFAULT: Cidr = Cidr { base: u32::from_be_bytes([10, 42, 0, 0]), prefix: 16 };
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (address/prefix)"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if prefix > NODE_PREFIX {
            return Err(format!("{s:?} is smaller than one /{NODE_PREFIX} node range"));
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(Cidr { base: u32::from(ip) & mask, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The first /24 of `cluster` not in `used` (ranges as `a.b.c.d/24`).
pub(crate) fn allocate(cluster: Cidr, used: &BTreeSet<String>) -> Option<String> {
    let count = 1u32 << (NODE_PREFIX - cluster.prefix);
    (0..count)
        .map(|i| Cidr { base: cluster.base + (i << (32 - NODE_PREFIX)), prefix: NODE_PREFIX }.to_string())
        .find(|c| !used.contains(c))
}

struct Ctx {
    client: kube::Client,
    cluster: Cidr,
    nodes: Store<Node>,
    /// Ranges this controller assigned that its store may not show yet.
    assigned: Mutex<BTreeMap<String, String>>,
}

pub(crate) async fn run(client: kube::Client, cluster: Cidr) {
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(1));
    let ctx = Arc::new(Ctx { client, cluster, nodes: controller.store(), assigned: Mutex::new(BTreeMap::new()) });
    let (reconcile, error_policy) = crate::backoff::wrap("nodeipam", reconcile);
    controller.trigger_backoff(crate::backoff::watch()).run(reconcile, error_policy, ctx).for_each(|_| async {}).await;
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> crate::Result<Action> {
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some_and(|c| !c.is_empty()) {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let range = {
        let all = ctx.nodes.state();
        let mut assigned = ctx.assigned.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what deleted nodes held, and what the store now shows.
        assigned.retain(|n, _| {
            all.iter().any(|x| x.name_any() == *n && x.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none())
        });
        // Assigned already (the node seen again before the store shows its range): the same one.
        if let Some(range) = assigned.get(&name) {
            range.clone()
        } else {
            let mut used: BTreeSet<String> = all.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
            used.extend(assigned.values().cloned());
            let Some(range) = allocate(ctx.cluster, &used) else {
                tracing::warn!(node = %name, cidr = %ctx.cluster, "node ipam: no free range left");
                return Ok(Action::requeue(Duration::from_secs(30)));
            };
            assigned.insert(name.clone(), range.clone());
            range
        }
    };
    let patch = json!({ "spec": { "podCIDR": range, "podCIDRs": [range] } });
    Api::<Node>::all(ctx.client.clone()).patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(node = %name, %range, "node ipam: assigned pod range");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_the_first_free_24() {
        let cluster: Cidr = "10.42.0.0/16".parse().unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(allocate(cluster, &used).as_deref(), Some("10.42.0.0/24"));
        used.insert("10.42.0.0/24".to_string());
        used.insert("10.42.2.0/24".to_string());
        assert_eq!(allocate(cluster, &used).as_deref(), Some("10.42.1.0/24"));
        let small: Cidr = "192.168.4.7/23".parse().unwrap();
        assert_eq!(small.to_string(), "192.168.4.0/23");
        let full: BTreeSet<String> = ["192.168.4.0/24".to_string(), "192.168.5.0/24".to_string()].into();
        assert_eq!(allocate(small, &full), None);
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in ["10.42.0.0", "10.42.0.0/25", "10.42.0/16", "x/16", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
