//! `berth server` with no flags: the documented defaults (data dir, port 6443, bind
//! 127.0.0.1, kubeconfig in the data dir) for a user who is not root.
//!
//! Run as root, the default data dir is `/var/lib/berth/server`, the dir a real cluster on
//! this machine would use: the test does not touch it, and runs the server as the unprivileged
//! user `nobody` with its own `HOME` instead, which is the other documented default.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_testkit::{KUBECTL, wait_until};

/// uid and gid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// The server process; stopped with SIGTERM (then SIGKILL) when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        if !wait_until(Duration::from_secs(10), || matches!(self.0.try_wait(), Ok(Some(_)))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The berth binary where `nobody` may run it: the build's own path may sit under a
/// directory only root can enter (a clone in /root), so it is linked (or copied) into `dir`.
fn runnable_copy(dir: &Path) -> PathBuf {
    let exe = dir.join("berth");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_berth"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_berth"), &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

#[test]
fn without_flags_a_user_gets_a_data_dir_in_home_port_6443_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = runnable_copy(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();

    let occupied = std::net::TcpListener::bind("127.0.0.1:6443").is_err();
    assert!(!occupied, "port 6443 is taken on this machine: the default port cannot be tested");

    let _server = Server(
        Command::new("setpriv")
            .args([&format!("--reuid={NOBODY}"), &format!("--regid={NOBODY}"), "--clear-groups", "--inh-caps=-all"])
            .arg(&exe)
            .args(["server", "--disable-agent"])
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("BERTH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let server_log = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();

    let data_dir = home.join(".local/share/berth/server");
    let kubeconfig = data_dir.join("kubeconfig.yaml");
    assert!(
        wait_until(Duration::from_secs(60), || kubeconfig.exists()),
        "no kubeconfig at {}:\n{}",
        kubeconfig.display(),
        server_log()
    );
    let meta = std::fs::metadata(&data_dir).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), NOBODY, "the data dir belongs to the user");

    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(config.contains("server: https://127.0.0.1:6443"), "{config}");

    // Bound to loopback only: the port answers on 127.0.0.1 and nothing listens on the
    // wildcard address for it.
    let listeners = Command::new("ss").args(["-Hltn", "sport = :6443"]).output().unwrap();
    let listeners = String::from_utf8_lossy(&listeners.stdout);
    let locals: Vec<&str> = listeners.lines().filter_map(|l| l.split_whitespace().nth(3)).collect();
    assert_eq!(locals, ["127.0.0.1:6443"], "{listeners}");

    let ready = wait_until(Duration::from_secs(60), || {
        Command::new(KUBECTL)
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(ready, "the server never became ready:\n{}", server_log());
    let out = Command::new(KUBECTL)
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "get", "namespace", "kube-system", "-o", "name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "namespace/kube-system");
}
