//! The scheduler's picture of the cluster: one [`NodeInfo`] per node with the pods on it
//! and what they request, updated incrementally from the node and pod watches (never
//! re-listed per pod), plus pods *assumed* on a node while their binding is in flight.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, Taint, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::resources::{PodRequests, Resources, node_allocatable, pod_requests};
use crate::selectors::{Labels, Selector};

/// One pod (anti-)affinity term, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct AffinityTerm {
    /// Which pods the term is about.
    pub selector: Selector,
    /// The namespaces searched (the pod's own when none are named).
    pub namespaces: Vec<String>,
    /// `namespaceSelector: {}`: every namespace.
    pub all_namespaces: bool,
    /// The node label that defines a topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, own_namespace: &str) -> AffinityTerm {
        let selector = Selector::from_label_selector(t.label_selector.as_ref());
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        // A non-empty namespaceSelector needs namespace labels this scheduler does not
        // watch yet: it is treated as "every namespace" only when empty.
        let all_namespaces = t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        AffinityTerm { selector, namespaces, all_namespaces, topology_key: t.topology_key.clone() }
    }

    /// Whether `pod` is one of the pods the term is about.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.namespace)) && self.selector.matches(&pod.labels)
    }
}

/// A preferred term with its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedTerm {
    /// 1–100.
    pub weight: i32,
    /// The term.
    pub term: AffinityTerm,
}

/// A host port a pod uses: protocol, host IP (`0.0.0.0` when unset), port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP, `0.0.0.0` meaning every address.
    pub ip: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports collide, as NodePorts checks.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod, with what scheduling needs computed once.
#[derive(Debug)]
pub struct PodInfo {
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// metadata.uid.
    pub uid: String,
    /// metadata.labels.
    pub labels: Labels,
    /// Effective requests.
    pub requests: PodRequests,
    /// spec.priority (0 when unset).
    pub priority: i32,
    /// Host ports of its containers.
    pub host_ports: Vec<HostPort>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub preferred_affinity: Vec<WeightedTerm>,
    /// Preferred pod anti-affinity terms.
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

impl PodInfo {
    /// Computes the pod's scheduling facts.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let requests = pod_requests(&spec);
        let mut host_ports = Vec::new();
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    let ip = p.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip,
                        port: hp,
                    });
                }
            }
        }
        let affinity = spec.affinity.as_ref();
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(t, &namespace)).collect()
        };
        let pref = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|w| WeightedTerm { weight: w.weight, term: AffinityTerm::new(&w.pod_affinity_term, &namespace) })
                .collect()
        };
        PodInfo {
            key: format!("{namespace}/{name}"),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            required_affinity: req(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            required_anti_affinity: req(
                paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            ),
            preferred_affinity: pref(pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            preferred_anti_affinity: pref(
                paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            requests,
            host_ports,
            namespace,
            name,
            pod,
        }
    }

    /// The pod's spec (an empty one when absent).
    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// Whether the pod has any pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Whether the pod is being deleted.
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// One node and the pods placed on it.
#[derive(Debug, Default, Clone)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The node object; `None` while pods name a node this cache has not seen (or that was deleted).
    pub node: Option<Arc<Node>>,
    /// Node labels.
    pub labels: Labels,
    /// spec.taints.
    pub taints: Vec<Taint>,
    /// spec.unschedulable.
    pub unschedulable: bool,
    /// status.allocatable (capacity when absent).
    pub allocatable: Resources,
    /// Sum of the requests of the pods on the node.
    pub requested: Resources,
    /// CPU requests with defaults for unset ones (for scores).
    pub non_zero_milli_cpu: i64,
    /// Memory requests with defaults for unset ones (for scores).
    pub non_zero_memory: i64,
    /// The pods on the node, assumed ones included.
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of them have pod (anti-)affinity terms.
    pub pods_with_affinity: usize,
    /// How many of them have required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Images present on the node (normalized name → size in bytes).
    pub images: HashMap<String, i64>,
    /// Pods nominated to the node by preemption, waiting for their victims to go:
    /// (pod key, priority, requests). Pods of lower or equal priority leave room for them.
    pub nominated: Vec<(String, i32, Resources)>,
}

impl NodeInfo {
    /// Counts a pod on the node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Stops counting a pod on the node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        true
    }

    fn set_node(&mut self, node: Arc<Node>) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = node_allocatable(&node);
        self.images = node
            .status
            .as_ref()
            .and_then(|s| s.images.as_ref())
            .into_iter()
            .flatten()
            .flat_map(|img| {
                let size = img.size_bytes.unwrap_or(0);
                img.names.iter().flatten().map(move |n| (normalize_image(n), size))
            })
            .collect();
        self.node = Some(node);
    }
}

