//! ValidatingAdmissionPolicy: admissionregistration.k8s.io/v1 policies whose CEL
//! expressions validate writes in the API server, with no webhook to call.
//!
//! [`Policies`] keeps one immutable [`Snapshot`] of every binding joined with its policy,
//! rebuilt from the watch cache (never the store) after each batch of events, as the
//! webhooks and the RBAC policy are; a policy's expressions are compiled once per
//! uid+generation and kept across rebuilds. The write path calls [`validate`] after the
//! mutating admission and the webhooks' mutation (beside the validating webhooks): for
//! each binding whose policy and `matchResources` match the request (rules, excluded
//! rules, namespace and object selectors), and for each param the binding's `paramRef`
//! selects (a ConfigMap, a custom resource...), it evaluates `matchConditions`, then
//! `variables` and each validation with `object`, `oldObject`, `request`, `params`,
//! `namespaceObject` and `variables`. A false validation is enforced per the binding's
//! `validationActions`: Deny (Kubernetes' `ValidatingAdmissionPolicy 'p' with binding 'b'
//! denied request: ...`, 422 Invalid unless the validation names another `reason`), Warn
//! (a `Warning` header) and Audit (the audit annotation
//! `validation.policy.admission.k8s.io/validation_failure`). An expression that fails to
//! evaluate, or a binding whose params cannot be found, follows the policy's
//! `failurePolicy`, and so does an expression that passes its cost budget ([`cost`]). The
//! `authorizer` variable is Kubernetes' authz library on berth's authorizer ([`authorizer`]).
//! Not done: the type checker (expressions are parsed, not type-checked, on write) and
//! Kubernetes' quantity/url/ip/semver CEL libraries.

mod authorizer;
pub(crate) mod cost;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use berth_api::selectors::LabelSelector;
use berth_api::{FieldError, ResourceInfo};
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::Val;
use cel::objects::{Key, Map as ValueMap};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

/// Store prefix of the policies.
pub const POLICIES: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/";
/// Store prefix of the bindings.
pub const BINDINGS: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/";
/// The prefix both live under.
const PREFIX: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolic";

/// The audit annotation of failed validations bound with `Audit`.
pub const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";

/// The variables an expression may name.
const VARIABLES: &[&str] = &["object", "oldObject", "request", "params", "namespaceObject", "variables", "authorizer"];

/// The CEL environment: the standard library with the strings, lists and math extensions
/// (Kubernetes' quantity, url, ip, semver and authz libraries are not there).
pub(crate) static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    // The extensions register fixed overloads; a failure here is a bug caught by the tests.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    let _ = env.add_extension(cel::extensions::math);
    Arc::new(env)
});

/// One compiled CEL expression.
pub struct Expr {
    /// The source text.
    pub source: String,
    program: Result<cel::Program, String>,
    /// The program's expression with its comprehensions metered ([`cost::meter`]): what
    /// is evaluated.
    metered: Option<cel::common::ast::IdedExpr>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr").field("source", &self.source).finish()
    }
}

impl Expr {
    /// Parses `source` (the error is Kubernetes' `compilation failed: ...` text).
    pub fn compile(source: &str) -> Expr {
        Expr::compile_with(source, VARIABLES)
    }

    /// Parses `source`, whose free identifiers must be among `variables`.
    pub(crate) fn compile_with(source: &str, variables: &[&str]) -> Expr {
        let program =
            ENV.compile(source).map_err(|e| format!("compilation failed: {e}")).and_then(|p| {
                match undeclared(p.expression(), variables, &mut Vec::new()) {
                    Some(v) => Err(format!("compilation failed: ERROR: <input>:1:1: undeclared reference to '{v}'")),
                    None => Ok(p),
                }
            });
        let metered = program.as_ref().ok().map(|p| cost::meter(p.expression()));
        Expr { source: source.to_string(), program, metered }
    }

    /// Whether the expression names the variable `name`.
    pub(crate) fn uses(&self, name: &str) -> bool {
        self.program.as_ref().is_ok_and(|p| p.references().has_variable(name))
    }

    /// The compile error, if any.
    pub fn error(&self) -> Option<&str> {
        self.program.as_ref().err().map(String::as_str)
    }

    /// Evaluates the expression in `ctx`, whose cost function charges `budget` (given in
    /// full to each expression, as Kubernetes' per-call limit).
    pub(crate) fn eval(&self, ctx: &cel::Context<'_, '_>, budget: &cost::Budget) -> Result<cel::Value, String> {
        let program = self.program.as_ref().map_err(Clone::clone)?;
        budget.reset();
        let result = match &self.metered {
            Some(metered) => ctx.resolve(metered),
            None => program.execute(ctx),
        };
        if budget.exceeded() {
            return Err(cost::EXCEEDED.to_string());
        }
        result.map_err(|e| e.to_string())
    }
}

