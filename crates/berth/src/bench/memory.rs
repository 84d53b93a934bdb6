//! `berth bench memory`: what the API server's memory grows by per object. A `berth server
//! --disable-agent --disable-scheduler` child (controllers running, so their shared Pod
//! cache is counted) is measured idle, after N Pod creates, after a status PATCH of each
//! Pod that sets a kubelet-like status (the Pod grows), and after a second status PATCH of
//! each that changes values only (same size: what grows is the history the watch cache and
//! the store keep). RSS is read once the server is quiet; each figure is the median over
//! the runs. In this process, the same Pod decoded as a JSON tree and as a typed Pod gives
//! the size of the copies the caches hold.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::api::{pod, rss_split, wait_until_quiet};
use super::client::Conn;
use super::report::{self, Figure};
use super::server::ServerProcess;

/// Flags of `berth bench memory`.
#[derive(Args, Debug)]
pub(crate) struct MemoryArgs {
    /// Print one JSON object of named figures instead of a table.
    #[arg(long)]
    json: bool,
    /// Pods created (and each patched twice) per run.
    #[arg(long, default_value_t = 2000)]
    objects: usize,
    /// Runs, each on a fresh server; figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// An extra `berth server` flag, repeatable: `--server-arg=--compaction-retention=100`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The berth executable to run as the server [default: this one], to compare builds.
    #[arg(long)]
    server_exe: Option<PathBuf>,
}

/// Concurrent clients of each phase.
const CLIENTS: usize = 4;
/// How long the server may take to become quiet after a phase.
const QUIET_LIMIT: Duration = Duration::from_secs(60);
/// Namespace path of the Pods.
const NS_PATH: &str = "/api/v1/namespaces/default";

fn progress(msg: String) {
    eprintln!("bench memory: {msg}");
}

/// RSS (MiB) at each point of one run, and the size of one Pod as served.
#[derive(Debug, Clone, Copy)]
struct Run {
    idle_mb: f64,
    created_mb: f64,
    patched_mb: f64,
    repatched_mb: f64,
    anon_mb: f64,
    file_mb: f64,
    pod_json_bytes: f64,
}

/// Runs the memory benchmark and prints the figures.
pub(crate) async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.objects > 0, "--objects must be at least 1");
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let exe = match &args.server_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the berth executable")?,
    };
    let mut flags = vec!["--disable-scheduler".to_string()];
    flags.extend(args.server_args.iter().cloned());
    let mut runs = Vec::with_capacity(args.runs);
    let mut pods = [Bytes::new(), Bytes::new()];
    for r in 1..=args.runs {
        progress(format!("run {r}/{}: {} {}", args.runs, exe.display(), flags.join(" ")));
        let server = ServerProcess::start_exe(&exe, &flags).await.context("starting the server under test")?;
        let measured = measure(&server, args.objects).await;
        let stopped = server.stop().await.context("stopping the server under test");
        let (run, pod) = measured?;
        stopped?;
        progress(format!("run {r}: {run:?}"));
        runs.push(run);
        pods = pod;
    }
    let [(created_value_kb, created_typed_kb), (value_kb, typed_kb)] = decoded_sizes(&pods, args.objects)?;
    let n = args.objects as f64;
    let median = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let figures = vec![
        Figure::new("idle_rss_mb", "idle RSS", median(&|r| r.idle_mb), "MiB"),
        Figure::new(
            "rss_per_pod_create_kb",
            "RSS per Pod created",
            median(&|r| (r.created_mb - r.idle_mb) * 1024.0 / n),
            "kB",
        ),
        Figure::new(
            "rss_per_status_patch_kb",
            "RSS per status PATCH (status set: the Pod grows)",
            median(&|r| (r.patched_mb - r.created_mb) * 1024.0 / n),
            "kB",
        ),
        Figure::new(
            "rss_per_history_patch_kb",
            "RSS per status PATCH (same size: history only)",
            median(&|r| (r.repatched_mb - r.patched_mb) * 1024.0 / n),
            "kB",
        ),
        Figure::new("rss_end_mb", "RSS at the end", median(&|r| r.repatched_mb), "MiB"),
        Figure::new("rss_anon_end_mb", "  of which anonymous (heap)", median(&|r| r.anon_mb), "MiB"),
        Figure::new("rss_file_end_mb", "  of which file-backed (binary, SQLite)", median(&|r| r.file_mb), "MiB"),
        Figure::new("pod_created_json_bytes", "one created Pod as JSON", pods[0].len() as f64, "B"),
        Figure::new("pod_created_value_tree_kb", "  as a serde_json::Value tree (+ its JSON)", created_value_kb, "kB"),
        Figure::new("pod_created_typed_kb", "  as a typed k8s-openapi Pod", created_typed_kb, "kB"),
        Figure::new("pod_json_bytes", "one patched Pod as JSON", median(&|r| r.pod_json_bytes), "B"),
        Figure::new("pod_value_tree_kb", "the same Pod as a serde_json::Value tree (+ its JSON)", value_kb, "kB"),
        Figure::new("pod_typed_kb", "the same Pod as a typed k8s-openapi Pod", typed_kb, "kB"),
    ];
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        let title = format!(
            "berth bench memory: {} Pods, medians of {} runs, berth server {}",
            args.objects,
            args.runs,
            flags.join(" ")
        );
        print!("{}", report::table(&title, &figures));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// VmRSS in MiB once the server is quiet.
