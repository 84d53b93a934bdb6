//! Tests of the OpenAPI v3 index, per-group/version documents and the v2 document.

use serde_json::{Value, json};

use super::*;

fn resource(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    subresources: &[&str],
    definition: &str,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: vec![],
        categories: vec![],
        namespaced,
        subresources: subresources.iter().map(|s| s.to_string()).collect(),
        verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        definition: definition.into(),
    }
}

fn served() -> Vec<ResourceInfo> {
    vec![
        resource("", "v1", "Pod", "pods", true, &["status", "log", "exec"], "io.k8s.api.core.v1.Pod"),
        resource("", "v1", "Namespace", "namespaces", false, &["status", "finalize"], "io.k8s.api.core.v1.Namespace"),
        resource(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
            "io.k8s.api.apps.v1.Deployment",
        ),
        resource("stable.example.com", "v1", "CronTab", "crontabs", true, &["status"], ""),
    ]
}

fn crontab_schema() -> Value {
    json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "cronSpec": {"type": "string"}, "replicas": {"type": "integer", "nullable": true},
        "port": {"x-kubernetes-int-or-string": true}}}}})
}

/// Every `$ref` in `doc` (string-valued) must name an entry of the document's schemas.
fn assert_refs_resolve(doc: &Value, prefix: &str, schemas: &Value) {
    fn walk(v: &Value, prefix: &str, schemas: &Value, count: &mut usize) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("ref {r} lacks {prefix}"));
                    assert!(schemas.get(name).is_some(), "dangling ref {r}");
                    *count += 1;
                }
                m.values().for_each(|x| walk(x, prefix, schemas, count));
            }
            Value::Array(l) => l.iter().for_each(|x| walk(x, prefix, schemas, count)),
            _ => {}
        }
    }
    let mut count = 0;
    walk(doc, prefix, schemas, &mut count);
    assert!(count > 10, "expected refs, found {count}");
}

/// No schema may keep a JSON Schema type list (`["string", "null"]`).
fn assert_plain_types(v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(t) = m.get("type") {
                // A property named "type" holds a schema object; a keyword holds a string.
                assert!(t.is_string() || t.is_object(), "type list left: {t}");
            }
            m.values().for_each(assert_plain_types);
        }
        Value::Array(l) => l.iter().for_each(assert_plain_types),
        _ => {}
    }
}

fn has_param(op: &Value, name: &str) -> bool {
    op["parameters"].as_array().is_some_and(|p| p.iter().any(|x| x["name"] == name))
}

#[test]
fn index_lists_every_group_version() {
    let index = v3_index(&served(), |p| format!("H{}", p.len()));
    let paths = index["paths"].as_object().expect("paths");
    let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(keys, ["api/v1", "apis/apps/v1", "apis/stable.example.com/v1"]);
    assert_eq!(index["paths"]["apis/apps/v1"]["serverRelativeURL"], "/openapi/v3/apis/apps/v1?hash=H12");
    assert_eq!(v3_index(&[], |_| String::new()), json!({"paths": {}}));
}

#[test]
fn convert_cases() {
    let check =
        |input: Value, flavor: Flavor, expected: Value| assert_eq!(convert(&input, flavor), expected, "input {input}");
    check(json!({"type": ["string", "null"]}), Flavor::V3, json!({"type": "string"}));
    check(json!({"$ref": "a.B"}), Flavor::V3, json!({"$ref": "#/components/schemas/a.B"}));
    check(json!({"$ref": "a.B"}), Flavor::V2, json!({"$ref": "#/definitions/a.B"}));
    check(
        json!({"$ref": "a.B", "x-kubernetes-patch-strategy": "retainKeys"}),
        Flavor::V3,
        json!({"allOf": [{"$ref": "#/components/schemas/a.B"}], "x-kubernetes-patch-strategy": "retainKeys"}),
    );
    check(
        json!({"$ref": "a.B", "x-kubernetes-patch-strategy": "retainKeys"}),
        Flavor::V2,
        json!({"$ref": "#/definitions/a.B", "x-kubernetes-patch-strategy": "retainKeys"}),
    );
    check(
        json!({"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]}),
        Flavor::V3,
        json!({"type": "string", "format": "int-or-string"}),
    );
    check(json!({"oneOf": [{"type": "string"}, {"type": "number"}]}), Flavor::V2, json!({"type": "string"}));
    check(
        json!({"type": "object", "properties": {"$ref": {"type": "string"}, "a": {"items": {"$ref": "x"}, "type": "array"}}}),
        Flavor::V3,
        json!({"type": "object", "properties": {"$ref": {"type": "string"}, "a": {"items": {"$ref": "#/components/schemas/x"}, "type": "array"}}}),
    );
    check(json!({"type": "integer", "nullable": true}), Flavor::V2, json!({"type": "integer"}));
    check(json!({"type": "integer", "nullable": true}), Flavor::V3, json!({"type": "integer", "nullable": true}));
    check(
        json!({"x-kubernetes-int-or-string": true}),
        Flavor::V2,
        json!({"x-kubernetes-int-or-string": true, "type": "string", "format": "int-or-string"}),
    );
    check(json!("odd"), Flavor::V3, json!("odd"));
}

#[test]
fn v3_apps_document() {
    let doc = v3_group_version("apps", "v1", &served(), &[]);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(doc["openapi"], "3.0.0");
    assert_refs_resolve(&doc, "#/components/schemas/", schemas);
    assert_plain_types(schemas);
    let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(schemas.get("io.k8s.api.apps.v1.DeploymentList").is_some());
    assert!(schemas.get("io.k8s.api.autoscaling.v1.Scale").is_some());
    assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none(), "core kinds are not in apps/v1");
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"],
        json!({"type": "integer", "format": "int32"})
    );

    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert!(has_param(patch, "fieldValidation"));
    assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
    assert!(patch["requestBody"]["content"].get("application/apply-patch+yaml").is_some());
    assert!(has_param(&item["put"], "fieldValidation"));
    assert!(!has_param(&item["get"], "fieldValidation"));
    assert_eq!(item["delete"]["x-kubernetes-action"], "delete");
    let collection = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert!(has_param(&collection["post"], "fieldValidation"));
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(collection["delete"]["x-kubernetes-action"], "deletecollection");
    assert!(doc["paths"].get("/apis/apps/v1/deployments").is_some());
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(scale["patch"]["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(doc["paths"].get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status").is_some());
}

