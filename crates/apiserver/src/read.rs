//! Reads: get, list (from the watch cache or, for exact and paginated reads, from the
//! store at a revision) and the scale subresource.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::cache::CachedObject;
use crate::codec::{self, Output};
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::handler::Ctx;
use crate::{object, scale, table};

/// How long a consistent read waits for the cache to catch up before falling back to the store.
const CACHE_WAIT: Duration = Duration::from_secs(3);

/// Reads one object from the store (a consistent read).
pub async fn load(ctx: &Ctx) -> ApiResult<Arc<CachedObject>> {
    let kv = ctx.app.store.get(&ctx.key()).await?;
    kv.as_ref()
        .and_then(CachedObject::from_kv)
        .map(|o| ctx.served.present(&Arc::new(o)))
        .ok_or_else(|| ApiError::not_found(&ctx.served.info, ctx.name()))
}

/// The object as the watch cache holds it, `None` when the cache does not have it. A
/// read-modify-write may start from it, as Kubernetes' GuaranteedUpdate starts from the
/// watch cache's copy, provided that it reads the store and tries again when the
/// compare-and-swap (or a resourceVersion precondition) finds the copy stale.
pub fn cached(ctx: &Ctx) -> Option<Arc<CachedObject>> {
    ctx.app.cache.get(&ctx.key()).map(|o| ctx.served.present(&o))
}

/// GET of one object (or its status).
pub async fn get(ctx: Ctx) -> ApiResult<Response> {
    let obj = load(&ctx).await?;
    Ok(render_one(&ctx, &obj.value))
}

/// Renders one object as the client asked (Table with one row, JSON or YAML).
pub fn render_one(ctx: &Ctx, obj: &Value) -> Response {
    render_one_with(ctx, obj, StatusCode::OK)
}

/// Renders one object with a status code.
pub fn render_one_with(ctx: &Ctx, obj: &Value, code: StatusCode) -> Response {
    if ctx.out == Output::Table {
        let rv = object::meta_str(obj, "resourceVersion").unwrap_or("").to_string();
        let t = table::table(&ctx.served, std::iter::once(obj), &ctx.params.include_object, &rv, None, true);
        return codec::respond(code, &t, Output::Json);
    }
    codec::respond(code, obj, ctx.out)
}

/// GET of the scale subresource.
pub async fn get_scale(ctx: Ctx) -> ApiResult<Response> {
    let obj = load(&ctx).await?;
    let s = scale::to_scale(&ctx.served, &obj.value)?;
    Ok(codec::respond(StatusCode::OK, &s, ctx.out))
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: start.into() };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request("continue key is not valid: the continue parameter is malformed");
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(s: &str) -> ApiResult<i64> {
    s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
        ApiError::bad_request(format!("resourceVersion: Invalid value: {s:?}: must be a non-negative integer"))
    })
}

/// LIST.
pub async fn list(ctx: Ctx) -> ApiResult<Response> {
    let filter = Filter::new(&ctx.served.info, &ctx.params)?;
    let prefix = ctx.served.prefix_in(ctx.namespace());
    let p = &ctx.params;
    if let Some(token) = &p.continue_token {
        if p.resource_version.as_deref().is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let t = decode_continue(token)?;
        return list_from_store(&ctx, &filter, &prefix, Some(t.start), Some(t.rv)).await;
    }
    let rv = match &p.resource_version {
        Some(s) => Some(parse_rv(s)?),
        None => None,
    };
    match (p.resource_version_match.as_deref(), rv) {
        (Some("Exact"), Some(0)) => {
            Err(ApiError::bad_request("resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\""))
        }
        (Some("Exact"), Some(r)) => list_from_store(&ctx, &filter, &prefix, None, Some(r)).await,
        (Some("NotOlderThan") | None, Some(0)) => Ok(list_from_cache(&ctx, &filter, &prefix)),
        (Some("NotOlderThan") | None, Some(r)) => {
            ctx.app.cache.wait_for(r, CACHE_WAIT).await?;
            Ok(list_from_cache(&ctx, &filter, &prefix))
        }
        (Some(m @ ("Exact" | "NotOlderThan")), None) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
        ))),
        (None, None) => {
            // A consistent read: the cache serves it once it has caught up with the store.
            let current = ctx.app.store.current_revision().await?;
            if ctx.app.cache.wait_for(current, CACHE_WAIT).await.is_err() {
                return list_from_store(&ctx, &filter, &prefix, None, None).await;
            }
            if p.limit > 0 && ctx.app.cache.count(&prefix) > p.limit {
                return list_from_store(&ctx, &filter, &prefix, None, Some(current.max(1))).await;
            }
            Ok(list_from_cache(&ctx, &filter, &prefix))
        }
        (Some(other), _) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

fn list_from_cache(ctx: &Ctx, filter: &Filter, prefix: &str) -> Response {
    let (items, rev) = ctx.app.cache.list(prefix);
    let items: Vec<Arc<CachedObject>> = items.iter().map(|o| ctx.served.present(o)).collect();
    let selected = items.iter().filter(|o| filter.is_empty() || filter.matches(&o.value));
    render_list(ctx, selected, rev, None)
}

