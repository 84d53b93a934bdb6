//! The garbage collector against the real server: `kubectl delete --cascade=background|
//! foreground|orphan`, dangling references, cluster-scoped owners and custom resources.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const WAIT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")))
}

fn create(s: &TestServer, path: &str, body: Value) -> Value {
    let (code, v) = s.http_json("POST", path, Some(&body));
    assert_eq!(code, 201, "{v}");
    v
}

fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({ "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block })
}

fn configmap(s: &TestServer, name: &str, owners: &[Value], finalizers: &[&str]) -> Value {
    create(
        s,
        CMS,
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "ownerReferences": owners, "finalizers": finalizers } }),
    )
}

fn get(s: &TestServer, path: &str) -> Option<Value> {
    let (code, v) = s.http_json("GET", path, None);
    match code {
        200 => Some(v),
        404 => None,
        _ => panic!("GET {path}: {code} {v}"),
    }
}

fn gone(s: &TestServer, path: &str) -> bool {
    wait_until(WAIT, || get(s, path).is_none())
}

#[test]
fn background_deletion_removes_dependents_and_dangling_references() {
    let s = server();
    let owner = configmap(&s, "owner", &[], &[]);
    configmap(&s, "child", &[owner_ref(&owner, false)], &[]);
    let grandchild_owner = get(&s, &format!("{CMS}/child")).unwrap();
    configmap(&s, "grandchild", &[owner_ref(&grandchild_owner, false)], &[]);
    // With a live owner, the dependent stays.
    std::thread::sleep(Duration::from_secs(2));
    assert!(get(&s, &format!("{CMS}/child")).is_some());
    s.kubectl_ok(&["delete", "configmap", "owner"]);
    assert!(gone(&s, &format!("{CMS}/child")), "child not collected:\n{}", s.log());
    assert!(gone(&s, &format!("{CMS}/grandchild")), "grandchild not collected");

    // A reference to an owner that never existed, and one whose name now has another UID.
    let fake = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "ghost", "uid": "00000000-0000-0000-0000-000000000001" } });
    configmap(&s, "orphaned-at-birth", &[owner_ref(&fake, false)], &[]);
    let real = configmap(&s, "reborn", &[], &[]);
    let mut stale = owner_ref(&real, false);
    stale["uid"] = json!("00000000-0000-0000-0000-000000000002");
    configmap(&s, "stale-ref", &[stale], &[]);
    assert!(gone(&s, &format!("{CMS}/orphaned-at-birth")));
    assert!(gone(&s, &format!("{CMS}/stale-ref")));
    assert!(get(&s, &format!("{CMS}/reborn")).is_some(), "the unrelated owner-named object stays");

    // Two owners, one goes: the dependent stays and loses that reference only.
    let a = configmap(&s, "a", &[], &[]);
    let b = configmap(&s, "b", &[], &[]);
    configmap(&s, "shared", &[owner_ref(&a, false), owner_ref(&b, false)], &[]);
    s.kubectl_ok(&["delete", "configmap", "a"]);
    assert!(
        wait_until(WAIT, || get(&s, &format!("{CMS}/shared"))
            .is_some_and(|v| v["metadata"]["ownerReferences"].as_array().is_some_and(|l| l.len() == 1))),
        "the reference to the deleted owner was not removed"
    );
    let shared = get(&s, &format!("{CMS}/shared")).unwrap();
    assert_eq!(shared["metadata"]["ownerReferences"][0]["name"], "b");
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let s = server();
    let owner = configmap(&s, "owner", &[], &[]);
    // The dependent holds a finalizer of its own, so it lingers while being deleted.
    configmap(&s, "blocker", &[owner_ref(&owner, true)], &["example.com/hold"]);
    configmap(&s, "free", &[owner_ref(&owner, false)], &[]);
    s.kubectl_ok(&["delete", "configmap", "owner", "--cascade=foreground", "--wait=false"]);
    let o = get(&s, &format!("{CMS}/owner")).expect("owner waits for its dependents");
    assert!(o["metadata"]["deletionTimestamp"].is_string(), "{o}");
    assert_eq!(o["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    // The collector deletes the dependents; the blocking one waits on its finalizer.
    assert!(gone(&s, &format!("{CMS}/free")), "non-blocking dependent not deleted:\n{}", s.log());
    assert!(wait_until(WAIT, || get(&s, &format!("{CMS}/blocker"))
        .is_some_and(|v| v["metadata"]["deletionTimestamp"].is_string())));
    std::thread::sleep(Duration::from_secs(2));
    assert!(get(&s, &format!("{CMS}/owner")).is_some(), "owner must wait for the blocking dependent");
    s.kubectl_ok(&[
        "patch",
        "configmap",
        "blocker",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(gone(&s, &format!("{CMS}/blocker")));
    assert!(gone(&s, &format!("{CMS}/owner")), "owner's foregroundDeletion finalizer not removed:\n{}", s.log());
}

#[test]
fn orphan_deletion_keeps_dependents_without_the_reference() {
    let s = server();
    let owner = configmap(&s, "owner", &[], &[]);
    let other = configmap(&s, "other", &[], &[]);
    configmap(&s, "kept", &[owner_ref(&owner, true), owner_ref(&other, false)], &[]);
    configmap(&s, "kept-alone", &[owner_ref(&owner, false)], &[]);
    s.kubectl_ok(&["delete", "configmap", "owner", "--cascade=orphan"]);
    assert!(gone(&s, &format!("{CMS}/owner")), "orphan finalizer not removed:\n{}", s.log());
    let kept = get(&s, &format!("{CMS}/kept")).expect("dependent kept");
    assert_eq!(kept["metadata"]["ownerReferences"].as_array().map(Vec::len), Some(1), "{kept}");
    assert_eq!(kept["metadata"]["ownerReferences"][0]["name"], "other");
    let alone = get(&s, &format!("{CMS}/kept-alone")).expect("dependent kept");
    assert!(
        alone["metadata"].get("ownerReferences").is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
        "{alone}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(get(&s, &format!("{CMS}/kept-alone")).is_some(), "an orphaned dependent must not be collected");
}

#[test]
fn cluster_scoped_owners_and_custom_resources() {
    let s = server();
    // A cluster-scoped owner of a namespaced dependent.
    let role = create(
        &s,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": { "name": "owner-role" }, "rules": [] }),
    );
    configmap(&s, "of-role", &[owner_ref(&role, false)], &[]);
    s.kubectl_ok(&["delete", "clusterrole", "owner-role"]);
    assert!(gone(&s, &format!("{CMS}/of-role")), "dependent of a cluster-scoped owner not collected");

    // A custom resource created after the collector started: owner and dependent.
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(include_str!("data/widgets-crd.yaml")));
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    assert!(wait_until(WAIT, || s.http_json("GET", widgets, None).0 == 200));
    let w = create(
        &s,
        widgets,
        json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "parent" } }),
    );
    configmap(&s, "of-widget", &[owner_ref(&w, false)], &[]);
    let cm = configmap(&s, "widget-owner", &[], &[]);
    create(
        &s,
        widgets,
        json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "child", "ownerReferences": [owner_ref(&cm, false)] } }),
    );
    s.kubectl_ok(&["delete", "widget", "parent"]);
    assert!(gone(&s, &format!("{CMS}/of-widget")), "dependent of a custom resource not collected:\n{}", s.log());
    s.kubectl_ok(&["delete", "configmap", "widget-owner"]);
    assert!(gone(&s, &format!("{widgets}/child")), "custom resource dependent not collected:\n{}", s.log());
    // Foreground through a custom resource owner.
    let w2 =
        create(&s, widgets, json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "fg" } }));
    configmap(&s, "of-fg", &[owner_ref(&w2, true)], &[]);
    s.kubectl_ok(&["delete", "widget", "fg", "--cascade=foreground"]);
    assert!(get(&s, &format!("{CMS}/of-fg")).is_none());
    assert!(get(&s, &format!("{widgets}/fg")).is_none());
}
