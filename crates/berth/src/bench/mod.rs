//! `berth bench`: benchmarks that print measured figures beside their goals and anchors.
//!
//! Each area is a subcommand; `--json` prints one JSON object of named figures instead of
//! the table. Figures are measured, never asserted: nothing here fails on wall-clock time.

mod api;
mod api_authn;
mod api_pods;
mod client;
mod controllers;
mod hollow;
mod memory;
mod pods;
mod report;
mod scheduler;
mod server;
mod stats;
mod store;

use clap::{Args, Subcommand};

/// Flags of `berth bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    area: Area,
}

/// The areas that can be benchmarked.
#[derive(Subcommand, Debug)]
enum Area {
    /// The API server over HTTP: start-up, memory, create/get/update, LIST, watch fan-out.
    Api(api::ApiArgs),
    /// Hollow nodes: registration, agent memory and CPU, lease freshness, pods to Running.
    Hollow(hollow::HollowArgs),
    /// The API server's memory per object: RSS per Pod created, per status PATCH, and of
    /// the history the watch cache and the store keep.
    Memory(memory::MemoryArgs),
    /// Pods on one real node (containerd): create → Running latency, agent memory.
    Pods(pods::PodsArgs),
    /// The datastores side by side: the API server and the store on SQLite and on etcd,
    /// and raw etcd puts as the anchor.
    Store(store::StoreArgs),
    /// The scheduler: pods/s and create-to-bound latency at thousands of API-created nodes.
    Scheduler(scheduler::SchedulerArgs),
    /// The workload controllers: a Deployment of 3,000 replicas, a rolling update, a cascade delete.
    Controllers(controllers::ControllersArgs),
}

/// Runs the chosen benchmark and prints its figures.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.area {
        Area::Api(a) => api::run(a).await,
        Area::Hollow(a) => hollow::run(a).await,
        Area::Memory(a) => memory::run(a).await,
        Area::Pods(a) => pods::run(a).await,
        Area::Store(a) => store::run(a).await,
        Area::Scheduler(a) => scheduler::run(a).await,
        Area::Controllers(a) => controllers::run(a).await,
    }
}
