//! End to end: the real kubectl against a real `berth server`.

use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, wait_until};
use serde_json::Value;

fn server() -> TestServer {
    // These tests watch and count the ConfigMaps they write: no kube-root-ca.crt among them.
    TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-controllers", "root-ca-cert-publisher"])
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

#[test]
fn default_namespaces_exist_and_print_as_a_table() {
    let s = server();
    let out = s.kubectl_ok(&["get", "namespaces"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS") && lines[0].contains("AGE"), "{out}");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(lines.iter().any(|l| l.starts_with(ns) && l.contains("Active")), "{ns} missing in:\n{out}");
    }
}

/// `--write-kubeconfig PATH` writes the admin kubeconfig there too (mode 0600, as the data
/// dir's copy), and kubectl works with it.
#[test]
fn write_kubeconfig_puts_a_working_private_copy_where_asked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("nested").join("admin.yaml");
    std::fs::create_dir_all(extra.parent().unwrap()).unwrap();
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--write-kubeconfig", extra.to_str().unwrap()],
    );
    let mode = std::fs::metadata(&extra).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", extra.display());
    assert_eq!(std::fs::read_to_string(&extra).unwrap(), std::fs::read_to_string(&s.kubeconfig).unwrap());
    let out = std::process::Command::new(berth_testkit::KUBECTL)
        .args(["--kubeconfig", extra.to_str().unwrap(), "get", "namespace", "default", "-o", "name"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "namespace/default");
}

#[test]
fn version_reports_kubernetes_1_33() {
    let s = server();
    let out = json(&s.kubectl_ok(&["version", "-o", "json"]));
    assert_eq!(out["serverVersion"]["minor"], "33");
    assert!(out["serverVersion"]["gitVersion"].as_str().unwrap().starts_with("v1.33."));
}

#[test]
fn create_get_apply_and_delete_a_deployment_from_a_file() {
    let s = server();
    s.kubectl_in_ok(&["create", "-f", "-"], Some(DEPLOYMENT));
    let d = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    // Defaults as Kubernetes sets them.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert_eq!(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));

    let table = s.kubectl_ok(&["get", "deployments"]);
    assert!(
        table.lines().next().unwrap().split_whitespace().collect::<Vec<_>>()
            == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    let wide = s.kubectl_ok(&["get", "deployments", "-o", "wide"]);
    assert!(wide.contains("CONTAINERS") && wide.contains("nginx:1.25"), "{wide}");

    // Client-side apply of a change: a strategic merge patch on the server.
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("nginx:1.25", "nginx:1.26");
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(&changed));
    let d = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(d["metadata"]["generation"], 2);

    let jp = s.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].name}"]);
    assert_eq!(jp, "nginx");
    let out = s.kubectl_ok(&["delete", "deployment", "web"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let err = s.kubectl_err(&["get", "deployment", "web"], None);
    assert!(err.contains("deployments.apps \"web\" not found"), "{err}");
}

/// A `kind: List` (what `kubectl get -o yaml` writes for several objects): kubectl
/// validates its items on the client side against `/openapi/v2`, which it reads only in
/// gnostic's protobuf form.
const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed}
  data: {a: "1"}
- apiVersion: v1
  kind: Service
  metadata: {name: listed}
  spec:
    selector: {app: listed}
    ports: [{port: 80, targetPort: http}]
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: listed}
  spec:
    replicas: 1
    selector: {matchLabels: {app: listed}}
    template:
      metadata: {labels: {app: listed}}
      spec:
        containers:
        - name: web
          image: nginx:1.27
          ports: [{name: http, containerPort: 8080}]
          resources: {limits: {cpu: 500m, memory: 64Mi}}
"#;

