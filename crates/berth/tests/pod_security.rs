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
