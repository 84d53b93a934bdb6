//! Node lifecycle decisions.

use super::*;
use serde_json::json;

fn node(v: serde_json::Value) -> Node {
    serde_json::from_value(v).unwrap()
}

fn t(s: &str) -> Time {
    Time(s.parse().unwrap())
}

#[test]
fn a_silent_node_turns_unknown() {
    let n = node(json!({ "metadata": { "name": "n" }, "status": { "conditions": [
        { "type": "Ready", "status": "True", "reason": "KubeletReady" },
        { "type": "MemoryPressure", "status": "False" } ] } }));
    let now = t("2026-01-01T00:00:00Z");
    let conds = unknown_conditions(&n, &now).unwrap();
    assert!(conds.iter().all(|c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusUnknown")));
    let mut after = n.clone();
    after.status.as_mut().unwrap().conditions = Some(conds);
    assert_eq!(unknown_conditions(&after, &now), None, "already Unknown: nothing to write");
    let never = node(json!({ "metadata": { "name": "n" } }));
    let conds = unknown_conditions(&never, &now).unwrap();
    assert_eq!(conds[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
}

#[test]
fn taints_follow_the_ready_condition() {
    let now = t("2026-01-01T00:00:00Z");
    let with = |status: &str, taints: serde_json::Value| {
        node(json!({ "metadata": { "name": "n" }, "spec": { "taints": taints },
            "status": { "conditions": [{ "type": "Ready", "status": status }] } }))
    };
    let keys = |ts: Vec<Taint>| ts.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>();
    assert_eq!(
        keys(desired_taints(&with("Unknown", json!([{ "key": "x", "effect": "NoSchedule" }])), &now, true).unwrap()),
        ["x:NoSchedule", "node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"]
    );
    let ts =
        desired_taints(&with("False", json!([{ "key": UNREACHABLE, "effect": "NoExecute" }])), &now, true).unwrap();
    assert_eq!(keys(ts.clone()), ["node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/not-ready:NoExecute"]);
    assert_eq!(ts[1].time_added, Some(now.clone()));
    assert_eq!(ts[0].time_added, None);
    assert_eq!(
        keys(desired_taints(&with("True", json!([{ "key": NOT_READY, "effect": "NoExecute" }])), &now, true).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(desired_taints(&with("True", json!([])), &now, true), None);
    // Held back by the zone's rate: NoSchedule only; and a NoExecute taint goes when the
    // controller stands still (every zone down).
    assert_eq!(
        keys(desired_taints(&with("Unknown", json!([])), &now, false).unwrap()),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
    let tainted =
        json!([{ "key": UNREACHABLE, "effect": "NoSchedule" }, { "key": UNREACHABLE, "effect": "NoExecute" }]);
    assert!(has_no_execute(&with("Unknown", tainted.clone())));
    assert_eq!(
        keys(desired_taints(&with("Unknown", tainted), &now, false).unwrap()),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
}

#[test]
fn pods_are_evicted_after_their_toleration_seconds() {
    let added = "2026-01-01T00:00:00Z";
    let taints: Vec<Taint> = serde_json::from_value(json!([
        { "key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added },
        { "key": UNREACHABLE, "effect": "NoSchedule" } ]))
    .unwrap();
    let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
    let pod = |tolerations: serde_json::Value| -> Pod {
        serde_json::from_value(
            json!({ "metadata": { "name": "p" }, "spec": { "containers": [], "tolerations": tolerations } }),
        )
        .unwrap()
    };
    let at = |s: &str| Eviction::At(s.parse().unwrap());
    assert_eq!(eviction(&pod(json!([])), &taints, now), Eviction::At(now));
    assert_eq!(
        eviction(
            &pod(
                json!([{ "key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }])
            ),
            &taints,
            now
        ),
        at("2026-01-01T00:05:00Z")
    );
    assert_eq!(
        eviction(
            &pod(json!([{ "key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 300 },
            { "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5 }])),
            &taints,
            now
        ),
        at("2026-01-01T00:00:05Z")
    );
    assert_eq!(eviction(&pod(json!([{ "operator": "Exists" }])), &taints, now), Eviction::Never);
    assert_eq!(eviction(&pod(json!([{ "key": NOT_READY, "operator": "Exists" }])), &taints, now), Eviction::At(now));
    let toleration: Toleration =
        serde_json::from_value(json!({ "key": "k", "value": "v", "effect": "NoExecute" })).unwrap();
    let taint =
        |v: &str| Taint { key: "k".into(), value: Some(v.into()), effect: "NoExecute".into(), time_added: None };
    assert!(tolerates(&toleration, &taint("v")));
    assert!(!tolerates(&toleration, &taint("w")));
}

#[test]
fn pressure_conditions_and_cordoning_add_no_schedule_taints() {
    let now = t("2026-01-01T00:00:00Z");
    let keys = |ts: Vec<Taint>| ts.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>();
    let pressured = node(json!({ "metadata": { "name": "n" },
        "spec": { "taints": [{ "key": "x", "effect": "NoSchedule" }] },
        "status": { "conditions": [
            { "type": "Ready", "status": "True" },
            { "type": "MemoryPressure", "status": "True" },
            { "type": "DiskPressure", "status": "False" },
            { "type": "PIDPressure", "status": "True" },
        ] } }));
    assert_eq!(
        keys(desired_taints(&pressured, &now, true).unwrap()),
        ["x:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule"]
    );
    // The pressure is gone: its taint goes, a user's taint of the same key with another effect stays.
    let relieved = node(json!({ "metadata": { "name": "n" },
        "spec": { "taints": [
            { "key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule" },
            { "key": "node.kubernetes.io/memory-pressure", "effect": "PreferNoSchedule" },
        ] },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }, { "type": "MemoryPressure", "status": "False" }] } }));
    assert_eq!(
        keys(desired_taints(&relieved, &now, true).unwrap()),
        ["node.kubernetes.io/memory-pressure:PreferNoSchedule"]
    );
    // Cordoned: the unschedulable taint, and it goes with uncordon.
    let cordoned = node(json!({ "metadata": { "name": "n" }, "spec": { "unschedulable": true },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] } }));
    let ts = desired_taints(&cordoned, &now, true).unwrap();
    assert_eq!(keys(ts.clone()), ["node.kubernetes.io/unschedulable:NoSchedule"]);
    let mut uncordoned = cordoned.clone();
    uncordoned.spec.as_mut().unwrap().unschedulable = Some(false);
    uncordoned.spec.as_mut().unwrap().taints = Some(ts);
    assert_eq!(desired_taints(&uncordoned, &now, true), Some(vec![]));
}
