//! Validation of objects on create and update: the metadata rules every kind shares and
//! the per-kind rules of the important built-in kinds, with Kubernetes' messages.
//!
//! [`validate`] is the entry point; the name helpers of [`names`] are re-exported for
//! the API server.

mod cluster;
mod env;
mod names;
mod other;
mod pod;
mod scheduling;
mod storage;
mod volumes;

pub(crate) use volumes::volume_source_keys;
mod workloads;

use serde_json::{Map, Value};

pub use names::{
    QUANTITY_ERROR, go_duration, is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_path_segment_name, is_port_name, is_qualified_name, is_valid_label_value, is_valid_port,
    parse_quantity,
};

use crate::field_error::FieldError;
use crate::registry::ResourceInfo;

/// Largest total size of an object's annotations (keys and values), in bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Validates `obj` of resource `res`; `old` is the stored object on update.
/// Returns every problem found, empty when the object is valid.
pub fn validate(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_metadata(res, obj, old);
    if res.definition.is_empty() {
        return errs; // custom resources: the schema is checked elsewhere
    }
    let mut ctx = Ctx { errs: &mut errs };
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => pod::validate_pod(&mut ctx, obj, old),
        ("", "PodTemplate") => pod::validate_template(&mut ctx, obj.get("template"), "template", &[]),
        ("", "ReplicationController") | ("apps", _) | ("batch", _) => {
            workloads::validate(&mut ctx, res.kind.as_str(), obj, old)
        }
        ("", "Node") => cluster::node(&mut ctx, obj, old),
        ("", "Namespace") => cluster::namespace(&mut ctx, obj),
        ("", "Event") => cluster::event(&mut ctx, obj, old, false),
        ("events.k8s.io", "Event") => cluster::event(&mut ctx, obj, old, true),
        ("", "PersistentVolumeClaim") => storage::claim(&mut ctx, obj, old),
        ("", "PersistentVolume") => storage::volume(&mut ctx, obj, old),
        _ => other::validate(&mut ctx, res, obj, old),
    }
    errs
}

/// Validates a write to the `status` subresource: metadata must not change identity.
pub fn validate_status_update(res: &ResourceInfo, obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_metadata(res, obj, Some(old));
    if res.group.is_empty() && res.kind == "Node" {
        cluster::node_status(&mut Ctx { errs: &mut errs }, obj);
    }
    errs
}

/// Validates a write to a Pod's `ephemeralcontainers` subresource (Kubernetes'
/// ValidatePodEphemeralContainersUpdate): metadata as on any update, the whole spec with its
/// new ephemeral containers, and no existing ephemeral container removed or changed.
pub fn validate_ephemeral_containers_update(res: &ResourceInfo, obj: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate_metadata(res, obj, Some(old));
    let mut ctx = Ctx { errs: &mut errs };
    pod::validate_pod_spec(&mut ctx, obj.get("spec").unwrap_or(&Value::Null), "spec", &[]);
    pod::validate_ephemeral_update(&mut ctx, obj, old);
    errs
}

/// The name rule of a kind: which syntax `metadata.name` must follow.
fn name_rule(res: &ResourceInfo) -> fn(&str) -> Vec<String> {
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Namespace") => is_dns1123_label,
        ("", "Service") => is_dns1035_label,
        ("rbac.authorization.k8s.io", _) | ("", "PersistentVolume") | ("autoscaling", _) => is_path_segment_name,
        _ if res.definition.is_empty() => is_dns1123_subdomain,
        _ => is_dns1123_subdomain,
    }
}

/// Renders a JSON value as Kubernetes renders values in field errors.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

/// A Go-style quoted string.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Renders a string map the way Go prints `map[string]string`.
pub(crate) fn show_string_map(m: Option<&Map<String, Value>>) -> String {
    let mut keys: Vec<(&String, &Value)> = m.map(|m| m.iter().collect()).unwrap_or_default();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let items: Vec<String> =
        keys.iter().map(|(k, v)| format!("{}:{}", quote(k), quote(v.as_str().unwrap_or_default()))).collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// "Duplicate value" at `field`, showing the quoted `value`.
pub(crate) fn duplicate(field: impl Into<String>, value: &str) -> FieldError {
    FieldError {
        value: Some(quote(value)),
        ..FieldError::new(crate::field_error::FieldErrorKind::Duplicate, field, "")
    }
}

/// Collects errors while walking an object.
pub(crate) struct Ctx<'a> {
    pub(crate) errs: &'a mut Vec<FieldError>,
}

