//! A real etcd (Debian's `etcd-server`) for tests: one member or a cluster of several
//! on free loopback ports, each with its data dir in one temp dir. Dropping the handle
//! kills every member by PID and removes the dir.
//!
//! When `/usr/bin/etcd` is missing, [`Etcd::start`] returns None after a loud message so
//! the test can skip, unless `BERTH_REQUIRE_ETCD` is set (as CI sets it): then it panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{raw, wait_until};

/// The etcd binary the tests run.
pub const ETCD: &str = "/usr/bin/etcd";

/// One member of a test etcd cluster.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster in a temp dir.
pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

/// A port that was free a moment ago (the OS picks it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Whether etcd tests can run; panics when etcd is missing but required.
pub fn etcd_available() -> bool {
    if Path::new(ETCD).exists() {
        return true;
    }
    if std::env::var_os("BERTH_REQUIRE_ETCD").is_some() {
        panic!("{ETCD} is missing and BERTH_REQUIRE_ETCD is set: run scripts/install-test-tools.sh");
    }
    eprintln!(
        "\n*** SKIPPING: {ETCD} is missing (apt-get install etcd-server etcd-client, or run \
         scripts/install-test-tools.sh); set BERTH_REQUIRE_ETCD=1 to make this an error ***\n"
    );
    false
}

impl Etcd {
    /// Starts a one-member etcd; None (after a loud message) when etcd is not installed.
    pub fn start() -> Option<Etcd> {
        Self::start_cluster(1)
    }

    /// Starts an etcd cluster of `size` members and waits until it is healthy.
    pub fn start_cluster(size: usize) -> Option<Etcd> {
        if !etcd_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (0..size)
            .map(|n| Member { name: format!("m{n}"), client_port: free_port(), peer_port: free_port(), child: None })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd { dir, members, initial_cluster };
        for n in 0..size {
            etcd.spawn(n);
        }
        etcd.wait_healthy();
        Some(etcd)
    }

    fn spawn(&mut self, n: usize) {
        let dir = self.dir.path().to_path_buf();
        let member = &mut self.members[n];
        assert!(member.child.is_none(), "member {n} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", member.name)))
            .expect("etcd log file");
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(dir.join(&member.name))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "berth-test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        member.child = Some(child);
    }

    /// Waits until every running member answers /health with true.
    fn wait_healthy(&self) {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let addr = format!("127.0.0.1:{}", member.client_port);
            let healthy = wait_until(Duration::from_secs(60), || {
                raw(&addr, "GET", "/health", None, &[])
                    .map(|r| r.status == 200 && String::from_utf8_lossy(&r.body).contains("\"true\""))
                    .unwrap_or(false)
            });
            assert!(healthy, "etcd member {} never became healthy:\n{}", member.name, self.log());
        }
    }

    /// Client endpoints (`127.0.0.1:PORT`) of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect()
    }

    /// The `--datastore-endpoint` URL: `etcd://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The data dir of the cluster (one sub-dir per member).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every member's log so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            all.push_str(&format!("--- {} (last lines)\n", m.name));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// The index of the member that is the leader now, from its `/metrics`
    /// (`etcd_server_is_leader 1`); None when no running member says so.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && raw(&format!("127.0.0.1:{}", m.client_port), "GET", "/metrics", None, &[])
                    .map(|r| String::from_utf8_lossy(&r.body).lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
                    .unwrap_or(false)
        })
    }

    /// Stops member `n` with `signal` ("KILL", "TERM") and waits for it to exit.
    pub fn stop_member(&mut self, n: usize, signal: &str) {
        if let Some(mut child) = self.members[n].child.take() {
            let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Starts member `n` again on its data dir and waits until it is healthy.
    pub fn start_member(&mut self, n: usize) {
        self.spawn(n);
        self.wait_healthy();
    }

    /// Stops every member (SIGTERM).
    pub fn stop(&mut self) {
        for n in 0..self.members.len() {
            self.stop_member(n, "TERM");
        }
    }

    /// Starts every stopped member again and waits until the cluster is healthy.
    pub fn restart(&mut self) {
        for n in 0..self.members.len() {
            if self.members[n].child.is_none() {
                self.spawn(n);
            }
        }
        self.wait_healthy();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
