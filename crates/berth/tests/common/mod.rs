//! What the real-node tests share (tests/agent.rs, agent_volumes.rs, streaming.rs): a
//! `berth agent` child joined to a test server ([`Node`]: its own node name `agent-<n>`,
//! data dir, bridge `btest<n>` and pod CIDR 10.88.<n>.0/24; stopped by PID and its bridge
//! deleted when dropped, even when a test fails, with whatever a killed agent left: its
//! containerd, shims and their containers by PID, mounts under its data dir), and pod helpers. Without containerd the
//! tests skip, unless BERTH_REQUIRE_CONTAINERD=1.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_testkit::{Credentials, TestServer, wait_until};
use serde_json::{Value, json};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

/// A `berth agent` child process with its data dir and bridge.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) bridge: String,
    pub(crate) n: u8,
    pub(crate) dir: tempfile::TempDir,
    child: Option<Child>,
    /// Held while the node lives: tests that share a bridge number take turns.
    _bridge_lock: std::fs::File,
}

impl Node {
    /// Starts an agent joined to `s` as node `agent-<n>`; None when the runtime is missing
    /// (and not required).
    pub(crate) fn start(s: &TestServer, n: u8) -> Option<Node> {
        Self::start_with(s, n, &[])
    }

    /// Like [`Node::start`], with extra `berth agent` flags.
    pub(crate) fn start_with(s: &TestServer, n: u8, extra: &[&str]) -> Option<Node> {
        if !runtime_installed() {
            return None;
        }
        let bridge_lock = lock_bridge(n);
        let dir = tempfile::tempdir().expect("temp dir");
        let bridge = format!("btest{n}");
        let mut node = Node { name: format!("agent-{n}"), bridge, n, dir, child: None, _bridge_lock: bridge_lock };
        node.spawn(s, extra);
        Some(node)
    }

    /// Starts the agent process on the node's data dir and waits for the node to be Ready.
    pub(crate) fn spawn(&mut self, s: &TestServer, extra: &[&str]) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("agent.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["agent", "--kubeconfig"])
            .arg(&s.kubeconfig)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--node-name", &self.name, "--bridge-name", &self.bridge])
            .args(["--pod-cidr", &format!("10.88.{}.0/24", self.n)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth agent");
        self.child = Some(child);
        let ready = wait_until(TIMEOUT, || {
            let out = s.kubectl(&[
                "get",
                "node",
                &self.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            String::from_utf8_lossy(&out.stdout) == "True"
        });
        assert!(ready, "node never became Ready; agent log:\n{}", self.log());
        // The agent runs as the admin, not as its node: its kubelet-serving CSR waits for a
        // human, as Kubernetes leaves such requests (the approver takes only a node's own).
        let served = wait_until(TIMEOUT, || approve_serving_certificate(s, &self.name));
        assert!(served, "the node's serving certificate was never signed; agent log:\n{}", self.log());
        // The agent picks the signed certificate up a moment later; until then handshakes fail.
        // (A restarted agent's Node shows the old port until the new agent writes its status.)
        let handshakes = wait_until(TIMEOUT, || {
            let url = format!("https://127.0.0.1:{}/healthz", self.port(s));
            let out = Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", &url])
                .output()
                .expect("curl");
            out.stdout != b"000"
        });
        assert!(handshakes, "the agent never served its signed certificate; agent log:\n{}", self.log());
    }

    /// Stops the agent process (SIGTERM) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let stopped = wait_until(TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Kills the agent process (SIGKILL, no chance to clean up) and waits for it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The processes whose command line names the node's data dir (its agent, containerd,
    /// the shims of its pods), with their command lines.
    pub(crate) fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(self.dir.path())
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// containerd's socket under the agent's data dir.
    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("data/containerd/containerd.sock")
    }

    /// The ids of the containers (sandboxes included) in the node's containerd.
    /// The node's kubelet port as its status reports it.
    pub(crate) fn port(&self, s: &TestServer) -> u16 {
        let port =
            s.kubectl_ok(&["get", "node", &self.name, "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]);
        port.trim().parse().expect("a kubelet port")
    }

    pub(crate) fn containers(&self) -> Vec<String> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io", "containers", "ls", "-q"])
            .output()
            .expect("ctr");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        // What a killed agent (or one stopped with --keep-pods) left running: its containerd,
        // the shims and their containers.
        kill_trees(&self.processes().into_iter().map(|(pid, _)| pid).collect::<Vec<_>>());
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        // Mounts the agent left (its containerd state's tmpfs after a kill or --keep-pods)
        // go before the temp dir is removed.
        berth_testkit::netns::unmount_under(self.dir.path());
    }
}

/// The processes whose command line contains `dir`, with their command lines.
pub(crate) fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    // Everything such a process names is below the dir.
    let needle = format!("{}/", dir.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string();
        if cmdline.contains(&needle) {
            out.push((pid, cmdline));
        }
    }
    out
}

/// Whether process `pid` exists (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_some_and(|s| s != "Z" && s != "X")
}

/// SIGKILLs `roots` and all their descendants by PID, and waits (a while) for them to go.
pub(crate) fn kill_trees(roots: &[u32]) {
    if roots.is_empty() {
        return;
    }
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut all: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        let children: Vec<u32> =
            parents.iter().filter(|(pid, ppid)| *ppid == parent && !all.contains(pid)).map(|(pid, _)| *pid).collect();
        all.extend(children);
        i += 1;
    }
    let pids: Vec<String> = all.iter().map(u32::to_string).collect();
    let _ = Command::new("kill").arg("-KILL").args(&pids).stderr(Stdio::null()).status();
    wait_until(Duration::from_secs(10), || all.iter().all(|p| !alive(*p)));
}

/// An exclusive lock on bridge number `n` (`btest<n>`, 10.88.<n>.0/24) across the test
/// processes of this machine, released when the file is dropped: two tests given the same
/// number wait for each other instead of fighting over the bridge and its addresses.
fn lock_bridge(n: u8) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("berth-test-btest{n}.lock"));
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).expect("bridge lock file");
    file.lock().expect("locking the bridge number");
    file
}

