//! Resource usage of the node, its pods and their containers, as the kubelet's Summary API
//! (`/stats/summary`, stats/v1alpha1) reports it: CPU and memory from the containers'
//! cgroups (v1 `cpuacct.usage` and `memory.{usage_in_bytes,stat}`, or v2 `cpu.stat` and
//! `memory.{current,stat}`; working set = usage − inactive file), the pod's network from
//! `/proc/<pause pid>/net/dev` inside its network namespace, filesystems by `statvfs`.
//! Disk use: the node's filesystem (the data dir) and the image filesystem (CRI
//! `ImageFsInfo`: containerd's snapshotter); each container's writable layer (CRI
//! `ListContainerStats`, else a walk of its overlay upper dir); each pod's volumes under its
//! directory (emptyDir, configMap, secret, downwardAPI, projected) measured as `du` does.
//!
//! A sampler takes a snapshot every [`SAMPLE_EVERY`] (cadvisor's housekeeping interval);
//! `usageNanoCores` is the CPU time used between two snapshots over the time between them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::Shared;
use super::containers::NODE_LABEL;
use crate::runtime::cri::v1 as cri;

/// How often the sampler takes a snapshot.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// CPU usage: cumulative time and the rate over the last interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStats {
    /// CPU time used since the start, in nanoseconds.
    pub usage_core_nano_seconds: u64,
    /// CPU used over the last sampling interval, in billionths of a core (None on the first sample).
    pub usage_nano_cores: Option<u64>,
}

/// Memory usage of a cgroup (or of the node).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    /// All memory charged, page cache included.
    pub usage_bytes: u64,
    /// Usage minus inactive file pages: what cannot be reclaimed easily (what eviction counts).
    pub working_set_bytes: u64,
    /// Anonymous memory and swap cache.
    pub rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// Memory left (node: MemAvailable; containers with a limit: limit − working set).
    pub available_bytes: Option<u64>,
}

/// One container's usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStats {
    /// The container's name in the pod spec.
    pub name: String,
    /// When the container was created.
    pub start_time: Option<Timestamp>,
    /// Its CPU usage.
    pub cpu: CpuStats,
    /// Its memory usage.
    pub memory: MemoryStats,
    /// Bytes of its log file.
    pub logs_used_bytes: Option<u64>,
    /// Bytes and inodes of its writable layer (the container's own files).
    pub rootfs_used: Option<(u64, u64)>,
}

/// One volume of a pod, with its filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeStats {
    /// The volume's name in the pod spec.
    pub name: String,
    /// Bytes its files take (blocks, as `du`).
    pub used_bytes: u64,
    /// Inodes its files take.
    pub inodes_used: u64,
    /// The filesystem it lives on (a tmpfs of its own for Memory emptyDirs).
    pub fs: Option<FsStats>,
}

/// A network interface's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterfaceStats {
    /// The device name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// One pod's usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodStats {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// When its sandbox was created.
    pub start_time: Option<Timestamp>,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
    /// Interfaces of its network namespace (loopback left out).
    pub interfaces: Vec<InterfaceStats>,
    /// Bytes of its volumes directory on the node (emptyDirs, configMaps, ...).
    pub volumes_used_bytes: Option<u64>,
    /// Its volumes with a directory on the node (not hostPath or persistent volumes).
    pub volumes: Vec<VolumeStats>,
}

impl PodStats {
    /// The pod's memory working set: the sum of its containers'.
    pub fn working_set_bytes(&self) -> u64 {
        self.containers.iter().map(|c| c.memory.working_set_bytes).sum()
    }

    /// The pod's local ephemeral storage, as the kubelet sums it: its containers' writable
    /// layers and logs and its volumes on the node.
    pub fn ephemeral_used_bytes(&self) -> u64 {
        let containers: u64 =
            self.containers.iter().map(|c| c.rootfs_used.map_or(0, |(b, _)| b) + c.logs_used_bytes.unwrap_or(0)).sum();
        containers + self.volumes_used_bytes.unwrap_or(0)
    }
}