/// Type names an expression may use as identifiers (`type(x) == int`).
const TYPE_NAMES: &[&str] =
    &["int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type", "dyn"];

/// The first identifier of `e` that is neither one of `variables` nor bound by an
/// enclosing comprehension (`list.all(x, ...)` binds `x`).
fn undeclared<'e>(e: &'e cel::common::ast::IdedExpr, variables: &[&str], bound: &mut Vec<&'e str>) -> Option<&'e str> {
    use cel::common::ast::{EntryExpr, Expr as E};
    match &e.expr {
        E::Ident(name) => {
            let known = name.starts_with('@')
                || variables.contains(&name.as_str())
                || TYPE_NAMES.contains(&name.as_str())
                || bound.contains(&name.as_str());
            (!known).then_some(name.as_str())
        }
        E::Call(call) => {
            call.target.iter().map(|t| &**t).chain(call.args.iter()).find_map(|a| undeclared(a, variables, bound))
        }
        E::Comprehension(c) => {
            if let Some(v) =
                undeclared(&c.iter_range, variables, bound).or_else(|| undeclared(&c.accu_init, variables, bound))
            {
                return Some(v);
            }
            let depth = bound.len();
            bound.push(&c.iter_var);
            bound.extend(c.iter_var2.as_deref());
            bound.push(&c.accu_var);
            let found =
                [&c.loop_cond, &c.loop_step, &c.result].into_iter().find_map(|x| undeclared(x, variables, bound));
            bound.truncate(depth);
            found
        }
        E::List(list) => list.elements.iter().find_map(|x| undeclared(x, variables, bound)),
        E::Map(map) => map.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::StructField(f) => undeclared(&f.value, variables, bound),
            EntryExpr::MapEntry(m) => {
                undeclared(&m.key, variables, bound).or_else(|| undeclared(&m.value, variables, bound))
            }
        }),
        E::Struct(st) => st.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::StructField(f) => undeclared(&f.value, variables, bound),
            EntryExpr::MapEntry(m) => {
                undeclared(&m.key, variables, bound).or_else(|| undeclared(&m.value, variables, bound))
            }
        }),
        E::Select(select) => undeclared(&select.operand, variables, bound),
        E::Literal(_) | E::Unspecified => None,
    }
}

/// One `NamedRuleWithOperations`.
#[derive(Debug, Clone, Default)]
struct Rule {
    operations: Vec<String>,
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    scope: String,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What a request is about, for matching.
#[derive(Debug, Clone)]
struct Target {
    operation: &'static str,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    namespaced: bool,
    name: String,
}

impl Rule {
    fn from_value(v: &Value) -> Rule {
        Rule {
            operations: strings(v.get("operations")),
            api_groups: strings(v.get("apiGroups")),
            api_versions: strings(v.get("apiVersions")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            scope: v.get("scope").and_then(Value::as_str).unwrap_or("*").to_string(),
        }
    }

    fn matches(&self, t: &Target, any_version: bool) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if !has(&self.operations, t.operation) || !has(&self.api_groups, &t.group) {
            return false;
        }
        if !any_version && !has(&self.api_versions, &t.version) {
            return false;
        }
        if !self.resource_names.is_empty() && !self.resource_names.contains(&t.name) {
            return false;
        }
        let scope_ok = match self.scope.as_str() {
            "Cluster" => !t.namespaced,
            "Namespaced" => t.namespaced,
            _ => true,
        };
        scope_ok && self.resources.iter().any(|r| crate::webhook::resource_matches(r, &t.resource, &t.subresource))
    }
}

fn selector(v: Option<&Value>) -> Result<LabelSelector, String> {
    match v {
        None | Some(Value::Null) => Ok(LabelSelector::default()),
        Some(v) => LabelSelector::from_label_selector(v).map_err(|e| e.to_string()),
    }
}

/// `matchConstraints` of a policy or `matchResources` of a binding.
#[derive(Debug)]
struct MatchResources {
    rules: Vec<Rule>,
    exclude: Vec<Rule>,
    namespace_selector: Result<LabelSelector, String>,
    object_selector: Result<LabelSelector, String>,
    exact: bool,
}

impl MatchResources {
    fn from_value(v: &Value) -> MatchResources {
        let rules = |k: &str| v.get(k).and_then(Value::as_array).into_iter().flatten().map(Rule::from_value).collect();
        MatchResources {
            rules: rules("resourceRules"),
            exclude: rules("excludeResourceRules"),
            namespace_selector: selector(v.get("namespaceSelector")),
            object_selector: selector(v.get("objectSelector")),
            exact: v.get("matchPolicy").and_then(Value::as_str) == Some("Exact"),
        }
    }

