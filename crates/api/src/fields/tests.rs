//! Tests of duplicate/unknown field detection, type checks, CRD validation, defaulting
//! and structural-schema checks.

use serde_json::{Value, json};

use super::*;
use crate::schema::definition;

fn deployment() -> Node<'static> {
    definition("io.k8s.api.apps.v1.Deployment").expect("Deployment schema")
}

fn rendered(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn duplicate_fields_cases() {
    let check = |body: &str, expected: &[&str]| assert_eq!(duplicate_fields(body.as_bytes()), expected, "body {body}");
    check(r#"{"a":1,"b":2}"#, &[]);
    check(r#"{"spec":{"replicas":1,"replicas":2}}"#, &[".spec.replicas"]);
    check(r#"{"a":1,"a":2,"a":3}"#, &[".a", ".a"]);
    check(r#"{"a":{"x":1},"b":{"x":1}}"#, &[]);
    check(r#"{"l":[{"n":1,"n":2},{"n":1}]}"#, &[".l[0].n"]);
    check(r#"{"k\u0061":1,"ka":2}"#, &[".ka"]);
    check(r#"[1,{"a":1,"a":1}]"#, &["[1].a"]);
    check(r#"{"a":1,"a":"#, &[".a"]);
    check("not json", &[]);
    check("", &[]);
}

#[test]
fn prune_unknown_builtin() {
    let check = |mut obj: Value, expected_paths: &[&str], expected: Value| {
        let paths = prune_unknown(deployment(), &mut obj);
        assert_eq!(paths, expected_paths);
        assert_eq!(obj, expected);
    };
    check(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 1}}),
        &[],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 1}}),
    );
    check(json!({"spec": {"foo": 1, "replicas": 1}}), &[".spec.foo"], json!({"spec": {"replicas": 1}}));
    check(
        json!({"bogus": 1, "metadata": {"name": "x", "nope": 2}}),
        &[".bogus", ".metadata.nope"],
        json!({"metadata": {"name": "x"}}),
    );
    check(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "bogus": true}]}}}}),
        &[".spec.template.spec.containers[1].bogus"],
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}}),
    );
    // Maps, IntOrString, Quantity and FieldsV1 accept anything.
    let free = json!({"metadata": {"labels": {"any": "x"}, "managedFields": [{"fieldsV1": {"f:spec": {}}}]},
        "spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%"}},
        "template": {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}]}}}});
    check(free.clone(), &[], free);
}