async fn list_from_store(
    ctx: &Ctx,
    filter: &Filter,
    prefix: &str,
    start_after: Option<String>,
    revision: Option<i64>,
) -> ApiResult<Response> {
    let result = ctx
        .app
        .store
        .range(prefix, start_after.as_deref(), ctx.params.limit, revision)
        .await
        .map_err(|e| match e {
            berth_store::Error::Compacted { .. } if start_after.is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            other => other.into(),
        })?;
    let objects: Vec<Arc<CachedObject>> =
        result.kvs.iter().filter_map(CachedObject::from_kv).map(|o| ctx.served.present(&Arc::new(o))).collect();
    let next = if result.more { result.kvs.last().map(|kv| encode_continue(result.revision, &kv.key)) } else { None };
    let selected = objects.iter().filter(|o| filter.is_empty() || filter.matches(&o.value));
    Ok(render_list(ctx, selected, result.revision, next.as_deref()))
}

fn render_list<'a>(
    ctx: &Ctx,
    items: impl Iterator<Item = &'a Arc<CachedObject>>,
    rev: i64,
    continue_token: Option<&str>,
) -> Response {
    let rv = rev.to_string();
    let info = &ctx.served.info;
    match ctx.out {
        Output::Table => {
            let t = table::table(
                &ctx.served,
                items.map(|o| &o.value),
                &ctx.params.include_object,
                &rv,
                continue_token,
                true,
            );
            codec::respond(StatusCode::OK, &t, Output::Json)
        }
        Output::Yaml => {
            let list: Vec<Value> = items.map(|o| o.value.clone()).collect();
            let mut meta = json!({ "resourceVersion": rv });
            if let Some(c) = continue_token {
                meta["continue"] = json!(c);
            }
            let doc =
                json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "metadata": meta, "items": list });
            codec::respond(StatusCode::OK, &doc, Output::Yaml)
        }
        Output::PartialObject(_) => codec::respond(
            StatusCode::OK,
            &json!({ "kind": info.list_kind, "apiVersion": info.api_version(), "items": [] }),
            ctx.out,
        ),
        Output::PartialObjectList(v) => {
            let items: Vec<Bytes> = items
                .map(|o| Bytes::from(serde_json::to_vec(&codec::partial_object(&o.value, v)).unwrap_or_default()))
                .collect();
            json_list("PartialObjectMetadataList", v, &rv, continue_token, items)
        }
        Output::Json => {
            let items: Vec<Bytes> = items.map(|o| o.json.clone()).collect();
            json_list(&info.list_kind, &info.api_version(), &rv, continue_token, items)
        }
    }
}

/// A JSON list response streamed from its items' encodings.
fn json_list(kind: &str, api_version: &str, rv: &str, continue_token: Option<&str>, items: Vec<Bytes>) -> Response {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"{\"kind\":");
    head.extend_from_slice(&serde_json::to_vec(kind).unwrap_or_default());
    head.extend_from_slice(b",\"apiVersion\":");
    head.extend_from_slice(&serde_json::to_vec(api_version).unwrap_or_default());
    head.extend_from_slice(b",\"metadata\":{\"resourceVersion\":\"");
    head.extend_from_slice(rv.as_bytes());
    head.push(b'"');
    if let Some(c) = continue_token {
        head.extend_from_slice(b",\"continue\":");
        head.extend_from_slice(&serde_json::to_vec(c).unwrap_or_default());
    }
    head.extend_from_slice(b"},\"items\":[");
    let mut resp = Response::new(stream_items(head, items));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Streams a JSON list: `head`, then the items' cached bytes joined by commas, then
/// `]}`, in chunks of about 64 KiB. No 20 MiB buffer is built for a 10k-pod list, and
/// the first bytes leave before the last item is copied.
fn stream_items(head: Vec<u8>, items: Vec<Bytes>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let state = (Some(head), items.into_iter().enumerate(), false);
    let stream = futures::stream::unfold(state, |(head, mut rest, done)| async move {
        if done {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        if let Some(h) = head {
            buf.extend_from_slice(&h);
        }
        for (i, o) in rest.by_ref() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(&o);
            if buf.len() >= CHUNK {
                return Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (None, rest, false)));
            }
        }
        buf.extend_from_slice(b"]}");
        Some((Ok(Bytes::from(buf)), (None, rest, true)))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = decode_continue(&encode_continue(42, "/registry/core/pods/default/a")).unwrap();
        assert_eq!((t.rv, t.start.as_str()), (42, "/registry/core/pods/default/a"));
        for bad in [
            "",
            "!!!",
            "e30=",
            &base64::engine::general_purpose::STANDARD.encode(b"{\"v\":\"x\",\"rv\":1,\"start\":\"a\"}"),
        ] {
            assert_eq!(decode_continue(bad).unwrap_err().code, 400, "{bad}");
        }
    }
}
