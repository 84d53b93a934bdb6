//! Data-driven tests of the queueing hints: an event, a pod and the plugins that rejected
//! it → whether the pod is queued again.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::framework::Diagnosis;
use crate::plugins::testing::{bound, bound_labelled, cache_of, labelled, node, pod};

fn facts(name: &str, opts: Value) -> NodeFacts {
    let cache = cache_of(vec![node(name, opts)], vec![]);
    NodeFacts::of(cache.node(name).expect("node"))
}

fn cpu(cpu: &str) -> Value {
    json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})
}

fn deleted(p: Arc<PodInfo>) -> ClusterEvent {
    let node = p.spec().node_name.clone().unwrap_or_default();
    ClusterEvent::PodDeleted { pod: p, node, room: None }
}

/// `p` deleted, leaving `free_cpu` CPUs (8 GiB, 100 pod slots) free on its node and
/// `nominated` nominated there.
fn deleted_leaving(p: Arc<PodInfo>, free_cpu: &str, nominated: Vec<Arc<PodInfo>>) -> ClusterEvent {
    let node_name = p.spec().node_name.clone().unwrap_or_default();
    let allocatable = json!({"allocatable": {"cpu": free_cpu, "memory": "8Gi", "pods": "100"}});
    let cache = cache_of(vec![node(&node_name, allocatable)], vec![]);
    let room = Room { nominated, ..Room::of(cache.node(&node_name).expect("node")) };
    ClusterEvent::PodDeleted { pod: p, node: node_name, room: Some(room) }
}

fn assigned(p: Arc<PodInfo>) -> ClusterEvent {
    let node = p.spec().node_name.clone().unwrap_or_default();
    ClusterEvent::PodAssigned { pod: p, old: None, node }
}

fn by(plugins: &[Plugin], lacking: &[&str]) -> Rejected {
    Rejected {
        plugins: plugins.iter().copied().collect(),
        lacking: lacking.iter().map(|s| s.to_string()).collect(),
        waiting_on: None,
    }
}

