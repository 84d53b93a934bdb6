//! Encryption at rest: a [`Store`] wrapper that encrypts the values of chosen resources
//! (Secrets by default) before they reach the backend, and decrypts them on the way
//! back, as the Kubernetes API server's encryption providers do.
//!
//! The configuration is Kubernetes' `EncryptionConfiguration`
//! (apiserver.config.k8s.io/v1): rules of `resources` (`secrets`, `deployments.apps`,
//! `*.apps`, `*.*`) with an ordered list of providers; the first provider encrypts new
//! writes and every provider can read. Providers: `aesgcm` (AES-GCM with 16- or 32-byte
//! keys, a random 12-byte nonce per write, the storage key as associated data so a value
//! cannot be moved to another key) and `identity` (plain). Stored values carry
//! Kubernetes' prefix `k8s:enc:aesgcm:v1:<key name>:`, so a value names the key that
//! reads it and keys can be rotated: put a new key first, re-encrypt with
//! [`reencrypt`], then drop the old key.
//!
//! Keys are `/registry/<group>/<resource>/...` with group `core` for the core group.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::{Error, Event, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

/// Prefix of values written by the aesgcm provider (followed by `<key name>:`).
const AESGCM_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";
/// Prefix of every encrypted value, whatever the provider.
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// A problem with an encryption configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not a valid EncryptionConfiguration.
    #[error("encryption configuration: {0}")]
    Invalid(String),
}

/// The file format: Kubernetes' EncryptionConfiguration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    resources: Vec<RuleFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuleFile {
    resources: Vec<String>,
    providers: Vec<ProviderFile>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProviderFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    aesgcm: Option<KeysFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<serde_json::Value>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<KeyFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyFile {
    name: String,
    secret: String,
}

/// Which resources a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resources {
    /// One resource of one group (`secrets` is core/secrets, `deployments.apps`).
    One { group: String, resource: String },
    /// Every resource of a group (`*.apps`; `*.` is the core group).
    Group(String),
    /// Everything (`*.*`).
    All,
}

impl Resources {
    fn parse(s: &str) -> std::result::Result<Resources, ConfigError> {
        match s {
            "*.*" => Ok(Resources::All),
            "*." => Ok(Resources::Group("core".into())),
            _ if s.starts_with("*.") => Ok(Resources::Group(s[2..].to_string())),
            _ if s.is_empty() || s.contains('*') => Err(ConfigError::Invalid(format!("resource {s:?} is not valid"))),
            _ => {
                let (resource, group) = s.split_once('.').unwrap_or((s, "core"));
                Ok(Resources::One { group: group.to_string(), resource: resource.to_string() })
            }
        }
    }

    fn matches(&self, group: &str, resource: &str) -> bool {
        match self {
            Resources::One { group: g, resource: r } => g == group && r == resource,
            Resources::Group(g) => g == group,
            Resources::All => true,
        }
    }
}

/// One named AES-GCM key.
struct NamedKey {
    name: String,
    key: LessSafeKey,
}

/// A provider of a rule.
enum Provider {
    AesGcm(Vec<NamedKey>),
    Identity,
}

struct Rule {
    resources: Vec<Resources>,
    providers: Vec<Provider>,
}

/// A parsed encryption configuration.
pub struct EncryptionConfig {
    rules: Vec<Rule>,
    random: SystemRandom,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig").field("rules", &self.rules.len()).finish_non_exhaustive()
    }
}

impl EncryptionConfig {
    /// Parses an EncryptionConfiguration (YAML or JSON).
    pub fn parse(text: &str) -> std::result::Result<EncryptionConfig, ConfigError> {
        let file = parse_file(text)?;
        let mut rules = Vec::new();
        for (i, rule) in file.resources.iter().enumerate() {
            let resources =
                rule.resources.iter().map(|r| Resources::parse(r)).collect::<std::result::Result<Vec<_>, _>>()?;
            if resources.is_empty() || rule.providers.is_empty() {
                return Err(ConfigError::Invalid(format!("resources[{i}] needs resources and providers")));
            }
            let mut providers = Vec::new();
            for p in &rule.providers {
                providers.push(provider(p)?);
            }
            rules.push(Rule { resources, providers });
        }
        Ok(EncryptionConfig { rules, random: SystemRandom::new() })
    }

