//! Tests of the SQLite backend: the conformance suite, the model-based property test,
//! reopening, slow watchers, and a kill -9 crash test against a child process.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::{SqliteOptions, SqliteStore};
use crate::conformance::{self, model, take_events};
use crate::{Error, Event, Store};

/// Options for tests: no background compaction, so results are deterministic.
fn test_options() -> SqliteOptions {
    SqliteOptions { compaction_interval: Duration::ZERO, ..SqliteOptions::default() }
}

/// Fresh stores, each in its own file under one temporary directory.
struct Stores {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl Stores {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap(), next: AtomicUsize::new(0) }
    }

    fn path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        self.dir.path().join(format!("store-{n}.db"))
    }

    fn open(&self, options: SqliteOptions) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path(), options).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let stores = Stores::new();
    conformance::run_all(|| stores.open(test_options())).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn model_based(ops in model::ops(40)) {
        let stores = Stores::new();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let store = stores.open(test_options());
            model::check_model(&*store, &ops).await;
            store.close().await.unwrap();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_resumes_revision_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, test_options()).unwrap();
    let a = store.create("/a", Bytes::from_static(b"1")).await.unwrap();
    store.update("/a", Bytes::from_static(b"2"), a.mod_revision).await.unwrap();
    store.create("/b", Bytes::from_static(b"1")).await.unwrap();
    store.compact(2).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path, test_options()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 3);
    assert_eq!(store.compacted_revision().await.unwrap(), 2);
    assert_eq!(store.get("/a").await.unwrap().unwrap().value, Bytes::from_static(b"2"));
    assert!(matches!(store.range("/", None, 0, Some(2)).await, Err(Error::Compacted { .. })));
    assert_eq!(store.create("/c", Bytes::new()).await.unwrap().mod_revision, 4);
    store.close().await.unwrap();
}

#[test]
fn opening_a_database_of_another_schema_version_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, test_options()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema'", []).unwrap();
    drop(conn);
    match SqliteStore::open(&path, test_options()) {
        Err(Error::Backend(message)) => assert!(message.contains("schema version 99"), "{message}"),
        other => panic!("open: {other:?}"),
    }
}

/// A watcher that reads nothing while thousands of batches pass the broadcast still
/// gets every event, in order, from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_refed_from_the_database() {
    let stores = Stores::new();
    let store = stores.open(SqliteOptions { watch_buffer: 2, ..test_options() });
    let mut watch = store.watch("/s/", 1).await.unwrap();
    let writes = (0..8).map(|task| {
        let store = store.clone();
        async move {
            for n in 0..100 {
                store.create(&format!("/s/{task}/{n}"), Bytes::from_static(b"x")).await.unwrap();
            }
        }
    });
    futures::future::join_all(writes).await;
    let events = take_events(&mut watch, 800).await;
    let revisions: Vec<i64> = events.iter().map(Event::revision).collect();
    assert_eq!(revisions, (1..=800).collect::<Vec<_>>());
    store.close().await.unwrap();
}

/// Automatic compaction keeps the configured window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_window() {
    let stores = Stores::new();
    let options = SqliteOptions {
        compaction_window: 10,
        compaction_interval: Duration::from_millis(20),
        ..SqliteOptions::default()
    };
    let store = stores.open(options);
    let mut kv = store.create("/k", Bytes::from_static(b"0")).await.unwrap();
    for _ in 0..49 {
        kv = store.update("/k", Bytes::from_static(b"n"), kv.mod_revision).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.unwrap() != 40 {
        assert!(Instant::now() < deadline, "compaction did not reach 40");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.range("/", None, 0, Some(41)).await.unwrap().kvs.len(), 1);
    store.close().await.unwrap();
}

const CRASH_ENV: &str = "BERTH_STORE_CRASH_CHILD";
const CRASH_WRITERS: usize = 8;

/// The child side of [`acknowledged_writes_survive_kill_9`]: writes until killed,
/// printing `ACK <key> <revision>` once each write is acknowledged.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(Path::new(&path), test_options()).unwrap());
        let writers = (0..CRASH_WRITERS).map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                // Bounded, so an orphaned child stops on its own.
                for n in 0..200_000 {
                    let key = format!("/crash/{writer}/{n}");
                    let kv = store.create(&key, Bytes::from(crash_value(&key))).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {}", kv.mod_revision).unwrap();
                    out.flush().unwrap();
                }
            })
        });
        futures::future::join_all(writers).await;
    });
}

