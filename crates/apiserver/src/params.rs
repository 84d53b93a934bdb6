//! Query parameters of API requests, parsed once and checked.

use crate::error::{ApiError, ApiResult};

/// `fieldValidation`: what to do with unknown or duplicate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Fail the request.
    Strict,
    /// Accept, with a `Warning` header per field (the default).
    Warn,
    /// Accept silently.
    Ignore,
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are orphaned.
    Orphan,
    /// Dependents are deleted in the background (the default).
    Background,
    /// The owner waits for its blocking dependents.
    Foreground,
}

/// The query parameters berth understands.
#[derive(Debug, Clone)]
pub struct Params {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (server-side apply).
    pub force: bool,
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `watch=true`.
    pub watch: bool,
    /// `allowWatchBookmarks=true`.
    pub allow_bookmarks: bool,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `gracePeriodSeconds` (delete).
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy` (delete).
    pub propagation: Option<Propagation>,
    /// `includeObject` for Table output: `None`, `Metadata` (default) or `Object`.
    pub include_object: String,
    /// `container` (logs).
    pub container: Option<String>,
}

fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(ApiError::bad_request(format!("invalid value {v:?} for parameter {name}: must be true or false"))),
    }
}

impl Params {
    /// Parses the raw query string.
    pub fn parse(query: Option<&str>) -> ApiResult<Params> {
        let mut p = Params {
            dry_run: false,
            field_manager: None,
            field_validation: FieldValidation::Warn,
            force: false,
            label_selector: None,
            field_selector: None,
            resource_version: None,
            resource_version_match: None,
            limit: 0,
            continue_token: None,
            watch: false,
            allow_bookmarks: false,
            send_initial_events: false,
            timeout_seconds: None,
            grace_period_seconds: None,
            propagation: None,
            include_object: "Metadata".into(),
            container: None,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "dryRun" => match v.as_str() {
                    "All" => p.dry_run = true,
                    "" => {}
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "dryRun: Unsupported value: {v:?}: supported values: \"All\""
                        )));
                    }
                },
                "fieldManager" => {
                    if v.len() > 128 {
                        return Err(ApiError::bad_request("fieldManager: Too long: must have at most 128 bytes"));
                    }
                    p.field_manager = Some(v)
                }
                "fieldValidation" => {
                    p.field_validation = match v.as_str() {
                        "Strict" => FieldValidation::Strict,
                        "Warn" | "" => FieldValidation::Warn,
                        "Ignore" => FieldValidation::Ignore,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "fieldValidation: Unsupported value: {v:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                            )));
                        }
                    }
                }
                "force" => p.force = parse_bool("force", &v)?,
                "labelSelector" if !v.is_empty() => p.label_selector = Some(v),
                "fieldSelector" if !v.is_empty() => p.field_selector = Some(v),
                "resourceVersion" if !v.is_empty() => p.resource_version = Some(v),
                "resourceVersionMatch" if !v.is_empty() => p.resource_version_match = Some(v),
                "limit" if !v.is_empty() => {
                    let n: i64 = v.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?;
                    p.limit = n.max(0) as usize;
                }
                "continue" if !v.is_empty() => p.continue_token = Some(v),
                "watch" => p.watch = parse_bool("watch", &v)?,
                "allowWatchBookmarks" => p.allow_bookmarks = parse_bool("allowWatchBookmarks", &v)?,
                "sendInitialEvents" => p.send_initial_events = parse_bool("sendInitialEvents", &v)?,
                "timeoutSeconds" if !v.is_empty() => {
                    p.timeout_seconds =
                        Some(v.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {v:?}")))?)
                }
                "timeout" => {}
                "gracePeriodSeconds" if !v.is_empty() => {
                    p.grace_period_seconds = Some(
                        v.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {v:?}")))?,
                    )
                }
                "propagationPolicy" if !v.is_empty() => p.propagation = Some(parse_propagation(&v)?),
                "orphanDependents" if parse_bool("orphanDependents", &v)? => {
                    p.propagation.get_or_insert(Propagation::Orphan);
                }
                "includeObject" => p.include_object = v,
                "container" => p.container = Some(v),
                _ => {}
            }
        }
        if p.resource_version_match.is_some() && p.resource_version.is_none() && !p.send_initial_events {
            return Err(ApiError::bad_request(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        Ok(p)
    }
}

/// Parses a `propagationPolicy` value.
pub fn parse_propagation(v: &str) -> ApiResult<Propagation> {
    match v {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        _ => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {v:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_parameters() {
        let p = Params::parse(Some("fieldManager=kubectl-create&fieldValidation=Strict&dryRun=All&limit=500")).unwrap();
        assert!(p.dry_run);
        assert_eq!(p.field_manager.as_deref(), Some("kubectl-create"));
        assert_eq!(p.field_validation, FieldValidation::Strict);
        assert_eq!(p.limit, 500);
    }

    #[test]
    fn rejects_bad_values() {
        for q in [
            "dryRun=Some",
            "fieldValidation=Loose",
            "watch=maybe",
            "limit=x",
            "propagationPolicy=Sideways",
            "resourceVersionMatch=Exact",
        ] {
            assert_eq!(Params::parse(Some(q)).unwrap_err().code, 400, "{q}");
        }
    }
}
