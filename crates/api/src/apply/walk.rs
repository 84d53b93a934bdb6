//! Schema-directed walks over JSON objects: the field set an object specifies, merging an
//! applied configuration into a live object, comparing two objects, removing fields.
//!
//! The schema decides how each position behaves, as structured-merge-diff does for
//! Kubernetes: structs and maps are granular (unless `x-kubernetes-map-type: atomic`),
//! `map` lists merge items by key, `set` lists by value, other lists and untyped positions
//! (IntOrString, Quantity, RawExtension) are atomic. Positions the schema does not describe
//! are deduced from the value: objects are granular maps, everything else atomic.

use serde_json::{Map, Value};

use super::ApplyError;
use super::fieldset::{FieldSet, Path, PathElement, path_string};
use crate::schema::Node;

/// How one position of an object merges, derived from its schema.
#[derive(Debug, Clone)]
enum Shape<'a> {
    /// A scalar, an atomic list or map, or an untyped position: replaced whole.
    Leaf,
    /// A struct or granular map; children found by property, then `additionalProperties`.
    Map(Option<Node<'a>>),
    /// An associative list keyed by the named fields.
    AssocList(Option<Node<'a>>, Vec<&'a str>),
    /// A list of unique scalars.
    Set(Option<Node<'a>>),
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(l)) => l.is_empty(),
        Some(_) => false,
    }
}

/// The shape of a position whose values (either may be absent) are `a` and `b`.
fn shape<'a>(node: Option<Node<'a>>, a: Option<&Value>, b: Option<&Value>) -> Shape<'a> {
    let present = || [a, b].into_iter().flatten().filter(|v| !v.is_null());
    let any = present().next().is_some();
    let all_objects = any && present().all(Value::is_object);
    let all_arrays = any && present().all(Value::is_array);
    let Some(n) = node else {
        return if all_objects { Shape::Map(None) } else { Shape::Leaf };
    };
    match n.type_name() {
        Some("array") if all_arrays => {
            let items = n.items();
            match n.list_type() {
                Some("map") => {
                    let keys = n.list_map_keys();
                    if keys.is_empty() { Shape::Leaf } else { Shape::AssocList(items, keys) }
                }
                Some("set") => Shape::Set(items),
                Some(_) => Shape::Leaf,
                None => {
                    let merge = n.patch_strategy().is_some_and(|s| s.split(',').any(|p| p == "merge"));
                    match (merge, n.patch_merge_key()) {
                        (true, Some(key)) => Shape::AssocList(items, vec![key]),
                        (true, None) => Shape::Set(items),
                        (false, _) => Shape::Leaf,
                    }
                }
            }
        }
        Some("object") | None if all_objects => {
            if n.map_type() == Some("atomic") {
                Shape::Leaf
            } else if n.has_properties() || n.additional_properties().is_some() || n.preserves_unknown_fields() {
                Shape::Map(Some(n))
            } else {
                // A bare `type: object` (RawExtension) or an untyped position: atomic.
                Shape::Leaf
            }
        }
        _ => Shape::Leaf,
    }
}

/// The schema of child `key` of a map position, and whether it is a declared struct field.
pub(crate) fn child<'a>(node: Option<Node<'a>>, key: &str) -> (Option<Node<'a>>, bool) {
    match node {
        Some(n) => match n.property(key) {
            Some(p) => (Some(p), true),
            None => (n.additional_properties(), false),
        },
        None => (None, false),
    }
}

/// The path element naming each item of a list, or `None` when the items cannot be named
/// (a key field missing, duplicates) and the list must be treated as atomic. With `strict`
/// such lists are errors instead, as for an applied configuration.
fn list_elements(
    shape: &Shape<'_>,
    items: &[Value],
    path: &[PathElement],
    strict: bool,
) -> Result<Option<Vec<PathElement>>, ApplyError> {
    let invalid = |msg: String| ApplyError::Invalid(format!("{}: {msg}", path_string(path)));
    let mut out: Vec<PathElement> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = match shape {
            Shape::AssocList(item_node, keys) => {
                let Some(obj) = item.as_object() else {
                    if strict {
                        return Err(invalid(format!("element {i}: expected an object, found {item}")));
                    }
                    return Ok(None);
                };
                let mut key = Map::new();
                for k in keys {
                    match obj.get(*k).filter(|v| !v.is_null()).cloned().or_else(|| key_default(*item_node, k)) {
                        Some(v) => {
                            key.insert((*k).to_string(), v);
                        }
                        None if strict => {
                            return Err(invalid(format!(
                                "element {i}: associative list with keys has an element that omits key field {k:?}"
                            )));
                        }
                        None => return Ok(None),
                    }
                }
                PathElement::key(&key)
            }
            Shape::Set(_) => {
                if item.is_object() || item.is_array() {
                    if strict {
                        return Err(invalid(format!("element {i}: set items must be scalars, found {item}")));
                    }
                    return Ok(None);
                }
                PathElement::value(item)
            }
            Shape::Leaf | Shape::Map(_) => return Ok(None),
        };
        if out.contains(&pe) {
            if strict {
                return Err(invalid(format!("duplicate entries for key {pe}")));
            }
            return Ok(None);
        }
        out.push(pe);
    }
    Ok(Some(out))
}

