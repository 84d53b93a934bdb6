//! Authentication: who sends a request. Kubernetes' union of authenticators, in order: a
//! client certificate the TLS layer verified against the client CA (user = CN, groups =
//! O values), then a bearer token (a ServiceAccount JWT of this server's issuer, a bootstrap
//! token `<id>.<secret>` checked against its Secret in kube-system ([`BootstrapTokens`]), else
//! the server's node token, [`NODE_AGENT_USER`] in [`HOLLOW_NODES_GROUP`]). The first that
//! succeeds wins; credentials that do not verify are refused with 401, and so is a request
//! without credentials except on the public paths ([`PUBLIC_PATHS`]) and the `cluster-info`
//! ConfigMap ([`ANONYMOUS_PATHS`], as `system:anonymous`, which RBAC lets read that one
//! object, as kubeadm's clusters do). The user goes into
//! the request's extensions as a [`UserInfo`] for authorization and audit.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::cache::Cache;
use crate::error::ApiError;

/// Paths anyone may read without credentials (k3s serves the server CA at `/cacerts` for
/// joining agents).
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/cacerts"];

/// Paths a request without credentials reaches as `system:anonymous` (group
/// `system:unauthenticated`), for authorization to decide: the `cluster-info` ConfigMap
/// joining agents verify with their bootstrap token (Kubernetes' anonymous authentication
/// restricted to these paths, as its `anonymous.conditions` configuration allows).
pub const ANONYMOUS_PATHS: &[&str] = &["/api/v1/namespaces/kube-public/configmaps/cluster-info"];

/// User name of requests without credentials on [`ANONYMOUS_PATHS`].
pub const ANONYMOUS: &str = "system:anonymous";

/// Group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

/// User name of a client authenticated by the node token.
pub const NODE_AGENT_USER: &str = "system:node-agent";

/// The one group of [`NODE_AGENT_USER`]: hollow-node processes (many nodes, one identity)
/// hold what they do through it and nothing more; it is not `system:nodes`, so the node
/// token reaches none of the nodes' bindings (the client CA reader, certificate rotation).
pub const HOLLOW_NODES_GROUP: &str = "berth:hollow-nodes";

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

/// What a connection's verified client certificate says, if it presented one; the TLS
/// listener puts it in every request of that connection.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate {
    /// The user the certificate names (CN and O values).
    pub user: Option<UserInfo>,
    /// The end of its validity, in seconds since the Unix epoch. The TLS handshake checked it
    /// once; as Kubernetes' x509 authenticator, every request checks it again, so a
    /// long-lived connection stops authenticating when its certificate expires.
    pub not_after: Option<i64>,
}

impl PeerCertificate {
    /// What the verified client certificate `der` says.
    pub fn of(der: &[u8]) -> PeerCertificate {
        let not_after = x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| c.validity().not_after.timestamp());
        PeerCertificate { user: user_from_certificate(der), not_after }
    }

    /// The certificate's user at `now` (seconds since the Unix epoch): `Err` once it expired.
    pub fn user_at(&self, now: i64) -> Result<Option<&UserInfo>, Refusal> {
        match (&self.user, self.not_after) {
            (Some(_), Some(end)) if now > end => Err(Refusal::BadCredentials),
            (user, _) => Ok(user.as_ref()),
        }
    }
}

/// The user a verified client certificate (DER) names: CN and O values, and, as
/// Kubernetes' x509 authenticator, the certificate's SHA-256 fingerprint as the extra
/// `authentication.kubernetes.io/credential-id` (`X509SHA256=<hex>`: the audit log tells
/// which certificate a request presented, e.g. across a rotation).
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    if cn.is_empty() {
        return None;
    }
    let orgs = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string));
    let mut user = UserInfo::new(cn, orgs);
    let fingerprint: String =
        ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    user.extra.insert(CREDENTIAL_ID.to_string(), vec![format!("X509SHA256={fingerprint}")]);
    Some(user)
}

/// The user extra naming the credential a request authenticated with.
const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// Group of every bootstrap-token user.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// Namespace of bootstrap-token Secrets.
pub const BOOTSTRAP_NAMESPACE: &str = "kube-system";

/// Type of bootstrap-token Secrets.
pub const BOOTSTRAP_TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";

/// Prefix of a bootstrap-token Secret's name (then the token id).
pub const BOOTSTRAP_SECRET_PREFIX: &str = "bootstrap-token-";

/// A bootstrap token's id and secret, parsed from `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The public part, also in the Secret's name.
    pub id: String,
    /// The secret part.
    pub secret: String,
}

impl BootstrapToken {
    /// Parses `<id>.<secret>`; `None` when it is not of that form.
    pub fn parse(token: &str) -> Option<BootstrapToken> {
        let (id, secret) = token.split_once('.')?;
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        (ok(id, 6) && ok(secret, 16)).then(|| BootstrapToken { id: id.to_string(), secret: secret.to_string() })
    }
}

/// Whether `group` may be an extra group of a bootstrap token:
/// `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`, as Kubernetes checks it.
pub fn valid_bootstrap_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else { return false };
    !rest.is_empty()
        && rest.len() <= 256
        && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The bootstrap-token authenticator: a token is valid while Secret
