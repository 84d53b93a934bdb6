//! `berth bench pods`: pod start-up on one real node. A `berth server` child and a
//! `berth agent` child (its own containerd, CNI bridge `bbench0` over 10.89.0.0/24); N
//! busybox pods bound to the node are created at once, and each one's create → Running
//! latency is taken from a pod watch. Also the agent's idle RSS and CPU, containerd's start
//! time (the agent's `containerd ready` log line), and where the start-up time goes: the agent logs each pod's milestones (`pod
//! started`, debug level) and their medians are printed as phases.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::api::{pss_mb, rss_split};
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
    /// The agent's memory now.
    fn memory(&self) -> anyhow::Result<Memory> {
        Memory::of(self.child.id())
    }

    /// CPU time (user + system) the agent has used so far.
    fn cpu(&self) -> Duration {
        let ticks = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                // Fields after the command name: state is the 3rd, utime the 14th, stime the 15th.
                let rest = s.rsplit_once(") ")?.1.to_string();
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        Duration::from_secs_f64(ticks as f64 / clock_ticks())
    }

    /// The agent's CPU use in % of one CPU over `window`.
    async fn cpu_pct(&self, window: Duration) -> f64 {
        let before = self.cpu();
        let t = Instant::now();
        tokio::time::sleep(window).await;
        (self.cpu() - before).as_secs_f64() / t.elapsed().as_secs_f64() * 100.0
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the agent exited with {status}; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        Ok(())
    }
}

/// One reading of the agent's memory (MiB) and thread count.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_mb: f64,
    anon_mb: f64,
    file_mb: f64,
    pss_mb: f64,
    threads: usize,
}

impl Memory {
    /// Process `pid`'s memory now: RSS, its anonymous and file-backed parts, PSS, threads.
    fn of(pid: u32) -> anyhow::Result<Memory> {
        let (anon_mb, file_mb) = rss_split(pid)?;
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
        Ok(Memory { rss_mb: anon_mb + file_mb, anon_mb, file_mb, pss_mb: pss_mb(pid)?, threads })
    }
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The milestones of one pod's start as the agent logged them (`pod started`).
#[derive(Debug, Default, Clone, PartialEq)]
struct Trace {
    pod: String,
    seen_unix_ms: i64,
    queued_ms: u64,
    sandbox_ms: u64,
    volumes_ms: u64,
    started_ms: u64,
    posted_ms: u64,
}

/// The `pod started` lines of the agent's log.
fn traces(log: &str) -> Vec<Trace> {
    log.lines()
        .filter(|l| l.contains("pod started"))
        .filter_map(|l| {
            let mut t = Trace::default();
            for (k, v) in l.split_whitespace().filter_map(|w| w.split_once('=')) {
                let v = v.trim_matches('"');
                let n = || v.parse::<u64>().ok();
                match k {
                    "pod" => t.pod = v.rsplit('/').next().unwrap_or(v).to_string(),
                    "seen_unix_ms" => t.seen_unix_ms = v.parse().ok()?,
                    "queued_ms" => t.queued_ms = n()?,
                    "sandbox_ms" => t.sandbox_ms = n()?,
                    "volumes_ms" => t.volumes_ms = n()?,
                    "started_ms" => t.started_ms = n()?,
                    "posted_ms" => t.posted_ms = n()?,
                    _ => {}
                }
            }
            (!t.pod.is_empty() && t.posted_ms > 0).then_some(t)
        })
        .collect()
}

/// containerd's start (config written, process spawned, socket answering), in ms, from the
/// agent's `containerd ready` line.
fn containerd_start_ms(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("containerd ready"))?;
    let value = line.split_whitespace().find_map(|w| w.strip_prefix("ready_ms="))?;
    value.trim_matches('"').parse::<u64>().ok().map(|ms| ms as f64)
}