#[test]
fn hints_decide_which_events_queue_a_pod() {
    use Plugin::*;
    let anti = json!({"containers": [{"name": "c"}], "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let with = json!({"containers": [{"name": "c"}], "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let port = |p: i32| json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": p}]}]});
    let spread = json!({"containers": [{"name": "c"}], "topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    let taint = json!({"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]});
    let big = json!({"allocatable": {"cpu": "64", "memory": "8Gi", "pods": "110"}});
    let small = json!({"allocatable": {"cpu": "1", "memory": "8Gi", "pods": "110"}});
    let other_ns = {
        let mut p = bound_labelled("w", "n1", json!({"app": "web"}), json!({})).pod.as_ref().clone();
        p.metadata.namespace = Some("elsewhere".into());
        Arc::new(PodInfo::new(Arc::new(p)))
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, ClusterEvent, PodInfo, Rejected, bool)> = vec![
        // NodeResourcesFit: a deleted pod helps if it requested what the pod lacked.
        ("fit: cpu freed", deleted(bound("x", "n1", cpu("1"))), pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), true),
        ("fit: no cpu freed", deleted(bound("x", "n1", json!({}))), pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), false),
        ("fit: a pod slot freed", deleted(bound("x", "n1", json!({}))), pod(cpu("2")), by(&[NodeResourcesFit], &["pods"]), true),
        ("fit: a pod added", assigned(bound("x", "n1", cpu("1"))), pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), false),
        ("fit: a node it fits", ClusterEvent::NodeAdded(facts("n9", big.clone())), pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), true),
        ("fit: a node too small", ClusterEvent::NodeAdded(facts("n9", small.clone())), pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), false),
        ("fit: allocatable grew", ClusterEvent::NodeUpdated { old: facts("n1", small.clone()), new: facts("n1", big.clone()) }, pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), true),
        ("fit: labels only", ClusterEvent::NodeUpdated { old: facts("n1", json!({})), new: facts("n1", json!({"labels": {"a": "b"}})) }, pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), false),
        // NodePorts: only a freed port the pod wants.
        ("ports: freed", deleted(bound("x", "n1", port(8080))), pod(port(8080)), by(&[NodePorts], &[]), true),
        ("ports: another", deleted(bound("x", "n1", port(9090))), pod(port(8080)), by(&[NodePorts], &[]), false),
        // InterPodAffinity.
        ("anti: a matching pod went", deleted(bound_labelled("x", "n1", json!({"app": "db"}), json!({}))), pod(anti.clone()), by(&[InterPodAffinity], &[]), true),
        ("anti: another pod went", deleted(bound_labelled("x", "n1", json!({"app": "web"}), json!({}))), pod(anti.clone()), by(&[InterPodAffinity], &[]), false),
        ("anti: an existing pod's term went", deleted(bound_labelled("x", "n1", json!({}), anti.clone())), labelled(json!({"app": "db"}), json!({})), by(&[InterPodAffinity], &[]), true),
        ("affinity: a matching pod came", assigned(bound_labelled("x", "n1", json!({"app": "cache"}), json!({}))), pod(with.clone()), by(&[InterPodAffinity], &[]), true),
        ("affinity: another pod came", assigned(bound_labelled("x", "n1", json!({"app": "web"}), json!({}))), pod(with.clone()), by(&[InterPodAffinity], &[]), false),
        ("affinity: node labels changed", ClusterEvent::NodeUpdated { old: facts("n1", json!({})), new: facts("n1", json!({"labels": {"zone": "a"}})) }, pod(with.clone()), by(&[InterPodAffinity], &[]), true),
        // PodTopologySpread: pods its constraints count, in its namespace.
        ("spread: a counted pod went", deleted(bound_labelled("w", "n1", json!({"app": "web"}), json!({}))), pod(spread.clone()), by(&[PodTopologySpread], &[]), true),
        ("spread: another namespace", deleted(other_ns), pod(spread.clone()), by(&[PodTopologySpread], &[]), false),
        ("spread: an uncounted pod", assigned(bound_labelled("w", "n1", json!({"app": "db"}), json!({}))), pod(spread.clone()), by(&[PodTopologySpread], &[]), false),
        // TaintToleration, NodeUnschedulable, NodeAffinity: node changes.
        ("taint removed", ClusterEvent::NodeUpdated { old: facts("n1", taint.clone()), new: facts("n1", json!({})) }, pod(json!({})), by(&[TaintToleration], &[]), true),
        ("taint kept", ClusterEvent::NodeUpdated { old: facts("n1", taint.clone()), new: facts("n1", json!({"taints": taint["taints"], "labels": {"a": "b"}})) }, pod(json!({})), by(&[TaintToleration], &[]), false),
        ("tainted node added", ClusterEvent::NodeAdded(facts("n9", taint.clone())), pod(json!({})), by(&[TaintToleration], &[]), false),
        ("uncordoned", ClusterEvent::NodeUpdated { old: facts("n1", json!({"unschedulable": true})), new: facts("n1", json!({})) }, pod(json!({})), by(&[NodeUnschedulable], &[]), true),
        ("cordoned", ClusterEvent::NodeUpdated { old: facts("n1", json!({})), new: facts("n1", json!({"unschedulable": true})) }, pod(json!({})), by(&[NodeUnschedulable], &[]), false),
        ("selector now matches", ClusterEvent::NodeUpdated { old: facts("n1", json!({})), new: facts("n1", json!({"labels": {"disk": "ssd"}})) }, pod(json!({"nodeSelector": {"disk": "ssd"}})), by(&[NodeAffinity], &[]), true),
        ("selector still unmatched", ClusterEvent::NodeAdded(facts("n9", json!({"labels": {"disk": "hdd"}}))), pod(json!({"nodeSelector": {"disk": "ssd"}})), by(&[NodeAffinity], &[]), false),
        ("pod deletions do not change labels", deleted(bound("x", "n1", cpu("1"))), pod(json!({"nodeSelector": {"disk": "ssd"}})), by(&[NodeAffinity], &[]), false),
        // Storage and namespaces.
        ("claim for VolumeBinding", ClusterEvent::Storage, pod(json!({})), by(&[VolumeBinding], &[]), true),
        ("claim for NodeResourcesFit", ClusterEvent::Storage, pod(cpu("2")), by(&[NodeResourcesFit], &["cpu"]), false),
        ("namespace for InterPodAffinity", ClusterEvent::Namespace, pod(anti.clone()), by(&[InterPodAffinity], &[]), true),
        // Any of the rejecting plugins may queue the pod; no known plugin: any event does.
        ("either plugin", deleted(bound("x", "n1", cpu("1"))), pod(cpu("2")), by(&[TaintToleration, NodeResourcesFit], &["cpu"]), true),
        ("unknown reasons", ClusterEvent::Storage, pod(json!({})), by(&[], &[]), true),
        ("another plugin", ClusterEvent::Storage, pod(json!({})), by(&[Other], &[]), true),
    ];
    for (name, event, p, rejected, want) in cases {
        assert_eq!(helps(&event, &p, &rejected), want, "{name}");
    }
}

