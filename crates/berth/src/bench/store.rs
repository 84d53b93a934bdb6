//! `berth bench store`: the datastores side by side under the same load — ConfigMap
//! creates and GETs through a real `berth server` on the embedded SQLite store and on etcd,
//! creates through the `Store` trait directly on both, and raw etcd puts (etcd-client,
//! the same value size) as the anchor for what etcd itself does here.
//!
//! etcd is started from `/usr/bin/etcd` (Debian's `etcd-server`) in a temp dir on free
//! loopback ports, one member or `--etcd-members N`, and killed by PID at the end; or
//! `--datastore-endpoint etcd://...` points at a running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_store::Store;
use berth_store::etcd::{EtcdOptions, EtcdStore};
use berth_store::sqlite::{SqliteOptions, SqliteStore};
use bytes::Bytes;
use clap::Args;
use hyper::Method;
use tokio::task::JoinSet;

use super::api::{closed_loop, configmap, rate};
use super::report::{self, Figure};
use super::server::ServerProcess;
use super::stats::Latencies;

/// Flags of `berth bench store`.
#[derive(Args, Debug)]
pub(crate) struct StoreArgs {
    /// Print one JSON object of named figures instead of a table.
    #[arg(long)]
    json: bool,
    /// Small counts, for a smoke test (figures are not meaningful).
    #[arg(long)]
    quick: bool,
    /// Members of the etcd cluster the benchmark starts (ignored with --datastore-endpoint).
    #[arg(long, default_value_t = 1)]
    etcd_members: usize,
    /// Use this running etcd (`etcd://HOST:PORT[,...]`) instead of starting one; its
    /// keyspace gets `/registry/...` and `/bench/...` keys.
    #[arg(long)]
    datastore_endpoint: Option<String>,
}

impl StoreArgs {
    /// The benchmark against a running etcd (`berth bench api --datastore etcd://...`).
    pub(crate) fn on(url: String, json: bool, quick: bool) -> anyhow::Result<StoreArgs> {
        match crate::datastore::Endpoint::parse(&url)? {
            crate::datastore::Endpoint::Etcd(_) => {
                Ok(StoreArgs { json, quick, etcd_members: 1, datastore_endpoint: Some(url) })
            }
            crate::datastore::Endpoint::Sqlite(_) => {
                bail!("--datastore {url:?}: the embedded store is always measured; name an etcd://HOST:PORT to compare")
            }
        }
    }
}

