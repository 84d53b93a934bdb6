//! Revisioned key-value store with watch, modelled on etcd v3.
//!
//! One global revision counts every write; each key carries its create revision,
//! mod revision and version. Writes are compare-and-swap on the mod revision, reads
//! can be served at a past revision, and a watch replays every change after a
//! revision in order. Compaction forgets history older than a revision; reads and
//! watches at a compacted revision fail with [`Error::Compacted`].
//!
//! The store holds bytes and knows no kinds: keys are paths such as
//! `/registry/pods/default/web-0` and values are whatever the API server wrote.
//!
//! Backends: [`sqlite::SqliteStore`] (the embedded default) and [`etcd::EtcdStore`]
//! (a real etcd cluster, for control planes on several machines). Both pass the same
//! [`conformance`] suite.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

pub mod conformance;
pub mod encryption;
pub mod etcd;
pub mod sqlite;

/// A store revision. Revisions start at 1 and grow by one per write.
pub type Revision = i64;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// A compare-and-swap failed: the key's mod revision is not the expected one.
    /// Carries the current value (None when the key is gone).
    #[error("key {key} was modified concurrently")]
    Conflict {
        /// The key written.
        key: String,
        /// The key's value now.
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compacted revision: history at or below it is gone.
        compacted: Revision,
    },
    /// The requested revision is in the future.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The store is closed or its writer is gone.
    #[error("store is closed")]
    Closed,
    /// The backend failed (I/O, corruption, database error).
    #[error("storage backend: {0}")]
    Backend(String),
    /// The backend cannot be reached or cannot serve now (etcd down or without quorum);
    /// nothing was written and the request may be retried.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer in time; a write may or may not have been applied.
    #[error("storage backend timeout: {0}")]
    Timeout(String),
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty for the `prev`/deleted side of a delete event is never used:
    /// deletes carry the last value).
    pub value: Bytes,
    /// Revision of the write that created the key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes to the key since its creation (1 after create).
    pub version: i64,
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was created (`prev` is None) or updated (`prev` is the value before).
    Put {
        /// The new value; its `mod_revision` is the event's revision.
        kv: KeyValue,
        /// The value before the write, None on create.
        prev: Option<KeyValue>,
    },
    /// A key was deleted.
    Delete {
        /// The last value of the key, with `mod_revision` set to the revision of the delete.
        kv: KeyValue,
    },
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } | Event::Delete { kv } => kv.mod_revision,
        }
    }

    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } | Event::Delete { kv } => &kv.key,
        }
    }
}

/// The answer to a [`Store::range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Matching keys in ascending key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// True when more keys match after the last one returned.
    pub more: bool,
    /// The revision the read was served at.
    pub revision: Revision,
}

/// A stream of watch events in revision order. It ends when the store closes; it
/// yields an error (then ends) if the watcher fell behind so far that its history was compacted.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A revisioned key-value store with watch.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of `key` now, or None.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix` and greater than `start_after` (when given), in key
    /// order, at most `limit` of them (0 means no limit), read at `revision`
    /// (None: the current revision; a past revision must not be compacted).
    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult>;

    /// Number of keys starting with `prefix` now.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] when it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of `key` if its mod revision is `expected` (compare-and-swap);
    /// otherwise fails with [`Error::Conflict`] carrying the current value (None when
    /// the key does not exist).
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key` if its mod revision is `expected` (when given). Returns the deleted
    /// value with `mod_revision` set to the revision of the delete. Fails with
    /// [`Error::NotFound`] when the key does not exist (precondition or not), and with
    /// [`Error::Conflict`] carrying the current value when the precondition fails.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// The current revision (of the last write; 0 on an empty new store).
    async fn current_revision(&self) -> Result<Revision>;

    /// The compacted revision: reads and watches at or below it fail (0 when nothing is compacted).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Forgets history at and below `revision` (current values are kept). Compacting at
    /// or below the compacted revision does nothing; above the current revision fails
    /// with [`Error::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Every event on keys starting with `prefix` with revision >= `from`, in order,
    /// then live events as they happen. Fails with [`Error::Compacted`] if `from` is at
    /// or below the compacted revision. `from` <= 0 means the next revision: live events
    /// only.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream>;

    /// Flushes and stops accepting writes; pending writes are committed first.
    async fn close(&self) -> Result<()>;
}