    /// Whether the request matches; `rules_required`: an empty rule list matches nothing
    /// (a policy's constraints) rather than everything (a binding's).
    fn matches(&self, t: &Target, req: &RequestData<'_>, rules_required: bool) -> Result<bool, String> {
        let any_rule = |rules: &[Rule]| {
            rules.iter().any(|r| r.matches(t, false)) || (!self.exact && rules.iter().any(|r| r.matches(t, true)))
        };
        if (rules_required || !self.rules.is_empty()) && !any_rule(&self.rules) {
            return Ok(false);
        }
        if any_rule(&self.exclude) {
            return Ok(false);
        }
        let objects = || req.object.into_iter().chain(req.old);
        let object_selector = self.object_selector.as_ref().map_err(Clone::clone)?;
        if !object_selector.is_empty() && !objects().any(|o| object_selector.matches(object::labels(o))) {
            return Ok(false);
        }
        let ns_selector = self.namespace_selector.as_ref().map_err(Clone::clone)?;
        if ns_selector.is_empty() {
            return Ok(true);
        }
        if t.group.is_empty() && t.resource == "namespaces" {
            return Ok(objects().any(|o| ns_selector.matches(object::labels(o))));
        }
        if !t.namespaced {
            return Ok(true);
        }
        let empty = serde_json::Map::new();
        let labels = req.namespace.and_then(|n| n.pointer("/metadata/labels")).and_then(Value::as_object);
        Ok(ns_selector.matches(labels.unwrap_or(&empty)))
    }
}

/// One validation of a policy.
#[derive(Debug)]
struct Validation {
    expression: Expr,
    message: String,
    message_expression: Option<Expr>,
    reason: String,
}

/// A policy, compiled.
#[derive(Debug)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    uid: String,
    generation: i64,
    fail_closed: bool,
    param_kind: Option<(String, String)>,
    constraints: MatchResources,
    match_conditions: Vec<(String, Expr)>,
    variables: Vec<(String, Expr)>,
    validations: Vec<Validation>,
    audit_annotations: Vec<(String, Expr)>,
    /// Which of `object`, `oldObject`, `request`, `namespaceObject` an expression names (the
    /// request's context binds only those some matching policy uses).
    uses: Uses,
}

/// The request variables some expressions name.
#[derive(Debug, Default, Clone, Copy)]
struct Uses {
    object: bool,
    old: bool,
    request: bool,
    namespace: bool,
    authorizer: bool,
}

impl Uses {
    fn of<'a>(exprs: impl Iterator<Item = &'a Expr>) -> Uses {
        exprs.fold(Uses::default(), |u, e| Uses {
            object: u.object || e.uses("object"),
            old: u.old || e.uses("oldObject"),
            request: u.request || e.uses("request"),
            namespace: u.namespace || e.uses("namespaceObject"),
            authorizer: u.authorizer || e.uses("authorizer"),
        })
    }

    fn or(self, other: Uses) -> Uses {
        Uses {
            object: self.object || other.object,
            old: self.old || other.old,
            request: self.request || other.request,
            namespace: self.namespace || other.namespace,
            authorizer: self.authorizer || other.authorizer,
        }
    }
}

impl Policy {
    /// Compiles the policy `v`.
    pub fn compile(v: &Value) -> Policy {
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let named = |list: &str, name: &str, expr: &str| -> Vec<(String, Expr)> {
            spec.get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| (str_at(c, name).to_string(), Expr::compile(str_at(c, expr))))
                .collect()
        };
        let validations = spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|x| Validation {
                expression: Expr::compile(str_at(x, "/expression")),
                message: str_at(x, "/message").to_string(),
                message_expression: x.get("messageExpression").and_then(Value::as_str).map(Expr::compile),
                reason: str_at(x, "/reason").to_string(),
            })
            .collect();
        let param_kind = spec
            .get("paramKind")
            .filter(|p| p.is_object())
            .map(|p| (str_at(p, "/apiVersion").to_string(), str_at(p, "/kind").to_string()));
        let mut policy = Policy {
            name: object::name(v).to_string(),
            uid: object::meta_str(v, "uid").unwrap_or("").to_string(),
            generation: v.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
            fail_closed: spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"),
            param_kind,
            constraints: MatchResources::from_value(spec.get("matchConstraints").unwrap_or(&Value::Null)),
            match_conditions: named("matchConditions", "/name", "/expression"),
            variables: named("variables", "/name", "/expression"),
            validations,
            audit_annotations: named("auditAnnotations", "/key", "/valueExpression"),
            uses: Uses::default(),
        };
        let p = &policy;
        policy.uses =
            Uses::of(
                p.match_conditions.iter().chain(&p.variables).chain(&p.audit_annotations).map(|(_, e)| e).chain(
                    p.validations.iter().flat_map(|v| std::iter::once(&v.expression).chain(&v.message_expression)),
                ),
            );
        policy
    }
}

/// `paramRef` of a binding.
#[derive(Debug)]
struct ParamRef {
    name: String,
    namespace: String,
    selector: Option<Result<LabelSelector, String>>,
    deny_not_found: bool,
}

