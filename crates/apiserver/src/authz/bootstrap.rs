//! The default RBAC policy, reconciled at every start as kube-apiserver's bootstrap
//! policy: missing roles and bindings are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get the rules (or subjects) they
//! lack added; nothing a user changed is removed, and objects without the annotation are
//! left alone.
//!
//! berth runs every controller under one identity, `system:kube-controller-manager`, so
//! its role is the union of what Kubernetes' per-controller roles grant (the garbage
//! collector and the namespace controller need read, update and delete on every
//! resource; creates are limited to what the controllers create). Kubernetes' roles for
//! other components and its per-controller `system:controller:*` roles (with their default
//! bindings) are in `components`, reconciled the same way.

use bytes::Bytes;
use serde_json::{Value, json};

use super::rbac;
use crate::error::ApiResult;
use crate::object;
use crate::server::App;

mod components;

const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const AGGREGATE: &str = "rbac.authorization.k8s.io/aggregate-to-";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_READ_WRITE: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs })
}

fn named_rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> Value {
    json!({ "apiGroups": groups, "resources": resources, "verbs": verbs, "resourceNames": names })
}

/// Signers berth's csrapproving approves for.
const APPROVED_SIGNERS: &[&str] = &["kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving"];
/// Signers berth's csrsigning signs for (and `legacy-unknown`, as Kubernetes' role lists it).
const SIGNED_SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/legacy-unknown",
];

/// The CertificateSigningRequest admission's rules for the approver and the signer.
fn signer_rules() -> Vec<Value> {
    vec![
        named_rule(&["certificates.k8s.io"], &["signers"], &["approve"], APPROVED_SIGNERS),
        named_rule(&["certificates.k8s.io"], &["signers"], &["sign"], SIGNED_SIGNERS),
    ]
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({ "nonResourceURLs": urls, "verbs": verbs })
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut all_labels = json!({ "kubernetes.io/bootstrapping": "rbac-defaults" });
    if let (Some(all), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
        all.extend(extra.clone());
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": name, "labels": all_labels, "annotations": { AUTOUPDATE: "true" } },
        "rules": rules,
    })
}

fn aggregated(name: &str, labels: Value, target: &str) -> Value {
    let mut role = cluster_role(name, labels, vec![]);
    role["aggregationRule"] = json!({
        "clusterRoleSelectors": [{ "matchLabels": { format!("{AGGREGATE}{target}"): "true" } }]
    });
    role
}

fn binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, n)| json!({ "kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": n }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
            "annotations": { AUTOUPDATE: "true" },
        },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": subjects,
    })
}

/// The default ClusterRoles, in an order where aggregated roles follow what they aggregate.
pub fn cluster_roles() -> Vec<Value> {
    let mut roles = berth_roles();
    roles.extend(components::component_roles());
    roles.extend(components::controller_roles());
    roles
}

