//! Several nodes on one machine: `berth server` with its own node on the host, and `berth
//! agent`s inside network namespaces (testkit's [`netns`]: each its own address on a host
//! bridge in 10.213.X.0/24, its own data dir and containerd) joined with the node token.
//! Pods on the nodes reach each other by pod IP (host ↔ namespace, namespace ↔ namespace)
//! through the host-gw routes the agents keep for each other's pod CIDRs; the host reaches
//! the pods; a Node whose address is not on a local link gets no route; routes go with
//! their Node.
//!
//! Pod ranges are the test's own (10.214.X.0/24 on the host, 10.215.X.0/24 in the namespace,
//! cluster CIDR 10.214.0.0/15), so they never meet another test's bridge. Without root, `ip`
//! or containerd the test skips, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_testkit::netns::{self, Lab, NetNs};
use berth_testkit::{TestServer, wait_until};
use common::{apply, get_pod, http_get, httpd_command, runtime_installed};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const TIMEOUT: Duration = Duration::from_secs(90);

/// A `berth agent` inside a namespace; SIGTERM by PID on drop (the agent removes its pods,
/// its routes and its bridge, and stops its containerd), SIGKILL if it does not exit; then
/// whatever is still mounted under its data dir is unmounted before the dir goes.
struct NsAgent {
    child: Option<Child>,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl NsAgent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            if !wait_until(TIMEOUT, || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        self.stop();
        netns::unmount_under(self.dir.path());
    }
}

