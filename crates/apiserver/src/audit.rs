//! The audit log, as kube-apiserver's `--audit-log-path` and `--audit-policy-file`: an
//! `audit.k8s.io/v1` [`Policy`] decides per request a level (None, Metadata, Request,
//! RequestResponse) and the stages to omit; the [`middleware`] (between authentication and
//! authorization, only installed when a policy is given) records `audit.k8s.io/v1` Events
//! — RequestReceived, ResponseStarted (watches), ResponseComplete — and hands them, encoded
//! as JSON lines, to a writer thread through a bounded queue, so requests never wait on the
//! disk. As Kubernetes' `batch` mode, a full queue drops events (counted, with a warning).
//! The writer rotates the file by size (`--audit-log-maxsize`), keeps `--audit-log-maxbackup`
//! old files no older than `--audit-log-maxage` days, named as lumberjack names them
//! (`audit-2006-01-02T15-04-05.000.log`). Panics are not recorded as a `Panic` stage.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::Attributes;
use crate::server::App;

/// Why an audit policy or log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The policy file is not a valid policy.
    #[error("audit policy: {0}")]
    Policy(String),
    /// The log file cannot be opened.
    #[error("audit log {path}: {source}")]
    Io {
        /// The log path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Level {
    /// Nothing.
    None,
    /// Metadata: user, verb, object reference, response status; no bodies.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata, request and response bodies.
    RequestResponse,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// A stage of a request's handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Stage {
    /// As soon as the request is received.
    RequestReceived,
    /// The response headers are sent (long-running requests: watches).
    ResponseStarted,
    /// The response is complete.
    ResponseComplete,
    /// The handler panicked.
    Panic,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }
}

