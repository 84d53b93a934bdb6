//! The backend-independent conformance suite: every [`Store`] backend must pass it.
//!
//! Each check takes a fresh, empty store and panics (it is a test suite) on the first
//! deviation from etcd v3 semantics. [`run_all`] runs them all; [`model`] holds the
//! model-based check driven by random operation sequences.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, KeyValue, Store, WatchStream};

pub mod model;

/// How long a check waits for an expected watch event.
const WAIT: Duration = Duration::from_secs(10);

/// Runs every check, each on a fresh store from `new_store`, closing it afterwards.
pub async fn run_all(new_store: impl Fn() -> Arc<dyn Store>) {
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            let store = new_store();
            $check(&*store).await;
            store.close().await.expect(concat!("close after ", stringify!($check)));
        )*};
    }
    run!(
        revisions_increase_by_one,
        create_fails_on_existing_key,
        update_is_compare_and_swap,
        delete_preconditions,
        version_and_create_revision_rules,
        range_respects_prefix_boundaries,
        range_paginates,
        range_at_past_revision,
        count_counts_live_keys,
        watch_replays_then_follows,
        watch_filters_by_prefix,
        compaction_forgets_history,
        concurrent_writers_get_distinct_revisions,
        compare_and_swap_loses_no_update,
        watches_started_during_writes_have_no_gaps,
        close_stops_writes_and_watches,
    );
}

fn val(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Takes `n` events from `stream`, panicking if they take longer than 10 seconds.
pub async fn take_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(err))) => panic!("watch failed after {} events: {err}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("watch stalled after {} of {n} events", events.len()),
        }
    }
    events
}

/// Every write takes the next revision, starting at 1.
pub async fn revisions_increase_by_one(store: &dyn Store) {
    assert_eq!(store.current_revision().await.unwrap(), 0);
    let a = store.create("/a", val("1")).await.unwrap();
    assert_eq!(a.mod_revision, 1);
    let b = store.create("/b", val("1")).await.unwrap();
    assert_eq!(b.mod_revision, 2);
    let a2 = store.update("/a", val("2"), a.mod_revision).await.unwrap();
    assert_eq!(a2.mod_revision, 3);
    let gone = store.delete("/b", None).await.unwrap();
    assert_eq!(gone.mod_revision, 4);
    // Failed writes take no revision.
    assert!(store.create("/a", val("x")).await.is_err());
    assert_eq!(store.current_revision().await.unwrap(), 4);
    assert_eq!(store.create("/c", val("1")).await.unwrap().mod_revision, 5);
}

/// `create` refuses an existing key and leaves it unchanged.
pub async fn create_fails_on_existing_key(store: &dyn Store) {
    let first = store.create("/k", val("one")).await.unwrap();
    assert_eq!((first.version, first.create_revision), (1, first.mod_revision));
    match store.create("/k", val("two")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, "/k"),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(store.get("/k").await.unwrap(), Some(first));
    assert_eq!(store.get("/missing").await.unwrap(), None);
}

/// `update` succeeds on the current mod revision and otherwise reports the current value.
pub async fn update_is_compare_and_swap(store: &dyn Store) {
    let v1 = store.create("/k", val("1")).await.unwrap();
    let v2 = store.update("/k", val("2"), v1.mod_revision).await.unwrap();
    assert_eq!(v2.value, val("2"));
    assert_eq!((v2.version, v2.create_revision), (2, v1.create_revision));
    match store.update("/k", val("3"), v1.mod_revision).await {
        Err(Error::Conflict { key, current }) => {
            assert_eq!(key, "/k");
            assert_eq!(current.as_deref(), Some(&v2));
        }
        other => panic!("stale update: {other:?}"),
    }
    match store.update("/missing", val("3"), 1).await {
        Err(Error::Conflict { current: None, .. }) => {}
        other => panic!("update of a missing key: {other:?}"),
    }
    assert_eq!(store.get("/k").await.unwrap(), Some(v2));
}

/// `delete` with a right, a stale and no precondition; NotFound on a missing key.
pub async fn delete_preconditions(store: &dyn Store) {
    let a = store.create("/a", val("a")).await.unwrap();
    let b = store.create("/b", val("b")).await.unwrap();
    match store.delete("/a", Some(a.mod_revision + 100)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current.as_deref(), Some(&a)),
        other => panic!("stale delete: {other:?}"),
    }
    let gone = store.delete("/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!(gone.value, a.value);
    assert_eq!(gone.mod_revision, b.mod_revision + 1);
    assert_eq!((gone.create_revision, gone.version), (a.create_revision, a.version));
    assert_eq!(store.get("/a").await.unwrap(), None);
    store.delete("/b", None).await.unwrap();
    assert!(matches!(store.delete("/b", None).await, Err(Error::NotFound(_))));
    assert!(matches!(store.delete("/b", Some(1)).await, Err(Error::NotFound(_))));
}

