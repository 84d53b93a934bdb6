//! The single writer: a dedicated thread owning the write connection. It takes every
//! request waiting in its channel, applies them in one transaction (one fsync), then
//! publishes the events and answers each request with its own result.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::Shared;
use super::compact;
use super::schema::{GET_CURRENT, db_err, kv_at, meta};
use crate::{Error, Event, KeyValue, Result, Revision};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// A write operation.
pub(super) enum Op {
    /// Create a key that must not exist.
    Create { key: String, value: Bytes },
    /// Replace a key whose mod revision must be `expected`.
    Update { key: String, value: Bytes, expected: Revision },
    /// Delete a key, with an optional mod revision precondition.
    Delete { key: String, expected: Option<Revision> },
    /// Compact history up to `revision`, at most `max_step` revisions further than now.
    Compact { revision: Revision, max_step: Revision },
}

/// What the writer answers: a key-value, or for compaction the compacted revision.
pub(super) enum Reply {
    /// The written key-value.
    Kv(KeyValue),
    /// The compacted revision after the step.
    Compacted(Revision),
}

/// A message to the writer thread.
pub(super) enum Request {
    /// Apply an operation and answer.
    Write { op: Op, reply: oneshot::Sender<Result<Reply>> },
    /// Commit what came before, checkpoint the WAL, answer and stop.
    Shutdown { done: Option<oneshot::Sender<()>> },
}

/// Runs the writer loop until shutdown or until every sender is gone.
pub(super) fn run(mut conn: Connection, shared: Arc<Shared>, requests: mpsc::Receiver<Request>) {
    let mut revision = shared.revision.load(Ordering::SeqCst);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut shutdown = None;
    while let Ok(first) = requests.recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Write { op, reply } => batch.push((op, reply)),
                Request::Shutdown { done } => {
                    shutdown = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = requests.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &shared, &mut revision, &mut batch);
        }
        if shutdown.is_some() {
            break;
        }
    }
    // Stop live watches: they end once they have drained what was published.
    shared.close_events();
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%err, "store: WAL checkpoint at close failed");
    }
    drop(conn);
    if let Some(Some(done)) = shutdown {
        let _ = done.send(());
    }
}

/// Applies a batch in one transaction, then publishes its events and answers.
fn commit_batch(
    conn: &mut Connection,
    shared: &Shared,
    revision: &mut Revision,
    batch: &mut Vec<(Op, oneshot::Sender<Result<Reply>>)>,
) {
    let before = *revision;
    let mut events = Vec::new();
    let mut compacted = None;
    let outcome = (|| -> Result<Vec<Result<Reply>>> {
        // IMMEDIATE takes the write lock up front; re-reading the revision inside the
        // transaction keeps the counter right even if another process wrote the file.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        *revision = meta(&tx, "revision")?;
        let start = *revision;
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in batch.iter() {
            let result = apply(&tx, op, revision, &mut events)?;
            if let Ok(Reply::Compacted(rev)) = &result {
                compacted = Some(*rev);
            }
            results.push(result);
        }
        if *revision != start {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
                .and_then(|mut stmt| stmt.execute([*revision]))
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            shared.revision.store(*revision, Ordering::SeqCst);
            if let Some(rev) = compacted {
                shared.compacted.store(rev, Ordering::SeqCst);
            }
            if !events.is_empty() {
                shared.publish(events);
            }
            for ((_, reply), result) in batch.drain(..).zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            tracing::error!(%err, "store: write batch failed, rolled back");
            *revision = before;
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(Error::Backend(err.to_string())));
            }
        }
    }
}

