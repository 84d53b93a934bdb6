//! Pod garbage collector: deletes terminated pods beyond `--terminated-pod-gc-threshold`
//! (oldest first), pods bound to nodes that no longer exist, terminating pods that were
//! never scheduled, and terminating pods on nodes tainted out-of-service.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DeleteParams;

use crate::informers::Cache;
use kube::{Api, ResourceExt};

/// How often the collector looks (Kubernetes: 20 s).
const PERIOD: Duration = Duration::from_secs(10);
/// The taint that lets pods of a shut-down node go.
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// The condition PodGC sets on a pod whose node is gone before deleting it.
const ORPHANED: crate::pods::Disruption =
    crate::pods::Disruption { reason: "DeletionByPodGC", message: "PodGC: node no longer exists" };

/// Why a pod is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Terminated, and more terminated pods than the threshold exist.
    Terminated,
    /// Bound to a node that does not exist.
    Orphaned,
    /// Terminating and never scheduled.
    UnscheduledTerminating,
    /// Terminating on an out-of-service node.
    OutOfService,
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// The pods to collect (namespace, name, reason), given the live `nodes` and the
/// out-of-service ones.
pub(crate) fn collect(
    pods: &[&Pod],
    nodes: &BTreeSet<String>,
    out_of_service: &BTreeSet<String>,
    threshold: usize,
) -> Vec<(String, String, Reason)> {
    let key = |p: &Pod| (p.namespace().unwrap_or_default(), p.name_any());
    let mut out = Vec::new();
    let mut terminated: Vec<&Pod> =
        pods.iter().copied().filter(|p| matches!(phase(p), "Succeeded" | "Failed")).collect();
    if terminated.len() > threshold {
        terminated.sort_by_key(|p| (p.metadata.creation_timestamp.clone().map(|t| t.0), p.name_any()));
        for p in &terminated[..terminated.len() - threshold] {
            let (ns, name) = key(p);
            out.push((ns, name, Reason::Terminated));
        }
    }
    for p in pods {
        if out.iter().any(|(ns, name, _)| (ns.clone(), name.clone()) == key(p)) {
            continue;
        }
        let node = node_name(p);
        let reason = if !node.is_empty() && !nodes.contains(node) {
            Some(Reason::Orphaned)
        } else if node.is_empty() && p.metadata.deletion_timestamp.is_some() {
            Some(Reason::UnscheduledTerminating)
        } else if p.metadata.deletion_timestamp.is_some() && out_of_service.contains(node) {
            Some(Reason::OutOfService)
        } else {
            None
        };
        if let Some(r) = reason {
            let (ns, name) = key(p);
            out.push((ns, name, r));
        }
    }
    out
}

pub(crate) async fn run(client: kube::Client, threshold: usize, pods: Cache<Pod>, nodes: Cache<Node>) {
    gc_loop(client, threshold, pods, nodes).await;
}

async fn gc_loop(client: kube::Client, threshold: usize, pods: Cache<Pod>, nodes: Cache<Node>) {
    pods.wait_until_ready().await;
    nodes.wait_until_ready().await;
    loop {
        tokio::time::sleep(PERIOD).await;
        let all_nodes = nodes.state();
        let live: BTreeSet<String> = all_nodes.iter().map(|n| n.name_any()).collect();
        let out_of_service: BTreeSet<String> = all_nodes
            .iter()
            .filter(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE))
            })
            .map(|n| n.name_any())
            .collect();
        let all_pods = pods.state();
        let refs: Vec<&Pod> = all_pods.iter().map(|p| p.as_ref()).collect();
        for (ns, name, reason) in collect(&refs, &live, &out_of_service, threshold) {
            // An orphan's node is checked live: the node store may lag behind a new node.
            if reason == Reason::Orphaned {
                let node = all_pods.iter().find(|p| p.name_any() == name && p.namespace().as_deref() == Some(&ns));
                let node = node.map(|p| node_name(p).to_string()).unwrap_or_default();
                if !matches!(Api::<Node>::all(client.clone()).get_opt(&node).await, Ok(None)) {
                    continue;
                }
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            // Terminated pods go gracefully; the others are force-deleted (no kubelet will
            // finish them). An orphan is first marked Failed and DisruptionTarget (for Jobs'
            // podFailurePolicy), as Kubernetes does; Kubernetes also fails an unscheduled
            // terminating pod first, which is not done here yet.
            let params = if reason == Reason::Terminated {
                DeleteParams::default()
            } else {
                let pod = all_pods.iter().find(|p| p.name_any() == name && p.namespace().as_deref() == Some(&ns));
                if reason == Reason::Orphaned
                    && let Some(pod) = pod
                    && let Err(e) = crate::pods::mark_disrupted(&api, pod, Some(&ORPHANED), true).await
                {
                    tracing::debug!(namespace = %ns, pod = %name, error = %e, "pod gc: marking failed");
                    continue;
                }
                DeleteParams::default().grace_period(0)
            };
            match api.delete(&name, &params).await {
                Ok(_) => tracing::info!(namespace = %ns, pod = %name, ?reason, "pod gc: deleted"),
                Err(e) => tracing::debug!(namespace = %ns, pod = %name, error = %e, "pod gc: delete failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, created: &str, node: &str, phase: &str, deleting: bool) -> Pod {
        let mut v = json!({ "metadata": { "name": name, "namespace": "ns", "creationTimestamp": created },
            "spec": { "containers": [], "nodeName": node }, "status": { "phase": phase } });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_is_collected() {
        let pods = [
            pod("old-done", "2026-01-01T00:00:01Z", "n1", "Succeeded", false),
            pod("mid-failed", "2026-01-01T00:00:02Z", "n1", "Failed", false),
            pod("new-done", "2026-01-01T00:00:03Z", "n1", "Succeeded", false),
            pod("running", "2026-01-01T00:00:00Z", "n1", "Running", false),
            pod("orphan", "2026-01-01T00:00:00Z", "gone", "Running", false),
            pod("unscheduled-going", "2026-01-01T00:00:00Z", "", "Pending", true),
            pod("unscheduled", "2026-01-01T00:00:00Z", "", "Pending", false),
            pod("stuck", "2026-01-01T00:00:00Z", "n2", "Running", true),
            pod("stuck-but-served", "2026-01-01T00:00:00Z", "n1", "Running", true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let nodes: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
        let oos: BTreeSet<String> = ["n2".to_string()].into();
        let got: Vec<(String, Reason)> = collect(&refs, &nodes, &oos, 1).into_iter().map(|(_, n, r)| (n, r)).collect();
        assert_eq!(
            got,
            [
                ("old-done".to_string(), Reason::Terminated),
                ("mid-failed".to_string(), Reason::Terminated),
                ("orphan".to_string(), Reason::Orphaned),
                ("unscheduled-going".to_string(), Reason::UnscheduledTerminating),
                ("stuck".to_string(), Reason::OutOfService),
            ]
        );
        assert!(collect(&refs, &nodes, &oos, 3).iter().all(|(_, _, r)| *r != Reason::Terminated));
    }
}
