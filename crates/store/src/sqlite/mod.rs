//! SQLite backend: a log of revisions in one SQLite file (WAL, full sync), a single
//! group-committing writer thread, a pool of read connections, watches fed by an
//! in-memory broadcast with replay from the database, and automatic compaction.
//!
//! Files: `schema` (layout), `writer` (group commit), `read` (read pool and queries),
//! `watch` (replay/live hand-over), `compact` (compaction), `backup` (physical snapshots:
//! online backup of a running store, checks of a copy), `tests`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Error, Event, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

pub mod backup;
mod checkpoint;
mod compact;
mod read;
mod schema;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use writer::{Op, Reply, Request};

/// Most reads running at once (each on its own connection and blocking thread).
const MAX_CONCURRENT_READS: usize = 16;

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// History kept by automatic compaction, in revisions (at least this many).
    pub compaction_window: Revision,
    /// How often automatic compaction runs; `Duration::ZERO` disables it.
    pub compaction_interval: Duration,
    /// Committed event batches (one per group commit) buffered for live watchers; a
    /// watcher further behind catches up from the database. The buffer keeps the values
    /// of these batches alive, so it bounds memory rather than correctness.
    pub watch_buffer: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { compaction_window: 10_000, compaction_interval: Duration::from_secs(300), watch_buffer: 256 }
    }
}

/// State shared by the store handle, the writer thread, the compactor and watch tasks.
struct Shared {
    /// Read connections.
    readers: read::ReadPool,
    /// Limits concurrent reads, hence open read connections.
    read_slots: tokio::sync::Semaphore,
    /// The last committed revision.
    revision: AtomicI64,
    /// The compacted revision.
    compacted: AtomicI64,
    /// Live events of each committed batch; None once the writer stopped.
    events: Mutex<Option<broadcast::Sender<Arc<[Event]>>>>,
}

impl Shared {
    /// Runs a read on a pooled connection on a blocking thread, at most
    /// [`MAX_CONCURRENT_READS`] at once (each holds a connection).
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.read_slots.acquire().await.map_err(|_| Error::Closed)?;
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.readers.with(f))
            .await
            .map_err(|err| Error::Backend(format!("read task: {err}")))?
    }

    /// Publishes a committed batch's events to live watchers.
    fn publish(&self, events: Vec<Event>) {
        if let Ok(guard) = self.events.lock()
            && let Some(sender) = guard.as_ref()
        {
            // No receivers is fine: nobody is watching.
            let _ = sender.send(events.into());
        }
    }

    /// Ends the broadcast: live watches end after what was published.
    fn close_events(&self) {
        if let Ok(mut guard) = self.events.lock() {
            guard.take();
        }
    }

    /// A receiver of live events, or Closed after the writer stopped.
    fn subscribe(&self) -> Result<broadcast::Receiver<Arc<[Event]>>> {
        let guard = self.events.lock().map_err(|_| Error::Backend("events lock poisoned".into()))?;
        guard.as_ref().map(broadcast::Sender::subscribe).ok_or(Error::Closed)
    }
}