/// Applies one operation inside the batch transaction. The outer error aborts the
/// batch (database failure); the inner one is this request's own refusal.
fn apply(tx: &Transaction<'_>, op: &Op, revision: &mut Revision, events: &mut Vec<Event>) -> Result<Result<Reply>> {
    match op {
        Op::Create { key, value } => {
            if exists(tx, key)? {
                return Ok(Err(Error::AlreadyExists(key.clone())));
            }
            let rev = *revision + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            };
            insert_row(tx, &kv, false, 0)?;
            tx.prepare_cached("INSERT INTO current (key, rev) VALUES (?1, ?2)")
                .and_then(|mut stmt| stmt.execute(params![key.as_bytes(), rev]))
                .map_err(db_err)?;
            *revision = rev;
            events.push(Event::Put { kv: kv.clone(), prev: None });
            Ok(Ok(Reply::Kv(kv)))
        }
        Op::Update { key, value, expected } => {
            let prev = match current(tx, key)? {
                Some(prev) if prev.mod_revision == *expected => prev,
                other => {
                    let current = other.map(Box::new);
                    return Ok(Err(Error::Conflict { key: key.clone(), current }));
                }
            };
            let rev = *revision + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: rev,
                version: prev.version + 1,
            };
            insert_row(tx, &kv, false, prev.mod_revision)?;
            set_current(tx, key, Some(rev))?;
            *revision = rev;
            events.push(Event::Put { kv: kv.clone(), prev: Some(prev) });
            Ok(Ok(Reply::Kv(kv)))
        }
        Op::Delete { key, expected } => {
            let prev = match current(tx, key)? {
                None => return Ok(Err(Error::NotFound(key.clone()))),
                Some(prev) if expected.is_some_and(|want| want != prev.mod_revision) => {
                    let current = Some(Box::new(prev));
                    return Ok(Err(Error::Conflict { key: key.clone(), current }));
                }
                Some(prev) => prev,
            };
            let rev = *revision + 1;
            let kv = KeyValue { mod_revision: rev, ..prev.clone() };
            insert_row(tx, &kv, true, prev.mod_revision)?;
            set_current(tx, key, None)?;
            *revision = rev;
            events.push(Event::Delete { kv: kv.clone() });
            Ok(Ok(Reply::Kv(kv)))
        }
        Op::Compact { revision: target, max_step } => {
            let done = meta(tx, "compacted")?;
            let target = (*target).min(done.saturating_add(*max_step));
            if target > *revision {
                return Ok(Err(Error::FutureRevision { requested: target, current: *revision }));
            }
            if target <= done {
                return Ok(Ok(Reply::Compacted(done)));
            }
            compact::compact_rows(tx, done, target)?;
            Ok(Ok(Reply::Compacted(target)))
        }
    }
}

/// The current value of `key` inside the transaction.
fn current(tx: &Transaction<'_>, key: &str) -> Result<Option<KeyValue>> {
    tx.prepare_cached(GET_CURRENT)
        .and_then(|mut stmt| stmt.query_row([key.as_bytes()], |row| kv_at(row, 0)).optional())
        .map_err(db_err)
}

/// Whether `key` is live, without reading its value.
fn exists(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    tx.prepare_cached("SELECT 1 FROM current WHERE key = ?1")
        .and_then(|mut stmt| stmt.exists([key.as_bytes()]))
        .map_err(db_err)
}

/// Appends a log row.
fn insert_row(tx: &Transaction<'_>, kv: &KeyValue, deleted: bool, prev_rev: Revision) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO kv (rev, key, deleted, create_rev, prev_rev, version, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            kv.mod_revision,
            kv.key.as_bytes(),
            deleted,
            kv.create_revision,
            prev_rev,
            kv.version,
            kv.value.as_ref(),
        ])
    })
    .map(drop)
    .map_err(db_err)
}

/// Points `current` at a new row for `key`, or removes the key.
fn set_current(tx: &Transaction<'_>, key: &str, rev: Option<Revision>) -> Result<()> {
    let result = match rev {
        Some(rev) => tx
            .prepare_cached("UPDATE current SET rev = ?2 WHERE key = ?1")
            .and_then(|mut stmt| stmt.execute(params![key.as_bytes(), rev])),
        None => {
            tx.prepare_cached("DELETE FROM current WHERE key = ?1").and_then(|mut stmt| stmt.execute([key.as_bytes()]))
        }
    };
    result.map(drop).map_err(db_err)
}
