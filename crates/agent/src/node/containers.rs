//! CRI configs from a pod spec (pure): the sandbox (metadata, hostname, log directory, port
//! mappings, labels, privileged) and each container (command/args, env, working dir,
//! resources → CPU shares/quota and memory limit, securityContext, log path), and the
//! kubelet's runAsNonRoot check.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, SecurityContext};
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
    let host_network = spec.host_network == Some(true);
    // A hostNetwork pod has the node's hostname (the kubelet leaves it to the runtime).
    let hostname = if host_network { String::new() } else { super::dns::hostname_and_domain(pod, "").0 };
    // In the node's network a container port is the host port: nothing to map.
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| !host_network && p.host_port.is_some_and(|h| h > 0))
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
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(&spec, None)),
                privileged: has_privileged_container(&spec),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Linux namespaces of the pod's sandbox and containers, as the kubelet's
/// `NamespacesForPod`: network and IPC per pod unless hostNetwork/hostIPC (then the node's);
/// PID per container unless shareProcessNamespace (per pod) or hostPID (the node's). With
/// `target` (a container id), PID is that container's (ephemeral containers' targetContainerName).
pub fn namespace_options(spec: &PodSpec, target: Option<&str>) -> cri::NamespaceOption {
    let node_or_pod = |host: Option<bool>| {
        if host == Some(true) { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod }
    };
    let pid = match target {
        _ if spec.host_pid == Some(true) => cri::NamespaceMode::Node,
        Some(_) => cri::NamespaceMode::Target,
        None if spec.share_process_namespace == Some(true) => cri::NamespaceMode::Pod,
        None => cri::NamespaceMode::Container,
    };
    cri::NamespaceOption {
        network: node_or_pod(spec.host_network) as i32,
        pid: pid as i32,
        ipc: node_or_pod(spec.host_ipc) as i32,
        target_id: target.filter(|_| pid == cri::NamespaceMode::Target).unwrap_or_default().to_string(),
        ..Default::default()
    }
}

/// Whether any container of the pod (init, regular, ephemeral) is privileged: its sandbox
/// must then be privileged too, or containerd refuses the container (the kubelet's
/// `HasPrivilegedContainer`).
pub fn has_privileged_container(spec: &PodSpec) -> bool {
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|sc| sc.privileged) == Some(true);
    spec.init_containers.iter().flatten().chain(&spec.containers).any(|c| privileged(c.security_context.as_ref()))
        || spec.ephemeral_containers.iter().flatten().any(|c| privileged(c.security_context.as_ref()))
}

