//! Pod Security admission through the real kubectl: a namespace labelled
//! `enforce=restricted` refuses a plain pod with Kubernetes' message and takes a
//! hardened one; `warn=baseline` lets a workload in with kubectl's `Warning:` line;
//! unlabelled namespaces stay privileged.

use std::path::Path;

use berth_testkit::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

const HARDENED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hardened}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: app
    image: busybox:1.36
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#;

const HOST_NETWORK_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: edge}
spec:
  replicas: 1
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      hostNetwork: true
      containers:
      - name: proxy
        image: busybox:1.36
"#;

const PRIVILEGED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: root}
spec:
  containers:
  - name: shell
    image: busybox:1.36
    securityContext: {privileged: true}
"#;

#[test]
fn namespaces_enforce_and_warn_pod_security_levels() {
    let s = TestServer::start_with(Path::new(BIN), &["--disable-scheduler"]);
    s.kubectl_ok(&["create", "namespace", "locked"]);
    s.kubectl_ok(&["label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted"]);

    let err = s.kubectl_err(&["run", "plain", "--image=busybox:1.36", "-n", "locked"], None);
    assert!(
        err.contains(
            "Error from server (Forbidden): pods \"plain\" is forbidden: violates PodSecurity \"restricted:latest\": \
             allowPrivilegeEscalation != false (container \"plain\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"plain\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"plain\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"plain\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "pod", "plain", "-n", "locked"]).status.success(), "the refused pod exists");
    s.kubectl_in_ok(&["apply", "-n", "locked", "-f", "-"], Some(HARDENED));
    s.kubectl_ok(&["get", "pod", "hardened", "-n", "locked"]);
    let err = s.kubectl_err(&["apply", "-n", "locked", "-f", "-"], Some(PRIVILEGED_POD));
    assert!(err.contains("privileged (container \"shell\" must not set securityContext.privileged=true)"), "{err}");

    // warn: the workload is created, and kubectl shows the warning.
    s.kubectl_ok(&["create", "namespace", "watched"]);
    s.kubectl_ok(&["label", "namespace", "watched", "pod-security.kubernetes.io/warn=baseline"]);
    let out = s.kubectl_stdin(&["apply", "-n", "watched", "-f", "-"], Some(HOST_NETWORK_DEPLOYMENT));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork)"),
        "{stderr}"
    );
    s.kubectl_ok(&["get", "deployment", "edge", "-n", "watched"]);

    // No labels: privileged.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(PRIVILEGED_POD));
    s.kubectl_ok(&["get", "pod", "root"]);
}

/// An audit policy that records every pod request at Metadata level.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources:\n  - group: \"\"\n    resources: [pods]\n- level: None\n";

#[test]
fn updates_are_checked_and_the_audit_level_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with(
        Path::new(BIN),
        &[
            "--disable-scheduler",
            "--audit-policy-file",
            policy.to_str().unwrap(),
            "--audit-log-path",
            log.to_str().unwrap(),
        ],
    );
    // A pod from before the namespace was locked keeps running; a significant update of it
    // (a new image) is checked against the level now enforced, a label change is not.
    s.kubectl_ok(&["create", "namespace", "later"]);
    s.kubectl_in_ok(&["apply", "-n", "later", "-f", "-"], Some(PRIVILEGED_POD));
    s.kubectl_ok(&["label", "namespace", "later", "pod-security.kubernetes.io/enforce=baseline"]);
    s.kubectl_ok(&["label", "pod", "root", "-n", "later", "tier=legacy"]);
    let err = s.kubectl_err(&["set", "image", "pod/root", "-n", "later", "shell=busybox:1.37"], None);
    assert!(err.contains("pods \"root\" is forbidden: violates PodSecurity \"baseline:latest\": privileged"), "{err}");
    let image = s.kubectl_ok(&["get", "pod", "root", "-n", "later", "-o", "jsonpath={.spec.containers[0].image}"]);
    assert_eq!(image, "busybox:1.36", "nothing of the refused update is written");

    // audit=restricted: the pod is admitted, the audit event says what it would violate.
    s.kubectl_ok(&["create", "namespace", "audited"]);
    s.kubectl_ok(&["label", "namespace", "audited", "pod-security.kubernetes.io/audit=restricted"]);
    s.kubectl_in_ok(&["apply", "-n", "audited", "-f", "-"], Some(PRIVILEGED_POD));
    let mut annotations = serde_json::Value::Null;
    let found = berth_testkit::wait_until(std::time::Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        annotations = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                e["verb"] == "create" && e["objectRef"]["namespace"] == "audited" && e["stage"] == "ResponseComplete"
            })
            .map(|e| e["annotations"].clone())
            .unwrap_or_default();
        !annotations.is_null()
    });
    assert!(found, "no audit event of the create");
    assert_eq!(annotations["pod-security.kubernetes.io/enforce-policy"], "privileged:latest", "{annotations}");
    let violations = annotations["pod-security.kubernetes.io/audit-violations"].as_str().unwrap_or_default();
    assert!(
        violations.starts_with("would violate PodSecurity \"restricted:latest\": ")
            && violations.contains("privileged (container \"shell\" must not set securityContext.privileged=true)"),
        "{annotations}"
    );
}
