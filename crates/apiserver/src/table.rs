//! Server-side printing: `meta.k8s.io/v1` Table responses, from the built-in printers
//! (`berth_api::table`) or a custom resource's `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::resources::Served;

/// The column definitions for a resource.
pub fn column_definitions(served: &Served) -> Vec<Value> {
    if let Some(custom) = &served.custom {
        let mut cols = vec![
            json!({ "name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0 }),
        ];
        for c in &custom.printer_columns {
            cols.push(json!({
                "name": c.get("name").cloned().unwrap_or(json!("")),
                "type": c.get("type").cloned().unwrap_or(json!("string")),
                "format": c.get("format").cloned().unwrap_or(json!("")),
                "description": c.get("description").cloned().unwrap_or(json!("")),
                "priority": c.get("priority").cloned().unwrap_or(json!(0)),
            }));
        }
        if custom.printer_columns.is_empty() {
            cols.push(json!({ "name": "Age", "type": "date", "format": "", "description": "", "priority": 0 }));
        }
        return cols;
    }
    berth_api::table::columns(&served.info)
        .into_iter()
        .map(|c| json!({ "name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority }))
        .collect()
}

/// The cells of one object's row.
pub fn cells(served: &Served, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    if let Some(custom) = &served.custom {
        let mut cells = vec![json!(crate::object::name(obj))];
        for c in &custom.printer_columns {
            let path = c.get("jsonPath").and_then(Value::as_str).unwrap_or("");
            let v = json_path(obj, path).cloned().unwrap_or(Value::Null);
            let ty = c.get("type").and_then(Value::as_str).unwrap_or("string");
            cells.push(match (ty, &v) {
                ("date", Value::String(s)) => json!(age(s, now)),
                _ => v,
            });
        }
        if custom.printer_columns.is_empty() {
            let created = obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("");
            cells.push(json!(age(created, now)));
        }
        return cells;
    }
    berth_api::table::row(&served.info, obj, now)
}

fn age(ts: &str, now: jiff::Timestamp) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => berth_api::table::human_duration(now.duration_since(t).as_secs()),
        Err(_) => "<unknown>".into(),
    }
}

/// A simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`) as printer columns use.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// The object embedded in a row, per `includeObject`.
pub fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

/// A Table of `objects`.
pub fn table<'a>(
    served: &Served,
    objects: impl Iterator<Item = &'a Value>,
    include: &str,
    resource_version: &str,
    continue_token: Option<&str>,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> =
        objects.map(|o| json!({ "cells": cells(served, o, now), "object": row_object(o, include) })).collect();
    let mut meta = json!({ "resourceVersion": resource_version });
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = json!(column_definitions(served));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_reads_nested_fields_and_indexes() {
        let obj = json!({ "spec": { "replicas": 3 }, "status": { "conditions": [{ "type": "Ready" }] } });
        assert_eq!(json_path(&obj, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".status.conditions[0].type"), Some(&json!("Ready")));
        assert_eq!(json_path(&obj, ".status.conditions[5].type"), None);
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }
}