/// Version counts writes since creation; re-creating resets version and create revision.
pub async fn version_and_create_revision_rules(store: &dyn Store) {
    let mut kv = store.create("/k", val("0")).await.unwrap();
    for n in 2..=4 {
        kv = store.update("/k", val(&n.to_string()), kv.mod_revision).await.unwrap();
        assert_eq!(kv.version, n);
    }
    let first_create = kv.create_revision;
    store.delete("/k", None).await.unwrap();
    let again = store.create("/k", val("new")).await.unwrap();
    assert_eq!(again.version, 1);
    assert!(again.create_revision > first_create);
    assert_eq!(again.create_revision, again.mod_revision);
}

/// A prefix matches exactly the keys starting with it, trailing slash included.
pub async fn range_respects_prefix_boundaries(store: &dyn Store) {
    for key in ["/registry/pods/a", "/registry/pods/ab/x", "/registry/pods/ab", "/registry/podsx", "/registry/pods/b"] {
        store.create(key, val(key)).await.unwrap();
    }
    let keys = |kvs: Vec<KeyValue>| kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    let all = store.range("/registry/pods/", None, 0, None).await.unwrap();
    assert_eq!(keys(all.kvs), ["/registry/pods/a", "/registry/pods/ab", "/registry/pods/ab/x", "/registry/pods/b"]);
    assert!(!all.more);
    let ab = store.range("/registry/pods/ab/", None, 0, None).await.unwrap();
    assert_eq!(keys(ab.kvs), ["/registry/pods/ab/x"]);
    let a = store.range("/registry/pods/a", None, 0, None).await.unwrap();
    assert_eq!(keys(a.kvs), ["/registry/pods/a", "/registry/pods/ab", "/registry/pods/ab/x"]);
    let everything = store.range("", None, 0, None).await.unwrap();
    assert_eq!(everything.kvs.len(), 5);
    assert_eq!(everything.revision, store.current_revision().await.unwrap());
    assert!(store.range("/registry/pods/c", None, 0, None).await.unwrap().kvs.is_empty());
}

/// `limit`, `more` and `start_after` page through a prefix without skipping or repeating.
pub async fn range_paginates(store: &dyn Store) {
    for n in 0..7 {
        store.create(&format!("/p/{n}"), val("x")).await.unwrap();
    }
    store.create("/q/0", val("x")).await.unwrap();
    let rev = store.current_revision().await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.range("/p/", after.as_deref(), 3, Some(rev)).await.unwrap();
        assert_eq!(page.revision, rev);
        assert!(page.kvs.len() <= 3);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        after = page.kvs.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
    }
    let want: Vec<String> = (0..7).map(|n| format!("/p/{n}")).collect();
    assert_eq!(seen, want);
    let exact = store.range("/p/", Some("/p/3"), 3, None).await.unwrap();
    assert!(!exact.more, "exactly `limit` keys left means no more");
    // A start_after before the prefix does not widen the range.
    let wide = store.range("/q/", Some("/a"), 0, None).await.unwrap();
    assert_eq!(wide.kvs.len(), 1);
}

/// A range at a past revision sees the state of then; future revisions fail.
pub async fn range_at_past_revision(store: &dyn Store) {
    let a1 = store.create("/r/a", val("1")).await.unwrap();
    let b1 = store.create("/r/b", val("1")).await.unwrap();
    let a2 = store.update("/r/a", val("2"), a1.mod_revision).await.unwrap();
    store.delete("/r/b", None).await.unwrap();
    store.create("/r/c", val("1")).await.unwrap();
    let at = |rev| store.range("/r/", None, 0, Some(rev));
    assert_eq!(at(a1.mod_revision).await.unwrap().kvs, vec![a1.clone()]);
    assert_eq!(at(b1.mod_revision).await.unwrap().kvs, vec![a1, b1.clone()]);
    assert_eq!(at(a2.mod_revision).await.unwrap().kvs, vec![a2.clone(), b1]);
    let later = at(a2.mod_revision + 1).await.unwrap();
    assert_eq!(later.kvs, vec![a2.clone()]);
    assert_eq!(later.revision, a2.mod_revision + 1);
    let current = store.current_revision().await.unwrap();
    assert!(matches!(at(current + 1).await, Err(Error::FutureRevision { .. })));
}

