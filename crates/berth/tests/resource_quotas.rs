//! ResourceQuotas through the real kubectl: creates beyond a quota are refused with
//! Kubernetes' message and write nothing, pods must state the compute resources a
//! quota limits, `status.used` follows creates and deletions (the quota controller),
//! and object counts of other kinds are limited too.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

const QUOTA: &str = r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard:
    pods: "2"
    requests.cpu: "1"
    limits.memory: 1Gi
    count/deployments.apps: "1"
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn pod(name: &str, cpu: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox:1.36","resources":{{"requests":{{"cpu":"{cpu}"}},"limits":{{"memory":"256Mi"}}}}}}]}}}}"#
    )
}

fn used(s: &TestServer) -> Value {
    json(&s.kubectl_ok(&["get", "resourcequota", "compute", "-n", "team", "-o", "json"]))["status"]["used"].clone()
}

#[test]
fn quotas_refuse_what_exceeds_them_and_free_what_is_deleted() {
    let s = TestServer::start_with(Path::new(BIN), &["--disable-scheduler"]);
    s.kubectl_ok(&["create", "namespace", "team"]);
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(QUOTA));
    assert!(
        wait_until(Duration::from_secs(30), || used(&s)["pods"] == "0"),
        "the controller never computed the quota: {}",
        used(&s)
    );

    let err = s.kubectl_err(&["run", "bare", "--image=busybox:1.36", "-n", "team"], None);
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: bare; limits.memory for: bare"),
        "{err}"
    );
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(&pod("a", "500m")));
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(&pod("b", "250m")));
    let u = used(&s);
    assert_eq!(
        (u["pods"].as_str(), u["requests.cpu"].as_str(), u["limits.memory"].as_str()),
        (Some("2"), Some("750m"), Some("512Mi"))
    );

    let err = s.kubectl_err(&["apply", "-n", "team", "-f", "-"], Some(&pod("c", "500m")));
    assert!(
        err.contains(
            "pods \"c\" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=500m, \
             used: pods=2,requests.cpu=750m, limited: pods=2,requests.cpu=1"
        ),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "pod", "c", "-n", "team"]).status.success(), "the refused pod was written");

    // Deleting a pod frees its share: the same create then succeeds.
    s.kubectl_ok(&["delete", "pod", "a", "-n", "team", "--grace-period=0", "--force"]);
    assert!(wait_until(Duration::from_secs(30), || used(&s)["pods"] == "1"), "usage never went down: {}", used(&s));
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(&pod("c", "500m")));

    // Object counts: one Deployment.
    s.kubectl_ok(&["create", "deployment", "one", "--image=busybox:1.36", "-n", "team"]);
    let err = s.kubectl_err(&["create", "deployment", "two", "--image=busybox:1.36", "-n", "team"], None);
    assert!(err.contains("exceeded quota: compute, requested: count/deployments.apps=1"), "{err}");

    // kubectl shows usage against the limits.
    let table = s.kubectl_ok(&["get", "resourcequota", "-n", "team"]);
    assert!(table.contains("compute") && table.contains("pods: 2/2"), "{table}");
}