#[test]
fn prune_unknown_custom() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "string"},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "closed": {"type": "object"},
            "port": {"x-kubernetes-int-or-string": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "embedded": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}}}}}});
    let check = |mut obj: Value, expected_paths: &[&str], expected: Value| {
        let paths = prune_unknown(Node::new(&schema), &mut obj);
        assert_eq!(paths, expected_paths, "obj {obj}");
        assert_eq!(obj, expected);
    };
    check(
        json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"size": "S"}}),
        &[],
        json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"size": "S"}}),
    );
    check(
        json!({"spec": {"extra": {"a": {"b": 1}}, "labels": {"x": "y"}, "port": 80}}),
        &[],
        json!({"spec": {"extra": {"a": {"b": 1}}, "labels": {"x": "y"}, "port": 80}}),
    );
    check(
        json!({"spec": {"closed": {"a": 1}}, "status": {}}),
        &[".spec.closed.a", ".status"],
        json!({"spec": {"closed": {}}}),
    );
    check(
        json!({"spec": {"items": [{"n": 1, "m": 2}]}}),
        &[".spec.items[0].m"],
        json!({"spec": {"items": [{"n": 1}]}}),
    );
    check(
        json!({"spec": {"embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "x": 1}}}),
        &[".spec.embedded.x"],
        json!({"spec": {"embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}}),
    );
}

#[test]
fn check_types_builtin() {
    let check = |obj: Value, expected: &[&str]| {
        let got: Vec<String> = check_types(deployment(), &obj).iter().map(type_error_message).collect();
        assert_eq!(got, expected, "obj {obj}");
    };
    check(json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}}), &[]);
    check(json!({"spec": {"replicas": 1.0}}), &[]);
    check(json!({"spec": {"replicas": null, "paused": null}}), &[]);
    check(
        json!({"spec": {"replicas": "3"}}),
        &["json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"],
    );
    check(
        json!({"spec": {"replicas": 1.5}}),
        &["json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"],
    );
    check(
        json!({"spec": {"replicas": 4294967296i64}}),
        &["json: cannot unmarshal number 4294967296 into Go struct field DeploymentSpec.spec.replicas of type int32"],
    );
    check(
        json!({"spec": {"paused": "yes"}}),
        &["json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool"],
    );
    check(
        json!({"spec": []}),
        &["json: cannot unmarshal array into Go struct field Deployment.spec of type v1.DeploymentSpec"],
    );
    check(
        json!({"spec": {"template": {"spec": {"containers": {"name": "a"}}}}}),
        &[
            "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container",
        ],
    );
    check(
        json!({"spec": {"template": {"spec": {"containers": [{"name": 5}]}}}}),
        &[
            "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.name of type string",
        ],
    );
    check(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": [true]}]}}}}),
        &[
            "json: cannot unmarshal bool into Go struct field Container.spec.template.spec.containers.args of type string",
        ],
    );
    check(
        json!({"metadata": {"labels": {"a": 1}}}),
        &["json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"],
    );
    check(
        json!({"metadata": {"labels": []}}),
        &["json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type map[string]string"],
    );
    check(
        json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": true}}}}),
        &[
            "json: cannot unmarshal bool into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge of type intstr.IntOrString",
        ],
    );
    check(json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}}}}), &[]);
    check(json!({"kind": 3}), &["json: cannot unmarshal number into Go struct field Deployment.kind of type string"]);
    check(
        json!({"metadata": {"creationTimestamp": "yesterday"}}),
        &["metadata.creationTimestamp: Invalid value: \"yesterday\": cannot parse \"yesterday\" as RFC 3339 date-time"],
    );
    check(json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}}), &[]);
    check(json!({"spec": {"bogus": "unknown fields are not type-checked"}}), &[]);
    let cm = definition("io.k8s.api.core.v1.ConfigMap").expect("ConfigMap");
    assert_eq!(check_types(cm, &json!({"binaryData": {"a": "aGVsbG8="}})), vec![]);
    assert_eq!(check_types(cm, &json!({"binaryData": {"a": "!!"}})).len(), 1);
    let pod = definition("io.k8s.api.core.v1.Pod").expect("Pod");
    let errors =
        check_types(pod, &json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": true}}}]}}));
    assert_eq!(
        errors.iter().map(type_error_message).collect::<Vec<_>>(),
        [
            "json: cannot unmarshal bool into Go struct field ResourceRequirements.spec.containers.resources.limits of type resource.Quantity"
        ]
    );
    assert_eq!(errors[0].field, "spec.containers[0].resources.limits[cpu]");
}

fn crd_schema() -> Value {
    json!({"type": "object", "required": ["spec"], "properties": {
        "spec": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "minLength": 2, "maxLength": 10, "pattern": "^[a-z:0-9]+$"},
            "replicas": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 5},
            "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "multipleOf": 0.5},
            "size": {"type": "string", "enum": ["S", "M"]},
            "when": {"type": "string", "format": "date-time"},
            "port": {"x-kubernetes-int-or-string": true},
            "opt": {"type": "string", "nullable": true},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3, "minItems": 1},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer", "default": 7}}}},
            "env": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2, "minProperties": 1},
            "mode": {"type": "string", "default": "fast"},
            "nested": {"type": "object", "properties": {"level": {"type": "integer", "default": 3}}}}}}})
}

