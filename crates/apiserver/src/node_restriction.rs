//! NodeRestriction admission, as Kubernetes' plugin: a node identity (`system:node:<name>`
//! in `system:nodes`) may write only its own Node (without changing its taints or setting
//! `node-restriction.kubernetes.io/` and other non-kubelet `kubernetes.io`/`k8s.io` labels),
//! its own Lease in `kube-node-lease` and CSINode, the status of pods bound to it (not their
//! labels), mirror pods bound to itself that reference nothing else, deletions and
//! evictions of pods bound to it, the status (capacity, conditions) of PVCs, and tokens
//! bound to its own pods, and the removal of the `berth.io/local-path-cleanup` finalizer
//! of a PersistentVolume (the Node authorizer lets only the volume's own node ask). The Node authorizer (`crate::authz::node`) lets these writes
//! through by verb; this module checks the objects. Refusals are Kubernetes' 403s
//! (`pods "x" is forbidden: node "a" can only update pod status for pods with
//! spec.nodeName set to itself`). Other users are not affected.

use serde_json::{Map, Value, json};

use crate::authz::node::{Kind, MIRROR_POD_ANNOTATION, NODE_LEASE_NAMESPACE, node_identity, visit_references};
use crate::error::{ApiError, ApiResult};
use crate::handler::Ctx;
use crate::object;

/// Labels a kubelet may set on its Node although they are in a `kubernetes.io` namespace.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Label namespaces (and their subdomains) a kubelet may set.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn forbidden(ctx: &Ctx, name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::forbidden(&ctx.served.info, name, why)
}

/// The requesting node: `None` for users that are not nodes, a refusal for a node identity
/// without a name.
fn requesting_node<'a>(ctx: &'a Ctx, name: &str) -> ApiResult<Option<&'a str>> {
    let Some(user) = &ctx.user else { return Ok(None) };
    match node_identity(user) {
        None => Ok(None),
        Some("") => Err(forbidden(ctx, name, format!("could not determine node from user {:?}", user.username))),
        Some(node) => Ok(Some(node)),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// A list field, with `null` and a missing field equal to `[]` (Kubernetes' semantic equality).
fn list_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn map_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(pointer).and_then(Value::as_object).filter(|m| !m.is_empty())
}

/// Checks a create (`old` None) or update (of the object or its subresource) by a node.
pub fn admit(ctx: &Ctx, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let name = if ctx.name().is_empty() { object::name(obj) } else { ctx.name() };
    let Some(node) = requesting_node(ctx, name)? else { return Ok(()) };
    let info = &ctx.served.info;
    let sub = ctx.path.subresource.as_deref().unwrap_or("");
    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => match (sub, old) {
            ("", None) => admit_mirror_pod(ctx, node, name, obj),
            ("", Some(_)) => Err(forbidden(
                ctx,
                name,
                format!("unexpected operation {operation:?}, node {node:?} can only create and delete mirror pods"),
            )),
            ("status", Some(old)) => {
                if str_at(old, "/spec/nodeName") != node {
                    return Err(forbidden(
                        ctx,
                        name,
                        format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself"),
                    ));
                }
                if map_at(old, "/metadata/labels") != map_at(obj, "/metadata/labels") {
                    return Err(forbidden(ctx, name, format!("node {node:?} cannot update labels through pod status")));
                }
                let claims = |p: &Value| list_at(p, "/status/resourceClaimStatuses").to_vec();
                if claims(old) != claims(obj) {
                    return Err(forbidden(ctx, name, format!("node {node:?} cannot update resource claim statues")));
                }
                Ok(())
            }
            ("status", None) => Err(forbidden(ctx, name, format!("unexpected operation {operation:?}"))),
            (other, _) => Err(forbidden(
                ctx,
                name,
                format!("unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"),
            )),
        },
        ("", "nodes") => admit_node(ctx, node, name, obj, old),
        ("", "persistentvolumeclaims") => match (sub, old) {
            ("status", Some(old)) => admit_pvc_status(ctx, node, name, obj, old),
            ("status", None) => Err(forbidden(ctx, name, format!("unexpected operation {operation:?}"))),
            _ => Err(forbidden(ctx, name, "may only update PVC status")),
        },
        ("", "persistentvolumes") => match (sub, old) {
            ("", Some(old)) if only_drops_cleanup_finalizer(obj, old) => Ok(()),
            _ => Err(forbidden(
                ctx,
                name,
                format!("node {node:?} may only remove the {LOCAL_PATH_CLEANUP} finalizer of a persistent volume"),
            )),
        },
        ("coordination.k8s.io", "leases") => own_lease(ctx, node, name),
        ("storage.k8s.io", "csinodes") if name != node => {
            Err(forbidden(ctx, name, "can only access CSINode with the same name as the requesting node"))
        }
        _ => Ok(()),
    }
}

