//! The watch cache over a real SQLite store: history-only states keep bytes only and
//! decode back to what the live state was.

use std::sync::Arc;
use std::time::Duration;

use berth_store::Store;
use berth_store::sqlite::{SqliteOptions, SqliteStore};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Cache, CachedEvent, EventType};

struct Fixture {
    store: Arc<SqliteStore>,
    cache: Arc<Cache>,
    _dir: tempfile::TempDir,
}

async fn fixture(history: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());
    let cache = Cache::start(store.clone(), history).await.unwrap();
    Fixture { store, cache, _dir: dir }
}

fn pod(name: &str, phase: &str) -> Bytes {
    Bytes::from(
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}, "status": {"phase": phase}}).to_string(),
    )
}

async fn caught_up(f: &Fixture, revision: i64) {
    f.cache.wait_for(revision, Duration::from_secs(30)).await.unwrap();
}

/// Every event after `from` under `prefix`.
async fn events_after(cache: &Arc<Cache>, prefix: &str, from: i64) -> Vec<Arc<CachedEvent>> {
    let target = cache.revision();
    let mut cursor = cache.watch(prefix, from).unwrap();
    let mut all = Vec::new();
    while cursor.revision() < target {
        all.extend(tokio::time::timeout(Duration::from_secs(30), cursor.next()).await.unwrap().unwrap());
    }
    all
}

fn phase(v: &Value) -> &str {
    v.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn rv(v: &Value) -> &str {
    v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("")
}

#[tokio::test]
async fn replaced_and_deleted_states_keep_only_bytes_and_decode_the_same() {
    let f = fixture(100).await;
    let key = "/registry/core/pods/default/a";
    let created = f.store.create(key, pod("a", "Pending")).await.unwrap();
    let start = created.mod_revision - 1;
    let updated = f.store.update(key, pod("a", "Running"), created.mod_revision).await.unwrap();
    caught_up(&f, updated.mod_revision).await;

    let events = events_after(&f.cache, "/registry/core/pods/", start).await;
    assert_eq!(events.len(), 2);
    let (create, update) = (&events[0], &events[1]);
    assert!(!create.is_live(), "the created state was replaced: history only");
    assert!(update.is_live(), "the updated state is current");
    assert!(!create.has_prev());
    assert!(update.has_prev());
    // The history-only state decodes to the object with its own resourceVersion.
    let old = create.object().unwrap();
    assert_eq!((phase(&old.value), rv(&old.value)), ("Pending", created.mod_revision.to_string().as_str()));
    assert_eq!(serde_json::from_slice::<Value>(create.json()).unwrap(), old.value);
    let prev = update.prev().unwrap();
    assert_eq!(prev.value, old.value);
    assert_eq!(prev.revision, created.mod_revision);
    // The live state is the very object LIST and GET serve.
    let live = f.cache.get(key).unwrap();
    assert!(Arc::ptr_eq(&update.object().unwrap(), &live));
    assert_eq!(phase(&live.value), "Running");

    let deleted = f.store.delete(key, None).await.unwrap();
    caught_up(&f, deleted.mod_revision).await;
    let events = events_after(&f.cache, "/registry/core/pods/", start).await;
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventType::Put, EventType::Put, EventType::Delete]);
    assert!(events.iter().all(|e| !e.is_live()), "nothing is current after the delete");
    let gone = events[2].object().unwrap();
    assert_eq!(phase(&gone.value), "Running");
    assert_eq!(rv(&gone.value), deleted.mod_revision.to_string());
    assert_eq!(phase(&events[2].prev().unwrap().value), "Running");
    assert!(f.cache.get(key).is_none());
}