/// Deletes a bridge when dropped: the server's own node's, after the server that made it
/// stopped (declare the guard before the server), even when the test fails.
pub(crate) struct BridgeGuard(pub(crate) &'static str);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).stderr(Stdio::null()).status();
    }
}

/// Approves the pending kubelet-serving CSRs for `node` (CN `system:node:<node>`) as
/// `kubectl certificate approve` would; true once one of them is signed.
pub(crate) fn approve_serving_certificate(s: &TestServer, node: &str) -> bool {
    use base64::Engine;
    let (_, list) = s.http_json("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests", None);
    let mut signed = false;
    for csr in list["items"].as_array().into_iter().flatten() {
        if csr["spec"]["signerName"] != "kubernetes.io/kubelet-serving" {
            continue;
        }
        let request = csr["spec"]["request"].as_str().unwrap_or_default();
        let pem = base64::engine::general_purpose::STANDARD.decode(request).unwrap_or_default();
        let cn = berth_pki::csr::parse_request(&String::from_utf8_lossy(&pem)).map(|i| i.common_name);
        if cn.ok().as_deref() != Some(format!("system:node:{node}").as_str()) {
            continue;
        }
        if csr["status"]["certificate"].is_string() {
            signed = true;
        } else if csr["status"]["conditions"].is_null() {
            let name = csr["metadata"]["name"].as_str().unwrap_or_default();
            let _ = s.kubectl(&["certificate", "approve", name]);
        }
    }
    signed
}

/// Whether containerd, runc, the CNI plugins and the image sources are installed; panics
/// when they are not but BERTH_REQUIRE_CONTAINERD is set.
pub(crate) fn runtime_installed() -> bool {
    let missing =
        ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/lib/cni/bridge", "/bin/busybox", "/usr/bin/catatonit"]
            .iter()
            .any(|p| !Path::new(p).exists());
    if missing {
        assert!(
            std::env::var("BERTH_REQUIRE_CONTAINERD").is_err(),
            "containerd/runc/CNI/busybox/catatonit missing: run scripts/install-test-tools.sh"
        );
        eprintln!("skipping: the container runtime is not installed (scripts/install-test-tools.sh)");
    }
    !missing
}

pub(crate) fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

pub(crate) fn apply(s: &TestServer, object: &Value) {
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&object.to_string()));
}

pub(crate) fn get_pod(s: &TestServer, name: &str) -> Value {
    let out = s.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until `cond` holds for the pod; panics with the pod and the agent log.
pub(crate) fn wait_pod(s: &TestServer, node: &Node, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(TIMEOUT, || {
        last = get_pod(s, name);
        cond(&last)
    });
    assert!(ok, "pod {name} never {what}: {last:#}\nagent log:\n{}", node.log());
    last
}

/// A busybox pod bound to `node`.
pub(crate) fn busybox_pod(name: &str, node: &Node, container: Value, restart: &str) -> Value {
    let mut c = json!({ "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never" });
    c.as_object_mut().unwrap().extend(container.as_object().unwrap().clone());
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "nodeName": node.name, "restartPolicy": restart, "terminationGracePeriodSeconds": 3,
                  "containers": [c] },
    })
}

/// GET http://ip:port/path from the host; the body, if it answered 200.
pub(crate) fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&format!("{ip}:{port}").parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

pub(crate) fn httpd_command(page: &str) -> Value {
    json!([
        "sh",
        "-c",
        format!("mkdir -p /tmp/www && echo \"{page}\" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www")
    ])
}

/// The user a bearer token authenticates as (SelfSubjectReview), or the HTTP status.
pub(crate) fn whoami(s: &TestServer, token: &str) -> Result<Value, u16> {
    let client = s.client_as(Credentials::Bearer(token.to_string()));
    let body = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" });
    let r = client
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .unwrap();
    if r.status == 201 { Ok(r.json()["status"]["userInfo"].clone()) } else { Err(r.status) }
}

/// Runs kubectl with `stdin`, killing it after `limit`; its output.
pub(crate) fn kubectl_timed(
    s: &TestServer,
    args: &[&str],
    stdin: Option<&[u8]>,
    limit: Duration,
) -> std::process::Output {
    let mut child = Command::new(berth_testkit::KUBECTL)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(args)
        .env("HOME", s.dir.path())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("kubectl output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("kubectl output");
    panic!(
        "kubectl {args:?} did not finish within {limit:?}; stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node `agent-<n>` with its kubelet port picked by the system (for tests that reach the
/// agent's own HTTPS port: streaming, attach, port-forward).
pub(crate) fn node_with_own_kubelet_port(s: &TestServer, n: u8) -> Option<Node> {
    Node::start_with(s, n, &["--kubelet-port", "0"])
}

/// Kills a child process (by its PID) when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