/// A binding, parsed.
#[derive(Debug)]
pub struct Binding {
    /// The binding's name.
    pub name: String,
    policy: String,
    deny: bool,
    warn: bool,
    audit: bool,
    param_ref: Option<ParamRef>,
    match_resources: Option<MatchResources>,
}

impl Binding {
    fn from_value(v: &Value) -> Binding {
        let spec = v.get("spec").cloned().unwrap_or(Value::Null);
        let actions = strings(spec.get("validationActions"));
        let has = |a: &str| actions.iter().any(|x| x == a);
        let param_ref = spec.get("paramRef").filter(|p| p.is_object()).map(|p| ParamRef {
            name: str_at(p, "/name").to_string(),
            namespace: str_at(p, "/namespace").to_string(),
            selector: p.get("selector").filter(|s| s.is_object()).map(|s| selector(Some(s))),
            deny_not_found: str_at(p, "/parameterNotFoundAction") == "Deny",
        });
        Binding {
            name: object::name(v).to_string(),
            policy: str_at(&spec, "/policyName").to_string(),
            deny: has("Deny"),
            warn: has("Warn"),
            audit: has("Audit"),
            param_ref,
            match_resources: spec.get("matchResources").filter(|m| m.is_object()).map(MatchResources::from_value),
        }
    }
}

/// Every binding with its policy, in binding name order.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The bound policies.
    pub bound: Vec<(Arc<Policy>, Arc<Binding>)>,
}

/// The policies the server enforces, kept current from the watch cache.
#[derive(Debug, Default)]
pub struct Policies {
    snapshot: RwLock<Arc<Snapshot>>,
    any: AtomicBool,
    /// Compiled policies by uid, with the generation they were compiled at.
    compiled: Mutex<HashMap<String, Arc<Policy>>>,
}

impl Policies {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when at least one binding names an existing policy.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Rebuilds the snapshot from `cache`, compiling only new policies or new generations;
    /// returns the cache revision it reflects.
    pub fn refresh(&self, cache: &Cache) -> berth_store::Revision {
        let revision = cache.revision();
        let (policies, _) = cache.list(POLICIES);
        let (bindings, _) = cache.list(BINDINGS);
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_name: HashMap<String, Arc<Policy>> = HashMap::new();
        let mut kept: HashMap<String, Arc<Policy>> = HashMap::new();
        for p in policies.iter() {
            let uid = object::meta_str(&p.value, "uid").unwrap_or("").to_string();
            let generation = p.value.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let policy = match compiled.get(&uid) {
                Some(c) if c.generation == generation && c.uid == uid => c.clone(),
                _ => Arc::new(Policy::compile(&p.value)),
            };
            by_name.insert(policy.name.clone(), policy.clone());
            kept.insert(uid, policy);
        }
        *compiled = kept;
        drop(compiled);
        let mut bound: Vec<(Arc<Policy>, Arc<Binding>)> = bindings
            .iter()
            .map(|b| Binding::from_value(&b.value))
            .filter_map(|b| by_name.get(&b.policy).map(|p| (p.clone(), Arc::new(b))))
            .collect();
        bound.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        self.any.store(!bound.is_empty(), Ordering::Release);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot { bound });
        revision
    }

    /// Keeps the snapshot current until the server shuts down.
    pub async fn follow(self: Arc<Self>, cache: Arc<Cache>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let rebuild = |cache: &Arc<Cache>| self.refresh(cache);
        let apply = |cache: &Arc<Cache>, _: &[Arc<crate::cache::CachedEvent>], _| {
            self.refresh(cache);
        };
        crate::cache::follow(cache, PREFIX, "admission policies", shutdown, rebuild, apply).await;
    }
}

/// JSON as a CEL value: maps with string keys, lists, ints (uints past i64), doubles,
/// bools, strings and null.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => cel::Value::Map(ValueMap {
            map: Arc::new(m.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect()),
        }),
    }
}

/// JSON as a CEL value that borrows its strings from `v`: what the request's objects become,
/// once per request (binding a [`cel::Value`] to a context converts it deeply each time).
pub fn to_val<'v>(v: &'v Value) -> Box<dyn Val + 'v> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(a) => Box::new(CelList::from(a.iter().map(to_val).collect::<Vec<_>>())),
        Value::Object(m) => Box::new(CelMap::from(
            m.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v))).collect::<HashMap<_, _>>(),
        )),
    }
}

/// What the expressions of one request are evaluated with: the root context and the cost
/// budget its cost function charges.
struct Base<'v> {
    cx: cel::Context<'v, 'v>,
    budget: Arc<cost::Budget>,
}

