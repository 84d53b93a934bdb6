//! Resources served in more than one version share one storage form, as in Kubernetes:
//! HorizontalPodAutoscalers are stored as `autoscaling/v2` and served as v1 too, and
//! Events are stored as core `v1` and served as `events.k8s.io/v1` too. Objects are
//! converted on the way out of the store and back on the way in; what one version
//! cannot express is kept in annotations, so a round trip through the other version
//! loses nothing.

use serde_json::{Map, Value, json};

/// The conversion of a served version from and to its storage version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// `autoscaling/v1` served, `autoscaling/v2` stored.
    HpaV1,
    /// `events.k8s.io/v1` served, core `v1` stored.
    EventsV1,
}

/// HPA v2 fields v1 cannot express, kept in these annotations while served as v1.
const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const HPA_CURRENT: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

impl Conversion {
    /// The conversion for a served resource, if its version is not the storage version.
    pub fn of(group: &str, version: &str, plural: &str) -> Option<Conversion> {
        match (group, version, plural) {
            ("autoscaling", "v1", "horizontalpodautoscalers") => Some(Conversion::HpaV1),
            ("events.k8s.io", "v1", "events") => Some(Conversion::EventsV1),
            _ => None,
        }
    }

    /// The store key prefix of the storage resource.
    pub fn storage_prefix(self) -> &'static str {
        match self {
            Conversion::HpaV1 => "/registry/autoscaling/horizontalpodautoscalers/",
            Conversion::EventsV1 => "/registry/core/events/",
        }
    }

    /// The stored object in the served version.
    pub fn from_storage(self, stored: &Value) -> Value {
        match self {
            Conversion::HpaV1 => hpa_v2_to_v1(stored),
            Conversion::EventsV1 => event_core_to_events(stored),
        }
    }

    /// A served-version object in the storage version.
    pub fn to_storage(self, served: &Value) -> Value {
        match self {
            Conversion::HpaV1 => hpa_v1_to_v2(served),
            Conversion::EventsV1 => event_events_to_core(served),
        }
    }
}

fn copy(from: &Value, to: &mut Map<String, Value>, src: &str, dst: &str) {
    if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
        to.insert(dst.to_string(), v.clone());
    }
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"].as_object_mut().expect("set above")
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let a = obj.pointer_mut("/metadata/annotations")?.as_object_mut()?;
    let raw = a.remove(key)?;
    let empty = a.is_empty();
    if empty && let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("annotations");
    }
    serde_json::from_str(raw.as_str()?).ok()
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m.pointer("/resource/name") == Some(&json!("cpu"))
        && m.pointer("/resource/target/type") == Some(&json!("Utilization"))
}

