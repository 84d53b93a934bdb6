//! Compaction: deleting history rows superseded at or below a revision, and the
//! background thread that compacts automatically, keeping a window of revisions.

use std::sync::mpsc;
use std::sync::{Arc, atomic::Ordering};
use std::time::Duration;

use rusqlite::Transaction;
use tokio::sync::oneshot;

use super::Shared;
use super::schema::db_err;
use super::writer::{Op, Reply, Request};
use crate::{Result, Revision};

/// Most revisions compacted in one writer transaction, so that compaction never holds
/// the writer (and every write waiting behind it) for long.
pub(super) const STEP: Revision = 10_000;

/// Deletes the rows superseded at `to` that were not already gone at `from` (the
/// previous compacted revision), and records `to` as compacted.
///
/// Every row at or below `from` was the latest of its key at `from`; it is superseded
/// at `to` only by a later row in `(from, to]`, whose `prev_rev` names it. Rows in
/// `(from, to]` are superseded the same way, and tombstones in the window go too. The
/// current value of a live key is never the `prev_rev` of anything, so it stays.
pub(super) fn compact_rows(tx: &Transaction<'_>, from: Revision, to: Revision) -> Result<()> {
    tx.execute(
        "DELETE FROM kv WHERE rev IN \
         (SELECT prev_rev FROM kv WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
        [from, to],
    )
    .map_err(db_err)?;
    tx.execute("DELETE FROM kv WHERE rev > ?1 AND rev <= ?2 AND deleted = 1", [from, to]).map_err(db_err)?;
    tx.execute("UPDATE meta SET value = ?1 WHERE name = 'compacted'", [to]).map_err(db_err)?;
    Ok(())
}

/// Compacts up to `revision` through the writer, in steps of [`STEP`] revisions.
pub(super) fn compact_blocking(requests: &mpsc::Sender<Request>, revision: Revision) -> Result<Revision> {
    loop {
        let (reply, answer) = oneshot::channel();
        let op = Op::Compact { revision, max_step: STEP };
        requests.send(Request::Write { op, reply }).map_err(|_| crate::Error::Closed)?;
        let done = match answer.blocking_recv().map_err(|_| crate::Error::Closed)?? {
            Reply::Compacted(done) => done,
            Reply::Kv(_) => return Err(crate::Error::Backend("unexpected writer reply".into())),
        };
        if done >= revision {
            return Ok(done);
        }
    }
}

/// The automatic compactor: every `interval`, compacts to `current - window`. Stops when
/// `stop` receives a message or is dropped.
pub(super) fn run_auto(
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    stop: mpsc::Receiver<()>,
    window: Revision,
    interval: Duration,
) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let target = shared.revision.load(Ordering::SeqCst) - window;
        if target <= shared.compacted.load(Ordering::SeqCst) {
            continue;
        }
        match compact_blocking(&requests, target) {
            Ok(done) => tracing::debug!(revision = done, "store: compacted"),
            Err(crate::Error::Closed) => return,
            Err(err) => tracing::warn!(%err, "store: automatic compaction failed"),
        }
    }
}
