//! The Node authorizer (`--authorization-mode Node`), as Kubernetes' `NodeAuthorizer`: for a
//! node identity (user `system:node:<name>` in group `system:nodes`) it allows reads of the
//! secrets, configmaps, PVCs, PVs and resource claims that pods bound to that node use,
//! tokens of those pods' ServiceAccounts, the node's own Node and Lease, and the pods bound
//! to it; everything else a node may do is the static `system:node` rules (which no binding
//! grants since Kubernetes 1.8: this authorizer decides for nodes). It has no opinion on
//! other users. The writes it allows are narrowed further by the NodeRestriction admission
//! (`crate::node_restriction`).
//!
//! The relationships come from [`Graph`]: pods bound to a node and the objects they
//! reference, counted per (node, kind, namespace, name) and kept incrementally from the
//! watch cache's pod events by [`NodeGraph::follow`]; a request costs one hash lookup under
//! a read lock. Objects outside the graph (a PV's claim, a VolumeAttachment's node) are
//! read from the watch cache by key.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use berth_store::Revision;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;
use tokio::sync::watch;

use super::attributes::Attributes;
use super::rbac::rule_allows;
use crate::authn::UserInfo;
use crate::cache::{Cache, EventType};

/// The group every node identity is in.
pub const NODES_GROUP: &str = "system:nodes";

/// The user-name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The annotation that marks a mirror pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

const PODS_PREFIX: &str = "/registry/core/pods/";

/// The node a user is, as Kubernetes' `NodeIdentity`: `Some(name)` for a user named
/// `system:node:<name>` in `system:nodes` (the name may be empty: an unidentifiable node),
/// `None` for everyone else (including the shared node-token user).
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.username.strip_prefix(NODE_USER_PREFIX)?;
    user.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Not allowed by this authorizer (another may allow it), with the reason if any.
    NoOpinion(String),
}

fn no(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

/// What a pod references, in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// A ServiceAccount (for its tokens).
    ServiceAccount,
    /// A resource.k8s.io ResourceClaim.
    ResourceClaim,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Secret => 's',
            Kind::ConfigMap => 'c',
            Kind::PersistentVolumeClaim => 'p',
            Kind::ServiceAccount => 'a',
            Kind::ResourceClaim => 'r',
        }
    }
}

/// One bound pod's edges: its node and what it references (in its namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEdges {
    node: String,
    refs: Vec<(Kind, String)>,
}

/// Pods bound to nodes and what they reference, with a count per (node, kind, namespace,
/// name) so that "does a pod on node N use secret S?" is one lookup.
#[derive(Debug, Default)]
pub struct Graph {
    /// Bound pods by `namespace/name`.
    pods: HashMap<String, PodEdges>,
    /// Number of pods on a node that reference an object, by [`edge_key`].
    edges: HashMap<String, u32>,
}

fn edge_key(node: &str, kind: Kind, namespace: &str, name: &str) -> String {
    let mut key = String::with_capacity(node.len() + namespace.len() + name.len() + 4);
    key.push_str(node);
    key.push('\0');
    key.push(kind.tag());
    key.push_str(namespace);
    key.push('\0');
    key.push_str(name);
    key
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> + 'a {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// True for a mirror pod (a node's static pod as the API shows it).
pub fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_POD_ANNOTATION)).is_some()
}

/// The edges of a pod (as JSON), None when it is not bound to a node. Mirror pods get only
/// their node: a node must not grant itself access by creating a pod (Kubernetes' rule).
fn pod_edges(pod: &Value) -> Option<PodEdges> {
    let node = str_at(pod, "/spec/nodeName")?.to_string();
    let mut refs: Vec<(Kind, String)> = Vec::new();
    if !is_mirror_pod(pod) {
        visit_references(pod, &mut |kind, name| refs.push((kind, name.to_string())));
        refs.sort();
        refs.dedup();
    }
    Some(PodEdges { node, refs })
}

