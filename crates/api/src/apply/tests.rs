//! Tests for server-side apply and field tracking.

use serde_json::json;

use super::*;
use crate::schema;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";
const T2: &str = "2026-01-01T00:02:00Z";

fn deployment_schema() -> Node<'static> {
    schema::definition("io.k8s.api.apps.v1.Deployment").expect("built-in Deployment schema")
}

fn configmap_schema() -> Node<'static> {
    schema::definition("io.k8s.api.core.v1.ConfigMap").expect("built-in ConfigMap schema")
}

/// A Deployment manifest with the given replicas and containers (name, image).
fn deployment(replicas: Option<i64>, containers: &[(&str, &str)]) -> Value {
    let containers: Vec<Value> = containers.iter().map(|(n, i)| json!({"name": n, "image": i})).collect();
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    });
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
}

fn entry<'a>(list: &'a [Value], manager: &str, operation: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn owned(obj: &Value, manager: &str, operation: &str) -> Vec<String> {
    let list = entries(obj);
    match entry(&list, manager, operation) {
        Some(e) => FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap().iter().map(|p| path_string(p)).collect(),
        None => Vec::new(),
    }
}

// ---- FieldsV1 encoding ----

#[test]
fn fields_v1_round_trips_kubernetes_examples() {
    let cases = [
        // From the Server-Side Apply docs page (ConfigMap applied by kubectl).
        json!({"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}),
        // What kube-apiserver writes for `kubectl apply --server-side` of a Deployment.
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:replicas": {}, "f:selector": {},
                          "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
                                         "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                                             ".": {}, "f:image": {}, "f:name": {},
                                             "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                                 ".": {}, "f:containerPort": {}}}}}}}}}),
        // kube-controller-manager's Update entry on a Deployment, with set items.
        json!({"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}},
                              "f:finalizers": {".": {}, "v:\"example.com/foo\"": {}}},
               "f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}}},
                            "f:replicas": {}}}),
        json!({"f:spec": {"f:args": {"i:0": {}}}}),
        json!({}),
    ];
    for case in cases {
        let set = FieldSet::from_fields_v1(&case).unwrap();
        assert_eq!(set.to_fields_v1(), case, "round trip of {case}");
    }
}

#[test]
fn fields_v1_decodes_to_paths() {
    let v = json!({"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}},
                             "f:finalizers": {"v:\"x\"": {}}, "f:args": {"i:2": {}}}});
    let set = FieldSet::from_fields_v1(&v).unwrap();
    let paths: Vec<String> = set.iter().map(|p| path_string(p)).collect();
    assert_eq!(
        paths,
        vec![
            ".spec.args[2]",
            ".spec.containers[name=\"a\"]",
            ".spec.containers[name=\"a\"].image",
            ".spec.finalizers[=\"x\"]",
        ]
    );
}

#[test]
fn fields_v1_keys_are_canonical() {
    // Keys with unsorted or spaced JSON decode to the same element.
    let a = FieldSet::from_fields_v1(&json!({"k:{\"protocol\": \"TCP\", \"containerPort\": 80}": {}})).unwrap();
    let b = FieldSet::from_fields_v1(&json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}})).unwrap();
    assert_eq!(a, b);
    assert_eq!(b.to_fields_v1(), json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}));
    // Nested values, escapes and numbers are written as serde_json writes them.
    let v = json!({"z": [1, 2.5, null, true], "a": {"q\"uote": "back\\slash\n", "é": "ü"}});
    assert_eq!(canonical_json(&v), serde_json::to_string(&v).unwrap());
    assert_eq!(canonical_json(&v), r#"{"a":{"q\"uote":"back\\slash\n","é":"ü"},"z":[1,2.5,null,true]}"#);
}

#[test]
fn fields_v1_rejects_bad_input() {
    let cases = [
        json!([]),
        json!({"f:spec": 1}),
        json!({"spec": {}}),
        json!({"x:spec": {}}),
        json!({"k:[1]": {}}),
        json!({"k:{bad": {}}),
        json!({"v:{bad": {}}),
        json!({"i:-1": {}}),
    ];
    for case in cases {
        let err = FieldSet::from_fields_v1(&case).unwrap_err();
        assert!(matches!(err, ApplyError::BadManagedFields(_)), "{case}: {err}");
    }
}