#[test]
fn validate_custom_cases() {
    let schema = crd_schema();
    let check = |spec: Value, expected: &[&str]| {
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": spec});
        assert_eq!(rendered(&validate_custom(Node::new(&schema), &obj)), expected, "spec {spec}");
    };
    check(json!({"image": "nginx:1"}), &[]);
    check(json!({}), &["spec.image: Required value"]);
    check(
        json!({"image": "nginx", "replicas": "x"}),
        &["spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""],
    );
    check(json!({"image": "nginx", "replicas": 2.0}), &[]);
    check(
        json!({"image": "nginx", "replicas": 0}),
        &["spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"],
    );
    check(
        json!({"image": "nginx", "replicas": 6}),
        &["spec.replicas: Invalid value: 6: spec.replicas in body should be less than or equal to 5"],
    );
    check(
        json!({"image": "nginx", "ratio": 0}),
        &["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"],
    );
    check(
        json!({"image": "nginx", "ratio": 0.7}),
        &["spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"],
    );
    check(
        json!({"image": "nginx", "size": "XL"}),
        &["spec.size: Unsupported value: \"XL\": supported values: \"S\", \"M\""],
    );
    check(
        json!({"image": "a"}),
        &["spec.image: Invalid value: \"a\": spec.image in body should be at least 2 chars long"],
    );
    check(json!({"image": "abcdefghijkl"}), &["spec.image: Too long: may not be more than 10 bytes"]);
    check(
        json!({"image": "UPPER"}),
        &["spec.image: Invalid value: \"UPPER\": spec.image in body should match '^[a-z:0-9]+$'"],
    );
    check(
        json!({"image": "nginx", "when": "soon"}),
        &["spec.when: Invalid value: \"soon\": spec.when in body must be of type date-time: \"soon\""],
    );
    check(json!({"image": "nginx", "when": "2024-05-01T10:00:00Z", "port": "http", "opt": null}), &[]);
    check(json!({"image": "nginx", "port": 8080}), &[]);
    check(
        json!({"image": "nginx", "port": true}),
        &["spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""],
    );
    check(
        json!({"image": "nginx", "size": null}),
        &["spec.size: Invalid value: \"null\": spec.size in body must be of type string: \"null\""],
    );
    check(json!({"image": "nginx", "tags": ["a", "b", "a"]}), &["spec.tags[2]: Duplicate value: \"a\""]);
    check(
        json!({"image": "nginx", "tags": ["a", "b", "c", "d"]}),
        &["spec.tags: Too many: 4: must have at most 3 items"],
    );
    check(
        json!({"image": "nginx", "tags": []}),
        &["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"],
    );
    check(
        json!({"image": "nginx", "ports": [{"name": "a"}, {"name": "a"}]}),
        &["spec.ports[1]: Duplicate value: {\"name\":\"a\"}"],
    );
    check(
        json!({"image": "nginx", "env": {}}),
        &["spec.env: Invalid value: 0: spec.env in body should have at least 1 properties"],
    );
    check(
        json!({"image": "nginx", "env": {"a": "1", "b": "2", "c": "3"}}),
        &["spec.env: Too many: 3: must have at most 2 items"],
    );
    check(
        json!({"image": "nginx", "env": {"a": 1}}),
        &["spec.env.a: Invalid value: \"integer\": spec.env.a in body must be of type string: \"integer\""],
    );
    let missing_spec = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {}});
    assert_eq!(rendered(&validate_custom(Node::new(&schema), &missing_spec)), ["spec: Required value"]);
}

#[test]
fn junctions_of_a_custom_schema() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "properties": {
            "any": {"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]},
            "one": {"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
            "all": {"type": "string", "allOf": [{"minLength": 2}, {"pattern": "^x"}]},
            "not": {"type": "string", "not": {"enum": ["forbidden"]}},
            "shape": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}}}}});
    let check = |spec: Value, expected: &[&str]| {
        let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "spec": spec});
        assert_eq!(rendered(&validate_custom(Node::new(&schema), &obj)), expected, "spec {spec}");
    };
    check(json!({"any": 12, "one": "ax", "all": "xy", "not": "fine", "shape": {"a": "1"}}), &[]);
    check(json!({"any": -1}), &[]);
    check(json!({"any": 5}), &["spec.any: Invalid value: \"\": spec.any must validate at least one schema (anyOf)"]);
    check(
        json!({"one": "ab"}),
        &[
            "spec.one: Invalid value: \"\": spec.one must validate one and only one schema (oneOf). Found 2 valid alternatives",
        ],
    );
    check(
        json!({"one": "zz"}),
        &["spec.one: Invalid value: \"\": spec.one must validate one and only one schema (oneOf). Found none valid"],
    );
    check(
        json!({"all": "y"}),
        &[
            "spec.all: Invalid value: \"y\": spec.all in body should be at least 2 chars long",
            "spec.all: Invalid value: \"y\": spec.all in body should match '^x'",
        ],
    );
    check(json!({"not": "forbidden"}), &["spec.not: Invalid value: \"\": spec.not must not validate the schema (not)"]);
    check(
        json!({"shape": {"a": "1", "b": "2"}}),
        &[
            "spec.shape: Invalid value: \"\": spec.shape must validate one and only one schema (oneOf). Found 2 valid alternatives",
        ],
    );
    check(
        json!({"shape": {}}),
        &[
            "spec.shape: Invalid value: \"\": spec.shape must validate one and only one schema (oneOf). Found none valid",
        ],
    );
}

