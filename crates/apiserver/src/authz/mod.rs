//! Authorization: whether an authenticated user may do what a request asks, as
//! kube-apiserver's `--authorization-mode` chain. After authentication ([`crate::authn`])
//! the [`middleware`] applies impersonation headers ([`impersonation`]), resolves the
//! request's [`Attributes`] and asks the [`Authorizer`]: each mode of the list in turn
//! (default `Node,RBAC`) until one allows — the [`node`] authorizer for node identities
//! (a graph of pods and what they use, kept from the watch cache), the [`rbac`] policy
//! index (built from the watch cache, never the store, and rebuilt when an RBAC object
//! changes), `AlwaysAllow`. A refusal is Kubernetes' 403 Status with the modes' reasons.
//! [`bootstrap`] reconciles the default roles and bindings at start and [`escalation`]
//! keeps users from granting what they do not hold.

pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod node;
pub mod rbac;

use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_store::Revision;
use serde_json::json;

pub use attributes::Attributes;
pub use node::Decision;
pub use rbac::Policy;

use crate::authn::UserInfo;
use crate::cache::Cache;
use crate::error::ApiError;
use crate::server::App;

/// Store prefix of every RBAC object.
pub const RBAC_PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// One authorizer of the `--authorization-mode` chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The Node authorizer ([`node`]): what node identities may do.
    Node,
    /// Role-based access control (Kubernetes' default for clusters).
    Rbac,
    /// Every authenticated request is allowed (for comparison and tests).
    AlwaysAllow,
}

impl Mode {
    /// The name `--authorization-mode` uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Node => "Node",
            Mode::Rbac => "RBAC",
            Mode::AlwaysAllow => "AlwaysAllow",
        }
    }
}

/// The `--authorization-mode` list, asked in order until one allows (default `Node,RBAC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modes(Vec<Mode>);

impl Default for Modes {
    fn default() -> Self {
        Modes(vec![Mode::Node, Mode::Rbac])
    }
}

impl Modes {
    /// The modes, in order.
    pub fn list(&self) -> &[Mode] {
        &self.0
    }

    /// True when `mode` is in the list.
    pub fn contains(&self, mode: Mode) -> bool {
        self.0.contains(&mode)
    }
}

impl std::fmt::Display for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|m| m.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// A `--authorization-mode` value that is not a list of known modes.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// A mode berth does not know.
    #[error("unknown authorization mode {0:?} (known: Node, RBAC, AlwaysAllow)")]
    Unknown(String),
    /// A mode given twice.
    #[error("authorization mode {0:?} is given more than once")]
    Duplicate(String),
}

impl FromStr for Modes {
    type Err = ModeError;

    /// Kubernetes' comma-separated list (`Node,RBAC`, `RBAC`, `AlwaysAllow`...).
    fn from_str(s: &str) -> Result<Modes, ModeError> {
        let mut modes = Vec::new();
        for name in s.split(',').map(str::trim) {
            let mode = match name {
                "Node" => Mode::Node,
                "RBAC" => Mode::Rbac,
                "AlwaysAllow" => Mode::AlwaysAllow,
                other => return Err(ModeError::Unknown(other.to_string())),
            };
            if modes.contains(&mode) {
                return Err(ModeError::Duplicate(name.to_string()));
            }
            modes.push(mode);
        }
        Ok(Modes(modes))
    }
}

/// The authorizer: the mode chain, the RBAC policy snapshot and the Node authorizer.
#[derive(Debug)]
pub struct Authorizer {
    modes: Modes,
    policy: RwLock<Arc<Policy>>,
    node: Option<node::NodeAuthorizer>,
}

impl Authorizer {
    /// An authorizer over `modes` with an empty policy and graph (see [`Authorizer::refresh`]
    /// and [`Authorizer::follow`]).
    pub fn new(modes: Modes) -> Authorizer {
        let node = modes.contains(Mode::Node).then(node::NodeAuthorizer::new);
        Authorizer { modes, policy: RwLock::new(Arc::new(Policy::default())), node }
    }

    /// The modes.
    pub fn modes(&self) -> &Modes {
        &self.modes
    }

    /// True when RBAC is one of the modes.
    pub fn rbac(&self) -> bool {
        self.modes.contains(Mode::Rbac)
    }