// ---- fields_of ----

#[test]
fn fields_of_deployment() {
    let mut d = deployment(Some(2), &[("nginx", "nginx:1.27")]);
    d["status"] = json!({"replicas": 2});
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let got: Vec<String> = fields_of(deployment_schema(), &d).iter().map(|p| path_string(p)).collect();
    assert_eq!(
        got,
        vec![
            ".metadata.labels.app",
            ".spec.replicas",
            ".spec.selector",
            ".spec.template.metadata.labels.app",
            ".spec.template.spec.containers[name=\"nginx\"]",
            ".spec.template.spec.containers[name=\"nginx\"].image",
            ".spec.template.spec.containers[name=\"nginx\"].name",
            ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"]",
            ".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ".spec.template.spec.containers[name=\"nginx\"].resources",
        ]
    );
}

#[test]
fn fields_of_lenient_on_unkeyed_items() {
    let mut d = deployment(None, &[]);
    d["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let set = fields_of(deployment_schema(), &d);
    assert!(set.iter().any(|p| path_string(p) == ".spec.template.spec.containers"));
}

// ---- apply ----

#[test]
fn apply_create_records_applied_fields() {
    let schema = configmap_schema();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
                    "data": {"key": "some value"}});
    let out = apply(schema, None, &cm, "kubectl", false, T0, "v1").unwrap();
    assert_eq!(out["data"], json!({"key": "some value"}));
    assert_eq!(out["metadata"]["name"], "test-cm");
    assert_eq!(
        out["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}
        }])
    );
}

#[test]
fn reapply_same_config_is_a_noop_and_keeps_time() {
    let schema = deployment_schema();
    let d = deployment(Some(2), &[("nginx", "nginx:1.27")]);
    let live = apply(schema, None, &d, "kubectl", false, T0, "apps/v1").unwrap();
    let again = apply(schema, Some(&live), &d, "kubectl", false, T1, "apps/v1").unwrap();
    assert_eq!(again, live);
}

#[test]
fn real_life_apply_scale_conflict_force() {
    let schema = deployment_schema();
    // kubectl apply --server-side (replicas 2)
    let live =
        apply(schema, None, &deployment(Some(2), &[("nginx", "nginx:1.27")]), "kubectl", false, T0, "apps/v1").unwrap();
    assert!(owned(&live, "kubectl", "Apply").contains(&".spec.replicas".to_string()));

    // kubectl scale --replicas 5, through /scale.
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    track_update(schema, Some(&live), &mut scaled, "kube-controller-manager", T1, "apps/v1", Some("scale"));
    assert_eq!(owned(&scaled, "kube-controller-manager", "Update"), vec![".spec.replicas"]);
    assert!(!owned(&scaled, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
    let list = entries(&scaled);
    assert_eq!(entry(&list, "kube-controller-manager", "Update").unwrap()["subresource"], "scale");

    // Re-apply with replicas 3: conflict.
    let applied3 = deployment(Some(3), &[("nginx", "nginx:1.27")]);
    let err = apply(schema, Some(&scaled), &applied3, "kubectl", false, T2, "apps/v1").unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflict(vec![Conflict {
            manager: "kube-controller-manager".into(),
            field: ".spec.replicas".into(),
            api_version: Some("apps/v1".into()),
            subresource: Some("scale".into()),
        }])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );

    // Re-apply with the value live has: shared ownership, no conflict.
    let applied5 = deployment(Some(5), &[("nginx", "nginx:1.27")]);
    let shared = apply(schema, Some(&scaled), &applied5, "kubectl", false, T2, "apps/v1").unwrap();
    assert!(owned(&shared, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
    assert_eq!(owned(&shared, "kube-controller-manager", "Update"), vec![".spec.replicas"]);

    // Force: ownership moves, the emptied entry disappears.
    let forced = apply(schema, Some(&scaled), &applied3, "kubectl", true, T2, "apps/v1").unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(owned(&forced, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
    assert!(entry(&entries(&forced), "kube-controller-manager", "Update").is_none());
}

#[test]
fn removing_a_container_from_the_config_removes_it() {
    let schema = deployment_schema();
    let two = deployment(Some(1), &[("a", "a:1"), ("b", "b:1")]);
    let live = apply(schema, None, &two, "kubectl", false, T0, "apps/v1").unwrap();
    let one = deployment(Some(1), &[("a", "a:2")]);
    let out = apply(schema, Some(&live), &one, "kubectl", false, T1, "apps/v1").unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "a", "image": "a:2"}]));
    assert!(!owned(&out, "kubectl", "Apply").iter().any(|p| p.contains("name=\"b\"")));
}

#[test]
fn two_appliers_keep_their_own_containers() {
    let schema = deployment_schema();
    let live = apply(schema, None, &deployment(None, &[("a", "a:1")]), "team-a", false, T0, "apps/v1").unwrap();
    let live = apply(schema, Some(&live), &deployment(None, &[("b", "b:1")]), "team-b", false, T1, "apps/v1").unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])
    );
    // team-a re-applies unchanged: b stays.
    let live = apply(schema, Some(&live), &deployment(None, &[("a", "a:2")]), "team-a", false, T2, "apps/v1").unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"],
        json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}])
    );
    // Both own the shared selector and labels; neither owns the other's container.
    assert!(owned(&live, "team-b", "Apply").contains(&".spec.selector".to_string()));
    assert!(!owned(&live, "team-b", "Apply").iter().any(|p| p.contains("name=\"a\"")));
}

