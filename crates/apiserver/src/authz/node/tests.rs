//! Unit tests of the Node authorizer's graph and decisions (no IO).

use serde_json::{Value, json};

use super::*;

fn pod(name: &str, node: &str, spec: Value) -> Value {
    let mut spec = spec;
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    json!({ "metadata": { "name": name, "namespace": "ns" }, "spec": spec })
}

fn refs(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    visit_references(pod, &mut |kind, name| out.push(format!("{kind:?}/{name}")));
    out.sort();
    out
}

#[test]
fn every_reference_of_a_pod_is_found() {
    let p = pod(
        "web",
        "a",
        json!({
            "serviceAccountName": "sa",
            "imagePullSecrets": [{ "name": "pull" }],
            "initContainers": [{ "name": "i", "envFrom": [{ "secretRef": { "name": "init-env" } }] }],
            "containers": [{ "name": "c", "env": [
                { "name": "A", "valueFrom": { "secretKeyRef": { "name": "env-secret", "key": "k" } } },
                { "name": "B", "valueFrom": { "configMapKeyRef": { "name": "env-config", "key": "k" } } },
                { "name": "C", "value": "plain" },
            ], "envFrom": [{ "configMapRef": { "name": "from-config" } }] }],
            "ephemeralContainers": [{ "name": "e", "envFrom": [{ "secretRef": { "name": "debug" } }] }],
            "volumes": [
                { "name": "s", "secret": { "secretName": "vol-secret" } },
                { "name": "c", "configMap": { "name": "vol-config" } },
                { "name": "p", "projected": { "sources": [
                    { "secret": { "name": "proj-secret" } },
                    { "configMap": { "name": "kube-root-ca.crt" } },
                    { "serviceAccountToken": { "path": "token" } },
                ] } },
                { "name": "claim", "persistentVolumeClaim": { "claimName": "data" } },
                { "name": "scratch", "ephemeral": { "volumeClaimTemplate": { "spec": {} } } },
                { "name": "csi", "csi": { "driver": "d", "nodePublishSecretRef": { "name": "csi-secret" } } },
                { "name": "rbd", "rbd": { "monitors": [], "image": "i", "secretRef": { "name": "rbd-secret" } } },
                { "name": "empty", "emptyDir": {} },
            ],
            "resourceClaims": [{ "name": "gpu", "resourceClaimName": "gpu-claim" }, { "name": "tpl", "resourceClaimTemplateName": "t" }],
        }),
    );
    assert_eq!(
        refs(&p),
        [
            "ConfigMap/env-config",
            "ConfigMap/from-config",
            "ConfigMap/kube-root-ca.crt",
            "ConfigMap/vol-config",
            "PersistentVolumeClaim/data",
            "PersistentVolumeClaim/web-scratch",
            "ResourceClaim/gpu-claim",
            "Secret/csi-secret",
            "Secret/debug",
            "Secret/env-secret",
            "Secret/init-env",
            "Secret/proj-secret",
            "Secret/pull",
            "Secret/rbd-secret",
            "Secret/vol-secret",
            "ServiceAccount/sa",
        ]
    );
    // A template's claim counts once the pod's status names it.
    let mut with_status = p.clone();
    with_status["status"] = json!({ "resourceClaimStatuses": [{ "name": "tpl", "resourceClaimName": "web-tpl-x1" }] });
    assert!(refs(&with_status).contains(&"ResourceClaim/web-tpl-x1".to_string()));
}

