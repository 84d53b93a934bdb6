//! RBAC authorization end to end: users are client certificates issued from the test
//! server's client CA, driven with the real kubectl: 403s worded as Kubernetes words them,
//! namespace isolation, the default roles and their aggregation, escalation prevention,
//! `kubectl auth can-i` (with `--list` and `--as`) and impersonation.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use berth_testkit::{Credentials, KUBECTL, TestServer, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// A user of the test server: a client certificate (CN `name`, O `groups`) in its own kubeconfig.
struct User {
    kubeconfig: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn user(s: &TestServer, name: &str, groups: &[&str]) -> User {
    let pki = berth_pki::Pki::load_or_create(&s.dir.path().join("tls")).expect("server pki");
    let cert = pki.leaf(&berth_pki::LeafSpec::client(&format!("test-{name}"), name, groups)).expect("client cert");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let kc = s.kubeconfig();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: u\n  context:\n    cluster: berth\n    user: u\n    namespace: default\ncurrent-context: u\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        kc.server,
        b64(&kc.ca_pem),
        b64(&cert.cert_pem),
        b64(&cert.key_pem)
    );
    let path = s.dir.path().join(format!("kubeconfig-{name}.yaml"));
    std::fs::write(&path, text).expect("user kubeconfig");
    User { kubeconfig: path, cert_pem: cert.cert_pem, key_pem: cert.key_pem }
}

fn kubectl_as(s: &TestServer, u: &User, args: &[&str]) -> Output {
    Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&u.kubeconfig)
        .args(args)
        .env("HOME", s.dir.path())
        .env("KUBECACHEDIR", s.dir.path().join(format!("kubecache-{}", u.kubeconfig.display().to_string().len())))
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kubectl failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "kubectl should have failed; stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kubectl auth can-i` as `u`: true for "yes".
fn can_i(s: &TestServer, u: &User, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&kubectl_as(s, u, &all).stdout).trim() == "yes"
}

/// A raw SelfSubjectAccessReview as `u` (kubectl sends no group for a type the server does not serve).
fn ssar(s: &TestServer, u: &User, namespace: &str, verb: &str, group: &str, resource: &str) -> bool {
    let client = s.client_as(Credentials::Certificate { cert_pem: u.cert_pem.clone(), key_pem: u.key_pem.clone() });
    let body = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "namespace": namespace, "verb": verb, "group": group, "resource": resource } }
    });
    let r = client
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some("application/json"),
            &serde_json::to_vec(&body).unwrap(),
        )
        .expect("review");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["status"]["allowed"] == true
}

fn apply(s: &TestServer, yaml: &str) {
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(yaml));
}

