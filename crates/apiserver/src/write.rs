//! Writes: create, update (main resource, status, finalize), patch (JSON, merge,
//! strategic merge, server-side apply), delete with finalizers and grace periods,
//! deletecollection, and the pod binding and eviction subresources.
//!
//! Every write goes through the same steps: decode → check type meta → field
//! validation (unknown/duplicate fields, types) → prepare metadata → defaults →
//! validation → managed fields → compare-and-swap in the store. Nothing is written
//! when any step fails, and `dryRun=All` stops just before the store.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use berth_api::schema::Node;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::cache::CachedObject;
use crate::codec::{self, BodyType};
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::handler::Ctx;
use crate::params::{FieldValidation, Propagation};
use crate::read::{self, render_one_with};
use crate::resources::Served;
use crate::{object, scale};

/// How often an optimistic read-modify-write (patch, delete) is retried on conflict.
const RETRIES: usize = 8;

/// The schema of a served resource's objects.
pub fn schema_of(served: &Served) -> Option<Node<'_>> {
    match &served.custom {
        Some(c) => Some(Node::new(&c.schema)),
        None => berth_api::schema::definition(&served.info.definition),
    }
}

/// Warnings to send back in `Warning` headers.
#[derive(Default)]
struct Warnings(Vec<String>);

fn with_warnings(mut resp: Response, warnings: &Warnings) -> Response {
    for w in &warnings.0 {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// Checks apiVersion and kind against the URL, filling them in when absent.
fn check_type_meta(served: &Served, obj: &mut Value, expect_kind: &str, expect_api_version: &str) -> ApiResult<()> {
    let m = obj.as_object_mut().ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), json!(expect_api_version));
        }
        Some(v) if v == expect_api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expect_api_version})"
            )));
        }
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), json!(expect_kind));
        }
        Some(k) if k == expect_kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({expect_kind}) of {}",
                served.info.group_resource()
            )));
        }
    }
    if let Some(meta) = m.get("metadata")
        && !meta.is_object()
        && !meta.is_null()
    {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: metadata: expected an object, got {}",
            served.info.kind,
            served.info.version,
            served.info.kind,
            codec::type_name(meta)
        )));
    }
    Ok(())
}

/// Unknown and duplicate fields, wrong types: Strict fails, Warn warns, Ignore ignores;
/// unknown fields are pruned in every mode (custom resources keep what their schema preserves).
fn check_fields(ctx: &Ctx, obj: &mut Value, raw: Option<&[u8]>, warnings: &mut Warnings) -> ApiResult<()> {
    check_fields_against(ctx, obj, raw, None, warnings)
}

/// [`check_fields`] of an object a patch made from the stored `old`. For a built-in kind
/// only the top-level fields that differ from `old`'s are walked: the others were checked by
/// the same schema when they were written. (A custom resource's schema may have changed
/// since: its objects are checked whole.)
fn check_fields_changed(ctx: &Ctx, obj: &mut Value, old: &Value, warnings: &mut Warnings) -> ApiResult<()> {
    let same = if ctx.served.custom.is_none() { Some(old) } else { None };
    check_fields_against(ctx, obj, None, same, warnings)
}

fn check_fields_against(
    ctx: &Ctx,
    obj: &mut Value,
    raw: Option<&[u8]>,
    same: Option<&Value>,
    warnings: &mut Warnings,
) -> ApiResult<()> {
    let Some(schema) = schema_of(&ctx.served) else { return Ok(()) };
    let mut problems: Vec<String> = Vec::new();
    if let Some(raw) = raw {
        for path in berth_api::fields::duplicate_fields(raw) {
            problems.push(format!("duplicate field \"{}\"", path.trim_start_matches('.')));
        }
    }
    let unknown = match same {
        Some(old) => berth_api::fields::prune_unknown_changed(schema, obj, old),
        None => berth_api::fields::prune_unknown(schema, obj),
    };
    for path in unknown {
        problems.push(format!("unknown field \"{}\"", path.trim_start_matches('.')));
    }
    if ctx.served.custom.is_none() {
        let type_errors = match same {
            Some(old) => berth_api::fields::check_types_changed(schema, obj, old),
            None => berth_api::fields::check_types(schema, obj),
        };
        if let Some(first) = type_errors.first() {
            let info = &ctx.served.info;
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {first}",
                info.kind, info.version, info.kind
            )));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    match ctx.params.field_validation {
        FieldValidation::Strict => {
            Err(ApiError::bad_request(format!("strict decoding error: {}", problems.join(", "))))
        }
        FieldValidation::Warn => {
            warnings.0.extend(problems);
            Ok(())
        }
        FieldValidation::Ignore => Ok(()),
    }
}

/// Decodes a create/update body and runs the type-meta and field checks.
fn decode_checked(ctx: &Ctx, body: &[u8], warnings: &mut Warnings) -> ApiResult<Value> {
    let kind = codec::body_type(&ctx.headers)?;
    let mut obj = codec::decode_object(kind, body)?;
    let info = &ctx.served.info;
    check_type_meta(&ctx.served, &mut obj, &info.kind, &info.api_version())?;
    if kind == BodyType::Yaml
        && ctx.params.field_validation == FieldValidation::Strict
        && let Some(dup) = codec::yaml_duplicate_keys(body)
    {
        return Err(ApiError::bad_request(format!("strict decoding error: yaml: {dup}")));
    }
    let raw = (kind == BodyType::Json).then_some(body);
    check_fields(ctx, &mut obj, raw, warnings)?;
    Ok(obj)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Checks that the request's namespace exists and is not terminating. As Kubernetes'
/// NamespaceLifecycle admission does, it reads the namespace from the cache and asks
/// the store only when the cache does not have it (yet).
async fn check_namespace(ctx: &Ctx, ns: &str, name: &str) -> ApiResult<()> {
    let key = format!("/registry/core/namespaces/{ns}");
    let live_lookup = {
        let mut recent = ctx.app.deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, at| at.elapsed() < std::time::Duration::from_secs(30));
        recent.contains_key(ns)
    };
    let cached = if live_lookup { None } else { ctx.app.cache.get(&key) };
    let deleting = match cached {
        Some(cached) => object::is_deleting(&cached.value),
        None => {
            let info = berth_api::registry::find_builtin("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
            let kv = ctx.app.store.get(&key).await?.ok_or_else(|| ApiError::not_found(info, ns))?;
            let nsobj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
            object::is_deleting(&nsobj)
        }
    };
    if deleting {
        return Err(ApiError::forbidden(
            &ctx.served.info,
            name,
            format!("unable to create new content in namespace {ns} because it is being terminated"),
        ));
    }
    Ok(())
}

fn is_service(served: &Served) -> bool {
    served.info.group.is_empty() && served.info.plural == "services"
}

fn crd_resource(ctx: &Ctx) -> bool {
    ctx.served.info.group == "apiextensions.k8s.io" && ctx.served.info.plural == "customresourcedefinitions"
}

/// Server-set metadata of a new object; status reset where the kind's strategy resets it.
fn prepare_create(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let info = &ctx.served.info;
    let meta = object::meta_mut(obj).ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if info.namespaced {
        let ns = ctx.namespace().unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(ns));
            }
            Some(given) if given == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let has_name = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if !has_name && let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        let name = format!("{prefix}{}", random_suffix());
        meta.insert("name".into(), json!(name));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now()));
    for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(k);
    }
    let has_spec = obj.get("spec").is_some();
    if let Some(meta) = object::meta_mut(obj) {
        if has_spec || ctx.served.custom.is_some() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    if info.has_subresource("status")
        && !matches!(info.kind.as_str(), "Node" | "Namespace")
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    if info.group.is_empty() && info.kind == "Pod" {
        scheduling_gated(obj);
    }
    Ok(())
}

