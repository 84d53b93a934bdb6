//! `ApiError`: the one error type of the HTTP edge. Every failure becomes a
//! Kubernetes `Status` object with the HTTP code, reason, message and details
//! Kubernetes would send.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

/// A request failure, rendered as a `metav1.Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status, when there are any.
    pub details: Option<Value>,
}

/// Result with [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

fn details(res: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": res.plural });
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl ApiError {
    /// A Status with the given code, reason and message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a resource type the server does not serve.
    pub fn unknown_resource() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 404 `pods "web" not found`.
    pub fn not_found(res: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(404, "NotFound", format!("{} \"{name}\" not found", res.group_resource()))
        }
    }

    /// 409 `pods "web" already exists`.
    pub fn already_exists(res: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", res.group_resource()))
        }
    }

    /// 409 Conflict on a stale resourceVersion or a failed precondition.
    pub fn conflict(res: &ResourceInfo, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": {why}", res.group_resource()),
            )
        }
    }

    /// 409 Conflict for an update with a stale resourceVersion.
    pub fn stale(res: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(res: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.kind.reason(), "message": e.cause_message(), "field": e.field }))
            .collect();
        let mut d = json!({ "name": name, "kind": res.kind, "causes": causes });
        if !res.group.is_empty() {
            d["group"] = json!(res.group);
        }
        ApiError {
            details: Some(d),
            ..Self::new(422, "Invalid", format!("{} \"{name}\" is invalid: {joined}", res.kind))
        }
    }

    /// 403 Forbidden.
    pub fn forbidden(res: &ResourceInfo, name: &str, why: impl std::fmt::Display) -> Self {
        ApiError {
            details: Some(details(res, name)),
            ..Self::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: {why}", res.group_resource()))
        }
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    /// 410 Expired: a resourceVersion or continue token older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 500 InternalError; the cause is logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(500, "InternalError", "an error on the server prevented the request from succeeding")
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<berth_store::Error> for ApiError {
    fn from(e: berth_store::Error) -> Self {
        match e {
            berth_store::Error::Compacted { requested, compacted } => {
                ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            berth_store::Error::FutureRevision { requested, current } => {
                ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
            }
            berth_store::Error::Closed => ApiError::unavailable("the storage is shutting down"),
            berth_store::Error::Unavailable(message) => ApiError::unavailable(message),
            berth_store::Error::Timeout(message) => ApiError::timeout(message),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}
