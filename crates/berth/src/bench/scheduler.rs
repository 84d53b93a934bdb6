//! `berth bench scheduler`: a real `berth server` child (with its scheduler) on a fresh
//! data dir per scenario; Node objects created through the API (no node agent); pods
//! created through the API by 16 closed-loop clients. Measures scheduling throughput
//! (pods/s from the first create to the last bound, bound times read from a watch) and
//! per-pod create → bound latency, for plain pods, pods with required anti-affinity by
//! hostname, pods with a zone topology spread constraint, and preemption churn (every
//! node full of low-priority pods, each high-priority pod evicting one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::client::Conn;
use super::report::{self, Figure};
use super::server::ServerProcess;
use super::stats::Latencies;

/// Flags of `berth bench scheduler`.
#[derive(Args, Debug)]
pub(crate) struct SchedulerArgs {
    /// Nodes created through the API.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Plain pods scheduled (the other scenarios scale from it: anti-affinity and
    /// preemption min(pods/6, nodes), spread pods/3).
    #[arg(long, default_value_t = 30_000)]
    pods: usize,
    /// Print one JSON object of named figures instead of a table.
    #[arg(long)]
    json: bool,
    /// Small counts, for a smoke test (figures are not meaningful).
    #[arg(long)]
    quick: bool,
}

const CLIENTS: usize = 16;
const ZONES: usize = 10;
const PODS_PATH: &str = "/api/v1/namespaces/default/pods";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Plain,
    AntiAffinity,
    Spread,
    Preemption,
}

impl Scenario {
    fn keys(self) -> [&'static str; 3] {
        match self {
            Scenario::Plain => ["plain_pods_per_s", "plain_p50_ms", "plain_p99_ms"],
            Scenario::AntiAffinity => ["anti_affinity_pods_per_s", "anti_affinity_p50_ms", "anti_affinity_p99_ms"],
            Scenario::Spread => ["spread_pods_per_s", "spread_p50_ms", "spread_p99_ms"],
            Scenario::Preemption => ["preemption_pods_per_s", "preemption_p50_ms", "preemption_p99_ms"],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scenario::Plain => "plain pods",
            Scenario::AntiAffinity => "required anti-affinity (hostname)",
            Scenario::Spread => "zone topology spread (maxSkew 1)",
            Scenario::Preemption => "preemption churn",
        }
    }

    fn goal(self) -> &'static str {
        match self {
            Scenario::Plain => ">= 2,000 pods/s",
            Scenario::AntiAffinity | Scenario::Spread => ">= 500 pods/s",
            Scenario::Preemption => "",
        }
    }

    fn anchor(self) -> &'static str {
        match self {
            Scenario::Plain => "K8s scheduler_perf 5k nodes: 680-810 pods/s",
            Scenario::Preemption => "K8s scheduler_perf 5k nodes: 570 pods/s",
            _ => "",
        }
    }
}

fn progress(msg: String) {
    eprintln!("bench scheduler: {msg}");
}

