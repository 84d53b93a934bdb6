//! `/openapi/v2` and `/openapi/v3`: documents built from the schema facts and the
//! served resources (custom resources included), cached per catalog.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::openapi::CustomResourceSchema;
use serde_json::Value;

use crate::codec::{self, Output};
use crate::error::ApiError;
use crate::resources::Catalog;
use crate::server::App;

fn infos(catalog: &Catalog) -> Vec<berth_api::ResourceInfo> {
    catalog.list.iter().map(|s| s.info.clone()).collect()
}

fn customs(catalog: &Catalog) -> Vec<CustomResourceSchema<'_>> {
    catalog
        .list
        .iter()
        .filter_map(|s| s.custom.as_ref().map(|c| CustomResourceSchema { resource: &s.info, schema: &c.schema }))
        .collect()
}

fn hash(s: &str) -> String {
    // FNV-1a: a stable content hash for cache-busting URLs.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn gv_doc(catalog: &Catalog, group: &str, version: &str) -> Value {
    berth_api::openapi::v3_group_version(group, version, &infos(catalog), &customs(catalog))
}

fn split_gv(path: &str) -> Option<(String, String)> {
    match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => Some((String::new(), v.to_string())),
        ["apis", g, v] => Some((g.to_string(), v.to_string())),
        _ => None,
    }
}

/// The Content-Type of the OpenAPI v2 document in gnostic's protobuf form, as
/// Kubernetes sends it: the media type clients ask for
/// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) is not a valid
/// Content-Type (`@`), and Go's mime parser refuses it.
const V2_PROTOBUF: &str = "application/octet-stream";

/// `GET /openapi/v2`: JSON, or protobuf when the client accepts only that (kubectl does,
/// and parses whatever it gets as protobuf).
pub async fn v2(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let catalog = app.resources.catalog();
    let document = berth_api::openapi::v2_document(&infos(&catalog), &customs(&catalog));
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("proto-openapi") && !accept.contains("json"));
    if wants_protobuf {
        let body = berth_api::protobuf::encode_openapi_v2(&document);
        return (StatusCode::OK, [(header::CONTENT_TYPE, V2_PROTOBUF)], body).into_response();
    }
    codec::respond(StatusCode::OK, &document, Output::Json)
}

/// `GET /openapi/v3`: the index of group/version documents.
pub async fn v3_index(State(app): State<Arc<App>>) -> Response {
    let catalog = app.resources.catalog();
    let index = berth_api::openapi::v3_index(&infos(&catalog), |gv| {
        split_gv(gv).map(|(g, v)| hash(&gv_doc(&catalog, &g, &v).to_string())).unwrap_or_default()
    });
    codec::respond(StatusCode::OK, &index, Output::Json)
}

/// `GET /openapi/v3/<api/v1 | apis/group/version>`.
pub async fn v3_group_version(State(app): State<Arc<App>>, Path(path): Path<String>) -> Response {
    let catalog = app.resources.catalog();
    let Some((g, v)) = split_gv(&path) else { return ApiError::unknown_resource().into_response() };
    if !catalog.serves_version(&g, &v) {
        return ApiError::unknown_resource().into_response();
    }
    codec::respond(StatusCode::OK, &gv_doc(&catalog, &g, &v), Output::Json)
}
