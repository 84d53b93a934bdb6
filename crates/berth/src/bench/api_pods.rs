//! `berth bench api --only pods`: the Pod write path alone, server CPU per operation.
//!
//! Two servers on fresh data dirs. The first runs as `bench api` runs it (scheduler and
//! controllers on, no nodes): Pod creates with 16 clients, the server CPU during the phase
//! and until the server is quiet again (which adds the scheduler's PodScheduled status
//! PATCH and FailedScheduling Event per Pod and the controllers' work). The second runs
//! with `--disable-scheduler`, so that every write is one the bench sends: the creates,
//! then per Pod the scheduler's status PATCH (strategic merge), then a kubelet-like status
//! PATCH (merge patch); each figure is the server CPU from the phase's start until the
//! server is quiet, divided by the Pods.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::api::{pod, rate, wait_until_quiet};
use super::client::Conn;
use super::report::Figure;
use super::server::ServerProcess;

/// Concurrent clients of each phase (as `bench api`'s Pod creates).
const CLIENTS: usize = 16;
/// How long the server may take to become quiet after a phase.
const QUIET_LIMIT: Duration = Duration::from_secs(120);
/// Namespace path of the Pods.
const NS_PATH: &str = "/api/v1/namespaces/default";

/// What the Pod-only run needs from `bench api`'s flags.
pub(super) struct PodsOnly {
    /// Pods per server.
    pub(super) pods: usize,
    /// Extra `berth server` flags for both servers.
    pub(super) server_args: Vec<String>,
    /// The executable to run as the server (another build, to compare).
    pub(super) server_exe: Option<PathBuf>,
}

fn progress(msg: String) {
    eprintln!("bench api --only pods: {msg}");
}

async fn start(opts: &PodsOnly, extra: &[&str]) -> anyhow::Result<ServerProcess> {
    let mut args = opts.server_args.clone();
    args.extend(extra.iter().map(|s| s.to_string()));
    match &opts.server_exe {
        Some(exe) => ServerProcess::start_exe(exe, &args).await,
        None => ServerProcess::start_with(&args).await,
    }
}

/// Runs both servers and returns the figures.
pub(super) async fn run(opts: &PodsOnly) -> anyhow::Result<Vec<Figure>> {
    let n = opts.pods;
    let mut figs = Vec::new();

    progress(format!("server 1 (scheduler on): creating {n} Pods with {CLIENTS} clients"));
    let server = start(opts, &[]).await.context("starting the server with its scheduler")?;
    let measured = async {
        ensure_service_account(&server).await?;
        let (took, during, settled) = phase(&server, n, |i| create(i, "sched-pod")).await?;
        figs.push(
            Figure::new("pod_creates_per_s", format!("Pod creates, {CLIENTS} clients"), rate(n, took), "/s")
                .goal(">= 5000/s"),
        );
        figs.push(Figure::new(
            "pod_create_server_cpu_us",
            "  server CPU per Pod create, during the phase",
            during,
            "us",
        ));
        figs.push(Figure::new(
            "pod_create_settled_cpu_us",
            "  same, until quiet (+ scheduler's PATCH and Event, controllers)",
            settled,
            "us",
        ));
        anyhow::Ok(())
    }
    .await;
    server.stop().await.context("stopping server 1")?;
    measured?;

    progress(format!("server 2 (--disable-scheduler): {n} creates, then a status PATCH of each, twice"));
    let server = start(opts, &["--disable-scheduler"]).await.context("starting the server without scheduler")?;
    let measured = async {
        ensure_service_account(&server).await?;
        let (_, _, create_cpu) = phase(&server, n, |i| create(i, "bench-pod")).await?;
        figs.push(Figure::new(
            "pod_create_api_cpu_us",
            "server CPU per Pod create, no scheduler (until quiet)",
            create_cpu,
            "us",
        ));
        progress("scheduler-like status PATCHes (strategic merge)".into());
        let (_, _, smp_cpu) = phase(&server, n, scheduler_patch).await?;
        figs.push(Figure::new(
            "status_smp_server_cpu_us",
            "  per status PATCH, strategic merge (PodScheduled=False)",
            smp_cpu,
            "us",
        ));
        progress("kubelet-like status PATCHes (merge patch)".into());
        let (_, _, merge_cpu) = phase(&server, n, kubelet_patch).await?;
        figs.push(Figure::new(
            "status_merge_server_cpu_us",
            "  per status PATCH, merge patch (kubelet-like Running status)",
            merge_cpu,
            "us",
        ));
        anyhow::Ok(())
    }
    .await;
    server.stop().await.context("stopping server 2")?;
    measured?;
    Ok(figs)
}

