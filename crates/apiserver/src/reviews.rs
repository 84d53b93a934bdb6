//! The review resources (`authentication.k8s.io` TokenReview and SelfSubjectReview,
//! `authorization.k8s.io` access and rules reviews) are questions, not objects: a
//! create returns the answer and nothing is stored.
//!
//! SelfSubjectReview answers with the authenticated user (`kubectl auth whoami`). Until
//! RBAC lands (the security issue), access reviews allow everything and rules reviews
//! list `*`. Token reviews ([`token_review`]) run the server's bearer-token authenticator
//! (ServiceAccount JWTs, the node token) for the review's audiences.

use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
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
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let spec = &review["spec"];
            if spec.get("resourceAttributes").is_none() && spec.get("nonResourceAttributes").is_none() {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                        served.info.kind
                    ),
                ));
            }
            json!({ "allowed": true, "reason": "no authorization is enforced yet: every client is the cluster admin" })
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }],
            "nonResourceRules": [{ "verbs": ["*"], "nonResourceURLs": ["*"] }],
            "incomplete": false,
        }),
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