#[tokio::test]
async fn other_keys_at_the_same_time_stay_live() {
    let f = fixture(100).await;
    let a = f.store.create("/registry/core/pods/default/a", pod("a", "Pending")).await.unwrap();
    let b = f.store.create("/registry/core/pods/default/b", pod("b", "Pending")).await.unwrap();
    let a2 = f.store.update("/registry/core/pods/default/a", pod("a", "Running"), a.mod_revision).await.unwrap();
    caught_up(&f, a2.mod_revision).await;
    let events = events_after(&f.cache, "/registry/core/pods/", a.mod_revision - 1).await;
    let live: Vec<(&str, bool)> = events.iter().map(|e| (e.key(), e.is_live())).collect();
    assert_eq!(
        live,
        [
            ("/registry/core/pods/default/a", false),
            ("/registry/core/pods/default/b", true),
            ("/registry/core/pods/default/a", true)
        ]
    );
    assert_eq!(events[1].revision(), b.mod_revision);
}

#[tokio::test]
async fn a_state_older_than_the_window_is_gone_with_410() {
    let f = fixture(2).await;
    let key = "/registry/core/pods/default/a";
    let mut kv = f.store.create(key, pod("a", "Pending")).await.unwrap();
    let first = kv.mod_revision;
    for phase in ["Running", "Succeeded", "Failed"] {
        kv = f.store.update(key, pod("a", phase), kv.mod_revision).await.unwrap();
    }
    caught_up(&f, kv.mod_revision).await;
    let err = f.cache.watch("/registry/core/pods/", first).err().unwrap();
    assert_eq!(err.code, 410);
    // The two kept events still decode; the older one is history only.
    let events = events_after(&f.cache, "/registry/core/pods/", kv.mod_revision - 2).await;
    assert_eq!(
        events.iter().map(|e| phase(&e.object().unwrap().value).to_string()).collect::<Vec<_>>(),
        ["Succeeded", "Failed"]
    );
    assert_eq!(events.iter().map(|e| e.is_live()).collect::<Vec<_>>(), [false, true]);
}

/// The cache's JSON of a written object is its stored bytes with the resourceVersion
/// inserted: byte for byte what encoding the object with its resourceVersion gives.
#[test]
fn resource_version_is_inserted_where_serde_json_writes_it() {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "default",
            "labels": {"x": "y\"}"}, "uid": "u", "managedFields": [{"a": {"b": "]}"}}]},
            "spec": {"template": {"metadata": {"name": "inner"}}, "n": -1.5e3, "t": true, "z": null},
            "status": {"phase": "Pending"}}),
        json!({"metadata": {}}),
        json!({"metadata": {"annotations": {"a": "b"}}}),
        json!({"metadata": {"uid": "x"}}),
        json!({"a": [1, {"b": "}"}], "b": "\\", "metadata": {"name": "é✓", "zzz": [true, false, null]}, "z": 1}),
        json!({"metadata": {"generateName": "p-", "name": "p-1", "resourceVersionX": "q", "resourceVersiom": "r"}}),
    ];
    for obj in objects {
        let stored = serde_json::to_vec(&obj).unwrap();
        let mut with_rv = obj.clone();
        with_rv["metadata"]["resourceVersion"] = json!("42");
        let got = super::with_resource_version(&stored, 42).expect("laid out as serde_json writes");
        assert_eq!(String::from_utf8(got).unwrap(), serde_json::to_string(&with_rv).unwrap(), "{obj}");
    }
    // Bytes not laid out so are left to the encoder.
    for bad in
        [&b"{}"[..], b"[]", b"{\"metadata\":[]}", b"{\"metadata\":{\"resourceVersion\":\"1\"}}", b"{\"a\":1", b""]
    {
        assert_eq!(super::with_resource_version(bad, 1), None, "{}", String::from_utf8_lossy(bad));
    }
}