/// A filesystem's size and use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsStats {
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
    /// Total bytes.
    pub capacity_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// Total inodes.
    pub inodes: u64,
}

impl FsStats {
    /// `statvfs` of the filesystem holding `path`.
    pub fn of(path: &Path) -> Option<FsStats> {
        let s = rustix::fs::statvfs(path).ok()?;
        let frsize = if s.f_frsize > 0 { s.f_frsize } else { s.f_bsize };
        Some(FsStats {
            available_bytes: s.f_bavail.saturating_mul(frsize),
            capacity_bytes: s.f_blocks.saturating_mul(frsize),
            used_bytes: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(frsize),
            inodes_free: s.f_ffree,
            inodes: s.f_files,
        })
    }
}

/// The node's own usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// CPU of the whole machine (from /proc/stat).
    pub cpu: CpuStats,
    /// Memory of the machine (from /proc/meminfo).
    pub memory: MemoryStats,
    /// The filesystem of the agent's data dir (nodefs).
    pub fs: Option<FsStats>,
    /// The filesystem of containerd's images and writable layers (imagefs); its used bytes
    /// are those of the images and layers (CRI `ImageFsInfo`) when the runtime tells them.
    pub image_fs: Option<FsStats>,
    /// Interfaces of the node's network namespace (loopback left out).
    pub interfaces: Vec<InterfaceStats>,
    /// `kernel.pid_max`.
    pub max_pid: u64,
    /// Processes running now.
    pub num_of_running_processes: u64,
}

/// A snapshot of every usage figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was taken.
    pub time: Option<Timestamp>,
    /// The node's figures.
    pub node: NodeStats,
    /// The pods'.
    pub pods: Vec<PodStats>,
}

/// The latest snapshot and the CPU counters of the one before, shared by the sampler, the
/// `/stats/summary` route and the eviction manager.
#[derive(Default)]
pub struct Stats {
    latest: Mutex<Arc<Snapshot>>,
    /// CPU time counters by cgroup id ("" for the node) at the last sample.
    cpu_before: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Stats {
    /// The latest snapshot (empty before the first).
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.lock().expect("stats lock").clone()
    }

    /// The CPU figures for counter `key` now at `usage_ns`, with the rate since its last sample.
    fn cpu(&self, before: &HashMap<String, (Instant, u64)>, now: Instant, key: &str, usage_ns: u64) -> CpuStats {
        let rate = before.get(key).and_then(|(at, prev)| {
            let elapsed = now.duration_since(*at).as_nanos();
            (elapsed > 0 && usage_ns >= *prev).then(|| ((usage_ns - prev) as u128 * 1_000_000_000 / elapsed) as u64)
        });
        CpuStats { usage_core_nano_seconds: usage_ns, usage_nano_cores: rate }
    }
}

/// Takes a snapshot every [`SAMPLE_EVERY`], forever.
pub(crate) async fn sampler(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        sample(&shared).await;
    }
}