/// `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` exists in the
/// watch cache, is not being deleted, carries the same secret, allows authentication and has
/// not expired (so a deleted token is refused as soon as the cache sees the deletion).
/// Clones share the cache handed over by [`Authenticator::attach`].
#[derive(Clone, Default)]
pub struct BootstrapTokens {
    cache: Arc<OnceLock<Arc<Cache>>>,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens").field("attached", &self.cache.get().is_some()).finish()
    }
}

impl BootstrapTokens {
    /// The user of `token` if it is a valid bootstrap token, else why not.
    pub fn authenticate(&self, token: &BootstrapToken) -> Result<UserInfo, String> {
        let cache = self.cache.get().ok_or("no object cache")?;
        let key = format!("/registry/core/secrets/{BOOTSTRAP_NAMESPACE}/{BOOTSTRAP_SECRET_PREFIX}{}", token.id);
        let secret = cache.get(&key).ok_or_else(|| format!("no bootstrap token with id {:?}", token.id))?;
        user_of_bootstrap_secret(&secret.value, token, jiff::Timestamp::now())
    }
}

/// Decoded `data[key]` of a Secret.
fn secret_value(secret: &Value, key: &str) -> Option<String> {
    let b64 = secret.get("data")?.get(key)?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()
}

/// Kubernetes' checks of a bootstrap-token Secret against a presented token at `now`.
pub fn user_of_bootstrap_secret(
    secret: &Value,
    token: &BootstrapToken,
    now: jiff::Timestamp,
) -> Result<UserInfo, String> {
    if secret.get("type").and_then(Value::as_str) != Some(BOOTSTRAP_TOKEN_TYPE) {
        return Err("secret is not of type bootstrap.kubernetes.io/token".into());
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err("bootstrap token is being deleted".into());
    }
    let id = secret_value(secret, "token-id").unwrap_or_default();
    let stored = secret_value(secret, "token-secret").unwrap_or_default();
    // Compare both (the secret in constant time) before deciding, so timing tells nothing.
    let same_secret = constant_time_eq(stored.as_bytes(), token.secret.as_bytes());
    if id != token.id || !same_secret {
        return Err("bootstrap token secret does not match".into());
    }
    if let Some(expiration) = secret_value(secret, "expiration") {
        let at: jiff::Timestamp = expiration.parse().map_err(|_| format!("bad expiration {expiration:?}"))?;
        if at <= now {
            return Err(format!("bootstrap token {} expired at {expiration}", token.id));
        }
    }
    if secret_value(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("bootstrap token is not usable for authentication".into());
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    if let Some(extra) = secret_value(secret, "auth-extra-groups") {
        for group in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            if !valid_bootstrap_group(group) {
                return Err(format!("bootstrap token has an invalid extra group {group:?}"));
            }
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_string());
            }
        }
    }
    Ok(UserInfo::new(format!("system:bootstrap:{}", token.id), groups))
}