fn berth_roles() -> Vec<Value> {
    let label = |target: &str| json!({ format!("{AGGREGATE}{target}"): "true" });
    let core = "";
    vec![
        cluster_role("cluster-admin", json!({}), vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![urls(&["/healthz", "/livez", "/readyz", "/version", "/version/", "/cacerts"], &["get"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            json!({}),
            vec![urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"], &["get"])],
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            label("view"),
            vec![
                rule(
                    &[core],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                    READ,
                ),
                rule(
                    &[core],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                    READ,
                ),
                rule(&[core], &["namespaces"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                    READ,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
                rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
                rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
                rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            label("edit"),
            vec![
                rule(
                    &[core],
                    &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
                    READ,
                ),
                rule(&[core], &["serviceaccounts"], &["impersonate"]),
                rule(&[core], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
                rule(&[core], &["pods/eviction"], &["create"]),
                rule(
                    &[core],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    WRITE,
                ),
                rule(&[core], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    WRITE,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
                rule(&["batch"], &["cronjobs", "jobs"], WRITE),
                rule(&["policy"], &["poddisruptionbudgets"], WRITE),
                rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
                rule(&["coordination.k8s.io"], &["leases"], ALL_READ_WRITE),
            ],
        ),
        cluster_role(
            "system:aggregate-to-admin",
            label("admin"),
            vec![
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
                rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], ALL_READ_WRITE),
            ],
        ),
        aggregated("view", label("edit"), "view"),
        aggregated("edit", label("admin"), "edit"),
        aggregated("admin", json!({}), "admin"),
        cluster_role(
            "system:kube-controller-manager",
            json!({}),
            vec![
                rule(&["*"], &["*"], &["get", "list", "watch", "update", "patch", "delete", "deletecollection"]),
                rule(
                    &[core],
                    &[
                        "pods",
                        "pods/eviction",
                        "pods/binding",
                        "events",
                        "endpoints",
                        "configmaps",
                        "persistentvolumeclaims",
                        // The persistentvolume-binder provisions local-path volumes.
                        "persistentvolumes",
                        "serviceaccounts",
                        "serviceaccounts/token",
                        "secrets",
                        "resourcequotas",
                        "services",
                    ],
                    &["create"],
                ),
                rule(
                    &["apps"],
                    &["replicasets", "controllerrevisions", "deployments", "statefulsets", "daemonsets"],
                    &["create"],
                ),
                rule(&["batch"], &["jobs"], &["create"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["create"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                rule(&["events.k8s.io"], &["events"], &["create"]),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                // The clusterrole-aggregation controller writes rules it may not hold.
                rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["escalate"]),
                // csrapproving and csrsigning (the CSR admission checks these).
                signer_rules()[0].clone(),
                signer_rules()[1].clone(),
            ],
        ),
        // Kubernetes' role of the certificate controllers (berth runs them as
        // system:kube-controller-manager, whose role includes these rules).
        cluster_role(
            "system:controller:certificate-controller",
            json!({}),
            [
                vec![
                    rule(
                        &["certificates.k8s.io"],
                        &["certificatesigningrequests"],
                        &["delete", "get", "list", "watch"],
                    ),
                    rule(
                        &["certificates.k8s.io"],
                        &["certificatesigningrequests/approval", "certificatesigningrequests/status"],
                        &["update"],
                    ),
                    rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                    rule(&[core, "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                ],
                signer_rules(),
            ]
            .concat(),
        ),
        // What the API server's kubelet client certificate may do on node agents' ports
        // (their SubjectAccessReviews), as Kubernetes' role kubeadm binds to it.
        cluster_role(
            "system:kubelet-api-admin",
            json!({}),
            vec![
                rule(&[core], &["nodes"], &["get", "list", "watch", "proxy"]),
                rule(&[core], &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/spec", "nodes/stats"], &["*"]),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            json!({}),
            vec![
                rule(&[core, "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "list", "watch", "update", "patch"]),
                rule(&[core], &["nodes", "namespaces", "services", "replicationcontrollers", "configmaps"], READ),
                rule(&[core], &["pods"], &["get", "list", "watch", "delete"]),
                rule(&[core], &["bindings", "pods/binding"], &["create"]),
                rule(&[core], &["pods/status"], &["patch", "update"]),
                rule(
                    &[core],
                    &["persistentvolumeclaims", "persistentvolumes"],
                    &["get", "list", "watch", "patch", "update"],
                ),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(
                    &["storage.k8s.io"],
                    &["storageclasses", "csinodes", "csidrivers", "csistoragecapacities", "volumeattachments"],
                    READ,
                ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        cluster_role("system:node", json!({}), node_rules()),
        // The node agent is also the network agent (as flannel's role): its host-gw routes
        // watch every Node's podCIDR and address, which the Node authorizer (a node reads
        // only its own Node, Kubernetes 1.32+) does not give. List and watch only: `get`
        // of another Node stays refused.
        cluster_role("berth:node-routes", json!({}), vec![rule(&[""], &["nodes"], &["list", "watch"])]),
        // What a hollow-node process does, for every node it plays (the node token's group):
        // register and heartbeat Nodes, play the pods bound to them. No secrets, configmaps
        // or volumes: hollow pods mount nothing. Leases are granted in kube-node-lease only
        // (the Role below).
        cluster_role("berth:hollow-node", json!({}), hollow_node_rules()),
        // TLS bootstrapping: what a join token may do, and the approver's checks (a
        // SubjectAccessReview on these pseudo-subresources of a CSR's requester).
        cluster_role(
            "system:node-bootstrapper",
            json!({}),
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!({}),
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!({}),
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"])],
        ),
    ]
}

/// The rules of the `system:node` ClusterRole: what a node may do beyond what the Node
/// authorizer decides from its graph (the Node authorizer grants these to node identities;
/// no binding does, as in Kubernetes since 1.8).
pub fn node_rules() -> Vec<Value> {
    let core = "";
    vec![
        rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        rule(&["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"], &["create"]),
        rule(&[core], &["services", "endpoints", "namespaces"], READ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&[core], &["nodes"], &["create", "delete", "get", "list", "watch", "patch", "update"]),
        rule(&[core], &["nodes/status"], &["patch", "update"]),
        rule(&[core, "events.k8s.io"], &["events"], &["create", "patch", "update"]),
        rule(&[core], &["pods"], &["get", "list", "watch", "create", "delete"]),
        rule(&[core], &["pods/status"], &["patch", "update"]),
        rule(&[core], &["pods/eviction"], &["create"]),
        rule(&[core], &["secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes"], READ),
        rule(&[core], &["persistentvolumeclaims/status"], &["get", "patch", "update"]),
        rule(&[core], &["serviceaccounts"], &["get"]),
        rule(&[core], &["serviceaccounts/token"], &["create"]),
        rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "list", "watch", "patch", "update"]),
        rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
        rule(&["storage.k8s.io"], &["volumeattachments", "csidrivers", "csinodes"], READ),
        // The base path of a local-path volume's class, before its directory is removed.
        rule(&["storage.k8s.io"], &["storageclasses"], &["get"]),
        rule(&["node.k8s.io"], &["runtimeclasses"], READ),
    ]
}

/// The rules of `berth:hollow-node`: exactly the requests `berth_agent::hollow` sends
/// (creating or taking over its Nodes, their status, watching them and the bound pods,
/// the pods' status and their deletion once their grace period ends).
pub fn hollow_node_rules() -> Vec<Value> {
    vec![
        rule(&[""], &["nodes"], &["create", "get", "list", "watch", "patch", "update"]),
        rule(&[""], &["nodes/status"], &["patch", "update"]),
        rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
    ]
}

/// Default ClusterRoleBindings an older berth made that are no longer wanted (name and
/// the role they named), deleted when reconciling finds them unchanged: `berth:node-agent`
/// gave the node token the whole `system:node` role, every secret included.
const RETIRED_BINDINGS: &[(&str, &str)] = &[("berth:node-agent", "system:node")];

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let mut bindings = berth_bindings();
    bindings.extend(components::component_bindings());
    bindings
}

fn berth_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[("Group", "system:masters")]),
        binding("system:discovery", "system:discovery", &[("Group", "system:authenticated")]),
        binding("system:basic-user", "system:basic-user", &[("Group", "system:authenticated")]),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &[("Group", "system:serviceaccounts")],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        binding("system:kube-scheduler", "system:kube-scheduler", &[("User", "system:kube-scheduler")]),
        // The API server's client certificate for node agents (kubeadm's
        // kube-apiserver-kubelet-client binding).
        binding(
            "berth:kube-apiserver-kubelet-client",
            "system:kubelet-api-admin",
            &[("User", "system:kube-apiserver")],
        ),
        // Kept without subjects, as Kubernetes: the Node authorizer decides for nodes
        // (reconciling removes the group an older berth bound here).
        binding("system:node", "system:node", &[]),
        // The shared node token is not a node identity: real agents given it trade it for
        // a node certificate (a CSR, as a bootstrap token does, auto-approved below);
        // hollow processes acting for many nodes at once keep using it, with the hollow
        // nodes' rules only.
        binding(
            "berth:node-token-bootstrapper",
            "system:node-bootstrapper",
            &[("User", crate::authn::NODE_AGENT_USER)],
        ),
        binding("berth:hollow-nodes", "berth:hollow-node", &[("Group", crate::authn::HOLLOW_NODES_GROUP)]),
        binding(
            "berth:node-agent-autoapprove",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[("User", crate::authn::NODE_AGENT_USER)],
        ),
        binding("berth:node-routes", "berth:node-routes", &[("Group", "system:nodes")]),
        // As kubeadm binds them (for every bootstrap token, not only kubeadm's default group).
        binding("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", &[("Group", "system:bootstrappers")]),
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[("Group", "system:bootstrappers")],
        ),
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[("Group", "system:nodes")],
        ),
    ]
}

fn key(plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}{plural}/{ns}/{name}", super::RBAC_PREFIX),
        None => format!("{}{plural}/{name}", super::RBAC_PREFIX),
    }
}

/// The default Roles and RoleBindings of namespaces: in `kube-system`, Kubernetes' reader of
/// the `extension-apiserver-authentication` ConfigMap (the client CA) and berth's binding of
/// it to the nodes, whose agents trust that CA on their HTTPS port; in `kube-public`,
/// kubeadm's anonymous reader of the `cluster-info` ConfigMap (joining agents verify it
/// with their bootstrap token).
pub fn namespace_roles_and_bindings() -> Vec<(&'static str, Value)> {
    let meta_in = |namespace: &str, name: &str| {
        json!({
            "name": name,
            "namespace": namespace,
            "labels": { "kubernetes.io/bootstrapping": "rbac-defaults" },
            "annotations": { AUTOUPDATE: "true" },
        })
    };
    let meta = |name: &str| meta_in("kube-system", name);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("extension-apiserver-authentication-reader"),
        "rules": [{
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["extension-apiserver-authentication"],
            "verbs": READ,
        }],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta("berth:node-client-ca-reader"),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader" },
        "subjects": [{ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": super::node::NODES_GROUP }],
    });
    let cluster_info = "kubeadm:bootstrap-signer-clusterinfo";
    let cluster_info_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta_in("kube-public", cluster_info),
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"] }],
    });
    let cluster_info_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta_in("kube-public", cluster_info),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": cluster_info },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": crate::authn::ANONYMOUS }],
    });
    let hollow = "berth:hollow-node-lease";
    let hollow_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta_in("kube-node-lease", hollow),
        "rules": [rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "list", "watch", "patch", "update"])],
    });
    let hollow_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta_in("kube-node-lease", hollow),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": hollow },
        "subjects": [{ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": crate::authn::HOLLOW_NODES_GROUP }],
    });
    vec![
        ("roles", role),
        ("rolebindings", binding),
        ("roles", cluster_info_role),
        ("rolebindings", cluster_info_binding),
        ("roles", hollow_role),
        ("rolebindings", hollow_binding),
    ]
}