/// Calls `visit` with every object a pod references by name, as Kubernetes'
/// `VisitPodSecretNames` and `VisitPodConfigmapNames` (every container list, volume
/// source and image pull secret), its claims (PVCs, generic ephemeral volumes' claims,
/// resource claims) and its ServiceAccount.
pub fn visit_references(pod: &Value, visit: &mut dyn FnMut(Kind, &str)) {
    let mut named = |kind: Kind, v: &Value, pointer: &str| {
        if let Some(name) = str_at(v, pointer) {
            visit(kind, name);
        }
    };
    named(Kind::ServiceAccount, pod, "/spec/serviceAccountName");
    for s in items(pod, "/spec/imagePullSecrets") {
        named(Kind::Secret, s, "/name");
    }
    for list in ["/spec/initContainers", "/spec/containers", "/spec/ephemeralContainers"] {
        for c in items(pod, list) {
            for e in items(c, "/env") {
                named(Kind::Secret, e, "/valueFrom/secretKeyRef/name");
                named(Kind::ConfigMap, e, "/valueFrom/configMapKeyRef/name");
            }
            for e in items(c, "/envFrom") {
                named(Kind::Secret, e, "/secretRef/name");
                named(Kind::ConfigMap, e, "/configMapRef/name");
            }
        }
    }
    for v in items(pod, "/spec/volumes") {
        named(Kind::Secret, v, "/secret/secretName");
        named(Kind::ConfigMap, v, "/configMap/name");
        named(Kind::Secret, v, "/azureFile/secretName");
        for pointer in [
            "/cephfs/secretRef/name",
            "/cinder/secretRef/name",
            "/flexVolume/secretRef/name",
            "/rbd/secretRef/name",
            "/scaleIO/secretRef/name",
            "/iscsi/secretRef/name",
            "/storageos/secretRef/name",
            "/csi/nodePublishSecretRef/name",
        ] {
            named(Kind::Secret, v, pointer);
        }
        for p in items(v, "/projected/sources") {
            named(Kind::Secret, p, "/secret/name");
            named(Kind::ConfigMap, p, "/configMap/name");
        }
        named(Kind::PersistentVolumeClaim, v, "/persistentVolumeClaim/claimName");
    }
    // A generic ephemeral volume's claim is named <pod>-<volume>.
    let pod_name = str_at(pod, "/metadata/name").unwrap_or_default();
    for v in items(pod, "/spec/volumes") {
        if v.get("ephemeral").is_some_and(Value::is_object)
            && let Some(volume) = str_at(v, "/name")
        {
            visit(Kind::PersistentVolumeClaim, &format!("{pod_name}-{volume}"));
        }
    }
    for claim in items(pod, "/spec/resourceClaims") {
        if let Some(name) = str_at(claim, "/resourceClaimName") {
            visit(Kind::ResourceClaim, name);
        } else if let Some(entry) = str_at(claim, "/name") {
            // A claim made from a template: its name is in the pod's status once created.
            let generated = items(pod, "/status/resourceClaimStatuses")
                .find(|s| str_at(s, "/name") == Some(entry))
                .and_then(|s| str_at(s, "/resourceClaimName"));
            if let Some(name) = generated {
                visit(Kind::ResourceClaim, name);
            }
        }
    }
}

/// `namespace/name` of a pod store key.
fn pod_id(key: &str) -> Option<&str> {
    key.strip_prefix(PODS_PREFIX).filter(|rest| rest.contains('/'))
}

impl Graph {
    /// Records the pod `id` (`namespace/name`) as `pod`, or forgets it (`None`, or a pod not
    /// bound to a node).
    pub fn set_pod(&mut self, id: &str, pod: Option<&Value>) {
        let edges = pod.and_then(pod_edges);
        if self.pods.get(id) == edges.as_ref() {
            return;
        }
        let namespace = id.split('/').next().unwrap_or_default();
        if let Some(old) = self.pods.remove(id) {
            for (kind, name) in &old.refs {
                let key = edge_key(&old.node, *kind, namespace, name);
                if let Some(count) = self.edges.get_mut(&key) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.edges.remove(&key);
                    }
                }
            }
        }
        if let Some(new) = edges {
            for (kind, name) in &new.refs {
                *self.edges.entry(edge_key(&new.node, *kind, namespace, name)).or_default() += 1;
            }
            self.pods.insert(id.to_string(), new);
        }
    }

    /// True when a pod bound to `node` references `kind` `namespace/name`.
    pub fn references(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.edges.contains_key(&edge_key(node, kind, namespace, name))
    }

    /// The node the pod `namespace/name` is bound to.
    pub fn pod_node(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods.get(&format!("{namespace}/{name}")).map(|p| p.node.as_str())
    }

    /// Number of bound pods known.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Number of distinct (node, object) edges.
    pub fn edges(&self) -> usize {
        self.edges.len()
    }
}