/// A pod created with scheduling gates starts with PodScheduled=False, reason
/// SchedulingGated, as Kubernetes' pod strategy sets it at create (the scheduler leaves
/// the pod alone until the last gate is removed).
fn scheduling_gated(obj: &mut Value) {
    let gated = obj.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty());
    if !gated {
        return;
    }
    let condition = json!({"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates",
        "lastProbeTime": null, "lastTransitionTime": object::now()});
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), json!({"conditions": [condition]}));
    }
}

/// Defaults, validation and managed fields for an object about to be written.
/// `track`: record the write in managedFields as an Update (server-side apply records its own).
async fn admit(
    ctx: &Ctx,
    obj: &mut Value,
    old: Option<&Value>,
    subresource: Option<&str>,
    track: bool,
) -> ApiResult<()> {
    let served = &ctx.served;
    apply_defaults(ctx, obj, true);
    let mut errors = match &served.custom {
        Some(c) => {
            let mut e = berth_api::validation::validate_metadata(&served.info, obj, old);
            e.extend(berth_api::fields::validate_custom(Node::new(&c.schema), obj));
            // As the apiextensions apiserver: rules run once the values have their types.
            if !e.iter().any(|e| e.kind == berth_api::FieldErrorKind::TypeInvalid) {
                e.extend(crate::crd_rules::validate(&c.schema, obj, old));
            }
            e
        }
        // A Pod's status write keeps its spec: as Kubernetes' ValidatePodStatusUpdate, check
        // metadata (the spec was valid when written; validating it again finds nothing).
        None if subresource == Some("status")
            && served.info.group.is_empty()
            && served.info.kind == "Pod"
            && old.is_some_and(|o| o.get("spec") == obj.get("spec")) =>
        {
            berth_api::validation::validate_metadata(&served.info, obj, old)
        }
        None if subresource == Some("ephemeralcontainers") && old.is_some() => {
            let old = old.unwrap_or(&Value::Null);
            berth_api::validation::validate_ephemeral_containers_update(&served.info, obj, old)
        }
        None => berth_api::validation::validate(&served.info, obj, old),
    };
    if served.info.kind == "CustomResourceDefinition" {
        // Names, versions and scope are the CRD kind's validation; the schemas' structure is checked here.
        errors.extend(berth_api::crd::validate_schemas(obj));
        errors.extend(crate::crd_rules::validate_crd(obj));
    }
    errors.extend(crate::webhook::validate_configuration(&served.info, obj));
    errors.extend(crate::admission_policy::validate_configuration(&served.info, obj));
    if !errors.is_empty() {
        return Err(ApiError::invalid(&served.info, object::name(obj), &errors));
    }
    crate::authz::escalation::check(ctx, obj)?;
    crate::priority::admit_class(ctx, obj)?;
    crate::node_restriction::admit(ctx, obj, old)?;
    crate::pvc_resize::admit(ctx, obj, old)?;
    if is_service(served) && subresource.is_none() {
        crate::services::allocate(&ctx.app, obj, old).await?;
    }
    if track {
        track_update(ctx, obj, old, subresource);
    }
    Ok(())
}

/// The kind's defaults (the schema's for custom resources); `admission`: also the values
/// Kubernetes' admission plugins set on every Pod.
fn apply_defaults(ctx: &Ctx, obj: &mut Value, admission: bool) {
    match &ctx.served.custom {
        Some(c) => berth_api::fields::apply_defaults(Node::new(&c.schema), obj),
        None if admission => berth_api::defaults::apply(&ctx.served.info, obj),
        None => berth_api::defaults::apply_scheme(&ctx.served.info, obj),
    }
}

/// Records this write in managedFields as an Update by the request's field manager.
fn track_update(ctx: &Ctx, obj: &mut Value, old: Option<&Value>, subresource: Option<&str>) {
    if let Some(schema) = schema_of(&ctx.served) {
        let (manager, now, version) = (ctx.manager(), object::now(), ctx.served.info.api_version());
        berth_api::apply::track_update(schema, old, obj, &manager, &now, &version, subresource);
    }
}

fn created_response(ctx: &Ctx, obj: &Value, warnings: &Warnings) -> Response {
    with_warnings(render_written(ctx, obj, StatusCode::CREATED), warnings)
}

/// An object this request has written, with its resourceVersion set.
enum Written {
    /// The watch cache's state of the object at the written revision: the object the
    /// request handed to the cache (see [`encode_and_prime`]), and its JSON encoding.
    Cached(Arc<CachedObject>),
    /// The object itself (dry run, no-op, delete, a converted resource, or the cache not
    /// there yet).
    Owned(Value),
    /// Only the object's JSON encoding, for a request whose answer is that alone
    /// ([`answers_json_only`]) when the cache has not taken the object yet.
    Json(Bytes),
}

impl Written {
    /// The object, unless only its encoding was kept ([`Written::Json`]).
    fn value(&self) -> Option<&Value> {
        match self {
            Written::Cached(c) => Some(&c.value),
            Written::Owned(v) => Some(v),
            Written::Json(_) => None,
        }
    }

    /// The object, for a request that keeps it.
    fn required(&self) -> ApiResult<&Value> {
        self.value().ok_or_else(|| ApiError::internal("the written object was not kept"))
    }
}

