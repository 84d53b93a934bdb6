//! ServiceAccount tokens: JWTs signed with the cluster's ServiceAccount key (ES256 for an
//! ECDSA P-256 key, RS256 for an RSA key, with ring), carrying Kubernetes' claims (`iss`,
//! `sub` = `system:serviceaccount:NS:NAME`, `aud`, `exp`, `iat`, `nbf`, `jti` and the private
//! `kubernetes.io` claim naming the namespace, the ServiceAccount and the object the token is
//! bound to). Here are the issuer ([`TokenIssuer`]: sign, verify, JWKS and OIDC discovery
//! documents), the authenticator side ([`ServiceAccountTokens`]: a verified token whose
//! ServiceAccount and bound object still exist with the same uid is that ServiceAccount's
//! user), and the TokenRequest subresource (`POST .../serviceaccounts/NAME/token`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::cache::Cache;
use crate::codec::{self, Output};
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::server::App;

/// The issuer Kubernetes' documentation uses when `--service-account-issuer` is not given.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Shortest lifetime a TokenRequest may ask for (10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Lifetime of a TokenRequest that names none (one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Clock skew tolerated on `nbf` and `iat`.
const LEEWAY_SECONDS: i64 = 60;

/// How long a verified signature is remembered (Kubernetes' token authenticator caches a
/// success for 10 s). Expiry, audiences and the bound objects are still checked on every
/// request: only the signature check and the claims' decoding are skipped.
const VERIFIED_TTL: Duration = Duration::from_secs(10);

/// At most this many remembered signatures; the map is emptied when it is full.
const VERIFIED_MAX: usize = 10_000;

