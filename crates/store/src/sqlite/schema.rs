//! Database layout of the SQLite backend: tables, connection settings, row decoding
//! and key bounds for prefix scans.
//!
//! The log table `kv` holds one row per revision (kine's layout): a put row carries
//! the new value, a delete row (a tombstone) carries the last value of the key.
//! `prev_rev` links a row to the key's previous row (0 for a create), so an event's
//! previous value is one join away. The `current` table maps each live key to the
//! revision of its latest row, which makes reads at the current revision index-only
//! lookups. `meta` holds the current and the compacted revision.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, Row};

use crate::{Error, Event, KeyValue, Result, Revision};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    rev        INTEGER PRIMARY KEY,
    key        BLOB    NOT NULL,
    deleted    INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_rev ON kv (key, rev);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0), ('schema', 1);
";

/// The layout version recorded in `meta`; opening a database of another version fails.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Columns selected for a key-value from a `kv` row aliased `kv`.
pub(super) const KV_COLUMNS: &str = "kv.key, kv.value, kv.create_rev, kv.rev, kv.version";

/// Selects the current key-value of key `?1` (columns as [`KV_COLUMNS`]).
pub(super) const GET_CURRENT: &str = "SELECT kv.key, kv.value, kv.create_rev, kv.rev, kv.version \
     FROM current AS c JOIN kv ON kv.rev = c.rev WHERE c.key = ?1";

/// Converts a database error into the store's error.
pub(super) fn db_err(err: rusqlite::Error) -> Error {
    Error::Backend(err.to_string())
}

/// Opens the writer connection: creates the schema, enables WAL and full sync.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!("cannot enable WAL mode (got {mode})")));
    }
    // FULL: every commit fsyncs the WAL, so an acknowledged write survives a power cut.
    // Checkpoints run on their own thread (see `checkpoint`), not inside commits.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 0;")
        .map_err(db_err)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    let version = meta(&conn, "schema")?;
    if version != SCHEMA_VERSION {
        return Err(Error::Backend(format!("database schema version {version}, this build knows {SCHEMA_VERSION}")));
    }
    Ok(conn)
}

/// Opens a read-only connection to an existing database.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
    conn.execute_batch("PRAGMA cache_size = -16384;").map_err(db_err)?;
    Ok(conn)
}

/// Reads a `meta` value (`revision` or `compacted`).
pub(super) fn meta(conn: &Connection, name: &str) -> Result<Revision> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
        .map_err(db_err)
}

/// Decodes a key-value from five columns starting at `at` (see [`KV_COLUMNS`]).
pub(super) fn kv_at(row: &Row<'_>, at: usize) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = row.get(at)?;
    let key = String::from_utf8(key)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Blob, err.into()))?;
    let value: Vec<u8> = row.get(at + 1)?;
    Ok(KeyValue {
        key,
        value: Bytes::from(value),
        create_revision: row.get(at + 2)?,
        mod_revision: row.get(at + 3)?,
        version: row.get(at + 4)?,
    })
}

/// Columns and joins selecting an event from a `kv` row aliased `kv`: the row, its
/// deleted flag, and the previous row aliased `p` (NULLs when there is none).
pub(super) const EVENT_SELECT: &str = "SELECT kv.key, kv.value, kv.create_rev, kv.rev, kv.version, kv.deleted, \
     p.key, p.value, p.create_rev, p.rev, p.version \
     FROM kv LEFT JOIN kv AS p ON p.rev = kv.prev_rev AND kv.prev_rev > 0 AND p.deleted = 0";

/// Decodes an event from a row selected with [`EVENT_SELECT`].
pub(super) fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kv = kv_at(row, 0)?;
    let deleted: bool = row.get(5)?;
    if deleted {
        return Ok(Event::Delete { kv });
    }
    let prev_rev: Option<Revision> = row.get(9)?;
    let prev = match prev_rev {
        Some(_) => Some(kv_at(row, 6)?),
        None => None,
    };
    Ok(Event::Put { kv, prev })
}

/// The half-open byte range `[start, end)` of keys starting with `prefix`.
///
/// Keys are UTF-8, which never contains the byte 0xFF, so incrementing the last byte of
/// the prefix (or using `[0xFF]` for the empty prefix) bounds every key with the prefix.
pub(super) fn prefix_bounds(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = prefix.as_bytes().to_vec();
    let mut end = start.clone();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::prefix_bounds;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        let (start, end) = prefix_bounds("/registry/pods/");
        assert_eq!(start, b"/registry/pods/");
        assert_eq!(end, b"/registry/pods0");
        let inside = b"/registry/pods/default/web".as_slice();
        let outside = b"/registry/podsx".as_slice();
        assert!(inside >= start.as_slice() && inside < end.as_slice());
        assert!(!(outside >= start.as_slice() && outside < end.as_slice()));
        let (start, end) = prefix_bounds("");
        assert!(start.is_empty());
        assert_eq!(end, vec![0xFF]);
    }
}
