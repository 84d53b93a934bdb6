//! Tests of merge patch, JSON patch and strategic merge patch.

use serde_json::{Value, json};

use super::*;
use crate::schema::definition;

fn pod() -> Node<'static> {
    definition("io.k8s.api.core.v1.Pod").expect("Pod schema")
}

fn deployment() -> Node<'static> {
    definition("io.k8s.api.apps.v1.Deployment").expect("Deployment schema")
}

fn check_smp(schema: Node<'_>, original: Value, patch: Value, expected: Value) {
    let got = strategic_merge_patch(schema, &original, &patch).unwrap_or_else(|e| panic!("patch {patch}: {e}"));
    assert_eq!(got, expected, "patch {patch}");
}

fn check_smp_err(schema: Node<'_>, original: Value, patch: Value, expected: &str) {
    match strategic_merge_patch(schema, &original, &patch) {
        Ok(v) => panic!("patch {patch} should fail, got {v}"),
        Err(e) => assert!(e.to_string().contains(expected), "error {e:?} lacks {expected:?}"),
    }
}

fn pod_with(containers: Value) -> Value {
    json!({"spec": {"containers": containers}})
}

#[test]
fn merge_patch_cases() {
    let check = |mut target: Value, patch: Value, expected: Value| {
        merge_patch(&mut target, &patch);
        assert_eq!(target, expected, "patch {patch}");
    };
    check(json!({"a": 1}), json!({"b": 2}), json!({"a": 1, "b": 2}));
    check(json!({"a": 1}), json!({"a": null}), json!({}));
    check(json!({"a": {"b": 1, "c": 2}}), json!({"a": {"b": null}}), json!({"a": {"c": 2}}));
    check(json!({"a": [1, 2]}), json!({"a": [3]}), json!({"a": [3]}));
    check(json!({"a": 1}), json!("x"), json!("x"));
    check(json!("x"), json!({"a": {"b": null}}), json!({"a": {}}));
    check(json!({"spec": {"replicas": 1}}), json!({"spec": {"replicas": 3}}), json!({"spec": {"replicas": 3}}));
}

#[test]
fn json_patch_cases() {
    let check = |mut target: Value, patch: Value, expected: Value| {
        json_patch(&mut target, &patch).unwrap_or_else(|e| panic!("patch {patch}: {e}"));
        assert_eq!(target, expected, "patch {patch}");
    };
    check(json!({"a": 1}), json!([{"op": "add", "path": "/b", "value": 2}]), json!({"a": 1, "b": 2}));
    check(json!({"a": [1, 2]}), json!([{"op": "add", "path": "/a/-", "value": 3}]), json!({"a": [1, 2, 3]}));
    check(json!({"a": 1}), json!([{"op": "remove", "path": "/a"}]), json!({}));
    check(json!({"a": 1}), json!([{"op": "replace", "path": "/a", "value": 5}]), json!({"a": 5}));
    check(json!({"a": 1}), json!([{"op": "move", "from": "/a", "path": "/b"}]), json!({"b": 1}));
    check(json!({"a": 1}), json!([{"op": "copy", "from": "/a", "path": "/b"}]), json!({"a": 1, "b": 1}));
    check(json!({"a": 1}), json!([{"op": "test", "path": "/a", "value": 1}]), json!({"a": 1}));
    check(json!({"a": 1}), json!([]), json!({"a": 1}));
    check(
        json!({"metadata": {"annotations": {"a/b": "x"}}}),
        json!([{"op": "replace", "path": "/metadata/annotations/a~1b", "value": "y"}]),
        json!({"metadata": {"annotations": {"a/b": "y"}}}),
    );
}

