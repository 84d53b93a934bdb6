//! Tests of the DaemonSet decisions: node eligibility, pinning, and rolling-update plans.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use serde_json::{Value, json};

use super::sync;

fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({ "metadata": { "name": name, "labels": labels }, "spec": { "taints": taints } }))
        .unwrap()
}

fn spec(v: Value) -> PodSpec {
    let mut base = json!({ "containers": [{ "name": "c" }] });
    for (k, val) in v.as_object().unwrap() {
        base[k] = val.clone();
    }
    serde_json::from_value(base).unwrap()
}

#[test]
fn eligibility_follows_selectors_affinity_and_taints() {
    let taint =
        |key: &str, value: Option<&str>, effect: &str| json!([{ "key": key, "value": value, "effect": effect }]);
    let ssd = json!({ "disk": "ssd", "zone": "a", "cores": "8" });
    let affinity = |exprs: Value| {
        json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchExpressions": exprs }] } } } })
    };
    // (what, pod spec, node labels, node taints, (should run, may continue))
    type Case = (&'static str, Value, Value, Value, (bool, bool));
    let cases: Vec<Case> = vec![
        ("plain node", json!({}), ssd.clone(), json!([]), (true, true)),
        ("nodeSelector matches", json!({ "nodeSelector": { "disk": "ssd" } }), ssd.clone(), json!([]), (true, true)),
        ("nodeSelector misses", json!({ "nodeSelector": { "disk": "hdd" } }), ssd.clone(), json!([]), (false, false)),
        (
            "affinity In",
            affinity(json!([{ "key": "zone", "operator": "In", "values": ["a", "b"] }])),
            ssd.clone(),
            json!([]),
            (true, true),
        ),
        (
            "affinity NotIn",
            affinity(json!([{ "key": "zone", "operator": "NotIn", "values": ["a"] }])),
            ssd.clone(),
            json!([]),
            (false, false),
        ),
        (
            "affinity Gt",
            affinity(json!([{ "key": "cores", "operator": "Gt", "values": ["4"] }])),
            ssd.clone(),
            json!([]),
            (true, true),
        ),
        (
            "affinity DoesNotExist",
            affinity(json!([{ "key": "gpu", "operator": "DoesNotExist" }])),
            ssd.clone(),
            json!([]),
            (true, true),
        ),
        ("untolerated NoSchedule", json!({}), ssd.clone(), taint("dedicated", Some("db"), "NoSchedule"), (false, true)),
        ("untolerated NoExecute", json!({}), ssd.clone(), taint("evict", None, "NoExecute"), (false, false)),
        ("PreferNoSchedule is no bar", json!({}), ssd.clone(), taint("soft", None, "PreferNoSchedule"), (true, true)),
        (
            "tolerated by Equal",
            json!({ "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule" }] }),
            ssd.clone(),
            taint("dedicated", Some("db"), "NoSchedule"),
            (true, true),
        ),
        (
            "Equal with another value",
            json!({ "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "web" }] }),
            ssd.clone(),
            taint("dedicated", Some("db"), "NoSchedule"),
            (false, true),
        ),
        (
            "tolerate everything",
            json!({ "tolerations": [{ "operator": "Exists" }] }),
            ssd.clone(),
            taint("x", None, "NoExecute"),
            (true, true),
        ),
        (
            "auto: not-ready",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/not-ready", None, "NoExecute"),
            (true, true),
        ),
        (
            "auto: unreachable",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/unreachable", None, "NoExecute"),
            (true, true),
        ),
        (
            "auto: disk-pressure",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/disk-pressure", None, "NoSchedule"),
            (true, true),
        ),
        (
            "auto: memory-pressure",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/memory-pressure", None, "NoSchedule"),
            (true, true),
        ),
        (
            "auto: pid-pressure",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/pid-pressure", None, "NoSchedule"),
            (true, true),
        ),
        (
            "auto: unschedulable",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/unschedulable", None, "NoSchedule"),
            (true, true),
        ),
        (
            "network-unavailable: not without hostNetwork",
            json!({}),
            ssd.clone(),
            taint("node.kubernetes.io/network-unavailable", None, "NoSchedule"),
            (false, true),
        ),
        (
            "network-unavailable: tolerated with hostNetwork",
            json!({ "hostNetwork": true }),
            ssd.clone(),
            taint("node.kubernetes.io/network-unavailable", None, "NoSchedule"),
            (true, true),
        ),
    ];
    for (what, pod, labels, taints, expect) in cases {
        assert_eq!(sync::eligibility(&spec(pod), &node("n", labels, taints)), expect, "{what}");
    }
}

#[test]
fn daemon_pods_are_pinned_to_their_node() {
    let template = spec(json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] }] } } } }));
    let pinned = sync::pod_spec_for(&template, "n7");
    let pod = Pod { spec: Some(pinned.clone()), ..Pod::default() };
    assert_eq!(sync::target_node(&pod).as_deref(), Some("n7"));
    let terms =
        &pinned.affinity.unwrap().node_affinity.unwrap().required_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(terms.node_selector_terms.len(), 1);
    assert_eq!(terms.node_selector_terms[0].match_fields.as_ref().unwrap()[0].key, "metadata.name");
    assert!(pinned.tolerations.unwrap().iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")));
}

fn ds(strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": { "name": "agent", "namespace": "ns", "uid": "u", "generation": 1 },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "updateStrategy": strategy,
            "template": { "metadata": { "labels": { "app": "agent" } }, "spec": { "containers": [{ "name": "c" }] } } }
    }))
    .unwrap()
}

