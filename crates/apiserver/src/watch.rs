//! WATCH: a chunked stream of `{"type":…,"object":…}` lines from the watch cache, with
//! selector transitions (an object leaving the selection is a DELETED event), initial
//! events, bookmarks, timeouts, and Table- or PartialObjectMetadata-formatted events.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cache::{CachedEvent, CachedObject, EventType};
use crate::codec::{self, Output};
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::handler::Ctx;
use crate::table;

/// How often a bookmark is sent to watchers that allow them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// Default watch duration when the client gives no timeoutSeconds (Kubernetes picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Watcher {
    ctx: Ctx,
    filter: Filter,
    first: bool,
}

impl Watcher {
    fn frame(&mut self, kind: &str, obj: &CachedObject) -> Bytes {
        if self.ctx.out == Output::Table {
            let rv = crate::object::meta_str(&obj.value, "resourceVersion").unwrap_or("");
            let t = table::table(
                &self.ctx.served,
                std::iter::once(&obj.value),
                &self.ctx.params.include_object,
                rv,
                None,
                self.first,
            );
            self.first = false;
            Self::frame_json(kind, &serde_json::to_vec(&t).unwrap_or_default())
        } else if let Output::PartialObject(v) = self.ctx.out {
            Self::frame_json(kind, &serde_json::to_vec(&codec::partial_object(&obj.value, v)).unwrap_or_default())
        } else {
            // Encoded once in the cache, shared by every watcher.
            Self::frame_json(kind, &obj.json)
        }
    }

