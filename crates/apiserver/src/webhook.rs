//! Dynamic admission control: the mutating and validating admission webhooks of
//! `admissionregistration.k8s.io/v1`, called as kube-apiserver calls them.
//!
//! [`Webhooks`] keeps one immutable [`Snapshot`] of every MutatingWebhookConfiguration
//! and ValidatingWebhookConfiguration, rebuilt from the watch cache (never the store)
//! after each batch of events, as the RBAC policy is. The write path calls [`mutate`]
//! before its built-in defaulting and validation run (again) and [`validate`] after them;
//! with no configuration both return at once. A matching webhook (rules, scope,
//! namespaceSelector, objectSelector, matchPolicy) gets an AdmissionReview v1 over HTTPS
//! (caBundle verified with rustls; `clientConfig.service` resolved to its Endpoints'
//! first address, since this server has no service proxy of its own); mutating webhooks
//! run one after the other, in name order, and may answer a JSONPatch (one re-invocation
//! of `reinvocationPolicy: IfNeeded` webhooks when a later one changed the object);
//! validating webhooks run concurrently. A refusal is the webhook's Status; a call that
//! fails is a 500 under `failurePolicy: Fail` and is skipped under `Ignore`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use berth_api::selectors::LabelSelector;
use berth_api::{FieldError, ResourceInfo};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

/// Store prefix of the admission configurations.
pub const PREFIX: &str = "/registry/admissionregistration.k8s.io/";
const MUTATING: &str = "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/";
const VALIDATING: &str = "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/";

/// Largest AdmissionReview answer read from a webhook.
const MAX_RESPONSE: usize = 10 * 1024 * 1024;

/// The operation a request performs, as admission names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A changed object (PUT or PATCH).
    Update,
    /// A deletion.
    Delete,
    /// A connect (exec, attach, port-forward, proxy).
    Connect,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `clientConfig.url`.
    Url(String),
    /// `clientConfig.service`.
    Service { namespace: String, name: String, port: u16, path: String },
}

/// One rule of a webhook (`RuleWithOperations`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    operations: Vec<String>,
    api_groups: Vec<String>,
    api_versions: Vec<String>,
    resources: Vec<String>,
    scope: String,
}

/// What a request is about, for rule matching.
#[derive(Debug, Clone)]
struct Target {
    operation: Operation,
    group: String,
    version: String,
    resource: String,
    subresource: String,
    namespaced: bool,
}

impl Rule {
    fn from_value(v: &Value) -> Rule {
        let list = |k: &str| strings(v.get(k));
        Rule {
            operations: list("operations"),
            api_groups: list("apiGroups"),
            api_versions: list("apiVersions"),
            resources: list("resources"),
            scope: v.get("scope").and_then(Value::as_str).unwrap_or("*").to_string(),
        }
    }

    /// Kubernetes' rule matcher; `any_version` relaxes the version for `matchPolicy: Equivalent`.
    fn matches(&self, t: &Target, any_version: bool) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if !has(&self.operations, t.operation.as_str()) || !has(&self.api_groups, &t.group) {
            return false;
        }
        if !any_version && !has(&self.api_versions, &t.version) {
            return false;
        }
        let scope_ok = match self.scope.as_str() {
            "Cluster" => !t.namespaced,
            "Namespaced" => t.namespaced,
            _ => true,
        };
        scope_ok && self.resources.iter().any(|r| resource_matches(r, &t.resource, &t.subresource))
    }
}

/// `pods`, `*`, `pods/status`, `pods/*`, `*/scale`, `*/*` against a resource and subresource
/// (webhook and ValidatingAdmissionPolicy rules alike).
pub(crate) fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    let (res, sub) = match pattern.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (pattern, None),
    };
    let res_ok = res == "*" || res == resource;
    match sub {
        None => res_ok && subresource.is_empty(),
        Some(s) => res_ok && !subresource.is_empty() && (s == "*" || s == subresource),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// One webhook of a configuration, parsed once per snapshot.
pub struct Hook {
    /// The webhook's name.
    pub name: String,
    configuration: String,
    rules: Vec<Rule>,
    fail_closed: bool,
    exact: bool,
    namespace_selector: Result<LabelSelector, String>,
    object_selector: Result<LabelSelector, String>,
    dry_run_safe: bool,
    timeout: Duration,
    reinvoke: bool,
    endpoint: Endpoint,
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("name", &self.name).field("configuration", &self.configuration).finish()
    }
}

