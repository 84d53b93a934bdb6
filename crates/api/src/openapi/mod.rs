//! OpenAPI documents of the served API, generated from the schema facts and the
//! resource registry: the `/openapi/v3` index, one OpenAPI 3.0 document per
//! group/version, and the Swagger 2.0 document of `/openapi/v2`.
//!
//! They carry what clients use: the component schemas with types, formats, patch
//! strategies and list types (for `kubectl explain`, client-side `apply` and typed
//! clients), `x-kubernetes-group-version-kind` on each kind, and operations whose
//! `fieldValidation` parameter tells kubectl to leave validation to the server.
//! Descriptions are left out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;
use crate::schema;

#[cfg(test)]
mod tests;

/// A custom resource and the `openAPIV3Schema` of its served version.
#[derive(Debug, Clone, Copy)]
pub struct CustomResourceSchema<'a> {
    /// The resource, as the API server serves it.
    pub resource: &'a ResourceInfo,
    /// The version's `openAPIV3Schema` (a structural schema).
    pub schema: &'a Value,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The content types a PATCH accepts; strategic merge patch only for built-in kinds.
fn patch_content_types(builtin: bool) -> Vec<&'static str> {
    let mut types = vec!["application/json-patch+json", "application/merge-patch+json"];
    if builtin {
        types.push("application/strategic-merge-patch+json");
    }
    types.push("application/apply-patch+yaml");
    types
}

/// Which OpenAPI flavour a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// OpenAPI 3.0: refs to `#/components/schemas/`, `allOf` around refs with siblings.
    V3,
    /// Swagger 2.0: refs to `#/definitions/`, no `nullable`, no `oneOf`/`anyOf`.
    V2,
}

impl Flavor {
    fn ref_to(self, name: &str) -> String {
        match self {
            Flavor::V3 => format!("#/components/schemas/{name}"),
            Flavor::V2 => format!("#/definitions/{name}"),
        }
    }
}

