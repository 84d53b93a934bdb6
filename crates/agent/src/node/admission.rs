//! The kubelet's admission of a pod bound to this node (its predicate admit handler), for
//! pods that reach the node past the scheduler (`spec.nodeName` set by their author, or a
//! scheduler that got it wrong): the pod's `kubernetes.io/os` label and `spec.os` against
//! the node's OS, then the general predicates in Kubernetes' order — resources against the
//! node's allocatable less the requests of the pods already admitted (`OutOfcpu`,
//! `OutOfmemory`, `OutOfpods`, `OutOf<resource>`), required node affinity and nodeSelector
//! (`NodeAffinity`), the node name (`NodeName`), host ports (`NodePorts`) — and NoExecute
//! taints the pod does not tolerate (`TaintToleration`; static pods are exempt). The first
//! failure is the pod's reason and message. Pure: the caller brings the Node and the pods.

use std::collections::BTreeMap;

use berth_api::node_match::{term_matches, tolerates};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Taint, Toleration};

use crate::hollow::config::{NANO, parse_quantity};

/// Why a pod is refused: the reason (its status reason and the event's) and the message
/// (the event's; the status says "Pod was rejected: " before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// The node's OS, as Go's `runtime.GOOS` names it.
const NODE_OS: &str = "linux";
/// The label naming a node's (or a pod's) OS.
const OS_LABEL: &str = "kubernetes.io/os";

/// The scheduler plugins' names and messages the kubelet reports a failed predicate with.
const NODE_AFFINITY: (&str, &str) = ("NodeAffinity", "node(s) didn't match Pod's node affinity/selector");
const NODE_NAME: (&str, &str) = ("NodeName", "node(s) didn't match the requested node name");
const NODE_PORTS: (&str, &str) = ("NodePorts", "node(s) didn't have free ports for the requested pod ports");
const TAINT_TOLERATION: (&str, &str) = ("TaintToleration", "node(s) had taints that the pod didn't tolerate");

/// Whether `pod` may run on `node` next to `others`, the pods this node admitted before it
/// that are not finished. `is_static`: the pod comes from a manifest (taints do not apply).
pub(crate) fn admit(pod: &Pod, node: &Node, others: &[&Pod], is_static: bool) -> Result<(), Rejection> {
    let empty = BTreeMap::new();
    let node_labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    // The checks preemption would not help with come first.
    let pod_os = pod.metadata.labels.as_ref().and_then(|l| l.get(OS_LABEL));
    let node_os = node_labels.get(OS_LABEL).map_or(NODE_OS, String::as_str);
    let node_os = if node_os == NODE_OS { node_os } else { NODE_OS };
    if pod_os.is_some_and(|os| os != node_os) {
        return Err(Rejection {
            reason: "PodOSSelectorNodeLabelDoesNotMatch".into(),
            message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        });
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.os.as_ref().is_some_and(|os| os.name != NODE_OS) {
        return Err(Rejection {
            reason: "PodOSNotSupported".into(),
            message: "Failed to admit pod as the OS field doesn't match node OS".into(),
        });
    }
    if let Some(short) = fits_resources(pod, node, others).into_iter().next() {
        let reason = format!("OutOf{}", short.resource);
        let message = format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            short.resource, short.requested, short.used, short.capacity
        );
        return Err(Rejection { reason, message });
    }
    let predicate = |(name, desc): (&str, &str)| Rejection {
        reason: name.to_string(),
        message: format!("Predicate {name} failed: {desc}"),
    };
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if !matches_node_affinity(&spec, node_name, node_labels) {
        return Err(predicate(NODE_AFFINITY));
    }
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != node_name) {
        return Err(predicate(NODE_NAME));
    }
    let used: Vec<HostPort> = others.iter().flat_map(|p| host_ports(p)).collect();
    if host_ports(pod).iter().any(|w| used.iter().any(|u| w.conflicts(u))) {
        return Err(predicate(NODE_PORTS));
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = taints
        .iter()
        .filter(|t| t.effect == "NoExecute" && !tolerated_by_default(t, tolerations))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
    if !is_static && untolerated {
        return Err(predicate(TAINT_TOLERATION));
    }
    Ok(())
}

