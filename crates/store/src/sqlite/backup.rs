//! Physical snapshots of the embedded store: a consistent copy of the database file taken
//! with SQLite's online backup API while a server may be writing to it, and the checks a
//! restore runs on such a copy before it becomes a store.
//!
//! The copy is made in one backup step, i.e. inside one read transaction of the source:
//! WAL mode lets the server's writer go on meanwhile, and the copy holds exactly the
//! commits before that transaction began — one revision, with every key's history and
//! revisions as they are (the same resourceVersions, not only their order).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::schema::{SCHEMA_VERSION, db_err, meta};
use crate::{Error, Result, Revision};

/// The first 16 bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// What a checked database file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The store's revision (of its last write).
    pub revision: Revision,
    /// The compacted revision.
    pub compacted: Revision,
    /// Live keys under `/registry/` (API objects).
    pub objects: u64,
    /// Of those, values encrypted at rest (`k8s:enc:` prefix): restoring them needs the key.
    pub encrypted: u64,
}

/// Copies the store at `source` (a server may be running on it) into the new file `dest`,
/// consistent at one revision, and checks the copy. `dest` must not exist. The copy is a
/// self-contained file (rollback journal, no `-wal` beside it). A failed backup removes
/// what it wrote to `dest`.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupInfo> {
    if dest.exists() {
        return Err(Error::Backend(format!("{} already exists", dest.display())));
    }
    let result = copy(source, dest).and_then(|()| verify(dest));
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
        let mut journal = dest.as_os_str().to_owned();
        journal.push("-journal");
        let _ = std::fs::remove_file(journal);
    }
    result
}

fn copy(source: &Path, dest: &Path) -> Result<()> {
    // Read-write without create: a missing source fails, and a WAL database whose -shm is
    // gone (no server running) can still be opened.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let src = Connection::open_with_flags(source, flags)
        .map_err(|e| Error::Backend(format!("opening {}: {e}", source.display())))?;
    src.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
    check_layout(&src).map_err(|e| Error::Backend(format!("{}: {e}", source.display())))?;
    let mut dst = Connection::open(dest).map_err(|e| Error::Backend(format!("creating {}: {e}", dest.display())))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(db_err)?;
        // One step of every page: one read transaction on the source, hence one revision
        // (a copy in several steps restarts whenever the server commits in between).
        loop {
            match backup.step(-1).map_err(db_err)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => continue,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // The copy carries the source's WAL flag: make it one file that needs nothing beside it.
    let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0)).map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(Error::Backend(format!("{}: cannot leave WAL mode (got {mode})", dest.display())));
    }
    dst.close().map_err(|(_, e)| db_err(e))?;
    std::fs::File::open(dest).and_then(|f| f.sync_all()).map_err(|e| Error::Backend(format!("{}: {e}", dest.display())))
}

/// Checks that `path` is a whole, uncorrupted berth store: SQLite's integrity check, the
/// layout and version of berth's tables, and that every live key points at a row of the
/// log and no row is newer than the recorded revision. Opens the file read-only.
pub fn verify(path: &Path) -> Result<BackupInfo> {
    let bad = |what: String| Error::Backend(format!("{} is not a usable berth store: {what}", path.display()));
    let mut head = [0u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        f.read_exact(&mut head).map_err(|_| bad("too short for a SQLite database".into()))?;
    }
    if &head != SQLITE_MAGIC {
        return Err(bad("not a SQLite database".into()));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| bad(e.to_string()))?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get::<_, String>(0))?.collect())
        .map_err(|e| bad(format!("integrity check: {e}")))?;
    if problems != ["ok"] {
        let shown: Vec<&str> = problems.iter().take(3).map(String::as_str).collect();
        return Err(bad(format!("integrity check: {}", shown.join("; "))));
    }
    check_layout(&conn).map_err(bad)?;
    let q = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).map_err(|e| bad(e.to_string()));
    let revision = meta(&conn, "revision").map_err(|e| bad(e.to_string()))?;
    let compacted = meta(&conn, "compacted").map_err(|e| bad(e.to_string()))?;
    let newest = q("SELECT COALESCE(MAX(rev), 0) FROM kv")?;
    if newest > revision {
        return Err(bad(format!("a row at revision {newest} is newer than the store's revision {revision}")));
    }
    let dangling = q("SELECT COUNT(*) FROM current AS c LEFT JOIN kv ON kv.rev = c.rev WHERE kv.rev IS NULL")?;
    if dangling > 0 {
        return Err(bad(format!("{dangling} keys point at missing log rows")));
    }
    let objects =
        q("SELECT COUNT(*) FROM current WHERE key >= CAST('/registry/' AS BLOB) AND key < CAST('/registry0' AS BLOB)")?;
    let encrypted = q("SELECT COUNT(*) FROM current AS c JOIN kv ON kv.rev = c.rev \
         WHERE c.key >= CAST('/registry/' AS BLOB) AND c.key < CAST('/registry0' AS BLOB) \
         AND substr(kv.value, 1, 8) = CAST('k8s:enc:' AS BLOB)")?;
    Ok(BackupInfo { revision, compacted, objects: objects as u64, encrypted: encrypted as u64 })
}

/// Checks that berth's tables are there, at the layout version this build knows.
fn check_layout(conn: &Connection) -> std::result::Result<(), String> {
    for table in ["kv", "current", "meta"] {
        let found: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |row| {
                row.get(0)
            })
            .map_err(|e| e.to_string())?;
        if found == 0 {
            return Err(format!("no `{table}` table (not a berth store)"));
        }
    }
    let version = meta(conn, "schema").map_err(|e| format!("schema version: {e}"))?;
    if version != SCHEMA_VERSION {
        return Err(format!("store layout version {version}, this build knows {SCHEMA_VERSION}"));
    }
    Ok(())
}
