//! `berth server --datastore-endpoint etcd://...` against a real etcd: kubectl works and
//! keys are laid out as Kubernetes does, data survives a restart of berth, an etcd
//! outage turns writes into 5xx Statuses (not hangs) and service resumes when etcd is
//! back (and on 3 members: losing one loses no write, losing quorum fails writes until it
//! returns), a server started before etcd waits for it, and bad endpoints are refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_testkit::{Etcd, TestServer, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn server_on(etcd: &Etcd) -> TestServer {
    TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &etcd.url()])
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn configmap(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": "v" } })
}

/// The keys etcd holds under `prefix`, read with the real etcdctl.
fn etcd_keys(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["get", prefix, "--prefix", "--keys-only"])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
"#;

#[test]
fn kubectl_works_on_etcd_and_data_survives_a_restart() {
    let Some(etcd) = Etcd::start() else { return };
    let mut s = server_on(&etcd);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    // Re-applying the same manifest changes nothing: kubectl finds no difference to send
    // and the spec's generation stays (the resourceVersion may move meanwhile: the
    // Deployment controller writes status on its own schedule).
    let before = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    let out = s.kubectl_in_ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    let again = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(before["metadata"]["generation"], again["metadata"]["generation"]);
    assert_eq!(before["spec"], again["spec"]);
    s.kubectl_ok(&["create", "configmap", "first", "--from-literal=a=1"]);

    // A watch sees writes made after it started.
    let (mut child, rx) = s.kubectl_lines(&["get", "configmaps", "-w", "-o", "name", "--request-timeout=30s"]);
    let mut seen = Vec::new();
    let initial = wait_until(Duration::from_secs(30), || {
        seen.extend(rx.try_iter());
        seen.iter().any(|l| l == "configmap/first")
    });
    s.kubectl_ok(&["create", "configmap", "second", "--from-literal=b=2"]);
    let live = wait_until(Duration::from_secs(30), || {
        seen.extend(rx.try_iter());
        seen.iter().any(|l| l == "configmap/second")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(initial && live, "watch lines: {seen:?}");

    // Keys in etcd are laid out as Kubernetes lays them out.
    let keys = etcd_keys(&etcd, "/registry/");
    for key in [
        "/registry/apps/deployments/default/web",
        "/registry/core/configmaps/default/first",
        "/registry/core/namespaces/default",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from etcd: {keys:?}");
    }

    s.kubectl_ok(&["delete", "configmap", "first"]);
    let gone = s.kubectl(&["get", "configmap", "first"]);
    assert!(!gone.status.success());
    assert!(!etcd_keys(&etcd, "/registry/core/configmaps/").iter().any(|k| k.ends_with("/first")));

    // A restarted server (a fresh data dir would do: the state is in etcd) serves the same objects.
    s.signal_and_wait("TERM");
    s.restart();
    let after = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    // (Not the resourceVersion: the Deployment controller may have written status since.)
    assert_eq!(after["metadata"]["generation"], before["metadata"]["generation"]);
    assert_eq!(after["spec"], before["spec"]);
    let names = s.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    assert!(names.contains("configmap/second") && !names.contains("configmap/first"), "{names}");
    // The same etcd served through a second server with its own data dir.
    let other = server_on(&etcd);
    let seen_there = json(&other.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(seen_there["metadata"]["uid"], before["metadata"]["uid"]);
}

/// Whether this server's log says it became the leader of `lease`.
fn leads(s: &TestServer, lease: &str) -> bool {
    s.log().lines().any(|l| l.contains("became leader") && l.contains(&format!("lease={lease}")))
}

const REPLICASET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: busybox:1.36
"#;

#[test]
fn two_servers_share_etcd_and_the_controllers_fail_over() {
    let Some(etcd) = Etcd::start() else { return };
    let mut a = server_on(&etcd);
    let mut b = server_on(&etcd);
    // A watch on one server sees a write made through the other.
    let (mut child, rx) = b.kubectl_lines(&["get", "configmaps", "-w", "-o", "name", "--request-timeout=60s"]);
    a.kubectl_ok(&["create", "configmap", "via-a", "--from-literal=k=v"]);
    let mut seen = Vec::new();
    let crossed = wait_until(Duration::from_secs(30), || {
        seen.extend(rx.try_iter());
        seen.iter().any(|l| l == "configmap/via-a")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(crossed, "the watch on b saw {seen:?}");

    // Exactly one of them runs the controllers and the scheduler.
    assert!(
        wait_until(Duration::from_secs(60), || leads(&a, "kube-controller-manager")
            || leads(&b, "kube-controller-manager")),
        "no controller-manager leader:\n{}\n{}",
        a.log(),
        b.log()
    );
    assert!(!(leads(&a, "kube-controller-manager") && leads(&b, "kube-controller-manager")), "two leaders");
    let a_leads = leads(&a, "kube-controller-manager");
    b.kubectl_in_ok(&["apply", "-f", "-"], Some(REPLICASET));
    let pods = |s: &TestServer| s.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]).lines().count();
    assert!(wait_until(Duration::from_secs(60), || pods(&b) == 1), "the ReplicaSet made no pod");

    // SIGKILL the leader: the other server takes the leases over once they expire (15 s)
    // and the work goes on: a scale-up made after the kill completes.
    let (leader, survivor) = if a_leads { (&mut a, &mut b) } else { (&mut b, &mut a) };
    leader.signal_and_wait("KILL");
    survivor.kubectl_ok(&["scale", "replicaset", "web", "--replicas=3"]);
    assert!(
        wait_until(Duration::from_secs(90), || pods(survivor) == 3),
        "the scale-up never completed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&survivor.kubectl(&["get", "replicaset", "web", "-o", "yaml"]).stdout),
        String::from_utf8_lossy(&survivor.kubectl(&["get", "events", "-o", "wide"]).stdout),
        survivor.log()
    );
    assert!(leads(survivor, "kube-controller-manager"), "{}", survivor.log());
    assert!(wait_until(Duration::from_secs(60), || leads(survivor, "kube-scheduler")), "{}", survivor.log());
    let holder = survivor.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(survivor.log().contains(&format!("identity={holder}")), "holder {holder} is not the survivor");
}

#[test]
fn etcd_outage_fails_writes_with_a_5xx_status_then_recovers() {
    let Some(mut etcd) = Etcd::start() else { return };
    let s = server_on(&etcd);
    let (code, _) = s.http_json("POST", CONFIGMAPS, Some(&configmap("before")));
    assert_eq!(code, 201);
    etcd.stop();
    // The raw client gives up after 30 s: a hang fails the test.
    let (code, status) = s.http_json("POST", CONFIGMAPS, Some(&configmap("during")));
    assert!(code == 503 || code == 504, "{code}: {status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["code"], code);
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("etcd"), "{message}");
    let (code, status) = s.http_json("DELETE", &format!("{CONFIGMAPS}/before"), None);
    assert!(code == 503 || code == 504, "{code}: {status}");
    // The health endpoints say so, as kube-apiserver's do (the reason only in the log).
    for (path, name) in [("/readyz", "readyz"), ("/livez", "livez")] {
        let r = s.http("GET", path, None, b"");
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 500, "{path}: {body}");
        assert!(body.contains("[+]ping ok\n") && body.contains("[-]etcd failed: reason withheld\n"), "{body}");
        assert!(body.ends_with(&format!("{name} check failed\n")), "{body}");
    }
    let r = s.http("GET", "/readyz?exclude=etcd", None, b"");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    etcd.restart();
    let mut last = (0, Value::Null);
    let recovered = wait_until(Duration::from_secs(60), || {
        last = s.http_json("POST", CONFIGMAPS, Some(&configmap("after")));
        last.0 == 201
    });
    assert!(recovered, "writes did not resume: {last:?}\n{}", s.log());
    assert_eq!(s.http("GET", "/readyz", None, b"").status, 200);
    // The watch cache followed etcd across the outage: lists see the new object.
    let names = s.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    assert!(names.contains("configmap/after") && names.contains("configmap/before"), "{names}");
    assert!(!names.contains("configmap/during"), "{names}");
}

/// Sends SIGCONT to a stopped process when dropped, even when the test fails.
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let ok = Command::new("kill").args(["-STOP", &pid.to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "SIGSTOP {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// etcd's current revision, read with the real etcdctl.
fn etcd_revision(etcd: &Etcd) -> i64 {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["endpoint", "status", "-w", "json"])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl: {}", String::from_utf8_lossy(&out.stderr));
    let status = json(&String::from_utf8_lossy(&out.stdout));
    status[0]["Status"]["header"]["revision"].as_i64().expect("a revision")
}

/// The watch cache follows etcd past a compaction it missed: while one server is stopped
/// (SIGSTOP), another creates and deletes through the same etcd, etcd is compacted to its
/// newest revision and restarted, so the stopped server's etcd watch cannot resume. It
/// re-lists (its cached LIST shows the new state), and a client watch it served before
/// either saw both changes or ended, so the client re-lists (Kubernetes' cacher ends its
/// watchers when it re-initialises): never a watch that silently skips them.
#[test]
fn the_watch_cache_relists_after_a_compaction_it_missed() {
    let Some(mut etcd) = Etcd::start() else { return };
    let s1 = server_on(&etcd);
    let s2 = server_on(&etcd);
    assert_eq!(s1.http_json("POST", CONFIGMAPS, Some(&configmap("old"))).0, 201);
    let (mut watch, lines) = s1.kubectl_lines(&["get", "configmaps", "-w", "-o", "name", "--request-timeout=300s"]);
    assert!(wait_until(Duration::from_secs(30), || lines.try_iter().any(|l| l.contains("configmap/old"))));

    let paused = Stopped::stop(s1.pid());
    assert_eq!(s2.http_json("POST", CONFIGMAPS, Some(&configmap("new"))).0, 201);
    assert_eq!(s2.http_json("DELETE", &format!("{CONFIGMAPS}/old"), None).0, 200);
    let revision = etcd_revision(&etcd);
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["compact", &revision.to_string()])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl compact: {}", String::from_utf8_lossy(&out.stderr));
    etcd.stop();
    etcd.restart();
    drop(paused);

    let cached = |name: &str| {
        let (code, list) = s1.http_json("GET", &format!("{CONFIGMAPS}?resourceVersion=0"), None);
        code == 200 && list["items"].as_array().into_iter().flatten().any(|i| i["metadata"]["name"] == name)
    };
    let caught_up = wait_until(Duration::from_secs(60), || cached("new") && !cached("old"));
    assert!(caught_up, "the cache of the stopped server never caught up:\n{}", s1.log());
    let mut seen: Vec<String> = Vec::new();
    let settled = wait_until(Duration::from_secs(60), || {
        seen.extend(lines.try_iter());
        // "old" was printed once already: printed again, it is its deletion.
        let both = seen.iter().any(|l| l == "configmap/new") && seen.iter().any(|l| l == "configmap/old");
        both || matches!(watch.try_wait(), Ok(Some(_)))
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(settled, "the watch neither saw both changes nor ended: {seen:?}\n{}", s1.log());
}

/// A server on a 3-member etcd: losing the etcd leader (SIGKILL) loses no write; losing a
/// second member (no quorum) turns writes into 503/504 Statuses; with the members back,
/// writes resume and every acknowledged object is there.
#[test]
fn three_etcd_members_lose_one_then_quorum_and_recover() {
    let Some(mut etcd) = Etcd::start_cluster(3) else { return };
    let s = server_on(&etcd);
    let (code, status) = s.http_json("POST", CONFIGMAPS, Some(&configmap("m-before")));
    assert_eq!(code, 201, "{status}");
    let leader = etcd.leader().expect("an etcd leader");
    etcd.stop_member(leader, "KILL");
    let mut acknowledged = vec!["m-before".to_string()];
    for i in 0..5 {
        let name = format!("m-one-down-{i}");
        let (code, status) = s.http_json("POST", CONFIGMAPS, Some(&configmap(&name)));
        assert_eq!(code, 201, "{name} with one member down: {status}\n{}", etcd.log());
        acknowledged.push(name);
    }
    let (code, _) = s.http_json("GET", &format!("{CONFIGMAPS}/m-one-down-4"), None);
    assert_eq!(code, 200);

    let second = (0..3).find(|n| *n != leader).expect("another member");
    etcd.stop_member(second, "KILL");
    let (code, status) = s.http_json("POST", CONFIGMAPS, Some(&configmap("m-no-quorum")));
    assert!(code == 503 || code == 504, "without quorum: {code}: {status}");
    assert_eq!(status["kind"], "Status", "{status}");

    etcd.restart();
    let mut last = (0, Value::Null);
    let recovered = wait_until(Duration::from_secs(90), || {
        last = s.http_json("POST", CONFIGMAPS, Some(&configmap("m-after")));
        last.0 == 201
    });
    assert!(recovered, "writes did not resume: {last:?}\n{}", s.log());
    assert_eq!(s.http("GET", "/readyz", None, b"").status, 200);
    acknowledged.push("m-after".to_string());
    let names = s.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    for name in &acknowledged {
        assert!(names.contains(&format!("configmap/{name}")), "{name} is missing: {names}");
    }
}

#[test]
fn a_server_started_before_etcd_waits_for_it() {
    let Some(mut etcd) = Etcd::start() else { return };
    let url = etcd.url();
    etcd.stop();
    // Bring etcd back later, from another thread, while the server waits: after the
    // 10 s a first connection attempt retries for, so that the server logs its waiting.
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(12));
        etcd.restart();
        etcd
    });
    let s = TestServer::spawn_with(Path::new(BIN), &["--datastore-endpoint", &url]);
    // Meanwhile the port answers: alive, not ready, and a 503 Status for the API.
    let client = s.client();
    let ready = client.request("GET", "/readyz", None, &[]).expect("GET /readyz");
    assert_eq!(ready.status, 500, "{}", String::from_utf8_lossy(&ready.body));
    assert!(
        String::from_utf8_lossy(&ready.body).contains("[-]etcd failed"),
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_eq!(client.request("GET", "/livez", None, &[]).expect("GET /livez").status, 200);
    let api = client.request("GET", "/api/v1/namespaces", None, &[]).expect("GET /api");
    assert_eq!(api.status, 503);
    assert_eq!(api.json()["reason"], "ServiceUnavailable", "{}", api.json());
    let etcd = restarter.join().expect("restart etcd");
    s.wait_ready(Duration::from_secs(90));
    assert!(s.log().contains("etcd is not reachable yet"), "{}", s.log());
    s.kubectl_ok(&["create", "configmap", "x", "--from-literal=a=1"]);
    assert!(etcd_keys(&etcd, "/registry/core/configmaps/default/").iter().any(|k| k.ends_with("/x")));
}

#[test]
fn bad_datastore_endpoints_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (endpoint, want) in [
        ("mysql://db:3306", "unsupported datastore endpoint \"mysql://db:3306\""),
        ("etcd://no-port", "is not HOST:PORT"),
        ("sqlite:", "needs a file path"),
    ] {
        let out = Command::new(BIN)
            .args(["server", "--disable-agent", "--https-listen-port", "0", "--datastore-endpoint", endpoint])
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run berth server");
        assert!(!out.status.success(), "{endpoint}: server started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{endpoint}: {stderr}");
    }
}

#[test]
fn bench_store_quick_reports_every_figure() {
    if !berth_testkit::etcd::etcd_available() {
        return;
    }
    let out = Command::new(BIN).args(["bench", "store", "--quick", "--json"]).output().expect("run berth bench store");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth bench store failed: {}\n{stderr}", out.status);
    let figures = json(String::from_utf8_lossy(&out.stdout).trim());
    for name in [
        "etcd_raw_puts_per_s",
        "etcd_raw_put_p99_ms",
        "store_etcd_creates_per_s",
        "store_etcd_create_p99_ms",
        "store_sqlite_creates_per_s",
        "store_sqlite_create_p99_ms",
        "api_sqlite_creates_per_s",
        "api_sqlite_create_p99_ms",
        "api_sqlite_gets_per_s",
        "api_sqlite_get_p99_ms",
        "api_etcd_creates_per_s",
        "api_etcd_create_p99_ms",
        "api_etcd_gets_per_s",
        "api_etcd_get_p99_ms",
    ] {
        let value = figures[name].as_f64().unwrap_or_else(|| panic!("{name} missing: {figures}"));
        assert!(value > 0.0, "{name} = {value}");
    }
}

/// Issue 7's command: `berth bench api --datastore etcd://...` runs the datastores side
/// by side (the same run as `berth bench store` on that etcd); a non-etcd URL is refused.
#[test]
fn bench_api_with_a_datastore_compares_sqlite_and_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    let out = Command::new(BIN)
        .args(["bench", "api", "--quick", "--json", "--datastore", &etcd.url()])
        .output()
        .expect("run berth bench api");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth bench api --datastore failed: {}\n{stderr}", out.status);
    let figures = json(String::from_utf8_lossy(&out.stdout).trim());
    for name in
        ["api_sqlite_creates_per_s", "api_sqlite_create_p99_ms", "api_etcd_creates_per_s", "api_etcd_create_p99_ms"]
    {
        let value = figures[name].as_f64().unwrap_or_else(|| panic!("{name} missing: {figures}"));
        assert!(value > 0.0, "{name} = {value}");
    }
    for bad in ["sqlite:/tmp/x.db", "mysql://h:1"] {
        let out = Command::new(BIN).args(["bench", "api", "--datastore", bad]).output().expect("run berth bench api");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("datastore"), "{bad}: {stderr}");
    }
}