/// The value a missing key field takes: the schema default, else the API's well-known
/// default for `protocol` (`TCP`), which the generated built-in schema does not carry.
fn key_default(item: Option<Node<'_>>, key: &str) -> Option<Value> {
    let prop = item?.property(key)?;
    if let Some(d) = prop.default_value() {
        return Some(d.clone());
    }
    (key == "protocol").then(|| Value::String("TCP".to_string()))
}

fn item_node<'a>(shape: &Shape<'a>) -> Option<Node<'a>> {
    match shape {
        Shape::AssocList(n, _) | Shape::Set(n) => *n,
        _ => None,
    }
}

/// True when an object's root position (a non-empty object against `node`) is a granular
/// map whose children are compared one by one, and not compared whole.
pub(crate) fn is_granular_root(node: Option<Node<'_>>) -> bool {
    let probe = Value::Object(Map::from_iter([(String::new(), Value::Null)]));
    matches!(shape(node, Some(&probe), Some(&probe)), Shape::Map(_))
}

/// Collects the field set `value` specifies at `path` into `set`.
pub(crate) fn collect(
    node: Option<Node<'_>>,
    value: &Value,
    path: &mut Path,
    set: &mut FieldSet,
    strict: bool,
) -> Result<(), ApplyError> {
    let sh = shape(node, Some(value), None);
    match &sh {
        Shape::Leaf => set.insert(path.clone()),
        Shape::Map(n) => {
            for (key, val) in value.as_object().into_iter().flatten() {
                let (child_node, declared) = child(*n, key);
                path.push(PathElement::Field(key.clone()));
                collect(child_node, val, path, set, strict)?;
                if val.is_null() || val.as_object().is_some_and(Map::is_empty) || !declared {
                    set.insert(path.clone());
                }
                path.pop();
            }
        }
        Shape::AssocList(..) | Shape::Set(_) => {
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            match list_elements(&sh, items, path, strict)? {
                None => set.insert(path.clone()),
                Some(pes) => {
                    for (pe, item) in pes.into_iter().zip(items) {
                        path.push(pe);
                        collect(item_node(&sh), item, path, set, strict)?;
                        set.insert(path.clone());
                        path.pop();
                    }
                }
            }
        }
    }
    Ok(())
}