fn selector(v: Option<&Value>) -> Result<LabelSelector, String> {
    match v {
        // Absent (or null) means everything, as the defaulted `{}`.
        None | Some(Value::Null) => Ok(LabelSelector::default()),
        Some(v) => LabelSelector::from_label_selector(v).map_err(|e| e.to_string()),
    }
}

impl Hook {
    fn from_value(configuration: &str, v: &Value) -> Hook {
        let cc = v.get("clientConfig").cloned().unwrap_or(Value::Null);
        let endpoint = match (cc.get("url").and_then(Value::as_str), cc.get("service")) {
            (Some(url), _) => Endpoint::Url(url.to_string()),
            (None, Some(svc)) => Endpoint::Service {
                namespace: svc.get("namespace").and_then(Value::as_str).unwrap_or("").to_string(),
                name: svc.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                port: svc.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
                path: svc.get("path").and_then(Value::as_str).unwrap_or("/").to_string(),
            },
            (None, None) => Endpoint::Url(String::new()),
        };
        let timeout = v.get("timeoutSeconds").and_then(Value::as_u64).unwrap_or(10).clamp(1, 30);
        Hook {
            name: v.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            configuration: configuration.to_string(),
            rules: v.get("rules").and_then(Value::as_array).into_iter().flatten().map(Rule::from_value).collect(),
            fail_closed: v.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"),
            exact: v.get("matchPolicy").and_then(Value::as_str) == Some("Exact"),
            namespace_selector: selector(v.get("namespaceSelector")),
            object_selector: selector(v.get("objectSelector")),
            dry_run_safe: matches!(v.get("sideEffects").and_then(Value::as_str), Some("None" | "NoneOnDryRun")),
            timeout: Duration::from_secs(timeout),
            reinvoke: v.get("reinvocationPolicy").and_then(Value::as_str) == Some("IfNeeded"),
            endpoint,
            tls: tls_config(cc.get("caBundle").and_then(Value::as_str).unwrap_or("")).map(Arc::new),
        }
    }

    fn matches_rules(&self, t: &Target) -> bool {
        self.rules.iter().any(|r| r.matches(t, false)) || (!self.exact && self.rules.iter().any(|r| r.matches(t, true)))
    }
}

