//! The Node as the kubelet keeps it: created (or taken over after a restart) with labels,
//! taints and the machine's capacity, its status (conditions, addresses, nodeInfo) re-posted
//! every minute, and its Lease in `kube-node-lease` renewed every 10 s.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::eviction::{Signal, Threshold};
use super::{Error, Result, Shared};
use crate::hollow::config::parse_quantity;
use crate::runtime::cni::Cidr;

/// The kubelet version the node reports.
pub const KUBELET_VERSION: &str = "v1.33.0+berth";
/// The namespace of node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the lease is renewed.
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the status is re-posted even when nothing changed.
const STATUS_EVERY: u32 = 6;

/// The node's address when none is configured: the source address of the default route,
/// else loopback.
pub fn default_node_ip() -> Ipv4Addr {
    // connect() on UDP sends nothing; it only picks the route and source address.
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .ok()
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

/// A /24 in 10.42.0.0/16 chosen from the node name (used when no pod CIDR is given or assigned).
pub fn derived_cidr(node_name: &str) -> Cidr {
    // FNV-1a: stable across runs and builds.
    let hash = node_name.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193));
    let third = (hash % 256) as u8;
    Cidr { network: Ipv4Addr::new(10, 42, third, 0), prefix: 24 }
}

/// Machine capacity: cpu (online CPUs), memory (MemTotal), ephemeral-storage (the data dir's
/// filesystem), pods.
pub fn capacity(data_dir: &std::path::Path, max_pods: u32) -> Value {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .unwrap_or(0);
    let disk_kib = std::process::Command::new("df")
        .arg("-Pk")
        .arg(data_dir)
        .output()
        .ok()
        .and_then(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            out.lines().nth(1).and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .unwrap_or(0);
    json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_kib}Ki"),
        "ephemeral-storage": format!("{disk_kib}Ki"),
        "pods": max_pods.to_string(),
    })
}

/// A bad `--system-reserved`/`--kube-reserved` value.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid reservation {input:?}: {reason}")]
pub struct ReservedError {
    /// The offending part.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `--system-reserved`/`--kube-reserved` as the kubelet (`cpu=100m,memory=256Mi,
/// ephemeral-storage=1Gi,pid=1000`): resource → amount in nano-units (as `parse_quantity`).
pub fn parse_reserved(input: &str) -> std::result::Result<BTreeMap<String, i128>, ReservedError> {
    let mut out = BTreeMap::new();
    for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let err = |reason: &str| ReservedError { input: part.to_string(), reason: reason.to_string() };
        let (name, value) = part.split_once('=').ok_or_else(|| err("expected RESOURCE=QUANTITY"))?;
        let name = name.trim();
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage" | "pid") {
            return Err(err("unknown resource (cpu, memory, ephemeral-storage, pid)"));
        }
        let amount = parse_quantity(value.trim()).map_err(|e| err(&e.to_string()))?;
        if amount < 0 {
            return Err(err("negative quantity"));
        }
        out.insert(name.to_string(), amount);
    }
    Ok(out)
}

/// Node allocatable as the kubelet computes it: capacity minus the reservations
/// (`--system-reserved`, `--kube-reserved`) and, for memory and ephemeral-storage, the hard
/// eviction threshold of memory.available and nodefs.available; never below zero.
pub fn allocatable(capacity: &Value, reserved: &[&BTreeMap<String, i128>], eviction_hard: &[Threshold]) -> Value {
    const NANO: i128 = 1_000_000_000;
    let mut out = serde_json::Map::new();
    for (name, value) in capacity.as_object().into_iter().flatten() {
        let Some(cap) = value.as_str().and_then(|v| parse_quantity(v).ok()) else {
            out.insert(name.clone(), value.clone());
            continue;
        };
        let mut left = cap - reserved.iter().filter_map(|r| r.get(name)).sum::<i128>();
        let signal = match name.as_str() {
            "memory" => Some(Signal::MemoryAvailable),
            "ephemeral-storage" => Some(Signal::NodefsAvailable),
            _ => None,
        };
        if let Some(t) = eviction_hard.iter().find(|t| Some(t.signal) == signal) {
            left -= i128::from(t.quantity((cap / NANO) as u64)) * NANO;
        }
        let left = left.max(0);
        let text = match name.as_str() {
            "cpu" if left % NANO != 0 => format!("{}m", left / 1_000_000),
            _ => {
                let units = left / NANO;
                if units % 1024 == 0 && units > 0 && name != "cpu" && name != "pods" {
                    format!("{}Ki", units / 1024)
                } else {
                    units.to_string()
                }
            }
        };
        out.insert(name.clone(), json!(text));
    }
    Value::Object(out)
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}