/// The name of the host-port check, the reason of a pod refused for a port.
pub(crate) const NODE_PORTS_REASON: &str = NODE_PORTS.0;

/// The message of a pod refused for a host port.
pub(crate) fn node_ports_message() -> String {
    format!("Predicate {} failed: {}", NODE_PORTS.0, NODE_PORTS.1)
}

/// A resource the node lacks for the pod, in the resource's unit (cpu: milli-CPUs; memory,
/// storage, hugepages: bytes; pods and extended resources: counts).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shortage {
    resource: String,
    requested: i128,
    used: i128,
    capacity: i128,
}

/// The resources the pod does not fit in, as the scheduler's NodeResourcesFit counts them:
/// pods first, then cpu, memory, ephemeral-storage, then the others by name. An extended
/// resource the node does not list is not checked (cluster-level resources).
fn fits_resources(pod: &Pod, node: &Node, others: &[&Pod]) -> Vec<Shortage> {
    let allocatable: BTreeMap<String, i128> = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), in_unit(k, parse_quantity(&q.0).ok()?))))
        .collect();
    let mut out = Vec::new();
    let allowed_pods = allocatable.get("pods").copied().unwrap_or(0);
    if others.len() as i128 + 1 > allowed_pods {
        out.push(Shortage {
            resource: "pods".into(),
            requested: 1,
            used: others.len() as i128,
            capacity: allowed_pods,
        });
    }
    let wanted = pod_requests(pod);
    let mut used: BTreeMap<String, i128> = BTreeMap::new();
    for other in others {
        for (k, v) in pod_requests(other) {
            *used.entry(k).or_default() += v;
        }
    }
    let mut names: Vec<&String> = wanted.keys().filter(|k| k.as_str() != "pods").collect();
    let rank = |k: &str| ["cpu", "memory", "ephemeral-storage"].iter().position(|r| *r == k).unwrap_or(3);
    names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    for name in names {
        let requested = wanted[name];
        if requested <= 0 || (is_extended(name) && !allocatable.contains_key(name)) {
            continue;
        }
        let capacity = allocatable.get(name).copied().unwrap_or(0);
        let used = used.get(name).copied().unwrap_or(0);
        if requested > capacity - used {
            out.push(Shortage { resource: name.clone(), requested, used, capacity });
        }
    }
    out
}

/// Whether a resource is an extended one (a domain-qualified name outside kubernetes.io).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// A quantity (nano-units) in its resource's unit: milli-CPUs for cpu, else whole units,
/// rounded up as Kubernetes' MilliValue and Value do.
fn in_unit(resource: &str, nano: i128) -> i128 {
    let per = if resource == "cpu" { NANO / 1000 } else { NANO };
    (nano + per - 1).div_euclid(per)
}

/// The requests of a pod as the scheduler adds them up: the containers' sum, or the
/// largest init container's (with the sidecars started before it) when larger, sidecars
/// (init containers with restartPolicy Always) added to the sum, plus the pod's overhead.
/// Pod-level requests (`spec.resources`) stand for the containers' when given.
pub(crate) fn pod_requests(pod: &Pod) -> BTreeMap<String, i128> {
    let Some(spec) = pod.spec.as_ref() else { return BTreeMap::new() };
    let mut total = BTreeMap::new();
    for c in &spec.containers {
        add(&mut total, &container_requests(c));
    }
    let mut sidecars = BTreeMap::new();
    let mut init_peak = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let requests = container_requests(c);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            add(&mut total, &requests);
            add(&mut sidecars, &requests);
            sidecars.clone()
        } else {
            let mut during = requests;
            add(&mut during, &sidecars);
            during
        };
        max_into(&mut init_peak, &during);
    }
    max_into(&mut total, &init_peak);
    pod_level(spec, &mut total);
    if let Some(overhead) = &spec.overhead {
        add(&mut total, &quantities(overhead));
    }
    total
}

/// Pod-level requests of cpu and memory replace the containers' sums.
fn pod_level(spec: &PodSpec, total: &mut BTreeMap<String, i128>) {
    let requests = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    for (k, v) in quantities(requests.unwrap_or(&BTreeMap::new())) {
        if k == "cpu" || k == "memory" {
            total.insert(k, v);
        }
    }
}