/// True when a write's answer is the written object's JSON and nothing else needs the
/// object afterwards (a CRD rebuilds the served resources from it; a scale write answers
/// with a Scale).
fn answers_json_only(ctx: &Ctx) -> bool {
    ctx.out == codec::Output::Json
        && ctx.served.conversion.is_none()
        && !crd_resource(ctx)
        && ctx.path.subresource.as_deref() != Some("scale")
}

/// Renders an object this request has just written. A JSON answer reuses the bytes the
/// watch cache encoded for that revision when the cache has it already (it usually does:
/// the store publishes the event before it answers the write).
fn render_written(ctx: &Ctx, obj: &Value, code: StatusCode) -> Response {
    if ctx.out == codec::Output::Json && ctx.served.conversion.is_none() && !ctx.params.dry_run {
        let key = ctx.served.key(object::meta_str(obj, "namespace"), object::name(obj));
        if let (Some(cached), Ok(Some(rv))) = (ctx.app.cache.get(&key), object::resource_version(obj))
            && cached.revision == rv
        {
            return codec::with_bytes(code, cached.json.clone(), "application/json");
        }
    }
    render_one_with(ctx, obj, code)
}

/// [`render_written`] of a [`Written`]: the cache's bytes when it is the cache's state.
fn render_written_object(ctx: &Ctx, written: &Written, code: StatusCode) -> Response {
    match written {
        Written::Cached(c) if ctx.out == codec::Output::Json && ctx.served.conversion.is_none() => {
            codec::with_bytes(code, c.json.clone(), "application/json")
        }
        Written::Json(json) => codec::with_bytes(code, json.clone(), "application/json"),
        Written::Cached(c) => render_written(ctx, &c.value, code),
        Written::Owned(v) => render_written(ctx, v, code),
    }
}

/// POST to a collection.
pub async fn create(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let mut warnings = Warnings::default();
    let obj = decode_checked(&ctx, &body, &mut warnings)?;
    if crate::reviews::is_review(&ctx.served) {
        if ctx.served.info.kind == "TokenReview" {
            let answered = crate::reviews::token_review(&ctx, obj)?;
            return Ok(created_response(&ctx, &answered, &warnings));
        }
        let answered = match crate::reviews::answer_access(&ctx, &obj) {
            Some(answer) => answer?,
            None => crate::reviews::answer(&ctx.served, ctx.user.as_ref(), obj)?,
        };
        return Ok(created_response(&ctx, &answered, &warnings));
    }
    if let Some(w) = crate::pod_security::warning(&ctx, &obj) {
        warnings.0.push(w);
    }
    let obj = create_object(&ctx, obj, true).await?;
    Ok(with_warnings(render_written_object(&ctx, &obj, StatusCode::CREATED), &warnings))
}