impl Ctx<'_> {
    pub(crate) fn push(&mut self, e: FieldError) {
        self.errs.push(e);
    }

    /// One Invalid error per problem `check` reports for `value` at `field`.
    pub(crate) fn check_str(&mut self, field: &str, value: &str, check: fn(&str) -> Vec<String>) {
        for msg in check(value) {
            self.push(FieldError::invalid(field, quote(value), msg));
        }
    }

    /// `field` must be a non-negative integer when present.
    pub(crate) fn non_negative(&mut self, obj: &Value, key: &str, field: &str) {
        if let Some(n) = obj.get(key).and_then(Value::as_i64)
            && n < 0
        {
            self.push(FieldError::invalid(field, n, "must be greater than or equal to 0"));
        }
    }

    /// `value` (when present) must be one of `supported`.
    pub(crate) fn one_of(&mut self, field: &str, value: Option<&Value>, supported: &[&str]) {
        if let Some(v) = value.and_then(Value::as_str)
            && !supported.contains(&v)
        {
            self.push(FieldError::not_supported(field, quote(v), supported));
        }
    }

    /// Labels: keys qualified names, values label values.
    pub(crate) fn labels(&mut self, labels: Option<&Value>, field: &str) {
        let Some(map) = labels.and_then(Value::as_object) else {
            return;
        };
        for (k, v) in map {
            for msg in is_qualified_name(k) {
                self.push(FieldError::invalid(field, quote(k), msg));
            }
            let v = v.as_str().unwrap_or_default();
            for msg in is_valid_label_value(v) {
                self.push(FieldError::invalid(format!("{field}[{k}]"), quote(v), msg));
            }
        }
    }

    /// `field` of `new` may not differ from `old`.
    pub(crate) fn immutable(&mut self, new: Option<&Value>, old: Option<&Value>, field: &str) {
        if new != old {
            self.push(FieldError::invalid(field, show(new.unwrap_or(&Value::Null)), "field is immutable"));
        }
    }
}