/// Why a key cannot be used or a token does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The signing key is not a PEM PKCS#8 ECDSA P-256 or RSA key.
    #[error("unsupported ServiceAccount signing key: {0}")]
    Key(String),
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// Another issuer's token (not ours to judge).
    #[error("token issuer {0:?} is not this server's")]
    ForeignIssuer(String),
    /// The signature does not verify with our key.
    #[error("invalid signature")]
    Signature,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf` or issued in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// None of the token's audiences is accepted.
    #[error("token audiences {0:?} do not match the accepted audiences")]
    Audience(Vec<String>),
    /// The ServiceAccount or the bound object is gone or was recreated.
    #[error("{0}")]
    Revoked(String),
}

/// A name and uid in the private claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ref {
    /// Object name.
    pub name: String,
    /// Object uid.
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubernetesClaim {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Ref,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    /// The secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    /// The node the token is bound to (or the node of the bound pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// The claims of a ServiceAccount token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// Audiences (a JSON string or array on the wire).
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique id of this token.
    #[serde(default)]
    pub jti: String,
    /// The private claim.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

enum SigningKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// SHA-256 of a token whose signature verified → its claims and when it was verified.
type Verified = HashMap<[u8; 32], (Arc<Claims>, Instant)>;

/// Signs and verifies the server's ServiceAccount tokens.
pub struct TokenIssuer {
    issuer: String,
    api_audiences: Vec<String>,
    key: SigningKey,
    public: Vec<u8>,
    kid: String,
    jwk: Value,
    rng: SystemRandom,
    /// Tokens whose signature verified lately.
    verified: Mutex<Verified>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("api_audiences", &self.api_audiences)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn pem_der(pem: &str) -> Result<(String, Vec<u8>), Error> {
    let begin = pem.find("-----BEGIN ").ok_or_else(|| Error::Key("no PEM block".into()))?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----").ok_or_else(|| Error::Key("bad PEM header".into()))?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest.find("-----END ").ok_or_else(|| Error::Key("no PEM end".into()))?;
    let b64: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|e| Error::Key(format!("bad PEM base64: {e}")))?;
    Ok((label, der))
}

/// DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The PKIX SubjectPublicKeyInfo DER of a key (what Kubernetes hashes into the key id).
fn spki(key: &SigningKey, public: &[u8]) -> Vec<u8> {
    let (alg, bits) = match key {
        // id-ecPublicKey, prime256v1
        SigningKey::Ec(_) => (
            [
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
            ]
            .concat(),
            public,
        ),
        // rsaEncryption, NULL
        SigningKey::Rsa(_) => {
            ([der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]), vec![0x05, 0x00]].concat(), public)
        }
    };
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(bits);
    der(0x30, &[der(0x30, &alg), der(0x03, &bit_string)].concat())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl TokenIssuer {
    /// An issuer named `issuer` signing with the PEM `key_pem` (PKCS#8 ECDSA P-256 or RSA,
    /// or PKCS#1 RSA); tokens must carry one of `api_audiences` (default: the issuer).
    pub fn new(key_pem: &str, issuer: &str, api_audiences: &[String]) -> Result<TokenIssuer, Error> {
        let rng = SystemRandom::new();
        let (label, der_bytes) = pem_der(key_pem)?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => {
                SigningKey::Rsa(RsaKeyPair::from_der(&der_bytes).map_err(|e| Error::Key(e.to_string()))?)
            }
            _ => match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der_bytes, &rng) {
                Ok(k) => SigningKey::Ec(k),
                Err(_) => SigningKey::Rsa(RsaKeyPair::from_pkcs8(&der_bytes).map_err(|e| Error::Key(e.to_string()))?),
            },
        };
        let public = match &key {
            SigningKey::Ec(k) => k.public_key().as_ref().to_vec(),
            SigningKey::Rsa(k) => k.public_key().as_ref().to_vec(),
        };
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki(&key, &public)));
        let jwk = match &key {
            SigningKey::Ec(_) => json!({
                "use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
            }),
            SigningKey::Rsa(k) => {
                let components = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({
                    "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e),
                })
            }
        };
        let api_audiences = if api_audiences.is_empty() { vec![issuer.to_string()] } else { api_audiences.to_vec() };
        Ok(TokenIssuer {
            issuer: issuer.to_string(),
            api_audiences,
            key,
            public,
            kid,
            jwk,
            rng,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences the API server accepts (`--api-audiences`).
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    fn alg(&self) -> &'static str {
        match self.key {
            SigningKey::Ec(_) => "ES256",
            SigningKey::Rsa(_) => "RS256",
        }
    }

    /// A signed token with `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, Error> {
        let header = json!({ "alg": self.alg(), "kid": self.kid });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| Error::Key(e.to_string()))?)
        );
        let sig = match &self.key {
            SigningKey::Ec(k) => {
                k.sign(&self.rng, input.as_bytes()).map_err(|_| Error::Key("signing failed".into()))?.as_ref().to_vec()
            }
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(|_| Error::Key("signing failed".into()))?;
                sig
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// True when `token` looks like a JWT from this issuer (so other authenticators need
    /// not try it); says nothing about its validity.
    pub fn is_ours(&self, token: &str) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let known = <[u8; 32]>::try_from(digest.as_ref())
            .is_ok_and(|d| self.verified.lock().expect("verified tokens lock").contains_key(&d));
        known
            || unverified_claims(token)
                .is_some_and(|c| c.get("iss").and_then(Value::as_str) == Some(self.issuer.as_str()))
    }

    /// Verifies `token`'s signature, issuer and time window and that it carries one of
    /// `audiences` (the API audiences when empty); returns its claims and the audiences
    /// both sides accept.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<(Claims, Vec<String>), Error> {
        let claims = self.verified_claims(token)?;
        let now = now();
        if now >= claims.exp {
            return Err(Error::Expired);
        }
        if claims.nbf > now + LEEWAY_SECONDS || claims.iat > now + LEEWAY_SECONDS {
            return Err(Error::NotYetValid);
        }
        let accepted = if audiences.is_empty() { &self.api_audiences[..] } else { audiences };
        let both: Vec<String> = accepted.iter().filter(|a| claims.aud.contains(a)).cloned().collect();
        if both.is_empty() {
            return Err(Error::Audience(claims.aud.clone()));
        }
        Ok((Claims::clone(&claims), both))
    }

    /// The claims of `token` once its issuer and signature are checked, from the cache of
    /// recently verified tokens when it is there.
    fn verified_claims(&self, token: &str) -> Result<Arc<Claims>, Error> {
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("a SHA-256 digest is 32 bytes");
        let now = Instant::now();
        if let Some((claims, at)) = self.verified.lock().expect("verified tokens lock").get(&digest)
            && now.duration_since(*at) < VERIFIED_TTL
        {
            return Ok(claims.clone());
        }
        let claims = Arc::new(self.check_signature(token)?);
        let mut verified = self.verified.lock().expect("verified tokens lock");
        if verified.len() >= VERIFIED_MAX {
            verified.retain(|_, (_, at)| now.duration_since(*at) < VERIFIED_TTL);
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
        }
        verified.insert(digest, (claims.clone(), now));
        Ok(claims)
    }

    /// Decodes `token` and checks its issuer, algorithm and signature.
    fn check_signature(&self, token: &str) -> Result<Claims, Error> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Malformed);
        };
        let header: Value =
            URL_SAFE_NO_PAD.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(Error::Malformed)?;
        let raw_claims: Value =
            URL_SAFE_NO_PAD.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(Error::Malformed)?;
        let iss = raw_claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != self.issuer {
            return Err(Error::ForeignIssuer(iss.to_string()));
        }
        if header.get("alg").and_then(Value::as_str) != Some(self.alg()) {
            return Err(Error::Signature);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| Error::Malformed)?;
        let message = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = match self.key {
            SigningKey::Ec(_) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public).verify(message, &sig)
            }
            SigningKey::Rsa(_) => {
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.public).verify(message, &sig)
            }
        };
        ok.map_err(|_| Error::Signature)?;
        serde_json::from_value(raw_claims).map_err(|_| Error::Malformed)
    }

    /// The JSON Web Key Set of the signing key (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// The OpenID provider configuration (`/.well-known/openid-configuration`).
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.alg()],
        })
    }
}