    /// A configuration that encrypts Secrets with one new random 32-byte AES-GCM key and
    /// still reads plain values, as YAML (JSON) text.
    pub fn generate() -> String {
        let file = ConfigFile {
            api_version: "apiserver.config.k8s.io/v1".into(),
            kind: "EncryptionConfiguration".into(),
            resources: vec![RuleFile {
                resources: vec!["secrets".into()],
                providers: vec![
                    ProviderFile { aesgcm: Some(KeysFile { keys: vec![new_key()] }), ..ProviderFile::default() },
                    ProviderFile { identity: Some(serde_json::json!({})), ..ProviderFile::default() },
                ],
            }],
        };
        serde_json::to_string_pretty(&file).expect("config serializes") + "\n"
    }

    /// `text` with a new random key first in every aesgcm provider (the old keys stay,
    /// for reading), as YAML (JSON) text.
    pub fn rotate(text: &str) -> std::result::Result<String, ConfigError> {
        let mut file = parse_file(text)?;
        let mut rotated = false;
        for rule in &mut file.resources {
            if let Some(gcm) = rule.providers.first_mut().and_then(|p| p.aesgcm.as_mut()) {
                gcm.keys.insert(0, new_key());
                rotated = true;
            }
        }
        if !rotated {
            return Err(ConfigError::Invalid("no rule encrypts with aesgcm first: nothing to rotate".into()));
        }
        EncryptionConfig::parse(&serde_json::to_string(&file).expect("config serializes"))?;
        Ok(serde_json::to_string_pretty(&file).expect("config serializes") + "\n")
    }

    /// The names of every aesgcm key in the configuration `text`, rule by rule in order
    /// (what tells a rotated configuration from the one it was rotated from).
    pub fn key_names(text: &str) -> std::result::Result<Vec<String>, ConfigError> {
        let file = parse_file(text)?;
        Ok(file
            .resources
            .iter()
            .flat_map(|r| &r.providers)
            .filter_map(|p| p.aesgcm.as_ref())
            .flat_map(|gcm| gcm.keys.iter().map(|k| k.name.clone()))
            .collect())
    }

    /// The rule covering `key` (the first that lists its resource), if any.
    fn rule_for(&self, key: &str) -> Option<&Rule> {
        let mut parts = key.strip_prefix("/registry/")?.splitn(3, '/');
        let (group, resource) = (parts.next()?, parts.next()?);
        self.rules.iter().find(|r| r.resources.iter().any(|m| m.matches(group, resource)))
    }

    /// The value to store for `key`.
    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        let Some(Provider::AesGcm(keys)) = self.rule_for(key).and_then(|r| r.providers.first()) else {
            return Ok(value);
        };
        let named = &keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| Error::Backend("no random numbers for a nonce".into()))?;
        let mut sealed = value.to_vec();
        named
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(key.as_bytes()), &mut sealed)
            .map_err(|_| Error::Backend(format!("encrypting {key}")))?;
        let mut out = Vec::with_capacity(AESGCM_PREFIX.len() + named.name.len() + 1 + NONCE_LEN + sealed.len());
        out.extend_from_slice(AESGCM_PREFIX);
        out.extend_from_slice(named.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out.into())
    }

    /// The plain value of a stored `value` of `key`.
    fn open(&self, key: &str, value: Bytes) -> Result<Bytes> {
        if !value.starts_with(ENCRYPTED_PREFIX) {
            return Ok(value);
        }
        let undecryptable = |why: &str| Error::Backend(format!("cannot decrypt {key}: {why}"));
        let Some(rest) = value.strip_prefix(AESGCM_PREFIX) else {
            return Err(undecryptable("written by a provider berth does not have"));
        };
        let colon = rest.iter().position(|b| *b == b':').ok_or_else(|| undecryptable("no key name"))?;
        let name = std::str::from_utf8(&rest[..colon]).map_err(|_| undecryptable("bad key name"))?;
        let named = self
            .rule_for(key)
            .into_iter()
            .flat_map(|r| &r.providers)
            .filter_map(|p| match p {
                Provider::AesGcm(keys) => Some(keys),
                Provider::Identity => None,
            })
            .flatten()
            .find(|k| k.name == name)
            .ok_or_else(|| undecryptable(&format!("aesgcm key {name:?} is not in the encryption configuration")))?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN {
            return Err(undecryptable("truncated"));
        }
        let nonce = Nonce::try_assume_unique_for_key(&body[..NONCE_LEN]).map_err(|_| undecryptable("bad nonce"))?;
        let mut sealed = body[NONCE_LEN..].to_vec();
        let plain = named
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut sealed)
            .map_err(|_| undecryptable("authentication failed (wrong key, or the value was moved or altered)"))?;
        Ok(Bytes::copy_from_slice(plain))
    }

    /// Whether the stored `value` of `key` is already written as a new write would be
    /// (encrypted with the first key of its rule, or plain where nothing encrypts).
    fn is_current(&self, key: &str, value: &[u8]) -> bool {
        match self.rule_for(key).and_then(|r| r.providers.first()) {
            Some(Provider::AesGcm(keys)) => {
                let mut prefix = AESGCM_PREFIX.to_vec();
                prefix.extend_from_slice(keys[0].name.as_bytes());
                prefix.push(b':');
                value.starts_with(&prefix)
            }
            _ => !value.starts_with(ENCRYPTED_PREFIX),
        }
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue> {
        kv.value = self.open(&kv.key, kv.value)?;
        Ok(kv)
    }

    fn open_error(&self, e: Error) -> Error {
        match e {
            Error::Conflict { key, current } => {
                let current = match current {
                    Some(kv) => match self.open_kv(*kv) {
                        Ok(kv) => Some(Box::new(kv)),
                        Err(e) => return e,
                    },
                    None => None,
                };
                Error::Conflict { key, current }
            }
            other => other,
        }
    }
}

