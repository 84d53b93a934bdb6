//! Model-based check: a sequence of operations runs against the store and against an
//! in-memory model (a map plus its full history); results, every readable past
//! revision and the watch log must agree.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::take_events;
use crate::{Error, Event, KeyValue, Revision, Store};

/// Keys the model uses: they nest and share prefixes, to exercise prefix boundaries.
pub const KEYS: [&str; 5] = ["/m/a", "/m/ab", "/m/ab/c", "/m/b", "/n/a"];

/// One step of a model run. Key indexes are taken modulo [`KEYS`].
#[derive(Debug, Clone)]
pub enum ModelOp {
    /// Create the key.
    Create(usize),
    /// Update the key, with its current mod revision or (`stale`) a wrong one.
    Update {
        /// Index into [`KEYS`].
        key: usize,
        /// Use a wrong expected revision.
        stale: bool,
    },
    /// Delete the key, without precondition (None), with the right (false) or a stale one.
    Delete {
        /// Index into [`KEYS`].
        key: usize,
        /// The precondition: None, right (false) or stale (true).
        stale: Option<bool>,
    },
    /// Compact to `back` revisions before the current one.
    Compact(i64),
}

/// A proptest strategy for operation sequences of up to `len` steps.
#[cfg(any(test, feature = "proptest"))]
pub fn ops(len: usize) -> impl proptest::strategy::Strategy<Value = Vec<ModelOp>> {
    use proptest::prelude::*;
    let op = prop_oneof![
        4 => (0..KEYS.len()).prop_map(ModelOp::Create),
        4 => (0..KEYS.len(), proptest::bool::weighted(0.2))
            .prop_map(|(key, stale)| ModelOp::Update { key, stale }),
        2 => (0..KEYS.len(), proptest::option::of(proptest::bool::weighted(0.3)))
            .prop_map(|(key, stale)| ModelOp::Delete { key, stale }),
        1 => (0i64..6).prop_map(ModelOp::Compact),
    ];
    proptest::collection::vec(op, 1..len)
}

/// The model: current keys, the state after every revision, and the event log.
#[derive(Default)]
struct Model {
    now: BTreeMap<String, KeyValue>,
    /// `states[r]` is the state at revision r (`states[0]` is empty).
    states: Vec<BTreeMap<String, KeyValue>>,
    events: Vec<Event>,
    compacted: Revision,
}

impl Model {
    fn revision(&self) -> Revision {
        Revision::try_from(self.events.len()).unwrap_or(Revision::MAX)
    }

    fn commit(&mut self, event: Event) {
        match &event {
            Event::Put { kv, .. } => {
                self.now.insert(kv.key.clone(), kv.clone());
            }
            Event::Delete { kv } => {
                self.now.remove(&kv.key);
            }
        }
        self.events.push(event);
        self.states.push(self.now.clone());
    }
}

fn value(n: usize) -> Bytes {
    Bytes::from(format!("v{n}"))
}