/// Takes one snapshot now and keeps it as the latest.
pub(crate) async fn sample(shared: &Shared) -> Arc<Snapshot> {
    let now = Instant::now();
    let mut pods = Vec::new();
    let mut counters: Vec<(String, u64)> = Vec::new();
    // Three CRI calls for the whole node.
    let sandboxes = shared.cri.list_pod_sandboxes().await.unwrap_or_default();
    let all_containers = shared.cri.list_all_containers().await.unwrap_or_default();
    let writable: HashMap<String, (u64, u64)> = shared
        .cri
        .list_container_stats()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|st| {
            let layer = st.writable_layer?;
            let used = layer.used_bytes?.value;
            Some((st.attributes?.id, (used, layer.inodes_used.map_or(0, |i| i.value))))
        })
        .collect();
    let ours = sandboxes.into_iter().filter(|s| {
        s.state == cri::PodSandboxState::SandboxReady as i32
            && s.labels.get(NODE_LABEL).is_some_and(|n| *n == shared.config.node_name)
    });
    let before = shared.stats.cpu_before.lock().expect("stats lock").clone();
    for sandbox in ours {
        let meta = sandbox.metadata.clone().unwrap_or_default();
        let log_dir =
            shared.config.data_dir.join("pods").join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
        let mut pod = PodStats {
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            start_time: timestamp(sandbox.created_at),
            interfaces: interfaces_of_cgroup(&sandbox.id),
            ..Default::default()
        };
        let running = all_containers
            .iter()
            .filter(|c| c.pod_sandbox_id == sandbox.id && c.state == cri::ContainerState::ContainerRunning as i32);
        for c in running {
            let Some(cg) = read_cgroup(&c.id) else { continue };
            counters.push((c.id.clone(), cg.cpu_ns));
            let (name, attempt) = c.metadata.as_ref().map_or((String::new(), 0), |m| (m.name.clone(), m.attempt));
            let log = log_dir.join(&name).join(format!("{attempt}.log"));
            let rootfs_used = match writable.get(&c.id) {
                Some(used) => Some(*used),
                None => {
                    let id = c.id.clone();
                    tokio::task::spawn_blocking(move || upper_dir_of(&id).map(|d| usage(&d))).await.ok().flatten()
                }
            };
            pod.containers.push(ContainerStats {
                name,
                start_time: timestamp(c.created_at),
                cpu: shared.stats.cpu(&before, now, &c.id, cg.cpu_ns),
                memory: cg.memory,
                logs_used_bytes: std::fs::metadata(log).ok().map(|m| m.len()),
                rootfs_used,
            });
        }
        pod.containers.sort_by(|a, b| a.name.cmp(&b.name));
        let dir = super::volumes::pod_volumes_dir(&shared.config.data_dir, &pod.uid);
        pod.volumes = tokio::task::spawn_blocking(move || volume_stats(&dir)).await.unwrap_or_default();
        pod.volumes_used_bytes = Some(pod.volumes.iter().map(|v| v.used_bytes).sum());
        pods.push(pod);
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let node_cpu = proc_stat_cpu_ns().unwrap_or_default();
    counters.push((String::new(), node_cpu));
    let node = NodeStats {
        cpu: shared.stats.cpu(&before, now, "", node_cpu),
        memory: node_memory().unwrap_or_default(),
        fs: FsStats::of(&shared.config.data_dir),
        image_fs: image_fs(shared).await,
        interfaces: net_dev(Path::new("/proc/net/dev")),
        max_pid: read_u64("/proc/sys/kernel/pid_max").unwrap_or(0),
        num_of_running_processes: count_processes(),
    };
    let snapshot = Arc::new(Snapshot { time: Some(Timestamp::now()), node, pods });
    *shared.stats.cpu_before.lock().expect("stats lock") = counters.into_iter().map(|(k, v)| (k, (now, v))).collect();
    *shared.stats.latest.lock().expect("stats lock") = snapshot.clone();
    snapshot
}

/// The image filesystem as the kubelet reports it: capacity and availability of the
/// filesystem under the runtime's image store, the bytes and inodes the images and layers use
/// (CRI `ImageFsInfo`; the filesystem's own use when the runtime does not say).
async fn image_fs(shared: &Shared) -> Option<FsStats> {
    let info = shared.cri.image_fs_info().await.ok().and_then(|v| v.into_iter().next());
    let image_root = shared.config.data_dir.join("containerd");
    let mountpoint = info
        .as_ref()
        .and_then(|i| i.fs_id.as_ref())
        .map(|f| PathBuf::from(&f.mountpoint))
        .filter(|p| p.exists())
        .unwrap_or_else(|| if image_root.exists() { image_root } else { shared.config.data_dir.clone() });
    let mut fs = FsStats::of(&mountpoint)?;
    if let Some(used) = info.as_ref().and_then(|i| i.used_bytes).map(|u| u.value).filter(|u| *u > 0) {
        fs.used_bytes = used;
    }
    Some(fs)
}

