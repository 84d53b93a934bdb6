//! Pod spec fields that place and confine pods: tolerations, node and pod affinity,
//! topology spread constraints and security contexts, checked as Kubernetes does.

use serde_json::Value;

use super::pod::{array, text};
use super::{Ctx, quote};
use crate::field_error::FieldError;

/// Validates tolerations, affinity, topologySpreadConstraints and the pod securityContext of a pod spec.
pub(super) fn validate(ctx: &mut Ctx<'_>, spec: &Value, path: &str) {
    for (i, t) in array(spec, "tolerations").iter().enumerate() {
        toleration(ctx, t, &format!("{path}.tolerations[{i}]"));
    }
    if let Some(affinity) = spec.get("affinity").filter(|a| a.is_object()) {
        node_affinity(ctx, affinity.get("nodeAffinity"), &format!("{path}.affinity.nodeAffinity"));
        for kind in ["podAffinity", "podAntiAffinity"] {
            pod_affinity(ctx, affinity.get(kind), &format!("{path}.affinity.{kind}"));
        }
    }
    for (i, c) in array(spec, "topologySpreadConstraints").iter().enumerate() {
        spread(ctx, c, &format!("{path}.topologySpreadConstraints[{i}]"));
    }
    security_context(ctx, spec.get("securityContext"), &format!("{path}.securityContext"));
}

