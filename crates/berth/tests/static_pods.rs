//! Static pods on the real node agent: a manifest in `--pod-manifests DIR` runs as containers
//! without being created through the API server, its mirror pod appears (annotations,
//! ownerReference to the Node, the static pod's status), a deleted mirror pod comes back
//! without the containers restarting, and removing the file stops the pod and removes the
//! mirror. Real `berth server`, `berth agent` (containerd, runc, CNI), real kubectl.
//!
//! Bridge `btest62`, pod CIDR 10.88.62.0/24; the [`Node`] guard stops the agent by PID and
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
