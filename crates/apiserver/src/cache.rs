//! The watch cache: every object of every resource in memory, following the store's
//! watch stream, with a window of recent events for watchers to start from.
//!
//! LISTs that may be served from cache and every WATCH are answered from here. Each
//! object is encoded to JSON once, when its event arrives; watchers and lists reuse
//! those bytes. Watchers pull events by revision from the shared history (no
//! per-watcher queues), so a slow watcher never blocks others and never misses an
//! event: if it falls out of the window its watch ends with 410 Expired.
//!
//! Only an object's current state is kept decoded. A state that is history only (replaced
//! or deleted, kept for watchers starting from an older resourceVersion) keeps just its
//! JSON bytes, and is decoded again when a watcher needs the object (selectors,
//! conversion, Table output): a kept version of a 4.6 kB Pod costs ~8 kB instead of
//! ~60 kB (`berth bench memory`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_store::{Event, KeyValue, Revision, Store};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};
use crate::object;

/// One object as the cache holds it: decoded, with its resourceVersion set, and encoded once.
#[derive(Debug)]
pub struct CachedObject {
    /// Store key.
    pub key: String,
    /// The object, with `metadata.resourceVersion` set.
    pub value: Value,
    /// `value` encoded as JSON.
    pub json: Bytes,
    /// The store revision of this state of the object.
    pub revision: Revision,
}

impl CachedObject {
    /// Decodes a store value, setting its resourceVersion to `revision`.
    pub fn decode(key: &str, raw: &[u8], revision: Revision) -> Option<CachedObject> {
        let mut value: Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(key, error = %e, "undecodable object in store; skipped");
                return None;
            }
        };
        object::set_resource_version(&mut value, revision);
        let json = Bytes::from(serde_json::to_vec(&value).ok()?);
        Some(CachedObject { key: key.to_string(), value, json, revision })
    }

    /// Decodes JSON this cache encoded (resourceVersion already set), keeping the bytes.
    pub fn from_json(key: &str, json: Bytes, revision: Revision) -> Option<CachedObject> {
        match serde_json::from_slice(&json) {
            Ok(value) => Some(CachedObject { key: key.to_string(), value, json, revision }),
            Err(e) => {
                tracing::error!(key, error = %e, "undecodable object in the watch cache history; skipped");
                None
            }
        }
    }

    /// The cached form of a store key-value.
    pub fn from_kv(kv: &KeyValue) -> Option<CachedObject> {
        Self::decode(&kv.key, &kv.value, kv.mod_revision)
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created or updated (`prev` tells which).
    Put,
    /// Deleted.
    Delete,
}

/// One state of an object in an event.
#[derive(Debug, Clone)]
enum Version {
    /// The object's current state, shared with the object map: decoded.
    Live(Arc<CachedObject>),
    /// History only: the JSON bytes (with resourceVersion set), decoded on demand.
    Past {
        /// The encoded object.
        json: Bytes,
        /// Its revision.
        revision: Revision,
    },
}

impl Version {
    /// The history-only form of `object` (its bytes are shared, not copied).
    fn past(object: &CachedObject) -> Version {
        Version::Past { json: object.json.clone(), revision: object.revision }
    }

    fn json(&self) -> &Bytes {
        match self {
            Version::Live(o) => &o.json,
            Version::Past { json, .. } => json,
        }
    }

    fn revision(&self) -> Revision {
        match self {
            Version::Live(o) => o.revision,
            Version::Past { revision, .. } => *revision,
        }
    }

    fn decoded(&self, key: &str) -> Option<Arc<CachedObject>> {
        match self {
            Version::Live(o) => Some(o.clone()),
            Version::Past { json, revision } => CachedObject::from_json(key, json.clone(), *revision).map(Arc::new),
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug)]
pub struct CachedEvent {
    /// Put or delete.
    pub kind: EventType,
    key: String,
    /// The object after the change (for a delete: its last state with the delete's resourceVersion).
    object: Version,
    /// The object before the change, None on create.
    prev: Option<Version>,
}

impl CachedEvent {
    /// The event's revision.
    pub fn revision(&self) -> Revision {
        self.object.revision()
    }

    /// The object's store key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The object after the change, encoded as JSON (shared by every watcher).
    pub fn json(&self) -> &Bytes {
        self.object.json()
    }

    /// True when the event has a previous state (an update, or a delete of a known object).
    pub fn has_prev(&self) -> bool {
        self.prev.is_some()
    }