fn crash_value(key: &str) -> String {
    format!("value of {key} {}", "x".repeat(200))
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "sqlite::tests::crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        if words.next() != Some("ACK") {
            continue;
        }
        let key = words.next().unwrap().to_owned();
        let revision: i64 = words.next().unwrap().parse().unwrap();
        acked.push((key, revision));
        if acked.len() >= 2_000 || Instant::now() > deadline {
            break;
        }
    }
    assert!(acked.len() >= 2_000, "child acknowledged only {} writes", acked.len());
    // SIGKILL while writers are in full flight: the kill lands mid-batch.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path, test_options()).unwrap();
        for (key, revision) in &acked {
            let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acknowledged {key} lost"));
            assert_eq!(kv.mod_revision, *revision, "{key}");
            assert_eq!(kv.value, Bytes::from(crash_value(key)), "{key}");
        }
        // Only attempted keys, all complete, and no partial batch: revisions 1..=current
        // are all present (the revision counter and the rows commit together).
        let current = store.current_revision().await.unwrap();
        let all = store.range("", None, 0, None).await.unwrap();
        assert_eq!(i64::try_from(all.kvs.len()).unwrap(), current);
        let mut revisions: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=current).collect::<Vec<_>>());
        for kv in &all.kvs {
            let mut parts =
                kv.key.strip_prefix("/crash/").unwrap_or_else(|| panic!("unexpected key {}", kv.key)).split('/');
            let writer: usize = parts.next().unwrap().parse().unwrap();
            assert!(writer < CRASH_WRITERS);
            let _n: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(kv.value, Bytes::from(crash_value(&kv.key)));
        }
        // Per writer, keys are written in sequence, so they form a gap-free run.
        for writer in 0..CRASH_WRITERS {
            let prefix = format!("/crash/{writer}/");
            let count = store.count(&prefix).await.unwrap();
            for n in 0..count {
                assert!(store.get(&format!("{prefix}{n}")).await.unwrap().is_some(), "{prefix}{n} missing");
            }
        }
        let next = store.create("/after", Bytes::new()).await.unwrap();
        assert_eq!(next.mod_revision, current + 1);
        store.close().await.unwrap();
    });
}

/// A crash in the middle of a batch: a transaction whose pages already spilled into
/// the WAL, but which never committed, leaves no trace after reopening. The crash is
/// simulated by copying the database files while the transaction is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_batch_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, test_options()).unwrap();
    for n in 0..10 {
        store.create(&format!("/before/{n}"), Bytes::from_static(b"kept")).await.unwrap();
    }
    store.close().await.unwrap();
    drop(store);

    let wal = dir.path().join("store.db-wal");
    let crashed = dir.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        // A tiny page cache forces the open transaction's pages into the WAL.
        conn.execute_batch("PRAGMA cache_size = 8;").unwrap();
        let tx = conn.transaction().unwrap();
        let wal_before = std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
        for n in 0..2_000i64 {
            tx.execute(
                "INSERT INTO kv (rev, key, deleted, create_rev, prev_rev, version, value) \
                 VALUES (?1, ?2, 0, ?1, 0, 1, zeroblob(1024))",
                rusqlite::params![11 + n, format!("/partial/{n}").into_bytes()],
            )
            .unwrap();
        }
        tx.execute("UPDATE meta SET value = 2010 WHERE name = 'revision'", []).unwrap();
        let wal_during = std::fs::metadata(&wal).unwrap().len();
        assert!(wal_during > wal_before + 1_000_000, "the open transaction did not spill into the WAL");
        for name in ["store.db", "store.db-wal"] {
            std::fs::copy(dir.path().join(name), crashed.join(name)).unwrap();
        }
        tx.rollback().unwrap();
    }

    let store = SqliteStore::open(&crashed.join("store.db"), test_options()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 10);
    assert_eq!(store.count("/partial/").await.unwrap(), 0);
    assert_eq!(store.range("/", None, 0, None).await.unwrap().kvs.len(), 10);
    let mut watch = store.watch("/", 1).await.unwrap();
    let events = take_events(&mut watch, 10).await;
    assert!(events.iter().all(|event| event.key().starts_with("/before/")));
    assert_eq!(store.create("/after", Bytes::new()).await.unwrap().mod_revision, 11);
    store.close().await.unwrap();
}

