//! The review resources (`authentication.k8s.io` TokenReview and SelfSubjectReview,
//! `authorization.k8s.io` access and rules reviews) are questions, not objects: a
//! create returns the answer and nothing is stored.
//!
//! Until authentication and RBAC land (the security issue), every client is the
//! cluster admin: access reviews allow everything, rules reviews list `*`, and
//! `kubectl auth whoami` says `admin` in `system:masters`. Token reviews authenticate
//! nothing, since the server issues no tokens yet.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::resources::Served;

/// True for the review resources.
pub fn is_review(served: &Served) -> bool {
    matches!(served.info.group.as_str(), "authentication.k8s.io" | "authorization.k8s.io")
}

fn admin() -> Value {
    json!({ "username": "admin", "groups": ["system:masters", "system:authenticated"] })
}

/// The answered review: the request with its `status` filled in.
pub fn answer(served: &Served, mut review: Value) -> ApiResult<Value> {
    let status = match served.info.kind.as_str() {
        "SelfSubjectReview" => json!({ "userInfo": admin() }),
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
