//! Secrets at rest: the embedded store holds Secrets encrypted (neither the value nor its
//! base64 is anywhere in the data dir), kubectl still reads them, the key rotates, and a
//! bad encryption configuration stops the server with a clear error. On a real node, a
//! Secret given to a container as environment variables reaches containerd's state only on
//! the agent's tmpfs, which a normal stop unmounts and `--keep-pods` keeps for the next agent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use common::{Node, TIMEOUT, apply, busybox_pod, wait_pod};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const SECRET_VALUE: &str = "Zq8-unique-plaintext-7731";
/// base64 of SECRET_VALUE, as a Secret's `data` holds it.
const SECRET_BASE64: &str = "WnE4LXVuaXF1ZS1wbGFpbnRleHQtNzczMQ==";
const CONFIGMAP_VALUE: &str = "cm-visible-9931";

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend(bytes);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn store_bytes(s: &TestServer) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["state.db", "state.db-wal"] {
        bytes.extend(std::fs::read(s.dir.path().join(name)).unwrap_or_default());
    }
    bytes
}

fn key_names(config: &Path) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(config).expect("config")).expect("json");
    v["resources"][0]["providers"][0]["aesgcm"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn secret_value(s: &TestServer) -> String {
    s.kubectl_ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"])
}

#[test]
fn secrets_are_encrypted_on_disk_and_the_key_rotates() {
    let mut s = TestServer::start(Path::new(BIN));
    s.kubectl_ok(&["create", "secret", "generic", "db", &format!("--from-literal=password={SECRET_VALUE}")]);
    s.kubectl_ok(&["create", "configmap", "plain", &format!("--from-literal=k={CONFIGMAP_VALUE}")]);
    assert_eq!(secret_value(&s), SECRET_BASE64);
    s.signal_and_wait("TERM");

    let config: PathBuf = s.dir.path().join("cred/encryption-config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).expect("config").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let on_disk = all_bytes(s.dir.path());
    // The ConfigMap is stored as it is: the search would find a value that is there.
    assert!(contains(&on_disk, CONFIGMAP_VALUE), "the control value is not on disk");
    assert!(!contains(&on_disk, SECRET_VALUE), "the secret is on disk in the clear");
    assert!(!contains(&on_disk, SECRET_BASE64), "the secret's base64 is on disk");
    let old_keys = key_names(&config);
    assert_eq!(old_keys.len(), 1);
    assert!(contains(&store_bytes(&s), &old_keys[0]), "values name the key that wrote them");

    // Rotation: a new key first; the restarted server re-encrypts with it.
    let out = Command::new(BIN)
        .args(["secrets-encrypt", "rotate", "--data-dir"])
        .arg(s.dir.path())
        .output()
        .expect("run berth secrets-encrypt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let keys = key_names(&config);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1], old_keys[0]);
    s.restart();
    assert!(
        wait_until(Duration::from_secs(30), || s.log().contains("re-encrypted values with the current key")),
        "{}",
        s.log()
    );
    assert_eq!(secret_value(&s), SECRET_BASE64);
    s.signal_and_wait("TERM");
    let stored = store_bytes(&s);
    assert!(contains(&stored, &keys[0]), "nothing is written with the new key");
    assert!(!contains(&all_bytes(s.dir.path()), SECRET_BASE64));
    s.restart();
    assert_eq!(secret_value(&s), SECRET_BASE64);
}

#[test]
fn a_bad_encryption_configuration_stops_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("enc.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: [{aescbc: {keys: [{name: k, secret: c2VjcmV0IGlzIHNlY3VyZQ==}]}}]\n",
    )
    .expect("write config");
    let out = Command::new(BIN)
        .args(["server", "--disable-agent", "--https-listen-port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--encryption-provider-config")
        .arg(&config)
        .output()
        .expect("run berth server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("provider aescbc is not supported"), "{err}");
    assert!(!dir.path().join("data/kubeconfig.yaml").exists(), "the server started anyway");
}

/// Every byte of every regular file under `dir` on `dir`'s own filesystem (as `find -xdev`:
/// what is on the disk, not on the tmpfs mounts below it), save the files `skip` accepts.
fn disk_bytes(dir: &Path, skip: impl Fn(&Path) -> bool) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(dir).expect("data dir").dev();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.dev() != device || skip(&path) {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                out.extend(bytes);
            }
        }
    }
    out
}

/// The mount points at or under `dir` with their filesystem types (/proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let dir = dir.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|l| {
            let (fields, after) = l.split_once(" - ")?;
            let point = fields.split(' ').nth(4)?;
            (point == dir || point.starts_with(&format!("{dir}/")))
                .then(|| (point.to_string(), after.split(' ').next().unwrap_or_default().to_string()))
        })
        .collect()
}

/// containerd's metadata store (bbolt, on disk under its root): the CRI plugin keeps each
/// container's spec there, environment included, as containerd does on any Kubernetes node.
fn is_containerd_metadata(path: &Path) -> bool {
    path.ends_with("io.containerd.metadata.v1.bolt/meta.db")
}

const ENV_VALUE: &str = "Kx3-env-secret-value-5521";
/// base64 of ENV_VALUE.
const ENV_BASE64: &str = "S3gzLWVudi1zZWNyZXQtdmFsdWUtNTUyMQ==";
const ENV_FROM_VALUE: &str = "Pw7-envfrom-secret-9087";
/// base64 of ENV_FROM_VALUE.
const ENV_FROM_BASE64: &str = "UHc3LWVudmZyb20tc2VjcmV0LTkwODc=";

