//! Server-side apply and field ownership: merging applied configurations by the schema's
//! list and map semantics, `metadata.managedFields` bookkeeping for apply and for ordinary
//! writes, and conflicts between field managers, as kube-apiserver does them.
//!
//! Objects are wire JSON. Only the fields that Kubernetes tracks take part: everything but
//! `apiVersion`, `kind`, `status` (unless writing the `status` subresource) and `metadata`,
//! of which `labels`, `annotations`, `finalizers` and `ownerReferences` are tracked.

mod fieldset;
mod managed;
mod walk;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub use fieldset::{FieldSet, Path, PathElement, canonical_json, path_string};
pub use managed::{ManagedEntry, Operation};

use crate::schema::Node;
use walk::Comparison;

/// The `metadata` fields whose ownership is tracked.
const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The manager Kubernetes gives the fields of an object that predates field tracking when
/// the first apply comes.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// A field the applied configuration would change although another manager owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager owning the field.
    pub manager: String,
    /// The field, in Kubernetes' path notation (`.spec.replicas`).
    pub field: String,
    /// The owner's entry is an `Update` one made through this API version (`apps/v1`).
    pub api_version: Option<String>,
    /// The owner's entry was made through this subresource (`status`, `scale`).
    pub subresource: Option<String>,
}

impl Conflict {
    /// The manager as Kubernetes prints it: `"kubectl" with subresource "scale" using apps/v1`.
    fn manager_display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if let Some(v) = &self.api_version {
            s.push_str(&format!(" using {v}"));
        }
        s
    }
}

/// Kubernetes' message for an apply that conflicts (`Apply failed with 1 conflict: …`).
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.manager_display(), c.field);
    }
    let mut sorted: Vec<&Conflict> = conflicts.iter().collect();
    sorted.sort_by(|a, b| a.manager.cmp(&b.manager).then_with(|| a.field.cmp(&b.field)));
    let mut lines: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    for c in sorted {
        let who = c.manager_display();
        if last.as_ref() != Some(&who) {
            lines.push(format!("conflicts with {who}:"));
            last = Some(who);
        }
        lines.push(format!("- {}", c.field));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// Why an apply (or a managedFields decode) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; retry with `force` to take them.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<Conflict>),
    /// The applied configuration is malformed for its schema.
    #[error("{0}")]
    Invalid(String),
    /// `metadata.managedFields` could not be decoded.
    #[error("invalid managedFields: {0}")]
    BadManagedFields(String),
}

/// Result of this module's fallible functions.
pub type Result<T, E = ApplyError> = std::result::Result<T, E>;

