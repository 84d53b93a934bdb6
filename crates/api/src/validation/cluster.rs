//! Validation of the cluster-level kinds: Nodes (pod CIDRs, taints, resources, addresses),
//! Namespaces (finalizers) and Events in both their core/v1 and events.k8s.io/v1 forms.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::{Ctx, is_dns1123_subdomain, is_qualified_name, is_valid_label_value, parse_quantity, quote, show};
use crate::field_error::FieldError;

const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const EVENT_TYPES: &[&str] = &["Normal", "Warning"];
/// Limits of the events.k8s.io fields, as Kubernetes sets them.
const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The IP family of a CIDR (`10.42.0.0/24`), or None when it is not one.
fn cidr_family(s: &str) -> Option<bool> {
    let (addr, bits_text) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let bits: u8 = bits_text.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max && bits.to_string() == bits_text).then_some(addr.is_ipv4())
}

/// A Node's spec and status (on create, update and status writes).
pub(super) fn node(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(cidrs) = spec.get("podCIDRs").and_then(Value::as_array) {
        let mut families = Vec::new();
        for (i, c) in cidrs.iter().enumerate() {
            let c = c.as_str().unwrap_or_default();
            match cidr_family(c) {
                Some(f) => families.push(f),
                None => ctx.push(FieldError::invalid(
                    format!("spec.podCIDRs[{i}]"),
                    quote(c),
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                )),
            }
        }
        let dual_stack = cidrs.len() == 2 && families.len() == 2 && families[0] != families[1];
        if cidrs.len() > 1 && !dual_stack {
            let shown: Vec<&str> = cidrs.iter().filter_map(Value::as_str).collect();
            ctx.push(FieldError::invalid(
                "spec.podCIDRs",
                quote(&shown.join(",")),
                "may specify no more than one CIDR for each IP family",
            ));
        }
    }
    let pod_cidr = text(spec, "/podCIDR");
    if !pod_cidr.is_empty() && cidr_family(pod_cidr).is_none() {
        ctx.push(FieldError::invalid("spec.podCIDR", quote(pod_cidr), "not a valid CIDR"));
    }
    taints(ctx, spec.get("taints"));
    node_status(ctx, obj);
    if let Some(old) = old {
        for (field, path) in [("podCIDRs", "/spec/podCIDRs"), ("providerID", "/spec/providerID")] {
            let before = old.pointer(path).filter(|v| !v.is_null() && v.as_str() != Some(""));
            if before.is_some() && obj.pointer(path) != before {
                let was = if field == "podCIDRs" { "podCIDR" } else { field };
                ctx.push(FieldError::forbidden(
                    format!("spec.{field}"),
                    format!("node updates may not change {was} except from \"\" to valid"),
                ));
            }
        }
    }
}

