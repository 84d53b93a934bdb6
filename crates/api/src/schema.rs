//! Structural schemas: the per-field facts of the Kubernetes 1.33 API (types, formats,
//! required fields, enums, patch strategies and merge keys, list and map types), loaded
//! from `schema/k8s-v1.33.defs` (made by `scripts/gen-schema.py`), and the same view over
//! a CustomResourceDefinition's `openAPIV3Schema`.
//!
//! A [`Node`] is one schema position; `$ref`s to built-in definitions are followed
//! transparently, so callers walk properties and items without caring where a
//! definition came from.
//!
//! Each of the 707 built-in definitions is decoded the first time it is used. Decoded all
//! at once they took 4.4 MiB of heap for the life of the server, most of it for
//! definitions an idle control plane never touches (a `serde_json::Value` tree costs ~15
//! times its JSON text here).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use serde_json::Value;

/// One definition per line: its name, a space, its schema as compact JSON.
static BUILTIN_TEXT: &str = include_str!("../schema/k8s-v1.33.defs");

/// A built-in definition: its JSON text, and its schema once decoded.
struct Builtin {
    text: &'static str,
    value: OnceLock<Value>,
}

impl Builtin {
    fn value(&self) -> &Value {
        self.value.get_or_init(|| {
            serde_json::from_str(self.text).expect("schema/k8s-v1.33.defs holds valid JSON (generated)")
        })
    }
}

static BUILTIN: LazyLock<HashMap<&'static str, Builtin>> = LazyLock::new(|| {
    BUILTIN_TEXT
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, text)| (name, Builtin { text, value: OnceLock::new() }))
        .collect()
});

/// True when a built-in definition has this name (`io.k8s.api.apps.v1.Deployment`).
pub fn has_definition(name: &str) -> bool {
    BUILTIN.contains_key(name)
}

/// The schema of the named built-in definition, as JSON.
pub fn definition_value(name: &str) -> Option<&'static Value> {
    BUILTIN.get(name).map(Builtin::value)
}

/// The schema of the named built-in definition.
pub fn definition(name: &str) -> Option<Node<'static>> {
    definition_value(name).map(Node::new)
}

/// The name of the built-in definition whose schema `raw` is (the same value, not an
/// equal one), `None` for any other position (a property, a CRD's schema).
pub fn definition_name_of(raw: &Value) -> Option<&'static str> {
    BUILTIN.iter().find(|(_, d)| d.value.get().is_some_and(|v| std::ptr::eq(v, raw))).map(|(name, _)| *name)
}

/// `raw` after following `$ref`s to built-in definitions (at most 8, against cycles).
fn resolve(raw: &Value) -> &Value {
    let mut v = raw;
    // Built-in definitions refer to others by bare name; anything else is local.
    for _ in 0..8 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match definition_value(r.rsplit('/').next().unwrap_or(r)) {
                Some(target) => v = target,
                None => break,
            },
            None => break,
        }
    }
    v
}

/// One position in a schema.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// The schema value at this position, as written (maybe a `$ref`).
    at: &'a Value,
    /// `at` after following its `$ref`s, resolved once when the node is made: a walk asks
    /// a node several questions (type, properties, items, list type), and each lookup of a
    /// definition by name hashes it.
    target: &'a Value,
}

impl<'a> Node<'a> {
    /// Wraps a raw JSON Schema value (a built-in definition or a CRD's `openAPIV3Schema`),
    /// following a `$ref` to a built-in definition.
    pub fn new(raw: &'a Value) -> Node<'a> {
        Node { at: raw, target: resolve(raw) }
    }

    /// The schema value itself, after following `$ref`.
    pub fn raw(&self) -> &'a Value {
        self.target
    }