/// Runs `ops` against `store` (fresh and empty) and the model, checking every result,
/// then every past revision's range and the watch log from the oldest readable revision.
pub async fn check_model(store: &dyn Store, ops: &[ModelOp]) {
    let mut model = Model { states: vec![BTreeMap::new()], ..Model::default() };
    for (step, op) in ops.iter().enumerate() {
        let next = model.revision() + 1;
        match op {
            ModelOp::Create(key) => {
                let key = KEYS[key % KEYS.len()];
                let got = store.create(key, value(step)).await;
                if model.now.contains_key(key) {
                    assert!(matches!(got, Err(Error::AlreadyExists(_))), "step {step} {op:?}: {got:?}");
                } else {
                    let kv = KeyValue {
                        key: key.to_owned(),
                        value: value(step),
                        create_revision: next,
                        mod_revision: next,
                        version: 1,
                    };
                    assert_eq!(got.as_ref().ok(), Some(&kv), "step {step} {op:?}: {got:?}");
                    model.commit(Event::Put { kv, prev: None });
                }
            }
            ModelOp::Update { key, stale } => {
                let key = KEYS[key % KEYS.len()];
                let current = model.now.get(key).cloned();
                let expected = current.as_ref().map_or(next, |kv| kv.mod_revision) - Revision::from(*stale);
                let got = store.update(key, value(step), expected).await;
                match current {
                    Some(prev) if !stale => {
                        let kv = KeyValue {
                            value: value(step),
                            mod_revision: next,
                            version: prev.version + 1,
                            ..prev.clone()
                        };
                        assert_eq!(got.as_ref().ok(), Some(&kv), "step {step} {op:?}: {got:?}");
                        model.commit(Event::Put { kv, prev: Some(prev) });
                    }
                    current => match got {
                        Err(Error::Conflict { current: got_current, .. }) => {
                            assert_eq!(got_current.map(|kv| *kv), current, "step {step} {op:?}");
                        }
                        other => panic!("step {step} {op:?}: {other:?}"),
                    },
                }
            }
            ModelOp::Delete { key, stale } => {
                let key = KEYS[key % KEYS.len()];
                let current = model.now.get(key).cloned();
                let expected =
                    stale.map(|stale| current.as_ref().map_or(1, |kv| kv.mod_revision) + Revision::from(stale));
                let got = store.delete(key, expected).await;
                match current {
                    None => assert!(matches!(got, Err(Error::NotFound(_))), "step {step} {op:?}: {got:?}"),
                    Some(current) if *stale == Some(true) => match got {
                        Err(Error::Conflict { current: Some(got_current), .. }) => {
                            assert_eq!(*got_current, current, "step {step} {op:?}");
                        }
                        other => panic!("step {step} {op:?}: {other:?}"),
                    },
                    Some(current) => {
                        let kv = KeyValue { mod_revision: next, ..current };
                        assert_eq!(got.as_ref().ok(), Some(&kv), "step {step} {op:?}: {got:?}");
                        model.commit(Event::Delete { kv });
                    }
                }
            }
            ModelOp::Compact(back) => {
                let target = model.revision() - back;
                if target < 1 {
                    continue;
                }
                store.compact(target).await.unwrap_or_else(|err| panic!("step {step} compact({target}): {err}"));
                model.compacted = model.compacted.max(target);
            }
        }
    }
    verify(store, &model).await;
}

/// Checks reads at every revision and the watch log against the model.
async fn verify(store: &dyn Store, model: &Model) {
    let current = model.revision();
    assert_eq!(store.current_revision().await.unwrap(), current);
    assert_eq!(store.compacted_revision().await.unwrap(), model.compacted);
    for rev in 1..=current {
        let got = store.range("/m/", None, 0, Some(rev)).await;
        if rev <= model.compacted {
            assert!(matches!(got, Err(Error::Compacted { .. })), "range at compacted {rev}: {got:?}");
            continue;
        }
        let want: Vec<KeyValue> = model.states[usize::try_from(rev).unwrap_or(0)]
            .values()
            .filter(|kv| kv.key.starts_with("/m/"))
            .cloned()
            .collect();
        let got = got.unwrap_or_else(|err| panic!("range at {rev}: {err}"));
        assert_eq!(got.kvs, want, "range at revision {rev}");
        // Paging by one key at a time sees the same keys.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.range("/m/", after.as_deref(), 1, Some(rev)).await.unwrap();
            paged.extend(page.kvs.iter().cloned());
            after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        assert_eq!(paged, want, "paged range at revision {rev}");
    }
    let now: Vec<KeyValue> = model.now.values().cloned().collect();
    assert_eq!(store.range("", None, 0, None).await.unwrap().kvs, now);
    let from = model.compacted + 1;
    let want: Vec<Event> = model.events.iter().filter(|event| event.revision() >= from).cloned().collect();
    let mut watch = store.watch("", from).await.unwrap();
    assert_eq!(take_events(&mut watch, want.len()).await, want, "watch from {from}");
    let nested: Vec<Event> = want.iter().filter(|event| event.key().starts_with("/m/ab/")).cloned().collect();
    let mut watch = store.watch("/m/ab/", from).await.unwrap();
    assert_eq!(take_events(&mut watch, nested.len()).await, nested, "watch /m/ab/ from {from}");
}