    /// The Node authorizer, when `Node` is one of the modes.
    pub fn node(&self) -> Option<&node::NodeAuthorizer> {
        self.node.as_ref()
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The chain's answer for `attrs`: the first mode that allows it, else a refusal with
    /// the reasons the modes gave (Kubernetes' union authorizer).
    pub fn decide(&self, attrs: &Attributes) -> Decision {
        let mut reasons: Vec<String> = Vec::new();
        for mode in self.modes.list() {
            match mode {
                Mode::AlwaysAllow => return Decision::Allow,
                Mode::Rbac => {
                    if self.policy().allows(attrs) {
                        return Decision::Allow;
                    }
                }
                Mode::Node => {
                    if let Some(node) = &self.node {
                        match node.authorize(attrs) {
                            Decision::Allow => return Decision::Allow,
                            Decision::NoOpinion(reason) if !reason.is_empty() => reasons.push(reason),
                            Decision::NoOpinion(_) => {}
                        }
                    }
                }
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }

    /// Like [`Authorizer::decide`], but a node refused while the Node authorizer's graph
    /// lags behind the watch cache is asked again once the graph has caught up (up to 2 s):
    /// a node that has just seen its new pod may read that pod's secrets at once.
    pub async fn decide_current(&self, attrs: &Attributes) -> Decision {
        let decision = self.decide(attrs);
        if decision == Decision::Allow {
            return decision;
        }
        match self.node.as_ref().and_then(|n| n.lags_for(attrs).map(|revision| (n, revision))) {
            Some((node, revision)) => {
                node.graph.wait_for(revision, Duration::from_secs(2)).await;
                self.decide(attrs)
            }
            None => decision,
        }
    }

    /// True when the request `attrs` describes is allowed.
    pub fn authorize(&self, attrs: &Attributes) -> bool {
        self.decide(attrs) == Decision::Allow
    }

    /// The rules that apply to `user` in `namespace` (for rules reviews and escalation
    /// checks): RBAC's (the Node authorizer, as Kubernetes', enumerates none).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
        if self.modes.contains(Mode::AlwaysAllow) {
            return Policy::default().rules_for(&UserInfo::new("", [rbac::MASTERS.to_string()]), "");
        }
        if self.rbac() { self.policy().rules_for(user, namespace) } else { Vec::new() }
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
    /// The Node authorizer's graph follows the cache from here too.
    pub async fn follow(self: Arc<Self>, cache: Arc<Cache>, shutdown: tokio::sync::watch::Receiver<bool>) {
        if let Some(node) = &self.node {
            node.attach(cache.clone(), shutdown.clone());
        }
        if !self.rbac() {
            return;
        }
        let rebuild = |cache: &Arc<Cache>| self.refresh(cache);
        let apply = |cache: &Arc<Cache>, _: &[Arc<crate::cache::CachedEvent>], _| {
            self.refresh(cache);
        };
        crate::cache::follow(cache, RBAC_PREFIX, "RBAC policy", shutdown, rebuild, apply).await;
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
    if authorizer.modes().list().first() == Some(&Mode::AlwaysAllow) {
        return next.run(req).await;
    }
    let path = crate::handler::percent_decode(req.uri().path());
    let attrs = Attributes::from_request(user, req.method(), &path, req.uri().query());
    match authorizer.decide_current(&attrs).await {
        Decision::Allow => next.run(req).await,
        Decision::NoOpinion(reason) => forbidden(&attrs, &reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let parse = |s: &str| s.parse::<Modes>().map(|m| m.to_string()).map_err(|e| e.to_string());
        assert_eq!(parse("RBAC"), Ok("RBAC".into()));
        assert_eq!(parse("Node,RBAC"), Ok("Node,RBAC".into()));
        assert_eq!(parse(" Node , AlwaysAllow"), Ok("Node,AlwaysAllow".into()));
        assert_eq!(Modes::default().to_string(), "Node,RBAC");
        assert_eq!(parse("rbac"), Err(r#"unknown authorization mode "rbac" (known: Node, RBAC, AlwaysAllow)"#.into()));
        assert_eq!(parse("RBAC,RBAC"), Err(r#"authorization mode "RBAC" is given more than once"#.into()));
        assert!(parse("").is_err());
        assert!(parse("Node,").is_err());
    }

    #[test]
    fn the_chain_asks_each_mode_in_order() {
        let node = UserInfo::new("system:node:a", [node::NODES_GROUP.to_string()]);
        let secret = Attributes::resource(node.clone(), "get", "", "secrets", "", "ns", "s");
        let reason = "no relationship found between node 'a' and this object";
        let authz = Authorizer::new(Modes::default());
        assert_eq!(authz.decide(&secret), Decision::NoOpinion(reason.into()));
        assert!(!authz.authorize(&secret));
        let services = Attributes::resource(node.clone(), "list", "", "services", "", "", "");
        assert!(authz.authorize(&services));
        // RBAC alone grants nodes nothing (no binding names system:nodes).
        let rbac_only = Authorizer::new("RBAC".parse().unwrap());
        assert_eq!(rbac_only.decide(&services), Decision::NoOpinion(String::new()));
        assert!(Authorizer::new("Node,AlwaysAllow".parse().unwrap()).authorize(&secret));
        assert_eq!(
            forbidden(&secret, reason).message,
            format!(
                r#"secrets "s" is forbidden: User "system:node:a" cannot get resource "secrets" in API group "" in the namespace "ns": {reason}"#
            )
        );
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
