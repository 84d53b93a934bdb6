//! Pod spec validation (pods and the pod templates of workloads) and the pod update rule.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::duplicate;
use super::{Ctx, is_dns1123_label, is_port_name, is_valid_port, parse_quantity, quote};
use crate::field_error::FieldError;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// Validates a Pod; on update only a few spec fields may change.
pub(super) fn validate_pod(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(ctx, spec, "spec", &[]);
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        validate_pod_spec_update(ctx, spec, old_spec);
    }
}

/// Validates a pod template at `path`: its labels and its spec, with the restart
/// policy limited to `restart_policies` when not empty.
pub(super) fn validate_template(ctx: &mut Ctx<'_>, template: Option<&Value>, path: &str, restart_policies: &[&str]) {
    let Some(template) = template.filter(|t| !t.is_null()) else {
        ctx.push(FieldError::required(path, ""));
        return;
    };
    ctx.labels(template.pointer("/metadata/labels"), &format!("{path}.metadata.labels"));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(ctx, spec, &format!("{path}.spec"), restart_policies);
}

/// The array at `key`, empty when absent or not an array.
pub(super) fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The string at `key`, empty when absent or not a string.
pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Validates a pod spec at `path`.
pub(super) fn validate_pod_spec(ctx: &mut Ctx<'_>, spec: &Value, path: &str, restart_policies: &[&str]) {
    let volumes = super::volumes::validate_volumes(ctx, spec, path);
    let mut names = HashSet::new();
    let containers = array(spec, "containers");
    if containers.is_empty() {
        ctx.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (kind, list) in [("containers", containers), ("initContainers", array(spec, "initContainers"))] {
        for (i, c) in list.iter().enumerate() {
            validate_container(ctx, c, &format!("{path}.{kind}[{i}]"), &mut names, &volumes);
            let sc_path = format!("{path}.{kind}[{i}].securityContext");
            super::scheduling::security_context(ctx, c.get("securityContext"), &sc_path);
        }
    }
    validate_ephemeral_containers(ctx, spec, path, &mut names, &volumes);
    let restart = spec.get("restartPolicy");
    ctx.one_of(&format!("{path}.restartPolicy"), restart, RESTART_POLICIES);
    if !restart_policies.is_empty()
        && let Some(r) = restart.and_then(Value::as_str)
        && RESTART_POLICIES.contains(&r)
        && !restart_policies.contains(&r)
    {
        ctx.push(FieldError::not_supported(format!("{path}.restartPolicy"), quote(r), restart_policies));
    }
    ctx.one_of(&format!("{path}.dnsPolicy"), spec.get("dnsPolicy"), DNS_POLICIES);
    validate_dns_config(ctx, spec, path);
    ctx.non_negative(spec, "terminationGracePeriodSeconds", &format!("{path}.terminationGracePeriodSeconds"));
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && n <= 0
    {
        ctx.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            n,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    let node_name = text(spec, "nodeName");
    if !node_name.is_empty() {
        ctx.check_str(&format!("{path}.nodeName"), node_name, super::is_dns1123_subdomain);
    }
    let sa = text(spec, "serviceAccountName");
    if !sa.is_empty() {
        ctx.check_str(&format!("{path}.serviceAccountName"), sa, super::is_dns1123_subdomain);
    }
    ctx.labels(spec.get("nodeSelector"), &format!("{path}.nodeSelector"));
    super::scheduling::validate(ctx, spec, path);
}

/// The most nameservers a pod's dnsConfig may list (Kubernetes' `MaxDNSNameservers`).
const MAX_DNS_NAMESERVERS: usize = 3;

/// `dnsPolicy: None` takes everything from `dnsConfig`, which must then name a nameserver;
/// no dnsConfig lists more than three (Kubernetes' `validatePodDNSConfig`).
fn validate_dns_config(ctx: &mut Ctx<'_>, spec: &Value, path: &str) {
    let config = spec.get("dnsConfig").filter(|c| !c.is_null());
    let servers = config.map(|c| array(c, "nameservers")).unwrap_or_default();
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None") {
        let Some(_) = config else {
            ctx.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        };
        if servers.is_empty() {
            ctx.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    if servers.len() > MAX_DNS_NAMESERVERS {
        let shown: Vec<String> = servers.iter().map(|s| quote(s.as_str().unwrap_or_default())).collect();
        ctx.push(FieldError::invalid(
            format!("{path}.dnsConfig.nameservers"),
            format!("[]string{{{}}}", shown.join(", ")),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, server) in servers.iter().enumerate() {
        let text = server.as_str().unwrap_or_default();
        if text.parse::<std::net::IpAddr>().is_err() {
            ctx.push(FieldError::invalid(
                format!("{path}.dnsConfig.nameservers[{i}]"),
                quote(text),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
}

/// The container fields an ephemeral container may not set (the ones outside Kubernetes'
/// `allowedEphemeralContainerFields`), in the Container struct's order: it must not be relied
/// upon for the pod's service, so no ports, resources, probes, lifecycle hooks or restart
/// policy.
const NOT_EPHEMERAL_FIELDS: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "restartPolicy",
];

/// Kubernetes' validateEphemeralContainers: each is a container (name, image, env, mounts,
/// security context), with a name unique among all the pod's containers, a target that names
/// one of its containers or init containers, only the allowed fields, and no subPath mounts.
/// `names` holds the other containers' names.
fn validate_ephemeral_containers(
    ctx: &mut Ctx<'_>,
    spec: &Value,
    path: &str,
    names: &mut HashSet<String>,
    volumes: &HashMap<String, &'static str>,
) {
    let list = array(spec, "ephemeralContainers");
    if list.is_empty() {
        return;
    }
    let others: HashSet<String> = names.clone();
    for (i, c) in list.iter().enumerate() {
        let cpath = format!("{path}.ephemeralContainers[{i}]");
        validate_container(ctx, c, &cpath, names, volumes);
        super::scheduling::security_context(ctx, c.get("securityContext"), &format!("{cpath}.securityContext"));
        let target = text(c, "targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            ctx.push(FieldError {
                value: Some(quote(target)),
                ..FieldError::new(
                    crate::field_error::FieldErrorKind::NotFound,
                    format!("{cpath}.targetContainerName"),
                    "",
                )
            });
        }
        // A zero value (null, false, 0, "", {} or []) counts as not set, as in Go.
        let set = |v: &Value| match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
        };
        for key in NOT_EPHEMERAL_FIELDS {
            if c.get(key).is_some_and(set) {
                ctx.push(FieldError::forbidden(format!("{cpath}.{key}"), "cannot be set for an Ephemeral Container"));
            }
        }
        for (j, m) in array(c, "volumeMounts").iter().enumerate() {
            for key in ["subPath", "subPathExpr"] {
                if !text(m, key).is_empty() {
                    ctx.push(FieldError::forbidden(
                        format!("{cpath}.volumeMounts[{j}].{key}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

/// Kubernetes' ValidatePodEphemeralContainersUpdate, for writes through the
/// `ephemeralcontainers` subresource (the rest of the pod is the stored one): a static pod
/// takes none, and existing ephemeral containers may be neither removed nor changed
/// (matched by name: a patch may reorder them).
pub(super) fn validate_ephemeral_update(ctx: &mut Ctx<'_>, obj: &Value, old: &Value) {
    const MIRROR: &str = "kubernetes.io/config.mirror";
    if old.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR)).is_some() {
        ctx.push(FieldError::forbidden("", "static pods do not support ephemeral containers"));
        return;
    }
    let new_list = obj.pointer("/spec/ephemeralContainers").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for o in old.pointer("/spec/ephemeralContainers").and_then(Value::as_array).into_iter().flatten() {
        let name = text(o, "name");
        match new_list.iter().find(|n| text(n, "name") == name) {
            None => ctx.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers \"{name}\" may not be removed\n"),
            )),
            Some(n) if n != o => ctx.push(FieldError::forbidden(
                format!("spec.ephemeralContainers.{name}"),
                format!("existing ephemeral containers \"{name}\" may not be changed"),
            )),
            Some(_) => {}
        }
    }
}

fn validate_container(
    ctx: &mut Ctx<'_>,
    c: &Value,
    path: &str,
    names: &mut HashSet<String>,
    volumes: &HashMap<String, &'static str>,
) {
    let name = text(c, "name");
    if name.is_empty() {
        ctx.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        ctx.check_str(&format!("{path}.name"), name, is_dns1123_label);
        if !names.insert(name.to_string()) {
            ctx.push(duplicate(format!("{path}.name"), name));
        }
    }
    if text(c, "image").trim().is_empty() {
        ctx.push(FieldError::required(format!("{path}.image"), ""));
    }
    ctx.one_of(&format!("{path}.imagePullPolicy"), c.get("imagePullPolicy"), PULL_POLICIES);
    let mut port_names = HashSet::new();
    for (i, p) in array(c, "ports").iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let pname = text(p, "name");
        if !pname.is_empty() {
            ctx.check_str(&format!("{ppath}.name"), pname, is_port_name);
            if !port_names.insert(pname.to_string()) {
                ctx.push(duplicate(format!("{ppath}.name"), pname));
            }
        }
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => ctx.push(FieldError::required(format!("{ppath}.containerPort"), "")),
            Some(n) => {
                for msg in is_valid_port(n) {
                    ctx.push(FieldError::invalid(format!("{ppath}.containerPort"), n, msg));
                }
            }
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64).filter(|n| *n != 0) {
            for msg in is_valid_port(n) {
                ctx.push(FieldError::invalid(format!("{ppath}.hostPort"), n, msg));
            }
        }
        ctx.one_of(&format!("{ppath}.protocol"), p.get("protocol"), PROTOCOLS);
    }
    super::env::validate_env(ctx, c, path);
    super::volumes::validate_mounts(ctx, c, path, volumes);
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = c.get(key).filter(|p| !p.is_null()) {
            validate_probe(ctx, probe, &format!("{path}.{key}"), key != "readinessProbe");
        }
    }
    validate_resources(ctx, c.get("resources"), &format!("{path}.resources"));
}

/// A probe: exactly one handler, non-negative timings, success threshold 1 where required.
fn validate_probe(ctx: &mut Ctx<'_>, probe: &Value, path: &str, success_must_be_one: bool) {
    let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
        .iter()
        .filter(|h| probe.get(**h).is_some_and(|v| !v.is_null()))
        .count();
    if handlers == 0 {
        ctx.push(FieldError::required(path, "must specify a handler type"));
    } else if handlers > 1 {
        ctx.push(FieldError::forbidden(path, "may not specify more than 1 handler type"));
    }
    for key in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        ctx.non_negative(probe, key, &format!("{path}.{key}"));
    }
    if success_must_be_one
        && let Some(n) = probe.get("successThreshold").and_then(Value::as_i64)
        && n != 1
    {
        ctx.push(FieldError::invalid(format!("{path}.successThreshold"), n, "must be 1"));
    }
    if let Some(port) = probe.pointer("/httpGet/port").or(probe.pointer("/tcpSocket/port")) {
        let handler = if probe.get("httpGet").is_some() { "httpGet" } else { "tcpSocket" };
        match port {
            Value::Number(n) => {
                let n = n.as_i64().unwrap_or(0);
                for msg in is_valid_port(n) {
                    ctx.push(FieldError::invalid(format!("{path}.{handler}.port"), n, msg));
                }
            }
            Value::String(s) => ctx.check_str(&format!("{path}.{handler}.port"), s, is_port_name),
            _ => {}
        }
    }
}

fn validate_resources(ctx: &mut Ctx<'_>, resources: Option<&Value>, path: &str) {
    let Some(resources) = resources else { return };
    let mut parsed = |key: &str| -> Vec<(String, f64, String)> {
        let mut out = Vec::new();
        if let Some(map) = resources.get(key).and_then(Value::as_object) {
            for (name, q) in map {
                let text = match q {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                match parse_quantity(&text) {
                    Some(v) if v < 0.0 => ctx.push(FieldError::invalid(
                        format!("{path}.{key}[{name}]"),
                        quote(&text),
                        "must be greater than or equal to 0",
                    )),
                    Some(v) => out.push((name.clone(), v, text)),
                    None => ctx.push(FieldError::invalid(
                        format!("{path}.{key}[{name}]"),
                        quote(&text),
                        super::QUANTITY_ERROR,
                    )),
                }
            }
        }
        out
    };
    let limits = parsed("limits");
    let requests = parsed("requests");
    for (name, value, text) in &requests {
        if let Some((_, limit, limit_text)) = limits.iter().find(|(n, _, _)| n == name)
            && value > limit
        {
            ctx.push(FieldError::invalid(
                format!("{path}.requests"),
                quote(text),
                format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

/// The fields of a pod spec that an update may change.
fn mutable_view(spec: &Value, from: &Value) -> Value {
    let mut view = spec.clone();
    let Some(obj) = view.as_object_mut() else {
        return view;
    };
    for key in ["containers", "initContainers"] {
        let sources = array(from, key);
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            for (c, src) in list.iter_mut().zip(sources) {
                if let (Some(c), Some(img)) = (c.as_object_mut(), src.get("image")) {
                    c.insert("image".into(), img.clone());
                }
            }
        }
    }
    // schedulingGates may be removed (the scheduler then takes the pod).
    for key in ["activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates"] {
        match from.get(key) {
            Some(v) => obj.insert(key.into(), v.clone()),
            None => obj.remove(key),
        };
    }
    view
}

fn validate_pod_spec_update(ctx: &mut Ctx<'_>, spec: &Value, old_spec: &Value) {
    // Copy the mutable fields of the new spec onto the old one: anything else that differs is forbidden.
    if mutable_view(old_spec, spec) != *spec {
        ctx.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    // Gates may only be removed (Kubernetes' validateOnlyDeletedSchedulingGates).
    let gate_name = |g: &Value| g.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let old_gates: Vec<String> = array(old_spec, "schedulingGates").iter().map(gate_name).collect();
    for (i, gate) in array(spec, "schedulingGates").iter().enumerate() {
        let name = gate_name(gate);
        if !old_gates.contains(&name) {
            ctx.push(FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    let old_tolerations = array(old_spec, "tolerations");
    let new_tolerations = array(spec, "tolerations");
    if !old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        ctx.push(FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    if let (Some(old_d), new_d) =
        (old_spec.get("activeDeadlineSeconds").and_then(Value::as_i64), spec.get("activeDeadlineSeconds"))
    {
        match new_d.and_then(Value::as_i64) {
            None => ctx.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                "null",
                "must not update from a positive integer to nil value",
            )),
            Some(n) if n > old_d => ctx.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            )),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec})
    }

    #[test]
    fn containers() {
        check("/v1/pods", pod(json!({"containers": [{"name": "c", "image": "nginx"}]})), None, &[]);
        check("/v1/pods", pod(json!({})), None, &["spec.containers: Required value"]);
        check(
            "/v1/pods",
            json!({"metadata": {"name": "p", "namespace": "d"}}),
            None,
            &["spec.containers: Required value"],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c", "image": "a"}, {"name": "c", "image": "b"}]})),
            None,
            &[r#"spec.containers[1].name: Duplicate value: "c""#],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c"}], "initContainers": [{"name": "c", "image": "x"}]})),
            None,
            &["spec.containers[0].image: Required value", r#"spec.initContainers[0].name: Duplicate value: "c""#],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"image": "x"}]})),
            None,
            &["spec.containers[0].name: Required value"],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Sometimes"}]})),
            None,
            &[
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#,
            ],
        );
    }

    #[test]
    fn ephemeral_containers() {
        let with = |ephemeral: Value| {
            pod(
                json!({"containers": [{"name": "app", "image": "x"}], "initContainers": [{"name": "init", "image": "x"}],
                       "ephemeralContainers": ephemeral}),
            )
        };
        check(
            "/v1/pods",
            with(json!([{"name": "dbg", "image": "x", "targetContainerName": "app", "stdin": true}])),
            None,
            &[],
        );
        // Zero values count as unset, as in Go.
        check("/v1/pods", with(json!([{"name": "dbg", "image": "x", "ports": [], "resources": {}}])), None, &[]);
        check(
            "/v1/pods",
            with(json!([
                {"name": "app", "image": "x"},
                {"name": "b", "targetContainerName": "dbg"},
                {"name": "c", "image": "x", "ports": [{"containerPort": 80}], "lifecycle": {"preStop": {"exec": {}}},
                 "resources": {"limits": {"cpu": "1"}}, "restartPolicy": "Always"},
                {"name": "d", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "s"}]},
            ])),
            None,
            &[
                r#"spec.ephemeralContainers[0].name: Duplicate value: "app""#,
                "spec.ephemeralContainers[1].image: Required value",
                r#"spec.ephemeralContainers[1].targetContainerName: Not found: "dbg""#,
                "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].resources: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].lifecycle: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].restartPolicy: Forbidden: cannot be set for an Ephemeral Container",
                r#"spec.ephemeralContainers[3].volumeMounts[0].name: Not found: "v""#,
                "spec.ephemeralContainers[3].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
            ],
        );
        // The pod's own update may not add or change them.
        let old = with(json!([{"name": "dbg", "image": "x"}]));
        let errs = update_errors(with(json!([{"name": "dbg", "image": "x"}, {"name": "e", "image": "x"}])), &old);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than"), "{errs:?}");
    }

    fn update_errors(new: Value, old: &Value) -> Vec<String> {
        let res = crate::registry::find_builtin("", "v1", "pods").expect("pods");
        crate::validation::validate(res, &new, Some(old)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ephemeral_containers_may_only_be_added() {
        let with = |ephemeral: Value| {
            pod(json!({"containers": [{"name": "app", "image": "x"}], "ephemeralContainers": ephemeral}))
        };
        let res = crate::registry::find_builtin("", "v1", "pods").expect("pods");
        let errors = |new: &Value, old: &Value| -> Vec<String> {
            crate::validation::validate_ephemeral_containers_update(res, new, old)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let old = with(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]));
        // Added, and reordered (a patch may reorder).
        let added =
            with(json!([{"name": "b", "image": "x"}, {"name": "a", "image": "x"}, {"name": "c", "image": "x"}]));
        assert_eq!(errors(&added, &old), Vec::<String>::new());
        assert_eq!(
            errors(&with(json!([{"name": "a", "image": "y"}])), &old),
            [
                "spec.ephemeralContainers.a: Forbidden: existing ephemeral containers \"a\" may not be changed",
                "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"b\" may not be removed\n",
            ]
        );
        let mut mirror = old.clone();
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        let mut new = added.clone();
        new["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        assert_eq!(errors(&new, &mirror), [": Forbidden: static pods do not support ephemeral containers"]);
    }

    #[test]
    fn scheduling_gates_may_only_be_removed() {
        let gated = |gates: Value| pod(json!({"containers": [{"name": "c", "image": "x"}], "schedulingGates": gates}));
        let old = gated(json!([{"name": "a"}, {"name": "b"}]));
        check("/v1/pods", gated(json!([{"name": "b"}])), Some(old.clone()), &[]);
        check("/v1/pods", gated(json!([])), Some(old.clone()), &[]);
        check(
            "/v1/pods",
            gated(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            Some(old.clone()),
            &["spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new scheduling gate 'c'"],
        );
        // A pod created without gates cannot get one.
        check(
            "/v1/pods",
            gated(json!([{"name": "late"}])),
            Some(pod(json!({"containers": [{"name": "c", "image": "x"}]}))),
            &[
                "spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'late'",
            ],
        );
    }

    #[test]
    fn ports() {
        let c = |ports: Value| pod(json!({"containers": [{"name": "c", "image": "x", "ports": ports}]}));
        check("/v1/pods", c(json!([{"containerPort": 80, "name": "http", "protocol": "UDP"}])), None, &[]);
        check(
            "/v1/pods",
            c(json!([{"containerPort": 0}])),
            None,
            &["spec.containers[0].ports[0].containerPort: Required value"],
        );
        check(
            "/v1/pods",
            c(json!([{"containerPort": 70000}])),
            None,
            &[
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        );
        check(
            "/v1/pods",
            c(json!([{"containerPort": 80, "protocol": "HTTP"}])),
            None,
            &[
                r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
            ],
        );
        check(
            "/v1/pods",
            c(json!([{"containerPort": 80, "name": "a"}, {"containerPort": 81, "name": "a"}])),
            None,
            &[r#"spec.containers[0].ports[1].name: Duplicate value: "a""#],
        );
        check(
            "/v1/pods",
            c(json!([{"containerPort": 80, "hostPort": -1}])),
            None,
            &["spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive"],
        );
    }

    #[test]
    fn policies_env_resources_volumes() {
        let base = |extra: Value| {
            let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            pod(spec)
        };
        check(
            "/v1/pods",
            base(json!({"restartPolicy": "Sometimes"})),
            None,
            &[
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            ],
        );
        check(
            "/v1/pods",
            base(json!({"dnsPolicy": "None"})),
            None,
            &["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"],
        );
        check(
            "/v1/pods",
            base(json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["a.example"]}})),
            None,
            &[
                "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
            ],
        );
        check(
            "/v1/pods",
            base(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.1"], "searches": ["a.example"]}})),
            None,
            &[],
        );
        check(
            "/v1/pods",
            base(json!({"dnsConfig": {"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "9.9.9.9", "dns"]}})),
            None,
            &[
                r#"spec.dnsConfig.nameservers: Invalid value: []string{"1.1.1.1", "1.0.0.1", "8.8.8.8", "9.9.9.9", "dns"}: must not have more than 3 nameservers"#,
                r#"spec.dnsConfig.nameservers[4]: Invalid value: "dns": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
            ],
        );
        check(
            "/v1/pods",
            base(json!({"dnsPolicy": "x"})),
            None,
            &[
                r#"spec.dnsPolicy: Unsupported value: "x": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#,
            ],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B"}, {"value": "v"}]}]})),
            None,
            &[
                r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                "spec.containers[0].env[1].name: Required value",
            ],
        );
        check(
            "/v1/pods",
            pod(
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}),
            ),
            None,
            &[
                r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
            ],
        );
        check(
            "/v1/pods",
            pod(
                json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "1Gi", "cpu": "500m"}, "limits": {"memory": "2Gi"}}}]}),
            ),
            None,
            &[],
        );
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "lots"}}}]})),
            None,
            &[
                r#"spec.containers[0].resources.limits[cpu]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
            ],
        );
        check(
            "/v1/pods",
            base(
                json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}, {"name": "w"}, {"name": "x", "emptyDir": {}, "secret": {}}]}),
            ),
            None,
            &[
                r#"spec.volumes[1].name: Duplicate value: "v""#,
                "spec.volumes[2]: Required value: must specify a volume type",
                "spec.volumes[3].secret: Forbidden: may not specify more than 1 volume type",
            ],
        );
        check(
            "/v1/pods",
            pod(
                json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
            ),
            None,
            &[r#"spec.containers[0].volumeMounts[0].name: Not found: "nope""#],
        );
        check(
            "/v1/pods",
            base(json!({"terminationGracePeriodSeconds": -5})),
            None,
            &["spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0"],
        );
    }

    #[test]
    fn probes() {
        let c = |probe: Value| pod(json!({"containers": [{"name": "c", "image": "x", "livenessProbe": probe}]}));
        check("/v1/pods", c(json!({"httpGet": {"port": 80}, "periodSeconds": 5})), None, &[]);
        check(
            "/v1/pods",
            c(json!({"periodSeconds": 5})),
            None,
            &["spec.containers[0].livenessProbe: Required value: must specify a handler type"],
        );
        check(
            "/v1/pods",
            c(json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}})),
            None,
            &["spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type"],
        );
        check(
            "/v1/pods",
            c(json!({"httpGet": {"port": "HTTP"}, "successThreshold": 2, "timeoutSeconds": -1})),
            None,
            &[
                "spec.containers[0].livenessProbe.timeoutSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                r#"spec.containers[0].livenessProbe.httpGet.port: Invalid value: "HTTP": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
                r#"spec.containers[0].livenessProbe.httpGet.port: Invalid value: "HTTP": must contain at least one letter (a-z)"#,
            ],
        );
        check(
            "/v1/pods",
            pod(
                json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {"tcpSocket": {"port": 0}, "successThreshold": 3}}]}),
            ),
            None,
            &[
                "spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        );
    }

    #[test]
    fn updates() {
        let old = pod(json!({"containers": [{"name": "c", "image": "a"}], "nodeName": "n1"}));
        check(
            "/v1/pods",
            pod(json!({"containers": [{"name": "c", "image": "b"}], "nodeName": "n1"})),
            Some(old.clone()),
            &[],
        );
        check(
            "/v1/pods",
            pod(
                json!({"containers": [{"name": "c", "image": "a"}], "nodeName": "n1", "tolerations": [{"key": "k", "operator": "Exists"}]}),
            ),
            Some(old.clone()),
            &[],
        );
        let errs: Vec<String> = {
            let res = crate::registry::find_builtin("", "v1", "pods").expect("pods");
            let new = pod(json!({"containers": [{"name": "c", "image": "a"}], "nodeName": "n2"}));
            crate::validation::validate(res, &new, Some(&old)).iter().map(ToString::to_string).collect()
        };
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
            ),
            "{errs:?}"
        );
    }
}