/// Starts `berth agent` inside `ns`, joined to `s` with the node token, as node `name` with
/// its own data dir (and so its own containerd).
fn spawn_ns_agent(s: &TestServer, ns: &NetNs, name: &str, pod_cidr: &str, cluster: &str, bridge: &str) -> NsAgent {
    let token = std::fs::read_to_string(s.dir.path().join("token")).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = ns
        .command(BIN)
        .args(["agent", "--server", &s.url, "--token", &token, "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--node-name", name, "--node-ip", &ns.ip.to_string(), "--pod-cidr", pod_cidr])
        .args(["--cluster-cidr", cluster, "--bridge-name", bridge])
        .env("BERTH_LOG", std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn berth agent in the namespace");
    NsAgent { child: Some(child), log, dir }
}

fn node_ready(s: &TestServer, name: &str) -> bool {
    let out = s.kubectl(&["get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
    String::from_utf8_lossy(&out.stdout) == "True"
}

fn pod_on(name: &str, node: &str, page: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "nodeName": node, "restartPolicy": "Always", "terminationGracePeriodSeconds": 2,
            "containers": [{ "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                             "command": httpd_command(page), "ports": [{ "containerPort": 8080 }] }],
        },
    })
}

/// Waits for the pod to run with an IP; its IP.
fn pod_ip(s: &TestServer, name: &str, logs: &dyn Fn() -> String) -> String {
    let mut last = Value::Null;
    let ok = wait_until(TIMEOUT, || {
        last = get_pod(s, name);
        last["status"]["phase"] == "Running" && last["status"]["podIP"].is_string()
    });
    assert!(ok, "pod {name} never ran: {last:#}\n{}", logs());
    last["status"]["podIP"].as_str().unwrap().to_string()
}

/// `kubectl exec POD -- wget -qO- http://IP:8080/`, retried until it answers (busybox's
/// own `wget -T` crashes on its timeout here: `timeout` bounds it instead).
fn fetch_from(s: &TestServer, pod: &str, ip: &str, diagnose: &dyn Fn() -> String) -> String {
    let url = format!("http://{ip}:8080/index.html");
    let mut last = String::new();
    let ok = wait_until(TIMEOUT, || {
        let out = s.kubectl(&["exec", pod, "--", "busybox", "timeout", "5", "busybox", "wget", "-qO-", &url]);
        last = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out.status.success()
    });
    if !ok {
        let routes = s.kubectl(&["exec", pod, "--", "busybox", "ip", "route"]);
        panic!(
            "{pod} could not fetch {url}: {last}\nits routes:\n{}\n{}",
            String::from_utf8_lossy(&routes.stdout),
            diagnose()
        );
    }
    last.trim().to_string()
}

fn host_route(dst: &str) -> String {
    let out = Command::new("ip").args(["-4", "route", "show", "exact", dst]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates a Node object by hand (no agent behind it) with a pod CIDR and an InternalIP.
fn fake_node(s: &TestServer, name: &str, cidr: &str, ip: &str) {
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name },
                       "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
    apply(s, &node);
    let status = json!({ "status": { "addresses": [{ "type": "InternalIP", "address": ip }] } });
    s.kubectl_ok(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]);
}

#[test]
fn pods_on_three_nodes_reach_each_other_through_host_gw_routes() {
    if !runtime_installed() {
        return;
    }
    if !netns::available() {
        assert!(std::env::var("BERTH_REQUIRE_CONTAINERD").is_err(), "network namespaces need root and ip");
        eprintln!("skipping: network namespaces need root and ip");
        return;
    }
    // Dropped last to first: the agent, then the namespace, then the server, then the lab.
    let mut lab = Lab::new();
    let x = lab.x;
    let host_ip = lab.host_ip().to_string();
    let (host_cidr, ns_cidr, cluster) = (format!("10.214.{x}.0/24"), format!("10.215.{x}.0/24"), "10.214.0.0/15");
    let s = TestServer::start_with_agent(
        Path::new(BIN),
        &[
            "--bind-address",
            &host_ip,
            "--node-ip",
            &host_ip,
            "--node-name",
            "mn-host",
            "--pod-cidr",
            &host_cidr,
            "--cluster-cidr",
            cluster,
            "--bridge-name",
            &format!("bmh{x}"),
        ],
    );
    let ns: NetNs = lab.add_ns();
    let ns_ip = ns.ip.to_string();
    let mut agent = spawn_ns_agent(&s, &ns, "mn-ns", &ns_cidr, cluster, &format!("bmn{x}"));
    let logs = || format!("agent log:\n{}\nserver log:\n{}", agent.log(), s.log());
    assert!(
        wait_until(TIMEOUT, || node_ready(&s, "mn-host") && node_ready(&s, "mn-ns")),
        "nodes not Ready\n{}",
        logs()
    );

    // Each agent routes the other's range through the other's address on the lab bridge.
    assert!(
        wait_until(TIMEOUT, || host_route(&ns_cidr).contains(&format!("via {ns_ip}"))),
        "no host route to {ns_cidr}: {:?}\n{}",
        lab.host_routes(),
        logs()
    );
    assert!(
        wait_until(TIMEOUT, || ns
            .ip(&["-4", "route", "show", "exact", &host_cidr])
            .contains(&format!("via {host_ip}"))),
        "no route to {host_cidr} in the namespace: {}\n{}",
        ns.ip(&["-4", "route"]),
        logs()
    );

    apply(&s, &pod_on("web-a", "mn-host", "hello from the host node"));
    apply(&s, &pod_on("web-b", "mn-ns", "hello from the namespace node"));
    let ip_a = pod_ip(&s, "web-a", &logs);
    let ip_b = pod_ip(&s, "web-b", &logs);
    assert!(ip_a.starts_with(&format!("10.214.{x}.")), "{ip_a}");
    assert!(ip_b.starts_with(&format!("10.215.{x}.")), "{ip_b}");

    // The host reaches both pods (the route to the namespace's pods takes the host pod
    // gateway address as its source once the host's bridge has it).
    for (ip, page) in [(&ip_a, "hello from the host node"), (&ip_b, "hello from the namespace node")] {
        let mut body = None;
        assert!(
            wait_until(TIMEOUT, || {
                body = http_get(ip, 8080, "/index.html");
                body.is_some()
            }),
            "no HTTP answer from {ip}:8080 on the host; routes: {:?}\n{}",
            lab.host_routes(),
            logs()
        );
        assert_eq!(body.unwrap().trim(), page);
    }

    // Pod to pod, both ways, by pod IP.
    let diagnose = || {
        let host = Command::new("ip").args(["-4", "route"]).output().unwrap();
        format!(
            "host routes:\n{}\nnamespace routes:\n{}\n{}",
            String::from_utf8_lossy(&host.stdout),
            ns.ip(&["-4", "route"]),
            logs()
        )
    };
    assert_eq!(fetch_from(&s, "web-a", &ip_b, &diagnose), "hello from the namespace node");
    assert_eq!(fetch_from(&s, "web-b", &ip_a, &diagnose), "hello from the host node");

    // A second namespace node: its pods and the first namespace's reach each other over
    // the lab bridge (agent to agent, the host only bridges), and the host's pod reaches it.
    let ns2 = lab.add_ns();
    let ns2_cidr = format!("10.215.{}.0/24", x.wrapping_add(2));
    let agent2 = spawn_ns_agent(&s, &ns2, "mn-ns2", &ns2_cidr, cluster, &format!("bmo{x}"));
    assert!(wait_until(TIMEOUT, || node_ready(&s, "mn-ns2")), "mn-ns2 not Ready:\n{}", agent2.log());
    assert!(
        wait_until(TIMEOUT, || ns
            .ip(&["-4", "route", "show", "exact", &ns2_cidr])
            .contains(&format!("via {}", ns2.ip))),
        "no route to {ns2_cidr} in the first namespace: {}\n{}",
        ns.ip(&["-4", "route"]),
        agent.log()
    );
    apply(&s, &pod_on("web-c", "mn-ns2", "hello from the second namespace node"));
    let ip_c = pod_ip(&s, "web-c", &|| agent2.log());
    assert_eq!(fetch_from(&s, "web-b", &ip_c, &diagnose), "hello from the second namespace node");
    assert_eq!(fetch_from(&s, "web-c", &ip_b, &diagnose), "hello from the namespace node");
    assert_eq!(fetch_from(&s, "web-a", &ip_c, &diagnose), "hello from the second namespace node");
    s.kubectl_ok(&["delete", "pod", "web-c", "--wait=false"]);
    drop(agent2);
    s.kubectl_ok(&["delete", "node", "mn-ns2"]);
    assert!(wait_until(TIMEOUT, || ns.ip(&["-4", "route", "show", "exact", &ns2_cidr]).is_empty()), "{}", logs());
    assert!(wait_until(TIMEOUT, || host_route(&ns2_cidr).is_empty()), "{}", logs());
    drop(ns2);

    // Nodes watch all Nodes for their routes (RBAC berth:node-routes), but still get only
    // their own by name (the Node authorizer).
    let as_node = ["--as", "system:node:mn-host", "--as-group", "system:nodes"];
    let listed = s.kubectl_ok(&[&["get", "nodes", "-o", "name"][..], &as_node[..]].concat());
    assert!(listed.contains("node/mn-ns"), "{listed}");
    let other = s.kubectl(&[&["get", "node", "mn-ns"][..], &as_node[..]].concat());
    assert!(!other.status.success(), "a node read another Node by name");

    // A Node whose address is reached only through a router gets no route; one on the lab
    // link does, and loses it when the Node is deleted.
    let far_cidr = format!("10.214.{}.0/24", x.wrapping_add(1));
    let near_cidr = format!("10.215.{}.0/24", x.wrapping_add(1));
    let near_ip = format!("10.213.{x}.200");
    fake_node(&s, "mn-far", &far_cidr, "203.0.113.7");
    fake_node(&s, "mn-near", &near_cidr, &near_ip);
    assert!(wait_until(TIMEOUT, || host_route(&near_cidr).contains(&format!("via {near_ip}"))), "{}", logs());
    assert!(wait_until(TIMEOUT, || ns.ip(&["-4", "route", "show", "exact", &near_cidr]).contains("via")), "{}", logs());
    assert_eq!(host_route(&far_cidr), "", "a route through a router");
    assert_eq!(ns.ip(&["-4", "route", "show", "exact", &far_cidr]), "");
    assert!(s.log().contains("not on a local link"), "the refusal is logged:\n{}", s.log());
    s.kubectl_ok(&["delete", "node", "mn-near", "mn-far"]);
    assert!(wait_until(TIMEOUT, || host_route(&near_cidr).is_empty()), "{}", logs());
    assert!(wait_until(TIMEOUT, || ns.ip(&["-4", "route", "show", "exact", &near_cidr]).is_empty()));

    // The namespace's node stops (its pods, routes and bridge go with it) and its Node is
    // deleted: the host's route to its range goes too.
    s.kubectl_ok(&["delete", "pod", "web-b", "--wait=false"]);
    agent.stop();
    assert_eq!(ns.ip(&["-4", "route", "show", "exact", &host_cidr]), "", "the agent removed its routes");
    assert!(host_route(&ns_cidr).contains(&format!("via {ns_ip}")), "the Node is still there");
    s.kubectl_ok(&["delete", "node", "mn-ns"]);
    assert!(
        wait_until(TIMEOUT, || host_route(&ns_cidr).is_empty()),
        "the route stayed: {}\n{}",
        host_route(&ns_cidr),
        s.log()
    );
    assert!(lab.host_routes().is_empty(), "{:?}", lab.host_routes());
    drop(ns);
    drop(s);
    drop(lab);
}