/// The create path shared by POST and server-side apply of a new object (`track` as in [`admit`]).
async fn create_object(ctx: &Ctx, mut obj: Value, track: bool) -> ApiResult<Written> {
    if let Some(ns) = ctx.namespace() {
        check_namespace(ctx, ns, object::name(&obj)).await?;
    }
    prepare_create(ctx, &mut obj)?;
    if crd_resource(ctx) {
        crate::crd::set_status(&mut obj);
    }
    let generated = object::meta_str(&obj, "generateName").is_some() && ctx.path.name.is_none();
    // The creator owns what it sent and the defaults, not what admission adds below (as
    // Kubernetes records managedFields before mutating admission).
    if track {
        apply_defaults(ctx, &mut obj, false);
        track_update(ctx, &mut obj, None, None);
    }
    crate::certificates::prepare_create(ctx, &mut obj)?;
    crate::priority::admit_pod(ctx, &mut obj)?;
    crate::default_storage_class::admit(ctx, &mut obj);
    crate::storage_protection::admit(ctx, &mut obj);
    crate::service_account::admit(ctx, &mut obj).await?;
    crate::limit_ranger::apply_defaults(ctx, &mut obj);
    crate::webhook::mutate(ctx, &mut obj, None).await?;
    admit(ctx, &mut obj, None, None, false).await?;
    crate::limit_ranger::validate(ctx, &obj)?;
    crate::pod_security::enforce(ctx, &obj)?;
    crate::webhook::validate(ctx, &obj, None).await?;
    crate::admission_policy::validate(ctx, Some(&obj), None)?;
    crate::resource_quota::admit(ctx, &obj).await?;
    if ctx.params.dry_run {
        return Ok(Written::Owned(obj));
    }
    for attempt in 0..3 {
        let name = object::name(&obj).to_string();
        let key = ctx.served.key(object::meta_str(&obj, "namespace"), &name);
        let encoded = encode_and_prime(ctx, &key, obj);
        match ctx.app.store.create(&key, encoded.stored.clone()).await {
            Ok(kv) => {
                let written = written(ctx, &key, encoded, kv.mod_revision)?;
                if let Some(obj) = written.value() {
                    crate::crd::after_write(ctx, obj);
                }
                return Ok(written);
            }
            Err(berth_store::Error::AlreadyExists(_)) if generated && attempt < 2 => {
                obj = reclaim(ctx, &key, encoded)?;
                let prefix = object::meta_str(&obj, "generateName").unwrap_or("").to_string();
                if let Some(m) = object::meta_mut(&mut obj) {
                    m.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
                }
            }
            Err(berth_store::Error::AlreadyExists(_)) => return Err(ApiError::already_exists(&ctx.served.info, &name)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::already_exists(&ctx.served.info, object::name(&obj)))
}

/// Copies what a write may not change from the stored object: immutable metadata, and
/// status (for main-resource writes) or everything but status (for status writes).
fn carry_over(ctx: &Ctx, new: &mut Value, old: &Value, subresource: Option<&str>) -> ApiResult<()> {
    let info = &ctx.served.info;
    crate::csr_admission::admit(ctx, new, old, subresource)?;
    let subresource = crate::certificates::carry_over(ctx, new, old, subresource)?;
    match subresource {
        Some("status") => {
            // Status writers may not touch spec or metadata (except through the main resource):
            // `new` becomes `old` with `new`'s status, copying only what differs from `old`.
            match (new.as_object_mut(), old.as_object()) {
                (Some(n), Some(o)) => {
                    n.retain(|k, _| k == "status" || o.contains_key(k));
                    for (k, v) in o {
                        if k != "status" && n.get(k) != Some(v) {
                            n.insert(k.clone(), v.clone());
                        }
                    }
                }
                _ => {
                    let status = new.get("status").cloned();
                    let mut merged = old.clone();
                    match status {
                        Some(s) => merged["status"] = s,
                        None => {
                            if let Some(o) = merged.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                    *new = merged;
                }
            }
        }
        Some("ephemeralcontainers") => {
            // Kubernetes' dropNonEphemeralContainerUpdates: the stored pod with the request's
            // ephemeral containers; everything else the request says is ignored.
            let ephemeral = new.pointer("/spec/ephemeralContainers").cloned();
            let rv = new.pointer("/metadata/resourceVersion").cloned();
            let mut merged = old.clone();
            if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                match ephemeral {
                    Some(list) if !list.is_null() => spec.insert("ephemeralContainers".into(), list),
                    _ => spec.remove("ephemeralContainers"),
                };
            }
            if let (Some(rv), Some(meta)) = (rv, object::meta_mut(&mut merged)) {
                meta.insert("resourceVersion".into(), rv);
            }
            *new = merged;
        }
        Some("finalize") => {
            let finalizers = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = finalizers;
            *new = merged;
        }
        _ => {
            if info.has_subresource("status") {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
        }
    }
    let no_meta = Map::new();
    let old_meta = old.get("metadata").and_then(Value::as_object).unwrap_or(&no_meta);
    let meta = object::meta_mut(new).ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
    if let Some(uid) = meta.get("uid").and_then(Value::as_str)
        && !uid.is_empty()
        && Some(uid) != old_meta.get("uid").and_then(Value::as_str)
    {
        return Err(ApiError::conflict(
            info,
            object::name(old),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old_meta.get("uid").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_meta.get(k) {
            Some(v) => {
                meta.insert(k.into(), v.clone());
            }
            None => {
                meta.remove(k);
            }
        }
    }
    Ok(())
}

/// `metadata.generation` counts changes of everything but metadata and status; compared
/// after defaulting, so a write that only restates defaults is not a new generation.
fn bump_generation(new: &mut Value, old: &Value) {
    let Some(generation) = old.pointer("/metadata/generation").and_then(Value::as_i64) else { return };
    let differs = match (new.as_object(), old.as_object()) {
        (Some(n), Some(o)) => {
            let keys = n.keys().chain(o.keys()).filter(|k| *k != "metadata" && *k != "status");
            keys.into_iter().any(|k| n.get(k) != o.get(k))
        }
        _ => true,
    };
    if differs && let Some(m) = object::meta_mut(new) {
        m.insert("generation".into(), json!(generation + 1));
    }
}

/// True when `a` and `b` are equal but for `metadata.resourceVersion` and `managedFields`
/// (a write that changes nothing else is a no-op), compared without copying them.
fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    let (Some(am), Some(bm)) = (a.as_object(), b.as_object()) else { return a == b };
    let bookkeeping = |k: &str| k == "resourceVersion" || k == "managedFields";
    let same_meta = match (am.get("metadata"), bm.get("metadata")) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let (mut xs, mut ys) =
                (x.iter().filter(|(k, _)| !bookkeeping(k)), y.iter().filter(|(k, _)| !bookkeeping(k)));
            loop {
                match (xs.next(), ys.next()) {
                    (None, None) => break true,
                    (Some(p), Some(q)) if p == q => {}
                    _ => break false,
                }
            }
        }
        (x, y) => x == y,
    };
    same_meta && am.len() == bm.len() && am.iter().all(|(k, v)| k == "metadata" || bm.get(k) == Some(v))
}

/// Writes `new` over `old` with compare-and-swap; removes the object when it is being
/// deleted with no grace period left and its last finalizer is gone (a pod still in its
/// grace period waits for its kubelet's final delete, as Kubernetes'
/// ShouldDeleteDuringUpdate). A no-op write returns the stored object.
async fn commit_update(ctx: &Ctx, old: &CachedObject, mut new: Value) -> ApiResult<Written> {
    bump_generation(&mut new, &old.value);
    if same_but_bookkeeping(&new, &old.value) {
        return Ok(Written::Owned(old.value.clone()));
    }
    if ctx.params.dry_run {
        object::set_resource_version(&mut new, old.revision);
        return Ok(Written::Owned(new));
    }
    // A namespace also waits for its spec finalizers (the namespace controller's).
    let namespace_finalizers = ctx.served.info.group.is_empty()
        && ctx.served.info.plural == "namespaces"
        && new.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    let no_grace_left =
        old.value.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0;
    if object::is_deleting(&new) && object::finalizers(&new).is_empty() && !namespace_finalizers && no_grace_left {
        let kv = ctx.app.store.delete(&old.key, Some(old.revision)).await.map_err(|e| map_cas(ctx, e))?;
        object::set_resource_version(&mut new, kv.mod_revision);
        return Ok(Written::Owned(new));
    }
    if let Some(m) = object::meta_mut(&mut new) {
        m.remove("resourceVersion");
    }
    let encoded = encode_and_prime(ctx, &old.key, new);
    let kv = ctx.app.store.update(&old.key, encoded.stored.clone(), old.revision).await.map_err(|e| map_cas(ctx, e))?;
    let written = written(ctx, &old.key, encoded, kv.mod_revision)?;
    if let Some(obj) = written.value() {
        crate::crd::after_write(ctx, obj);
    }
    Ok(written)
}

/// An object on its way to the store: its store encoding, and the object itself unless
/// the watch cache holds it until the store's event for the write takes it.
struct Encoded {
    stored: Bytes,
    kept: Option<Value>,
}

/// The store encoding of `obj` (which has no resourceVersion). The object is handed to the
/// watch cache, which takes it when the store's event for the write arrives (no copy, and
/// no decoding of the bytes); [`written`] gets it back from there.
fn encode_and_prime(ctx: &Ctx, key: &str, obj: Value) -> Encoded {
    let stored = ctx.served.to_store(&obj);
    if ctx.served.conversion.is_none() {
        ctx.app.cache.prime(key, stored.clone(), obj);
        Encoded { stored, kept: None }
    } else {
        Encoded { stored, kept: Some(obj) }
    }
}

/// The object a write stored at `key` at `revision`: the cache's state when the store's
/// event reached it already (usually), else while the event has not taken the primed
/// object its encoding (spliced from the stored bytes) when that is all the answer needs,
/// or a copy of it; else (a later write to the key was applied in between, or the primed
/// objects were dropped) the stored bytes decoded.
fn written(ctx: &Ctx, key: &str, encoded: Encoded, revision: berth_store::Revision) -> ApiResult<Written> {
    let mut obj = match encoded.kept {
        Some(obj) => obj,
        None => {
            if let Some(cached) = ctx.app.cache.get(key)
                && cached.revision == revision
            {
                return Ok(Written::Cached(cached));
            }
            if answers_json_only(ctx)
                && let Some(json) = ctx.app.cache.primed_json(key, &encoded.stored, revision)
            {
                return Ok(Written::Json(json));
            }
            match ctx.app.cache.primed_copy(key, &encoded.stored) {
                Some(obj) => obj,
                None => serde_json::from_slice(&encoded.stored).map_err(ApiError::internal)?,
            }
        }
    };
    object::set_resource_version(&mut obj, revision);
    Ok(Written::Owned(obj))
}

/// The object of a write that failed, taken back from the cache (or decoded again).
fn reclaim(ctx: &Ctx, key: &str, encoded: Encoded) -> ApiResult<Value> {
    match encoded.kept.or_else(|| ctx.app.cache.unprime(key, &encoded.stored)) {
        Some(obj) => Ok(obj),
        None => serde_json::from_slice(&encoded.stored).map_err(ApiError::internal),
    }
}

fn map_cas(ctx: &Ctx, e: berth_store::Error) -> ApiError {
    match e {
        berth_store::Error::Conflict { .. } => ApiError::stale(&ctx.served.info, ctx.name()),
        berth_store::Error::NotFound(_) => ApiError::not_found(&ctx.served.info, ctx.name()),
        other => other.into(),
    }
}

/// PUT of an object, its status, or a namespace's finalizers.
pub async fn update(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let mut warnings = Warnings::default();
    let mut new = decode_checked(&ctx, &body, &mut warnings)?;
    let name = object::name(&new).to_string();
    if name != ctx.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            ctx.name()
        )));
    }
    if let (Some(ns), Some(given)) = (ctx.namespace(), object::meta_str(&new, "namespace"))
        && !given.is_empty()
        && given != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let old = read::load(&ctx).await?;
    let expected = object::resource_version(&new).map_err(|rv| {
        ApiError::bad_request(format!("metadata.resourceVersion: Invalid value: {rv:?}: must be an integer"))
    })?;
    if let Some(rv) = expected
        && rv != old.revision
    {
        return Err(ApiError::stale(&ctx.served.info, ctx.name()));
    }
    let sub = ctx.path.subresource.as_deref();
    carry_over(&ctx, &mut new, &old.value, sub)?;
    crate::webhook::mutate(&ctx, &mut new, Some(&old.value)).await?;
    admit(&ctx, &mut new, Some(&old.value), sub, true).await?;
    if let Some(w) = crate::pod_security::admit_update(&ctx, &new, &old.value, sub)? {
        warnings.0.push(w);
    }
    crate::webhook::validate(&ctx, &new, Some(&old.value)).await?;
    crate::admission_policy::validate(&ctx, Some(&new), Some(&old.value))?;
    let written = commit_update(&ctx, &old, new).await?;
    Ok(with_warnings(render_written_object(&ctx, &written, StatusCode::OK), &warnings))
}

