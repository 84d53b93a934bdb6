//! The scheduler's picture of the cluster: one [`NodeInfo`] per node with the pods on it
//! and what they request, updated incrementally from the node and pod watches (never
//! re-listed per pod), plus pods *assumed* on a node while their binding is in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, ReplicationController, Service,
    Taint, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::resources::{PodRequests, Resources, node_allocatable, pod_requests};
use crate::selectors::{Labels, Selector};

/// Namespaces by name, for the namespaceSelector of pod (anti-)affinity terms.
pub type Namespaces = HashMap<String, Arc<Namespace>>;

/// One pod (anti-)affinity term, compiled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    /// Which pods the term is about.
    pub selector: Selector,
    /// The namespaces searched by name (the pod's own when neither names nor a
    /// namespaceSelector are given).
    pub namespaces: Vec<String>,
    /// `namespaceSelector: {}`: every namespace.
    pub all_namespaces: bool,
    /// A non-empty namespaceSelector: namespaces whose labels it selects are searched too.
    pub namespace_selector: Option<Selector>,
    /// The node label that defines a topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, own_namespace: &str) -> AffinityTerm {
        let selector = Selector::from_label_selector(t.label_selector.as_ref());
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        let empty = |s: &LabelSelector| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        };
        let all_namespaces = t.namespace_selector.as_ref().is_some_and(empty);
        let namespace_selector =
            t.namespace_selector.as_ref().filter(|s| !empty(s)).map(|s| Selector::from_label_selector(Some(s)));
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(own_namespace.to_string());
        }
        AffinityTerm { selector, namespaces, all_namespaces, namespace_selector, topology_key: t.topology_key.clone() }
    }

    /// Whether `pod` is one of the pods the term is about; `namespaces` gives the
    /// namespace labels a namespaceSelector is matched against.
    pub fn matches(&self, pod: &PodInfo, namespaces: &Namespaces) -> bool {
        let in_namespace = self.all_namespaces
            || self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|sel| {
                namespaces
                    .get(&pod.namespace)
                    .is_some_and(|ns| sel.matches(ns.metadata.labels.as_ref().unwrap_or(&Labels::new())))
            });
        in_namespace && self.selector.matches(&pod.labels)
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
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
        let spec = pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default));
        let requests = pod_requests(spec);
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

/// One node and the pods placed on it. What comes from the Node object alone (labels,
/// taints, images) is shared, so that the copies preemption works on cost little more than
/// the pod list.
#[derive(Debug, Default, Clone)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The node object; `None` while pods name a node this cache has not seen (or that was deleted).
    pub node: Option<Arc<Node>>,
    /// Node labels.
    pub labels: Arc<Labels>,
    /// spec.taints.
    pub taints: Arc<[Taint]>,
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
    pub images: Arc<HashMap<String, i64>>,
    /// Pods nominated to the node by preemption, waiting for their victims to go. Pods of
    /// lower or equal priority are filtered as if these ran there ([`crate::framework::fits`]).
    pub nominated: Vec<Arc<PodInfo>>,
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
        self.labels = Arc::new(node.metadata.labels.clone().unwrap_or_default());
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default().into();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = node_allocatable(&node);
        self.images = Arc::new(
            node.status
                .as_ref()
                .and_then(|s| s.images.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|img| {
                    let size = img.size_bytes.unwrap_or(0);
                    img.names.iter().flatten().map(move |n| (normalize_image(n), size))
                })
                .collect(),
        );
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
    info: Arc<PodInfo>,
}

/// A free volume the scheduler chose for a pod's unbound WaitForFirstConsumer claim,
/// held until the claim is bound (or the pod is gone, or its binding failed).
#[derive(Debug, Clone)]
struct AssumedVolume {
    /// The claim, `namespace/name`.
    claim: String,
    /// The pod, `namespace/name`.
    pod: String,
}

/// Pods (or terms) per topology domain (label value); domains with none are absent.
/// Shared copy-on-write: a cycle holds a clone of the `Arc` while the cache keeps
/// updating its own (no copy happens unless a cycle still holds it).
pub type DomainCounts = Arc<HashMap<String, i64>>;

