//! Field paths and sets of them, with Kubernetes' `FieldsV1` JSON encoding
//! (`f:<name>`, `k:<json key>`, `v:<json value>`, `i:<index>`, `.` for the item itself).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::ApplyError;

/// One step of a field path.
///
/// Keys and values are held as canonical JSON text (object keys sorted, no spaces), the
/// form Kubernetes writes after `k:` and `v:`, so that elements compare and order simply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map entry: `f:<name>`, shown as `.name`.
    Field(String),
    /// An item of an associative (`map`) list, by its key fields: `k:{"name":"nginx"}`,
    /// shown as `[name="nginx"]`.
    Key(String),
    /// An item of a `set` list, by value: `v:"a"`, shown as `[="a"]`.
    Value(String),
    /// A position in a list: `i:0`, shown as `[0]`.
    Index(usize),
}

impl PathElement {
    /// A key element from the key fields of an associative-list item.
    pub fn key(fields: &Map<String, Value>) -> PathElement {
        PathElement::Key(canonical_json(&Value::Object(fields.clone())))
    }

    /// A value element for a set-list item.
    pub fn value(item: &Value) -> PathElement {
        PathElement::Value(canonical_json(item))
    }

    /// The `FieldsV1` spelling (`f:name`, `k:{..}`, `v:..`, `i:0`).
    pub fn to_fields_v1_key(&self) -> String {
        let mut out = String::new();
        self.write_fields_v1_key(&mut out);
        out
    }

    /// Writes the `FieldsV1` spelling into `out`, replacing what it held.
    pub(crate) fn write_fields_v1_key(&self, out: &mut String) {
        out.clear();
        match self {
            PathElement::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            PathElement::Key(k) => {
                out.push_str("k:");
                out.push_str(k);
            }
            PathElement::Value(v) => {
                out.push_str("v:");
                out.push_str(v);
            }
            PathElement::Index(i) => {
                out.push_str("i:");
                out.push_str(&i.to_string());
            }
        }
    }

    /// Parses one `FieldsV1` key (not `.`).
    pub fn from_fields_v1_key(key: &str) -> Result<PathElement, ApplyError> {
        let bad = |why: &str| ApplyError::BadManagedFields(format!("invalid path element {key:?}: {why}"));
        let (kind, rest) = key.split_once(':').ok_or_else(|| bad("missing a type prefix"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(v @ Value::Object(_)) => Ok(PathElement::Key(canonical_json(&v))),
                Ok(_) => Err(bad("key is not a JSON object")),
                Err(e) => Err(bad(&e.to_string())),
            },
            "v" => serde_json::from_str::<Value>(rest)
                .map(|v| PathElement::Value(canonical_json(&v)))
                .map_err(|e| bad(&e.to_string())),
            "i" => rest.parse::<usize>().map(PathElement::Index).map_err(|e| bad(&e.to_string())),
            _ => Err(bad("unknown type prefix")),
        }
    }
}

impl fmt::Display for PathElement {
    /// Kubernetes' path notation: `.name`, `[name="nginx"]`, `[="a"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(k) => match serde_json::from_str::<Value>(k) {
                Ok(Value::Object(m)) => {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", canonical_json(v))).collect();
                    write!(f, "[{}]", parts.join(","))
                }
                _ => write!(f, "[{k}]"),
            },
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root, e.g. `.spec.template.spec.containers[name="nginx"].image`.
pub type Path = Vec<PathElement>;

/// Renders a path in Kubernetes' notation (`.spec.replicas`).
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON text with object keys sorted and no whitespace, as Kubernetes encodes keys.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical_json(v, &mut out);
    out
}

fn write_canonical_json(v: &Value, out: &mut String) {
    match v {
        // serde_json's maps keep their keys sorted: written in order, they are canonical.
        Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_json_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn write_json_string(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::String(s.to_string()).to_string());
    }
}

