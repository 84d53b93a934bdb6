//! The review resources (`authentication.k8s.io` TokenReview and SelfSubjectReview,
//! `authorization.k8s.io` access and rules reviews) are questions, not objects: a
//! create returns the answer and nothing is stored.
//!
//! SelfSubjectReview answers with the authenticated user (`kubectl auth whoami`). Access
//! and rules reviews ([`answer_access`]) answer from the server's authorizer (`kubectl auth
//! can-i`, `--list`). Token reviews ([`token_review`]) run the server's bearer-token
//! authenticator (ServiceAccount JWTs, the node token) for the review's audiences.

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::authz::{Attributes, rbac};
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::resources::Served;

/// True for the review resources.
pub fn is_review(served: &Served) -> bool {
    matches!(served.info.group.as_str(), "authentication.k8s.io" | "authorization.k8s.io")
}

/// A server without authentication treats every client as the admin.
fn user_json(user: Option<&UserInfo>) -> Value {
    match user {
        Some(user) => serde_json::to_value(user).unwrap_or_default(),
        None => json!({ "username": "admin", "groups": ["system:masters", "system:authenticated"] }),
    }
}

/// The answered review: the request with its `status` filled in.
pub fn answer(served: &Served, user: Option<&UserInfo>, mut review: Value) -> ApiResult<Value> {
    let status = match served.info.kind.as_str() {
        "SelfSubjectReview" => json!({ "userInfo": user_json(user) }),
        "TokenReview" => {
            if review.pointer("/spec/token").and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
                ));
            }
            json!({ "authenticated": false, "error": "token authentication is not enabled on this server yet" })
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    review["status"] = status;
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    Ok(review)
}

/// TokenReview: authenticates `spec.token` (a ServiceAccount token or the node token) for
/// `spec.audiences` (the API audiences when empty) with the server's authenticator.
pub fn token_review(ctx: &crate::handler::Ctx, mut review: Value) -> ApiResult<Value> {
    let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or("").to_string();
    if token.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
        ));
    }
    let audiences: Vec<String> = match review.pointer("/spec/audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(_) => return Err(ApiError::bad_request("spec.audiences must be a list of strings")),
    };
    let status = match ctx.app.config.authn.authenticate_token(&token, &audiences) {
        Ok((user, accepted)) => {
            json!({ "authenticated": true, "user": user_json(Some(&user)), "audiences": accepted })
        }
        Err(error) => json!({ "authenticated": false, "error": format!("[invalid bearer token, {error}]") }),
    };
    review["status"] = status;
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    Ok(review)
}

fn invalid(kind: &str, field: &str, detail: &str) -> ApiError {
    ApiError::new(422, "Invalid", format!("{kind}.authorization.k8s.io \"\" is invalid: {field}: {detail}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

/// The user an access review asks about: the requester (self reviews) or `spec.user`,
/// `spec.groups`, `spec.uid`, `spec.extra`.
fn reviewed_user(ctx: &Ctx, kind: &str, spec: &Value) -> ApiResult<UserInfo> {
    if kind.starts_with("Self") {
        return Ok(ctx.user.clone().unwrap_or_else(|| UserInfo::new("admin", [rbac::MASTERS.to_string()])));
    }
    let username = spec["user"].as_str().unwrap_or_default();
    let groups = strings(&spec["groups"]);
    if username.is_empty() && groups.is_empty() {
        return Err(invalid(kind, "spec.user", "Invalid value: \"\": at least one of user or group must be specified"));
    }
    Ok(UserInfo {
        username: username.to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups,
        extra: spec["extra"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default(),
    })
}

fn rules_status(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if let Some(urls) = r.non_resource_urls.as_ref().filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({ "verbs": r.verbs, "nonResourceURLs": urls }));
        }
        if r.resources.as_ref().is_some_and(|res| !res.is_empty()) {
            let mut rule = json!({ "verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources });
            if let Some(names) = r.resource_names.as_ref().filter(|n| !n.is_empty()) {
                rule["resourceNames"] = json!(names);
            }
            resource_rules.push(rule);
        }
    }
    json!({ "resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false })
}

/// Answers an access or rules review (SubjectAccessReview, LocalSubjectAccessReview,
/// SelfSubjectAccessReview, SelfSubjectRulesReview) from the server's authorizer; `None`
/// for the other reviews.
pub fn answer_access(ctx: &Ctx, review: &Value) -> Option<ApiResult<Value>> {
    let kind = ctx.served.info.kind.as_str();
    if !matches!(
        kind,
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectRulesReview"
    ) {
        return None;
    }
    Some(access_status(ctx, kind, review).map(|status| {
        let mut review = review.clone();
        review["status"] = status;
        if !review["metadata"].is_object() {
            review["metadata"] = json!({});
        }
        review["metadata"]["creationTimestamp"] = Value::Null;
        review
    }))
}

fn access_status(ctx: &Ctx, kind: &str, review: &Value) -> ApiResult<Value> {
    let spec = &review["spec"];
    let authorizer = &ctx.app.authorizer;
    if kind == "SelfSubjectRulesReview" {
        let user = reviewed_user(ctx, kind, spec)?;
        let namespace = spec["namespace"].as_str().unwrap_or_default();
        return Ok(rules_status(&authorizer.rules_for(&user, namespace)));
    }
    let resource = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let user = reviewed_user(ctx, kind, spec)?;
    let attrs = match (resource, non_resource) {
        (Some(r), None) => {
            let field = |f: &str| r[f].as_str().unwrap_or_default();
            if kind == "LocalSubjectAccessReview" && field("namespace") != ctx.namespace().unwrap_or_default() {
                return Err(invalid(
                    kind,
                    "spec.resourceAttributes.namespace",
                    &format!("Invalid value: {:?}: must match metadata.namespace", field("namespace")),
                ));
            }
            let mut attrs = Attributes::resource(
                user,
                field("verb"),
                field("group"),
                field("resource"),
                field("subresource"),
                field("namespace"),
                field("name"),
            );
            attrs.api_version = field("version").to_string();
            attrs
        }
        (None, Some(n)) => Attributes::non_resource(
            user,
            n["verb"].as_str().unwrap_or_default(),
            n["path"].as_str().unwrap_or_default(),
        ),
        _ => {
            return Err(invalid(
                kind,
                "spec.resourceAttributes",
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    Ok(if authorizer.authorize(&attrs) { json!({ "allowed": true }) } else { json!({ "allowed": false }) })
}
