//! A real etcd (Debian's `etcd-server`) for tests: one member or a cluster of several
//! on free loopback ports, each with its data dir in one temp dir. Dropping the handle
//! kills every member by PID and removes the dir.
//!
//! When `/usr/bin/etcd` is missing, [`Etcd::start`] returns None after a loud message so
//! the test can skip, unless `BERTH_REQUIRE_ETCD` is set (as CI sets it): then it panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{plain_http, wait_until};

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
    /// Set for a cluster that serves clients over TLS and wants client certificates.
    pub tls: Option<TlsFiles>,
}

/// PEM files of a TLS etcd: its CA and a client certificate it accepts.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate signed by the CA.
    pub cert: PathBuf,
    /// The client certificate's key.
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// Runs openssl with `args` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &Path) -> TlsFiles {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca =
        vec!["req", "-x509", "-days", "2", "-subj", "/CN=berth-test-ca", "-keyout", "ca.key", "-out", "ca.crt"];
    ca.extend(ec);
    openssl(dir, &ca);
    for (name, usage) in [("server", "serverAuth,clientAuth"), ("client", "clientAuth")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let ext = format!("{name}.ext");
        std::fs::write(dir.join(&ext), format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"))
            .expect("write openssl extensions");
        let mut req = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr];
        req.extend(ec);
        openssl(dir, &req);
        openssl(
            dir,
            &["x509", "-req", "-days", "2", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
                .into_iter()
                .chain(["-out", &crt, "-extfile", &ext])
                .collect::<Vec<_>>(),
        );
    }
    TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("client.crt"),
        key: dir.join("client.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    }
}

/// Where members' ports come from: below the kernel's ephemeral range (32768 and up) and
/// the NodePort range (30000-32767). The servers tests start bind port 0, which the kernel
/// fills from the ephemeral range, so none of them can take a member's port between the
/// check here and etcd's own bind, or while a member is stopped for a restart (a port the
/// kernel had picked once failed a three-member start with `bind: address already in use`).
const PORTS: std::ops::Range<u16> = 20_000..30_000;

/// A port in [`PORTS`] that is free now and that this process has not handed out before.
/// Each test process starts at its own offset, so tests running side by side rarely meet.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let port = PORTS.start + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
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

    /// Starts a one-member etcd that serves clients over TLS and requires client
    /// certificates ([`Etcd::tls`] has the files); None when etcd is not installed.
    pub fn start_tls() -> Option<Etcd> {
        Self::start_with(1, true)
    }

    /// Starts an etcd cluster of `size` members and waits until it is healthy.
    pub fn start_cluster(size: usize) -> Option<Etcd> {
        Self::start_with(size, false)
    }

    fn start_with(size: usize, tls: bool) -> Option<Etcd> {
        if !etcd_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = tls.then(|| make_certs(dir.path()));
        let members: Vec<Member> = (0..size)
            .map(|n| Member { name: format!("m{n}"), client_port: free_port(), peer_port: free_port(), child: None })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd { dir, members, initial_cluster, tls };
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new(ETCD);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
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

    /// Waits until every running member answers /health with true (over TLS: until
    /// `etcdctl endpoint health` succeeds).
    fn wait_healthy(&self) {
        for member in self.members.iter().filter(|m| m.child.is_some()) {
            let addr = format!("127.0.0.1:{}", member.client_port);
            let healthy = wait_until(Duration::from_secs(60), || match &self.tls {
                None => plain_http(&addr, "GET", "/health", None, &[])
                    .map(|r| r.status == 200 && String::from_utf8_lossy(&r.body).contains("\"true\""))
                    .unwrap_or(false),
                Some(tls) => Command::new("/usr/bin/etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints=https://{addr}"))
                    .arg("--cacert")
                    .arg(&tls.ca)
                    .arg("--cert")
                    .arg(&tls.cert)
                    .arg("--key")
                    .arg(&tls.key)
                    .args(["endpoint", "health"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false),
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
                && plain_http(&format!("127.0.0.1:{}", m.client_port), "GET", "/metrics", None, &[])
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
