//! Native snapshots (`berth datastore snapshot save/restore`) against real servers: a
//! SQLite copy of a running server taken while it is being written to restores into a
//! server that serves every object with the same resourceVersion; an etcd snapshot taken
//! the same way restores with etcd's own tool into an etcd a server serves the same
//! objects from, and with berth into an embedded store (same objects, resourceVersions in
//! the same order); bad input (a data dir with a store, corrupt, truncated and foreign
//! files, a truncated etcd snapshot) is refused clearly and leaves nothing behind; and of two servers on one etcd only the controller-manager leader takes
//! scheduled snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use berth_testkit::{Etcd, TestServer, wait_until};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Runs `berth datastore ARGS`; returns (success, stderr).
fn datastore(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).arg("datastore").args(args).stdin(Stdio::null()).output().expect("run berth datastore");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn create_configmap(s: &TestServer, name: &str) {
    let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": name } });
    let (status, v) = s.http_json("POST", CONFIGMAPS, Some(&body));
    assert_eq!(status, 201, "creating {name}: {v}");
}

/// Every `cm-*` ConfigMap the server has, name → resourceVersion.
fn configmap_versions(s: &TestServer) -> BTreeMap<String, u64> {
    let (status, list) = s.http_json("GET", CONFIGMAPS, None);
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| {
            let name = i["metadata"]["name"].as_str()?;
            let rv = i["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
            name.starts_with("cm-").then(|| (name.to_string(), rv))
        })
        .collect()
}

/// Creates `cm-0..cm-{before}`, then saves a snapshot with `save` while another thread
/// keeps creating ConfigMaps; returns the names created before the save began.
fn save_during_writes(s: &TestServer, before: usize, save: impl FnOnce()) -> Vec<String> {
    let names: Vec<String> = (0..before).map(|i| format!("cm-{i:04}")).collect();
    for name in &names {
        create_configmap(s, name);
    }
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = before;
            while !stop.load(Ordering::SeqCst) {
                create_configmap(s, &format!("cm-{i:04}"));
                written.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        });
        // The save starts while writes are flowing.
        assert!(wait_until(Duration::from_secs(30), || written.load(Ordering::SeqCst) >= 5), "no concurrent writes");
        save();
        // And they go on after it: the server was never stopped.
        let after = written.load(Ordering::SeqCst);
        assert!(
            wait_until(Duration::from_secs(30), || written.load(Ordering::SeqCst) >= after + 5),
            "writes stopped during the save"
        );
        stop.store(true, Ordering::SeqCst);
    });
    names
}

/// The restored objects are those of one revision of the source: every object the
/// source had at or below the newest restored resourceVersion, with that same version,
/// and nothing else; and at least everything created before the save began.
fn assert_consistent_copy(source: &BTreeMap<String, u64>, restored: &BTreeMap<String, u64>, before: &[String]) {
    for name in before {
        assert!(restored.contains_key(name), "{name}, created before the save, was not restored");
    }
    let newest = restored.values().copied().max().expect("objects restored");
    for (name, rv) in restored {
        assert_eq!(source.get(name), Some(rv), "{name}: restored at {rv}, the source has {:?}", source.get(name));
    }
    for (name, rv) in source.iter().filter(|(_, rv)| **rv <= newest) {
        assert!(restored.contains_key(name), "{name} (rv {rv} <= {newest}) is missing: not one revision");
    }
    assert!(restored.len() > before.len(), "no object written during the save was in the copy");
}

#[test]
fn sqlite_snapshot_of_a_running_server_restores_every_object_with_its_resource_version() {
    let s = TestServer::start(Path::new(BIN));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("snap.db");
    let before = save_during_writes(&s, 20, || {
        let (ok, err) = datastore(&["snapshot", "save", "--data-dir", path_str(s.dir.path()), path_str(&file)]);
        assert!(ok && err.contains("native snapshot"), "{err}");
    });
    let source = configmap_versions(&s);
    assert!(std::fs::read(&file).unwrap().starts_with(b"SQLite format 3\0"), "not a SQLite file");
    assert!(!work.path().join("snap.db.partial").exists());

    let restored_dir = work.path().join("restored");
    let key = s.dir.path().join("cred/encryption-config.json");
    let (ok, err) = datastore(&[
        "snapshot",
        "restore",
        "--data-dir",
        path_str(&restored_dir),
        "--encryption-provider-config",
        path_str(&key),
        path_str(&file),
    ]);
    assert!(ok && err.contains("same resourceVersions"), "{err}");
    let restored = TestServer::start_with(
        Path::new(BIN),
        &[
            "--datastore-endpoint",
            &format!("sqlite:{}", path_str(&restored_dir.join("state.db"))),
            "--encryption-provider-config",
            path_str(&restored_dir.join("cred/encryption-config.json")),
        ],
    );
    assert_consistent_copy(&source, &configmap_versions(&restored), &before);
    // The restored server is a working one: it takes writes after the restored revision.
    create_configmap(&restored, "cm-after-restore");
    let after = configmap_versions(&restored);
    let newest_restored = after.iter().filter(|(n, _)| *n != "cm-after-restore").map(|(_, rv)| *rv).max().unwrap();
    assert!(after["cm-after-restore"] > newest_restored, "{after:?}");
}

