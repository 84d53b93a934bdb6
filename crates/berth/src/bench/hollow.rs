//! `berth bench hollow`: N hollow nodes in one `berth agent --hollow` child against a
//! `berth server` child: time to register them all, the agent's memory and CPU, and how
//! fresh the node leases stay (the oldest `renewTime` over all leases, sampled every 2 s),
//! then how fast pods bound to the nodes are reported Running.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};

use super::report::{self, Figure};
use super::server::ServerProcess;

/// Flags of `berth bench hollow`.
#[derive(Args, Debug)]
pub(crate) struct HollowArgs {
    /// Hollow nodes in the agent process.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Seconds to watch the leases after registration (at least two renewal rounds).
    #[arg(long, default_value_t = 30)]
    observe_secs: u64,
    /// Pods bound round-robin to the nodes after the lease observation.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Small counts (50 nodes, 12 s, 100 pods): a smoke run, figures not meaningful.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object of named figures instead of the table.
    #[arg(long)]
    json: bool,
}

/// How long registration or pod start-up may take before the run is abandoned.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

/// The agent child; killed when dropped (also on error).
pub(super) struct AgentProcess {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    pub(super) fn start(server: &ServerProcess, nodes: usize) -> anyhow::Result<AgentProcess> {
        Self::start_with(server, nodes, &[])
    }

    /// Like [`AgentProcess::start`], with extra `berth agent --hollow` flags.
    pub(super) fn start_with(server: &ServerProcess, nodes: usize, extra: &[&str]) -> anyhow::Result<AgentProcess> {
        let exe = std::env::current_exe().context("finding the berth executable")?;
        let dir = tempfile::Builder::new().prefix("berth-bench-agent-").tempdir().context("creating a temp dir")?;
        let log = dir.path().join("agent.log");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&exe)
            .args(["agent", "--hollow", "--nodes", &nodes.to_string(), "--kubeconfig"])
            .arg(server.kubeconfig_path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {} agent --hollow", exe.display()))?;
        Ok(AgentProcess { child, log, _dir: dir })
    }

    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking the agent")? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!("the agent exited with {status}; log:\n{log}");
        }
        Ok(())
    }

    fn rss_mb(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kb / 1024.0)
    }

    /// CPU time of the agent's threads (sum of `schedstat`).
    fn cpu_time(&self) -> Duration {
        let dir = format!("/proc/{}/task", self.child.id());
        let ns: u64 = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
            .filter_map(|t| t.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
            .sum();
        Duration::from_nanos(ns)
    }

    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().context("running kill -TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the agent exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the agent still ran 30 s after SIGTERM (killed)")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the benchmark and prints its figures.
pub(crate) async fn run(mut args: HollowArgs) -> anyhow::Result<()> {
    if args.quick {
        args.nodes = args.nodes.min(50);
        args.observe_secs = 12;
        args.pods = args.pods.min(100);
    }
    let server = ServerProcess::start().await?;
    let client = server.kube_client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let n = args.nodes;

    eprintln!("registering {n} hollow nodes…");
    let started = Instant::now();
    let mut agent = AgentProcess::start(&server, n)?;
    loop {
        agent.check_alive()?;
        if leases.list_metadata(&ListParams::default()).await?.items.len() >= n
            && nodes.list_metadata(&ListParams::default()).await?.items.len() >= n
        {
            break;
        }
        if started.elapsed() > PHASE_TIMEOUT {
            bail!("{n} nodes not registered after {PHASE_TIMEOUT:?}");
        }
        // Not too often: each poll lists every lease and node, load on the server measured.
        tokio::time::sleep(Duration::from_millis(if n > 500 { 1000 } else { 100 })).await;
    }
    let register_s = started.elapsed().as_secs_f64();

    eprintln!("watching the leases for {} s…", args.observe_secs);
    let cpu_before = agent.cpu_time();
    let observe_started = Instant::now();
    let first = renew_times(&leases).await?;
    let (mut max_age_s, mut max_rss_mb) = (0.0f64, agent.rss_mb()?);
    let mut last = first.clone();
    while observe_started.elapsed() < Duration::from_secs(args.observe_secs) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        agent.check_alive()?;
        let now = Timestamp::now();
        last = renew_times(&leases).await?;
        if let Some(oldest) = last.iter().map(|(_, t)| *t).min() {
            max_age_s = max_age_s.max(now.duration_since(oldest).as_secs_f64());
        }
        max_rss_mb = max_rss_mb.max(agent.rss_mb()?);
    }
    let cpu_cores = (agent.cpu_time() - cpu_before).as_secs_f64() / observe_started.elapsed().as_secs_f64();
    let renewed = last.iter().filter(|(name, t)| first.iter().any(|(n, f)| n == name && t > f)).count();

    eprintln!("creating {} pods bound to the nodes…", args.pods);
    let pods_per_s = run_pods(&client, &mut agent, n, args.pods).await?;
    max_rss_mb = max_rss_mb.max(agent.rss_mb()?);
    agent.stop()?;
    server.stop().await?;

    let figures = vec![
        Figure::new("nodes", "hollow nodes in one process", n as f64, ""),
        Figure::new("register_s", "register all nodes (Node + status + Lease)", register_s, "s"),
        Figure::new("agent_rss_mb", "agent RSS (max over the run)", max_rss_mb, "MiB").goal("< 500 MB at 5,000"),
        Figure::new("agent_cpu_cores", "agent CPU while renewing leases", cpu_cores, "cores"),
        Figure::new("lease_max_age_s", "oldest lease renewTime (max over samples)", max_age_s, "s")
            .goal("≤ 10 s + a sample")
            .anchor("leaseDurationSeconds 40"),
        Figure::new("leases_renewed", "leases renewed during the observation", renewed as f64, "").goal("all nodes"),
        Figure::new("pods", "pods bound round-robin", args.pods as f64, ""),
        Figure::new("pods_running_per_s", "pods reported Running (first create → last Running)", pods_per_s, "/s"),
    ];
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        print!("{}", report::table(&format!("berth bench hollow ({n} nodes)"), &figures));
    }
    Ok(())
}

