//! The cluster's controllers: each module watches the API through kube-runtime and drives
//! the cluster towards what its objects ask for, as kube-controller-manager does.
//!
//! Every controller talks to the API server over HTTP with a [`kube::Client`], even when it
//! runs inside `berth server`: one path for authorization, admission and watch. [`run`]
//! starts the enabled ones; `berth server` runs it under [`leader_election`], so that of
//! several servers exactly one runs the controllers.

mod backoff;
mod bootstrapsigner;
mod clusterrole_aggregation;
mod cronjob;
mod csr_approving;
pub mod csr_signing;
mod daemonset;
mod deployment;
mod discovery;
mod disruption;
mod endpoints;
mod events;
mod expiry;
mod finalizers;
mod garbagecollector;
mod informers;
mod job;
pub mod leader_election;
mod lean;
mod namespace;
pub mod nodeipam;
mod nodelifecycle;
pub mod persistentvolume;
mod podgc;
mod pods;
mod pv_protection;
mod pvc_protection;
mod replicaset;
mod resourcequota;
mod revisions;
pub mod rootca;
mod selector;
mod serviceaccounts;
mod statefulset;
mod tokencleaner;
mod ttlafterfinished;

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};

/// Errors of the controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A sync could not do all it had to (it is retried with back-off).
    #[error("sync failed: {0}")]
    Sync(String),
    /// A controller name given to `--disable-controllers` is not known.
    #[error("unknown controller {0:?} (known: {known})", known = NAMES.join(", "))]
    UnknownController(String),
}

/// Result with the controllers' [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names of the controllers, as `--disable-controllers` takes them.
pub const NAMES: &[&str] = &[
    "serviceaccount",
    "replicaset",
    "replicationcontroller",
    "deployment",
    "statefulset",
    "daemonset",
    "garbagecollector",
    "namespace",
    "endpoints",
    "endpointslice",
    "endpointslicemirroring",
    "disruption",
    "nodelifecycle",
    "nodeipam",
    "persistentvolume-binder",
    "pvc-protection",
    "pv-protection",
    "podgc",
    "job",
    "cronjob",
    "ttl-after-finished",
    "resourcequota",
    "root-ca-cert-publisher",
    "clusterrole-aggregation",
    "csrapproving",
    "csrsigning",
    "tokencleaner",
    "bootstrapsigner",
];

pub use nodelifecycle::EvictionLimits;

/// Which controllers run, and their settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names (from [`NAMES`]) of the controllers not to run.
    pub disabled: BTreeSet<String>,
    /// The range nodes' pod ranges (a /24 each) come from (`--cluster-cidr`).
    pub cluster_cidr: nodeipam::Cidr,
    /// How long a node may go without renewing its Lease before it is Unknown
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: std::time::Duration,
    /// Zone-aware pacing of NoExecute taints (`--node-eviction-rate` and friends).
    pub eviction_limits: EvictionLimits,
    /// How many terminated pods may exist before the oldest are deleted
    /// (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// The server CA (PEM) published in every namespace as ConfigMap `kube-root-ca.crt`;
    /// `None` runs no root-ca-cert-publisher.
    pub root_ca: Option<String>,
    /// The client CA that signs approved CertificateSigningRequests; `None` runs no csrsigning.
    pub csr_signing: Option<csr_signing::CsrSigning>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            disabled: BTreeSet::new(),
            cluster_cidr: nodeipam::Cidr::DEFAULT,
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            eviction_limits: EvictionLimits::default(),
            terminated_pod_gc_threshold: 12_500,
            root_ca: None,
            csr_signing: None,
        }
    }
}

impl Options {
    /// Options with the given controllers disabled; fails on an unknown name.
    pub fn disabling<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Options> {
        let mut disabled = BTreeSet::new();
        for name in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
            if !NAMES.contains(&name) {
                return Err(Error::UnknownController(name.to_string()));
            }
            disabled.insert(name.to_string());
        }
        Ok(Options { disabled, ..Options::default() })
    }

    fn enabled(&self, name: &str) -> bool {
        !self.disabled.contains(name)
    }
}