#[test]
fn json_patch_errors_name_the_operation() {
    let check = |patch: Value, expected: &str| {
        let mut target = json!({"a": 1});
        let err = json_patch(&mut target, &patch).expect_err("should fail");
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
        assert_eq!(target, json!({"a": 1}), "target unchanged on error");
    };
    check(json!({"op": "add"}), "list of operations");
    check(json!([{"op": "frobnicate", "path": "/a"}]), "operation #0");
    check(json!([{"path": "/a"}]), "operation #0");
    check(json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/zz"}]), "#1 (remove /zz)");
    check(json!([{"op": "test", "path": "/a", "value": 2}]), "#0 (test /a) failed: value did not match");
    check(json!([{"op": "replace", "path": "/x/y", "value": 2}]), "path is invalid");
}

#[test]
fn smp_maps_and_scalars() {
    let p = pod();
    check_smp(
        p,
        json!({"metadata": {"labels": {"a": "1"}}}),
        json!({"metadata": {"labels": {"b": "2"}}}),
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
    );
    check_smp(
        p,
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        json!({"metadata": {"labels": {"a": null}}}),
        json!({"metadata": {"labels": {"b": "2"}}}),
    );
    check_smp(
        p,
        json!({"metadata": {"name": "x"}}),
        json!({"metadata": {"annotations": {"k": "v", "gone": null}}}),
        json!({"metadata": {"name": "x", "annotations": {"k": "v"}}}),
    );
    check_smp(
        p,
        json!({"spec": {"nodeName": "a"}}),
        json!({"spec": {"nodeName": "b"}}),
        json!({"spec": {"nodeName": "b"}}),
    );
    check_smp(p, json!({}), json!({}), json!({}));
    check_smp(p, Value::Null, json!({"a": 1}), json!({"a": 1}));
    // Unknown fields are merged as merge patch would.
    check_smp(p, json!({"x": {"y": 1}}), json!({"x": {"z": 2}, "w": [1]}), json!({"x": {"y": 1, "z": 2}, "w": [1]}));
    // Type changes replace.
    check_smp(p, json!({"x": {"y": 1}}), json!({"x": [1]}), json!({"x": [1]}));
}

#[test]
fn smp_containers_merge_by_name() {
    let p = pod();
    let orig = pod_with(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
    check_smp(
        p,
        orig.clone(),
        pod_with(json!([{"name": "b", "image": "b:2"}])),
        pod_with(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}])),
    );
    check_smp(
        p,
        orig.clone(),
        pod_with(json!([{"name": "c", "image": "c:1"}])),
        pod_with(
            // A new item comes first, as in Kubernetes (kubectl apply orders with $setElementOrder).
            json!([{"name": "c", "image": "c:1"}, {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]),
        ),
    );
    check_smp(
        p,
        orig.clone(),
        pod_with(json!([{"name": "a", "$patch": "delete"}])),
        pod_with(json!([{"name": "b", "image": "b:1"}])),
    );
    check_smp(
        p,
        orig.clone(),
        pod_with(json!([{"name": "z", "image": "z"}, {"$patch": "replace"}])),
        pod_with(json!([{"name": "z", "image": "z"}])),
    );
    // An empty list in a merge patch changes nothing.
    check_smp(p, orig.clone(), pod_with(json!([])), orig.clone());
    // Nested merge lists: env by name, ports by containerPort.
    check_smp(
        p,
        pod_with(json!([{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}])),
        pod_with(
            json!([{"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 80, "name": "http"}]}]),
        ),
        pod_with(json!([{"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}],
            "ports": [{"containerPort": 80, "name": "http"}]}])),
    );
    // Removing a field of one container.
    check_smp(
        p,
        pod_with(json!([{"name": "a", "image": "i", "command": ["x"]}])),
        pod_with(json!([{"name": "a", "command": null}])),
        pod_with(json!([{"name": "a", "image": "i"}])),
    );
    // args is atomic: replaced.
    check_smp(
        p,
        pod_with(json!([{"name": "a", "args": ["1", "2"]}])),
        pod_with(json!([{"name": "a", "args": ["3"]}])),
        pod_with(json!([{"name": "a", "args": ["3"]}])),
    );
}

#[test]
fn smp_volumes_and_tolerations() {
    let p = pod();
    check_smp(
        p,
        json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}),
        json!({"spec": {"volumes": [{"name": "w", "configMap": {"name": "c"}}]}}),
        json!({"spec": {"volumes": [{"name": "w", "configMap": {"name": "c"}}, {"name": "v", "emptyDir": {}}]}}),
    );
    // tolerations have no patch strategy: replaced.
    check_smp(
        p,
        json!({"spec": {"tolerations": [{"key": "a"}]}}),
        json!({"spec": {"tolerations": [{"key": "b"}]}}),
        json!({"spec": {"tolerations": [{"key": "b"}]}}),
    );
}

#[test]
fn smp_primitive_sets_and_delete_from_primitive_list() {
    let p = pod();
    // finalizers: merge strategy, list of strings → set union.
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
        json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
    );
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": ["b"]}}),
    );
    check_smp(
        p,
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        json!({"metadata": {}}),
    );
}

