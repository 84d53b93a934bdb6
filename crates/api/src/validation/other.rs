//! Validation of the non-workload kinds: Services, ConfigMaps, Secrets, RBAC objects,
//! Leases, PriorityClasses, autoscalers, disruption budgets, ingresses.

use std::collections::HashSet;

use serde_json::Value;

use super::{Ctx, duplicate, is_config_map_key, is_port_name, is_valid_port, quote, show};
use crate::field_error::FieldError;
use crate::registry::ResourceInfo;

/// The largest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

/// Validates the kinds not handled by the pod and workload modules.
pub(super) fn validate(ctx: &mut Ctx<'_>, res: &ResourceInfo, obj: &Value, old: Option<&Value>) {
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Service") => service(ctx, obj, old),
        ("", "ConfigMap") => data_object(ctx, obj, old, &["data", "binaryData"]),
        ("", "Secret") => {
            data_object(ctx, obj, old, &["data", "stringData"]);
            secret_type(ctx, obj);
            if let Some(old) = old {
                ctx.immutable(obj.get("type"), old.get("type"), "type");
            }
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => rules(ctx, obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => binding(ctx, obj, old),
        ("coordination.k8s.io", "Lease") => {
            if let Some(n) = obj.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64)
                && n <= 0
            {
                ctx.push(FieldError::invalid("spec.leaseDurationSeconds", n, "must be greater than 0"));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => priority_class(ctx, obj, old),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let min = spec.get("minReplicas").and_then(Value::as_i64);
            let max = spec.get("maxReplicas").and_then(Value::as_i64);
            if let Some(m) = min
                && m < 1
            {
                ctx.push(FieldError::invalid("spec.minReplicas", m, "must be greater than or equal to 1"));
            }
            match max {
                None => ctx.push(FieldError::required("spec.maxReplicas", "")),
                Some(m) if m < 1 => ctx.push(FieldError::invalid("spec.maxReplicas", m, "must be greater than 0")),
                Some(m) if min.is_some_and(|n| m < n) => {
                    ctx.push(FieldError::invalid(
                        "spec.maxReplicas",
                        m,
                        "must be greater than or equal to `minReplicas`",
                    ));
                }
                _ => {}
            }
            for key in ["kind", "name"] {
                if obj
                    .pointer(&format!("/spec/scaleTargetRef/{key}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    ctx.push(FieldError::required(format!("spec.scaleTargetRef.{key}"), ""));
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(ctx, obj, old),
        ("policy", "PodDisruptionBudget") => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
                ctx.push(FieldError::invalid(
                    "spec",
                    "policy.PodDisruptionBudgetSpec{...}",
                    "minAvailable and maxUnavailable cannot be both set",
                ));
            }
        }
        ("networking.k8s.io", "Ingress") => {
            for (i, rule) in
                obj.pointer("/spec/rules").and_then(Value::as_array).map_or(&[][..], Vec::as_slice).iter().enumerate()
            {
                let host = rule.get("host").and_then(Value::as_str).unwrap_or_default();
                if !host.is_empty() {
                    let checked = host.strip_prefix("*.").unwrap_or(host);
                    for msg in super::is_dns1123_subdomain(checked) {
                        ctx.push(FieldError::invalid(format!("spec.rules[{i}].host"), quote(host), msg));
                    }
                }
            }
        }
        _ => {}
    }
}

fn service(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let type_ = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    ctx.one_of("spec.type", spec.get("type"), &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]);
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if type_ == "ExternalName" {
        let name = spec.get("externalName").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            ctx.push(FieldError::required("spec.externalName", ""));
        } else {
            ctx.check_str("spec.externalName", name.strip_suffix('.').unwrap_or(name), super::is_dns1123_subdomain);
        }
    } else if ports.is_empty() && !headless {
        ctx.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            ctx.push(FieldError::required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            ctx.check_str(&format!("{path}.name"), name, super::is_dns1123_label);
            if !names.insert(name) {
                ctx.push(duplicate(format!("{path}.name"), name));
            }
        }
        match p.get("port").and_then(Value::as_i64) {
            None => ctx.push(FieldError::required(format!("{path}.port"), "")),
            Some(n) => {
                for msg in is_valid_port(n) {
                    ctx.push(FieldError::invalid(format!("{path}.port"), n, msg));
                }
            }
        }
        ctx.one_of(&format!("{path}.protocol"), p.get("protocol"), &["SCTP", "TCP", "UDP"]);
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for msg in is_valid_port(n) {
                    ctx.push(FieldError::invalid(format!("{path}.targetPort"), n, msg));
                }
            }
            Some(Value::String(s)) => ctx.check_str(&format!("{path}.targetPort"), s, is_port_name),
            _ => {}
        }
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
            if type_ == "ClusterIP" {
                ctx.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            for msg in is_valid_port(n) {
                ctx.push(FieldError::invalid(format!("{path}.nodePort"), n, msg));
            }
        }
    }
    ctx.labels(spec.get("selector"), "spec.selector");
    ctx.one_of("spec.sessionAffinity", spec.get("sessionAffinity"), &["ClientIP", "None"]);
    if let Some(old_ip) =
        old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).filter(|s| !s.is_empty())
        && let Some(new_ip) = spec.get("clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty())
        && new_ip != old_ip
        && type_ != "ExternalName"
    {
        ctx.push(FieldError::invalid("spec.clusterIPs[0]", quote(new_ip), "may not change once set"));
    }
}