/// The part of an object whose fields are tracked, as `fields_of`, merging and comparison
/// see it.
fn tracked(obj: &Value, include_status: bool) -> Value {
    let mut out = Map::new();
    let Some(m) = obj.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if !include_status => {}
            "metadata" => {
                let meta: Map<String, Value> =
                    TRACKED_METADATA.iter().filter_map(|f| v.get(*f).map(|x| (f.to_string(), x.clone()))).collect();
                if !meta.is_empty() {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Writes the tracked part `t` back into the whole object `obj`.
fn untrack(obj: &mut Value, t: &Value, include_status: bool) {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Some(m) = obj.as_object_mut() else { return };
    m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || (k == "status" && !include_status));
    let empty = Map::new();
    let tm = t.as_object().unwrap_or(&empty);
    for (k, v) in tm {
        if k != "metadata" {
            m.insert(k.clone(), v.clone());
        }
    }
    let meta = m.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        for f in TRACKED_METADATA {
            match tm.get("metadata").and_then(|tmeta| tmeta.get(f)) {
                Some(v) => meta.insert(f.to_string(), v.clone()),
                None => meta.remove(f),
            };
        }
    }
}

/// Compares the tracked parts of `old` (`None`: an empty object) and `new`: the same
/// result as `walk::compare` of `tracked(old)` with `tracked(new)`, without copying the
/// objects (only the small tracked part of `metadata` is copied).
fn compare_tracked(schema: Node<'_>, old: Option<&Value>, new: &Value, include_status: bool) -> Comparison {
    let mut cmp = Comparison::default();
    let empty = Map::new();
    let om = old.and_then(Value::as_object).unwrap_or(&empty);
    let nm = new.as_object().unwrap_or(&empty);
    let tracked_meta = |m: &Map<String, Value>| -> Option<Value> {
        let meta = m.get("metadata")?;
        let t: Map<String, Value> =
            TRACKED_METADATA.iter().filter_map(|f| meta.get(*f).map(|x| (f.to_string(), x.clone()))).collect();
        (!t.is_empty()).then_some(Value::Object(t))
    };
    let (old_meta, new_meta) = (tracked_meta(om), tracked_meta(nm));
    let is_tracked = |k: &str| match k {
        "apiVersion" | "kind" | "metadata" => false,
        "status" => include_status,
        _ => true,
    };
    let differs = |k: &str| is_tracked(k) && om.get(k) != nm.get(k);
    let any_difference = om.keys().chain(nm.keys()).any(|k| differs(k)) || old_meta != new_meta;
    if !any_difference {
        return cmp;
    }
    if !walk::is_granular_root(Some(schema)) {
        // The root is compared whole (an unusual custom resource schema): as `walk::compare` does.
        walk::compare(
            Some(schema),
            Some(&tracked(old.unwrap_or(&Value::Null), include_status)),
            Some(&tracked(new, include_status)),
            &mut Vec::new(),
            &mut cmp,
        );
        return cmp;
    }
    let mut path = Vec::new();
    for key in om.keys().chain(nm.keys().filter(|k| !om.contains_key(*k))) {
        if key == "metadata" || !is_tracked(key) {
            continue;
        }
        path.push(PathElement::Field(key.clone()));
        walk::compare(walk::child(Some(schema), key).0, om.get(key), nm.get(key), &mut path, &mut cmp);
        path.pop();
    }
    path.push(PathElement::Field("metadata".into()));
    walk::compare(walk::child(Some(schema), "metadata").0, old_meta.as_ref(), new_meta.as_ref(), &mut path, &mut cmp);
    cmp
}

fn fields_strict(schema: Node<'_>, obj: &Value, include_status: bool) -> Result<FieldSet> {
    let mut set = FieldSet::new();
    walk::collect(Some(schema), &tracked(obj, include_status), &mut Vec::new(), &mut set, true)?;
    Ok(set)
}

/// The fields `obj` specifies: its leaves, list items and map entries, leaving out
/// `apiVersion`, `kind`, `status` and untracked `metadata`. Lists whose items cannot be
/// named (a key field missing) count as one atomic field.
pub fn fields_of(schema: Node<'_>, obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    // Lenient walks do not fail.
    let _ = walk::collect(Some(schema), &tracked(obj, false), &mut Vec::new(), &mut set, false);
    set
}

/// Applies `applied` (the configuration `manager` wants) to `live` (`None` to create) and
/// returns the new object with its `metadata.managedFields` updated.
///
/// Fields the same manager applied before and omits now are removed unless another
/// manager owns them. Changing a field another manager owns is a [`ApplyError::Conflict`]
/// unless `force`, which moves the field to `manager`. `now` is an RFC 3339 time and
/// `api_version` the request's `group/version`.
pub fn apply(
    schema: Node<'_>,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
    api_version: &str,
) -> Result<Value> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid("the applied configuration must be an object".into()));
    }
    if applied.pointer("/metadata/managedFields").is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::Invalid("metadata.managedFields must be nil".into()));
    }
    let config_set = fields_strict(schema, applied, false)?;
    let applied_t = tracked(applied, false);
    let live_t = live.map_or_else(|| Value::Object(Map::new()), |l| tracked(l, false));

    let mut entries = match live {
        Some(l) => managed::decode(l)?,
        None => Vec::new(),
    };
    if let (Some(l), true) = (live, entries.is_empty()) {
        let existing = fields_of(schema, l);
        if !existing.is_empty() {
            entries.push(ManagedEntry::update(BEFORE_FIRST_APPLY, api_version, now, None, existing));
        }
    }

    let mine = entries.iter().position(|e| e.is(manager, Operation::Apply, api_version, None));
    let last_set = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();
    let others_owned = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != mine)
        .fold(FieldSet::new(), |acc, (_, e)| acc.union(&e.fields));
    let owned = others_owned.union(&config_set);

    let mut merged = walk::merge(Some(schema), Some(&live_t), Some(&applied_t)).unwrap_or_default();
    let to_remove = last_set.difference(&owned);
    for path in to_remove.iter() {
        if !owned.touches(path) {
            walk::remove(Some(schema), &mut merged, path);
        }
    }

    let mut cmp = Comparison::default();
    walk::compare(Some(schema), Some(&live_t), Some(&merged), &mut Vec::new(), &mut cmp);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) == mine {
            continue;
        }
        let lost = e.fields.intersection(&changed);
        conflicts.extend(lost.iter().map(|p| Conflict {
            manager: e.manager.clone(),
            field: path_string(p),
            api_version: (e.operation == Operation::Update).then(|| e.api_version.clone()),
            subresource: e.subresource.clone(),
        }));
        e.fields = e.fields.difference(&lost).difference(&cmp.removed);
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflict(conflicts));
    }

    let object_changed = merged != live_t;
    match mine {
        Some(i) => {
            let e = &mut entries[i];
            e.fields = config_set;
            e.api_version = api_version.to_string();
            if object_changed || e.time.is_none() {
                e.time = Some(now.to_string());
            }
        }
        None => entries.push(ManagedEntry::apply(manager, api_version, now, config_set)),
    }
    entries.retain(|e| !e.fields.is_empty());

    let mut out = match live {
        Some(l) => l.clone(),
        None => applied.clone(),
    };
    untrack(&mut out, &merged, false);
    managed::encode(&mut out, entries);
    Ok(out)
}