#[test]
fn forbidden_is_worded_as_kubernetes_and_namespaces_are_isolated() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["create", "namespace", "team-b"]);
    s.kubectl_ok(&["-n", "team-b", "create", "configmap", "cfg", "--from-literal=k=v"]);
    let alice = user(&s, "alice", &["devs"]);

    // No binding at all: 403 with Kubernetes' message for each scope.
    let e = err(&kubectl_as(&s, &alice, &["-n", "team-b", "get", "pods"]));
    assert!(
        e.contains(
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team-b""#
        ),
        "{e}"
    );
    let e = err(&kubectl_as(&s, &alice, &["get", "nodes"]));
    assert!(
        e.contains(
            r#"nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
        ),
        "{e}"
    );
    let e = err(&kubectl_as(&s, &alice, &["-n", "team-b", "get", "configmap", "cfg"]));
    assert!(
        e.contains(r#"configmaps "cfg" is forbidden: User "alice" cannot get resource "configmaps" in API group "" in the namespace "team-b""#),
        "{e}"
    );
    // The raw Status: 403, reason Forbidden, details.
    let client =
        s.client_as(Credentials::Certificate { cert_pem: alice.cert_pem.clone(), key_pem: alice.key_pem.clone() });
    let r = client.request("GET", "/apis/apps/v1/namespaces/team-b/deployments/web/scale", None, &[]).unwrap();
    assert_eq!(r.status, 403);
    let status = r.json();
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" in the namespace "team-b""#
    );
    assert_eq!(status["details"]["group"], "apps");
    assert_eq!(status["details"]["kind"], "deployments");
    let r = client.request("GET", "/metrics", None, &[]).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], r#"forbidden: User "alice" cannot get path "/metrics""#);
    // Discovery and public info are allowed to every authenticated user.
    assert_eq!(client.request("GET", "/api", None, &[]).unwrap().status, 200);
    assert_eq!(client.request("GET", "/apis/apps/v1", None, &[]).unwrap().status, 200);
    assert_eq!(client.request("GET", "/version", None, &[]).unwrap().status, 200);
    assert_eq!(client.request("GET", "/healthz", None, &[]).unwrap().status, 200);

    // A namespace admin (group binding to `admin` in team-a) works there, not in team-b.
    s.kubectl_ok(&["-n", "team-a", "create", "rolebinding", "devs-admin", "--clusterrole=admin", "--group=devs"]);
    assert!(wait_until(WAIT, || can_i(&s, &alice, &["-n", "team-a", "create", "deployments"])));
    ok(&kubectl_as(&s, &alice, &["-n", "team-a", "create", "configmap", "mine", "--from-literal=a=b"]));
    ok(&kubectl_as(&s, &alice, &["-n", "team-a", "get", "configmaps,secrets,pods"]));
    ok(&kubectl_as(&s, &alice, &["-n", "team-a", "create", "deployment", "web", "--image=busybox"]));
    let e = err(&kubectl_as(&s, &alice, &["-n", "team-b", "get", "configmaps"]));
    assert!(e.contains(r#"in the namespace "team-b""#), "{e}");
    let e = err(&kubectl_as(&s, &alice, &["get", "namespaces"]));
    assert!(e.contains("at the cluster scope"), "{e}");
    // Bad input: a binding to a role that does not exist grants nothing (and does not break the index).
    s.kubectl_ok(&["-n", "team-b", "create", "rolebinding", "dangling", "--role=missing", "--group=devs"]);
    assert!(!can_i(&s, &alice, &["-n", "team-b", "get", "pods"]));
}

#[test]
fn view_cannot_read_secrets_and_aggregation_widens_it() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["-n", "team-a", "create", "secret", "generic", "s", "--from-literal=k=v"]);
    s.kubectl_ok(&["-n", "team-a", "create", "rolebinding", "bob-view", "--clusterrole=view", "--user=bob"]);
    let bob = user(&s, "bob", &[]);
    assert!(wait_until(WAIT, || can_i(&s, &bob, &["-n", "team-a", "list", "pods"])));
    ok(&kubectl_as(&s, &bob, &["-n", "team-a", "get", "pods,services,deployments,configmaps"]));
    let e = err(&kubectl_as(&s, &bob, &["-n", "team-a", "get", "secret", "s"]));
    assert!(
        e.contains(r#"secrets "s" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "team-a""#),
        "{e}"
    );
    let e = err(&kubectl_as(&s, &bob, &["-n", "team-a", "delete", "configmap", "nothing"]));
    assert!(e.contains(r#"configmaps "nothing" is forbidden: User "bob" cannot delete resource "configmaps""#), "{e}");
    assert!(!ssar(&s, &bob, "team-a", "get", "example.com", "crontabs"));

    // A ClusterRole labelled aggregate-to-view widens view (and so edit and admin).
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: crontab-reader
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: ["example.com"]
  resources: ["crontabs"]
  verbs: ["get", "list", "watch"]
"#,
    );
    assert!(
        wait_until(WAIT, || s.kubectl_ok(&["get", "clusterrole", "view", "-o", "json"]).contains("crontabs")),
        "view was not widened:\n{}",
        s.kubectl_ok(&["get", "clusterrole", "view", "-o", "yaml"])
    );
    assert!(wait_until(WAIT, || s.kubectl_ok(&["get", "clusterrole", "admin", "-o", "json"]).contains("crontabs")));
    assert!(wait_until(WAIT, || ssar(&s, &bob, "team-a", "list", "example.com", "crontabs")));
    // Removing the label takes the rules away again.
    s.kubectl_ok(&["label", "clusterrole", "crontab-reader", "rbac.authorization.k8s.io/aggregate-to-view-"]);
    assert!(wait_until(WAIT, || !s.kubectl_ok(&["get", "clusterrole", "view", "-o", "json"]).contains("crontabs")));
    assert!(wait_until(WAIT, || !ssar(&s, &bob, "team-a", "list", "example.com", "crontabs")));
}

#[test]
fn escalation_is_refused() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["-n", "team-a", "create", "rolebinding", "carol-admin", "--clusterrole=admin", "--user=carol"]);
    let carol = user(&s, "carol", &["ops"]);
    assert!(wait_until(WAIT, || can_i(&s, &carol, &["-n", "team-a", "create", "roles"])));
    // A role with rules she holds in team-a: fine.
    ok(&kubectl_as(
        &s,
        &carol,
        &["-n", "team-a", "create", "role", "pod-reader", "--verb=get,list", "--resource=pods"],
    ));
    // Rules she does not hold (nodes, cluster-scoped; or another group's resources): refused with the rules listed.
    let e =
        err(&kubectl_as(&s, &carol, &["-n", "team-a", "create", "role", "nodes", "--verb=get", "--resource=nodes"]));
    assert!(
        e.contains(r#"roles.rbac.authorization.k8s.io "nodes" is forbidden: user "carol" (groups=["ops" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#),
        "{e}"
    );
    assert!(e.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#), "{e}");
    // A binding to cluster-admin (she holds far less): refused; to view (which she holds): fine.
    let e = err(&kubectl_as(
        &s,
        &carol,
        &["-n", "team-a", "create", "rolebinding", "root", "--clusterrole=cluster-admin", "--user=carol"],
    ));
    assert!(e.contains(r#"rolebindings.rbac.authorization.k8s.io "root" is forbidden"#), "{e}");
    assert!(e.contains("is attempting to grant RBAC permissions not currently held"), "{e}");
    ok(&kubectl_as(
        &s,
        &carol,
        &["-n", "team-a", "create", "rolebinding", "dave-view", "--clusterrole=view", "--user=dave"],
    ));
    // Widening her own admin binding's role by editing a ClusterRole: not even allowed to try.
    let e = err(&kubectl_as(&s, &carol, &["create", "clusterrole", "mine", "--verb=get", "--resource=pods"]));
    assert!(e.contains("at the cluster scope"), "{e}");
    // With `bind` on cluster-admin granted in team-a, the same binding goes through.
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: binder, namespace: team-a }
rules:
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames: ["cluster-admin"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: carol-binder, namespace: team-a }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: binder }
subjects: [{ kind: User, name: carol, apiGroup: rbac.authorization.k8s.io }]
"#,
    );
    assert!(wait_until(WAIT, || can_i(&s, &carol, &["-n", "team-a", "bind", "clusterroles/cluster-admin"])));
    ok(&kubectl_as(
        &s,
        &carol,
        &["-n", "team-a", "create", "rolebinding", "root", "--clusterrole=cluster-admin", "--user=erin"],
    ));
    // Still not in another namespace.
    s.kubectl_ok(&["create", "namespace", "team-b"]);
    s.kubectl_ok(&["-n", "team-b", "create", "rolebinding", "carol-admin", "--clusterrole=admin", "--user=carol"]);
    assert!(wait_until(WAIT, || can_i(&s, &carol, &["-n", "team-b", "create", "rolebindings"])));
    let e = err(&kubectl_as(
        &s,
        &carol,
        &["-n", "team-b", "create", "rolebinding", "root", "--clusterrole=cluster-admin", "--user=erin"],
    ));
    assert!(e.contains("is attempting to grant RBAC permissions not currently held"), "{e}");
}

