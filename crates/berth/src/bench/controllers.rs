//! `berth bench controllers`: a Deployment of many replicas on a real `berth server` child
//! (its controllers and scheduler) and 100 hollow nodes (`berth agent --hollow` child):
//! time to all pods Available, a rolling update of all of them, and deletion with cascade.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::hollow::AgentProcess;
use super::report::{self, Figure};
use super::server::ServerProcess;

/// Flags of `berth bench controllers`.
#[derive(Args, Debug)]
pub(crate) struct ControllersArgs {
    /// Print one JSON object of named figures instead of a table.
    #[arg(long)]
    json: bool,
    /// 100 replicas instead of 3,000, for a smoke test (figures are not meaningful).
    #[arg(long)]
    quick: bool,
    /// Replicas of the Deployment [default: 3,000, or 100 with --quick].
    #[arg(long)]
    replicas: Option<i32>,
    /// Hollow nodes the pods run on.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
}

/// How long any one phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

fn progress(msg: &str) {
    eprintln!("bench controllers: {msg}");
}

/// Runs the controllers benchmark and prints the figures.
pub(crate) async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let replicas: i32 = args.replicas.unwrap_or(if args.quick { 100 } else { 3000 });
    anyhow::ensure!(replicas > 0, "--replicas must be at least 1");
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    let server = ServerProcess::start().await.context("starting the server under test")?;
    // Hollow pods start 200 ms after binding and end at once when deleted.
    let agent = AgentProcess::start_with(&server, args.nodes, &["--max-termination-grace", "1s"])
        .context("starting the hollow nodes")?;
    let measured = measure(&server, replicas, args.nodes).await;
    progress("stopping the hollow nodes and the server");
    let agent_stopped = agent.stop().context("stopping the hollow nodes");
    let figures = match (measured, agent_stopped) {
        (Ok(f), Ok(())) => Ok(f),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    let stopped = server.stop().await.context("stopping the server under test");
    let figures = figures?;
    stopped?;
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        let title = format!(
            "berth bench controllers{}: a Deployment of {replicas} replicas on {} hollow nodes, berth server on {} cores",
            if args.quick { " --quick (counts too small for meaningful figures)" } else { "" },
            args.nodes,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print!("{}", report::table(&title, &figures));
    }
    Ok(())
}

/// Polls the Deployment until `done` holds; returns the time taken.
async fn until(api: &Api<Deployment>, what: &str, done: impl Fn(&Deployment) -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Some(d) = api.get_opt("bench").await?
            && done(&d)
        {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < PHASE_TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn complete(d: &Deployment, replicas: i32) -> bool {
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
}

async fn measure(server: &ServerProcess, replicas: i32, nodes: usize) -> anyhow::Result<Vec<Figure>> {
    let client = server.kube_client().await.context("kube client")?;
    progress(&format!("waiting for {nodes} hollow nodes"));
    let node_api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    while node_api.list_metadata(&ListParams::default()).await?.items.len() < nodes {
        anyhow::ensure!(started.elapsed() < PHASE_TIMEOUT, "the hollow nodes did not register");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "bench" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "bench" } },
            "template": { "metadata": { "labels": { "app": "bench" } },
                "spec": { "terminationGracePeriodSeconds": 1,
                          "containers": [{ "name": "c", "image": "busybox:1.36" }] } } }
    }))?;

    progress(&format!("creating a Deployment of {replicas} replicas"));
    let started = Instant::now();
    api.create(&PostParams::default(), &deployment).await?;
    let all_created =
        until(&api, "all pods created", |d| d.status.as_ref().and_then(|s| s.replicas) == Some(replicas)).await?;
    until(&api, "all pods available", |d| complete(d, replicas)).await?;
    let all_available = started.elapsed();

    progress("rolling update to a new image");
    let patch =
        json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "busybox:1.37" }] } } } });
    let started = Instant::now();
    api.patch("bench", &PatchParams::default(), &Patch::Strategic(patch)).await?;
    until(&api, "the rolling update", |d| complete(d, replicas)).await?;
    let rollout = started.elapsed();

    progress("deleting with cascade (background)");
    let started = Instant::now();
    api.delete("bench", &DeleteParams::background()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rses: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    // The garbage collector deletes the ReplicaSets, then their pods; the nodes end them.
    let cascade = loop {
        let left_rs = rses.list_metadata(&ListParams::default().limit(1)).await?.items.len();
        let left_pods = pods.list_metadata(&ListParams::default().limit(1)).await?.items.len();
        if left_rs == 0 && left_pods == 0 {
            break started.elapsed();
        }
        anyhow::ensure!(started.elapsed() < PHASE_TIMEOUT, "timed out waiting for the cascade deletion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut figures = vec![
        Figure::new("deployment_all_pods_created_ms", format!("{replicas} pods created"), ms(all_created), "ms"),
        Figure::new(
            "deployment_all_available_ms",
            format!("{replicas} pods Running and Available"),
            ms(all_available),
            "ms",
        )
        .goal("< 10 s for 3,000")
        .anchor("~150 s: kube-controller-manager at 20 QPS"),
        Figure::new(
            "rolling_update_ms",
            format!("rolling update of {replicas} pods (25% surge/unavailable)"),
            ms(rollout),
            "ms",
        ),
    ];
    figures.push(Figure::new("cascade_delete_ms", "cascade deletion, all pods gone", ms(cascade), "ms"));
    Ok(figures)
}