/// The peer URL of the only member of `etcd`, from `etcdctl member list`.
fn peer_url(etcd: &Etcd) -> String {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoints().join(",")))
        .args(["member", "list"])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(',').map(str::trim).find(|f| f.starts_with("http://")).expect("a peer URL").to_string()
}

#[test]
fn etcd_snapshot_of_a_running_server_restores_into_etcd_with_the_same_resource_versions() {
    let Some(etcd) = Etcd::start() else { return };
    let s = TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &etcd.url()]);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("etcd.snap");
    let before = save_during_writes(&s, 20, || {
        let (ok, err) = datastore(&["snapshot", "save", "--datastore-endpoint", &etcd.url(), path_str(&file)]);
        assert!(ok && err.contains("native snapshot"), "{err}");
    });
    let source = configmap_versions(&s);
    drop(s);

    // The file is etcd's own snapshot: etcdctl checks its hash and status.
    let status = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .expect("run etcdctl");
    assert!(status.status.success(), "etcdctl snapshot status: {}", String::from_utf8_lossy(&status.stderr));

    // etcd's tool restores it into a new etcd (the member's data dir replaced), which a
    // server then serves with the same resourceVersions.
    let Some(mut target) = Etcd::start() else { return };
    let peer = peer_url(&target);
    target.stop();
    let member_dir = target.dir().join("m0");
    std::fs::remove_dir_all(&member_dir).unwrap();
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&member_dir)
        .args(["--name", "m0", "--initial-cluster", &format!("m0={peer}"), "--initial-advertise-peer-urls", &peer])
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
    target.restart();
    let restored = TestServer::start_with(Path::new(BIN), &["--datastore-endpoint", &target.url()]);
    let on_etcd = configmap_versions(&restored);
    assert_consistent_copy(&source, &on_etcd, &before);

    // berth restores the same file into an embedded store (through a temporary etcd that
    // unpacks it): the same objects, their resourceVersions in the same order.
    let embedded = work.path().join("embedded");
    let (ok, err) = datastore(&["snapshot", "restore", "--data-dir", path_str(&embedded), path_str(&file)]);
    assert!(ok && err.contains("resourceVersions in the same order"), "{err}");
    let on_sqlite = TestServer::start_with(
        Path::new(BIN),
        &["--datastore-endpoint", &format!("sqlite:{}", path_str(&embedded.join("state.db")))],
    );
    let by_version = |objects: &BTreeMap<String, u64>| {
        let mut names: Vec<(u64, String)> = objects.iter().map(|(n, rv)| (*rv, n.clone())).collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
    };
    assert_eq!(by_version(&configmap_versions(&on_sqlite)), by_version(&on_etcd));
}

/// A valid native snapshot of a small running server, in `dir`.
fn small_snapshot(dir: &Path) -> PathBuf {
    let s = TestServer::start(Path::new(BIN));
    create_configmap(&s, "cm-small");
    let file = dir.join("good.db");
    let (ok, err) = datastore(&["snapshot", "save", "--data-dir", path_str(s.dir.path()), path_str(&file)]);
    assert!(ok, "{err}");
    file
}

/// Restores `file` into `data_dir`, which must fail with `expect` in its message.
fn refused(data_dir: &Path, file: &Path, expect: &str) {
    let (ok, err) = datastore(&["snapshot", "restore", "--data-dir", path_str(data_dir), path_str(file)]);
    assert!(!ok, "restoring {} succeeded: {err}", file.display());
    assert!(err.contains(expect), "restoring {}: want {expect:?}, got: {err}", file.display());
}