/// A group of pods counted per topology domain: the pods a label selector selects in
/// some namespaces, by the value of one node label. Groups are counted incrementally
/// from the first time a cycle asks for them ([`Cache::group_counts`]) until unused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// The namespaces searched (sorted), unless `all_namespaces`.
    pub namespaces: Vec<String>,
    /// Every namespace.
    pub all_namespaces: bool,
    /// Which pods.
    pub selector: Selector,
    /// The node label whose values are the domains.
    pub topology_key: String,
    /// Terminating pods are left out (PodTopologySpread counts only live pods).
    pub skip_terminating: bool,
}

impl GroupKey {
    /// The group a pod (anti-)affinity term counts; `None` for a term with a
    /// namespaceSelector (what it selects changes with namespace labels: not kept).
    pub fn of_term(term: &AffinityTerm) -> Option<GroupKey> {
        if term.namespace_selector.is_some() {
            return None;
        }
        let mut namespaces = term.namespaces.clone();
        namespaces.sort();
        namespaces.dedup();
        Some(GroupKey {
            namespaces,
            all_namespaces: term.all_namespaces,
            selector: term.selector.clone(),
            topology_key: term.topology_key.clone(),
            skip_terminating: false,
        })
    }

    /// Whether `pod` belongs to the group.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.namespace))
            && !(self.skip_terminating && pod.terminating())
            && self.selector.matches(&pod.labels)
    }
}

/// A counted group and when a cycle last asked for it.
#[derive(Debug)]
struct Group {
    counts: DomainCounts,
    last_used: u64,
}

/// The counted groups. Behind a mutex so a cycle holding `&Cache` can register one.
#[derive(Debug, Default)]
struct Groups {
    map: HashMap<GroupKey, Group>,
    /// Counts the asks; a group not asked for within [`GROUP_IDLE_ASKS`] asks is dropped.
    clock: u64,
}

/// A counted group no cycle asked for within this many asks (of any group) is dropped.
const GROUP_IDLE_ASKS: u64 = 20_000;

/// Adds `by` to a domain's count, dropping the domain when it reaches 0.
pub(crate) fn bump_domain(counts: &mut DomainCounts, domain: &str, by: i64) {
    let map = Arc::make_mut(counts);
    match map.get_mut(domain) {
        Some(c) => {
            *c += by;
            if *c == 0 {
                map.remove(domain);
            }
        }
        None => {
            map.insert(domain.to_string(), by);
        }
    }
}

/// Counts (`sign` 1) or uncounts (-1) `pod` on a node (`present`: it has a Node object;
/// `labels`: its labels) in every counted group and in the existing anti-affinity terms.
fn account(
    groups: &mut Groups,
    existing_anti: &mut HashMap<AffinityTerm, DomainCounts>,
    present: bool,
    labels: &Labels,
    pod: &PodInfo,
    sign: i64,
) {
    if !present {
        return;
    }
    for (key, g) in groups.map.iter_mut() {
        if let Some(v) = labels.get(&key.topology_key)
            && key.matches(pod)
        {
            bump_domain(&mut g.counts, v, sign);
        }
    }
    for t in &pod.required_anti_affinity {
        if let Some(v) = labels.get(&t.topology_key) {
            let counts = existing_anti.entry(t.clone()).or_default();
            bump_domain(counts, v, sign);
            if counts.is_empty() {
                existing_anti.remove(t);
            }
        }
    }
}