#[test]
fn a_list_file_is_validated_against_the_protobuf_openapi_document_and_created() {
    let s = server();
    let out = s.kubectl_in_ok(&["create", "-f", "-"], Some(LIST));
    assert!(out.contains("configmap/listed created") && out.contains("deployment.apps/listed created"), "{out}");
    let svc = json(&s.kubectl_ok(&["get", "service", "listed", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    // Applying the same List again goes through the same validation, then patches.
    let out = s.kubectl_in_ok(&["apply", "-f", "-"], Some(&LIST.replace("a: \"1\"", "a: \"2\"")));
    assert!(out.contains("configmap/listed configured"), "{out}");
    assert_eq!(json(&s.kubectl_ok(&["get", "configmap", "listed", "-o", "json"]))["data"]["a"], "2");

    // The document is really used: an unknown field and a wrong type are caught by
    // kubectl before anything is sent, and nothing of the List is created.
    let bad = LIST
        .replace("listed", "bad")
        .replace("replicas: 1", "replicas: one")
        .replace("data: {a: \"1\"}", "data: {a: \"1\"}\n  colour: red");
    let err = s.kubectl_err(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("error validating data"), "{err}");
    assert!(err.contains("colour"), "the unknown field is named: {err}");
    assert!(err.contains("replicas"), "the wrong type is named: {err}");
    let err = s.kubectl_err(&["get", "configmap", "bad"], None);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn imperative_create_sends_protobuf_and_works() {
    let s = server();
    s.kubectl_ok(&["create", "deployment", "api", "--image=registry.local/api:v1", "--replicas=2"]);
    s.kubectl_ok(&["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two"]);
    s.kubectl_ok(&["create", "secret", "generic", "sec", "--from-literal=password=hunter2"]);
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    s.kubectl_ok(&["create", "service", "clusterip", "api", "--tcp=80:8080"]);
    let d = json(&s.kubectl_ok(&["get", "deployment", "api", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry.local/api:v1");
    let cm = json(&s.kubectl_ok(&["get", "configmap", "cfg", "-o", "json"]));
    assert_eq!(cm["data"]["b"], "two");
    let sec = json(&s.kubectl_ok(&["get", "secret", "sec", "-o", "json"]));
    assert_eq!(sec["data"]["password"], "aHVudGVyMg==");
    assert_eq!(sec["type"], "Opaque");
    let svc = json(&s.kubectl_ok(&["get", "service", "api", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(s.kubectl_ok(&["get", "ns"]).contains("team-a"));
}

#[test]
fn server_side_apply_tracks_managers_and_reports_conflicts() {
    let s = server();
    s.kubectl_in_ok(&["apply", "--server-side", "-f", "-"], Some(DEPLOYMENT));
    let d = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json", "--show-managed-fields"]));
    let managers: Vec<&str> =
        d["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    // Another manager takes .spec.replicas; a re-apply with another value conflicts.
    s.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
        "--field-manager=autoscaler",
    ]);
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 4");
    let err = s.kubectl_err(&["apply", "--server-side", "-f", "-"], Some(&changed));
    assert!(err.contains("conflict") && err.contains("autoscaler") && err.contains(".spec.replicas"), "{err}");
    s.kubectl_in_ok(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&changed));
    assert_eq!(s.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]), "4");
}

#[test]
fn patch_label_annotate_and_scale() {
    let s = server();
    s.kubectl_in_ok(&["create", "-f", "-"], Some(DEPLOYMENT));
    s.kubectl_ok(&["label", "deployment", "web", "tier=frontend"]);
    s.kubectl_ok(&["annotate", "deployment", "web", "owner=team-a"]);
    s.kubectl_ok(&["scale", "deployment", "web", "--replicas=7"]);
    s.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/minReadySeconds","value":5}]"#,
    ]);
    // replace of a field the object does not have fails, as in Kubernetes
    let err = s.kubectl_err(
        &[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/paused","value":true}]"#,
        ],
        None,
    );
    assert!(err.contains("path is invalid") || err.contains("missing path"), "{err}");
    s.kubectl_ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    let d = json(&s.kubectl_ok(&["get", "deployment", "web", "-o", "json"]));
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(d["spec"]["replicas"], 7);
    assert_eq!(d["spec"]["minReadySeconds"], 5);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(d["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
    let by_label = s.kubectl_ok(&["get", "deployments", "-l", "tier=frontend", "-o", "name"]);
    assert_eq!(by_label.trim(), "deployment.apps/web");
    let none = s.kubectl_ok(&["get", "deployments", "-l", "tier notin (frontend)", "-o", "name"]);
    assert_eq!(none.trim(), "");
}

#[test]
fn watch_streams_changes_to_kubectl() {
    let s = server();
    s.kubectl_ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    let (mut child, rx) = s.kubectl_lines(&["get", "configmaps", "-w", "-o", "name", "--request-timeout=20s"]);
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("initial line");
    assert_eq!(first, "configmap/watched");
    s.kubectl_ok(&["create", "configmap", "later", "--from-literal=b=2"]);
    let mut seen = Vec::new();
    let got = wait_until(Duration::from_secs(10), || {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        seen.iter().any(|l| l == "configmap/later")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(got, "watch did not deliver the new object: {seen:?}");
}

#[test]
fn discovery_lists_every_group_and_short_names() {
    let s = server();
    let out = s.kubectl_ok(&["api-resources"]);
    for needle in [
        "pods",
        "deployments",
        "statefulsets",
        "cronjobs",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
        "leases",
        "endpointslices",
        "ingresses",
        "networkpolicies",
        "clusterrolebindings",
        "storageclasses",
        "priorityclasses",
        "runtimeclasses",
        "validatingwebhookconfigurations",
        "customresourcedefinitions",
    ] {
        assert!(out.contains(needle), "{needle} missing from api-resources:\n{out}");
    }
    assert!(
        out.lines().any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{out}"
    );
    let versions = s.kubectl_ok(&["api-versions"]);
    assert!(versions.contains("autoscaling/v2") && versions.contains("batch/v1"), "{versions}");
}

/// The aggregated discovery documents (`apidiscovery.k8s.io/v2`, what kubectl 1.33 asks for
/// first, falling back to the per-group documents silently): their content type, and a
/// resource's scope, verbs, short names, categories and subresources — for a CRD's too.
#[test]
fn aggregated_discovery_describes_every_resource_and_custom_ones() {
    let s = server();
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Cluster\n  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [things]}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources: {status: {}}\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n";
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(crd));
    s.kubectl_ok(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);
    let accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let get = |path: &str| {
        let r = s.client().request_with("GET", path, &[accept], None, b"").unwrap();
        assert_eq!(r.status, 200, "{path}");
        let ct = r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone());
        assert_eq!(ct.as_deref(), Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["apiVersion"].as_str()),
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io/v2"))
        );
        v
    };
    let resource = |doc: &Value, group: &str, version: &str, plural: &str| -> Value {
        let g = doc["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"].as_str().unwrap_or("") == group);
        let v = g.and_then(|g| g["versions"].as_array().unwrap().iter().find(|v| v["version"] == version));
        let r = v.and_then(|v| v["resources"].as_array().unwrap().iter().find(|r| r["resource"] == plural));
        r.cloned().unwrap_or_else(|| panic!("{group}/{version} {plural} missing: {doc}"))
    };
    let core = get("/api");
    let pods = resource(&core, "", "v1", "pods");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["responseKind"]["kind"], "Pod");
    assert_eq!(pods["shortNames"], serde_json::json!(["po"]));
    assert_eq!(pods["categories"], serde_json::json!(["all"]));
    let subresources: Vec<&str> =
        pods["subresources"].as_array().unwrap().iter().filter_map(|x| x["subresource"].as_str()).collect();
    for sub in ["status", "binding", "eviction", "log", "exec"] {
        assert!(subresources.contains(&sub), "{sub} missing: {pods}");
    }
    let named = get("/apis");
    let deployments = resource(&named, "apps", "v1", "deployments");
    let verbs: Vec<&str> = deployments["verbs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for verb in ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"] {
        assert!(verbs.contains(&verb), "{verb} missing: {deployments}");
    }
    let scale = deployments["subresources"].as_array().unwrap().iter().find(|x| x["subresource"] == "scale").cloned();
    let scale = scale.unwrap_or_else(|| panic!("no scale: {deployments}"));
    assert_eq!(scale["responseKind"], serde_json::json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    let widgets = resource(&named, "example.com", "v1", "widgets");
    assert_eq!(widgets["scope"], "Cluster");
    assert_eq!(widgets["shortNames"], serde_json::json!(["wd"]));
    assert_eq!(widgets["categories"], serde_json::json!(["things"]));
    assert_eq!(widgets["subresources"][0]["subresource"], "status");
    // kubectl resolves the short name through it (kubectl_ok asserts success).
    s.kubectl_ok(&["get", "wd"]);
}

#[test]
fn explain_uses_the_openapi_documents() {
    let s = server();
    let out = s.kubectl_ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("rollingUpdate") && out.contains("type"), "{out}");
}

#[test]
fn describe_shows_the_object() {
    let s = server();
    s.kubectl_in_ok(&["create", "-f", "-"], Some(DEPLOYMENT));
    let out = s.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(out.contains("Name:") && out.contains("web") && out.contains("nginx:1.25"), "{out}");
}

#[test]
fn namespace_deletion_removes_its_content() {
    let s = server();
    s.kubectl_ok(&["create", "namespace", "doomed"]);
    s.kubectl_ok(&["-n", "doomed", "create", "configmap", "c1", "--from-literal=a=1"]);
    s.kubectl_in_ok(&["-n", "doomed", "create", "-f", "-"], Some(DEPLOYMENT));
    s.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=30s"]);
    let err = s.kubectl_err(&["get", "namespace", "doomed"], None);
    assert!(err.contains("not found"), "{err}");
    let (code, _) = s.http_json("GET", "/api/v1/namespaces/doomed/configmaps/c1", None);
    assert_eq!(code, 404);
}

#[test]
fn watch_prints_table_rows_and_edit_round_trips() {
    let s = server();
    s.kubectl_in_ok(&["create", "-f", "-"], Some(DEPLOYMENT));
    let (mut child, rx) = s.kubectl_lines(&["get", "deployments", "-w", "--request-timeout=20s"]);
    let header = rx.recv_timeout(Duration::from_secs(10)).expect("header");
    assert!(header.starts_with("NAME") && header.contains("UP-TO-DATE"), "{header}");
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("row");
    assert!(first.starts_with("web") && first.contains("0/2"), "{first}");
    // kubectl edit: the editor changes replicas; the watch prints the new row.
    let edit = std::process::Command::new(berth_testkit::KUBECTL)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["edit", "deployment", "web"])
        .env("HOME", s.dir.path())
        .env("KUBE_EDITOR", "sed -i -e 's/^  replicas: 2$/  replicas: 4/'")
        .output()
        .unwrap();
    assert!(edit.status.success(), "{}", String::from_utf8_lossy(&edit.stderr));
    let mut seen = Vec::new();
    let got = wait_until(Duration::from_secs(10), || {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        seen.iter().any(|l| l.starts_with("web") && l.contains("0/4"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(got, "watch did not show the edit: {seen:?}");
    assert_eq!(s.kubectl_ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]), "4");
}

/// One object of every built-in kind berth serves (crates/berth/tests/data/every-kind.yaml).
const EVERY_KIND: &str = include_str!("data/every-kind.yaml");

#[test]
fn every_kind_round_trips_through_kubectl() {
    // Only the API server, the namespace controller (which finishes the namespace's
    // deletion at the end), the serviceaccount controller (ServiceAccount admission
    // refuses pods in a namespace without its `default` account, as Kubernetes does) and
    // the pvc-/pv-protection controllers (they lift the finalizers admission puts on claims
    // and volumes, which the deletes at the end wait for): other controllers and the
    // scheduler would write (status, owned objects) while the test checks that a repeated
    // apply writes nothing.
    let kept = |n: &str| matches!(n, "namespace" | "serviceaccount" | "pvc-protection" | "pv-protection");
    let others: Vec<&str> = berth_controllers::NAMES.iter().copied().filter(|n| !kept(n)).collect();
    let disabled = others.join(",");
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-controllers", &disabled, "--disable-scheduler"],
    );
    // Client-side apply creates them all (the namespace first, as kubectl orders the file).
    let out = s.kubectl_in_ok(&["apply", "-f", "-"], Some(EVERY_KIND));
    let created = out.lines().filter(|l| l.ends_with(" created")).count();
    let docs = EVERY_KIND.split("\n---\n").count();
    assert_eq!(created, docs, "{out}");
    // Applying again writes nothing (kubectl may still send no-op patches, e.g. for atomic
    // lists the server defaulted, and print "configured", as against Kubernetes).
    // (The objects' own resourceVersions: the controllers' leader lease renews meanwhile.)
    let revision =
        || s.kubectl_in_ok(&["get", "-f", "-", "-o", "jsonpath={..metadata.resourceVersion}"], Some(EVERY_KIND));
    let before = revision();
    s.kubectl_in_ok(&["apply", "-f", "-"], Some(EVERY_KIND));
    assert_eq!(revision(), before, "a repeated apply changed objects");
    s.kubectl_in_ok(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(EVERY_KIND));
    // Every kind prints as a table and as YAML.
    for doc in EVERY_KIND.split("\n---\n") {
        let kind = doc.lines().find_map(|l| l.strip_prefix("kind: ")).unwrap();
        let api_version = doc.lines().find_map(|l| l.strip_prefix("apiVersion: ")).unwrap();
        let name = doc.lines().find_map(|l| l.split("name: ").nth(1)).unwrap().split([',', '}']).next().unwrap();
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let resource =
            if group.is_empty() { kind.to_lowercase() } else { format!("{}.{}", kind.to_lowercase(), group) };
        let ns: &[&str] = if doc.contains("namespace: every") { &["-n", "every"] } else { &[] };
        let table = s.kubectl_ok(&[ns, &["get", resource.as_str(), name]].concat());
        assert_eq!(table.lines().count(), 2, "{kind}: {table}");
        let listed = s.kubectl_ok(&[ns, &["get", resource.as_str(), "-o", "name"]].concat());
        assert!(listed.lines().any(|l| l.ends_with(&format!("/{name}"))), "{kind}: {listed}");
        let yaml = s.kubectl_ok(&[ns, &["get", resource.as_str(), name, "-o", "yaml"]].concat());
        assert!(yaml.contains(&format!("kind: {kind}")), "{kind}: {yaml}");
    }
    // The namespace goes first and takes its content with it, so some deletes find nothing.
    s.kubectl_in_ok(&["delete", "--ignore-not-found", "-f", "-"], Some(EVERY_KIND));
    let err = s.kubectl_err(&["get", "namespace", "every"], None);
    assert!(err.contains("not found"), "{err}");
    for cluster_scoped in ["clusterrole/cr-a", "priorityclass/high", "storageclass/sc-a", "node/node-a"] {
        let err = s.kubectl_err(&["get", cluster_scoped], None);
        assert!(err.contains("not found"), "{cluster_scoped}: {err}");
    }
}

#[test]
fn auth_can_i_and_whoami_answer_without_storing_reviews() {
    let s = server();
    // No authorization is enforced yet: every client is the cluster admin.
    assert_eq!(s.kubectl_ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    assert!(s.kubectl_ok(&["auth", "whoami"]).contains("system:masters"));
    let review =
        serde_json::json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {} });
    let (code, v) = s.http_json("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", Some(&review));
    assert_eq!(code, 422, "{v}");
    // Reviews are answers, not objects: there is nothing to list.
    assert_eq!(s.http_json("GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", None).0, 405);
}