/// The Node as created.
pub(crate) fn node_object(shared: &Shared) -> Value {
    let config = &shared.config;
    let arch = crate::hollow::config::go_arch();
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(config.node_name));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(arch));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!(arch));
    for (k, v) in &config.labels {
        labels.insert(k.clone(), json!(v));
    }
    let taints: Vec<Value> =
        config.taints.iter().map(|t| json!({ "key": t.key, "value": t.value, "effect": t.effect })).collect();
    let mut spec = json!({ "taints": taints });
    // A range given on the command line is the Node's (the node IPAM controller skips it),
    // so the other nodes route to the range this node really uses.
    if let Some(cidr) = config.pod_cidr.as_deref().and_then(|c| Cidr::parse(c).ok()) {
        spec["podCIDR"] = json!(cidr.to_string());
        spec["podCIDRs"] = json!([cidr.to_string()]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": config.node_name, "labels": labels },
        "spec": spec,
    })
}

/// The Node status with heartbeat `now`.
pub(crate) fn node_status(shared: &Shared, started: Timestamp, now: Timestamp) -> Value {
    let heartbeat = json!(Time(now));
    let since = json!(Time(started));
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since })
    };
    // The pressure conditions the eviction manager keeps, each with its own transition time.
    let mut conditions: Vec<Value> = shared
        .eviction
        .conditions()
        .into_iter()
        .map(|(c, pressure, changed)| {
            let (type_, status, reason, message) = c.describe(pressure);
            let mut v = condition(type_, status, reason, message);
            if let Some(at) = changed {
                v["lastTransitionTime"] = json!(Time(at));
            }
            v
        })
        .collect();
    match shared.shutting_down.get() {
        // A graceful shutdown is under way (the kubelet's nodeshutdown manager's error).
        Some(at) => {
            let mut ready = condition("Ready", "False", "KubeletNotReady", super::shutdown::NODE_MESSAGE);
            ready["lastTransitionTime"] = json!(Time(*at));
            conditions.push(ready);
        }
        None => conditions.push(condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")),
    }
    let capacity = capacity(&shared.config.data_dir, shared.config.max_pods);
    let machine_id = std::fs::read_to_string("/etc/machine-id").map(|s| s.trim().to_string()).unwrap_or_default();
    let boot_id =
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default();
    json!({
        "capacity": capacity,
        "allocatable": allocatable(
            &capacity,
            &[&shared.config.system_reserved, &shared.config.kube_reserved],
            &shared.config.eviction_hard
        ),
        "conditions": conditions,
        "addresses": [
            { "type": "InternalIP", "address": shared.node_ip.to_string() },
            { "type": "Hostname", "address": shared.config.node_name },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": shared.kubelet_port } },
        "nodeInfo": {
            "machineID": machine_id,
            "systemUUID": machine_id,
            "bootID": boot_id,
            "kernelVersion": kernel_version(),
            "osImage": os_image(),
            "containerRuntimeVersion": shared.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": crate::hollow::config::go_arch(),
        },
    })
}

fn api_err(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { what, source }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Creates (or takes over) the Node, posts its status and creates its Lease; returns the
/// Node's spec.podCIDR if it has one.
pub(crate) async fn register(shared: &Arc<Shared>) -> Result<Option<String>> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let wanted: Node = serde_json::from_value(node_object(shared)).expect("a valid Node");
    let node = match api.create(&PostParams::default(), &wanted).await {
        Ok(n) => n,
        Err(e) if is_code(&e, 409) => {
            // As the kubelet: a node that exists keeps its taints (set at creation, then owned
            // by users and the node controller; NodeRestriction refuses a node changing them);
            // only the labels are brought up to date.
            let patch = json!({ "metadata": { "labels": wanted.metadata.labels } });
            api.patch(&shared.config.node_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err("updating the node"))?
        }
        Err(e) => return Err(api_err("creating the node")(e)),
    };
    post_status(shared, Timestamp::now()).await.map_err(api_err("posting the node status"))?;
    let uid = node.metadata.uid.clone().unwrap_or_default();
    ensure_lease(shared, &uid).await.map_err(api_err("creating the node lease"))?;
    Ok(node.spec.and_then(|s| s.pod_cidr))
}

/// Polls the Node until it has a spec.podCIDR, at most `timeout`.
pub(crate) async fn wait_for_pod_cidr(shared: &Shared, timeout: Duration) -> Option<String> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(node) = api.get(&shared.config.node_name).await
            && let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty())
        {
            return Some(cidr);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                node = shared.config.node_name,
                "the node got no pod CIDR from the server: using a derived one"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post_status(shared: &Shared, started: Timestamp) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let patch = json!({ "status": node_status(shared, started, Timestamp::now()) });
    api.patch_status(&shared.config.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
}

/// Posts the Node status now (a pressure condition changed); failures are logged.
pub(crate) async fn post_node_status(shared: &Shared) {
    if let Err(e) = post_status(shared, shared.started).await {
        tracing::warn!(%e, "posting the node status");
    }
}

async fn ensure_lease(shared: &Shared, node_uid: &str) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let name = &shared.config.node_name;
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": LEASE_NAMESPACE,
                      "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid }] },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now()) },
    }))
    .expect("a valid Lease");
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, 409) => renew_lease(shared).await,
        Err(e) => Err(e),
    }
}

