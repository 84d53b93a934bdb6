//! The `authorizer` variable of policy expressions: Kubernetes' CEL authz library, answered by
//! berth's own authorizer (the Node authorizer and RBAC, as configured) for the user who
//! sends the request.
//!
//! - `authorizer.group(g).resource(r)` with `.subresource(s)`, `.namespace(ns)`, `.name(n)`,
//!   then `.check(verb)`; `authorizer.path(p).check(verb)` for non-resource paths;
//! - `authorizer.serviceAccount(ns, name)`: the same checks for that ServiceAccount;
//! - `authorizer.requestResource`: the request's own group, resource, subresource, namespace
//!   and name, to `.check(verb)` with another verb;
//! - a decision's `.allowed()`, `.reason()`, `.errored()` and `.error()`.
//!
//! The checks are CEL maps tagged with their kind under `@kind` (what Kubernetes declares as
//! the `kubernetes.authorization.*` types); the identity stays on the server: a map names a
//! ServiceAccount at most (as `authorizer.serviceAccount` would), never a user.

use std::collections::HashMap;
use std::sync::Arc;

use cel::ExecutionError;
use cel::extractors::This;
use cel::objects::{Key, Map as ValueMap};

use crate::authn::UserInfo;
use crate::authz::node::Decision;
use crate::authz::{Attributes, Authorizer};

const KIND: &str = "@kind";
const SERVICE_ACCOUNT: &str = "@serviceAccount";

/// The request's resource, what `authorizer.requestResource` checks.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestResource {
    pub(super) group: String,
    pub(super) resource: String,
    pub(super) subresource: String,
    pub(super) namespace: String,
    pub(super) name: String,
}

/// The `authorizer` variable's value for a request on `request`.
pub(super) fn variable(request: &RequestResource) -> cel::Value {
    let check = map(vec![
        (KIND, string("ResourceCheck")),
        ("group", string(&request.group)),
        ("resource", string(&request.resource)),
        ("subresource", string(&request.subresource)),
        ("namespace", string(&request.namespace)),
        ("name", string(&request.name)),
    ]);
    map(vec![(KIND, string("Authorizer")), ("requestResource", check)])
}

/// Registers the library's functions on the root context `cx`: checks are answered by
/// `authorizer` for `user` (or the ServiceAccount a check names).
pub(super) fn bind(cx: &mut cel::Context<'_, '_>, authorizer: Arc<Authorizer>, user: UserInfo) {
    let add = |name: &str, result: Result<(), cel::DeclarationError>| {
        if let Err(e) = result {
            tracing::error!(function = name, error = %e, "the CEL authz library could not be declared");
        }
    };
    add(
        "serviceAccount",
        cx.add_function("serviceAccount", |This(this): This<cel::Value>, namespace: Arc<String>, name: Arc<String>| {
            expect(&this, "Authorizer", "serviceAccount")?;
            let user = format!("system:serviceaccount:{namespace}:{name}");
            Ok::<_, ExecutionError>(map(vec![(KIND, string("Authorizer")), (SERVICE_ACCOUNT, string(&user))]))
        }),
    );
    add(
        "group",
        cx.add_function("group", |This(this): This<cel::Value>, group: Arc<String>| {
            let from = expect(&this, "Authorizer", "group")?;
            Ok::<_, ExecutionError>(with(from, "GroupCheck", "group", &group))
        }),
    );
    add(
        "path",
        cx.add_function("path", |This(this): This<cel::Value>, path: Arc<String>| {
            let from = expect(&this, "Authorizer", "path")?;
            Ok::<_, ExecutionError>(with(from, "PathCheck", "path", &path))
        }),
    );
    add(
        "resource",
        cx.add_function("resource", |This(this): This<cel::Value>, resource: Arc<String>| {
            let from = expect(&this, "GroupCheck", "resource")?;
            Ok::<_, ExecutionError>(with(from, "ResourceCheck", "resource", &resource))
        }),
    );
    for field in ["subresource", "namespace", "name"] {
        add(
            field,
            cx.add_function(field, move |This(this): This<cel::Value>, value: Arc<String>| {
                let from = expect(&this, "ResourceCheck", field)?;
                Ok::<_, ExecutionError>(with(from, "ResourceCheck", field, &value))
            }),
        );
    }
    add(
        "check",
        cx.add_function("check", move |This(this): This<cel::Value>, verb: Arc<String>| {
            let cel::Value::Map(m) = &this else { return Err(wrong("check", &this)) };
            let text = |k: &str| match get(m, k) {
                Some(cel::Value::String(s)) => s.as_str().to_string(),
                _ => String::new(),
            };
            let who = match get(m, SERVICE_ACCOUNT) {
                Some(cel::Value::String(sa)) => service_account_user(sa),
                _ => user.clone(),
            };
            let attrs = match text(KIND).as_str() {
                "ResourceCheck" => Attributes::resource(
                    who,
                    &verb,
                    &text("group"),
                    &text("resource"),
                    &text("subresource"),
                    &text("namespace"),
                    &text("name"),
                ),
                "PathCheck" => Attributes::non_resource(who, &verb, &text("path")),
                _ => return Err(wrong("check", &this)),
            };
            let (allowed, reason) = match authorizer.decide(&attrs) {
                Decision::Allow => (true, String::new()),
                Decision::NoOpinion(reason) => (false, reason),
            };
            Ok(map(vec![
                (KIND, string("Decision")),
                ("allowed", cel::Value::Bool(allowed)),
                ("reason", string(&reason)),
            ]))
        }),
    );
    add(
        "allowed",
        cx.add_function("allowed", |This(this): This<cel::Value>| {
            let d = expect(&this, "Decision", "allowed")?;
            Ok::<_, ExecutionError>(get(d, "allowed").cloned().unwrap_or(cel::Value::Bool(false)))
        }),
    );
    add(
        "reason",
        cx.add_function("reason", |This(this): This<cel::Value>| {
            let d = expect(&this, "Decision", "reason")?;
            Ok::<_, ExecutionError>(get(d, "reason").cloned().unwrap_or_else(|| string("")))
        }),
    );
    // berth's authorizer answers from memory: a check never fails to evaluate.
    add(
        "errored",
        cx.add_function("errored", |This(this): This<cel::Value>| {
            expect(&this, "Decision", "errored")?;
            Ok::<_, ExecutionError>(cel::Value::Bool(false))
        }),
    );
    add(
        "error",
        cx.add_function("error", |This(this): This<cel::Value>| {
            expect(&this, "Decision", "error")?;
            Ok::<_, ExecutionError>(string(""))
        }),
    );
}

