//! containerd as a child process: a config of its own under the data dir (root, state,
//! sockets, CNI conf dir; `restrict_oom_score_adj`, which root without CAP_SYS_RESOURCE
//! needs), started with `containerd --config`, waited for on its socket, stopped by PID.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{Error, Result, io_err};

/// The image containerd's CRI plugin uses for pod sandboxes (built by [`super::images`]).
pub const PAUSE_IMAGE: &str = "localhost/pause:1";

/// The paths of one containerd instance under a data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory everything is under.
    pub dir: PathBuf,
}

impl Layout {
    /// The layout under `data_dir/containerd`.
    pub fn new(data_dir: &Path) -> Layout {
        Layout { dir: data_dir.join("containerd") }
    }
    /// The gRPC socket (CRI and containerd's own API).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    /// The generated config file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// Where CNI network configs are read from.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }
    /// host-local IPAM's allocations.
    pub fn cni_data_dir(&self) -> PathBuf {
        self.dir.join("cni/data")
    }
    /// containerd's log file.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// The runc state root.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc-root")
    }
}

/// The containerd config for `layout` (TOML, version 2).
pub fn render_config(layout: &Layout) -> String {
    let d = layout.dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        sock = layout.socket().display(),
        runc = layout.runc_root().display(),
        cni = layout.cni_conf_dir().display(),
    )
}

/// A containerd we started; stop it with [`Containerd::stop`] (dropping it kills it too).
#[derive(Debug)]
pub struct Containerd {
    /// Its paths.
    pub layout: Layout,
    child: Option<Child>,
}

impl Containerd {
    /// Writes the config under `data_dir`, starts containerd and waits (up to 30 s) for its socket.
    pub async fn start(data_dir: &Path) -> Result<Containerd> {
        super::check_packages()?;
        let layout = Layout::new(data_dir);
        for dir in [layout.dir.clone(), layout.cni_conf_dir(), layout.cni_data_dir()] {
            tokio::fs::create_dir_all(&dir).await.map_err(io_err("creating", &dir))?;
        }
        let config = layout.config_file();
        tokio::fs::write(&config, render_config(&layout)).await.map_err(io_err("writing", &config))?;
        let _ = tokio::fs::remove_file(layout.socket()).await;
        let log_path = layout.log_file();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("opening", &log_path))?;
        let log2 = log.try_clone().map_err(io_err("opening", &log_path))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Command { program: "containerd".into(), message: e.to_string() })?;
        let mut containerd = Containerd { layout, child: Some(child) };
        containerd.wait_ready(Duration::from_secs(30)).await?;
        Ok(containerd)
    }

    /// Waits until the socket answers `ctr version`.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let socket = self.layout.socket();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Command {
                    program: "containerd".into(),
                    message: format!("exited with {status}; see {}", self.layout.log_file().display()),
                });
            }
            if socket.exists() {
                let ok = Command::new("ctr")
                    .arg("-a")
                    .arg(&socket)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { socket, seconds: timeout.as_secs(), log: self.layout.log_file() });
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Stops containerd: SIGTERM by PID, SIGKILL after 10 s.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_everything_under_the_data_dir() {
        let layout = Layout::new(Path::new("/d"));
        let config = render_config(&layout);
        assert!(config.contains("root = \"/d/containerd/root\""), "{config}");
        assert!(config.contains("address = \"/d/containerd/containerd.sock\""), "{config}");
        assert!(config.contains("restrict_oom_score_adj = true"), "{config}");
        assert!(config.contains("conf_dir = \"/d/containerd/cni/net.d\""), "{config}");
        assert!(config.contains("sandbox_image = \"localhost/pause:1\""), "{config}");
        assert!(!config.contains("/var/lib/containerd"), "{config}");
    }
}