fn hpa_v2_to_v1(v2: &Value) -> Value {
    let mut out = json!({ "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": v2["metadata"].clone() });
    let spec = &v2["spec"];
    let mut s = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        copy(spec, &mut s, k, k);
    }
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    if let Some(u) = cpu.first().and_then(|m| m.pointer("/resource/target/averageUtilization")) {
        s.insert("targetCPUUtilizationPercentage".into(), u.clone());
    }
    out["spec"] = Value::Object(s);
    if !others.is_empty() {
        annotations(&mut out).insert(HPA_METRICS.into(), json!(Value::Array(others).to_string()));
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        annotations(&mut out).insert(HPA_BEHAVIOR.into(), json!(b.to_string()));
    }
    if let Some(status) = v2.get("status").filter(|s| s.is_object()) {
        let mut st = Map::new();
        for k in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            copy(status, &mut st, k, k);
        }
        let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
        let (cpu, others): (Vec<Value>, Vec<Value>) = current
            .into_iter()
            .partition(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")));
        if let Some(u) = cpu.first().and_then(|m| m.pointer("/resource/current/averageUtilization")) {
            st.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        if !others.is_empty() {
            annotations(&mut out).insert(HPA_CURRENT.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(c) = status.get("conditions").filter(|c| c.as_array().is_some_and(|l| !l.is_empty())) {
            annotations(&mut out).insert(HPA_CONDITIONS.into(), json!(c.to_string()));
        }
        out["status"] = Value::Object(st);
    }
    out
}

fn hpa_v1_to_v2(v1: &Value) -> Value {
    let mut src = v1.clone();
    let others = take_annotation(&mut src, HPA_METRICS);
    let behavior = take_annotation(&mut src, HPA_BEHAVIOR);
    let current_others = take_annotation(&mut src, HPA_CURRENT);
    let conditions = take_annotation(&mut src, HPA_CONDITIONS);
    let mut out = json!({ "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": src["metadata"].clone() });
    let spec = &src["spec"];
    let mut s = Map::new();
    for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
        copy(spec, &mut s, k, k);
    }
    let mut metrics = Vec::new();
    if let Some(u) = spec.get("targetCPUUtilizationPercentage").filter(|u| !u.is_null()) {
        metrics.push(json!({ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": u } } }));
    }
    metrics.extend(others.and_then(|o| o.as_array().cloned()).unwrap_or_default());
    if !metrics.is_empty() {
        s.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = behavior {
        s.insert("behavior".into(), b);
    }
    out["spec"] = Value::Object(s);
    if let Some(status) = src.get("status").filter(|s| s.is_object()) {
        let mut st = Map::new();
        for k in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            copy(status, &mut st, k, k);
        }
        let mut current = Vec::new();
        if let Some(u) = status.get("currentCPUUtilizationPercentage").filter(|u| !u.is_null()) {
            current.push(
                json!({ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": u } } }),
            );
        }
        current.extend(current_others.and_then(|o| o.as_array().cloned()).unwrap_or_default());
        if !current.is_empty() {
            st.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = conditions {
            st.insert("conditions".into(), c);
        }
        out["status"] = Value::Object(st);
    }
    out
}

/// Field renames between core v1 Events and events.k8s.io/v1 Events: (core, events.k8s.io).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn event_core_to_events(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    out.insert("metadata".into(), core["metadata"].clone());
    for (c, e) in EVENT_FIELDS {
        copy(core, &mut out, c, e);
    }
    Value::Object(out)
}

fn event_events_to_core(events: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    out.insert("metadata".into(), events["metadata"].clone());
    for (c, e) in EVENT_FIELDS {
        copy(events, &mut out, e, c);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_through_v1_without_loss() {
        let v2 = json!({ "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": { "name": "h" },
            "spec": { "scaleTargetRef": { "kind": "Deployment", "name": "web", "apiVersion": "apps/v1" }, "minReplicas": 1, "maxReplicas": 5,
                      "metrics": [
                          { "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 60 } } },
                          { "type": "Resource", "resource": { "name": "memory", "target": { "type": "AverageValue", "averageValue": "100Mi" } } } ],
                      "behavior": { "scaleDown": { "stabilizationWindowSeconds": 30 } } },
            "status": { "currentReplicas": 2, "desiredReplicas": 3,
                        "currentMetrics": [{ "type": "Resource", "resource": { "name": "cpu", "current": { "averageUtilization": 70 } } }] } });
        let v1 = Conversion::HpaV1.from_storage(&v2);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 70);
        assert!(v1["metadata"]["annotations"][HPA_METRICS].as_str().unwrap().contains("memory"));
        let back = Conversion::HpaV1.to_storage(&v1);
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"]["currentMetrics"], v2["status"]["currentMetrics"]);
        assert!(back["metadata"].get("annotations").is_none(), "{back}");
    }

    #[test]
    fn events_rename_fields_both_ways() {
        let core = json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "name": "e", "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "p" }, "message": "pulled", "reason": "Pulled", "type": "Normal",
            "source": { "component": "kubelet" }, "count": 3, "reportingComponent": "kubelet" });
        let ev = Conversion::EventsV1.from_storage(&core);
        assert_eq!(ev["regarding"]["name"], "p");
        assert_eq!(ev["note"], "pulled");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["reportingController"], "kubelet");
        assert_eq!(Conversion::EventsV1.to_storage(&ev), core);
    }
}
