//! Checks of a decoded object against its schema: duplicate and unknown fields (for
//! `fieldValidation=Strict|Warn|Ignore` and pruning), JSON type errors of built-in kinds,
//! and the OpenAPI v3 validation, defaulting and structural-schema rules of custom
//! resources.
//!
//! Paths returned for fieldValidation start with a dot (`.spec.foo`); [`FieldError`]
//! paths do not (`spec.replicas`), as Kubernetes prints them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::field_error::{FieldError, FieldErrorKind};
use crate::schema::{self, Node};

mod custom;
mod structural;
#[cfg(test)]
mod tests;

pub use custom::{apply_defaults, validate_custom};
pub use structural::{validate_structural_schema, validate_structural_schema_at};

/// JSON paths (`.spec.replicas`) of keys that appear more than once in the same object
/// of the raw JSON `body`, in the order met. A body that is not valid JSON yields the
/// duplicates found before the syntax error (the decoder reports the error itself).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = DuplicateSeed { path: String::new(), found: &found }.deserialize(&mut de);
    found.into_inner()
}

struct DuplicateSeed<'f> {
    path: String,
    found: &'f RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for DuplicateSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{key}", self.path);
            if !seen.insert(key) {
                self.found.borrow_mut().push(path.clone());
            }
            map.next_value_seed(DuplicateSeed { path, found: self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while seq
            .next_element_seed(DuplicateSeed { path: format!("{}[{index}]", self.path), found: self.found })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        <IgnoredAny as de::Deserialize>::deserialize(d).map(|_| ())
    }
}

/// The ObjectMeta schema every kind's `metadata` follows.
fn object_meta() -> Option<Node<'static>> {
    schema::definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
}

/// True when `node` is a built-in definition (rather than a position in a CRD schema).
fn is_builtin(node: Node<'_>) -> bool {
    let raw = node.raw();
    schema::definitions().values().any(|d| std::ptr::eq(d, raw))
}

/// Removes from `obj` the fields `schema` does not know, returning their paths
/// (`.spec.foo`, `.spec.template.spec.containers[0].bogus`) in document order.
///
/// Untyped positions (IntOrString, Quantity, RawExtension, JSON, FieldsV1) and
/// `x-kubernetes-preserve-unknown-fields` keep anything; `metadata` is ObjectMeta for
/// every kind; embedded resources allow `apiVersion`, `kind` and `metadata`.
pub fn prune_unknown(schema: Node<'_>, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune(Some(schema), obj, "", true, &mut out);
    out
}

fn prune(node: Option<Node<'_>>, value: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    let Some(node) = node else { return };
    if node.is_int_or_string() {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = node.has_properties();
            let additional = node.additional_properties();
            let preserve = node.preserves_unknown_fields();
            let embedded = root || node.is_embedded_resource();
            if !props && additional.is_none() && !preserve && !embedded && is_builtin(node) {
                return; // RawExtension, FieldsV1 and the like: free-form.
            }
            if node.type_name().is_none() && !props && additional.is_none() && !embedded {
                return; // an untyped position (JSON)
            }
            let mut removed = Vec::new();
            for (key, child) in map.iter_mut() {
                let child_path = format!("{path}.{key}");
                let child_node = node.property(key).or(additional).or_else(|| match key.as_str() {
                    "metadata" if embedded => object_meta(),
                    _ => None,
                });
                match child_node {
                    Some(n) => prune(Some(n), child, &child_path, false, out),
                    None if preserve => {}
                    None if embedded && (key == "apiVersion" || key == "kind") => {}
                    None => {
                        out.push(child_path);
                        removed.push(key.clone());
                    }
                }
            }
            for key in removed {
                map.remove(&key);
            }
        }
        Value::Array(items) => {
            let item_node = node.items();
            for (i, item) in items.iter_mut().enumerate() {
                prune(item_node, item, &format!("{path}[{i}]"), false, out);
            }
        }
        _ => {}
    }
}

/// The JSON type name of a value, as OpenAPI names it.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The integer value of `v`, accepting integral floats such as `1.0`.
pub(crate) fn as_integer(v: &Value) -> Option<i128> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // Only integral floats within i64 range count: 1.0 is an integer, 1.5 and 1e300 are not.
    (f.fract() == 0.0 && f.abs() < 9.3e18).then_some(f as i128)
}

/// True when `v` is a value of the OpenAPI type `ty`.
pub(crate) fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "integer" => as_integer(v).is_some(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Child path `parent.key` without a leading dot at the root.
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// The JSON type errors of a built-in kind's object: wrong JSON types, out-of-range
/// int32/int64 values, non-integral numbers where integers are expected, malformed
/// `byte` and `date-time` strings. `null` is accepted anywhere (it decodes as the zero
/// value). A wrong type is a [`FieldErrorKind::TypeInvalid`] error whose `value` is what
/// the Go decoder calls the JSON value (`string`, `number 1.5`, `bool`, `object`, `array`)
/// and whose `detail` names the Go field and type (`Go struct field
/// DeploymentSpec.spec.replicas of type int32`); see [`type_error_message`].
pub fn check_types(schema: Node<'_>, obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let ctx = GoContext { path: String::new(), parent: schema };
    check_node(schema, obj, "", &ctx, &mut out);
    out
}

/// Where the Go decoder would be: the innermost struct and the field names (without
/// list indices or map keys) leading to the value.
struct GoContext<'a> {
    path: String,
    parent: Node<'a>,
}

