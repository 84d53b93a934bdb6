//! Benchmark of the SQLite store: create throughput with 1, 16, 64 and 256 concurrent
//! writers (the group-commit effect), point-get latency and a 10,000-key range.
//!
//! Run with `cargo run --release -p berth-store --example store_bench [dir]`; the
//! database goes to a temporary directory under `dir` (default: the system's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_store::Store;
use berth_store::sqlite::{SqliteOptions, SqliteStore};
use bytes::Bytes;
use futures::StreamExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base)?;
    let options = SqliteOptions { compaction_interval: Duration::ZERO, ..SqliteOptions::default() };
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db"), options)?);
    let value = Bytes::from(vec![b'x'; 1024]);

    // A watcher of everything, as the API server has, following all the creates.
    let mut watch = store.watch("/bench/", 0).await?;
    let watcher = tokio::spawn(async move {
        let (mut seen, mut last) = (0u64, 0);
        while let Some(event) = watch.next().await {
            let revision = event?.revision();
            if revision <= last {
                return Err(berth_store::Error::Backend(format!("event {revision} after {last}")));
            }
            (seen, last) = (seen + 1, revision);
        }
        Ok::<_, berth_store::Error>(seen)
    });

    for writers in [1, 16, 64, 256] {
        let (count, elapsed) = creates(&store, writers, &value, Duration::from_secs(3)).await?;
        println!(
            "creates, {writers:>2} writers: {:>8.0}/s ({count} in {elapsed:.2?})",
            count as f64 / elapsed.as_secs_f64()
        );
    }

    let written = store.count("/bench/").await?;
    // 10,000 keys of 1 KiB under one prefix, written concurrently.
    let fill = (0..50).map(|task| {
        let (store, value) = (store.clone(), value.clone());
        tokio::spawn(async move {
            for n in 0..200 {
                store.create(&format!("/registry/pods/ns/{task}-{n}"), value.clone()).await?;
            }
            Ok::<_, berth_store::Error>(())
        })
    });
    for task in futures::future::join_all(fill).await {
        task??;
    }

    let mut gets = Vec::with_capacity(10_000);
    for n in 0..10_000 {
        let key = format!("/registry/pods/ns/{}-{}", n % 50, n % 200);
        let start = Instant::now();
        store.get(&key).await?.ok_or("missing key")?;
        gets.push(start.elapsed());
    }
    gets.sort_unstable();
    println!("get: p50 {:.1?} p99 {:.1?}", gets[gets.len() / 2], gets[gets.len() * 99 / 100]);

    let mut ranges = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        let result = store.range("/registry/pods/", None, 0, None).await?;
        ranges.push(start.elapsed());
        assert_eq!(result.kvs.len(), 10_000);
    }
    ranges.sort_unstable();
    println!("range of 10,000 x 1 KiB keys: median {:.1?}", ranges[ranges.len() / 2]);

    let past = store.current_revision().await? - 1;
    let start = Instant::now();
    let result = store.range("/registry/pods/", None, 0, Some(past)).await?;
    println!("same range at a past revision: {:.1?} ({} keys)", start.elapsed(), result.kvs.len());

    let start = Instant::now();
    let page = store.range("/registry/pods/", None, 500, None).await?;
    println!("first page of 500: {:.1?} (more: {})", start.elapsed(), page.more);

    store.close().await?;
    let seen = watcher.await??;
    println!("watcher of /bench/ received {seen} of {written} events, in order");
    Ok(())
}

/// Creates keys from `writers` concurrent tasks for `duration`.
async fn creates(
    store: &Arc<SqliteStore>,
    writers: usize,
    value: &Bytes,
    duration: Duration,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let tasks = (0..writers).map(|writer| {
        let (store, value) = (store.clone(), value.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while start.elapsed() < duration {
                store.create(&format!("/bench/{writers}/{writer}/{n}"), value.clone()).await?;
                n += 1;
            }
            Ok::<_, berth_store::Error>(n)
        })
    });
    let mut count = 0;
    for task in futures::future::join_all(tasks).await {
        count += task??;
    }
    Ok((count, start.elapsed()))
}