    /// `{"type":kind,"object":json}` and a newline.
    fn frame_json(kind: &str, json: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(json.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    /// True when events go out as the cache encoded them, so that no event needs its
    /// object decoded: no selector, no conversion, no Table or metadata-only output, and
    /// any namespace restriction already in the key prefix.
    fn sends_bytes_as_cached(&self) -> bool {
        let served = &self.ctx.served;
        self.filter.is_empty()
            && served.conversion.is_none()
            && !matches!(self.ctx.out, Output::Table | Output::PartialObject(_))
            && (self.ctx.namespace().is_none() || served.info.namespaced)
    }

    /// When every watcher with the same output would send the same frame for an event (no
    /// selector, no conversion, a Table past its first event or PartialObjectMetadata): the
    /// name of that output, under which the frame is made once and shared.
    fn shared_format(&self) -> Option<String> {
        let served = &self.ctx.served;
        let shareable = self.filter.is_empty()
            && served.conversion.is_none()
            && (self.ctx.namespace().is_none() || served.info.namespaced);
        if !shareable {
            return None;
        }
        let info = &served.info;
        match self.ctx.out {
            Output::PartialObject(v) => Some(format!("partial {v}")),
            // The first Table event of a watch carries the column definitions: not shared.
            Output::Table if !self.first => Some(format!(
                "table {}/{}/{} {}",
                info.group, info.version, info.plural, self.ctx.params.include_object
            )),
            _ => None,
        }
    }

    /// The frame of `e` in the output `format` names (see [`Watcher::shared_format`]),
    /// shared through the cache with the other watchers.
    fn shared_frame(&mut self, e: &CachedEvent, kind: &str, format: &str) -> Option<Bytes> {
        let cache = self.ctx.app.cache.clone();
        cache.shared_frame(e, format, || match self.ctx.out {
            // Only the metadata is needed: a history-only state is not decoded whole.
            Output::PartialObject(v) => {
                let metadata = e.metadata().unwrap_or_else(|| json!({}));
                let partial = json!({ "kind": "PartialObjectMetadata", "apiVersion": v, "metadata": metadata });
                Some(Self::frame_json(kind, &serde_json::to_vec(&partial).unwrap_or_default()))
            }
            _ => e.object().map(|object| self.frame(kind, &object)),
        })
    }

    fn frame_value(kind: &str, v: &Value) -> Bytes {
        let mut line = serde_json::to_vec(&json!({ "type": kind, "object": v })).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let info = &self.ctx.served.info;
        let (kind, api_version) = match self.ctx.out {
            Output::PartialObject(v) => ("PartialObjectMetadata".to_string(), v.to_string()),
            _ => (info.kind.clone(), info.api_version()),
        };
        Self::frame_value("BOOKMARK", &json!({ "kind": kind, "apiVersion": api_version, "metadata": meta }))
    }

    /// The frame for one event, applying selector transitions.
    fn event(&mut self, e: &CachedEvent) -> Option<Bytes> {
        // With everything selected, the event's kind is its own.
        let kind = match e.kind {
            EventType::Delete => "DELETED",
            EventType::Put if e.has_prev() => "MODIFIED",
            EventType::Put => "ADDED",
        };
        if self.sends_bytes_as_cached() {
            // The frame needs only the event's bytes, which history-only states keep (see
            // the cache), so nothing is decoded.
            return Some(Self::frame_json(kind, e.json()));
        }
        if let Some(format) = self.shared_format() {
            return self.shared_frame(e, kind, &format);
        }
        let stored = e.object()?;
        if let Some(ns) = self.ctx.namespace()
            && crate::object::namespace(&stored.value) != ns
        {
            return None;
        }
        let served = self.ctx.served.clone();
        let object = served.present(&stored);
        let now = self.filter.matches(&object.value);
        match e.kind {
            EventType::Delete => now.then(|| self.frame("DELETED", &object)),
            EventType::Put => {
                // (Without a selector the state before needs no decoding: it was selected.)
                let before = if self.filter.is_empty() {
                    e.has_prev()
                } else {
                    e.prev().is_some_and(|p| self.filter.matches(&served.present(&p).value))
                };
                match (before, now) {
                    (true, true) => Some(self.frame("MODIFIED", &object)),
                    (false, true) => Some(self.frame("ADDED", &object)),
                    (true, false) => Some(self.frame("DELETED", &object)),
                    (false, false) => None,
                }
            }
        }
    }
}

/// Starts a watch.
pub async fn watch(ctx: Ctx) -> ApiResult<Response> {
    // Watch events carry single objects: a list conversion cannot apply to them.
    if let Output::PartialObjectList(_) = ctx.out {
        return Err(codec::not_acceptable(
            "you requested PartialObjectMetadataList, but watch events carry single objects (use as=PartialObjectMetadata)",
        ));
    }
    let filter = Filter::new(&ctx.served.info, &ctx.params)?;
    let p = &ctx.params;
    let prefix = ctx.served.prefix_in(ctx.namespace());
    let requested = match p.resource_version.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!("resourceVersion: Invalid value: {s:?}: must be a non-negative integer"))
        })?),
    };
    // "Get state and start at most recent" (unset or 0), or start after the given revision.
    let initial = matches!(requested, None | Some(0)) || p.send_initial_events;
    // Initial events for an unset resourceVersion are a consistent read: the cache first
    // catches up with the store; for a given one, with that revision.
    match requested {
        None => {
            ctx.app.catch_up().await?;
        }
        Some(r) if p.send_initial_events && r > 0 => ctx.app.cache.wait_for(r, Duration::from_secs(3)).await?,
        _ => {}
    }
    let started = if initial {
        let (items, rev) = ctx.app.cache.list(&prefix);
        ctx.app.cache.watch(&prefix, rev).map(|c| (items, c))
    } else {
        ctx.app.cache.watch(&prefix, requested.unwrap_or(0)).map(|c| (Vec::new(), c))
    };
    let (snapshot, mut cursor) = match started {
        Ok(s) => s,
        // As Kubernetes' watch cache does: a watch from too old a revision opens and
        // carries one ERROR event with the 410 Status, which clients answer with a re-list.
        Err(e) if e.code == 410 => return Ok(error_stream(&e)),
        Err(e) => return Err(e),
    };
    let timeout = p.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = p.allow_bookmarks;
    let initial_end_bookmark = p.send_initial_events && bookmarks;
    let mut shutdown = ctx.app.shutdown.clone();
    let mut w = Watcher { filter, ctx, first: true };

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        for obj in &snapshot {
            let obj = w.ctx.served.present(obj);
            if w.filter.matches(&obj.value) {
                let f = w.frame("ADDED", &obj);
                if tx.send(Ok(f)).await.is_err() {
                    return;
                }
            }
        }
        if initial_end_bookmark && tx.send(Ok(w.bookmark(cursor.revision(), true))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.changed() => break,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(Ok(w.bookmark(cursor.revision(), false))).await.is_err() {
                        return;
                    }
                }
                batch = cursor.next() => match batch {
                    Ok(events) => {
                        for e in &events {
                            if let Some(frame) = w.event(e)
                                && tx.send(Ok(frame)).await.is_err() {
                                    return;
                                }
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Ok(Watcher::frame_value("ERROR", &err.status()))).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(stream_response(Body::from_stream(ReceiverStream::new(rx))))
}

fn error_stream(e: &ApiError) -> Response {
    let frame: Result<Bytes, std::io::Error> = Ok(Watcher::frame_value("ERROR", &e.status()));
    stream_response(Body::from_stream(futures::stream::iter([frame])))
}

fn stream_response(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    resp
}
