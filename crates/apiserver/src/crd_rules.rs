//! CRD validation rules: the CEL expressions of `x-kubernetes-validations` at any node of a
//! custom resource's schema, evaluated as the apiextensions apiserver does — `self` is the
//! value at that node (at the root, the object with `metadata.name` and `generateName`
//! only), `oldSelf` the correlated stored value on updates (a rule naming it, a transition
//! rule, is skipped when there is none: creates, items of atomic lists, new map keys);
//! `message`, `messageExpression`, `reason` and `fieldPath` shape the field error. As
//! Kubernetes' validation ratcheting, a rule without `oldSelf` is not evaluated on a value
//! the update leaves unchanged. Rules are compiled once per source text and checked when
//! the CRD is written.
//!
//! Not here: `optionalOldSelf` (such rules are skipped on creates, as without it),
//! Kubernetes' CEL libraries (quantity, url, ip, format, ...: the same standard library
//! with strings/lists/math extensions as ValidatingAdmissionPolicy), the per-request total
//! cost budget (each expression has the per-call limit) and the static cost estimate.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use berth_api::schema::Node;
use berth_api::{FieldError, FieldErrorKind};
use serde_json::{Map, Value};

use crate::admission_policy::{ENV, Expr, cost, to_val};

/// The variables a rule may name.
const VARIABLES: &[&str] = &["self", "oldSelf"];

/// The `reason`s a rule may give.
const REASONS: &[&str] = &["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];

/// Compiled rules and message expressions by source text (cleared when it grows large).
static COMPILED: LazyLock<Mutex<HashMap<String, Arc<Expr>>>> = LazyLock::new(Default::default);

fn compiled(source: &str) -> Arc<Expr> {
    let mut map = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(expr) = map.get(source) {
        return expr.clone();
    }
    if map.len() >= 4096 {
        map.clear();
    }
    let expr = Arc::new(Expr::compile_with(source, VARIABLES));
    map.insert(source.to_string(), expr.clone());
    expr
}

/// The errors of the rules of `schema` (a version's `openAPIV3Schema`) on the custom
/// resource `obj`; `old` is the stored object on updates.
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !has_rules(schema) {
        return Vec::new();
    }
    let (root, old_root) = (root_view(obj), old.map(root_view));
    let mut out = Vec::new();
    walk(Node::new(schema), &root, old_root.as_ref(), "", &mut out);
    out
}

/// Whether any node of `schema` carries rules (most CRDs have none: skip the walk).
fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.contains_key("x-kubernetes-validations") || map.values().any(has_rules),
        Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