/// `count` counts live keys under a prefix.
pub async fn count_counts_live_keys(store: &dyn Store) {
    for n in 0..5 {
        store.create(&format!("/c/{n}"), val("x")).await.unwrap();
    }
    store.create("/cx", val("x")).await.unwrap();
    store.delete("/c/0", None).await.unwrap();
    assert_eq!(store.count("/c/").await.unwrap(), 4);
    assert_eq!(store.count("/c").await.unwrap(), 5);
    assert_eq!(store.count("/none/").await.unwrap(), 0);
}

/// A watch from a past revision replays history in order, then follows live writes.
pub async fn watch_replays_then_follows(store: &dyn Store) {
    let a = store.create("/w/a", val("1")).await.unwrap();
    let a2 = store.update("/w/a", val("2"), a.mod_revision).await.unwrap();
    let gone = store.delete("/w/a", None).await.unwrap();
    let mut watch = store.watch("/w/", a2.mod_revision).await.unwrap();
    let b = store.create("/w/b", val("1")).await.unwrap();
    let events = take_events(&mut watch, 3).await;
    assert_eq!(events[0], Event::Put { kv: a2.clone(), prev: Some(a) });
    assert_eq!(events[1], Event::Delete { kv: gone });
    assert_eq!(events[2], Event::Put { kv: b.clone(), prev: None });
    // Live writes keep coming in order.
    let mut expected = Vec::new();
    let mut last = b;
    for n in 0..50 {
        let next = store.update("/w/b", val(&n.to_string()), last.mod_revision).await.unwrap();
        expected.push(Event::Put { kv: next.clone(), prev: Some(last) });
        last = next;
    }
    assert_eq!(take_events(&mut watch, 50).await, expected);
    // A watch from the future waits for its revision.
    let current = store.current_revision().await.unwrap();
    let mut future = store.watch("/w/", current + 2).await.unwrap();
    store.create("/w/c", val("1")).await.unwrap();
    let d = store.create("/w/d", val("1")).await.unwrap();
    assert_eq!(take_events(&mut future, 1).await, vec![Event::Put { kv: d, prev: None }]);
    // A watch from 0 sees only what happens after it started.
    let mut now = store.watch("/w/", 0).await.unwrap();
    let e = store.create("/w/e", val("1")).await.unwrap();
    assert_eq!(take_events(&mut now, 1).await, vec![Event::Put { kv: e, prev: None }]);
}

/// A watch sees only keys under its prefix.
pub async fn watch_filters_by_prefix(store: &dyn Store) {
    let mut watch = store.watch("/f/ab/", 1).await.unwrap();
    store.create("/f/a", val("x")).await.unwrap();
    store.create("/f/ab", val("x")).await.unwrap();
    let inside = store.create("/f/ab/1", val("x")).await.unwrap();
    store.create("/f/abc", val("x")).await.unwrap();
    let inside2 = store.create("/f/ab/2", val("x")).await.unwrap();
    let events = take_events(&mut watch, 2).await;
    assert_eq!(events, vec![Event::Put { kv: inside, prev: None }, Event::Put { kv: inside2, prev: None },]);
}

/// After compaction, old reads and watches fail with Compacted; current values remain.
pub async fn compaction_forgets_history(store: &dyn Store) {
    let a = store.create("/x/a", val("1")).await.unwrap();
    let b = store.create("/x/b", val("1")).await.unwrap();
    let a2 = store.update("/x/a", val("2"), a.mod_revision).await.unwrap();
    store.delete("/x/b", None).await.unwrap();
    let c = store.create("/x/c", val("1")).await.unwrap();
    let at = c.mod_revision - 1;
    store.compact(at).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), at);
    assert!(matches!(store.range("/x/", None, 0, Some(b.mod_revision)).await, Err(Error::Compacted { .. })));
    assert!(matches!(store.watch("/x/", at).await, Err(Error::Compacted { .. })));
    let now = store.range("/x/", None, 0, None).await.unwrap();
    assert_eq!(now.kvs, vec![a2.clone(), c.clone()]);
    // The revision just after the compaction is still readable and watchable.
    assert_eq!(store.range("/x/", None, 0, Some(c.mod_revision)).await.unwrap().kvs, vec![a2.clone(), c.clone()]);
    let mut watch = store.watch("/x/", at + 1).await.unwrap();
    assert_eq!(take_events(&mut watch, 1).await, vec![Event::Put { kv: c.clone(), prev: None }]);
    // Updating a key whose previous row is at the compaction boundary still carries prev.
    let a3 = store.update("/x/a", val("3"), a2.mod_revision).await.unwrap();
    assert_eq!(take_events(&mut watch, 1).await, vec![Event::Put { kv: a3, prev: Some(a2) }]);
    // Compacting again lower is a no-op; beyond the current revision fails.
    store.compact(1).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), at);
    let current = store.current_revision().await.unwrap();
    assert!(matches!(store.compact(current + 1).await, Err(Error::FutureRevision { .. })));
    store.compact(current).await.unwrap();
    assert_eq!(store.get("/x/c").await.unwrap(), Some(c));
}