/// Runs `berth datastore ARGS`; returns (success, stderr).
fn datastore(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).arg("datastore").args(args).stdin(Stdio::null()).output().expect("run berth datastore");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// ConfigMap names in creation order, by resourceVersion.
fn configmaps_by_version(s: &TestServer) -> Vec<String> {
    let list = json(&s.kubectl_ok(&["get", "configmaps", "-o", "json"]));
    let mut items: Vec<(i64, String)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let rv = i["metadata"]["resourceVersion"].as_str().unwrap_or("0").parse().unwrap_or(0);
            (rv, i["metadata"]["name"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, name)| name).filter(|n| n.starts_with("cm-")).collect()
}

#[test]
fn snapshot_save_and_restore_serve_every_object_in_order() {
    let mut s = TestServer::start(Path::new(BIN));
    for name in ["cm-b", "cm-a", "cm-c"] {
        s.kubectl_ok(&["create", "configmap", name, "--from-literal=k=v"]);
    }
    s.kubectl_ok(&["label", "configmap", "cm-b", "touched=yes"]);
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    s.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=restored-secret"]);
    let order = configmaps_by_version(&s);
    assert_eq!(order, ["cm-a", "cm-c", "cm-b"]);
    s.signal_and_wait("TERM");

    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("snap.jsonl");
    // The logical format (that of earlier berth versions' files) still saves and restores.
    let (ok, err) =
        datastore(&["snapshot", "save", "--format", "logical", "--data-dir", path_str(s.dir.path()), path_str(&file)]);
    assert!(ok, "{err}");
    assert!(err.contains("saved"), "{err}");
    // Secrets stay encrypted in the snapshot: a restore without their key says so.
    let (ok, err) =
        datastore(&["snapshot", "restore", "--data-dir", path_str(&work.path().join("nokey")), path_str(&file)]);
    assert!(ok && err.contains("values are encrypted"), "{err}");

    let restored_dir = work.path().join("restored");
    let source_key = s.dir.path().join("cred/encryption-config.json");
    let (ok, err) = datastore(&[
        "snapshot",
        "restore",
        "--data-dir",
        path_str(&restored_dir),
        "--encryption-provider-config",
        path_str(&source_key),
        path_str(&file),
    ]);
    assert!(ok && !err.contains("warning"), "{err}");
    // Restoring over an existing store is refused and changes nothing.
    let (ok, err) = datastore(&["snapshot", "restore", "--data-dir", path_str(&restored_dir), path_str(&file)]);
    assert!(!ok && err.contains("already exists"), "{err}");

    let restored = TestServer::start_with(
        Path::new(BIN),
        &[
            "--datastore-endpoint",
            &format!("sqlite:{}", path_str(&restored_dir.join("state.db"))),
            "--encryption-provider-config",
            path_str(&restored_dir.join("cred/encryption-config.json")),
        ],
    );
    assert_eq!(configmaps_by_version(&restored), order);
    let password = restored.kubectl_ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password, "cmVzdG9yZWQtc2VjcmV0", "base64 of restored-secret");
    let labels = json(&restored.kubectl_ok(&["get", "configmap", "cm-b", "-o", "json"]));
    assert_eq!(labels["metadata"]["labels"]["touched"], "yes");
    restored.kubectl_ok(&["get", "deployment", "web"]);

    // A file that is not a snapshot, or a truncated one, is refused.
    let garbage = work.path().join("garbage");
    std::fs::write(&garbage, "hello\n").unwrap();
    let (ok, err) =
        datastore(&["snapshot", "restore", "--data-dir", path_str(&work.path().join("g")), path_str(&garbage)]);
    assert!(!ok && err.contains("is not a berth snapshot"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let truncated = work.path().join("truncated");
    std::fs::write(&truncated, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let (ok, err) =
        datastore(&["snapshot", "restore", "--data-dir", path_str(&work.path().join("t")), path_str(&truncated)]);
    assert!(!ok && err.contains("truncated"), "{err}");
    assert!(!work.path().join("t/state.db").exists());
}

#[test]
fn scheduled_snapshots_are_taken_pruned_and_restorable() {
    let mut s =
        TestServer::start_with(Path::new(BIN), &["--snapshot-cron", "* * * * * *", "--snapshot-retention", "2"]);
    s.kubectl_ok(&["create", "configmap", "cm-scheduled", "--from-literal=k=v"]);
    let dir = s.dir.path().join("snapshots");
    let snapshots = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
        // A snapshot being written is a `.partial` file until it is complete.
        files.retain(|f| f.extension().is_none());
        files.sort();
        files
    };
    // Wait for snapshots taken after the create, until more were written than are kept.
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            for f in snapshots() {
                // A copy of the SQLite store: the object's JSON is in it as written.
                if std::fs::read(&f).is_ok_and(|b| b.windows(12).any(|w| w == b"cm-scheduled")) {
                    seen.insert(f);
                }
            }
            seen.len() >= 4
        }),
        "snapshots seen: {seen:?}\n{}",
        s.log()
    );
    s.signal_and_wait("TERM");
    let kept = snapshots();
    assert_eq!(kept.len(), 2, "retention 2: {kept:?}");
    assert!(kept.iter().all(|f| f.file_name().unwrap().to_str().unwrap().starts_with("snapshot-")), "{kept:?}");
    // The newest one restores into a server that serves the object.
    let work = tempfile::tempdir().unwrap();
    let restored_dir = work.path().join("restored");
    let (ok, err) =
        datastore(&["snapshot", "restore", "--data-dir", path_str(&restored_dir), path_str(kept.last().unwrap())]);
    assert!(ok, "{err}");
    let restored = TestServer::start_with(
        Path::new(BIN),
        &["--datastore-endpoint", &format!("sqlite:{}", path_str(&restored_dir.join("state.db")))],
    );
    restored.kubectl_ok(&["get", "configmap", "cm-scheduled"]);
    // A bad schedule stops the server with a clear error.
    let out = Command::new(BIN)
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--snapshot-cron", "61 * * * *", "--data-dir"])
        .arg(work.path().join("bad"))
        .output()
        .expect("run berth server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--snapshot-cron \"61 * * * *\""), "{err}");
}