fn parse_file(text: &str) -> std::result::Result<ConfigFile, ConfigError> {
    let file: ConfigFile = serde_saphyr::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if file.api_version != "apiserver.config.k8s.io/v1" || file.kind != "EncryptionConfiguration" {
        return Err(ConfigError::Invalid(format!(
            "expected apiVersion apiserver.config.k8s.io/v1 and kind EncryptionConfiguration, got {} {}",
            file.api_version, file.kind
        )));
    }
    Ok(file)
}

fn provider(p: &ProviderFile) -> std::result::Result<Provider, ConfigError> {
    let named = usize::from(p.aesgcm.is_some()) + usize::from(p.identity.is_some()) + p.other.len();
    if named != 1 {
        return Err(ConfigError::Invalid("each provider names exactly one kind".into()));
    }
    if let Some((kind, _)) = p.other.iter().next() {
        return Err(ConfigError::Invalid(format!("provider {kind} is not supported: berth has aesgcm and identity")));
    }
    let Some(gcm) = &p.aesgcm else {
        return Ok(Provider::Identity);
    };
    if gcm.keys.is_empty() {
        return Err(ConfigError::Invalid("aesgcm needs at least one key".into()));
    }
    let mut keys = Vec::new();
    for k in &gcm.keys {
        if k.name.is_empty() || k.name.contains(':') {
            return Err(ConfigError::Invalid(format!("aesgcm key name {:?} must be non-empty without ':'", k.name)));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(k.secret.trim())
            .map_err(|e| ConfigError::Invalid(format!("aesgcm key {}: secret is not base64: {e}", k.name)))?;
        let algorithm = match secret.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => {
                return Err(ConfigError::Invalid(format!(
                    "aesgcm key {}: {n} bytes; berth takes 16- or 32-byte keys",
                    k.name
                )));
            }
        };
        let unbound = UnboundKey::new(algorithm, &secret)
            .map_err(|_| ConfigError::Invalid(format!("aesgcm key {} is not usable", k.name)))?;
        keys.push(NamedKey { name: k.name.clone(), key: LessSafeKey::new(unbound) });
    }
    Ok(Provider::AesGcm(keys))
}

/// A new 32-byte key named for the time it was made (plus a random tag: two keys made
/// in the same second differ).
fn new_key() -> KeyFile {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).expect("system random numbers");
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut tag = [0u8; 4];
    SystemRandom::new().fill(&mut tag).expect("system random numbers");
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    KeyFile {
        name: format!("aesgcm-key-{seconds}-{tag}"),
        secret: base64::engine::general_purpose::STANDARD.encode(secret),
    }
}

/// A store whose values are encrypted per an [`EncryptionConfig`], which a
/// [`ConfigHandle`] can replace while the store serves.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: ConfigHandle,
}

/// The configuration an [`EncryptedStore`] uses, replaceable while it serves (a server
/// taking a rotated key from the cluster's other servers). Each read and write uses the
/// configuration current when it starts.
#[derive(Clone)]
pub struct ConfigHandle(Arc<std::sync::RwLock<Arc<EncryptionConfig>>>);