#[test]
fn can_i_list_as_and_impersonation() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["-n", "team-a", "create", "rolebinding", "frank-edit", "--clusterrole=edit", "--user=frank"]);
    let frank = user(&s, "frank", &[]);
    assert!(wait_until(WAIT, || can_i(&s, &frank, &["-n", "team-a", "create", "deployments.apps"])));
    assert!(can_i(&s, &frank, &["-n", "team-a", "get", "secrets"]));
    assert!(!can_i(&s, &frank, &["-n", "team-a", "create", "roles"]));
    assert!(!can_i(&s, &frank, &["-n", "default", "get", "pods"]));
    assert!(!can_i(&s, &frank, &["get", "nodes"]));
    let out = kubectl_as(&s, &frank, &["auth", "can-i", "get", "nodes"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    // --list: the rules that apply in the namespace.
    let list = ok(&kubectl_as(&s, &frank, &["auth", "can-i", "--list", "-n", "team-a"]));
    assert!(list.contains("deployments.apps"), "{list}");
    assert!(list.contains("selfsubjectaccessreviews.authorization.k8s.io"), "{list}");
    let list = ok(&kubectl_as(&s, &frank, &["auth", "can-i", "--list", "-n", "default"]));
    assert!(!list.contains("deployments.apps"), "{list}");
    // The admin asks about frank (SubjectAccessReview via impersonation of the check).
    assert_eq!(s.kubectl_ok(&["auth", "can-i", "create", "pods", "-n", "team-a", "--as", "frank"]).trim(), "yes");
    assert_eq!(s.kubectl(&["auth", "can-i", "create", "pods", "-n", "default", "--as", "frank"]).stdout, b"no\n");
    // A SubjectAccessReview by the admin.
    let (code, review) = s.http_json(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(&serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": { "user": "frank", "resourceAttributes": { "namespace": "team-a", "verb": "delete", "resource": "pods" } }
        })),
    );
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["allowed"], true);
    let (code, review) = s.http_json(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(&serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": { "resourceAttributes": { "verb": "get", "resource": "pods" } }
        })),
    );
    assert_eq!(code, 422, "{review}");

    // frank may not impersonate: 403, worded as Kubernetes does.
    let e = err(&kubectl_as(&s, &frank, &["get", "pods", "-n", "team-a", "--as", "admin"]));
    assert!(
        e.contains(r#"users "admin" is forbidden: User "frank" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{e}"
    );
    let e = err(&kubectl_as(&s, &frank, &["get", "pods", "-n", "team-a", "--as", "x", "--as-group", "system:masters"]));
    assert!(e.contains("cannot impersonate"), "{e}");
    // edit grants impersonating service accounts of its namespace (as in Kubernetes).
    s.kubectl_ok(&["-n", "team-a", "create", "serviceaccount", "robot"]);
    let e =
        err(&kubectl_as(&s, &frank, &["get", "pods", "-n", "team-a", "--as", "system:serviceaccount:team-a:robot"]));
    assert!(
        e.contains(r#"pods is forbidden: User "system:serviceaccount:team-a:robot" cannot list resource "pods""#),
        "{e}"
    );
    // Granted the verb, impersonation works and the request runs as the impersonated user.
    apply(
        &s,
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: impersonate-grace }
rules:
- apiGroups: [""]
  resources: ["users"]
  verbs: ["impersonate"]
  resourceNames: ["grace"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: frank-impersonates-grace }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-grace }
subjects: [{ kind: User, name: frank, apiGroup: rbac.authorization.k8s.io }]
"#,
    );
    s.kubectl_ok(&["-n", "default", "create", "rolebinding", "grace-view", "--clusterrole=view", "--user=grace"]);
    assert!(wait_until(WAIT, || kubectl_as(&s, &frank, &["get", "pods", "-n", "default", "--as", "grace"])
        .status
        .success()));
    let whoami =
        ok(&kubectl_as(&s, &frank, &["auth", "whoami", "--as", "grace", "-o", "jsonpath={.status.userInfo.username}"]));
    assert_eq!(whoami, "grace");
    let e = err(&kubectl_as(&s, &frank, &["get", "pods", "-n", "team-a", "--as", "grace"]));
    assert!(e.contains(r#"User "grace" cannot list resource "pods""#), "{e}");
}

#[test]
fn default_roles_exist_and_come_back_after_restart() {
    let mut s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    let roles = s.kubectl_ok(&["get", "clusterroles", "-o", "name"]);
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node",
        "system:aggregate-to-admin",
        "system:aggregate-to-edit",
        "system:aggregate-to-view",
    ] {
        assert!(
            roles.lines().any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{name}")),
            "{name} in {roles}"
        );
    }
    let bindings = s.kubectl_ok(&["get", "clusterrolebindings", "-o", "name"]);
    assert!(bindings.contains("clusterrolebinding.rbac.authorization.k8s.io/system:public-info-viewer"), "{bindings}");
    let view = s.kubectl_ok(&["get", "clusterrole", "view", "-o", "jsonpath={.metadata.labels}"]);
    assert!(view.contains(r#""rbac.authorization.k8s.io/aggregate-to-edit":"true""#), "{view}");
    // A deleted default role, and a rule removed from another, come back at the next start;
    // a rule a user added stays.
    s.kubectl_ok(&["delete", "clusterrole", "system:discovery"]);
    s.kubectl_ok(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/rules","value":[{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get"]}]}]"#,
    ]);
    s.signal_and_wait("TERM");
    s.restart();
    s.kubectl_ok(&["get", "clusterrole", "system:discovery"]);
    let basic = s.kubectl_ok(&["get", "clusterrole", "system:basic-user", "-o", "json"]);
    assert!(basic.contains("selfsubjectaccessreviews") && basic.contains("widgets"), "{basic}");
    // And the components kept working through it: a Deployment gets its pods.
    s.kubectl_ok(&["create", "deployment", "web", "--image=busybox", "--replicas=2"]);
    assert!(wait_until(WAIT, || s.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]).lines().count() == 2));
}

