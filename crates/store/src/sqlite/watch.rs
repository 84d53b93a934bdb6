//! Watches: each watch is a task that replays history from the database, then follows
//! the live broadcast of committed events, falling back to the database whenever it
//! missed part of the broadcast. Events therefore arrive in order, without gaps or
//! duplicates, however slow the watcher.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::read;
use crate::{Event, Result, Revision};

/// Events read from the database per query during replay.
const PAGE: usize = 1000;

/// Events buffered between a watch task and its stream.
pub(super) const STREAM_BUFFER: usize = 256;

/// Why the live phase stopped.
enum Live {
    /// The broadcast skipped events for this watcher: read them from the database.
    Behind,
    /// The store closed or the stream was dropped.
    Done,
}

/// Runs one watch: sends every event on `prefix` with revision >= `next` to `out`.
///
/// `live` must have been subscribed before the task reads the database, so that every
/// commit not seen by the replay's snapshot reaches `live`.
pub(super) async fn run(
    shared: Arc<Shared>,
    prefix: String,
    mut next: Revision,
    mut live: broadcast::Receiver<Arc<[Event]>>,
    out: mpsc::Sender<Result<Event>>,
) {
    loop {
        match replay(&shared, &prefix, &mut next, &out).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                let _ = out.send(Err(err)).await;
                return;
            }
        }
        match follow(&prefix, &mut next, &mut live, &out).await {
            Live::Behind => continue,
            Live::Done => return,
        }
    }
}

/// Sends history from `next` up to the database's current revision. Returns false when
/// the stream was dropped.
async fn replay(
    shared: &Arc<Shared>,
    prefix: &str,
    next: &mut Revision,
    out: &mpsc::Sender<Result<Event>>,
) -> Result<bool> {
    loop {
        let (owned_prefix, from) = (prefix.to_owned(), *next);
        let (events, covered) = shared.read(move |conn| read::history(conn, &owned_prefix, from, PAGE)).await?;
        let full = events.len() >= PAGE;
        for event in events {
            if out.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
        // A watch from a future revision keeps its start.
        *next = (*next).max(covered + 1);
        if !full {
            return Ok(true);
        }
    }
}

/// Follows the broadcast while it carries every revision from `next` on.
async fn follow(
    prefix: &str,
    next: &mut Revision,
    live: &mut broadcast::Receiver<Arc<[Event]>>,
    out: &mpsc::Sender<Result<Event>>,
) -> Live {
    loop {
        let batch = tokio::select! {
            received = live.recv() => received,
            () = out.closed() => return Live::Done,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(broadcast::error::RecvError::Lagged(_)) => return Live::Behind,
            Err(broadcast::error::RecvError::Closed) => return Live::Done,
        };
        for event in batch.iter() {
            let revision = event.revision();
            if revision < *next {
                continue; // replayed already, or before the watch's start
            }
            if revision > *next {
                // Every revision is one event, so the broadcast carries consecutive
                // revisions: a jump means this watcher lagged.
                return Live::Behind;
            }
            if event.key().starts_with(prefix) && out.send(Ok(event.clone())).await.is_err() {
                return Live::Done;
            }
            *next = revision + 1;
        }
    }
}
