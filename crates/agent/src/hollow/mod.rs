//! Hollow nodes (as kwok does): many fake nodes in one process. Each registers a Node,
//! renews its Lease in `kube-node-lease` and plays the kubelet's part for the pods bound to
//! it, without containers: Pending → Running after a start delay, run-to-completion pods →
//! Succeeded, deleted pods removed after their grace period.
//!
//! Cheap per node: one shared client, one pod watch and one node watch for all nodes, one
//! task renewing every lease (spread over the renewal interval), and per node only its
//! name, addresses and the set of pod addresses in use.
//!
//! - [`config`]: settings and the parsers of their command-line forms.
//! - `node`: node registration, status heartbeats and podCIDR updates.
//! - `lease`: node leases and their renewal.
//! - `pods`: the pod lifecycle.
//! - [`pod_status`]: the statuses written (pure).

mod addresses;
pub mod config;
mod lease;
mod node;
pub mod pod_status;
mod pods;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use config::{ConfigError, HollowConfig, Taint};

use addresses::PodRange;

/// Why hollow nodes could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The API server refused or failed a registration request.
    #[error("registering node {node}: {source}")]
    Register {
        /// The node being registered.
        node: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One hollow node's state.
#[derive(Debug)]
pub(crate) struct NodeState {
    pub(crate) name: String,
    pub(crate) ip: Ipv4Addr,
    /// The Node's uid once registered (for the Lease's owner reference).
    pub(crate) uid: Mutex<String>,
    /// Addresses for its pods.
    pub(crate) pods: Mutex<PodRange>,
    /// A lease renewal is in flight: the next one is skipped rather than queued.
    pub(crate) renewing: AtomicBool,
    /// The Node and its Lease exist: renewals start.
    pub(crate) registered: AtomicBool,
}

/// What every task of one set of hollow nodes shares.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) config: HollowConfig,
    pub(crate) nodes: Vec<NodeState>,
    pub(crate) by_name: HashMap<String, usize>,
    /// Bounds pod and node-status writes in flight.
    pub(crate) writes: Semaphore,
    /// Bounds lease renewals in flight, apart from other writes so that pod churn cannot
    /// starve the heartbeats.
    pub(crate) lease_writes: Semaphore,
    /// When this process started playing the nodes (the conditions' transition time).
    pub(crate) started: Timestamp,
    pub(crate) pods: pods::Tracker,
}

impl Shared {
    /// The state of `config.nodes` not yet registered nodes.
    fn new(client: kube::Client, config: HollowConfig) -> Shared {
        let nodes: Vec<NodeState> = (0..config.nodes)
            .map(|i| NodeState {
                name: config.node_name(i),
                ip: addresses::node_ip(i),
                uid: Mutex::new(String::new()),
                pods: Mutex::new(PodRange::for_node(i)),
                renewing: AtomicBool::new(false),
                registered: AtomicBool::new(false),
            })
            .collect();
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        Shared {
            client,
            writes: Semaphore::new(config.max_concurrent_writes),
            lease_writes: Semaphore::new(config.max_concurrent_writes.div_ceil(2)),
            config,
            nodes,
            by_name,
            started: Timestamp::now(),
            pods: pods::Tracker::default(),
        }
    }
}

/// Entry point: starts a set of hollow nodes.
pub struct HollowNodes;

impl HollowNodes {
    /// Registers `config.nodes` nodes (re-using existing Nodes of the same names) with their
    /// leases, then starts renewing the leases and playing pods bound to the nodes. Returns
    /// once every node is registered.
    pub async fn start(client: kube::Client, config: HollowConfig) -> Result<HollowHandle> {
        config.validate()?;
        let shared = Arc::new(Shared::new(client, config));
        // Renewals run on their schedule from the start, for each node once it is registered,
        // so that no lease ages while the others register.
        let renewals = tokio::spawn(lease::renew_loop(shared.clone()));
        if let Err(e) = node::register_all(&shared).await {
            renewals.abort();
            return Err(e);
        }
        let tasks = vec![
            renewals,
            tokio::spawn(node::watch_pod_cidrs(shared.clone())),
            tokio::spawn(pods::watch(shared.clone())),
        ];
        Ok(HollowHandle { shared, tasks })
    }
}

/// Running hollow nodes; dropping it stops them too.
pub struct HollowHandle {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl HollowHandle {
    /// The names of the nodes, in index order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.shared.nodes.iter().map(|n| n.name.as_str())
    }

    /// Stops renewing leases and playing pods (the Nodes and Leases stay, as when a kubelet stops).
    pub async fn stop(mut self) {
        self.abort();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.pods.abort_all();
    }
}

impl Drop for HollowHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Runs `f` with retries on transient errors (not 404/409/422): up to 5 tries, backing off
/// from 200 ms.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, mut f: F) -> std::result::Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, kube::Error>>,
{
    let mut delay = std::time::Duration::from_millis(200);
    let mut tries = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(s)) if matches!(s.code, 400..=499) && s.code != 429 => {
                return Err(kube::Error::Api(s));
            }
            Err(e) if tries >= 4 => return Err(e),
            Err(e) => {
                tracing::debug!(%e, what, "retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                tries += 1;
            }
        }
    }
}

/// True for a Kubernetes API error with this HTTP code.
pub(crate) fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