/// The graph shared by requests and the task that follows the watch cache.
#[derive(Debug)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
    /// The cache revision the graph reflects (0 until first built).
    revision: watch::Sender<Revision>,
}

impl Default for NodeGraph {
    fn default() -> Self {
        NodeGraph { graph: RwLock::new(Graph::default()), revision: watch::channel(0).0 }
    }
}

impl NodeGraph {
    /// Reads the graph.
    pub fn read<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        f(&self.graph.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The cache revision the graph reflects.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits (up to `timeout`) until the graph reflects `revision`; false on time-out.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await, Ok(Ok(_)))
    }

    fn rebuild(&self, cache: &Cache) -> Revision {
        let (pods, revision) = cache.list(PODS_PREFIX);
        let mut graph = Graph::default();
        for o in &pods {
            if let Some(id) = pod_id(&o.key) {
                graph.set_pod(id, Some(&o.value));
            }
        }
        *self.graph.write().unwrap_or_else(|e| e.into_inner()) = graph;
        self.revision.send_replace(revision);
        revision
    }

    /// Keeps the graph current from the watch cache until the server shuts down: built from
    /// a list of the pods, then updated by each batch of events (all of them, so that the
    /// graph's revision follows the cache's).
    pub async fn follow(self: Arc<Self>, cache: Arc<Cache>, shutdown: watch::Receiver<bool>) {
        let rebuild = |cache: &Arc<Cache>| self.rebuild(cache);
        let apply = |_: &Arc<Cache>, events: &[Arc<crate::cache::CachedEvent>], revision| {
            let mut pods = events.iter().filter_map(|e| Some((pod_id(e.key())?, e))).peekable();
            if pods.peek().is_some() {
                let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
                for (id, event) in pods {
                    match event.kind {
                        EventType::Put => graph.set_pod(id, event.object().as_ref().map(|o| &o.value)),
                        EventType::Delete => graph.set_pod(id, None),
                    }
                }
            }
            self.revision.send_replace(revision);
        };
        crate::cache::follow(cache, "/registry/", "node authorizer", shutdown, rebuild, apply).await;
    }
}

/// The Node authorizer: the graph, the watch cache for direct lookups, and the static
/// node rules.
pub struct NodeAuthorizer {
    /// The relationships of pods to nodes.
    pub graph: Arc<NodeGraph>,
    cache: OnceLock<Arc<Cache>>,
    rules: Vec<PolicyRule>,
}

impl std::fmt::Debug for NodeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuthorizer").field("graph", &self.graph).field("rules", &self.rules.len()).finish()
    }
}

impl Default for NodeAuthorizer {
    fn default() -> Self {
        NodeAuthorizer::new()
    }
}

impl NodeAuthorizer {
    /// An authorizer with an empty graph and the `system:node` ClusterRole's rules.
    pub fn new() -> NodeAuthorizer {
        let rules = super::bootstrap::node_rules().into_iter().filter_map(|r| serde_json::from_value(r).ok()).collect();
        NodeAuthorizer { graph: Arc::new(NodeGraph::default()), cache: OnceLock::new(), rules }
    }

    /// Starts following `cache` (the graph, and direct lookups of PVs and VolumeAttachments).
    pub fn attach(&self, cache: Arc<Cache>, shutdown: watch::Receiver<bool>) {
        if self.cache.set(cache.clone()).is_ok() {
            tokio::spawn(self.graph.clone().follow(cache, shutdown));
        }
    }

    /// For a node's request: the cache revision the graph has not reached yet, if any (a
    /// refusal may then be the graph lagging behind what the node has seen).
    pub fn lags_for(&self, attrs: &Attributes) -> Option<Revision> {
        node_identity(&attrs.user)?;
        let current = self.cache.get().map_or(1, |c| c.revision());
        (self.graph.revision() < current).then_some(current)
    }

    fn cached(&self, key: &str) -> Option<Arc<crate::cache::CachedObject>> {
        self.cache.get()?.get(key)
    }