/// A frame in another format than the cache's JSON is made once per event and format and
/// shared by every watcher asking for it; another format, or another event, is made anew.
/// A history-only state gives its metadata without being decoded whole.
#[tokio::test]
async fn shared_frames_are_made_once_per_event_and_format() {
    let f = fixture(100).await;
    let key = "/registry/core/pods/default/a";
    let created = f.store.create(key, pod("a", "Pending")).await.unwrap();
    let updated = f.store.update(key, pod("a", "Running"), created.mod_revision).await.unwrap();
    caught_up(&f, updated.mod_revision).await;
    let events = events_after(&f.cache, "/registry/core/pods/", created.mod_revision - 1).await;
    assert_eq!(events.len(), 2);
    let (first, second) = (&events[0], &events[1]);
    assert!(!first.is_live(), "the create is history once the update came");
    assert_eq!(first.metadata().unwrap()["resourceVersion"], created.mod_revision.to_string());
    assert_eq!(second.metadata().unwrap()["name"], "a");

    let made = |n: u64| move || Some(Bytes::from(format!("frame {n}")));
    let before = f.cache.shared_frames_made();
    let a = f.cache.shared_frame(first, "table x", made(1)).unwrap();
    let b = f.cache.shared_frame(first, "table x", made(2)).unwrap();
    assert_eq!((a.clone(), b), (Bytes::from("frame 1"), Bytes::from("frame 1")), "the second watcher shares the frame");
    assert_eq!(f.cache.shared_frames_made() - before, 1);
    let other_format = f.cache.shared_frame(first, "partial meta.k8s.io/v1", made(3)).unwrap();
    let other_event = f.cache.shared_frame(second, "table x", made(4)).unwrap();
    assert_eq!((other_format, other_event), (Bytes::from("frame 3"), Bytes::from("frame 4")));
    assert_eq!(f.cache.shared_frames_made() - before, 3);
    // A frame that cannot be made is not remembered.
    assert!(f.cache.shared_frame(second, "table y", || None).is_none());
    assert_eq!(f.cache.shared_frame(second, "table y", made(5)).unwrap(), Bytes::from("frame 5"));
}

/// What a write answers before the store's event reaches the cache (the primed object's
/// stored bytes with the resourceVersion spliced in, or a copy of it) is what the cache
/// holds once the event arrives; a failed write takes its object back.
#[tokio::test]
async fn a_primed_object_answers_as_the_cache_will_hold_it() {
    let f = fixture(100).await;
    let key = "/registry/core/pods/default/p";
    let value = json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "p", "namespace": "default", "labels": {"a": "b"}, "uid": "u"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let stored = Bytes::from(serde_json::to_vec(&value).unwrap());
    f.cache.prime(key, stored.clone(), value.clone());
    // Other bytes at the key are not this object.
    let other = Bytes::from_static(b"{}");
    assert!(f.cache.primed_json(key, &other, 7).is_none());
    assert!(f.cache.primed_copy(key, &other).is_none());
    assert!(f.cache.unprime(key, &other).is_none());

    let created = f.store.create(key, stored.clone()).await.unwrap();
    let revision = created.mod_revision;
    // Before the event is applied (a racing follower may have taken it already: then
    // both are None and the cache has it).
    let spliced = f.cache.primed_json(key, &stored, revision);
    let copy = f.cache.primed_copy(key, &stored);
    caught_up(&f, revision).await;
    let cached = f.cache.get(key).unwrap();
    assert_eq!(cached.revision, revision);
    assert_eq!(rv(&cached.value), revision.to_string());
    if let Some(json) = spliced {
        assert_eq!(json, cached.json, "the spliced answer is the cache's encoding");
    }
    if let Some(mut copy) = copy {
        crate::object::set_resource_version(&mut copy, revision);
        assert_eq!(copy, cached.value);
    }
    // The event took the primed object: nothing is left to answer from or take back.
    assert!(f.cache.primed_json(key, &stored, revision).is_none());
    assert!(f.cache.unprime(key, &stored).is_none());

    // A write that fails gets its object back, once.
    let second = Bytes::from(serde_json::to_vec(&json!({"kind": "Pod", "metadata": {"name": "q"}})).unwrap());
    f.cache.prime("/registry/core/pods/default/q", second.clone(), json!({"kind": "Pod", "metadata": {"name": "q"}}));
    let spliced = f.cache.primed_json("/registry/core/pods/default/q", &second, 9).unwrap();
    assert_eq!(&spliced[..], br#"{"kind":"Pod","metadata":{"name":"q","resourceVersion":"9"}}"#);
    let back = f.cache.unprime("/registry/core/pods/default/q", &second).unwrap();
    assert_eq!(back, json!({"kind": "Pod", "metadata": {"name": "q"}}));
    assert!(f.cache.unprime("/registry/core/pods/default/q", &second).is_none());
}