/// A rustls client trusting the PEM certificates of `ca_bundle` (base64, as JSON carries bytes).
fn tls_config(ca_bundle: &str) -> Result<rustls::ClientConfig, String> {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|e| format!("caBundle is not valid base64: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every webhook of the cluster, mutating ones in the order they run.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Mutating webhooks (configurations by name, webhooks in their order).
    pub mutating: Vec<Arc<Hook>>,
    /// Validating webhooks.
    pub validating: Vec<Arc<Hook>>,
}

impl Snapshot {
    fn build(cache: &Cache) -> Snapshot {
        let hooks = |prefix: &str| -> Vec<Arc<Hook>> {
            let (objects, _) = cache.list(prefix);
            let mut configs: Vec<_> = objects.iter().collect();
            configs.sort_by(|a, b| object::name(&a.value).cmp(object::name(&b.value)));
            configs
                .iter()
                .flat_map(|c| {
                    let name = object::name(&c.value).to_string();
                    c.value
                        .get("webhooks")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(move |h| Arc::new(Hook::from_value(&name, h)))
                })
                .collect()
        };
        Snapshot { mutating: hooks(MUTATING), validating: hooks(VALIDATING) }
    }
}

/// The webhooks the server calls, kept current from the watch cache.
#[derive(Debug, Default)]
pub struct Webhooks {
    snapshot: RwLock<Arc<Snapshot>>,
    /// True while some configuration has a webhook (the request path's fast check).
    any: std::sync::atomic::AtomicBool,
}

impl Webhooks {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when at least one webhook is configured.
    pub fn any(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Rebuilds the snapshot from `cache`; returns the cache revision it reflects.
    pub fn refresh(&self, cache: &Cache) -> berth_store::Revision {
        let revision = cache.revision();
        let snapshot = Arc::new(Snapshot::build(cache));
        let any = !snapshot.mutating.is_empty() || !snapshot.validating.is_empty();
        self.any.store(any, std::sync::atomic::Ordering::Release);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        revision
    }

    /// Keeps the snapshot current until the server shuts down.
    pub async fn follow(self: Arc<Self>, cache: Arc<Cache>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let rebuild = |cache: &Arc<Cache>| self.refresh(cache);
        let apply = |cache: &Arc<Cache>, _: &[Arc<crate::cache::CachedEvent>], _| {
            self.refresh(cache);
        };
        crate::cache::follow(cache, PREFIX, "admission webhooks", shutdown, rebuild, apply).await;
    }
}

tokio::task_local! {
    static WARNINGS: Arc<std::sync::Mutex<Vec<String>>>;
}

/// Runs a request's handling so that the warnings webhooks return are collected; returns
/// them with its output (the handler adds them as `Warning` headers). Without webhooks
/// (`enabled` false) it only runs `f`.
pub async fn collect_warnings<F: std::future::Future>(enabled: bool, f: F) -> (F::Output, Vec<String>) {
    if !enabled {
        return (f.await, Vec::new());
    }
    let slot = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = WARNINGS.scope(slot.clone(), f).await;
    let warnings = std::mem::take(&mut *slot.lock().unwrap_or_else(|e| e.into_inner()));
    (out, warnings)
}

/// Adds `warnings` to `resp` as `Warning: 299 - "..."` headers.
pub fn add_warning_headers(resp: &mut axum::response::Response, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
}

/// Adds a warning to the current request's `Warning` headers (webhooks and admission policies).
pub(crate) fn warn(text: &str) {
    let _ = WARNINGS.try_with(|w| w.lock().unwrap_or_else(|e| e.into_inner()).push(text.to_string()));
}

/// What one admission request carries besides the webhooks.
struct Request<'a> {
    ctx: &'a Ctx,
    operation: Operation,
    target: Target,
    dry_run: bool,
}

impl<'a> Request<'a> {
    fn new(ctx: &'a Ctx, operation: Operation, dry_run: bool) -> Option<Request<'a>> {
        let info = &ctx.served.info;
        // The admission configurations themselves are never sent to webhooks.
        if info.group == "admissionregistration.k8s.io" {
            return None;
        }
        let target = Target {
            operation,
            group: info.group.clone(),
            version: info.version.clone(),
            resource: info.plural.clone(),
            subresource: ctx.path.subresource.clone().unwrap_or_default(),
            namespaced: info.namespaced,
        };
        Some(Request { ctx, operation, target, dry_run })
    }

    fn options(&self) -> Value {
        let patch = self
            .ctx
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("patch"));
        let kind = match self.operation {
            Operation::Create if patch => "PatchOptions",
            Operation::Create => "CreateOptions",
            Operation::Update if patch => "PatchOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
            Operation::Connect => "ConnectOptions",
        };
        let mut o = json!({ "kind": kind, "apiVersion": "meta.k8s.io/v1" });
        if self.dry_run {
            o["dryRun"] = json!(["All"]);
        }
        if let Some(m) = &self.ctx.params.field_manager
            && self.operation != Operation::Delete
        {
            o["fieldManager"] = json!(m);
        }
        o
    }

    /// The kind of the objects sent: the resource's, or autoscaling/v1 Scale for `scale`.
    fn kind(&self) -> Value {
        let info = &self.ctx.served.info;
        if self.target.subresource == "scale" {
            return json!({ "group": "autoscaling", "version": "v1", "kind": "Scale" });
        }
        json!({ "group": info.group, "version": info.version, "kind": info.kind })
    }

    /// The AdmissionReview for `object`/`old`.
    fn review(&self, uid: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
        let info = &self.ctx.served.info;
        let resource = json!({ "group": info.group, "version": info.version, "resource": info.plural });
        let name = object.or(old).map(object::name).filter(|n| !n.is_empty()).unwrap_or(self.ctx.name());
        let mut request = json!({
            "uid": uid,
            "kind": self.kind(),
            "resource": resource,
            "requestKind": self.kind(),
            "requestResource": resource,
            "name": name,
            "operation": self.operation.as_str(),
            "userInfo": self.ctx.user.as_ref().map(|u| serde_json::to_value(u).unwrap_or(Value::Null)).unwrap_or(json!({})),
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": self.dry_run,
            "options": self.options(),
        });
        if !self.target.subresource.is_empty() {
            request["subResource"] = json!(self.target.subresource);
            request["requestSubResource"] = json!(self.target.subresource);
        }
        if let Some(ns) = self.ctx.namespace() {
            request["namespace"] = json!(ns);
        }
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
    }

    /// Whether `hook`'s selectors select this request.
    fn selected(&self, hook: &Hook, object: Option<&Value>, old: Option<&Value>) -> Result<bool, String> {
        let objects = || object.into_iter().chain(old);
        let object_selector = hook.object_selector.as_ref().map_err(Clone::clone)?;
        if !object_selector.is_empty() && !objects().any(|o| object_selector.matches(object::labels(o))) {
            return Ok(false);
        }
        let ns_selector = hook.namespace_selector.as_ref().map_err(Clone::clone)?;
        if ns_selector.is_empty() {
            return Ok(true);
        }
        let info = &self.ctx.served.info;
        if info.group.is_empty() && info.plural == "namespaces" {
            return Ok(objects().any(|o| ns_selector.matches(object::labels(o))));
        }
        if !info.namespaced {
            return Ok(true);
        }
        let ns = self.ctx.namespace().unwrap_or("");
        let ns_obj = self.ctx.app.cache.get(&format!("/registry/core/namespaces/{ns}"));
        let empty = serde_json::Map::new();
        let labels = ns_obj.as_ref().and_then(|o| o.value.pointer("/metadata/labels")).and_then(Value::as_object);
        Ok(ns_selector.matches(labels.unwrap_or(&empty)))
    }
}

/// The answer of one webhook.
#[derive(Debug, Default)]
struct Answer {
    allowed: bool,
    status: Option<Value>,
    patch: Option<Value>,
    warnings: Vec<String>,
    audit_annotations: BTreeMap<String, String>,
}

/// Parses and checks an AdmissionReview answer to the request with `uid`.
fn parse_answer(body: &[u8], uid: &str) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("received invalid webhook response: {e}"))?;
    let invalid = |why: String| Err(format!("received invalid webhook response: {why}"));
    if v.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || v.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            v.get("kind").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let Some(r) = v.get("response").filter(|r| r.is_object()) else {
        return invalid("response was absent".into());
    };
    let got = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return invalid(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let patch = match (r.get("patch").and_then(Value::as_str), r.get("patchType").and_then(Value::as_str)) {
        (None | Some(""), _) => None,
        (Some(_), None) => return invalid("webhook returned a patch without patchType".into()),
        (Some(p), Some("JSONPatch")) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("received invalid webhook response: patch is not base64: {e}"))?;
            Some(serde_json::from_slice(&bytes).map_err(|e| format!("received invalid webhook response: patch: {e}"))?)
        }
        (Some(_), Some(t)) => return invalid(format!("webhook returned invalid patchType: {t:?}")),
    };
    let audit_annotations = r
        .get("auditAnnotations")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    Ok(Answer {
        allowed: r.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        status: r.get("status").cloned(),
        patch,
        warnings: strings(r.get("warnings")),
        audit_annotations,
    })
}