fn toleration(ctx: &mut Ctx<'_>, t: &Value, path: &str) {
    let key = text(t, "key");
    let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
    if !key.is_empty() {
        ctx.check_str(&format!("{path}.key"), key, super::is_qualified_name);
    }
    if key.is_empty() && operator != "Exists" {
        ctx.push(FieldError::invalid(
            format!("{path}.operator"),
            quote(operator),
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ));
    }
    match operator {
        "Equal" | "" => {}
        "Exists" if !text(t, "value").is_empty() => ctx.push(FieldError::invalid(
            format!("{path}.operator"),
            quote(text(t, "value")),
            "value must be empty when `operator` is 'Exists'",
        )),
        "Exists" => {}
        other => ctx.push(FieldError::not_supported(format!("{path}.operator"), quote(other), &["Equal", "Exists"])),
    }
    let effect = text(t, "effect");
    if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        ctx.push(FieldError::not_supported(
            format!("{path}.effect"),
            quote(effect),
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        ));
    }
    if t.get("tolerationSeconds").is_some_and(|v| !v.is_null()) && effect != "NoExecute" {
        ctx.push(FieldError::invalid(
            format!("{path}.effect"),
            quote(effect),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

fn weight(ctx: &mut Ctx<'_>, term: &Value, path: &str) {
    match term.get("weight").and_then(Value::as_i64) {
        Some(w) if (1..=100).contains(&w) => {}
        Some(w) => ctx.push(FieldError::invalid(format!("{path}.weight"), w, "must be in the range 1-100")),
        None => ctx.push(FieldError::required(format!("{path}.weight"), "")),
    }
}

/// A node selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt).
fn node_requirement(ctx: &mut Ctx<'_>, r: &Value, path: &str) {
    let values = array(r, "values");
    match text(r, "operator") {
        "In" | "NotIn" if values.is_empty() => ctx.push(FieldError::required(
            format!("{path}.values"),
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => ctx.push(FieldError::forbidden(
            format!("{path}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "Gt" | "Lt" if values.len() != 1 || values[0].as_str().is_none_or(|v| v.parse::<i64>().is_err()) => {
            ctx.push(FieldError::required(
                format!("{path}.values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            ))
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        other => ctx.push(FieldError::not_supported(
            format!("{path}.operator"),
            quote(other),
            &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"],
        )),
    }
}

fn node_selector_term(ctx: &mut Ctx<'_>, term: &Value, path: &str) {
    for (i, r) in array(term, "matchExpressions").iter().enumerate() {
        node_requirement(ctx, r, &format!("{path}.matchExpressions[{i}]"));
    }
    for (i, r) in array(term, "matchFields").iter().enumerate() {
        node_requirement(ctx, r, &format!("{path}.matchFields[{i}]"));
    }
}

fn node_affinity(ctx: &mut Ctx<'_>, na: Option<&Value>, path: &str) {
    let Some(na) = na.filter(|v| v.is_object()) else { return };
    if let Some(required) = na.get("requiredDuringSchedulingIgnoredDuringExecution").filter(|v| v.is_object()) {
        let rpath = format!("{path}.requiredDuringSchedulingIgnoredDuringExecution");
        let terms = array(required, "nodeSelectorTerms");
        if terms.is_empty() {
            ctx.push(FieldError::required(
                format!("{rpath}.nodeSelectorTerms"),
                "must have at least one node selector term",
            ));
        }
        for (i, term) in terms.iter().enumerate() {
            node_selector_term(ctx, term, &format!("{rpath}.nodeSelectorTerms[{i}]"));
        }
    }
    for (i, p) in array(na, "preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
        let ppath = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        weight(ctx, p, &ppath);
        node_selector_term(ctx, p.get("preference").unwrap_or(&Value::Null), &format!("{ppath}.preference"));
    }
}

fn pod_affinity_term(ctx: &mut Ctx<'_>, term: &Value, path: &str) {
    if text(term, "topologyKey").is_empty() {
        ctx.push(FieldError::required(format!("{path}.topologyKey"), "can not be empty"));
    } else {
        ctx.check_str(&format!("{path}.topologyKey"), text(term, "topologyKey"), super::is_qualified_name);
    }
    for key in ["labelSelector", "namespaceSelector"] {
        if let Some(sel) = term.get(key).filter(|s| !s.is_null())
            && let Err(e) = crate::selectors::LabelSelector::from_label_selector(sel)
        {
            ctx.push(FieldError::invalid(format!("{path}.{key}"), super::show(sel), e.to_string()));
        }
    }
}

fn pod_affinity(ctx: &mut Ctx<'_>, pa: Option<&Value>, path: &str) {
    let Some(pa) = pa.filter(|v| v.is_object()) else { return };
    for (i, term) in array(pa, "requiredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
        pod_affinity_term(ctx, term, &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"));
    }
    for (i, p) in array(pa, "preferredDuringSchedulingIgnoredDuringExecution").iter().enumerate() {
        let ppath = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        weight(ctx, p, &ppath);
        pod_affinity_term(ctx, p.get("podAffinityTerm").unwrap_or(&Value::Null), &format!("{ppath}.podAffinityTerm"));
    }
}

fn spread(ctx: &mut Ctx<'_>, c: &Value, path: &str) {
    match c.get("maxSkew").and_then(Value::as_i64) {
        Some(n) if n > 0 => {}
        Some(n) => ctx.push(FieldError::invalid(format!("{path}.maxSkew"), n, "must be greater than zero")),
        None => ctx.push(FieldError::required(format!("{path}.maxSkew"), "")),
    }
    if text(c, "topologyKey").is_empty() {
        ctx.push(FieldError::required(format!("{path}.topologyKey"), "can not be empty"));
    }
    let when = text(c, "whenUnsatisfiable");
    if !["DoNotSchedule", "ScheduleAnyway"].contains(&when) {
        ctx.push(FieldError::not_supported(
            format!("{path}.whenUnsatisfiable"),
            quote(when),
            &["DoNotSchedule", "ScheduleAnyway"],
        ));
    }
    if let Some(min) = c.get("minDomains").and_then(Value::as_i64) {
        if min <= 0 {
            ctx.push(FieldError::invalid(format!("{path}.minDomains"), min, "must be greater than 0"));
        } else if when != "DoNotSchedule" {
            ctx.push(FieldError::invalid(
                format!("{path}.minDomains"),
                min,
                "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
            ));
        }
    }
}

/// A pod's or a container's securityContext.
pub(super) fn security_context(ctx: &mut Ctx<'_>, sc: Option<&Value>, path: &str) {
    let Some(sc) = sc.filter(|v| v.is_object()) else { return };
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(n) = sc.get(key).and_then(Value::as_i64)
            && !(0..=2_147_483_647).contains(&n)
        {
            ctx.push(FieldError::invalid(format!("{path}.{key}"), n, "must be between 0 and 2147483647, inclusive"));
        }
    }
    if sc.get("privileged").and_then(Value::as_bool) == Some(true)
        && sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false)
    {
        ctx.push(FieldError::invalid(
            path.to_string(),
            "",
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    fn pod(extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn valid_placement_passes() {
        check(
            "/v1/pods",
            pod(json!({
                "tolerations": [{"operator": "Exists"}, {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}],
                "affinity": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
                                     "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]},
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}]}
                },
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2}],
                "securityContext": {"runAsUser": 1000, "fsGroup": 2000}
            })),
            None,
            &[],
        );
    }

    #[test]
    fn bad_placement_is_reported_per_field() {
        check(
            "/v1/pods",
            pod(
                json!({"tolerations": [{"value": "v"}, {"key": "k", "operator": "Exists", "value": "v"}, {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"}]}),
            ),
            None,
            &[
                r#"spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#,
                r#"spec.tolerations[1].operator: Invalid value: "v": value must be empty when `operator` is 'Exists'"#,
                r#"spec.tolerations[2].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#,
            ],
        );
        check(
            "/v1/pods",
            pod(json!({"affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}, {"key": "n", "operator": "Gt", "values": ["x"]}]}]}},
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "podAffinityTerm": {"topologyKey": ""}}]}
            }})),
            None,
            &[
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
                "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
                "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey: Required value: can not be empty",
            ],
        );
        check(
            "/v1/pods",
            pod(
                json!({"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}],
                       "securityContext": {"runAsUser": -1}}),
            ),
            None,
            &[
                "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
                "spec.topologySpreadConstraints[0].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
            ],
        );
    }
}
