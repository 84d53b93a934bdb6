//! Queueing hints, as kube-scheduler's (KEP-4247): an unschedulable pod remembers which
//! filter plugins rejected it (`UnschedulablePlugins`), and a cluster event moves it back
//! to the active queue only when one of those plugins says the event may make it
//! schedulable (an assigned pod deleted that requested a resource the pod lacked, a node
//! added that it fits, a taint removed that it did not tolerate, …). A pod nominated by
//! its preemption whose victims are still going waits for a pod on that node to go, or
//! for room it fits to be freed on another node.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{AffinityTerm, NodeInfo, PodInfo};
use crate::framework::{Diagnosis, Rejection};
use crate::plugins::node_affinity::Required;
use crate::resources::Resources;
use crate::selectors::{Labels, Selector, tolerates, untolerated};

/// A filter plugin with a queueing hint; plugins without one (configured extras) are
/// [`Plugin::Other`], which any event may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Plugin {
    /// NodeName.
    NodeName = 1,
    /// NodeUnschedulable.
    NodeUnschedulable = 1 << 1,
    /// NodeResourcesFit.
    NodeResourcesFit = 1 << 2,
    /// NodeAffinity.
    NodeAffinity = 1 << 3,
    /// TaintToleration.
    TaintToleration = 1 << 4,
    /// NodePorts.
    NodePorts = 1 << 5,
    /// InterPodAffinity.
    InterPodAffinity = 1 << 6,
    /// PodTopologySpread.
    PodTopologySpread = 1 << 7,
    /// VolumeBinding.
    VolumeBinding = 1 << 8,
    /// Any other plugin.
    Other = 1 << 9,
}

const ALL: [Plugin; 10] = [
    Plugin::NodeName,
    Plugin::NodeUnschedulable,
    Plugin::NodeResourcesFit,
    Plugin::NodeAffinity,
    Plugin::TaintToleration,
    Plugin::NodePorts,
    Plugin::InterPodAffinity,
    Plugin::PodTopologySpread,
    Plugin::VolumeBinding,
    Plugin::Other,
];

impl Plugin {
    /// The plugin of a KubeSchedulerConfiguration name.
    pub fn of(name: &str) -> Plugin {
        match name {
            "NodeName" => Plugin::NodeName,
            "NodeUnschedulable" => Plugin::NodeUnschedulable,
            "NodeResourcesFit" => Plugin::NodeResourcesFit,
            "NodeAffinity" => Plugin::NodeAffinity,
            "TaintToleration" => Plugin::TaintToleration,
            "NodePorts" => Plugin::NodePorts,
            "InterPodAffinity" => Plugin::InterPodAffinity,
            "PodTopologySpread" => Plugin::PodTopologySpread,
            "VolumeBinding" => Plugin::VolumeBinding,
            _ => Plugin::Other,
        }
    }
}

/// A set of [`Plugin`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plugins(u16);

impl Plugins {
    /// Adds a plugin.
    pub fn insert(&mut self, p: Plugin) {
        self.0 |= p as u16;
    }