fn container_requests(c: &Container) -> BTreeMap<String, i128> {
    let resources = c.resources.as_ref();
    // A limit without a request stands for the request (the API server defaults it so).
    let mut out = quantities(resources.and_then(|r| r.limits.as_ref()).unwrap_or(&BTreeMap::new()));
    out.extend(quantities(resources.and_then(|r| r.requests.as_ref()).unwrap_or(&BTreeMap::new())));
    out
}

fn quantities(
    list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> BTreeMap<String, i128> {
    list.iter().filter_map(|(k, q)| Some((k.clone(), in_unit(k, parse_quantity(&q.0).ok()?)))).collect()
}

fn add(into: &mut BTreeMap<String, i128>, more: &BTreeMap<String, i128>) {
    for (k, v) in more {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn max_into(into: &mut BTreeMap<String, i128>, other: &BTreeMap<String, i128>) {
    for (k, v) in other {
        let e = into.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
}

/// The pod's nodeSelector and its required node affinity (any term) both match the node.
fn matches_node_affinity(spec: &PodSpec, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector = spec.node_selector.as_ref();
    if selector.is_some_and(|s| s.iter().any(|(k, v)| labels.get(k) != Some(v))) {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, node_name, labels)),
    }
}

/// The node lifecycle taints every pod of a Kubernetes cluster tolerates for 300 s unless it
/// says otherwise: kube-apiserver's DefaultTolerationSeconds admission adds those
/// tolerations to each pod without one for the key (NoExecute or any effect), as berth's
/// API server does in `berth_api::defaults`. A pod that reached the node without them (an
/// API server with that defaulting off) is judged as if it had them, as the kubelet sees
/// such pods in a default cluster.
fn tolerated_by_default(taint: &Taint, tolerations: &[Toleration]) -> bool {
    let lifecycle = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    lifecycle.contains(&taint.key.as_str())
        && !tolerations.iter().any(|t| {
            t.key.as_deref() == Some(taint.key.as_str())
                && t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute")
        })
}

/// A host port a pod's container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    protocol: String,
    ip: String,
    port: i32,
}

impl HostPort {
    /// Same protocol and port, on the same address or on all of them (0.0.0.0 or unset).
    pub(crate) fn conflicts(&self, other: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || any(&self.ip) || any(&other.ip))
    }
}

