//! Patches of objects: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes' strategic merge patch, driven by the schema's patch strategies and
//! merge keys.
//!
//! Strategic merge patch is what `kubectl apply` (client-side), `edit`, `set image`,
//! `label` and `annotate` send. Its rules:
//! - maps merge key by key; a `null` value deletes the key;
//! - lists whose field has `x-kubernetes-patch-strategy: merge` merge: lists of maps by
//!   the field's merge key (`containers` by `name`), lists of scalars as sets; every
//!   other list is replaced;
//! - directives: `$patch: replace|merge|delete` inside a map or a list item,
//!   `$retainKeys` (fields with the `retainKeys` strategy), `$deleteFromPrimitiveList/<f>`
//!   and `$setElementOrder/<f>`.

use serde_json::{Map, Value};

use crate::schema::Node;

#[cfg(test)]
mod tests;

/// The key of the `$patch` directive.
const PATCH_DIRECTIVE: &str = "$patch";
/// The key of the `$retainKeys` directive.
const RETAIN_KEYS: &str = "$retainKeys";
/// The prefix of `$deleteFromPrimitiveList/<field>` keys.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
/// The prefix of `$setElementOrder/<field>` keys.
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Why a patch could not be applied; the API server answers 400 (malformed patch) or
/// 422 (a JSON patch operation that does not apply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not of the shape its content type requires.
    #[error("{0}")]
    Malformed(String),
    /// A `$patch` directive with an unknown value.
    #[error("unknown patch type: {value} in map: {path}")]
    UnknownPatchType {
        /// The directive's value as sent.
        value: String,
        /// Where it was found (`.spec.template`).
        path: String,
    },
    /// A directive whose value has the wrong shape (e.g. `$retainKeys` not a list of strings).
    #[error("invalid value for {directive} at {path}: {detail}")]
    BadDirective {
        /// The directive's key.
        directive: String,
        /// Where it was found.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An item of a merge list lacks the list's merge key.
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The patch item, rendered as JSON.
        item: String,
        /// The merge key, e.g. `name`.
        key: String,
    },
    /// A JSON patch operation failed; names the operation.
    #[error("the operation #{index} ({op} {path}) failed: {reason}")]
    JsonPatchFailed {
        /// Index of the failing operation in the patch (from 0).
        index: usize,
        /// The operation (`add`, `remove`, `replace`, `move`, `copy`, `test`).
        op: String,
        /// The operation's `path`.
        path: String,
        /// Why it failed.
        reason: String,
    },
}

/// Applies an RFC 7386 JSON merge patch to `target`: objects merge recursively, `null`
/// removes a key, anything else (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch (a list of operations) to `target`. On error `target`
/// is left unchanged and the error names the failing operation.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops =
        patch.as_array().ok_or_else(|| PatchError::Malformed("json patch must be a list of operations".into()))?;
    let mut parsed = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let operation: json_patch::PatchOperation = serde_json::from_value(op.clone())
            .map_err(|e| PatchError::Malformed(format!("invalid json patch operation #{index}: {e}")))?;
        parsed.push(operation);
    }
    json_patch::patch(target, &parsed).map_err(|e| {
        let (op, path) = ops
            .get(e.operation)
            .map(|o| {
                let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                (field("op"), field("path"))
            })
            .unwrap_or_default();
        PatchError::JsonPatchFailed { index: e.operation, op, path, reason: e.kind.to_string() }
    })
}

/// Applies a Kubernetes strategic merge patch to `original`, the lists and maps merged
/// as `schema` (the kind's schema) says. Both documents must be JSON objects.
pub fn strategic_merge_patch(schema: Node<'_>, original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed("strategic merge patch must be a JSON object".into()));
    }
    strategic_merge_patch_owned(schema, original.clone(), patch)
}

