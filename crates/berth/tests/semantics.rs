//! API semantics over HTTP: generateName, generation, status subresources, finalizers,
//! pagination, resourceVersion rules, watch (selectors, bookmarks, 410), Tables.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use berth_testkit::{TestServer, TlsStream};
use serde_json::{Value, json};

fn server() -> TestServer {
    // These tests count the ConfigMaps they write: no kube-root-ca.crt among them.
    TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-controllers", "root-ca-cert-publisher"])
}

fn deployment(name: &str) -> Value {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name, "labels": { "app": name } },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } }, "spec": { "containers": [{ "name": "c", "image": "img:1" }] } } } })
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[test]
fn generate_name_makes_unique_names() {
    let s = server();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "generateName": "job-" } });
    let (c1, a) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let (c2, b) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    assert_eq!((c1, c2), (201, 201));
    let (na, nb) = (a["metadata"]["name"].as_str().unwrap(), b["metadata"]["name"].as_str().unwrap());
    assert!(na.starts_with("job-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);
}

#[test]
fn secret_string_data_is_written_into_data_and_not_stored() {
    let s = server();
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "sd" },
        "data": { "a": "eA==", "user": "eA==" }, "stringData": { "user": "admin" } });
    let (code, created) = s.http_json("POST", "/api/v1/namespaces/default/secrets", Some(&secret));
    assert_eq!(code, 201, "{created}");
    let (_, read) = s.http_json("GET", "/api/v1/namespaces/default/secrets/sd", None);
    assert_eq!(read["data"], json!({ "a": "eA==", "user": "YWRtaW4=" }), "{read}");
    assert!(read.get("stringData").is_none(), "{read}");
    // An update through stringData replaces that key only.
    let r = s.http(
        "PATCH",
        "/api/v1/namespaces/default/secrets/sd",
        Some("application/merge-patch+json"),
        br#"{"stringData":{"a":"b"}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"], json!({ "a": "Yg==", "user": "YWRtaW4=" }));
    // A wrong type is refused, not dropped.
    let bad = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "bad" }, "stringData": { "k": 1 } });
    let (code, status) = s.http_json("POST", "/api/v1/namespaces/default/secrets", Some(&bad));
    assert_eq!(code, 400, "{status}");
}

#[test]
fn generation_counts_spec_changes_only_and_status_is_separate() {
    let s = server();
    let (_, d) = s.http_json("POST", DEPLOYMENTS, Some(&deployment("g")));
    assert_eq!(d["metadata"]["generation"], 1);
    // A label change is metadata: no new generation.
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/g"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"x":"y"}}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["generation"], 1);
    // A spec change is.
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/g"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(r.json()["metadata"]["generation"], 2);
    // Status through the main resource is ignored...
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/g"),
        Some("application/merge-patch+json"),
        br#"{"status":{"replicas":9}}"#,
    );
    assert!(r.json()["status"].get("replicas").is_none(), "{}", r.json());
    // ...and through /status it is written, without touching spec.
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/g/status"),
        Some("application/merge-patch+json"),
        br#"{"status":{"replicas":9},"spec":{"replicas":100}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["status"]["replicas"], 9);
    assert_eq!(r.json()["spec"]["replicas"], 3);
    assert_eq!(r.json()["metadata"]["generation"], 2);
}

#[test]
fn scale_subresource_reads_and_writes_replicas() {
    let s = server();
    s.http_json("POST", DEPLOYMENTS, Some(&deployment("sc")));
    let (code, scale) = s.http_json("GET", &format!("{DEPLOYMENTS}/sc/scale"), None);
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=sc");
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/sc/scale"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":4}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"]["replicas"], 4);
    let (_, d) = s.http_json("GET", &format!("{DEPLOYMENTS}/sc"), None);
    assert_eq!(d["spec"]["replicas"], 4);
    let r = s.http(
        "PATCH",
        &format!("{DEPLOYMENTS}/sc/scale"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":-1}}"#,
    );
    assert_eq!(r.status, 422);
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let s = server();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "f", "finalizers": ["example.com/x"] } });
    s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let (code, v) = s.http_json("DELETE", "/api/v1/namespaces/default/configmaps/f", None);
    assert_eq!(code, 200);
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    let (code, v) = s.http_json("GET", "/api/v1/namespaces/default/configmaps/f", None);
    assert_eq!(code, 200);
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    let r = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/f",
        Some("application/merge-patch+json"),
        br#"{"metadata":{"finalizers":null}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/default/configmaps/f", None).0, 404);
}

