//! Request decoding under random input, through the real server over HTTPS: valid seed
//! requests (JSON, YAML and protobuf bodies; JSON, merge, strategic-merge and apply
//! patches; label and field selectors) are mutated byte-wise and structurally, sent, and
//! every answer must be a success or a 4xx `Status` with the same code: never a 5xx, a
//! dropped connection or a dead server.
//!
//! The coverage-guided fuzzing of the same decoding code, in process, is the cargo-fuzz
//! project in `fuzz/` (targets `decode_body`, `selectors`, `patches`, run briefly by
//! `scripts/test.sh`); this test keeps the end-to-end check that the HTTP layer turns
//! every such input into a proper `Status`. `BERTH_FUZZ_CASES` sets the number of
//! requests (default 1,500), `BERTH_FUZZ_SEED` replays a run (a failure prints its seed
//! and request).

use std::path::Path;

use berth_testkit::{HttpClient, TestServer};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// One request to mutate.
struct Seed {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// The body is JSON: structural mutations apply.
    json: bool,
}

fn seed(method: &'static str, path: &'static str, content_type: &'static str, body: Value) -> Seed {
    Seed { method, path, content_type: Some(content_type), body: body.to_string().into_bytes(), json: true }
}

/// A protobuf field of wire type 2 (length-delimited).
fn pb_field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for mut v in [u64::from(number << 3 | 2), bytes.len() as u64] {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(bytes);
    out
}

/// A ConfigMap as kubectl sends it in protobuf: the `k8s\0` magic, then a
/// runtime.Unknown{typeMeta{apiVersion, kind}, raw: ConfigMap{metadata{name}, data}}.
fn protobuf_configmap() -> Vec<u8> {
    let meta = pb_field(1, b"fuzz-pb");
    let entry = [pb_field(1, b"k"), pb_field(2, b"v")].concat();
    let configmap = [pb_field(1, &meta), pb_field(2, &entry)].concat();
    let type_meta = [pb_field(1, b"v1"), pb_field(2, b"ConfigMap")].concat();
    let unknown = [pb_field(1, &type_meta), pb_field(2, &configmap)].concat();
    [b"k8s\0".as_slice(), &unknown].concat()
}

fn seeds() -> Vec<Seed> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "fz-", "labels": {"app": "fz"}, "annotations": {"a": "b"}},
        "spec": {"containers": [{
            "name": "c", "image": "busybox:1.36", "command": ["sleep", "1"],
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
        }], "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]}
    });
    let deployment_yaml = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  generateName: fz-\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {app: fz}\n  template:\n    metadata:\n      labels: {app: fz}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n".to_vec();
    let apply_yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\ndata:\n  applied: \"yes\"\n".to_vec();
    vec![
        seed(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "fz-", "labels": {"a": "b"}}, "data": {"k": "v"}}),
        ),
        seed("POST", "/api/v1/namespaces/default/pods", "application/json", pod),
        Seed {
            method: "POST",
            path: "/apis/apps/v1/namespaces/default/deployments",
            content_type: Some("application/yaml"),
            body: deployment_yaml,
            json: false,
        },
        Seed {
            method: "POST",
            path: "/api/v1/namespaces/default/configmaps",
            content_type: Some("application/vnd.kubernetes.protobuf"),
            body: protobuf_configmap(),
            json: false,
        },
        seed(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/base",
            "application/json-patch+json",
            json!([{"op": "add", "path": "/data/x", "value": "y"}, {"op": "test", "path": "/metadata/name", "value": "base"}]),
        ),
        seed(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/base",
            "application/merge-patch+json",
            json!({"data": {"x": "z"}, "metadata": {"labels": {"l": "1"}}}),
        ),
        seed(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/base",
            "application/strategic-merge-patch+json",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}),
        ),
        Seed {
            method: "PATCH",
            path: "/api/v1/namespaces/default/configmaps/base?fieldManager=fuzz&force=true",
            content_type: Some("application/apply-patch+yaml"),
            body: apply_yaml,
            json: false,
        },
        seed(
            "PUT",
            "/api/v1/namespaces/default/configmaps/base",
            "application/json",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "base"}, "data": {"put": "1"}}),
        ),
    ]
}

/// A xorshift generator: reproducible from its seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Values of other types and shapes than the ones they replace.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(1e300),
        3 => json!(u64::MAX),
        4 => json!(true),
        5 => json!("x".repeat(rng.below(70_000))),
        6 => json!([]),
        7 => json!({"": {"\u{0}": [null]}}),
        8 => (0..rng.below(300)).fold(json!(1), |v, _| json!([v])),
        _ => json!("\u{feff}\u{1F600}../../etc"),
    }
}

/// Replaces one node of `v` (chosen at random, possibly the root) with an odd value, or
/// removes one member.
fn mutate_tree(v: &mut Value, rng: &mut Rng) {
    let children = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if children == 0 || rng.below(4) == 0 {
        *v = odd_value(rng);
        return;
    }
    let i = rng.below(children);
    if rng.below(6) == 0 {
        match v {
            Value::Object(m) => {
                let key = m.keys().nth(i).cloned().unwrap_or_default();
                m.remove(&key);
            }
            Value::Array(a) => {
                a.remove(i);
            }
            _ => {}
        }
        return;
    }
    let child = match v {
        Value::Object(m) => m.values_mut().nth(i),
        Value::Array(a) => a.get_mut(i),
        _ => None,
    };
    if let Some(child) = child {
        mutate_tree(child, rng);
    }
}

