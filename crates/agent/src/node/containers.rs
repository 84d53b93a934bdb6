//! CRI configs from a pod spec (pure): the sandbox (metadata, hostname, log directory, port
//! mappings, labels) and each container (command/args, env, working dir, resources → CPU
//! shares/quota and memory limit, runAsUser/Group, log path).

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::hollow::config::parse_quantity;
use crate::runtime::cri::v1 as cri;

/// The sandbox label naming the node whose agent made it.
pub const NODE_LABEL: &str = "berth.dev/node";
/// CFS period in microseconds (the kubelet's default).
const CPU_PERIOD: i64 = 100_000;

/// The pod's log directory under `data_dir`: `pods/<namespace>_<name>_<uid>`.
pub fn log_directory(data_dir: &Path, pod: &Pod) -> String {
    let m = &pod.metadata;
    data_dir
        .join("pods")
        .join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or(""),
            m.uid.as_deref().unwrap_or("")
        ))
        .display()
        .to_string()
}

/// The sandbox config of `pod` on node `node_name`.
pub fn sandbox_config(pod: &Pod, node_name: &str, data_dir: &Path) -> cri::PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let name = m.name.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.chars().take(63).collect());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()) as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let mut labels: HashMap<String, String> = m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(NODE_LABEL.into(), node_name.into());
    labels.insert("io.kubernetes.pod.name".into(), name.clone());
    labels.insert("io.kubernetes.pod.namespace".into(), m.namespace.clone().unwrap_or_default());
    labels.insert("io.kubernetes.pod.uid".into(), m.uid.clone().unwrap_or_default());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt: 0,
        }),
        hostname,
        log_directory: log_directory(data_dir, pod),
        port_mappings,
        labels,
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

