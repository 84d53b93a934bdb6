//! Network namespaces for tests of several nodes on one machine: a [`Lab`] is a host bridge
//! with the address `10.213.X.1/24` (X picked at random among free ones; the range is the
//! tests' own, never routed off the machine), and each [`NetNs`] a namespace
//! `berth-t-<random>` joined to it by a veth pair, with its own address `10.213.X.<n>`, `lo`
//! up and IPv4 forwarding on (so a node inside can route between its pods and the bridge).
//! [`NetNs::command`] runs a program inside with `nsenter --net` (not `ip netns exec`: that
//! one also gives the program a mount namespace with a fresh /sys, which hides the cgroup
//! mounts from runc: "no cgroup mount found in mountinfo"). Mounts made inside (containerd's)
//! are the host's: [`unmount_under`] removes what a failed test leaves under a data dir.
//!
//! Dropping a [`NetNs`] kills by PID the processes still inside and their descendants (the
//! containers under containerd's shims), then deletes the namespace (and with it the veth
//! pair); dropping the [`Lab`] deletes the host routes through the lab's addresses and the
//! bridge. Both also run when a test panics. Needs root (CAP_NET_ADMIN) and `ip`.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Runs `ip ARGS` and panics with its error output when it fails.
fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip ARGS`, ignoring failures (for cleanup); its stdout.
fn ip_quiet(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A short random hex string (names of namespaces and links).
fn random_hex(len: usize) -> String {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        ^ (u128::from(std::process::id()) << 64);
    let mut x = (seed as u64) ^ ((seed >> 64) as u64) ^ 0x9e37_79b9_7f4a_7c15;
    let mut s = String::new();
    while s.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{:x}", x & 0xf));
    }
    s
}

/// Whether this process may create network namespaces (root with `ip`).
pub fn available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    root && Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A host bridge with the address `10.213.X.1/24` that namespaces join.
pub struct Lab {
    /// The bridge device.
    pub bridge: String,
    /// The third octet X of the lab's range.
    pub x: u8,
    next: u8,
}

impl Lab {
    /// Creates the bridge on a free 10.213.X.0/24 and brings it up.
    pub fn new() -> Lab {
        let used = ip_quiet(&["-4", "-o", "addr", "show"]) + &ip_quiet(&["-4", "route", "show"]);
        let start = u8::from_str_radix(&random_hex(2), 16).unwrap_or(0);
        let x = (0..=255u16)
            .map(|i| ((u16::from(start) + i) % 254 + 1) as u8)
            .find(|x| !used.contains(&format!("10.213.{x}.")))
            .expect("a free 10.213.X.0/24");
        let bridge = format!("btl{}", random_hex(8));
        ip_ok(&["link", "add", &bridge, "type", "bridge"]);
        let lab = Lab { bridge, x, next: 2 };
        ip_ok(&["addr", "add", &format!("{}/24", lab.host_ip()), "dev", &lab.bridge]);
        ip_ok(&["link", "set", &lab.bridge, "up"]);
        lab
    }

    /// The host's address on the bridge, `10.213.X.1`.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.x, 1)
    }

    /// The lab's range, `10.213.X.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.x)
    }

    /// A new namespace on the bridge with the next free address.
    pub fn add_ns(&mut self) -> NetNs {
        let n = self.next;
        self.next += 1;
        let name = format!("berth-t-{}", random_hex(8));
        let host_end = format!("vth{}", random_hex(8));
        let ip = Ipv4Addr::new(10, 213, self.x, n);
        ip_ok(&["netns", "add", &name]);
        // From here on the namespace is deleted on drop, even if the rest fails.
        let ns = NetNs { name, ip, host_ip: self.host_ip() };
        ip_ok(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns.name]);
        ip_ok(&["link", "set", &host_end, "master", &self.bridge, "up"]);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
        ] {
            let mut full = vec!["-n", ns.name.as_str()];
            full.extend(args);
            ip_ok(&full);
        }
        let out = ns.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]).output().expect("sysctl");
        assert!(out.status.success(), "sysctl in {}: {}", ns.name, String::from_utf8_lossy(&out.stderr));
        ns
    }

    /// Host routes (`ip -4 route show`) whose gateway is in the lab's range.
    pub fn host_routes(&self) -> Vec<String> {
        let prefix = format!("via 10.213.{}.", self.x);
        ip_quiet(&["-4", "route", "show"]).lines().filter(|l| l.contains(&prefix)).map(str::to_string).collect()
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for route in self.host_routes() {
            let args: Vec<&str> = route.split_whitespace().collect();
            let mut del = vec!["-4", "route", "del"];
            del.extend(args);
            ip_quiet(&del);
        }
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

/// A network namespace on a [`Lab`]'s bridge.
pub struct NetNs {
    /// Its name (`ip netns` and /run/netns/NAME).
    pub name: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
    /// The host's address on the bridge (reachable on the link from inside).
    pub host_ip: Ipv4Addr,
}

impl NetNs {
    /// `program` to be run inside the namespace (`nsenter --net=/run/netns/NAME program`);
    /// the child's PID is the program's (nsenter execs it).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg("--").arg(program);
        c
    }

    /// Runs `ip ARGS` inside; its stdout (empty when it failed).
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend(args);
        ip_quiet(&full)
    }

    /// The PIDs of the processes inside.
    pub fn pids(&self) -> Vec<u32> {
        ip_quiet(&["netns", "pids", &self.name]).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

/// Unmounts (lazily, deepest first) every mount at or under `dir`: what containerd leaves
/// (rootfs overlays, pod network namespace files) when its agent could not clean up.
pub fn unmount_under(dir: &std::path::Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let dir = dir.to_string_lossy().into_owned();
    // Field 5 is the mount point (octal escapes for spaces are left as they are).
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| *p == dir || p.starts_with(&format!("{dir}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).stderr(Stdio::null()).status();
    }
}

/// `pids` and all their descendants (from /proc's parent PIDs).
fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The fields after the command (which may hold spaces) start after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut all: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for (pid, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if !all.contains(pid) {
                all.push(*pid);
            }
        }
        i += 1;
    }
    all
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let left = with_descendants(&self.pids());
        if !left.is_empty() {
            eprintln!("netns {}: killing processes left inside: {left:?}", self.name);
            for pid in &left {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
            }
            crate::wait_until(std::time::Duration::from_secs(10), || self.pids().is_empty());
        }
        ip_quiet(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_reaches_the_host_over_the_bridge_and_is_removed() {
        if !available() {
            eprintln!("skipping: needs root and ip");
            return;
        }
        let mut lab = Lab::new();
        let ns = lab.add_ns();
        let name = ns.name.clone();
        assert!(ip_quiet(&["netns", "list"]).contains(&name));
        assert!(ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]).contains(&format!("{}/24", ns.ip)));
        let out = ns.command("cat").arg("/proc/sys/net/ipv4/ip_forward").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        if std::path::Path::new("/bin/busybox").exists() {
            let ping = ns.command("/bin/busybox").args(["ping", "-c1", "-W5", &lab.host_ip().to_string()]).output();
            let ping = ping.unwrap();
            assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
        }
        // A process left inside is killed by the drop.
        let mut sleeper = ns.command("sleep").arg("600").spawn().unwrap();
        assert!(crate::wait_until(std::time::Duration::from_secs(10), || ns.pids().contains(&sleeper.id())));
        // A host route through the namespace goes with the lab.
        ip_ok(&["route", "add", "10.216.250.0/24", "via", &ns.ip.to_string()]);
        assert_eq!(lab.host_routes().len(), 1);
        drop(ns);
        assert!(sleeper.wait().is_ok());
        assert!(!ip_quiet(&["netns", "list"]).contains(&name));
        let bridge = lab.bridge.clone();
        drop(lab);
        assert!(ip_quiet(&["link", "show", &bridge]).is_empty());
        assert!(!ip_quiet(&["-4", "route", "show"]).contains("10.216.250.0/24"));
    }
}