/// Runs the four scenarios and prints the figures.
pub(crate) async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let (nodes, pods) = if args.quick { (40, 200) } else { (args.nodes.max(1), args.pods.max(1)) };
    let mut figures = Vec::new();
    for scenario in [Scenario::Plain, Scenario::AntiAffinity, Scenario::Spread, Scenario::Preemption] {
        let count = match scenario {
            Scenario::Plain => pods,
            Scenario::AntiAffinity | Scenario::Preemption => (pods / 6).clamp(1, nodes),
            Scenario::Spread => (pods / 3).max(1),
        };
        progress(format!("{}: {nodes} nodes, {count} pods", scenario.label()));
        // API server and scheduler only, as Kubernetes' scheduler_perf runs them: the
        // controllers would react to every pod (and the node lifecycle controller would
        // taint these Lease-less nodes once its grace period is over).
        let server = ServerProcess::start_with(&["--disable-controller-manager".to_string()])
            .await
            .context("starting a server")?;
        let measured = measure(server.addr, scenario, nodes, count).await;
        let stopped = server.stop().await.context("stopping the server");
        let (per_s, mut latency) = match measured {
            Ok(m) => m,
            Err(e) => {
                // Keep what was measured: print it before failing.
                eprint!("{}", report::table("figures measured before the failure", &figures));
                return Err(e.context(format!("scenario {}", scenario.label())));
            }
        };
        stopped?;
        let [k_rate, k_p50, k_p99] = scenario.keys();
        let label = scenario.label();
        figures.push(
            Figure::new(k_rate, format!("{label}: {count} pods on {nodes} nodes"), per_s, "pods/s")
                .goal(scenario.goal())
                .anchor(scenario.anchor()),
        );
        figures.push(Figure::new(k_p50, format!("{label}: create -> bound p50"), latency.percentile_ms(50.0), "ms"));
        figures.push(Figure::new(k_p99, format!("{label}: create -> bound p99"), latency.percentile_ms(99.0), "ms"));
    }
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        let title = format!(
            "berth bench scheduler{}: berth server (API server + scheduler) on {} cores, clients in the same machine",
            if args.quick { " --quick (counts too small for meaningful figures)" } else { "" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print!("{}", report::table(&title, &figures));
    }
    Ok(())
}

fn node(i: usize, cpu: &str) -> Bytes {
    let name = format!("node-{i}");
    let v = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES)}},
        "status": {"capacity": {"cpu": cpu, "memory": "256Gi", "pods": "110"},
                   "allocatable": {"cpu": cpu, "memory": "256Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]}});
    Bytes::from(v.to_string())
}

fn pod(scenario: Scenario, i: usize) -> Bytes {
    let app = match scenario {
        Scenario::Plain => "plain",
        Scenario::AntiAffinity => "anti",
        Scenario::Spread => "spread",
        Scenario::Preemption => "high",
    };
    let cpu = if scenario == Scenario::Preemption { "1" } else { "100m" };
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}}}]});
    match scenario {
        Scenario::Plain => {}
        Scenario::AntiAffinity => {
            spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        Scenario::Spread => {
            spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}}]);
        }
        Scenario::Preemption => spec["priorityClassName"] = json!("high"),
    }
    let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("m-{i}"), "labels": {"app": app}}, "spec": spec});
    Bytes::from(v.to_string())
}

/// A low-priority pod created already bound (setup for the preemption scenario).
fn low_pod(i: usize, node: usize) -> Bytes {
    let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("low-{i}"), "labels": {"app": "low"}},
        "spec": {"nodeName": format!("node-{node}"), "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "1", "memory": "128Mi"}}}]}});
    Bytes::from(v.to_string())
}

/// POSTs `n` bodies to `path` over [`CLIENTS`] connections; returns when each was sent.
async fn create_all(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    body: impl Fn(usize) -> Bytes + Send + Sync + Clone + 'static,
) -> anyhow::Result<Vec<Instant>> {
    let mut tasks = JoinSet::new();
    for c in 0..CLIENTS.min(n) {
        let body = body.clone();
        tasks.spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let mut sent = Vec::new();
            for i in (c..n).step_by(CLIENTS) {
                let at = Instant::now();
                conn.call(Method::POST, path, Some(body(i))).await?;
                sent.push((i, at));
            }
            anyhow::Ok(sent)
        });
    }
    let mut started = vec![None; n];
    while let Some(r) = tasks.join_next().await {
        for (i, at) in r.context("a client panicked")?? {
            started[i] = Some(at);
        }
    }
    started.into_iter().enumerate().map(|(i, t)| t.with_context(|| format!("object {i} not created"))).collect()
}