#[test]
fn delete_preconditions_and_propagation_policy() {
    let s = server();
    let (_, created) = s.http_json("POST", DEPLOYMENTS, Some(&deployment("p")));
    let wrong = json!({ "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": { "uid": "00000000-0000-0000-0000-000000000000" } });
    let (code, v) = s.http_json("DELETE", &format!("{DEPLOYMENTS}/p"), Some(&wrong));
    assert_eq!(code, 409, "{v}");
    let orphan = json!({ "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan", "preconditions": { "uid": created["metadata"]["uid"] } });
    let (code, v) = s.http_json("DELETE", &format!("{DEPLOYMENTS}/p"), Some(&orphan));
    assert_eq!(code, 200);
    // Recorded for the garbage collector as the orphan finalizer.
    assert_eq!(v["metadata"]["finalizers"], json!(["orphan"]), "{v}");
}

#[test]
fn list_pagination_is_a_consistent_snapshot() {
    let s = server();
    for i in 0..7 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("cm-{i}") } });
        assert_eq!(s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm)).0, 201);
    }
    let (_, page1) = s.http_json("GET", "/api/v1/namespaces/default/configmaps?limit=3", None);
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    let token = page1["metadata"]["continue"].as_str().expect("continue token").to_string();
    // A write after the first page is not seen by the rest of the list.
    let extra = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cm-9" } });
    s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&extra));
    let mut names: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let (code, page) =
            s.http_json("GET", &format!("/api/v1/namespaces/default/configmaps?limit=3&continue={t}"), None);
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);
        names.extend(
            page["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        token = page["metadata"]["continue"].as_str().map(String::from);
    }
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    let (code, v) = s.http_json("GET", "/api/v1/namespaces/default/configmaps?limit=3&continue=garbage", None);
    assert_eq!(code, 400, "{v}");
}

#[test]
fn resource_version_rules_for_lists() {
    let s = server();
    let (_, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv > 0);
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=0", None).0, 200);
    assert_eq!(
        s.http_json(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"),
            None
        )
        .0,
        200
    );
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact", None).0, 400);
    assert_eq!(s.http_json("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=abc", None).0, 400);
    // A future revision times out with 504 rather than answering stale data.
    let (code, _) =
        s.http_json("GET", &format!("/api/v1/namespaces/default/configmaps?resourceVersion={}", rv + 1000), None);
    assert_eq!(code, 504);
}

#[test]
fn field_selectors() {
    let s = server();
    for name in ["a", "b"] {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name } });
        s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    }
    let (_, v) = s.http_json("GET", "/api/v1/configmaps?fieldSelector=metadata.name%3Db", None);
    let names: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b"]);
    let (code, v) = s.http_json("GET", "/api/v1/configmaps?fieldSelector=spec.nothing%3Dx", None);
    assert_eq!(code, 400, "{v}");
}

/// Opens a raw watch and returns a line reader over its events.
fn open_watch(s: &TestServer, path: &str) -> BufReader<TlsStream> {
    open_watch_accepting(s, path, "application/json")
}

fn open_watch_accepting(s: &TestServer, path: &str, accept: &str) -> BufReader<TlsStream> {
    let mut stream = s.client().connect().unwrap();
    stream.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    reader
}

/// Reads the next watch event from a chunked stream.
fn next_event(reader: &mut BufReader<TlsStream>) -> Value {
    let mut buf = String::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut chunk = vec![0u8; n + 2];
        std::io::Read::read_exact(reader, &mut chunk).unwrap();
        buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        if buf.ends_with('\n') {
            return serde_json::from_str(buf.trim()).unwrap();
        }
    }
}