/// Largest total size of a Secret's or ConfigMap's data, in bytes.
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// The keys each well-known Secret type requires.
fn secret_type(ctx: &mut Ctx<'_>, obj: &Value) {
    let has = |key: &str| {
        ["data", "stringData"].iter().any(|f| obj.get(*f).and_then(|d| d.get(key)).is_some_and(|v| v != ""))
    };
    let required: &[&str] = match obj.get("type").and_then(Value::as_str).unwrap_or("Opaque") {
        "kubernetes.io/service-account-token" => {
            let annotated = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !annotated {
                ctx.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
            &[]
        }
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => &["username", "password"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    };
    for key in required {
        if !has(key) {
            ctx.push(FieldError::required(format!("data[{key}]"), ""));
        }
    }
}

fn data_object(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>, fields: &[&str]) {
    let mut total = 0;
    for field in fields {
        for (key, value) in obj.get(*field).and_then(Value::as_object).into_iter().flatten() {
            let len = value.as_str().map_or(0, str::len);
            // data and binaryData carry base64: count the decoded bytes
            let base64 = *field == "binaryData" || (*field == "data" && fields.contains(&"stringData"));
            let len = if base64 { len / 4 * 3 } else { len };
            total += key.len() + len;
        }
    }
    if total > MAX_DATA_SIZE {
        ctx.push(FieldError::new(
            crate::field_error::FieldErrorKind::TooLong,
            "data",
            format!("must have at most {MAX_DATA_SIZE} bytes"),
        ));
    }
    let mut seen = HashSet::new();
    for field in fields {
        if let Some(map) = obj.get(*field).and_then(Value::as_object) {
            for key in map.keys() {
                for msg in is_config_map_key(key) {
                    ctx.push(FieldError::invalid(format!("{field}[{key}]"), quote(key), msg));
                }
                if *field != "stringData" && !seen.insert(key.clone()) {
                    ctx.push(FieldError::invalid(
                        format!("{field}[{key}]"),
                        quote(key),
                        format!("duplicate of key present in {}", fields[0]),
                    ));
                }
            }
        }
    }
    let Some(old) = old else { return };
    if old.get("immutable").and_then(Value::as_bool) == Some(true) {
        if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
            ctx.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
        }
        for field in fields.iter().filter(|f| **f != "stringData") {
            let empty =
                |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()));
            let (new_v, old_v) = (obj.get(*field), old.get(*field));
            if new_v != old_v && !(empty(new_v) && empty(old_v)) {
                ctx.push(FieldError::forbidden(*field, "field is immutable when `immutable` is set"));
            }
        }
    }
}

