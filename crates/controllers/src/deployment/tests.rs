//! Tests of the Deployment decisions: surge/unavailable arithmetic, new and old ReplicaSet
//! sizes in a rolling update, proportional scaling, revisions, history and hashing.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::rollout;

fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "d", "generation": 1,
            "annotations": { "kubernetes.io/change-cause": "v2", "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "c", "image": "v2" }] } } }
    }))
    .unwrap()
}

/// A ReplicaSet `name` created at second `created` with `replicas` of which `available` are available.
fn rs(name: &str, created: i64, replicas: i32, available: i32, annotations: Value) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": { "name": name, "uid": name, "annotations": annotations,
            "creationTimestamp": Timestamp::from_second(created).unwrap().to_string() },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } } },
        "status": { "replicas": replicas, "availableReplicas": available }
    }))
    .unwrap()
}

#[test]
fn surge_rounds_up_and_unavailability_rounds_down() {
    let cases: Vec<(i32, Value, Value, (i32, i32))> = vec![
        (10, json!("25%"), json!("25%"), (3, 2)),
        (4, json!("25%"), json!("25%"), (1, 1)),
        (1, json!("25%"), json!("25%"), (1, 0)),
        (10, json!(2), json!(0), (2, 0)),
        (10, json!(0), json!(0), (0, 1)),
        (3, json!("0%"), json!("0%"), (0, 1)),
        (10, json!("100%"), json!("50%"), (10, 5)),
        (7, json!("10%"), json!("10%"), (1, 0)),
    ];
    for (replicas, surge, unavailable, expect) in cases {
        let d = deployment(replicas, surge.clone(), unavailable.clone());
        assert_eq!(rollout::fenceposts(&d), expect, "{replicas} replicas, surge {surge}, unavailable {unavailable}");
    }
    assert_eq!(rollout::scaled_value(Some(&IntOrString::String("33%".into())), 10, true), 4);
    assert_eq!(rollout::scaled_value(Some(&IntOrString::String("33%".into())), 10, false), 3);
}

#[test]
fn a_rolling_update_steps_within_surge_and_unavailability() {
    // (replicas, surge, unavailable, new (size, available), olds [(size, available)]) ->
    // (new target, old targets)
    type Case = (i32, Value, Value, (i32, i32), Vec<(i32, i32)>, i32, Vec<i32>);
    let cases: Vec<Case> = vec![
        // Start: surge 3 lets the new RS grow to 3; no old can go until new ones are available.
        (10, json!(3), json!(0), (0, 0), vec![(10, 10)], 3, vec![10]),
        (10, json!(3), json!(0), (3, 0), vec![(10, 10)], 3, vec![10]),
        // Three new available: three old may go.
        (10, json!(3), json!(0), (3, 3), vec![(10, 10)], 3, vec![7]),
        // maxUnavailable 2 lets two old go at once, before any new pod is available.
        (10, json!(0), json!(2), (0, 0), vec![(10, 10)], 0, vec![8]),
        (10, json!(0), json!(2), (2, 0), vec![(8, 8)], 2, vec![8]),
        // Unhealthy old replicas go first, and do not count against availability.
        (4, json!(1), json!(1), (1, 0), vec![(4, 2)], 1, vec![3]),
        // ... but never below minAvailable counting the new unavailable ones (Kubernetes stalls here).
        (4, json!(1), json!(0), (1, 0), vec![(4, 2)], 1, vec![4]),
        // Two old ReplicaSets: the oldest shrinks first.
        (6, json!(0), json!(2), (2, 2), vec![(2, 2), (2, 2)], 2, vec![0, 2]),
        // New one at full size: all old ones can go once it is available.
        (3, json!(1), json!(0), (3, 3), vec![(1, 1)], 3, vec![0]),
    ];
    for (i, (replicas, surge, unavailable, new, olds, new_target, old_targets)) in cases.into_iter().enumerate() {
        let d = deployment(replicas, surge, unavailable);
        let new_rs = rs("new", 100, new.0, new.1, json!({}));
        let old_rs: Vec<ReplicaSet> =
            olds.iter().enumerate().map(|(j, (s, a))| rs(&format!("old{j}"), j as i64, *s, *a, json!({}))).collect();
        let old_refs: Vec<&ReplicaSet> = old_rs.iter().collect();
        let mut all = old_refs.clone();
        all.push(&new_rs);
        assert_eq!(rollout::new_rs_target(&d, &new_rs, &all), new_target, "case {i}: new");
        let targets = rollout::old_rs_targets(&d, &new_rs, &old_refs);
        let sizes: Vec<i32> = old_rs
            .iter()
            .map(|o| {
                let name = o.metadata.name.clone().unwrap();
                targets.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or(rollout::rs_replicas(o))
            })
            .collect();
        assert_eq!(sizes, old_targets, "case {i}: olds");
    }
}