#[test]
fn restore_refuses_bad_input_and_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let good = small_snapshot(work.path());
    let bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() >= 4 * 4096, "{} bytes", bytes.len());

    // A data dir that already has a store: refused, the store untouched.
    let taken = work.path().join("taken");
    let (ok, err) = datastore(&["snapshot", "restore", "--data-dir", path_str(&taken), path_str(&good)]);
    assert!(ok, "{err}");
    let db = std::fs::read(taken.join("state.db")).unwrap();
    refused(&taken, &good, "already exists");
    assert_eq!(std::fs::read(taken.join("state.db")).unwrap(), db, "the existing store changed");

    // A data dir with leftovers of a store (its WAL) counts as having one.
    let wal_only = work.path().join("wal-only");
    std::fs::create_dir_all(&wal_only).unwrap();
    std::fs::write(wal_only.join("state.db-wal"), b"x").unwrap();
    refused(&wal_only, &good, "already exists");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.db", bytes[..bytes.len() / 2].to_vec(), "not a usable berth store"),
        ("header-only.db", bytes[..100].to_vec(), "not a usable berth store"),
        (
            "corrupt.db",
            {
                // Garbage over the pages after the first (tables and indexes).
                let mut b = bytes.clone();
                for byte in &mut b[4096..3 * 4096] {
                    *byte = 0xA5;
                }
                b
            },
            "not a usable berth store",
        ),
        ("text.txt", b"hello\n".to_vec(), "is not a berth snapshot"),
        ("empty", Vec::new(), "is not a berth snapshot"),
        ("logical-garbage.jsonl", b"{\"format\":\"something-else\"}\n".to_vec(), "is not a berth snapshot"),
        (
            "etcd-truncated.snap",
            {
                // A bbolt header (magic at offset 16) without the rest.
                let mut b = vec![0u8; 8192];
                b[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
                b
            },
            "not a usable one",
        ),
    ];
    for (name, content, expect) in cases {
        let file = work.path().join(name);
        std::fs::write(&file, content).unwrap();
        // Into a new dir: the dir is not created.
        let fresh = work.path().join(format!("into-{name}"));
        refused(&fresh, &file, expect);
        assert!(!fresh.exists(), "{name}: {} was left behind", fresh.display());
        // Into an existing dir (say one that keeps the old server's tls/): only what was there stays.
        let existing = work.path().join(format!("existing-{name}"));
        std::fs::create_dir_all(existing.join("tls")).unwrap();
        refused(&existing, &file, expect);
        let left: Vec<String> =
            std::fs::read_dir(&existing).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, ["tls"], "{name}: left behind");
    }
    // A live store (its WAL beside it) is not a snapshot: its newest commits may be in the WAL.
    let live = work.path().join("live.db");
    std::fs::copy(&good, &live).unwrap();
    std::fs::write(work.path().join("live.db-wal"), b"").unwrap();
    refused(&work.path().join("l"), &live, "live store");
    assert!(!work.path().join("l").exists());
    // A missing file.
    refused(&work.path().join("m"), &work.path().join("missing.db"), "opening");
    assert!(!work.path().join("m").exists());
}

/// Whether this server's log says it became the leader of `lease`.
fn leads(s: &TestServer, lease: &str) -> bool {
    s.log().lines().any(|l| l.contains("became leader") && l.contains(&format!("lease={lease}")))
}

/// The scheduled snapshots in `dir` (whole ones, not `.partial`/`.etcd` files being written).
fn scheduled(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|f: &PathBuf| f.extension().is_none())
        .collect();
    files.sort();
    files
}

#[test]
fn scheduled_snapshots_on_a_shared_etcd_are_taken_by_the_leader_only() {
    let Some(etcd) = Etcd::start() else { return };
    let flags = ["--datastore-endpoint", &etcd.url(), "--snapshot-cron", "* * * * * *", "--snapshot-retention", "50"];
    let mut a = TestServer::start_with(Path::new(BIN), &flags);
    let mut b = TestServer::start_with(Path::new(BIN), &flags);
    let lease = "kube-controller-manager";
    assert!(
        wait_until(Duration::from_secs(60), || leads(&a, lease) || leads(&b, lease)),
        "no leader:\n{}\n{}",
        a.log(),
        b.log()
    );
    let a_leads = leads(&a, lease);
    let (leader, follower) = if a_leads { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let (leader_dir, follower_dir) = (leader.dir.path().join("snapshots"), follower.dir.path().join("snapshots"));
    assert!(
        wait_until(Duration::from_secs(60), || scheduled(&leader_dir).len() >= 3),
        "the leader took {:?}:\n{}",
        scheduled(&leader_dir),
        leader.log()
    );
    assert_eq!(scheduled(&follower_dir), Vec::<PathBuf>::new(), "the follower took snapshots too");
    // Each is etcd's own snapshot.
    let newest = scheduled(&leader_dir).pop().unwrap();
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status"])
        .arg(&newest)
        .output()
        .expect("run etcdctl");
    assert!(out.status.success(), "etcdctl snapshot status: {}", String::from_utf8_lossy(&out.stderr));

    // When the leader dies, the server that takes its Lease over takes the snapshots.
    leader.signal_and_wait("KILL");
    assert!(
        wait_until(Duration::from_secs(90), || scheduled(&follower_dir).len() >= 2),
        "the new leader took {:?}:\n{}",
        scheduled(&follower_dir),
        follower.log()
    );
    assert!(leads(follower, lease), "{}", follower.log());
}
