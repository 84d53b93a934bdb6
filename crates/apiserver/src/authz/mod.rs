//! Authorization: whether an authenticated user may do what a request asks, as
//! kube-apiserver's `--authorization-mode` chain. After authentication ([`crate::authn`])
//! the [`middleware`] applies impersonation headers ([`impersonation`]), resolves the
//! request's [`Attributes`] and asks the [`Authorizer`]: in `RBAC` mode the [`rbac`]
//! policy index (built from the watch cache, never the store, and rebuilt when an RBAC
//! object changes), in `AlwaysAllow` mode nothing. A refusal is Kubernetes' 403 Status.
//! [`bootstrap`] reconciles the default roles and bindings at start and [`escalation`]
//! keeps users from granting what they do not hold.

pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod rbac;

use std::str::FromStr;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_store::Revision;
use serde_json::json;

pub use attributes::Attributes;
pub use rbac::Policy;

use crate::authn::UserInfo;
use crate::cache::Cache;
use crate::error::ApiError;
use crate::server::App;

/// Store prefix of every RBAC object.
pub const RBAC_PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// How requests are authorized (`--authorization-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Role-based access control (Kubernetes' default for clusters).
    #[default]
    Rbac,
    /// Every authenticated request is allowed (for comparison and tests).
    AlwaysAllow,
}

/// A mode `--authorization-mode` does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown authorization mode {0:?} (known: RBAC, Node, AlwaysAllow)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    /// Kubernetes' comma-separated list: `RBAC`, `Node,RBAC` (Node is not implemented yet
    /// and adds nothing), `AlwaysAllow` (allows everything wherever it is in the list).
    fn from_str(s: &str) -> Result<Mode, UnknownMode> {
        let mut mode = None;
        for m in s.split(',').map(str::trim) {
            match m {
                "RBAC" => mode = mode.or(Some(Mode::Rbac)),
                "Node" => {}
                "AlwaysAllow" => mode = Some(Mode::AlwaysAllow),
                other => return Err(UnknownMode(other.to_string())),
            }
        }
        mode.ok_or_else(|| UnknownMode(s.to_string()))
    }
}

/// The authorizer: a mode and, for RBAC, the current policy snapshot.
#[derive(Debug)]
pub struct Authorizer {
    mode: Mode,
    policy: RwLock<Arc<Policy>>,
}

impl Authorizer {
    /// An authorizer in `mode` with an empty policy (see [`Authorizer::refresh`]).
    pub fn new(mode: Mode) -> Authorizer {
        Authorizer { mode, policy: RwLock::new(Arc::new(Policy::default())) }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when the request `attrs` describes is allowed.
    pub fn authorize(&self, attrs: &Attributes) -> bool {
        match self.mode {
            Mode::AlwaysAllow => true,
            Mode::Rbac => self.policy().allows(attrs),
        }
    }

    /// The rules that apply to `user` in `namespace` (for rules reviews and escalation checks).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        match self.mode {
            Mode::AlwaysAllow => Policy::default().rules_for(&UserInfo::new("", [rbac::MASTERS.to_string()]), ""),
            Mode::Rbac => self.policy().rules_for(user, namespace),
        }
    }

    /// Rebuilds the policy from the RBAC objects in `cache`; returns the cache revision it reflects.
    pub fn refresh(&self, cache: &Cache) -> Revision {
        let (objects, revision) = cache.list(RBAC_PREFIX);
        let decoded = objects.iter().filter_map(|o| {
            let rest = o.key.strip_prefix(RBAC_PREFIX)?;
            let kind = rest.split('/').next()?;
            let value = o.value.clone();
            let object = match kind {
                "clusterroles" => rbac::Object::ClusterRole(serde_json::from_value(value).ok()?),
                "roles" => rbac::Object::Role(serde_json::from_value(value).ok()?),
                "clusterrolebindings" => rbac::Object::ClusterRoleBinding(serde_json::from_value(value).ok()?),
                "rolebindings" => rbac::Object::RoleBinding(serde_json::from_value(value).ok()?),
                _ => return None,
            };
            Some(object)
        });
        let policy = Arc::new(Policy::build(decoded));
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        revision
    }

    /// Keeps the policy current: rebuilds it after every batch of RBAC events in the watch
    /// cache, until the server shuts down.
    pub async fn follow(self: Arc<Self>, cache: Arc<Cache>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.mode != Mode::Rbac {
            return;
        }
        loop {
            let revision = self.refresh(&cache);
            let mut cursor = match cache.watch(RBAC_PREFIX, revision) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e.message, "RBAC policy: watching the cache failed; re-listing");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    next = cursor.next() => match next {
                        Ok(_) => {
                            self.refresh(&cache);
                        }
                        Err(_) => break,
                    },
                }
            }
        }
    }
}

/// Kubernetes' 403 for `attrs` (`pods "web" is forbidden: User "alice" cannot get ...`),
/// with `reason` appended when there is one.
pub fn forbidden(attrs: &Attributes, reason: &str) -> ApiError {
    let mut why = attrs.forbidden_message();
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    if !attrs.resource_request {
        return ApiError::new(403, "Forbidden", format!("forbidden: {why}"));
    }
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    let message = if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {:?} is forbidden: {why}", attrs.name)
    };
    let mut details = json!({ "name": attrs.name, "kind": attrs.resource });
    if !attrs.api_group.is_empty() {
        details["group"] = json!(attrs.api_group);
    }
    if attrs.name.is_empty() {
        details.as_object_mut().map(|d| d.remove("name"));
    }
    ApiError { details: Some(details), ..ApiError::new(403, "Forbidden", message) }
}

/// The axum middleware behind authentication: applies impersonation, then authorizes the
/// request or answers 403. Anonymous requests (only public paths get this far) pass.
pub async fn middleware(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        return next.run(req).await;
    };
    let authorizer = &app.authorizer;
    let user = match impersonation::impersonate(authorizer, user, req.headers()) {
        Ok(Some(impersonated)) => {
            req.extensions_mut().insert(impersonated.clone());
            impersonated
        }
        Ok(None) => match req.extensions().get::<UserInfo>() {
            Some(u) => u.clone(),
            None => return ApiError::new(500, "InternalError", "no user").into_response(),
        },
        Err(e) => return e.into_response(),
    };
    if authorizer.mode() == Mode::AlwaysAllow {
        return next.run(req).await;
    }
    let path = crate::handler::percent_decode(req.uri().path());
    let attrs = Attributes::from_request(user, req.method(), &path, req.uri().query());
    if authorizer.authorize(&attrs) { next.run(req).await } else { forbidden(&attrs, "").into_response() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!("RBAC".parse::<Mode>().unwrap(), Mode::Rbac);
        assert_eq!("Node,RBAC".parse::<Mode>().unwrap(), Mode::Rbac);
        assert_eq!("AlwaysAllow".parse::<Mode>().unwrap(), Mode::AlwaysAllow);
        assert!("rbac".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
    }

    #[test]
    fn forbidden_statuses() {
        let alice = UserInfo::new("alice", []);
        let e = forbidden(&Attributes::resource(alice.clone(), "get", "apps", "deployments", "", "a", "web"), "");
        assert_eq!(
            e.message,
            r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "a""#
        );
        assert_eq!(e.code, 403);
        let e = forbidden(&Attributes::non_resource(alice, "get", "/metrics"), "");
        assert_eq!(e.message, r#"forbidden: User "alice" cannot get path "/metrics""#);
    }
}