/// The user of `system:serviceaccount:NS:NAME`, in its groups.
fn service_account_user(name: &str) -> UserInfo {
    let namespace = name.strip_prefix("system:serviceaccount:").and_then(|r| r.split(':').next()).unwrap_or("");
    UserInfo::new(
        name.to_string(),
        ["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{namespace}")],
    )
}

fn key(k: &str) -> Key {
    Key::String(Arc::new(k.to_string()))
}

fn string(s: &str) -> cel::Value {
    cel::Value::String(Arc::new(s.to_string()))
}

fn map(entries: Vec<(&str, cel::Value)>) -> cel::Value {
    cel::Value::Map(ValueMap { map: Arc::new(entries.into_iter().map(|(k, v)| (key(k), v)).collect()) })
}

fn get<'m>(m: &'m ValueMap, k: &str) -> Option<&'m cel::Value> {
    m.map.get(&key(k))
}

/// `value` if it is a check of `kind`, else the error of calling `function` on it.
fn expect<'v>(value: &'v cel::Value, kind: &str, function: &str) -> Result<&'v ValueMap, ExecutionError> {
    match value {
        cel::Value::Map(m) if matches!(get(m, KIND), Some(cel::Value::String(k)) if k.as_str() == kind) => Ok(m),
        _ => Err(wrong(function, value)),
    }
}

fn wrong(function: &str, value: &cel::Value) -> ExecutionError {
    let kind = match value {
        cel::Value::Map(m) => match get(m, KIND) {
            Some(cel::Value::String(k)) => k.as_str().to_string(),
            _ => "map".to_string(),
        },
        other => other.type_of().to_string(),
    };
    ExecutionError::function_error(function, format!("no such overload for {kind}"))
}

/// The check `from` (its fields and ServiceAccount kept) as a `kind` with `field` set.
fn with(from: &ValueMap, kind: &str, field: &str, value: &str) -> cel::Value {
    let mut entries: HashMap<Key, cel::Value> = (*from.map).clone();
    entries.insert(key(KIND), string(kind));
    entries.insert(key(field), string(value));
    entries.remove(&key("requestResource"));
    cel::Value::Map(ValueMap { map: Arc::new(entries) })
}