/// The root context of one request: `object`, `oldObject`, `request`, `namespaceObject`
/// and the cost function ([`Base::with_authorizer`] adds `authorizer`).
fn base_context<'v>(
    object: Option<&'v Value>,
    old: Option<&'v Value>,
    request: &'v Value,
    namespace: Option<&'v Value>,
) -> Base<'v> {
    let mut cx = cel::Context::with_env(ENV.clone());
    let val = |v: Option<&'v Value>| v.map(to_val).unwrap_or_else(|| Box::new(CelNull));
    cx.add_variable_as_val("object", val(object));
    cx.add_variable_as_val("oldObject", val(old));
    cx.add_variable_as_val("request", to_val(request));
    cx.add_variable_as_val("namespaceObject", val(namespace));
    let budget = cost::Budget::new(cost::PER_EXPRESSION_LIMIT);
    cost::bind(&mut cx, budget.clone());
    Base { cx, budget }
}

impl Base<'_> {
    /// Binds `authorizer` for `user`, with `request` as its `requestResource`.
    fn with_authorizer(
        mut self,
        authz: Arc<crate::authz::Authorizer>,
        user: crate::authn::UserInfo,
        request: &authorizer::RequestResource,
    ) -> Self {
        self.cx.add_variable_from_value("authorizer", authorizer::variable(request));
        authorizer::bind(&mut self.cx, authz, user);
        self
    }
}

/// What the expressions of one request see, converted once per request.
struct RequestData<'a> {
    object: Option<&'a Value>,
    old: Option<&'a Value>,
    namespace: Option<&'a Value>,
}

/// A policy's verdict on one param.
enum Verdict {
    /// Allowed (or nothing to enforce).
    Admit,
    /// A validation returned false, or an error under `failurePolicy: Fail`.
    Deny { message: String, reason: String, index: Option<usize> },
}

/// One failed validation, for the actions of its binding.
struct Failure {
    policy: Arc<Policy>,
    binding: Arc<Binding>,
    message: String,
    reason: String,
    index: Option<usize>,
}

fn operation(object: Option<&Value>, old: Option<&Value>) -> &'static str {
    match (object, old) {
        (Some(_), None) => "CREATE",
        (Some(_), Some(_)) => "UPDATE",
        _ => "DELETE",
    }
}