/// The object as the root's `self` sees it: of its metadata only `name` and `generateName`.
fn root_view(obj: &Value) -> Value {
    let mut view = obj.clone();
    if let Some(meta) = view.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| k == "name" || k == "generateName");
    }
    view
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk(node: Node<'_>, value: &Value, old: Option<&Value>, path: &str, out: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    if let Some(rules) = node.raw().get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            check_rule(node, rule, value, old, path, out);
        }
    }
    match value {
        Value::Object(map) => {
            let additional = node.additional_properties();
            for (key, v) in map {
                let old_v = old.and_then(|o| o.get(key));
                if let Some(p) = node.property(key) {
                    walk(p, v, old_v, &child(path, key), out);
                } else if let Some(a) = additional {
                    walk(a, v, old_v, &format!("{path}[{key}]"), out);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_node) = node.items() else { return };
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = old_items.and_then(|olds| correlated(node, item, olds));
                walk(item_node, item, old_item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The stored item an item of a list corresponds to: the one with the same keys in a
/// `map` list, the equal one in a `set`; none in an atomic list.
fn correlated<'v>(list: Node<'_>, item: &Value, olds: &'v [Value]) -> Option<&'v Value> {
    match list.list_type() {
        Some("map") => {
            let keys = list.list_map_keys();
            let key_of = |v: &Value| keys.iter().map(|k| v.get(*k).cloned()).collect::<Vec<_>>();
            let wanted = key_of(item);
            olds.iter().find(|o| key_of(o) == wanted)
        }
        Some("set") => olds.iter().find(|o| *o == item),
        _ => None,
    }
}

/// A rule's verdict on `value` at `path`, appended to `out` when it fails.
fn check_rule(node: Node<'_>, rule: &Value, value: &Value, old: Option<&Value>, path: &str, out: &mut Vec<FieldError>) {
    let Some(source) = rule.get("rule").and_then(Value::as_str) else { return };
    let expr = compiled(source);
    let transition = expr.uses("oldSelf");
    // A transition rule needs a stored value; any other rule is ratcheted: a value the
    // update does not change is not judged again.
    if (transition && old.is_none()) || (!transition && old == Some(value)) {
        return;
    }
    let ty = node.type_name().unwrap_or("object");
    let (self_val, old_val) = (to_val(value), old.map(to_val));
    let mut cx = cel::Context::with_env(ENV.clone());
    cx.add_variable_as_val("self", self_val);
    if let Some(old_val) = old_val {
        cx.add_variable_as_val("oldSelf", old_val);
    }
    let budget = cost::Budget::new(cost::PER_EXPRESSION_LIMIT);
    cost::bind(&mut cx, budget.clone());
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(relative) if !relative.is_empty() => join_field_path(path, relative),
        _ => path.to_string(),
    };
    // The root's path prints as Kubernetes prints a nil field path.
    let field = if field.is_empty() { "<nil>".to_string() } else { field };
    let detail = match expr.eval(&cx, &budget) {
        Ok(cel::Value::Bool(true)) => return,
        Ok(cel::Value::Bool(false)) => failure_message(rule, source, &cx, &budget),
        Ok(_) => format!("rule did not evaluate to a bool: {}", default_message(source)),
        Err(e) if e == cost::EXCEEDED => "rule evaluation cost exceeded budget".to_string(),
        Err(e) => e,
    };
    let shown = format!("\"{ty}\"");
    out.push(match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => FieldError::forbidden(field, detail),
        Some("FieldValueRequired") => FieldError::required(field, detail),
        Some("FieldValueDuplicate") => {
            FieldError { value: Some(shown), ..FieldError::new(FieldErrorKind::Duplicate, field, "") }
        }
        _ => FieldError::invalid(field, shown, detail),
    });
}

fn default_message(source: &str) -> String {
    format!("failed rule: {}", source.trim())
}

/// `messageExpression`'s string when it gives a usable one, else `message`, else
/// "failed rule: RULE".
fn failure_message(rule: &Value, source: &str, cx: &cel::Context<'_, '_>, budget: &cost::Budget) -> String {
    if let Some(message_expression) = rule.get("messageExpression").and_then(Value::as_str)
        && let Ok(cel::Value::String(s)) = compiled(message_expression).eval(cx, budget)
        && !s.trim().is_empty()
        && !s.contains('\n')
    {
        return s.trim().to_string();
    }
    match rule.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => default_message(source),
    }
}

/// `path` followed by a rule's relative `fieldPath` (`.spec.x`, `.map['a.b']`), as a
/// field path is printed (`spec.x`, `map[a.b]`).
fn join_field_path(path: &str, relative: &str) -> String {
    let mut out = path.to_string();
    let mut rest = relative;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            out.push_str(&format!("[{}]", &r[..end]));
            rest = r.get(end + 2..).unwrap_or("");
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out = child(&out, &r[..end]);
            rest = &r[end..];
        }
    }
    out
}

/// The errors of a CustomResourceDefinition's rules: each `rule` and `messageExpression`
/// must compile, `reason` be one Kubernetes knows, and a `message` have no line breaks.
pub fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (i, version) in versions.iter().enumerate() {
        if let Some(schema) = version.pointer("/schema/openAPIV3Schema") {
            check_schema_rules(schema, &format!("spec.versions[{i}].schema.openAPIV3Schema"), &mut out);
        }
    }
    out
}

fn check_schema_rules(schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(map) = schema.as_object() else { return };
    if let Some(rules) = map.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, rule) in rules.iter().enumerate() {
            check_rule_definition(rule, &format!("{path}.x-kubernetes-validations[{i}]"), out);
        }
    }
    let nested = |key: &str| map.get(key).and_then(Value::as_object);
    for (name, prop) in nested("properties").into_iter().flat_map(Map::iter) {
        check_schema_rules(prop, &format!("{path}.properties[{name}]"), out);
    }
    if let Some(items) = map.get("items") {
        check_schema_rules(items, &format!("{path}.items"), out);
    }
    if let Some(additional) = map.get("additionalProperties") {
        check_schema_rules(additional, &format!("{path}.additionalProperties"), out);
    }
}

fn check_rule_definition(rule: &Value, path: &str, out: &mut Vec<FieldError>) {
    match rule.get("rule").and_then(Value::as_str) {
        None | Some("") => out.push(FieldError::required(format!("{path}.rule"), "")),
        Some(source) => {
            if let Some(e) = compiled(source).error() {
                out.push(FieldError::invalid(format!("{path}.rule"), quoted(source), e.to_string()));
            }
        }
    }
    if let Some(source) = rule.get("messageExpression").and_then(Value::as_str)
        && let Some(e) = compiled(source).error()
    {
        out.push(FieldError::invalid(format!("{path}.messageExpression"), quoted(source), e.to_string()));
    }
    if let Some(message) = rule.get("message").and_then(Value::as_str)
        && message.contains('\n')
    {
        out.push(FieldError::invalid(
            format!("{path}.message"),
            quoted(message),
            "message must not contain line breaks",
        ));
    }
    if let Some(reason) = rule.get("reason").and_then(Value::as_str)
        && !REASONS.contains(&reason)
    {
        out.push(FieldError::not_supported(format!("{path}.reason"), quoted(reason), REASONS));
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests;
