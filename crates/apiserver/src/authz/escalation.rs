//! Escalation prevention, as Kubernetes' RBAC storage: a user may create or update a Role
//! or ClusterRole only with rules it holds itself (or the `escalate` verb on it), and a
//! RoleBinding or ClusterRoleBinding only to a role whose permissions it holds (or the
//! `bind` verb on that role). Members of `system:masters` may do both.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleRef};
use serde_json::Value;

use super::Attributes;
use super::rbac::{self, MASTERS, compact_string};
use crate::authn::UserInfo;
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;

const GROUP: &str = "rbac.authorization.k8s.io";

fn forbidden(ctx: &Ctx, name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::forbidden(&ctx.served.info, name, why)
}

/// Refuses `obj` (a Role, ClusterRole, RoleBinding or ClusterRoleBinding about to be
/// written by `ctx`'s user) when it would grant more than the user holds.
pub fn check(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    let info = &ctx.served.info;
    if info.group != GROUP || ctx.path.subresource.is_some() || !ctx.app.authorizer.rbac() {
        return Ok(());
    }
    let Some(user) = &ctx.user else { return Ok(()) };
    if user.groups.iter().any(|g| g == MASTERS) {
        return Ok(());
    }
    let name = crate::object::name(obj);
    let namespace = ctx.namespace().unwrap_or("");
    let authorizer = &ctx.app.authorizer;
    let allowed = |verb: &str, resource: &str, role_name: &str| {
        authorizer.authorize(&Attributes::resource(user.clone(), verb, GROUP, resource, "", namespace, role_name))
    };
    match info.kind.as_str() {
        "Role" | "ClusterRole" => {
            if allowed("escalate", &info.plural, name) {
                return Ok(());
            }
            if info.kind == "ClusterRole" && obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                let role: ClusterRole = serde_json::from_value(obj.clone()).unwrap_or_default();
                if role.aggregation_rule.is_some() {
                    return Err(forbidden(ctx, name, "must have cluster-admin privileges to use the aggregationRule"));
                }
            }
            let rules: Vec<PolicyRule> =
                obj.get("rules").cloned().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default();
            confirm_no_escalation(ctx, user, namespace, name, &rules)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let Some(role_ref) = obj.get("roleRef").cloned().and_then(|r| serde_json::from_value::<RoleRef>(r).ok())
            else {
                return Ok(());
            };
            let resource = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
            if allowed("bind", resource, &role_ref.name) {
                return Ok(());
            }
            let reference = if role_ref.kind == "Role" {
                rbac::RoleRef::Namespaced(role_ref.name.clone())
            } else {
                rbac::RoleRef::Cluster(role_ref.name.clone())
            };
            let policy = authorizer.policy();
            let Some(rules) = policy.role_rules(namespace, &reference) else {
                let kind = if role_ref.kind == "Role" { "role" } else { "clusterrole" };
                return Err(ApiError::new(404, "NotFound", format!("{kind}.{GROUP} {:?} not found", role_ref.name)));
            };
            confirm_no_escalation(ctx, user, namespace, name, rules)
        }
        _ => Ok(()),
    }
}

fn confirm_no_escalation(
    ctx: &Ctx,
    user: &UserInfo,
    namespace: &str,
    name: &str,
    rules: &[PolicyRule],
) -> ApiResult<()> {
    let owned = ctx.app.authorizer.rules_for(user, namespace);
    let missing = rbac::covers(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let listed: Vec<String> = missing.iter().map(compact_string).collect();
    Err(forbidden(
        ctx,
        name,
        format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            groups.join(" "),
            listed.join("\n")
        ),
    ))
}