fn rules(ctx: &mut Ctx<'_>, obj: &Value) {
    let list = obj.get("rules").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for (i, rule) in list.iter().enumerate() {
        let path = format!("rules[{i}]");
        let len = |key: &str| rule.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        if len("verbs") == 0 {
            ctx.push(FieldError::required(format!("{path}.verbs"), "verbs must contain at least one value"));
        }
        if len("nonResourceURLs") > 0 {
            if obj.pointer("/metadata/namespace").is_some_and(|n| n != "") {
                ctx.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    show(&rule["nonResourceURLs"]),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if len("apiGroups") > 0 || len("resources") > 0 || len("resourceNames") > 0 {
                ctx.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    show(&rule["nonResourceURLs"]),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if len("apiGroups") == 0 {
            ctx.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if len("resources") == 0 {
            ctx.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

fn binding(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or_default();
    let namespaced = obj.pointer("/metadata/namespace").is_some_and(|n| n != "");
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if role_ref.get("apiGroup").and_then(Value::as_str) != Some("rbac.authorization.k8s.io") {
        let shown = role_ref.get("apiGroup").map(show).unwrap_or_else(|| "\"\"".into());
        ctx.push(FieldError::not_supported("roleRef.apiGroup", shown, &["rbac.authorization.k8s.io"]));
    }
    if !kinds.contains(&kind) {
        ctx.push(FieldError::not_supported("roleRef.kind", quote(kind), kinds));
    }
    if role_ref.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
        ctx.push(FieldError::required("roleRef.name", ""));
    }
    let subjects = obj.get("subjects").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    for (i, s) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if s.get("name").and_then(Value::as_str).unwrap_or_default().is_empty() {
            ctx.push(FieldError::required(format!("{path}.name"), ""));
        }
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "ServiceAccount" => {
                if !namespaced && s.get("namespace").and_then(Value::as_str).unwrap_or_default().is_empty() {
                    ctx.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                let group = s.get("apiGroup").and_then(Value::as_str).unwrap_or_default();
                if group != "rbac.authorization.k8s.io" {
                    ctx.push(FieldError::not_supported(
                        format!("{path}.apiGroup"),
                        quote(group),
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            other => ctx.push(FieldError::not_supported(
                format!("{path}.kind"),
                quote(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old
        && old.get("roleRef") != obj.get("roleRef")
    {
        ctx.push(FieldError::invalid("roleRef", show(role_ref), "cannot change roleRef"));
    }
}

fn crd(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let text = |path: &str| spec.pointer(path).and_then(Value::as_str).unwrap_or_default();
    let group = text("/group");
    if group.is_empty() {
        ctx.push(FieldError::required("spec.group", ""));
    } else {
        ctx.check_str("spec.group", group, super::is_dns1123_subdomain);
        if !group.contains('.') {
            ctx.push(FieldError::invalid("spec.group", quote(group), "should be a domain with at least one dot"));
        }
    }
    let plural = text("/names/plural");
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        ctx.push(FieldError::invalid("metadata.name", quote(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    ctx.one_of("spec.scope", spec.get("scope"), &["Cluster", "Namespaced"]);
    if spec.get("scope").is_none() {
        ctx.push(FieldError::required("spec.scope", ""));
    }
    for key in ["plural", "singular"] {
        let value = text(&format!("/names/{key}"));
        if value.is_empty() {
            if key == "plural" {
                ctx.push(FieldError::required("spec.names.plural", ""));
            }
        } else {
            ctx.check_str(&format!("spec.names.{key}"), value, super::is_dns1123_label);
        }
    }
    for key in ["kind", "listKind"] {
        let value = text(&format!("/names/{key}"));
        if value.is_empty() {
            ctx.push(FieldError::required(format!("spec.names.{key}"), ""));
        } else if !super::is_dns1035_label(&value.to_ascii_lowercase()).is_empty() {
            ctx.push(FieldError::invalid(
                format!("spec.names.{key}"),
                quote(value),
                "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
            ));
        }
    }
    let versions = spec.get("versions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if versions.is_empty() {
        ctx.push(FieldError::invalid("spec.versions", "[]", "must have exactly one version marked as storage version"));
    } else {
        let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
        if storage != 1 {
            ctx.push(FieldError::invalid(
                "spec.versions",
                "[]apiextensions.CustomResourceDefinitionVersion{...}",
                "must have exactly one version marked as storage version",
            ));
        }
        let mut seen = HashSet::new();
        for (i, v) in versions.iter().enumerate() {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or_default();
            if vname.is_empty() {
                ctx.push(FieldError::required(format!("spec.versions[{i}].name"), ""));
            } else {
                ctx.check_str(&format!("spec.versions[{i}].name"), vname, super::is_dns1035_label);
                if !seen.insert(vname) {
                    ctx.push(duplicate(format!("spec.versions[{i}].name"), vname));
                }
            }
            if v.pointer("/schema/openAPIV3Schema").is_none_or(Value::is_null) {
                ctx.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                ));
            }
        }
    }
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        for key in ["group", "scope"] {
            if old_spec.get(key) != spec.get(key) {
                ctx.immutable(spec.get(key), old_spec.get(key), &format!("spec.{key}"));
            }
        }
    }
}

fn priority_class(ctx: &mut Ctx<'_>, obj: &Value, old: Option<&Value>) {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    match obj.get("value").and_then(Value::as_i64) {
        None => ctx.push(FieldError::required("value", "")),
        Some(v) if v > HIGHEST_USER_PRIORITY && !name.starts_with("system-") => ctx.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        )),
        _ => {}
    }
    ctx.one_of("preemptionPolicy", obj.get("preemptionPolicy"), &["Never", "PreemptLowerPriority"]);
    if let Some(old) = old {
        if old.get("value") != obj.get("value") {
            ctx.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        if old.get("preemptionPolicy") != obj.get("preemptionPolicy") && obj.get("preemptionPolicy").is_some() {
            ctx.immutable(obj.get("preemptionPolicy"), old.get("preemptionPolicy"), "preemptionPolicy");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    fn obj(extra: Value) -> Value {
        let mut o = json!({"metadata": {"name": "s", "namespace": "d"}});
        if let (Some(m), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        o
    }

    #[test]
    fn services() {
        check("/v1/services", obj(json!({"spec": {"ports": [{"port": 80}]}})), None, &[]);
        check("/v1/services", obj(json!({"spec": {}})), None, &["spec.ports: Required value"]);
        check("/v1/services", obj(json!({"spec": {"clusterIP": "None"}})), None, &[]);
        check("/v1/services", obj(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}})), None, &[]);
        check(
            "/v1/services",
            obj(json!({"spec": {"type": "ExternalName"}})),
            None,
            &["spec.externalName: Required value"],
        );
        check(
            "/v1/services",
            obj(json!({"spec": {"type": "Magic", "ports": [{"port": 0}]}})),
            None,
            &[
                r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        );
        check(
            "/v1/services",
            obj(json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}, {"port": 82}]}})),
            None,
            &[r#"spec.ports[1].name: Duplicate value: "a""#, "spec.ports[2].name: Required value"],
        );
        check(
            "/v1/services",
            obj(json!({"spec": {"ports": [{"port": 80, "targetPort": "Web_1"}]}})),
            None,
            &[
                r#"spec.ports[0].targetPort: Invalid value: "Web_1": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
            ],
        );
        check(
            "/v1/services",
            obj(json!({"spec": {"clusterIP": "10.0.0.2", "ports": [{"port": 80}]}})),
            Some(obj(json!({"spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}}))),
            &[r#"spec.clusterIPs[0]: Invalid value: "10.0.0.2": may not change once set"#],
        );
    }

    #[test]
    fn secret_types() {
        let secret = |type_: &str, data: Value| obj(json!({"type": type_, "data": data}));
        check("/v1/secrets", secret("kubernetes.io/tls", json!({"tls.crt": "YQ==", "tls.key": "Yg=="})), None, &[]);
        check(
            "/v1/secrets",
            secret("kubernetes.io/tls", json!({"tls.crt": "YQ=="})),
            None,
            &["data[tls.key]: Required value"],
        );
        check(
            "/v1/secrets",
            secret("kubernetes.io/dockerconfigjson", json!({})),
            None,
            &["data[.dockerconfigjson]: Required value"],
        );
        check(
            "/v1/secrets",
            secret("kubernetes.io/basic-auth", json!({})),
            None,
            &["data[username]: Required value", "data[password]: Required value"],
        );
        check("/v1/secrets", secret("kubernetes.io/basic-auth", json!({"password": "cA=="})), None, &[]);
        check(
            "/v1/secrets",
            secret("kubernetes.io/service-account-token", json!({})),
            None,
            &["metadata.annotations[kubernetes.io/service-account.name]: Required value"],
        );
        check(
            "/v1/secrets",
            obj(json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "a", "tls.key": "b"}})),
            None,
            &[],
        );
        let big = "A".repeat(1_500_000);
        check(
            "/v1/secrets",
            obj(json!({"data": {"k": big}})),
            None,
            &["data: Too long: must have at most 1048576 bytes"],
        );
        let fits = "A".repeat(1_300_000);
        check("/v1/secrets", obj(json!({"data": {"k": fits}})), None, &[]);
        let big = "x".repeat(1_100_000);
        check(
            "/v1/configmaps",
            obj(json!({"data": {"k": big}})),
            None,
            &["data: Too long: must have at most 1048576 bytes"],
        );
    }

    #[test]
    fn configmaps_and_secrets() {
        check("/v1/configmaps", obj(json!({"data": {"a.b": "1", "C_D": "2"}})), None, &[]);
        check(
            "/v1/configmaps",
            obj(json!({"data": {"a/b": "1"}})),
            None,
            &[
                r#"data[a/b]: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
            ],
        );
        check(
            "/v1/configmaps",
            obj(json!({"data": {"a": "1"}, "binaryData": {"a": "MQ=="}})),
            None,
            &[r#"binaryData[a]: Invalid value: "a": duplicate of key present in data"#],
        );
        let frozen = obj(json!({"immutable": true, "data": {"a": "1"}}));
        check("/v1/configmaps", frozen.clone(), Some(frozen.clone()), &[]);
        check(
            "/v1/configmaps",
            obj(json!({"immutable": true, "data": {"a": "2"}})),
            Some(frozen.clone()),
            &["data: Forbidden: field is immutable when `immutable` is set"],
        );
        check(
            "/v1/configmaps",
            obj(json!({"data": {"a": "1"}})),
            Some(frozen),
            &["immutable: Forbidden: field is immutable when `immutable` is set"],
        );
        check(
            "/v1/secrets",
            obj(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}})),
            Some(obj(json!({"type": "Opaque", "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}}))),
            &[r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#],
        );
    }

    #[test]
    fn rbac() {
        check(
            "rbac.authorization.k8s.io/v1/roles",
            obj(json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
            None,
            &[],
        );
        check(
            "rbac.authorization.k8s.io/v1/roles",
            obj(json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"]}]})),
            None,
            &[
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
            ],
        );
        let rb = |role: &str| {
            obj(json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}))
        };
        check("rbac.authorization.k8s.io/v1/rolebindings", rb("r"), None, &[]);
        check("rbac.authorization.k8s.io/v1/rolebindings", rb(""), None, &["roleRef.name: Required value"]);
        check(
            "rbac.authorization.k8s.io/v1/rolebindings",
            rb("other"),
            Some(rb("r")),
            &[
                r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"other"}: cannot change roleRef"#,
            ],
        );
        check(
            "rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"metadata": {"name": "x"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "Robot", "name": "r"}]}),
            None,
            &[
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                r#"subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
            ],
        );
    }

    fn crd(name: &str, group: &str, plural: &str, kind: &str, versions: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": kind, "listKind": format!("{kind}List")},
            "versions": versions}})
    }

    #[test]
    fn custom_resource_definitions() {
        let schema = json!({"openAPIV3Schema": {"type": "object"}});
        let v1 = json!([{"name": "v1", "served": true, "storage": true, "schema": schema}]);
        let gvr = "apiextensions.k8s.io/v1/customresourcedefinitions";
        check(gvr, crd("widgets.example.com", "example.com", "widgets", "Widget", v1.clone()), None, &[]);
        check(
            gvr,
            crd("widgets.example.com", "example", "widgets", "Widget", v1.clone()),
            None,
            &[
                r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
                r#"metadata.name: Invalid value: "widgets.example.com": must be spec.names.plural+"."+spec.group"#,
            ],
        );
        check(
            gvr,
            crd("Widgets.example.com", "example.com", "Widgets", "Wid get", v1.clone()),
            None,
            &[
                r#"metadata.name: Invalid value: "Widgets.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                r#"spec.names.plural: Invalid value: "Widgets": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#,
                r#"spec.names.kind: Invalid value: "Wid get": may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"#,
                r#"spec.names.listKind: Invalid value: "Wid getList": may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"#,
            ],
        );
        check(
            gvr,
            crd(
                "widgets.example.com",
                "example.com",
                "widgets",
                "Widget",
                json!([{"name": "v1", "storage": false}, {"name": "v1", "storage": false, "schema": schema}]),
            ),
            None,
            &[
                "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version",
                "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required",
                r#"spec.versions[1].name: Duplicate value: "v1""#,
            ],
        );
        let mut cluster = crd("widgets.example.com", "example.com", "widgets", "Widget", v1.clone());
        cluster["spec"]["scope"] = json!("Cluster");
        check(
            gvr,
            cluster,
            Some(crd("widgets.example.com", "example.com", "widgets", "Widget", v1)),
            &[r#"spec.scope: Invalid value: "Cluster": field is immutable"#],
        );
    }

    #[test]
    fn misc() {
        check(
            "coordination.k8s.io/v1/leases",
            obj(json!({"spec": {"leaseDurationSeconds": 0}})),
            None,
            &["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
        );
        check("scheduling.k8s.io/v1/priorityclasses", json!({"metadata": {"name": "high"}, "value": 1000}), None, &[]);
        check(
            "scheduling.k8s.io/v1/priorityclasses",
            json!({"metadata": {"name": "high"}, "value": 2000000000}),
            None,
            &["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"],
        );
        check(
            "scheduling.k8s.io/v1/priorityclasses",
            json!({"metadata": {"name": "high"}, "value": 2}),
            Some(json!({"metadata": {"name": "high"}, "value": 1})),
            &["value: Forbidden: may not be changed in an update."],
        );
        check(
            "autoscaling/v2/horizontalpodautoscalers",
            obj(
                json!({"spec": {"minReplicas": 3, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}}),
            ),
            None,
            &["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"],
        );
        check(
            "networking.k8s.io/v1/ingresses",
            obj(json!({"spec": {"rules": [{"host": "*.example.com"}, {"host": "Bad_Host"}]}})),
            None,
            &[
                r#"spec.rules[1].host: Invalid value: "Bad_Host": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
            ],
        );
    }
}
