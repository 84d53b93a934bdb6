//! Secrets at rest: the embedded store holds Secrets encrypted (neither the value nor its
//! base64 is anywhere in the data dir), kubectl still reads them, the key rotates, and a
//! bad encryption configuration stops the server with a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};

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