/// PUT of the scale subresource.
pub async fn update_scale(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let kind = codec::body_type(&ctx.headers)?;
    let scale_obj = codec::decode_object(kind, &body)?;
    let old = read::load(&ctx).await?;
    if let Ok(Some(rv)) = object::resource_version(&scale_obj)
        && rv != old.revision
    {
        return Err(ApiError::stale(&ctx.served.info, ctx.name()));
    }
    let mut new = old.value.clone();
    scale::apply_scale(&ctx.served, &mut new, &scale_obj)?;
    carry_over(&ctx, &mut new, &old.value, None)?;
    crate::webhook::mutate(&ctx, &mut new, Some(&old.value)).await?;
    admit(&ctx, &mut new, Some(&old.value), Some("scale"), true).await?;
    crate::webhook::validate(&ctx, &new, Some(&old.value)).await?;
    crate::admission_policy::validate(&ctx, Some(&new), Some(&old.value))?;
    let written = commit_update(&ctx, &old, new).await?;
    Ok(codec::respond(StatusCode::OK, &scale::to_scale(&ctx.served, written.required()?)?, ctx.out))
}

/// PATCH of an object, its status or its scale.
pub async fn patch(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let kind = codec::body_type(&ctx.headers)?;
    let sub = ctx.path.subresource.clone();
    if kind == BodyType::ApplyPatch && ctx.params.field_manager.is_none() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    }
    let patch: Value = match kind {
        BodyType::ApplyPatch | BodyType::Yaml => codec::decode_yaml(&body)?,
        BodyType::JsonPatch | BodyType::MergePatch | BodyType::StrategicMergePatch | BodyType::Json => {
            codec::decode_json(&body)?
        }
        BodyType::Protobuf => return Err(ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf")),
    };
    if kind == BodyType::StrategicMergePatch && ctx.served.custom.is_some() {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json (strategic merge patch is not supported for custom resources; use merge patch)",
        ));
    }
    let mut warnings = Warnings::default();
    for attempt in 0..RETRIES {
        // Warnings of an attempt that is retried are not sent twice.
        warnings.0.clear();
        // The first attempt starts from the watch cache's copy; a stale copy fails the
        // compare-and-swap (or the resourceVersion precondition) and the next reads the store.
        let cached = if attempt == 0 { read::cached(&ctx) } else { None };
        let from_cache = cached.is_some();
        let loaded = match cached {
            Some(o) => Ok(o),
            None => read::load(&ctx).await,
        };
        let old = match loaded {
            Ok(o) => o,
            Err(e) if e.code == 404 && kind == BodyType::ApplyPatch && sub.is_none() => {
                // Server-side apply creates what does not exist.
                let mut obj = patch.clone();
                let info = &ctx.served.info;
                check_type_meta(&ctx.served, &mut obj, &info.kind, &info.api_version())?;
                check_fields(&ctx, &mut obj, None, &mut warnings)?;
                if object::name(&obj) != ctx.name() {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({})",
                        object::name(&obj),
                        ctx.name()
                    )));
                }
                let schema = schema_of(&ctx.served).ok_or_else(|| ApiError::internal("no schema"))?;
                let applied = berth_api::apply::apply(
                    schema,
                    None,
                    &obj,
                    &ctx.manager(),
                    ctx.params.force,
                    &object::now(),
                    &info.api_version(),
                )
                .map_err(|e| apply_error(&ctx, e))?;
                let created = create_object(&ctx, applied, false).await?;
                return Ok(with_warnings(render_written_object(&ctx, &created, StatusCode::CREATED), &warnings));
            }
            Err(e) => return Err(e),
        };
        match patch_from(&ctx, kind, sub.as_deref(), &patch, &old, &mut warnings).await {
            Ok(resp) => return Ok(resp),
            // Maybe a stale copy from the watch cache: read the store and try again.
            Err(_) if from_cache => continue,
            Err(PatchFailure::Commit(e)) if e.code == 409 && !patch_has_rv(&patch) => continue,
            Err(PatchFailure::Commit(e) | PatchFailure::Other(e)) => return Err(e),
        }
    }
    Err(ApiError::stale(&ctx.served.info, ctx.name()))
}

