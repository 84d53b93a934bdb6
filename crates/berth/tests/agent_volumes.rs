//! Volumes on the real node agent: the ServiceAccount token volume the ServiceAccount
//! admission adds (a pod reads its token and uses it against the API), projected and
//! downwardAPI volumes with items and modes, and ConfigMap/Secret/label changes reaching
//! the files of a running pod. Real `berth server`, `berth agent` (containerd, runc, CNI),
//! busybox pods serving their files over HTTP on the pod IP.
//!
//! persistentVolumeClaim volumes: a pod waits (FailedMount events) until its claim exists
//! and is bound (by the persistentvolume-binder) to a hostPath PersistentVolume, then mounts it (subPath, a read-only claim),
//! and only its node may read the claim and the volume.
//!
//! Bridges `btest20`–`btest24`, `btest46` and `btest47`, pod CIDRs 10.88.<n>.0/24; the [`Node`] guard stops the
//! agent by PID and deletes its bridge even when a test fails. Without containerd the tests
//! skip, unless BERTH_REQUIRE_CONTAINERD=1.

mod common;

use std::time::Duration;

use berth_testkit::{Credentials, TestServer, wait_until};
use common::*;
use serde_json::{Value, json};

/// Waits until the pod runs with an IP and its httpd answers `path`; returns the IP.
fn serving(s: &TestServer, node: &Node, name: &str, path: &str) -> String {
    let p = wait_pod(s, node, name, "ran", |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert!(
        wait_until(TIMEOUT, || http_get(&ip, 8080, path).is_some()),
        "no HTTP answer for {path} from {ip}; agent log:\n{}",
        node.log()
    );
    ip
}

#[test]
fn a_pod_reads_its_service_account_token_and_it_works_against_the_api() {
    let s = server();
    let Some(node) = Node::start(&s, 20) else { return };
    assert!(wait_until(TIMEOUT, || s.kubectl(&["get", "sa", "default"]).status.success()));
    assert!(wait_until(TIMEOUT, || s.kubectl(&["get", "configmap", "kube-root-ca.crt"]).status.success()));
    // Nothing in the pod asks for a token: the ServiceAccount admission adds the volume.
    apply(
        &s,
        &busybox_pod(
            "reader",
            &node,
            json!({ "command": ["httpd", "-f", "-p", "8080", "-h", "/var/run/secrets/kubernetes.io/serviceaccount"] }),
            "Always",
        ),
    );
    let ip = serving(&s, &node, "reader", "/token");
    let pod = get_pod(&s, "reader");
    let token = http_get(&ip, 8080, "/token").unwrap();
    assert_eq!(http_get(&ip, 8080, "/namespace").as_deref(), Some("default"));
    assert_eq!(http_get(&ip, 8080, "/ca.crt").unwrap(), s.kubeconfig().ca_pem);
    let user = whoami(&s, &token).expect("the pod's token authenticates");
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-name"], json!(["reader"]));
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod["metadata"]["uid"]]));
    assert_eq!(user["extra"]["authentication.kubernetes.io/node-name"], json!([node.name]));
    // The kubelet's lifetime for the projected token, bound to the pod.
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": { "token": token } });
    let (_, review) = s.http_json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&review));
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    // The volume is read-only in the container.
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["readOnly"], true, "{pod:#}");
    // Deleting the pod revokes its token.
    s.kubectl_ok(&["delete", "pod", "reader", "--timeout=60s"]);
    assert!(wait_until(TIMEOUT, || whoami(&s, &token) == Err(401)));
}

#[test]
fn automount_false_leaves_the_pod_without_a_token() {
    let s = server();
    let Some(node) = Node::start(&s, 21) else { return };
    assert!(wait_until(TIMEOUT, || s.kubectl(&["get", "sa", "default"]).status.success()));
    let mut pod = busybox_pod(
        "tokenless",
        &node,
        json!({ "command": ["sh", "-c", "mkdir -p /www; ls /var/run/secrets/kubernetes.io/serviceaccount > /www/ls 2>&1; echo done >> /www/ls; exec httpd -f -p 8080 -h /www"] }),
        "Always",
    );
    pod["spec"]["automountServiceAccountToken"] = json!(false);
    apply(&s, &pod);
    let ip = serving(&s, &node, "tokenless", "/ls");
    let listing = http_get(&ip, 8080, "/ls").unwrap();
    assert!(listing.contains("No such file"), "{listing}");
}