#[test]
fn the_graph_follows_pods_bound_moved_and_deleted() {
    let mut g = Graph::default();
    let uses = |name: &str| json!({ "volumes": [{ "name": "v", "secret": { "secretName": name } }] });
    // Unbound pods are not in the graph.
    g.set_pod("ns/p1", Some(&pod("p1", "", uses("s1"))));
    assert_eq!((g.pods(), g.edges()), (0, 0));
    g.set_pod("ns/p1", Some(&pod("p1", "a", uses("s1"))));
    g.set_pod("ns/p2", Some(&pod("p2", "a", uses("s1"))));
    g.set_pod("ns/p3", Some(&pod("p3", "b", uses("s2"))));
    assert!(g.references("a", Kind::Secret, "ns", "s1"));
    assert!(!g.references("a", Kind::Secret, "ns", "s2"));
    assert!(!g.references("a", Kind::Secret, "other", "s1"));
    assert!(!g.references("a", Kind::ConfigMap, "ns", "s1"));
    assert!(g.references("b", Kind::Secret, "ns", "s2"));
    assert_eq!(g.pod_node("ns", "p3"), Some("b"));
    assert_eq!(g.pod_node("ns", "p4"), None);
    // Two pods use s1 on a: it stays reachable until both are gone.
    g.set_pod("ns/p1", None);
    assert!(g.references("a", Kind::Secret, "ns", "s1"));
    g.set_pod("ns/p2", Some(&pod("p2", "a", uses("s3"))));
    assert!(!g.references("a", Kind::Secret, "ns", "s1"));
    assert!(g.references("a", Kind::Secret, "ns", "s3"));
    g.set_pod("ns/p2", None);
    g.set_pod("ns/p3", None);
    g.set_pod("ns/never", None);
    assert_eq!((g.pods(), g.edges()), (0, 0));
}

#[test]
fn mirror_pods_grant_nothing_but_themselves() {
    let mut g = Graph::default();
    let mut p = pod("static", "a", json!({ "volumes": [{ "name": "v", "secret": { "secretName": "s" } }] }));
    p["metadata"]["annotations"] = json!({ MIRROR_POD_ANNOTATION: "hash" });
    g.set_pod("ns/static", Some(&p));
    assert_eq!(g.pod_node("ns", "static"), Some("a"));
    assert!(!g.references("a", Kind::Secret, "ns", "s"));
}

fn node_user(name: &str) -> UserInfo {
    UserInfo::new(format!("system:node:{name}"), [NODES_GROUP.to_string()])
}