/// Merges `rhs` (the applied configuration) over `lhs` (the live object).
pub(crate) fn merge(node: Option<Node<'_>>, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, r) => return r.cloned(),
        (l, None) => return l.cloned(),
        (Some(l), Some(r)) => (l, r),
    };
    let sh = shape(node, Some(l), Some(r));
    match &sh {
        Shape::Leaf => Some(r.clone()),
        Shape::Map(n) => {
            let (Some(lm), Some(rm)) = (l.as_object(), r.as_object()) else {
                return Some(r.clone());
            };
            let mut out = lm.clone();
            for (key, rv) in rm {
                let (child_node, _) = child(*n, key);
                if let Some(v) = merge(child_node, lm.get(key), Some(rv)) {
                    out.insert(key.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Shape::AssocList(..) | Shape::Set(_) => {
            let (Some(li), Some(ri)) = (l.as_array(), r.as_array()) else {
                return Some(r.clone());
            };
            let (Ok(Some(lpes)), Ok(Some(rpes))) =
                (list_elements(&sh, li, &[], false), list_elements(&sh, ri, &[], false))
            else {
                return Some(r.clone());
            };
            let item = item_node(&sh);
            let find = |pes: &[PathElement], pe: &PathElement| pes.iter().position(|p| p == pe);
            let mut out = Vec::with_capacity(li.len().max(ri.len()));
            let mut emitted = vec![false; ri.len()];
            let mut r_next = 0;
            for (lpe, lv) in lpes.iter().zip(li) {
                match find(&rpes, lpe) {
                    None => out.push(lv.clone()),
                    Some(j) if emitted[j] => {}
                    Some(j) => {
                        // Emit the applied items up to and including this shared one, in
                        // the applied order, so applied items keep their relative order.
                        while r_next <= j {
                            if !emitted[r_next] {
                                let lmatch = find(&lpes, &rpes[r_next]).map(|k| &li[k]);
                                out.extend(merge(item, lmatch, Some(&ri[r_next])));
                                emitted[r_next] = true;
                            }
                            r_next += 1;
                        }
                    }
                }
            }
            for j in 0..ri.len() {
                if !emitted[j] {
                    let lmatch = find(&lpes, &rpes[j]).map(|k| &li[k]);
                    out.extend(merge(item, lmatch, Some(&ri[j])));
                }
            }
            Some(Value::Array(out))
        }
    }
}

/// The fields that differ between two versions of an object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// Present in the new object only.
    pub(crate) added: FieldSet,
    /// Present in both with different values.
    pub(crate) modified: FieldSet,
    /// Present in the old object only.
    pub(crate) removed: FieldSet,
}

fn leaf_diff(old: Option<&Value>, new: Option<&Value>, path: &Path, out: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => out.added.insert(path.clone()),
        (Some(_), None) => out.removed.insert(path.clone()),
        (Some(a), Some(b)) if a != b => out.modified.insert(path.clone()),
        _ => {}
    }
}

/// Compares `old` and `new` at `path`, recording leaves (and list items and map entries)
/// that were added, modified or removed.
///
/// Structs that appear or disappear are not recorded themselves, only what they hold:
/// Kubernetes compares typed Go objects in which most structs always exist.
pub(crate) fn compare(
    node: Option<Node<'_>>,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &mut Path,
    out: &mut Comparison,
) {
    // Equal values hold no differences: a deep equality test is much cheaper than the walk.
    if let (Some(a), Some(b)) = (old, new)
        && a == b
    {
        return;
    }
    let record_self = |out: &mut Comparison, path: &Path| {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path.clone()),
            (Some(_), None) => out.removed.insert(path.clone()),
            _ => {}
        };
    };
    let mut sh = shape(node, old, new);
    if !matches!(sh, Shape::Leaf) && is_empty_container(old) && is_empty_container(new) {
        sh = Shape::Leaf;
    }
    let list_pes = |vals: Option<&Value>, sh: &Shape<'_>| -> Option<Vec<PathElement>> {
        match vals {
            None => Some(Vec::new()),
            Some(v) => list_elements(sh, v.as_array()?, &[], false).ok().flatten(),
        }
    };
    match &sh {
        Shape::Leaf => leaf_diff(old, new, path, out),
        Shape::Map(n) => {
            let empty = Map::new();
            let om = old.and_then(Value::as_object).unwrap_or(&empty);
            let nm = new.and_then(Value::as_object).unwrap_or(&empty);
            for key in om.keys().chain(nm.keys().filter(|k| !om.contains_key(*k))) {
                let (child_node, _) = child(*n, key);
                path.push(PathElement::Field(key.clone()));
                compare(child_node, om.get(key), nm.get(key), path, out);
                path.pop();
            }
            let is_struct = n.is_some_and(|n| n.has_properties());
            let is_list_item = matches!(path.last(), Some(PathElement::Key(_) | PathElement::Value(_)));
            if !is_struct || is_list_item {
                record_self(out, path);
            }
        }
        Shape::AssocList(..) | Shape::Set(_) => {
            let (Some(ope), Some(npe)) = (list_pes(old, &sh), list_pes(new, &sh)) else {
                // Items cannot be named: compare the lists whole.
                leaf_diff(old, new, path, out);
                return;
            };
            let oi = old.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let ni = new.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for (i, pe) in ope.iter().enumerate() {
                let j = npe.iter().position(|p| p == pe);
                path.push(pe.clone());
                compare(item_node(&sh), Some(&oi[i]), j.map(|j| &ni[j]), path, out);
                path.pop();
            }
            for (j, pe) in npe.iter().enumerate() {
                if !ope.contains(pe) {
                    path.push(pe.clone());
                    compare(item_node(&sh), None, Some(&ni[j]), path, out);
                    path.pop();
                }
            }
            record_self(out, path);
        }
    }
}

/// Removes the field at `path` from `value`. Maps and lists left empty by the removal are
/// removed too, as Kubernetes does. Returns true when `value` itself became empty.
pub(crate) fn remove(node: Option<Node<'_>>, value: &mut Value, path: &[PathElement]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let sh = shape(node, Some(value), None);
    match (&sh, first) {
        (Shape::Map(n), PathElement::Field(key)) => {
            let (child_node, _) = child(*n, key);
            let Some(m) = value.as_object_mut() else {
                return false;
            };
            let gone = match m.get_mut(key) {
                None => return false,
                Some(_) if rest.is_empty() => true,
                Some(c) => remove(child_node, c, rest),
            };
            if gone {
                m.remove(key);
                return m.is_empty();
            }
            false
        }
        (Shape::AssocList(..) | Shape::Set(_), PathElement::Key(_) | PathElement::Value(_)) => {
            let item = item_node(&sh);
            let Some(items) = value.as_array_mut() else {
                return false;
            };
            let Ok(Some(pes)) = list_elements(&sh, items, &[], false) else {
                return false;
            };
            let Some(i) = pes.iter().position(|p| p == first) else {
                return false;
            };
            if rest.is_empty() {
                items.remove(i);
                return items.is_empty();
            }
            remove(item, &mut items[i], rest);
            false
        }
        _ => false,
    }
}
