//! The Node authorizer and NodeRestriction end to end: the real `berth server` over HTTPS,
//! two node identities (client certificates `system:node:node-a` / `node-b` in group
//! `system:nodes`, issued from the test server's client CA) and the real kubectl. A node
//! reads only the secrets and configmaps its pods use (access follows pods as they are
//! bound and deleted), its own pods, Node and Lease; it writes only its own objects; the
//! refusals are worded as Kubernetes words them; `kubectl auth can-i --as` asks the same
//! authorizer.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{Credentials, HttpClient, TestServer, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

/// An HTTPS client holding a client certificate for `user` in `groups`.
fn client(s: &TestServer, user: &str, groups: &[&str]) -> HttpClient {
    let pki = berth_pki::Pki::load_or_create(&s.dir.path().join("tls")).expect("server pki");
    let cert = pki
        .leaf(&berth_pki::LeafSpec::client(&format!("test-{}", user.replace(':', "-")), user, groups))
        .expect("cert");
    s.client_as(Credentials::Certificate { cert_pem: cert.cert_pem, key_pem: cert.key_pem })
}

fn node(s: &TestServer, name: &str) -> HttpClient {
    client(s, &format!("system:node:{name}"), &["system:nodes"])
}

/// A request as `c`: the status and the body as JSON (Null when it is not JSON).
fn call(c: &HttpClient, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let content_type = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
    let r = c.request(method, path, body.as_ref().map(|_| content_type), &bytes).expect("request");
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

fn get(c: &HttpClient, path: &str) -> (u16, Value) {
    call(c, "GET", path, None)
}

/// Asserts a 403 whose message is exactly `message`.
fn refused(answer: (u16, Value), message: &str) {
    assert_eq!(answer.0, 403, "{:#}", answer.1);
    assert_eq!(answer.1["reason"], "Forbidden", "{:#}", answer.1);
    assert_eq!(answer.1["message"], message, "{:#}", answer.1);
}

fn create(s: &TestServer, object: Value) {
    s.kubectl_in_ok(&["create", "-f", "-"], Some(&object.to_string()));
}

/// A pod bound to `node` (nothing runs it: the server has no agent).
fn pod(name: &str, node: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    spec["containers"] = json!([{ "name": "main", "image": "busybox" }]);
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name, "namespace": "default" }, "spec": spec })
}

fn no_relationship(node: &str, resource: &str, name: &str) -> String {
    format!(
        r#"{resource} "{name}" is forbidden: User "system:node:{node}" cannot get resource "{resource}" in API group "" in the namespace "default": no relationship found between node '{node}' and this object"#
    )
}