fn protocol(p: Option<&str>) -> cri::Protocol {
    match p {
        Some("UDP") => cri::Protocol::Udp,
        Some("SCTP") => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

fn quantity(q: Option<&Quantity>) -> Option<i128> {
    q.and_then(|q| parse_quantity(&q.0).ok())
}

/// CPU shares, quota and memory limit from requests and limits, as the kubelet computes
/// them on cgroup v1 (shares = milliCPU·1024/1000, at least 2; quota = milliCPU·period/1000).
pub fn linux_resources(container: &Container) -> cri::LinuxContainerResources {
    let r = container.resources.clone().unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    // parse_quantity gives nano-units: CPU in milli-CPUs (rounded up), memory in bytes.
    let milli = |q: Option<&Quantity>| quantity(q).map(|n| (n + 999_999) / 1_000_000);
    let cpu_limit = milli(limits.get("cpu"));
    let cpu_request = milli(requests.get("cpu")).or(cpu_limit);
    let memory = quantity(limits.get("memory")).map(|n| (n / 1_000_000_000) as i64).unwrap_or(0);
    let shares = cpu_request.map(|m| ((m * 1024) / 1000).max(2) as i64).unwrap_or(2);
    let (quota, period) = match cpu_limit {
        Some(m) => (((m * CPU_PERIOD as i128) / 1000).max(1000) as i64, CPU_PERIOD),
        None => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

/// The container config for `container` at restart `attempt`, with its environment resolved.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: Vec<(String, String)>,
) -> cri::ContainerConfig {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user).map(|value| cri::Int64Value { value });
    let run_as_group = sc.run_as_group.or(pod_sc.run_as_group).map(|value| cri::Int64Value { value });
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.container.name".to_string(), container.name.clone());
    labels.insert("io.kubernetes.pod.uid".to_string(), pod.metadata.uid.clone().unwrap_or_default());
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(cri::ImageSpec { image: container.image.clone().unwrap_or_default(), ..Default::default() }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect(),
        labels,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(container)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user,
                run_as_group,
                privileged: sc.privileged.unwrap_or(false),
                readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                no_new_privs: sc.allow_privilege_escalation == Some(false),
                namespace_options: Some(namespace_options(pod)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// The kubelet's namespaces for a pod's containers: the pod's network and IPC; a PID
/// namespace of the container's own unless the pod shares one (`shareProcessNamespace`).
fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let shared = pod.spec.as_ref().and_then(|s| s.share_process_namespace) == Some(true);
    let pid = if shared { cri::NamespaceMode::Pod } else { cri::NamespaceMode::Container };
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: pid as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Makes `config` join the PID namespace of container `target_id` (CRI NamespaceMode
/// TARGET), as the kubelet does for an ephemeral container's `targetContainerName`; network
/// and IPC stay the pod's.
pub fn share_pid_with(config: &mut cri::ContainerConfig, target_id: &str) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Target as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        target_id: target_id.to_string(),
        ..Default::default()
    });
}

/// Expands `$(VAR)` references from `vars` as Kubernetes does: `$$` escapes, unknown
/// references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let c: Container = serde_json::from_value(json!({
            "name": "c", "resources": { "limits": { "cpu": "500m", "memory": "64Mi" }, "requests": { "cpu": "250m" } }
        }))
        .unwrap();
        let r = linux_resources(&c);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        let none: Container = serde_json::from_value(json!({ "name": "c" })).unwrap();
        let r = linux_resources(&none);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes), (2, 0, 0));
    }

    #[test]
    fn sandbox_has_hostname_ports_and_node_label() {
        let p = pod(json!({
            "metadata": { "name": "web", "namespace": "ns", "uid": "u1", "labels": { "app": "x" } },
            "spec": { "containers": [{ "name": "c", "ports": [
                { "containerPort": 80, "hostPort": 8080 }, { "containerPort": 81 }] }] }
        }));
        let s = sandbox_config(&p, "n1", Path::new("/d"));
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "/d/pods/ns_web_u1");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.labels[NODE_LABEL], "n1");
        assert_eq!(s.labels["app"], "x");
    }

    #[test]
    fn container_config_takes_command_env_and_user() {
        let p = pod(json!({
            "metadata": { "name": "p", "uid": "u" },
            "spec": { "securityContext": { "runAsUser": 1000 }, "containers": [] }
        }));
        let c: Container = serde_json::from_value(json!({
            "name": "c", "image": "localhost/busybox:1", "command": ["sh"], "args": ["-c", "true"],
            "workingDir": "/tmp", "securityContext": { "runAsGroup": 2000 }
        }))
        .unwrap();
        let cfg = container_config(&p, &c, 3, vec![("A".into(), "1".into())]);
        assert_eq!(cfg.command, ["sh"]);
        assert_eq!(cfg.args, ["-c", "true"]);
        assert_eq!(cfg.working_dir, "/tmp");
        assert_eq!(cfg.envs[0].key, "A");
        assert_eq!(cfg.log_path, "c/3.log");
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_user.unwrap().value, 1000);
        assert_eq!(sc.run_as_group.unwrap().value, 2000);
    }

    #[test]
    fn containers_get_their_own_pid_namespace_unless_shared_or_targeting() {
        let c: Container = serde_json::from_value(json!({ "name": "c", "image": "i" })).unwrap();
        let pid_of = |cfg: &cri::ContainerConfig| {
            let ns = cfg.linux.as_ref().unwrap().security_context.as_ref().unwrap().namespace_options.clone().unwrap();
            (ns.pid, ns.network, ns.ipc, ns.target_id)
        };
        let own =
            container_config(&pod(json!({ "metadata": { "name": "p" }, "spec": { "containers": [] } })), &c, 0, vec![]);
        let pod_ns = cri::NamespaceMode::Pod as i32;
        assert_eq!(pid_of(&own), (cri::NamespaceMode::Container as i32, pod_ns, pod_ns, String::new()));
        let shared =
            pod(json!({ "metadata": { "name": "p" }, "spec": { "shareProcessNamespace": true, "containers": [] } }));
        assert_eq!(pid_of(&container_config(&shared, &c, 0, vec![])).0, pod_ns);
        let mut debug = own.clone();
        share_pid_with(&mut debug, "abc");
        assert_eq!(pid_of(&debug), (cri::NamespaceMode::Target as i32, pod_ns, pod_ns, "abc".to_string()));
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "x-$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("a$b$(", &vars), "a$b$(");
    }
}
