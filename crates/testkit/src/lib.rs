//! Test helpers: start a real `berth server` in a temporary data dir on a free
//! loopback port, drive it with the real kubectl or kube-rs (through the kubeconfig it
//! writes), or talk raw HTTPS to it ([`HttpClient`]) for the bad-input cases a client
//! library would refuse to send; start a real etcd ([`etcd`]).
//!
//! Every process started here is stopped when its handle drops, even when the test fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod etcd;
mod https;
pub mod netns;
pub use etcd::Etcd;
pub use https::{Credentials, HttpClient, Kubeconfig, TlsStream};

/// The kubectl the tests use.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A running `berth server` in a temp dir.
pub struct TestServer {
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// The server's base URL, e.g. `https://127.0.0.1:41234`.
    pub url: String,
    /// `host:port`.
    pub addr: String,
    /// The kubeconfig the server wrote.
    pub kubeconfig: PathBuf,
    bin: PathBuf,
    extra_args: Vec<String>,
    /// Runs its own node (no `--disable-agent`).
    agent: bool,
    /// Environment variables given to the server process.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The `BERTH_LOG` filter given to the processes tests start: `info`, or the value of
/// `BERTH_TEST_LOG` (e.g. `info,berth_controllers=debug`) when chasing a failure.
fn log_filter() -> String {
    std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "info".into())
}

impl TestServer {
    /// Starts `berth agent ARGS` (the same binary as the server) with `BERTH_LOG` as
    /// [`log_filter`] says, its
    /// stderr appended to `agent.log` in the server's dir.
    pub fn spawn_agent(&self, args: &[&str]) -> AgentProcess {
        let log = self.dir.path().join("agent.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("agent log");
        let child = Command::new(&self.bin)
            .arg("agent")
            .args(args)
            .env("BERTH_LOG", log_filter())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn berth agent");
        AgentProcess { child: Some(child), log }
    }

    /// Starts `berth server --disable-agent` from the binary at `bin` in a fresh temp dir.
    pub fn start(bin: &Path) -> TestServer {
        Self::start_with(bin, &[])
    }

    /// Like [`TestServer::start`], with extra `berth server` flags.
    pub fn start_with(bin: &Path, extra_args: &[&str]) -> TestServer {
        let s = Self::spawn_with(bin, extra_args);
        s.wait_ready(Duration::from_secs(30));
        s
    }

    /// Starts `berth server` with its own node (real containers: containerd must be
    /// installed), with extra flags (give `--bridge-name`/`--pod-cidr` that no other test uses).
    pub fn start_with_agent(bin: &Path, extra_args: &[&str]) -> TestServer {
        let mut s = Self::new(bin, extra_args);
        s.agent = true;
        s.spawn();
        s.wait_ready(Duration::from_secs(30));
        s
    }

    /// Like [`TestServer::start_with`], with environment variables for the server process
    /// (test-only knobs such as short certificate lifetimes).
    pub fn start_with_env(bin: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut s = Self::new(bin, extra_args);
        s.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        s.spawn();
        s.wait_ready(Duration::from_secs(30));
        s
    }

    /// Starts the server and waits only for its kubeconfig (so for its port), not for it to
    /// be ready: for tests of what a starting server answers. See [`TestServer::wait_ready`].
    pub fn spawn_with(bin: &Path, extra_args: &[&str]) -> TestServer {
        let mut s = Self::new(bin, extra_args);
        s.spawn();
        s
    }

    fn new(bin: &Path, extra_args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer {
            url: String::new(),
            addr: String::new(),
            kubeconfig: dir.path().join("kubeconfig.yaml"),
            dir,
            bin: bin.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            agent: false,
            env: Vec::new(),
            child: None,
        }
    }

    /// Starts the server process on the data dir and waits for /readyz.
    fn launch(&mut self) {
        self.spawn();
        self.wait_ready(Duration::from_secs(30));
    }

    /// Waits until /readyz answers 200, at most `timeout`; panics with the log otherwise.
    pub fn wait_ready(&self, timeout: Duration) {
        // The kubeconfig is read anew each time: a server joining a cluster first writes
        // one with its own CA, then one with the cluster's.
        assert!(
            wait_until(timeout, || self
                .client()
                .request("GET", "/readyz", None, &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)),
            "server never became ready:\n{}",
            self.log()
        );
    }

    /// Starts the server process on the data dir and waits for its kubeconfig.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        // Port 0 on the first start; the same port on restarts.
        let port = self.addr.rsplit(':').next().unwrap_or("0").to_string();
        let child = Command::new(&self.bin)
            .arg("server")
            .args(if self.agent { None } else { Some("--disable-agent") })
            .args(["--https-listen-port", if port.is_empty() { "0" } else { &port }])
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BERTH_LOG", log_filter())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth server");
        self.child = Some(child);
        let kc = self.kubeconfig.clone();
        assert!(wait_until(Duration::from_secs(30), || kc.exists()), "server wrote no kubeconfig:\n{}", self.log());
        let config = Kubeconfig::read(&self.kubeconfig).expect("kubeconfig");
        self.url = config.server.clone();
        self.addr = config.server.trim_start_matches("https://").to_string();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends `signal` (e.g. "KILL", "TERM") to the server and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        child.wait().expect("wait for server")
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.launch();
    }

    /// Starts a long-running kubectl (e.g. `get -w`) and returns it with a channel of its
    /// stdout lines. The caller kills it.
    pub fn kubectl_lines(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(KUBECTL);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env("KUBECACHEDIR", self.dir.path().join("kubecache"));
        cmd.env("HOME", self.dir.path());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout; panics with stderr and the server log on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_in_ok(args, None)
    }

    /// Like [`TestServer::kubectl_ok`] with stdin.
    pub fn kubectl_in_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The credentials and CA of the kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> Kubeconfig {
        Kubeconfig::read(&self.kubeconfig).expect("kubeconfig")
    }

    /// A raw HTTPS client of the server, as the admin of the kubeconfig.
    pub fn client(&self) -> HttpClient {
        self.client_as(Credentials::Admin)
    }

    /// A raw HTTPS client of the server with other credentials.
    pub fn client_as(&self, credentials: Credentials) -> HttpClient {
        HttpClient::new(&self.addr, &self.kubeconfig(), credentials).expect("https client")
    }

    /// A kube-rs client from the kubeconfig the server wrote.
    pub async fn kube_client(&self) -> kube::Client {
        kube_client(&self.kubeconfig).await
    }

    /// A raw HTTP request to the server, as the admin.
    pub fn http(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
        self.client().request(method, path, content_type, body).expect("http request")
    }

    /// A raw HTTP request returning the body parsed as JSON.
    pub fn http_json(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
        let r = self.http(method, path, body.map(|_| "application/json"), &bytes);
        let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, v)
    }
}