#[test]
fn apply_rejects_bad_configurations() {
    let schema = deployment_schema();
    let mut no_key = deployment(None, &[]);
    no_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "nginx"}]);
    let mut dup = deployment(None, &[("a", "x"), ("a", "y")]);
    dup["spec"]["replicas"] = json!(1);
    let mut with_managed = deployment(None, &[]);
    with_managed["metadata"]["managedFields"] = json!([]);
    let cases = [
        (
            no_key,
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\"",
        ),
        (dup, ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"),
        (with_managed, "metadata.managedFields must be nil"),
        (json!([1]), "the applied configuration must be an object"),
    ];
    for (input, message) in cases {
        let err = apply(schema, None, &input, "kubectl", false, T0, "apps/v1").unwrap_err();
        assert!(matches!(err, ApplyError::Invalid(_)));
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn apply_rejects_bad_live_managed_fields() {
    let schema = deployment_schema();
    let mut live = deployment(Some(1), &[]);
    live["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply", "fieldsType": "FieldsV1",
                                               "fieldsV1": {"spec": {}}}]);
    let err = apply(schema, Some(&live), &deployment(Some(1), &[]), "kubectl", false, T0, "apps/v1").unwrap_err();
    assert!(matches!(err, ApplyError::BadManagedFields(_)), "{err}");
}

#[test]
fn conflict_message_with_several_conflicts() {
    let c = |m: &str, f: &str, v: Option<&str>| Conflict {
        manager: m.into(),
        field: f.into(),
        api_version: v.map(str::to_string),
        subresource: None,
    };
    let err = ApplyError::Conflict(vec![
        c("kubectl-client-side-apply", ".spec.replicas", Some("apps/v1")),
        c("helm", ".spec.template.spec.containers[name=\"nginx\"].image", None),
        c("kubectl-client-side-apply", ".metadata.labels.app", Some("apps/v1")),
    ]);
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"helm\":\n\
         - .spec.template.spec.containers[name=\"nginx\"].image\n\
         conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
         - .metadata.labels.app\n\
         - .spec.replicas"
    );
    let one = ApplyError::Conflict(vec![c("kubectl-client-side-apply", ".spec.replicas", Some("apps/v1"))]);
    assert_eq!(
        one.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
}

// ---- track_update ----

#[test]
fn create_records_every_field_for_the_creator() {
    let schema = deployment_schema();
    let mut d = deployment(Some(2), &[("nginx", "nginx:1.27")]);
    track_update(schema, None, &mut d, "kubectl-create", T0, "apps/v1", None);
    assert_eq!(
        d["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                   "f:spec": {"f:containers": {".": {}, "k:{\"name\":\"nginx\"}": {
                                       ".": {}, "f:image": {}, "f:name": {}}}}}
                }
            }
        }])
    );
}