/// The embedded store: one SQLite database file.
///
/// A write whose future is dropped after it was sent may still be committed, as with
/// etcd: the caller cannot tell, so it must re-read before retrying a create.
///
/// Dropping the store stops its threads like [`Store::close`] does, without waiting.
pub struct SqliteStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Dropping these stops the compactor and checkpointer threads.
    stop_threads: Mutex<Vec<mpsc::Sender<()>>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and starts the writer thread and, if
    /// enabled, the compactor thread. Synchronous: it runs no async code, so it may be
    /// called inside or outside a tokio runtime; the store's methods need a runtime.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let conn = schema::open_writer(path)?;
        let revision = schema::meta(&conn, "revision")?;
        let compacted = schema::meta(&conn, "compacted")?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            readers: read::ReadPool::new(path.to_path_buf()),
            read_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            events: Mutex::new(Some(events)),
        });
        let (requests, inbox) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(conn, shared, inbox))
                .map_err(|err| Error::Backend(format!("cannot start writer thread: {err}")))?
        };
        let store = SqliteStore {
            shared: shared.clone(),
            requests: requests.clone(),
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(writer)),
            stop_threads: Mutex::new(Vec::new()),
        };
        let checkpointer = checkpoint::open(path)?;
        let (stop, stopped) = mpsc::channel();
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint::run(checkpointer, &watched.revision, stopped))
            .map_err(|err| Error::Backend(format!("cannot start checkpoint thread: {err}")))?;
        store.stop_on_close(stop);
        if !options.compaction_interval.is_zero() {
            let (stop, stopped) = mpsc::channel();
            let window = options.compaction_window.max(1);
            let interval = options.compaction_interval;
            std::thread::Builder::new()
                .name("store-compactor".into())
                .spawn(move || compact::run_auto(shared, requests, stopped, window, interval))
                .map_err(|err| Error::Backend(format!("cannot start compactor thread: {err}")))?;
            store.stop_on_close(stop);
        }
        Ok(store)
    }

    /// Keeps `stop` until close: dropping it stops a background thread.
    fn stop_on_close(&self, stop: mpsc::Sender<()>) {
        if let Ok(mut threads) = self.stop_threads.lock() {
            threads.push(stop);
        }
    }

    /// Sends an operation to the writer and waits for its answer.
    async fn write(&self, op: Op) -> Result<Reply> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Write { op, reply }).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Sends a key-value operation to the writer.
    async fn write_kv(&self, op: Op) -> Result<KeyValue> {
        match self.write(op).await? {
            Reply::Kv(kv) => Ok(kv),
            Reply::Compacted(_) => Err(Error::Backend("unexpected writer reply".into())),
        }
    }

    /// Runs a read on a pooled connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.shared.read(f).await
    }

    /// Stops the compactor and asks the writer to stop after what is queued.
    fn shutdown(&self, done: Option<oneshot::Sender<()>>) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut stop) = self.stop_threads.lock() {
            stop.clear();
        }
        let _ = self.requests.send(Request::Shutdown { done });
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("revision", &self.shared.revision.load(Ordering::SeqCst))
            .field("compacted", &self.shared.compacted.load(Ordering::SeqCst))
            .field("closed", &self.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) {
            self.shutdown(None);
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |conn| read::get(conn, &key)).await
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<RangeResult> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.read(move |conn| read::range(conn, &prefix, start_after.as_deref(), limit, revision)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_owned();
        self.read(move |conn| read::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write_kv(Op::Create { key: key.to_owned(), value }).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.write_kv(Op::Update { key: key.to_owned(), value, expected }).await
    }

    /// Deletes `key`; [`Error::NotFound`] when it does not exist (with or without a
    /// precondition), [`Error::Conflict`] when its mod revision is not `expected`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write_kv(Op::Delete { key: key.to_owned(), expected }).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    /// Compacts in steps (each its own transaction) so writes interleave. Compacting at
    /// or below the compacted revision does nothing; above the current one fails with
    /// [`Error::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<()> {
        loop {
            let op = Op::Compact { revision, max_step: compact::STEP };
            match self.write(op).await? {
                Reply::Compacted(done) if done >= revision => return Ok(()),
                Reply::Compacted(_) => continue,
                Reply::Kv(_) => return Err(Error::Backend("unexpected writer reply".into())),
            }
        }
    }

    /// `from` <= 0 watches from the next revision (live events only).
    async fn watch(&self, prefix: &str, from: Revision) -> Result<WatchStream> {
        // Subscribe before reading anything, so no commit falls between replay and live.
        let live = self.shared.subscribe()?;
        let from = if from <= 0 { self.shared.revision.load(Ordering::SeqCst) + 1 } else { from };
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if from <= compacted {
            return Err(Error::Compacted { requested: from, compacted });
        }
        let (out, stream) = tokio::sync::mpsc::channel(watch::STREAM_BUFFER);
        tokio::spawn(watch::run(self.shared.clone(), prefix.to_owned(), from, live, out));
        Ok(Box::pin(ReceiverStream::new(stream)))
    }

    async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        self.shutdown(Some(done));
        // The writer answers after committing the queue and checkpointing the WAL.
        let _ = finished.await;
        let writer = self.writer.lock().ok().and_then(|mut slot| slot.take());
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        Ok(())
    }
}