#[test]
fn resizing_mid_rollout_scales_replicasets_in_proportion() {
    let max13 = json!({ rollout::DESIRED_REPLICAS: "10", rollout::MAX_REPLICAS: "13" });
    // 10 old + 3 new, Deployment 10 -> 20 (surge 3): 10 more, split as Kubernetes rounds.
    // (new Deployment size, [(ReplicaSet size, created)], target sizes)
    type Case = (i32, Vec<(i32, i64)>, Vec<i32>);
    let cases: Vec<Case> = vec![
        (20, vec![(10, 1), (3, 2)], vec![18, 5]),
        (5, vec![(10, 1), (3, 2)], vec![6, 2]),
        (0, vec![(10, 1), (3, 2)], vec![0, 0]),
        (10, vec![(10, 1), (3, 2)], vec![10, 3]),
    ];
    for (replicas, sets, expect) in cases {
        let d = deployment(replicas, json!(3), json!(0));
        let all: Vec<ReplicaSet> = sets
            .iter()
            .enumerate()
            .map(|(i, (size, at))| rs(&format!("rs{i}"), *at, *size, 0, max13.clone()))
            .collect();
        // The new one has another template: pass it as new.
        let targets = rollout::scale_targets(&d, Some(&all[1]), &[&all[0]]);
        let sizes: Vec<i32> = all
            .iter()
            .map(|o| {
                let name = o.metadata.name.clone().unwrap();
                targets.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or(rollout::rs_replicas(o))
            })
            .collect();
        assert_eq!(sizes, expect, "scale to {replicas}");
    }
    // A single active ReplicaSet takes the whole size.
    let d = deployment(7, json!(1), json!(0));
    let only = rs("only", 1, 3, 3, json!({}));
    assert_eq!(rollout::scale_targets(&d, Some(&only), &[]), [("only".to_string(), 7)]);
    assert!(rollout::is_scaling_event(&d, &[&rs("a", 1, 3, 3, json!({ rollout::DESIRED_REPLICAS: "3" }))]));
    assert!(!rollout::is_scaling_event(&d, &[&rs("a", 1, 3, 3, json!({ rollout::DESIRED_REPLICAS: "7" }))]));
}

#[test]
fn revisions_history_and_annotations() {
    let d = deployment(3, json!(1), json!(0));
    let olds =
        [rs("a", 1, 0, 0, json!({ rollout::REVISION: "1" })), rs("b", 2, 0, 0, json!({ rollout::REVISION: "4" }))];
    let refs: Vec<&ReplicaSet> = olds.iter().collect();
    assert_eq!(rollout::next_revision(&refs), 5);
    let fresh = rollout::new_rs_annotations(&d, None, 5);
    assert_eq!(fresh.get(rollout::REVISION).map(String::as_str), Some("5"));
    assert_eq!(fresh.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
    assert!(!fresh.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(fresh.get(rollout::MAX_REPLICAS).map(String::as_str), Some("4"));
    // Rolled back to: the old revision goes into the history.
    let back: std::collections::BTreeMap<String, String> =
        [(rollout::REVISION.to_string(), "2".to_string()), (rollout::REVISION_HISTORY.to_string(), "1".to_string())]
            .into();
    let a = rollout::new_rs_annotations(&d, Some(&back), 5);
    assert_eq!(a.get(rollout::REVISION_HISTORY).map(String::as_str), Some("1,2"));

    // History beyond the limit: empty ReplicaSets, lowest revision first.
    let mut limited = d.clone();
    limited.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let olds = [
        rs("r3", 3, 0, 0, json!({ rollout::REVISION: "3" })),
        rs("r1", 1, 0, 0, json!({ rollout::REVISION: "1" })),
        rs("r2", 2, 0, 0, json!({ rollout::REVISION: "2" })),
        rs("busy", 0, 2, 2, json!({ rollout::REVISION: "0" })),
    ];
    let refs: Vec<&ReplicaSet> = olds.iter().collect();
    assert_eq!(rollout::history_to_delete(&limited, &refs), ["r1", "r2"]);
}

#[test]
fn template_hashes_are_stable_ignore_empty_fields_and_change_with_collisions() {
    let d = deployment(3, json!(1), json!(0));
    let t = d.spec.as_ref().unwrap().template.clone();
    let mut with_empty: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(json!({
        "metadata": { "labels": { "app": "web", "pod-template-hash": "x" } },
        "spec": { "containers": [{ "name": "c", "image": "v2", "resources": {} }] }
    }))
    .unwrap();
    assert!(rollout::equal_ignore_hash(&t, &with_empty));
    assert_eq!(rollout::template_hash(&t, None), rollout::template_hash(&with_empty, None));
    assert_ne!(rollout::template_hash(&t, None), rollout::template_hash(&t, Some(1)));
    let h = rollout::template_hash(&t, None);
    assert!(!h.is_empty() && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
    with_empty.spec.as_mut().unwrap().containers[0].image = Some("v3".into());
    assert!(!rollout::equal_ignore_hash(&t, &with_empty));
}

#[test]
fn progress_conditions_follow_the_rollout() {
    let now = Timestamp::from_second(10_000).unwrap();
    let mut d = deployment(2, json!(1), json!(0));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let new_rs = rs("web-new", 1, 2, 0, json!({}));
    // Under way, with progress: ReplicaSetUpdated and a requeue before the deadline.
    let mut s = rollout::status(&d, Some(&new_rs), &[&new_rs], now);
    let wait = rollout::progress(&d, Some(&new_rs), &mut s, now);
    assert!(wait.is_some());
    let reason = |s: &k8s_openapi::api::apps::v1::DeploymentStatus, t: &str| {
        s.conditions.iter().flatten().find(|c| c.type_ == t).and_then(|c| c.reason.clone())
    };
    assert_eq!(reason(&s, "Progressing").as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(reason(&s, "Available").as_deref(), Some("MinimumReplicasUnavailable"));
    // No progress past the deadline: ProgressDeadlineExceeded.
    d.status = Some(s.clone());
    let later = Timestamp::from_second(10_100).unwrap();
    let mut s2 = rollout::status(&d, Some(&new_rs), &[&new_rs], later);
    rollout::progress(&d, Some(&new_rs), &mut s2, later);
    assert_eq!(reason(&s2, "Progressing").as_deref(), Some("ProgressDeadlineExceeded"));
    // All available: NewReplicaSetAvailable.
    let done = rs("web-new", 1, 2, 2, json!({}));
    let mut s3 = rollout::status(&d, Some(&done), &[&done], later);
    rollout::progress(&d, Some(&done), &mut s3, later);
    assert_eq!(reason(&s3, "Progressing").as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(reason(&s3, "Available").as_deref(), Some("MinimumReplicasAvailable"));
}

fn recreate_deployment(replicas: i32) -> Deployment {
    let mut d = deployment(replicas, json!(1), json!(0));
    if let Some(s) = d.spec.as_mut() {
        s.strategy = serde_json::from_value(json!({ "type": "Recreate" })).unwrap();
    }
    d
}

fn pod_of(owner_uid: &str, phase: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "p", "namespace": "default",
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_uid, "uid": owner_uid, "controller": true }] },
        "status": { "phase": phase }
    }))
    .unwrap()
}

