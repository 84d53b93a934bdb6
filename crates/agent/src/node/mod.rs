//! The real node agent (the kubelet's part): registers a Node with the machine's capacity,
//! keeps its Lease, and runs the pods bound to it as containers through containerd's CRI,
//! networked by the CNI bridge over the node's pod CIDR.
//!
//! - [`register`](self::register): the Node object, its status and the Lease heartbeat.
//! - `admission`: the kubelet's admission checks of a pod bound to the node (resources,
//!   node affinity, host ports, NoExecute taints).
//! - `pods`: the pod watch and one worker per pod (sandbox, containers, status, deletion).
//! - [`probes`]: liveness and readiness probes (exec, httpGet, tcpSocket).
//! - [`hooks`]: postStart and preStop lifecycle hooks (exec, httpGet, sleep).
//! - [`containers`]: CRI sandbox and container configs from a pod spec (pure).
//! - [`dns`]: the pods' resolv.conf (dnsPolicy, dnsConfig), hostname and /etc/hosts.
//! - [`volumes`]: emptyDir, configMap, secret and hostPath volumes and their mounts.
//! - [`status`]: pod phase, conditions, container states and back-off (pure).
//! - [`sources`]: the ConfigMaps and Secrets pods read, shared between pods for a moment.
//! - [`routes`]: routes to the other nodes' pod CIDRs through their addresses (host-gw).
//! - [`events`]: the Events the agent records about pods.
//! - [`stats`]: usage of the node, pods and containers from cgroups (the Summary API).
//! - [`static_pods`]: pods from manifest files (`--pod-manifests`) and their mirror pods.
//! - [`eviction`]: eviction thresholds, node pressure conditions and node-pressure eviction.
//! - `relist`: one listing of the node's containers per second, waking the pods that changed.
//! - [`local_volumes`]: removes the directories of this node's deleted local-path volumes.
//! - [`shutdown`]: graceful node shutdown (Node NotReady, pods stopped in two phases).

mod admission;
pub mod containers;
pub mod dns;
pub mod events;
pub mod eviction;
pub mod hooks;
pub mod local_volumes;
pub mod probes;
pub mod register;
mod relist;
pub mod routes;
pub mod shutdown;
pub mod sources;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod termination;
pub mod volumes;

mod pods;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::hollow::Taint;
use crate::runtime::cni::{self, Cidr};
use crate::runtime::containerd::Containerd;
use crate::runtime::cri::Cri;
use crate::runtime::{self, images};

/// Why the node agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// The node agent's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the node agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub node_name: String,
    /// The node's address (InternalIP and the pods' hostIP); found from the routes when unset.
    pub node_ip: Option<Ipv4Addr>,
    /// Where containerd's state, CNI state, pod logs and scratch files live.
    pub data_dir: PathBuf,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Use the containerd at this socket instead of starting one.
    pub containerd_socket: Option<PathBuf>,
    /// The pods capacity.
    pub max_pods: u32,
    /// The pod CIDR; when unset, the Node's spec.podCIDR, else a /24 in 10.42.0.0/16 derived
    /// from the node name.
    pub pod_cidr: Option<String>,
    /// The cluster's pod network (the server's `--cluster-cidr`): pods get a route to it
    /// through their node, whose host-gw routes lead to the other nodes. None: pods reach
    /// only their own node.
    pub cluster_cidr: Option<String>,
    /// The CNI bridge device's name.
    pub bridge: String,
    /// On stop, leave the pods running (containerd is stopped, its shims and the containers
    /// stay); the next agent on the same data dir adopts them.
    pub keep_pods: bool,
    /// Port of the agent's HTTPS endpoint (logs, exec, attach, port-forward); 0 picks one.
    /// `None`: the kubelet's 10250, or a free port (with a warning) when 10250 is taken, so
    /// several agents can share a host; the Node's `daemonEndpoints` tell the API server.
    pub kubelet_port: Option<u16>,
    /// How many new pods are set up at once (sandbox, network, volumes, first containers);
    /// the others wait their turn, so the first pods of a burst run early instead of all
    /// finishing together late. 0: [`default_parallel_pod_starts`]; the environment variable
    /// `BERTH_PARALLEL_POD_STARTS` overrides it.
    pub parallel_pod_starts: usize,
    /// Hard eviction thresholds (`--eviction-hard`); the kubelet's defaults unless set.
    pub eviction_hard: Vec<eviction::Threshold>,
    /// Resources reserved for the system (`--system-reserved`, [`register::parse_reserved`]),
    /// taken off the Node's allocatable.
    pub system_reserved: BTreeMap<String, i128>,
    /// Resources reserved for Kubernetes' own daemons (`--kube-reserved`), likewise.
    pub kube_reserved: BTreeMap<String, i128>,
    /// A directory of static pod manifests (`--pod-manifests`).
    pub pod_manifests: Option<PathBuf>,
    /// How long a stop (without `keep_pods`) gives the pods, critical ones included
    /// (`--shutdown-grace-period`, [`shutdown`]); zero removes them at once.
    pub shutdown_grace_period: std::time::Duration,
    /// The part of [`AgentConfig::shutdown_grace_period`] kept for critical pods
    /// (`--shutdown-grace-period-critical-pods`).
    pub shutdown_grace_period_critical_pods: std::time::Duration,
    /// The pods' DNS: cluster DNS, cluster domain, the node's resolv.conf.
    pub dns: dns::DnsSettings,
}