/// The finalizer the node holding a local-path volume's directory removes once it deleted it.
pub const LOCAL_PATH_CLEANUP: &str = "berth.io/local-path-cleanup";

/// Whether `new` is `old` without the local-path cleanup finalizer (bookkeeping aside).
fn only_drops_cleanup_finalizer(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in ["finalizers", "resourceVersion", "managedFields"] {
                meta.remove(key);
            }
        }
        v
    };
    let before = list_at(old, "/metadata/finalizers");
    let wanted: Vec<&Value> = before.iter().filter(|f| *f != LOCAL_PATH_CLEANUP).collect();
    let after: Vec<&Value> = list_at(new, "/metadata/finalizers").iter().collect();
    before.len() != wanted.len() && after == wanted && strip(new) == strip(old)
}

/// Checks a deletion (or, for `pods/eviction`, an eviction) of `old` by a node.
pub fn admit_delete(ctx: &Ctx, old: &Value) -> ApiResult<()> {
    let name = object::name(old);
    let Some(node) = requesting_node(ctx, name)? else { return Ok(()) };
    let info = &ctx.served.info;
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") if str_at(old, "/spec/nodeName") != node => {
            if ctx.path.subresource.as_deref() == Some("eviction") {
                Err(forbidden(ctx, name, format!("node {node} can only evict pods with spec.nodeName set to itself")))
            } else {
                Err(forbidden(
                    ctx,
                    name,
                    format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
                ))
            }
        }
        ("", "nodes") if name != node => {
            Err(forbidden(ctx, name, format!("node {node:?} is not allowed to modify node {name:?}")))
        }
        ("", "persistentvolumeclaims") => Err(forbidden(ctx, name, "may only update PVC status")),
        ("coordination.k8s.io", "leases") => own_lease(ctx, node, name),
        ("storage.k8s.io", "csinodes") if name != node => {
            Err(forbidden(ctx, name, "can only access CSINode with the same name as the requesting node"))
        }
        _ => Ok(()),
    }
}