#[test]
fn update_takes_changed_fields_from_the_applier() {
    let schema = deployment_schema();
    let live =
        apply(schema, None, &deployment(Some(2), &[("nginx", "nginx:1.27")]), "kubectl", false, T0, "apps/v1").unwrap();
    // kubectl edit changes the image and adds a label; the request carries managedFields.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    edited["metadata"]["labels"]["tier"] = json!("front");
    track_update(schema, Some(&live), &mut edited, "kubectl-edit", T1, "apps/v1", None);
    assert_eq!(
        owned(&edited, "kubectl-edit", "Update"),
        vec![".metadata.labels.tier", ".spec.template.spec.containers[name=\"nginx\"].image"]
    );
    assert!(!owned(&edited, "kubectl", "Apply").iter().any(|p| p.ends_with(".image")));

    // A second edit by the same manager merges into its entry; an unchanged write keeps it.
    let mut again = edited.clone();
    again["spec"]["replicas"] = json!(4);
    track_update(schema, Some(&edited), &mut again, "kubectl-edit", T2, "apps/v1", None);
    assert_eq!(owned(&again, "kubectl-edit", "Update").len(), 3);
    assert_eq!(entry(&entries(&again), "kubectl-edit", "Update").unwrap()["time"], T2);
    let mut same = again.clone();
    track_update(schema, Some(&again), &mut same, "kubectl-edit", "2026-01-01T00:09:00Z", "apps/v1", None);
    assert_eq!(same, again);

    // Re-applying the old image now conflicts with the editor.
    let err =
        apply(schema, Some(&again), &deployment(Some(4), &[("nginx", "nginx:1.27")]), "kubectl", false, T2, "apps/v1")
            .unwrap_err();
    let ApplyError::Conflict(conflicts) = err else { panic!("expected a conflict, got {err}") };
    // Replicas 4 equals live, so it is shared without conflict; only the image conflicts.
    let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec![".spec.template.spec.containers[name=\"nginx\"].image"]);
}

#[test]
fn update_removing_fields_drops_them_from_all_owners() {
    let schema = deployment_schema();
    let live =
        apply(schema, None, &deployment(Some(2), &[("a", "a:1"), ("b", "b:1")]), "kubectl", false, T0, "apps/v1")
            .unwrap();
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"] = json!([{"name": "a", "image": "a:1"}]);
    track_update(schema, Some(&live), &mut edited, "kubectl-edit", T1, "apps/v1", None);
    assert!(!owned(&edited, "kubectl", "Apply").iter().any(|p| p.contains("name=\"b\"")));
    // Nothing was added or modified, so the editor owns nothing and has no entry.
    assert!(entry(&entries(&edited), "kubectl-edit", "Update").is_none());
}

#[test]
fn status_writes_record_the_subresource() {
    let schema = deployment_schema();
    let live = apply(schema, None, &deployment(Some(2), &[("a", "a:1")]), "kubectl", false, T0, "apps/v1").unwrap();
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
    track_update(schema, Some(&live), &mut with_status, "kube-controller-manager", T1, "apps/v1", Some("status"));
    let list = entries(&with_status);
    let e = entry(&list, "kube-controller-manager", "Update").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}},
                            "f:replicas": {}}})
    );
    // Apply entries come first (Kubernetes' order), then Updates.
    assert_eq!(list[0]["operation"], "Apply");
    // The main resource ignores status: an apply does not touch it or its owner.
    let out = apply(schema, Some(&with_status), &deployment(Some(2), &[("a", "a:1")]), "kubectl", false, T2, "apps/v1")
        .unwrap();
    assert_eq!(out["status"], with_status["status"]);
    assert!(entry(&entries(&out), "kube-controller-manager", "Update").is_some());
}

#[test]
fn update_resets_undecodable_request_managed_fields() {
    let schema = deployment_schema();
    let live = apply(schema, None, &deployment(Some(2), &[]), "kubectl", false, T0, "apps/v1").unwrap();
    let mut edited = live.clone();
    edited["metadata"]["managedFields"] = json!("garbage");
    edited["spec"]["replicas"] = json!(3);
    track_update(schema, Some(&live), &mut edited, "kubectl-edit", T1, "apps/v1", None);
    // The live entries were carried over, and the change recorded.
    assert!(entry(&entries(&edited), "kubectl", "Apply").is_some());
    assert_eq!(owned(&edited, "kubectl-edit", "Update"), vec![".spec.replicas"]);
}