    /// Whether the set holds `p`.
    pub fn contains(self, p: Plugin) -> bool {
        self.0 & p as u16 != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn iter(self) -> impl Iterator<Item = Plugin> {
        ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Plugin> for Plugins {
    fn from_iter<I: IntoIterator<Item = Plugin>>(iter: I) -> Self {
        let mut set = Plugins::default();
        iter.into_iter().for_each(|p| set.insert(p));
        set
    }
}

/// Why a pod was found unschedulable, kept with it in the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    /// The plugins that rejected it (pre-filter, or any node); empty: unknown, any event
    /// may help (no nodes at all, an error).
    pub plugins: Plugins,
    /// The resources NodeResourcesFit found short on some node (`cpu`, `pods`, `nvidia.com/gpu`).
    pub lacking: Vec<String>,
    /// The node the pod is nominated to while lower-priority pods there are going
    /// (preemption victims being deleted): a pod deleted elsewhere moves it only when it
    /// leaves room the pod fits in, other pod events elsewhere do not.
    pub waiting_on: Option<String>,
}

impl Rejected {
    /// What a diagnosis says about the rejecting plugins and lacking resources.
    pub fn of(diagnosis: &Diagnosis) -> Rejected {
        let mut rejected = Rejected::default();
        let mut note = |r: &Rejection| {
            let plugin = Plugin::of(r.plugin);
            rejected.plugins.insert(plugin);
            if plugin == Plugin::NodeResourcesFit {
                for reason in &r.reasons {
                    let resource = match reason.as_ref() {
                        "Too many pods" => "pods",
                        other => other.strip_prefix("Insufficient ").unwrap_or(other),
                    };
                    if !rejected.lacking.iter().any(|l| l == resource) {
                        rejected.lacking.push(resource.to_string());
                    }
                }
            }
        };
        if let Some(r) = &diagnosis.pre_filter {
            note(r);
        }
        let mut last: Option<&Rejection> = None;
        for (_, r) in &diagnosis.nodes {
            // Nodes mostly repeat the previous node's rejection: skip the same one.
            if last.is_some_and(|l| l.plugin == r.plugin && same_reasons(&l.reasons, &r.reasons)) {
                continue;
            }
            note(r);
            last = Some(r);
        }
        rejected
    }
}

fn same_reasons(a: &[Cow<'static, str>], b: &[Cow<'static, str>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// What scheduling looks at of a node, before or after a change.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its taints.
    pub taints: Arc<[Taint]>,
    /// spec.unschedulable.
    pub unschedulable: bool,
    /// Its allocatable.
    pub allocatable: Resources,
}

impl NodeFacts {
    /// The facts of a cached node.
    pub fn of(node: &NodeInfo) -> NodeFacts {
        NodeFacts {
            name: node.name.clone(),
            labels: node.labels.clone(),
            taints: node.taints.clone(),
            unschedulable: node.unschedulable,
            allocatable: node.allocatable.clone(),
        }
    }

    /// A node entry with these facts and no pods (what node-only filters look at).
    fn as_node_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.name.clone(),
            labels: self.labels.clone(),
            taints: self.taints.clone(),
            unschedulable: self.unschedulable,
            allocatable: self.allocatable.clone(),
            ..NodeInfo::default()
        }
    }
}

/// The room on a node: its allocatable less what its pods request, and the pods
/// nominated to it (which hold room there for pods of their priority or lower).
#[derive(Debug, Clone)]
pub struct Room {
    /// Allocatable less requested (a pod slot each).
    pub free: Resources,
    /// The pods nominated to the node.
    pub nominated: Vec<Arc<PodInfo>>,
}

impl Room {
    /// The room on a cached node.
    pub fn of(node: &NodeInfo) -> Room {
        let mut free = node.allocatable.clone();
        free.sub(&node.requested);
        Room { free, nominated: node.nominated.clone() }
    }