fn ask(
    authz: &NodeAuthorizer,
    user: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Decision {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    authz.authorize(&Attributes::resource(user.clone(), verb, group, resource, sub, ns, name))
}

#[test]
fn decisions_follow_the_graph_and_kubernetes_rules() {
    let authz = NodeAuthorizer::new();
    authz.graph.graph.write().unwrap().set_pod(
        "ns/web",
        Some(&pod(
            "web",
            "a",
            json!({ "serviceAccountName": "sa", "volumes": [{ "name": "v", "secret": { "secretName": "s" } }] }),
        )),
    );
    let a = node_user("a");
    let b = node_user("b");
    let allow = Decision::Allow;
    let unrelated = |n: &str| Decision::NoOpinion(format!("no relationship found between node '{n}' and this object"));
    assert_eq!(ask(&authz, &a, "get", "", "secrets", "ns", "s"), allow);
    assert_eq!(ask(&authz, &a, "watch", "", "secrets", "ns", "s"), allow);
    assert_eq!(ask(&authz, &b, "get", "", "secrets", "ns", "s"), unrelated("b"));
    assert_eq!(ask(&authz, &a, "get", "", "secrets", "ns", "other"), unrelated("a"));
    assert_eq!(ask(&authz, &a, "list", "", "secrets", "ns", ""), Decision::NoOpinion("No Object name found".into()));
    assert_eq!(
        ask(&authz, &a, "update", "", "secrets", "ns", "s"),
        Decision::NoOpinion("can only read resources of this type".into())
    );
    assert_eq!(ask(&authz, &a, "create", "", "serviceaccounts/token", "ns", "sa"), allow);
    assert_eq!(ask(&authz, &b, "create", "", "serviceaccounts/token", "ns", "sa"), unrelated("b"));
    assert_eq!(
        ask(&authz, &a, "get", "", "serviceaccounts", "ns", "sa"),
        Decision::NoOpinion("can only create tokens for individual service accounts".into())
    );
    // Pods: the node's own by name, or lists by spec.nodeName.
    assert_eq!(ask(&authz, &a, "get", "", "pods", "ns", "web"), allow);
    assert_eq!(ask(&authz, &b, "get", "", "pods", "ns", "web"), unrelated("b"));
    assert_eq!(
        ask(&authz, &a, "list", "", "pods", "", ""),
        Decision::NoOpinion("can only list/watch pods with spec.nodeName field selector".into())
    );
    let mut list = Attributes::resource(a.clone(), "watch", "", "pods", "", "", "");
    list.field_selector = vec![("spec.nodeName".into(), "a".into())];
    assert_eq!(authz.authorize(&list), allow);
    list.field_selector = vec![("spec.nodeName".into(), "b".into())];
    assert_ne!(authz.authorize(&list), allow);
    assert_eq!(ask(&authz, &a, "patch", "", "pods/status", "ns", "anything"), allow);
    assert_eq!(ask(&authz, &a, "update", "", "pods", "ns", "web"), Decision::NoOpinion(String::new()));
    // Nodes and leases by name.
    assert_eq!(ask(&authz, &a, "get", "", "nodes", "", "a"), allow);
    assert_eq!(
        ask(&authz, &a, "get", "", "nodes", "", "b"),
        Decision::NoOpinion("node 'a' cannot read 'b', only its own Node object".into())
    );
    assert_eq!(
        ask(&authz, &a, "list", "", "nodes", "", ""),
        Decision::NoOpinion("node 'a' cannot read all nodes, only its own Node object".into())
    );
    assert_eq!(ask(&authz, &a, "delete", "", "nodes", "", "a"), Decision::NoOpinion(String::new()));
    assert_eq!(ask(&authz, &a, "update", "coordination.k8s.io", "leases", "kube-node-lease", "a"), allow);
    assert_eq!(
        ask(&authz, &a, "delete", "coordination.k8s.io", "leases", "kube-node-lease", "b"),
        Decision::NoOpinion("can only access node lease with the same name as the requesting node".into())
    );
    assert_eq!(
        ask(&authz, &a, "get", "coordination.k8s.io", "leases", "kube-system", "a"),
        Decision::NoOpinion("can only access leases in the \"kube-node-lease\" system namespace".into())
    );
    // The static rules for the rest; nothing for other users or unidentifiable nodes.
    assert_eq!(ask(&authz, &a, "list", "", "services", "", ""), allow);
    assert_eq!(ask(&authz, &a, "create", "", "events", "ns", ""), allow);
    assert_eq!(ask(&authz, &a, "create", "apps", "deployments", "ns", ""), Decision::NoOpinion(String::new()));
    let agent = UserInfo::new("system:node-agent", [NODES_GROUP.to_string()]);
    assert_eq!(ask(&authz, &agent, "get", "", "services", "ns", "x"), Decision::NoOpinion(String::new()));
    let not_a_node = UserInfo::new("system:node:a", []);
    assert_eq!(ask(&authz, &not_a_node, "get", "", "secrets", "ns", "s"), Decision::NoOpinion(String::new()));
    assert_eq!(
        ask(&authz, &node_user(""), "get", "", "secrets", "ns", "s"),
        Decision::NoOpinion("unknown node for user \"system:node:\"".into())
    );
}

#[test]
fn node_identities() {
    assert_eq!(node_identity(&node_user("a")), Some("a"));
    assert_eq!(node_identity(&node_user("")), Some(""));
    assert_eq!(node_identity(&UserInfo::new("system:node-agent", [NODES_GROUP.to_string()])), None);
    assert_eq!(node_identity(&UserInfo::new("system:node:a", ["system:masters".to_string()])), None);
}
