//! OpenAPI v3 validation and defaulting of custom resources against their CRD's
//! structural `openAPIV3Schema`, worded as the apiextensions apiserver words it.

use serde_json::{Map, Value};

use super::{as_integer, check_format, child, has_type, json_type};
use crate::field_error::{FieldError, FieldErrorKind};
use crate::schema::Node;

/// Validates `value` at `path` against `schema` (not as a root object).
pub(crate) fn validate_value(schema: Node<'_>, value: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    validate(schema, value, path, false, &mut out);
    out
}

/// Validates a custom resource against its CRD schema: type, format, enum, required,
/// numeric bounds, multipleOf, string length and pattern, item and property counts,
/// uniqueItems, nullable, `x-kubernetes-list-type` set/map uniqueness,
/// `x-kubernetes-int-or-string`, and the `allOf` / `anyOf` / `oneOf` / `not` value
/// validations (worded as go-openapi's validator, which the apiextensions apiserver uses). The root's `apiVersion`, `kind` and `metadata` are
/// left to the generic object checks.
pub fn validate_custom(schema: Node<'_>, obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    validate(schema, obj, "", true, &mut out);
    out
}

fn raw_f64(node: Node<'_>, key: &str) -> Option<f64> {
    node.raw().get(key).and_then(Value::as_f64)
}

fn raw_u64(node: Node<'_>, key: &str) -> Option<u64> {
    node.raw().get(key).and_then(Value::as_u64)
}

fn raw_bool(node: Node<'_>, key: &str) -> bool {
    node.raw().get(key).and_then(Value::as_bool) == Some(true)
}

/// Renders a value for a message: strings quoted, others as JSON.
fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn type_mismatch(path: &str, value: &Value, expected: &str) -> FieldError {
    let got = json_type(value);
    FieldError {
        kind: FieldErrorKind::TypeInvalid,
        field: path.to_string(),
        value: Some(format!("\"{got}\"")),
        detail: format!("{path} in body must be of type {expected}: \"{got}\""),
    }
}

fn validate(node: Node<'_>, value: &Value, path: &str, root: bool, out: &mut Vec<FieldError>) {
    if value.is_null() {
        if raw_bool(node, "nullable") || node.type_name().is_none() && !node.is_int_or_string() {
            return;
        }
        let expected = if node.is_int_or_string() { "integer,string" } else { node.type_name().unwrap_or("object") };
        out.push(type_mismatch(path, value, expected));
        return;
    }
    if node.is_int_or_string() {
        if as_integer(value).is_none() && !value.is_string() {
            out.push(type_mismatch(path, value, "integer,string"));
            return;
        }
    } else if let Some(ty) = node.type_name()
        && !has_type(value, ty)
    {
        out.push(type_mismatch(path, value, ty));
        return;
    }

    if let Some(allowed) = node.enum_values()
        && !allowed.contains(value)
    {
        let names: Vec<String> =
            allowed.iter().map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| show(a))).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        out.push(FieldError::not_supported(path, show(value), &refs));
    }

    match value {
        Value::Number(_) => validate_number(node, value, path, out),
        Value::String(s) => validate_string(node, s, path, out),
        Value::Array(items) => validate_array(node, items, path, out),
        Value::Object(map) => validate_object(node, map, path, root, out),
        _ => {}
    }
    validate_junctions(node, value, path, root, out);
}

/// The schemas under `key` (`allOf`, `anyOf`, `oneOf`): a structural schema's junctors
/// carry value validations only (no types of their own).
fn alternatives<'a>(node: Node<'a>, key: &str) -> impl Iterator<Item = Node<'a>> {
    node.raw().get(key).and_then(Value::as_array).into_iter().flatten().map(Node::new)
}

/// Whether `value` meets `schema` with no error.
fn satisfies(schema: Node<'_>, value: &Value, path: &str, root: bool) -> bool {
    let mut errors = Vec::new();
    validate(schema, value, path, root, &mut errors);
    errors.is_empty()
}

