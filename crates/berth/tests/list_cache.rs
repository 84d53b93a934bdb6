//! LISTs served from the watch cache against LISTs read from the store: for the same
//! revision the bytes are the same, whichever way each object reached the cache (written
//! by this server, or decoded from the store after a restart), for every list format the
//! cache serves.

use std::path::Path;

use berth_testkit::{HttpResponse, TestServer};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn pod(name: &str, i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "list", "i": i.to_string() },
                      "annotations": { "note": "ünïcode \"quoted\" <tag> & more" } },
        "spec": { "containers": [{
            "name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"],
            "env": [{ "name": "A", "value": "1" }],
            "resources": { "requests": { "cpu": "100m" }, "limits": { "memory": "64Mi" } },
        }] },
    })
}

fn get(s: &TestServer, path: &str, accept: Option<&str>) -> HttpResponse {
    let r = match accept {
        None => s.http("GET", path, None, b""),
        Some(a) => s.client().request_with("GET", path, &[&format!("Accept: {a}")], None, b"").expect("http request"),
    };
    assert_eq!(r.status, 200, "GET {path}: {}", String::from_utf8_lossy(&r.body));
    r
}

/// The list's resourceVersion, from JSON or (the top-level `metadata:` block of) YAML.
fn list_rv(r: &HttpResponse) -> String {
    let text = String::from_utf8_lossy(&r.body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return v["metadata"]["resourceVersion"].as_str().unwrap_or_else(|| panic!("no resourceVersion in {v}")).into();
    }
    let mut lines = text.lines().skip_while(|l| *l != "metadata:").skip(1).take_while(|l| l.starts_with(' '));
    let line = lines.find_map(|l| l.trim().strip_prefix("resourceVersion:")).unwrap_or_else(|| panic!("{text}"));
    line.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

/// List formats the cache serves besides JSON.
const FORMATS: &[Option<&str>] =
    &[None, Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"), Some("application/yaml")];

/// The cache's LIST (`resourceVersion=0`, and a consistent one) and the store's LIST at
/// the revision the cache reported (`resourceVersionMatch=Exact`) are byte-identical.
fn assert_cache_matches_store(s: &TestServer, base: &str, expect_items: usize) {
    for (cache_query, accept) in
        ["resourceVersion=0", ""].into_iter().flat_map(|q| FORMATS.iter().map(move |a| (q, *a)))
    {
        let sep = if cache_query.is_empty() { "" } else { "?" };
        let cached = get(s, &format!("{base}{sep}{cache_query}"), accept);
        let rv = list_rv(&cached);
        let stored = get(s, &format!("{base}?resourceVersion={rv}&resourceVersionMatch=Exact"), accept);
        if accept.is_none() {
            let items = cached.json()["items"].as_array().map_or(0, Vec::len);
            assert_eq!(items, expect_items, "{base}?{cache_query}");
        }
        assert!(
            cached.body == stored.body,
            "{base}?{cache_query} ({accept:?}) at {rv}:\ncache: {}\nstore: {}",
            String::from_utf8_lossy(&cached.body),
            String::from_utf8_lossy(&stored.body)
        );
    }
}

#[test]
fn lists_from_the_cache_are_byte_identical_to_the_stores_at_the_same_revision() {
    // No scheduler: the Pods stay as written, so the comparisons below see settled objects
    // (the equality holds either way; this keeps failures readable).
    let mut s = TestServer::start_with(Path::new(env!("CARGO_BIN_EXE_berth")), &["--disable-scheduler"]);
    // Pods need the namespace's default ServiceAccount (the projected token volume).
    assert!(berth_testkit::wait_until(std::time::Duration::from_secs(30), || {
        s.http_json("GET", "/api/v1/namespaces/default/serviceaccounts/default", None).0 == 200
    }));
    for i in 0..6 {
        let (code, body) = s.http_json("POST", PODS, Some(&pod(&format!("p{i}"), i)));
        assert_eq!(code, 201, "{body}");
    }
    // An update, a merge patch, a server-side apply, a status write and a delete: every
    // write path hands the cache its object.
    let (_, mut p1) = s.http_json("GET", &format!("{PODS}/p1"), None);
    p1["metadata"]["labels"]["changed"] = json!("yes");
    assert_eq!(s.http_json("PUT", &format!("{PODS}/p1"), Some(&p1)).0, 200);
    let r = s.http(
        "PATCH",
        &format!("{PODS}/p2"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"annotations":{"patched":"1"}}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let r = s.http(
        "PATCH",
        &format!("{PODS}/p3?fieldManager=test"),
        Some("application/apply-patch+yaml"),
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p3\n  labels:\n    applied: \"true\"\n",
    );
    assert_eq!(r.status, 200, "{}", r.json());
    let r = s.http(
        "PATCH",
        &format!("{PODS}/p4/status"),
        Some("application/merge-patch+json"),
        br#"{"status":{"conditions":[{"type":"PodScheduled","status":"False","reason":"Test"}]}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(s.http_json("DELETE", &format!("{PODS}/p5?gracePeriodSeconds=0"), None).0, 200);
    s.http_json("POST", CMS, Some(&json!({ "metadata": { "name": "cm" }, "data": { "k": "v\n\t\u{1F600}" } })));

    assert_cache_matches_store(&s, PODS, 5);
    assert_cache_matches_store(&s, CMS, 2); // cm and kube-root-ca.crt
    assert_cache_matches_store(&s, "/api/v1/pods", 5);
    // Label- and field-selected lists.
    let selected = get(&s, &format!("{PODS}?resourceVersion=0&labelSelector=i%20in%20(1,2)"), None);
    let rv = list_rv(&selected);
    let stored =
        get(&s, &format!("{PODS}?resourceVersion={rv}&resourceVersionMatch=Exact&labelSelector=i%20in%20(1,2)"), None);
    assert_eq!(selected.json()["items"].as_array().map(Vec::len), Some(2));
    assert!(selected.body == stored.body);

    // After a restart the cache is filled from the store: the same bytes again.
    let before = get(&s, PODS, None).body;
    let status = s.signal_and_wait("TERM");
    assert!(status.success(), "server exited with {status}: {}", s.log());
    s.restart();
    let after = get(&s, PODS, None);
    assert_cache_matches_store(&s, PODS, 5);
    // Nothing was written meanwhile for these Pods but their list's resourceVersion.
    let items = |body: &[u8]| serde_json::from_slice::<Value>(body).unwrap()["items"].clone();
    assert_eq!(items(&before), items(&after.body));
}

#[test]
fn list_resource_version_errors() {
    let s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    for (query, expect) in [
        ("resourceVersion=abc", 400),
        ("resourceVersion=-1", 400),
        ("resourceVersion=0&resourceVersionMatch=Exact", 400),
        ("resourceVersionMatch=NotOlderThan", 400),
        ("resourceVersion=1&resourceVersionMatch=Newest", 400),
        ("resourceVersion=0&resourceVersionMatch=NotOlderThan", 200),
    ] {
        let r = s.http("GET", &format!("{CMS}?{query}"), None, b"");
        assert_eq!(r.status, expect, "{query}: {}", String::from_utf8_lossy(&r.body));
        if expect == 400 {
            assert_eq!(r.json()["reason"], "BadRequest", "{query}");
        }
    }
}
