//! CustomResourceDefinitions: serving the resources they define. When a CRD is written
//! the catalog is rebuilt at once (so a custom resource can be created right after its
//! CRD), the CRD's status records NamesAccepted and Established, and deleting a CRD
//! deletes its custom resources.

use std::sync::Arc;

use berth_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

use crate::handler::Ctx;
use crate::object;
use crate::resources::{CustomInfo, Served};
use crate::server::App;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

fn is_crd(ctx: &Ctx) -> bool {
    ctx.served.info.group == "apiextensions.k8s.io" && ctx.served.info.plural == "customresourcedefinitions"
}

/// The checks a CRD must pass beyond its schema: name is `<plural>.<group>`, versions,
/// exactly one storage version, and structural version schemas.
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec.pointer("/names/plural").and_then(Value::as_str).unwrap_or("");
    let name = object::name(crd);
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid("metadata.name", json!(name), format!("must be spec.names.plural+\".\"+spec.group")));
    }
    if spec.pointer("/names/kind").and_then(Value::as_str).unwrap_or("").is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
    }
    let storage = versions.iter().filter(|v| v["storage"] == json!(true)).count();
    if !versions.is_empty() && storage != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            json!(storage),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) => {
                for mut e in berth_api::fields::validate_structural_schema(schema) {
                    e.field = format!("spec.versions[{i}].schema.openAPIV3Schema{}", prefix_dot(&e.field));
                    errors.push(e);
                }
            }
            None => errors.push(FieldError::required(format!("spec.versions[{i}].schema.openAPIV3Schema"), "schemas are required")),
        }
    }
    errors
}

fn prefix_dot(field: &str) -> String {
    if field.is_empty() || field.starts_with('.') || field.starts_with('[') { field.to_string() } else { format!(".{field}") }
}

/// Sets the status a freshly accepted CRD reports.
pub fn set_status(crd: &mut Value) {
    let now = object::now();
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter(|v| v["storage"] == json!(true)).map(|v| v["name"].clone()).collect())
        .unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            { "type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found" },
            { "type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted" },
        ],
    });
}

/// The served resources one CRD defines (one per served version).
pub fn served_of(crd: &Value) -> Vec<Served> {
    let spec = &crd["spec"];
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let strings = |p: &str| -> Vec<String> {
        spec.pointer(p).and_then(Value::as_array).map(|l| l.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let group = s("/group");
    let kind = s("/names/kind");
    let plural = s("/names/plural");
    let singular = {
        let v = s("/names/singular");
        if v.is_empty() { kind.to_lowercase() } else { v }
    };
    let list_kind = {
        let v = s("/names/listKind");
        if v.is_empty() { format!("{kind}List") } else { v }
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"] == json!(false) {
            continue;
        }
        let mut subresources = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subresources.push("status".to_string());
        }
        let scale = v.pointer("/subresources/scale").cloned();
        if scale.is_some() {
            subresources.push("scale".to_string());
        }
        out.push(Served {
            info: ResourceInfo {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or("").to_string(),
                kind: kind.clone(),
                list_kind: list_kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                short_names: strings("/names/shortNames"),
                categories: strings("/names/categories"),
                namespaced,
                subresources,
                verbs: ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                definition: String::new(),
            },
            custom: Some(CustomInfo {
                schema: v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })),
                printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                scale,
                storage: v["storage"] == json!(true),
            }),
        });
    }
    out
}

/// Rebuilds the custom part of the catalog from every CRD in `crds`.
fn rebuild(app: &App, crds: impl Iterator<Item = Value>) {
    let mut custom = Vec::new();
    for crd in crds {
        if object::is_deleting(&crd) {
            continue;
        }
        custom.extend(served_of(&crd));
    }
    app.resources.set_custom(custom);
}

fn current_crds(app: &App, replace: Option<&Value>, remove: Option<&str>) -> Vec<Value> {
    let (items, _) = app.cache.list(CRD_PREFIX);
    let mut out: Vec<Value> = items
        .iter()
        .map(|o| o.value.clone())
        .filter(|c| Some(object::name(c)) != replace.map(object::name) && Some(object::name(c)) != remove)
        .collect();
    if let Some(r) = replace {
        out.push(r.clone());
    }
    out
}

/// Loads every stored CRD into the catalog (at start).
pub fn load_all(app: &App) {
    rebuild(app, current_crds(app, None, None).into_iter());
}

/// Called after any successful write: a written CRD updates the catalog at once.
pub fn after_write(ctx: &Ctx, obj: &Value) {
    if is_crd(ctx) && !ctx.params.dry_run {
        rebuild(&ctx.app, current_crds(&ctx.app, Some(obj), None).into_iter());
    }
}

/// Called after an object was removed: a deleted CRD stops being served and its objects are deleted.
pub fn after_delete(ctx: &Ctx, obj: &Value) {
    if !is_crd(ctx) {
        return;
    }
    let name = object::name(obj).to_string();
    rebuild(&ctx.app, current_crds(&ctx.app, None, Some(&name)).into_iter());
    let group = obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or("").to_string();
    let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or("").to_string();
    if group.is_empty() || plural.is_empty() {
        return;
    }
    let app: Arc<App> = ctx.app.clone();
    tokio::spawn(async move {
        let prefix = format!("/registry/{group}/{plural}/");
        let (items, _) = app.cache.list(&prefix);
        for item in items {
            if let Err(e) = app.store.delete(&item.key, None).await {
                tracing::debug!(key = item.key, error = %e, "deleting custom resource of a deleted CRD");
            }
        }
    });
}