#[test]
fn a_pod_waiting_for_its_victims_waits_for_its_nominated_node_or_room_elsewhere() {
    let waiting = Rejected { waiting_on: Some("n1".into()), ..by(&[Plugin::NodeResourcesFit], &["cpu"]) };
    let p = pod(cpu("2"));
    // A pod going from n1 moves it (whatever it freed).
    assert!(helps(&deleted(bound("victim", "n1", json!({}))), &p, &waiting));
    // A pod freeing CPU elsewhere moves it when it leaves room the pod fits, as Kubernetes'
    // NodeResourcesFit hint does; not when the room left is too small, nor when a pod
    // nominated there of its priority or higher holds it, nor when it freed no CPU.
    let gone = || bound("x", "n2", cpu("4"));
    let nominee = |priority: i32| {
        let mut n = bound("nominee", "n2", cpu("1")).pod.as_ref().clone();
        n.spec.as_mut().unwrap().priority = Some(priority);
        n.spec.as_mut().unwrap().node_name = None;
        Arc::new(PodInfo::new(Arc::new(n)))
    };
    assert!(helps(&deleted_leaving(gone(), "2", vec![]), &p, &waiting));
    assert!(!helps(&deleted_leaving(gone(), "1", vec![]), &p, &waiting));
    assert!(!helps(&deleted_leaving(gone(), "2", vec![nominee(0)]), &p, &waiting));
    assert!(helps(&deleted_leaving(gone(), "2", vec![nominee(-1)]), &p, &waiting));
    assert!(!helps(&deleted_leaving(bound("x", "n2", json!({})), "4", vec![]), &p, &waiting));
    assert!(!helps(&deleted(gone()), &p, &waiting));
    // Pods added elsewhere do not move it; a change of n1 does.
    assert!(!helps(&assigned(bound("x", "n2", json!({}))), &p, &waiting));
    let n1 = |labels: Value| facts("n1", json!({"labels": labels}));
    assert!(helps(&ClusterEvent::NodeUpdated { old: n1(json!({})), new: n1(json!({"a": "b"})) }, &p, &waiting));
    // A new node it fits may still help, as for any pod short of CPU.
    let big = json!({"allocatable": {"cpu": "64", "memory": "8Gi", "pods": "110"}});
    assert!(helps(&ClusterEvent::NodeAdded(facts("n9", big)), &p, &waiting));
}

#[test]
fn a_diagnosis_names_the_rejecting_plugins_and_what_was_short() {
    let mut d = Diagnosis { num_all_nodes: 4, ..Default::default() };
    let mut fit = Rejection::unschedulable("Insufficient cpu");
    fit.reasons.push("Too many pods".into());
    fit.plugin = "NodeResourcesFit";
    let mut gpu = Rejection::unschedulable("Insufficient nvidia.com/gpu");
    gpu.plugin = "NodeResourcesFit";
    let mut taint = Rejection::unresolvable("node(s) had untolerated taint {dedicated: infra}");
    taint.plugin = "TaintToleration";
    d.nodes = vec![(0, fit.clone()), (1, fit), (2, taint), (3, gpu)];
    let r = Rejected::of(&d);
    assert!(r.plugins.contains(Plugin::NodeResourcesFit) && r.plugins.contains(Plugin::TaintToleration));
    assert!(!r.plugins.contains(Plugin::NodePorts));
    assert_eq!(r.lacking, ["cpu", "pods", "nvidia.com/gpu"]);
    assert_eq!(r.waiting_on, None);
}

#[test]
fn the_framework_names_the_rejecting_plugin() {
    use crate::config::SchedulerConfig;
    use crate::framework::{Cycle, Decision};
    let profile = &SchedulerConfig::default().profiles().unwrap()[0];
    let cache = cache_of(
        vec![node("a", json!({"taints": [{"key": "dedicated", "effect": "NoSchedule"}]})), node("b", json!({}))],
        vec![],
    );
    let Decision::Unschedulable(d) = Cycle::new(1).schedule(profile, &cache, &pod(cpu("8"))) else {
        panic!("8 CPUs fit nowhere");
    };
    let r = Rejected::of(&d);
    assert_eq!(r.plugins, [Plugin::TaintToleration, Plugin::NodeResourcesFit].into_iter().collect());
    assert_eq!(r.lacking, ["cpu"]);
}