/// A set of field paths: the fields one manager owns, or the fields an object specifies.
///
/// A path is a member when the field (a leaf, an atomic value, a list item or a map entry)
/// itself is owned; parents that are only on the way to members are not members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    paths: BTreeSet<Path>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Decodes a `FieldsV1` object (`{"f:spec":{"f:replicas":{}}}`).
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, ApplyError> {
        let mut set = FieldSet::new();
        let mut prefix = Vec::new();
        decode_into(v, &mut prefix, &mut set)?;
        Ok(set)
    }

    /// Encodes the set as a `FieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        // Members come in order, so a path comes before the paths under it: a member is
        // written as `{}`, and gets its `.` when a first child is added below it (an
        // object left empty is always a member: positions on the way down get a child at
        // once). Keys are formatted into one buffer and copied only when inserted.
        let mut root = Map::new();
        let mut key = String::new();
        'paths: for path in &self.paths {
            let Some((last, parents)) = path.split_last() else { continue };
            let mut node = &mut root;
            for pe in parents {
                pe.write_fields_v1_key(&mut key);
                let created = !node.contains_key(key.as_str());
                if created {
                    node.insert(key.clone(), Value::Object(Map::new()));
                }
                let Some(Value::Object(child)) = node.get_mut(key.as_str()) else { continue 'paths };
                if !created && child.is_empty() {
                    child.insert(".".to_string(), Value::Object(Map::new()));
                }
                node = child;
            }
            last.write_fields_v1_key(&mut key);
            node.insert(key.clone(), Value::Object(Map::new()));
        }
        Value::Object(root)
    }

    /// Adds a path.
    pub fn insert(&mut self, path: Path) {
        if !path.is_empty() {
            self.paths.insert(path);
        }
    }

    /// True when the path is a member.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.paths.contains(path)
    }

    /// True when the set has no members.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.paths.iter()
    }

    /// Members that are `prefix` itself or lie under it.
    pub fn under<'s>(&'s self, prefix: &'s [PathElement]) -> impl Iterator<Item = &'s Path> + 's {
        self.paths.range(prefix.to_vec()..).take_while(move |p| p.starts_with(prefix))
    }

    /// True when `prefix` or some path under it is a member.
    pub fn touches(&self, prefix: &[PathElement]) -> bool {
        self.under(prefix).next().is_some()
    }

    /// Members of either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet { paths: self.paths.union(&other.paths).cloned().collect() }
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet { paths: self.paths.intersection(&other.paths).cloned().collect() }
    }

    /// Removes the members of `other` from `self`, in place (no member is copied).
    pub fn remove_all(&mut self, other: &FieldSet) {
        if other.paths.len() * 4 < self.paths.len() {
            for p in &other.paths {
                self.paths.remove(p);
            }
        } else {
            self.paths.retain(|p| !other.paths.contains(p));
        }
    }

    /// Adds the members of `other` to `self`, in place.
    pub fn insert_all(&mut self, other: &FieldSet) {
        for p in &other.paths {
            if !self.paths.contains(p) {
                self.paths.insert(p.clone());
            }
        }
    }

    /// Members of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet { paths: self.paths.difference(&other.paths).cloned().collect() }
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> FieldSet {
        let mut set = FieldSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

fn decode_into(v: &Value, prefix: &mut Path, set: &mut FieldSet) -> Result<(), ApplyError> {
    let obj = v.as_object().ok_or_else(|| {
        ApplyError::BadManagedFields(format!("expected an object at {:?}, found {v}", path_string(prefix)))
    })?;
    for (key, child) in obj {
        if key == "." {
            set.insert(prefix.clone());
            continue;
        }
        prefix.push(PathElement::from_fields_v1_key(key)?);
        match child.as_object() {
            Some(m) if m.is_empty() => set.insert(prefix.clone()),
            Some(_) => decode_into(child, prefix, set)?,
            None => {
                return Err(ApplyError::BadManagedFields(format!(
                    "expected an object at {:?}, found {child}",
                    path_string(prefix)
                )));
            }
        }
        prefix.pop();
    }
    Ok(())
}