#[test]
fn migrate_sqlite_to_etcd_and_back() {
    let Some(etcd) = Etcd::start() else { return };
    let mut s = TestServer::start(Path::new(BIN));
    for name in ["cm-1", "cm-3", "cm-2"] {
        s.kubectl_ok(&["create", "configmap", name, "--from-literal=k=v"]);
    }
    let order = configmaps_by_version(&s);
    let uid = json(&s.kubectl_ok(&["get", "configmap", "cm-3", "-o", "json"]))["metadata"]["uid"].clone();
    s.signal_and_wait("TERM");
    let db = format!("sqlite:{}", path_str(&s.dir.path().join("state.db")));

    let (ok, err) = datastore(&["migrate", "--from", &db, "--to", &etcd.url()]);
    assert!(ok, "{err}");
    let on_etcd = server_on(&etcd);
    assert_eq!(configmaps_by_version(&on_etcd), order);
    assert_eq!(json(&on_etcd.kubectl_ok(&["get", "configmap", "cm-3", "-o", "json"]))["metadata"]["uid"], uid);
    on_etcd.kubectl_ok(&["create", "configmap", "cm-4", "--from-literal=k=v"]);
    drop(on_etcd);

    // The target must be empty: migrating again is refused.
    let (ok, err) = datastore(&["migrate", "--from", &db, "--to", &etcd.url()]);
    assert!(!ok && err.contains("must be empty"), "{err}");

    let work = tempfile::tempdir().unwrap();
    let back = format!("sqlite:{}", path_str(&work.path().join("back.db")));
    let (ok, err) = datastore(&["migrate", "--from", &etcd.url(), "--to", &back]);
    assert!(ok, "{err}");
    let on_sqlite = TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &back]);
    let mut want = order.clone();
    want.push("cm-4".to_string());
    assert_eq!(configmaps_by_version(&on_sqlite), want);

    // Logical snapshots of etcd go through the same format.
    let file = work.path().join("etcd.jsonl");
    let (ok, err) =
        datastore(&["snapshot", "save", "--format", "logical", "--datastore-endpoint", &etcd.url(), path_str(&file)]);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("/registry/core/configmaps/default/cm-4"));

    let (ok, err) = datastore(&["migrate", "--from", "sqlite:/nonexistent/state.db", "--to", &back]);
    assert!(!ok && err.contains("no store at"), "{err}");
}