    /// The object after the change, decoded: shared with the cache while it is the object's
    /// current state, decoded from its bytes once it is history. None only if the bytes do
    /// not decode (logged).
    pub fn object(&self) -> Option<Arc<CachedObject>> {
        self.object.decoded(&self.key)
    }

    /// The object before the change, decoded (see [`CachedEvent::object`]); None on create.
    pub fn prev(&self) -> Option<Arc<CachedObject>> {
        self.prev.as_ref().and_then(|p| p.decoded(&self.key))
    }

    /// True while the event's object is the current state of its key, kept decoded.
    pub fn is_live(&self) -> bool {
        matches!(self.object, Version::Live(_))
    }

    /// The object's `metadata` (`None` when it has none, or its bytes do not decode): taken
    /// from the decoded object while it is live, else parsed from the bytes alone, without
    /// decoding the rest of the object.
    pub fn metadata(&self) -> Option<Value> {
        #[derive(serde::Deserialize)]
        struct MetadataOnly {
            metadata: Option<Value>,
        }
        match &self.object {
            Version::Live(o) => o.value.get("metadata").cloned(),
            Version::Past { json, .. } => serde_json::from_slice::<MetadataOnly>(json).ok().and_then(|m| m.metadata),
        }
    }
}

/// How many recent watch frames of other formats than the cached JSON are kept for sharing.
/// Watchers of one prefix are woken by the same revisions and frame the same events at about
/// the same time; older frames are made again by a watcher that needs them.
const SHARED_FRAMES: usize = 1024;

/// Watch frames in formats other than the cache's JSON (Table, PartialObjectMetadata), made
/// once per event and format for all the watchers that ask for the same one. Only recent
/// frames are kept, so the history holds no second copy of its events.
#[derive(Default)]
struct SharedFrames {
    /// (revision, key, format) → the frame.
    recent: std::sync::Mutex<VecDeque<(Revision, String, String, Bytes)>>,
    /// Frames made (for tests and diagnostics).
    made: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    revision: Revision,
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CachedEvent>>,
    /// Bumped when the cache re-lists; watchers of an older epoch end.
    epoch: u64,
}

impl State {
    /// `old` is no longer its key's current state: the history event that made it so
    /// keeps only its bytes from now on, so that its decoded form is freed.
    fn retire(&mut self, old: &CachedObject) {
        let start = self.history.partition_point(|e| e.revision() < old.revision);
        let Some(i) = (start..self.history.len())
            .take_while(|&i| self.history[i].revision() == old.revision)
            .find(|&i| self.history[i].key == old.key)
        else {
            return; // older than the window, or from the last re-list
        };
        let e = &self.history[i];
        if let Version::Live(_) = e.object {
            let past =
                CachedEvent { kind: e.kind, key: e.key.clone(), object: Version::past(old), prev: e.prev.clone() };
            self.history[i] = Arc::new(past);
        }
    }
}

/// The watch cache over one store.
pub struct Cache {
    state: RwLock<State>,
    history: usize,
    /// Objects this server is writing, by key: the bytes sent to the store and the object
    /// they encode. The store's event for the key takes the object when its bytes match,
    /// instead of decoding them again.
    primed: std::sync::Mutex<HashMap<String, (Bytes, Value)>>,
    revision_tx: watch::Sender<(u64, Revision)>,
    frames: SharedFrames,
}

/// Keys in `[prefix, prefix + 0xFF)`.
fn prefix_range(prefix: &str) -> (Bound<String>, Bound<String>) {
    let mut end = prefix.to_string();
    end.push(char::MAX);
    (Bound::Included(prefix.to_string()), Bound::Excluded(end))
}

impl Cache {
    /// Lists everything under `/registry/` and starts following the store, keeping the
    /// last `history` events for watchers that start in the past. Returns once primed.
    pub async fn start(store: Arc<dyn Store>, history: usize) -> berth_store::Result<Arc<Cache>> {
        let (revision_tx, _) = watch::channel((0, 0));
        let cache = Arc::new(Cache {
            state: RwLock::new(State::default()),
            history: history.max(1),
            primed: std::sync::Mutex::new(HashMap::new()),
            revision_tx,
            frames: SharedFrames::default(),
        });
        let rev = cache.relist(store.as_ref()).await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(store, rev).await });
        Ok(cache)
    }

    async fn relist(&self, store: &dyn Store) -> berth_store::Result<Revision> {
        let mut objects = BTreeMap::new();
        let mut start: Option<String> = None;
        let mut revision = None;
        loop {
            let page = store.range("/registry/", start.as_deref(), 10_000, revision).await?;
            revision = Some(page.revision);
            for kv in &page.kvs {
                if let Some(o) = CachedObject::from_kv(kv) {
                    objects.insert(kv.key.clone(), Arc::new(o));
                }
            }
            start = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        let revision = revision.unwrap_or(0);
        let epoch = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            st.objects = objects;
            st.history.clear();
            st.revision = revision;
            st.epoch += 1;
            st.epoch
        };
        self.revision_tx.send_replace((epoch, revision));
        Ok(revision)
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, mut rev: Revision) {
        loop {
            let mut stream = match store.watch("/registry/", rev + 1).await {
                Ok(s) => s,
                Err(berth_store::Error::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: store watch failed; re-listing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match self.relist(store.as_ref()).await {
                        Ok(r) => rev = r,
                        Err(berth_store::Error::Closed) => return,
                        Err(e) => tracing::error!(error = %e, "watch cache: re-list failed"),
                    }
                    continue;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        rev = event.revision();
                        self.apply(event);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache: store watch ended");
                        break;
                    }
                }
            }
            if matches!(store.current_revision().await, Err(berth_store::Error::Closed)) {
                return;
            }
        }
    }

    /// Tells the cache that `stored` (the encoding of `value`, without resourceVersion) is
    /// about to be written at `key`, so that the store's event for it needs no decoding.
    /// Call it before the write: the event may arrive before the write returns.
    pub fn prime(&self, key: &str, stored: Bytes, value: Value) {
        let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        if primed.len() >= 4096 {
            // Writes that failed leave their entries behind: start over.
            primed.clear();
        }
        primed.insert(key.to_string(), (stored, value));
    }

    /// A copy of the object primed at `key` as `stored`, while the store's event for it has
    /// not taken it yet.
    pub fn primed_copy(&self, key: &str, stored: &Bytes) -> Option<Value> {
        let primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        primed.get(key).filter(|(bytes, _)| bytes == stored).map(|(_, value)| value.clone())
    }

    /// The JSON encoding, with resourceVersion `revision`, of the object primed at `key` as
    /// `stored` (while the store's event for it has not taken it): the stored bytes with the
    /// resourceVersion inserted, as the event will encode it. None when not primed so, or
    /// when the bytes cannot be spliced.
    pub fn primed_json(&self, key: &str, stored: &Bytes, revision: Revision) -> Option<Bytes> {
        let spliceable = {
            let primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
            match primed.get(key) {
                Some((bytes, value)) if bytes == stored => {
                    value.get("metadata").is_some_and(|m| m.get("selfLink").is_none())
                }
                _ => false,
            }
        };
        spliceable.then(|| with_resource_version(stored, revision)).flatten().map(Bytes::from)
    }

    /// Takes back the object primed at `key` as `stored` (its write failed).
    pub fn unprime(&self, key: &str, stored: &Bytes) -> Option<Value> {
        let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
        match primed.get(key) {
            Some((bytes, _)) if bytes == stored => primed.remove(key).map(|(_, value)| value),
            _ => None,
        }
    }

    fn take_primed(&self, kv: &KeyValue) -> Option<Arc<CachedObject>> {
        let (stored, mut value) = {
            let mut primed = self.primed.lock().unwrap_or_else(|e| e.into_inner());
            match primed.get(&kv.key) {
                Some((stored, _)) if *stored == kv.value => primed.remove(&kv.key)?,
                _ => return None,
            }
        };
        // `stored` is serde_json's encoding of `value` without resourceVersion (and selfLink):
        // inserting the resourceVersion into those bytes gives `value`'s encoding, unencoded again.
        let spliced = match value.get("metadata") {
            Some(m) if m.get("selfLink").is_none() => with_resource_version(&stored, kv.mod_revision),
            _ => None,
        };
        drop(stored);
        object::set_resource_version(&mut value, kv.mod_revision);
        let json = match spliced {
            Some(json) => json,
            None => serde_json::to_vec(&value).ok()?,
        };
        Some(Arc::new(CachedObject { key: kv.key.clone(), value, json: Bytes::from(json), revision: kv.mod_revision }))
    }

    fn apply(&self, event: Event) {
        let revision = event.revision();
        let cached = match &event {
            Event::Put { kv, .. } => match self.take_primed(kv).or_else(|| CachedObject::from_kv(kv).map(Arc::new)) {
                Some(o) => o,
                None => return,
            },
            Event::Delete { kv } => match CachedObject::from_kv(kv) {
                Some(o) => Arc::new(o),
                None => return,
            },
        };
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        let (kind, key, object, prev) = match event {
            Event::Put { kv, .. } => {
                let prev = st.objects.insert(kv.key.clone(), cached.clone());
                (EventType::Put, kv.key, Version::Live(cached), prev)
            }
            // A deleted object is history from the start.
            Event::Delete { kv } => {
                let prev = st.objects.remove(&kv.key);
                (EventType::Delete, kv.key, Version::past(&cached), prev)
            }
        };
        if let Some(prev) = &prev {
            st.retire(prev);
        }
        let cached = CachedEvent { kind, key, object, prev: prev.as_deref().map(Version::past) };
        st.revision = revision;
        st.history.push_back(Arc::new(cached));
        if st.history.len() > self.history {
            st.history.pop_front();
        }
        let epoch = st.epoch;
        drop(st);
        self.revision_tx.send_replace((epoch, revision));
    }

    /// The watch frame of `event` in `format` (a name for the format and everything it
    /// depends on besides the event: the served resource, Table options), made by `make` for
    /// the first watcher that asks and shared with the others (see [`SharedFrames`]).
    pub fn shared_frame(
        &self,
        event: &CachedEvent,
        format: &str,
        make: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let revision = event.revision();
        let same = |(r, k, f, _): &&(Revision, String, String, Bytes)| *r == revision && k == &event.key && f == format;
        {
            let recent = self.frames.recent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((.., frame)) = recent.iter().rev().find(same) {
                return Some(frame.clone());
            }
        }
        let frame = make()?;
        self.frames.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut recent = self.frames.recent.lock().unwrap_or_else(|e| e.into_inner());
        if !recent.iter().any(|e| same(&e)) {
            if recent.len() >= SHARED_FRAMES {
                recent.pop_front();
            }
            recent.push_back((revision, event.key.clone(), format.to_string(), frame.clone()));
        }
        Some(frame)
    }

    /// How many shared watch frames [`Cache::shared_frame`] has made so far.
    pub fn shared_frames_made(&self) -> u64 {
        self.frames.made.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        self.revision_tx.borrow().1
    }

    /// Waits until the cache has seen `revision` (a consistent read after a write).
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> ApiResult<()> {
        let mut rx = self.revision_tx.subscribe();
        let wait = rx.wait_for(|(_, r)| *r >= revision);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::unavailable("the watch cache is shutting down")),
            Err(_) => Err(ApiError::timeout(format!(
                "Timeout: Too large resource version: {revision}, current: {}",
                self.revision()
            ))),
        }
    }

    /// Every cached object under `prefix`, in key order, and the cache's revision.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let items = st.objects.range(prefix_range(prefix)).map(|(_, o)| o.clone()).collect();
        (items, st.revision)
    }

    /// Number of cached objects under `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.objects.range(prefix_range(prefix)).count()
    }

    /// One cached object.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        st.objects.get(key).cloned()
    }

    /// A cursor over events under `prefix` after revision `from`.
    /// Fails with 410 Expired if `from` is older than the history kept.
    pub fn watch(self: &Arc<Self>, prefix: &str, from: Revision) -> ApiResult<Cursor> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        let oldest = st.history.front().map_or(st.revision, |e| e.revision() - 1);
        if from < oldest {
            return Err(ApiError::expired(format!("too old resource version: {from} ({oldest})")));
        }
        Ok(Cursor {
            cache: self.clone(),
            prefix: prefix.to_string(),
            last: from,
            epoch: st.epoch,
            rx: self.revision_tx.subscribe(),
        })
    }
}

