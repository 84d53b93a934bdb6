//! Small accessors for the metadata of objects held as JSON values.

use serde_json::{Map, Value, json};

/// `metadata` of an object, created if missing (an object that is not a JSON object is left alone).
pub fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut()
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name` (empty when missing).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.namespace` (empty when missing).
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or("")
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: i64) {
    if let Some(m) = meta_mut(obj) {
        m.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// `metadata.resourceVersion` parsed as a revision. `Err` when present but not a number.
pub fn resource_version(obj: &Value) -> Result<Option<i64>, String> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| s.to_string()),
    }
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// True when `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some_and(|v| !v.is_null())
}

/// `metadata.labels` (an empty map when missing).
pub fn labels(obj: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    obj.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object).unwrap_or(&EMPTY)
}

/// The current time as Kubernetes writes timestamps: RFC 3339, seconds precision, UTC.
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The object encoded for the store: without the fields Kubernetes does not store
/// (resourceVersion, selfLink).
pub fn encode_for_store(obj: &Value) -> Vec<u8> {
    let has_volatile =
        obj.get("metadata").is_some_and(|m| m.get("resourceVersion").is_some() || m.get("selfLink").is_some());
    if !has_volatile {
        return serde_json::to_vec(obj).unwrap_or_default();
    }
    let mut copy = obj.clone();
    if let Some(m) = meta_mut(&mut copy) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&copy).unwrap_or_default()
}