/// The host ports of a pod's containers (as the scheduler's NodePorts counts them).
pub(crate) fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| HostPort {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            ip: p.host_ip.clone().unwrap_or_default(),
            port: p.host_port.unwrap_or(0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn node(labels: Value, taints: Value, allocatable: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1", "labels": labels },
            "spec": { "taints": taints },
            "status": { "allocatable": allocatable },
        }))
        .unwrap()
    }

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{ "name": "c", "image": "i" }]);
        }
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    fn with_requests(requests: Value) -> Pod {
        pod(json!({ "containers": [{ "name": "c", "image": "i", "resources": { "requests": requests } }] }))
    }

    /// A case: its name, the pod, the node, the admitted pods, the verdict (reason, message).
    type Case<'a> = (&'a str, Pod, &'a Node, Vec<&'a Pod>, Result<(), (String, String)>);

    fn verdict(pod: &Pod, node: &Node, others: &[&Pod]) -> Result<(), (String, String)> {
        admit(pod, node, others, false).map_err(|r| (r.reason, r.message))
    }

    #[test]
    fn predicates_refuse_with_the_kubelets_reasons_and_messages() {
        let alloc = json!({ "cpu": "1800m", "memory": "1Gi", "pods": "3", "example.com/gpu": "1" });
        let n = node(json!({ "kubernetes.io/os": "linux", "disk": "ssd", "size": "8" }), json!([]), alloc);
        let half = with_requests(json!({ "cpu": "500m", "memory": "256Mi" }));
        let no_execute = json!([{ "key": "dedicated", "value": "db", "effect": "NoExecute" }]);
        let tainted = node(json!({}), no_execute, json!({ "cpu": "2", "pods": "10" }));
        let rejected = |reason: &str, message: &str| Err((reason.to_string(), message.to_string()));
        let predicate = |name: &str, desc: &str| rejected(name, &format!("Predicate {name} failed: {desc}"));
        let affinity = |op: &str, key: &str, values: Value| {
            pod(json!({ "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchExpressions": [{ "key": key, "operator": op, "values": values }] }]
            } } } }))
        };
        let cases: Vec<Case> = vec![
            ("fits", with_requests(json!({ "cpu": "1" })), &n, vec![&half], Ok(())),
            (
                "cpu past allocatable less the admitted pods",
                with_requests(json!({ "cpu": "2" })),
                &n,
                vec![&half],
                rejected(
                    "OutOfcpu",
                    "Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 1800",
                ),
            ),
            (
                "memory in bytes",
                with_requests(json!({ "memory": "800Mi" })),
                &n,
                vec![&half],
                rejected(
                    "OutOfmemory",
                    "Node didn't have enough resource: memory, requested: 838860800, used: 268435456, capacity: 1073741824",
                ),
            ),
            (
                "pods counted first",
                with_requests(json!({ "cpu": "5" })),
                &n,
                vec![&half, &half, &half],
                rejected("OutOfpods", "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"),
            ),
            (
                "extended resource the node has",
                with_requests(json!({ "example.com/gpu": "2" })),
                &n,
                vec![],
                rejected(
                    "OutOfexample.com/gpu",
                    "Node didn't have enough resource: example.com/gpu, requested: 2, used: 0, capacity: 1",
                ),
            ),
            (
                "extended resource the node does not list",
                with_requests(json!({ "example.com/fpga": "2" })),
                &n,
                vec![],
                Ok(()),
            ),
            (
                "a limit stands for a missing request",
                pod(
                    json!({ "containers": [{ "name": "c", "image": "i", "resources": { "limits": { "cpu": "1900m" } } }] }),
                ),
                &n,
                vec![],
                rejected("OutOfcpu", "Node didn't have enough resource: cpu, requested: 1900, used: 0, capacity: 1800"),
            ),
            (
                "the largest init container counts",
                pod(json!({
                    "initContainers": [{ "name": "i", "image": "i", "resources": { "requests": { "cpu": "1900m" } } }],
                    "containers": [{ "name": "c", "image": "i", "resources": { "requests": { "cpu": "100m" } } }],
                })),
                &n,
                vec![],
                rejected("OutOfcpu", "Node didn't have enough resource: cpu, requested: 1900, used: 0, capacity: 1800"),
            ),
            (
                "sidecars add to the containers",
                pod(json!({
                    "initContainers": [{ "name": "s", "image": "i", "restartPolicy": "Always",
                                         "resources": { "requests": { "cpu": "1" } } }],
                    "containers": [{ "name": "c", "image": "i", "resources": { "requests": { "cpu": "900m" } } }],
                })),
                &n,
                vec![],
                rejected("OutOfcpu", "Node didn't have enough resource: cpu, requested: 1900, used: 0, capacity: 1800"),
            ),
            (
                "overhead",
                pod(json!({ "overhead": { "cpu": "1" },
                            "containers": [{ "name": "c", "image": "i", "resources": { "requests": { "cpu": "900m" } } }] })),
                &n,
                vec![],
                rejected("OutOfcpu", "Node didn't have enough resource: cpu, requested: 1900, used: 0, capacity: 1800"),
            ),
            ("nodeSelector matches", pod(json!({ "nodeSelector": { "disk": "ssd" } })), &n, vec![], Ok(())),
            (
                "nodeSelector does not match",
                pod(json!({ "nodeSelector": { "disk": "hdd" } })),
                &n,
                vec![],
                predicate("NodeAffinity", "node(s) didn't match Pod's node affinity/selector"),
            ),
            ("affinity In", affinity("In", "disk", json!(["hdd", "ssd"])), &n, vec![], Ok(())),
            ("affinity Gt", affinity("Gt", "size", json!(["4"])), &n, vec![], Ok(())),
            (
                "affinity Lt",
                affinity("Lt", "size", json!(["4"])),
                &n,
                vec![],
                predicate("NodeAffinity", "node(s) didn't match Pod's node affinity/selector"),
            ),
            (
                "affinity DoesNotExist",
                affinity("DoesNotExist", "disk", json!(null)),
                &n,
                vec![],
                predicate("NodeAffinity", "node(s) didn't match Pod's node affinity/selector"),
            ),
            (
                "another node's name",
                pod(json!({ "nodeName": "n2" })),
                &n,
                vec![],
                predicate("NodeName", "node(s) didn't match the requested node name"),
            ),
            (
                "an untolerated NoExecute taint",
                pod(json!({})),
                &tainted,
                vec![],
                predicate("TaintToleration", "node(s) had taints that the pod didn't tolerate"),
            ),
            (
                "a toleration with the taint's value",
                pod(json!({ "tolerations": [{ "key": "dedicated", "value": "db", "effect": "NoExecute" }] })),
                &tainted,
                vec![],
                Ok(()),
            ),
            (
                "Exists without a key tolerates everything",
                pod(json!({ "tolerations": [{ "operator": "Exists" }] })),
                &tainted,
                vec![],
                Ok(()),
            ),
            (
                "another value is not tolerated",
                pod(json!({ "tolerations": [{ "key": "dedicated", "value": "web" }] })),
                &tainted,
                vec![],
                predicate("TaintToleration", "node(s) had taints that the pod didn't tolerate"),
            ),
            (
                "the OS label is checked first",
                {
                    let mut p = with_requests(json!({ "cpu": "9" }));
                    p.metadata.labels = Some([(OS_LABEL.to_string(), "windows".to_string())].into());
                    p
                },
                &n,
                vec![],
                rejected(
                    "PodOSSelectorNodeLabelDoesNotMatch",
                    "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
                ),
            ),
            (
                "the OS field",
                pod(json!({ "os": { "name": "windows" } })),
                &n,
                vec![],
                rejected("PodOSNotSupported", "Failed to admit pod as the OS field doesn't match node OS"),
            ),
            (
                "resources come before affinity",
                {
                    let mut p = with_requests(json!({ "cpu": "9" }));
                    p.spec.as_mut().unwrap().node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
                    p
                },
                &n,
                vec![],
                rejected("OutOfcpu", "Node didn't have enough resource: cpu, requested: 9000, used: 0, capacity: 1800"),
            ),
        ];
        for (name, p, n, others, want) in cases {
            assert_eq!(verdict(&p, n, &others), want, "{name}");
        }
    }

    #[test]
    fn static_pods_are_not_refused_for_taints() {
        let no_execute = json!([{ "key": "k", "effect": "NoExecute" }]);
        let n = node(json!({}), no_execute, json!({ "pods": "10" }));
        let p = pod(json!({}));
        assert!(admit(&p, &n, &[], false).is_err());
        assert_eq!(admit(&p, &n, &[], true), Ok(()));
        // A node not ready: tolerated as with DefaultTolerationSeconds' tolerations, unless
        // the pod has its own for the key (then those decide).
        let not_ready = json!([{ "key": "node.kubernetes.io/not-ready", "effect": "NoExecute" }]);
        let n = node(json!({}), not_ready, json!({ "pods": "10" }));
        assert_eq!(admit(&p, &n, &[], false), Ok(()));
        let own = pod(json!({ "tolerations": [{ "key": "node.kubernetes.io/not-ready", "operator": "Equal",
                                                "value": "x", "effect": "NoExecute" }] }));
        assert!(admit(&own, &n, &[], false).is_err());
        // NoSchedule taints are the scheduler's business, not the kubelet's.
        let n = node(json!({}), json!([{ "key": "k", "effect": "NoSchedule" }]), json!({ "pods": "10" }));
        assert_eq!(admit(&p, &n, &[], false), Ok(()));
    }

    #[test]
    fn host_ports_conflict_with_the_admitted_pods() {
        let n = node(json!({}), json!([]), json!({ "pods": "10" }));
        let port = |ip: &str, port: i32| {
            pod(json!({ "containers": [{ "name": "c", "image": "i",
                "ports": [{ "containerPort": 80, "hostPort": port, "hostIP": ip }] }] }))
        };
        let held = port("", 8080);
        let want = Err(("NodePorts".to_string(), node_ports_message()));
        assert_eq!(verdict(&port("127.0.0.1", 8080), &n, &[&held]), want);
        assert_eq!(verdict(&port("", 8081), &n, &[&held]), Ok(()));
        let one = port("10.0.0.1", 9000);
        assert_eq!(verdict(&port("10.0.0.2", 9000), &n, &[&one]), Ok(()));
    }
}