    /// Whether `pod`'s requests fit in the room, a pod slot included, with the pods
    /// nominated there of at least its priority counted as running (as the filters count
    /// them).
    pub fn fits(&self, pod: &PodInfo) -> bool {
        let mut free = self.free.clone();
        for p in self.nominated.iter().filter(|p| p.key != pod.key && p.priority >= pod.priority) {
            free.sub(&p.requests.requests);
        }
        let want = &pod.requests.requests;
        want.pods <= free.pods
            && want.milli_cpu <= free.milli_cpu
            && want.memory <= free.memory
            && want.ephemeral_storage <= free.ephemeral_storage
            && want.scalar.iter().all(|(name, n)| *n <= free.get(name))
    }
}

/// A cluster event that may make unschedulable pods schedulable.
#[derive(Debug, Clone)]
pub enum ClusterEvent {
    /// A node was added.
    NodeAdded(NodeFacts),
    /// Something scheduling looks at changed on a node.
    NodeUpdated {
        /// Before.
        old: NodeFacts,
        /// After.
        new: NodeFacts,
    },
    /// A pod bound to `node` was added or updated (`old`: its previous version).
    PodAssigned {
        /// The pod now.
        pod: Arc<PodInfo>,
        /// The pod before, when it was already placed.
        old: Option<Arc<PodInfo>>,
        /// Its node.
        node: String,
    },
    /// A pod on `node` was deleted or finished: it no longer takes room there.
    PodDeleted {
        /// The pod.
        pod: Arc<PodInfo>,
        /// Its node.
        node: String,
        /// The room left on the node once the pod went (`None`: the node is not known).
        room: Option<Room>,
    },
    /// A claim, volume or storage class was added or changed.
    Storage,
    /// A namespace was added or changed (namespace selectors of affinity terms).
    Namespace,
}

/// Whether `event` may make `pod`, rejected as `rejected` says, schedulable: whether any
/// of the rejecting plugins' hints says so (with no known plugin, every event does).
pub fn helps(event: &ClusterEvent, pod: &PodInfo, rejected: &Rejected) -> bool {
    if let Some(nominated) = &rejected.waiting_on {
        match event {
            // Its victims' node, or room it fits freed elsewhere (as Kubernetes'
            // NodeResourcesFit hint moves it, but not for every pod going anywhere: while
            // its victims go it is not to preempt again, and most deletions elsewhere in a
            // busy cluster leave no room it fits).
            ClusterEvent::PodDeleted { node, pod: gone, room } if node != nominated => {
                return frees_lacking(rejected, &gone.requests.requests) && room.as_ref().is_some_and(|r| r.fits(pod));
            }
            ClusterEvent::PodDeleted { .. } => return true,
            ClusterEvent::PodAssigned { node, .. } if node != nominated => return false,
            ClusterEvent::NodeUpdated { new, .. } if new.name == *nominated => return true,
            _ => {}
        }
    }
    if rejected.plugins.is_empty() {
        return true;
    }
    rejected.plugins.iter().any(|plugin| plugin_helps(plugin, event, pod, rejected))
}

fn plugin_helps(plugin: Plugin, event: &ClusterEvent, pod: &PodInfo, rejected: &Rejected) -> bool {
    use ClusterEvent as E;
    match (plugin, event) {
        (Plugin::Other, _) => true,
        (Plugin::VolumeBinding, E::Storage | E::NodeAdded(_) | E::NodeUpdated { .. }) => true,
        (Plugin::VolumeBinding, E::PodDeleted { pod: gone, .. }) => uses_claims(gone),
        (Plugin::InterPodAffinity, E::Namespace | E::NodeAdded(_)) => true,
        (_, E::Storage | E::Namespace) => false,

        (Plugin::NodeName, E::NodeAdded(n)) => pod.spec().node_name.as_deref() == Some(n.name.as_str()),
        (Plugin::NodeUnschedulable, E::NodeAdded(n)) => !n.unschedulable || tolerates_unschedulable(pod),
        (Plugin::NodeUnschedulable, E::NodeUpdated { old, new }) => old.unschedulable && !new.unschedulable,
        (Plugin::TaintToleration, E::NodeAdded(n)) => tolerated(pod, &n.taints),
        (Plugin::TaintToleration, E::NodeUpdated { old, new }) => {
            old.taints != new.taints && tolerated(pod, &new.taints)
        }
        (Plugin::NodeAffinity, E::NodeAdded(n)) => Required::of(pod).matches(&n.as_node_info()),
        (Plugin::NodeAffinity, E::NodeUpdated { old, new }) => {
            old.labels != new.labels && Required::of(pod).matches(&new.as_node_info())
        }
        (Plugin::NodeResourcesFit, E::NodeAdded(n)) => fits_allocatable(pod, &n.allocatable),
        (Plugin::NodeResourcesFit, E::NodeUpdated { old, new }) => {
            grew(rejected, pod, &old.allocatable, &new.allocatable) && fits_allocatable(pod, &new.allocatable)
        }
        (Plugin::NodeResourcesFit, E::PodDeleted { pod: gone, .. }) => frees_lacking(rejected, &gone.requests.requests),
        (Plugin::NodeResourcesFit, E::PodAssigned { pod: now, old: Some(old), .. }) => {
            scaled_down(rejected, &old.requests.requests, &now.requests.requests)
        }
        (Plugin::NodePorts, E::NodeAdded(_)) => true,
        (Plugin::NodePorts, E::PodDeleted { pod: gone, .. }) => {
            gone.host_ports.iter().any(|freed| pod.host_ports.iter().any(|want| want.conflicts(freed)))
        }
        (Plugin::InterPodAffinity, E::NodeUpdated { old, new }) => old.labels != new.labels,
        (Plugin::InterPodAffinity, E::PodAssigned { pod: now, old, .. }) => {
            // A pod matching a required affinity term came; or a placed pod's labels
            // changed, which may take it out of an anti-affinity term (either way).
            pod.required_affinity.iter().any(|t| may_match(t, now))
                || old.as_ref().is_some_and(|o| o.labels != now.labels)
        }
        (Plugin::InterPodAffinity, E::PodDeleted { pod: gone, .. }) => {
            pod.required_anti_affinity.iter().any(|t| may_match(t, gone))
                || gone.required_anti_affinity.iter().any(|t| may_match(t, pod))
        }
        (Plugin::PodTopologySpread, E::NodeAdded(_)) => true,
        (Plugin::PodTopologySpread, E::NodeUpdated { old, new }) => {
            old.labels != new.labels || old.taints != new.taints
        }
        (Plugin::PodTopologySpread, E::PodAssigned { pod: other, old, .. }) => {
            spread_counts(pod, other) || old.as_ref().is_some_and(|o| spread_counts(pod, o))
        }
        (Plugin::PodTopologySpread, E::PodDeleted { pod: other, .. }) => spread_counts(pod, other),
        _ => false,
    }
}

fn uses_claims(pod: &PodInfo) -> bool {
    pod.spec().volumes.iter().flatten().any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
}

fn tolerates_unschedulable(pod: &PodInfo) -> bool {
    let taint =
        Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Taint::default() };
    pod.spec().tolerations.iter().flatten().any(|t| tolerates(t, &taint))
}