#[test]
fn a_node_reads_only_the_secrets_and_configmaps_of_its_pods() {
    let s = server();
    for secret in ["a-secret", "b-secret", "lonely"] {
        s.kubectl_ok(&["create", "secret", "generic", secret, "--from-literal=k=v"]);
    }
    s.kubectl_ok(&["create", "configmap", "a-config", "--from-literal=k=v"]);
    create(&s, pod("pod-a", "node-a", json!({ "volumes": [{ "name": "s", "secret": { "secretName": "a-secret" } }] })));
    create(&s, pod("pod-b", "node-b", json!({ "imagePullSecrets": [{ "name": "b-secret" }] })));
    let a = node(&s, "node-a");
    let b = node(&s, "node-b");
    let secrets = "/api/v1/namespaces/default/secrets";
    let mut last = (0, Value::Null);
    assert!(
        wait_until(WAIT, || {
            last = get(&a, &format!("{secrets}/a-secret"));
            last.0 == 200
        }),
        "node-a never read its pod's secret: {last:?}"
    );
    assert_eq!(last.1["data"]["k"], "dg==");
    assert!(wait_until(WAIT, || get(&b, &format!("{secrets}/b-secret")).0 == 200));
    // Another node's pod's secret, and a secret no pod uses.
    refused(get(&a, &format!("{secrets}/b-secret")), &no_relationship("node-a", "secrets", "b-secret"));
    refused(get(&b, &format!("{secrets}/a-secret")), &no_relationship("node-b", "secrets", "a-secret"));
    refused(get(&a, &format!("{secrets}/lonely")), &no_relationship("node-a", "secrets", "lonely"));
    refused(get(&a, &format!("{secrets}/missing")), &no_relationship("node-a", "secrets", "missing"));
    // Lists only by name (as the kubelet's single-object watches), never all.
    refused(
        get(&a, secrets),
        r#"secrets is forbidden: User "system:node:node-a" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#,
    );
    let (code, list) = get(&a, &format!("{secrets}?fieldSelector=metadata.name%3Da-secret"));
    assert_eq!(code, 200, "{list:#}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    refused(
        call(&a, "PUT", &format!("{secrets}/a-secret"), Some(json!({ "metadata": { "name": "a-secret" } }))),
        r#"secrets "a-secret" is forbidden: User "system:node:node-a" cannot update resource "secrets" in API group "" in the namespace "default": can only read resources of this type"#,
    );
    // Configmaps likewise, through a projected volume of a new pod.
    refused(
        get(&a, "/api/v1/namespaces/default/configmaps/a-config"),
        &no_relationship("node-a", "configmaps", "a-config"),
    );
    create(
        &s,
        pod(
            "pod-a2",
            "node-a",
            json!({ "volumes": [{ "name": "p", "projected": { "sources": [{ "configMap": { "name": "a-config" } }] } }] }),
        ),
    );
    assert!(wait_until(WAIT, || get(&a, "/api/v1/namespaces/default/configmaps/a-config").0 == 200));
    // Access appears when a pod that uses the secret is bound to the node...
    create(&s, pod("late", "node-a", json!({ "imagePullSecrets": [{ "name": "lonely" }] })));
    assert!(
        wait_until(WAIT, || get(&a, &format!("{secrets}/lonely")).0 == 200),
        "access never appeared: {:?}",
        get(&a, &format!("{secrets}/lonely"))
    );
    refused(get(&b, &format!("{secrets}/lonely")), &no_relationship("node-b", "secrets", "lonely"));
    // ...and goes with the pod.
    s.kubectl_ok(&["delete", "pod", "late", "--grace-period=0", "--force"]);
    assert!(
        wait_until(WAIT, || get(&a, &format!("{secrets}/lonely")).0 == 403),
        "access never went: {:?}",
        get(&a, &format!("{secrets}/lonely"))
    );
    // Pods: its own by name or by spec.nodeName, not another node's, not all.
    assert_eq!(get(&a, "/api/v1/namespaces/default/pods/pod-a").0, 200);
    refused(get(&a, "/api/v1/namespaces/default/pods/pod-b"), &no_relationship("node-a", "pods", "pod-b"));
    refused(
        get(&a, "/api/v1/pods"),
        r#"pods is forbidden: User "system:node:node-a" cannot list resource "pods" in API group "" at the cluster scope: can only list/watch pods with spec.nodeName field selector"#,
    );
    let (code, list) = get(&a, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a");
    assert_eq!(code, 200, "{list:#}");
    let mut names: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["pod-a", "pod-a2"]);
    assert_eq!(get(&a, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b").0, 403);
    // What is not subdivided follows the system:node rules; other kinds are refused.
    assert_eq!(get(&a, "/api/v1/services").0, 200);
    assert_eq!(get(&a, "/apis/apps/v1/namespaces/default/deployments").0, 403);
    // `kubectl auth can-i --as` asks the same authorizer.
    let can_i = |name: &str| {
        let out = s.kubectl(&[
            "auth",
            "can-i",
            "--as",
            "system:node:node-a",
            "--as-group",
            "system:nodes",
            "get",
            &format!("secret/{name}"),
        ]);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(answer == "yes" || answer == "no", "kubectl auth can-i: {}", String::from_utf8_lossy(&out.stderr));
        answer
    };
    assert_eq!(can_i("a-secret"), "yes");
    assert_eq!(can_i("b-secret"), "no");
    assert_eq!(can_i("lonely"), "no");
    // Impersonating a node through the API gets the node's answer and wording too.
    let out = s.kubectl(&["get", "secret", "b-secret", "--as", "system:node:node-a", "--as-group", "system:nodes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&no_relationship("node-a", "secrets", "b-secret")), "{stderr}");
    // A node identity without a name is no node; a certificate outside system:nodes is not one either.
    let nameless = client(&s, "system:node:", &["system:nodes"]);
    refused(
        get(&nameless, &format!("{secrets}/a-secret")),
        r#"secrets "a-secret" is forbidden: User "system:node:" cannot get resource "secrets" in API group "" in the namespace "default": unknown node for user "system:node:""#,
    );
    let outsider = client(&s, "system:node:node-a", &[]);
    refused(
        get(&outsider, &format!("{secrets}/a-secret")),
        r#"secrets "a-secret" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default""#,
    );
}

#[test]
fn node_restriction_keeps_a_node_to_its_own_objects() {
    let s = server();
    let a = node(&s, "node-a");
    // A node registers itself, not another node, and may not give itself restricted labels.
    let node_object = |name: &str, labels: Value| json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": labels } });
    let (code, created) =
        call(&a, "POST", "/api/v1/nodes", Some(node_object("node-a", json!({ "kubernetes.io/os": "linux" }))));
    assert_eq!(code, 201, "{created:#}");
    refused(
        call(&a, "POST", "/api/v1/nodes", Some(node_object("node-b", json!({})))),
        r#"nodes "node-b" is forbidden: node "node-a" is not allowed to modify node "node-b""#,
    );
    refused(
        call(
            &node(&s, "node-c"),
            "POST",
            "/api/v1/nodes",
            Some(node_object("node-c", json!({ "node-role.kubernetes.io/control-plane": "" }))),
        ),
        r#"nodes "node-c" is forbidden: node "node-c" is not allowed to set the following labels: node-role.kubernetes.io/control-plane"#,
    );
    create(&s, node_object("node-b", json!({})));
    // Its own Node: labels it may set, not restricted ones, not its taints.
    let own = "/api/v1/nodes/node-a";
    let (code, patched) = call(&a, "PATCH", own, Some(json!({ "metadata": { "labels": { "team": "blue" } } })));
    assert_eq!(code, 200, "{patched:#}");
    assert_eq!(patched["metadata"]["labels"]["team"], "blue");
    refused(
        call(
            &a,
            "PATCH",
            own,
            Some(json!({ "metadata": { "labels": { "node-restriction.kubernetes.io/trusted": "yes" } } })),
        ),
        r#"nodes "node-a" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted"#,
    );
    refused(
        call(&a, "PATCH", own, Some(json!({ "spec": { "taints": [{ "key": "k", "effect": "NoSchedule" }] } }))),
        r#"nodes "node-a" is forbidden: node "node-a" is not allowed to modify taints"#,
    );
    let (code, status) =
        call(&a, "PATCH", &format!("{own}/status"), Some(json!({ "status": { "capacity": { "pods": "10" } } })));
    assert_eq!(code, 200, "{status:#}");
    // Another node: not readable, not writable.
    refused(
        get(&a, "/api/v1/nodes/node-b"),
        r#"nodes "node-b" is forbidden: User "system:node:node-a" cannot get resource "nodes" in API group "" at the cluster scope: node 'node-a' cannot read 'node-b', only its own Node object"#,
    );
    refused(
        call(&a, "PATCH", "/api/v1/nodes/node-b", Some(json!({ "metadata": { "labels": { "team": "red" } } }))),
        r#"nodes "node-b" is forbidden: node "node-a" is not allowed to modify node "node-b""#,
    );
    refused(
        call(&a, "PATCH", "/api/v1/nodes/node-b/status", Some(json!({ "status": { "capacity": { "pods": "1" } } }))),
        r#"nodes "node-b" is forbidden: node "node-a" is not allowed to modify node "node-b""#,
    );

    // Pods: status and deletion of its own only; it creates mirror pods only.
    create(&s, pod("pod-a", "node-a", json!({})));
    create(&s, pod("pod-b", "node-b", json!({})));
    let pods = "/api/v1/namespaces/default/pods";
    let status = json!({ "status": { "conditions": [{ "type": "Ready", "status": "False" }] } });
    let mut last = (0, Value::Null);
    assert!(
        wait_until(WAIT, || {
            last = call(&a, "PATCH", &format!("{pods}/pod-a/status"), Some(status.clone()));
            last.0 == 200
        }),
        "{last:?}"
    );
    refused(
        call(&a, "PATCH", &format!("{pods}/pod-b/status"), Some(status.clone())),
        r#"pods "pod-b" is forbidden: node "node-a" can only update pod status for pods with spec.nodeName set to itself"#,
    );
    refused(
        call(&a, "DELETE", &format!("{pods}/pod-b"), None),
        r#"pods "pod-b" is forbidden: node "node-a" can only delete pods with spec.nodeName set to itself"#,
    );
    let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "pod-b", "namespace": "default" } });
    refused(
        call(&a, "POST", &format!("{pods}/pod-b/eviction"), Some(eviction)),
        r#"pods "pod-b" is forbidden: node node-a can only evict pods with spec.nodeName set to itself"#,
    );
    assert_eq!(s.kubectl_ok(&["get", "pod", "pod-b", "-o", "jsonpath={.metadata.name}"]), "pod-b");
    refused(
        call(&a, "POST", pods, Some(pod("sneaky", "node-a", json!({})))),
        r#"pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node-a" can only create mirror pods"#,
    );
    let node_uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let mut mirror = pod("static-web", "node-a", json!({}));
    mirror["metadata"]["annotations"] = json!({ "kubernetes.io/config.mirror": "hash" });
    mirror["metadata"]["ownerReferences"] =
        json!([{ "apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": node_uid, "controller": true }]);
    let mut with_secret = mirror.clone();
    with_secret["spec"]["volumes"] = json!([{ "name": "s", "secret": { "secretName": "x" } }]);
    refused(
        call(&a, "POST", pods, Some(with_secret)),
        r#"pods "static-web" is forbidden: node "node-a" can not create pods that reference secrets"#,
    );
    let (code, made) = call(&a, "POST", pods, Some(mirror));
    assert_eq!(code, 201, "{made:#}");
    assert_eq!(call(&a, "DELETE", &format!("{pods}/static-web"), None).0, 200);

    // Leases: its own in kube-node-lease only.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let lease = |name: &str| json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": { "name": name }, "spec": { "holderIdentity": name } });
    assert_eq!(call(&a, "POST", leases, Some(lease("node-a"))).0, 201);
    assert_eq!(
        call(&a, "PATCH", &format!("{leases}/node-a"), Some(json!({ "spec": { "leaseDurationSeconds": 40 } }))).0,
        200
    );
    refused(
        call(&a, "POST", leases, Some(lease("node-b"))),
        r#"leases.coordination.k8s.io "node-b" is forbidden: can only access node lease with the same name as the requesting node"#,
    );
    assert_eq!(s.http_json("POST", leases, Some(&lease("node-b"))).0, 201);
    refused(
        call(&a, "DELETE", &format!("{leases}/node-b"), None),
        r#"leases.coordination.k8s.io "node-b" is forbidden: User "system:node:node-a" cannot delete resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node"#,
    );
    assert_eq!(
        s.kubectl_ok(&["get", "lease", "-n", "kube-node-lease", "node-b", "-o", "jsonpath={.metadata.name}"]),
        "node-b"
    );
    refused(
        call(&a, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", Some(lease("node-a"))),
        r#"leases.coordination.k8s.io is forbidden: User "system:node:node-a" cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "default": can only access leases in the "kube-node-lease" system namespace"#,
    );

    // Tokens: for the ServiceAccount of its pods, bound to one of its pods.
    let pod_uid = |name: &str| s.kubectl_ok(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"]);
    let token_request = |pod: &str, uid: &str| {
        json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": { "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid } } })
    };
    let tokens = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let (code, answer) = call(&a, "POST", tokens, Some(token_request("pod-a", &pod_uid("pod-a"))));
    assert_eq!(code, 201, "{answer:#}");
    assert!(answer["status"]["token"].as_str().is_some_and(|t| !t.is_empty()));
    refused(
        call(&a, "POST", tokens, Some(token_request("pod-b", &pod_uid("pod-b")))),
        r#"serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node"#,
    );
    refused(
        call(
            &a,
            "POST",
            tokens,
            Some(json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {} })),
        ),
        r#"serviceaccounts "default" is forbidden: node requested token not bound to a pod"#,
    );
    refused(
        call(&a, "POST", tokens, Some(token_request("pod-a", "0000"))),
        r#"serviceaccounts "default" is forbidden: the UID in the bound object reference (0000) does not match the UID in record. The object might have been deleted and then recreated"#,
    );
    refused(
        call(
            &a,
            "POST",
            "/api/v1/namespaces/kube-system/serviceaccounts/default/token",
            Some(token_request("pod-a", "0000")),
        ),
        r#"serviceaccounts "default" is forbidden: User "system:node:node-a" cannot create resource "serviceaccounts/token" in API group "" in the namespace "kube-system": no relationship found between node 'node-a' and this object"#,
    );

    // The admin and other users are not restricted by any of this.
    s.kubectl_ok(&["label", "node", "node-a", "node-restriction.kubernetes.io/trusted=yes"]);
    s.kubectl_ok(&["delete", "pod", "pod-b", "--grace-period=0", "--force"]);
}