/// Keeps something derived from the objects under `prefix` (the RBAC policy, the webhook
/// configurations, the Node authorizer's graph) in step with the cache until `shutdown`:
/// `rebuild` derives it from the cache as it is and returns the revision that reflects;
/// `apply` takes each later batch of events and the revision reached. A cursor that falls
/// out of the history (or a cache re-list) rebuilds from scratch; `what` names the
/// follower in logs.
pub async fn follow(
    cache: Arc<Cache>,
    prefix: &str,
    what: &str,
    mut shutdown: watch::Receiver<bool>,
    mut rebuild: impl FnMut(&Arc<Cache>) -> Revision,
    mut apply: impl FnMut(&Arc<Cache>, &[Arc<CachedEvent>], Revision),
) {
    loop {
        let revision = rebuild(&cache);
        let mut cursor = match cache.watch(prefix, revision) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e.message, "{what}: watching the cache failed; re-listing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                next = cursor.next() => match next {
                    Ok(events) => apply(&cache, &events, cursor.revision()),
                    Err(_) => break,
                },
            }
        }
    }
}

/// A watcher's position in the cache's history.
pub struct Cursor {
    cache: Arc<Cache>,
    prefix: String,
    last: Revision,
    epoch: u64,
    rx: watch::Receiver<(u64, Revision)>,
}

