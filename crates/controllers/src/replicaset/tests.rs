//! Tests of the ReplicaSet decisions: claiming pods, the create/delete plan and the status.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use serde_json::{Value, json};

use super::sync::{self, Failure, Plan, Replicated};

fn rs(replicas: i32, min_ready: i32) -> Replicated {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "rs-uid", "generation": 3 },
        "spec": { "replicas": replicas, "minReadySeconds": min_ready,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web", "tier": "front" } }, "spec": { "containers": [{ "name": "c" }] } } }
    }))
    .unwrap();
    Replicated::from(&rs)
}

fn pod(name: &str, labels: Value, owner: Option<&str>, ready_at: Option<i64>) -> Pod {
    let refs = owner.map(
        |uid| json!([{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true }]),
    );
    let ready = match ready_at {
        Some(at) => {
            json!({ "type": "Ready", "status": "True", "lastTransitionTime": Timestamp::from_second(at).unwrap().to_string() })
        }
        None => json!({ "type": "Ready", "status": "False" }),
    };
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default", "labels": labels, "ownerReferences": refs },
        "spec": { "containers": [{ "name": "c" }] },
        "status": { "phase": "Running", "conditions": [ready] }
    }))
    .unwrap()
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[test]
fn claims_adopt_orphans_keep_owned_and_release_unmatched() {
    let owner = rs(3, 0);
    let pods = [
        pod("mine", json!({ "app": "web" }), Some("rs-uid"), None),
        pod("orphan", json!({ "app": "web" }), None, None),
        pod("relabelled", json!({ "app": "other" }), Some("rs-uid"), None),
        pod("someone-elses", json!({ "app": "web" }), Some("other-uid"), None),
        pod("unrelated", json!({ "app": "db" }), None, None),
    ];
    let claims = sync::claim(&owner, pods.iter());
    assert_eq!(names(&claims.owned), ["mine"]);
    assert_eq!(names(&claims.adopt), ["orphan"]);
    assert_eq!(names(&claims.release), ["relabelled"]);

    // An owner being deleted adopts nothing and releases nothing.
    let mut deleting = owner.clone();
    deleting.meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
    let claims = sync::claim(&deleting, pods.iter());
    assert!(claims.adopt.is_empty() && claims.release.is_empty());
}

#[test]
fn plan_creates_or_deletes_the_difference_capped_at_burst() {
    let pods: Vec<Pod> = (0..5)
        .map(|i| pod(&format!("p{i}"), json!({ "app": "web" }), Some("rs-uid"), Some(i64::from(i) * 10)))
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let cases: Vec<(i32, usize, Value)> = vec![
        (5, 5, json!("nothing")),
        (8, 5, json!({ "create": 3 })),
        (10_000, 0, json!({ "create": sync::BURST })),
        (-1, 0, json!("nothing")),
        // Scale down deletes the most recently ready first.
        (3, 5, json!({ "delete": ["p4", "p3"] })),
        (0, 5, json!({ "delete": ["p4", "p3", "p2", "p1", "p0"] })),
    ];
    for (desired, have, expect) in cases {
        let got = match sync::plan(desired, &refs[..have]) {
            Plan::Nothing => json!("nothing"),
            Plan::Create(n) => json!({ "create": n }),
            Plan::Delete(v) => json!({ "delete": names(&v) }),
        };
        assert_eq!(got, expect, "desired {desired} with {have} pods");
    }
}

#[test]
fn status_counts_labels_readiness_availability_and_failures() {
    let owner = rs(4, 30);
    let now = Timestamp::from_second(1000).unwrap();
    let pods = [
        pod("a", json!({ "app": "web", "tier": "front" }), Some("rs-uid"), Some(900)),
        pod("b", json!({ "app": "web", "tier": "front" }), Some("rs-uid"), Some(990)),
        pod("c", json!({ "app": "web" }), Some("rs-uid"), None),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let failure = Failure { reason: "FailedCreate", message: "quota".into() };
    let st = sync::status(&owner, &refs, now, Some(&failure));
    assert_eq!(st.replicas, 3, "replicas counts active pods");
    assert_eq!(st.fully_labeled_replicas, Some(2));
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(1), "b is ready for 10 s of 30");
    assert_eq!(st.observed_generation, Some(3));
    let cond = &st.conditions.as_ref().unwrap()[0];
    assert_eq!((cond.type_.as_str(), cond.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));

    // The condition goes away with the failure; a merge patch clears it.
    let mut failed = owner.clone();
    failed.status = st;
    let st = sync::status(&failed, &refs, now, None);
    assert!(st.conditions.is_none());
    assert_eq!(sync::status_patch(&st)["status"]["conditions"], Value::Null);
    assert!(sync::status_patch(&st)["status"].as_object().unwrap().contains_key("conditions"));
}

#[test]
fn a_replication_controller_reads_as_a_replicaset() {
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": { "name": "old", "namespace": "default", "uid": "u" },
        "spec": { "replicas": 2, "template": { "metadata": { "labels": { "app": "old" } } } },
        "status": { "replicas": 1, "readyReplicas": 1 }
    }))
    .unwrap();
    let r = Replicated::from(&rc);
    assert_eq!(r.replicas, 2);
    assert_eq!(r.status.ready_replicas, Some(1));
    let orphan = pod("o", json!({ "app": "old" }), None, None);
    assert_eq!(names(&sync::claim(&r, [&orphan]).adopt), ["o"], "the selector defaults to the template labels");
}
