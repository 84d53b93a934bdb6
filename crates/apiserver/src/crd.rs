//! CustomResourceDefinitions: serving the resources they define. When a CRD is written
//! the catalog is rebuilt at once (so a custom resource can be created right after its
//! CRD), the CRD's status records NamesAccepted and Established, and deleting a CRD
//! deletes its custom resources.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::handler::Ctx;
use crate::object;
use crate::resources::{CustomInfo, Served};
use crate::server::App;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

fn is_crd(ctx: &Ctx) -> bool {
    ctx.served.info.group == "apiextensions.k8s.io" && ctx.served.info.plural == "customresourcedefinitions"
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
    let Ok(versions) = berth_api::crd::versions(crd) else { return Vec::new() };
    let spec_versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .into_iter()
        .filter(|v| v.served)
        .map(|v| {
            let raw =
                spec_versions.iter().find(|sv| sv["name"] == json!(v.resource.version)).cloned().unwrap_or_default();
            let schema = v
                .schema
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }));
            Served {
                custom: Some(CustomInfo {
                    schema,
                    printer_columns: raw["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                    scale: raw.pointer("/subresources/scale").cloned(),
                    storage: v.storage,
                }),
                info: v.resource,
            }
        })
        .collect()
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
