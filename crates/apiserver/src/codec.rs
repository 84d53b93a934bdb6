//! Wire formats: request bodies in JSON, YAML or Kubernetes protobuf become JSON
//! values here, once; responses are negotiated from `Accept` (JSON, YAML, or
//! server-side Table printing).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The largest request body accepted, as Kubernetes: 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// The media type of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/vnd.kubernetes.protobuf`.
    Protobuf,
    /// `application/json-patch+json`.
    JsonPatch,
    /// `application/merge-patch+json`.
    MergePatch,
    /// `application/strategic-merge-patch+json`.
    StrategicMergePatch,
    /// `application/apply-patch+yaml` (server-side apply).
    ApplyPatch,
}

/// The body type named by `Content-Type` (JSON when absent).
pub fn body_type(headers: &HeaderMap) -> ApiResult<BodyType> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(match essence.as_str() {
        "application/json" | "" | "*/*" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" | "application/apply-patch+json" => BodyType::ApplyPatch,
        _ => return Err(ApiError::unsupported_media_type(ct)),
    })
}

/// Decodes a JSON body, naming the position of a syntax error.
pub fn decode_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "json parse error: {} at line {} column {}",
            strip_position(&e.to_string()),
            e.line(),
            e.column()
        ))
    })
}

fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

/// Decodes a YAML (or JSON, which is YAML) body into a JSON value. A key repeated in a
/// mapping keeps its last value, as Kubernetes' non-strict YAML decoding does; see
/// [`yaml_duplicate_keys`] for the strict check.
pub fn decode_yaml(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("yaml: body is not UTF-8: {e}")))?;
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    let value: Value = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {}", one_line(&e.to_string()))))?;
    Ok(value)
}

/// The first repeated mapping key of a YAML body, for `fieldValidation=Strict`.
pub fn yaml_duplicate_keys(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    match serde_saphyr::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) if e.to_string().contains("duplicate mapping key") => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or(&msg).trim().to_string();
            Some(first)
        }
        _ => None,
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Decodes an object body of the given type.
pub fn decode_object(kind: BodyType, body: &[u8]) -> ApiResult<Value> {
    let value = match kind {
        BodyType::Json => decode_json(body)?,
        BodyType::Yaml => decode_yaml(body)?,
        BodyType::Protobuf => berth_api::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("protobuf decode error: {e}")))?,
        _ => return Err(ApiError::unsupported_media_type("a patch media type")),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(format!("the body must be a JSON object, got {}", type_name(&value))));
    }
    Ok(value)
}

/// JSON type name for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What the client asked to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON (the default).
    Json,
    /// YAML.
    Yaml,
    /// A `meta.k8s.io/v1` Table.
    Table,
    /// Objects reduced to `PartialObjectMetadata` of the given `apiVersion` (`meta.k8s.io/v1` or `/v1beta1`).
    PartialObject(&'static str),
    /// A list reduced to `PartialObjectMetadataList` of the given `apiVersion`.
    PartialObjectList(&'static str),
}

/// 406 NotAcceptable, as Kubernetes answers an `Accept` it cannot serve.
pub fn not_acceptable(message: impl Into<String>) -> ApiError {
    ApiError::new(406, "NotAcceptable", message)
}

/// Negotiates the response format from `Accept`: the first acceptable entry wins.
/// An `Accept` whose only JSON entries ask for a conversion (`as=`) this server does not
/// offer is answered 406, as Kubernetes does; other unknown media types fall back to JSON.
pub fn negotiate(headers: &HeaderMap) -> ApiResult<Output> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut refused = None;
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let param = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        let meta_version = match (param("g"), param("v")) {
            (Some("meta.k8s.io"), Some("v1")) => Some("meta.k8s.io/v1"),
            (Some("meta.k8s.io"), Some("v1beta1")) => Some("meta.k8s.io/v1beta1"),
            _ => None,
        };
        match (essence.as_str(), param("as"), meta_version) {
            ("application/json", Some("Table"), Some(_)) => return Ok(Output::Table),
            ("application/json", Some("PartialObjectMetadata"), Some(v)) => return Ok(Output::PartialObject(v)),
            ("application/json", Some("PartialObjectMetadataList"), Some(v)) => {
                return Ok(Output::PartialObjectList(v));
            }
            // Discovery documents are negotiated by their own handlers.
            ("application/json", Some(_), _) if param("g") == Some("apidiscovery.k8s.io") => continue,
            ("application/json", Some(_), _) => {
                refused.get_or_insert_with(|| entry.trim().to_string());
                continue;
            }
            ("application/json", None, _) | ("*/*", _, _) | ("application/*", _, _) => return Ok(Output::Json),
            ("application/yaml", None, _) => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    match refused {
        Some(entry) => Err(not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1 (got {entry:?})"
        ))),
        None => Ok(Output::Json),
    }
}

/// One object reduced to a `PartialObjectMetadata` of `api_version`.
pub fn partial_object(obj: &Value, api_version: &str) -> Value {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({}));
    serde_json::json!({ "kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": metadata })
}

fn is_list(value: &Value) -> bool {
    value.get("items").is_some_and(Value::is_array)
        && value.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))
}