impl Cursor {
    /// The revision of the last event returned (or the starting revision).
    pub fn revision(&self) -> Revision {
        self.last
    }

    /// The next batch of events under the prefix, waiting for at least one revision
    /// newer than the last. Errors with 410 when the cursor fell out of the history or
    /// the cache re-listed.
    pub async fn next(&mut self) -> ApiResult<Vec<Arc<CachedEvent>>> {
        loop {
            let target = self.last;
            let (epoch, _) = *self
                .rx
                .wait_for(|(epoch, r)| *r > target || *epoch != self.epoch)
                .await
                .map_err(|_| ApiError::unavailable("the watch cache is shutting down"))?;
            if epoch != self.epoch {
                return Err(ApiError::expired("the watch cache was re-initialized; please re-list"));
            }
            let st = self.cache.state.read().unwrap_or_else(|e| e.into_inner());
            let oldest = st.history.front().map_or(st.revision, |e| e.revision() - 1);
            if self.last < oldest {
                return Err(ApiError::expired(format!("too old resource version: {} ({oldest})", self.last)));
            }
            let start = st.history.partition_point(|e| e.revision() <= self.last);
            let events: Vec<Arc<CachedEvent>> =
                st.history.range(start..).filter(|e| e.key.starts_with(&self.prefix)).cloned().collect();
            self.last = st.revision;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

/// `stored` (serde_json's compact encoding of an object with a `metadata` object and no
/// `metadata.resourceVersion`) with `"resourceVersion":"<revision>"` inserted among
/// `metadata`'s keys where serde_json writes it (keys in order); `None` when the bytes are
/// not laid out so (then the caller encodes the object instead).
fn with_resource_version(stored: &[u8], revision: Revision) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"resourceVersion";
    let mut i = expect(stored, 0, b'{')?;
    // The top-level keys, up to `metadata`.
    loop {
        let (key, after) = string(stored, i)?;
        i = expect(stored, after, b':')?;
        if key == b"metadata" {
            break;
        }
        i = skip_value(stored, i)?;
        i = expect(stored, i, b',')?;
    }
    i = expect(stored, i, b'{')?;
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let (at, comma_before, comma_after) = if stored.get(i) == Some(&b'}') {
        (i, false, false)
    } else {
        loop {
            let (key, after) = string(stored, i)?;
            if key.contains(&b'\\') || key == KEY {
                return None;
            }
            if key > KEY {
                break (i, false, true);
            }
            let end = skip_value(stored, expect(stored, after, b':')?)?;
            match stored.get(end)? {
                b',' => i = end + 1,
                b'}' => break (end, true, false),
                _ => return None,
            }
        }
    };
    let mut out = Vec::with_capacity(stored.len() + field.len() + 1);
    out.extend_from_slice(&stored[..at]);
    if comma_before {
        out.push(b',');
    }
    out.extend_from_slice(field.as_bytes());
    if comma_after {
        out.push(b',');
    }
    out.extend_from_slice(&stored[at..]);
    Some(out)
}

/// The position after byte `want` at `i`.
fn expect(b: &[u8], i: usize, want: u8) -> Option<usize> {
    (b.get(i) == Some(&want)).then_some(i + 1)
}

/// The raw contents of the JSON string starting at `i` and the position after it.
fn string(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let start = expect(b, i, b'"')?;
    let mut j = start;
    loop {
        match b.get(j)? {
            b'"' => return Some((&b[start..j], j + 1)),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The position after the compact JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string(b, i).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string(b, j)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = b[i..].iter().position(|c| matches!(c, b',' | b'}' | b']'))?;
            Some(i + len)
        }
    }
}

#[cfg(test)]
mod tests;