/// The path of a group/version under `/openapi/v3`: `api/v1` or `apis/apps/v1`.
pub fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The `/openapi/v3` index: one entry per group/version served, pointing at its
/// document with the hash `hash_of(path)` gives for that path (`apis/apps/v1`).
pub fn v3_index(resources: &[ResourceInfo], hash_of: impl Fn(&str) -> String) -> Value {
    let paths: BTreeSet<String> = resources.iter().map(|r| group_version_path(&r.group, &r.version)).collect();
    let entries: Map<String, Value> = paths
        .into_iter()
        .map(|p| {
            let url = format!("/openapi/v3/{p}?hash={}", hash_of(&p));
            (p, json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": entries })
}

/// The schema name of a custom resource's kind: the reversed group, then version and
/// kind (`com.example.stable.v1.CronTab`), as Kubernetes names them.
pub fn custom_definition_name(resource: &ResourceInfo, kind: &str) -> String {
    let mut group: Vec<&str> = resource.group.split('.').collect();
    group.reverse();
    format!("{}.{}.{kind}", group.join("."), resource.version)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

/// Converts a built-in schema fact (bare-name refs, `type: [t, "null"]`, `oneOf` for
/// IntOrString and Quantity) into the document's flavour.
fn convert(schema: &Value, flavor: Flavor) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let mut reference = None;
    for (key, value) in map {
        match key.as_str() {
            "$ref" => reference = value.as_str().map(|r| flavor.ref_to(r.rsplit('/').next().unwrap_or(r))),
            "type" => {
                if let Some(t) = plain_type(value) {
                    out.insert("type".into(), Value::String(t));
                }
            }
            "oneOf" | "anyOf" => {
                let types: Vec<String> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|alt| alt.get("type").and_then(plain_type))
                    .collect();
                out.entry("type").or_insert_with(|| json!("string"));
                if types.iter().any(|t| t == "integer") && types.iter().any(|t| t == "string") {
                    out.insert("format".into(), json!("int-or-string"));
                }
            }
            "properties" => {
                let props: Map<String, Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, sub)| (name.clone(), convert(sub, flavor)))
                    .collect();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "not" => {
                out.insert(key.clone(), convert(value, flavor));
            }
            "additionalProperties" => {
                let v = if value.is_object() { convert(value, flavor) } else { value.clone() };
                out.insert(key.clone(), v);
            }
            "allOf" => {
                let list: Vec<Value> = value.as_array().into_iter().flatten().map(|s| convert(s, flavor)).collect();
                out.insert(key.clone(), Value::Array(list));
            }
            "nullable" if flavor == Flavor::V2 => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if flavor == Flavor::V2 && out.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.entry("type").or_insert_with(|| json!("string"));
        out.entry("format").or_insert_with(|| json!("int-or-string"));
    }
    match reference {
        None => Value::Object(out),
        Some(r) if out.is_empty() || flavor == Flavor::V2 => {
            out.insert("$ref".into(), Value::String(r));
            Value::Object(out)
        }
        Some(r) => {
            out.insert("allOf".into(), json!([{ "$ref": r }]));
            Value::Object(out)
        }
    }
}

/// A JSON Schema type (`"string"` or `["string", "null"]`) as one OpenAPI type.
fn plain_type(t: &Value) -> Option<String> {
    match t {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list.iter().filter_map(Value::as_str).find(|t| *t != "null").map(str::to_string),
        _ => None,
    }
}

/// Adds `name` and every built-in definition reachable from it to `names`.
fn collect_reachable(name: &str, names: &mut BTreeSet<String>) {
    if !names.insert(name.to_string()) {
        return;
    }
    if let Some(def) = schema::definition_value(name) {
        let mut refs = Vec::new();
        refs_in(def, &mut refs);
        for r in refs {
            collect_reachable(&r, names);
        }
    }
}

/// The built-in definitions a schema refers to (by bare name).
fn refs_in(schema: &Value, out: &mut Vec<String>) {
    let Value::Object(map) = schema else { return };
    if let Some(r) = map.get("$ref").and_then(Value::as_str) {
        out.push(r.rsplit('/').next().unwrap_or(r).to_string());
    }
    for (key, value) in map {
        match key.as_str() {
            "properties" => value.as_object().into_iter().flatten().for_each(|(_, s)| refs_in(s, out)),
            "items" | "additionalProperties" | "not" => refs_in(value, out),
            "allOf" | "oneOf" | "anyOf" => value.as_array().into_iter().flatten().for_each(|s| refs_in(s, out)),
            _ => {}
        }
    }
}

/// The schemas of a set of resources, keyed by definition name, in `flavor`.
fn schemas_for(resources: &[&ResourceInfo], custom: &[CustomResourceSchema<'_>], flavor: Flavor) -> Map<String, Value> {
    let mut names = BTreeSet::new();
    for common in [STATUS, DELETE_OPTIONS, PATCH, WATCH_EVENT] {
        collect_reachable(common, &mut names);
    }
    for r in resources.iter().filter(|r| !r.definition.is_empty()) {
        collect_reachable(&r.definition, &mut names);
        let list = format!("{}List", r.definition);
        if schema::has_definition(&list) {
            collect_reachable(&list, &mut names);
        }
        if r.has_subresource("scale") {
            collect_reachable(SCALE, &mut names);
        }
    }
    if !custom.is_empty() {
        collect_reachable(OBJECT_META, &mut names);
        collect_reachable(LIST_META, &mut names);
    }
    let mut out = Map::new();
    for name in names {
        if let Some(def) = schema::definition_value(&name) {
            out.insert(name, convert(def, flavor));
        }
    }
    for c in custom {
        let r = c.resource;
        let name = custom_definition_name(r, &r.kind);
        out.insert(name.clone(), custom_kind_schema(c, flavor));
        out.insert(
            custom_definition_name(r, &r.list_kind),
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": { "type": "string" },
                    "kind": { "type": "string" },
                    "metadata": { "$ref": flavor.ref_to(LIST_META) },
                    "items": { "type": "array", "items": { "$ref": flavor.ref_to(&name) } },
                },
                "x-kubernetes-group-version-kind": [gvk(&r.group, &r.version, &r.list_kind)],
            }),
        );
    }
    out
}