/// Pod keys by label key, then label value.
type LabelIndex = HashMap<String, HashMap<String, HashSet<String>>>;

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
    /// Namespaces by name (their labels, for namespaceSelectors).
    pub namespaces: Namespaces,
    /// Services by `namespace/name` (PodTopologySpread's default constraints).
    pub services: HashMap<String, Arc<Service>>,
    /// ReplicationControllers by `namespace/name` (default spread constraints).
    pub replication_controllers: HashMap<String, Arc<ReplicationController>>,
    /// ReplicaSets by `namespace/name` (default spread constraints).
    pub replica_sets: HashMap<String, Arc<ReplicaSet>>,
    /// StatefulSets by `namespace/name` (default spread constraints).
    pub stateful_sets: HashMap<String, Arc<StatefulSet>>,
    /// The node each nominated pod is nominated to.
    nominations: HashMap<String, String>,
    /// Preemption victims this scheduler is deleting, until their deletion is seen (they
    /// count as terminating: Kubernetes sees its victims' deletionTimestamp first).
    victims: HashSet<String>,
    /// Volumes held for claims of placed pods by volume name, until the binder binds the
    /// claims (Kubernetes' VolumeBinding assumes them in its cache at Reserve).
    assumed_volumes: HashMap<String, AssumedVolume>,
    /// Every placed pod by label (so selectors find their pods without a walk of every pod).
    by_label: LabelIndex,
    /// Keys of placed pods with required anti-affinity terms.
    with_required_anti: HashSet<String>,
    /// Keys of placed pods with terms that score (required affinity, preferred terms).
    with_scoring_terms: HashSet<String>,
    /// Counted groups (pods per domain), for the pre-filters and pre-scores.
    groups: std::sync::Mutex<Groups>,
    /// Placed pods' required anti-affinity terms: per distinct term, how many pods
    /// carrying it are in each domain of its topology key.
    existing_anti: HashMap<AffinityTerm, DomainCounts>,
    /// Per node label key: how many nodes (with a Node object) carry each value.
    node_domains: HashMap<String, DomainCounts>,
}