/// Each lease's name and renewTime.
async fn renew_times(leases: &Api<Lease>) -> anyhow::Result<Vec<(String, Timestamp)>> {
    let list = leases.list(&ListParams::default()).await.context("listing leases")?;
    Ok(list.items.into_iter().filter_map(|l| Some((l.metadata.name?, l.spec?.renew_time?.0))).collect())
}

/// Creates `count` pods bound round-robin to the nodes (16 at a time) and waits until all
/// are Running; returns pods per second from the first create to the last Running.
async fn run_pods(client: &kube::Client, agent: &mut AgentProcess, nodes: usize, count: usize) -> anyhow::Result<f64> {
    if count == 0 {
        return Ok(0.0);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let creates = futures::stream::iter(0..count).map(|i| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": { "name": format!("hollow-bench-{i}") },
                "spec": {
                    "nodeName": format!("hollow-node-{}", i % nodes),
                    "containers": [{ "name": "c", "image": "nginx:1.27",
                        "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } }],
                },
            }))?;
            pods.create(&PostParams::default(), &pod).await.context("creating a pod")?;
            anyhow::Ok(())
        }
    });
    let results: Vec<anyhow::Result<()>> = creates.buffer_unordered(16).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let running = ListParams::default().fields("status.phase=Running");
    loop {
        if pods.list_metadata(&running).await?.items.len() >= count {
            break;
        }
        if started.elapsed() > PHASE_TIMEOUT {
            bail!("{count} pods not Running after {PHASE_TIMEOUT:?}");
        }
        agent.check_alive()?;
        tokio::time::sleep(Duration::from_millis(if count > 500 { 500 } else { 100 })).await;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