/// A custom resource's schema as a document component: `apiVersion`, `kind` and
/// `metadata` added when the CRD leaves them out, and the kind's GVK.
fn custom_kind_schema(c: &CustomResourceSchema<'_>, flavor: Flavor) -> Value {
    let r = c.resource;
    let mut schema = match convert(c.schema, flavor) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    schema.entry("type").or_insert_with(|| json!("object"));
    let props = schema.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(props) = props {
        props.entry("apiVersion").or_insert_with(|| json!({ "type": "string" }));
        props.entry("kind").or_insert_with(|| json!({ "type": "string" }));
        props.insert("metadata".into(), json!({ "$ref": flavor.ref_to(OBJECT_META) }));
    }
    schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(&r.group, &r.version, &r.kind)]));
    Value::Object(schema)
}

/// The definition name of a resource's kind, its list and whether it is built in.
fn names_of(r: &ResourceInfo) -> (String, String, bool) {
    if r.definition.is_empty() {
        (custom_definition_name(r, &r.kind), custom_definition_name(r, &r.list_kind), false)
    } else {
        let list = format!("{}List", r.definition);
        let list = if schema::has_definition(&list) { list } else { r.definition.clone() };
        (r.definition.clone(), list, true)
    }
}

/// One operation of a path: what it does, on which kind, with which parameters.
struct Op {
    method: &'static str,
    action: &'static str,
    verb_id: &'static str,
    kind_gvk: Value,
    request: Option<String>,
    response: String,
    mutating: bool,
    patch_types: Option<Vec<&'static str>>,
    list: bool,
}

fn query(name: &str, ty: &str, flavor: Flavor) -> Value {
    match flavor {
        Flavor::V3 => json!({ "name": name, "in": "query", "schema": { "type": ty } }),
        Flavor::V2 => json!({ "name": name, "in": "query", "type": ty, "uniqueItems": true }),
    }
}

