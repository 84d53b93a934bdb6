//! `metadata.managedFields` entries: decoding them from an object, and writing them back in
//! Kubernetes' order.

use serde_json::{Map, Value, json};

use super::{ApplyError, FieldSet};

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
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        Ok(ManagedEntry {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
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

/// Writes `entries` into `obj`'s `metadata.managedFields` in Kubernetes' order (operation,
/// time, manager, API version, subresource), removing the field when there are none.
pub(crate) fn encode(obj: &mut Value, mut entries: Vec<ManagedEntry>) {
    entries.sort_by(|a, b| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let Some(m) = obj.as_object_mut() else { return };
    let meta = m.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(entries.iter().map(ManagedEntry::to_json).collect()));
    }
}