/// The full definition name (`io.k8s.api.apps.v1.DeploymentSpec`) of a built-in schema node.
fn definition_name(node: Node<'_>) -> Option<&'static str> {
    let raw = node.raw();
    schema::definitions().iter().find(|(_, d)| std::ptr::eq(*d, raw)).map(|(name, _)| name.as_str())
}

/// The definition's short name (`DeploymentSpec`) of a built-in schema node.
fn struct_name(node: Node<'_>) -> Option<&'static str> {
    definition_name(node).map(|name| name.rsplit('.').next().unwrap_or(name))
}

/// The Go type of a schema node, as the decoder names it (`int32`, `[]v1.Container`,
/// `map[string]string`, `v1.DeploymentSpec`).
fn go_type(node: Node<'_>, depth: usize) -> String {
    if depth > 4 {
        return "interface {}".into();
    }
    if let Some(full) = definition_name(node) {
        let mut parts = full.rsplit('.');
        let name = parts.next().unwrap_or(full);
        let package = match name {
            "IntOrString" => "intstr",
            "Quantity" => "resource",
            _ => parts.next().unwrap_or("v1"),
        };
        if node.type_name().is_none_or(|t| t == "object") {
            return format!("{package}.{name}");
        }
    }
    match (node.type_name(), node.format()) {
        (Some("integer"), Some("int32")) => "int32".into(),
        (Some("integer"), Some("int64")) => "int64".into(),
        (Some("integer"), _) => "int".into(),
        (Some("number"), _) => "float64".into(),
        (Some("boolean"), _) => "bool".into(),
        (Some("string"), Some("byte")) => "[]uint8".into(),
        (Some("string"), _) => "string".into(),
        (Some("array"), _) => match node.items() {
            Some(items) => format!("[]{}", go_type(items, depth + 1)),
            None => "[]interface {}".into(),
        },
        (Some("object"), _) => match node.additional_properties() {
            Some(values) => format!("map[string]{}", go_type(values, depth + 1)),
            None => "map[string]interface {}".into(),
        },
        _ => "interface {}".into(),
    }
}

/// What the Go decoder calls a JSON value in its errors.
fn go_json_name(v: &Value) -> String {
    match v {
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
        Value::Null => "null".into(),
    }
}

fn type_error(path: &str, got: String, node: Node<'_>, ctx: &GoContext<'_>) -> FieldError {
    let parent = struct_name(ctx.parent).unwrap_or("Object");
    FieldError {
        kind: FieldErrorKind::TypeInvalid,
        field: path.to_string(),
        value: Some(got),
        detail: format!("Go struct field {parent}.{} of type {}", ctx.path, go_type(node, 0)),
    }
}

fn check_node(node: Node<'_>, value: &Value, path: &str, ctx: &GoContext<'_>, out: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if let Some(alternatives) = node.raw().get("oneOf").and_then(Value::as_array) {
        let types: Vec<&str> = alternatives.iter().filter_map(|a| Node::new(a).type_name()).collect();
        if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
            out.push(type_error(path, go_json_name(value), node, ctx));
        }
        return;
    }
    let Some(ty) = node.type_name() else { return };
    let format = node.format();
    match ty {
        "object" => {
            let Value::Object(map) = value else {
                out.push(type_error(path, go_json_name(value), node, ctx));
                return;
            };
            let additional = node.additional_properties();
            for (key, child_value) in map {
                if let Some(n) = node.property(key) {
                    let inner = GoContext { path: child(&ctx.path, key), parent: node };
                    check_node(n, child_value, &child(path, key), &inner, out);
                } else if let Some(n) = additional {
                    check_node(n, child_value, &format!("{path}[{key}]"), ctx, out);
                }
            }
        }
        "array" => {
            let Value::Array(items) = value else {
                out.push(type_error(path, go_json_name(value), node, ctx));
                return;
            };
            if let Some(item_node) = node.items() {
                for (i, item) in items.iter().enumerate() {
                    check_node(item_node, item, &format!("{path}[{i}]"), ctx, out);
                }
            }
        }
        "integer" => {
            let Some(i) = as_integer(value) else {
                let got = match value {
                    Value::Number(n) => format!("number {n}"),
                    other => go_json_name(other),
                };
                out.push(type_error(path, got, node, ctx));
                return;
            };
            let in_range = match format {
                Some("int32") => i32::try_from(i).is_ok(),
                _ => i64::try_from(i).is_ok(),
            };
            if !in_range {
                out.push(type_error(path, format!("number {i}"), node, ctx));
            }
        }
        "number" if !value.is_number() => out.push(type_error(path, go_json_name(value), node, ctx)),
        "boolean" if !value.is_boolean() => out.push(type_error(path, go_json_name(value), node, ctx)),
        "string" => match value.as_str() {
            None => out.push(type_error(path, go_json_name(value), node, ctx)),
            Some(s) => {
                if let Err(detail) = check_format(format, s) {
                    out.push(FieldError::invalid(path, format!("{s:?}"), detail));
                }
            }
        },
        _ => {}
    }
}

/// Checks a string against the formats Kubernetes decodes strictly.
pub(crate) fn check_format(format: Option<&str>, s: &str) -> Result<(), String> {
    use base64::Engine as _;
    match format {
        Some("byte") => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|_| ())
            .map_err(|e| format!("illegal base64 data: {e}")),
        Some("date-time") => {
            s.parse::<jiff::Timestamp>().map(|_| ()).map_err(|_| format!("cannot parse {s:?} as RFC 3339 date-time"))
        }
        _ => Ok(()),
    }
}

/// The message of a built-in kind's decode error, worded like the Go JSON decoder's:
/// `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
/// Other field errors are rendered as their `Display`.
pub fn type_error_message(error: &FieldError) -> String {
    match (error.kind, &error.value) {
        (FieldErrorKind::TypeInvalid, Some(got)) => {
            format!("json: cannot unmarshal {got} into {}", error.detail)
        }
        _ => error.to_string(),
    }
}