/// Why one attempt of a patch failed: its compare-and-swap, or anything before it.
enum PatchFailure {
    /// Writing to the store failed (409 when the object changed meanwhile).
    Commit(ApiError),
    /// Patching, checking or admitting the object failed.
    Other(ApiError),
}

impl From<ApiError> for PatchFailure {
    fn from(e: ApiError) -> PatchFailure {
        PatchFailure::Other(e)
    }
}

/// One attempt of a patch on `old`: patch, check, admit, compare-and-swap, answer.
async fn patch_from(
    ctx: &Ctx,
    kind: BodyType,
    sub: Option<&str>,
    patch: &Value,
    old: &CachedObject,
    warnings: &mut Warnings,
) -> Result<Response, PatchFailure> {
    // The document the patch applies to: the object, or its Scale view.
    let base = if sub == Some("scale") { scale::to_scale(&ctx.served, &old.value)? } else { old.value.clone() };
    let mut patched = apply_patch(ctx, kind, base, patch, &old.value)?;
    let mut new = if sub == Some("scale") {
        let mut n = old.value.clone();
        scale::apply_scale(&ctx.served, &mut n, &patched)?;
        n
    } else {
        let info = &ctx.served.info;
        check_type_meta(&ctx.served, &mut patched, &info.kind, &info.api_version())?;
        check_fields_changed(ctx, &mut patched, &old.value, warnings)?;
        patched
    };
    // A resourceVersion in the patch is a precondition.
    if let Ok(Some(rv)) = object::resource_version(&new)
        && rv != old.revision
    {
        return Err(ApiError::stale(&ctx.served.info, ctx.name()).into());
    }
    if object::name(&new) != ctx.name() {
        return Err(ApiError::bad_request("metadata.name: the name of an object cannot be changed by a patch").into());
    }
    let carry_sub = if sub == Some("scale") { None } else { sub };
    carry_over(ctx, &mut new, &old.value, carry_sub)?;
    // Server-side apply has recorded its own managedFields.
    crate::webhook::mutate(ctx, &mut new, Some(&old.value)).await?;
    admit(ctx, &mut new, Some(&old.value), sub, kind != BodyType::ApplyPatch).await?;
    if sub != Some("scale")
        && let Some(w) = crate::pod_security::admit_update(ctx, &new, &old.value, sub)?
    {
        warnings.0.push(w);
    }
    crate::webhook::validate(ctx, &new, Some(&old.value)).await?;
    crate::admission_policy::validate(ctx, Some(&new), Some(&old.value))?;
    let written = commit_update(ctx, old, new).await.map_err(PatchFailure::Commit)?;
    let resp = if sub == Some("scale") {
        codec::respond(StatusCode::OK, &scale::to_scale(&ctx.served, written.required()?)?, ctx.out)
    } else {
        render_written_object(ctx, &written, StatusCode::OK)
    };
    Ok(with_warnings(resp, warnings))
}

fn patch_has_rv(patch: &Value) -> bool {
    patch.pointer("/metadata/resourceVersion").is_some()
}

fn apply_error(ctx: &Ctx, e: berth_api::apply::ApplyError) -> ApiError {
    match &e {
        berth_api::apply::ApplyError::Conflict(_) => ApiError::new(409, "Conflict", e.to_string()),
        _ => ApiError::new(422, "Invalid", format!("{} \"{}\" is invalid: {e}", ctx.served.info.kind, ctx.name())),
    }
}

/// Applies a patch document to `base` (a copy the caller gives up).
fn apply_patch(ctx: &Ctx, kind: BodyType, base: Value, patch: &Value, live: &Value) -> ApiResult<Value> {
    let patch_err = |e: berth_api::patch::PatchError| ApiError::new(422, "Invalid", e.to_string());
    match kind {
        BodyType::JsonPatch => {
            let mut out = base;
            berth_api::patch::json_patch(&mut out, patch).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(out)
        }
        BodyType::MergePatch | BodyType::Json | BodyType::Yaml => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut out = base;
            berth_api::patch::merge_patch(&mut out, patch);
            Ok(out)
        }
        BodyType::StrategicMergePatch => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
            }
            if ctx.path.subresource.as_deref() == Some("scale") {
                let mut out = base;
                berth_api::patch::merge_patch(&mut out, patch);
                return Ok(out);
            }
            let schema = schema_of(&ctx.served).ok_or_else(|| ApiError::internal("no schema"))?;
            berth_api::patch::strategic_merge_patch_owned(schema, base, patch).map_err(patch_err)
        }
        BodyType::ApplyPatch => {
            let schema = schema_of(&ctx.served).ok_or_else(|| ApiError::internal("no schema"))?;
            let info = &ctx.served.info;
            let mut applied = patch.clone();
            check_type_meta(&ctx.served, &mut applied, &info.kind, &info.api_version())?;
            berth_api::apply::apply(
                schema,
                Some(live),
                &applied,
                &ctx.manager(),
                ctx.params.force,
                &object::now(),
                &info.api_version(),
            )
            .map_err(|e| apply_error(ctx, e))
        }
        BodyType::Protobuf => Err(ApiError::unsupported_media_type("application/vnd.kubernetes.protobuf")),
    }
}

/// DeleteOptions from the body and the query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<Propagation>,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions {
        grace: ctx.params.grace_period_seconds,
        propagation: ctx.params.propagation,
        uid: None,
        resource_version: None,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(o);
    }
    let v = codec::decode_object(codec::body_type(&ctx.headers).unwrap_or(BodyType::Json), body)?;
    if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
        o.grace = Some(g);
    }
    if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
        o.propagation = Some(crate::params::parse_propagation(p)?);
    }
    if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
        o.propagation.get_or_insert(Propagation::Orphan);
    }
    if let Some(pre) = v.get("preconditions") {
        o.uid = pre.get("uid").and_then(Value::as_str).map(String::from);
        o.resource_version = pre.get("resourceVersion").and_then(Value::as_str).map(String::from);
    }
    Ok(o)
}