/// `GroupResources` of a policy rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group ("" is the core group).
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `*/scale`, `pods/*`, `*`); empty is every resource of the group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty is every name.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One `PolicyRule`: the first rule a request matches sets its level.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The level of matching requests.
    pub level: Level,
    /// User names; empty is every user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups; empty is every group.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs; empty is every verb.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; empty is every resource (and non-resource URLs unless namespaces are set).
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces ("" for cluster-scoped); empty is every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths (`/healthz`, `/healthz/*`, `*`); empty is every path.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not recorded for matching requests (besides the policy's).
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields`.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// An `audit.k8s.io/v1` Policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `audit.k8s.io/v1` (v1beta1 is read the same way).
    #[serde(default)]
    pub api_version: String,
    /// `Policy`.
    #[serde(default)]
    pub kind: String,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Stages never recorded.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Drop `metadata.managedFields` from recorded bodies.
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// What the policy decides for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The level.
    pub level: Level,
    /// Stages not recorded.
    pub omit_stages: Vec<Stage>,
    /// Drop managedFields from bodies.
    pub omit_managed_fields: bool,
}

impl Policy {
    /// Parses a policy file (YAML or JSON).
    pub fn parse(text: &str) -> Result<Policy, AuditError> {
        let policy: Policy = serde_saphyr::from_str(text).map_err(|e| AuditError::Policy(e.to_string()))?;
        if policy.kind != "Policy" || !policy.api_version.starts_with("audit.k8s.io/") {
            return Err(AuditError::Policy(format!(
                "expected kind Policy of audit.k8s.io/v1, got kind {:?} of {:?}",
                policy.kind, policy.api_version
            )));
        }
        if policy.rules.is_empty() {
            return Err(AuditError::Policy("the policy has no rules".into()));
        }
        Ok(policy)
    }

    /// The level and options of a request with `attrs` (None when no rule matches).
    pub fn evaluate(&self, attrs: &Attributes) -> Decision {
        for rule in &self.rules {
            if rule.matches(attrs) {
                let mut omit_stages = self.omit_stages.clone();
                omit_stages.extend(rule.omit_stages.iter().copied());
                return Decision {
                    level: rule.level,
                    omit_stages,
                    omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision { level: Level::None, omit_stages: Vec::new(), omit_managed_fields: false }
    }
}

impl Rule {
    /// Kubernetes' `ruleMatches`.
    pub fn matches(&self, attrs: &Attributes) -> bool {
        let user = &attrs.user;
        if !self.users.is_empty() && !self.users.contains(&user.username) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| self.user_groups.contains(g)) {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&attrs.verb) {
            return false;
        }
        if attrs.resource_request {
            // A rule for paths only does not match resources.
            if !self.non_resource_urls.is_empty() && self.resources.is_empty() && self.namespaces.is_empty() {
                return false;
            }
            if !self.namespaces.is_empty() && !self.namespaces.contains(&attrs.namespace) {
                return false;
            }
            self.resources.is_empty() || self.resources.iter().any(|gr| gr.matches(attrs))
        } else {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            self.non_resource_urls.is_empty() || self.non_resource_urls.iter().any(|u| path_matches(u, &attrs.path))
        }
    }
}

impl GroupResources {
    fn matches(&self, attrs: &Attributes) -> bool {
        if self.group != attrs.api_group {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = attrs.resource_and_subresource();
        let resource_ok = self.resources.iter().any(|r| {
            r == &combined
                || r == "*"
                || (attrs.subresource.is_empty() && r == &attrs.resource)
                || r.strip_prefix("*/").is_some_and(|s| !attrs.subresource.is_empty() && s == attrs.subresource)
                || r.strip_suffix("/*").is_some_and(|res| !attrs.subresource.is_empty() && res == attrs.resource)
        });
        resource_ok && (self.resource_names.is_empty() || self.resource_names.contains(&attrs.name))
    }
}

/// `/healthz`, or a prefix ending in `*`.
fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// What `berth server` gives the audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The log file (`-` for standard output).
    pub path: PathBuf,
    /// The policy.
    pub policy: Policy,
    /// Rotate past this many megabytes (0: 100 when another rotation flag is set, else never).
    pub max_size_mb: u64,
    /// Old files kept (0: all).
    pub max_backup: usize,
    /// Days old files are kept (0: no limit).
    pub max_age_days: u64,
}

/// Events queued for the writer before new ones are dropped.
const QUEUE: usize = 10_000;

/// The running audit log: the policy and the queue to the writer thread.
#[derive(Debug)]
pub struct Auditor {
    policy: Policy,
    queue: std::sync::mpsc::SyncSender<Vec<u8>>,
    dropped: AtomicU64,
}

impl Auditor {
    /// Opens the log and starts its writer thread.
    pub fn start(config: &AuditConfig) -> Result<Arc<Auditor>, AuditError> {
        let mut writer = Writer::open(config)?;
        let (queue, events) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Ok(first) = events.recv() {
                    writer.write(&first);
                    while let Ok(more) = events.try_recv() {
                        writer.write(&more);
                    }
                    writer.flush();
                }
            })
            .map_err(|source| AuditError::Io { path: config.path.clone(), source })?;
        Ok(Arc::new(Auditor { policy: config.policy.clone(), queue, dropped: AtomicU64::new(0) }))
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn emit(&self, event: &Value) {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        if self.queue.try_send(line).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "audit log queue full: events dropped");
            }
        }
    }
}

/// The log file with size-based rotation.
struct Writer {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    stdout: bool,
    size: u64,
    max_size: Option<u64>,
    max_backup: usize,
    max_age: Option<std::time::Duration>,
}

impl Writer {
    fn open(config: &AuditConfig) -> Result<Writer, AuditError> {
        let rotate = config.max_size_mb > 0 || config.max_backup > 0 || config.max_age_days > 0;
        let mb = if config.max_size_mb > 0 { config.max_size_mb } else { 100 };
        let mut w = Writer {
            path: config.path.clone(),
            out: None,
            stdout: config.path == Path::new("-"),
            size: 0,
            max_size: rotate.then_some(mb * 1024 * 1024),
            max_backup: config.max_backup,
            max_age: (config.max_age_days > 0).then(|| std::time::Duration::from_secs(config.max_age_days * 24 * 3600)),
        };
        if !w.stdout {
            w.reopen().map_err(|source| AuditError::Io { path: config.path.clone(), source })?;
        }
        Ok(w)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = Some(std::io::BufWriter::new(file));
        Ok(())
    }

    fn write(&mut self, line: &[u8]) {
        if self.stdout {
            let _ = std::io::stdout().write_all(line);
            return;
        }
        if let Some(max) = self.max_size
            && self.size > 0
            && self.size + line.len() as u64 > max
            && let Err(e) = self.rotate()
        {
            tracing::warn!(error = %e, "rotating the audit log");
        }
        if let Some(out) = &mut self.out {
            match out.write_all(line) {
                Ok(()) => self.size += line.len() as u64,
                Err(e) => tracing::warn!(error = %e, "writing the audit log"),
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            let _ = out.flush();
        } else if self.stdout {
            let _ = std::io::stdout().flush();
        }
    }

    /// Renames the file to its backup name, opens a new one, removes backups beyond the limits.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let (dir, stem, ext) = self.parts();
        let stamp = jiff::Timestamp::now().strftime("%Y-%m-%dT%H-%M-%S").to_string();
        let millis = jiff::Timestamp::now().subsec_millisecond();
        let stamp = format!("{stamp}.{millis:03}");
        let mut backup = dir.join(format!("{stem}-{stamp}{ext}"));
        let mut n = 1;
        while backup.exists() {
            backup = dir.join(format!("{stem}-{stamp}-{n}{ext}"));
            n += 1;
        }
        std::fs::rename(&self.path, &backup)?;
        self.reopen()?;
        self.prune(&dir, &stem, &ext);
        Ok(())
    }

    fn parts(&self) -> (PathBuf, String, String) {
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = self.path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        (dir, stem, ext)
    }

    /// The backups of this log, oldest first.
    fn backups(dir: &Path, stem: &str, ext: &str) -> Vec<(std::time::SystemTime, PathBuf)> {
        let prefix = format!("{stem}-");
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&prefix) && name.ends_with(ext)
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        found.sort();
        found
    }

    fn prune(&self, dir: &Path, stem: &str, ext: &str) {
        let backups = Self::backups(dir, stem, ext);
        let excess = if self.max_backup > 0 { backups.len().saturating_sub(self.max_backup) } else { 0 };
        for (i, (modified, path)) in backups.iter().enumerate() {
            let too_old = self.max_age.is_some_and(|age| modified.elapsed().is_ok_and(|e| e > age));
            if i < excess || too_old {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// A timestamp with microseconds, as `metav1.MicroTime` renders.
fn micro_time(t: jiff::Timestamp) -> String {
    let micros = t.subsec_microsecond();
    format!("{}.{micros:06}Z", t.strftime("%Y-%m-%dT%H:%M:%S"))
}

tokio::task_local! {
    static ANNOTATIONS: Arc<Mutex<BTreeMap<String, String>>>;
}

/// Adds an annotation to the audit event of the current request (a no-op without audit).
pub fn annotate(key: &str, value: &str) {
    let _ = ANNOTATIONS.try_with(|a| {
        a.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_string()).or_insert_with(|| value.to_string());
    });
}

/// The event's fixed part for one request.
struct Pending {
    auditor: Arc<Auditor>,
    event: Value,
    omit: Vec<Stage>,
}

impl Pending {
    fn emit(&self, stage: Stage, extra: impl FnOnce(&mut Value)) {
        if self.omit.contains(&stage) {
            return;
        }
        let mut e = self.event.clone();
        e["stage"] = json!(stage.as_str());
        e["stageTimestamp"] = json!(micro_time(jiff::Timestamp::now()));
        extra(&mut e);
        self.auditor.emit(&e);
    }
}

fn user_json(u: &UserInfo) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip_managed_fields);
    }
}

/// A body as the event records it: the decoded object (JSON, YAML or protobuf), else nothing.
fn decode_body(headers: &http::HeaderMap, bytes: &[u8], omit_managed_fields: bool) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let kind = crate::codec::body_type(headers).unwrap_or(crate::codec::BodyType::Json);
    let mut v = crate::codec::decode_object(kind, bytes).or_else(|_| crate::codec::decode_json(bytes)).ok()?;
    if omit_managed_fields {
        strip_managed_fields(&mut v);
    }
    Some(v)
}

/// Fills what only the end of a request knows into an event.
struct Finish {
    request_object: Option<Value>,
    annotations: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Finish {
    fn apply(&self, e: &mut Value, response_status: Value, response_object: Option<Value>) {
        e["responseStatus"] = response_status;
        if let Some(o) = &self.request_object {
            e["requestObject"] = o.clone();
        }
        if let Some(o) = response_object {
            e["responseObject"] = o;
        }
        let a = self.annotations.lock().unwrap_or_else(|e| e.into_inner()).clone();
        e["annotations"] = json!(a);
    }
}

/// The axum middleware: records the request's events at the level the policy gives.
pub async fn middleware(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(auditor) = app.auditor.clone() else { return next.run(req).await };
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else { return next.run(req).await };
    let path = crate::handler::percent_decode(req.uri().path());
    let attrs = Attributes::from_request(user.clone(), req.method(), &path, req.uri().query());
    let decision = auditor.policy().evaluate(&attrs);
    if decision.level == Level::None {
        return next.run(req).await;
    }
    let audit_id = uuid::Uuid::new_v4().to_string();
    let headers = req.headers().clone();
    let mut event = request_event(decision.level, &audit_id, &attrs, user_json(&user), &req);
    // The effective user and the authorizer's decision (impersonation as the authorizer applies it).
    let effective = match crate::authz::impersonation::impersonate(&app.authorizer, user.clone(), &headers) {
        Ok(Some(impersonated)) => {
            event["impersonatedUser"] = user_json(&impersonated);
            Some(impersonated)
        }
        Ok(None) => Some(user.clone()),
        Err(_) => None,
    };
    let allowed = effective.is_some_and(|u| {
        let attrs = Attributes::from_request(u, req.method(), &path, req.uri().query());
        app.authorizer.authorize(&attrs)
    });
    let mut pending = Pending { auditor: auditor.clone(), event, omit: decision.omit_stages.clone() };
    pending.emit(Stage::RequestReceived, |_| {});
    // The request body, when the level records it or (creates) to name the object, as Kubernetes does.
    let creates = attrs.verb == "create" && attrs.resource_request && attrs.name.is_empty();
    let (req, request_object) = if (decision.level >= Level::Request || creates) && req.method() != Method::GET {
        let (parts, body) = req.into_parts();
        let bytes = match http_body_util::Limited::new(body, crate::codec::MAX_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let object = decode_body(&headers, &bytes, decision.omit_managed_fields);
        let name = object.as_ref().and_then(|o| o.pointer("/metadata/name")).and_then(Value::as_str);
        if let Some(name) = name.filter(|n| !n.is_empty() && creates) {
            pending.event["objectRef"]["name"] = json!(name);
        }
        let recorded = if decision.level >= Level::Request { object } else { None };
        (Request::from_parts(parts, Body::from(bytes)), recorded)
    } else {
        (req, None)
    };
    let mut initial = BTreeMap::new();
    initial.insert("authorization.k8s.io/decision".to_string(), if allowed { "allow" } else { "forbid" }.to_string());
    initial.insert("authorization.k8s.io/reason".to_string(), String::new());
    let annotations = Arc::new(Mutex::new(initial));
    let mut resp = recording_panics(&pending, ANNOTATIONS.scope(annotations.clone(), next.run(req))).await;
    if let Ok(v) = HeaderValue::from_str(&audit_id) {
        resp.headers_mut().insert("audit-id", v);
    }
    let finish = Finish { request_object, annotations };
    let code = resp.status().as_u16();
    let level = decision.level;
    if attrs.verb == "watch" && code == 200 {
        let status = json!({ "metadata": {}, "code": code });
        pending.emit(Stage::ResponseStarted, |e| finish.apply(e, status.clone(), None));
        let (parts, body) = resp.into_parts();
        let done = Box::new(move || pending.emit(Stage::ResponseComplete, |e| finish.apply(e, status, None)));
        return Response::from_parts(parts, Body::new(Audited { inner: body, done: Some(done) }));
    }
    let is_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let (resp, body) = if is_json && (code >= 400 || level == Level::RequestResponse) {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        (Response::from_parts(parts, Body::from(bytes)), value)
    } else {
        (resp, None)
    };
    let status = response_status(code, body.as_ref());
    let response_object = if level == Level::RequestResponse {
        body.map(|mut b| {
            if decision.omit_managed_fields {
                strip_managed_fields(&mut b);
            }
            b
        })
    } else {
        None
    };
    pending.emit(Stage::ResponseComplete, |e| finish.apply(e, status, response_object));
    resp
}

/// Runs the rest of the chain; a panic in it is recorded as a `Panic` event (status 500,
/// `APIServer panic'd: ...`) and then goes on unwinding to the panic recovery, which answers
/// the request: Kubernetes' audit filter does the same.
async fn recording_panics(pending: &Pending, rest: impl Future<Output = Response>) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(rest).catch_unwind().await {
        Ok(response) => response,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".into());
            pending.emit(Stage::Panic, |e| {
                e["responseStatus"] = json!({
                    "metadata": {}, "status": "Failure", "code": 500, "message": format!("APIServer panic'd: {what}"),
                });
            });
            std::panic::resume_unwind(payload)
        }
    }
}