async fn quiet_rss(server: &ServerProcess) -> anyhow::Result<f64> {
    wait_until_quiet(server, QUIET_LIMIT).await?;
    Ok(server.rss_bytes()? as f64 / (1024.0 * 1024.0))
}

/// One run; also returns one Pod as served after its creation and after the patches.
async fn measure(server: &ServerProcess, n: usize) -> anyhow::Result<(Run, [Bytes; 2])> {
    let idle_mb = quiet_rss(server).await?;
    // Without the controller manager nobody creates the namespace's ServiceAccount, which
    // admission requires of a Pod.
    let mut conn = Conn::connect(server.addr).await?;
    let sa = Bytes::from(
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "default" } }).to_string(),
    );
    let (status, body) = conn.call_any(Method::POST, &format!("{NS_PATH}/serviceaccounts"), Some(sa)).await?;
    if !status.is_success() && status != hyper::StatusCode::CONFLICT {
        bail!("creating the default ServiceAccount: {status}: {}", String::from_utf8_lossy(&body));
    }
    progress(format!("creating {n} Pods"));
    each(server, n, |i| (Method::POST, format!("{NS_PATH}/pods"), pod("mem-pod", i), "application/json")).await?;
    let created_mb = quiet_rss(server).await?;
    let created = conn.call(Method::GET, &format!("{NS_PATH}/pods/mem-pod-00000"), None).await?;
    progress(format!("patching the status of {n} Pods (set)"));
    each(server, n, |i| status_patch(i, 0)).await?;
    let patched_mb = quiet_rss(server).await?;
    progress(format!("patching the status of {n} Pods (same size)"));
    each(server, n, |i| status_patch(i, 1)).await?;
    let repatched_mb = quiet_rss(server).await?;
    let (anon_mb, file_mb) = rss_split(server.pid())?;
    let pod = conn.call(Method::GET, &format!("{NS_PATH}/pods/mem-pod-00000"), None).await?;
    // Counted without building the items: this process's heap is measured later.
    #[derive(serde::Deserialize)]
    struct Items {
        items: Vec<serde::de::IgnoredAny>,
    }
    let listed = conn.call(Method::GET, &format!("{NS_PATH}/pods"), None).await?;
    let count = serde_json::from_slice::<Items>(&listed).context("decoding the Pod list")?.items.len();
    if count != n {
        bail!("expected {n} Pods, the server lists {count}");
    }
    let run = Run { idle_mb, created_mb, patched_mb, repatched_mb, anon_mb, file_mb, pod_json_bytes: pod.len() as f64 };
    Ok((run, [created, pod]))
}