/// A daemon pod `name` on `node` of revision `hash`, ready or not.
fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "uid": name, "labels": { "app": "agent", "controller-revision-hash": hash } },
        "spec": { "containers": [{ "name": "c" }], "nodeName": node },
        "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] }
    }))
    .unwrap()
}

#[test]
fn plans_create_delete_and_roll() {
    let nodes: Vec<Node> = (1..=4).map(|i| node(&format!("n{i}"), json!({}), json!([]))).collect();
    let node_refs: Vec<&Node> = nodes.iter().collect();
    let rolling = |surge: Value, unavailable: Value| {
        ds(json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } }))
    };
    let all_old = || (1..=4).map(|i| pod(&format!("p{i}"), &format!("n{i}"), "old", true)).collect::<Vec<_>>();
    type Case = (&'static str, DaemonSet, Vec<Pod>, Vec<&'static str>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        ("create on every node", ds(json!({})), vec![], vec!["n1", "n2", "n3", "n4"], vec![]),
        (
            "up to date: nothing",
            ds(json!({})),
            (1..=4).map(|i| pod(&format!("p{i}"), &format!("n{i}"), "new", true)).collect(),
            vec![],
            vec![],
        ),
        ("maxUnavailable 1 replaces one", rolling(json!(0), json!(1)), all_old(), vec![], vec!["p1"]),
        ("maxUnavailable 50%", rolling(json!(0), json!("50%")), all_old(), vec![], vec!["p1", "p2"]),
        (
            "an unavailable new pod uses the budget",
            rolling(json!(0), json!(1)),
            vec![
                pod("p1", "n1", "new", false),
                pod("p2", "n2", "old", true),
                pod("p3", "n3", "old", true),
                pod("p4", "n4", "old", true),
            ],
            vec![],
            vec![],
        ),
        (
            "unavailable old pods go regardless",
            rolling(json!(0), json!(1)),
            vec![
                pod("p1", "n1", "old", false),
                pod("p2", "n2", "old", false),
                pod("p3", "n3", "new", true),
                pod("p4", "n4", "new", true),
            ],
            vec![],
            vec!["p1", "p2"],
        ),
        ("maxSurge 2 creates beside the old", rolling(json!(2), json!(0)), all_old(), vec!["n1", "n2"], vec![]),
        (
            "surge: the old pod goes once the new one is available",
            rolling(json!(1), json!(0)),
            vec![
                pod("p1", "n1", "old", true),
                pod("q1", "n1", "new", true),
                pod("p2", "n2", "old", true),
                pod("p3", "n3", "new", true),
                pod("p4", "n4", "new", true),
            ],
            vec!["n2"],
            vec!["p1"],
        ),
        (
            "surge: an unavailable old pod is replaced beside it, outside the surge",
            rolling(json!(1), json!(0)),
            vec![
                pod("p1", "n1", "old", false),
                pod("p2", "n2", "old", true),
                pod("p3", "n3", "old", true),
                pod("p4", "n4", "old", true),
            ],
            vec!["n1", "n2"],
            vec![],
        ),
        ("OnDelete: nothing", ds(json!({ "type": "OnDelete" })), all_old(), vec![], vec![]),
        (
            "failed pods are replaced in the same sync",
            ds(json!({ "type": "OnDelete" })),
            {
                let mut pods = all_old();
                pods[2].status.as_mut().unwrap().phase = Some("Failed".into());
                pods
            },
            vec!["n3"],
            vec!["p3"],
        ),
    ];
    for (what, set, pods, create, delete) in cases {
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = sync::plan(&set, &node_refs, &refs, "new", Timestamp::now());
        assert_eq!(plan.create, create, "{what}: create");
        assert_eq!(plan.delete, delete, "{what}: delete");
    }
    // Pods on nodes that are gone are deleted; status counts the rest.
    let pods = [pod("p1", "n1", "new", true), pod("gone", "n9", "new", true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = sync::plan(&ds(json!({})), &node_refs, &refs, "new", Timestamp::now());
    assert_eq!(plan.delete, ["gone"]);
    let st = sync::status(&ds(json!({})), &node_refs, &refs, "new", Timestamp::now());
    assert_eq!((st.desired_number_scheduled, st.current_number_scheduled, st.number_ready), (4, 1, 1));
    assert_eq!((st.number_available, st.updated_number_scheduled, st.number_unavailable), (Some(1), Some(1), Some(3)));
}

#[test]
fn failed_pod_back_off_doubles_to_fifteen_minutes() {
    use std::time::{Duration, Instant};
    let b = super::Backoff::default();
    let t0 = Instant::now();
    assert_eq!(b.remaining("ns/ds/n1", t0), None, "the first failure is acted on at once");
    b.next("ns/ds/n1", t0);
    assert_eq!(b.remaining("ns/ds/n1", t0 + Duration::from_millis(400)), Some(Duration::from_millis(600)));
    assert_eq!(b.remaining("ns/ds/n2", t0), None, "per node");
    let mut t = t0 + Duration::from_secs(1);
    assert_eq!(b.remaining("ns/ds/n1", t), None);
    let mut delays = Vec::new();
    for _ in 0..12 {
        b.next("ns/ds/n1", t);
        let d = b.remaining("ns/ds/n1", t).unwrap();
        delays.push(d.as_secs());
        t += d;
    }
    assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]);
    // Idle for more than twice the maximum: it starts over at one second.
    let later = t + Duration::from_secs(31 * 60);
    b.next("ns/ds/n1", later);
    assert_eq!(b.remaining("ns/ds/n1", later), Some(Duration::from_secs(1)));
}
