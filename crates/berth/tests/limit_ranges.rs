//! LimitRanges through the real kubectl: defaults land on new pods' containers (and
//! the `kubernetes.io/limit-ranger` annotation says so), and pods or claims outside the
//! namespace's min/max/ratio are refused with Kubernetes' message.

use std::path::Path;

use berth_testkit::TestServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

const LIMITS: &str = r#"
apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m, memory: 128Mi}
    min: {cpu: 50m}
    max: {cpu: "1", memory: 512Mi}
    maxLimitRequestRatio: {cpu: "5"}
  - type: PersistentVolumeClaim
    min: {storage: 1Gi}
    max: {storage: 10Gi}
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn limit_ranges_default_and_bound_pods_and_claims() {
    let s = TestServer::start_with(Path::new(BIN), &["--disable-scheduler"]);
    s.kubectl_ok(&["create", "namespace", "team"]);
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(LIMITS));

    s.kubectl_ok(&["run", "plain", "--image=busybox:1.36", "-n", "team"]);
    let pod = json(&s.kubectl_ok(&["get", "pod", "plain", "-n", "team", "-o", "json"]));
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m", "{pod}");
    assert_eq!(resources["requests"]["memory"], "128Mi");
    assert_eq!(resources["limits"]["cpu"], "500m");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container plain; cpu, memory limit for container plain"
    );

    // A container's own limit is kept, and its request follows it (API defaults first).
    s.kubectl_ok(&[
        "run",
        "own",
        "--image=busybox:1.36",
        "-n",
        "team",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"own","image":"busybox:1.36","resources":{"limits":{"cpu":"800m"}}}]}}"#,
    ]);
    let pod = json(&s.kubectl_ok(&["get", "pod", "own", "-n", "team", "-o", "json"]));
    assert_eq!(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"], "800m");
    assert_eq!(pod["spec"]["containers"][0]["resources"]["requests"]["cpu"], "800m");

    // Outside the bounds: refused, and nothing is written.
    let err = s.kubectl_err(&["run", "big", "--image=busybox:1.36", "-n", "team", "--overrides",
        r#"{"spec":{"containers":[{"name":"big","image":"busybox:1.36","resources":{"requests":{"cpu":"10m"},"limits":{"cpu":"2"}}}]}}"#], None);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: [minimum cpu usage per Container is 50m, but request is 10m, \
             maximum cpu usage per Container is 1, but limit is 2, \
             cpu max limit to request ratio per Container is 5, but provided ratio is 200.000000]"
        ),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "pod", "big", "-n", "team"]).status.success());

    let claim = |name: &str, size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n"
        )
    };
    let err = s.kubectl_err(&["apply", "-n", "team", "-f", "-"], Some(&claim("data-big", "20Gi")));
    assert!(
        err.contains("persistentvolumeclaims \"data-big\" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"),
        "{err}"
    );
    s.kubectl_in_ok(&["apply", "-n", "team", "-f", "-"], Some(&claim("data-ok", "5Gi")));

    // Other namespaces are not limited.
    s.kubectl_ok(&["run", "free", "--image=busybox:1.36"]);
    let pod = json(&s.kubectl_ok(&["get", "pod", "free", "-o", "json"]));
    assert!(pod["spec"]["containers"][0]["resources"].get("limits").is_none(), "{pod}");
}