const TOKENS: [&[u8]; 10] =
    [b"null", b"{}", b"[]", b"\"", b"\\u0000", b"-0", b"1e999", b"\xff\xfe", b"\n- - -\n", b"*anchor"];

/// Byte-level mutations: flips, cuts, insertions, duplications, tokens.
fn mutate_bytes(body: &mut Vec<u8>, rng: &mut Rng) {
    let len = body.len();
    match rng.below(6) {
        0 if len > 0 => {
            let i = rng.below(len);
            body[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            let n = rng.below(len - at + 1);
            body.drain(at..at + n);
        }
        2 => {
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..rng.below(16) + 1).map(|_| rng.byte()).collect();
            body.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = rng.below(len - at) + 1;
            let copy = body[at..at + n].to_vec();
            body.splice(at..at, copy);
        }
        4 => body.truncate(rng.below(len + 1)),
        _ => {
            let at = rng.below(len + 1);
            body.splice(at..at, TOKENS[rng.below(TOKENS.len())].iter().copied());
        }
    }
}

/// A selector query with random bytes in it, percent-encoded as a client would.
fn selector_query(rng: &mut Rng) -> String {
    let bases =
        ["app=fz", "app in (a,b),!x", "a!=b,c notin (d)", "metadata.name=x", "spec.nodeName!=n,status.phase=Running"];
    let mut s = bases[rng.below(bases.len())].as_bytes().to_vec();
    for _ in 0..rng.below(3) + 1 {
        mutate_bytes(&mut s, rng);
    }
    let encoded: String = s.iter().map(|b| format!("%{b:02X}")).collect();
    let which = if rng.below(2) == 0 { "labelSelector" } else { "fieldSelector" };
    format!("/api/v1/namespaces/default/pods?{which}={encoded}")
}

fn send(client: &HttpClient, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    let response = client
        .request_with(method, path, &[], content_type, body)
        .unwrap_or_else(|e| panic!("{method} {path}: the connection failed: {e}"));
    (response.status, response.body)
}

#[test]
fn random_request_bodies_and_selectors_get_a_status_never_a_server_error() {
    let server = TestServer::start(Path::new(BIN));
    let client = server.client();
    // The objects the patch and update seeds address.
    server.kubectl_ok(&["create", "configmap", "base", "--from-literal=k=v"]);
    server.kubectl_ok(&["create", "deployment", "base", "--image=busybox:1.36", "--replicas=0"]);

    let cases: usize = std::env::var("BERTH_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500);
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    let mut rng = Rng(seed);
    let seeds = seeds();
    // Every seed as it is must be accepted: otherwise the mutations explore nothing.
    for s in &seeds {
        let (status, body) = send(&client, s.method, s.path, s.content_type, &s.body);
        assert!(
            (200..300).contains(&status),
            "seed {} {} got {status}: {}",
            s.method,
            s.path,
            String::from_utf8_lossy(&body)
        );
    }
    let (mut ok, mut refused) = (0, 0);
    for case in 0..cases {
        let (method, path, content_type, body) = if rng.below(8) == 0 {
            ("GET", selector_query(&mut rng), None, Vec::new())
        } else {
            let s = &seeds[rng.below(seeds.len())];
            let mut body = s.body.clone();
            if s.json && rng.below(2) == 0 {
                let mut tree: Value = serde_json::from_slice(&body).unwrap();
                mutate_tree(&mut tree, &mut rng);
                body = tree.to_string().into_bytes();
            } else {
                for _ in 0..rng.below(3) + 1 {
                    mutate_bytes(&mut body, &mut rng);
                }
            }
            (s.method, s.path.to_string(), s.content_type, body)
        };
        let (status, answer) = send(&client, method, &path, content_type, &body);
        let replay = || {
            format!(
                "case {case} of BERTH_FUZZ_SEED={seed}: {method} {path} ({content_type:?}) with {:?}\n-> {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(2_000)]),
                String::from_utf8_lossy(&answer[..answer.len().min(2_000)])
            )
        };
        assert!(status < 500, "a server error: {}", replay());
        if status >= 400 {
            let st: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            assert!(st["kind"] == "Status" && st["code"] == status, "not a Status of code {status}: {}", replay());
            refused += 1;
        } else {
            ok += 1;
        }
    }
    eprintln!("{cases} cases from seed {seed}: {ok} accepted, {refused} refused with a Status");
    assert!(refused > 0 && ok > 0, "the mutations should produce both valid and invalid requests");
    // Still serving, and the objects the patches aimed at are whole.
    let (status, _) = send(&client, "GET", "/readyz", None, b"");
    assert_eq!(status, 200);
    server.kubectl_ok(&["get", "configmap", "base", "-o", "name"]);
    server.kubectl_ok(&["get", "deployment", "base", "-o", "name"]);
}