async fn renew_lease(shared: &Shared) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let name = &shared.config.node_name;
    let patch = json!({ "spec": { "holderIdentity": name, "leaseDurationSeconds": 40,
                                  "renewTime": MicroTime(Timestamp::now()) } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
}

/// Renews the lease every 10 s and re-posts the status every minute.
pub(crate) async fn heartbeat_loop(shared: Arc<Shared>) {
    let started = Timestamp::now();
    let mut ticker = tokio::time::interval(LEASE_RENEW);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    for round in 1u32.. {
        ticker.tick().await;
        let result = match renew_lease(&shared).await {
            Err(e) if is_code(&e, 404) => {
                let uid = Api::<Node>::all(shared.client.clone())
                    .get(&shared.config.node_name)
                    .await
                    .ok()
                    .and_then(|n| n.metadata.uid)
                    .unwrap_or_default();
                ensure_lease(&shared, &uid).await
            }
            other => other,
        };
        if let Err(e) = result {
            tracing::warn!(%e, "renewing the node lease");
        }
        if round % STATUS_EVERY == 0
            && let Err(e) = post_status(&shared, started).await
        {
            tracing::warn!(%e, "posting the node status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_takes_off_reservations_and_the_hard_eviction_thresholds() {
        let capacity = json!({ "cpu": "4", "memory": "8192Mi", "ephemeral-storage": "100Gi", "pods": "110" });
        let system = parse_reserved("cpu=500m, memory=1Gi").unwrap();
        let kube = parse_reserved("cpu=100m,memory=512Mi,ephemeral-storage=10Gi,pid=100").unwrap();
        let hard = super::super::eviction::parse_thresholds("memory.available<100Mi,nodefs.available<10%").unwrap();
        let a = allocatable(&capacity, &[&system, &kube], &hard);
        assert_eq!(a["cpu"], "3400m");
        assert_eq!(a["memory"], format!("{}Ki", (8192 - 1024 - 512 - 100) * 1024));
        assert_eq!(a["ephemeral-storage"], format!("{}Ki", (100 - 10) * 1024 * 1024 - 10 * 1024 * 1024));
        assert_eq!(a["pods"], "110");
        // Nothing reserved, no thresholds: allocatable is the capacity; never below zero.
        let none = BTreeMap::new();
        assert_eq!(allocatable(&capacity, &[&none], &[])["cpu"], "4");
        let huge = parse_reserved("cpu=8").unwrap();
        assert_eq!(allocatable(&capacity, &[&huge], &[])["cpu"], "0");
        // Bad input names the part.
        assert_eq!(parse_reserved("gpu=1").unwrap_err().input, "gpu=1");
        assert!(parse_reserved("memory").is_err());
        assert!(parse_reserved("memory=lots").is_err());
        assert!(parse_reserved("memory=-1Mi").is_err());
    }

    #[test]
    fn derived_cidrs_are_stable_slash_24s_in_10_42() {
        let a = derived_cidr("node-a");
        assert_eq!(a, derived_cidr("node-a"));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.network.octets()[..2], [10, 42]);
        assert_eq!(a.network.octets()[3], 0);
    }

    #[test]
    fn capacity_reads_the_machine() {
        let c = capacity(std::path::Path::new("/"), 110);
        assert_eq!(c["pods"], "110");
        assert_ne!(c["cpu"], "0");
        assert!(c["memory"].as_str().unwrap().ends_with("Ki"));
        assert_ne!(c["memory"], "0Ki");
    }
}
