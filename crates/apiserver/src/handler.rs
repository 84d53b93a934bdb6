//! Request dispatch: turns a method and a path under `/api` or `/apis` into one of
//! the verbs (get, list, watch, create, update, patch, delete, deletecollection) on a
//! served resource, after checking scope and subresource.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use crate::codec::{self, MAX_BODY, Output};
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::resources::{Path, ResourcePath, Served};
use crate::server::App;
use crate::{read, watch, write};

/// Everything a verb handler needs about one request.
pub struct Ctx {
    /// The server.
    pub app: Arc<App>,
    /// The resource addressed.
    pub served: Arc<Served>,
    /// The parsed path.
    pub path: ResourcePath,
    /// Query parameters.
    pub params: Params,
    /// Request headers.
    pub headers: HeaderMap,
    /// Negotiated output format.
    pub out: Output,
    /// The authenticated user (`None` when the server authenticates nobody).
    pub user: Option<crate::authn::UserInfo>,
}

impl Ctx {
    /// The namespace of the request path.
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The object name of the request path (empty for collections).
    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    /// The store key of the addressed object.
    pub fn key(&self) -> String {
        self.served.key(self.namespace(), self.name())
    }

    /// The field manager: the `fieldManager` parameter, else the user agent's program name.
    pub fn manager(&self) -> String {
        if let Some(m) = &self.params.field_manager {
            return m.clone();
        }
        let ua = self.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").chars().take(128).collect()
    }
}

/// The handler for everything under `/api` and `/apis`.
pub async fn api(State(app): State<Arc<App>>, req: Request) -> Response {
    let (result, warnings) =
        crate::webhook::collect_warnings(app.webhooks.any() || app.policies.any(), dispatch(app, req)).await;
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    crate::webhook::add_warning_headers(&mut resp, &warnings);
    resp
}

async fn read_body(body: Body) -> ApiResult<Bytes> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!("error reading request body: {e}"))),
    }
}

async fn dispatch(app: Arc<App>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let catalog = app.resources.catalog();
    // Paths are percent-decoded (names never contain '/').
    let path = percent_decode(parts.uri.path());
    if let Some((node, target)) = crate::node_proxy::node_proxy_target(&path) {
        return crate::node_proxy::proxy_to_node(app, node, target, Request::from_parts(parts, body)).await;
    }
    let parsed = crate::resources::parse_path(&path, &catalog).ok_or_else(ApiError::unknown_resource)?;
    let headers = parts.headers.clone();
    let rp = match parsed {
        Path::Root => {
            let legacy = path.trim_end_matches('/') == "/api";
            if let Some(v) = discovery::wants_aggregated(&headers) {
                return Ok(discovery::aggregated_response(&catalog, legacy, v));
            }
            let doc = if legacy {
                discovery::api_versions(&app.config.advertise_address())
            } else {
                discovery::api_group_list(&catalog)
            };
            return Ok(codec::respond(StatusCode::OK, &doc, Output::Json));
        }
        Path::Group(g) => {
            let doc = discovery::group(&catalog, &g).ok_or_else(ApiError::unknown_resource)?;
            return Ok(codec::respond(StatusCode::OK, &doc, Output::Json));
        }
        Path::GroupVersion(g, v) => {
            if !catalog.serves_version(&g, &v) {
                return Err(ApiError::unknown_resource());
            }
            return Ok(codec::respond(StatusCode::OK, &discovery::resource_list(&catalog, &g, &v), Output::Json));
        }
        Path::Resource(rp) => rp,
    };
    let served = catalog.find(&rp.group, &rp.version, &rp.plural).ok_or_else(ApiError::unknown_resource)?;
    if rp.namespace.is_some() && !served.info.namespaced {
        return Err(ApiError::unknown_resource());
    }
    if let Some(sub) = &rp.subresource
        && !served.info.has_subresource(sub)
    {
        return Err(ApiError::unknown_resource());
    }
    if crate::node_proxy::is_streaming(&rp) {
        return crate::node_proxy::proxy(app, rp, Request::from_parts(parts, body)).await;
    }
    // A namespaced object must be addressed inside its namespace.
    if served.info.namespaced && rp.namespace.is_none() && rp.name.is_some() {
        return Err(ApiError::unknown_resource());
    }
    let params = Params::parse(parts.uri.query())?;
    let out = codec::negotiate(&headers)?;
    let user = parts.extensions.get::<crate::authn::UserInfo>().cloned();
    let ctx = Ctx { app, served, path: rp, params, headers, out, user };
    let method = parts.method;
    let is_collection = ctx.path.name.is_none();
    let sub = ctx.path.subresource.clone();
    let verb_allowed = |verb: &str| ctx.served.info.verbs.iter().any(|v| v == verb);
    match (method, is_collection, sub.as_deref()) {
        (Method::GET, true, _) if ctx.params.watch => {
            if !verb_allowed("watch") {
                return Err(ApiError::method_not_allowed());
            }
            watch::watch(ctx).await
        }
        (Method::GET, true, _) if verb_allowed("list") => read::list(ctx).await,
        (Method::GET, false, None) if verb_allowed("get") => read::get(ctx).await,
        (Method::GET, false, Some("status" | "approval" | "ephemeralcontainers")) => read::get(ctx).await,
        (Method::GET, false, Some("scale")) => read::get_scale(ctx).await,
        (Method::POST, true, None) if verb_allowed("create") => {
            let body = read_body(body).await?;
            write::create(ctx, body).await
        }
        (Method::POST, false, Some("binding")) => {
            let body = read_body(body).await?;
            write::bind(ctx, body).await
        }
        (Method::POST, false, Some("token")) => {
            let body = read_body(body).await?;
            crate::serviceaccount_token::token_request(ctx, body).await
        }
        (Method::POST, false, Some("eviction")) => {
            let body = read_body(body).await?;
            write::evict(ctx, body).await
        }
        (Method::PUT, false, None | Some("status" | "finalize" | "approval" | "ephemeralcontainers"))
            if verb_allowed("update") =>
        {
            let body = read_body(body).await?;
            write::update(ctx, body).await
        }
        (Method::PUT, false, Some("scale")) => {
            let body = read_body(body).await?;
            write::update_scale(ctx, body).await
        }
        (Method::PATCH, false, None | Some("status" | "scale" | "approval" | "ephemeralcontainers"))
            if verb_allowed("patch") =>
        {
            let body = read_body(body).await?;
            write::patch(ctx, body).await
        }
        (Method::DELETE, false, None) if verb_allowed("delete") => {
            let body = read_body(body).await?;
            write::delete(ctx, body).await
        }
        (Method::DELETE, true, None) if verb_allowed("deletecollection") => {
            let body = read_body(body).await?;
            write::delete_collection(ctx, body).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