/// The volumes under a pod's volumes directory (one directory per volume), measured.
fn volume_stats(dir: &Path) -> Vec<VolumeStats> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<VolumeStats> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let path = e.path();
            let (used_bytes, inodes_used) = usage(&path);
            VolumeStats {
                name: e.file_name().to_string_lossy().into_owned(),
                used_bytes,
                inodes_used,
                fs: FsStats::of(&path),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The overlay upper directory (the writable layer) of the container whose cgroup is `id`,
/// from its first process's root mount.
fn upper_dir_of(id: &str) -> Option<PathBuf> {
    let procs = std::fs::read_to_string(cgroup_dir("memory", id).join("cgroup.procs")).ok()?;
    let pid: u32 = procs.lines().next()?.trim().parse().ok()?;
    upper_dir(&std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?)
}

/// The `upperdir` of the overlay mounted at `/` in a `mountinfo` text.
fn upper_dir(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if mount.split(' ').nth(4) != Some("/") {
            return None;
        }
        let mut fs = fs.split(' ');
        if fs.next() != Some("overlay") {
            return None;
        }
        let options = fs.nth(1)?;
        options.split(',').find_map(|o| o.strip_prefix("upperdir=")).map(PathBuf::from)
    })
}

fn timestamp(unix_ns: i64) -> Option<Timestamp> {
    (unix_ns > 0).then(|| Timestamp::from_nanosecond(unix_ns as i128).ok()).flatten()
}

fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The fields of a cgroup `memory.stat` or `cpu.stat` file.
fn stat_file(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// What one container's cgroup says.
struct CgroupStats {
    cpu_ns: u64,
    memory: MemoryStats,
}

/// The directory of container `id`'s cgroup in `controller` (v1) or the unified hierarchy
/// (v2: `controller` is ignored). containerd's cgroupfs driver puts containers without a
/// cgroup parent at `/k8s.io/<id>`.
fn cgroup_dir(controller: &str, id: &str) -> PathBuf {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        root.join("k8s.io").join(id)
    } else {
        root.join(controller).join("k8s.io").join(id)
    }
}

fn read_cgroup(id: &str) -> Option<CgroupStats> {
    let v2 = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
    if v2 {
        let dir = cgroup_dir("", id);
        let cpu = stat_file(&dir.join("cpu.stat"));
        let usage = read_u64(dir.join("memory.current"))?;
        let stat = stat_file(&dir.join("memory.stat"));
        let limit = read_u64(dir.join("memory.max"));
        Some(CgroupStats {
            cpu_ns: cpu.get("usage_usec").copied().unwrap_or(0).saturating_mul(1000),
            memory: memory_stats(usage, &stat, "inactive_file", "anon", "pgfault", "pgmajfault", limit),
        })
    } else {
        let cpu_ns = read_u64(cgroup_dir("cpuacct", id).join("cpuacct.usage"))?;
        let dir = cgroup_dir("memory", id);
        let usage = read_u64(dir.join("memory.usage_in_bytes"))?;
        let stat = stat_file(&dir.join("memory.stat"));
        // v1 reports "no limit" as a huge number (LONG_MAX rounded to pages).
        let limit = read_u64(dir.join("memory.limit_in_bytes")).filter(|l| *l < 1 << 62);
        Some(CgroupStats {
            cpu_ns,
            memory: memory_stats(
                usage,
                &stat,
                "total_inactive_file",
                "total_rss",
                "total_pgfault",
                "total_pgmajfault",
                limit,
            ),
        })
    }
}

fn memory_stats(
    usage: u64,
    stat: &HashMap<String, u64>,
    inactive_file: &str,
    rss: &str,
    pgfault: &str,
    pgmajfault: &str,
    limit: Option<u64>,
) -> MemoryStats {
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let working_set = usage.saturating_sub(get(inactive_file));
    MemoryStats {
        usage_bytes: usage,
        working_set_bytes: working_set,
        rss_bytes: get(rss),
        page_faults: get(pgfault),
        major_page_faults: get(pgmajfault),
        available_bytes: limit.map(|l| l.saturating_sub(working_set)),
    }
}