fn taints(ctx: &mut Ctx<'_>, taints: Option<&Value>) {
    let Some(taints) = taints.and_then(Value::as_array) else { return };
    let mut seen = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = text(t, "/key");
        for msg in is_qualified_name(key) {
            ctx.push(FieldError::invalid(format!("{path}.key"), quote(key), msg));
        }
        let value = text(t, "/value");
        for msg in is_valid_label_value(value) {
            ctx.push(FieldError::invalid(format!("{path}.value"), quote(value), msg));
        }
        let effect = text(t, "/effect");
        if effect.is_empty() {
            ctx.push(FieldError::required(format!("{path}.effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            ctx.push(FieldError::not_supported(format!("{path}.effect"), quote(effect), TAINT_EFFECTS));
        }
        if !seen.insert((key, effect)) {
            ctx.push(FieldError::invalid(
                format!("{path}.effect"),
                quote(effect),
                "taints must be unique by key and effect pair",
            ));
        }
    }
}

/// Capacity and allocatable quantities, and no address twice.
pub(super) fn node_status(ctx: &mut Ctx<'_>, obj: &Value) {
    for list in ["capacity", "allocatable"] {
        let Some(map) = obj.pointer(&format!("/status/{list}")).and_then(Value::as_object) else { continue };
        for (name, q) in map {
            let path = format!("status.{list}.{name}");
            for msg in is_qualified_name(name) {
                ctx.push(FieldError::invalid(path.clone(), quote(name), msg));
            }
            let shown = match q {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match parse_quantity(&shown) {
                None => ctx.push(FieldError::invalid(path, quote(&shown), super::QUANTITY_ERROR)),
                Some(v) if v < 0.0 => {
                    ctx.push(FieldError::invalid(path, quote(&shown), "must be greater than or equal to 0"))
                }
                Some(_) => {}
            }
        }
    }
    if let Some(addresses) = obj.pointer("/status/addresses").and_then(Value::as_array) {
        let mut seen = HashSet::new();
        for (i, a) in addresses.iter().enumerate() {
            if !seen.insert((text(a, "/type"), text(a, "/address"))) {
                ctx.push(super::duplicate(format!("status.addresses[{i}]"), &show(a)));
            }
        }
    }
}

/// `spec.finalizers` of a Namespace: `kubernetes` or a domain-qualified name.
pub(super) fn namespace(ctx: &mut Ctx<'_>, obj: &Value) {
    let Some(finalizers) = obj.pointer("/spec/finalizers").and_then(Value::as_array) else { return };
    for (i, f) in finalizers.iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        let path = format!("spec.finalizers[{i}]");
        let errors = is_qualified_name(f);
        for msg in &errors {
            ctx.push(FieldError::invalid(path.clone(), quote(f), msg.clone()));
        }
        if errors.is_empty() && f != "kubernetes" && !f.contains('/') {
            ctx.push(FieldError::invalid(
                path,
                quote(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// An Event. `strict` for events.k8s.io/v1 (which requires the new fields); core/v1 gets
/// only the checks Kubernetes keeps for old clients.
pub(super) fn event(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>, strict: bool) {
    let ns = text(obj, "/metadata/namespace");
    // The two forms name the same fields differently.
    let (regarding, message, reporter) = if strict {
        ("regarding", "note", "reportingController")
    } else {
        ("involvedObject", "message", "reportingComponent")
    };
    let involved_ns = text(obj, &format!("/{regarding}/namespace"));
    let new_style = !text(obj, "/eventTime").is_empty();
    let mismatch = if !new_style {
        if involved_ns.is_empty() { !ns.is_empty() && ns != "default" } else { ns != involved_ns }
    } else {
        involved_ns.is_empty() && ns != "default" && ns != "kube-system"
    };
    if mismatch {
        ctx.push(FieldError::invalid(
            format!("{regarding}.namespace"),
            quote(involved_ns),
            "does not match event.namespace",
        ));
    }
    if new_style || strict {
        let controller = text(obj, &format!("/{reporter}"));
        if controller.is_empty() {
            ctx.push(FieldError::required(reporter, ""));
        } else {
            for msg in is_qualified_name(controller) {
                ctx.push(FieldError::invalid(reporter, quote(controller), msg));
            }
        }
        for (field, limit) in
            [("reportingInstance", REPORTING_INSTANCE_LIMIT), ("action", ACTION_LIMIT), ("reason", REASON_LIMIT)]
        {
            let value = text(obj, &format!("/{field}"));
            if value.is_empty() {
                ctx.push(FieldError::required(field, ""));
            } else if value.len() > limit {
                ctx.push(FieldError::invalid(field, quote(""), format!("can have at most {limit} characters")));
            }
        }
        if text(obj, &format!("/{message}")).len() > NOTE_LIMIT {
            ctx.push(FieldError::invalid(message, quote(""), format!("can have at most {NOTE_LIMIT} characters")));
        }
    }
    if strict {
        if !new_style {
            ctx.push(FieldError::required("eventTime", ""));
        }
        let type_ = text(obj, "/type");
        if !EVENT_TYPES.contains(&type_) {
            ctx.push(FieldError::invalid("type", quote(""), format!("has invalid value: {type_}")));
        }
        for field in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedCount", "deprecatedSource"] {
            if obj.get(field).is_some_and(|v| !v.is_null() && v != &Value::Object(Default::default())) {
                ctx.push(FieldError::invalid(field, quote(""), "needs to be unset"));
            }
        }
        if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
            if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
                ctx.push(FieldError::invalid("series.count", quote(""), "should be at least 2"));
            }
            if text(series, "/lastObservedTime").is_empty() {
                ctx.push(FieldError::required("series.lastObservedTime", ""));
            }
        }
        if let Some(old) = old {
            for field in [
                regarding,
                "reason",
                message,
                "type",
                "eventTime",
                "action",
                "related",
                "reportingController",
                "reportingInstance",
            ] {
                ctx.immutable(obj.get(field), old.get(field), field);
            }
        }
    }
    for msg in is_dns1123_subdomain(ns) {
        ctx.push(FieldError::invalid("metadata.namespace", quote(ns), msg));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validation::tests::check;

    #[test]
    fn nodes() {
        let node = |spec: serde_json::Value| json!({ "metadata": { "name": "n1" }, "spec": spec });
        check(
            "/v1/nodes",
            node(json!({ "podCIDRs": ["10.42.0.0/24", "fd00::/64"], "taints": [
            { "key": "dedicated", "value": "infra", "effect": "NoSchedule" },
            { "key": "dedicated", "value": "infra", "effect": "NoExecute" }] })),
            None,
            &[],
        );
        check(
            "/v1/nodes",
            node(json!({ "podCIDRs": ["10.42.0.0/33", "10.43.0.0/24", "10.44.0.0/24"] })),
            None,
            &[
                "spec.podCIDRs[0]: Invalid value: \"10.42.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.podCIDRs: Invalid value: \"10.42.0.0/33,10.43.0.0/24,10.44.0.0/24\": may specify no more than one CIDR for each IP family",
            ],
        );
        check(
            "/v1/nodes",
            node(json!({ "taints": [
            { "key": "a", "effect": "Sometimes" }, { "key": "b" }, { "key": "-x-", "effect": "NoSchedule" },
            { "key": "c", "effect": "NoSchedule" }, { "key": "c", "value": "other", "effect": "NoSchedule" }] })),
            None,
            &[
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\"",
                "spec.taints[1].effect: Required value",
                "spec.taints[2].key: Invalid value: \"-x-\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "spec.taints[4].effect: Invalid value: \"NoSchedule\": taints must be unique by key and effect pair",
            ],
        );
        let with_status = json!({ "metadata": { "name": "n1" }, "status": {
            "capacity": { "cpu": "4", "memory": "lots", "pods": "-1" },
            "addresses": [{ "type": "InternalIP", "address": "10.0.0.1" }, { "type": "InternalIP", "address": "10.0.0.1" }] } });
        check(
            "/v1/nodes",
            with_status,
            None,
            &[
                "status.capacity.memory: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                "status.capacity.pods: Invalid value: \"-1\": must be greater than or equal to 0",
                r#"status.addresses[1]: Duplicate value: "{\"address\":\"10.0.0.1\",\"type\":\"InternalIP\"}""#,
            ],
        );
        // podCIDRs and providerID are set once.
        let old = node(json!({ "podCIDRs": ["10.42.0.0/24"], "providerID": "berth://n1" }));
        check(
            "/v1/nodes",
            node(json!({ "podCIDRs": ["10.42.1.0/24"], "providerID": "berth://n1" })),
            Some(old.clone()),
            &["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"],
        );
        check(
            "/v1/nodes",
            node(json!({ "podCIDRs": ["10.42.0.0/24"], "providerID": "berth://n1", "unschedulable": true })),
            Some(old),
            &[],
        );
        check("/v1/nodes", node(json!({ "podCIDRs": ["10.42.0.0/24"] })), Some(node(json!({}))), &[]);
    }

    #[test]
    fn namespaces() {
        let ns = |f: serde_json::Value| json!({ "metadata": { "name": "team" }, "spec": { "finalizers": f } });
        check("/v1/namespaces", ns(json!(["kubernetes", "example.com/cleanup"])), None, &[]);
        check(
            "/v1/namespaces",
            ns(json!(["cleanup", "bad name/x"])),
            None,
            &[
                "spec.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified",
                "spec.finalizers[1]: Invalid value: \"bad name/x\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        );
    }

    #[test]
    fn core_events() {
        let ev = |ns: &str, involved: serde_json::Value| json!({ "metadata": { "name": "e1", "namespace": ns }, "involvedObject": involved, "reason": "Started", "message": "hi" });
        check("/v1/events", ev("default", json!({ "kind": "Pod", "name": "p", "namespace": "default" })), None, &[]);
        // Cluster-scoped objects' events live in default (old clients) or nowhere.
        check("/v1/events", ev("default", json!({ "kind": "Node", "name": "n1" })), None, &[]);
        check(
            "/v1/events",
            ev("team", json!({ "kind": "Pod", "name": "p", "namespace": "default" })),
            None,
            &["involvedObject.namespace: Invalid value: \"default\": does not match event.namespace"],
        );
        // With eventTime, the new fields are required even through core/v1.
        let mut new_style = ev("default", json!({ "kind": "Pod", "name": "p", "namespace": "default" }));
        new_style["eventTime"] = json!("2026-11-29T01:00:00.000000Z");
        check(
            "/v1/events",
            new_style,
            None,
            &["reportingComponent: Required value", "reportingInstance: Required value", "action: Required value"],
        );
    }

    #[test]
    fn events_k8s_io() {
        let good = json!({ "metadata": { "name": "e1", "namespace": "default" }, "eventTime": "2026-11-29T01:00:00.000000Z",
            "regarding": { "kind": "Pod", "name": "p", "namespace": "default" }, "reason": "Started", "action": "Start",
            "type": "Normal", "note": "hi", "reportingController": "example.com/ctl", "reportingInstance": "ctl-1" });
        check("events.k8s.io/v1/events", good.clone(), None, &[]);
        let mut bad = good.clone();
        bad["eventTime"] = json!(null);
        bad["type"] = json!("Info");
        bad["note"] = json!("x".repeat(1025));
        bad["series"] = json!({ "count": 1 });
        bad["deprecatedCount"] = json!(3);
        check(
            "events.k8s.io/v1/events",
            bad,
            None,
            &[
                "note: Invalid value: \"\": can have at most 1024 characters",
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Info",
                "deprecatedCount: Invalid value: \"\": needs to be unset",
                "series.count: Invalid value: \"\": should be at least 2",
                "series.lastObservedTime: Required value",
            ],
        );
        let mut changed = good.clone();
        changed["reason"] = json!("Other");
        check(
            "events.k8s.io/v1/events",
            changed,
            Some(good),
            &["reason: Invalid value: \"Other\": field is immutable"],
        );
    }
}
