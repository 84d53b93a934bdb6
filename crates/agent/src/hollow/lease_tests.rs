//! The renewal schedule, on paused time against a recording fake API server: every lease
//! once per interval, node `i` at offset `i/N`, node status every `report_interval`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::super::{HollowConfig, Shared};
use super::renew_loop;

/// (time since start, method, path) of every request.
type Log = Arc<Mutex<Vec<(Duration, String, String)>>>;

fn recording_client(log: Log, t0: Instant) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_string();
            log.lock().unwrap().push((t0.elapsed(), req.method().to_string(), path.clone()));
            let body = if path.contains("/leases/") {
                r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"x"}}"#
            } else {
                r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"x"}}"#
            };
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body))))
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test(start_paused = true)]
async fn renewals_are_spread_over_the_interval() {
    let log: Log = Arc::default();
    let t0 = Instant::now();
    let config =
        HollowConfig { nodes: 100, node_status_report_interval: Duration::from_secs(20), ..HollowConfig::default() };
    let shared = Arc::new(Shared::new(recording_client(log.clone(), t0), config));
    // Node 7 is still registering: it is skipped.
    for (i, node) in shared.nodes.iter().enumerate() {
        node.registered.store(i != 7, std::sync::atomic::Ordering::Release);
    }
    let task = tokio::spawn(renew_loop(shared.clone()));
    // Three rounds: 0–10 s, 10–20 s, 20–30 s.
    tokio::time::sleep(Duration::from_millis(29_950)).await;
    task.abort();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let log = log.lock().unwrap().clone();
    for i in 0..100u32 {
        let lease = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/hollow-node-{i}");
        let times: Vec<Duration> =
            log.iter().filter(|(_, m, p)| m == "PATCH" && *p == lease).map(|(t, ..)| *t).collect();
        if i == 7 {
            assert!(times.is_empty(), "unregistered node renewed: {times:?}");
            continue;
        }
        assert_eq!(times.len(), 3, "node {i}: {times:?}");
        for (round, t) in times.iter().enumerate() {
            let due = Duration::from_secs(10) * round as u32 + Duration::from_millis(100) * i;
            assert!(*t >= due && *t < due + Duration::from_millis(5), "node {i} round {round}: at {t:?}, due {due:?}");
        }
        // Status every 2 rounds, spread: even nodes in rounds 0 and 2, odd ones in round 1.
        let status = format!("/api/v1/nodes/hollow-node-{i}/status");
        let posts = log.iter().filter(|(_, m, p)| m == "PATCH" && *p == status).count();
        assert_eq!(posts, if i % 2 == 0 { 2 } else { 1 }, "node {i}");
    }
}
