//! Real helm 3 against a real server: install, upgrade, history, rollback, uninstall of
//! the chart `helm create` makes. `scripts/install-test-tools.sh` installs helm and
//! `scripts/test.sh` points `BERTH_HELM` at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::TestServer;

fn helm_binary() -> PathBuf {
    let from_env = std::env::var_os("BERTH_HELM").map(PathBuf::from);
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/helm");
    let helm = from_env.unwrap_or(default);
    assert!(
        helm.exists(),
        "helm not found at {}: run scripts/install-test-tools.sh (scripts/test.sh does)",
        helm.display()
    );
    helm
}

fn helm(s: &TestServer, args: &[&str]) -> String {
    let out = Command::new(helm_binary())
        .args(args)
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.dir.path())
        .env("HELM_CACHE_HOME", s.dir.path().join("helm-cache"))
        .env("HELM_CONFIG_HOME", s.dir.path().join("helm-config"))
        .env("HELM_DATA_HOME", s.dir.path().join("helm-data"))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    let chart = s.dir.path().join("chart");
    helm(&s, &["create", chart.to_str().unwrap()]);
    let chart = chart.to_str().unwrap();
    assert!(helm(&s, &["install", "web", chart]).contains("STATUS: deployed"));
    assert_eq!(s.kubectl_ok(&["get", "deployment", "web-chart", "-o", "jsonpath={.spec.replicas}"]), "1");
    helm(&s, &["upgrade", "web", chart, "--set", "replicaCount=3"]);
    assert_eq!(s.kubectl_ok(&["get", "deployment", "web-chart", "-o", "jsonpath={.spec.replicas}"]), "3");
    let history = helm(&s, &["history", "web"]);
    assert!(history.contains("superseded") && history.contains("Upgrade complete"), "{history}");
    helm(&s, &["rollback", "web", "1"]);
    assert_eq!(s.kubectl_ok(&["get", "deployment", "web-chart", "-o", "jsonpath={.spec.replicas}"]), "1");
    // helm keeps its releases in Secrets.
    assert!(s.kubectl_ok(&["get", "secrets", "-l", "owner=helm", "-o", "name"]).contains("sh.helm.release.v1.web.v3"));
    helm(&s, &["uninstall", "web"]);
    let err = s.kubectl_err(&["get", "deployment", "web-chart"], None);
    assert!(err.contains("not found"), "{err}");
}