/// Runs the benchmark and prints the figures.
pub(crate) async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let (ops, clients) = if args.quick { (200, 4) } else { (5_000, 16) };
    let mut own_etcd = None;
    let (url, members) = match &args.datastore_endpoint {
        Some(url) => (url.clone(), 0),
        None => {
            let etcd = crate::etcd_process::EtcdProcesses::start(args.etcd_members.max(1))?;
            let url = etcd.url();
            own_etcd = Some(etcd);
            (url, args.etcd_members.max(1))
        }
    };
    let endpoints: Vec<String> = url.trim_start_matches("etcd://").split(',').map(str::to_string).collect();
    let mut figs = Vec::new();

    progress(format!("raw etcd puts: {ops} with {clients} clients"));
    let etcd_store =
        EtcdStore::connect(&endpoints, EtcdOptions { compaction_interval: Duration::ZERO, ..Default::default() })
            .await
            .context("connecting to etcd")?;
    let (took, mut lat) = raw_etcd_puts(&etcd_store, clients, ops).await?;
    figs.push(
        Figure::new("etcd_raw_puts_per_s", format!("raw etcd puts, {clients} clients"), rate(ops, took), "/s")
            .anchor("etcdctl check perf --load=l: ~3,500/s here (3 members)"),
    );
    figs.push(Figure::new("etcd_raw_put_p99_ms", "  raw etcd put p99", lat.percentile_ms(99.0), "ms"));

    progress(format!("Store::create on etcd: {ops} with {clients} clients"));
    let (took, mut lat) = store_creates(Arc::new(etcd_store), clients, ops).await?;
    figs.push(Figure::new("store_etcd_creates_per_s", "Store::create on etcd", rate(ops, took), "/s"));
    figs.push(Figure::new("store_etcd_create_p99_ms", "  p99", lat.percentile_ms(99.0), "ms"));

    progress(format!("Store::create on SQLite: {ops} with {clients} clients"));
    let dir = tempfile::Builder::new().prefix("berth-bench-store-").tempdir().context("temp dir")?;
    let sqlite = SqliteStore::open(
        &dir.path().join("state.db"),
        SqliteOptions { compaction_interval: Duration::ZERO, ..SqliteOptions::default() },
    )
    .context("opening a SQLite store")?;
    let (took, mut lat) = store_creates(Arc::new(sqlite), clients, ops).await?;
    figs.push(Figure::new("store_sqlite_creates_per_s", "Store::create on SQLite", rate(ops, took), "/s"));
    figs.push(Figure::new("store_sqlite_create_p99_ms", "  p99", lat.percentile_ms(99.0), "ms"));

    for (backend, extra) in [("sqlite", Vec::new()), ("etcd", vec!["--datastore-endpoint".to_string(), url.clone()])] {
        progress(format!("berth server on {backend}: {ops} ConfigMap creates and GETs with {clients} clients"));
        let server =
            ServerProcess::start_with(&extra).await.with_context(|| format!("starting a server on {backend}"))?;
        let prefix = format!("store-{backend}");
        let create_prefix = prefix.clone();
        let (took, mut create_lat) = closed_loop(server.addr, clients, ops, move |i| {
            (Method::POST, format!("{NS_PATH}/configmaps"), Some(configmap(&create_prefix, i)))
        })
        .await
        .with_context(|| format!("creating ConfigMaps on {backend}"))?;
        let creates = rate(ops, took);
        let (took, mut get_lat) = closed_loop(server.addr, clients, ops, move |i| {
            (Method::GET, format!("{NS_PATH}/configmaps/{prefix}-{i:05}"), None)
        })
        .await
        .with_context(|| format!("reading ConfigMaps on {backend}"))?;
        let gets = rate(ops, took);
        server.stop().await?;
        let (k_creates, k_p99, k_gets, k_get_p99) = match backend {
            "sqlite" => (
                "api_sqlite_creates_per_s",
                "api_sqlite_create_p99_ms",
                "api_sqlite_gets_per_s",
                "api_sqlite_get_p99_ms",
            ),
            _ => ("api_etcd_creates_per_s", "api_etcd_create_p99_ms", "api_etcd_gets_per_s", "api_etcd_get_p99_ms"),
        };
        figs.push(Figure::new(k_creates, format!("API ConfigMap creates on {backend}"), creates, "/s"));
        figs.push(
            Figure::new(k_p99, "  create p99", create_lat.percentile_ms(99.0), "ms")
                .anchor("K8s SLO: mutating p99 <= 1 s"),
        );
        figs.push(Figure::new(k_gets, format!("API ConfigMap GETs on {backend}"), gets, "/s"));
        figs.push(
            Figure::new(k_get_p99, "  get p99", get_lat.percentile_ms(99.0), "ms").anchor("K8s SLO: get p99 <= 1 s"),
        );
    }
    drop(own_etcd);

    if args.json {
        println!("{}", report::json(&figs));
    } else {
        let title = format!(
            "berth bench store{}: SQLite vs etcd ({}) under {clients} clients, {ops} operations each, {} cores",
            if args.quick { " --quick (counts too small for meaningful figures)" } else { "" },
            if members == 0 { format!("at {url}") } else { format!("{members} member(s) on this machine") },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print!("{}", report::table(&title, &figs));
    }
    Ok(())
}

const NS_PATH: &str = "/api/v1/namespaces/default";

/// Progress on stderr, so stdout holds only the figures.
fn progress(msg: String) {
    eprintln!("bench store: {msg}");
}

/// `n` puts of a ConfigMap-sized value straight through etcd-client, `clients` at a time.
async fn raw_etcd_puts(store: &EtcdStore, clients: usize, n: usize) -> anyhow::Result<(Duration, Latencies)> {
    let next = Arc::new(AtomicUsize::new(0));
    let value = configmap("raw", 0).to_vec();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (mut client, next, value) = (store.client(), next.clone(), value.clone());
        tasks.spawn(async move {
            let mut lat = Latencies::with_capacity(n / clients + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(lat);
                }
                let t = Instant::now();
                // Like etcdctl, retry a put that a fresh cluster's election turned away.
                let mut attempts = 0;
                while let Err(e) = client.put(format!("/bench/raw/{i:06}"), value.clone(), None).await {
                    attempts += 1;
                    if attempts >= 20 {
                        return Err(e).context("etcd put");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                lat.push(t.elapsed());
            }
        });
    }
    let lat = join(tasks).await?;
    Ok((started.elapsed(), lat))
}

/// `n` creates through the `Store` trait, `clients` at a time.
async fn store_creates(store: Arc<dyn Store>, clients: usize, n: usize) -> anyhow::Result<(Duration, Latencies)> {
    let next = Arc::new(AtomicUsize::new(0));
    let value: Bytes = configmap("store", 0);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (store, next, value) = (store.clone(), next.clone(), value.clone());
        tasks.spawn(async move {
            let mut lat = Latencies::with_capacity(n / clients + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(lat);
                }
                let t = Instant::now();
                store.create(&format!("/bench/store/{i:06}"), value.clone()).await.context("Store::create")?;
                lat.push(t.elapsed());
            }
        });
    }
    let lat = join(tasks).await?;
    let took = started.elapsed();
    store.close().await.context("closing the store")?;
    Ok((took, lat))
}

async fn join(mut tasks: JoinSet<anyhow::Result<Latencies>>) -> anyhow::Result<Latencies> {
    let mut all = Latencies::default();
    while let Some(res) = tasks.join_next().await {
        all.extend(res.context("a benchmark client panicked")??);
    }
    Ok(all)
}
