//! Tests of the shared pod helpers: the deletion ranking, availability and slow start.

use super::*;
use serde_json::json;

/// A pod from a compact description: `name`, node, phase, ready-since (seconds), restarts,
/// created (seconds).
fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>, restarts: i32, created: i64) -> Pod {
    let ts = |s: i64| Timestamp::from_second(s).unwrap().to_string();
    let ready = match ready_at {
        Some(at) => json!({ "type": "Ready", "status": "True", "lastTransitionTime": ts(at) }),
        None => json!({ "type": "Ready", "status": "False" }),
    };
    serde_json::from_value(json!({
        "metadata": { "name": name, "creationTimestamp": ts(created) },
        "spec": { "containers": [{ "name": "c" }], "nodeName": node },
        "status": { "phase": phase, "conditions": [ready],
            "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": ready_at.is_some(), "restartCount": restarts }] }
    }))
    .unwrap()
}

fn order(pods: Vec<Pod>) -> Vec<String> {
    let refs: Vec<&Pod> = pods.iter().collect();
    pick_for_deletion(&refs, pods.len()).iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[test]
fn deletion_ranking_puts_the_least_valuable_first() {
    let cases: Vec<(&str, Vec<Pod>, Vec<&str>)> = vec![
        (
            "unscheduled before scheduled",
            vec![pod("sched", Some("n"), "Pending", None, 0, 0), pod("unsched", None, "Pending", None, 0, 0)],
            vec!["unsched", "sched"],
        ),
        (
            "pending before unknown before running",
            vec![
                pod("run", Some("n"), "Running", None, 0, 0),
                pod("unk", Some("n"), "Unknown", None, 0, 0),
                pod("pend", Some("n"), "Pending", None, 0, 0),
            ],
            vec!["pend", "unk", "run"],
        ),
        (
            "not ready before ready",
            vec![pod("ready", Some("n"), "Running", Some(10), 0, 0), pod("notready", Some("n"), "Running", None, 0, 0)],
            vec!["notready", "ready"],
        ),
        (
            "ready for less time first",
            vec![pod("old", Some("n"), "Running", Some(10), 0, 0), pod("recent", Some("n"), "Running", Some(50), 0, 0)],
            vec!["recent", "old"],
        ),
        (
            "more restarts first",
            vec![
                pod("calm", Some("n"), "Running", Some(10), 0, 0),
                pod("crashy", Some("n"), "Running", Some(10), 7, 0),
            ],
            vec!["crashy", "calm"],
        ),
        (
            "newer first",
            vec![
                pod("older", Some("n"), "Running", Some(10), 0, 1),
                pod("newer", Some("n"), "Running", Some(10), 0, 5),
            ],
            vec!["newer", "older"],
        ),
        (
            "scheduling outranks everything else",
            vec![
                pod("ready-unsched", None, "Running", Some(1), 0, 0),
                pod("pending-sched", Some("n"), "Pending", None, 9, 9),
            ],
            vec!["ready-unsched", "pending-sched"],
        ),
    ];
    for (what, pods, expect) in cases {
        assert_eq!(order(pods), expect, "{what}");
    }
}

#[test]
fn deletion_cost_annotation_orders_ready_pods() {
    let mut cheap = pod("cheap", Some("n"), "Running", Some(10), 0, 0);
    let mut dear = pod("dear", Some("n"), "Running", Some(50), 0, 0);
    cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
    dear.metadata.annotations = Some([(DELETION_COST.to_string(), "100".to_string())].into());
    assert_eq!(order(vec![dear, cheap]), ["cheap", "dear"]);
}

#[test]
fn availability_waits_for_min_ready_seconds() {
    let now = Timestamp::from_second(100).unwrap();
    let p = pod("p", Some("n"), "Running", Some(90), 0, 0);
    let cases = [(0, true), (5, true), (10, true), (11, false), (60, false)];
    for (min_ready, available) in cases {
        assert_eq!(is_available(&p, min_ready, now), available, "minReadySeconds {min_ready}");
    }
    assert!(!is_available(&pod("q", Some("n"), "Running", None, 0, 0), 0, now));
    assert_eq!(next_available_in(&[&p], 30, now), Some(std::time::Duration::from_secs(21)));
    assert_eq!(next_available_in(&[&p], 5, now), None);
}

#[test]
fn activity_excludes_finished_and_deleted_pods() {
    assert!(is_active(&pod("p", None, "Pending", None, 0, 0)));
    assert!(!is_active(&pod("p", None, "Succeeded", None, 0, 0)));
    assert!(!is_active(&pod("p", None, "Failed", None, 0, 0)));
    let mut deleted = pod("p", None, "Running", None, 0, 0);
    deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
    assert!(!is_active(&deleted));
}

#[test]
fn slow_start_doubles_batches() {
    let cases: [(usize, &[usize]); 5] =
        [(0, &[]), (1, &[1]), (3, &[1, 2]), (10, &[1, 2, 4, 3]), (16, &[1, 2, 4, 8, 1])];
    for (n, expect) in cases {
        assert_eq!(slow_start_batches(n), expect, "n = {n}");
    }
}

#[test]
fn selectors_match_labels() {
    let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    let sel = |v: serde_json::Value| serde_json::from_value::<LabelSelector>(v).unwrap();
    assert!(selects(Some(&sel(json!({ "matchLabels": { "app": "web" } }))), Some(&labels)));
    assert!(!selects(Some(&sel(json!({ "matchLabels": { "app": "db" } }))), Some(&labels)));
    assert!(selects(
        Some(&sel(json!({ "matchExpressions": [{ "key": "app", "operator": "In", "values": ["web", "x"] }] }))),
        Some(&labels)
    ));
    assert!(!selects(None, Some(&labels)), "no selector selects nothing");
    assert!(selects(Some(&sel(json!({}))), None), "an empty selector selects everything");
}

#[test]
fn disruptions_mark_the_pod_before_it_is_deleted() {
    let now = Timestamp::from_second(1_000).unwrap();
    let taint = Disruption { reason: "DeletionByTaintManager", message: "m" };
    let pod = |phase: &str, marked: bool| -> Pod {
        let conditions = if marked { json!([{ "type": "DisruptionTarget", "status": "True" }]) } else { json!([]) };
        serde_json::from_value(
            json!({ "metadata": { "name": "p" }, "status": { "phase": phase, "conditions": conditions } }),
        )
        .unwrap()
    };
    let condition = json!([{ "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
        "message": "m", "lastTransitionTime": now.to_string() }]);
    // The taint manager: the condition only, once.
    assert_eq!(
        disruption_patch(&pod("Running", false), Some(&taint), false, now),
        Some(json!({ "status": { "conditions": condition } }))
    );
    assert_eq!(disruption_patch(&pod("Running", true), Some(&taint), false, now), None);
    // PodGC: an unfinished pod fails too; a finished one is left as it is.
    assert_eq!(
        disruption_patch(&pod("Running", false), Some(&taint), true, now),
        Some(json!({ "status": { "conditions": condition, "phase": "Failed" } }))
    );
    assert_eq!(
        disruption_patch(&pod("Pending", false), None, true, now),
        Some(json!({ "status": { "phase": "Failed" } }))
    );
    assert_eq!(disruption_patch(&pod("Succeeded", false), Some(&taint), true, now), None);
}