#[test]
fn smp_merge_lists_follow_patch_order() {
    let p = pod();
    // Items named in the patch come in patch order; server-only ones keep their places.
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        pod_with(json!([{"name": "b", "image": "x"}, {"name": "a", "image": "y"}])),
        pod_with(json!([{"name": "b", "image": "x"}, {"name": "a", "image": "y"}])),
    );
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        pod_with(json!([{"name": "b", "image": "x"}, {"name": "c"}])),
        pod_with(json!([{"name": "a"}, {"name": "b", "image": "x"}, {"name": "c"}])),
    );
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": ["c", "a"]}}),
        json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
    );
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": []}}),
        json!({"metadata": {"finalizers": ["a", "b"]}}),
    );
}

#[test]
fn smp_set_element_order() {
    let p = pod();
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a", "image": "x"}]}}),
        pod_with(json!([{"name": "b"}, {"name": "a", "image": "x"}])),
    );
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "c"}]}}),
        pod_with(json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])),
    );
    // Server-only items keep their place between the ordered ones.
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "s"}, {"name": "b"}])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b", "image": "y"}]}}),
        pod_with(json!([{"name": "a"}, {"name": "s"}, {"name": "b", "image": "y"}])),
    );
    check_smp(
        p,
        pod_with(json!([{"name": "a"}, {"name": "s"}, {"name": "b"}])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
        pod_with(json!([{"name": "s"}, {"name": "b"}, {"name": "a"}])),
    );
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["x", "y"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["z", "x"], "finalizers": ["z"]}}),
        json!({"metadata": {"finalizers": ["z", "x", "y"]}}),
    );
    check_smp(
        p,
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        json!({"metadata": {"finalizers": ["b", "a"]}}),
    );
}

#[test]
fn smp_retain_keys_and_map_directives() {
    let d = deployment();
    check_smp(
        d,
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    check_smp(
        d,
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}}),
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}),
    );
    check_smp(
        d,
        json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}}),
        json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"b": "2"}}}}),
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
    );
    check_smp(
        d,
        json!({"metadata": {"labels": {"a": "1"}}}),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
        json!({"metadata": {"labels": {}}}),
    );
    check_smp(
        d,
        json!({"metadata": {"labels": {"a": "1"}}}),
        json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
    );
    // Directives inside values that are new are removed.
    check_smp(
        d,
        json!({}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    // A deployment's template containers (kubectl set image).
    check_smp(
        d,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "s"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}, {"name": "side", "image": "s"}]}}}}),
    );
}

#[test]
fn smp_bad_patches() {
    let p = pod();
    check_smp_err(p, json!({}), json!([1]), "must be a JSON object");
    check_smp_err(p, json!([1]), json!({}), "not a JSON object");
    check_smp_err(p, json!({"metadata": {}}), json!({"metadata": {"$patch": "frob"}}), "unknown patch type: \"frob\"");
    check_smp_err(p, json!({"metadata": {}}), json!({"metadata": {"$patch": 3}}), "unknown patch type");
    check_smp_err(
        p,
        pod_with(json!([{"name": "a"}])),
        pod_with(json!([{"image": "x"}])),
        "does not contain declared merge key: name",
    );
    check_smp_err(p, pod_with(json!([{"name": "a"}])), pod_with(json!(["x"])), "expected a map");
    check_smp_err(p, pod_with(json!([{"name": "a"}])), pod_with(json!([{"$patch": "bogus"}])), "unknown patch type");
    check_smp_err(p, json!({"spec": {}}), json!({"spec": {"$retainKeys": "type"}}), "must be a list");
    check_smp_err(p, json!({"spec": {}}), json!({"spec": {"$retainKeys": [1]}}), "list of strings");
    check_smp_err(
        p,
        pod_with(json!([{"name": "a"}])),
        pod_with(json!([{"name": "a", "$patch": "merge"}])),
        "merging lists cannot yet be specified",
    );
    check_smp_err(
        deployment(),
        json!({"spec": {"strategy": {}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
        "\"rollingUpdate\", which is not in the list",
    );
    check_smp_err(
        p,
        json!({"metadata": {}}),
        json!({"metadata": {"$setElementOrder/finalizers": {}}}),
        "must be a list",
    );
    check_smp_err(
        p,
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": 1}}),
        "must be a list",
    );
}