/// What every event of a request holds: who, what, from where, when (now: the request has
/// just come in).
fn request_event(level: Level, audit_id: &str, attrs: &Attributes, user: Value, req: &Request) -> Value {
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level.as_str(),
        "auditID": audit_id,
        "requestURI": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "verb": attrs.verb,
        "user": user,
        "sourceIPs": source_ips(req),
        "requestReceivedTimestamp": micro_time(jiff::Timestamp::now()),
    });
    if let Some(ua) = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        event["userAgent"] = json!(ua);
    }
    if attrs.resource_request {
        let mut r = json!({ "resource": attrs.resource, "apiVersion": attrs.api_version });
        for (k, v) in [
            ("namespace", &attrs.namespace),
            ("name", &attrs.name),
            ("apiGroup", &attrs.api_group),
            ("subresource", &attrs.subresource),
        ] {
            if !v.is_empty() {
                r[k] = json!(v);
            }
        }
        event["objectRef"] = r;
    }
    event
}

/// Records requests that failed authentication (401), which [`middleware`] never sees: as
/// Kubernetes does, one ResponseStarted event with an empty user, at the level the policy
/// gives the request. Sits outside authentication.
pub async fn failed_authentication(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(auditor) = app.auditor.clone() else { return next.run(req).await };
    let path = crate::handler::percent_decode(req.uri().path());
    let nobody = UserInfo { username: String::new(), uid: String::new(), groups: Vec::new(), extra: BTreeMap::new() };
    let attrs = Attributes::from_request(nobody, req.method(), &path, req.uri().query());
    let decision = auditor.policy().evaluate(&attrs);
    if decision.level == Level::None {
        return next.run(req).await;
    }
    let audit_id = uuid::Uuid::new_v4().to_string();
    let event = request_event(decision.level, &audit_id, &attrs, json!({}), &req);
    let mut resp = next.run(req).await;
    if resp.status() == http::StatusCode::UNAUTHORIZED {
        if let Ok(v) = HeaderValue::from_str(&audit_id) {
            resp.headers_mut().insert("audit-id", v);
        }
        let pending = Pending { auditor, event, omit: decision.omit_stages };
        let status = json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
        pending.emit(Stage::ResponseStarted, |e| e["responseStatus"] = status);
    }
    resp
}

/// `responseStatus`: the code, and for a failure the Status's fields.
fn response_status(code: u16, body: Option<&Value>) -> Value {
    let mut s = json!({ "metadata": {}, "code": code });
    if let Some(b) = body.filter(|b| b.get("kind").and_then(Value::as_str) == Some("Status")) {
        for k in ["status", "message", "reason", "details"] {
            if let Some(v) = b.get(k) {
                s[k] = v.clone();
            }
        }
    }
    s
}

/// `sourceIPs`: X-Forwarded-For, X-Real-Ip, then the connection's peer.
fn source_ips(req: &Request) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Some(xff) = header("x-forwarded-for") {
        ips.extend(xff.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    if let Some(real) = header("x-real-ip")
        && !ips.contains(&real)
    {
        ips.push(real);
    }
    if let Some(peer) = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        let ip = peer.0.ip().to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// A response body that records ResponseComplete when it ends or is dropped (watches).
struct Audited {
    inner: Body,
    done: Option<Box<dyn FnOnce() + Send>>,
}

impl HttpBody for Audited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done();
        }
    }
}

#[cfg(test)]
mod tests;
