//! containerd as a child process: a config of its own under the data dir (root, state,
//! sockets, CNI conf dir; `restrict_oom_score_adj`, which root without CAP_SYS_RESOURCE
//! needs), started with `containerd --config`, waited for on its socket, stopped by PID.
//! It gets SIGTERM when the agent dies, even by SIGKILL (a parent-death signal set by
//! util-linux's `setpriv` before it execs containerd); the shims and their pods outlive it,
//! for the next agent to adopt.
//! Its `state` dir and runc's root (the runc bundles' `config.json` with the containers'
//! environment, Secret values from `secretKeyRef` included, and runc's `state.json`) live on
//! a tmpfs of their own, as the kubelet's containerd keeps them under `/run`.

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
    /// The memory-backed directory ([`ensure_tmpfs`]) holding containerd's state and
    /// runc's root.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// containerd's `state` dir (the runc bundles, the shims' files, the pods' netns mounts).
    pub fn state_dir(&self) -> PathBuf {
        self.run_dir().join("state")
    }
    /// The runc state root.
    pub fn runc_root(&self) -> PathBuf {
        self.run_dir().join("runc")
    }
}

/// The containerd config for `layout` (TOML, version 2).
pub fn render_config(layout: &Layout) -> String {
    let d = layout.dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{state}"
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
        state = layout.state_dir().display(),
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
        let began = Instant::now();
        super::check_packages()?;
        let layout = Layout::new(data_dir);
        for dir in [layout.dir.clone(), layout.cni_conf_dir(), layout.cni_data_dir(), layout.run_dir()] {
            tokio::fs::create_dir_all(&dir).await.map_err(io_err("creating", &dir))?;
        }
        ensure_tmpfs(&layout.run_dir()).await?;
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
        let child = containerd_command(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Command { program: "containerd".into(), message: e.to_string() })?;
        let mut containerd = Containerd { layout, child: Some(child) };
        containerd.wait_ready(Duration::from_secs(30)).await?;
        // `berth bench pods` reads this line (`containerd_start_ms`).
        tracing::info!(ready_ms = began.elapsed().as_millis() as u64, "containerd ready");
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

    /// Stops containerd (see [`Containerd::stop_keeping_state`]), then unmounts the tmpfs
    /// of its state ([`release_tmpfs`]): for a stop after the pods were removed.
    pub async fn stop(mut self) {
        self.stop_process().await;
        release_tmpfs(&self.layout.run_dir()).await;
    }

    /// Stops containerd and keeps its state's tmpfs mounted: the kept pods' shims work in
    /// it, and the next containerd on this data dir finds them there (`--keep-pods`).
    pub async fn stop_keeping_state(mut self) {
        self.stop_process().await;
    }

    /// SIGTERM by PID, SIGKILL after 10 s.
    async fn stop_process(&mut self) {
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

/// util-linux's `setpriv`, which sets the parent-death signal and execs the command.
const SETPRIV: &str = "/usr/bin/setpriv";

/// `containerd --config CONFIG`, under `setpriv --pdeathsig TERM` when there is one: the
/// kernel sends containerd SIGTERM when the thread that started it ends, which is when the
/// agent dies (it starts containerd from a thread that lives as long as the agent: the main
/// thread or a runtime worker). Without setpriv (no util-linux) containerd outlives a killed
/// agent.
fn containerd_command(config: &Path) -> Command {
    let mut command = if Path::new(SETPRIV).exists() {
        let mut c = Command::new(SETPRIV);
        c.args(["--pdeathsig", "TERM", "--", "containerd"]);
        c
    } else {
        Command::new("containerd")
    };
    command.arg("--config").arg(config);
    command
}

/// The size limit of the tmpfs under [`Layout::run_dir`]: a container's bundle, runc state
/// and shim files take a few KiB (its root filesystem is an overlay mount, not in it).
const RUN_TMPFS_SIZE: &str = "64m";

/// `statfs`'s `f_type` of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Makes `dir` memory-backed: nothing if it already is on a tmpfs (the data dir under a
/// tmpfs `/run`, or the tmpfs an earlier agent mounted here and kept for its pods: reused,
/// not stacked), else a tmpfs of its own, mode 0700, of at most [`RUN_TMPFS_SIZE`].
async fn ensure_tmpfs(dir: &Path) -> Result<()> {
    if on_tmpfs(dir) {
        return Ok(());
    }
    let options = format!("mode=0700,size={RUN_TMPFS_SIZE},nosuid,nodev");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .output()
        .await
        .map_err(|e| Error::Command { program: "mount".into(), message: e.to_string() })?;
    if !out.status.success() {
        let message = format!("a tmpfs on {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
        return Err(Error::Command { program: "mount".into(), message });
    }
    tracing::info!(dir = %dir.display(), size = RUN_TMPFS_SIZE, "mounted a tmpfs for containerd's state and runc's root");
    Ok(())
}

/// Whether `dir` is on a tmpfs (`statfs`).
fn on_tmpfs(dir: &Path) -> bool {
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type == TMPFS_MAGIC)
}

/// The mount points at or below `dir` with their filesystem types, from
/// /proc/self/mountinfo (which has resolved paths, spaces escaped as `\040`: ours have none).
fn mounts_at_or_below(dir: &Path) -> Vec<(PathBuf, String)> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (fields, after) = line.split_once(" - ")?;
            let point = PathBuf::from(fields.split(' ').nth(4)?);
            let fs_type = after.split(' ').next()?.to_string();
            point.starts_with(&dir).then_some((point, fs_type))
        })
        .collect()
}