#[test]
fn v3_core_document_has_cluster_and_namespaced_paths() {
    let doc = v3_group_version("", "v1", &served(), &[]);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
    assert!(paths.contains_key("/api/v1/pods"));
    assert!(paths.contains_key("/api/v1/namespaces/{name}"));
    assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/namespaces"));
    assert_eq!(
        doc["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"],
        json!({"type": "string", "format": "int-or-string"})
    );
    let schemas = &doc["components"]["schemas"];
    assert_refs_resolve(&doc, "#/components/schemas/", schemas);
    for kind in ["io.k8s.api.core.v1.Pod", "io.k8s.api.core.v1.Namespace"] {
        assert!(schemas[kind]["x-kubernetes-group-version-kind"].is_array(), "{kind} lacks its GVK");
    }
}

#[test]
fn v3_custom_resource_document() {
    let resources = served();
    let schema = crontab_schema();
    let custom = [CustomResourceSchema { resource: &resources[3], schema: &schema }];
    let doc = v3_group_version("stable.example.com", "v1", &resources, &custom);
    let schemas = &doc["components"]["schemas"];
    assert_refs_resolve(&doc, "#/components/schemas/", schemas);
    let crontab = &schemas["com.example.stable.v1.CronTab"];
    assert_eq!(
        crontab["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    assert_eq!(
        crontab["properties"]["metadata"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(crontab["properties"]["spec"]["properties"]["cronSpec"]["type"], "string");
    assert!(schemas.get("com.example.stable.v1.CronTabList").is_some());
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
    assert!(has_param(patch, "fieldValidation"));
    assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_none());
    assert!(patch["requestBody"]["content"].get("application/merge-patch+json").is_some());
    // Another group/version does not carry the custom schema.
    let other = v3_group_version("apps", "v1", &resources, &custom);
    assert!(other["components"]["schemas"].get("com.example.stable.v1.CronTab").is_none());
}

#[test]
fn v2_document_shape() {
    let resources = served();
    let schema = crontab_schema();
    let custom = [CustomResourceSchema { resource: &resources[3], schema: &schema }];
    let doc = v2_document(&resources, &custom);
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    assert_refs_resolve(&doc, "#/definitions/", defs);
    assert_plain_types(defs);
    for name in ["io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment", "com.example.stable.v1.CronTab"] {
        assert!(defs[name]["x-kubernetes-group-version-kind"].is_array(), "{name} lacks its GVK");
    }
    assert!(
        defs["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"]["replicas"].get("nullable").is_none()
    );
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(has_param(patch, "fieldValidation"));
    assert!(has_param(patch, "body"));
    assert!(patch["consumes"].as_array().is_some_and(|c| c.contains(&json!("application/strategic-merge-patch+json"))));
    assert!(doc["paths"].get("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}").is_some());
    assert!(doc["paths"].get("/api/v1/namespaces/{namespace}/pods/{name}/status").is_some());
}

#[test]
fn custom_definition_names() {
    let check = |group: &str, kind: &str, expected: &str| {
        let r = resource(group, "v1", kind, "x", true, &[], "");
        assert_eq!(custom_definition_name(&r, kind), expected);
    };
    check("stable.example.com", "CronTab", "com.example.stable.v1.CronTab");
    check("example", "Thing", "example.v1.Thing");
    check("a.b", "ThingList", "b.a.v1.ThingList");
}