fn path_param(name: &str, flavor: Flavor) -> Value {
    match flavor {
        Flavor::V3 => {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
        }
        Flavor::V2 => {
            json!({ "name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true })
        }
    }
}

fn operation(op: &Op, id_suffix: &str, flavor: Flavor) -> Value {
    let mut params = Vec::new();
    if op.mutating {
        params.push(query("dryRun", "string", flavor));
        params.push(query("fieldManager", "string", flavor));
        if op.method != "delete" {
            params.push(query("fieldValidation", "string", flavor));
        }
        if op.method == "patch" {
            params.push(query("force", "boolean", flavor));
        }
    }
    if op.list {
        for p in ["labelSelector", "fieldSelector", "resourceVersion", "continue"] {
            params.push(query(p, "string", flavor));
        }
        params.push(query("limit", "integer", flavor));
        params.push(query("watch", "boolean", flavor));
    }
    let mut out = Map::new();
    out.insert("operationId".into(), json!(format!("{}{id_suffix}", op.verb_id)));
    out.insert("x-kubernetes-action".into(), json!(op.action));
    out.insert("x-kubernetes-group-version-kind".into(), op.kind_gvk.clone());
    out.insert("parameters".into(), Value::Array(params));
    let response_schema = json!({ "$ref": flavor.ref_to(&op.response) });
    match flavor {
        Flavor::V3 => {
            let media = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];
            let content: Map<String, Value> =
                media.iter().map(|m| (m.to_string(), json!({ "schema": response_schema }))).collect();
            out.insert("responses".into(), json!({ "200": { "description": "OK", "content": content } }));
            if let Some(types) = &op.patch_types {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": { "$ref": flavor.ref_to(PATCH) } })))
                    .collect();
                out.insert("requestBody".into(), json!({ "required": true, "content": content }));
            } else if let Some(body) = &op.request {
                let content: Map<String, Value> = ["application/json", "application/yaml"]
                    .iter()
                    .map(|m| (m.to_string(), json!({ "schema": { "$ref": flavor.ref_to(body) } })))
                    .collect();
                out.insert("requestBody".into(), json!({ "required": true, "content": content }));
            }
        }
        Flavor::V2 => {
            out.insert("responses".into(), json!({ "200": { "description": "OK", "schema": response_schema } }));
            out.insert(
                "produces".into(),
                json!(["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]),
            );
            let body = match (&op.patch_types, op.request.as_deref()) {
                (Some(types), _) => {
                    out.insert("consumes".into(), json!(types));
                    Some(PATCH)
                }
                (None, Some(body)) => {
                    out.insert("consumes".into(), json!(["*/*"]));
                    Some(body)
                }
                (None, None) => None,
            };
            if let (Some(body), Some(Value::Array(params))) = (body, out.get_mut("parameters")) {
                params.push(json!({ "name": "body", "in": "body", "required": true, "schema": { "$ref": flavor.ref_to(body) } }));
            }
        }
    }
    Value::Object(out)
}

/// Title-cases a name for operation ids: `deployments` → `Deployments`.
fn title(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The paths of one resource (collection, item and its status/scale subresources).
fn resource_paths(r: &ResourceInfo, flavor: Flavor, paths: &mut BTreeMap<String, Value>) {
    let (kind_def, list_def, builtin) = names_of(r);
    let prefix =
        if r.group.is_empty() { format!("/api/{}", r.version) } else { format!("/apis/{}/{}", r.group, r.version) };
    let scoped = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let kind_gvk = gvk(&r.group, &r.version, &r.kind);
    let has = |verb: &str| r.verbs.iter().any(|v| v == verb);
    let id = format!("{}{}", title(&r.kind), if r.namespaced { "Namespaced" } else { "" });
    let base_params = |item: bool| {
        let mut p = Vec::new();
        if item {
            p.push(path_param("name", flavor));
        }
        if r.namespaced {
            p.push(path_param("namespace", flavor));
        }
        json!(p)
    };
    let op = |method: &'static str,
              action: &'static str,
              verb_id: &'static str,
              request: Option<&str>,
              response: &str,
              mutating: bool,
              patch: bool,
              list: bool| Op {
        method,
        action,
        verb_id,
        kind_gvk: kind_gvk.clone(),
        request: request.map(str::to_string),
        response: response.to_string(),
        mutating,
        patch_types: patch.then(|| patch_content_types(builtin)),
        list,
    };

    let mut collection = Map::new();
    if has("list") {
        collection.insert(
            "get".into(),
            operation(&op("get", "list", "list", None, &list_def, false, false, true), &id, flavor),
        );
    }
    if has("create") {
        collection.insert(
            "post".into(),
            operation(&op("post", "post", "create", Some(&kind_def), &kind_def, true, false, false), &id, flavor),
        );
    }
    if has("deletecollection") {
        collection.insert(
            "delete".into(),
            operation(
                &op("delete", "deletecollection", "deleteCollection", None, STATUS, true, false, true),
                &id,
                flavor,
            ),
        );
    }
    if !collection.is_empty() {
        collection.insert("parameters".into(), base_params(false));
        paths.insert(scoped.clone(), Value::Object(collection));
    }
    if r.namespaced && has("list") {
        let mut all = Map::new();
        let all_id = format!("{}ForAllNamespaces", title(&r.kind));
        all.insert(
            "get".into(),
            operation(&op("get", "list", "list", None, &list_def, false, false, true), &all_id, flavor),
        );
        all.insert("parameters".into(), json!([]));
        paths.insert(format!("{prefix}/{}", r.plural), Value::Object(all));
    }

    let mut item = Map::new();
    if has("get") {
        item.insert(
            "get".into(),
            operation(&op("get", "get", "read", None, &kind_def, false, false, false), &id, flavor),
        );
    }
    if has("update") {
        item.insert(
            "put".into(),
            operation(&op("put", "put", "replace", Some(&kind_def), &kind_def, true, false, false), &id, flavor),
        );
    }
    if has("patch") {
        item.insert(
            "patch".into(),
            operation(&op("patch", "patch", "patch", None, &kind_def, true, true, false), &id, flavor),
        );
    }
    if has("delete") {
        item.insert(
            "delete".into(),
            operation(&op("delete", "delete", "delete", Some(DELETE_OPTIONS), STATUS, true, false, false), &id, flavor),
        );
    }
    if !item.is_empty() {
        item.insert("parameters".into(), base_params(true));
        paths.insert(format!("{scoped}/{{name}}"), Value::Object(item));
    }

    for (sub, body) in [("status", kind_def.as_str()), ("scale", SCALE)] {
        if !r.has_subresource(sub) {
            continue;
        }
        let sub_id = format!("{id}{}", title(sub));
        let mut ops = Map::new();
        let sub_gvk = if sub == "scale" { gvk("autoscaling", "v1", "Scale") } else { kind_gvk.clone() };
        let mk = |method: &'static str,
                  action: &'static str,
                  verb_id: &'static str,
                  request: Option<&str>,
                  mutating: bool,
                  patch: bool| Op {
            method,
            action,
            verb_id,
            kind_gvk: sub_gvk.clone(),
            request: request.map(str::to_string),
            response: body.to_string(),
            mutating,
            patch_types: patch.then(|| patch_content_types(builtin)),
            list: false,
        };
        ops.insert("get".into(), operation(&mk("get", "get", "read", None, false, false), &sub_id, flavor));
        ops.insert("put".into(), operation(&mk("put", "put", "replace", Some(body), true, false), &sub_id, flavor));
        ops.insert("patch".into(), operation(&mk("patch", "patch", "patch", None, true, true), &sub_id, flavor));
        ops.insert("parameters".into(), base_params(true));
        paths.insert(format!("{scoped}/{{name}}/{sub}"), Value::Object(ops));
    }
}

/// The OpenAPI 3.0 document of one group/version (`/openapi/v3/apis/<group>/<version>`):
/// the schemas of its kinds and everything they refer to, and the operations of its
/// resources. `custom` supplies the schemas of custom resources of this group/version.
pub fn v3_group_version(
    group: &str,
    version: &str,
    resources: &[ResourceInfo],
    custom: &[CustomResourceSchema<'_>],
) -> Value {
    let served: Vec<&ResourceInfo> = resources.iter().filter(|r| r.group == group && r.version == version).collect();
    let custom: Vec<CustomResourceSchema<'_>> =
        custom.iter().filter(|c| c.resource.group == group && c.resource.version == version).copied().collect();
    let mut paths = BTreeMap::new();
    for r in &served {
        resource_paths(r, Flavor::V3, &mut paths);
    }
    for c in &custom {
        if !served.iter().any(|r| r.plural == c.resource.plural) {
            resource_paths(c.resource, Flavor::V3, &mut paths);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas_for(&served, &custom, Flavor::V3) },
    })
}

/// The Swagger 2.0 document of `/openapi/v2`: every served resource's operations and
/// the definitions of all their kinds (custom resources' schemas included).
pub fn v2_document(resources: &[ResourceInfo], custom: &[CustomResourceSchema<'_>]) -> Value {
    let served: Vec<&ResourceInfo> = resources.iter().collect();
    let mut paths = BTreeMap::new();
    for r in &served {
        resource_paths(r, Flavor::V2, &mut paths);
    }
    for c in custom {
        if !served
            .iter()
            .any(|r| r.group == c.resource.group && r.version == c.resource.version && r.plural == c.resource.plural)
        {
            resource_paths(c.resource, Flavor::V2, &mut paths);
        }
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "definitions": schemas_for(&served, custom, Flavor::V2),
    })
}