#[test]
fn the_node_token_user_reads_no_secrets_and_the_client_ca_reader_keeps_working() {
    let mut s = server();
    // An older berth bound the node token to the whole system:node role: reconciling at
    // start deletes that binding (as berth made it, marked for auto-update).
    let retired = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": "berth:node-agent",
            "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
        },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node" },
        "subjects": [{ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:node-agent" }],
    });
    create(&s, retired);
    assert!(s.signal_and_wait("TERM").success());
    s.restart();
    let mut gone = None;
    assert!(
        wait_until(WAIT, || {
            let out = s.kubectl(&["get", "clusterrolebinding", "berth:node-agent"]);
            let found = String::from_utf8_lossy(&out.stderr).contains("NotFound");
            gone = Some(out);
            found
        }),
        "{gone:?}"
    );

    // The shared node token is no node identity and no member of system:nodes: it holds
    // what hollow nodes do, and may still ask for a node certificate.
    let token = std::fs::read_to_string(s.dir.path().join("token")).unwrap().trim().to_string();
    let agent = s.client_as(Credentials::Bearer(token));
    assert_eq!(get(&agent, "/api/v1/nodes").0, 200);
    assert_eq!(get(&agent, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a").0, 200);
    assert_eq!(get(&agent, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases").0, 200);
    assert_eq!(get(&agent, "/apis/certificates.k8s.io/v1/certificatesigningrequests").0, 200);
    create(
        &s,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": "default"}, "stringData": {"k": "v"}}),
    );
    let user = r#"User "system:node-agent""#;
    refused(
        get(&agent, "/api/v1/namespaces/default/secrets/s1"),
        &format!(
            r#"secrets "s1" is forbidden: {user} cannot get resource "secrets" in API group "" in the namespace "default""#
        ),
    );
    refused(
        get(&agent, "/api/v1/namespaces/kube-system/secrets"),
        &format!(
            r#"secrets is forbidden: {user} cannot list resource "secrets" in API group "" in the namespace "kube-system""#
        ),
    );
    refused(
        get(&agent, "/api/v1/secrets?watch=true"),
        &format!(
            r#"secrets is forbidden: {user} cannot watch resource "secrets" in API group "" at the cluster scope"#
        ),
    );
    refused(
        get(&agent, "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"),
        &format!(
            r#"configmaps "extension-apiserver-authentication" is forbidden: {user} cannot get resource "configmaps" in API group "" in the namespace "kube-system""#
        ),
    );
    refused(
        get(&agent, "/api/v1/namespaces/default/persistentvolumeclaims"),
        &format!(
            r#"persistentvolumeclaims is forbidden: {user} cannot list resource "persistentvolumeclaims" in API group "" in the namespace "default""#
        ),
    );
    refused(
        get(&agent, "/apis/coordination.k8s.io/v1/namespaces/default/leases"),
        &format!(
            r#"leases.coordination.k8s.io is forbidden: {user} cannot list resource "leases" in API group "coordination.k8s.io" in the namespace "default""#
        ),
    );
    // kubectl lists the same rules: no secrets, configmaps or claims anywhere.
    let as_token = ["--as", "system:node-agent", "--as-group", "berth:hollow-nodes"];
    for ns in ["default", "kube-system", "kube-node-lease"] {
        let list = s.kubectl_ok(&[&["auth", "can-i", "--list", "-n", ns][..], &as_token[..]].concat());
        for resource in ["secrets", "configmaps", "persistentvolumeclaims", "*.*"] {
            assert!(!list.lines().any(|l| l.starts_with(resource)), "{ns}: {resource} in\n{list}");
        }
        assert!(list.lines().any(|l| l.starts_with("nodes/status ")), "{list}");
        assert_eq!(
            list.lines().any(|l| l.starts_with("leases.coordination.k8s.io ")),
            ns == "kube-node-lease",
            "{list}"
        );
    }
    let can = s.kubectl(&[&["auth", "can-i", "get", "secrets", "-A"][..], &as_token[..]].concat());
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    // Nodes read the client CA the server publishes (their agents trust it).
    let a = node(&s, "node-a");
    let ca = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
    let mut last = (0, Value::Null);
    assert!(
        wait_until(WAIT, || {
            last = get(&a, ca);
            last.0 == 200
        }),
        "{last:?}"
    );
    assert!(last.1["data"]["client-ca-file"].as_str().is_some_and(|c| c.contains("BEGIN CERTIFICATE")));
    assert_eq!(get(&a, "/api/v1/namespaces/kube-system/configmaps/coredns").0, 403);
    // The system:node binding names nobody.
    let binding: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "clusterrolebinding", "system:node", "-o", "json"])).unwrap();
    assert!(binding["subjects"].as_array().is_none_or(|l| l.is_empty()), "{binding:#}");
}

#[test]
fn authorization_modes_are_a_list() {
    let bin = Path::new(env!("CARGO_BIN_EXE_berth"));
    // RBAC alone: nodes get nothing (no binding names them), as in Kubernetes.
    let s = TestServer::start_with(bin, &["--authorization-mode", "RBAC"]);
    let a = node(&s, "node-a");
    refused(
        get(&a, "/api/v1/services"),
        r#"services is forbidden: User "system:node:node-a" cannot list resource "services" in API group "" at the cluster scope"#,
    );
    drop(s);
    for bad in ["Node,Node", "Webhook", ""] {
        let out = std::process::Command::new(bin)
            .args(["server", "--authorization-mode", bad, "--data-dir", "/nonexistent/berth-test"])
            .output()
            .expect("run berth");
        assert!(!out.status.success(), "{bad:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--authorization-mode"), "{bad:?}: {stderr}");
    }
}