fn tolerated(pod: &PodInfo, taints: &[Taint]) -> bool {
    untolerated(taints, pod.spec().tolerations.as_deref().unwrap_or(&[]), &["NoSchedule", "NoExecute"]).is_none()
}

/// Whether the pod's requests fit the node's whole allocatable (one pod slot included).
fn fits_allocatable(pod: &PodInfo, allocatable: &Resources) -> bool {
    let want = &pod.requests.requests;
    allocatable.pods >= 1
        && want.milli_cpu <= allocatable.milli_cpu
        && want.memory <= allocatable.memory
        && want.ephemeral_storage <= allocatable.ephemeral_storage
        && want.scalar.iter().all(|(name, n)| *n <= allocatable.get(name))
}

/// The resources to look at: those the pod lacked, or (unknown) all it requests.
fn lacking<'a>(rejected: &'a Rejected, pod_requests: &'a Resources) -> Box<dyn Iterator<Item = Cow<'a, str>> + 'a> {
    if rejected.lacking.is_empty() {
        let named = ["cpu", "memory", "ephemeral-storage", "pods"].into_iter().map(Cow::Borrowed);
        Box::new(named.chain(pod_requests.scalar.keys().map(|k| Cow::Borrowed(k.as_str()))))
    } else {
        Box::new(rejected.lacking.iter().map(|l| Cow::Borrowed(l.as_str())))
    }
}

fn grew(rejected: &Rejected, pod: &PodInfo, old: &Resources, new: &Resources) -> bool {
    lacking(rejected, &pod.requests.requests).any(|r| new.get(&r) > old.get(&r))
}

/// Whether a pod that requested `freed` going away frees some resource the pod lacked (a
/// pod slot always).
fn frees_lacking(rejected: &Rejected, freed: &Resources) -> bool {
    rejected.lacking.is_empty() || rejected.lacking.iter().any(|r| r == "pods" || freed.get(r) > 0)
}

fn scaled_down(rejected: &Rejected, old: &Resources, new: &Resources) -> bool {
    let names = if rejected.lacking.is_empty() {
        vec!["cpu", "memory", "ephemeral-storage"]
            .into_iter()
            .map(String::from)
            .chain(old.scalar.keys().cloned())
            .collect()
    } else {
        rejected.lacking.clone()
    };
    names.iter().any(|r| new.get(r) < old.get(r))
}

/// Whether `term` may select `other`: a namespace selector is taken to match (its labels
/// are not at hand; a superset is enough for a hint).
fn may_match(term: &AffinityTerm, other: &PodInfo) -> bool {
    (term.all_namespaces || term.namespace_selector.is_some() || term.namespaces.contains(&other.namespace))
        && term.selector.matches(&other.labels)
}

/// Whether `other` is counted by one of the pod's DoNotSchedule spread constraints (a pod
/// without constraints of its own may have default ones: any pod of its namespace).
fn spread_counts(pod: &PodInfo, other: &PodInfo) -> bool {
    if other.namespace != pod.namespace {
        return false;
    }
    let constraints = pod.spec().topology_spread_constraints.as_deref().unwrap_or(&[]);
    if constraints.is_empty() {
        return true;
    }
    constraints.iter().filter(|c| c.when_unsatisfiable == "DoNotSchedule").any(|c| {
        c.label_selector.is_some() && Selector::from_label_selector(c.label_selector.as_ref()).matches(&other.labels)
    })
}

#[cfg(test)]
mod tests;