impl std::fmt::Debug for ConfigHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConfigHandle").finish_non_exhaustive()
    }
}

impl ConfigHandle {
    /// Uses `config` from now on.
    pub fn replace(&self, config: EncryptionConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    fn current(&self) -> Arc<EncryptionConfig> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl EncryptedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> EncryptedStore {
        EncryptedStore { inner, config: ConfigHandle(Arc::new(std::sync::RwLock::new(Arc::new(config)))) }
    }

    /// The handle that replaces this store's configuration.
    pub fn handle(&self) -> ConfigHandle {
        self.config.clone()
    }
}

#[async_trait::async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await?.map(|kv| self.config.current().open_kv(kv)).transpose()
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult> {
        let mut r = self.inner.range(prefix, start_after, limit, revision).await?;
        let config = self.config.current();
        r.kvs = r.kvs.into_iter().map(|kv| config.open_kv(kv)).collect::<Result<_>>()?;
        Ok(r)
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let config = self.config.current();
        let sealed = config.seal(key, value.clone())?;
        let mut kv = self.inner.create(key, sealed).await.map_err(|e| config.open_error(e))?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let config = self.config.current();
        let sealed = config.seal(key, value.clone())?;
        let mut kv = self.inner.update(key, sealed, expected).await.map_err(|e| config.open_error(e))?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let config = self.config.current();
        let kv = self.inner.delete(key, expected).await.map_err(|e| config.open_error(e))?;
        config.open_kv(kv)
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        let handle = self.config.clone();
        let stream = self.inner.watch(prefix, from).await?;
        Ok(Box::pin(stream.map(move |event| {
            let config = handle.current();
            Ok(match event? {
                Event::Put { kv, prev } => {
                    Event::Put { kv: config.open_kv(kv)?, prev: prev.map(|p| config.open_kv(p)).transpose()? }
                }
                Event::Delete { kv } => Event::Delete { kv: config.open_kv(kv)? },
            })
        })))
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// Rewrites every value under `/registry/` that is not written as `config` would write it
/// now (after a key rotation, or a resource newly added to the configuration), with
/// compare-and-swap so concurrent writers win. Returns how many values were rewritten.
pub async fn reencrypt(inner: Arc<dyn Store>, config: EncryptionConfig) -> Result<usize> {
    let store = EncryptedStore::new(inner.clone(), config);
    let mut rewritten = 0;
    let mut after: Option<String> = None;
    loop {
        let page = inner.range("/registry/", after.as_deref(), 500, None).await?;
        after = page.kvs.last().map(|kv| kv.key.clone());
        for raw in page.kvs {
            let config = store.config.current();
            if config.is_current(&raw.key, &raw.value) {
                continue;
            }
            let plain = config.open(&raw.key, raw.value)?;
            match store.update(&raw.key, plain, raw.mod_revision).await {
                Ok(_) => rewritten += 1,
                // Written (or deleted) meanwhile: that write used the current configuration.
                Err(Error::Conflict { .. } | Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !page.more {
            return Ok(rewritten);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{SqliteOptions, SqliteStore};

    fn config(text: &str) -> EncryptionConfig {
        EncryptionConfig::parse(text).expect("config")
    }

    fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store"))
    }

    const SECRET: &str = "/registry/core/secrets/default/db";
    const CONFIGMAP: &str = "/registry/core/configmaps/default/db";

    #[tokio::test]
    async fn secrets_are_sealed_and_other_values_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let store = EncryptedStore::new(raw.clone(), config(&EncryptionConfig::generate()));
        let created = store.create(SECRET, Bytes::from_static(b"{\"password\":\"hunter2\"}")).await.unwrap();
        assert_eq!(created.value, Bytes::from_static(b"{\"password\":\"hunter2\"}"));
        store.create(CONFIGMAP, Bytes::from_static(b"{\"plain\":true}")).await.unwrap();
        let stored = raw.get(SECRET).await.unwrap().unwrap().value;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:aesgcm-key-"), "{stored:?}");
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(raw.get(CONFIGMAP).await.unwrap().unwrap().value, Bytes::from_static(b"{\"plain\":true}"));
        assert_eq!(store.get(SECRET).await.unwrap().unwrap().value, Bytes::from_static(b"{\"password\":\"hunter2\"}"));
        // Two writes of the same value differ (fresh nonces).
        let again = store.update(SECRET, Bytes::from_static(b"{\"password\":\"hunter2\"}"), created.mod_revision);
        again.await.unwrap();
        assert_ne!(raw.get(SECRET).await.unwrap().unwrap().value, stored);
        // A conflict reports the current value decrypted.
        match store.update(SECRET, Bytes::from_static(b"{}"), created.mod_revision).await {
            Err(Error::Conflict { current: Some(kv), .. }) => {
                assert_eq!(kv.value, Bytes::from_static(b"{\"password\":\"hunter2\"}"))
            }
            other => panic!("expected a conflict: {other:?}"),
        }
    }

    #[tokio::test]
    async fn values_moved_altered_or_of_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let text = EncryptionConfig::generate();
        let store = EncryptedStore::new(raw.clone(), config(&text));
        store.create(SECRET, Bytes::from_static(b"top secret")).await.unwrap();
        let sealed = raw.get(SECRET).await.unwrap().unwrap().value;
        // The same bytes under another secret's key fail authentication.
        let other = "/registry/core/secrets/default/other";
        raw.create(other, sealed.clone()).await.unwrap();
        let err = store.get(other).await.unwrap_err().to_string();
        assert!(err.contains("authentication failed"), "{err}");
        // A flipped bit fails too.
        let mut altered = sealed.to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        raw.create("/registry/core/secrets/default/altered", altered.into()).await.unwrap();
        assert!(store.get("/registry/core/secrets/default/altered").await.is_err());
        // Another configuration (another key) cannot read it, and says which key is missing.
        let stranger = EncryptedStore::new(raw.clone(), config(&EncryptionConfig::generate()));
        let err = stranger.get(SECRET).await.unwrap_err().to_string();
        assert!(err.contains("is not in the encryption configuration"), "{err}");
        // Plain values written before encryption was turned on are still read.
        raw.create("/registry/core/secrets/default/legacy", Bytes::from_static(b"plain")).await.unwrap();
        assert_eq!(
            store.get("/registry/core/secrets/default/legacy").await.unwrap().unwrap().value,
            Bytes::from_static(b"plain")
        );
    }

    #[tokio::test]
    async fn watches_see_plain_values() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let store = EncryptedStore::new(raw, config(&EncryptionConfig::generate()));
        let mut watch = store.watch("/registry/core/secrets/", 0).await.unwrap();
        let kv = store.create(SECRET, Bytes::from_static(b"v1")).await.unwrap();
        store.update(SECRET, Bytes::from_static(b"v2"), kv.mod_revision).await.unwrap();
        store.delete(SECRET, None).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(watch.next().await.unwrap().unwrap());
        }
        assert!(matches!(&seen[0], Event::Put { kv, prev: None } if kv.value == "v1"));
        assert!(matches!(&seen[1], Event::Put { kv, prev: Some(p) } if kv.value == "v2" && p.value == "v1"));
        assert!(matches!(&seen[2], Event::Delete { kv } if kv.value == "v2"));
    }

    #[tokio::test]
    async fn a_replaced_configuration_reads_what_another_server_wrote_with_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let old = EncryptionConfig::generate();
        let new = EncryptionConfig::rotate(&old).unwrap();
        let old_names = EncryptionConfig::key_names(&old).unwrap();
        let new_names = EncryptionConfig::key_names(&new).unwrap();
        assert_eq!(new_names.len(), 2);
        assert_eq!(new_names[1..], old_names[..]);
        // Server b still holds the old key; server a writes with the new one.
        let b = EncryptedStore::new(raw.clone(), config(&old));
        let mut watch = b.watch("/registry/core/secrets/", 0).await.unwrap();
        let a = EncryptedStore::new(raw.clone(), config(&new));
        a.create(SECRET, Bytes::from_static(b"rotated")).await.unwrap();
        let err = b.get(SECRET).await.unwrap_err().to_string();
        assert!(err.contains("is not in the encryption configuration"), "{err}");
        // b takes the rotated configuration: its reads and its open watch decrypt again.
        b.handle().replace(config(&new));
        assert_eq!(b.get(SECRET).await.unwrap().unwrap().value, Bytes::from_static(b"rotated"));
        assert!(matches!(watch.next().await.unwrap().unwrap(), Event::Put { kv, .. } if kv.value == "rotated"));
    }

    #[tokio::test]
    async fn rotation_reencrypts_with_the_new_key_and_keeps_reading_old_values() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let old = EncryptionConfig::generate();
        let store = EncryptedStore::new(raw.clone(), config(&old));
        for i in 0..3 {
            store.create(&format!("/registry/core/secrets/default/s{i}"), format!("value {i}").into()).await.unwrap();
        }
        store.create(CONFIGMAP, Bytes::from_static(b"cm")).await.unwrap();
        let old_name = raw.get(SECRET.replace("db", "s0").as_str()).await.unwrap().unwrap().value
            [AESGCM_PREFIX.len()..]
            .split(|b| *b == b':')
            .next()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap();
        let new = EncryptionConfig::rotate(&old).unwrap();
        let rewritten = reencrypt(raw.clone(), config(&new)).await.unwrap();
        assert_eq!(rewritten, 3, "the three secrets, not the ConfigMap");
        assert_eq!(reencrypt(raw.clone(), config(&new)).await.unwrap(), 0, "nothing left to rewrite");
        let rotated = EncryptedStore::new(raw.clone(), config(&new));
        for i in 0..3 {
            let key = format!("/registry/core/secrets/default/s{i}");
            let stored = raw.get(&key).await.unwrap().unwrap().value;
            assert!(!stored.windows(old_name.len()).any(|w| w == old_name.as_bytes()), "still the old key");
            assert_eq!(rotated.get(&key).await.unwrap().unwrap().value, format!("value {i}"));
        }
    }

