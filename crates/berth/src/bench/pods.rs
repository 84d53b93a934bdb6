//! `berth bench pods`: pod start-up on one real node. A `berth server` child and a
//! `berth agent` child (its own containerd, CNI bridge `bbench0` over 10.89.0.0/24); N
//! busybox pods bound to the node are created at once, and each one's create → Running
//! latency is taken from a pod watch. Also the agent's idle RSS and containerd's start time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::report::{self, Figure};
use super::server::ServerProcess;
use super::stats::Latencies;

/// Flags of `berth bench pods`.
#[derive(Args, Debug)]
pub(crate) struct PodsArgs {
    /// Pods created at once.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Print one JSON object of named figures instead of the table.
    #[arg(long)]
    json: bool,
}

const NODE: &str = "bench-node";
const BRIDGE: &str = "bbench0";
const TIMEOUT: Duration = Duration::from_secs(300);

/// The agent child; stopped by PID (SIGTERM: it removes its pods and stops containerd).
struct AgentProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    fn rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the agent exited with {status}; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        Ok(())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).stderr(Stdio::null()).status();
    }
}

/// Runs the benchmark and prints its figures.
pub(crate) async fn run(args: PodsArgs) -> anyhow::Result<()> {
    berth_agent::runtime::check_packages()?;
    let server = ServerProcess::start().await?;
    let client = server.kube_client().await?;
    let exe = std::env::current_exe().context("finding the berth executable")?;
    let dir = tempfile::Builder::new().prefix("berth-bench-node-").tempdir()?;
    let log = dir.path().join("agent.log");
    let out = std::fs::File::create(&log)?;
    let started = Instant::now();
    let child = Command::new(&exe)
        .args(["agent", "--kubeconfig"])
        .arg(server.kubeconfig_path())
        .args(["--node-name", NODE, "--bridge-name", BRIDGE, "--pod-cidr", "10.89.0.0/24", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .context("spawning berth agent")?;
    let mut agent = AgentProcess { child, log, _dir: dir };
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        agent.check_alive()?;
        if nodes.get_opt(NODE).await?.is_some() {
            break;
        }
        if started.elapsed() > TIMEOUT {
            bail!("the node did not register");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node_ready_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss_mb = agent.rss_mb();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(pods.clone(), watcher::Config::default()).applied_objects().boxed();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Latencies::with_capacity(args.pods);
    let t0 = Instant::now();
    let creates = futures::stream::iter(0..args.pods).map(|i| {
        let pods = pods.clone();
        async move {
            let name = format!("bench-{i}");
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "spec": { "nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "c", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"] }] },
            }))?;
            let at = Instant::now();
            pods.create(&PostParams::default(), &pod).await.context("creating a pod")?;
            anyhow::Ok((name, at))
        }
    });
    for r in creates.buffer_unordered(args.pods.max(1)).collect::<Vec<_>>().await {
        let (name, at) = r?;
        created.insert(name, at);
    }
    let mut running = std::collections::HashSet::new();
    while running.len() < args.pods {
        let next = tokio::time::timeout(TIMEOUT, events.next()).await.context("pods not Running in time")?;
        let Some(pod) = next.transpose()? else { bail!("the pod watch ended") };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let is_running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if is_running
            && let Some(at) = created.get(&name)
            && running.insert(name)
        {
            latencies.push(at.elapsed());
        }
    }
    let total_s = t0.elapsed().as_secs_f64();
    let busy_rss_mb = agent.rss_mb();
    pods.delete_collection(&DeleteParams::default(), &ListParams::default()).await?;
    let t_del = Instant::now();
    while !pods.list_metadata(&ListParams::default()).await?.items.is_empty() {
        if t_del.elapsed() > TIMEOUT {
            bail!("pods not deleted in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delete_s = t_del.elapsed().as_secs_f64();
    drop(agent);
    server.stop().await?;

    let figures = vec![
        Figure::new("pods", "pods created at once on one node", args.pods as f64, ""),
        Figure::new("startup_p50_ms", "create → Running p50", latencies.percentile_ms(50.0), "ms"),
        Figure::new("startup_p99_ms", "create → Running p99", latencies.percentile_ms(99.0), "ms")
            .goal("< 1000 ms for 50")
            .anchor("Kubernetes SLO p99 ≤ 5 s"),
        Figure::new("all_running_s", "first create → last Running", total_s, "s"),
        Figure::new("delete_all_s", "delete all → all gone", delete_s, "s"),
        Figure::new("node_registered_s", "agent start (containerd, images) → Node registered", node_ready_s, "s"),
        Figure::new("agent_idle_rss_mb", "agent RSS, idle", idle_rss_mb, "MiB")
            .goal("< 30 MB")
            .anchor("k3s agent 275 MB"),
        Figure::new("agent_busy_rss_mb", "agent RSS with the pods running", busy_rss_mb, "MiB"),
    ];
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        print!("{}", report::table("berth bench pods (one real node)", &figures));
    }
    Ok(())
}