/// The CRI capabilities of a container's securityContext: Kubernetes names as written
/// (`NET_ADMIN`, `ALL`); containerd adds the `CAP_` prefix and handles `ALL`.
fn capabilities(sc: &SecurityContext) -> Option<cri::Capability> {
    let caps = sc.capabilities.as_ref()?;
    Some(cri::Capability {
        add_capabilities: caps.add.clone().unwrap_or_default(),
        drop_capabilities: caps.drop.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// The kubelet's runAsNonRoot check (`verifyRunAsNonRoot`) of a container about to start from
/// `image`: with runAsNonRoot set (container over pod), the effective runAsUser must not be 0,
/// or else the image's user must be numeric and not 0 (no user in the image is root). The
/// error is the container's CreateContainerConfigError message; `pod` is the pod as the
/// kubelet names it (`name_namespace(uid)`).
pub fn verify_run_as_non_root(
    pod: &Pod,
    pod_name: &str,
    container: &Container,
    image: &cri::Image,
) -> Result<(), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let non_root = sc.and_then(|s| s.run_as_non_root).or(pod_sc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let name = &container.name;
    if let Some(uid) = sc.and_then(|s| s.run_as_user).or(pod_sc.and_then(|s| s.run_as_user)) {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod_name}\", container: {name})"
            ));
        }
        return Ok(());
    }
    match (&image.uid, image.username.as_str()) {
        (Some(uid), _) if uid.value != 0 => Ok(()),
        (None, user) if !user.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is \
             non-root (pod: \"{pod_name}\", container: {name})"
        )),
        // uid 0, or no user in the image: root.
        _ => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: {name})"
        )),
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
    // `$(VAR)` in command and args refers to the container's environment (the kubelet's
    // ExpandContainerCommandAndArgs).
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let expand_all = |v: &Option<Vec<String>>| v.iter().flatten().map(|a| expand(a, &vars)).collect::<Vec<_>>();
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: container.name.clone(), attempt }),
        image: Some(cri::ImageSpec { image: container.image.clone().unwrap_or_default(), ..Default::default() }),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
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
                namespace_options: Some(namespace_options(&pod.spec.clone().unwrap_or_default(), None)),
                capabilities: capabilities(&sc),
                run_as_user,
                run_as_group,
                privileged: sc.privileged.unwrap_or(false),
                readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                no_new_privs: sc.allow_privilege_escalation == Some(false),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Makes `config` join the PID namespace of container `target_id` (CRI NamespaceMode
/// TARGET), as the kubelet does for an ephemeral container's `targetContainerName`; network
/// and IPC stay what the pod's spec gave it ([`namespace_options`]).
pub fn share_pid_with(config: &mut cri::ContainerConfig, target_id: &str) {
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    let ns = sc.namespace_options.get_or_insert_with(|| namespace_options(&PodSpec::default(), None));
    ns.pid = cri::NamespaceMode::Target as i32;
    ns.target_id = target_id.to_string();
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
    fn a_privileged_container_makes_a_privileged_sandbox_and_capabilities_pass_through() {
        let p = pod(json!({
            "metadata": { "name": "p", "uid": "u" },
            "spec": { "initContainers": [{ "name": "i", "securityContext": { "privileged": true } }],
                      "containers": [{ "name": "c" }] }
        }));
        let privileged = |p: &Pod| {
            let s = sandbox_config(p, "n", Path::new("/d"));
            s.linux.unwrap().security_context.unwrap().privileged
        };
        assert!(privileged(&p));
        let plain = pod(json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "c" }] } }));
        assert!(!privileged(&plain));
        let c: Container = serde_json::from_value(json!({
            "name": "c", "securityContext": { "capabilities": { "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] },
                                             "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false }
        }))
        .unwrap();
        let sc = container_config(&plain, &c, 0, vec![]).linux.unwrap().security_context.unwrap();
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop_capabilities, ["ALL"]);
        assert_eq!(caps.add_capabilities, ["NET_BIND_SERVICE"]);
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
    }

    #[test]
    fn namespaces_follow_the_pod_spec() {
        let spec = |v: serde_json::Value| -> PodSpec { serde_json::from_value(v).unwrap() };
        let mode = |m: cri::NamespaceMode| m as i32;
        let plain = namespace_options(&spec(json!({ "containers": [] })), None);
        assert_eq!(
            (plain.network, plain.pid, plain.ipc),
            (mode(cri::NamespaceMode::Pod), mode(cri::NamespaceMode::Container), mode(cri::NamespaceMode::Pod))
        );
        let shared = namespace_options(&spec(json!({ "containers": [], "shareProcessNamespace": true })), None);
        assert_eq!(shared.pid, mode(cri::NamespaceMode::Pod));
        let host = spec(json!({ "containers": [], "hostNetwork": true, "hostPID": true, "hostIPC": true }));
        let o = namespace_options(&host, None);
        assert_eq!(
            (o.network, o.pid, o.ipc),
            (mode(cri::NamespaceMode::Node), mode(cri::NamespaceMode::Node), mode(cri::NamespaceMode::Node))
        );
        let target = namespace_options(&spec(json!({ "containers": [] })), Some("abc"));
        assert_eq!((target.pid, target.target_id.as_str()), (mode(cri::NamespaceMode::Target), "abc"));
        // A hostNetwork pod keeps the node's hostname and maps no ports.
        let p = pod(json!({
            "metadata": { "name": "web" },
            "spec": { "hostNetwork": true, "containers": [{ "name": "c", "ports": [{ "containerPort": 80, "hostPort": 80 }] }] }
        }));
        let s = sandbox_config(&p, "n", Path::new("/d"));
        assert_eq!(s.hostname, "");
        assert!(s.port_mappings.is_empty());
        let ns = s.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, mode(cri::NamespaceMode::Node));
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_user_and_the_image() {
        let check = |pod_sc: serde_json::Value, sc: serde_json::Value, uid: Option<i64>, user: &str| {
            let p =
                pod(json!({ "metadata": { "name": "p" }, "spec": { "securityContext": pod_sc, "containers": [] } }));
            let c: Container = serde_json::from_value(json!({ "name": "c", "securityContext": sc })).unwrap();
            let image = cri::Image {
                uid: uid.map(|value| cri::Int64Value { value }),
                username: user.into(),
                ..Default::default()
            };
            verify_run_as_non_root(&p, "p_ns(u)", &c, &image)
        };
        // Not asked: anything goes.
        assert!(check(json!({}), json!({}), None, "").is_ok());
        // The image's user decides: none or 0 is root; a name cannot be verified.
        let err = check(json!({ "runAsNonRoot": true }), json!({}), None, "").unwrap_err();
        assert_eq!(err, "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)");
        assert!(check(json!({}), json!({ "runAsNonRoot": true }), Some(0), "").is_err());
        assert!(check(json!({ "runAsNonRoot": true }), json!({}), Some(1000), "").is_ok());
        let err = check(json!({ "runAsNonRoot": true }), json!({}), None, "nobody").unwrap_err();
        assert!(err.contains("non-numeric user (nobody)"), "{err}");
        // runAsUser wins over the image; the container's setting over the pod's.
        assert!(check(json!({ "runAsNonRoot": true, "runAsUser": 1000 }), json!({}), Some(0), "").is_ok());
        let err = check(json!({ "runAsNonRoot": true }), json!({ "runAsUser": 0 }), Some(1000), "").unwrap_err();
        assert!(err.starts_with("container's runAsUser breaks non-root policy"), "{err}");
        assert!(check(json!({ "runAsNonRoot": true }), json!({ "runAsNonRoot": false }), None, "").is_ok());
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

    #[test]
    fn command_and_args_expand_the_environment() {
        let p = pod(json!({ "metadata": { "name": "p" }, "spec": { "containers": [] } }));
        let c: Container = serde_json::from_value(json!({
            "name": "c", "command": ["echo", "$(GREETING)"], "args": ["$(WHO)", "$$(WHO)", "$(NOPE)"]
        }))
        .unwrap();
        let env = vec![("GREETING".into(), "hello".into()), ("WHO".into(), "world".into())];
        let cfg = container_config(&p, &c, 0, env);
        assert_eq!(cfg.command, ["echo", "hello"]);
        assert_eq!(cfg.args, ["world", "$(WHO)", "$(NOPE)"]);
    }
}