/// `kubectl auth can-i ARGS` as the test server's admin (with `--as` in ARGS): true for "yes".
fn admin_can_i(s: &TestServer, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&s.kubectl(&all).stdout).trim() == "yes"
}

#[test]
fn kubernetes_component_roles_are_bootstrapped_and_bound() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    // kube-proxy's identity is bound to system:node-proxier.
    assert!(admin_can_i(&s, &["list", "endpointslices.discovery.k8s.io", "--as=system:kube-proxy"]));
    assert!(admin_can_i(&s, &["watch", "services", "--as=system:kube-proxy", "-A"]));
    assert!(!admin_can_i(&s, &["create", "services", "--as=system:kube-proxy"]));
    // system:auth-delegator is unbound until someone binds it.
    assert!(!admin_can_i(&s, &["create", "tokenreviews.authentication.k8s.io", "--as=x"]));
    s.kubectl_ok(&["create", "clusterrolebinding", "x-delegator", "--clusterrole=system:auth-delegator", "--user=x"]);
    assert!(wait_until(WAIT, || admin_can_i(&s, &["create", "tokenreviews.authentication.k8s.io", "--as=x"])));
    assert!(admin_can_i(&s, &["create", "subjectaccessreviews.authorization.k8s.io", "--as=x"]));
    assert!(!admin_can_i(&s, &["get", "secrets", "--as=x"]));
    // The per-controller roles exist, marked for reconciliation, bound to kube-system's
    // ServiceAccounts.
    let role = s.kubectl_ok(&["get", "clusterrole", "system:controller:replicaset-controller", "-o", "json"]);
    let role: serde_json::Value = serde_json::from_str(&role).unwrap();
    assert_eq!(role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true");
    assert!(role["rules"].to_string().contains("replicasets/status"), "{role}");
    assert!(admin_can_i(
        &s,
        &[
            "update",
            "replicasets.apps/status",
            "-n",
            "web",
            "--as=system:serviceaccount:kube-system:replicaset-controller"
        ]
    ));
    assert!(!admin_can_i(
        &s,
        &["update", "deployments.apps", "-n", "web", "--as=system:serviceaccount:kube-system:replicaset-controller"]
    ));
}