/// [`strategic_merge_patch`] of an `original` the caller gives up (no copy of it is made).
pub fn strategic_merge_patch_owned(schema: Node<'_>, original: Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed("strategic merge patch must be a JSON object".into()));
    };
    let original = match original {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::Malformed("the object to patch is not a JSON object".into()));
        }
    };
    merge_map(original, patch, Some(schema), "").map(Value::Object)
}

/// What a strategy string (`merge`, `retainKeys`, `merge,retainKeys`, `replace`) asks for.
fn strategy_has(node: Option<Node<'_>>, wanted: &str) -> bool {
    node.and_then(|n| n.patch_strategy()).is_some_and(|s| s.split(',').any(|p| p.trim() == wanted))
}

/// The schema of a field of an object: a declared property, else the map's value schema.
fn field_schema<'a>(node: Option<Node<'a>>, key: &str) -> Option<Node<'a>> {
    let node = node?;
    node.property(key).or_else(|| node.additional_properties())
}

fn string_list(value: &Value, directive: &str, path: &str) -> Result<Vec<Value>, PatchError> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(PatchError::BadDirective {
            directive: directive.to_string(),
            path: path.to_string(),
            detail: "must be a list".into(),
        }),
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<Node<'_>>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return Ok(strip_map(patch)),
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => {
                return Err(PatchError::UnknownPatchType { value: render(directive), path: display_path(path) });
            }
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys = string_list(retain, RETAIN_KEYS, path)?;
        let mut names = Vec::with_capacity(keys.len());
        for k in &keys {
            match k.as_str() {
                Some(s) => names.push(s),
                None => {
                    return Err(PatchError::BadDirective {
                        directive: RETAIN_KEYS.into(),
                        path: display_path(path),
                        detail: "must be a list of strings".into(),
                    });
                }
            }
        }
        let outside = patch.iter().find(|(k, v)| !v.is_null() && !is_directive_key(k) && !names.contains(&k.as_str()));
        if let Some((k, _)) = outside {
            return Err(PatchError::BadDirective {
                directive: RETAIN_KEYS.into(),
                path: display_path(path),
                detail: format!("the patch sets {k:?}, which is not in the list"),
            });
        }
        original.retain(|k, _| names.contains(&k.as_str()));
    }

    // (field, $setElementOrder list, the field's list before the patch)
    let mut orders: Vec<(&str, Vec<Value>, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let remove = string_list(value, key, path)?;
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
        } else if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let server = original.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
            orders.push((field, string_list(value, key, path)?, server));
        }
    }

    for (key, patch_value) in patch {
        if key.starts_with('$') && is_directive_key(key) {
            continue;
        }
        let child_path = format!("{path}.{key}");
        if patch_value.is_null() {
            original.remove(key);
            continue;
        }
        let field = field_schema(schema, key);
        let merged = match (original.remove(key), patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) if !strategy_has(field, "replace") => {
                Some(Value::Object(merge_map(o, p, field, &child_path)?))
            }
            (Some(Value::Array(o)), Value::Array(p)) => Some(Value::Array(merge_list(o, p, field, &child_path)?)),
            _ => strip(patch_value),
        };
        if let Some(v) = merged {
            original.insert(key.clone(), v);
        }
    }

    for (field, order, server) in orders {
        let key = field_schema(schema, field).and_then(|n| n.patch_merge_key());
        if let Some(Value::Array(items)) = original.get_mut(field) {
            let taken = std::mem::take(items);
            *items = apply_order(taken, &order, &server, key);
        }
    }
    Ok(original)
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        || key.starts_with(SET_ELEMENT_ORDER)
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: Option<Node<'_>>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    // A `{"$patch": "replace"}` item replaces the whole list, whatever the strategy.
    let mut replace = false;
    for item in patch {
        if let Some(d) = item.get(PATCH_DIRECTIVE) {
            match d.as_str() {
                Some("replace") => replace = true,
                Some("delete" | "merge") => {}
                // (`merge` is refused below for lists of maps, as Kubernetes does)
                _ => {
                    return Err(PatchError::UnknownPatchType { value: render(d), path: display_path(path) });
                }
            }
        }
    }
    if replace || !strategy_has(field, "merge") {
        return Ok(patch.iter().filter(|i| i.get(PATCH_DIRECTIVE).is_none()).filter_map(strip).collect());
    }
    let items_schema = field.and_then(|f| f.items());
    let merge_key = field.and_then(|f| f.patch_merge_key());
    let is_map_list = patch.iter().chain(original.iter()).any(Value::is_object);

    if !is_map_list {
        let mut out = original.clone();
        for item in patch {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        return Ok(apply_order(out, patch, &original, None));
    }
    let Some(key) = merge_key else {
        // A merge list of maps without a merge key cannot be merged: replace it.
        return Ok(patch.iter().filter_map(strip).collect());
    };

    // First the `$patch: delete` items, then the others merge in, then the result is
    // ordered as the patch lists its items, server-only items kept at their places.
    let mut server = original;
    let mut items = Vec::with_capacity(patch.len());
    for item in patch {
        let Value::Object(item_map) = item else {
            return Err(PatchError::Malformed(format!(
                "{}: expected a map in a list merged by {key}, got {}",
                display_path(path),
                render(item)
            )));
        };
        let directive = item_map.get(PATCH_DIRECTIVE).and_then(Value::as_str);
        if directive == Some("merge") {
            return Err(PatchError::Malformed(format!(
                "{}: merging lists cannot yet be specified in the patch",
                display_path(path)
            )));
        }
        let Some(id) = item_map.get(key) else {
            return Err(PatchError::MissingMergeKey { item: render(item), key: key.to_string() });
        };
        if directive == Some("delete") {
            server.retain(|o| o.get(key) != Some(id));
        } else {
            items.push((id, item_map));
        }
    }

    let mut out = server.clone();
    for (id, item_map) in &items {
        let item_path = format!("{path}[{key}={}]", render(id));
        match out.iter().position(|o| o.get(key) == Some(*id)) {
            Some(i) => {
                let existing = match std::mem::take(&mut out[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                out[i] = Value::Object(merge_map(existing, item_map, items_schema, &item_path)?);
            }
            None => out.push(Value::Object(strip_map(item_map))),
        }
    }
    let order: Vec<Value> = items.iter().map(|(_, m)| Value::Object((*m).clone())).collect();
    Ok(apply_order(out, &order, &server, Some(key)))
}

/// Orders a merged list as `$setElementOrder` asks: the items the order names follow
/// it; the others (server-only items) keep their relative order from the list before
/// the patch (`server`) and are interleaved with the named ones by their server
/// positions where both have one, the named ones winning ties.
fn apply_order(items: Vec<Value>, order: &[Value], server: &[Value], merge_key: Option<&str>) -> Vec<Value> {
    let id_of = |v: &Value| -> Option<Value> {
        match merge_key {
            Some(k) if v.is_object() => v.get(k).cloned(),
            _ if v.is_object() => None,
            _ => Some(v.clone()),
        }
    };
    let position_in = |list: &[Value], v: &Value| -> Option<usize> {
        let id = id_of(v)?;
        list.iter().position(|o| id_of(o).as_ref() == Some(&id))
    };
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) =
        items.into_iter().partition(|v| position_in(order, v).is_some());
    named.sort_by_key(|v| position_in(order, v));
    server_only.sort_by_key(|v| position_in(server, v).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position_in(server, l), position_in(server, r)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// A patch value as it goes into the result where nothing merges with it: directives
/// removed, nulls dropped. None when the value asks for its own deletion.
fn strip(value: &Value) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return None;
            }
            Some(Value::Object(strip_map(m)))
        }
        Value::Array(items) => {
            Some(Value::Array(items.iter().filter(|i| i.get(PATCH_DIRECTIVE).is_none()).filter_map(strip).collect()))
        }
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn strip_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().filter(|(k, _)| !is_directive_key(k)).filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v))).collect()
}

fn render(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn display_path(path: &str) -> String {
    if path.is_empty() { ".".into() } else { path.to_string() }
}