#[test]
fn server_reaches_etcd_over_tls_with_a_client_certificate() {
    let Some(etcd) = Etcd::start_tls() else { return };
    let tls = etcd.tls.clone().expect("tls files");
    let url = etcd.url();
    let s = TestServer::start_with(
        Path::new(BIN),
        &[
            "--datastore-endpoint",
            &url,
            "--datastore-cafile",
            path_str(&tls.ca),
            "--datastore-certfile",
            path_str(&tls.cert),
            "--datastore-keyfile",
            path_str(&tls.key),
        ],
    );
    s.kubectl_ok(&["create", "configmap", "over-tls", "--from-literal=a=1"]);
    let got = json(&s.kubectl_ok(&["get", "configmap", "over-tls", "-o", "json"]));
    assert_eq!(got["data"]["a"], "1");
}

/// The raw value etcd holds at `key`, read with the real etcdctl.
fn etcd_value(etcd: &Etcd, key: &str) -> Vec<u8> {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["get", key, "--print-value-only"])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn servers_given_one_token_share_the_ca_and_the_secrets_key() {
    let Some(etcd) = Etcd::start() else { return };
    let with_token =
        |token: &str| TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &etcd.url(), "--token", token]);
    let a = with_token("shared-s3cret");
    let b = with_token("shared-s3cret");
    // One cluster CA and one set of keys; each server has its own serving certificate.
    assert_eq!(a.kubeconfig().ca_pem, b.kubeconfig().ca_pem);
    for name in ["server-ca.key", "client-ca.key", "request-header-ca.key", "service.key"] {
        let read = |s: &TestServer| std::fs::read(s.dir.path().join("tls").join(name)).unwrap();
        assert_eq!(read(&a), read(&b), "{name}");
    }
    let serving = |s: &TestServer| std::fs::read(s.dir.path().join("tls/serving-kube-apiserver.crt")).unwrap();
    assert_ne!(serving(&a), serving(&b));
    // a's kubeconfig (its CA and admin certificate) works against b.
    let cross = berth_testkit::HttpClient::new(&b.addr, &a.kubeconfig(), berth_testkit::Credentials::Admin).unwrap();
    let r = cross.request("GET", "/api/v1/namespaces/default", None, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A Secret written through a is encrypted in etcd and readable through b.
    a.kubectl_ok(&["create", "secret", "generic", "db", "--from-literal=password=plain-hunter2"]);
    let raw = etcd_value(&etcd, "/registry/core/secrets/default/db");
    assert!(contains(&raw, "k8s:enc:aesgcm:v1:"), "{}", String::from_utf8_lossy(&raw));
    assert!(!contains(&raw, "plain-hunter2") && !contains(&raw, "cGxhaW4taHVudGVyMg"));
    let got = b.kubectl_ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(got.trim(), "cGxhaW4taHVudGVyMg==");
    // The bootstrap data in etcd holds no key in the clear.
    let sealed = etcd_value(&etcd, "/bootstrap/berth");
    assert!(contains(&sealed, "berth-bootstrap-v1") && !contains(&sealed, "PRIVATE KEY"));

    // A wrong token is refused with a clear error; nothing changes in etcd or the data dir.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--datastore-endpoint", &etcd.url()])
        .args(["--token", "wrong"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run berth server");
    assert!(!out.status.success(), "a server with a wrong token started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be decrypted with this --token"), "{stderr}");
    assert!(!dir.path().join("tls").exists(), "the refused server left its own CA behind");
    assert_eq!(etcd_value(&etcd, "/bootstrap/berth"), sealed);
    // The right token then joins from the same data dir.
    let mut c = Command::new(BIN)
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--datastore-endpoint", &etcd.url()])
        .args(["--token", "shared-s3cret"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run berth server");
    let joined = wait_until(Duration::from_secs(30), || {
        berth_testkit::Kubeconfig::read(&dir.path().join("kubeconfig.yaml"))
            .is_ok_and(|k| k.ca_pem == a.kubeconfig().ca_pem)
    });
    let _ = c.kill();
    let _ = c.wait();
    assert!(joined, "the server with the right token did not take the cluster's CA");
}

/// The aesgcm key names of a server's generated encryption configuration, newest first.
fn key_names(s: &TestServer) -> Vec<String> {
    let text = std::fs::read_to_string(s.dir.path().join("cred/encryption-config.json")).unwrap();
    berth_store::encryption::EncryptionConfig::key_names(&text).unwrap()
}

/// `berth secrets-encrypt rotate` on one server of a shared-token etcd cluster: that
/// server starts again (its configuration is a rotation of the cluster's, not a foreign
/// one), publishes the new key before writing with it and re-encrypts; the running server
/// takes the key without a restart and reads what it wrote.
#[test]
fn a_secrets_key_rotated_on_one_server_is_taken_by_the_others_without_a_restart() {
    let Some(etcd) = Etcd::start() else { return };
    let with_token =
        || TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &etcd.url(), "--token", "rotate-s3cret"]);
    let mut a = with_token();
    let mut b = with_token();
    let password = |s: &TestServer, name: &str| {
        s.kubectl_ok(&["get", "secret", name, "-o", "jsonpath={.data.password}"]).trim().to_string()
    };
    a.kubectl_ok(&["create", "secret", "generic", "db", "--from-literal=password=before-rotation"]);
    let old = key_names(&a);
    assert_eq!((old.len(), &old), (1, &key_names(&b)));
    let sealed = etcd_value(&etcd, "/bootstrap/berth");

    assert!(a.signal_and_wait("TERM").success());
    let out = Command::new(BIN)
        .args(["secrets-encrypt", "rotate", "--data-dir"])
        .arg(a.dir.path())
        .output()
        .expect("run berth secrets-encrypt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new = key_names(&a);
    assert_eq!(new.len(), 2);
    assert_eq!(new[1], old[0]);
    a.restart();
    assert!(a.log().contains("published this server's rotated Secrets encryption key"), "{}", a.log());
    assert_ne!(etcd_value(&etcd, "/bootstrap/berth"), sealed);

    // b follows without a restart: its file and its store take the new key.
    assert!(wait_until(Duration::from_secs(30), || key_names(&b) == new), "b kept {:?}\n{}", key_names(&b), b.log());
    assert!(b.log().contains("took the cluster's rotated Secrets encryption key"), "{}", b.log());
    // a re-encrypts the old value with the new key; b reads it, and what a writes next.
    let db = "/registry/core/secrets/default/db";
    assert!(
        wait_until(Duration::from_secs(30), || contains(
            &etcd_value(&etcd, db),
            &format!("k8s:enc:aesgcm:v1:{}:", new[0])
        )),
        "not re-encrypted: {}",
        a.log()
    );
    assert_eq!(password(&b, "db"), "YmVmb3JlLXJvdGF0aW9u");
    a.kubectl_ok(&["create", "secret", "generic", "after", "--from-literal=password=after-rotation"]);
    assert_eq!(password(&b, "after"), "YWZ0ZXItcm90YXRpb24=");
    let raw = etcd_value(&etcd, "/registry/core/secrets/default/after");
    assert!(contains(&raw, &new[0]) && !contains(&raw, "after-rotation"));
    // Both start again on their files.
    assert!(b.signal_and_wait("TERM").success());
    b.restart();
    assert_eq!(password(&b, "after"), "YWZ0ZXItcm90YXRpb24=");
    assert!(a.signal_and_wait("TERM").success());
    a.restart();
    assert_eq!(password(&a, "db"), "YmVmb3JlLXJvdGF0aW9u");
}

/// Without `--token` (nothing to share the key with), a server on etcd still encrypts
/// Secrets, with its own key in its data dir: neither the value nor its base64 is
/// anywhere in etcd.
#[test]
fn a_server_on_etcd_without_a_token_encrypts_secrets_with_its_own_key() {
    let Some(etcd) = Etcd::start() else { return };
    let mut s = server_on(&etcd);
    s.kubectl_ok(&["create", "secret", "generic", "lone", "--from-literal=password=lone-etcd-value-5521"]);
    s.kubectl_ok(&["create", "configmap", "control", "--from-literal=k=control-etcd-value-8812"]);
    let config = s.dir.path().join("cred/encryption-config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).expect("config").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["get", "", "--prefix"])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl: {}", String::from_utf8_lossy(&out.stderr));
    let dump = out.stdout;
    assert!(contains(&dump, "control-etcd-value-8812"), "the control value is not in the dump");
    assert!(contains(&dump, "/registry/core/secrets/default/lone"), "the secret is not in the dump");
    assert!(!contains(&dump, "lone-etcd-value-5521"), "the secret is in etcd in the clear");
    assert!(!contains(&dump, "bG9uZS1ldGNkLXZhbHVlLTU1MjE="), "the secret's base64 is in etcd");
    let raw = etcd_value(&etcd, "/registry/core/secrets/default/lone");
    assert!(contains(&raw, &format!("k8s:enc:aesgcm:v1:{}:", key_names(&s)[0])));
    assert!(!s.log().contains("stored unencrypted"), "{}", s.log());
    // The key stays: a restart reads the Secret.
    assert!(s.signal_and_wait("TERM").success());
    s.restart();
    let got = s.kubectl_ok(&["get", "secret", "lone", "-o", "jsonpath={.data.password}"]);
    assert_eq!(got.trim(), "bG9uZS1ldGNkLXZhbHVlLTU1MjE=");
}
