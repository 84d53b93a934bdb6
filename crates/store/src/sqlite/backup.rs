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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::Store;
    use crate::sqlite::{SqliteOptions, SqliteStore};

    fn options() -> SqliteOptions {
        SqliteOptions { compaction_interval: Duration::ZERO, ..SqliteOptions::default() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_taken_during_writes_holds_one_revision_with_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(SqliteStore::open(&dir.path().join("state.db"), options()).unwrap());
        for i in 0..200 {
            source.create(&format!("/registry/a/{i:04}"), format!("v{i}").into()).await.unwrap();
        }
        let kv = source.get("/registry/a/0007").await.unwrap().unwrap();
        source.update("/registry/a/0007", "changed".into(), kv.mod_revision).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (source, stop) = (source.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    source.create(&format!("/registry/b/{i:06}"), "x".into()).await.unwrap();
                    i += 1;
                }
                i
            })
        };
        while source.count("/registry/b/").await.unwrap() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (db, copy) = (dir.path().join("state.db"), dir.path().join("copy.db"));
        let info = tokio::task::spawn_blocking(move || backup(&db, &copy)).await.unwrap().unwrap();
        stop.store(true, Ordering::SeqCst);
        let written = writer.await.unwrap();
        assert!(written >= 20);
        let copy_path = dir.path().join("copy.db");
        assert!(!dir.path().join("copy.db-wal").exists(), "the copy is one file");
        assert_eq!(verify(&copy_path).unwrap(), info);

        // The copy is the source at `info.revision`: the same keys with the same
        // revisions, and the history before it.
        let at = source.range("/registry/", None, 0, Some(info.revision)).await.unwrap();
        assert_eq!(info.objects, at.kvs.len() as u64);
        assert!(info.objects > 201, "no concurrent write in the copy: {info:?}");
        let copy = SqliteStore::open(&copy_path, options()).unwrap();
        assert_eq!(copy.current_revision().await.unwrap(), info.revision);
        let restored = copy.range("/registry/", None, 0, None).await.unwrap();
        assert_eq!(restored.kvs, at.kvs);
        let old = copy.range("/registry/a/0007", None, 0, Some(kv.mod_revision)).await.unwrap();
        assert_eq!(old.kvs[0].value, "v7", "history is kept");
        copy.close().await.unwrap();
        source.close().await.unwrap();
    }

    #[test]
    fn verify_refuses_files_that_are_not_berth_stores() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, expect: &str| {
            let err = verify(&dir.path().join(name)).unwrap_err().to_string();
            assert!(err.contains(expect), "{name}: want {expect:?}, got {err}");
        };
        let other = Connection::open(dir.path().join("other.db")).unwrap();
        other.execute_batch("CREATE TABLE foo (x INTEGER); INSERT INTO foo VALUES (1);").unwrap();
        drop(other);
        check("other.db", "no `kv` table");

        let store = SqliteStore::open(&dir.path().join("future.db"), options()).unwrap();
        drop(store);
        let future = Connection::open(dir.path().join("future.db")).unwrap();
        future.execute_batch("UPDATE meta SET value = 99 WHERE name = 'schema'").unwrap();
        drop(future);
        check("future.db", "layout version 99");

        std::fs::write(dir.path().join("text"), "not sqlite at all, but long enough").unwrap();
        check("text", "not a SQLite database");
        check("missing", "No such file");
        assert!(backup(&dir.path().join("missing"), &dir.path().join("out")).is_err());
        assert!(!dir.path().join("out").exists(), "a failed backup leaves no file");
    }
}
