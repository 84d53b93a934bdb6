//! The checkpointer: a thread that copies the WAL back into the database file every few
//! milliseconds, so that the writer never pays for checkpoints inside a commit.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::schema::db_err;
use crate::Result;

/// How often the WAL is checkpointed.
pub(super) const INTERVAL: Duration = Duration::from_millis(100);

/// Opens the checkpointer's connection.
pub(super) fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    conn.execute_batch("PRAGMA synchronous = FULL;").map_err(db_err)?;
    Ok(conn)
}

/// Runs passive checkpoints (which never block the writer or readers) until `stop`
/// receives a message or is dropped.
pub(super) fn run(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(INTERVAL) {
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0));
        if let Err(err) = result {
            tracing::warn!(%err, "store: WAL checkpoint failed");
        }
    }
}