/// Runs the bound policies on a create (`old` None), update or delete (`object` None).
pub fn validate(ctx: &Ctx, object: Option<&Value>, old: Option<&Value>) -> ApiResult<()> {
    let policies = &ctx.app.policies;
    if !policies.any() {
        return Ok(());
    }
    let info = &ctx.served.info;
    // Admission configurations are never validated by policies (no lock-out).
    if info.group == "admissionregistration.k8s.io" {
        return Ok(());
    }
    let snapshot = policies.snapshot();
    let name = object.or(old).map(object::name).filter(|n| !n.is_empty()).unwrap_or(ctx.name()).to_string();
    let target = Target {
        operation: operation(object, old),
        group: info.group.clone(),
        version: info.version.clone(),
        resource: info.plural.clone(),
        subresource: ctx.path.subresource.clone().unwrap_or_default(),
        namespaced: info.namespaced,
        name,
    };
    let namespace_obj = match ctx.namespace() {
        Some(ns) if info.namespaced => ctx.app.cache.get(&format!("/registry/core/namespaces/{ns}")),
        _ => None,
    };
    let data = RequestData { object, old, namespace: namespace_obj.as_ref().map(|o| &o.value) };
    let mut failures: Vec<Failure> = Vec::new();
    let mut deny = |policy: &Arc<Policy>, binding: &Arc<Binding>, v: Verdict| {
        if let Verdict::Deny { message, reason, index } = v {
            failures.push(Failure { policy: policy.clone(), binding: binding.clone(), message, reason, index });
        }
    };
    let mut matched = Vec::new();
    for (policy, binding) in &snapshot.bound {
        let m = policy.constraints.matches(&target, &data, true).and_then(|m| match &binding.match_resources {
            Some(mr) if m => mr.matches(&target, &data, false),
            _ => Ok(m),
        });
        match m {
            Ok(false) => {}
            Ok(true) => matched.push((policy, binding)),
            Err(e) => deny(policy, binding, configuration_error(policy, format!("invalid selector: {e}"))),
        }
    }
    if !matched.is_empty() {
        let uses = matched.iter().fold(Uses::default(), |u, (p, _)| u.or(p.uses));
        let request = if uses.request { request_json(ctx, &target) } else { Value::Null };
        let mut base = base_context(
            object.filter(|_| uses.object),
            old.filter(|_| uses.old),
            &request,
            data.namespace.filter(|_| uses.namespace),
        );
        if uses.authorizer {
            let resource = authorizer::RequestResource {
                group: target.group.clone(),
                resource: target.resource.clone(),
                subresource: target.subresource.clone(),
                namespace: ctx.namespace().filter(|_| info.namespaced).unwrap_or("").to_string(),
                name: target.name.clone(),
            };
            let user = ctx.user.clone().unwrap_or_else(|| crate::authn::UserInfo {
                username: crate::authn::ANONYMOUS.to_string(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".to_string()],
                extra: Default::default(),
            });
            base = base.with_authorizer(ctx.app.authorizer.clone(), user, &resource);
        }
        for (policy, binding) in matched {
            for v in evaluate(ctx, policy, binding, &base) {
                deny(policy, binding, v);
            }
        }
    }
    enforce(ctx, &target, failures)
}

/// The `request` variable: the request's attributes as in an AdmissionReview.
fn request_json(ctx: &Ctx, t: &Target) -> Value {
    let info = &ctx.served.info;
    let kind = json!({ "group": info.group, "version": info.version, "kind": info.kind });
    let resource = json!({ "group": info.group, "version": info.version, "resource": info.plural });
    let user = ctx.user.as_ref().map(|u| serde_json::to_value(u).unwrap_or(Value::Null)).unwrap_or(json!({}));
    let mut request = json!({
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": t.name,
        "namespace": ctx.namespace().filter(|_| info.namespaced).unwrap_or(""),
        "operation": t.operation,
        "userInfo": user,
        "dryRun": ctx.params.dry_run,
    });
    if !t.subresource.is_empty() {
        request["subResource"] = json!(t.subresource);
        request["requestSubResource"] = json!(t.subresource);
    }
    request
}

fn configuration_error(policy: &Policy, message: String) -> Verdict {
    if policy.fail_closed {
        Verdict::Deny { message, reason: String::new(), index: None }
    } else {
        tracing::warn!(policy = %policy.name, %message, "admission policy misconfigured; failurePolicy Ignore");
        Verdict::Admit
    }
}

/// The params `binding` selects for `policy`: `None` means "no params" (no paramKind).
fn params(ctx: &Ctx, policy: &Policy, binding: &Binding) -> Result<Option<Vec<Value>>, String> {
    let Some((api_version, kind)) = &policy.param_kind else { return Ok(None) };
    let Some(pr) = &binding.param_ref else {
        return Err("failed to configure binding: no paramRef in binding, but the policy has a paramKind".into());
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let catalog = ctx.app.resources.catalog();
    let Some(served) =
        catalog.list.iter().find(|s| s.info.group == group && s.info.version == version && s.info.kind == *kind)
    else {
        return Err(format!(
            "failed to configure policy: failed to find resource referenced by paramKind: '{api_version}, Kind={kind}'"
        ));
    };
    let namespace = match (served.info.namespaced, pr.namespace.as_str()) {
        (false, _) => None,
        (true, "") => match ctx.namespace().filter(|_| ctx.served.info.namespaced) {
            Some(ns) => Some(ns.to_string()),
            None => return Err("failed to configure binding: cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into()),
        },
        (true, ns) => Some(ns.to_string()),
    };
    let found: Vec<Value> = match &pr.selector {
        Some(sel) => {
            let sel =
                sel.as_ref().map_err(|e| format!("failed to configure binding: invalid paramRef selector: {e}"))?;
            let (objects, _) = ctx.app.cache.list(&served.prefix_in(namespace.as_deref()));
            objects.iter().map(|o| served.present(o).value.clone()).filter(|o| sel.matches(object::labels(o))).collect()
        }
        None => ctx
            .app
            .cache
            .get(&served.key(namespace.as_deref(), &pr.name))
            .map(|o| vec![served.present(&o).value.clone()])
            .unwrap_or_default(),
    };
    if found.is_empty() && pr.deny_not_found {
        return Err(
            "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
                .into(),
        );
    }
    Ok(Some(found))
}

/// Evaluates `policy` bound by `binding`: one verdict per param.
fn evaluate(ctx: &Ctx, policy: &Policy, binding: &Binding, base: &Base<'_>) -> Vec<Verdict> {
    match params(ctx, policy, binding) {
        Err(e) => vec![configuration_error(policy, e)],
        Ok(None) => vec![evaluate_one(policy, base, None)],
        Ok(Some(list)) => list.iter().map(|p| evaluate_one(policy, base, Some(p))).collect(),
    }
}

fn evaluation_error(policy: &Policy, expr: &Expr, error: &str) -> Verdict {
    configuration_error(policy, format!("expression '{}' resulted in error: {error}", expr.source))
}

/// Evaluates the policy's expressions with one param (`None`: the policy has no paramKind).
fn evaluate_one(policy: &Policy, base: &Base<'_>, params: Option<&Value>) -> Verdict {
    let budget = &*base.budget;
    let mut cx = base.cx.new_inner_scope();
    cx.add_variable_as_val("params", params.map(to_val).unwrap_or_else(|| Box::new(CelNull)));
    cx.add_variable_from_value("variables", cel::Value::Map(ValueMap { map: Arc::new(HashMap::new()) }));
    // matchConditions: all true, else the policy does not apply; errors follow failurePolicy.
    let mut condition_error = None;
    for (name, expr) in &policy.match_conditions {
        match expr.eval(&cx, budget) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Verdict::Admit,
            Ok(other) => {
                condition_error.get_or_insert((name, expr, format!("expected a bool, got {other:?}")));
            }
            Err(e) => {
                condition_error.get_or_insert((name, expr, e));
            }
        }
    }
    if let Some((name, expr, error)) = condition_error {
        return configuration_error(
            policy,
            format!(
                "failed to evaluate match condition '{name}': expression '{}' resulted in error: {error}",
                expr.source
            ),
        );
    }
    // variables, in order; one that fails is left out (using it fails the expression).
    if !policy.variables.is_empty() {
        let mut vars: HashMap<Key, cel::Value> = HashMap::new();
        for (name, expr) in &policy.variables {
            if let Ok(v) = expr.eval(&cx, budget) {
                vars.insert(Key::String(Arc::new(name.clone())), v);
                cx.add_variable_from_value("variables", cel::Value::Map(ValueMap { map: Arc::new(vars.clone()) }));
            }
        }
    }
    for (i, v) in policy.validations.iter().enumerate() {
        match v.expression.eval(&cx, budget) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let from_expression = v.message_expression.as_ref().and_then(|m| match m.eval(&cx, budget) {
                    Ok(cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => Some(s.to_string()),
                    _ => None,
                });
                let message = from_expression
                    .or_else(|| (!v.message.is_empty()).then(|| v.message.clone()))
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.source));
                return Verdict::Deny { message, reason: v.reason.clone(), index: Some(i) };
            }
            Ok(other) => return evaluation_error(policy, &v.expression, &format!("expected a bool, got {other:?}")),
            Err(e) => return evaluation_error(policy, &v.expression, &e),
        }
    }
    for (key, expr) in &policy.audit_annotations {
        match expr.eval(&cx, budget) {
            Ok(cel::Value::String(s)) if !s.is_empty() => crate::audit::annotate(&format!("{}/{key}", policy.name), &s),
            Ok(_) => {}
            Err(e) => return evaluation_error(policy, expr, &e),
        }
    }
    Verdict::Admit
}

