//! Checks of a decoded object against its schema: duplicate and unknown fields (for
//! `fieldValidation=Strict|Warn|Ignore` and pruning), JSON type errors of built-in kinds,
//! and the OpenAPI v3 validation, defaulting and structural-schema rules of custom
//! resources.
//!
//! Paths returned for fieldValidation start with a dot (`.spec.foo`); [`FieldError`]
//! paths do not (`spec.replicas`), as Kubernetes prints them.

use std::borrow::Cow;
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
    let _ = DuplicateSeed { pos: &Pos::Root, found: &found }.deserialize(&mut de);
    found.into_inner()
}

struct DuplicateSeed<'p, 'f> {
    pos: &'p Pos<'p>,
    found: &'f RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for DuplicateSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// An object key, borrowed from the body unless it has escapes (serde's own `Cow<str>`
/// always copies). For any map walk over a JSON body: field checks here, the controllers'
/// watch decoding.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for DuplicateSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let duplicate = seen.contains(&key);
            let pos = Pos::Entry(self.pos, &key);
            if duplicate {
                self.found.borrow_mut().push(pos.dotted());
            }
            map.next_value_seed(DuplicateSeed { pos: &pos, found: self.found })?;
            if !duplicate {
                seen.insert(key);
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while seq.next_element_seed(DuplicateSeed { pos: &Pos::Index(self.pos, index), found: self.found })?.is_some() {
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
    schema::definition_name_of(node.raw()).is_some()
}

/// Removes from `obj` the fields `schema` does not know, returning their paths
/// (`.spec.foo`, `.spec.template.spec.containers[0].bogus`) in document order.
///
/// Untyped positions (IntOrString, Quantity, RawExtension, JSON, FieldsV1) and
/// `x-kubernetes-preserve-unknown-fields` keep anything; `metadata` is ObjectMeta for
/// every kind; embedded resources allow `apiVersion`, `kind` and `metadata`.
pub fn prune_unknown(schema: Node<'_>, obj: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune(Some(schema), obj, &Pos::Root, true, None, &mut out);
    out
}

/// [`prune_unknown`] of the top-level fields of `obj` whose values differ from those of
/// `old`, a stored object of the same built-in kind that `obj` was made from (a patch): the
/// fields a write leaves as they were were pruned when they were written, by the same schema.
pub fn prune_unknown_changed(schema: Node<'_>, obj: &mut Value, old: &Value) -> Vec<String> {
    let mut out = Vec::new();
    prune(Some(schema), obj, &Pos::Root, true, Some(old), &mut out);
    out
}

/// A position in a document, rendered into a path only when something is reported there
/// (the walks below visit every field, and formatting each one's path was a large part
/// of their cost).
#[derive(Clone, Copy)]
enum Pos<'a> {
    /// The document itself.
    Root,
    /// A declared property of a struct: `.name` (`name` at the start of a field path).
    Prop(&'a Pos<'a>, &'a str),
    /// An entry of a map: `[key]` in a field path, `.key` in a pruning path.
    Entry(&'a Pos<'a>, &'a str),
    /// An item of a list: `[i]`.
    Index(&'a Pos<'a>, usize),
}

impl Pos<'_> {
    /// The pruning path: `.spec.foo`, `.spec.containers[0].bogus` (every key as `.key`).
    fn dotted(&self) -> String {
        let mut out = String::new();
        self.write_dotted(&mut out);
        out
    }

    fn write_dotted(&self, out: &mut String) {
        match self {
            Pos::Root => {}
            Pos::Prop(parent, key) | Pos::Entry(parent, key) => {
                parent.write_dotted(out);
                out.push('.');
                out.push_str(key);
            }
            Pos::Index(parent, i) => {
                parent.write_dotted(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }

    /// The field path of an error: `spec.replicas`, `data[key]`, `spec.containers[0].image`.
    fn field(&self) -> String {
        let mut out = String::new();
        self.write_field(&mut out);
        out
    }

    fn write_field(&self, out: &mut String) {
        match self {
            Pos::Root => {}
            Pos::Prop(parent, key) => {
                parent.write_field(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Pos::Entry(parent, key) => {
                parent.write_field(out);
                out.push_str(&format!("[{key}]"));
            }
            Pos::Index(parent, i) => {
                parent.write_field(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }

    /// The Go decoder's field path: the declared property names only, dot-separated
    /// (`spec.template.spec.containers.image`).
    fn go_path(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out);
        out
    }

    fn write_go(&self, out: &mut String) {
        match self {
            Pos::Root => {}
            Pos::Prop(parent, key) => {
                parent.write_go(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Pos::Entry(parent, _) | Pos::Index(parent, _) => parent.write_go(out),
        }
    }
}

/// `same`: an object whose equal fields are skipped (at this level only).
fn prune(
    node: Option<Node<'_>>,
    value: &mut Value,
    pos: &Pos<'_>,
    root: bool,
    same: Option<&Value>,
    out: &mut Vec<String>,
) {
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
                if same.and_then(|o| o.get(key)).is_some_and(|o| o == child) {
                    continue;
                }
                let child_pos = Pos::Entry(pos, key);
                let child_node = node.property(key).or(additional).or_else(|| match key.as_str() {
                    "metadata" if embedded => object_meta(),
                    _ => None,
                });
                match child_node {
                    Some(n) => prune(Some(n), child, &child_pos, false, None, out),
                    None if preserve => {}
                    None if embedded && (key == "apiVersion" || key == "kind") => {}
                    None => {
                        out.push(child_pos.dotted());
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
                prune(item_node, item, &Pos::Index(pos, i), false, None, out);
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
    check_node(schema, obj, &Pos::Root, schema, None, &mut out);
    out
}

/// [`check_types`] of the top-level fields of `obj` whose values differ from those of
/// `old` (see [`prune_unknown_changed`]).
pub fn check_types_changed(schema: Node<'_>, obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    check_node(schema, obj, &Pos::Root, schema, Some(old), &mut out);
    out
}

/// The full definition name (`io.k8s.api.apps.v1.DeploymentSpec`) of a built-in schema node.
fn definition_name(node: Node<'_>) -> Option<&'static str> {
    schema::definition_name_of(node.raw())
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

/// A wrong JSON type at `pos`; `parent` is the innermost struct the Go decoder would be in.
fn type_error(pos: &Pos<'_>, got: String, node: Node<'_>, parent: Node<'_>) -> FieldError {
    let parent_name = struct_name(parent).unwrap_or("Object");
    FieldError {
        kind: FieldErrorKind::TypeInvalid,
        field: pos.field(),
        value: Some(got),
        detail: format!("Go struct field {parent_name}.{} of type {}", pos.go_path(), go_type(node, 0)),
    }
}

/// `parent`: the struct whose property the walk entered last (for the Go decoder's wording);
/// `same`: an object whose equal fields are skipped (at this level only).
fn check_node(
    node: Node<'_>,
    value: &Value,
    pos: &Pos<'_>,
    parent: Node<'_>,
    same: Option<&Value>,
    out: &mut Vec<FieldError>,
) {
    if value.is_null() {
        return;
    }
    if let Some(alternatives) = node.raw().get("oneOf").and_then(Value::as_array) {
        let types: Vec<&str> = alternatives.iter().filter_map(|a| Node::new(a).type_name()).collect();
        if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
            out.push(type_error(pos, go_json_name(value), node, parent));
        }
        return;
    }
    let Some(ty) = node.type_name() else { return };
    let format = node.format();
    match ty {
        "object" => {
            let Value::Object(map) = value else {
                out.push(type_error(pos, go_json_name(value), node, parent));
                return;
            };
            let additional = node.additional_properties();
            for (key, child_value) in map {
                if same.and_then(|o| o.get(key)) == Some(child_value) {
                    continue;
                }
                if let Some(n) = node.property(key) {
                    check_node(n, child_value, &Pos::Prop(pos, key), node, None, out);
                } else if let Some(n) = additional {
                    check_node(n, child_value, &Pos::Entry(pos, key), parent, None, out);
                }
            }
        }
        "array" => {
            let Value::Array(items) = value else {
                out.push(type_error(pos, go_json_name(value), node, parent));
                return;
            };
            if let Some(item_node) = node.items() {
                for (i, item) in items.iter().enumerate() {
                    check_node(item_node, item, &Pos::Index(pos, i), parent, None, out);
                }
            }
        }
        "integer" => {
            let Some(i) = as_integer(value) else {
                let got = match value {
                    Value::Number(n) => format!("number {n}"),
                    other => go_json_name(other),
                };
                out.push(type_error(pos, got, node, parent));
                return;
            };
            let in_range = match format {
                Some("int32") => i32::try_from(i).is_ok(),
                _ => i64::try_from(i).is_ok(),
            };
            if !in_range {
                out.push(type_error(pos, format!("number {i}"), node, parent));
            }
        }
        "number" if !value.is_number() => out.push(type_error(pos, go_json_name(value), node, parent)),
        "boolean" if !value.is_boolean() => out.push(type_error(pos, go_json_name(value), node, parent)),
        "string" => match value.as_str() {
            None => out.push(type_error(pos, go_json_name(value), node, parent)),
            Some(s) => {
                if let Err(detail) = check_format(format, s) {
                    out.push(FieldError::invalid(pos.field(), format!("{s:?}"), detail));
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