/// Whether `existing` is the retired default binding `name` as berth made it (still marked
/// for auto-update and naming the role it did), which reconciling deletes.
fn retired(existing: &Value, name: &str) -> bool {
    RETIRED_BINDINGS
        .iter()
        .any(|(retired, role)| *retired == name && existing["roleRef"]["name"] == *role && autoupdate(existing))
}

/// The rules of the aggregated default roles, filled from the defaults they select (so
/// that admin/edit/view work before the aggregation controller's first pass).
fn fill_aggregated(roles: &mut [Value]) {
    for i in 0..roles.len() {
        let Some(selector) = roles[i].pointer("/aggregationRule/clusterRoleSelectors/0/matchLabels").cloned() else {
            continue;
        };
        let Some((label, _)) = selector.as_object().and_then(|m| m.iter().next()) else { continue };
        let mut rules: Vec<Value> = Vec::new();
        for other in roles.iter() {
            if other.pointer(&format!("/metadata/labels/{}", label.replace('/', "~1"))) == Some(&json!("true")) {
                for r in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
        }
        roles[i]["rules"] = json!(rules);
    }
}

fn autoupdate(existing: &Value) -> bool {
    existing.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1"))) == Some(&json!("true"))
}

/// What reconciling `default` into `existing` changes, if anything: missing rules (roles
/// without an aggregationRule), selectors (with one) or subjects (bindings) added.
fn reconcile(existing: &Value, default: &Value) -> Option<Value> {
    if !autoupdate(existing) {
        return None;
    }
    let mut updated = existing.clone();
    let mut changed = false;
    if let Some(selectors) = default.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array) {
        let current = updated.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array).cloned();
        let mut merged = current.unwrap_or_default();
        for s in selectors {
            if !merged.contains(s) {
                merged.push(s.clone());
                changed = true;
            }
        }
        updated["aggregationRule"] = json!({ "clusterRoleSelectors": merged });
    } else if let Some(rules) = default.get("rules") {
        let parse = |v: &Value| -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
        let existing_rules = parse(existing.get("rules").unwrap_or(&Value::Null));
        if !rbac::covers(&existing_rules, &parse(rules)).is_empty() {
            let mut list = existing.get("rules").and_then(Value::as_array).cloned().unwrap_or_default();
            for r in rules.as_array().into_iter().flatten() {
                if !list.contains(r) {
                    list.push(r.clone());
                }
            }
            updated["rules"] = json!(list);
            changed = true;
        }
    }
    if let Some(subjects) = default.get("subjects").and_then(Value::as_array) {
        let mut list = existing.get("subjects").and_then(Value::as_array).cloned().unwrap_or_default();
        // Tightened: the system:node binding no longer names the nodes' group.
        if default["kind"] == "ClusterRoleBinding" && default["metadata"]["name"] == "system:node" {
            let before = list.len();
            list.retain(|s| !(s["kind"] == "Group" && s["name"] == super::node::NODES_GROUP));
            changed |= list.len() != before;
        }
        for s in subjects {
            let same = |e: &Value| e["kind"] == s["kind"] && e["name"] == s["name"];
            if !list.iter().any(same) {
                list.push(s.clone());
                changed = true;
            }
        }
        updated["subjects"] = json!(list);
    }
    changed.then_some(updated)
}