#[test]
fn watch_from_a_revision_with_selector_transitions() {
    let s = server();
    let (_, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut w = open_watch(
        &s,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&labelSelector=team%3Da"),
    );
    let cm = |team: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "w", "labels": { "team": team } } });
    let (_, created) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm("a")));
    let e = next_event(&mut w);
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    // Leaving the selection is a DELETED event; coming back an ADDED one.
    s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/w",
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"team":"b"}}}"#,
    );
    assert_eq!(next_event(&mut w)["type"], "DELETED");
    s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/w",
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"team":"a"}}}"#,
    );
    assert_eq!(next_event(&mut w)["type"], "ADDED");
    s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/w",
        Some("application/merge-patch+json"),
        br#"{"data":{"x":"1"}}"#,
    );
    assert_eq!(next_event(&mut w)["type"], "MODIFIED");
    s.http_json("DELETE", "/api/v1/namespaces/default/configmaps/w", None);
    let e = next_event(&mut w);
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["name"], "w");
}

/// Writes first, then watches from before them: every event but the last is history only
/// in the watch cache (kept as JSON bytes), so the selector and the previous state are
/// decoded again; the plain watch sends the kept bytes. Both see what a live watcher saw.
#[test]
fn watch_resumed_from_history_replays_the_same_events() {
    let s = server();
    let (_, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "h", "labels": { "team": "a" } } });
    let (_, created) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let path = "/api/v1/namespaces/default/configmaps/h";
    for patch in [
        &br#"{"metadata":{"labels":{"team":"b"}}}"#[..],
        br#"{"metadata":{"labels":{"team":"a"}}}"#,
        br#"{"data":{"x":"1"}}"#,
    ] {
        s.http("PATCH", path, Some("application/merge-patch+json"), patch);
    }
    let (_, last) = s.http_json("GET", path, None);
    s.http_json("DELETE", path, None);

    let base = "/api/v1/namespaces/default/configmaps?watch=true";
    let mut selected = open_watch(&s, &format!("{base}&resourceVersion={rv}&labelSelector=team%3Da"));
    let events: Vec<Value> = (0..5).map(|_| next_event(&mut selected)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(events[0]["object"]["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
    assert_eq!(events[1]["object"]["metadata"]["labels"]["team"], "b");
    assert_eq!(events[3]["object"], last);

    let mut all = open_watch(&s, &format!("{base}&resourceVersion={rv}"));
    let events: Vec<Value> = (0..5).map(|_| next_event(&mut all)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);
    assert_eq!(events[0]["object"], created);
    assert_eq!(events[3]["object"], last);
    assert_eq!(events[4]["object"]["data"]["x"], "1");
}

#[test]
fn watch_with_initial_events_and_bookmark() {
    let s = server();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "init" } });
    s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let mut w = open_watch(
        &s,
        "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    );
    let e = next_event(&mut w);
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("init")));
    let b = next_event(&mut w);
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
}

/// With allowWatchBookmarks and nothing written, a watch still gets a periodic BOOKMARK
/// (every 30 s, as the watch cache's bookmark timer) carrying the current resourceVersion
/// and an empty object of the watched kind; without the parameter, none.
#[test]
fn idle_watches_get_periodic_bookmarks_when_they_ask() {
    let s = server();
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "quiet" } });
    let (_, created) = s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm));
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let base = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dquiet"
    );
    let mut asked = open_watch(&s, &format!("{base}&allowWatchBookmarks=true&timeoutSeconds=45"));
    let mut plain = open_watch(&s, &format!("{base}&timeoutSeconds=45"));
    for w in [&asked, &plain] {
        w.get_ref().sock.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    }
    let b = next_event(&mut asked);
    assert_eq!(b["type"], "BOOKMARK", "{b}");
    assert_eq!(b["object"]["kind"], "ConfigMap", "{b}");
    let at: u64 = b["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(at >= rv.parse::<u64>().unwrap(), "{b} before {rv}");
    assert!(b["object"]["metadata"].get("name").is_none(), "{b}");
    // The plain watch ends at its timeout having sent nothing but the last chunk.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut plain, &mut rest).unwrap();
    assert_eq!(rest, "0\r\n\r\n", "a watch that did not ask got more");
}