/// A `berth agent` child of a test ([`TestServer::spawn_agent`]), killed by PID when
/// dropped (also when the test fails).
pub struct AgentProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProcess {
    /// What the agent logged (its stderr; agents of one server append to one file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the agent to exit on its own: its status, `None` if it
    /// is still running.
    pub fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().expect("wait for the agent");
            status.is_some()
        });
        status
    }

    /// SIGTERM, then its exit status within 30 s; `None` if it had to be killed.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut status = None;
        wait_until(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            // A node stops its pods first.
            let deadline = Instant::now() + Duration::from_secs(if self.agent { 60 } else { 10 });
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // What a node left mounted in the data dir (its containerd state's tmpfs, pods'
        // volumes) goes before the dir is removed, so the removal neither fails on a busy
        // mount nor deletes inside one.
        netns::unmount_under(self.dir.path());
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// All values of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A kube-rs client from the kubeconfig at `path`.
pub async fn kube_client(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// A plain-HTTP request (one per connection), for the plain-HTTP services tests start
/// (etcd); the berth server speaks HTTPS only: use [`TestServer::client`].
pub fn plain_http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let _ = stream.write_all(body);
    read_response(BufReader::new(stream))
}

/// Reads an HTTP/1.1 response (status line, headers, body by length, chunks or to the end).
fn read_response(mut reader: impl BufRead) -> std::io::Result<HttpResponse> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        match reader.read_to_end(&mut body) {
            Ok(_) => {}
            // A peer that closes without TLS close_notify: what arrived is the body.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
    }
    Ok(HttpResponse { status, headers, body })
}