/// Records the fields an ordinary write (create, update, patch; `subresource` for writes
/// to e.g. `status` or `scale`) changed between `old` (`None` on create) and `new` as owned by
/// `manager` with `operation: Update`, taking them from other managers.
///
/// Managed fields sent in `new` are kept when they decode and the write is not to a
/// subresource; otherwise those of `old` are carried over (invalid ones are reset).
pub fn track_update(
    schema: Node<'_>,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let include_status = subresource == Some("status");
    let stored = old.and_then(|o| o.pointer("/metadata/managedFields")).and_then(Value::as_array);
    let sent = new.pointer("/metadata/managedFields");
    // The stored entries carry over when the write is to a subresource or sends none (or the
    // same ones back): then only the entries this write changes need decoding.
    let sends_none = match sent {
        None | Some(Value::Null) => true,
        Some(Value::Array(list)) => list.is_empty() || Some(list) == stored,
        Some(_) => false,
    };
    if let Some(list) = stored
        && (subresource.is_some() || sends_none)
        && let Ok(entries) = managed::decode_headers(list)
    {
        track_stored(schema, old, new, entries, manager, now, api_version, subresource, include_status);
        return;
    }
    track_update_decoded(schema, old, new, manager, now, api_version, subresource);
}

/// [`track_update`] with every entry decoded.
fn track_update_decoded(
    schema: Node<'_>,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let include_status = subresource == Some("status");
    // (A subresource write never keeps what it sent: its managedFields are not decoded.)
    let sent = if subresource.is_none() { managed::decode(new).ok().filter(|e| !e.is_empty()) } else { None };
    let entries = match sent {
        Some(e) => e,
        None => old.and_then(|o| managed::decode(o).ok()).unwrap_or_default(),
    };

    let cmp = compare_tracked(schema, old, new, include_status);
    let (changed, removed) = changed_and_removed(cmp);
    track_update_entries(new, entries, changed, removed, manager, now, api_version, subresource);
}

/// The fields a write changed (modified or added) and those it removed.
fn changed_and_removed(cmp: Comparison) -> (FieldSet, FieldSet) {
    let Comparison { added, modified, removed } = cmp;
    let changed = if modified.is_empty() {
        added
    } else if added.is_empty() {
        modified
    } else {
        modified.union(&added)
    };
    (changed, removed)
}

/// [`track_update`] over the stored entries of `old`: the same result, but an entry whose
/// fields the write neither changes nor removes is written back as stored, undecoded.
#[allow(clippy::too_many_arguments)] // track_update's arguments and its decoded entries
fn track_stored(
    schema: Node<'_>,
    old: Option<&Value>,
    new: &mut Value,
    mut entries: Vec<managed::StoredEntry<'_>>,
    manager: &str,
    now: &str,
    api_version: &str,
    subresource: Option<&str>,
    include_status: bool,
) {
    let cmp = compare_tracked(schema, old, new, include_status);
    let (changed, removed) = changed_and_removed(cmp);
    let mine = entries.iter().position(|e| e.entry.is(manager, Operation::Update, api_version, subresource));
    let mut key = String::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let touched = Some(i) == mine || changed.iter().chain(removed.iter()).any(|p| e.owns(p, &mut key));
        if touched && e.decode_fields().is_err() {
            // Stored entries are this module's encoding; one that does not decode resets
            // them all, as decoding them all up front does.
            return track_update_entries(new, Vec::new(), changed, removed, manager, now, api_version, subresource);
        }
        if Some(i) != mine && e.stored.is_none() {
            e.entry.fields.remove_all(&changed);
            e.entry.fields.remove_all(&removed);
        }
    }
    if !changed.is_empty() || mine.is_some() {
        match mine {
            Some(i) => {
                let e = &mut entries[i].entry;
                e.fields.remove_all(&removed);
                e.fields.insert_all(&changed);
                if !changed.is_empty() {
                    e.time = Some(now.to_string());
                }
            }
            None => entries.push(managed::StoredEntry {
                entry: ManagedEntry::update(manager, api_version, now, subresource, changed),
                stored: None,
            }),
        }
    }
    entries.retain(|e| !e.is_empty());
    managed::encode_stored(new, entries);
}

/// The end of [`track_update`] for decoded `entries`.
#[allow(clippy::too_many_arguments)] // the state of track_update at that point
fn track_update_entries(
    new: &mut Value,
    mut entries: Vec<ManagedEntry>,
    changed: FieldSet,
    removed: FieldSet,
    manager: &str,
    now: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let mine = entries.iter().position(|e| e.is(manager, Operation::Update, api_version, subresource));
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            e.fields.remove_all(&changed);
            e.fields.remove_all(&removed);
        }
    }
    if !changed.is_empty() || mine.is_some() {
        match mine {
            Some(i) => {
                let e = &mut entries[i];
                e.fields.remove_all(&removed);
                e.fields.insert_all(&changed);
                if !changed.is_empty() {
                    e.time = Some(now.to_string());
                }
            }
            None => entries.push(ManagedEntry::update(manager, api_version, now, subresource, changed)),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    managed::encode(new, entries);
}