#[test]
fn old_resource_versions_are_gone_after_compaction() {
    let s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &[
            "--compaction-retention",
            "5",
            "--compaction-interval",
            "1",
            "--disable-controllers",
            "root-ca-cert-publisher",
        ],
    );
    for i in 0..20 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("c{i}") } });
        assert_eq!(s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm)).0, 201);
    }
    // A watch from a revision older than the history opens with one ERROR event: 410 Expired.
    let mut w = open_watch(&s, "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2");
    let e = next_event(&mut w);
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    // An exact list at a compacted revision is 410 once the store has compacted.
    let gone = berth_testkit::wait_until(Duration::from_secs(20), || {
        s.http_json("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=2&resourceVersionMatch=Exact", None).0
            == 410
    });
    assert!(gone, "store never compacted revision 2");
    // A continue token is a consistent read at its list's revision: once later writes let
    // the store compact that revision, the next page is 410 Expired, worded as Kubernetes.
    let (code, page) = s.http_json("GET", "/api/v1/namespaces/default/configmaps?limit=5", None);
    assert_eq!(code, 200, "{page}");
    let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
    for i in 20..30 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("c{i}") } });
        assert_eq!(s.http_json("POST", "/api/v1/namespaces/default/configmaps", Some(&cm)).0, 201);
    }
    let next = format!("/api/v1/namespaces/default/configmaps?limit=5&continue={token}");
    let mut answer = Value::Null;
    let expired = berth_testkit::wait_until(Duration::from_secs(20), || {
        let (code, v) = s.http_json("GET", &next, None);
        answer = v;
        code == 410
    });
    assert!(expired, "the continue token outlived its revision: {answer}");
    assert_eq!(answer["reason"], "Expired", "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("continue parameter is too old"), "{answer}");
    // Current data is intact.
    let (_, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    assert_eq!(list["items"].as_array().unwrap().len(), 30);
}

#[test]
fn tables_for_lists_and_single_objects() {
    let s = server();
    s.http_json("POST", DEPLOYMENTS, Some(&deployment("t")));
    let r = s.client().request("GET", DEPLOYMENTS, None, b"").unwrap();
    assert_eq!(r.status, 200);
    let table = "Accept: application/json;as=Table;v=v1;g=meta.k8s.io";
    let t = s.client().request_with("GET", DEPLOYMENTS, &[table], None, b"").unwrap().json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Up-to-date", "Available", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "t");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

/// Table watch events after a watch's first (which carries the column definitions) are the
/// same for every watcher of the same resource: they are made once and shared.
#[test]
fn table_watchers_get_the_same_events() {
    let s = server();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, list) = s.http_json("GET", cms, None);
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let path = format!("{cms}?watch=true&resourceVersion={rv}");
    let mut watchers = [open_watch_accepting(&s, &path, table), open_watch_accepting(&s, &path, table)];
    let cm = |name: &str, x: &str| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "x": x } });
    for (name, x) in [("t1", "1"), ("t2", "1")] {
        let (code, _) = s.http_json("POST", cms, Some(&cm(name, x)));
        assert_eq!(code, 201);
    }
    let (code, _) = s.http_json("PUT", &format!("{cms}/t1"), Some(&cm("t1", "2")));
    assert_eq!(code, 200);
    let [a, b] = watchers.each_mut().map(|w| (0..3).map(|_| next_event(w)).collect::<Vec<Value>>());
    let names = |events: &[Value]| -> Vec<String> {
        events.iter().map(|e| format!("{} {}", e["type"], e["object"]["rows"][0]["cells"][0])).collect()
    };
    assert_eq!(names(&a), ["\"ADDED\" \"t1\"", "\"ADDED\" \"t2\"", "\"MODIFIED\" \"t1\""]);
    assert!(a[0]["object"]["columnDefinitions"].as_array().is_some_and(|c| !c.is_empty()), "{}", a[0]);
    assert_eq!(a[1]["object"]["kind"], "Table");
    assert_eq!(a[1]["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(a, b);
}

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let s = server();
    let (_, k) = s.http_json("GET", "/api/v1/namespaces/default/services/kubernetes", None);
    assert_eq!(k["spec"]["clusterIP"], "10.43.0.1");
    let svc = |name: &str, extra: Value| {
        let mut v = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "selector": { "app": name }, "ports": [{ "port": 80 }] } });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        v
    };
    let (code, a) = s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc("a", json!({}))));
    assert_eq!(code, 201, "{a}");
    let (_, b) =
        s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc("b", json!({ "type": "NodePort" }))));
    let (ip_a, ip_b) = (a["spec"]["clusterIP"].as_str().unwrap(), b["spec"]["clusterIP"].as_str().unwrap());
    assert!(ip_a.starts_with("10.43.") && ip_b.starts_with("10.43.") && ip_a != ip_b, "{ip_a} {ip_b}");
    let port = b["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port), "{port}");
    // Headless services get none; a taken or foreign address is refused.
    let (_, h) =
        s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc("h", json!({ "clusterIP": "None" }))));
    assert_eq!(h["spec"]["clusterIP"], "None");
    let (code, v) =
        s.http_json("POST", "/api/v1/namespaces/default/services", Some(&svc("c", json!({ "clusterIP": ip_a }))));
    assert_eq!(code, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("already allocated"), "{v}");
    let (code, _) = s.http_json(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&svc("d", json!({ "clusterIP": "192.168.1.1" }))),
    );
    assert_eq!(code, 422);
    let (code, v) = s.http_json(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&svc("e", json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": port }] }))),
    );
    assert_eq!(code, 422, "{v}");
    // An update keeps the address.
    let r = s.http(
        "PATCH",
        "/api/v1/namespaces/default/services/a",
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"x":"y"}}}"#,
    );
    assert_eq!(r.json()["spec"]["clusterIP"], ip_a);
}

