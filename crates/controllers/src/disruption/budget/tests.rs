//! Budget status computations.

use super::*;
use serde_json::json;

fn pdb(spec: serde_json::Value, disrupted: serde_json::Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({ "metadata": { "name": "b", "namespace": "ns", "generation": 3 },
        "spec": spec, "status": { "disruptedPods": disrupted, "currentHealthy": 0, "desiredHealthy": 0,
            "disruptionsAllowed": 0, "expectedPods": 0 } }))
    .unwrap()
}

fn pod(name: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": name },
        "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] } }))
    .unwrap()
}

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

/// (currentHealthy, desiredHealthy, disruptionsAllowed, expectedPods)
fn check(spec: serde_json::Value, pods: &[Pod], expected: Option<i32>, want: (i32, i32, i32, i32)) {
    let b = pdb(spec.clone(), json!(null));
    let refs: Vec<&Pod> = pods.iter().collect();
    let (s, _) = status(&b, &refs, expected, now()).unwrap();
    assert_eq!((s.current_healthy, s.desired_healthy, s.disruptions_allowed, s.expected_pods), want, "{spec}");
    assert_eq!(s.observed_generation, Some(3));
    let c = &s.conditions.unwrap()[0];
    assert_eq!(c.type_, "DisruptionAllowed");
    assert_eq!(c.status, if want.2 > 0 { "True" } else { "False" });
    assert_eq!(c.reason, if want.2 > 0 { "SufficientPods" } else { "InsufficientPods" });
}

#[test]
fn budgets_from_integers_and_percentages() {
    let three = [pod("a", true), pod("b", true), pod("c", false)];
    check(json!({ "minAvailable": 1 }), &three, None, (2, 1, 1, 3));
    check(json!({ "minAvailable": 2 }), &three, None, (2, 2, 0, 3));
    check(json!({ "minAvailable": 5 }), &three, None, (2, 5, 0, 3));
    check(json!({ "minAvailable": "50%" }), &three, Some(4), (2, 2, 0, 4));
    check(json!({ "minAvailable": "25%" }), &three, Some(4), (2, 1, 1, 4));
    check(json!({ "maxUnavailable": 1 }), &three, Some(3), (2, 2, 0, 3));
    check(json!({ "maxUnavailable": "50%" }), &three, Some(3), (2, 1, 1, 3));
    check(json!({ "maxUnavailable": "100%" }), &three, Some(3), (2, 0, 2, 3));
    assert!(needs_scale(&pdb(json!({ "maxUnavailable": 1 }), json!(null))));
    assert!(needs_scale(&pdb(json!({ "minAvailable": "10%" }), json!(null))));
    assert!(!needs_scale(&pdb(json!({ "minAvailable": 1 }), json!(null))));
}

#[test]
fn scaled_values_round_up_and_reject_garbage() {
    assert_eq!(scaled(&IntOrString::String("33%".into()), 10), Ok(4));
    assert_eq!(scaled(&IntOrString::Int(7), 10), Ok(7));
    assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
}

#[test]
fn disrupted_pods_expire_after_two_minutes_or_when_deleted() {
    let pods = [pod("a", true), pod("b", true), pod("c", true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    // a evicted a minute ago (not counted, rechecked in a minute), b three minutes ago (expired),
    // gone-pod no longer exists.
    let b = pdb(
        json!({ "minAvailable": 1 }),
        json!({ "a": "2026-01-01T00:09:00Z", "b": "2026-01-01T00:07:00Z", "gone": "2026-01-01T00:09:30Z" }),
    );
    let (s, recheck) = status(&b, &refs, None, now()).unwrap();
    assert_eq!(s.disrupted_pods.as_ref().map(|d| d.keys().cloned().collect::<Vec<_>>()), Some(vec!["a".to_string()]));
    assert_eq!(s.current_healthy, 2);
    assert_eq!(s.disruptions_allowed, 1);
    assert_eq!(recheck, Some("2026-01-01T00:11:00Z".parse().unwrap()));
    let failed = failed_status(&b, &BudgetError::NoController("a".into()), now());
    assert_eq!(failed.disruptions_allowed, 0);
    assert_eq!(failed.conditions.unwrap()[0].reason, "SyncFailed");
}