#[test]
fn projected_and_downward_api_files_follow_their_sources() {
    let s = server();
    let Some(node) = Node::start(&s, 22) else { return };
    assert!(wait_until(TIMEOUT, || s.kubectl(&["get", "sa", "default"]).status.success()));
    s.kubectl_ok(&["create", "configmap", "conf", "--from-literal=color=blue", "--from-literal=size=big"]);
    s.kubectl_ok(&["create", "secret", "generic", "creds", "--from-literal=password=hunter2"]);
    let mut pod = busybox_pod(
        "follower",
        &node,
        json!({
            "command": ["httpd", "-f", "-p", "8080", "-h", "/"],
            "resources": { "limits": { "memory": "64Mi", "cpu": "250m" } },
            "volumeMounts": [
                { "name": "all", "mountPath": "/all", "readOnly": true },
                { "name": "cfg", "mountPath": "/cfg" },
                { "name": "info", "mountPath": "/info" },
            ],
        }),
        "Always",
    );
    pod["metadata"]["labels"] = json!({ "tier": "web" });
    pod["spec"]["volumes"] = json!([
        { "name": "all", "projected": { "defaultMode": 0o640, "sources": [
            { "configMap": { "name": "conf", "items": [{ "key": "color", "path": "settings/color" }] } },
            { "secret": { "name": "creds", "items": [{ "key": "password", "path": "pw", "mode": 0o400 }] } },
            { "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }] } },
            { "serviceAccountToken": { "path": "vault-token", "audience": "vault", "expirationSeconds": 600 } },
        ] } },
        { "name": "cfg", "configMap": { "name": "conf" } },
        { "name": "info", "downwardAPI": { "items": [
            { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
            { "path": "uid", "fieldRef": { "fieldPath": "metadata.uid" } },
            { "path": "mem", "resourceFieldRef": { "containerName": "main", "resource": "limits.memory", "divisor": "1Mi" } },
            { "path": "cpu", "resourceFieldRef": { "containerName": "main", "resource": "limits.cpu", "divisor": "1m" } },
        ] } },
    ]);
    apply(&s, &pod);
    let ip = serving(&s, &node, "follower", "/all/pw");
    let uid = get_pod(&s, "follower")["metadata"]["uid"].as_str().unwrap().to_string();
    let get = |path: &str| http_get(&ip, 8080, path);
    assert_eq!(get("/all/settings/color").as_deref(), Some("blue"));
    assert_eq!(get("/all/pw").as_deref(), Some("hunter2"));
    assert_eq!(get("/all/labels").as_deref(), Some("tier=\"web\""));
    assert_eq!(get("/cfg/size").as_deref(), Some("big"));
    assert_eq!(get("/info/name").as_deref(), Some("follower"));
    assert_eq!(get("/info/uid").as_deref(), Some(uid.as_str()));
    assert_eq!(get("/info/mem").as_deref(), Some("64"));
    assert_eq!(get("/info/cpu").as_deref(), Some("250"));
    // The projected token has the audience asked for: TokenReview takes it for vault only.
    let token = get("/all/vault-token").unwrap();
    assert_eq!(whoami(&s, &token), Err(401));
    let review = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": { "token": token, "audiences": ["vault"] } });
    let (_, review) = s.http_json("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&review));
    assert_eq!(review["status"]["user"]["username"], "system:serviceaccount:default:default", "{review}");
    // Modes on the node: defaultMode, and an item's own.
    let vol = node.dir.path().join(format!("data/pods/{uid}/volumes/all"));
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(vol.join(p)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode("settings/color"), 0o640);
    assert_eq!(mode("pw"), 0o400);
    assert!(std::fs::read_link(vol.join("..data")).is_ok(), "the kubelet's ..data layout");
    // Secret-bearing volumes are memory backed: the projected and downwardAPI ones are
    // tmpfs mounts, the configMap one is not, and the Secret's value is in no file on the
    // node's disk (the data dir walked without crossing into other filesystems).
    let data = node.dir.path().join("data");
    let pod_dir = data.join(format!("pods/{uid}/volumes"));
    assert_eq!(fs_type(&pod_dir.join("all")).as_deref(), Some("tmpfs"));
    assert_eq!(fs_type(&pod_dir.join("info")).as_deref(), Some("tmpfs"));
    assert_eq!(fs_type(&pod_dir.join("cfg")), None, "configMap volumes stay on disk");
    let on_disk = files_on_disk_containing(&data, b"hunter2");
    assert!(on_disk.is_empty(), "the secret is on the node's disk in {on_disk:?}");

    // Changes reach the running pod's files.
    s.kubectl_in_ok(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf, namespace: default}\ndata: {color: green, size: small}\n"),
    );
    s.kubectl_ok(&["label", "pod", "follower", "tier=db", "--overwrite"]);
    let changed = wait_until(Duration::from_secs(90), || {
        get("/all/settings/color").as_deref() == Some("green")
            && get("/cfg/size").as_deref() == Some("small")
            && get("/all/labels").as_deref() == Some("tier=\"db\"")
    });
    assert!(
        changed,
        "files did not follow: color {:?} size {:?} labels {:?}; agent log:\n{}",
        get("/all/settings/color"),
        get("/cfg/size"),
        get("/all/labels"),
        node.log()
    );
    // The pod was not restarted for it.
    let p = get_pod(&s, "follower");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p:#}");
}

/// The filesystem type mounted exactly at `dir`, if `dir` is a mount point.
fn fs_type(dir: &std::path::Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options... - fstype source options.
    mounts.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(4).map(std::path::Path::new) == Some(dir.as_path()))
            .then(|| fields.get(dash + 1).map(|s| s.to_string()))?
    })
}

