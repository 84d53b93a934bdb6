//! `berth bench api --quick --json` runs end to end against a real server child and
//! prints every named figure as a positive number. No timing is asserted. `berth bench
//! pods` runs on a real node (skipped without containerd unless BERTH_REQUIRE_CONTAINERD=1).

mod common;

use std::process::Command;

use serde_json::Value;

/// The figures BENCHMARKS.md and the lead's tooling read by name.
const FIGURES: &[&str] = &[
    "ready_ms",
    "idle_rss_mb",
    "idle_rss_anon_mb",
    "idle_rss_file_mb",
    "configmap_creates_per_s",
    "configmap_create_p99_ms",
    "configmap_create_server_cpu_us",
    "pod_creates_per_s",
    "create_p50_ms",
    "create_p99_ms",
    "pod_create_server_cpu_us",
    "get_update_pairs_per_s",
    "get_p50_ms",
    "get_p99_ms",
    "update_p50_ms",
    "update_p99_ms",
    "list_pods",
    "list_response_mb",
    "list_10k_pods_cache_p50_ms",
    "list_10k_pods_cache_p99_ms",
    "list_10k_pods_consistent_p50_ms",
    "list_10k_pods_consistent_p99_ms",
    "list_settle_s",
    "list_10k_pods_cache_server_cpu_ms",
    "list_10k_pods_consistent_server_cpu_ms",
    "list_10k_pods_first_ms",
    "mutating_achieved_per_s",
    "mutating_p50_ms_at_1000_per_s",
    "mutating_p99_ms_at_1000_per_s",
    "watch_deliveries",
    "watch_delivery_p50_ms",
    "watch_delivery_p99_ms",
    "apiserver_alone_pod_creates_per_s",
    "apiserver_alone_create_p99_ms",
    "apiserver_alone_pod_create_cpu_us",
    "authz_rbac_creates_per_s",
    "authz_rbac_create_p50_ms",
    "authz_rbac_create_p99_ms",
    "authz_rbac_create_cpu_us",
    "authz_rbac_gets_per_s",
    "authz_rbac_get_p50_ms",
    "authz_rbac_get_p99_ms",
    "authz_rbac_get_cpu_us",
    "authz_allow_creates_per_s",
    "authz_allow_create_p50_ms",
    "authz_allow_create_p99_ms",
    "authz_allow_create_cpu_us",
    "authz_allow_gets_per_s",
    "authz_allow_get_p50_ms",
    "authz_allow_get_p99_ms",
    "authz_allow_get_cpu_us",
    "authz_throughput_cost_pct",
    "authz_cpu_cost_pct",
    "authn_cert_gets_per_s",
    "authn_cert_get_p50_ms",
    "authn_cert_get_p99_ms",
    "authn_cert_get_cpu_us",
    "authn_static_gets_per_s",
    "authn_static_get_p50_ms",
    "authn_static_get_p99_ms",
    "authn_static_get_cpu_us",
    "authn_sa_gets_per_s",
    "authn_sa_get_p50_ms",
    "authn_sa_get_p99_ms",
    "authn_sa_get_cpu_us",
    "authn_cert_throughput_cost_pct",
    "authn_cert_cpu_cost_pct",
    "authn_sa_throughput_cost_pct",
    "authn_sa_cpu_cost_pct",
];

#[test]
fn quick_json_run_reports_every_figure() {
    check_figures(&["api"], FIGURES, |name, v| {
        // A watcher can read the ADDED event before the creator reads its response: the
        // delivery latency is then 0, a real outcome, so these two may be zero.
        let may_be_zero = name.starts_with("watch_delivery_");
        // The authorization cost is a difference of two noisy rates: any sign is a real outcome.
        let any_sign = name.ends_with("_cost_pct");
        v > 0.0 || (may_be_zero && v == 0.0) || (any_sign && v.is_finite())
    });
}

/// The figures of `berth bench api --only pods`.
const POD_PATH_FIGURES: &[&str] = &[
    "pod_creates_per_s",
    "pod_create_server_cpu_us",
    "pod_create_settled_cpu_us",
    "pod_create_api_cpu_us",
    "status_smp_server_cpu_us",
    "status_merge_server_cpu_us",
];

#[test]
fn only_pods_quick_json_run_reports_every_figure() {
    check_figures(&["api", "--only", "pods"], POD_PATH_FIGURES, |_, v| v > 0.0);
    // An unknown part is refused.
    let bad = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["bench", "api", "--only", "nothing", "--quick"])
        .output()
        .expect("running berth bench api --only nothing");
    assert!(!bad.status.success(), "--only nothing was accepted");
}

/// The figures of `berth bench hollow`.
const HOLLOW_FIGURES: &[&str] = &[
    "nodes",
    "register_s",
    "agent_rss_mb",
    "agent_cpu_cores",
    "lease_max_age_s",
    "leases_renewed",
    "pods",
    "pods_running_per_s",
];