/// Creates the `default` ServiceAccount (which admission requires of a Pod) unless the
/// controllers did already.
pub(super) async fn ensure_service_account(server: &ServerProcess) -> anyhow::Result<()> {
    let mut conn = Conn::connect(server.addr).await?;
    let sa = Bytes::from(
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "default" } }).to_string(),
    );
    let (status, body) = conn.call_any(Method::POST, &format!("{NS_PATH}/serviceaccounts"), Some(sa)).await?;
    if !status.is_success() && status != StatusCode::CONFLICT {
        bail!("creating the default ServiceAccount: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// One request: method, path, body, content type.
use super::memory::Call;

fn create(i: usize, prefix: &str) -> Call {
    (Method::POST, format!("{NS_PATH}/pods"), pod(prefix, i), "application/json")
}

/// The PodScheduled=False condition the scheduler writes for a Pod it cannot place.
fn scheduler_patch(i: usize) -> Call {
    let patch = json!({ "status": { "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/0 nodes are available: no nodes available to schedule pods.",
        "lastProbeTime": null, "lastTransitionTime": "2026-01-01T00:00:00Z",
    }] } });
    let path = format!("{NS_PATH}/pods/bench-pod-{i:05}/status");
    (Method::PATCH, path, Bytes::from(patch.to_string()), "application/strategic-merge-patch+json")
}

/// A kubelet-like Running status as a merge patch.
fn kubelet_patch(i: usize) -> Call {
    let at = "2026-01-01T00:01:00Z";
    let condition = |t: &str| json!({ "type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": at });
    let ip = format!("10.42.{}.{}", i / 250, i % 250 + 1);
    let patch = json!({ "status": {
        "phase": "Running",
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"),
                       condition("ContainersReady"), condition("PodScheduled")],
        "hostIP": "10.0.0.1", "hostIPs": [{ "ip": "10.0.0.1" }],
        "podIP": ip, "podIPs": [{ "ip": ip }],
        "startTime": at,
        "qosClass": "Burstable",
        "containerStatuses": [{
            "name": "app", "ready": true, "started": true, "restartCount": 0,
            "image": "registry.k8s.io/nginx-slim:0.27",
            "imageID": "registry.k8s.io/nginx-slim@sha256:8b9d2f1b1f4e3c5a6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "containerID": format!("containerd://{i:064x}"),
            "state": { "running": { "startedAt": at } },
            "lastState": {},
        }],
    } });
    let path = format!("{NS_PATH}/pods/bench-pod-{i:05}/status");
    (Method::PATCH, path, Bytes::from(patch.to_string()), "application/merge-patch+json")
}

/// `n` requests from [`CLIENTS`] connections in closed loop, failing on the first error
/// status; returns the wall time, and the server CPU per request (µs) during the requests
/// and until the server is quiet again.
async fn phase(
    server: &ServerProcess,
    n: usize,
    make: impl Fn(usize) -> Call + Send + Sync + 'static,
) -> anyhow::Result<(Duration, f64, f64)> {
    wait_until_quiet(server, QUIET_LIMIT).await?;
    let mut conns = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        conns.push(Conn::connect(server.addr).await?);
    }
    let cpu = server.cpu_time()?;
    let started = Instant::now();
    super::memory::send_all(conns, n, make).await?;
    let took = started.elapsed();
    let during = server.cpu_time()? - cpu;
    wait_until_quiet(server, QUIET_LIMIT).await?;
    let settled = server.cpu_time()? - cpu;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    Ok((took, per(during), per(settled)))
}