/// Creates the default roles and bindings that are missing and reconciles the existing
/// ones marked for auto-update.
pub async fn reconcile_all(app: &App) -> ApiResult<()> {
    let mut roles = cluster_roles();
    fill_aggregated(&mut roles);
    let objects = roles
        .into_iter()
        .map(|r| ("clusterroles", r))
        .chain(cluster_role_bindings().into_iter().map(|b| ("clusterrolebindings", b)))
        .chain(namespace_roles_and_bindings());
    for (name, _) in RETIRED_BINDINGS {
        let key = key("clusterrolebindings", None, name);
        let Some(kv) = app.store.get(&key).await? else { continue };
        if serde_json::from_slice::<Value>(&kv.value).is_ok_and(|existing| retired(&existing, name)) {
            tracing::info!(%name, "deleting a retired default ClusterRoleBinding");
            match app.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) | Err(berth_store::Error::NotFound(_) | berth_store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (plural, mut default) in objects {
        let name = default["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = key(plural, default["metadata"]["namespace"].as_str(), &name);
        for _attempt in 0..3 {
            match app.store.get(&key).await? {
                None => {
                    default["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                    default["metadata"]["creationTimestamp"] = json!(object::now());
                    match app.store.create(&key, Bytes::from(object::encode_for_store(&default))).await {
                        Ok(_) => break,
                        Err(berth_store::Error::AlreadyExists(_)) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(kv) => {
                    let Ok(existing) = serde_json::from_slice::<Value>(&kv.value) else { break };
                    let Some(updated) = reconcile(&existing, &default) else { break };
                    tracing::info!(%plural, %name, "reconciling the default RBAC policy");
                    match app.store.update(&key, Bytes::from(object::encode_for_store(&updated)), kv.mod_revision).await
                    {
                        Ok(_) => break,
                        Err(berth_store::Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_defaults_hold_what_they_select() {
        let mut roles = cluster_roles();
        fill_aggregated(&mut roles);
        let find = |n: &str| roles.iter().find(|r| r["metadata"]["name"] == n).unwrap().clone();
        let count = |n: &str| find(n)["rules"].as_array().unwrap().len();
        assert_eq!(count("view"), find("system:aggregate-to-view")["rules"].as_array().unwrap().len());
        assert!(count("edit") > count("view"));
        assert!(count("admin") > count("edit"));
        let secrets = |n: &str| find(n)["rules"].to_string().contains("\"secrets\"");
        assert!(!secrets("view"));
        assert!(secrets("edit"));
    }

    #[test]
    fn reconcile_adds_and_never_removes() {
        let default = cluster_role("r", json!({}), vec![rule(&[""], &["pods"], &["get"])]);
        let mut user_changed = default.clone();
        user_changed["rules"] = json!([rule(&[""], &["secrets"], &["get"])]);
        let updated = reconcile(&user_changed, &default).unwrap();
        assert_eq!(updated["rules"].as_array().unwrap().len(), 2);
        assert_eq!(reconcile(&updated, &default), None);
        let mut pinned = user_changed.clone();
        pinned["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert_eq!(reconcile(&pinned, &default), None);
        let b = binding("b", "r", &[("Group", "g")]);
        let mut more = b.clone();
        more["subjects"] = json!([{ "kind": "User", "name": "extra" }]);
        assert_eq!(reconcile(&more, &b).unwrap()["subjects"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_node_binding_is_tightened() {
        let default = cluster_role_bindings().into_iter().find(|b| b["metadata"]["name"] == "system:node").unwrap();
        assert_eq!(default["subjects"], json!([]));
        let old = binding("system:node", "system:node", &[("Group", "system:nodes"), ("User", "kept")]);
        let updated = reconcile(&old, &default).unwrap();
        assert_eq!(updated["subjects"].as_array().unwrap().len(), 1);
        assert_eq!(updated["subjects"][0]["name"], "kept");
        assert_eq!(reconcile(&updated, &default), None);
        assert_eq!(key("roles", Some("kube-system"), "r"), format!("{}roles/kube-system/r", super::super::RBAC_PREFIX));
    }

    #[test]
    fn the_node_token_binding_to_system_node_is_retired() {
        let mut old = binding("berth:node-agent", "system:node", &[("User", crate::authn::NODE_AGENT_USER)]);
        assert!(retired(&old, "berth:node-agent"));
        assert!(!cluster_role_bindings().iter().any(|b| b["metadata"]["name"] == "berth:node-agent"));
        // Not ours any more once an admin pinned it or pointed it elsewhere.
        old["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(!retired(&old, "berth:node-agent"));
        let other = binding("berth:node-agent", "view", &[]);
        assert!(!retired(&other, "berth:node-agent"));
        assert!(!retired(&binding("x", "system:node", &[]), "x"));
    }

    #[test]
    fn the_node_token_reaches_no_secrets_configmaps_or_volumes() {
        let mut roles = cluster_roles();
        fill_aggregated(&mut roles);
        let group = crate::authn::HOLLOW_NODES_GROUP;
        let user = crate::authn::NODE_AGENT_USER;
        let names: Vec<String> = cluster_role_bindings()
            .iter()
            .filter(|b| {
                b["subjects"].as_array().into_iter().flatten().any(|s| {
                    (s["kind"] == "Group" && (s["name"] == group || s["name"] == "system:authenticated"))
                        || (s["kind"] == "User" && s["name"] == user)
                })
            })
            .map(|b| b["roleRef"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"berth:hollow-node".to_string()), "{names:?}");
        for role in roles.iter().filter(|r| names.iter().any(|n| r["metadata"]["name"] == n.as_str())) {
            let text = role["rules"].to_string();
            for resource in ["\"secrets\"", "\"configmaps\"", "\"persistentvolumeclaims\"", "\"*\""] {
                assert!(!text.contains(resource), "{} grants {resource}", role["metadata"]["name"]);
            }
        }
    }
}