/// Kubernetes' status code of a validation's `reason`.
fn reason_code(reason: &str) -> (u16, &'static str) {
    match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    }
}

/// Applies the bindings' actions to the failures: warnings and audit annotations for all,
/// the first `Deny` one refuses the request.
fn enforce(ctx: &Ctx, t: &Target, failures: Vec<Failure>) -> ApiResult<()> {
    let mut audit = Vec::new();
    let mut denied: Option<&Failure> = None;
    for f in &failures {
        if f.binding.warn {
            crate::webhook::warn(&format!(
                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                f.policy.name, f.binding.name, f.message
            ));
        }
        if f.binding.audit {
            let mut actions = Vec::new();
            for (on, name) in [(f.binding.deny, "Deny"), (f.binding.warn, "Warn"), (f.binding.audit, "Audit")] {
                if on {
                    actions.push(name);
                }
            }
            let mut entry = json!({
                "message": f.message,
                "policy": f.policy.name,
                "binding": f.binding.name,
                "validationActions": actions,
            });
            if let Some(i) = f.index {
                entry["expressionIndex"] = json!(i);
            }
            audit.push(entry);
        }
        if f.binding.deny && denied.is_none() {
            denied = Some(f);
        }
    }
    if !audit.is_empty() {
        crate::audit::annotate(VALIDATION_FAILURE, &Value::Array(audit).to_string());
    }
    let Some(f) = denied else { return Ok(()) };
    let message = format!(
        "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
        f.policy.name, f.binding.name, f.message
    );
    let info = &ctx.served.info;
    let forbidden = ApiError::forbidden(info, &t.name, &message);
    let (code, reason) = reason_code(&f.reason);
    let mut details = forbidden.details.clone().unwrap_or_else(|| json!({}));
    details["causes"] = json!([{ "message": message }]);
    Err(ApiError { details: Some(details), ..ApiError::new(code, reason, forbidden.message) })
}

