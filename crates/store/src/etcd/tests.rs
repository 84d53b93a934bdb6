//! Tests of the etcd backend against a real etcd started in a temp dir: the conformance
//! suite and the model-based property test (a fresh etcd per check, since etcd's
//! revisions are global), a three-member cluster losing its leader, etcd going away and
//! coming back, and bad endpoints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_testkit::Etcd;
use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;

use super::{EtcdOptions, EtcdStore};
use crate::conformance::{self, model, take_events};
use crate::{Error, Event, Store};

/// Options for tests: no background compaction, so results are deterministic.
fn test_options() -> EtcdOptions {
    EtcdOptions { compaction_interval: Duration::ZERO, ..EtcdOptions::default() }
}

fn val(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn connect(etcd: &Etcd, options: EtcdOptions) -> Arc<EtcdStore> {
    Arc::new(EtcdStore::connect(&etcd.endpoints(), options).await.expect("connect to etcd"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    conformance_on(1).await;
}

/// The same suite on three members, as an HA control plane runs etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_three_members() {
    conformance_on(3).await;
}

async fn conformance_on(members: usize) {
    if !berth_testkit::etcd::etcd_available() {
        return;
    }
    // Every check wants a store at revision 0: a fresh etcd each, stopped at the end.
    let clusters: Mutex<Vec<Etcd>> = Mutex::new(Vec::new());
    conformance::run_all(|| {
        tokio::task::block_in_place(|| {
            let etcd = if members == 1 { Etcd::start() } else { Etcd::start_cluster(members) }.expect("etcd");
            let store = tokio::runtime::Handle::current().block_on(connect(&etcd, test_options()));
            let mut clusters = clusters.lock().unwrap();
            // Keep only the cluster in use: the previous check's store is closed.
            clusters.clear();
            clusters.push(etcd);
            store as Arc<dyn Store>
        })
    })
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn model_based(ops in model::ops(40)) {
        let Some(etcd) = Etcd::start() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let store = connect(&etcd, test_options()).await;
            model::check_model(&*store, &ops).await;
            store.close().await.unwrap();
        });
    }
}

/// The concurrency checks on a three-member cluster, and writes that go on while its
/// leader is killed with SIGKILL (the store retries, and recognises a write that went
/// through unconfirmed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_the_loss_of_one() {
    let Some(mut etcd) = Etcd::start_cluster(3) else { return };
    let store = connect(&etcd, test_options()).await;
    conformance::concurrent_writers_get_distinct_revisions(&*store).await;
    let mut watch = store.watch("/ha/", 0).await.unwrap();
    let mut written = Vec::new();
    for n in 0..20 {
        written.push(store.create(&format!("/ha/{n}"), val("x")).await.unwrap());
    }
    let leader = etcd.leader().expect("a leader");
    etcd.stop_member(leader, "KILL");
    for n in 20..60 {
        match store.create(&format!("/ha/{n}"), val("x")).await {
            Ok(kv) => written.push(kv),
            // A write cut by the leader's death may or may not have been applied.
            Err(Error::Timeout(message)) => panic!("write during leader loss timed out: {message}"),
            Err(e) => panic!("write {n} during member loss: {e}"),
        }
    }
    let events = take_events(&mut watch, written.len()).await;
    let want: Vec<Event> = written.into_iter().map(|kv| Event::Put { kv, prev: None }).collect();
    assert_eq!(events, want);
    assert_eq!(store.count("/ha/").await.unwrap(), 60);
    store.close().await.unwrap();
}

/// With etcd gone, writes fail with Unavailable (not a hang) and a watch waits; when
/// etcd is back, writes work and the watch goes on without losing or repeating events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_fails_writes_then_recovers() {
    let Some(mut etcd) = Etcd::start() else { return };
    let options =
        EtcdOptions { request_timeout: Duration::from_secs(2), retry_for: Duration::from_secs(3), ..test_options() };
    let store = connect(&etcd, options).await;
    let mut watch = store.watch("/d/", 0).await.unwrap();
    let a = store.create("/d/a", val("1")).await.unwrap();
    etcd.stop();
    let started = std::time::Instant::now();
    match store.create("/d/b", val("1")).await {
        Err(Error::Unavailable(message)) | Err(Error::Timeout(message)) => {
            assert!(message.contains("etcd at 127.0.0.1:"), "{message}")
        }
        other => panic!("create with etcd down: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(60), "the failed write hung");
    assert!(matches!(store.get("/d/a").await, Err(Error::Unavailable(_) | Error::Timeout(_))));
    etcd.restart();
    let mut b = None;
    for _ in 0..100 {
        match store.create("/d/b", val("2")).await {
            Ok(kv) => {
                b = Some(kv);
                break;
            }
            Err(Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("create after etcd came back: {e}"),
        }
    }
    let b = b.expect("etcd never came back");
    assert_eq!(b.mod_revision, a.mod_revision + 1);
    let events = take_events(&mut watch, 2).await;
    assert_eq!(events, vec![Event::Put { kv: a, prev: None }, Event::Put { kv: b, prev: None }]);
    store.close().await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(30), watch.next()).await.unwrap().is_none());
}

