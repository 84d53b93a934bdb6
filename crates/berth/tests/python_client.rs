//! The official Kubernetes Python client (PyPI `kubernetes`) against a real server.
//! `scripts/install-test-tools.sh` installs it into a virtualenv under target/tools
//! (`scripts/test.sh` runs it and points `BERTH_PYTHON` at it).

use std::path::Path;
use std::process::Command;

use berth_testkit::TestServer;

#[test]
fn official_python_client_crud_and_watch() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/pyenv/bin/python");
    let python = std::env::var("BERTH_PYTHON").unwrap_or_else(|_| default.to_string_lossy().into_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/official_client.py");
    let out = Command::new(&python).arg(&script).arg(&s.kubeconfig).output().expect("run python");
    assert!(
        out.status.success(),
        "{python} {}: {}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