/// Pod starts run at once by default: a few per CPU (most of a start is spent in runc, the
/// shim and the CNI plugins, not in the agent).
pub fn default_parallel_pod_starts() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

impl AgentConfig {
    /// Defaults for a node named `node_name` with its data under `data_dir`.
    pub fn new(node_name: &str, data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            node_name: node_name.to_string(),
            node_ip: None,
            data_dir,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            containerd_socket: None,
            max_pods: 110,
            pod_cidr: None,
            cluster_cidr: None,
            bridge: "berth0".into(),
            keep_pods: false,
            kubelet_port: None,
            parallel_pod_starts: 0,
            eviction_hard: eviction::default_thresholds(),
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            pod_manifests: None,
            shutdown_grace_period: std::time::Duration::from_secs(30),
            shutdown_grace_period_critical_pods: std::time::Duration::from_secs(10),
            dns: dns::DnsSettings::default(),
        }
    }
}

/// What the agent's tasks share.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) config: AgentConfig,
    pub(crate) cri: Cri,
    pub(crate) node_ip: Ipv4Addr,
    pub(crate) runtime_version: String,
    /// The bound port of the streaming endpoint (the Node's kubeletEndpoint).
    pub(crate) kubelet_port: u16,
    /// ConfigMaps and Secrets read for volumes and env.
    pub(crate) sources: sources::Sources,
    /// Permits for setting up new pods ([`AgentConfig::parallel_pod_starts`]).
    pub(crate) pod_starts: tokio::sync::Semaphore,
    /// Events about pods.
    pub(crate) events: events::Events,
    /// The latest usage snapshot ([`stats`]).
    pub(crate) stats: stats::Stats,
    /// Pressure and the pods picked for eviction ([`eviction`]).
    pub(crate) eviction: eviction::State,
    /// When the agent started (the Summary's node startTime).
    pub(crate) started: k8s_openapi::jiff::Timestamp,
    /// The containers' states from the latest relist ([`relist`]).
    pub(crate) relist: relist::Relist,
    /// Wake-ups of the pod workers, by pod uid.
    pub(crate) pod_wakers: relist::Wakers,
    /// When a graceful shutdown began (the Node is NotReady from then on).
    pub(crate) shutting_down: std::sync::OnceLock<k8s_openapi::jiff::Timestamp>,
    /// Whether the fall-back of ClusterFirst pods to the node's resolver was logged.
    pub(crate) dns_fallback_logged: std::sync::atomic::AtomicBool,
}

