//! etcd child processes on loopback for berth's own tools: the clusters `berth bench store`
//! measures, and the temporary etcd through which `berth datastore snapshot restore` reads
//! an etcd snapshot file back (etcd's own `etcdctl snapshot restore` unpacks it: berth does
//! not parse etcd's bbolt format). Data in a temp dir; dropping the value kills the
//! processes by PID and removes it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// etcd members running as children of this process.
pub(crate) struct EtcdProcesses {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn require(tool: &str, package: &str) -> anyhow::Result<()> {
    if !Path::new(tool).exists() {
        bail!("{tool} is missing: apt-get install {package}");
    }
    Ok(())
}

impl EtcdProcesses {
    /// A new cluster of `members` members.
    pub(crate) fn start(members: usize) -> anyhow::Result<EtcdProcesses> {
        require(ETCD, "etcd-server, or pass --datastore-endpoint etcd://...")?;
        let dir = tempfile::Builder::new().prefix("berth-etcd-").tempdir().context("temp dir")?;
        let ports: Vec<(u16, u16)> =
            (0..members).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(n, (_, peer))| format!("m{n}=http://127.0.0.1:{peer}")).collect();
        let mut etcd = EtcdProcesses { children: Vec::new(), client_ports: ports.iter().map(|p| p.0).collect(), dir };
        for (n, (client, peer)) in ports.iter().enumerate() {
            let cluster = ["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"];
            etcd.spawn(n, *client, *peer, &cluster)?;
        }
        Ok(etcd)
    }

    /// One member serving the contents of the etcd snapshot `file`, unpacked by
    /// `etcdctl snapshot restore` into the temp dir.
    pub(crate) fn from_snapshot(file: &Path) -> anyhow::Result<EtcdProcesses> {
        require(ETCD, "etcd-server")?;
        require(ETCDCTL, "etcd-client")?;
        let dir = tempfile::Builder::new().prefix("berth-etcd-restore-").tempdir().context("temp dir")?;
        let (client, peer) = (free_port()?, free_port()?);
        let peer_url = format!("http://127.0.0.1:{peer}");
        let initial = format!("m0={peer_url}");
        let out = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "restore"])
            .arg(file)
            .arg("--data-dir")
            .arg(dir.path().join("m0"))
            .args(["--name", "m0", "--initial-cluster", &initial, "--initial-advertise-peer-urls", &peer_url])
            .output()
            .context("running etcdctl snapshot restore")?;
        if !out.status.success() {
            bail!("etcdctl snapshot restore {}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut etcd = EtcdProcesses { children: Vec::new(), client_ports: vec![client], dir };
        etcd.spawn(0, client, peer, &["--initial-cluster", &initial])?;
        Ok(etcd)
    }

    fn spawn(&mut self, n: usize, client: u16, peer: u16, cluster: &[&str]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("m{n}.log")))?;
        let client = format!("http://127.0.0.1:{client}");
        let peer = format!("http://127.0.0.1:{peer}");
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(format!("m{n}"))
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{n}")))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(cluster)
            .args(["--initial-cluster-token", "berth"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning etcd")?;
        self.children.push(child);
        Ok(())
    }

    /// The client endpoints, `HOST:PORT` each.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.client_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// The datastore URL (`etcd://HOST:PORT,...`).
    pub(crate) fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// What the members wrote to stderr, for error messages.
    pub(crate) fn log(&self) -> String {
        (0..self.children.len())
            .map(|n| std::fs::read_to_string(self.dir.path().join(format!("m{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