async fn measure(addr: SocketAddr, scenario: Scenario, nodes: usize, count: usize) -> anyhow::Result<(f64, Latencies)> {
    let cpu = if scenario == Scenario::Preemption { "4" } else { "32" };
    // Without the controller manager nothing makes the namespace's `default`
    // ServiceAccount, which ServiceAccount admission needs for every pod.
    let sa =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}});
    let (status, body) = Conn::connect(addr)
        .await?
        .call_any(Method::POST, "/api/v1/namespaces/default/serviceaccounts", Some(Bytes::from(sa.to_string())))
        .await?;
    if !status.is_success() && status.as_u16() != 409 {
        bail!("creating the default ServiceAccount: {status}: {}", String::from_utf8_lossy(&body));
    }
    create_all(addr, "/api/v1/nodes", nodes, move |i| node(i, cpu)).await.context("creating nodes")?;
    if scenario == Scenario::Preemption {
        let mut conn = Conn::connect(addr).await?;
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000});
        conn.call(Method::POST, "/apis/scheduling.k8s.io/v1/priorityclasses", Some(Bytes::from(pc.to_string())))
            .await?;
        progress(format!("filling {nodes} nodes with {} low-priority pods", nodes * 4));
        create_all(addr, PODS_PATH, nodes * 4, |i| low_pod(i, i / 4)).await.context("creating low-priority pods")?;
    }
    // Watch from now: the bound times of the measured pods.
    let mut conn = Conn::connect(addr).await?;
    let list: Value = serde_json::from_slice(&conn.call(Method::GET, &format!("{PODS_PATH}?limit=1"), None).await?)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let watch = tokio::spawn(watch_bound(addr, rv, count));
    let started = create_all(addr, PODS_PATH, count, move |i| pod(scenario, i)).await.context("creating pods")?;
    let deadline = Duration::from_secs(120 + count as u64 / 50);
    let bound = match tokio::time::timeout(deadline, watch).await {
        Ok(r) => r.context("the watcher panicked")??,
        Err(_) => bail!("not every pod was bound within {deadline:?}"),
    };
    let first = started.iter().min().copied().context("no pods")?;
    let last = bound.iter().max().copied().context("no pods bound")?;
    let mut latency = Latencies::with_capacity(count);
    for (s, b) in started.iter().zip(&bound) {
        latency.push(b.saturating_duration_since(*s));
    }
    let per_s = count as f64 / last.duration_since(first).as_secs_f64().max(1e-9);
    Ok((per_s, latency))
}

#[derive(Deserialize)]
struct WatchLine<'a> {
    #[serde(borrow)]
    object: WatchObject<'a>,
}

#[derive(Deserialize)]
struct WatchObject<'a> {
    #[serde(borrow)]
    metadata: WatchMeta<'a>,
    #[serde(default, borrow)]
    spec: Option<WatchSpec<'a>>,
}

#[derive(Deserialize)]
struct WatchMeta<'a> {
    name: &'a str,
}

#[derive(Deserialize)]
struct WatchSpec<'a> {
    #[serde(default, rename = "nodeName")]
    node_name: Option<&'a str>,
}

/// Reads the pod watch until every measured pod `m-<i>` has a node; returns the times.
async fn watch_bound(addr: SocketAddr, rv: String, count: usize) -> anyhow::Result<Vec<Instant>> {
    let mut conn = Conn::connect(addr).await?;
    let path = format!("{PODS_PATH}?watch=1&resourceVersion={rv}&allowWatchBookmarks=false");
    let resp = conn.send(Method::GET, &path, None).await?;
    if resp.status() != StatusCode::OK {
        bail!("GET {path}: {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut bound: HashMap<usize, Instant> = HashMap::with_capacity(count);
    let mut pending: Vec<u8> = Vec::new();
    while bound.len() < count {
        let Some(frame) = body.frame().await else {
            bail!("the watch ended after {} of {count} pods were bound", bound.len());
        };
        let at = Instant::now();
        let Ok(data) = frame.context("reading the watch")?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + nl];
            start += nl + 1;
            let Ok(ev) = serde_json::from_slice::<WatchLine>(line) else {
                continue;
            };
            let Some(i) = ev.object.metadata.name.strip_prefix("m-").and_then(|n| n.parse::<usize>().ok()) else {
                continue;
            };
            if i < count && ev.object.spec.and_then(|s| s.node_name).is_some_and(|n| !n.is_empty()) {
                bound.entry(i).or_insert(at);
            }
        }
        pending.drain(..start);
    }
    (0..count).map(|i| bound.get(&i).copied().with_context(|| format!("pod m-{i} never bound"))).collect()
}