/// `allOf` (every schema's errors), `anyOf` (at least one met), `oneOf` (exactly one met)
/// and `not` (not met).
fn validate_junctions(node: Node<'_>, value: &Value, path: &str, root: bool, out: &mut Vec<FieldError>) {
    for schema in alternatives(node, "allOf") {
        validate(schema, value, path, root, out);
    }
    // go-openapi's composite errors carry no value: Kubernetes shows "".
    let shown = || "\"\"";
    let name = if path.is_empty() { "<nil>" } else { path };
    let mut any_of = alternatives(node, "anyOf").peekable();
    if any_of.peek().is_some() && !any_of.any(|schema| satisfies(schema, value, path, root)) {
        out.push(FieldError::invalid(path, shown(), format!("{name} must validate at least one schema (anyOf)")));
    }
    let one_of: Vec<Node<'_>> = alternatives(node, "oneOf").collect();
    if !one_of.is_empty() {
        match one_of.iter().filter(|schema| satisfies(**schema, value, path, root)).count() {
            1 => {}
            0 => out.push(FieldError::invalid(
                path,
                shown(),
                format!("{name} must validate one and only one schema (oneOf). Found none valid"),
            )),
            n => out.push(FieldError::invalid(
                path,
                shown(),
                format!("{name} must validate one and only one schema (oneOf). Found {n} valid alternatives"),
            )),
        }
    }
    if let Some(not) = node.raw().get("not")
        && satisfies(Node::new(not), value, path, root)
    {
        out.push(FieldError::invalid(path, shown(), format!("{name} must not validate the schema (not)")));
    }
}

fn validate_number(node: Node<'_>, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else { return };
    let shown = show(value);
    if let Some(min) = raw_f64(node, "minimum") {
        if raw_bool(node, "exclusiveMinimum") && n <= min {
            out.push(FieldError::invalid(path, &shown, format!("{path} in body should be greater than {min}")));
        } else if n < min {
            out.push(FieldError::invalid(
                path,
                &shown,
                format!("{path} in body should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = raw_f64(node, "maximum") {
        if raw_bool(node, "exclusiveMaximum") && n >= max {
            out.push(FieldError::invalid(path, &shown, format!("{path} in body should be less than {max}")));
        } else if n > max {
            out.push(FieldError::invalid(
                path,
                &shown,
                format!("{path} in body should be less than or equal to {max}"),
            ));
        }
    }
    if let Some(factor) = raw_f64(node, "multipleOf")
        && factor > 0.0
        && ((n / factor).round() * factor - n).abs() > 1e-9 * n.abs().max(1.0)
    {
        out.push(FieldError::invalid(path, &shown, format!("{path} in body should be a multiple of {factor}")));
    }
    match node.format() {
        Some("int32") if as_integer(value).is_some_and(|i| i32::try_from(i).is_err()) => {
            out.push(FieldError::invalid(path, &shown, format!("{path} in body must be of type int32: {shown}")));
        }
        Some("int64") if as_integer(value).is_some_and(|i| i64::try_from(i).is_err()) => {
            out.push(FieldError::invalid(path, &shown, format!("{path} in body must be of type int64: {shown}")));
        }
        _ => {}
    }
}

fn validate_string(node: Node<'_>, s: &str, path: &str, out: &mut Vec<FieldError>) {
    let shown = show(&Value::String(s.to_string()));
    let chars = s.chars().count() as u64;
    if let Some(max) = raw_u64(node, "maxLength")
        && chars > max
    {
        out.push(FieldError::new(FieldErrorKind::TooLong, path, format!("may not be more than {max} bytes")));
    }
    if let Some(min) = raw_u64(node, "minLength")
        && chars < min
    {
        out.push(FieldError::invalid(path, &shown, format!("{path} in body should be at least {min} chars long")));
    }
    if let Some(pattern) = node.raw().get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => {
                out.push(FieldError::invalid(path, &shown, format!("{path} in body should match '{pattern}'")));
            }
            Ok(_) => {}
            Err(_) => out.push(FieldError::invalid(path, &shown, format!("{path} has an invalid pattern '{pattern}'"))),
        }
    }
    let format = node.format();
    let bad_format = match format {
        Some("byte" | "date-time") => check_format(format, s).is_err(),
        Some("date") => s.parse::<jiff::civil::Date>().is_err(),
        Some("int-or-string") => false,
        _ => false,
    };
    if let (true, Some(f)) = (bad_format, format) {
        out.push(FieldError::invalid(path, &shown, format!("{path} in body must be of type {f}: {shown}")));
    }
}

fn validate_array(node: Node<'_>, items: &[Value], path: &str, out: &mut Vec<FieldError>) {
    let n = items.len() as u64;
    if let Some(max) = raw_u64(node, "maxItems")
        && n > max
    {
        out.push(FieldError {
            value: Some(n.to_string()),
            ..FieldError::new(FieldErrorKind::TooMany, path, format!("must have at most {max} items"))
        });
    }
    if let Some(min) = raw_u64(node, "minItems")
        && n < min
    {
        out.push(FieldError::invalid(path, n, format!("{path} in body should have at least {min} items")));
    }
    let list_type = node.list_type();
    if raw_bool(node, "uniqueItems") || list_type == Some("set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                out.push(duplicate(&format!("{path}[{i}]"), show(item)));
            }
        }
    }
    if list_type == Some("map") {
        let keys = node.list_map_keys();
        let key_of = |item: &Value| -> Vec<Value> {
            keys.iter().map(|k| item.get(*k).cloned().unwrap_or(Value::Null)).collect()
        };
        for (i, item) in items.iter().enumerate() {
            let k = key_of(item);
            if items[..i].iter().any(|prev| key_of(prev) == k) {
                let shown: Map<String, Value> =
                    keys.iter().zip(k.iter()).map(|(name, v)| (name.to_string(), v.clone())).collect();
                out.push(duplicate(&format!("{path}[{i}]"), show(&Value::Object(shown))));
            }
        }
    }
    if let Some(item_node) = node.items() {
        for (i, item) in items.iter().enumerate() {
            validate(item_node, item, &format!("{path}[{i}]"), false, out);
        }
    }
}

