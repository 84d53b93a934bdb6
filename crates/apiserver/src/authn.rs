//! Authentication: who sends a request. Kubernetes' union of authenticators, in order: a
//! client certificate the TLS layer verified against the client CA (user = CN, groups =
//! O values), then a bearer token (a ServiceAccount JWT of this server's issuer, else the
//! server's node token). The first that
//! succeeds wins; credentials that do not verify are refused with 401, and so is a request
//! without credentials except on the public paths ([`PUBLIC_PATHS`]). The user goes into
//! the request's extensions as a [`UserInfo`] for authorization and audit.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;

/// Paths anyone may read without credentials (k3s serves the server CA at `/cacerts` for
/// joining agents).
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/cacerts"];

/// Group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

/// User name of a client authenticated by the node token.
pub const NODE_AGENT_USER: &str = "system:node-agent";

/// An authenticated user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// Unique id, when the authenticator knows one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups, `system:authenticated` last.
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user named `username` in `groups` (plus `system:authenticated`).
    pub fn new(username: impl Into<String>, groups: impl IntoIterator<Item = String>) -> UserInfo {
        let mut groups: Vec<String> = groups.into_iter().filter(|g| g != AUTHENTICATED).collect();
        groups.push(AUTHENTICATED.to_string());
        UserInfo { username: username.into(), uid: String::new(), groups, extra: BTreeMap::new() }
    }
}

/// The user a connection's verified client certificate names, if it presented one; the TLS
/// listener puts it in every request of that connection.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<UserInfo>);

/// The user a verified client certificate (DER) names: CN and O values.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if cn.is_empty() {
        return None;
    }
    let orgs = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string));
    Some(UserInfo::new(cn, orgs))
}

/// What the authenticator accepts besides client certificates.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// The node token's secret: `Bearer <secret>` (or the whole `K10…::server:<secret>`
    /// token) authenticates as [`NODE_AGENT_USER`] in `system:nodes`.
    pub node_token: Option<String>,
    /// ServiceAccount JWTs of this server's issuer, verified against the live
    /// ServiceAccount and bound object (`crate::serviceaccount_token`).
    pub service_accounts: Option<Arc<crate::serviceaccount_token::ServiceAccountTokens>>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials were given and did not verify.
    BadCredentials,
    /// No credentials on a path that needs them.
    Anonymous,
}

impl Authenticator {
    /// The user of a request with `peer` (its connection's certificate user), its
    /// `Authorization` header and `path`; `Ok(None)` is an anonymous request to a public path.
    pub fn authenticate(
        &self,
        peer: Option<&UserInfo>,
        authorization: Option<&[u8]>,
        path: &str,
    ) -> Result<Option<UserInfo>, Refusal> {
        if let Some(user) = peer {
            return Ok(Some(user.clone()));
        }
        if let Some(value) = authorization {
            let token = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(Refusal::BadCredentials)?;
            return self.token_user(token).map(Some).ok_or(Refusal::BadCredentials);
        }
        if PUBLIC_PATHS.contains(&path) { Ok(None) } else { Err(Refusal::Anonymous) }
    }

    fn token_user(&self, token: &str) -> Option<UserInfo> {
        if let Some(sa) = &self.service_accounts
            && sa.issuer.is_ours(token)
        {
            return match sa.authenticate(token, &[]) {
                Ok((user, _)) => Some(user),
                Err(e) => {
                    tracing::debug!(error = %e, "service account token refused");
                    None
                }
            };
        }
        self.node_token_user(token)
    }

