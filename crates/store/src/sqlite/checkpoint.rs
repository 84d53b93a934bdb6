//! The checkpointer: a thread that copies the WAL back into the database file every few
//! seconds (sooner after a burst), so that the writer never pays for checkpoints inside a
//! commit.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::schema::db_err;
use crate::Result;

/// How often the checkpointer looks at the store.
const POLL: Duration = Duration::from_millis(100);
/// A checkpoint runs when this long has passed since the last one and something was written...
const MAX_AGE: Duration = Duration::from_secs(5);
/// ...or as soon as this many revisions were written since the last one (a burst of
/// more than 10,000 writes/s; ~500 MB of WAL at ~10 KB per write).
const MAX_REVISIONS: i64 = 50_000;

pub(super) fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    conn.execute_batch("PRAGMA synchronous = FULL;").map_err(db_err)?;
    Ok(conn)
}

/// Checkpoints (PASSIVE: never blocks the writer) every few seconds, or sooner after a
/// burst. Each checkpoint ends with an fsync of the database file that shares the disk
/// with the writer's commit fsyncs: checkpointing every 100 ms made the p99 of writes at
/// 1,000/s swing between 22 and 303 ms (`berth bench api`); every 5 s keeps it at 7–15 ms.
pub(super) fn run(conn: Connection, revision: &AtomicI64, stop: mpsc::Receiver<()>) {
    let mut last = Instant::now();
    let mut last_revision = revision.load(Ordering::Acquire);
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(POLL) {
        let now_revision = revision.load(Ordering::Acquire);
        let written = now_revision - last_revision;
        if written == 0 || (written < MAX_REVISIONS && last.elapsed() < MAX_AGE) {
            continue;
        }
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0));
        if let Err(err) = result {
            tracing::warn!(%err, "store: WAL checkpoint failed");
        }
        last = Instant::now();
        last_revision = now_revision;
    }
}
