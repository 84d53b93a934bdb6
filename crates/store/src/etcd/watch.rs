//! Watch streams over etcd's watch API. Each [`crate::Store::watch`] runs one task that
//! follows an etcd watch (with previous values) and forwards its events; when the
//! connection breaks it watches again from the next revision it owes, so readers see
//! every event once and in order across etcd restarts and leader changes. A watch whose
//! next revision etcd has compacted ends with [`Error::Compacted`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Failure, Inner, Kind, from_etcd, kv_from, prefix_end, to_etcd};
use crate::{Error, Event, KeyValue, Result, Revision, WatchStream};

/// Events buffered between the etcd watch task and its reader.
const BUFFER: usize = 256;
/// After close, how long a watch without new messages waits before it ends.
const CLOSE_QUIET: Duration = Duration::from_secs(1);
/// After close, the longest a watch goes on delivering what it owes.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Starts a watch of `prefix` from berth revision `from` (<= 0: from the next revision).
pub(super) async fn start(inner: Arc<Inner>, prefix: &str, from: Revision) -> Result<WatchStream> {
    inner.check_open()?;
    let next = if from <= 0 {
        inner.etcd_revision().await.map_err(|f| inner.failure(f))? + 1
    } else {
        // Events from `from` on carry the values of `from - 1`: that state must be readable.
        inner.check_not_compacted(from).await?;
        to_etcd(from)
    };
    let start = if prefix.is_empty() { vec![0] } else { prefix.as_bytes().to_vec() };
    let end = prefix_end(prefix.as_bytes());
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut follower = Follower { inner, start, end, next, tx };
    let stream = follower.open().await.map_err(|f| follower.inner.failure(f))?;
    tokio::spawn(follower.run(stream));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The task behind one watch stream.
struct Follower {
    inner: Arc<Inner>,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The next etcd revision this watch owes its reader.
    next: i64,
    tx: mpsc::Sender<Result<Event>>,
}

impl Follower {
    /// Opens an etcd watch from the next revision owed.
    async fn open(&mut self) -> std::result::Result<etcd_client::WatchStream, Failure> {
        let options = WatchOptions::new().with_range(self.end.clone()).with_start_revision(self.next).with_prev_key();
        let start = self.start.clone();
        self.inner
            .call(Kind::Read, |c| {
                let (start, options) = (start.clone(), options.clone());
                async move { c.watch_client().watch(start, Some(options)).await }
            })
            .await
    }

    async fn run(mut self, stream: etcd_client::WatchStream) {
        let mut stream = Some(stream);
        let mut closed = self.inner.closed.subscribe();
        // Set on close: the etcd revision owed, the time of the last message, the limit.
        let mut closing: Option<(i64, Instant, Instant)> = None;
        let mut delay = Duration::from_millis(50);
        loop {
            if closing.is_none()
                && let Some(owed) = *closed.borrow_and_update()
            {
                let now = Instant::now();
                closing = Some((to_etcd(owed), now, now + CLOSE_LIMIT));
            }
            if let Some((owed, last, limit)) = closing {
                let now = Instant::now();
                if self.next > owed || now > limit || now.duration_since(last) > CLOSE_QUIET {
                    return;
                }
            }
            let Some(current) = stream.as_mut() else {
                if closing.is_some() {
                    return;
                }
                match self.open().await {
                    Ok(s) => {
                        stream = Some(s);
                        delay = Duration::from_millis(50);
                    }
                    Err(Failure::Store(Error::Closed)) => return,
                    Err(f) => {
                        tracing::debug!(failure = ?f, "etcd watch: reconnecting");
                        tokio::select! {
                            _ = self.tx.closed() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
                continue;
            };
            let message = tokio::select! {
                _ = self.tx.closed() => return,
                changed = closed.changed(), if closing.is_none() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if closing.is_some() => continue,
                message = current.message() => message,
            };
            if let Some((_, last, _)) = closing.as_mut() {
                *last = Instant::now();
            }
            match message {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        if resp.compact_revision() > 0 {
                            let requested = from_etcd(self.next);
                            let compacted = from_etcd(resp.compact_revision());
                            let _ = self.tx.send(Err(Error::Compacted { requested, compacted })).await;
                            return;
                        }
                        tracing::warn!(reason = resp.cancel_reason(), "etcd canceled a watch; watching again");
                        stream = None;
                        continue;
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let revision = kv.mod_revision();
                        if revision < self.next {
                            continue;
                        }
                        if self.tx.send(Ok(convert(event))).await.is_err() {
                            return;
                        }
                        self.next = revision + 1;
                    }
                }
                Ok(None) | Err(_) => {
                    // The connection broke: watch again from the next revision owed.
                    stream = None;
                    tokio::select! {
                        _ = self.tx.closed() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// A store event from an etcd event (which carries its previous value).
fn convert(event: &etcd_client::Event) -> Event {
    let kv = event.kv().map(kv_from).unwrap_or_else(|| KeyValue {
        key: String::new(),
        value: Default::default(),
        create_revision: 0,
        mod_revision: 0,
        version: 0,
    });
    match event.event_type() {
        EventType::Put => {
            let prev = if kv.version > 1 { event.prev_kv().map(kv_from) } else { None };
            Event::Put { kv, prev }
        }
        EventType::Delete => {
            // etcd's delete event holds the key and the revision of the delete; the
            // last value is its previous value.
            let mut last = event.prev_kv().map(kv_from).unwrap_or_else(|| kv.clone());
            last.mod_revision = kv.mod_revision;
            Event::Delete { kv: last }
        }
    }
}
