//! The controllers `berth server` runs, against the real server over HTTP: leader election
//! on a Lease and the ServiceAccount controller.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_controllers::leader_election::LeaderElection;
use berth_testkit::{TestServer, wait_until};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

fn fast(client: kube::Client, identity: &str) -> LeaderElection {
    let mut e = LeaderElection::new(client, "test-election", identity);
    e.lease_duration = Duration::from_secs(3);
    e.renew_deadline = Duration::from_secs(2);
    e.retry_period = Duration::from_millis(200);
    e
}

/// Runs an election in the background; returns "is leading" and the task (abort = kill).
fn candidate(
    e: LeaderElection,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let leading = Arc::new(AtomicBool::new(false));
    let flag = leading.clone();
    let task = tokio::spawn(async move {
        e.run(
            || {
                let flag = flag.clone();
                async move {
                    flag.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
            },
            async move {
                let _ = stop.await;
            },
        )
        .await;
    });
    (leading, task)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_handover_on_release_and_on_death() {
    let s = server();
    let leases: Api<Lease> = Api::namespaced(s.kube_client().await, "kube-system");
    let (stop_a, rx_a) = tokio::sync::oneshot::channel();
    let (a_leads, _a) = candidate(fast(s.kube_client().await, "a"), rx_a);
    eventually("a to lead", || a_leads.load(Ordering::SeqCst)).await;
    let (_stop_b, rx_b) = tokio::sync::oneshot::channel::<()>();
    let (b_leads, b) = candidate(fast(s.kube_client().await, "b"), rx_b);
    // b keeps trying for longer than a lease lasts, but a renews: b never leads.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!b_leads.load(Ordering::SeqCst), "b must not lead while a renews");
    let lease = leases.get("test-election").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("a"));
    assert_eq!(lease.lease_duration_seconds, Some(3));
    // a stops cleanly: it releases, and b takes over.
    stop_a.send(()).unwrap();
    eventually("b to lead after a released", || b_leads.load(Ordering::SeqCst)).await;
    let lease = leases.get("test-election").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.lease_transitions, Some(1), "{lease:?}");
    // b dies without releasing: c waits out the lease, then takes over.
    b.abort();
    let (_stop_c, rx_c) = tokio::sync::oneshot::channel::<()>();
    let (c_leads, _c) = candidate(fast(s.kube_client().await, "c"), rx_c);
    eventually("c to lead after b died", || c_leads.load(Ordering::SeqCst)).await;
    let lease = leases.get("test-election").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("c"));
    assert_eq!(lease.lease_transitions, Some(2));
}

#[test]
fn the_server_holds_the_controller_lease_and_every_namespace_gets_a_default_service_account() {
    let s = server();
    let holder = || {
        s.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    assert!(wait_until(Duration::from_secs(30), || !holder().stdout.is_empty()), "no controller lease");
    for ns in ["default", "kube-system"] {
        assert!(
            wait_until(Duration::from_secs(30), || s.kubectl(&["get", "sa", "default", "-n", ns]).status.success()),
            "no default ServiceAccount in {ns}"
        );
    }
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    assert!(wait_until(Duration::from_secs(30), || s
        .kubectl(&["get", "sa", "default", "-n", "team-a"])
        .status
        .success()));
    // Deleted: it comes back.
    let uid = s.kubectl_ok(&["get", "sa", "default", "-n", "team-a", "-o", "jsonpath={.metadata.uid}"]);
    s.kubectl_ok(&["delete", "sa", "default", "-n", "team-a"]);
    assert!(wait_until(Duration::from_secs(30), || {
        let out = s.kubectl(&["get", "sa", "default", "-n", "team-a", "-o", "jsonpath={.metadata.uid}"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) != uid
    }));
}

#[test]
fn disabled_controllers_do_not_run_and_unknown_names_are_refused() {
    let s =
        TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-controllers", "serviceaccount"]);
    s.kubectl_ok(&["create", "namespace", "quiet"]);
    // The lease is taken (the election runs), but no ServiceAccount appears.
    assert!(wait_until(Duration::from_secs(30), || {
        s.kubectl(&["get", "lease", "-n", "kube-system", "kube-controller-manager"]).status.success()
    }));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!s.kubectl(&["get", "sa", "default", "-n", "quiet"]).status.success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["server", "--disable-controllers", "nope", "--data-dir"])
        .arg(s.dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown controller \"nope\""), "{out:?}");
}
