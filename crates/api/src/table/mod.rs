//! Server-side printing: the `Table` columns and row cells Kubernetes' printers produce for
//! each built-in kind (what `kubectl get` shows), and the human durations of AGE cells.
//!
//! Rows always carry every column, `-o wide` ones included (priority 1), as the Kubernetes
//! API server does; kubectl hides the wide ones unless asked.

mod kinds;
mod pod;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;

/// One column of a Table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Name`, `Ready`; kubectl upper-cases it.
    pub name: String,
    /// Cell type: `string`, `integer`, `boolean`, `number` or `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: String,
    /// 0 for default columns, 1 for the ones `-o wide` adds.
    pub priority: i32,
}

/// A column as written in the tables of [`kinds`]: name, type, priority, description.
type Spec = (&'static str, &'static str, i32, &'static str);

const NAME: Spec = ("Name", "string", 0, "Name of the object, unique within its namespace");
const AGE: Spec = ("Age", "string", 0, "Time since the object was created");
const CREATED_AT: Spec = ("Created At", "date", 0, "When the object was created");

/// The Table columns of resource `res`.
pub fn columns(res: &ResourceInfo) -> Vec<Column> {
    kinds::specs(res)
        .iter()
        .map(|&(name, type_, priority, description)| Column {
            name: name.to_string(),
            type_,
            // Kubernetes marks VolumeAttachment's Attacher column as a name column too.
            format: if name == "Name" || name == "Attacher" { "name" } else { "" },
            description: description.to_string(),
            priority,
        })
        .collect()
}

/// The cells of the Table row for `obj`, one per column of [`columns`]; `now` is the
/// time ages are measured to.
pub fn row(res: &ResourceInfo, obj: &Value, now: Timestamp) -> Vec<Value> {
    let ctx = Ctx { obj, now };
    let mut cells = kinds::cells(res, &ctx);
    // Never hand out a row that does not fit the header.
    cells.resize(kinds::specs(res).len(), Value::String(String::new()));
    cells
}

/// What a row printer reads: the object and the time.
pub(crate) struct Ctx<'a> {
    pub(crate) obj: &'a Value,
    pub(crate) now: Timestamp,
}

impl Ctx<'_> {
    /// The value at JSON pointer `path` (Null when absent).
    pub(crate) fn get(&self, path: &str) -> &Value {
        self.obj.pointer(path).unwrap_or(&Value::Null)
    }

    /// The string at `path`, empty when absent.
    pub(crate) fn str(&self, path: &str) -> &str {
        self.get(path).as_str().unwrap_or_default()
    }

    /// The integer at `path`, 0 when absent.
    pub(crate) fn int(&self, path: &str) -> i64 {
        self.get(path).as_i64().unwrap_or_default()
    }

    /// The array at `path`, empty when absent.
    pub(crate) fn list(&self, path: &str) -> &[Value] {
        self.get(path).as_array().map_or(&[], Vec::as_slice)
    }

    /// The object at `path`, when there is one.
    pub(crate) fn map(&self, path: &str) -> Option<&Map<String, Value>> {
        self.get(path).as_object()
    }

    /// The object's name.
    pub(crate) fn name(&self) -> Value {
        json!(self.str("/metadata/name"))
    }

    /// The object's age.
    pub(crate) fn age(&self) -> Value {
        json!(self.since(self.get("/metadata/creationTimestamp")))
    }

    /// The human time from the timestamp `ts` to now, `<unknown>` when unset or unparseable.
    pub(crate) fn since(&self, ts: &Value) -> String {
        match ts.as_str().and_then(|s| s.parse::<Timestamp>().ok()) {
            Some(t) => human_duration(self.now.duration_since(t).as_secs()),
            None => "<unknown>".to_string(),
        }
    }
}

/// A duration in seconds as Kubernetes prints ages: `0s`, `59s`, `5m10s`, `3h4m`, `2d3h`,
/// `45d`, `2y30d`, `9y`; `<invalid>` when more than a second in the future.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// Labels as `a=1,b=2` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(labels: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> =
        labels.into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    pairs.sort();
    if pairs.is_empty() { "<none>".to_string() } else { pairs.join(",") }
}

/// A `metav1.LabelSelector` in selector syntax, requirements sorted by key; `<none>` for
/// an empty or absent one, `<error>` for a malformed one.
pub(crate) fn format_selector(sel: &Value) -> String {
    if sel.is_null() {
        return "<none>".to_string();
    }
    match LabelSelector::from_label_selector(sel) {
        Err(_) => "<error>".to_string(),
        Ok(mut parsed) => {
            for r in &mut parsed.requirements {
                r.values.sort();
            }
            parsed.requirements.sort_by(|a, b| a.key.cmp(&b.key));
            let text = parsed.to_string();
            if text.is_empty() { "<none>".to_string() } else { text }
        }
    }
}

/// Container names and images of a pod spec, each joined with commas.
pub(crate) fn container_cells(spec: &Value) -> (Value, Value) {
    let containers = spec.get("containers").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let field = |key: &str| -> Vec<&str> {
        containers.iter().map(|c| c.get(key).and_then(Value::as_str).unwrap_or_default()).collect()
    };
    (json!(field("name").join(",")), json!(field("image").join(",")))
}

#[cfg(test)]
mod tests;