/// `metadata.ownerReferences`: apiVersion, kind, name and uid required, at most one controller.
fn owner_references(ctx: &mut Ctx<'_>, refs: Option<&Value>) {
    let Some(refs) = refs.and_then(Value::as_array) else { return };
    let mut controllers = 0;
    for (i, r) in refs.iter().enumerate() {
        let field = format!("metadata.ownerReferences[{i}]");
        for key in ["apiVersion", "kind", "name", "uid"] {
            if r.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                ctx.push(FieldError::required(format!("{field}.{key}"), ""));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        ctx.push(FieldError::invalid(
            "metadata.ownerReferences",
            format!("{controllers} controllers"),
            "Only one reference can have Controller set to true",
        ));
    }
}

/// The metadata rules every kind shares (name, generateName, namespace, labels, annotations, immutable fields on update).
pub fn validate_metadata(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut ctx = Ctx { errs: &mut errs };
    let empty = Value::Null;
    let meta = obj.get("metadata").unwrap_or(&empty);
    let text = |key: &str| meta.get(key).and_then(Value::as_str).unwrap_or_default();
    let name = text("name");
    let generate_name = text("generateName");
    let rule = name_rule(res);
    if !generate_name.is_empty() {
        // a prefix may end with '-': check it as if the last dash were a letter
        let masked = match generate_name.strip_suffix('-') {
            Some(rest) => format!("{rest}a"),
            None => generate_name.to_string(),
        };
        for msg in rule(&masked) {
            ctx.push(FieldError::invalid("metadata.generateName", quote(generate_name), msg));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            ctx.push(FieldError::required("metadata.name", "name or generateName is required"));
        }
    } else {
        for msg in rule(name) {
            ctx.push(FieldError::invalid("metadata.name", quote(name), msg));
        }
    }
    let namespace = text("namespace");
    if res.namespaced {
        if namespace.is_empty() {
            ctx.push(FieldError::required("metadata.namespace", ""));
        } else {
            ctx.check_str("metadata.namespace", namespace, is_dns1123_label);
        }
    } else if !namespace.is_empty() {
        ctx.push(FieldError::forbidden("metadata.namespace", "not allowed on this type"));
    }
    ctx.labels(meta.get("labels"), "metadata.labels");
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            for msg in is_qualified_name(&k.to_ascii_lowercase()) {
                ctx.push(FieldError::invalid("metadata.annotations", quote(k), msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            ctx.push(FieldError::new(
                crate::field_error::FieldErrorKind::TooLong,
                "metadata.annotations",
                format!("must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            ));
        }
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, f) in finalizers.iter().enumerate() {
            let f = f.as_str().unwrap_or_default();
            for msg in is_qualified_name(f) {
                ctx.push(FieldError::invalid(format!("metadata.finalizers[{i}]"), quote(f), msg));
            }
        }
    }
    owner_references(&mut ctx, meta.get("ownerReferences"));
    if let Some(old) = old {
        let old_meta = old.get("metadata").unwrap_or(&empty);
        for key in ["name", "namespace", "uid", "creationTimestamp"] {
            let (new_v, old_v) = (meta.get(key), old_meta.get(key));
            // an empty value on update means "keep"; only a different non-empty value is a change
            let is_set = |v: Option<&Value>| v.is_some_and(|v| !v.is_null() && v != "");
            if is_set(new_v) && is_set(old_v) && new_v != old_v {
                ctx.immutable(new_v, old_v, &format!("metadata.{key}"));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::registry::find_builtin;

    /// Validates `obj` as `group/version/plural` and compares the rendered errors.
    pub(crate) fn check(gvr: &str, obj: Value, old: Option<Value>, expected: &[&str]) {
        let parts: Vec<&str> = gvr.split('/').collect();
        let res = find_builtin(parts[0], parts[1], parts[2]).expect("resource");
        let errs: Vec<String> = validate(res, &obj, old.as_ref()).iter().map(ToString::to_string).collect();
        assert_eq!(errs, expected, "{obj}");
    }

    #[test]
    fn owner_references() {
        let owner = |name: &str, controller: bool| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u-1", "controller": controller});
        let cm = |refs: Value| json!({"metadata": {"name": "c", "namespace": "default", "ownerReferences": refs}});
        check("/v1/configmaps", cm(json!([owner("a", true), owner("b", false)])), None, &[]);
        check(
            "/v1/configmaps",
            cm(json!([owner("a", true), owner("b", true)])),
            None,
            &[
                "metadata.ownerReferences: Invalid value: 2 controllers: Only one reference can have Controller set to true",
            ],
        );
        check(
            "/v1/configmaps",
            cm(json!([{"apiVersion": "v1", "kind": "Pod", "name": "p"}])),
            None,
            &["metadata.ownerReferences[0].uid: Required value"],
        );
    }

    #[test]
    fn metadata_names() {
        check("/v1/configmaps", json!({"metadata": {"name": "a.b-c", "namespace": "default"}}), None, &[]);
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "Foo_bar", "namespace": "default"}}),
            None,
            &[
                r#"metadata.name: Invalid value: "Foo_bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
            ],
        );
        check(
            "/v1/configmaps",
            json!({"metadata": {"namespace": "default"}}),
            None,
            &["metadata.name: Required value: name or generateName is required"],
        );
        check("/v1/configmaps", json!({"metadata": {"generateName": "web-", "namespace": "d"}}), None, &[]);
        assert_eq!(
            errors("/v1/configmaps", json!({"metadata": {"generateName": "Web-", "namespace": "d"}})),
            ["metadata.generateName"]
        );
        assert_eq!(errors("/v1/namespaces", json!({"metadata": {"name": "a.b"}})), ["metadata.name"]);
        assert_eq!(
            errors(
                "/v1/services",
                json!({"metadata": {"name": "1a", "namespace": "d"}, "spec": {"clusterIP": "None"}})
            ),
            ["metadata.name"]
        );
        check("rbac.authorization.k8s.io/v1/clusterroles", json!({"metadata": {"name": "system:Admin"}}), None, &[]);
        check(
            "rbac.authorization.k8s.io/v1/clusterroles",
            json!({"metadata": {"name": "a/b"}}),
            None,
            &[r#"metadata.name: Invalid value: "a/b": may not contain '/'"#],
        );
    }

    fn errors(gvr: &str, obj: Value) -> Vec<String> {
        let parts: Vec<&str> = gvr.split('/').collect();
        let res = find_builtin(parts[0], parts[1], parts[2]).expect("resource");
        validate(res, &obj, None).into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn metadata_namespace_labels_annotations() {
        check("/v1/configmaps", json!({"metadata": {"name": "a"}}), None, &["metadata.namespace: Required value"]);
        check(
            "/v1/namespaces",
            json!({"metadata": {"name": "a", "namespace": "b"}}),
            None,
            &["metadata.namespace: Forbidden: not allowed on this type"],
        );
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "a", "namespace": "d", "labels": {"app": "a b"}}}),
            None,
            &[
                r#"metadata.labels[app]: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
            ],
        );
        assert_eq!(
            errors("/v1/configmaps", json!({"metadata": {"name": "a", "namespace": "d", "labels": {"-x": "1"}}})),
            ["metadata.labels"]
        );
        assert_eq!(
            errors(
                "/v1/configmaps",
                json!({"metadata": {"name": "a", "namespace": "d", "annotations": {"a/b/c": "1"}}})
            ),
            ["metadata.annotations"]
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "a", "namespace": "d", "annotations": {"k": big}}}),
            None,
            &["metadata.annotations: Too long: must have at most 262144 bytes"],
        );
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "a", "namespace": "d", "annotations": {"Ok.Key": "anything at all"}}}),
            None,
            &[],
        );
        assert_eq!(errors("/v1/configmaps", json!("not an object")), ["metadata.name", "metadata.namespace"]);
    }

    #[test]
    fn metadata_immutable_on_update() {
        let old = json!({"metadata": {"name": "a", "namespace": "d", "uid": "u1", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        check("/v1/configmaps", old.clone(), Some(old.clone()), &[]);
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "a", "namespace": "d", "uid": "u2"}}),
            Some(old.clone()),
            &[r#"metadata.uid: Invalid value: "u2": field is immutable"#],
        );
        check(
            "/v1/configmaps",
            json!({"metadata": {"name": "b", "namespace": "d"}}),
            Some(old),
            &[r#"metadata.name: Invalid value: "b": field is immutable"#],
        );
    }

    #[test]
    fn rendering() {
        assert_eq!(show(&json!("a")), "\"a\"");
        assert_eq!(show(&json!(3)), "3");
        assert_eq!(show_string_map(json!({"b": "2", "a": "1"}).as_object()), r#"map[string]string{"a":"1", "b":"2"}"#);
        assert_eq!(show_string_map(None), "map[string]string{}");
    }
}