/// A watcher so far behind that its next events were compacted gets a Compacted error
/// after the events it could still be given, then its stream ends; nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_behind_compaction_gets_compacted_error() {
    use futures::StreamExt;
    let stores = Stores::new();
    let store = stores.open(SqliteOptions { watch_buffer: 1, ..test_options() });
    let mut watch = store.watch("/", 1).await.unwrap();
    // More than the stream buffer plus one replay page, so the watcher must go back to
    // the database after the compaction below.
    let writes = (0..8).map(|task| {
        let store = store.clone();
        async move {
            for n in 0..250 {
                store.create(&format!("/l/{task}/{n}"), Bytes::from_static(b"x")).await.unwrap();
            }
        }
    });
    futures::future::join_all(writes).await;
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let mut next = 1;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap() {
            Some(Ok(event)) => {
                assert_eq!(event.revision(), next);
                next += 1;
            }
            Some(Err(Error::Compacted { requested, compacted })) => {
                assert_eq!((requested, compacted), (next, 2000));
                break;
            }
            other => panic!("after {next}: {other:?}"),
        }
    }
    assert!(next <= 2000, "all events arrived although they were compacted");
    assert!(tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().is_none());
    store.close().await.unwrap();
}

/// Closing while writes are in flight: each write either is acknowledged (and then
/// durable) or fails with Closed; nothing acknowledged is lost across reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path, test_options()).unwrap());
    let writes: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&format!("/q/{n}"), Bytes::from_static(b"x")).await })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await.unwrap();
    let mut acknowledged = Vec::new();
    for (n, write) in writes.into_iter().enumerate() {
        match write.await.unwrap() {
            Ok(kv) => acknowledged.push((n, kv)),
            Err(Error::Closed) => {}
            Err(err) => panic!("write {n}: {err}"),
        }
    }
    drop(store);
    // Dropping without close also stops the threads and releases the file.
    let store = SqliteStore::open(&path, test_options()).unwrap();
    for (n, kv) in &acknowledged {
        assert_eq!(store.get(&format!("/q/{n}")).await.unwrap().as_ref(), Some(kv));
    }
    assert_eq!(store.count("/q/").await.unwrap(), u64::try_from(acknowledged.len()).unwrap());
    drop(store);
    let store = SqliteStore::open(&path, test_options()).unwrap();
    assert_eq!(store.count("/q/").await.unwrap(), u64::try_from(acknowledged.len()).unwrap());
    store.close().await.unwrap();
}

/// The WAL header's checkpoint sequence number and salts, which change whenever the
/// WAL restarts from its beginning.
fn wal_generation(wal: &Path) -> Vec<u8> {
    let header = std::fs::read(wal).unwrap_or_default();
    header.get(12..24).map(<[u8]>::to_vec).unwrap_or_default()
}

/// The background checkpointer keeps the WAL from growing without bound: after a burst
/// of writes it copies the WAL into the database, and later writes restart the WAL
/// from its beginning instead of appending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpointer_bounds_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let wal = dir.path().join("store.db-wal");
    let store = Arc::new(SqliteStore::open(&path, test_options()).unwrap());
    let value = Bytes::from(vec![b'x'; 1024]);
    let writes = (0..16).map(|task| {
        let (store, value) = (store.clone(), value.clone());
        async move {
            for n in 0..200 {
                store.create(&format!("/wal/{task}/{n}"), value.clone()).await.unwrap();
            }
        }
    });
    futures::future::join_all(writes).await;
    let burst = wal_generation(&wal);
    let peak = std::fs::metadata(&wal).unwrap().len();
    assert!(peak > 3_200_000, "burst wrote only {peak} bytes of WAL");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    while wal_generation(&wal) == burst {
        assert!(Instant::now() < deadline, "the WAL never restarted after {n} writes");
        store.create(&format!("/wal/after/{n}"), value.clone()).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Restarted: further writes reuse the file from its start.
    let restarted = std::fs::metadata(&wal).unwrap().len();
    for n in 0..50 {
        store.create(&format!("/wal/again/{n}"), value.clone()).await.unwrap();
    }
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), restarted, "WAL kept growing");
    store.close().await.unwrap();
    let left = std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
    assert_eq!(left, 0, "close truncates the WAL");
}