#[test]
fn secrets_in_environment_variables_stay_off_the_disk_of_a_real_node() {
    let s = TestServer::start(Path::new(BIN));
    let Some(mut node) = Node::start(&s, 34) else { return };
    let data = node.dir.path().join("data");
    let run = data.join("containerd/run");
    let run_str = run.to_string_lossy().into_owned();
    assert_eq!(mounts_under(&run), [(run_str.clone(), "tmpfs".to_string())], "one tmpfs for containerd's state");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&run).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    s.kubectl_ok(&["create", "secret", "generic", "env-one", &format!("--from-literal=password={ENV_VALUE}")]);
    s.kubectl_ok(&["create", "secret", "generic", "env-all", &format!("--from-literal=TOKEN={ENV_FROM_VALUE}")]);
    // The container prints each value in two halves (split at its first '-'): its log on
    // the node's disk shows that the values arrived without holding them whole.
    let script = r#"echo "one=${PASSWORD%%-*} ${PASSWORD#*-}"; echo "all=${TOKEN%%-*} ${TOKEN#*-}"; exec sleep 3600"#;
    let pod = busybox_pod(
        "env-secrets",
        &node,
        json!({
            "command": ["sh", "-c", script],
            "env": [{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "env-one", "key": "password" } } }],
            "envFrom": [{ "secretRef": { "name": "env-all" } }],
        }),
        "Always",
    );
    apply(&s, &pod);
    wait_pod(&s, &node, "env-secrets", "ran", |p| p["status"]["phase"] == "Running");
    let (a, b) = ENV_VALUE.split_once('-').unwrap();
    let (c, d) = ENV_FROM_VALUE.split_once('-').unwrap();
    let expected = format!("one={a} {b}\nall={c} {d}");
    let mut logs = String::new();
    let printed = wait_until(TIMEOUT, || {
        logs = String::from_utf8_lossy(&s.kubectl(&["logs", "env-secrets"]).stdout).into_owned();
        logs.contains(&expected)
    });
    assert!(printed, "the container did not see the values: {logs:?}\nagent log:\n{}", node.log());

    // The values are in the runc bundle's config.json, on the tmpfs.
    let in_memory = disk_bytes(&run, |_| false);
    assert!(contains(&in_memory, ENV_VALUE), "the bundle (on the tmpfs) holds the environment");

    let server_disk = disk_bytes(s.dir.path(), |_| false);
    let node_disk = disk_bytes(node.dir.path(), is_containerd_metadata);
    // Known, as on any Kubernetes node: containerd's bbolt metadata holds the container's
    // spec, its environment included (ARCHITECTURE.md, Known gaps). Only that file does.
    let metadata = disk_bytes(node.dir.path(), |p| p.is_file() && !is_containerd_metadata(p));
    assert!(contains(&metadata, ENV_VALUE), "containerd's meta.db no longer holds the environment: update the docs");
    // A control: the search finds what is on the disk (a line of the pod's log).
    assert!(contains(&node_disk, &format!("one={a} {b}")), "the control value is not on the node's disk");
    for value in [ENV_VALUE, ENV_BASE64, ENV_FROM_VALUE, ENV_FROM_BASE64] {
        assert!(!contains(&server_disk, value), "{value} is in the server's data dir");
        assert!(!contains(&node_disk, value), "{value} is in the node's data dir");
    }

    // A normal stop removes the pods, then unmounts the tmpfs: nothing stays mounted.
    node.stop();
    let left = mounts_under(node.dir.path());
    assert!(left.is_empty(), "mounts left after the agent stopped: {left:?}\nagent log:\n{}", node.log());
    assert!(!node.log().contains("detached it lazily"), "{}", node.log());
}

#[test]
fn a_kept_node_keeps_its_state_tmpfs_for_the_next_agent() {
    let s = TestServer::start(Path::new(BIN));
    let Some(mut node) = Node::start_with(&s, 35, &["--keep-pods"]) else { return };
    let run = node.dir.path().join("data/containerd/run");
    apply(&s, &busybox_pod("kept", &node, json!({ "command": ["sleep", "3600"] }), "Always"));
    let before = wait_pod(&s, &node, "kept", "ran", |p| p["status"]["phase"] == "Running");
    node.stop();
    // The shims work in the bundles on the tmpfs: it stays (with the pod's mounts below it).
    let kept = mounts_under(&run);
    assert_eq!(kept.iter().filter(|(p, _)| run.as_os_str() == p.as_str()).count(), 1, "{kept:?}");
    // The next agent reuses it (no second tmpfs on top) and adopts the pod.
    node.spawn(&s, &[]);
    assert!(wait_until(TIMEOUT, || node.log().contains("adopted a running pod")), "agent log:\n{}", node.log());
    let after = wait_pod(&s, &node, "kept", "stayed Running", |p| p["status"]["phase"] == "Running");
    let id = |p: &serde_json::Value| p["status"]["containerStatuses"][0]["containerID"].clone();
    assert_eq!(id(&after), id(&before));
    let mounted = mounts_under(&run);
    assert_eq!(mounted.iter().filter(|(p, _)| run.as_os_str() == p.as_str()).count(), 1, "stacked: {mounted:?}");
    // This agent stops normally: its pods go, and so does the tmpfs.
    node.stop();
    assert!(mounts_under(&run).is_empty(), "{:?}\nagent log:\n{}", mounts_under(&run), node.log());
    assert_eq!(mounts_under(node.dir.path()), Vec::<(String, String)>::new());
}
