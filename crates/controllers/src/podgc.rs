//! Pod garbage collector, as kube-controller-manager's PodGC: deletes terminated pods beyond
//! `--terminated-pod-gc-threshold` (evicted ones first, then oldest first; 0 turns this
//! off), pods bound to nodes that no longer exist, terminating pods that were never
//! scheduled, and terminating pods on nodes that are not Ready and tainted out-of-service.
//! Every pod it deletes is first moved to phase Failed unless it had finished (no kubelet
//! is left to do it), an orphan also marked `DisruptionTarget` (reason `DeletionByPodGC`),
//! and then force-deleted (grace period 0).

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
    /// Terminating on a node that is not Ready and tainted out-of-service.
    OutOfService,
}

impl Reason {
    /// The `DisruptionTarget` condition the pod gets before it goes: Kubernetes sets one
    /// only on orphans (an unscheduled or out-of-service pod is only failed).
    fn disruption(self) -> Option<&'static crate::pods::Disruption> {
        (self == Reason::Orphaned).then_some(&ORPHANED)
    }
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Terminated as Kubernetes' PodGC counts it: in no phase of a live pod.
fn terminated(p: &Pod) -> bool {
    !matches!(phase(p), "Pending" | "Running" | "Unknown")
}

/// Failed by a kubelet's eviction (`status.reason` Evicted): collected before other terminated pods.
fn evicted(p: &Pod) -> bool {
    phase(p) == "Failed" && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Whether the pods terminating on `node` may be collected: the node is not Ready and
/// carries the out-of-service taint (an operator's word that it is shut down).
pub(crate) fn out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted =
        node.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE));
    !ready && tainted
}

/// The pods to collect (namespace, name, reason), given the live `nodes` and the
/// out-of-service ones; a `threshold` of 0 collects no terminated pods for their number.
pub(crate) fn collect(
    pods: &[&Pod],
    nodes: &BTreeSet<String>,
    out_of_service: &BTreeSet<String>,
    threshold: usize,
) -> Vec<(String, String, Reason)> {
    let key = |p: &Pod| (p.namespace().unwrap_or_default(), p.name_any());
    let mut out = Vec::new();
    let mut done: Vec<&Pod> = pods.iter().copied().filter(|p| terminated(p)).collect();
    if threshold > 0 && done.len() > threshold {
        done.sort_by_key(|p| (!evicted(p), p.metadata.creation_timestamp.clone().map(|t| t.0), p.name_any()));
        for p in &done[..done.len() - threshold] {
            let (ns, name) = key(p);
            out.push((ns, name, Reason::Terminated));
        }
    }
    for p in pods {
        if out.iter().any(|(ns, name, _)| (ns.clone(), name.clone()) == key(p)) {
            continue;
        }
        let node = node_name(p);
        let deleting = p.metadata.deletion_timestamp.is_some();
        let reason = if !node.is_empty() && !nodes.contains(node) {
            Some(Reason::Orphaned)
        } else if node.is_empty() && deleting {
            Some(Reason::UnscheduledTerminating)
        } else if deleting && out_of_service.contains(node) {
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
        let out_of_service: BTreeSet<String> =
            all_nodes.iter().filter(|n| out_of_service(n)).map(|n| n.name_any()).collect();
        let all_pods = pods.state();
        let refs: Vec<&Pod> = all_pods.iter().map(|p| p.as_ref()).collect();
        for (ns, name, reason) in collect(&refs, &live, &out_of_service, threshold) {
            let Some(pod) = refs.iter().find(|p| p.name_any() == name && p.namespace().as_deref() == Some(&ns)) else {
                continue;
            };
            // An orphan's node is checked live: the node store may lag behind a new node.
            if reason == Reason::Orphaned
                && !matches!(Api::<Node>::all(client.clone()).get_opt(node_name(pod)).await, Ok(None))
            {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            // Failed first (for Jobs' podReplacementPolicy and podFailurePolicy), as
            // Kubernetes' markFailedAndDeletePod; a pod that finished keeps its phase.
            if let Err(e) = crate::pods::mark_disrupted(&api, pod, reason.disruption(), true).await {
                tracing::debug!(namespace = %ns, pod = %name, error = %e, "pod gc: marking failed");
                continue;
            }
            // A pod already deleted with no grace period waits only on its finalizers.
            if pod.metadata.deletion_grace_period_seconds == Some(0) {
                continue;
            }
            match api.delete(&name, &DeleteParams::default().grace_period(0)).await {
                Ok(_) => tracing::info!(namespace = %ns, pod = %name, ?reason, "pod gc: deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
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

    fn names(pods: &[Pod], threshold: usize) -> Vec<(String, Reason)> {
        let refs: Vec<&Pod> = pods.iter().collect();
        let nodes: BTreeSet<String> = ["n1".to_string(), "n2".to_string()].into();
        let oos: BTreeSet<String> = ["n2".to_string()].into();
        collect(&refs, &nodes, &oos, threshold).into_iter().map(|(_, n, r)| (n, r)).collect()
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
        assert_eq!(
            names(&pods, 1),
            [
                ("old-done".to_string(), Reason::Terminated),
                ("mid-failed".to_string(), Reason::Terminated),
                ("orphan".to_string(), Reason::Orphaned),
                ("unscheduled-going".to_string(), Reason::UnscheduledTerminating),
                ("stuck".to_string(), Reason::OutOfService),
            ]
        );
        assert!(names(&pods, 3).iter().all(|(_, r)| *r != Reason::Terminated));
        // 0 turns the threshold off, as Kubernetes' --terminated-pod-gc-threshold.
        assert!(names(&pods, 0).iter().all(|(_, r)| *r != Reason::Terminated));
    }

    #[test]
    fn evicted_pods_go_first_then_the_oldest() {
        let mut evicted = pod("evicted-new", "2026-01-01T00:00:09Z", "n1", "Failed", false);
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = [
            pod("b-old", "2026-01-01T00:00:01Z", "n1", "Succeeded", false),
            pod("a-old", "2026-01-01T00:00:01Z", "n1", "Failed", false),
            evicted,
            pod("newest", "2026-01-01T00:00:05Z", "n1", "Succeeded", false),
        ];
        let got: Vec<String> = names(&pods, 1).into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, ["evicted-new", "a-old", "b-old"]);
    }

    #[test]
    fn only_orphans_get_a_disruption_condition() {
        assert_eq!(Reason::Orphaned.disruption().map(|d| d.reason), Some("DeletionByPodGC"));
        for r in [Reason::Terminated, Reason::UnscheduledTerminating, Reason::OutOfService] {
            assert!(r.disruption().is_none(), "{r:?}");
        }
    }

    #[test]
    fn out_of_service_needs_the_taint_and_a_node_not_ready() {
        let node = |ready: &str, taint: &str| -> Node {
            serde_json::from_value(json!({ "metadata": { "name": "n" },
                "spec": { "taints": [{ "key": taint, "effect": "NoExecute" }] },
                "status": { "conditions": [{ "type": "Ready", "status": ready }] } }))
            .unwrap()
        };
        assert!(out_of_service(&node("False", OUT_OF_SERVICE)));
        assert!(out_of_service(&node("Unknown", OUT_OF_SERVICE)));
        assert!(!out_of_service(&node("True", OUT_OF_SERVICE)));
        assert!(!out_of_service(&node("False", "node.kubernetes.io/unreachable")));
    }
}
