//! Static pods on the real node agent: a manifest in `--pod-manifests DIR` runs as containers
//! without being created through the API server, its mirror pod appears (annotations,
//! ownerReference to the Node, the static pod's status), a deleted mirror pod comes back
//! without the containers restarting, and removing the file stops the pod and removes the
//! mirror. Real `berth server`, `berth agent` (containerd, runc, CNI), real kubectl.
//!
//! A restarted agent (`--keep-pods`) adopts its running static pods (same containers, same
//! mirror pod) and stops the ones whose manifest went away while it was down.
//!
//! Bridges `btest62` and `btest93`, pod CIDRs 10.88.<n>.0/24; the [`Node`] guard stops the agent by PID and
//! deletes its bridge even when a test fails. Without containerd the test skips, unless
//! BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::time::Duration;

use berth_testkit::wait_until;
use common::*;
use serde_json::Value;

const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:1
    imagePullPolicy: Never
    command: [sleep, '3600']
";

#[test]
fn a_static_pod_runs_from_its_manifest_with_a_mirror_pod_kept_in_sync() {
    let s = server();
    let manifests = tempfile::tempdir().expect("temp dir");
    std::fs::write(manifests.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(manifests.path().join("broken.yaml"), "apiVersion: v1\nkind: Pod\nspec: 3\n").unwrap();
    let dir = manifests.path().to_str().unwrap().to_string();
    let Some(node) = Node::start_with(&s, 62, &["--pod-manifests", &dir]) else { return };
    let mirror_name = format!("web-{}", node.name);

    let mirror = wait_pod(&s, &node, &mirror_name, "ran as a mirror pod", |p| {
        p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true
    });
    let annotations = &mirror["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/config.source"], "file", "{mirror:#}");
    assert!(annotations["kubernetes.io/config.mirror"].as_str().is_some_and(|h| h.len() == 32), "{mirror:#}");
    let owner = &mirror["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str()), (Some("Node"), Some(node.name.as_str())));
    assert_eq!(owner["controller"], true);
    assert_eq!(mirror["spec"]["nodeName"], node.name.as_str());
    assert_eq!(mirror["metadata"]["labels"]["app"], "web");
    let containers = node.containers();
    assert_eq!(containers.len(), 2, "sandbox and container: {containers:?}");
    // The broken manifest is skipped with a message; no pod for it.
    assert!(node.log().contains("skipping a static pod manifest"), "{}", node.log());
    let all = s.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert_eq!(all.trim(), format!("pod/{mirror_name}"));

    // Deleting the mirror pod brings it back (another uid); the containers keep running.
    let first_uid = mirror["metadata"]["uid"].as_str().unwrap().to_string();
    s.kubectl_ok(&["delete", "pod", &mirror_name, "--wait=false"]);
    let back = wait_pod(&s, &node, &mirror_name, "came back", |p| {
        p["metadata"]["uid"].as_str().is_some_and(|u| u != first_uid)
            && p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
    });
    assert_eq!(back["status"]["containerStatuses"][0]["restartCount"], 0, "{back:#}");
    assert_eq!(node.containers(), containers, "the static pod's containers did not change");

    // Removing the file stops the pod and removes the mirror.
    std::fs::remove_file(manifests.path().join("web.yaml")).unwrap();
    let mut last = Value::Null;
    let gone = wait_until(Duration::from_secs(90), || {
        last = get_pod(&s, &mirror_name);
        last.is_null() && node.containers().is_empty()
    });
    assert!(gone, "mirror {last:#}, containers {:?}\nagent log:\n{}", node.containers(), node.log());
}

#[test]
fn a_restarted_agent_adopts_its_static_pods_and_stops_those_whose_manifest_went_away() {
    let s = server();
    let manifests = tempfile::tempdir().expect("temp dir");
    std::fs::write(manifests.path().join("web.yaml"), WEB).unwrap();
    std::fs::write(manifests.path().join("gone.yaml"), WEB.replace("name: web", "name: gone")).unwrap();
    let dir = manifests.path().to_str().unwrap().to_string();
    let Some(mut node) = Node::start_with(&s, 93, &["--keep-pods", "--pod-manifests", &dir]) else { return };
    let (web, gone) = (format!("web-{}", node.name), format!("gone-{}", node.name));
    let running = |p: &Value| p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true;
    let before = wait_pod(&s, &node, &web, "ran", running);
    wait_pod(&s, &node, &gone, "ran", running);
    let all_before = node.containers();
    assert_eq!(all_before.len(), 4, "two sandboxes and two containers: {all_before:?}");

    // The agent stops and leaves its pods running; one manifest goes away meanwhile.
    node.stop();
    std::fs::remove_file(manifests.path().join("gone.yaml")).unwrap();
    // The next agent (without --keep-pods, so the guard's stop cleans everything up).
    node.spawn(&s, &["--pod-manifests", &dir]);

    // The removed manifest's pod is stopped and its mirror deleted.
    let mut last = Value::Null;
    let stopped = wait_until(Duration::from_secs(90), || {
        last = get_pod(&s, &gone);
        last.is_null() && node.containers().len() == 2
    });
    assert!(stopped, "mirror {last:#}, containers {:?}\nagent log:\n{}", node.containers(), node.log());
    // The other one was adopted: the same containers, no restart, the same mirror pod.
    let after = wait_pod(&s, &node, &web, "stayed Running", running);
    let status = |p: &Value| p["status"]["containerStatuses"][0].clone();
    assert_eq!(status(&after)["containerID"], status(&before)["containerID"], "{after:#}");
    assert_eq!(status(&after)["restartCount"], 0, "{after:#}");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"], "the mirror pod was kept");
    let kept = node.containers();
    assert!(kept.iter().all(|c| all_before.contains(c)), "no new container: {kept:?} vs {all_before:?}");
    let log = node.log();
    assert!(log.contains("adopted a running pod"), "{log}");
    assert!(log.contains("removing a sandbox no pod claims"), "{log}");
}
