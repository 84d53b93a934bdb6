//! etcd v3 backend: the [`Store`] trait over a real etcd cluster (`etcd-client`), for
//! control planes that span several machines.
//!
//! Keys are stored as they are (`/registry/...`, as Kubernetes lays them out). Every
//! write is one etcd transaction guarded by a compare (create: `create_revision == 0`;
//! update and delete: `mod_revision == expected`), so a write takes exactly one etcd
//! revision and a failed compare writes nothing.
//!
//! Revisions: a fresh etcd is at revision 1 before any write, so berth's revision is
//! etcd's minus one ([`to_etcd`]/[`from_etcd`]): revision 0 is the empty store on both
//! backends and revisions count writes. berth's `compact(r)` is etcd's `compact(r + 1)`:
//! etcd keeps the state at its compaction revision (the previous values that watches
//! from berth's `r + 1` carry), and this backend refuses reads at berth's `r` itself.
//!
//! Failures: requests that cannot reach etcd or find no leader are retried with
//! back-off (writes only when etcd cannot have applied them) for
//! [`EtcdOptions::retry_for`], then fail with [`Error::Unavailable`]; a request that
//! got no answer in time fails with [`Error::Timeout`] (a write may then have been
//! applied). Watches reconnect by themselves from the next revision they owe.
//!
//! Files: `watch` (watch streams), `snapshot` (etcd's own snapshots to a file, checked),
//! `tests` (conformance against a real etcd).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};

use crate::{Error, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

pub mod snapshot;
mod watch;

#[cfg(test)]
mod tests;

/// TLS material for talking to etcd (PEM files).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// CA bundle that signed etcd's serving certificates (None: the system roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate, for etcd's `--client-cert-auth`.
    pub cert_file: Option<std::path::PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<std::path::PathBuf>,
}

/// Settings of an [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// TLS towards etcd; None speaks plain HTTP/2.
    pub tls: Option<EtcdTls>,
    /// How long one request may take before it fails with [`Error::Timeout`].
    pub request_timeout: Duration,
    /// How long a request that could not reach etcd (or found no leader) is retried.
    pub retry_for: Duration,
    /// History kept by automatic compaction, in revisions.
    pub compaction_window: Revision,
    /// How often automatic compaction runs; `Duration::ZERO` disables it.
    pub compaction_interval: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            tls: None,
            request_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(10),
            compaction_window: 10_000,
            compaction_interval: Duration::from_secs(300),
        }
    }
}

/// berth's revision for etcd's revision `r` (etcd's empty store is at revision 1).
pub fn from_etcd(r: i64) -> Revision {
    r - 1
}

/// etcd's revision for berth's revision `r`.
pub fn to_etcd(r: Revision) -> i64 {
    r + 1
}

/// The etcd backend of [`Store`]. Cheap to share: every method takes `&self`.
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// State shared by the store handle, its watch tasks and its compactor.
struct Inner {
    client: Client,
    /// The endpoints, for messages.
    endpoints: String,
    options: EtcdOptions,
    /// The highest revision this handle wrote: on close, watches deliver up to it.
    last_write: AtomicI64,
    /// Set on close, with the revision watches still owe their readers.
    closed: tokio::sync::watch::Sender<Option<Revision>>,
}

/// How a failed etcd request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// etcd did not apply it (no connection, no leader): any request may be retried.
    Safe,
    /// No answer: a read may be retried, a write may have been applied.
    Ambiguous,
    /// A definite answer (e.g. compacted): never retried.
    Never,
}

/// What a request does, which decides what may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads (and idempotent requests such as compaction): always retried.
    Read,
    /// Writes retried only when etcd cannot have applied them.
    Write,
    /// Writes also retried when etcd may have applied them: the caller recognises its
    /// own write in the compare failure that a retry then meets.
    CheckedWrite,
}