/// Field errors of a ValidatingAdmissionPolicy or ValidatingAdmissionPolicyBinding,
/// worded as Kubernetes words them.
pub fn validate_configuration(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if info.group != "admissionregistration.k8s.io" {
        return Vec::new();
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let enum_check = |errs: &mut Vec<FieldError>, v: &Value, field: &str, at: &str, allowed: &[&str]| {
        if let Some(s) = v.get(field).and_then(Value::as_str)
            && !allowed.contains(&s)
        {
            errs.push(FieldError::not_supported(at, q(s), allowed));
        }
    };
    let expression = |errs: &mut Vec<FieldError>, at: String, source: Option<&str>| match source {
        None | Some("") => errs.push(FieldError::required(at, "")),
        Some(src) => {
            if let Some(e) = Expr::compile(src).error() {
                errs.push(FieldError::invalid(at, q(src), e));
            }
        }
    };
    match info.kind.as_str() {
        "ValidatingAdmissionPolicy" => {
            enum_check(&mut errs, &spec, "failurePolicy", "spec.failurePolicy", &["Fail", "Ignore"]);
            let validations = spec.get("validations").and_then(Value::as_array).cloned().unwrap_or_default();
            let audits = spec.get("auditAnnotations").and_then(Value::as_array).cloned().unwrap_or_default();
            if validations.is_empty() && audits.is_empty() {
                errs.push(FieldError::required(
                    "spec.validations",
                    "validations or auditAnnotations must contain at least one item",
                ));
            }
            match spec.get("matchConstraints").filter(|m| m.is_object()) {
                None => errs.push(FieldError::required("spec.matchConstraints", "")),
                Some(m) => {
                    if m.get("resourceRules").and_then(Value::as_array).is_none_or(|r| r.is_empty()) {
                        errs.push(FieldError::required("spec.matchConstraints.resourceRules", ""));
                    }
                    enum_check(
                        &mut errs,
                        m,
                        "matchPolicy",
                        "spec.matchConstraints.matchPolicy",
                        &["Equivalent", "Exact"],
                    );
                }
            }
            for (i, v) in validations.iter().enumerate() {
                expression(
                    &mut errs,
                    format!("spec.validations[{i}].expression"),
                    v.get("expression").and_then(Value::as_str),
                );
                if let Some(m) = v.get("messageExpression").and_then(Value::as_str) {
                    expression(&mut errs, format!("spec.validations[{i}].messageExpression"), Some(m));
                }
                enum_check(
                    &mut errs,
                    v,
                    "reason",
                    &format!("spec.validations[{i}].reason"),
                    &["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"],
                );
            }
            for (i, a) in audits.iter().enumerate() {
                if str_at(a, "/key").is_empty() {
                    errs.push(FieldError::required(format!("spec.auditAnnotations[{i}].key"), ""));
                }
                expression(
                    &mut errs,
                    format!("spec.auditAnnotations[{i}].valueExpression"),
                    a.get("valueExpression").and_then(Value::as_str),
                );
            }
            for list in ["matchConditions", "variables"] {
                for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
                    if str_at(c, "/name").is_empty() {
                        errs.push(FieldError::required(format!("spec.{list}[{i}].name"), ""));
                    }
                    expression(
                        &mut errs,
                        format!("spec.{list}[{i}].expression"),
                        c.get("expression").and_then(Value::as_str),
                    );
                }
            }
        }
        "ValidatingAdmissionPolicyBinding" => {
            if str_at(&spec, "/policyName").is_empty() {
                errs.push(FieldError::required("spec.policyName", ""));
            }
            let actions = strings(spec.get("validationActions"));
            if actions.is_empty() {
                errs.push(FieldError::required("spec.validationActions", ""));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, a) in actions.iter().enumerate() {
                if !["Deny", "Warn", "Audit"].contains(&a.as_str()) {
                    errs.push(FieldError::not_supported(
                        format!("spec.validationActions[{i}]"),
                        q(a),
                        &["Audit", "Deny", "Warn"],
                    ));
                } else if !seen.insert(a.clone()) {
                    errs.push(FieldError {
                        value: Some(q(a)),
                        ..FieldError::new(
                            berth_api::FieldErrorKind::Duplicate,
                            format!("spec.validationActions[{i}]"),
                            "",
                        )
                    });
                }
            }
            if seen.contains("Deny") && seen.contains("Warn") {
                errs.push(FieldError::invalid(
                    "spec.validationActions",
                    format!("[]string{{{}}}", actions.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")),
                    "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
                ));
            }
            if let Some(p) = spec.get("paramRef").filter(|p| p.is_object()) {
                let (name, sel) = (str_at(p, "/name"), p.get("selector").filter(|s| s.is_object()));
                if !name.is_empty() && sel.is_some() {
                    errs.push(FieldError::invalid(
                        "spec.paramRef.name",
                        q(name),
                        "name and selector are mutually exclusive",
                    ));
                }
                if name.is_empty() && sel.is_none() {
                    errs.push(FieldError::required("spec.paramRef", "one of name or selector must be specified"));
                }
                match p.get("parameterNotFoundAction").and_then(Value::as_str) {
                    None | Some("") => errs.push(FieldError::required("spec.paramRef.parameterNotFoundAction", "")),
                    Some("Allow" | "Deny") => {}
                    Some(o) => errs.push(FieldError::not_supported(
                        "spec.paramRef.parameterNotFoundAction",
                        q(o),
                        &["Allow", "Deny"],
                    )),
                }
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests;