fn unverified_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, p, _) = (parts.next()?, parts.next()?, parts.next()?);
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

/// The ServiceAccount token authenticator: the issuer plus the objects (from the watch
/// cache) a token's validity depends on.
pub struct ServiceAccountTokens {
    /// The issuer.
    pub issuer: TokenIssuer,
    cache: OnceLock<Arc<Cache>>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

fn key(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("/registry/core/{kind}/{ns}/{name}"),
        None => format!("/registry/core/{kind}/{name}"),
    }
}

impl ServiceAccountTokens {
    /// Tokens of `issuer`; objects are looked up once [`ServiceAccountTokens::attach`] gave the cache.
    pub fn new(issuer: TokenIssuer) -> ServiceAccountTokens {
        ServiceAccountTokens { issuer, cache: OnceLock::new() }
    }

    /// Gives the watch cache the existence checks read from.
    pub fn attach(&self, cache: Arc<Cache>) {
        let _ = self.cache.set(cache);
    }

    /// The live object at `key` if its uid is `uid` and it is not being deleted.
    fn check(&self, what: &str, key: &str, uid: &str) -> Result<(), Error> {
        let cache = self.cache.get().ok_or_else(|| Error::Revoked("no object cache".into()))?;
        let obj = cache.get(key).ok_or_else(|| Error::Revoked(format!("{what} not found")))?;
        let live_uid = obj.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        if live_uid != uid {
            return Err(Error::Revoked(format!("{what} uid ({live_uid}) does not match the token's ({uid})")));
        }
        if obj.value.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Err(Error::Revoked(format!("{what} is being deleted")));
        }
        Ok(())
    }

    /// The user of a valid `token` and the audiences it was accepted for (`audiences`, or
    /// the API audiences when empty).
    pub fn authenticate(&self, token: &str, audiences: &[String]) -> Result<(UserInfo, Vec<String>), Error> {
        let (claims, accepted) = self.issuer.verify(token, audiences)?;
        let k = &claims.kubernetes;
        let ns = k.namespace.as_str();
        if claims.sub != format!("system:serviceaccount:{ns}:{}", k.serviceaccount.name) {
            return Err(Error::Malformed);
        }
        self.check(
            &format!("serviceaccount {ns}/{}", k.serviceaccount.name),
            &key("serviceaccounts", Some(ns), &k.serviceaccount.name),
            &k.serviceaccount.uid,
        )?;
        if let Some(pod) = &k.pod {
            self.check(&format!("pod {ns}/{}", pod.name), &key("pods", Some(ns), &pod.name), &pod.uid)?;
        }
        if let Some(secret) = &k.secret {
            self.check(&format!("secret {ns}/{}", secret.name), &key("secrets", Some(ns), &secret.name), &secret.uid)?;
        }
        if k.pod.is_none()
            && let Some(node) = &k.node
        {
            self.check(&format!("node {}", node.name), &key("nodes", None, &node.name), &node.uid)?;
        }
        let mut user = UserInfo::new(
            claims.sub.clone(),
            ["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")],
        );
        user.uid = k.serviceaccount.uid.clone();
        let mut extra = BTreeMap::new();
        if let Some(pod) = &k.pod {
            extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![pod.name.clone()]);
            extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &k.node {
            extra.insert("authentication.kubernetes.io/node-name".to_string(), vec![node.name.clone()]);
            extra.insert("authentication.kubernetes.io/node-uid".to_string(), vec![node.uid.clone()]);
        }
        if !claims.jti.is_empty() {
            extra.insert("authentication.kubernetes.io/credential-id".to_string(), vec![format!("JTI={}", claims.jti)]);
        }
        user.extra = extra;
        Ok((user, accepted))
    }
}