    /// Kubernetes' `NodeAuthorizer.Authorize`.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        let Some(node) = node_identity(&attrs.user) else { return no("") };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", attrs.user.username));
        }
        if attrs.resource_request {
            match (attrs.api_group.as_str(), attrs.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, Kind::Secret, attrs),
                ("", "configmaps") => return self.read_namespaced(node, Kind::ConfigMap, attrs),
                ("", "persistentvolumeclaims") if attrs.subresource == "status" => {
                    return self.status_update(node, attrs);
                }
                ("", "persistentvolumeclaims") => {
                    return get(node, attrs, |name| self.related(node, Kind::PersistentVolumeClaim, attrs, name));
                }
                ("", "persistentvolumes") => return self.persistent_volume(node, attrs),
                ("resource.k8s.io", "resourceclaims") => {
                    return get(node, attrs, |name| self.related(node, Kind::ResourceClaim, attrs, name));
                }
                ("storage.k8s.io", "volumeattachments") => {
                    return get(node, attrs, |name| {
                        let key = format!("/registry/storage.k8s.io/volumeattachments/{name}");
                        self.cached(&key).is_some_and(|va| str_at(&va.value, "/spec/nodeName") == Some(node))
                    });
                }
                ("", "serviceaccounts") => return self.create_token(node, attrs),
                ("coordination.k8s.io", "leases") => return lease(node, attrs),
                ("storage.k8s.io", "csinodes") => return csi_node(node, attrs),
                ("", "nodes") => return node_object(node, attrs),
                ("", "pods") => return self.pod(node, attrs),
                _ => {}
            }
        }
        if self.rules.iter().any(|r| rule_allows(attrs, r)) { Decision::Allow } else { no("") }
    }

    fn related(&self, node: &str, kind: Kind, attrs: &Attributes, name: &str) -> bool {
        self.graph.read(|g| g.references(node, kind, &attrs.namespace, name))
    }

    /// PersistentVolumes: `get` of one related through its claim (Kubernetes' rule), and for
    /// the node-side deletion of local-path volumes (berth's addition) `list`/`watch` of all
    /// (cluster-scoped objects holding no secret data; RBAC cannot narrow a list to the
    /// volumes whose node affinity names a node) plus `get`/`patch`/`update` of the volumes
    /// whose required node affinity names this node's hostname, whose writes NodeRestriction
    /// limits to removing the cleanup finalizer.
    fn persistent_volume(&self, node: &str, attrs: &Attributes) -> Decision {
        if !attrs.subresource.is_empty() {
            return no("cannot access subresource");
        }
        match attrs.verb.as_str() {
            "list" | "watch" => Decision::Allow,
            "get" => by_name(node, attrs, |name| self.pv_related(node, name) || self.pv_on_node(node, name)),
            "patch" | "update" => by_name(node, attrs, |name| self.pv_on_node(node, name)),
            _ => no("can only get, list, watch, and update the finalizers of persistent volumes"),
        }
    }

    /// Whether the volume's required node affinity names this node (its
    /// `kubernetes.io/hostname` label, else its name) with `kubernetes.io/hostname In`.
    fn pv_on_node(&self, node: &str, name: &str) -> bool {
        let Some(pv) = self.cached(&format!("/registry/core/persistentvolumes/{name}")) else { return false };
        let node_object = self.cached(&format!("/registry/core/nodes/{node}"));
        let hostname = node_object
            .as_ref()
            .and_then(|n| str_at(&n.value, "/metadata/labels/kubernetes.io~1hostname"))
            .unwrap_or(node);
        pv_affinity_names(&pv.value, hostname)
    }

    /// A PV is related through the claim it is bound to.
    fn pv_related(&self, node: &str, name: &str) -> bool {
        let Some(pv) = self.cached(&format!("/registry/core/persistentvolumes/{name}")) else { return false };
        let namespace = str_at(&pv.value, "/spec/claimRef/namespace");
        let claim = str_at(&pv.value, "/spec/claimRef/name");
        let (Some(namespace), Some(claim)) = (namespace, claim) else { return false };
        self.graph.read(|g| g.references(node, Kind::PersistentVolumeClaim, namespace, claim))
    }

    fn read_namespaced(&self, node: &str, kind: Kind, attrs: &Attributes) -> Decision {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        by_name(node, attrs, |name| self.related(node, kind, attrs, name))
    }

    fn status_update(&self, node: &str, attrs: &Attributes) -> Decision {
        if !matches!(attrs.verb.as_str(), "update" | "patch") {
            return no("can only get/update/patch this type");
        }
        by_name(node, attrs, |name| self.related(node, Kind::PersistentVolumeClaim, attrs, name))
    }

    fn create_token(&self, node: &str, attrs: &Attributes) -> Decision {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if attrs.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        by_name(node, attrs, |name| self.related(node, Kind::ServiceAccount, attrs, name))
    }

    fn pod_related(&self, node: &str, attrs: &Attributes, name: &str) -> bool {
        self.graph.read(|g| g.pod_node(&attrs.namespace, name) == Some(node))
    }

    fn pod(&self, node: &str, attrs: &Attributes) -> Decision {
        match (attrs.subresource.as_str(), attrs.verb.as_str()) {
            ("", "get") => get(node, attrs, |name| self.pod_related(node, attrs, name)),
            ("", "list" | "watch") => {
                if attrs.field_selector.iter().any(|(field, value)| field == "spec.nodeName" && value == node) {
                    return Decision::Allow;
                }
                if !attrs.name.is_empty() {
                    return by_name(node, attrs, |name| self.pod_related(node, attrs, name));
                }
                no("can only list/watch pods with spec.nodeName field selector")
            }
            // Mirror pods, status and evictions: NodeRestriction keeps them to the node's pods.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => Decision::Allow,
            _ => no(""),
        }
    }
}