#[test]
fn first_apply_to_untracked_object_assigns_before_first_apply() {
    let schema = deployment_schema();
    let live = deployment(Some(2), &[("a", "a:1")]);
    let err =
        apply(schema, Some(&live), &deployment(Some(3), &[("a", "a:1")]), "kubectl", false, T1, "apps/v1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let out =
        apply(schema, Some(&live), &deployment(Some(2), &[("a", "a:1")]), "kubectl", false, T1, "apps/v1").unwrap();
    assert!(owned(&out, "before-first-apply", "Update").contains(&".spec.replicas".to_string()));
    assert!(owned(&out, "kubectl", "Apply").contains(&".spec.replicas".to_string()));
}

// ---- list and map semantics ----

#[test]
fn lists_and_maps_merge_by_schema() {
    let schema = deployment_schema();
    // Cases: (live spec.template.spec patch, applied patch, expected merged field, field name)
    let cases = [
        // Atomic list (args): replaced whole.
        (
            json!({"containers": [{"name": "a", "args": ["x", "y"]}]}),
            json!({"containers": [{"name": "a", "args": ["z"]}]}),
            json!([{"name": "a", "args": ["z"]}]),
            "containers",
        ),
        // Map list merged by key, live-only items kept in place, new items appended.
        (
            json!({"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}),
            json!({"containers": [{"name": "b", "image": "b2"}, {"name": "c", "image": "c"}]}),
            json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b2"}, {"name": "c", "image": "c"}]),
            "containers",
        ),
        // Ports keyed by (containerPort, protocol), protocol defaulting to TCP.
        (
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}]}),
            json!({"containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            json!([{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http", "hostPort": 8080}]}]),
            "containers",
        ),
        // Atomic map (nodeSelector is `x-kubernetes-map-type: atomic`): replaced whole.
        (
            json!({"nodeSelector": {"disk": "ssd"}}),
            json!({"nodeSelector": {"zone": "a"}}),
            json!({"zone": "a"}),
            "nodeSelector",
        ),
        // Granular struct (securityContext): fields merged.
        (
            json!({"securityContext": {"runAsUser": 1}}),
            json!({"securityContext": {"runAsGroup": 2}}),
            json!({"runAsUser": 1, "runAsGroup": 2}),
            "securityContext",
        ),
    ];
    for (live_spec, applied_spec, expected, field) in cases {
        let mut live = deployment(None, &[]);
        live["spec"]["template"]["spec"] = live_spec.clone();
        let mut live = apply(schema, None, &live, "other", false, T0, "apps/v1").unwrap();
        live["metadata"]["labels"] = json!({"app": "web"});
        let mut applied = deployment(None, &[]);
        applied["spec"]["template"]["spec"] = applied_spec.clone();
        let out = apply(schema, Some(&live), &applied, "kubectl", true, T1, "apps/v1").unwrap();
        assert_eq!(out["spec"]["template"]["spec"][field], expected, "{live_spec} + {applied_spec}");
    }
}

#[test]
fn sets_merge_by_value_and_prune_what_was_dropped() {
    let schema = deployment_schema();
    let mut a = deployment(None, &[]);
    a["metadata"]["finalizers"] = json!(["x", "y"]);
    let live = apply(schema, None, &a, "a", false, T0, "apps/v1").unwrap();
    let mut b = deployment(None, &[]);
    b["metadata"]["finalizers"] = json!(["y", "z"]);
    let live = apply(schema, Some(&live), &b, "b", false, T1, "apps/v1").unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["x", "y", "z"]));
    assert_eq!(
        owned(&live, "b", "Apply").iter().filter(|p| p.contains("finalizers")).collect::<Vec<_>>(),
        vec![".metadata.finalizers[=\"y\"]", ".metadata.finalizers[=\"z\"]"]
    );
    // a drops both: x goes (only a owned it), y stays (b owns it too).
    let live = apply(schema, Some(&live), &deployment(None, &[]), "a", false, T2, "apps/v1").unwrap();
    assert_eq!(live["metadata"]["finalizers"], json!(["y", "z"]));
}