fn scores_terms(p: &PodInfo) -> bool {
    !(p.required_affinity.is_empty() && p.preferred_affinity.is_empty() && p.preferred_anti_affinity.is_empty())
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
        let old_labels = self.node(&name).filter(|n| n.node.is_some()).map(|n| n.labels.clone());
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
        if change != NodeChange::Unchanged {
            let new_labels = self.node(&name).map(|n| n.labels.clone()).unwrap_or_default();
            self.relabel(&name, old_labels.as_deref(), Some(&new_labels));
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
        if self.nodes[i].node.is_some() {
            let old_labels = self.nodes[i].labels.clone();
            self.relabel(name, Some(&old_labels), None);
            self.nodes[i].node = None;
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
        self.place(info, node, false);
    }

    fn place(&mut self, info: Arc<PodInfo>, node: String, assumed: bool) {
        let entry = self.entry(&node);
        entry.add_pod(info.clone());
        let present = entry.node.is_some();
        let i = self.index[&node];
        account(
            self.groups.get_mut().unwrap_or_else(|e| e.into_inner()),
            &mut self.existing_anti,
            present,
            &self.nodes[i].labels,
            &info,
            1,
        );
        for (k, v) in &info.labels {
            self.by_label.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(info.key.clone());
        }
        if !info.required_anti_affinity.is_empty() {
            self.with_required_anti.insert(info.key.clone());
        }
        if scores_terms(&info) {
            self.with_scoring_terms.insert(info.key.clone());
        }
        self.pods.insert(info.key.clone(), Placement { node, assumed, info });
    }

    /// Removes a pod wherever it is.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(p) = self.pods.remove(key) else {
            return false;
        };
        if let Some(&i) = self.index.get(&p.node) {
            let n = &self.nodes[i];
            account(
                self.groups.get_mut().unwrap_or_else(|e| e.into_inner()),
                &mut self.existing_anti,
                n.node.is_some(),
                &n.labels,
                &p.info,
                -1,
            );
            self.nodes[i].remove_pod(key);
        }
        self.drop_if_empty(&p.node);
        for (k, v) in &p.info.labels {
            if let Some(values) = self.by_label.get_mut(k) {
                if let Some(keys) = values.get_mut(v) {
                    keys.remove(key);
                    if keys.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    self.by_label.remove(k);
                }
            }
        }
        self.with_required_anti.remove(key);
        self.with_scoring_terms.remove(key);
        true
    }

    /// A placed pod and its node entry, when the node has a Node object.
    fn placed(&self, key: &str) -> Option<(&PodInfo, &NodeInfo)> {
        let p = self.pods.get(key)?;
        let node = self.node(&p.node).filter(|n| n.node.is_some())?;
        Some((&p.info, node))
    }

    /// The placed pods (on nodes with a Node object) that `selector` may select, with
    /// their nodes: a superset found through the label index when the selector names a
    /// label value, every pod otherwise. Callers still match each candidate.
    pub fn candidates(&self, selector: &Selector) -> Vec<(&PodInfo, &NodeInfo)> {
        match selector.index_hint() {
            Some((key, values)) => {
                let Some(by_value) = self.by_label.get(key) else {
                    return Vec::new();
                };
                values.iter().filter_map(|v| by_value.get(v)).flatten().filter_map(|k| self.placed(k)).collect()
            }
            None => self
                .nodes
                .iter()
                .filter(|n| n.node.is_some())
                .flat_map(|n| n.pods.iter().map(move |p| (p.as_ref(), n)))
                .collect(),
        }
    }

    /// Moves the node `name`'s pods (and the node itself) in the per-domain counts from
    /// its old labels to its new ones (`None`: no Node object).
    fn relabel(&mut self, name: &str, old: Option<&Labels>, new: Option<&Labels>) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        let groups = self.groups.get_mut().unwrap_or_else(|e| e.into_inner());
        for p in &self.nodes[i].pods {
            if let Some(old) = old {
                account(groups, &mut self.existing_anti, true, old, p, -1);
            }
            if let Some(new) = new {
                account(groups, &mut self.existing_anti, true, new, p, 1);
            }
        }
        for (labels, sign) in [(old, -1), (new, 1)] {
            for (k, v) in labels.into_iter().flatten() {
                let counts = self.node_domains.entry(k.clone()).or_default();
                bump_domain(counts, v, sign);
                if counts.is_empty() {
                    self.node_domains.remove(k);
                }
            }
        }
    }

    /// How many nodes (with a Node object) carry each value of the label `key`.
    pub fn node_domains(&self, key: &str) -> DomainCounts {
        self.node_domains.get(key).cloned().unwrap_or_default()
    }

    /// The group's placed pods (on nodes with a Node object carrying the topology key)
    /// per domain. The first ask counts them through the label index; from then on the
    /// counts follow every pod and node change, until no cycle asks for a while.
    pub fn group_counts(&self, key: &GroupKey) -> DomainCounts {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.clock += 1;
        let clock = groups.clock;
        if let Some(g) = groups.map.get_mut(key) {
            g.last_used = clock;
            return g.counts.clone();
        }
        let mut counts = DomainCounts::default();
        for (p, n) in self.candidates(&key.selector) {
            if let Some(v) = n.labels.get(&key.topology_key)
                && key.matches(p)
            {
                bump_domain(&mut counts, v, 1);
            }
        }
        groups.map.retain(|_, g| clock - g.last_used < GROUP_IDLE_ASKS);
        groups.map.insert(key.clone(), Group { counts: counts.clone(), last_used: clock });
        counts
    }

    /// A placed pod (bound or assumed) as the cache holds it, and the node it is on.
    pub fn placement(&self, key: &str) -> Option<(&Arc<PodInfo>, &str)> {
        self.pods.get(key).map(|p| (&p.info, p.node.as_str()))
    }

    /// The value of label `key` on the node where pod `key` is placed (a Node object).
    pub fn placed_domain(&self, pod: &str, key: &str) -> Option<String> {
        self.placed(pod).and_then(|(_, n)| n.labels.get(key).cloned())
    }

    /// How many groups are counted (for tests and profiles).
    pub fn counted_groups(&self) -> usize {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    /// The distinct required anti-affinity terms of placed pods, each with how many pods
    /// carrying it are in each domain of its topology key (nodes with a Node object).
    pub fn existing_anti_affinity(&self) -> impl Iterator<Item = (&AffinityTerm, &DomainCounts)> {
        self.existing_anti.iter()
    }

    /// Placed pods (on nodes with a Node object) with required anti-affinity terms.
    pub fn pods_with_required_anti_affinity(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.with_required_anti.iter().filter_map(|k| self.placed(k))
    }

    /// Whether any placed pod has required anti-affinity terms.
    pub fn any_required_anti_affinity(&self) -> bool {
        !self.with_required_anti.is_empty()
    }

    /// Placed pods (on nodes with a Node object) with terms InterPodAffinity scores by:
    /// required affinity, preferred affinity or anti-affinity.
    pub fn pods_with_scoring_terms(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.with_scoring_terms.iter().filter_map(|k| self.placed(k))
    }

    /// Places a pod on `node` while its binding is in flight.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&info.key);
        self.remove_pod(&info.key);
        self.place(info, node.to_string(), true);
    }

    /// Takes back an assumption whose binding failed, with the volumes held for it; a
    /// confirmed pod is left alone.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
            self.assumed_volumes.retain(|_, a| a.pod != key);
        }
    }

    /// Holds `volumes` (volume name, claim `namespace/name`) for the placed pod `pod`:
    /// other claims do not get them while the binder has yet to bind these claims.
    pub fn assume_volumes(&mut self, pod: &str, volumes: Vec<(String, String)>) {
        let released: Vec<String> =
            self.assumed_volumes.iter().filter(|(_, a)| !self.holds(a)).map(|(volume, _)| volume.clone()).collect();
        for volume in released {
            self.assumed_volumes.remove(&volume);
        }
        for (volume, claim) in volumes {
            self.assumed_volumes.insert(volume, AssumedVolume { claim, pod: pod.to_string() });
        }
    }

    /// The claim (`namespace/name`) a volume is held for, while that holds: its pod is
    /// still placed and the claim still unbound.
    pub fn volume_held_for(&self, volume: &str) -> Option<&str> {
        self.assumed_volumes.get(volume).filter(|a| self.holds(a)).map(|a| a.claim.as_str())
    }

    fn holds(&self, a: &AssumedVolume) -> bool {
        self.pods.contains_key(&a.pod)
            && self.claims.get(&a.claim).is_some_and(|c| {
                c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_none_or(str::is_empty)
                    && c.metadata.deletion_timestamp.is_none()
            })
    }

    /// Reserves room on `node` for a pod that preempted victims there.
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&info.key);
        self.nominations.insert(info.key.clone(), node.to_string());
        self.entry(node).nominated.push(info);
    }

    /// The node a pod was nominated to by this scheduler.
    pub fn nomination(&self, key: &str) -> Option<&str> {
        self.nominations.get(key).map(String::as_str)
    }

    /// Notes pods whose deletion this scheduler is requesting as preemption victims.
    pub fn mark_victims<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        self.victims.extend(keys.into_iter().map(str::to_string));
    }

    /// A victim's deletion was seen, or failed: it no longer counts as terminating.
    pub fn unmark_victim(&mut self, key: &str) {
        self.victims.remove(key);
    }

    /// Whether the pod is terminating, or a victim whose deletion is under way.
    pub fn going(&self, pod: &PodInfo) -> bool {
        pod.terminating() || (!self.victims.is_empty() && self.victims.contains(&pod.key))
    }

    /// Drops a pod's nomination (it was bound or deleted).
    pub fn clear_nomination(&mut self, key: &str) {
        if let Some(node) = self.nominations.remove(key)
            && let Some(&i) = self.index.get(&node)
        {
            self.nodes[i].nominated.retain(|p| p.key != key);
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

    /// One step of the property test below.
    #[derive(Debug, Clone)]
    enum Op {
        UpsertNode { node: u8, zone: u8, cpu: u8 },
        RemoveNode { node: u8 },
        AddPod { pod: u8, node: u8, app: u8, anti: bool, preferred: bool },
        Assume { pod: u8, node: u8, app: u8, anti: bool },
        RemovePod { pod: u8 },
        Forget { pod: u8 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..5u8, 0..3u8, 1..4u8).prop_map(|(node, zone, cpu)| Op::UpsertNode { node, zone, cpu }),
            (0..5u8).prop_map(|node| Op::RemoveNode { node }),
            (0..10u8, 0..6u8, 0..3u8, any::<bool>(), any::<bool>())
                .prop_map(|(pod, node, app, anti, preferred)| Op::AddPod { pod, node, app, anti, preferred }),
            (0..10u8, 0..6u8, 0..3u8, any::<bool>()).prop_map(|(pod, node, app, anti)| Op::Assume {
                pod,
                node,
                app,
                anti
            }),
            (0..10u8).prop_map(|pod| Op::RemovePod { pod }),
            (0..10u8).prop_map(|pod| Op::Forget { pod }),
        ]
    }

    fn labelled_pod(pod: u8, node: u8, app: u8, anti: bool, preferred: bool) -> Arc<PodInfo> {
        let key = if pod.is_multiple_of(3) { "host" } else { "zone" };
        let term = json!({"labelSelector": {"matchLabels": {"app": format!("a{app}")}}, "topologyKey": key});
        let mut affinity = json!({});
        if anti {
            affinity["podAntiAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": [term.clone()]});
        }
        if preferred {
            affinity["podAffinity"] =
                json!({"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term}]});
        }
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": format!("p{pod}"), "namespace": "default",
                "deletionTimestamp": (pod % 4 == 1).then_some("2026-01-01T00:00:00Z"),
                "labels": {"app": format!("a{app}"), "tier": format!("t{}", pod % 2)}},
                "spec": {"nodeName": format!("n{node}"), "affinity": affinity,
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": format!("{}m", 100 + pod as u32)}}}]}}))
            .unwrap(),
        )))
    }

    fn keys<'a>(it: impl Iterator<Item = (&'a PodInfo, &'a NodeInfo)>) -> std::collections::BTreeSet<String> {
        it.map(|(p, n)| format!("{}@{}", p.key, n.name)).collect()
    }

    /// The indexes agree with what a walk of every node's pods finds.
    fn check_against_scan(c: &Cache) {
        let scan = |want: &dyn Fn(&PodInfo) -> bool| {
            keys(
                c.nodes()
                    .iter()
                    .filter(|n| n.node.is_some())
                    .flat_map(|n| n.pods.iter().map(move |p| (p.as_ref(), n)))
                    .filter(|(p, _)| want(p)),
            )
        };
        for app in ["a0", "a1", "a2", "a9"] {
            let mut labels = Labels::new();
            labels.insert("app".into(), app.into());
            let sel = Selector::from_map(&labels);
            let found = keys(c.candidates(&sel).into_iter().filter(|(p, _)| sel.matches(&p.labels)));
            assert_eq!(found, scan(&|p| sel.matches(&p.labels)), "pods with app={app}");
        }
        assert_eq!(keys(c.candidates(&Selector::everything()).into_iter()), scan(&|_| true));
        assert!(c.candidates(&Selector::nothing()).is_empty());
        assert_eq!(keys(c.pods_with_required_anti_affinity()), scan(&|p| !p.required_anti_affinity.is_empty()));
        assert_eq!(c.any_required_anti_affinity(), c.pods.values().any(|p| !p.info.required_anti_affinity.is_empty()));
        assert_eq!(keys(c.pods_with_scoring_terms()), scan(&|p| !p.preferred_affinity.is_empty()));
        // Every placed pod is on its node exactly once, and the node's sums are its pods'.
        for n in c.nodes() {
            let cpu: i64 = n.pods.iter().map(|p| p.requests.requests.milli_cpu).sum();
            assert_eq!(n.requested.milli_cpu, cpu, "node {}", n.name);
            assert_eq!(n.requested.pods, n.pods.len() as i64, "node {}", n.name);
            for p in &n.pods {
                assert_eq!(c.pods.get(&p.key).map(|pl| pl.node.as_str()), Some(n.name.as_str()));
            }
        }
        assert_eq!(c.pods.len(), c.nodes().iter().map(|n| n.pods.len()).sum::<usize>());
        assert_eq!(c.node_count(), c.nodes().iter().filter(|n| n.node.is_some()).count());
        let labelled: usize = c.by_label.values().flat_map(|m| m.values()).map(|s| s.len()).sum();
        assert_eq!(labelled, c.pods.values().map(|p| p.info.labels.len()).sum::<usize>(), "no stale index entries");
        check_counts_against_scratch(c);
    }

    /// The group keys the property test counts: per app, by zone and by host, in the
    /// pods' namespace or every namespace.
    fn group_keys() -> Vec<GroupKey> {
        let mut keys = Vec::new();
        for app in ["a0", "a1", "a2", "a9"] {
            let mut labels = Labels::new();
            labels.insert("app".into(), app.into());
            for topology_key in ["zone", "host"] {
                for all_namespaces in [false, true] {
                    keys.push(GroupKey {
                        namespaces: if all_namespaces { vec![] } else { vec!["default".into()] },
                        all_namespaces,
                        selector: Selector::from_map(&labels),
                        topology_key: topology_key.into(),
                        skip_terminating: all_namespaces,
                    });
                }
            }
        }
        keys.push(GroupKey {
            namespaces: vec!["other".into()],
            all_namespaces: false,
            selector: Selector::everything(),
            topology_key: "zone".into(),
            skip_terminating: false,
        });
        keys
    }

    /// The incremental per-domain counts equal counts recomputed from every node's pods.
    fn check_counts_against_scratch(c: &Cache) {
        let live = || c.nodes().iter().filter(|n| n.node.is_some());
        for key in group_keys() {
            let mut want: HashMap<String, i64> = HashMap::new();
            for n in live() {
                for p in &n.pods {
                    if let Some(v) = n.labels.get(&key.topology_key)
                        && key.matches(p)
                    {
                        *want.entry(v.clone()).or_insert(0) += 1;
                    }
                }
            }
            assert_eq!(*c.group_counts(&key), want, "{key:?}");
        }
        let mut want: HashMap<AffinityTerm, HashMap<String, i64>> = HashMap::new();
        for n in live() {
            for p in &n.pods {
                for t in &p.required_anti_affinity {
                    if let Some(v) = n.labels.get(&t.topology_key) {
                        *want.entry(t.clone()).or_default().entry(v.clone()).or_insert(0) += 1;
                    }
                }
            }
        }
        let have: HashMap<AffinityTerm, HashMap<String, i64>> =
            c.existing_anti_affinity().map(|(t, m)| (t.clone(), (**m).clone())).collect();
        assert_eq!(have, want, "existing anti-affinity terms");
        for key in ["zone", "host"] {
            let mut want: HashMap<String, i64> = HashMap::new();
            for n in live() {
                if let Some(v) = n.labels.get(key) {
                    *want.entry(v.clone()).or_insert(0) += 1;
                }
            }
            assert_eq!(*c.node_domains(key), want, "nodes per {key}");
        }
    }

    proptest::proptest! {
        #[test]
        fn indexes_follow_every_change(ops in proptest::collection::vec(op(), 1..60)) {
            let mut c = Cache::new();
            // Half the groups are counted from the start (followed through every change),
            // the others from their first ask in the middle of the sequence.
            for key in group_keys().iter().step_by(2) {
                c.group_counts(key);
            }
            for op in ops {
                match op {
                    Op::UpsertNode { node, zone, cpu } => {
                        let n: Node = serde_json::from_value(json!({"metadata": {"name": format!("n{node}"),
                            "labels": {"zone": format!("z{zone}"), "host": format!("h{}", (node + zone) % 4)}},
                            "status": {"allocatable": {"cpu": cpu.to_string(), "memory": "8Gi", "pods": "110"}}}))
                            .unwrap();
                        c.upsert_node(Arc::new(n));
                    }
                    Op::RemoveNode { node } => c.remove_node(&format!("n{node}")),
                    Op::AddPod { pod, node, app, anti, preferred } => {
                        c.add_pod(labelled_pod(pod, node, app, anti, preferred))
                    }
                    Op::Assume { pod, node, app, anti } => {
                        c.assume(labelled_pod(pod, 0, app, anti, false), &format!("n{node}"))
                    }
                    Op::RemovePod { pod } => {
                        c.remove_pod(&format!("default/p{pod}"));
                    }
                    Op::Forget { pod } => c.forget(&format!("default/p{pod}")),
                }
                check_against_scan(&c);
            }
        }
    }
}
