//! The rules a CustomResourceDefinition's `openAPIV3Schema` must follow to be accepted:
//! a structural schema (every position typed, no `$ref`), valid Kubernetes extensions,
//! `metadata` limited to name/generateName, and defaults valid against their schema.

use serde_json::Value;

use super::custom::validate_value;
use crate::field_error::FieldError;
use crate::schema::Node;

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The problems of a CRD's `openAPIV3Schema`, with paths under `openAPIV3Schema`.
pub fn validate_structural_schema(schema: &Value) -> Vec<FieldError> {
    validate_structural_schema_at(schema, "openAPIV3Schema")
}

/// Like [`validate_structural_schema`], with paths under `base`
/// (`spec.versions[0].schema.openAPIV3Schema`).
pub fn validate_structural_schema_at(schema: &Value, base: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !schema.is_object() {
        out.push(FieldError::invalid(base, "", "must be a JSON object"));
        return out;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {}
        None if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => {}
        None => out.push(FieldError::required(format!("{base}.type"), "must not be empty at the root")),
        Some(other) => {
            out.push(FieldError::invalid(format!("{base}.type"), format!("\"{other}\""), "must be object at the root"))
        }
    }
    if let Some(meta) = schema.get("properties").and_then(|p| p.get("metadata")) {
        check_root_metadata(meta, &format!("{base}.properties[metadata]"), &mut out);
    }
    walk(schema, base, "root", false, &mut out);
    out
}

fn check_root_metadata(meta: &Value, path: &str, out: &mut Vec<FieldError>) {
    let allowed = ["type", "properties", "description"];
    let extra_keys = meta.as_object().is_some_and(|m| m.keys().any(|k| !allowed.contains(&k.as_str())));
    let props_ok = meta.get("properties").and_then(Value::as_object).is_none_or(|p| {
        p.iter().all(|(k, v)| {
            (k == "name" || k == "generateName") && v.get("type").and_then(Value::as_str).is_none_or(|t| t == "string")
        })
    });
    if extra_keys || !props_ok {
        out.push(FieldError::forbidden(
            path,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// Checks one schema position; `role` says what it is for the "must not be empty" message.
fn walk(node: &Value, path: &str, role: &str, under_preserve: bool, out: &mut Vec<FieldError>) {
    let Some(map) = node.as_object() else {
        out.push(FieldError::invalid(path, "", "must be a schema object"));
        return;
    };
    let flag = |k: &str| map.get(k).and_then(Value::as_bool);
    let int_or_string = flag("x-kubernetes-int-or-string") == Some(true);
    let preserve = flag("x-kubernetes-preserve-unknown-fields") == Some(true);

    if map.contains_key("$ref") {
        out.push(FieldError::forbidden(format!("{path}.$ref"), "$ref is not supported"));
    }
    match map.get("type") {
        None | Some(Value::Null) => {
            if !int_or_string && !preserve && !under_preserve && role != "root" {
                out.push(FieldError::required(
                    format!("{path}.type"),
                    format!("must not be empty for specified {role}"),
                ));
            }
        }
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {
            if int_or_string {
                out.push(FieldError::invalid(
                    format!("{path}.type"),
                    format!("\"{t}\""),
                    "must be empty if x-kubernetes-int-or-string is true",
                ));
            }
        }
        Some(Value::String(t)) => {
            out.push(FieldError::not_supported(format!("{path}.type"), format!("\"{t}\""), &TYPES))
        }
        Some(other) => out.push(FieldError::invalid(format!("{path}.type"), other, "must be a string")),
    }
    if flag("x-kubernetes-preserve-unknown-fields") == Some(false) {
        out.push(FieldError::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        ));
    }
    if map.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(FieldError::forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties cannot be set to false",
        ));
    }
    if map.contains_key("properties") && map.get("additionalProperties").is_some_and(Value::is_object) {
        out.push(FieldError::forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if flag("uniqueItems") == Some(true) {
        out.push(FieldError::forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(p) = map.get("pattern").and_then(Value::as_str)
        && regex::Regex::new(p).is_err()
    {
        out.push(FieldError::invalid(
            format!("{path}.pattern"),
            format!("{p:?}"),
            "must be a valid regular expression",
        ));
    }
    check_list_type(map, path, out);

    let preserve_below = under_preserve || preserve;
    if let Some(props) = map.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (name, sub) in props {
                    walk(sub, &format!("{path}.properties[{name}]"), "object fields", preserve_below, out);
                }
            }
            None => out.push(FieldError::invalid(format!("{path}.properties"), "", "must be an object")),
        }
    }
    match map.get("items") {
        Some(Value::Array(_)) => {
            out.push(FieldError::forbidden(format!("{path}.items"), "items must be a schema object and not an array"))
        }
        Some(items) => walk(items, &format!("{path}.items"), "array items", preserve_below, out),
        None if map.get("type").and_then(Value::as_str) == Some("array") => {
            out.push(FieldError::required(format!("{path}.items"), "must be specified"));
        }
        None => {}
    }
    if let Some(additional @ Value::Object(_)) = map.get("additionalProperties") {
        walk(additional, &format!("{path}.additionalProperties"), "object fields", preserve_below, out);
    }
    if let Some(default) = map.get("default") {
        out.extend(validate_value(Node::new(node), default, &format!("{path}.default")));
    }
}

fn check_list_type(map: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<FieldError>) {
    let list_type = map.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = map.get("x-kubernetes-list-map-keys");
    match list_type {
        None => {
            if keys.is_some() {
                out.push(FieldError::forbidden(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    "must not be set if x-kubernetes-list-type is not map",
                ));
            }
        }
        Some("atomic" | "set") => {
            if keys.is_some() {
                out.push(FieldError::forbidden(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    "must not be set if x-kubernetes-list-type is not map",
                ));
            }
        }
        Some("map") => {
            let key_names: Vec<&str> = keys
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if key_names.is_empty() {
                out.push(FieldError::required(
                    format!("{path}.x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                ));
            }
            let items = map.get("items");
            if items.and_then(|i| i.get("type")).and_then(Value::as_str) != Some("object") {
                out.push(FieldError::invalid(
                    format!("{path}.items.type"),
                    "",
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let props = items.and_then(|i| i.get("properties"));
                for k in key_names {
                    if props.and_then(|p| p.get(k)).is_none() {
                        out.push(FieldError::required(
                            format!("{path}.items.properties[{k}]"),
                            "entries for x-kubernetes-list-map-keys must be specified properties",
                        ));
                    }
                }
            }
        }
        Some(other) => out.push(FieldError::not_supported(
            format!("{path}.x-kubernetes-list-type"),
            format!("\"{other}\""),
            &["atomic", "set", "map"],
        )),
    }
}