#[test]
fn apply_defaults_cases() {
    let schema = crd_schema();
    let check = |mut obj: Value, expected: Value| {
        apply_defaults(Node::new(&schema), &mut obj);
        assert_eq!(obj, expected);
    };
    check(json!({}), json!({}));
    check(json!({"spec": {}}), json!({"spec": {"mode": "fast"}}));
    check(json!({"spec": {"mode": "slow"}}), json!({"spec": {"mode": "slow"}}));
    check(json!({"spec": {"mode": null}}), json!({"spec": {"mode": "fast"}}));
    check(json!({"spec": {"nested": {}}}), json!({"spec": {"mode": "fast", "nested": {"level": 3}}}));
    check(
        json!({"spec": {"ports": [{"name": "a"}, {"name": "b", "n": 1}]}}),
        json!({"spec": {"mode": "fast", "ports": [{"name": "a", "n": 7}, {"name": "b", "n": 1}]}}),
    );
}

#[test]
fn structural_schema_cases() {
    let check = |schema: Value, expected: &[&str]| {
        assert_eq!(rendered(&validate_structural_schema(&schema)), expected, "schema {schema}");
    };
    check(crd_schema(), &[]);
    check(
        json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
        &["openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"],
    );
    check(json!({"type": "string"}), &["openAPIV3Schema.type: Invalid value: \"string\": must be object at the root"]);
    check(json!({"properties": {}}), &["openAPIV3Schema.type: Required value: must not be empty at the root"]);
    check(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}}),
        &["openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items"],
    );
    check(
        json!({"type": "object", "properties": {"a": {"$ref": "#/x", "type": "string"}}}),
        &["openAPIV3Schema.properties[a].$ref: Forbidden: $ref is not supported"],
    );
    check(
        json!({"type": "object", "properties": {"a": {"type": "thing"}}}),
        &[
            "openAPIV3Schema.properties[a].type: Unsupported value: \"thing\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
        ],
    );
    check(
        json!({"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"b": {"properties": {}}}}}}),
        &[],
    );
    check(json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true}}}), &[]);
    check(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
        &[
            "openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
        ],
    );
    check(
        json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string"}}}}}),
        &[],
    );
    check(
        json!({"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}}),
        &[
            "openAPIV3Schema.properties[n].default: Invalid value: \"string\": openAPIV3Schema.properties[n].default in body must be of type integer: \"string\"",
        ],
    );
    check(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "bag"}}}),
        &[
            "openAPIV3Schema.properties[l].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\"",
        ],
    );
    check(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"}}}),
        &[
            "openAPIV3Schema.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
            "openAPIV3Schema.properties[l].items.type: Invalid value: : must be object if parent array's x-kubernetes-list-type is map",
        ],
    );
    check(
        json!({"type": "object", "additionalProperties": false}),
        &["openAPIV3Schema.additionalProperties: Forbidden: additionalProperties cannot be set to false"],
    );
    check(
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
        &["openAPIV3Schema.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"],
    );
    check(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}),
        &["openAPIV3Schema.properties[a].pattern: Invalid value: \"(\": must be a valid regular expression"],
    );
    check(json!("nope"), &["openAPIV3Schema: Invalid value: : must be a JSON object"]);
    check(
        json!({"type": "object", "properties": {"l": {"type": "array", "items": [{"type": "string"}]}}}),
        &["openAPIV3Schema.properties[l].items: Forbidden: items must be a schema object and not an array"],
    );
}

/// A patch's object is checked where it differs from the stored one it was made from: the
/// top-level fields it left equal are not walked again; those it changed are, whole.
#[test]
fn checks_of_changed_fields_walk_only_what_differs() {
    let old = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "bogus": 1}, "status": {"replicas": 1}});
    let mut patched = old.clone();
    patched["status"] = json!({"replicas": "two", "extra": true});
    assert_eq!(prune_unknown_changed(deployment(), &mut patched, &old), vec![".status.extra"]);
    assert_eq!(patched["spec"]["bogus"], 1, "an unchanged field is left alone");
    assert_eq!(
        check_types_changed(deployment(), &patched, &old).iter().map(type_error_message).collect::<Vec<_>>(),
        vec!["json: cannot unmarshal string into Go struct field DeploymentStatus.status.replicas of type int32"]
    );
    // Changing a field walks all of it, as the whole-object checks do.
    let mut respec = old.clone();
    respec["spec"]["replicas"] = json!(2);
    assert_eq!(prune_unknown_changed(deployment(), &mut respec.clone(), &old), vec![".spec.bogus"]);
    assert_eq!(prune_unknown(deployment(), &mut respec), vec![".spec.bogus"]);
}