/// Kubernetes' refusal of a webhook that did not allow the request (`ToStatusErr`).
fn denied(hook: &str, status: Option<&Value>) -> ApiError {
    let status = status.cloned().unwrap_or(Value::Null);
    let code = status.get("code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
    let code = if code < 400 { 400 } else { code };
    let message = status.get("message").and_then(Value::as_str).filter(|m| !m.is_empty());
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let by = format!("admission webhook {hook:?} denied the request");
    let message = match (message, reason) {
        (Some(m), _) => format!("{by}: {m}"),
        (None, r) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    ApiError { details: status.get("details").cloned(), ..ApiError::new(code, static_reason(reason), message) }
}

/// The Status reasons Kubernetes defines (ApiError keeps static strings); others become "".
fn static_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or("")
}

/// Kubernetes' error for a webhook that could not be called under `failurePolicy: Fail`.
fn call_failed(hook: &str, cause: &str) -> ApiError {
    let why = format!("failed calling webhook {hook:?}: {cause}");
    ApiError {
        details: Some(json!({ "causes": [{ "message": why }] })),
        ..ApiError::new(500, "InternalError", format!("Internal error occurred: {why}"))
    }
}

/// The URL, TLS server name and address to dial for `hook`.
fn resolve(ctx: &Ctx, hook: &Hook) -> Result<(String, String, String, u16), String> {
    match &hook.endpoint {
        Endpoint::Url(url) => {
            let uri: http::Uri = url.parse().map_err(|e| format!("invalid webhook URL {url:?}: {e}"))?;
            if uri.scheme_str() != Some("https") {
                return Err(format!("invalid webhook URL {url:?}: 'https' is the only allowed URL scheme"));
            }
            let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(443);
            Ok((url.clone(), host.clone(), host, port))
        }
        Endpoint::Service { namespace, name, port, path } => {
            let server_name = format!("{name}.{namespace}.svc");
            let url = format!("https://{server_name}:{port}{path}");
            let cache = &ctx.app.cache;
            let svc = cache
                .get(&format!("/registry/core/services/{namespace}/{name}"))
                .ok_or_else(|| format!("failed to call webhook: service \"{namespace}/{name}\" not found"))?;
            let svc_port = svc.value.pointer("/spec/ports").and_then(Value::as_array).and_then(|ports| {
                ports.iter().find(|p| p.get("port").and_then(Value::as_u64) == Some(u64::from(*port)))
            });
            let Some(svc_port) = svc_port else {
                return Err(format!("failed to call webhook: service \"{namespace}/{name}\" has no port {port}"));
            };
            let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
            let endpoints = cache.get(&format!("/registry/core/endpoints/{namespace}/{name}"));
            let subsets = endpoints.as_ref().and_then(|e| e.value.get("subsets")).and_then(Value::as_array);
            for subset in subsets.into_iter().flatten() {
                let Some(addr) = subset.pointer("/addresses/0/ip").and_then(Value::as_str) else { continue };
                let ports = subset.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
                let target = ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
                    .or_else(|| (ports.len() == 1).then(|| &ports[0]))
                    .and_then(|p| p.get("port").and_then(Value::as_u64))
                    .and_then(|p| u16::try_from(p).ok());
                if let Some(target) = target {
                    return Ok((url, server_name, addr.to_string(), target));
                }
            }
            Err(format!("failed to call webhook: service \"{namespace}/{name}\" has no ready endpoints"))
        }
    }
}

/// POSTs `review` to `hook`; the answer's bytes, or why the call failed.
async fn post(ctx: &Ctx, hook: &Hook, review: &Value) -> Result<Vec<u8>, String> {
    let (url, server_name, host, port) = resolve(ctx, hook)?;
    let timeout = hook.timeout.as_secs();
    let sep = if url.contains('?') { '&' } else { '?' };
    let full_url = format!("{url}{sep}timeout={timeout}s");
    let failed = |e: &dyn std::fmt::Display| format!("failed to call webhook: Post {full_url:?}: {e}");
    let tls = hook.tls.clone().map_err(|e| failed(&e))?;
    let body = serde_json::to_vec(review).map_err(|e| failed(&e))?;
    let path = full_url.parse::<http::Uri>().ok().and_then(|u| u.path_and_query().map(|p| p.to_string()));
    let path = path.unwrap_or_else(|| "/".into());
    let call = async {
        let name = ServerName::try_from(server_name.clone()).map_err(|e| failed(&e))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| failed(&e))?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| failed(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(&e))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::post(path)
            .header(header::HOST, format!("{server_name}:{port}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| failed(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE).collect().await.map_err(|e| failed(&e))?.to_bytes();
        conn.abort();
        if !status.is_success() {
            return Err(format!("received invalid webhook response: the server responded with status {status}"));
        }
        Ok(bytes.to_vec())
    };
    match tokio::time::timeout(hook.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(failed(&"context deadline exceeded")),
    }
}

/// A dry run may only reach webhooks without side effects (`None`, `NoneOnDryRun`): v1 refuses
/// other values on write, but configurations stored before (v1beta1) may carry them.
fn dry_run_refusal(hook: &Hook, dry_run: bool) -> Option<ApiError> {
    (dry_run && !hook.dry_run_safe)
        .then(|| ApiError::bad_request(format!("admission webhook {:?} does not support dry run", hook.name)))
}

/// The audit annotation Kubernetes records when a webhook fails open.
fn failed_open(kind: &str, round: usize, index: usize) -> String {
    format!("failed-open.{kind}.webhook.admission.k8s.io/round_{round}_index_{index}")
}

/// Calls one webhook: `Ok(Some(answer))` when it answered and allowed, `Ok(None)` when it
/// could not be called and fails open (annotated with `failed_open_key`), `Err` when it
/// refused or failed closed.
async fn call(
    req: &Request<'_>,
    hook: &Hook,
    failed_open_key: String,
    object: Option<&Value>,
    old: Option<&Value>,
) -> ApiResult<Option<Answer>> {
    if let Some(refusal) = dry_run_refusal(hook, req.dry_run) {
        return Err(refusal);
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let review = req.review(&uid, object, old);
    let answer = match post(req.ctx, hook, &review).await.and_then(|body| parse_answer(&body, &uid)) {
        Ok(a) => a,
        Err(cause) if hook.fail_closed => return Err(call_failed(&hook.name, &cause)),
        Err(cause) => {
            tracing::warn!(webhook = %hook.name, %cause, "admission webhook failed; failurePolicy Ignore");
            crate::audit::annotate(&failed_open_key, &hook.name);
            return Ok(None);
        }
    };
    for w in &answer.warnings {
        warn(w);
    }
    for (k, v) in &answer.audit_annotations {
        crate::audit::annotate(&format!("{}/{k}", hook.name), v);
    }
    if !answer.allowed {
        return Err(denied(&hook.name, answer.status.as_ref()));
    }
    Ok(Some(answer))
}

/// The object as the webhooks see it: the Scale view for `scale`.
fn view(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    if ctx.path.subresource.as_deref() == Some("scale") {
        crate::scale::to_scale(&ctx.served, obj)
    } else {
        Ok(obj.clone())
    }
}

fn defaults(ctx: &Ctx, obj: &mut Value) {
    match &ctx.served.custom {
        Some(c) => berth_api::fields::apply_defaults(berth_api::schema::Node::new(&c.schema), obj),
        None => berth_api::defaults::apply(&ctx.served.info, obj),
    }
}

/// Runs the mutating webhooks on a create (`old` None) or update of `obj`, applying their
/// patches; the caller's defaulting and validation run afterwards.
pub async fn mutate(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    if !ctx.app.webhooks.any() {
        return Ok(());
    }
    let snapshot = ctx.app.webhooks.snapshot();
    if snapshot.mutating.is_empty() {
        return Ok(());
    }
    let operation = if old.is_some() { Operation::Update } else { Operation::Create };
    let Some(req) = Request::new(ctx, operation, ctx.params.dry_run) else { return Ok(()) };
    let hooks: Vec<&Arc<Hook>> = snapshot.mutating.iter().filter(|h| h.matches_rules(&req.target)).collect();
    if hooks.is_empty() {
        return Ok(());
    }
    // Webhooks see the object as it will be stored: defaulted.
    defaults(ctx, obj);
    let old_view = old.map(|o| view(ctx, o)).transpose()?;
    let mut current = view(ctx, obj)?;
    let mut invoked: Vec<usize> = Vec::new();
    let mut again = vec![false; hooks.len()];
    for round in 0..2 {
        let mut changed_in_round = false;
        for (i, hook) in hooks.iter().enumerate() {
            if round == 1 && !again[i] {
                continue;
            }
            if !req.selected(hook, Some(&current), old_view.as_ref()).map_err(|e| selector_error(hook, &e))? {
                continue;
            }
            let Some(answer) =
                call(&req, hook, failed_open("mutating", round, i), Some(&current), old_view.as_ref()).await?
            else {
                continue;
            };
            if round == 0 {
                invoked.push(i);
            }
            if let Some(patch) = answer.patch {
                let before = current.clone();
                berth_api::patch::json_patch(&mut current, &patch)
                    .map_err(|e| call_failed(&hook.name, &format!("failed to apply the webhook's JSON patch: {e}")))?;
                if current != before && round == 0 {
                    changed_in_round = true;
                    // Earlier IfNeeded webhooks saw an object that has changed since.
                    for j in invoked.iter().copied().filter(|j| *j != i && hooks[*j].reinvoke) {
                        again[j] = true;
                    }
                }
            }
        }
        if round == 0 && !(changed_in_round && again.iter().any(|a| *a)) {
            break;
        }
    }
    if ctx.path.subresource.as_deref() == Some("scale") {
        crate::scale::apply_scale(&ctx.served, obj, &current)?;
    } else {
        *obj = current;
    }
    Ok(())
}

fn selector_error(hook: &Hook, e: &str) -> ApiError {
    call_failed(&hook.name, &format!("invalid selector: {e}"))
}

/// Runs the validating webhooks (concurrently) on a create (`old` None) or update of `obj`.
pub async fn validate(ctx: &Ctx, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    if !ctx.app.webhooks.any() {
        return Ok(());
    }
    let snapshot = ctx.app.webhooks.snapshot();
    if snapshot.validating.is_empty() {
        return Ok(());
    }
    let operation = if old.is_some() { Operation::Update } else { Operation::Create };
    let Some(req) = Request::new(ctx, operation, ctx.params.dry_run) else { return Ok(()) };
    let object = view(ctx, obj)?;
    let old = old.map(|o| view(ctx, o)).transpose()?;
    run_validating(&req, &snapshot, Some(&object), old.as_ref()).await
}

async fn run_validating(
    req: &Request<'_>,
    snapshot: &Snapshot,
    object: Option<&Value>,
    old: Option<&Value>,
) -> ApiResult<()> {
    let mut calls = Vec::new();
    for (i, hook) in snapshot.validating.iter().enumerate().filter(|(_, h)| h.matches_rules(&req.target)) {
        if req.selected(hook, object, old).map_err(|e| selector_error(hook, &e))? {
            calls.push(call(req, hook, failed_open("validating", 0, i), object, old));
        }
    }
    for result in futures::future::join_all(calls).await {
        result?;
    }
    Ok(())
}

/// Runs the webhooks of a DELETE of `old` (mutating webhooks are called, their patches
/// have no object to apply to), then the validating ones.
pub async fn delete(ctx: &Ctx, old: &Value, dry_run: bool) -> ApiResult<()> {
    if !ctx.app.webhooks.any() {
        return Ok(());
    }
    let snapshot = ctx.app.webhooks.snapshot();
    if snapshot.mutating.is_empty() && snapshot.validating.is_empty() {
        return Ok(());
    }
    let Some(req) = Request::new(ctx, Operation::Delete, dry_run) else { return Ok(()) };
    for (i, hook) in snapshot.mutating.iter().enumerate().filter(|(_, h)| h.matches_rules(&req.target)) {
        if req.selected(hook, None, Some(old)).map_err(|e| selector_error(hook, &e))? {
            call(&req, hook, failed_open("mutating", 0, i), None, Some(old)).await?;
        }
    }
    run_validating(&req, &snapshot, None, Some(old)).await
}

/// Field errors of a Mutating/ValidatingWebhookConfiguration, worded as Kubernetes words them.
pub fn validate_configuration(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    if info.group != "admissionregistration.k8s.io" || !info.kind.ends_with("WebhookConfiguration") {
        return Vec::new();
    }
    let mutating = info.kind == "MutatingWebhookConfiguration";
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    let hooks = obj.get("webhooks").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, h) in hooks.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        match h.get("name").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(at("name"), "")),
            name => {
                for msg in berth_api::validation::is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(at("name"), q(name), msg));
                }
                if name.split('.').count() < 3 {
                    errs.push(FieldError::invalid(
                        at("name"),
                        q(name),
                        "should be a domain with at least three segments separated by dots",
                    ));
                }
                if !names.insert(name.to_string()) {
                    errs.push(FieldError {
                        value: Some(q(name)),
                        ..FieldError::new(berth_api::FieldErrorKind::Duplicate, at("name"), "")
                    });
                }
            }
        }
        let versions = strings(h.get("admissionReviewVersions"));
        if versions.is_empty() {
            errs.push(FieldError::required(at("admissionReviewVersions"), "must specify one of v1, v1beta1"));
        } else if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
            let shown: Vec<String> = versions.iter().map(|v| q(v)).collect();
            errs.push(FieldError::invalid(
                at("admissionReviewVersions"),
                format!("[]string{{{}}}", shown.join(", ")),
                "must include at least one of v1, v1beta1",
            ));
        }
        match h.get("sideEffects").and_then(Value::as_str) {
            None | Some("") => errs.push(FieldError::required(at("sideEffects"), "")),
            Some("None" | "NoneOnDryRun") => {}
            Some(other) => errs.push(FieldError::not_supported(at("sideEffects"), q(other), &["None", "NoneOnDryRun"])),
        }
        let enum_check = |errs: &mut Vec<FieldError>, field: &str, allowed: &[&str]| {
            if let Some(v) = h.get(field).and_then(Value::as_str)
                && !allowed.contains(&v)
            {
                errs.push(FieldError::not_supported(at(field), q(v), allowed));
            }
        };
        enum_check(&mut errs, "failurePolicy", &["Fail", "Ignore"]);
        enum_check(&mut errs, "matchPolicy", &["Equivalent", "Exact"]);
        if mutating {
            enum_check(&mut errs, "reinvocationPolicy", &["Never", "IfNeeded"]);
        }
        if let Some(t) = h.get("timeoutSeconds").and_then(Value::as_i64)
            && !(1..=30).contains(&t)
        {
            errs.push(FieldError::invalid(
                at("timeoutSeconds"),
                t,
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        let cc = h.get("clientConfig").cloned().unwrap_or(Value::Null);
        match (cc.get("url").and_then(Value::as_str), cc.get("service").filter(|s| s.is_object())) {
            (Some(_), Some(_)) | (None, None) => {
                errs.push(FieldError::required(at("clientConfig"), "exactly one of url or service is required"))
            }
            (Some(url), None) => match url.parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("https") && u.host().is_some_and(|h| !h.is_empty()) => {}
                Ok(u) if u.scheme_str() != Some("https") => errs.push(FieldError::invalid(
                    at("clientConfig.url"),
                    q(url),
                    "'https' is the only allowed URL scheme",
                )),
                _ => errs.push(FieldError::invalid(at("clientConfig.url"), q(url), "host must be specified")),
            },
            (None, Some(svc)) => {
                for f in ["namespace", "name"] {
                    if svc.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                        errs.push(FieldError::required(at(&format!("clientConfig.service.{f}")), ""));
                    }
                }
                if let Some(p) = svc.get("port").and_then(Value::as_i64)
                    && !(1..=65535).contains(&p)
                {
                    errs.push(FieldError::invalid(
                        at("clientConfig.service.port"),
                        p,
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        for (j, r) in h.get("rules").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let rat = |f: &str| format!("webhooks[{i}].rules[{j}].{f}");
            for f in ["operations", "apiGroups", "apiVersions", "resources"] {
                if strings(r.get(f)).is_empty() {
                    errs.push(FieldError::required(rat(f), ""));
                }
            }
            for (k, op) in strings(r.get("operations")).iter().enumerate() {
                if !matches!(op.as_str(), "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
                    errs.push(FieldError::not_supported(
                        format!("{}[{k}]", rat("operations")),
                        q(op),
                        &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
                    ));
                }
            }
            if let Some(s) = r.get("scope").and_then(Value::as_str)
                && !matches!(s, "*" | "Cluster" | "Namespaced")
            {
                errs.push(FieldError::not_supported(rat("scope"), q(s), &["*", "Cluster", "Namespaced"]));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests;
