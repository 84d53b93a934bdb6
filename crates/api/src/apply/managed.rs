//! `metadata.managedFields` entries: decoding them from an object, and writing them back in
//! Kubernetes' order.

use serde_json::{Map, Value, json};

use super::{ApplyError, FieldSet, PathElement};

/// How a manager came to own its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or patch.
    Update,
}

impl Operation {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// The field manager's name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The `group/version` the fields were written through.
    pub api_version: String,
    /// RFC 3339 time of the last change.
    pub time: Option<String>,
    /// The subresource written (`status`, `scale`), if any.
    pub subresource: Option<String>,
    /// The fields owned.
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// A new `Apply` entry.
    pub fn apply(manager: &str, api_version: &str, now: &str, fields: FieldSet) -> ManagedEntry {
        ManagedEntry {
            manager: manager.to_string(),
            operation: Operation::Apply,
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: None,
            fields,
        }
    }

    /// A new `Update` entry.
    pub fn update(
        manager: &str,
        api_version: &str,
        now: &str,
        subresource: Option<&str>,
        fields: FieldSet,
    ) -> ManagedEntry {
        ManagedEntry {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: subresource.map(str::to_string),
            fields,
        }
    }

    /// True when this is the entry a write by `manager` with `operation` records into:
    /// Apply entries are one per manager (and subresource), Update entries one per manager,
    /// API version and subresource.
    pub fn is(&self, manager: &str, operation: Operation, api_version: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    fn from_json(v: &Value) -> Result<ManagedEntry, ApplyError> {
        let mut entry = ManagedEntry::header_from_json(v)?;
        if let Some(f) = v.get("fieldsV1") {
            entry.fields = FieldSet::from_fields_v1(f)?;
        }
        Ok(entry)
    }

    /// The entry without its fields (left empty): who, how, when, through what.
    fn header_from_json(v: &Value) -> Result<ManagedEntry, ApplyError> {
        let bad = |why: &str| ApplyError::BadManagedFields(why.to_string());
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let operation = match v.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            Some(other) => return Err(bad(&format!("unknown operation {other:?}"))),
            None => return Err(bad("an entry has no operation")),
        };
        match v.get("fieldsType").and_then(Value::as_str) {
            Some("FieldsV1") => {}
            Some(other) => return Err(bad(&format!("unknown fieldsType {other:?}"))),
            None => return Err(bad("an entry has no fieldsType")),
        }
        Ok(ManagedEntry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: FieldSet::new(),
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        self.to_json_with(self.fields.to_fields_v1())
    }

    /// The wire form with `fields_v1` as its fields.
    fn to_json_with(&self, fields_v1: Value) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), fields_v1);
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }
}

/// The entries of `obj`'s `metadata.managedFields` (none when absent).
pub(crate) fn decode(obj: &Value) -> Result<Vec<ManagedEntry>, ApplyError> {
    match obj.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(ManagedEntry::from_json).collect(),
        Some(other) => Err(ApplyError::BadManagedFields(format!("expected a list, found {other}"))),
    }
}

/// One entry of a stored object as a write sees it: only the entries whose fields the write
/// changes are decoded; the others keep their stored `fieldsV1` (which this module wrote, so
/// it is already in canonical form) and are written back unchanged.
pub(crate) struct StoredEntry<'a> {
    /// The entry; `fields` is empty while `stored` is set.
    pub(crate) entry: ManagedEntry,
    /// The stored `fieldsV1`, until the fields are decoded.
    pub(crate) stored: Option<&'a Value>,
}

impl StoredEntry<'_> {
    /// Decodes the fields (once).
    pub(crate) fn decode_fields(&mut self) -> Result<(), ApplyError> {
        if let Some(raw) = self.stored.take() {
            self.entry.fields = FieldSet::from_fields_v1(raw)?;
        }
        Ok(())
    }

    /// True when `path` is a member of the entry's fields.
    pub(crate) fn owns(&self, path: &[PathElement], key: &mut String) -> bool {
        match self.stored {
            Some(raw) => fields_v1_contains(raw, path, key),
            None => self.entry.fields.contains(path),
        }
    }

    /// True when the entry owns no fields.
    pub(crate) fn is_empty(&self) -> bool {
        match self.stored {
            Some(raw) => raw.as_object().is_none_or(Map::is_empty),
            None => self.entry.fields.is_empty(),
        }
    }
}

/// True when `path` is a member of the `FieldsV1` object `raw`: its position exists and is a
/// leaf (`{}`) or marked with `.` (as [`FieldSet::from_fields_v1`] decodes it).
fn fields_v1_contains(raw: &Value, path: &[PathElement], key: &mut String) -> bool {
    if path.is_empty() {
        return false;
    }
    let mut node = raw;
    for pe in path {
        pe.write_fields_v1_key(key);
        match node.get(key.as_str()) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.as_object().is_some_and(|m| m.is_empty() || m.contains_key("."))
}

/// The entries of the list `list` (an object's `metadata.managedFields`), their fields left
/// undecoded.
pub(crate) fn decode_headers(list: &[Value]) -> Result<Vec<StoredEntry<'_>>, ApplyError> {
    list.iter()
        .map(|v| {
            let entry = ManagedEntry::header_from_json(v)?;
            Ok(StoredEntry { entry, stored: Some(v.get("fieldsV1").unwrap_or(&Value::Null)) })
        })
        .collect()
}

/// Writes `entries` into `obj`'s `metadata.managedFields` in Kubernetes' order (operation,
/// time, manager, API version, subresource), removing the field when there are none.
pub(crate) fn encode(obj: &mut Value, entries: Vec<ManagedEntry>) {
    encode_stored(obj, entries.into_iter().map(|entry| StoredEntry { entry, stored: None }).collect());
}

/// [`encode`] of entries some of which keep their stored fields.
pub(crate) fn encode_stored(obj: &mut Value, mut entries: Vec<StoredEntry<'_>>) {
    entries.sort_by(|a, b| {
        let (a, b) = (&a.entry, &b.entry);
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list: Vec<Value> = entries
        .iter()
        .map(|e| match e.stored {
            Some(raw) => e.entry.to_json_with(raw.clone()),
            None => e.entry.to_json(),
        })
        .collect();
    let Some(m) = obj.as_object_mut() else { return };
    let meta = m.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}
