//! Pod DNS on a real node: the resolv.conf, hostname and /etc/hosts the containers see
//! (read through `kubectl exec`) for dnsPolicy ClusterFirst with `--cluster-dns`, None with a
//! dnsConfig, and Default from `--resolv-conf`; dnsPolicy None without a dnsConfig refused by
//! the API server. Nothing listens on the cluster DNS address: only the files are checked.
//! Real `berth server --disable-agent`, `berth agent` (containerd, runc, CNI), busybox pods,
//! real kubectl.
//!
//! Bridge `btest51`, pod CIDR 10.88.51.0/24; the [`Node`] guard stops the agent by PID and
//! deletes its bridge even when a test fails. Without containerd the tests skip, unless
//! BERTH_REQUIRE_CONTAINERD=1.

mod common;

use common::*;
use serde_json::{Value, json};

fn sleeper(name: &str, node: &Node, spec: Value) -> Value {
    let mut pod = busybox_pod(name, node, json!({ "command": ["sleep", "3600"] }), "Always");
    pod["spec"].as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    pod
}

fn exec(s: &berth_testkit::TestServer, pod: &str, command: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(command);
    s.kubectl_ok(&args)
}

#[test]
fn pods_get_the_kubelets_resolv_conf_hostname_and_hosts_file() {
    let s = server();
    let host = tempfile::tempdir().unwrap();
    let resolv = host.path().join("resolv.conf");
    std::fs::write(&resolv, "# the node's resolver\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
        .unwrap();
    let resolv = resolv.display().to_string();
    // (With --shutdown-grace-period 0s this node's stop removes its pods at once: see the end.)
    let flags = ["--cluster-dns", "10.96.0.10", "--resolv-conf", &resolv, "--shutdown-grace-period", "0s"];
    let Some(mut node) = Node::start_with(&s, 51, &flags) else { return };

    // dnsPolicy None without dnsConfig: 422, nothing written.
    let bad = sleeper("bad", &node, json!({ "dnsPolicy": "None" }));
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&bad.to_string()));
    assert!(err.contains("spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"), "{err}");
    assert!(!s.kubectl(&["get", "pod", "bad"]).status.success(), "the refused pod exists");

    apply(&s, &sleeper("cluster", &node, json!({ "hostname": "web-0", "subdomain": "web" })));
    let none = json!({ "dnsPolicy": "None", "dnsConfig": { "nameservers": ["1.2.3.4"], "searches": ["a.example"],
        "options": [{ "name": "ndots", "value": "2" }, { "name": "edns0" }] } });
    apply(&s, &sleeper("custom", &node, none));
    apply(&s, &sleeper("nodewide", &node, json!({ "dnsPolicy": "Default" })));
    // ClusterFirst in the node's network is Default; its /etc/hosts is the node's and its aliases.
    let aliases = json!([{ "ip": "10.1.2.3", "hostnames": ["foo.example", "bar"] }]);
    apply(&s, &sleeper("hostnet", &node, json!({ "hostNetwork": true, "hostAliases": aliases })));
    for name in ["cluster", "custom", "nodewide", "hostnet"] {
        wait_pod(&s, &node, name, "ran", |p| p["status"]["phase"] == "Running");
    }

    // ClusterFirst: the cluster DNS, the cluster's searches then the node's, ndots:5.
    assert_eq!(
        exec(&s, "cluster", &["cat", "/etc/resolv.conf"]),
        "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
         nameserver 10.96.0.10\noptions ndots:5\n"
    );
    // None: the pod's dnsConfig only.
    assert_eq!(
        exec(&s, "custom", &["cat", "/etc/resolv.conf"]),
        "search a.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"
    );
    // Default: the node's resolv.conf.
    assert_eq!(
        exec(&s, "nodewide", &["cat", "/etc/resolv.conf"]),
        "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
    );

    assert_eq!(
        exec(&s, "hostnet", &["cat", "/etc/resolv.conf"]),
        "search corp.example\nnameserver 192.0.2.53\noptions edns0\n"
    );
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(
        exec(&s, "hostnet", &["cat", "/etc/hosts"]),
        format!("{node_hosts}\n# Entries added by HostAliases.\n10.1.2.3\tfoo.example\tbar\n")
    );

    // spec.hostname and spec.subdomain: the hostname, and the FQDN in the managed /etc/hosts.
    assert_eq!(exec(&s, "cluster", &["hostname"]).trim(), "web-0");
    let ip = get_pod(&s, "cluster")["status"]["podIP"].as_str().unwrap().to_string();
    let hosts = exec(&s, "cluster", &["cat", "/etc/hosts"]);
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.ends_with(&format!("\n{ip}\tweb-0.web.default.svc.cluster.local\tweb-0\n")), "{hosts}");
    assert_eq!(exec(&s, "custom", &["hostname"]).trim(), "custom");
    let custom_ip = get_pod(&s, "custom")["status"]["podIP"].as_str().unwrap().to_string();
    assert!(exec(&s, "custom", &["cat", "/etc/hosts"]).ends_with(&format!("\n{custom_ip}\tcustom\n")));

    // --shutdown-grace-period 0s: the stop removes the pods at once, writes no status and
    // never marks the Node NotReady.
    node.stop();
    let pod = get_pod(&s, "cluster");
    assert_eq!(pod["status"]["phase"], "Running", "{pod:#}");
    let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    assert!(conditions.iter().all(|c| c["type"] != "DisruptionTarget"), "{pod:#}");
    assert!(!node.log().contains("node shutting down"), "{}", node.log());
}
