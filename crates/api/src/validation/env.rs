//! Container environment: `env` names and their `valueFrom` sources (downward API field
//! and resource selectors, ConfigMap and Secret keys) and `envFrom`, as Kubernetes
//! validates them. The selectors are shared with downward API volumes.

use serde_json::Value;

use super::pod::{array, text};
use super::{Ctx, is_config_map_key, is_dns1123_subdomain, is_env_var_name, is_qualified_name, quote};
use crate::field_error::FieldError;

/// The pod fields an environment variable may take from the downward API.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Every field path the v1 downward API knows (others fail conversion).
const KNOWN_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.phase",
    "status.podIP",
    "status.podIPs",
];

/// The container resources the downward API exposes (plus `*.hugepages-*`).
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

const BYTE_DIVISORS: &[&str] = &["1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"];

/// Validates a container's `env` and `envFrom` at `path` (the container's path).
pub(super) fn validate_env(ctx: &mut Ctx<'_>, c: &Value, path: &str) {
    for (i, e) in array(c, "env").iter().enumerate() {
        let epath = format!("{path}.env[{i}]");
        let name = text(e, "name");
        if name.is_empty() {
            ctx.push(FieldError::required(format!("{epath}.name"), ""));
        } else {
            ctx.check_str(&format!("{epath}.name"), name, is_env_var_name);
        }
        if let Some(from) = e.get("valueFrom").filter(|v| !v.is_null()) {
            value_from(ctx, from, !text(e, "value").is_empty(), &format!("{epath}.valueFrom"));
        }
    }
    let from_path = format!("{path}.envFrom");
    for (i, e) in array(c, "envFrom").iter().enumerate() {
        let epath = format!("{from_path}[{i}]");
        let prefix = text(e, "prefix");
        if !prefix.is_empty() {
            ctx.check_str(&format!("{epath}.prefix"), prefix, is_env_var_name);
        }
        let mut sources = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(r) = e.get(key).filter(|r| !r.is_null()) else {
                continue;
            };
            sources += 1;
            let name = text(r, "name");
            let npath = format!("{epath}.{key}.name");
            if name.is_empty() {
                ctx.push(FieldError::required(npath, ""));
            } else {
                // Kubernetes checks these names as prefixes: a trailing dash is allowed.
                let masked = name.strip_suffix('-').map_or_else(|| name.to_string(), |n| format!("{n}a"));
                for msg in is_dns1123_subdomain(&masked) {
                    ctx.push(FieldError::invalid(&npath, quote(name), msg));
                }
            }
        }
        match sources {
            0 => ctx.push(FieldError::invalid(
                &from_path,
                quote(""),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => ctx.push(FieldError::invalid(
                &from_path,
                quote(""),
                "may not have more than one field specified at a time",
            )),
        }
    }
}

/// One `valueFrom`: exactly one source, and not together with `value`.
fn value_from(ctx: &mut Ctx<'_>, from: &Value, has_value: bool, path: &str) {
    let mut sources = 0;
    if let Some(f) = from.get("fieldRef").filter(|v| !v.is_null()) {
        sources += 1;
        object_field_selector(ctx, f, ENV_FIELD_PATHS, &format!("{path}.fieldRef"));
    }
    if let Some(r) = from.get("resourceFieldRef").filter(|v| !v.is_null()) {
        sources += 1;
        resource_field_selector(ctx, r, &format!("{path}.resourceFieldRef"), false);
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(s) = from.get(key).filter(|v| !v.is_null()) {
            sources += 1;
            key_selector(ctx, s, &format!("{path}.{key}"));
        }
    }
    if sources == 0 {
        ctx.push(FieldError::invalid(
            path,
            quote(""),
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if has_value {
        ctx.push(FieldError::invalid(path, quote(""), "may not be specified when `value` is not empty"));
    } else if sources > 1 {
        ctx.push(FieldError::invalid(path, quote(""), "may not have more than one field specified at a time"));
    }
}

/// A ConfigMap or Secret key selector: a valid object name and a valid key.
fn key_selector(ctx: &mut Ctx<'_>, s: &Value, path: &str) {
    let name = text(s, "name");
    ctx.check_str(&format!("{path}.name"), name, is_dns1123_subdomain);
    let key = text(s, "key");
    if key.is_empty() {
        ctx.push(FieldError::required(format!("{path}.key"), ""));
    } else {
        ctx.check_str(&format!("{path}.key"), key, is_config_map_key);
    }
}

/// A downward API `fieldRef`: `allowed` plain paths, or a label/annotation by key
/// (`metadata.labels['app']`).
pub(super) fn object_field_selector(ctx: &mut Ctx<'_>, f: &Value, allowed: &[&str], path: &str) {
    let version = text(f, "apiVersion");
    if version.is_empty() {
        ctx.push(FieldError::required(format!("{path}.apiVersion"), ""));
        return;
    }
    let field_path = text(f, "fieldPath");
    if field_path.is_empty() {
        ctx.push(FieldError::required(format!("{path}.fieldPath"), ""));
        return;
    }
    let fpath = format!("{path}.fieldPath");
    if version != "v1" {
        ctx.push(FieldError::invalid(
            fpath,
            quote(field_path),
            format!("error converting fieldPath: unsupported pod version: {version}"),
        ));
        return;
    }
    if let Some((base, subscript)) = split_subscript(field_path) {
        match base {
            "metadata.annotations" => ctx.check_str(path, &subscript.to_lowercase(), is_qualified_name),
            "metadata.labels" => ctx.check_str(path, subscript, is_qualified_name),
            _ => ctx.push(FieldError::invalid(path, quote(base), "does not support subscript")),
        }
        return;
    }
    if !KNOWN_FIELD_PATHS.contains(&field_path) {
        ctx.push(FieldError::invalid(
            fpath,
            quote(field_path),
            format!("error converting fieldPath: field label not supported: {field_path}"),
        ));
    } else if !allowed.contains(&field_path) {
        ctx.push(FieldError::not_supported(fpath, quote(field_path), allowed));
    }
}

/// `path['key']` → (`path`, `key`).
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let (base, rest) = field_path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((base, key))
}

/// A downward API `resourceFieldRef`; volumes must also name the container.
pub(super) fn resource_field_selector(ctx: &mut Ctx<'_>, r: &Value, path: &str, volume: bool) {
    let resource = text(r, "resource");
    if volume && text(r, "containerName").is_empty() {
        ctx.push(FieldError::required(format!("{path}.containerName"), ""));
    } else if resource.is_empty() {
        ctx.push(FieldError::required(format!("{path}.resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        ctx.push(FieldError::not_supported(format!("{path}.resource"), quote(resource), RESOURCE_FIELD_PATHS));
    }
    let divisor = match r.get("divisor") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return,
    };
    if divisor == "0" || divisor.is_empty() {
        return;
    }
    let (allowed, what): (&[&str], &str) = match resource {
        "limits.cpu" | "requests.cpu" => (&["1m", "1"], "1m and 1 are supported with the cpu resource"),
        "limits.memory" | "requests.memory" => (BYTE_DIVISORS, "the memory resource"),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
            (BYTE_DIVISORS, "the local ephemeral storage resource")
        }
        r if r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-") => {
            (BYTE_DIVISORS, "the hugepages resource")
        }
        _ => return,
    };
    if !allowed.contains(&divisor.as_str()) {
        let detail = if allowed.len() == 2 {
            format!("only divisor's values {what}")
        } else {
            format!("only divisor's values {} are supported with {what}", allowed.join(", "))
        };
        ctx.push(FieldError::invalid(format!("{path}.divisor"), quote(resource), detail));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::validation::tests::check;

    fn pod(container: Value) -> Value {
        let mut c = json!({"name": "c", "image": "x"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), container.as_object()) {
            c.extend(extra.clone());
        }
        json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [c]}})
    }

    #[test]
    fn value_from_needs_exactly_one_valid_source() {
        check(
            "/v1/pods",
            pod(json!({"env": [
                {"name": "A", "valueFrom": {}},
                {"name": "B", "value": "v", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}, "secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "D", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.restartPolicy"}}},
                {"name": "E", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nope"}}},
                {"name": "F", "valueFrom": {"secretKeyRef": {"name": "Bad", "key": "a/b"}}},
                {"name": "G", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}},
                {"name": "H", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "2"}}},
                {"name": "I", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}}},
                {"name": "J", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name['x']"}}}]})),
            None,
            &[
                r#"spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
                r#"spec.containers[0].env[1].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
                r#"spec.containers[0].env[2].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
                r#"spec.containers[0].env[3].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.restartPolicy": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#,
                r#"spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Invalid value: "spec.nope": error converting fieldPath: field label not supported: spec.nope"#,
                r#"spec.containers[0].env[5].valueFrom.secretKeyRef.name: Invalid value: "Bad": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                r#"spec.containers[0].env[5].valueFrom.secretKeyRef.key: Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
                r#"spec.containers[0].env[6].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory""#,
                r#"spec.containers[0].env[7].valueFrom.resourceFieldRef.divisor: Invalid value: "limits.cpu": only divisor's values 1m and 1 are supported with the cpu resource"#,
                r#"spec.containers[0].env[9].valueFrom.fieldRef: Invalid value: "metadata.name": does not support subscript"#,
            ],
        );
    }

    #[test]
    fn env_from_names_one_source() {
        check(
            "/v1/pods",
            pod(
                json!({"envFrom": [{"prefix": "A=", "configMapRef": {"name": "m"}}, {}, {"configMapRef": {"name": "m"}, "secretRef": {"name": ""}},
                {"secretRef": {"name": "ok-prefix-"}}]}),
            ),
            None,
            &[
                r#"spec.containers[0].envFrom[0].prefix: Invalid value: "A=": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#,
                "spec.containers[0].envFrom[2].secretRef.name: Required value",
                r#"spec.containers[0].envFrom: Invalid value: "": may not have more than one field specified at a time"#,
            ],
        );
    }
}