/// The interfaces of the network namespace the sandbox's pause process is in.
fn interfaces_of_cgroup(sandbox_id: &str) -> Vec<InterfaceStats> {
    let procs = std::fs::read_to_string(cgroup_dir("memory", sandbox_id).join("cgroup.procs")).unwrap_or_default();
    match procs.lines().next().and_then(|p| p.trim().parse::<u32>().ok()) {
        Some(pid) => net_dev(&PathBuf::from(format!("/proc/{pid}/net/dev"))),
        None => Vec::new(),
    }
}

/// Parses a `/proc/net/dev` file (loopback left out).
fn net_dev(path: &Path) -> Vec<InterfaceStats> {
    parse_net_dev(&std::fs::read_to_string(path).unwrap_or_default())
}

fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            let name = name.trim();
            (name != "lo" && f.len() >= 16).then(|| InterfaceStats {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

/// The machine's CPU time used (all but idle and iowait), in nanoseconds, from /proc/stat.
fn proc_stat_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest times are within user/nice)
    let busy: u64 = f.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Some(busy.saturating_mul(10_000_000))
}

/// The machine's memory from /proc/meminfo: available = MemAvailable, working set = total − available.
pub fn node_memory() -> Option<MemoryStats> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<MemoryStats> {
    let kb = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.split(':').next() == Some(key))?;
        line.split(':').nth(1)?.split_whitespace().next()?.parse::<u64>().ok().map(|v| v * 1024)
    };
    let total = kb("MemTotal")?;
    let available = kb("MemAvailable")?;
    let free = kb("MemFree").unwrap_or(0);
    let anon = kb("AnonPages").unwrap_or(0);
    Some(MemoryStats {
        usage_bytes: total.saturating_sub(free),
        working_set_bytes: total.saturating_sub(available),
        rss_bytes: anon,
        page_faults: 0,
        major_page_faults: 0,
        available_bytes: Some(available),
    })
}

fn count_processes() -> u64 {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
                .count()
        })
        .unwrap_or(0) as u64
}

/// Bytes (allocated blocks, as `du`) and inodes under `dir`, the directory itself
/// included; hard links count once; symbolic links are not followed.
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = dir.symlink_metadata() else { return (0, 0) };
    let (mut bytes, mut inodes) = (top.blocks() * 512, 1);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if seen.insert((meta.dev(), meta.ino())) {
                bytes += meta.blocks() * 512;
                inodes += 1;
            }
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn time_json(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(Time(t)))
}

fn cpu_json(c: &CpuStats, time: Value) -> Value {
    let mut v = json!({ "time": time, "usageCoreNanoSeconds": c.usage_core_nano_seconds });
    if let Some(rate) = c.usage_nano_cores {
        v["usageNanoCores"] = json!(rate);
    }
    v
}

fn memory_json(m: &MemoryStats, time: Value) -> Value {
    let mut v = json!({
        "time": time,
        "usageBytes": m.usage_bytes,
        "workingSetBytes": m.working_set_bytes,
        "rssBytes": m.rss_bytes,
        "pageFaults": m.page_faults,
        "majorPageFaults": m.major_page_faults,
    });
    if let Some(a) = m.available_bytes {
        v["availableBytes"] = json!(a);
    }
    v
}

fn fs_json(fs: &FsStats, time: Value, used: Option<u64>) -> Value {
    json!({
        "time": time,
        "availableBytes": fs.available_bytes,
        "capacityBytes": fs.capacity_bytes,
        "usedBytes": used.unwrap_or(fs.used_bytes),
        "inodesFree": fs.inodes_free,
        "inodes": fs.inodes,
        "inodesUsed": fs.inodes.saturating_sub(fs.inodes_free),
    })
}