#[test]
fn versions_sharing_storage_are_converted() {
    let s = server();
    let hpa = json!({ "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": { "name": "h" },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" }, "minReplicas": 1, "maxReplicas": 4,
                  "metrics": [{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 65 } } }] } });
    assert_eq!(
        s.http_json("POST", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", Some(&hpa)).0,
        201
    );
    let (code, v1) = s.http_json("GET", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/h", None);
    assert_eq!(code, 200);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 65);
    // A write through v1 is seen through v2.
    let r = s.http(
        "PATCH",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/h",
        Some("application/merge-patch+json"),
        br#"{"spec":{"maxReplicas":8}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let (_, v2) = s.http_json("GET", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/h", None);
    assert_eq!(v2["spec"]["maxReplicas"], 8);
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 65);
    let (_, list) = s.http_json("GET", "/apis/autoscaling/v1/horizontalpodautoscalers", None);
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v1");

    // events.k8s.io/v1 Events are core Events to kubectl.
    let ev = json!({ "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "e1" },
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "berth.io/test", "reportingInstance": "t-1",
        "action": "Testing", "reason": "Tested", "type": "Normal", "note": "converted",
        "regarding": { "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": "default" } });
    let (code, v) = s.http_json("POST", "/apis/events.k8s.io/v1/namespaces/default/events", Some(&ev));
    assert_eq!(code, 201, "{v}");
    let (_, core) = s.http_json("GET", "/api/v1/namespaces/default/events/e1", None);
    assert_eq!(core["message"], "converted");
    assert_eq!(core["involvedObject"]["name"], "c");
    let (_, sel) = s.http_json("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dc", None);
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let out = s.kubectl_ok(&["get", "events"]);
    assert!(out.contains("Tested") && out.contains("converted"), "{out}");
}

/// `/livez`, `/readyz` and `/healthz` as kube-apiserver answers them: `ok`, the named
/// checks with `?verbose`, `?exclude=`, and one check at `/readyz/NAME`; kubectl reads them
/// with `get --raw`.
#[test]
fn health_endpoints_list_their_checks() {
    let s = server();
    let get = |path: &str| {
        let r = s.http("GET", path, None, b"");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(get(path), (200, "ok".to_string()), "{path}");
    }
    let (code, body) = get("/readyz?verbose");
    assert_eq!(code, 200);
    assert_eq!(body, "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\n[+]shutdown ok\nreadyz check passed\n");
    let (code, body) = get("/livez?verbose&exclude=etcd&exclude=nonsense");
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "[+]ping ok\n[+]log ok\n[+]etcd excluded: ok\n\
         warn: some health checks cannot be excluded: no matches for \"nonsense\"\nlivez check passed\n"
    );
    assert_eq!(get("/readyz/etcd"), (200, "ok".to_string()));
    assert_eq!(get("/livez/ping"), (200, "ok".to_string()));
    // Liveness has no shutdown check; an unknown check is not found.
    assert_eq!(get("/livez/shutdown").0, 404);
    assert_eq!(get("/readyz/nonsense").0, 404);
    let out = s.kubectl_ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(out.contains("[+]informer-sync ok") && out.ends_with("readyz check passed\n"), "{out}");
}