/// DELETE of one object.
pub async fn delete(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let opts = delete_options(&ctx, &body)?;
    let dry = ctx.params.dry_run || body_dry_run(&body);
    for _ in 0..RETRIES {
        let old = read::load(&ctx).await?;
        crate::webhook::delete(&ctx, &old.value, dry).await?;
        crate::admission_policy::validate(&ctx, None, Some(&old.value))?;
        match delete_one(&ctx, &old, &opts, dry).await {
            Err(e)
                if e.code == 409 && e.reason == "Conflict" && opts.resource_version.is_none() && opts.uid.is_none() =>
            {
                continue;
            }
            Err(e) => return Err(e),
            Ok(resp) => return Ok(resp),
        }
    }
    Err(ApiError::stale(&ctx.served.info, ctx.name()))
}

fn body_dry_run(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("dryRun").cloned())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|l| l.iter().any(|x| x == "All"))
}

/// Namespaces the NamespaceLifecycle admission plugin never lets go.
const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

async fn delete_one(ctx: &Ctx, old: &CachedObject, opts: &DeleteOptions, dry: bool) -> ApiResult<Response> {
    crate::node_restriction::admit_delete(ctx, &old.value)?;
    let info = &ctx.served.info;
    let name = object::name(&old.value).to_string();
    if info.group.is_empty() && info.plural == "namespaces" && IMMORTAL_NAMESPACES.contains(&name.as_str()) {
        return Err(ApiError::forbidden(info, &name, "this namespace may not be deleted"));
    }
    if let Some(uid) = &opts.uid {
        let actual = object::meta_str(&old.value, "uid").unwrap_or("");
        if uid != actual {
            return Err(ApiError::conflict(
                info,
                &name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version
        && *rv != old.revision.to_string()
    {
        return Err(ApiError::conflict(
            info,
            &name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old.revision
            ),
        ));
    }
    let mut new = old.value.clone();
    let mut finalizers = object::finalizers(&new);
    match opts.propagation {
        Some(Propagation::Orphan) if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
        Some(Propagation::Foreground) if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
            finalizers.push("foregroundDeletion".into())
        }
        _ => {}
    }
    // Namespaces always go through Terminating; the namespace controller finishes them.
    let is_namespace = info.group.is_empty() && info.plural == "namespaces";
    let spec_finalizers =
        is_namespace && new.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|l| !l.is_empty());
    // Pods bound to a node get a grace period for the node agent to stop them.
    let grace = if info.group.is_empty() && info.plural == "pods" {
        let bound = new.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let phase = new.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
        let finished = matches!(phase, "Succeeded" | "Failed");
        let default = new.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
        let g = opts.grace.unwrap_or(default).max(0);
        if bound && !finished { g } else { 0 }
    } else {
        0
    };
    if finalizers.is_empty() && grace == 0 && !spec_finalizers {
        if dry {
            return Ok(success_status(ctx, &old.value));
        }
        ctx.app.store.delete(&old.key, Some(old.revision)).await.map_err(|e| map_cas(ctx, e))?;
        crate::crd::after_delete(ctx, &old.value);
        return Ok(success_status(ctx, &old.value));
    }
    // Graceful: record the deletion and leave the rest to finalizers and the node agent.
    let meta = object::meta_mut(&mut new).ok_or_else(|| ApiError::internal("object without metadata"))?;
    if !meta.contains_key("deletionTimestamp") {
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    } else if grace < meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX) {
        // A shorter grace period may replace a longer one.
        let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
        meta.insert("deletionTimestamp".into(), json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    if is_namespace {
        new["status"]["phase"] = json!("Terminating");
        let mut recent = ctx.app.deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(object::name(&new).to_string(), std::time::Instant::now());
    }
    if dry {
        return Ok(read::render_one(ctx, &new));
    }
    let kv =
        ctx.app.store.update(&old.key, ctx.served.to_store(&new), old.revision).await.map_err(|e| map_cas(ctx, e))?;
    object::set_resource_version(&mut new, kv.mod_revision);
    Ok(read::render_one(ctx, &new))
}

fn success_status(ctx: &Ctx, obj: &Value) -> Response {
    let info = &ctx.served.info;
    let mut details = Map::new();
    details.insert("name".into(), json!(object::name(obj)));
    if !info.group.is_empty() {
        details.insert("group".into(), json!(info.group));
    }
    details.insert("kind".into(), json!(info.plural));
    if let Some(uid) = object::meta_str(obj, "uid") {
        details.insert("uid".into(), json!(uid));
    }
    let status =
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details });
    codec::respond(StatusCode::OK, &status, codec::Output::Json)
}

/// DELETE of a collection (with selectors).
pub async fn delete_collection(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let opts = delete_options(&ctx, &body)?;
    let dry = ctx.params.dry_run || body_dry_run(&body);
    let filter = Filter::new(&ctx.served.info, &ctx.params)?;
    ctx.app.catch_up().await?;
    let (items, rev) = ctx.app.cache.list(&ctx.served.prefix_in(ctx.namespace()));
    let mut deleted = Vec::new();
    for item in items.iter().map(|o| ctx.served.present(o)).filter(|o| filter.matches(&o.value)) {
        let Ok(Some(kv)) = ctx.app.store.get(&item.key).await else { continue };
        let Some(fresh) = CachedObject::from_kv(&kv).map(|o| ctx.served.present(&std::sync::Arc::new(o))) else {
            continue;
        };
        crate::webhook::delete(&ctx, &fresh.value, dry).await?;
        crate::admission_policy::validate(&ctx, None, Some(&fresh.value))?;
        match delete_one(&ctx, &fresh, &opts, dry).await {
            Ok(_) => deleted.push(fresh.value.clone()),
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let info = &ctx.served.info;
    let list = json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "metadata": { "resourceVersion": rev.to_string() }, "items": deleted });
    Ok(codec::respond(StatusCode::OK, &list, ctx.out))
}

/// POST pods/<name>/binding: assigns the pod to a node.
pub async fn bind(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let binding = codec::decode_object(codec::body_type(&ctx.headers)?, &body)?;
    let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!("Binding \"{}\" is invalid: target.name: Required value", ctx.name()),
        ));
    }
    for _ in 0..RETRIES {
        let old = read::load(&ctx).await?;
        if object::is_deleting(&old.value) {
            return Err(ApiError::conflict(
                &ctx.served.info,
                ctx.name(),
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let current = old.value.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::conflict(
                &ctx.served.info,
                ctx.name(),
                &format!("pod {} is already assigned to node \"{current}\"", ctx.name()),
            ));
        }
        // A pod not ready for scheduling cannot be bound (Kubernetes' assignPod).
        if old.value.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            return Err(ApiError::conflict(
                &ctx.served.info,
                ctx.name(),
                &format!("pod {} has non-empty .spec.schedulingGates", ctx.name()),
            ));
        }
        let mut new = old.value.clone();
        new["spec"]["nodeName"] = json!(node);
        let cond = json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now() });
        let conditions = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conditions.push(cond);
        new["status"]["conditions"] = json!(conditions);
        if ctx.params.dry_run {
            break;
        }
        match ctx.app.store.update(&old.key, ctx.served.to_store(&new), old.revision).await {
            Ok(_) => break,
            Err(berth_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 });
    Ok(codec::respond(StatusCode::CREATED, &status, codec::Output::Json))
}