#[test]
fn dropped_labels_are_removed_unless_shared() {
    let schema = deployment_schema();
    let mut a = deployment(None, &[]);
    a["metadata"]["labels"] = json!({"app": "web", "only-a": "1", "shared": "s"});
    let live = apply(schema, None, &a, "a", false, T0, "apps/v1").unwrap();
    let mut b = deployment(None, &[]);
    b["metadata"]["labels"] = json!({"app": "web", "shared": "s"});
    let live = apply(schema, Some(&live), &b, "b", false, T1, "apps/v1").unwrap();
    let mut a2 = deployment(None, &[]);
    a2["metadata"]["labels"] = json!({"app": "web"});
    let out = apply(schema, Some(&live), &a2, "a", false, T2, "apps/v1").unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "shared": "s"}));
    // Dropping a manager's only map entries removes the emptied map.
    let mut c = deployment(None, &[]);
    c["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    let live = apply(schema, Some(&out), &c, "c", false, T2, "apps/v1").unwrap();
    let gone = apply(schema, Some(&live), &deployment(None, &[]), "c", false, T2, "apps/v1").unwrap();
    assert!(gone["spec"]["template"]["spec"].get("nodeSelector").is_none(), "{gone}");
}

#[test]
fn crd_schema_with_map_list_and_unknown_fields() {
    let raw = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer"},
                    "endpoints": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["host", "port"],
                        "items": {"type": "object", "properties": {
                            "host": {"type": "string"}, "port": {"type": "integer"}, "weight": {"type": "integer"}}}
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            }
        }
    });
    let schema = Node::new(&raw);
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                    "spec": {"size": 1, "endpoints": [{"host": "a", "port": 1, "weight": 5}],
                             "extra": {"deep": {"x": [1, 2]}}}});
    let out = apply(schema, None, &cr, "kubectl", false, T0, "example.com/v1").unwrap();
    assert_eq!(
        out["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {"f:endpoints": {"k:{\"host\":\"a\",\"port\":1}": {".": {}, "f:host": {}, "f:port": {}, "f:weight": {}}},
                          "f:extra": {"f:deep": {".": {}, "f:x": {}}}, "f:size": {}}})
    );
    let mut missing = cr.clone();
    missing["spec"]["endpoints"] = json!([{"host": "a"}]);
    let err = apply(schema, None, &missing, "kubectl", false, T0, "example.com/v1").unwrap_err();
    assert_eq!(
        err.to_string(),
        ".spec.endpoints: element 0: associative list with keys has an element that omits key field \"port\""
    );
}

mod properties {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{FieldSet, Path, PathElement};

    fn element() -> impl Strategy<Value = PathElement> {
        prop_oneof![
            "[a-c.:/]{1,3}".prop_map(PathElement::Field),
            ("[a-c]{1,2}", 0..3i64).prop_map(|(n, p)| {
                let key = json!({"name": n, "port": p});
                PathElement::key(key.as_object().expect("an object"))
            }),
            (0..4i64).prop_map(|v| PathElement::value(&json!(v))),
            (0..3usize).prop_map(PathElement::Index),
        ]
    }

    proptest! {
        #[test]
        fn fields_v1_round_trips(paths in proptest::collection::vec(proptest::collection::vec(element(), 1..4), 0..8)) {
            let set: FieldSet = paths.into_iter().collect::<Vec<Path>>().into_iter().collect();
            let encoded = set.to_fields_v1();
            prop_assert_eq!(FieldSet::from_fields_v1(&encoded).expect("decodes"), set);
        }
    }
}

