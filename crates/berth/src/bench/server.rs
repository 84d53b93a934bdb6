//! A `berth server` child process on a fresh data dir: spawned from the current
//! executable, found through the kubeconfig it writes, stopped by PID with SIGTERM.
//! Dropping a [`ServerProcess`] kills the child and removes its data dir, even on error.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use tempfile::TempDir;

use super::client::Conn;

/// How long a server may take to write its kubeconfig and answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `berth server` child.
pub(crate) struct ServerProcess {
    child: Child,
    /// The server's address, from its kubeconfig.
    pub(crate) addr: SocketAddr,
    /// Time from spawn to the first `200` from `/readyz`.
    pub(crate) ready_after: Duration,
    data_dir: TempDir,
}

impl ServerProcess {
    /// Spawns `berth server --disable-agent` on a fresh temp dir and waits until `/readyz`
    /// answers 200.
    pub(crate) async fn start() -> anyhow::Result<ServerProcess> {
        Self::start_with(&[]).await
    }

    /// Like [`ServerProcess::start`], with extra `berth server` flags.
    pub(crate) async fn start_with(extra_args: &[String]) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("finding the berth executable")?;
        Self::start_exe(&exe, extra_args).await
    }

    /// Like [`ServerProcess::start_with`], running the server from the berth executable
    /// `exe` (another build, to compare).
    pub(crate) async fn start_exe(exe: &Path, extra_args: &[String]) -> anyhow::Result<ServerProcess> {
        let data_dir = tempfile::Builder::new().prefix("berth-bench-").tempdir().context("creating a temp data dir")?;
        let log_path = data_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;
        let started = Instant::now();
        let child = Command::new(exe)
            .args(["server", "--disable-agent", "--https-listen-port", "0", "--data-dir"])
            .arg(data_dir.path().join("server"))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("spawning {} server", exe.display()))?;
        // From here on, Drop kills the child and removes the dir.
        let mut server =
            ServerProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), ready_after: Duration::ZERO, data_dir };
        let kubeconfig = server.data_dir.path().join("server/kubeconfig.yaml");
        let addr = loop {
            if let Some(addr) = read_server_addr(&kubeconfig)? {
                break addr;
            }
            server.check_alive(started)?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        server.addr = addr;
        let admin = read_kubeconfig_credentials(&kubeconfig)?;
        super::client::use_tls(super::client::tls_config(&admin[0], &admin[1], &admin[2])?);
        loop {
            let ready = match Conn::connect(addr).await {
                Ok(mut c) => matches!(c.call_any(Method::GET, "/readyz", None).await, Ok((StatusCode::OK, _))),
                Err(_) => false,
            };
            if ready {
                break;
            }
            server.check_alive(started)?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        server.ready_after = started.elapsed();
        Ok(server)
    }

    /// The PID of the child.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the child (VmRSS) in bytes.
    pub(crate) fn rss_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).with_context(|| format!("no VmRSS in {path}"))?;
        let kb: u64 = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("parsing {line:?} in {path}"))?;
        Ok(kb * 1024)
    }

    /// CPU time the child has used so far, summed over its threads (from
    /// `/proc/<pid>/task/*/schedstat`, nanosecond resolution). Threads that already ended
    /// are not counted; the server's are long-lived.
    pub(crate) fn cpu_time(&self) -> anyhow::Result<Duration> {
        let dir = format!("/proc/{}/task", self.pid());
        let mut ns: u64 = 0;
        for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
            let path = entry.with_context(|| format!("listing {dir}"))?.path().join("schedstat");
            // A thread may end between the listing and the read.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let on_cpu = text.split_whitespace().next().unwrap_or("0");
            ns += on_cpu.parse::<u64>().with_context(|| format!("parsing {}", path.display()))?;
        }
        Ok(Duration::from_nanos(ns))
    }

    /// Sends SIGTERM, waits for the exit (SIGKILL after a timeout) and removes the data dir.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status().context("running kill -TERM")?;
        if !term.success() {
            bail!("kill -TERM {pid} failed: {term}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the server")? {
                if !status.success() {
                    bail!("server {pid} exited with {status} after SIGTERM; log:\n{}", self.log_tail());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("server {pid} still running {STOP_TIMEOUT:?} after SIGTERM (killed)");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Fails if the child has exited or the start-up took too long.
    fn check_alive(&mut self, started: Instant) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking the server process")? {
            bail!("server exited during start-up with {status}; log:\n{}", self.log_tail());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("server not ready after {START_TIMEOUT:?}; log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // After a clean stop the child is already reaped and this is a no-op.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The CA, client certificate and key (PEM) of the kubeconfig `berth server` writes.
fn read_kubeconfig_credentials(path: &Path) -> anyhow::Result<[String; 3]> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let field = |name: &str| -> anyhow::Result<String> {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .with_context(|| format!("no {name} in {}", path.display()))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).with_context(|| name.to_string())?;
        String::from_utf8(bytes).with_context(|| name.to_string())
    };
    Ok([field("certificate-authority-data:")?, field("client-certificate-data:")?, field("client-key-data:")?])
}

impl ServerProcess {
    /// The admin kubeconfig the server wrote.
    pub(crate) fn kubeconfig_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("server/kubeconfig.yaml")
    }

    /// A kube-rs client from the admin kubeconfig.
    pub(crate) async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        let path = self.kubeconfig_path();
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }
}

/// Reads `server: https://HOST:PORT` from a kubeconfig; `None` while the file is absent.
fn read_server_addr(path: &Path) -> anyhow::Result<Option<SocketAddr>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Some(line) = text.lines().map(str::trim).find(|l| l.starts_with("server:")) else {
        return Ok(None);
    };
    let url = line.trim_start_matches("server:").trim();
    let hostport = url
        .strip_prefix("https://")
        .with_context(|| format!("server {url:?} in {} is not https://", path.display()))?;
    let addr = hostport.trim_end_matches('/').parse().with_context(|| format!("parsing the server address {url:?}"))?;
    Ok(Some(addr))
}
