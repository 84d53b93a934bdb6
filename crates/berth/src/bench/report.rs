//! Named figures and their two renderings: a readable table, or one JSON object.

use std::fmt::Write;

/// One measured figure with what it is compared against.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    /// Stable name, the key in `--json` output (unit in the name: `_ms`, `_mb`, `_per_s`).
    pub(crate) key: &'static str,
    /// What was measured, for the table.
    pub(crate) label: String,
    /// The measured value.
    pub(crate) value: f64,
    /// Unit shown in the table.
    pub(crate) unit: &'static str,
    /// berth's goal for this figure, if any.
    pub(crate) goal: &'static str,
    /// An outside reference (Kubernetes SLO, k3s measurement), if any.
    pub(crate) anchor: &'static str,
}

impl Figure {
    /// A figure with no goal and no anchor.
    pub(crate) fn new(key: &'static str, label: impl Into<String>, value: f64, unit: &'static str) -> Figure {
        Figure { key, label: label.into(), value, unit, goal: "", anchor: "" }
    }

    /// Sets the goal.
    pub(crate) fn goal(mut self, goal: &'static str) -> Figure {
        self.goal = goal;
        self
    }

    /// Sets the anchor.
    pub(crate) fn anchor(mut self, anchor: &'static str) -> Figure {
        self.anchor = anchor;
        self
    }
}

/// One JSON object mapping each figure's key to its value.
pub(crate) fn json(figures: &[Figure]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        figures.iter().map(|f| (f.key.to_string(), serde_json::json!(round(f.value)))).collect();
    serde_json::Value::Object(map).to_string()
}

/// A plain-text table: figure, value, goal, anchor.
pub(crate) fn table(title: &str, figures: &[Figure]) -> String {
    let rows: Vec<[String; 4]> = figures
        .iter()
        .map(|f| [f.label.clone(), format!("{} {}", human(f.value), f.unit), f.goal.to_string(), f.anchor.to_string()])
        .collect();
    let header = ["figure".to_string(), "value".to_string(), "goal".to_string(), "anchor".to_string()];
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = format!("{title}\n");
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Three significant-ish decimals for JSON: enough for milliseconds, no float noise.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A value for people: integers for counts and large figures, two decimals otherwise.
fn human(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_key() {
        let figs = [Figure::new("a_ms", "a", 1.23456, "ms"), Figure::new("b_per_s", "b", 5000.0, "/s")];
        assert_eq!(json(&figs), r#"{"a_ms":1.235,"b_per_s":5000.0}"#);
    }

    #[test]
    fn table_aligns_columns() {
        let figs = [Figure::new("a_ms", "latency", 1.5, "ms").goal("< 25 ms").anchor("SLO 1 s")];
        let t = table("t", &figs);
        assert_eq!(t, "t\nfigure     value  goal     anchor\nlatency  1.50 ms  < 25 ms  SLO 1 s\n");
    }
}
