use serde_json::{Value, json};

use super::{validate, validate_crd};

fn schema() -> Value {
    json!({"type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('app-') && !has(self.metadata.labels)",
            "message": "name must start with app-"}],
        "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                {"rule": "!has(self.mode) || self.mode != 'legacy'", "reason": "FieldValueForbidden",
                    "fieldPath": ".mode", "messageExpression": "'mode ' + self.mode + ' is gone'"}],
            "properties": {
                "replicas": {"type": "integer"},
                "maxReplicas": {"type": "integer"},
                "mode": {"type": "string"},
                "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
                "size": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0"}]},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.port >= oldSelf.port", "message": "ports only grow"}]}},
                "labels": {"type": "object", "additionalProperties": {"type": "string",
                    "x-kubernetes-validations": [{"rule": "size(self) <= 3", "reason": "FieldValueInvalid"}]}},
                "missing": {"type": "object", "x-kubernetes-validations": [{"rule": "self.absent > 1"}]}}}}})
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "app-a", "uid": "u"}, "spec": spec})
}

fn errors(obj: &Value, old: Option<&Value>) -> Vec<String> {
    validate(&schema(), obj, old).iter().map(ToString::to_string).collect()
}

#[test]
fn rules_judge_self_with_their_messages_reasons_and_field_paths() {
    assert_eq!(errors(&object(json!({"replicas": 1, "maxReplicas": 2})), None), Vec::<String>::new());
    assert_eq!(
        errors(&object(json!({"replicas": 3, "maxReplicas": 2})), None),
        ["spec: Invalid value: \"object\": replicas must not exceed maxReplicas"]
    );
    assert_eq!(
        errors(&object(json!({"replicas": 1, "maxReplicas": 2, "mode": "legacy"})), None),
        ["spec.mode: Forbidden: mode legacy is gone"]
    );
    assert_eq!(
        errors(&object(json!({"replicas": 1, "maxReplicas": 2, "size": 3})), None),
        ["spec.size: Invalid value: \"integer\": failed rule: self % 2 == 0"]
    );
    assert_eq!(
        errors(&object(json!({"replicas": 1, "maxReplicas": 2, "labels": {"a": "ok", "b": "long"}})), None),
        ["spec.labels[b]: Invalid value: \"string\": failed rule: size(self) <= 3"]
    );
    let evaluation = errors(&object(json!({"replicas": 1, "maxReplicas": 2, "missing": {}})), None);
    assert_eq!(evaluation.len(), 1, "{evaluation:?}");
    assert!(evaluation[0].starts_with("spec.missing: Invalid value: \"object\": "), "{evaluation:?}");
    assert!(evaluation[0].contains("absent"), "{evaluation:?}");
}

#[test]
fn the_root_sees_only_name_and_generate_name_of_metadata() {
    let mut obj = object(json!({"replicas": 1, "maxReplicas": 2}));
    obj["metadata"]["labels"] = json!({"a": "b"});
    assert_eq!(errors(&obj, None), Vec::<String>::new());
    obj["metadata"]["name"] = json!("other");
    assert_eq!(errors(&obj, None), ["<nil>: Invalid value: \"object\": name must start with app-"]);
}

#[test]
fn transition_rules_need_the_stored_value_and_unchanged_values_are_ratcheted() {
    let old = object(json!({"replicas": 1, "maxReplicas": 2, "name": "a", "ports": [{"name": "http", "port": 80}]}));
    // Creates: transition rules are not evaluated.
    assert_eq!(errors(&old, None), Vec::<String>::new());
    let renamed =
        object(json!({"replicas": 1, "maxReplicas": 2, "name": "b", "ports": [{"name": "http", "port": 80}]}));
    assert_eq!(errors(&renamed, Some(&old)), ["spec.name: Invalid value: \"string\": Value is immutable"]);
    // List items correlate by their map keys; a new key has no oldSelf.
    let shrunk = object(json!({"replicas": 1, "maxReplicas": 2, "name": "a",
        "ports": [{"name": "new", "port": 1}, {"name": "http", "port": 79}]}));
    assert_eq!(errors(&shrunk, Some(&old)), ["spec.ports[1]: Invalid value: \"object\": ports only grow"]);
    // A stored value that breaks a rule may stay as it is; changing it is judged.
    let stored = object(json!({"replicas": 1, "maxReplicas": 2, "size": 3}));
    let unchanged = object(json!({"replicas": 2, "maxReplicas": 2, "size": 3}));
    assert_eq!(errors(&unchanged, Some(&stored)), Vec::<String>::new());
    let changed = object(json!({"replicas": 2, "maxReplicas": 2, "size": 5}));
    assert_eq!(errors(&changed, Some(&stored)), ["spec.size: Invalid value: \"integer\": failed rule: self % 2 == 0"]);
}

#[test]
fn a_crd_with_rules_that_do_not_compile_is_invalid() {
    let crd = |rule: Value| {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object",
            "properties": {"spec": {"type": "object", "x-kubernetes-validations": [rule]}}}}}]}})
    };
    assert!(validate_crd(&crd(json!({"rule": "self.a > 1", "reason": "FieldValueRequired"}))).is_empty());
    let path = "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]";
    let bad = validate_crd(&crd(json!({"rule": "self.a >"})));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].field, format!("{path}.rule"));
    assert!(bad[0].detail.starts_with("compilation failed"), "{bad:?}");
    let undeclared = validate_crd(&crd(json!({"rule": "object.a > 1"})));
    assert!(undeclared[0].detail.contains("undeclared reference to 'object'"), "{undeclared:?}");
    let reason = validate_crd(&crd(json!({"rule": "true", "reason": "Nope", "message": "a\nb"})));
    let fields: Vec<&str> = reason.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, [format!("{path}.message"), format!("{path}.reason")]);
}