/// `value` converted as `out` asks: PartialObjectMetadata(List) conversions, or a 406 when
/// a list is asked for of one object or one object of a list, as Kubernetes answers.
pub fn transform(value: &Value, out: Output) -> ApiResult<std::borrow::Cow<'_, Value>> {
    use std::borrow::Cow;
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    match out {
        // Errors and other Status answers go out as they are.
        _ if kind == "Status" => Ok(Cow::Borrowed(value)),
        Output::PartialObject(v) => {
            if is_list(value) {
                return Err(not_acceptable(format!(
                    "you requested PartialObjectMetadata, but the requested object is a list ({kind})"
                )));
            }
            Ok(Cow::Owned(partial_object(value, v)))
        }
        Output::PartialObjectList(v) => {
            if !is_list(value) {
                return Err(not_acceptable(format!(
                    "you requested PartialObjectMetadataList, but the requested object is not a list ({kind})"
                )));
            }
            let items: Vec<Value> =
                value["items"].as_array().into_iter().flatten().map(|o| partial_object(o, v)).collect();
            let metadata = value.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({}));
            Ok(Cow::Owned(
                serde_json::json!({ "kind": "PartialObjectMetadataList", "apiVersion": v, "metadata": metadata, "items": items }),
            ))
        }
        _ => Ok(Cow::Borrowed(value)),
    }
}

/// A response with the given code and JSON value, encoded as `out` asks (Table falls back to
/// JSON here; PartialObjectMetadata(List) conversions are applied).
pub fn respond(code: StatusCode, value: &Value, out: Output) -> Response {
    match out {
        Output::Yaml => match serde_saphyr::to_string(value) {
            Ok(text) => with_type(code, text.into_bytes(), "application/yaml"),
            Err(e) => ApiError::internal(e).into_response(),
        },
        Output::PartialObject(_) | Output::PartialObjectList(_) => match transform(value, out) {
            Ok(v) => with_type(code, serde_json::to_vec(&*v).unwrap_or_default(), "application/json"),
            Err(e) => e.into_response(),
        },
        _ => with_type(code, serde_json::to_vec(value).unwrap_or_default(), "application/json"),
    }
}

/// A response of shared bytes (e.g. an object encoded once in the watch cache) with a content type.
pub fn with_bytes(code: StatusCode, body: bytes::Bytes, content_type: &'static str) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A plain-text response (health checks' answers).
pub fn text(code: StatusCode, body: String) -> Response {
    with_type(code, body.into_bytes(), "text/plain; charset=utf-8")
}

/// A response of raw bytes with a content type.
pub fn with_type(code: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(s: &str) -> Output {
        try_accept(s).unwrap()
    }

    fn try_accept(s: &str) -> ApiResult<Output> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(s).unwrap());
        negotiate(&h)
    }

    #[test]
    fn negotiates_partial_object_metadata_like_kubernetes() {
        assert_eq!(
            accept("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
            Output::PartialObject("meta.k8s.io/v1")
        );
        assert_eq!(
            accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1,application/json"),
            Output::PartialObjectList("meta.k8s.io/v1beta1")
        );
        // Unsupported conversions are skipped; with nothing left the answer is 406.
        assert_eq!(accept("application/json;as=Widget;g=meta.k8s.io;v=v1,application/json"), Output::Json);
        for bad in [
            "application/json;as=Widget;g=meta.k8s.io;v=v1",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
            "application/json;as=PartialObjectMetadata;g=example.com;v=v1",
        ] {
            let err = try_accept(bad).unwrap_err();
            assert_eq!((err.code, err.reason), (406, "NotAcceptable"), "{bad}");
        }
    }

    #[test]
    fn partial_object_metadata_keeps_only_metadata() {
        let pod = serde_json::json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}});
        let out = transform(&pod, Output::PartialObject("meta.k8s.io/v1")).unwrap();
        assert_eq!(
            *out,
            serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a", "uid": "u"}})
        );
        let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": [pod]});
        let out = transform(&list, Output::PartialObjectList("meta.k8s.io/v1")).unwrap();
        assert_eq!(out["kind"], "PartialObjectMetadataList");
        assert_eq!(out["metadata"]["resourceVersion"], "5");
        assert_eq!(out["items"][0]["kind"], "PartialObjectMetadata");
        assert!(out["items"][0].get("spec").is_none());
        // A list asked of one object and one object asked of a list are refused.
        assert_eq!(transform(&pod, Output::PartialObjectList("meta.k8s.io/v1")).unwrap_err().code, 406);
        assert_eq!(transform(&list, Output::PartialObject("meta.k8s.io/v1")).unwrap_err().code, 406);
    }

    #[test]
    fn negotiates_like_kubectl() {
        assert_eq!(
            accept(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Output::Table
        );
        assert_eq!(accept("application/json"), Output::Json);
        assert_eq!(accept("application/yaml"), Output::Yaml);
        assert_eq!(
            accept("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
            Output::Json
        );
        assert_eq!(accept("application/vnd.kubernetes.protobuf, */*"), Output::Json);
        assert_eq!(accept(""), Output::Json);
    }

    #[test]
    fn malformed_json_names_position() {
        let err = decode_json(b"{\n  \"a\": ,\n}").unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("line 2"), "{}", err.message);
    }

    #[test]
    fn malformed_yaml_is_bad_request() {
        let err = decode_yaml(b"a: [1, 2\nb: c").unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("YAML"), "{}", err.message);
    }

    #[test]
    fn repeated_yaml_keys_keep_the_last_value_unless_strict() {
        let body = b"data:\n  a: 1\n  a: 2\n";
        assert_eq!(decode_yaml(body).unwrap()["data"]["a"], 2);
        assert!(yaml_duplicate_keys(body).is_some_and(|m| m.contains("duplicate")));
        assert_eq!(yaml_duplicate_keys(b"data:\n  a: 1\n  b: 2\n"), None);
    }

    #[test]
    fn non_object_body_is_rejected() {
        assert_eq!(decode_object(BodyType::Json, b"[1]").unwrap_err().code, 400);
        assert_eq!(decode_object(BodyType::Yaml, b"kind: Pod\n").unwrap()["kind"], "Pod");
    }
}