/// `nginx` → `docker.io/library/nginx:latest`, as the kubelet reports image names.
pub fn normalize_image(name: &str) -> String {
    let mut n = name.to_string();
    let last = n.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        n.push_str(":latest");
    }
    match n.split_once('/') {
        None => format!("docker.io/library/{n}"),
        Some((first, _)) if !first.contains('.') && !first.contains(':') && first != "localhost" => {
            format!("docker.io/{n}")
        }
        Some(_) => n,
    }
}

/// Where a pod the cache knows about is placed.
#[derive(Debug)]
struct Placement {
    node: String,
    assumed: bool,
}

/// The node-state cache.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, Placement>,
    with_node: usize,
    /// How many nodes report each image (for ImageLocality's spread factor).
    image_nodes: HashMap<String, usize>,
    /// PersistentVolumeClaims by `namespace/name`.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// PersistentVolumes by name.
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    /// StorageClasses by name.
    pub storage_classes: HashMap<String, Arc<StorageClass>>,
    /// PodDisruptionBudgets by `namespace/name`.
    pub budgets: HashMap<String, Arc<PodDisruptionBudget>>,
    /// The node each nominated pod is nominated to.
    nominations: HashMap<String, String>,
}

/// What a node update changed, for re-queueing unschedulable pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChange {
    /// A node the cache did not have.
    Added,
    /// Something scheduling looks at changed (labels, taints, allocatable, images, unschedulable).
    Updated,
    /// Nothing scheduling looks at changed (heartbeats).
    Unchanged,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Every node entry; entries with `node == None` are not schedulable.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The number of nodes with a Node object.
    pub fn node_count(&self) -> usize {
        self.with_node
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// How many nodes report `image`.
    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo { name: name.to_string(), ..NodeInfo::default() });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    fn drop_if_empty(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name)
            && self.nodes[i].node.is_none()
            && self.nodes[i].pods.is_empty()
            && self.nodes[i].nominated.is_empty()
        {
            self.nodes.swap_remove(i);
            self.index.remove(name);
            if i < self.nodes.len() {
                let moved = self.nodes[i].name.clone();
                self.index.insert(moved, i);
            }
        }
    }

    fn count_images(&mut self, images: &HashMap<String, i64>, delta: isize) {
        for name in images.keys() {
            let c = self.image_nodes.entry(name.clone()).or_insert(0);
            *c = c.saturating_add_signed(delta);
            if *c == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    /// Adds or updates a node.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (had, old_images, change) = {
            let entry = self.entry(&name);
            let had = entry.node.is_some();
            let old = (entry.labels.clone(), entry.taints.clone(), entry.unschedulable, entry.allocatable.clone());
            let old_images = std::mem::take(&mut entry.images);
            entry.set_node(node);
            let same = old
                == (entry.labels.clone(), entry.taints.clone(), entry.unschedulable, entry.allocatable.clone())
                && old_images == entry.images;
            let change = if !had {
                NodeChange::Added
            } else if same {
                NodeChange::Unchanged
            } else {
                NodeChange::Updated
            };
            (had, old_images, change)
        };
        if !had {
            self.with_node += 1;
        }
        self.count_images(&old_images, -1);
        let new_images = self.node(&name).map(|n| n.images.clone()).unwrap_or_default();
        self.count_images(&new_images, 1);
        change
    }

    /// Removes a node (its pods stay counted until they are deleted).
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].node.take().is_some() {
            self.with_node -= 1;
            let images = std::mem::take(&mut self.nodes[i].images);
            self.count_images(&images, -1);
        }
        self.drop_if_empty(name);
    }

    /// Adds or updates a pod bound to `spec.nodeName` (confirming an assumed placement).
    pub fn add_pod(&mut self, info: Arc<PodInfo>) {
        let node = info.spec().node_name.clone().unwrap_or_default();
        self.clear_nomination(&info.key);
        self.remove_pod(&info.key);
        self.entry(&node).add_pod(info.clone());
        self.pods.insert(info.key.clone(), Placement { node, assumed: false });
    }

    /// Removes a pod wherever it is.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(p) = self.pods.remove(key) else {
            return false;
        };
        if let Some(&i) = self.index.get(&p.node) {
            self.nodes[i].remove_pod(key);
        }
        self.drop_if_empty(&p.node);
        true
    }

    /// Places a pod on `node` while its binding is in flight.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&info.key);
        self.remove_pod(&info.key);
        self.entry(node).add_pod(info.clone());
        self.pods.insert(info.key.clone(), Placement { node: node.to_string(), assumed: true });
    }

    /// Takes back an assumption whose binding failed; a confirmed pod is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Reserves room on `node` for a pod that preempted victims there.
    pub fn nominate(&mut self, info: &PodInfo, node: &str) {
        self.clear_nomination(&info.key);
        self.entry(node).nominated.push((info.key.clone(), info.priority, info.requests.requests.clone()));
        self.nominations.insert(info.key.clone(), node.to_string());
    }

    /// Drops a pod's nomination (it was bound or deleted).
    pub fn clear_nomination(&mut self, key: &str) {
        if let Some(node) = self.nominations.remove(key)
            && let Some(&i) = self.index.get(&node)
        {
            self.nodes[i].nominated.retain(|(k, _, _)| k != key);
            self.drop_if_empty(&node);
        }
    }

    /// Whether the cache holds the pod (bound or assumed).
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}))
            .unwrap(),
        )
    }

    fn pod(name: &str, node: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": cpu}}}]}}))
            .unwrap(),
        )))
    }

    #[test]
    fn pods_and_nodes_are_tracked_incrementally() {
        let mut c = Cache::new();
        assert_eq!(c.upsert_node(node("a", "4")), NodeChange::Added);
        assert_eq!(c.upsert_node(node("a", "4")), NodeChange::Unchanged);
        assert_eq!(c.upsert_node(node("a", "8")), NodeChange::Updated);
        c.add_pod(pod("p", "a", "1"));
        c.assume(pod("q", "", "500m"), "a");
        let n = c.node("a").unwrap();
        assert_eq!(n.requested.milli_cpu, 1500);
        assert_eq!(n.requested.pods, 2);
        assert_eq!(n.used_ports.len(), 2);
        c.forget("default/q");
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 1000);
        // Updating a pod replaces it; a pod on an unknown node makes a placeholder entry.
        c.add_pod(pod("p", "a", "2"));
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 2000);
        c.add_pod(pod("r", "ghost", "1"));
        assert_eq!(c.node_count(), 1);
        assert!(c.node("ghost").is_some_and(|n| n.node.is_none()));
        c.remove_pod("default/r");
        assert!(c.node("ghost").is_none());
        c.remove_node("a");
        assert_eq!(c.node_count(), 0);
        assert!(c.node("a").is_some(), "pods keep the entry");
        c.remove_pod("default/p");
        assert!(c.node("a").is_none());
    }

    #[test]
    fn images_are_normalized() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalize_image("registry.local:5000/app"), "registry.local:5000/app:latest");
    }
}