/// Files under `root` on the same filesystem as `root` whose contents hold `needle`.
fn files_on_disk_containing(root: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let device = std::fs::metadata(root).unwrap().dev();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.dev() != device {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

/// The Events about pod `name` in `default`.
fn pod_events(s: &TestServer, name: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let (_, list) = s.http_json("GET", &path, None);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Waits for a Warning event `reason` about pod `name` whose message contains `text`.
fn wait_event(s: &TestServer, node: &Node, name: &str, reason: &str, text: &str) -> Value {
    let mut found = None;
    let ok = wait_until(TIMEOUT, || {
        found = pod_events(s, name).into_iter().find(|e| {
            e["reason"] == reason && e["type"] == "Warning" && e["message"].as_str().is_some_and(|m| m.contains(text))
        });
        found.is_some()
    });
    assert!(ok, "no {reason} event with {text:?} for {name}: {:#?}\nagent log:\n{}", pod_events(s, name), node.log());
    found.unwrap()
}

/// A client holding a node's certificate (`system:node:NAME` in `system:nodes`).
fn node_client(s: &TestServer, name: &str) -> berth_testkit::HttpClient {
    let pki = berth_pki::Pki::load_or_create(&s.dir.path().join("tls")).expect("server pki");
    let user = format!("system:node:{name}");
    let cert = pki.leaf(&berth_pki::LeafSpec::client(&format!("test-{name}"), &user, &["system:nodes"])).expect("cert");
    s.client_as(Credentials::Certificate { cert_pem: cert.cert_pem, key_pem: cert.key_pem })
}

#[test]
fn a_claim_bound_to_a_host_path_volume_is_mounted_once_it_binds() {
    let s = server();
    let Some(node) = Node::start(&s, 46) else { return };
    let volume_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(volume_dir.path().join("site")).unwrap();
    std::fs::write(volume_dir.path().join("site/index.html"), "from the volume").unwrap();
    let script = "mkdir -p /tmp/www; echo written > /rw/written; \
        if touch /ro/denied 2>/dev/null; then echo writable; else echo read-only; fi > /tmp/www/ro; \
        cat /site/index.html > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www";
    let mut pod = busybox_pod(
        "claimer",
        &node,
        json!({ "command": ["sh", "-c", script], "volumeMounts": [
            { "name": "rw", "mountPath": "/rw" },
            { "name": "ro", "mountPath": "/ro" },
            { "name": "rw", "mountPath": "/site", "subPath": "site" },
        ] }),
        "Always",
    );
    pod["spec"]["volumes"] = json!([
        { "name": "rw", "persistentVolumeClaim": { "claimName": "data" } },
        { "name": "ro", "persistentVolumeClaim": { "claimName": "data", "readOnly": true } },
    ]);
    apply(&s, &pod);
    // No claim yet: the pod waits, and says why.
    let event = wait_event(&s, &node, "claimer", "FailedMount", "persistentvolumeclaim \"data\" not found");
    assert!(event["message"].as_str().unwrap().starts_with("Unable to attach or mount volumes"), "{event:#}");
    let p = get_pod(&s, "claimer");
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    assert_eq!(p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating", "{p:#}");

    // A claim naming a volume that does not exist yet: not bound.
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "data", "namespace": "default" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeName": "pv-46",
                      "resources": { "requests": { "storage": "1Gi" } } } }),
    );
    wait_event(&s, &node, "claimer", "FailedMount", "PVC is not bound");
    assert_eq!(get_pod(&s, "claimer")["status"]["phase"], "Pending");

    // The volume appears: the persistentvolume-binder binds the two.
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": "pv-46" },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                      "hostPath": { "path": volume_dir.path(), "type": "Directory" } } }),
    );

    // Only the node running a pod that uses them may read the claim and its volume.
    let mine = node_client(&s, &node.name);
    let other = node_client(&s, "someone-else");
    let claim_path = "/api/v1/namespaces/default/persistentvolumeclaims/data";
    for path in [claim_path, "/api/v1/persistentvolumes/pv-46"] {
        let ok = wait_until(TIMEOUT, || mine.request("GET", path, None, b"").unwrap().status == 200);
        assert!(ok, "the pod's node cannot read {path}");
        let r = other.request("GET", path, None, b"").unwrap();
        assert_eq!(r.status, 403, "another node reads {path}: {}", String::from_utf8_lossy(&r.body));
    }

    // Bound: the pod starts with the volume's files, writes through to the host, and the
    // read-only claim refuses writes.
    let p = wait_pod(&s, &node, "claimer", "ran", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    });
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert!(
        wait_until(TIMEOUT, || http_get(&ip, 8080, "/ro").is_some()),
        "no HTTP answer from {ip}; agent log:\n{}",
        node.log()
    );
    assert_eq!(http_get(&ip, 8080, "/index.html").as_deref().map(str::trim), Some("from the volume"));
    assert_eq!(http_get(&ip, 8080, "/ro").as_deref().map(str::trim), Some("read-only"));
    assert_eq!(std::fs::read_to_string(volume_dir.path().join("written")).unwrap().trim(), "written");
    assert!(!volume_dir.path().join("denied").exists());

    // Deleting the pod leaves the volume's data in place.
    s.kubectl_ok(&["delete", "pod", "claimer", "--timeout=60s"]);
    assert!(volume_dir.path().join("site/index.html").exists());
    assert!(volume_dir.path().join("written").exists());
}

