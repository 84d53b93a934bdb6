//! Reads: a small pool of read-only connections (WAL lets them run beside the writer)
//! and the queries for get, range, count and history replay.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};

use super::schema::{EVENT_SELECT, GET_CURRENT, KV_COLUMNS, db_err, event, kv_at, meta, open_reader, prefix_bounds};
use crate::{Error, Event, KeyValue, RangeResult, Result, Revision};

/// Idle read connections kept for reuse.
const MAX_IDLE: usize = 16;

/// A pool of read-only connections, opened on demand.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// A pool for the database at `path`.
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `f` on a pooled connection (blocking: call from a blocking thread).
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().map_err(|_| poisoned())?.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = f(&mut conn);
        // A connection left inside a transaction by a failure is not reused.
        if conn.is_autocommit() {
            let mut idle = self.idle.lock().map_err(|_| poisoned())?;
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }
}

fn poisoned() -> Error {
    Error::Backend("read pool lock poisoned".into())
}

/// The current value of `key`.
pub(super) fn get(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.prepare_cached(GET_CURRENT)
        .and_then(|mut stmt| stmt.query_row([key.as_bytes()], |row| kv_at(row, 0)).optional())
        .map_err(db_err)
}

/// Number of live keys starting with `prefix`.
pub(super) fn count(conn: &mut Connection, prefix: &str) -> Result<u64> {
    let (start, end) = prefix_bounds(prefix);
    conn.prepare_cached("SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2")
        .and_then(|mut stmt| stmt.query_row([start, end], |row| row.get::<_, i64>(0)))
        .map(|n| n.unsigned_abs())
        .map_err(db_err)
}

/// A range read at `revision` (None: current), in one read transaction so that the
/// revision reported and the rows read are the same snapshot.
pub(super) fn range(
    conn: &mut Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<Revision>,
) -> Result<RangeResult> {
    let tx = conn.transaction().map_err(db_err)?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    let at = match revision {
        None => current,
        Some(requested) if requested > current => {
            return Err(Error::FutureRevision { requested, current });
        }
        Some(requested) if requested <= compacted => {
            return Err(Error::Compacted { requested, compacted });
        }
        Some(requested) => requested,
    };
    let (mut start, end) = prefix_bounds(prefix);
    let mut lower = ">=";
    if let Some(after) = start_after
        && after.as_bytes() >= start.as_slice()
    {
        start = after.as_bytes().to_vec();
        lower = ">";
    }
    // One row more than asked tells whether there are more.
    let fetch = if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1 };
    let sql = if at == current {
        format!(
            "SELECT {KV_COLUMNS} FROM current AS c JOIN kv ON kv.rev = c.rev \
             WHERE c.key {lower} ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3"
        )
    } else {
        // Walk the key index in key order (so LIMIT stops early), keeping each key's
        // latest row at or below the revision, unless it is a tombstone.
        format!(
            "SELECT {KV_COLUMNS} FROM kv WHERE kv.key {lower} ?1 AND kv.key < ?2 AND kv.rev <= ?4 \
             AND kv.rev = (SELECT MAX(h.rev) FROM kv AS h WHERE h.key = kv.key AND h.rev <= ?4) \
             AND kv.deleted = 0 ORDER BY kv.key LIMIT ?3"
        )
    };
    let mut kvs = {
        let mut stmt = tx.prepare_cached(&sql).map_err(db_err)?;
        let rows = if at == current {
            stmt.query_map(rusqlite::params![start, end, fetch], |row| kv_at(row, 0))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        } else {
            stmt.query_map(rusqlite::params![start, end, fetch, at], |row| kv_at(row, 0))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        };
        rows.map_err(db_err)?
    };
    tx.finish().map_err(db_err)?;
    let more = limit != 0 && kvs.len() > limit;
    kvs.truncate(if limit == 0 { kvs.len() } else { limit });
    Ok(RangeResult { kvs, more, revision: at })
}

/// A page of history for a watch: the events on keys starting with `prefix` with
/// revisions from `from` on, at most `page` of them. Returns the events, the last
/// revision the page covers, and fails with [`Error::Compacted`] if `from` is compacted.
pub(super) fn history(
    conn: &mut Connection,
    prefix: &str,
    from: Revision,
    page: usize,
) -> Result<(Vec<Event>, Revision)> {
    let tx = conn.transaction().map_err(db_err)?;
    let current = meta(&tx, "revision")?;
    let compacted = meta(&tx, "compacted")?;
    if from <= compacted {
        return Err(Error::Compacted { requested: from, compacted });
    }
    let (start, end) = prefix_bounds(prefix);
    let sql = format!(
        "{EVENT_SELECT} WHERE kv.rev >= ?1 AND kv.rev <= ?2 AND kv.key >= ?3 AND kv.key < ?4 \
         ORDER BY kv.rev LIMIT ?5"
    );
    let limit = i64::try_from(page).unwrap_or(i64::MAX);
    let events = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params![from, current, start, end, limit], event)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db_err)?;
    tx.finish().map_err(db_err)?;
    let covered = match events.last() {
        Some(last) if events.len() >= page => last.revision(),
        _ => current,
    };
    Ok((events, covered))
}