fn network_json(interfaces: &[InterfaceStats], time: Value) -> Value {
    let list: Vec<Value> = interfaces
        .iter()
        .map(|i| {
            json!({ "name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors,
                    "txBytes": i.tx_bytes, "txErrors": i.tx_errors })
        })
        .collect();
    let mut v = json!({ "time": time, "interfaces": list });
    // The default interface's counters inline (eth0 in pods).
    if let Some(first) = interfaces.iter().find(|i| i.name == "eth0").or(interfaces.first())
        && let (Some(obj), Value::Object(inline)) = (v.as_object_mut(), list_item(first))
    {
        obj.extend(inline);
    }
    v
}

fn list_item(i: &InterfaceStats) -> Value {
    json!({ "name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors, "txBytes": i.tx_bytes, "txErrors": i.tx_errors })
}

/// The Summary API's JSON (stats/v1alpha1 `Summary`) of `snapshot` for node `node_name`.
pub fn summary_json(node_name: &str, snapshot: &Snapshot, started: Option<Timestamp>) -> Value {
    let t = time_json(snapshot.time);
    let n = &snapshot.node;
    let mut node = json!({
        "nodeName": node_name,
        "startTime": time_json(started),
        "cpu": cpu_json(&n.cpu, t.clone()),
        "memory": memory_json(&n.memory, t.clone()),
        "network": network_json(&n.interfaces, t.clone()),
        "rlimit": { "time": t, "maxpid": n.max_pid, "curproc": n.num_of_running_processes },
        "systemContainers": [],
    });
    if let Some(fs) = &n.fs {
        node["fs"] = fs_json(fs, t.clone(), None);
    }
    if let Some(fs) = &n.image_fs {
        node["runtime"] = json!({ "imageFs": fs_json(fs, t.clone(), None) });
    }
    let pods: Vec<Value> = snapshot
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    let mut v = json!({
                        "name": c.name,
                        "startTime": time_json(c.start_time),
                        "cpu": cpu_json(&c.cpu, t.clone()),
                        "memory": memory_json(&c.memory, t.clone()),
                    });
                    if let Some(fs) = &n.image_fs {
                        let (used, inodes) = c.rootfs_used.unwrap_or_default();
                        v["rootfs"] = fs_json(fs, t.clone(), Some(used));
                        v["rootfs"]["inodesUsed"] = json!(inodes);
                    }
                    if let Some(fs) = &n.fs {
                        v["logs"] = fs_json(fs, t.clone(), Some(c.logs_used_bytes.unwrap_or(0)));
                    }
                    v
                })
                .collect();
            let cpu = CpuStats {
                usage_core_nano_seconds: p.containers.iter().map(|c| c.cpu.usage_core_nano_seconds).sum(),
                usage_nano_cores: p.containers.iter().map(|c| c.cpu.usage_nano_cores).sum(),
            };
            let memory = MemoryStats {
                usage_bytes: p.containers.iter().map(|c| c.memory.usage_bytes).sum(),
                working_set_bytes: p.working_set_bytes(),
                rss_bytes: p.containers.iter().map(|c| c.memory.rss_bytes).sum(),
                page_faults: p.containers.iter().map(|c| c.memory.page_faults).sum(),
                major_page_faults: p.containers.iter().map(|c| c.memory.major_page_faults).sum(),
                available_bytes: None,
            };
            let volume_list: Vec<Value> = p
                .volumes
                .iter()
                .map(|vol| {
                    let mut v = match &vol.fs {
                        Some(fs) => fs_json(fs, t.clone(), Some(vol.used_bytes)),
                        None => json!({ "time": t, "usedBytes": vol.used_bytes }),
                    };
                    v["inodesUsed"] = json!(vol.inodes_used);
                    v["name"] = json!(vol.name);
                    v
                })
                .collect();
            let mut v = json!({
                "podRef": { "name": p.name, "namespace": p.namespace, "uid": p.uid },
                "startTime": time_json(p.start_time),
                "containers": containers,
                "cpu": cpu_json(&cpu, t.clone()),
                "memory": memory_json(&memory, t.clone()),
                "network": network_json(&p.interfaces, t.clone()),
                "volume": volume_list,
                "process_stats": { "process_count": p.containers.len() },
            });
            if let Some(fs) = &n.fs {
                // The kubelet's sum: writable layers, logs and the pod's ephemeral volumes.
                v["ephemeral-storage"] = fs_json(fs, t.clone(), Some(p.ephemeral_used_bytes()));
            }
            v
        })
        .collect();
    json!({ "node": node, "pods": pods })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
            eth0:    5000      40    2    0    0     0          0         0     7000      50    3    0    0     0       0          0\n";
        let got = parse_net_dev(text);
        assert_eq!(
            got,
            vec![InterfaceStats { name: "eth0".into(), rx_bytes: 5000, rx_errors: 2, tx_bytes: 7000, tx_errors: 3 }]
        );
        assert!(parse_net_dev("garbage\n\nno colon here").is_empty());
    }

    #[test]
    fn meminfo_gives_available_and_working_set() {
        let text = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\nAnonPages: 50 kB\n";
        let m = parse_meminfo(text).expect("parsed");
        assert_eq!(m.available_bytes, Some(400 * 1024));
        assert_eq!(m.working_set_bytes, 600 * 1024);
        assert_eq!(m.usage_bytes, 900 * 1024);
        assert!(parse_meminfo("MemTotal: x kB").is_none());
    }

    #[test]
    fn working_set_is_usage_minus_inactive_file() {
        let stat: HashMap<String, u64> =
            [("total_inactive_file".to_string(), 300), ("total_rss".to_string(), 500)].into();
        let m = memory_stats(1000, &stat, "total_inactive_file", "total_rss", "a", "b", Some(2000));
        assert_eq!((m.working_set_bytes, m.rss_bytes, m.available_bytes), (700, 500, Some(1300)));
        // inactive file above usage (racy reads) does not underflow
        let m = memory_stats(100, &stat, "total_inactive_file", "total_rss", "a", "b", None);
        assert_eq!(m.working_set_bytes, 0);
    }

    #[test]
    fn the_writable_layer_is_the_root_overlay_upper_dir() {
        let text = "22 1 0:21 / /proc rw - proc proc rw\n\
            601 540 0:52 / / rw,relatime - overlay overlay rw,lowerdir=/s/1/fs,upperdir=/s/7/fs,workdir=/s/7/work\n\
            602 601 0:53 / /tmp rw - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c\n";
        assert_eq!(upper_dir(text), Some(PathBuf::from("/s/7/fs")));
        assert_eq!(upper_dir("601 540 0:52 / / rw - ext4 /dev/sda1 rw\n"), None);
        assert_eq!(upper_dir("garbage"), None);
    }

    #[test]
    fn volumes_are_measured_in_blocks_and_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/file"), vec![1u8; 64 << 10]).unwrap();
        std::fs::hard_link(data.join("sub/file"), data.join("link")).unwrap();
        std::fs::write(dir.path().join("not-a-volume"), b"x").unwrap();
        let vols = volume_stats(dir.path());
        assert_eq!(vols.len(), 1, "{vols:?}");
        assert_eq!(vols[0].name, "data");
        // The 64 KiB file once (hard link), the directories' own blocks.
        assert!(vols[0].used_bytes >= 64 << 10 && vols[0].used_bytes < 128 << 10, "{vols:?}");
        assert_eq!(vols[0].inodes_used, 3, "data, sub, file");
        assert!(vols[0].fs.as_ref().is_some_and(|f| f.capacity_bytes > 0));
        assert!(volume_stats(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn cpu_rate_needs_two_samples() {
        let stats = Stats::default();
        let t0 = Instant::now();
        let first = stats.cpu(&HashMap::new(), t0, "c", 1_000);
        assert_eq!(first.usage_nano_cores, None);
        let before: HashMap<String, (Instant, u64)> = [("c".to_string(), (t0, 1_000))].into();
        let second = stats.cpu(&before, t0 + Duration::from_secs(2), "c", 1_000 + 1_000_000_000);
        assert_eq!(second.usage_nano_cores, Some(500_000_000)); // half a core over 2 s
    }
}