/// What the authenticator accepts besides client certificates.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// The node token's secret: `Bearer <secret>` (or the whole `K10…::server:<secret>`
    /// token) authenticates as [`NODE_AGENT_USER`] in [`HOLLOW_NODES_GROUP`].
    pub node_token: Option<String>,
    /// ServiceAccount JWTs of this server's issuer, verified against the live
    /// ServiceAccount and bound object (`crate::serviceaccount_token`).
    pub service_accounts: Option<Arc<crate::serviceaccount_token::ServiceAccountTokens>>,
    /// Bootstrap tokens (always on once [`Authenticator::attach`] gave the cache).
    pub bootstrap_tokens: BootstrapTokens,
    /// Users of a static token file (`--token-auth-file`).
    pub static_tokens: Option<Arc<crate::token_file::StaticTokens>>,
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
    /// Gives the token authenticators the watch cache their objects are read from.
    pub fn attach(&self, cache: Arc<Cache>) {
        if let Some(sa) = &self.service_accounts {
            sa.attach(cache.clone());
        }
        let _ = self.bootstrap_tokens.cache.set(cache);
    }

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
        if ANONYMOUS_PATHS.contains(&path) {
            return Ok(Some(UserInfo {
                username: ANONYMOUS.into(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".into()],
                extra: BTreeMap::new(),
            }));
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
        if let Some(bootstrap) = BootstrapToken::parse(token) {
            return match self.bootstrap_tokens.authenticate(&bootstrap) {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap token refused");
                    None
                }
            };
        }
        if let Some(user) = self.static_tokens.as_ref().and_then(|t| t.user(token)) {
            return Some(user);
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
        let user = match BootstrapToken::parse(token) {
            Some(bootstrap) => self.bootstrap_tokens.authenticate(&bootstrap)?,
            None => self
                .static_tokens
                .as_ref()
                .and_then(|t| t.user(token))
                .or_else(|| self.node_token_user(token))
                .ok_or_else(|| "invalid bearer token".to_string())?,
        };
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
            .then(|| UserInfo::new(NODE_AGENT_USER, [HOLLOW_NODES_GROUP.to_string()]))
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
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let peer = match req.extensions().get::<PeerCertificate>().map(|p| p.user_at(now)) {
        Some(Err(_)) => {
            tracing::debug!("client certificate expired on a connection made before");
            return unauthorized();
        }
        Some(Ok(user)) => user,
        None => None,
    };
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
    fn a_certificate_user_is_refused_once_the_certificate_ended() {
        let user = UserInfo::new("u", ["g".to_string()]);
        let peer = PeerCertificate { user: Some(user), not_after: Some(100) };
        assert_eq!(peer.user_at(100).unwrap().map(|u| u.username.as_str()), Some("u"));
        assert_eq!(peer.user_at(101).unwrap_err(), Refusal::BadCredentials);
        assert!(PeerCertificate::default().user_at(101).unwrap().is_none(), "no certificate: nothing to check");
    }

    #[test]
    fn certificates_then_tokens_then_public_paths() {
        let authn = Authenticator { node_token: Some("0123abcd".into()), ..Authenticator::default() };
        let admin = UserInfo::new("system:admin", ["system:masters".to_string()]);
        let node = Ok(r#"system:node-agent ["berth:hollow-nodes", "system:authenticated"]"#.to_string());
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
        assert_eq!(
            check(&authn, None, None, "/api/v1/namespaces/kube-public/configmaps/cluster-info"),
            Ok(r#"system:anonymous ["system:unauthenticated"]"#.into())
        );
        assert_eq!(check(&authn, None, None, "/api/v1/namespaces/kube-public/configmaps"), Err(Refusal::Anonymous));
        // A bootstrap-shaped token without its Secret (or without a cache) is refused.
        assert_eq!(check(&authn, None, Some("Bearer abcdef.0123456789abcdef"), "/api"), Err(Refusal::BadCredentials));
        let no_token = Authenticator::default();
        assert_eq!(check(&no_token, None, Some("Bearer 0123abcd"), "/api"), Err(Refusal::BadCredentials));
    }

    #[test]
    fn bootstrap_tokens_parse() {
        let ok = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!((ok.id.as_str(), ok.secret.as_str()), ("abcdef", "0123456789abcdef"));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abcdef:0123456789abcdef",
            "abc-ef.0123456789abcdef",
            "abcdef.0123456789abcdef.x",
        ] {
            assert_eq!(BootstrapToken::parse(bad), None, "{bad:?}");
        }
        assert!(valid_bootstrap_group("system:bootstrappers:kubeadm:default-node-token"));
        assert!(!valid_bootstrap_group("system:bootstrappers:"));
        assert!(!valid_bootstrap_group("system:bootstrappers:x-"));
        assert!(!valid_bootstrap_group("system:masters"));
        assert!(!valid_bootstrap_group("system:bootstrappers:UPPER"));
    }

    fn secret(data: &[(&str, &str)]) -> Value {
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| (k.to_string(), Value::String(b64(v)))).collect();
        serde_json::json!({
            "type": BOOTSTRAP_TOKEN_TYPE,
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "data": data,
        })
    }

    #[test]
    fn bootstrap_secrets_are_checked_as_kubernetes_does() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let base = [
            ("token-id", "abcdef"),
            ("token-secret", "0123456789abcdef"),
            ("usage-bootstrap-authentication", "true"),
            ("expiration", "2026-01-02T00:00:00Z"),
        ];
        let user = user_of_bootstrap_secret(&secret(&base), &token, now).unwrap();
        assert_eq!(user.username, "system:bootstrap:abcdef");
        assert_eq!(user.groups, vec![BOOTSTRAPPERS.to_string(), AUTHENTICATED.to_string()]);
        let with = |k: &str, v: &str| {
            let mut d: Vec<(&str, &str)> = base.iter().copied().filter(|(key, _)| *key != k).collect();
            d.push((k, v));
            secret(&d)
        };
        let extra = with("auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token");
        let user = user_of_bootstrap_secret(&extra, &token, now).unwrap();
        assert_eq!(user.groups[1], "system:bootstrappers:kubeadm:default-node-token");
        for (k, v) in [
            ("token-secret", "0123456789abcdee"),
            ("token-id", "abcdeg"),
            ("expiration", "2025-12-31T23:59:59Z"),
            ("expiration", "tomorrow"),
            ("usage-bootstrap-authentication", "false"),
            ("auth-extra-groups", "system:masters"),
        ] {
            assert!(user_of_bootstrap_secret(&with(k, v), &token, now).is_err(), "{k}={v}");
        }
        let mut wrong_type = secret(&base);
        wrong_type["type"] = "Opaque".into();
        assert!(user_of_bootstrap_secret(&wrong_type, &token, now).is_err());
        let mut deleting = secret(&base);
        deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        assert!(user_of_bootstrap_secret(&deleting, &token, now).is_err());
        let no_usage: Vec<(&str, &str)> =
            base.iter().copied().filter(|(k, _)| *k != "usage-bootstrap-authentication").collect();
        assert!(user_of_bootstrap_secret(&secret(&no_usage), &token, now).is_err());
    }
}