fn no_relationship(node: &str) -> Decision {
    no(format!("no relationship found between node '{node}' and this object"))
}

/// Kubernetes' `authorize`: a named object with a path to the node.
/// Whether a PersistentVolume's required node affinity has a term that selects exactly
/// `kubernetes.io/hostname In [.., hostname, ..]` (as local-path volumes are made).
pub(crate) fn pv_affinity_names(pv: &Value, hostname: &str) -> bool {
    let terms = pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms").and_then(Value::as_array);
    terms.into_iter().flatten().any(|term| {
        term.get("matchExpressions").and_then(Value::as_array).into_iter().flatten().any(|e| {
            e.get("key").and_then(Value::as_str) == Some("kubernetes.io/hostname")
                && e.get("operator").and_then(Value::as_str) == Some("In")
                && e.get("values").and_then(Value::as_array).is_some_and(|v| v.iter().any(|v| v == hostname))
        })
    })
}

fn by_name(node: &str, attrs: &Attributes, related: impl FnOnce(&str) -> bool) -> Decision {
    if attrs.name.is_empty() {
        return no("No Object name found");
    }
    if related(&attrs.name) { Decision::Allow } else { no_relationship(node) }
}

/// Kubernetes' `authorizeGet`: only `get` of a named object related to the node.
fn get(node: &str, attrs: &Attributes, related: impl FnOnce(&str) -> bool) -> Decision {
    if attrs.verb != "get" {
        return no("can only get individual resources of this type");
    }
    if !attrs.subresource.is_empty() {
        return no("cannot get subresource");
    }
    by_name(node, attrs, related)
}

fn lease(node: &str, attrs: &Attributes) -> Decision {
    if !matches!(attrs.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return no(format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"));
    }
    // The name of a create is not known here: NodeRestriction checks it.
    if attrs.verb != "create" && attrs.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

fn csi_node(node: &str, attrs: &Attributes) -> Decision {
    if !matches!(attrs.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a CSINode");
    }
    if !attrs.subresource.is_empty() {
        return no("cannot authorize CSINode subresources");
    }
    if attrs.verb != "create" && attrs.name != node {
        return no("can only access CSINode with the same name as the requesting node");
    }
    Decision::Allow
}

fn node_object(node: &str, attrs: &Attributes) -> Decision {
    match (attrs.subresource.as_str(), attrs.verb.as_str()) {
        // NodeRestriction keeps writes to the node's own object.
        ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
        // By name, not the graph, so that a node can read its Node before creating it.
        ("", "get" | "list" | "watch") if attrs.name == node => Decision::Allow,
        ("", "get" | "list" | "watch") if attrs.name.is_empty() => {
            no(format!("node '{node}' cannot read all nodes, only its own Node object"))
        }
        ("", "get" | "list" | "watch") => {
            no(format!("node '{node}' cannot read '{}', only its own Node object", attrs.name))
        }
        _ => no(""),
    }
}

#[cfg(test)]
mod tests;