/// A running node agent; [`AgentHandle::stop`] stops it.
pub struct AgentHandle {
    shared: Arc<Shared>,
    containerd: Option<Containerd>,
    tasks: Vec<JoinHandle<()>>,
    /// The tasks that hand pods to workers (the API watch, static pods): stopped first on a
    /// graceful shutdown, so no pod starts meanwhile.
    pod_sources: Vec<JoinHandle<()>>,
    pod_workers: pods::Workers,
    /// The host-gw route keeper: told to stop, it removes its routes.
    routes: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

/// How long a new node without `--pod-cidr` waits for the node IPAM controller's range.
const NODE_IPAM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Entry point of the real node agent.
pub struct Agent;

impl Agent {
    /// Starts containerd (unless a socket is given), imports the node's own images, registers
    /// the Node and its Lease, writes the CNI config, then runs the pods bound to the node.
    pub async fn start(client: kube::Client, config: AgentConfig) -> Result<AgentHandle> {
        if config.node_name.is_empty() {
            return Err(Error::Config("the node name is empty".into()));
        }
        if let Some(cidr) = &config.pod_cidr {
            Cidr::parse(cidr)?;
        }
        shutdown::phases(config.shutdown_grace_period, config.shutdown_grace_period_critical_pods)
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(bad) = config.dns.cluster_dns.iter().find(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
            return Err(Error::Config(format!("the cluster DNS address {bad:?} is not an IP address")));
        }
        let pod_networks: Vec<Cidr> = config.cluster_cidr.iter().map(|c| Cidr::parse(c)).collect::<Result<_, _>>()?;
        let scratch = config.data_dir.join("tmp");
        std::fs::create_dir_all(&scratch).map_err(runtime::io_err("creating", &scratch))?;
        let (containerd, socket, cni_conf, cni_data) = match &config.containerd_socket {
            Some(socket) => {
                let d = config.data_dir.join("cni");
                (None, socket.clone(), PathBuf::from("/etc/cni/net.d"), d.join("data"))
            }
            None => {
                let c = Containerd::start(&config.data_dir).await?;
                let l = c.layout.clone();
                (Some(c), l.socket(), l.cni_conf_dir(), l.cni_data_dir())
            }
        };
        let started = async {
            let cri = Cri::connect(&socket).await?;
            let version = cri.version_when_ready(std::time::Duration::from_secs(60)).await?;
            images::import_builtin(&socket, &scratch).await?;
            Ok::<_, runtime::Error>((cri, version))
        }
        .await;
        let (cri, version) = match started {
            Ok(v) => v,
            Err(e) => {
                if let Some(c) = containerd {
                    c.stop().await;
                }
                return Err(e.into());
            }
        };
        let node_ip = config.node_ip.unwrap_or_else(register::default_node_ip);
        let listener = match bind_kubelet_port(config.kubelet_port).await {
            Ok(l) => l,
            Err(e) => {
                if let Some(c) = containerd {
                    c.stop().await;
                }
                return Err(e);
            }
        };
        let kubelet_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let starts = match config.parallel_pod_starts {
            0 => default_parallel_pod_starts(),
            n => n,
        };
        // BERTH_PARALLEL_POD_STARTS overrides it (for `berth bench pods` comparisons).
        let starts = std::env::var("BERTH_PARALLEL_POD_STARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(starts);
        let shared = Arc::new(Shared {
            sources: sources::Sources::new(client.clone()),
            pod_starts: tokio::sync::Semaphore::new(starts),
            events: events::Events::new(client.clone(), &config.node_name),
            stats: stats::Stats::default(),
            eviction: eviction::State::default(),
            started: k8s_openapi::jiff::Timestamp::now(),
            relist: relist::Relist::default(),
            pod_wakers: relist::Wakers::default(),
            shutting_down: std::sync::OnceLock::new(),
            dns_fallback_logged: std::sync::atomic::AtomicBool::new(false),
            client,
            runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
            config,
            cri,
            node_ip,
            kubelet_port,
        });
        let node_cidr = match register::register(&shared).await {
            Ok(c) => c,
            Err(e) => {
                if let Some(c) = containerd {
                    c.stop().await;
                }
                return Err(e);
            }
        };
        let streaming = async {
            let ca = crate::streaming::client_ca(&shared.client).await?;
            crate::streaming::serve(shared.clone(), listener, &ca)
        };
        let streaming = match streaming.await {
            Ok(t) => t,
            Err(e) => {
                if let Some(c) = containerd {
                    c.stop().await;
                }
                return Err(e);
            }
        };
        // A new Node gets its range from the node IPAM controller a moment after it is created.
        let node_cidr = match (&shared.config.pod_cidr, node_cidr) {
            (None, None) => register::wait_for_pod_cidr(&shared, NODE_IPAM_WAIT).await,
            (_, c) => c,
        };
        let cidr = match (&shared.config.pod_cidr, node_cidr) {
            (Some(c), _) => Cidr::parse(c)?,
            (None, Some(c)) => Cidr::parse(&c)?,
            (None, None) => register::derived_cidr(&shared.config.node_name),
        };
        cni::write_config(&cni_conf, &shared.config.bridge, cidr, &cni_data, &pod_networks)?;
        let (routes_stop, stop_rx) = tokio::sync::oneshot::channel();
        let record = shared.config.data_dir.join("routes");
        let node_name = shared.config.node_name.clone();
        let routes = tokio::spawn(routes::run(shared.client.clone(), node_name, cidr, record, stop_rx));
        tracing::info!(node = shared.config.node_name, %cidr, runtime = shared.runtime_version, "node agent ready");
        let pod_workers = pods::Workers::default();
        let mut pod_sources = vec![tokio::spawn(pods::watch(shared.clone(), pod_workers.clone()))];
        let mut tasks = vec![
            tokio::spawn(register::heartbeat_loop(shared.clone())),
            streaming,
            tokio::spawn(stats::sampler(shared.clone())),
            tokio::spawn(eviction::manager(shared.clone())),
        ];
        let hostname = shared.config.labels.get("kubernetes.io/hostname").unwrap_or(&shared.config.node_name);
        tasks.push(tokio::spawn(local_volumes::run(shared.client.clone(), hostname.clone())));
        match shared.config.pod_manifests.clone() {
            Some(dir) => pod_sources.push(tokio::spawn(static_pods::run(shared.clone(), pod_workers.clone(), dir))),
            None => pod_workers.mark_static_read(),
        }
        tasks.push(tokio::spawn(relist::run(shared.clone(), pod_workers.clone())));
        Ok(AgentHandle { shared, containerd, tasks, pod_sources, pod_workers, routes: Some((routes_stop, routes)) })
    }
}

/// Binds the streaming endpoint's port (see [`AgentConfig::kubelet_port`]).
async fn bind_kubelet_port(port: Option<u16>) -> Result<tokio::net::TcpListener> {
    use tokio::net::TcpListener;
    let any = std::net::Ipv4Addr::UNSPECIFIED;
    let bind_err = |port: u16| move |e: std::io::Error| Error::Config(format!("binding the kubelet port {port}: {e}"));
    match port {
        Some(p) => TcpListener::bind((any, p)).await.map_err(bind_err(p)),
        None => match TcpListener::bind((any, 10250)).await {
            Ok(l) => Ok(l),
            Err(e) => {
                tracing::warn!(error = %e, "port 10250 is taken: serving logs/exec/port-forward on a free port");
                TcpListener::bind((any, 0)).await.map_err(bind_err(0))
            }
        },
    }
}

impl AgentHandle {
    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// The port of the agent's HTTPS endpoint.
    pub fn kubelet_port(&self) -> u16 {
        self.shared.kubelet_port
    }