fn duplicate(path: &str, value: String) -> FieldError {
    FieldError { value: Some(value), ..FieldError::new(FieldErrorKind::Duplicate, path, "") }
}

fn validate_object(node: Node<'_>, map: &Map<String, Value>, path: &str, root: bool, out: &mut Vec<FieldError>) {
    let n = map.len() as u64;
    if let Some(max) = raw_u64(node, "maxProperties")
        && n > max
    {
        out.push(FieldError {
            value: Some(n.to_string()),
            ..FieldError::new(FieldErrorKind::TooMany, path, format!("must have at most {max} items"))
        });
    }
    if let Some(min) = raw_u64(node, "minProperties")
        && n < min
    {
        out.push(FieldError::invalid(path, n, format!("{path} in body should have at least {min} properties")));
    }
    for name in node.required() {
        let implicit = root && matches!(name, "apiVersion" | "kind" | "metadata");
        if !map.contains_key(name) && !implicit {
            out.push(FieldError::required(child(path, name), ""));
        }
    }
    let additional = node.additional_properties();
    for (key, v) in map {
        if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(p) = node.property(key) {
            validate(p, v, &child(path, key), false, out);
        } else if let Some(a) = additional {
            validate(a, v, &child(path, key), false, out);
        }
    }
}

/// Fills in the `default`s of a CRD schema, recursively: a missing property (or one set
/// to `null` where the schema is not nullable) takes its default; defaults apply inside
/// array items and map values too, but only where the parent object exists.
pub fn apply_defaults(schema: Node<'_>, obj: &mut Value) {
    match obj {
        Value::Object(map) => {
            for (name, prop) in schema.properties() {
                let Some(default) = prop.default_value() else {
                    continue;
                };
                let missing = match map.get(name) {
                    None => true,
                    Some(Value::Null) => !raw_bool(prop, "nullable"),
                    Some(_) => false,
                };
                if missing {
                    map.insert(name.to_string(), default.clone());
                }
            }
            let additional = schema.additional_properties();
            for (key, v) in map.iter_mut() {
                if let Some(p) = schema.property(key).or(additional) {
                    apply_defaults(p, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = schema.items() {
                for item in items.iter_mut() {
                    apply_defaults(item_node, item);
                }
            }
        }
        _ => {}
    }
}
