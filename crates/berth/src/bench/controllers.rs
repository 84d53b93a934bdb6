//! `berth bench controllers`: a Deployment of many replicas on a real `berth server` child,
//! with a stand-in kubelet (a watch that marks every pod Running and Ready through the API):
//! time to all pods Available, a rolling update of all of them, and deletion with cascade.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

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
}

/// How long any one phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

fn progress(msg: &str) {
    eprintln!("bench controllers: {msg}");
}

/// Runs the controllers benchmark and prints the figures.
pub(crate) async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let replicas: i32 = if args.quick { 100 } else { 3000 };
    let server = ServerProcess::start().await.context("starting the server under test")?;
    let measured = measure(&server, replicas).await;
    progress("stopping the server");
    let stopped = server.stop().await.context("stopping the server under test");
    let figures = measured?;
    stopped?;
    if args.json {
        println!("{}", report::json(&figures));
    } else {
        let title = format!(
            "berth bench controllers{}: a Deployment of {replicas} replicas, berth server on {} cores, stand-in kubelet in the same machine",
            if args.quick { " --quick (counts too small for meaningful figures)" } else { "" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        print!("{}", report::table(&title, &figures));
    }
    Ok(())
}

/// Marks every pod it sees Running and Ready, and finishes graceful deletions, at most
/// `concurrency` writes at a time.
async fn kubelet(client: kube::Client, concurrency: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let all: Api<Pod> = Api::all(client.clone());
    let mut pods = std::pin::pin!(watcher(all, watcher::Config::default()).default_backoff().applied_objects());
    while let Some(Ok(pod)) = pods.next().await {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready && pod.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        tokio::spawn(async move {
            let _permit = permit;
            let name = pod.name_any();
            if pod.metadata.deletion_timestamp.is_some() {
                let _ =
                    api.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await;
                return;
            }
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({ "status": { "phase": "Running", "startTime": now,
                "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": now },
                               { "type": "ContainersReady", "status": "True", "lastTransitionTime": now }] } });
            let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await;
        });
    }
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

async fn measure(server: &ServerProcess, replicas: i32) -> anyhow::Result<Vec<Figure>> {
    let client = server.kube_client().await.context("kube client")?;
    let harness = tokio::spawn(kubelet(client.clone(), 64));
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "bench" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "bench" } },
            "template": { "metadata": { "labels": { "app": "bench" } },
                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } } }
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
    // The garbage collector removes the ReplicaSets and pods; without one they stay.
    let mut cascade = None;
    while started.elapsed() < Duration::from_secs(20) {
        let left_rs = rses.list(&ListParams::default().limit(1)).await?.items.len();
        let left_pods = pods.list(&ListParams::default().limit(1)).await?.items.len();
        if left_rs == 0 && left_pods == 0 {
            cascade = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    harness.abort();

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
    match cascade {
        Some(d) => figures.push(Figure::new("cascade_delete_ms", "cascade deletion, all pods gone", ms(d), "ms")),
        None => progress("cascade deletion did not finish in 20 s: no garbage collector in this build"),
    }
    Ok(figures)
}