fn invalid(name: &str, field: &str, value: &Value, why: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {field}: Invalid value: {value}: {why}"),
    )
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a TokenRequest answered with
/// a signed token for the ServiceAccount, optionally bound to a Pod, Secret or Node.
pub async fn token_request(ctx: Ctx, body: Bytes) -> ApiResult<Response> {
    let sa_tokens = ctx
        .app
        .config
        .authn
        .service_accounts
        .clone()
        .ok_or_else(|| ApiError::new(404, "NotFound", "the TokenRequest API is not enabled on this server"))?;
    let issuer = &sa_tokens.issuer;
    let ns = ctx.namespace().unwrap_or("default").to_string();
    let name = ctx.name().to_string();
    let kind = codec::body_type(&ctx.headers)?;
    let mut req = codec::decode_object(kind, &body)?;
    match (req.get("apiVersion").and_then(Value::as_str), req.get("kind").and_then(Value::as_str)) {
        (None | Some("authentication.k8s.io/v1"), None | Some("TokenRequest")) => {}
        (v, k) => {
            return Err(ApiError::bad_request(format!(
                "expected authentication.k8s.io/v1 TokenRequest, got {} {}",
                v.unwrap_or(""),
                k.unwrap_or("")
            )));
        }
    }
    if let Some(body_name) = req.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty())
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "TokenRequest name {body_name:?} does not match the ServiceAccount {name:?}"
        )));
    }
    ctx.app.catch_up().await?;
    let sa = ctx
        .app
        .cache
        .get(&key("serviceaccounts", Some(&ns), &name))
        .ok_or_else(|| ApiError::not_found(&ctx.served.info, &name))?;
    crate::node_restriction::admit_token_request(&ctx, &req)?;
    let sa_uid = sa.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    if !spec.is_object() {
        return Err(ApiError::bad_request("spec must be an object"));
    }
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            &name,
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ApiError::bad_request("spec.audiences must be a list of strings"))?,
        Some(_) => return Err(ApiError::bad_request("spec.audiences must be a list of strings")),
    };
    if audiences.iter().any(String::is_empty) {
        return Err(invalid(&name, "spec.audiences", &json!(""), "audience must not be empty"));
    }
    let audiences = if audiences.is_empty() { issuer.api_audiences().to_vec() } else { audiences };
    let mut claim = KubernetesClaim {
        namespace: ns.clone(),
        serviceaccount: Ref { name: name.clone(), uid: sa_uid },
        ..KubernetesClaim::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|v| !v.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = bound.get("apiVersion").and_then(Value::as_str).unwrap_or("v1");
        let bound_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let bound_uid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        if api_version != "v1" || !matches!(kind, "Pod" | "Secret" | "Node") {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {api_version}, Kind={kind}"
            )));
        }
        if bound_name.is_empty() {
            return Err(invalid(&name, "spec.boundObjectRef.name", &json!(""), "name must be set"));
        }
        let (plural, obj_ns) = match kind {
            "Pod" => ("pods", Some(ns.as_str())),
            "Secret" => ("secrets", Some(ns.as_str())),
            _ => ("nodes", None),
        };
        let obj = ctx.app.cache.get(&key(plural, obj_ns, bound_name)).ok_or_else(|| ApiError {
            details: Some(json!({ "name": bound_name, "kind": plural })),
            ..ApiError::new(404, "NotFound", format!("{plural} \"{bound_name}\" not found"))
        })?;
        let live_uid = obj.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
        if !bound_uid.is_empty() && bound_uid != live_uid {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "the UID in the bound object reference ({bound_uid}) does not match the UID in record ({live_uid}). The object might have been deleted and then recreated"
                ),
            ));
        }
        let r = Ref { name: bound_name.to_string(), uid: live_uid.clone() };
        match kind {
            "Pod" => {
                let pod_sa = obj.value.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("default");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                if let Some(node) =
                    obj.value.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
                    && let Some(node_obj) = ctx.app.cache.get(&key("nodes", None, node))
                {
                    let uid = node_obj.value.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    claim.node = Some(Ref { name: node.to_string(), uid: uid.to_string() });
                }
                claim.pod = Some(r);
            }
            "Secret" => claim.secret = Some(r),
            _ => claim.node = Some(r),
        }
        req["spec"]["boundObjectRef"]["uid"] = json!(live_uid);
    }
    let iat = now();
    let claims = Claims {
        iss: issuer.issuer().to_string(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: audiences.clone(),
        exp: iat + expiration,
        iat,
        nbf: iat,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: claim,
    };
    let token = issuer.sign(&claims).map_err(ApiError::internal)?;
    let expires = jiff::Timestamp::from_second(claims.exp).map_err(ApiError::internal)?;
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    if !req["metadata"].is_object() {
        req["metadata"] = json!({});
    }
    req["metadata"]["name"] = json!(name);
    req["metadata"]["namespace"] = json!(ns);
    req["metadata"]["creationTimestamp"] =
        json!(jiff::Timestamp::from_second(iat).map_err(ApiError::internal)?.to_string());
    if !req["spec"].is_object() {
        req["spec"] = json!({});
    }
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(expiration);
    req["status"] = json!({ "token": token, "expirationTimestamp": expires.to_string() });
    let out = if ctx.out == Output::Json { Output::Json } else { ctx.out };
    Ok(codec::respond(StatusCode::CREATED, &req, out))
}

