//! The cluster's controllers: each module watches the API through kube-runtime and drives
//! the cluster towards what its objects ask for, as kube-controller-manager does.
//!
//! Every controller talks to the API server over HTTP with a [`kube::Client`], even when it
//! runs inside `berth server`: one path for authorization, admission and watch. [`run`]
//! starts the enabled ones; `berth server` runs it under [`leader_election`], so that of
//! several servers exactly one runs the controllers.

mod daemonset;
mod deployment;
mod events;
pub mod leader_election;
mod pods;
mod replicaset;
mod revisions;
mod serviceaccounts;
mod statefulset;

use std::collections::BTreeSet;

use futures::future::BoxFuture;

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
pub const NAMES: &[&str] =
    &["serviceaccount", "replicaset", "replicationcontroller", "deployment", "statefulset", "daemonset"];

/// Which controllers run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names (from [`NAMES`]) of the controllers not to run.
    pub disabled: BTreeSet<String>,
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
        Ok(Options { disabled })
    }

    fn enabled(&self, name: &str) -> bool {
        !self.disabled.contains(name)
    }
}

/// Runs every enabled controller until the returned future is dropped. A controller
/// whose watch fails retries with back-off inside kube-runtime; it only returns on a bug.
pub async fn run(client: kube::Client, options: Options) {
    let mut all: Vec<(&str, BoxFuture<'static, ()>)> = Vec::new();
    if options.enabled("serviceaccount") {
        all.push(("serviceaccount", Box::pin(serviceaccounts::run(client.clone()))));
    }
    if options.enabled("replicaset") {
        all.push(("replicaset", Box::pin(replicaset::run_replicasets(client.clone()))));
    }
    if options.enabled("replicationcontroller") {
        all.push(("replicationcontroller", Box::pin(replicaset::run_replicationcontrollers(client.clone()))));
    }
    if options.enabled("deployment") {
        all.push(("deployment", Box::pin(deployment::run(client.clone()))));
    }
    if options.enabled("statefulset") {
        all.push(("statefulset", Box::pin(statefulset::run(client.clone()))));
    }
    if options.enabled("daemonset") {
        all.push(("daemonset", Box::pin(daemonset::run(client.clone()))));
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    tracing::info!(controllers = ?names, "controllers started");
    futures::future::join_all(all.into_iter().map(|(name, fut)| async move {
        fut.await;
        tracing::warn!(controller = name, "controller stopped");
    }))
    .await;
}