/// Where the start-up time went: the median of each phase over the traced pods, in ms.
/// `created` holds each pod's create time as wall-clock ms since the epoch.
fn phases(traces: &[Trace], created: &HashMap<String, i64>) -> Vec<(&'static str, &'static str, f64)> {
    let mut out = Vec::new();
    let mut add = |key, label, values: Vec<f64>| {
        let mut l = Latencies::with_capacity(values.len());
        for v in values {
            l.push(Duration::from_secs_f64(v.max(0.0) / 1000.0));
        }
        if l.len() > 0 {
            out.push((key, label, l.percentile_ms(50.0)));
        }
    };
    let seen = traces.iter().filter_map(|t| created.get(&t.pod).map(|c| (t.seen_unix_ms - c) as f64)).collect();
    add("phase_watch_p50_ms", "phase: created → the agent's watch sees it, p50", seen);
    let each = |f: fn(&Trace) -> u64| traces.iter().map(|t| f(t) as f64).collect::<Vec<_>>();
    add("phase_queued_p50_ms", "phase: waiting for a start permit, p50", each(|t| t.queued_ms));
    add("phase_sandbox_p50_ms", "phase: sandbox + CNI, p50", each(|t| t.sandbox_ms.saturating_sub(t.queued_ms)));
    add("phase_volumes_p50_ms", "phase: volumes (token, CA), p50", each(|t| t.volumes_ms.saturating_sub(t.sandbox_ms)));
    add(
        "phase_containers_p50_ms",
        "phase: container create + start, p50",
        each(|t| t.started_ms.saturating_sub(t.volumes_ms)),
    );
    add("phase_status_p50_ms", "phase: status write, p50", each(|t| t.posted_ms.saturating_sub(t.started_ms)));
    out
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
        .env("BERTH_LOG", "info,berth_agent::node::pods=debug")
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
    let idle_cpu_pct = agent.cpu_pct(Duration::from_secs(5)).await;
    let idle = agent.memory()?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(pods.clone(), watcher::Config::default()).applied_objects().boxed();
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut created_unix_ms: HashMap<String, i64> = HashMap::new();
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
            let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
            pods.create(&PostParams::default(), &pod).await.context("creating a pod")?;
            anyhow::Ok((name, at, wall))
        }
    });
    for r in creates.buffer_unordered(args.pods.max(1)).collect::<Vec<_>>().await {
        let (name, at, wall) = r?;
        created_unix_ms.insert(name.clone(), wall);
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
    let busy = agent.memory()?;
    let busy_cpu_pct = agent.cpu_pct(Duration::from_secs(10)).await;
    let agent_log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let traced = traces(&agent_log);
    let containerd_ms = containerd_start_ms(&agent_log).context("the agent did not log containerd's start")?;
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
        Figure::new("containerd_start_ms", "  of which containerd start → its socket answers", containerd_ms, "ms"),
        Figure::new("agent_idle_rss_mb", "agent RSS, idle", idle.rss_mb, "MiB")
            .goal("< 30 MB")
            .anchor("k3s agent 275 MB"),
        Figure::new(
            "agent_idle_rss_anon_mb",
            "  of which anonymous (heap, stacks, relocated data)",
            idle.anon_mb,
            "MiB",
        ),
        Figure::new("agent_idle_rss_file_mb", "  of which file-backed (the executable's pages)", idle.file_mb, "MiB"),
        Figure::new(
            "agent_idle_pss_mb",
            "agent PSS, idle (shared pages divided among their users)",
            idle.pss_mb,
            "MiB",
        ),
        Figure::new("agent_idle_threads", "agent threads, idle", idle.threads as f64, ""),
        Figure::new("agent_busy_rss_mb", "agent RSS with the pods running", busy.rss_mb, "MiB"),
        Figure::new("agent_busy_rss_anon_mb", "  of which anonymous", busy.anon_mb, "MiB"),
        Figure::new("agent_idle_cpu_pct", "agent CPU, idle (5 s)", idle_cpu_pct, "%"),
        Figure::new("agent_pods_cpu_pct", "agent CPU with the pods running (10 s)", busy_cpu_pct, "%"),
        Figure::new("traced_pods", "pods whose start the agent traced", traced.len() as f64, ""),
    ];
    let mut figures = figures;
    for (key, label, value) in phases(&traced, &created_unix_ms) {
        figures.push(Figure::new(key, label, value, "ms"));
    }
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        print!("{}", report::table("berth bench pods (one real node)", &figures));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_proc() {
        let m = Memory::of(std::process::id()).unwrap();
        assert!(m.anon_mb > 0.0 && m.file_mb > 0.0, "{m:?}");
        assert!(m.pss_mb > 0.0 && m.pss_mb <= m.rss_mb + 1.0, "{m:?}");
        assert!(m.threads >= 1, "{m:?}");
        assert!(Memory::of(u32::MAX).is_err(), "no such process");
    }

    #[test]
    fn containerd_start_is_read_from_the_agent_log() {
        let log = "2026-11-29T11:00:00.000Z  INFO berth_agent::runtime::containerd: mounted a tmpfs\n\
            2026-11-29T11:00:00.200Z  INFO berth_agent::runtime::containerd: containerd ready ready_ms=187\n";
        assert_eq!(containerd_start_ms(log), Some(187.0));
        assert_eq!(containerd_start_ms("node agent ready\n"), None);
        assert_eq!(containerd_start_ms("containerd ready ready_ms=x\n"), None);
    }

    #[test]
    fn traces_are_read_from_the_agent_log_and_make_phases() {
        let log = "2026-11-29T11:00:00.000Z  INFO berth_agent::node: node agent ready\n\
            2026-11-29T11:00:01.000Z DEBUG berth_agent::node::pods: pod started pod=\"default/bench-1\" \
            seen_unix_ms=1000 queued_ms=5 sandbox_ms=300 volumes_ms=320 started_ms=500 posted_ms=520\n\
            2026-11-29T11:00:01.000Z DEBUG berth_agent::node::pods: pod started pod=default/bench-2 seen_unix_ms=x\n";
        let t = traces(log);
        assert_eq!(t.len(), 1, "the line with a bad field is skipped: {t:?}");
        assert_eq!(t[0].pod, "bench-1");
        let created: HashMap<String, i64> = [("bench-1".to_string(), 990)].into();
        let p: HashMap<&str, f64> = phases(&t, &created).into_iter().map(|(k, _, v)| (k, v)).collect();
        assert_eq!(p["phase_watch_p50_ms"], 10.0);
        assert_eq!(p["phase_sandbox_p50_ms"], 295.0);
        assert_eq!(p["phase_volumes_p50_ms"], 20.0);
        assert_eq!(p["phase_containers_p50_ms"], 180.0);
        assert_eq!(p["phase_status_p50_ms"], 20.0);
        assert!(phases(&[], &created).is_empty());
    }
}