    #[test]
    fn bad_configurations_say_why() {
        let wrap = |providers: &str| {
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: {providers}\n"
            )
        };
        let err = |text: &str| EncryptionConfig::parse(text).unwrap_err().to_string();
        assert!(err("kind: Nope\napiVersion: v1\nresources: []").contains("expected apiVersion"));
        assert!(
            err(&wrap("[{aescbc: {keys: [{name: k, secret: AAAA}]}}]")).contains("provider aescbc is not supported")
        );
        assert!(err(&wrap("[{aesgcm: {keys: [{name: k, secret: '!!'}]}}]")).contains("not base64"));
        assert!(err(&wrap("[{aesgcm: {keys: [{name: k, secret: AAAA}]}}]")).contains("16- or 32-byte"));
        assert!(err(&wrap("[{aesgcm: {keys: []}}]")).contains("at least one key"));
        assert!(err(&wrap("[{identity: {}, aesgcm: {keys: []}}]")).contains("exactly one kind"));
        assert!(EncryptionConfig::rotate(&wrap("[{identity: {}}]")).is_err());
        // The resource forms Kubernetes accepts.
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [deployments.apps, '*.batch']\n  providers: [{aesgcm: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]}}]\n";
        let c = config(text);
        assert!(c.rule_for("/registry/apps/deployments/default/web").is_some());
        assert!(c.rule_for("/registry/batch/cronjobs/default/x").is_some());
        assert!(c.rule_for("/registry/apps/statefulsets/default/web").is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_conformance_suite_passes_through_encryption_of_everything() {
        let dir = tempfile::tempdir().unwrap();
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.*']\n  providers: [{aesgcm: {keys: [{name: k, secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=}]}}]\n";
        let next = std::sync::atomic::AtomicUsize::new(0);
        let options = SqliteOptions { compaction_interval: std::time::Duration::ZERO, ..SqliteOptions::default() };
        crate::conformance::run_all(|| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let raw: Arc<dyn Store> =
                Arc::new(SqliteStore::open(&dir.path().join(format!("s{n}.db")), options.clone()).expect("store"));
            Arc::new(EncryptedStore::new(raw, config(text))) as Arc<dyn Store>
        })
        .await;
        // The suite's values were really encrypted: a look at what its stores hold.
        let mut sealed = 0;
        for n in 0..next.load(std::sync::atomic::Ordering::SeqCst) {
            let path = dir.path().join(format!("s{n}.db"));
            let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, options.clone()).expect("store"));
            for kv in raw.range("/registry/", None, 0, None).await.unwrap().kvs {
                let covered = kv.key.trim_start_matches("/registry/").contains('/');
                assert_eq!(kv.value.starts_with(b"k8s:enc:aesgcm:v1:k:"), covered, "{kv:?}");
                sealed += usize::from(covered);
            }
            raw.close().await.unwrap();
        }
        assert!(sealed > 0, "the suite left no encrypted value to look at");
    }
}