/// A failed request, before it becomes a store [`Error`] with the caller's context.
#[derive(Debug)]
enum Failure {
    /// etcd says the revision asked for is compacted.
    Compacted,
    /// etcd says the revision asked for is in the future.
    FutureRevision,
    /// Anything else, already a store error.
    Store(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

/// gRPC status codes (stable numbers of the gRPC spec) that etcd answers with.
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// Classifies an etcd-client error.
fn classify(e: &etcd_client::Error) -> (Retry, String) {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message().to_string();
            let retry = match i32::from(status.code()) {
                GRPC_UNAVAILABLE => {
                    if message.contains("no leader")
                        || message.contains("leader changed")
                        || message.contains("not capable")
                        || message.contains("connect")
                        || message.contains("Connection refused")
                        || message.contains("dns error")
                    {
                        Retry::Safe
                    } else {
                        Retry::Ambiguous
                    }
                }
                GRPC_CANCELLED | GRPC_UNKNOWN | GRPC_DEADLINE_EXCEEDED => {
                    if message.contains("transport error") || message.contains("connection") {
                        Retry::Ambiguous
                    } else {
                        Retry::Never
                    }
                }
                _ => Retry::Never,
            };
            (retry, message)
        }
        etcd_client::Error::TransportError(t) => (Retry::Safe, format!("transport error: {t}")),
        etcd_client::Error::IoError(io) => (Retry::Ambiguous, format!("i/o error: {io}")),
        other => (Retry::Never, other.to_string()),
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's range end);
/// `[0]` (every key) for the empty prefix or a prefix of 0xFF bytes.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A store key-value from etcd's.
/// The key's current value, read by the `or_else` get of a transaction whose compare failed.
fn failed_compare_value(first: Option<TxnOpResponse>) -> Option<KeyValue> {
    match first {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(kv_from),
        _ => None,
    }
}

fn kv_from(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: from_etcd(kv.create_revision()),
        mod_revision: from_etcd(kv.mod_revision()),
        version: kv.version(),
    }
}

/// The revision of a response header (0 when etcd sent none, which it always does).
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map(|h| h.revision()).unwrap_or(0)
}

/// A key with no value, used to read the current revision.
const PROBE_KEY: &[u8] = b"\0berth-revision-probe";

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`host:port`, or `http(s)://host:port`) and checks
    /// that it answers: fails with [`Error::Unavailable`] or [`Error::Timeout`] when it
    /// does not (after retrying for [`EtcdOptions::retry_for`]). Must run inside a Tokio runtime.
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::Backend("no etcd endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        let joined = endpoints.join(",");
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| Error::Backend(format!("connecting to etcd at {joined}: {e}")))?;
        let (closed, _) = tokio::sync::watch::channel(None);
        let store = EtcdStore {
            inner: Arc::new(Inner { client, endpoints: joined, options, last_write: AtomicI64::new(0), closed }),
        };
        store.current_revision().await?;
        if !store.inner.options.compaction_interval.is_zero() {
            tokio::spawn(compactor(Arc::downgrade(&store.inner)));
        }
        Ok(store)
    }

    /// The etcd endpoints this store talks to, comma-separated.
    pub fn endpoints(&self) -> &str {
        &self.inner.endpoints
    }

    /// A clone of the underlying etcd client (for snapshots and tools).
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }
}

/// Builds etcd-client's TLS settings from PEM files.
fn tls_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Backend(format!("reading {}: {e}", path.display())))
    };
    let mut options = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => return Err(Error::Backend("a client certificate needs both a certificate and a key file".into())),
    }
    Ok(options)
}