/// Writers on many tasks all get distinct revisions, and a watch sees them all in order.
pub async fn concurrent_writers_get_distinct_revisions(store: &dyn Store) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 25;
    let mut watch = store.watch("/cc/", 1).await.unwrap();
    let writes = (0..TASKS).map(|task| async move {
        let mut revisions = Vec::new();
        for n in 0..PER_TASK {
            let key = format!("/cc/{task}/{n}");
            let kv = store.create(&key, val(&key)).await.unwrap();
            revisions.push(kv.mod_revision);
        }
        revisions
    });
    let mut revisions: Vec<i64> = futures::future::join_all(writes).await.into_iter().flatten().collect();
    revisions.sort_unstable();
    let total = TASKS * PER_TASK;
    let expected: Vec<i64> = (1..=i64::try_from(total).unwrap()).collect();
    assert_eq!(revisions, expected);
    let events = take_events(&mut watch, total).await;
    let seen: Vec<i64> = events.iter().map(Event::revision).collect();
    assert_eq!(seen, expected);
    assert_eq!(store.count("/cc/").await.unwrap(), u64::try_from(total).unwrap());
}

/// Many tasks incrementing one counter with read-modify-write loops lose no increment:
/// exactly one of two racing updates with the same expected revision wins.
pub async fn compare_and_swap_loses_no_update(store: &dyn Store) {
    const TASKS: usize = 8;
    const INCREMENTS: u64 = 20;
    store.create("/counter", val("0")).await.unwrap();
    let workers = (0..TASKS).map(|_| async move {
        let mut conflicts = 0u64;
        for _ in 0..INCREMENTS {
            let mut kv = store.get("/counter").await.unwrap().unwrap();
            loop {
                let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                match store.update("/counter", val(&(n + 1).to_string()), kv.mod_revision).await {
                    Ok(_) => break,
                    Err(Error::Conflict { current: Some(current), .. }) => {
                        conflicts += 1;
                        kv = *current;
                    }
                    Err(err) => panic!("update: {err}"),
                }
            }
        }
        conflicts
    });
    futures::future::join_all(workers).await;
    let total = INCREMENTS * u64::try_from(TASKS).unwrap();
    let kv = store.get("/counter").await.unwrap().unwrap();
    assert_eq!(kv.value, val(&total.to_string()));
    assert_eq!(kv.version, i64::try_from(total).unwrap() + 1);
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(kv.mod_revision, i64::try_from(total).unwrap() + 1);
}

/// Watches started at various revisions while writes are in flight each get every
/// event from their start on, in order, exactly once: the hand-over from history to
/// live events loses and repeats nothing.
pub async fn watches_started_during_writes_have_no_gaps(store: &dyn Store) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 100;
    let total = i64::try_from(TASKS * PER_TASK).unwrap();
    let writes = futures::future::join_all((0..TASKS).map(|task| async move {
        for n in 0..PER_TASK {
            store.create(&format!("/g/{task}/{n}"), val("x")).await.unwrap();
        }
    }));
    let watches = async {
        let mut watches = Vec::new();
        for n in 0..20i64 {
            let current = store.current_revision().await.unwrap();
            // Some from the past, some from now, some from the near future.
            let from = (current + (n % 5) - 2).max(1);
            watches.push((from, store.watch("/g/", from).await.unwrap()));
            tokio::task::yield_now().await;
        }
        watches
    };
    let (_, watches) = futures::future::join(writes, watches).await;
    for (from, mut watch) in watches {
        let want: Vec<i64> = (from..=total).collect();
        let events = take_events(&mut watch, want.len()).await;
        let got: Vec<i64> = events.iter().map(Event::revision).collect();
        assert_eq!(got, want, "watch from {from}");
    }
}

/// `close` refuses later writes and ends live watch streams.
pub async fn close_stops_writes_and_watches(store: &dyn Store) {
    let mut watch = store.watch("/", 1).await.unwrap();
    let kv = store.create("/z", val("1")).await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.create("/y", val("1")).await, Err(Error::Closed)));
    assert_eq!(take_events(&mut watch, 1).await, vec![Event::Put { kv, prev: None }]);
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(None) => {}
        other => panic!("watch after close: {other:?}"),
    }
}