    fn resolved(&self) -> &'a Value {
        self.target
    }

    /// The value of an annotation at this position, looking at the position itself
    /// before the definition it refers to (the generated data puts patch strategies
    /// beside the `$ref`).
    fn ext(&self, key: &str) -> Option<&'a Value> {
        self.at.get(key).or_else(|| self.resolved().get(key))
    }

    /// The JSON type (`object`, `array`, `string`, `integer`, `number`, `boolean`),
    /// ignoring the `null` the generated data allows beside it. None when untyped
    /// (e.g. `IntOrString`, `Quantity`, `RawExtension`, or `x-kubernetes-preserve-unknown-fields`).
    pub fn type_name(&self) -> Option<&'a str> {
        match self.resolved().get("type")? {
            Value::String(s) => Some(s.as_str()),
            Value::Array(list) => list.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        }
    }

    /// The `format` (`int32`, `int64`, `date-time`, `byte`, `int-or-string`, …).
    pub fn format(&self) -> Option<&'a str> {
        self.ext("format").and_then(Value::as_str)
    }

    /// The schema of property `name` of an object.
    pub fn property(&self, name: &str) -> Option<Node<'a>> {
        self.resolved().get("properties")?.get(name).map(Node::new)
    }

    /// All properties of an object, by name.
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, Node<'a>)> + 'a {
        self.resolved()
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), Node::new(v))))
    }

    /// True when the object declares properties (a struct rather than a map).
    pub fn has_properties(&self) -> bool {
        self.resolved().get("properties").and_then(Value::as_object).is_some_and(|m| !m.is_empty())
    }

    /// The schema of the items of an array.
    pub fn items(&self) -> Option<Node<'a>> {
        self.resolved().get("items").map(Node::new)
    }

    /// The schema of the values of a map (`additionalProperties` that is a schema).
    pub fn additional_properties(&self) -> Option<Node<'a>> {
        match self.resolved().get("additionalProperties")? {
            v @ Value::Object(_) => Some(Node::new(v)),
            _ => None,
        }
    }

    /// Required property names.
    pub fn required(&self) -> Vec<&'a str> {
        self.resolved()
            .get("required")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Allowed values, when the schema lists them.
    pub fn enum_values(&self) -> Option<&'a Vec<Value>> {
        self.resolved().get("enum").and_then(Value::as_array)
    }

    /// `x-kubernetes-patch-strategy` (`merge`, `replace`, `retainKeys`, `merge,retainKeys`).
    pub fn patch_strategy(&self) -> Option<&'a str> {
        self.ext("x-kubernetes-patch-strategy").and_then(Value::as_str)
    }

    /// `x-kubernetes-patch-merge-key` (e.g. `name` for containers).
    pub fn patch_merge_key(&self) -> Option<&'a str> {
        self.ext("x-kubernetes-patch-merge-key").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`).
    pub fn list_type(&self) -> Option<&'a str> {
        self.ext("x-kubernetes-list-type").and_then(Value::as_str)
    }

    /// `x-kubernetes-list-map-keys` for `map` lists.
    pub fn list_map_keys(&self) -> Vec<&'a str> {
        self.ext("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `x-kubernetes-map-type` (`atomic`, `granular`).
    pub fn map_type(&self) -> Option<&'a str> {
        self.ext("x-kubernetes-map-type").and_then(Value::as_str)
    }

    /// `x-kubernetes-preserve-unknown-fields: true`.
    pub fn preserves_unknown_fields(&self) -> bool {
        self.ext("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
    }

    /// `x-kubernetes-int-or-string: true`, or a built-in IntOrString.
    pub fn is_int_or_string(&self) -> bool {
        // The built-in IntOrString (and Quantity) schemas: `oneOf` of typed alternatives (a
        // CRD's `oneOf` holds value validations, never types).
        let typed_alternatives = |alternatives: &Value| {
            alternatives.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|x| x.get("type").is_some()))
        };
        self.ext("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true)
            || self.resolved().get("oneOf").is_some_and(typed_alternatives)
    }

    /// `x-kubernetes-embedded-resource: true`.
    pub fn is_embedded_resource(&self) -> bool {
        self.ext("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true)
    }

    /// The `default` value, if the schema declares one (CRD schemas).
    pub fn default_value(&self) -> Option<&'a Value> {
        self.at.get("default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_refs_and_reads_patch_facts() {
        let deploy = definition("io.k8s.api.apps.v1.Deployment").unwrap();
        let spec = deploy.property("spec").unwrap();
        assert_eq!(spec.property("replicas").unwrap().type_name(), Some("integer"));
        assert_eq!(spec.property("strategy").unwrap().patch_strategy(), Some("retainKeys"));
        let containers = spec.property("template").unwrap().property("spec").unwrap().property("containers").unwrap();
        assert_eq!(containers.type_name(), Some("array"));
        assert_eq!(containers.patch_merge_key(), Some("name"));
        assert_eq!(containers.list_type(), Some("map"));
        assert_eq!(containers.list_map_keys(), vec!["name"]);
        assert!(containers.items().unwrap().property("image").is_some());
        assert_eq!(spec.required(), vec!["selector", "template"]);
    }

    #[test]
    fn definitions_are_decoded_when_first_used_and_known_by_identity() {
        assert!(has_definition("io.k8s.api.core.v1.ConfigMap"));
        assert!(!has_definition("io.k8s.api.core.v1.NoSuchKind"));
        // A kind berth does not serve: nothing but this test decodes it.
        let list = "io.k8s.api.storagemigration.v1alpha1.StorageVersionMigrationList";
        assert!(BUILTIN[list].value.get().is_none());
        let decoded = definition_value(list).unwrap();
        assert!(std::ptr::eq(decoded, BUILTIN[list].value.get().unwrap()));
        assert_eq!(definition_name_of(decoded), Some(list));
        let items = definition(list).unwrap().property("items").unwrap();
        assert_eq!(
            definition_name_of(items.items().unwrap().raw()),
            Some("io.k8s.api.storagemigration.v1alpha1.StorageVersionMigration")
        );
        assert_eq!(definition_name_of(items.raw()), None);
        assert_eq!(BUILTIN.len(), 707);
    }

    #[test]
    fn int_or_string_is_recognised() {
        let strategy = definition("io.k8s.api.apps.v1.RollingUpdateDeployment").unwrap();
        assert!(strategy.property("maxSurge").unwrap().is_int_or_string());
        assert!(strategy.property("maxSurge").unwrap().type_name().is_none());
    }
}