/// `/.well-known/openid-configuration`.
pub async fn openid_configuration(State(app): State<Arc<App>>) -> Response {
    match &app.config.authn.service_accounts {
        Some(sa) => codec::respond(StatusCode::OK, &sa.issuer.openid_configuration(), Output::Json),
        None => ApiError::unknown_resource().into_response(),
    }
}

/// `/openid/v1/jwks`.
pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    match &app.config.authn.service_accounts {
        Some(sa) => {
            codec::with_type(StatusCode::OK, sa.issuer.jwks().to_string().into_bytes(), "application/jwk-set+json")
        }
        None => ApiError::unknown_resource().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ECDSA P-256 PKCS#8 key as rcgen (and so berth-pki) makes them.
    fn ec_key() -> String {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(doc.as_ref()))
    }

    fn claims(issuer: &str, aud: &[&str], exp_in: i64) -> Claims {
        let now = now();
        Claims {
            iss: issuer.into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: aud.iter().map(|s| s.to_string()).collect(),
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaim {
                namespace: "ns".into(),
                serviceaccount: Ref { name: "sa".into(), uid: "u".into() },
                ..KubernetesClaim::default()
            },
        }
    }

    #[test]
    fn tokens_verify_only_with_our_key_audience_and_time() {
        let issuer = TokenIssuer::new(&ec_key(), DEFAULT_ISSUER, &[]).unwrap();
        let good = issuer.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600)).unwrap();
        let (c, aud) = issuer.verify(&good, &[]).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:ns:sa");
        assert_eq!(aud, vec![DEFAULT_ISSUER.to_string()]);
        assert!(issuer.is_ours(&good));
        let expired = issuer.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], -1)).unwrap();
        assert_eq!(issuer.verify(&expired, &[]).unwrap_err(), Error::Expired);
        let other_aud = issuer.sign(&claims(DEFAULT_ISSUER, &["vault"], 600)).unwrap();
        assert!(matches!(issuer.verify(&other_aud, &[]), Err(Error::Audience(_))));
        assert_eq!(issuer.verify(&other_aud, &["vault".into()]).unwrap().1, vec!["vault".to_string()]);
        let forger = TokenIssuer::new(&ec_key(), DEFAULT_ISSUER, &[]).unwrap();
        let forged = forger.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600)).unwrap();
        assert_eq!(issuer.verify(&forged, &[]).unwrap_err(), Error::Signature);
        let foreign = forger.sign(&claims("https://elsewhere", &[DEFAULT_ISSUER], 600)).unwrap();
        assert!(!issuer.is_ours(&foreign));
        assert!(matches!(issuer.verify(&foreign, &[]), Err(Error::ForeignIssuer(_))));
        // A changed claim breaks the signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut c = claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600);
        c.sub = "system:serviceaccount:kube-system:admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(issuer.verify(&parts.join("."), &[]).unwrap_err(), Error::Signature);
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(issuer.verify(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn remembered_signatures_still_get_every_other_check() {
        let issuer = TokenIssuer::new(&ec_key(), DEFAULT_ISSUER, &[]).unwrap();
        let good = issuer.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600)).unwrap();
        let first = issuer.verify(&good, &[]).unwrap();
        assert_eq!(issuer.verified.lock().unwrap().len(), 1);
        assert_eq!(issuer.verify(&good, &[]).unwrap(), first, "the remembered claims are the same");
        // The audience is checked on every use, not only when the signature was verified.
        assert!(matches!(issuer.verify(&good, &["vault".into()]), Err(Error::Audience(_))));
        // So is the expiry: a remembered token past `exp` is refused.
        let short = issuer.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600)).unwrap();
        issuer.verify(&short, &[]).unwrap();
        let digest: [u8; 32] =
            ring::digest::digest(&ring::digest::SHA256, short.as_bytes()).as_ref().try_into().unwrap();
        if let Some((c, _)) = issuer.verified.lock().unwrap().get_mut(&digest) {
            Arc::make_mut(c).exp = now() - 1;
        }
        assert_eq!(issuer.verify(&short, &[]).unwrap_err(), Error::Expired);
        // Failures are not remembered: a forged token fails every time.
        let forger = TokenIssuer::new(&ec_key(), DEFAULT_ISSUER, &[]).unwrap();
        let forged = forger.sign(&claims(DEFAULT_ISSUER, &[DEFAULT_ISSUER], 600)).unwrap();
        for _ in 0..2 {
            assert_eq!(issuer.verify(&forged, &[]).unwrap_err(), Error::Signature);
        }
        assert_eq!(issuer.verified.lock().unwrap().len(), 2);
    }

    #[test]
    fn jwks_and_discovery_describe_the_key() {
        let issuer = TokenIssuer::new(&ec_key(), "https://issuer.example", &["api".into()]).unwrap();
        let jwks = issuer.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "EC");
        assert_eq!(jwks["keys"][0]["alg"], "ES256");
        assert_eq!(URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap().len(), 32);
        let doc = issuer.openid_configuration();
        assert_eq!(doc["jwks_uri"], "https://issuer.example/openid/v1/jwks");
        assert_eq!(issuer.api_audiences(), ["api".to_string()]);
        // The token header names the key id of the JWKS.
        let token = issuer.sign(&claims("https://issuer.example", &["api"], 600)).unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
        assert!(TokenIssuer::new("not a key", DEFAULT_ISSUER, &[]).is_err());
    }
}