    /// The user of a bearer `token` and the audiences it is valid for, as TokenReview asks:
    /// a ServiceAccount token must carry one of `audiences` (the API audiences when empty);
    /// the audience-agnostic node token is valid when `audiences` meet the API audiences.
    pub fn authenticate_token(&self, token: &str, audiences: &[String]) -> Result<(UserInfo, Vec<String>), String> {
        if let Some(sa) = &self.service_accounts
            && sa.issuer.is_ours(token)
        {
            return sa.authenticate(token, audiences).map_err(|e| e.to_string());
        }
        let user = self.node_token_user(token).ok_or_else(|| "invalid bearer token".to_string())?;
        let api: Vec<String> =
            self.service_accounts.as_ref().map(|sa| sa.issuer.api_audiences().to_vec()).unwrap_or_default();
        if audiences.is_empty() {
            return Ok((user, api));
        }
        let both: Vec<String> = audiences.iter().filter(|a| api.contains(a)).cloned().collect();
        if both.is_empty() {
            Err("token audiences do not match the accepted audiences".into())
        } else {
            Ok((user, both))
        }
    }

    fn node_token_user(&self, token: &str) -> Option<UserInfo> {
        let secret = self.node_token.as_deref()?;
        // The whole k3s-style token is accepted as well as its secret.
        let given = token.rsplit_once("::server:").map_or(token, |(_, s)| s);
        constant_time_eq(given.as_bytes(), secret.as_bytes())
            .then(|| UserInfo::new(NODE_AGENT_USER, ["system:nodes".to_string()]))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401 as Kubernetes sends it.
pub fn unauthorized() -> Response {
    ApiError::new(401, "Unauthorized", "Unauthorized").into_response()
}

/// The axum middleware: authenticates the request and stores its [`UserInfo`] in the
/// extensions, or answers 401.
pub async fn middleware(State(authn): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<PeerCertificate>().and_then(|p| p.0.as_ref());
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match authn.authenticate(peer, authorization, req.uri().path()) {
        Ok(Some(user)) => {
            req.extensions_mut().insert(user);
        }
        Ok(None) => {}
        Err(_) => return unauthorized(),
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        authn: &Authenticator,
        peer: Option<&UserInfo>,
        auth: Option<&str>,
        path: &str,
    ) -> Result<String, Refusal> {
        authn.authenticate(peer, auth.map(str::as_bytes), path).map(|u| match u {
            Some(u) => format!("{} {:?}", u.username, u.groups),
            None => "anonymous".into(),
        })
    }

    #[test]
    fn certificates_then_tokens_then_public_paths() {
        let authn = Authenticator { node_token: Some("0123abcd".into()), ..Authenticator::default() };
        let admin = UserInfo::new("system:admin", ["system:masters".to_string()]);
        let node = Ok(r#"system:node-agent ["system:nodes", "system:authenticated"]"#.to_string());
        assert_eq!(
            check(&authn, Some(&admin), Some("Bearer wrong"), "/api"),
            Ok(r#"system:admin ["system:masters", "system:authenticated"]"#.into())
        );
        assert_eq!(check(&authn, None, Some("Bearer 0123abcd"), "/api"), node);
        assert_eq!(check(&authn, None, Some("Bearer K10ff::server:0123abcd"), "/api"), node);
        assert_eq!(check(&authn, None, Some("Bearer 0123abce"), "/api"), Err(Refusal::BadCredentials));
        assert_eq!(check(&authn, None, Some("Bearer 0123abcd0"), "/api"), Err(Refusal::BadCredentials));
        assert_eq!(check(&authn, None, Some("Basic eDp5"), "/healthz"), Err(Refusal::BadCredentials));
        assert_eq!(check(&authn, None, Some("Bearer "), "/api"), Err(Refusal::BadCredentials));
        assert_eq!(check(&authn, None, None, "/api"), Err(Refusal::Anonymous));
        assert_eq!(check(&authn, None, None, "/healthz/"), Err(Refusal::Anonymous));
        for public in PUBLIC_PATHS {
            assert_eq!(check(&authn, None, None, public), Ok("anonymous".into()));
        }
        let no_token = Authenticator::default();
        assert_eq!(check(&no_token, None, Some("Bearer 0123abcd"), "/api"), Err(Refusal::BadCredentials));
    }
}
