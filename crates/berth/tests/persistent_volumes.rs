//! The persistentvolume-binder against the real `berth server`: claims bound to the
//! smallest fitting volume, waiting claims bound when a volume appears, one volume for one
//! claim when two race for it, Released/Failed volumes when claims go, and the built-in
//! `local-path` class: the default class given to claims without one, binding delayed until
//! a pod uses the claim, a hostPath volume provisioned on that pod's node and deleted with
//! the claim; storage object in-use protection (a claim used by a pod and a bound volume
//! stay Terminating until released) and the immutability of claims and volumes. The last
//! test runs a real pod on the server's own node (containerd, runc) that writes into its
//! provisioned volume, whose directory the node removes once the claim is deleted.

mod common;

use berth_testkit::{TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

fn create(s: &TestServer, object: Value) {
    s.kubectl_in_ok(&["create", "-f", "-"], Some(&object.to_string()));
}

fn volume(name: &str, size: &str, class: &str, policy: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": name },
        "spec": { "capacity": { "storage": size }, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                  "persistentVolumeReclaimPolicy": policy, "hostPath": { "path": format!("/tmp/berth-pv-{name}") } } })
}

fn claim(name: &str, size: &str, class: Option<&str>) -> Value {
    let mut c = json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": size } } } });
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

fn get(s: &TestServer, kind: &str, name: &str) -> Value {
    let out = s.kubectl(&["get", kind, name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until `cond` holds for the object; panics with the object.
fn wait_for(s: &TestServer, kind: &str, name: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(TIMEOUT, || {
        last = get(s, kind, name);
        cond(&last)
    });
    assert!(ok, "{kind} {name} never {what}: {last:#}");
    last
}

fn phase(v: &Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

/// Waits for an event about `name` with `reason` whose message contains `text`.
fn wait_event(s: &TestServer, name: &str, reason: &str, text: &str) -> Value {
    let path = format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let mut all = Vec::new();
    let mut found = None;
    let ok = wait_until(TIMEOUT, || {
        let (_, list) = s.http_json("GET", &path, None);
        all = list["items"].as_array().cloned().unwrap_or_default();
        found = all
            .iter()
            .find(|e| e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(text)))
            .cloned();
        found.is_some()
    });
    assert!(ok, "no {reason} event with {text:?} for {name}: {all:#?}");
    found.unwrap()
}

#[test]
fn claims_bind_to_the_smallest_fitting_volume_and_volumes_are_released_with_them() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    create(&s, volume("pv-small", "1Gi", "", "Retain"));
    create(&s, volume("pv-big", "5Gi", "", "Retain"));
    create(&s, volume("pv-gold", "2Gi", "gold", "Retain"));
    for name in ["pv-small", "pv-big", "pv-gold"] {
        wait_for(&s, "pv", name, "became Available", |v| phase(v) == "Available");
    }

    // The smallest volume of the claim's (empty) class that holds 500Mi.
    create(&s, claim("a", "500Mi", None));
    let a = wait_for(&s, "pvc", "a", "bound", |v| phase(v) == "Bound");
    assert_eq!(a["spec"]["volumeName"], "pv-small", "{a:#}");
    assert_eq!(a["status"]["capacity"]["storage"], "1Gi", "{a:#}");
    assert_eq!(a["status"]["accessModes"], json!(["ReadWriteOnce"]), "{a:#}");
    assert_eq!(a["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"], "yes", "{a:#}");
    assert_eq!(a["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"], "yes", "{a:#}");
    let pv = wait_for(&s, "pv", "pv-small", "bound", |v| phase(v) == "Bound");
    assert_eq!(pv["spec"]["claimRef"]["uid"], a["metadata"]["uid"], "{pv:#}");
    assert_eq!(pv["spec"]["claimRef"]["name"], "a", "{pv:#}");
    let columns = s.kubectl_ok(&["get", "pvc", "a", "--no-headers"]);
    assert!(columns.contains("Bound") && columns.contains("pv-small"), "{columns}");

    // Too big for every volume: Pending and says why, until a volume that fits appears.
    create(&s, claim("b", "10Gi", None));
    wait_event(&s, "b", "FailedBinding", "no persistent volumes available for this claim and no storage class is set");
    assert_eq!(phase(&get(&s, "pvc", "b")), "Pending");
    create(&s, volume("pv-huge", "20Gi", "", "Retain"));
    let b = wait_for(&s, "pvc", "b", "bound", |v| phase(v) == "Bound");
    assert_eq!(b["spec"]["volumeName"], "pv-huge", "{b:#}");
    assert_eq!(phase(&get(&s, "pv", "pv-big")), "Available", "the bigger free volume stays free");

    // Two claims race for one volume of their class: one gets it, the other waits.
    create(&s, volume("pv-race", "1Gi", "race", "Retain"));
    create(&s, claim("r1", "1Gi", Some("race")));
    create(&s, claim("r2", "1Gi", Some("race")));
    wait_for(&s, "pv", "pv-race", "bound", |v| phase(v) == "Bound");
    let bound: Vec<Value> = ["r1", "r2"]
        .iter()
        .map(|n| get(&s, "pvc", n))
        .filter(|c| phase(c) == "Bound" && c["spec"]["volumeName"] == "pv-race")
        .collect();
    assert_eq!(bound.len(), 1, "{bound:#?}");
    let loser = if bound[0]["metadata"]["name"] == "r1" { "r2" } else { "r1" };
    // No StorageClass "race" exists to provision another volume from.
    wait_event(&s, loser, "ProvisioningFailed", "storageclass.storage.k8s.io \"race\" not found");
    assert_eq!(phase(&get(&s, "pvc", loser)), "Pending");

    // Retain: the volume outlives its claim, Released, still naming it.
    s.kubectl_ok(&["delete", "pvc", "a"]);
    let pv = wait_for(&s, "pv", "pv-small", "released", |v| phase(v) == "Released");
    assert_eq!(pv["spec"]["claimRef"]["name"], "a", "{pv:#}");
    // A released volume is not given to a new claim.
    create(&s, claim("c", "1Gi", None));
    let c = wait_for(&s, "pvc", "c", "bound", |v| phase(v) == "Bound");
    assert_eq!(c["spec"]["volumeName"], "pv-big", "{c:#}");

    // Delete, on a volume no provisioner made: nothing can delete it, so it fails and says so.
    create(&s, volume("pv-delete", "3Gi", "manual", "Delete"));
    create(&s, claim("d", "3Gi", Some("manual")));
    wait_for(&s, "pvc", "d", "bound", |v| phase(v) == "Bound");
    s.kubectl_ok(&["delete", "pvc", "d"]);
    let pv = wait_for(&s, "pv", "pv-delete", "failed", |v| phase(v) == "Failed");
    assert!(pv["status"]["message"].as_str().unwrap_or("").contains("no deletable volume plugin"), "{pv:#}");
}

fn finalizers(v: &Value) -> Vec<&str> {
    v["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

#[test]
fn claims_in_use_and_bound_volumes_stay_until_released() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    create(&s, volume("pv-held", "1Gi", "held", "Retain"));
    create(&s, claim("held", "1Gi", Some("held")));
    let held = wait_for(&s, "pvc", "held", "bound", |v| phase(v) == "Bound");
    assert_eq!(finalizers(&held), ["kubernetes.io/pvc-protection"], "{held:#}");
    let pv = wait_for(&s, "pv", "pv-held", "bound", |v| phase(v) == "Bound");
    assert_eq!(finalizers(&pv), ["kubernetes.io/pv-protection"], "{pv:#}");

    // A pod uses the claim (no node runs it: a pod not yet scheduled counts too).
    create(
        &s,
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "holder", "namespace": "default" },
            "spec": { "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "held" } }],
                "containers": [{ "name": "c", "image": "localhost/busybox:1" }] } }),
    );
    s.kubectl_ok(&["delete", "pvc", "held", "--wait=false"]);
    s.kubectl_ok(&["delete", "pv", "pv-held", "--wait=false"]);
    // A claim and a volume nobody uses go at once, and show the controllers have looked.
    create(&s, volume("pv-free", "1Gi", "free", "Retain"));
    create(&s, claim("free", "1Gi", Some("unbound")));
    wait_for(&s, "pv", "pv-free", "protected", |v| !finalizers(v).is_empty());
    s.kubectl_ok(&["delete", "pvc", "free", "--timeout=60s"]);
    s.kubectl_ok(&["delete", "pv", "pv-free", "--timeout=60s"]);
    let held = get(&s, "pvc", "held");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held:#}");
    assert_eq!(finalizers(&held), ["kubernetes.io/pvc-protection"], "{held:#}");
    let described = s.kubectl_ok(&["describe", "pvc", "held"]);
    assert!(described.lines().any(|l| l.starts_with("Status:") && l.contains("Terminating")), "{described}");
    let pv = get(&s, "pv", "pv-held");
    assert_eq!(phase(&pv), "Bound", "{pv:#}");
    assert_eq!(finalizers(&pv), ["kubernetes.io/pv-protection"], "{pv:#}");

    // The pod goes: the claim goes, then the volume (Released) goes too.
    s.kubectl_ok(&["delete", "pod", "holder", "--grace-period=0", "--force"]);
    let gone = |kind: &str, name: &str| wait_until(TIMEOUT, || !s.kubectl(&["get", kind, name]).status.success());
    assert!(gone("pvc", "held"), "the claim outlived its last pod: {:#}", get(&s, "pvc", "held"));
    assert!(gone("pv", "pv-held"), "the volume outlived its claim: {:#}", get(&s, "pv", "pv-held"));
}

#[test]
fn bound_claims_and_volumes_keep_their_specs() {
    let s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    create(
        &s,
        json!({ "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": { "name": "fixed" },
            "provisioner": "kubernetes.io/no-provisioner" }),
    );
    create(&s, volume("pv-fixed", "2Gi", "fixed", "Retain"));
    create(&s, claim("fixed", "1Gi", Some("fixed")));
    let before = wait_for(&s, "pvc", "fixed", "bound", |v| phase(v) == "Bound");
    let rv = before["metadata"]["resourceVersion"].clone();

    // Anything but the request: 422 with Kubernetes' cause, nothing written.
    let err = s.kubectl_err(&["patch", "pvc", "fixed", "-p", r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#], None);
    assert!(
        err.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
        "{err}"
    );
    let mut changed = before.clone();
    changed["spec"]["storageClassName"] = json!("other");
    let (code, status) = s.http_json("PUT", "/api/v1/namespaces/default/persistentvolumeclaims/fixed", Some(&changed));
    assert_eq!(code, 422, "{status:#}");
    assert_eq!(status["reason"], "Invalid", "{status:#}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec", "{status:#}");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueForbidden", "{status:#}");
    // Shrinking below the bound capacity.
    let err = s.kubectl_err(
        &["patch", "pvc", "fixed", "-p", r#"{"spec":{"resources":{"requests":{"storage":"10Mi"}}}}"#],
        None,
    );
    assert!(
        err.contains("spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"),
        "{err}"
    );
    // Growing: only when the class allows expansion (403, as the PersistentVolumeClaimResize plugin).
    let grow = r#"{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}"#;
    let err = s.kubectl_err(&["patch", "pvc", "fixed", "-p", grow], None);
    assert!(err.contains("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"), "{err}");
    assert_eq!(get(&s, "pvc", "fixed")["metadata"]["resourceVersion"], rv, "a refused update wrote");
    s.kubectl_ok(&["patch", "storageclass", "fixed", "-p", r#"{"allowVolumeExpansion":true}"#]);
    let ok = wait_until(TIMEOUT, || s.kubectl(&["patch", "pvc", "fixed", "-p", grow]).status.success());
    assert!(ok, "growing a claim of an expandable class was refused");
    assert_eq!(get(&s, "pvc", "fixed")["spec"]["resources"]["requests"]["storage"], "3Gi");

    // A volume's source is immutable.
    let err =
        s.kubectl_err(&["patch", "pv", "pv-fixed", "-p", r#"{"spec":{"hostPath":{"path":"/tmp/elsewhere"}}}"#], None);
    assert!(
        err.contains("spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"),
        "{err}"
    );
}

#[test]
fn a_claim_named_volume_binds_only_when_it_fits() {
    let mut s = TestServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    create(&s, volume("pv-named", "1Gi", "", "Retain"));
    // Pre-bound to a volume too small: it waits and says so.
    let mut big = claim("wants-named", "2Gi", None);
    big["spec"]["volumeName"] = json!("pv-named");
    create(&s, big);
    wait_event(&s, "wants-named", "VolumeMismatch", "pv-named");
    assert_eq!(phase(&get(&s, "pvc", "wants-named")), "Pending");
    assert_eq!(phase(&get(&s, "pv", "pv-named")), "Available");
    // A volume pre-bound to a claim by name waits for that claim, and gets it.
    let mut reserved = volume("pv-reserved", "8Gi", "", "Retain");
    reserved["spec"]["claimRef"] = json!({ "namespace": "default", "name": "late" });
    create(&s, reserved);
    create(&s, claim("late", "1Gi", None));
    let late = wait_for(&s, "pvc", "late", "bound", |v| phase(v) == "Bound");
    assert_eq!(late["spec"]["volumeName"], "pv-reserved", "{late:#}");

    // Default classes (claims too big for the free volumes, so that none binds first): a
    // claim made before one exists gets it from the binder, one made after gets it at
    // admission, one that asks for no class ("") keeps none.
    create(&s, claim("before-default", "100Gi", None));
    create(&s, claim("no-class", "100Gi", Some("")));
    create(
        &s,
        json!({ "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": { "name": "standard", "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
            "provisioner": "example.com/elsewhere" }),
    );
    wait_for(&s, "pvc", "before-default", "given the default class", |v| v["spec"]["storageClassName"] == "standard");
    let out =
        s.kubectl_in_ok(&["create", "-o", "json", "-f", "-"], Some(&claim("after-default", "1Gi", None).to_string()));
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["spec"]["storageClassName"], "standard", "{created:#}");
    // Someone else's provisioner: the claim says whom it waits for.
    let waiting = wait_for(&s, "pvc", "after-default", "handed to the provisioner", |v| {
        v["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "example.com/elsewhere"
    });
    assert_eq!(phase(&waiting), "Pending");
    wait_event(&s, "after-default", "ExternalProvisioning", "example.com/elsewhere");
    assert_eq!(get(&s, "pvc", "no-class")["spec"]["storageClassName"], "");

    // A restart (the controller's caches fill again) loses no binding.
    s.signal_and_wait("TERM");
    s.restart();
    create(&s, volume("pv-after-restart", "1Gi", "restart", "Retain"));
    create(&s, claim("after-restart", "1Gi", Some("restart")));
    wait_for(&s, "pvc", "after-restart", "bound after the restart", |v| phase(v) == "Bound");
    let late = get(&s, "pvc", "late");
    assert_eq!(phase(&late), "Bound", "{late:#}");
    assert_eq!(phase(&get(&s, "pv", "pv-reserved")), "Bound");
    let path = "/api/v1/namespaces/default/events?fieldSelector=reason%3DClaimLost";
    let (_, lost) = s.http_json("GET", path, None);
    assert_eq!(lost["items"], json!([]), "{lost:#}");
}

#[test]
fn local_path_volumes_are_provisioned_on_the_first_consumers_node() {
    let storage = tempfile::tempdir().unwrap();
    let path = storage.path().to_str().unwrap();
    let s = TestServer::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--default-local-storage-path", path],
    );
    let class = wait_for(&s, "storageclass", "local-path", "created", |v| v.is_object());
    assert_eq!(class["provisioner"], "berth.io/local-path", "{class:#}");
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer", "{class:#}");
    assert!(s.kubectl_ok(&["get", "storageclass"]).contains("local-path (default)"));

    // A node (no agent: the binding is the API's business) and a claim without a class.
    create(
        &s,
        json!({ "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "disk-node", "labels": { "kubernetes.io/hostname": "disk-host" } } }),
    );
    create(&s, claim("data", "2Gi", None));
    wait_for(&s, "pvc", "data", "given the default class", |v| v["spec"]["storageClassName"] == "local-path");
    wait_event(&s, "data", "WaitForFirstConsumer", "waiting for first consumer");
    assert_eq!(phase(&get(&s, "pvc", "data")), "Pending");

    // Its first pod lands on the node: the volume is made there and bound.
    create(
        &s,
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "consumer", "namespace": "default" },
            "spec": { "nodeName": "disk-node",
                "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "data" } }],
                "containers": [{ "name": "c", "image": "localhost/busybox:1",
                    "volumeMounts": [{ "name": "d", "mountPath": "/d" }] }] } }),
    );
    let data = wait_for(&s, "pvc", "data", "bound", |v| phase(v) == "Bound");
    let uid = data["metadata"]["uid"].as_str().unwrap();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(data["spec"]["volumeName"], pv_name.as_str(), "{data:#}");
    assert_eq!(data["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], "disk-node", "{data:#}");
    let pv = get(&s, "pv", &pv_name);
    assert_eq!(pv["spec"]["hostPath"]["path"], format!("{path}/{pv_name}_default_data"), "{pv:#}");
    assert_eq!(pv["spec"]["hostPath"]["type"], "DirectoryOrCreate", "{pv:#}");
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi", "{pv:#}");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete", "{pv:#}");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["disk-host"]),
        "{pv:#}"
    );
    assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "berth.io/local-path");
    wait_event(&s, "data", "ProvisioningSucceeded", &pv_name);

    // Bad input: local-path volumes are node-local, so ReadWriteMany cannot be provisioned.
    let mut shared = claim("shared", "1Gi", Some("local-path"));
    shared["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    create(&s, shared);
    create(
        &s,
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "sharer", "namespace": "default" },
            "spec": { "nodeName": "disk-node",
                "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "shared" } }],
                "containers": [{ "name": "c", "image": "localhost/busybox:1" }] } }),
    );
    wait_event(&s, "shared", "ProvisioningFailed", "only supports ReadWriteOnce and ReadWriteOncePod");
    assert_eq!(phase(&get(&s, "pvc", "shared")), "Pending");

    // Delete reclaim: the provisioned volume is deleted with its claim and waits for its
    // node to remove the directory; this node runs no agent, so it waits until the Node is gone.
    s.kubectl_ok(&["delete", "pod", "consumer", "--grace-period=0", "--force"]);
    s.kubectl_ok(&["delete", "pvc", "data"]);
    wait_for(&s, "pv", &pv_name, "left waiting for its node", |v| {
        v["metadata"]["deletionTimestamp"].is_string() && finalizers(v) == ["berth.io/local-path-cleanup"]
    });
    s.kubectl_ok(&["delete", "node", "disk-node"]);
    let gone = wait_until(TIMEOUT, || !s.kubectl(&["get", "pv", &pv_name]).status.success());
    assert!(gone, "the provisioned volume outlived its node: {:#}", get(&s, "pv", &pv_name));
    let path = "/api/v1/events?fieldSelector=reason%3DVolumeCleanupSkipped";
    let mut skipped = Value::Null;
    let recorded = wait_until(TIMEOUT, || {
        skipped = s.http_json("GET", path, None).1;
        skipped["items"][0]["involvedObject"]["name"] == pv_name.as_str()
    });
    assert!(recorded, "no VolumeCleanupSkipped event: {skipped:#}");
}

#[test]
fn a_pod_writes_into_a_volume_provisioned_on_the_servers_own_node() {
    if !runtime_installed() {
        return;
    }
    let _bridge = BridgeGuard("btest90");
    let s = TestServer::start_with_agent(
        std::path::Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--node-name", "pv-node", "--bridge-name", "btest90", "--pod-cidr", "10.88.90.0/24"],
    );
    let storage = s.dir.path().join("storage");
    wait_for(&s, "storageclass", "local-path", "created", |v| v.is_object());
    create(&s, claim("scratch", "64Mi", None));
    // Scheduled by the scheduler, so the claim's binding waits for it.
    create(
        &s,
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "writer", "namespace": "default" },
            "spec": { "terminationGracePeriodSeconds": 3, "restartPolicy": "Never",
                "volumes": [{ "name": "d", "persistentVolumeClaim": { "claimName": "scratch" } }],
                "containers": [{ "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "echo kept > /d/file"],
                    "volumeMounts": [{ "name": "d", "mountPath": "/d" }] }] } }),
    );
    let pod = wait_for(&s, "pod", "writer", "succeeded", |p| phase(p) == "Succeeded" || phase(p) == "Failed");
    assert_eq!(phase(&pod), "Succeeded", "{pod:#}");
    let claim = get(&s, "pvc", "scratch");
    assert_eq!(phase(&claim), "Bound", "{claim:#}");
    let pv_name = claim["spec"]["volumeName"].as_str().unwrap();
    let file = storage.join(format!("{pv_name}_default_scratch/file"));
    assert_eq!(std::fs::read_to_string(&file).map(|s| s.trim().to_string()).ok().as_deref(), Some("kept"), "{file:?}");
    let pv = get(&s, "pv", pv_name);
    assert!(finalizers(&pv).contains(&"berth.io/local-path-cleanup"), "{pv:#}");

    // The claim goes (its pod has finished): the node removes the directory, then the volume goes.
    s.kubectl_ok(&["delete", "pvc", "scratch", "--timeout=60s"]);
    let gone = wait_until(TIMEOUT, || !s.kubectl(&["get", "pv", pv_name]).status.success());
    assert!(gone, "the volume outlived its claim: {:#}", get(&s, "pv", pv_name));
    let dir = file.parent().unwrap();
    assert!(!dir.exists(), "the node left the volume's directory {dir:?}");
    assert!(storage.exists(), "the class's base directory went too");
}