/// A watch whose next revision gets compacted while it is disconnected ends with Compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_reports_the_compacted_revision() {
    let Some(etcd) = Etcd::start() else { return };
    let store = connect(&etcd, test_options()).await;
    for n in 0..10 {
        store.create(&format!("/c/{n}"), val("x")).await.unwrap();
    }
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    store.compact(7).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), 7);
    // A second handle (another server) sees etcd's compaction too.
    let other = connect(&etcd, test_options()).await;
    assert_eq!(other.compacted_revision().await.unwrap(), 7);
    match other.range("/c/", None, 0, Some(7)).await {
        Err(Error::Compacted { requested: 7, .. }) => {}
        res => panic!("range at a compacted revision: {res:?}"),
    }
    assert_eq!(other.range("/c/", None, 0, Some(8)).await.unwrap().kvs.len(), 8);
    match other.watch("/c/", 5).await {
        Err(Error::Compacted { requested: 5, compacted: 7 }) => {}
        Err(e) => panic!("watch at a compacted revision: {e}"),
        Ok(_) => panic!("watch at a compacted revision started"),
    }
    store.close().await.unwrap();
    other.close().await.unwrap();
}

/// Bad endpoints: none at all, and one where nothing listens (fails, does not hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_fail_clearly() {
    match EtcdStore::connect(&[], test_options()).await {
        Err(Error::Backend(message)) => assert!(message.contains("no etcd endpoints"), "{message}"),
        Err(e) => panic!("no endpoints: {e}"),
        Ok(_) => panic!("connected to no endpoints"),
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options =
        EtcdOptions { request_timeout: Duration::from_secs(1), retry_for: Duration::from_secs(2), ..test_options() };
    match EtcdStore::connect(&[format!("127.0.0.1:{port}")], options).await {
        Err(Error::Unavailable(message)) | Err(Error::Timeout(message)) => {
            assert!(message.contains(&port.to_string()), "{message}")
        }
        Err(e) => panic!("nothing listening: {e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    match EtcdStore::connect(&["not a url".to_string()], test_options()).await {
        Err(Error::Backend(message)) => assert!(message.contains("not a url"), "{message}"),
        Err(e) => panic!("bad url: {e}"),
        Ok(_) => panic!("connected to a bad url"),
    }
}

/// TLS with client certificates: the right files connect and serve the suite's basics;
/// no client certificate, or a missing file, fails clearly instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let Some(etcd) = Etcd::start_tls() else { return };
    let files = etcd.tls.clone().expect("tls files");
    let tls = super::EtcdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.cert.clone()),
        key_file: Some(files.key.clone()),
    };
    let store = connect(&etcd, EtcdOptions { tls: Some(tls.clone()), ..test_options() }).await;
    let a = store.create("/tls/a", val("1")).await.unwrap();
    assert_eq!(store.get("/tls/a").await.unwrap(), Some(a.clone()));
    let mut watch = store.watch("/tls/", a.mod_revision).await.unwrap();
    assert_eq!(take_events(&mut watch, 1).await, vec![Event::Put { kv: a, prev: None }]);
    store.close().await.unwrap();

    let short =
        EtcdOptions { request_timeout: Duration::from_secs(2), retry_for: Duration::from_secs(3), ..test_options() };
    let no_client_cert = super::EtcdTls { cert_file: None, key_file: None, ..tls.clone() };
    match EtcdStore::connect(&etcd.endpoints(), EtcdOptions { tls: Some(no_client_cert), ..short.clone() }).await {
        Err(e) => assert!(e.to_string().contains("etcd at 127.0.0.1:"), "{e}"),
        Ok(_) => panic!("connected without a client certificate"),
    }
    let missing = super::EtcdTls { ca_file: Some("/nonexistent/ca.pem".into()), ..tls };
    match EtcdStore::connect(&etcd.endpoints(), EtcdOptions { tls: Some(missing), ..short }).await {
        Err(Error::Backend(message)) => assert!(message.contains("/nonexistent/ca.pem"), "{message}"),
        Err(e) => panic!("missing CA file: {e}"),
        Ok(_) => panic!("connected with a missing CA file"),
    }
}