    /// Stops the agent: a graceful node shutdown first ([`shutdown`]: the Node NotReady, the
    /// pods stopped with their grace periods and their status written), then the watch and
    /// heartbeats, then every pod's sandbox left (containers stopped, network torn down,
    /// removed), then containerd if it started it, then the bridge. With `keep_pods`, only
    /// the agent and containerd stop.
    pub async fn stop(mut self) {
        let keep = self.shared.config.keep_pods;
        for t in &self.pod_sources {
            t.abort();
        }
        if !keep {
            shutdown::run(&self.shared, &self.pod_workers).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        self.pod_workers.abort_all();
        if let Some((stop, task)) = self.routes.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        if let Some(c) = self.containerd.take_if(|_| keep) {
            c.stop_keeping_state().await;
            return;
        }
        if let Ok(sandboxes) = self.shared.cri.list_pod_sandboxes().await {
            let ours = sandboxes
                .into_iter()
                .filter(|s| s.labels.get(containers::NODE_LABEL).is_some_and(|n| *n == self.shared.config.node_name));
            for s in ours {
                let _ = self.shared.cri.stop_pod_sandbox(&s.id).await;
                let _ = self.shared.cri.remove_pod_sandbox(&s.id).await;
            }
        }
        // Memory-medium emptyDirs are tmpfs mounts under the pods' directories.
        volumes::unmount_all(&self.shared.config.data_dir.join("pods")).await;
        if let Some(c) = self.containerd {
            c.stop().await;
            cni::delete_bridge(&self.shared.config.bridge).await;
        }
    }
}