#[test]
fn recreate_creates_the_new_replicaset_only_once_old_pods_are_gone() {
    use rollout::RecreateStep::*;
    let d = recreate_deployment(3);
    let old_full = rs("old", 1, 3, 3, json!({}));
    // Scaled to 0, but the ReplicaSet controller has not counted its pods out yet.
    let mut old_draining = rs("old", 1, 0, 0, json!({}));
    old_draining.status.as_mut().unwrap().replicas = 2;
    let old_empty = rs("old", 1, 0, 0, json!({}));
    let new_empty = rs("new", 2, 0, 0, json!({}));
    let new_full = rs("new", 2, 3, 3, json!({}));
    // (new, olds, pods of old ReplicaSets in the cache) -> step
    type Case<'a> = (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>, Vec<&'a str>, rollout::RecreateStep);
    let cases: Vec<Case> = vec![
        // Old pods run: the olds are scaled down first, and no new ReplicaSet is made.
        (None, vec![&old_full], vec!["Running"], ScaleDownOld(vec!["old".into()])),
        (Some(&new_empty), vec![&old_full], vec!["Running"], ScaleDownOld(vec!["old".into()])),
        // Scaled down, pods still counted or still in the cache (terminating or not): wait.
        (None, vec![&old_draining], vec![], WaitForOldPods),
        (None, vec![&old_empty], vec!["Running"], WaitForOldPods),
        (None, vec![&old_empty], vec!["Pending"], WaitForOldPods),
        (Some(&new_empty), vec![&old_empty], vec!["Running"], WaitForOldPods),
        // Only finished pods are left, or none: create or scale up the new one.
        (None, vec![&old_empty], vec!["Succeeded", "Failed"], CreateNew(3)),
        (None, vec![], vec![], CreateNew(3)),
        (Some(&new_empty), vec![&old_empty], vec![], ScaleNew(3)),
        (Some(&new_full), vec![&old_empty], vec![], ScaleNew(3)),
    ];
    for (new, olds, phases, expect) in cases {
        let pods: Vec<_> = phases.iter().map(|p| pod_of("old", p)).collect();
        let running = rollout::old_pods_running(&olds, &pods);
        assert_eq!(rollout::recreate_step(&d, new, &olds, running), expect, "new {new:?}, phases {phases:?}");
    }
    // Pods of other controllers do not hold a Recreate back.
    assert!(!rollout::old_pods_running(&[&old_empty], &[pod_of("new", "Running"), pod_of("other", "Running")]));
}