/// The tracked comparison `track_update` uses, without copies, finds exactly what comparing
/// the copied tracked parts finds: for spec, status, label, annotation and list changes, on
/// the main resource and on `status`, and for a schema whose root is compared whole.
#[test]
fn compare_tracked_matches_comparing_tracked_copies() {
    let pod_schema = schema::definition("io.k8s.api.core.v1.Pod").expect("built-in Pod schema");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}, "resourceVersion": "3",
                     "managedFields": [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
        "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}], "restartPolicy": "Always"},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
    });
    type Edit = Box<dyn Fn(&mut Value)>;
    let variants: Vec<Edit> = vec![
        Box::new(|_| {}),
        Box::new(|p| p["spec"]["containers"][0]["image"] = json!("y")),
        Box::new(|p| p["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "b", "image": "z"}))),
        Box::new(|p| p["status"]["conditions"][0]["status"] = json!("True")),
        Box::new(|p| p["status"]["podIP"] = json!("10.0.0.1")),
        Box::new(|p| {
            p["status"].as_object_mut().unwrap().remove("conditions");
        }),
        Box::new(|p| p["metadata"]["labels"]["tier"] = json!("db")),
        Box::new(|p| {
            p["metadata"].as_object_mut().unwrap().remove("labels");
        }),
        Box::new(|p| p["metadata"]["annotations"] = json!({"a": "b"})),
        Box::new(|p| p["metadata"]["resourceVersion"] = json!("4")),
        Box::new(|p| p["metadata"]["finalizers"] = json!(["x/y"])),
        Box::new(|p| p["spec"]["unknownField"] = json!({"deep": [1, 2]})),
        Box::new(|p| {
            p.as_object_mut().unwrap().remove("status");
        }),
    ];
    let custom_whole = json!({"type": "object"});
    let custom_open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let schemas = [pod_schema, Node::new(&custom_whole), Node::new(&custom_open)];
    for (si, schema) in schemas.iter().enumerate() {
        for (i, a) in variants.iter().enumerate() {
            for (j, b) in variants.iter().enumerate() {
                let (mut old, mut new) = (pod.clone(), pod.clone());
                a(&mut old);
                b(&mut new);
                for include_status in [false, true] {
                    for old in [Some(&old), None] {
                        let mut want = Comparison::default();
                        let old_t = old.map_or_else(|| Value::Object(Map::new()), |o| tracked(o, include_status));
                        let new_t = tracked(&new, include_status);
                        walk::compare(Some(*schema), Some(&old_t), Some(&new_t), &mut Vec::new(), &mut want);
                        let got = compare_tracked(*schema, old, &new, include_status);
                        assert_eq!(got, want, "schema {si}, variants {i} → {j}, status {include_status}");
                    }
                }
            }
        }
    }
}

/// Writing back the stored entries a write leaves alone, undecoded, gives exactly what
/// decoding every entry gives: for main-resource and status writes by the owners and by new
/// managers, changing, adding and removing fields that one or several entries own.
#[test]
fn track_update_of_stored_entries_matches_decoding_them() {
    let schema = schema::definition("io.k8s.api.core.v1.Pod").expect("built-in Pod schema");
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}]}], "restartPolicy": "Always"},
    });
    track_update(schema, None, &mut pod, "creator", T0, "v1", None);
    let mut scheduled = pod.clone();
    scheduled["status"] =
        json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
    track_update(schema, Some(&pod), &mut scheduled, "scheduler", T1, "v1", Some("status"));
    let mut labelled = scheduled.clone();
    labelled["metadata"]["labels"]["tier"] = json!("db");
    track_update(schema, Some(&scheduled), &mut labelled, "labeller", T1, "v1", None);
    assert_eq!(entries(&labelled).len(), 3);

    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<Edit> = vec![
        Box::new(|_| {}),
        Box::new(|p| p["spec"]["containers"][0]["image"] = json!("y")),
        Box::new(|p| p["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "b", "image": "z"}))),
        Box::new(|p| {
            p["spec"]["containers"][0].as_object_mut().unwrap().remove("ports");
        }),
        Box::new(|p| p["status"]["conditions"][0]["status"] = json!("True")),
        Box::new(|p| p["status"]["phase"] = json!("Running")),
        Box::new(|p| {
            p.as_object_mut().unwrap().remove("status");
        }),
        Box::new(|p| p["metadata"]["labels"]["tier"] = json!("web")),
        Box::new(|p| {
            p["metadata"].as_object_mut().unwrap().remove("labels");
        }),
        Box::new(|p| p["metadata"]["managedFields"] = json!([])),
        Box::new(|p| p["metadata"]["managedFields"] = Value::Null),
        Box::new(|p| p["metadata"]["managedFields"][0]["manager"] = json!("renamed")),
    ];
    let managers = ["creator", "scheduler", "labeller", "newcomer"];
    for (i, edit) in edits.iter().enumerate() {
        for manager in managers {
            for sub in [None, Some("status")] {
                let mut new = labelled.clone();
                edit(&mut new);
                let mut want = new.clone();
                track_update_decoded(schema, Some(&labelled), &mut want, manager, T2, "v1", sub);
                track_update(schema, Some(&labelled), &mut new, manager, T2, "v1", sub);
                assert_eq!(new, want, "edit {i} by {manager} through {sub:?}");
            }
        }
    }
}