#[test]
fn hollow_quick_json_run_reports_every_figure() {
    check_figures(&["hollow"], HOLLOW_FIGURES, |name, v| {
        // An idle agent may use too little CPU to show in three decimals.
        v > 0.0 || (name == "agent_cpu_cores" && v == 0.0)
    });
}

/// The figures of `berth bench scheduler`.
const SCHEDULER_FIGURES: &[&str] = &[
    "plain_pods_per_s",
    "plain_p50_ms",
    "plain_p99_ms",
    "anti_affinity_pods_per_s",
    "anti_affinity_p50_ms",
    "anti_affinity_p99_ms",
    "spread_pods_per_s",
    "spread_p50_ms",
    "spread_p99_ms",
    "preemption_pods_per_s",
    "preemption_p50_ms",
    "preemption_p99_ms",
];

#[test]
fn scheduler_quick_json_run_reports_every_figure() {
    check_figures(&["scheduler"], SCHEDULER_FIGURES, |_, v| v > 0.0);
}

/// The figures of `berth bench controllers`.
const CONTROLLERS_FIGURES: &[&str] =
    &["deployment_all_pods_created_ms", "deployment_all_available_ms", "rolling_update_ms", "cascade_delete_ms"];

#[test]
fn controllers_quick_json_run_reports_every_figure() {
    check_figures(&["controllers"], CONTROLLERS_FIGURES, |_, v| v > 0.0);
}

/// The figures of `berth bench pods` (BENCHMARKS.md's table).
const PODS_FIGURES: &[&str] = &[
    "pods",
    "startup_p50_ms",
    "startup_p99_ms",
    "all_running_s",
    "delete_all_s",
    "node_registered_s",
    "containerd_start_ms",
    "agent_idle_rss_mb",
    "agent_idle_rss_anon_mb",
    "agent_idle_rss_file_mb",
    "agent_idle_pss_mb",
    "agent_idle_threads",
    "agent_busy_rss_mb",
    "agent_busy_rss_anon_mb",
    "agent_idle_cpu_pct",
    "agent_pods_cpu_pct",
    "traced_pods",
    "phase_watch_p50_ms",
    "phase_queued_p50_ms",
    "phase_sandbox_p50_ms",
    "phase_volumes_p50_ms",
    "phase_containers_p50_ms",
    "phase_status_p50_ms",
];

/// `berth bench pods --pods 3 --json` on a real node (its own containerd and bridge
/// `bbench0`, which the bench removes): every figure, with sane values.
#[test]
fn pods_json_run_reports_every_figure() {
    if !common::runtime_installed() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["bench", "pods", "--pods", "3", "--json"])
        .output()
        .expect("running berth bench pods");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth bench pods failed: {}\n{stderr}", out.status);
    let figures = one_object(&String::from_utf8_lossy(&out.stdout));
    let object = figures.as_object().unwrap();
    let get = |name: &str| object.get(name).and_then(Value::as_f64).unwrap_or_else(|| panic!("{name} in {figures}"));
    for name in PODS_FIGURES {
        let v = get(name);
        // CPU use of an idle agent, and phases that took no whole ms, may be 0.
        let may_be_zero = name.ends_with("_cpu_pct") || name.starts_with("phase_");
        assert!(v > 0.0 || (may_be_zero && v == 0.0), "{name} is {v} in {figures}");
    }
    assert_eq!(object.len(), PODS_FIGURES.len(), "unexpected figures in {figures}");
    assert_eq!(get("pods"), 3.0);
    assert_eq!(get("traced_pods"), 3.0, "every pod's start was traced");
    assert!(get("startup_p50_ms") <= get("startup_p99_ms"), "{figures}");
    assert!(get("containerd_start_ms") <= get("node_registered_s") * 1000.0, "a part of the node's start: {figures}");
    assert!(get("agent_idle_rss_anon_mb") < get("agent_idle_rss_mb"), "{figures}");
}

/// `stdout` as one JSON object.
fn one_object(stdout: &str) -> Value {
    let figures: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    assert!(figures.is_object(), "not an object: {figures}");
    figures
}

/// Runs `berth bench ARGS --quick --json` and checks that it prints one JSON object of
/// exactly the figures `names`, each a number that `fits` accepts.
fn check_figures(args: &[&str], names: &[&str], fits: impl Fn(&str, f64) -> bool) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--quick", "--json"]);
    let out = Command::new(env!("CARGO_BIN_EXE_berth")).args(&all).output().expect("running berth bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth {all:?} failed: {}\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figures: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    let object = figures.as_object().unwrap_or_else(|| panic!("not an object: {figures}"));
    for name in names {
        let value = object.get(*name).and_then(Value::as_f64);
        assert!(value.is_some_and(|v| fits(name, v)), "{name} is {value:?} in {figures}");
    }
    assert_eq!(object.len(), names.len(), "unexpected figures in {figures}");
}