/// Compacts every interval to `current - window`, until the store is dropped or closed.
async fn compactor(inner: std::sync::Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.options.compaction_interval,
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.borrow().is_some() {
            return;
        }
        let store = EtcdStore { inner };
        let window = store.inner.options.compaction_window.max(1);
        match store.current_revision().await {
            Ok(current) if current > window => {
                if let Err(e) = store.compact(current - window).await {
                    tracing::warn!(error = %e, "etcd compaction failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "etcd compaction: reading the revision failed"),
        }
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.borrow().is_some() { Err(Error::Closed) } else { Ok(()) }
    }

    fn note_write(&self, revision: Revision) {
        self.last_write.fetch_max(revision, Ordering::SeqCst);
    }

    /// Runs `f` on a client, retrying what may be retried until [`EtcdOptions::retry_for`]
    /// has passed.
    async fn call<T, F, Fut>(&self, kind: Kind, f: F) -> std::result::Result<T, Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.call_checked(kind, f).await.map(|(value, _)| value)
    }

    /// Like [`Inner::call`], also telling whether an attempt that etcd may have applied
    /// was retried (only [`Kind::CheckedWrite`] retries those).
    async fn call_checked<T, F, Fut>(&self, kind: Kind, mut f: F) -> std::result::Result<(T, bool), Failure>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.check_open()?;
        let write = kind != Kind::Read;
        let mut retried_ambiguous = false;
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let (retry, message) =
                match tokio::time::timeout(self.options.request_timeout, f(self.client.clone())).await {
                    Ok(Ok(value)) => return Ok((value, retried_ambiguous)),
                    Ok(Err(e)) => {
                        let (retry, message) = classify(&e);
                        if message.contains("required revision has been compacted") {
                            return Err(Failure::Compacted);
                        }
                        if message.contains("required revision is a future revision") {
                            return Err(Failure::FutureRevision);
                        }
                        (retry, message)
                    }
                    Err(_) => (Retry::Ambiguous, format!("no answer within {:?}", self.options.request_timeout)),
                };
            let retryable = retry == Retry::Safe || (retry == Retry::Ambiguous && kind != Kind::Write);
            if retryable && started.elapsed() + delay < self.options.retry_for {
                retried_ambiguous |= retry == Retry::Ambiguous;
                tracing::debug!(%message, ?delay, "etcd request failed; retrying");
                tokio::time::sleep(delay).await;
                self.check_open()?;
                delay = (delay * 2).min(Duration::from_secs(1));
                continue;
            }
            let endpoints = &self.endpoints;
            return Err(Failure::Store(match retry {
                Retry::Safe => Error::Unavailable(format!("etcd at {endpoints} is unavailable: {message}")),
                Retry::Ambiguous if write => Error::Timeout(format!(
                    "etcd at {endpoints} did not confirm the write ({message}); it may or may not have been applied"
                )),
                Retry::Ambiguous => Error::Unavailable(format!("etcd at {endpoints} is unavailable: {message}")),
                Retry::Never => Error::Backend(format!("etcd at {endpoints}: {message}")),
            }));
        }
    }

    /// The current etcd revision.
    async fn etcd_revision(&self) -> std::result::Result<i64, Failure> {
        let resp = self
            .call(Kind::Read, |mut c| async move { c.get(PROBE_KEY, Some(GetOptions::new().with_count_only())).await })
            .await?;
        Ok(header_revision(resp.header()))
    }

    /// Whether etcd can still read at etcd revision `r` (not compacted).
    async fn readable(&self, r: i64) -> std::result::Result<bool, Failure> {
        let result = self
            .call(Kind::Read, |mut c| async move {
                c.get(PROBE_KEY, Some(GetOptions::new().with_count_only().with_revision(r))).await
            })
            .await;
        match result {
            Ok(_) | Err(Failure::FutureRevision) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// berth's compacted revision: etcd does not report its compaction revision, so the
    /// oldest readable etcd revision is found by bisection (a few round trips; rarely asked).
    async fn compacted(&self) -> Result<Revision> {
        let current = self.etcd_revision().await.map_err(|f| self.failure(f))?;
        let (mut lo, mut hi) = (1i64, current.max(1));
        if self.readable(lo).await.map_err(|f| self.failure(f))? {
            return Ok(0);
        }
        // Invariant: lo is compacted, hi is readable.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable(mid).await.map_err(|f| self.failure(f))? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        // etcd's compaction revision is hi: berth's revisions up to from_etcd(hi) are forgotten.
        Ok(from_etcd(hi).max(0))
    }

    /// Fails with [`Error::Compacted`] when berth's revision `r` (>= 1) is compacted: etcd
    /// still serves its own compaction revision, which is berth's compacted revision.
    async fn check_not_compacted(&self, r: Revision) -> Result<()> {
        if r >= 1 && !self.readable(to_etcd(r) - 1).await.map_err(|f| self.failure(f))? {
            return Err(self.compacted_error(r).await);
        }
        Ok(())
    }

    /// The [`Error::Compacted`] for a read at `requested`.
    async fn compacted_error(&self, requested: Revision) -> Error {
        match self.compacted().await {
            Ok(compacted) => Error::Compacted { requested, compacted: compacted.max(requested) },
            Err(e) => e,
        }
    }

    /// Turns a [`Failure`] into the store's error when no better context is at hand.
    fn failure(&self, f: Failure) -> Error {
        match f {
            Failure::Store(e) => e,
            Failure::Compacted => Error::Backend(format!("etcd at {}: unexpected compaction", self.endpoints)),
            Failure::FutureRevision => {
                Error::Backend(format!("etcd at {}: unexpected future revision", self.endpoints))
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let inner = &self.inner;
        let resp = inner
            .call(Kind::Read, |mut c| async move { c.get(key, None).await })
            .await
            .map_err(|f| inner.failure(f))?;
        Ok(resp.kvs().first().map(kv_from))
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult> {
        let inner = &self.inner;
        if let Some(r) = revision {
            inner.check_not_compacted(r).await?;
        }
        let end = prefix_end(prefix.as_bytes());
        let mut start = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
        if let Some(after) = start_after {
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            if next > start {
                start = next;
            }
        }
        if end != [0] && start >= end {
            let revision = match revision {
                Some(r) => r,
                None => self.current_revision().await?,
            };
            return Ok(RangeResult { kvs: Vec::new(), more: false, revision });
        }
        let mut options = GetOptions::new().with_range(end);
        if limit > 0 {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(r) = revision {
            options = options.with_revision(to_etcd(r));
        }
        let result = inner
            .call(Kind::Read, |mut c| {
                let (start, options) = (start.clone(), options.clone());
                async move { c.get(start, Some(options)).await }
            })
            .await;
        let resp = match result {
            Ok(resp) => resp,
            Err(Failure::FutureRevision) => {
                let requested = revision.unwrap_or(0);
                let current = self.current_revision().await?;
                return Err(Error::FutureRevision { requested, current });
            }
            Err(Failure::Compacted) => return Err(inner.compacted_error(revision.unwrap_or(0)).await),
            Err(f) => return Err(inner.failure(f)),
        };
        Ok(RangeResult {
            kvs: resp.kvs().iter().map(kv_from).collect(),
            more: resp.more(),
            revision: revision.unwrap_or_else(|| from_etcd(header_revision(resp.header()))),
        })
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let inner = &self.inner;
        let start = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
        let options = GetOptions::new().with_range(prefix_end(prefix.as_bytes())).with_count_only();
        let resp = inner
            .call(Kind::Read, |mut c| {
                let (start, options) = (start.clone(), options.clone());
                async move { c.get(start, Some(options)).await }
            })
            .await
            .map_err(|f| inner.failure(f))?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let inner = &self.inner;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let (resp, retried) = inner
            .call_checked(Kind::CheckedWrite, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|f| inner.failure(f))?;
        if !resp.succeeded() {
            // After a retry, the key may hold the write that went through unconfirmed.
            if retried
                && let Some(TxnOpResponse::Get(get)) = resp.op_responses().into_iter().next()
                && let Some(current) = get.kvs().first().map(kv_from)
                && current.value == value
                && current.version == 1
            {
                inner.note_write(current.mod_revision);
                return Ok(current);
            }
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let revision = from_etcd(header_revision(resp.header()));
        inner.note_write(revision);
        Ok(KeyValue { key: key.to_string(), value, create_revision: revision, mod_revision: revision, version: 1 })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let inner = &self.inner;
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, to_etcd(expected)),
            ])
            .and_then([TxnOp::put(key, value.to_vec(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let (resp, retried) = inner
            .call_checked(Kind::CheckedWrite, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|f| inner.failure(f))?;
        let revision = from_etcd(header_revision(resp.header()));
        let first = resp.op_responses().into_iter().next();
        if !resp.succeeded() {
            let current = failed_compare_value(first);
            // After a retry, the key may hold the write that went through unconfirmed.
            if let Some(current) = current
                .as_ref()
                .filter(|kv| retried && kv.value == value && kv.mod_revision > expected && kv.version > 1)
            {
                inner.note_write(current.mod_revision);
                return Ok(current.clone());
            }
            return Err(Error::Conflict { key: key.to_string(), current: current.map(Box::new) });
        }
        inner.note_write(revision);
        let prev = match first {
            Some(TxnOpResponse::Put(put)) => put.prev_key().map(kv_from),
            _ => None,
        };
        let prev = prev.ok_or_else(|| Error::Backend(format!("etcd returned no previous value for {key}")))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
            version: prev.version + 1,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let inner = &self.inner;
        let mut compares = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, to_etcd(expected)));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let resp = inner
            .call(Kind::Write, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|f| inner.failure(f))?;
        let revision = from_etcd(header_revision(resp.header()));
        let first = resp.op_responses().into_iter().next();
        if !resp.succeeded() {
            let current = failed_compare_value(first);
            return match current {
                None => Err(Error::NotFound(key.to_string())),
                Some(kv) => Err(Error::Conflict { key: key.to_string(), current: Some(Box::new(kv)) }),
            };
        }
        inner.note_write(revision);
        let mut last = match first {
            Some(TxnOpResponse::Delete(del)) => del.prev_kvs().first().map(kv_from),
            _ => None,
        }
        .ok_or_else(|| Error::NotFound(key.to_string()))?;
        last.mod_revision = revision;
        Ok(last)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let inner = &self.inner;
        let revision = inner.etcd_revision().await.map_err(|f| inner.failure(f))?;
        Ok(from_etcd(revision).max(0))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.check_open()?;
        self.inner.compacted().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let inner = &self.inner;
        let current = self.current_revision().await?;
        if revision > current {
            return Err(Error::FutureRevision { requested: revision, current });
        }
        if revision <= 0 {
            return Ok(());
        }
        // etcd's compact(r) forgets what is older than r and keeps r: see the module doc.
        let target = to_etcd(revision);
        let result = inner
            .call(
                Kind::Read,
                |mut c| async move { c.compact(target, Some(CompactionOptions::new().with_physical())).await },
            )
            .await;
        match result {
            // Already compacted at or past the target: nothing to do.
            Ok(_) | Err(Failure::Compacted) => Ok(()),
            Err(f) => Err(inner.failure(f)),
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        watch::start(self.inner.clone(), prefix, from).await
    }

    async fn close(&self) -> Result<()> {
        let last = self.inner.last_write.load(Ordering::SeqCst);
        self.inner.closed.send_if_modified(|closed| {
            if closed.is_none() {
                *closed = Some(last);
                true
            } else {
                false
            }
        });
        Ok(())
    }
}
