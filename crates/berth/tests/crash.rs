//! Durability: concurrent writes through the HTTP API, kill -9 of the server, restart on
//! the same data dir: every acknowledged write is there, and nothing else.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_testkit::TestServer;
use serde_json::json;

#[test]
fn acknowledged_writes_survive_kill_9() {
    // Every ConfigMap must be one a writer acknowledged: no kube-root-ca.crt.
    let mut s = TestServer::start_with(
        Path::new(env!("CARGO_BIN_EXE_berth")),
        &["--disable-controllers", "root-ca-cert-publisher"],
    );
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let attempted = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (addr, acked, attempted, stop) = (s.client(), acked.clone(), attempted.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{w}-{i}");
                i += 1;
                attempted.lock().unwrap().insert(name.clone());
                let body = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "writer": w.to_string() } });
                match addr.request("POST", "/api/v1/namespaces/default/configmaps", Some("application/json"), &serde_json::to_vec(&body).unwrap()) {
                    Ok(r) if r.status == 201 => {
                        acked.lock().unwrap().insert(name);
                    }
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    // Let some writes land, then kill the server without warning.
    assert!(berth_testkit::wait_until(Duration::from_secs(30), || acked.lock().unwrap().len() >= 300));
    s.signal_and_wait("KILL");
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    s.restart();
    let (code, list) = s.http_json("GET", "/api/v1/namespaces/default/configmaps", None);
    assert_eq!(code, 200);
    let stored: BTreeSet<String> =
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let attempted = attempted.lock().unwrap();
    let unexpected: Vec<_> = stored.difference(&attempted).collect();
    assert!(unexpected.is_empty(), "objects nobody wrote: {unexpected:?}");
    // Every stored object is whole.
    for item in list["items"].as_array().unwrap() {
        assert!(item["data"]["writer"].is_string(), "partial object: {item}");
    }
}

/// SIGTERM and SIGINT stop the server cleanly while a watch is open: the watch's response
/// ends (the chunked body's last chunk and TLS close_notify, not a reset), the server exits
/// 0 after saying so, and what was written before is there after a restart.
#[test]
fn sigterm_and_sigint_end_open_watches_and_stop_cleanly() {
    use std::io::{BufRead, BufReader, Read, Write};
    for signal in ["TERM", "INT"] {
        let mut s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
        s.kubectl_ok(&["create", "configmap", "before", "--from-literal=a=1"]);
        let client = s.client();
        let mut stream = client.connect().unwrap();
        let head = format!(
            "GET /api/v1/namespaces/default/configmaps?watch=1&fieldSelector=metadata.name%3Dbefore HTTP/1.1\r\nHost: {}\r\n{}\r\n",
            s.addr,
            client.auth_header()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut seen = String::new();
        while !seen.contains("\"before\"") {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the watch ended early: {seen}");
            seen.push_str(&line);
        }
        assert!(seen.starts_with("HTTP/1.1 200") && seen.contains("ADDED"), "{seen}");
        let status = s.signal_and_wait(signal);
        let mut rest = Vec::new();
        let ended = reader.read_to_end(&mut rest);
        assert!(ended.is_ok(), "SIG{signal}: the watch was cut, not ended: {ended:?}");
        assert!(rest.ends_with(b"0\r\n\r\n"), "SIG{signal}: no last chunk: {:?}", String::from_utf8_lossy(&rest));
        assert!(status.success(), "SIG{signal}: server exited with {status}: {}", s.log());
        assert!(s.log().contains("berth server stopped"), "{}", s.log());
        s.restart();
        assert_eq!(s.kubectl_ok(&["get", "configmap", "before", "-o", "jsonpath={.data.a}"]), "1");
    }
}

#[test]
fn sigterm_stops_cleanly_and_state_persists() {
    let mut s = TestServer::start(Path::new(env!("CARGO_BIN_EXE_berth")));
    s.kubectl_ok(&["create", "configmap", "kept", "--from-literal=a=1"]);
    let status = s.signal_and_wait("TERM");
    assert!(status.success(), "server exited with {status}: {}", s.log());
    assert!(s.log().contains("berth server stopped"), "{}", s.log());
    s.restart();
    assert_eq!(s.kubectl_ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"]), "1");
}