/// Checks a TokenRequest (`serviceaccounts/NAME/token`) by a node: it must be bound to a
/// pod (by name and uid) that is bound to the node.
pub fn admit_token_request(ctx: &Ctx, request: &Value) -> ApiResult<()> {
    let name = ctx.name();
    let Some(node) = requesting_node(ctx, name)? else { return Ok(()) };
    let bound = request.pointer("/spec/boundObjectRef").filter(|r| r.is_object()).unwrap_or(&Value::Null);
    let pod_name = str_at(bound, "/name");
    if str_at(bound, "/apiVersion") != "v1" || str_at(bound, "/kind") != "Pod" || pod_name.is_empty() {
        return Err(forbidden(ctx, name, "node requested token not bound to a pod"));
    }
    let uid = str_at(bound, "/uid");
    if uid.is_empty() {
        return Err(forbidden(ctx, name, "node requested token with a pod binding without a uid"));
    }
    let namespace = ctx.namespace().unwrap_or_default();
    let Some(pod) = ctx.app.cache.get(&format!("/registry/core/pods/{namespace}/{pod_name}")) else {
        return Err(ApiError {
            details: Some(json!({ "name": pod_name, "kind": "pods" })),
            ..ApiError::new(404, "NotFound", format!("pods {pod_name:?} not found"))
        });
    };
    if object::meta_str(&pod.value, "uid") != Some(uid) {
        return Err(forbidden(
            ctx,
            name,
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    if str_at(&pod.value, "/spec/nodeName") != node {
        return Err(forbidden(ctx, name, "node requested token bound to a pod scheduled on a different node"));
    }
    Ok(())
}

fn own_lease(ctx: &Ctx, node: &str, name: &str) -> ApiResult<()> {
    if ctx.namespace() != Some(NODE_LEASE_NAMESPACE) {
        return Err(forbidden(
            ctx,
            name,
            format!("can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"),
        ));
    }
    if name != node {
        return Err(forbidden(ctx, name, "can only access node lease with the same name as the requesting node"));
    }
    Ok(())
}

/// A node may create only mirror pods of its own that reference no other object.
fn admit_mirror_pod(ctx: &Ctx, node: &str, name: &str, pod: &Value) -> ApiResult<()> {
    let deny = |why: String| Err(forbidden(ctx, name, why));
    if pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_POD_ANNOTATION)).is_none() {
        return deny(format!(
            "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if str_at(pod, "/spec/nodeName") != node {
        return deny(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
    }
    let owners = list_at(pod, "/metadata/ownerReferences");
    match owners {
        [] => return deny(format!("node {node:?} can only create pods with an owner reference set to itself")),
        [owner] => {
            if str_at(owner, "/apiVersion") != "v1"
                || str_at(owner, "/kind") != "Node"
                || str_at(owner, "/name") != node
            {
                return deny(format!("node {node:?} can only create pods with an owner reference set to itself"));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return deny(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return deny(format!("node {node:?} must not set blockOwnerDeletion on an owner reference"));
            }
            let Some(node_object) = ctx.app.cache.get(&format!("/registry/core/nodes/{node}")) else {
                return Err(ApiError {
                    details: Some(json!({ "name": node, "kind": "nodes" })),
                    ..ApiError::new(404, "NotFound", format!("nodes {node:?} not found"))
                });
            };
            let node_uid = object::meta_str(&node_object.value, "uid").unwrap_or_default();
            let owner_uid = str_at(owner, "/uid");
            if owner_uid != node_uid {
                // Kubernetes' wording, which names the owner's uid "expected".
                return deny(format!("node {node} UID mismatch: expected {owner_uid} got {node_uid}"));
            }
        }
        _ => return deny(format!("node {node:?} can only create pods with a single owner reference set to itself")),
    }
    // The ServiceAccount first, then secrets, configmaps (Kubernetes' order). berth's
    // defaulting names the `default` account in every pod, where Kubernetes' ServiceAccount
    // admission leaves mirror pods without one: that one does not count.
    let mut kinds = Vec::new();
    visit_references(pod, &mut |kind, name| {
        if !(kind == Kind::ServiceAccount && name == "default") {
            kinds.push(kind);
        }
    });
    let refused = [
        (Kind::ServiceAccount, "reference a service account"),
        (Kind::Secret, "reference secrets"),
        (Kind::ConfigMap, "reference configmaps"),
    ];
    for (kind, what) in refused {
        if kinds.contains(&kind) {
            return deny(format!("node {node:?} can not create pods that {what}"));
        }
    }
    let trust_bundles = list_at(pod, "/spec/volumes")
        .iter()
        .flat_map(|v| list_at(v, "/projected/sources"))
        .any(|s| s.get("clusterTrustBundle").is_some_and(|b| !b.is_null()));
    if trust_bundles {
        return deny(format!("node {node:?} can not create pods that reference clustertrustbundles"));
    }
    if list_at(pod, "/spec/volumes").iter().any(|v| v.get("persistentVolumeClaim").is_some_and(|c| !c.is_null())) {
        return deny(format!("node {node:?} can not create pods that reference persistentvolumeclaims"));
    }
    Ok(())
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Labels a node may not add, remove or change on its Node.
fn forbidden_label(key: &str) -> bool {
    let namespace = label_namespace(key);
    if in_namespace(namespace, "node-restriction.kubernetes.io") {
        return true;
    }
    let kubernetes = in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io");
    let kubelet =
        KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|ns| in_namespace(namespace, ns));
    kubernetes && !kubelet
}

/// The label keys that differ between two label maps (sorted), that a node may not touch.
fn forbidden_changes(new: Option<&Map<String, Value>>, old: Option<&Map<String, Value>>) -> Vec<String> {
    let empty = Map::new();
    let (new, old) = (new.unwrap_or(&empty), old.unwrap_or(&empty));
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .chain(old.iter().filter(|(k, v)| new.get(*k) != Some(*v)))
        .map(|(k, _)| k.clone())
        .filter(|k| forbidden_label(k))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn admit_node(ctx: &Ctx, node: &str, name: &str, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    if name != node {
        return Err(forbidden(ctx, name, format!("node {node:?} is not allowed to modify node {name:?}")));
    }
    let config_source = |n: &Value| n.pointer("/spec/configSource").filter(|c| !c.is_null()).cloned();
    match old {
        None => {
            if config_source(obj).is_some() {
                return Err(forbidden(
                    ctx,
                    name,
                    format!("node {node:?} is not allowed to create pods with a non-nil configSource"),
                ));
            }
            let labels = forbidden_changes(map_at(obj, "/metadata/labels"), None);
            if !labels.is_empty() {
                return Err(forbidden(
                    ctx,
                    name,
                    format!("node {node:?} is not allowed to set the following labels: {}", labels.join(", ")),
                ));
            }
        }
        Some(old) => {
            if let Some(source) = config_source(obj)
                && Some(&source) != config_source(old).as_ref()
            {
                return Err(forbidden(
                    ctx,
                    name,
                    format!("node {node:?} is not allowed to update configSource to a new non-nil configSource"),
                ));
            }
            if list_at(obj, "/spec/taints") != list_at(old, "/spec/taints") {
                return Err(forbidden(ctx, name, format!("node {node:?} is not allowed to modify taints")));
            }
            let labels = forbidden_changes(map_at(obj, "/metadata/labels"), map_at(old, "/metadata/labels"));
            if !labels.is_empty() {
                return Err(forbidden(ctx, name, format!("is not allowed to modify labels: {}", labels.join(", "))));
            }
        }
    }
    Ok(())
}

/// A node may change only `status.capacity`, `status.conditions` (and the expansion
/// recovery fields) of a PVC.
fn admit_pvc_status(ctx: &Ctx, node: &str, name: &str, obj: &Value, old: &Value) -> ApiResult<()> {
    let comparable = |pvc: &Value| {
        let mut pvc = pvc.clone();
        if let Some(meta) = pvc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        if let Some(status) = pvc.get_mut("status").and_then(Value::as_object_mut) {
            for field in ["capacity", "conditions", "allocatedResources", "allocatedResourceStatuses"] {
                status.remove(field);
            }
        }
        pvc
    };
    let (new, old) = (comparable(obj), comparable(old));
    if new != old {
        let mut changed: Vec<String> = Vec::new();
        for part in ["metadata", "spec", "status"] {
            if new.get(part) != old.get(part) {
                changed.push(part.to_string());
            }
        }
        return Err(forbidden(
            ctx,
            name,
            format!(
                "node {node:?} is not allowed to update fields other than status.capacity and status.conditions: {}",
                changed.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_labels_and_restricted_ones() {
        for allowed in [
            "kubernetes.io/hostname",
            "kubernetes.io/os",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "foo.kubelet.kubernetes.io/x",
            "example.com/team",
            "plain",
        ] {
            assert!(!forbidden_label(allowed), "{allowed}");
        }
        for refused in [
            "node-restriction.kubernetes.io/trusted",
            "a.node-restriction.kubernetes.io/x",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/role",
            "k8s.io/x",
            "x.k8s.io/y",
        ] {
            assert!(forbidden_label(refused), "{refused}");
        }
        assert!(!in_namespace("notkubernetes.io", "kubernetes.io"));
        let labels = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
        };
        let old = labels(&[("kubernetes.io/hostname", "a"), ("node-role.kubernetes.io/x", "")]);
        let new = labels(&[("kubernetes.io/hostname", "b"), ("team", "t"), ("node-restriction.kubernetes.io/y", "1")]);
        assert_eq!(
            forbidden_changes(Some(&new), Some(&old)),
            ["node-restriction.kubernetes.io/y", "node-role.kubernetes.io/x"]
        );
        assert!(forbidden_changes(Some(&old), Some(&old)).is_empty());
    }
}