/// Unmounts the tmpfs mounted on `dir` itself (by [`ensure_tmpfs`], in this run or an earlier
/// one), once containerd has exited; a `dir` merely under some other tmpfs is left alone.
/// Mounts still below it (a pod's root filesystem or network namespace that was not torn
/// down) mean containers may still use it: it is kept, with a warning. A plain unmount that
/// fails otherwise is retried as a lazy one, as a last resort, and logged.
async fn release_tmpfs(dir: &Path) {
    let mounts = mounts_at_or_below(dir);
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !mounts.iter().any(|(p, t)| *p == resolved && t == "tmpfs") {
        return;
    }
    let below: Vec<String> =
        mounts.iter().filter(|(p, _)| *p != resolved).map(|(p, _)| p.display().to_string()).collect();
    if !below.is_empty() {
        tracing::warn!(dir = %dir.display(), mounts = ?below, "containers' mounts are left under containerd's state: its tmpfs stays mounted");
        return;
    }
    let plain = Command::new("umount").arg(dir).output().await;
    let error = match plain {
        Ok(out) if out.status.success() => return,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    let lazy = Command::new("umount").arg("-l").arg(dir).output().await;
    match lazy {
        Ok(out) if out.status.success() => {
            tracing::warn!(dir = %dir.display(), %error, "unmounting containerd's state tmpfs failed: detached it lazily")
        }
        Ok(out) => {
            tracing::warn!(dir = %dir.display(), %error, lazy = %String::from_utf8_lossy(&out.stderr).trim(), "containerd's state tmpfs stays mounted")
        }
        Err(e) => tracing::warn!(dir = %dir.display(), %error, lazy = %e, "containerd's state tmpfs stays mounted"),
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
        assert!(config.contains("state = \"/d/containerd/run/state\""), "{config}");
        assert!(config.contains("Root = \"/d/containerd/run/runc\""), "{config}");
    }

    #[test]
    fn containerd_dies_with_the_agent() {
        let command = containerd_command(Path::new("/d/containerd/config.toml"));
        let std = command.as_std();
        let args: Vec<_> = std.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        if Path::new(SETPRIV).exists() {
            assert_eq!(std.get_program(), SETPRIV);
            assert_eq!(args, ["--pdeathsig", "TERM", "--", "containerd", "--config", "/d/containerd/config.toml"]);
        } else {
            assert_eq!(std.get_program(), "containerd");
        }
    }

    #[test]
    fn mountinfo_lists_the_proc_mount() {
        let proc_mounts = mounts_at_or_below(Path::new("/proc"));
        assert!(proc_mounts.contains(&(PathBuf::from("/proc"), "proc".to_string())), "{proc_mounts:?}");
        assert!(!on_tmpfs(Path::new("/proc")));
    }
}