#[test]
fn the_server_node_mounts_a_claim_with_its_own_node_identity() {
    if !runtime_installed() {
        return;
    }
    let _bridge = BridgeGuard("btest47");
    // The server's node talks to the API as system:node:claims-node: the Node authorizer
    // lets it read the claim and volume its pod uses.
    let s = TestServer::start_with_agent(
        std::path::Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--node-name", "claims-node", "--bridge-name", "btest47", "--pod-cidr", "10.88.47.0/24"],
    );
    let volume_dir = tempfile::tempdir().unwrap();
    std::fs::write(volume_dir.path().join("index.html"), "local volume").unwrap();
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "PersistentVolume", "metadata": { "name": "pv-47" },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "storageClassName": "local", "local": { "path": volume_dir.path() },
                      "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                          { "key": "kubernetes.io/hostname", "operator": "In", "values": ["claims-node"] }] }] } },
                      "claimRef": { "namespace": "default", "name": "local-data" } } }),
    );
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": { "name": "local-data", "namespace": "default" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "local", "volumeName": "pv-47",
                      "resources": { "requests": { "storage": "1Gi" } } } }),
    );
    apply(
        &s,
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "local-reader", "namespace": "default" },
            "spec": { "nodeName": "claims-node", "terminationGracePeriodSeconds": 3,
                "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "local-data" } }],
                "containers": [{ "name": "main", "image": "localhost/busybox:1", "imagePullPolicy": "Never",
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }] } }),
    );
    let mut pod = Value::Null;
    let running = wait_until(TIMEOUT, || {
        pod = get_pod(&s, "local-reader");
        pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
    });
    assert!(running, "{pod:#}\n{}", s.log());
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let mut body = None;
    let served = wait_until(TIMEOUT, || {
        body = http_get(&ip, 8080, "/index.html");
        body.is_some()
    });
    assert!(served, "no answer from {ip}:\n{}", s.log());
    assert_eq!(body.unwrap().trim(), "local volume");
    s.kubectl_ok(&["delete", "pod", "local-reader", "--timeout=60s"]);
}