/// One request: method, path, body, content type.
pub(super) type Call = (Method, String, Bytes, &'static str);

/// `n` requests from [`CLIENTS`] connections; fails on the first error status.
async fn each(
    server: &ServerProcess,
    n: usize,
    make: impl Fn(usize) -> Call + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        conns.push(Conn::connect(server.addr).await?);
    }
    send_all(conns, n, make).await
}

/// `n` requests made by `make(0..n)`, sent in closed loop over `conns` (one task each);
/// fails on the first error status.
pub(super) async fn send_all(
    conns: Vec<Conn>,
    n: usize,
    make: impl Fn(usize) -> Call + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let (make, next) = (make.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let (method, path, body, content_type) = make(i);
                let resp = conn.send_as(method.clone(), &path, Some(body), content_type).await?;
                let status = resp.status();
                let bytes = resp.into_body().collect().await.with_context(|| format!("{method} {path}"))?.to_bytes();
                if !status.is_success() {
                    bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(400)]));
                }
            }
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.context("a benchmark client panicked")??;
    }
    Ok(())
}

/// A kubelet-like status for Pod `i` as a merge patch; `round` changes the values (restart
/// count, times, container ID) but not the size, so a second round only adds history.
fn status_patch(i: usize, round: usize) -> Call {
    let started = format!("2026-01-01T00:0{round}:00Z");
    let container_id = format!("containerd://{:064x}", i * 10 + round);
    let condition =
        |t: &str| json!({ "type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": started });
    let patch = json!({ "status": {
        "phase": "Running",
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"),
                       condition("ContainersReady"), condition("PodScheduled")],
        "hostIP": "10.0.0.1", "hostIPs": [{ "ip": "10.0.0.1" }],
        "podIP": format!("10.42.{}.{}", i / 250, i % 250 + 1),
        "podIPs": [{ "ip": format!("10.42.{}.{}", i / 250, i % 250 + 1) }],
        "startTime": started,
        "qosClass": "Burstable",
        "containerStatuses": [{
            "name": "app", "ready": true, "started": true, "restartCount": round,
            "image": "registry.k8s.io/nginx-slim:0.27",
            "imageID": "registry.k8s.io/nginx-slim@sha256:8b9d2f1b1f4e3c5a6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "containerID": container_id,
            "state": { "running": { "startedAt": started } },
            "lastState": {},
        }],
    } });
    let path = format!("{NS_PATH}/pods/mem-pod-{i:05}/status");
    (Method::PATCH, path, Bytes::from(patch.to_string()), "application/merge-patch+json")
}

/// Heap (kB) of one copy of each of `pods` decoded as a `serde_json::Value` tree together
/// with its JSON bytes (what the watch cache holds per live object), and decoded as a typed
/// k8s-openapi `Pod` (what an informer cache holds): `n` copies held at once in this
/// process, measured as its RSS growth. Everything stays allocated until every size is
/// measured, so that no measurement reuses memory another freed.
fn decoded_sizes<const N: usize>(pods: &[Bytes; N], n: usize) -> anyhow::Result<[(f64, f64); N]> {
    use k8s_openapi::api::core::v1::Pod;
    let n = n.max(1000);
    let rss = || rss_split(std::process::id()).map(|(anon, _)| anon * 1024.0);
    let mut trees: Vec<Vec<(Value, Vec<u8>)>> = Vec::with_capacity(N);
    let mut typed: Vec<Vec<Pod>> = Vec::with_capacity(N);
    let mut sizes = [(0.0, 0.0); N];
    for (pod, size) in pods.iter().zip(&mut sizes) {
        let before = rss()?;
        trees.push((0..n).map(|_| Ok((serde_json::from_slice(pod)?, pod.to_vec()))).collect::<anyhow::Result<_>>()?);
        size.0 = (rss()? - before) / n as f64;
        let before = rss()?;
        typed.push((0..n).map(|_| serde_json::from_slice(pod)).collect::<Result<_, _>>()?);
        size.1 = (rss()? - before) / n as f64;
    }
    drop((trees, typed));
    Ok(sizes)
}
