//! Label selectors, node selector terms and tolerations, compiled once per pod and
//! matched against labels and taints many times per scheduling cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One requirement on a label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
    /// An operator this scheduler does not know: matches nothing.
    Never,
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Gt(k, n) => labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            Requirement::Never => false,
        }
    }
}

/// A compiled label selector. `nothing` selects no object (an absent selector).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// A selector that matches no object.
    pub fn nothing() -> Selector {
        Selector { requirements: Vec::new(), nothing: true }
    }

    /// A selector that matches every object.
    pub fn everything() -> Selector {
        Selector { requirements: Vec::new(), nothing: false }
    }

    /// Compiles a `metav1.LabelSelector`; `None` selects nothing.
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Selector {
        let Some(sel) = sel else {
            return Selector::nothing();
        };
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            requirements.push(match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                _ => Requirement::Never,
            });
        }
        Selector { requirements, nothing: false }
    }

    /// A selector from `matchLabels`-style pairs (a nodeSelector).
    pub fn from_map(map: &BTreeMap<String, String>) -> Selector {
        let requirements = map.iter().map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()])).collect();
        Selector { requirements, nothing: false }
    }

    /// Adds every requirement of `other` (both must hold).
    pub fn and(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.requirements.extend(other.requirements.iter().cloned());
    }

    /// Adds `key In (value)`.
    pub fn and_equals(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement::In(key.to_string(), vec![value.to_string()]));
    }

    /// Whether `labels` are selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// A label the selected objects must carry, with the values allowed (the `In`
    /// requirement with the fewest values), for looking candidates up in an index;
    /// `Some((_, []))` when the selector selects nothing, `None` when no requirement narrows it.
    pub fn index_hint(&self) -> Option<(&str, &[String])> {
        if self.nothing {
            return Some(("", &[]));
        }
        self.requirements
            .iter()
            .filter_map(|r| match r {
                Requirement::In(k, vs) => Some((k.as_str(), vs.as_slice())),
                Requirement::Never => Some(("", &[][..])),
                _ => None,
            })
            .min_by_key(|(_, vs)| vs.len())
    }

    /// Whether the selector selects everything.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }
}

fn node_requirement(r: &NodeSelectorRequirement) -> Requirement {
    let values = r.values.clone().unwrap_or_default();
    let number = || values.first().and_then(|v| v.parse::<i64>().ok());
    match r.operator.as_str() {
        "In" => Requirement::In(r.key.clone(), values),
        "NotIn" => Requirement::NotIn(r.key.clone(), values),
        "Exists" => Requirement::Exists(r.key.clone()),
        "DoesNotExist" => Requirement::DoesNotExist(r.key.clone()),
        "Gt" => number().map(|n| Requirement::Gt(r.key.clone(), n)).unwrap_or(Requirement::Never),
        "Lt" => number().map(|n| Requirement::Lt(r.key.clone(), n)).unwrap_or(Requirement::Never),
        _ => Requirement::Never,
    }
}

/// One compiled node selector term: label expressions and `metadata.name` field expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl NodeTerm {
    /// Compiles a term.
    pub fn new(t: &NodeSelectorTerm) -> NodeTerm {
        let labels = t.match_expressions.iter().flatten().map(node_requirement).collect();
        let fields = t
            .match_fields
            .iter()
            .flatten()
            .map(|r| if r.key == "metadata.name" { node_requirement(r) } else { Requirement::Never })
            .collect();
        NodeTerm { labels, fields }
    }

    /// Whether the node matches the term (an empty term matches nothing).
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        let mut fields = Labels::new();
        if !self.fields.is_empty() {
            fields.insert("metadata.name".to_string(), node_name.to_string());
        }
        self.labels.iter().all(|r| r.matches(labels)) && self.fields.iter().all(|r| r.matches(&fields))
    }
}

/// Terms ORed together, as `requiredDuringSchedulingIgnoredDuringExecution`.
pub fn any_term_matches(terms: &[NodeTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| t.matches(node_name, labels))
}

pub use berth_api::node_match::{tolerates, untolerated};

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Taint, Toleration};
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}))
        .expect("selector");
        let s = Selector::from_label_selector(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "db")])));
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[])));
    }

    #[test]
    fn node_terms() {
        let t: NodeSelectorTerm = serde_json::from_value(json!({"matchExpressions": [
            {"key": "gen", "operator": "Gt", "values": ["3"]}, {"key": "zone", "operator": "Exists"}]}))
        .expect("term");
        let t = NodeTerm::new(&t);
        assert!(t.matches("n", &labels(&[("gen", "4"), ("zone", "a")])));
        assert!(!t.matches("n", &labels(&[("gen", "3"), ("zone", "a")])));
        let f: NodeSelectorTerm = serde_json::from_value(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
        )
        .expect("term");
        let f = NodeTerm::new(&f);
        assert!(f.matches("n1", &labels(&[])));
        assert!(!f.matches("n2", &labels(&[])));
        assert!(!NodeTerm::new(&NodeSelectorTerm::default()).matches("n", &labels(&[])));
    }

    #[test]
    fn tolerations() {
        let taint: Taint = serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"})).unwrap();
        for (tol, want) in [
            (json!({"key": "k", "value": "v"}), true),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "k", "value": "w"}), false),
            (json!({"key": "k", "value": "v", "effect": "NoExecute"}), false),
            (json!({"key": "k", "value": "v", "effect": "NoSchedule"}), true),
        ] {
            let t: Toleration = serde_json::from_value(tol.clone()).unwrap();
            assert_eq!(tolerates(&t, &taint), want, "{tol}");
        }
    }
}