/// POST pods/<name>/eviction: deletes the pod if its PodDisruptionBudget allows one more
/// disruption (taking it from the budget), as Kubernetes' eviction subresource does.
pub async fn evict(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let eviction = codec::decode_object(codec::body_type(&ctx.headers)?, &body)?;
    let opts_body =
        eviction.get("deleteOptions").map(|d| serde_json::to_vec(d).unwrap_or_default()).unwrap_or_default();
    let mut opts = delete_options(&ctx, &opts_body)?;
    let mut old = read::load(&ctx).await?;
    crate::node_restriction::admit_delete(&ctx, &old.value)?;
    let phase = old.value.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    // Pods that are not running, or already going, need no budget.
    let needs_budget = !matches!(phase, "Succeeded" | "Failed" | "Pending" | "") && !object::is_deleting(&old.value);
    if needs_budget {
        take_disruption(&ctx, &old.value).await?;
    }
    if !ctx.params.dry_run {
        old = mark_disruption_target(&ctx, old, &mut opts).await?;
    }
    delete_one(&ctx, &old, &opts, ctx.params.dry_run).await?;
    let status = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 });
    Ok(codec::respond(StatusCode::CREATED, &status, codec::Output::Json))
}

/// Marks an evicted pod `DisruptionTarget=True` (reason `EvictionByEvictionAPI`) before it
/// is deleted, as Kubernetes' eviction does, so that a Job's podFailurePolicy can tell an
/// eviction from a failure. A resourceVersion precondition moves to the marked pod (the
/// eviction wrote it); a failing precondition is left for the delete to report.
async fn mark_disruption_target(
    ctx: &Ctx,
    mut pod: std::sync::Arc<CachedObject>,
    opts: &mut DeleteOptions,
) -> ApiResult<std::sync::Arc<CachedObject>> {
    for _ in 0..RETRIES {
        let uid_differs = opts.uid.as_deref().is_some_and(|u| Some(u) != object::meta_str(&pod.value, "uid"));
        let rv_differs = opts.resource_version.as_ref().is_some_and(|rv| *rv != pod.revision.to_string());
        if uid_differs || rv_differs {
            return Ok(pod);
        }
        let Some(marked) = with_disruption_target(&pod.value, "EvictionByEvictionAPI", "Eviction API: evicting") else {
            return Ok(pod);
        };
        match ctx.app.store.update(&pod.key, Bytes::from(object::encode_for_store(&marked)), pod.revision).await {
            Ok(kv) => {
                let updated = CachedObject::from_kv(&kv)
                    .map(|o| ctx.served.present(&std::sync::Arc::new(o)))
                    .ok_or_else(|| ApiError::internal("the marked pod could not be decoded"))?;
                if opts.resource_version.is_some() {
                    opts.resource_version = Some(updated.revision.to_string());
                }
                return Ok(updated);
            }
            Err(berth_store::Error::Conflict { .. }) => pod = read::load(ctx).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(429, "TooManyRequests", "the pod is being updated concurrently; try again"))
}

/// `pod` with the condition `DisruptionTarget=True` (`reason`, `message`); None when it has
/// it already.
fn with_disruption_target(pod: &Value, reason: &str, message: &str) -> Option<Value> {
    let mut pod = pod.clone();
    let status = pod.as_object_mut()?.entry("status").or_insert_with(|| json!({}));
    let conditions = status.as_object_mut()?.entry("conditions").or_insert_with(|| json!([]));
    let list = conditions.as_array_mut()?;
    let condition = json!({ "type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
        "lastTransitionTime": object::now() });
    match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(c) if c["status"] == "True" => return None,
        Some(c) => *c = condition,
        None => list.push(condition),
    }
    Some(pod)
}

/// 429 with the DisruptionBudget cause Kubernetes sends when an eviction is refused.
fn budget_refusal(detail: String) -> ApiError {
    ApiError {
        details: Some(json!({ "causes": [{ "reason": "DisruptionBudget", "message": detail }] })),
        ..ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
    }
}

/// Finds the pod's PodDisruptionBudget (policy/v1: an empty selector selects every pod of the
/// namespace, a missing one none) and takes one allowed disruption from it.
async fn take_disruption(ctx: &Ctx, pod: &Value) -> ApiResult<()> {
    let ns = object::namespace(pod);
    let prefix = format!("/registry/policy/poddisruptionbudgets/{ns}/");
    for _ in 0..RETRIES {
        // A consistent read: the cache must have caught up with every write acknowledged so far
        // (a budget status written just before must be seen).
        ctx.app.catch_up().await?;
        let (pdbs, _) = ctx.app.cache.list(&prefix);
        let matching: Vec<_> = pdbs
            .iter()
            .filter(|p| {
                p.value.pointer("/spec/selector").is_some_and(|sel| {
                    berth_api::selectors::LabelSelector::from_label_selector(sel)
                        .is_ok_and(|s| s.matches(object::labels(pod)))
                })
            })
            .collect();
        let pdb = match matching.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::new(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let name = object::name(&pdb.value).to_string();
        let generation = pdb.value.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        let observed = pdb.value.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
        if observed < generation || pdb.value.get("status").is_none() {
            return Err(budget_refusal(format!(
                "The disruption budget {name} is still being processed by the server."
            )));
        }
        let allowed = pdb.value.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
        if allowed <= 0 {
            let desired = pdb.value.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
            let current = pdb.value.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
            return Err(budget_refusal(format!(
                "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
            )));
        }
        if ctx.params.dry_run {
            return Ok(());
        }
        let mut updated = pdb.value.clone();
        updated["status"]["disruptionsAllowed"] = json!(allowed - 1);
        updated["status"]["disruptedPods"][object::name(pod)] = json!(object::now());
        match ctx.app.store.update(&pdb.key, Bytes::from(object::encode_for_store(&updated)), pdb.revision).await {
            Ok(_) => return Ok(()),
            Err(berth_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(429, "TooManyRequests", "the disruption budget is being updated concurrently; try again"))
}