/// Runs every enabled controller until the returned future is dropped. A controller
/// whose watch fails retries with back-off inside kube-runtime; it only returns on a bug.
pub async fn run(client: kube::Client, options: Options) {
    let mut all: Vec<(&str, BoxFuture<'static, ()>)> = Vec::new();
    // One watch of Pods, one of Nodes and one of claims for every controller below (see `informers`).
    let pods = Arc::new(informers::Shared::<Pod>::new());
    let nodes = Arc::new(informers::Shared::<Node>::new());
    let claims = Arc::new(informers::Shared::<PersistentVolumeClaim>::new());
    if options.enabled("serviceaccount") {
        all.push(("serviceaccount", Box::pin(serviceaccounts::run(client.clone()))));
    }
    if let Some(ca) = options.root_ca.clone().filter(|_| options.enabled("root-ca-cert-publisher")) {
        all.push(("root-ca-cert-publisher", Box::pin(rootca::run(client.clone(), ca))));
    }
    if options.enabled("garbagecollector") {
        all.push(("garbagecollector", Box::pin(garbagecollector::run(client.clone()))));
    }
    if options.enabled("namespace") {
        all.push(("namespace", Box::pin(namespace::run(client.clone()))));
    }
    if options.enabled("endpoints") {
        all.push(("endpoints", Box::pin(endpoints::run(client.clone(), endpoints::Output::Endpoints, pods.feed()))));
    }
    if options.enabled("endpointslice") {
        all.push(("endpointslice", Box::pin(endpoints::run(client.clone(), endpoints::Output::Slices, pods.feed()))));
    }
    if options.enabled("endpointslicemirroring") {
        all.push(("endpointslicemirroring", Box::pin(endpoints::run_mirroring(client.clone()))));
    }
    if options.enabled("disruption") {
        all.push(("disruption", Box::pin(disruption::run(client.clone(), pods.feed()))));
    }
    if options.enabled("nodelifecycle") {
        let grace = options.node_monitor_grace_period;
        let limits = options.eviction_limits;
        all.push((
            "nodelifecycle",
            Box::pin(nodelifecycle::run(client.clone(), grace, limits, nodes.store(), pods.store())),
        ));
    }
    if options.enabled("nodeipam") {
        all.push(("nodeipam", Box::pin(nodeipam::run(client.clone(), options.cluster_cidr))));
    }
    if options.enabled("persistentvolume-binder") {
        all.push(("persistentvolume-binder", Box::pin(persistentvolume::run(client.clone(), pods.feed()))));
    }
    if options.enabled("pvc-protection") {
        all.push(("pvc-protection", Box::pin(pvc_protection::run(client.clone(), pods.feed()))));
    }
    if options.enabled("pv-protection") {
        all.push(("pv-protection", Box::pin(pv_protection::run(client.clone()))));
    }
    if options.enabled("podgc") {
        all.push((
            "podgc",
            Box::pin(podgc::run(client.clone(), options.terminated_pod_gc_threshold, pods.store(), nodes.store())),
        ));
    }
    if options.enabled("replicaset") {
        all.push(("replicaset", Box::pin(replicaset::run_replicasets(client.clone(), pods.feed()))));
    }
    if options.enabled("replicationcontroller") {
        all.push((
            "replicationcontroller",
            Box::pin(replicaset::run_replicationcontrollers(client.clone(), pods.feed())),
        ));
    }
    if options.enabled("deployment") {
        all.push(("deployment", Box::pin(deployment::run(client.clone(), pods.feed()))));
    }
    if options.enabled("statefulset") {
        all.push(("statefulset", Box::pin(statefulset::run(client.clone(), pods.feed(), claims.feed()))));
    }
    if options.enabled("daemonset") {
        all.push(("daemonset", Box::pin(daemonset::run(client.clone(), pods.feed(), nodes.feed()))));
    }
    if options.enabled("job") {
        all.push(("job", Box::pin(job::run(client.clone(), pods.feed()))));
    }
    if options.enabled("cronjob") {
        all.push(("cronjob", Box::pin(cronjob::run(client.clone()))));
    }
    if options.enabled("ttl-after-finished") {
        all.push(("ttl-after-finished", Box::pin(ttlafterfinished::run(client.clone()))));
    }
    if options.enabled("resourcequota") {
        all.push(("resourcequota", Box::pin(resourcequota::run(client.clone()))));
    }
    if options.enabled("clusterrole-aggregation") {
        all.push(("clusterrole-aggregation", Box::pin(clusterrole_aggregation::run(client.clone()))));
    }
    if options.enabled("csrapproving") {
        all.push(("csrapproving", Box::pin(csr_approving::run(client.clone()))));
    }
    if let Some(signing) = options.csr_signing.clone().filter(|_| options.enabled("csrsigning")) {
        all.push(("csrsigning", Box::pin(csr_signing::run(client.clone(), signing))));
    }
    if options.enabled("tokencleaner") {
        all.push(("tokencleaner", Box::pin(tokencleaner::run(client.clone()))));
    }
    if options.enabled("bootstrapsigner") {
        all.push(("bootstrapsigner", Box::pin(bootstrapsigner::run(client.clone()))));
    }
    // The shared watches start once every controller above has subscribed.
    if pods.used() {
        let client = client.clone();
        all.push(("pod-informer", Box::pin(async move { pods.run(client).await })));
    }
    if nodes.used() {
        let client = client.clone();
        all.push(("node-informer", Box::pin(async move { nodes.run(client).await })));
    }
    if claims.used() {
        let client = client.clone();
        all.push(("claim-informer", Box::pin(async move { claims.run(client).await })));
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    tracing::info!(controllers = ?names, "controllers started");
    futures::future::join_all(all.into_iter().map(|(name, fut)| async move {
        fut.await;
        tracing::warn!(controller = name, "controller stopped");
    }))
    .await;
}
