//! Event messages: the recorder queues the facts of each event change in the index's
//! outbox in the same transaction as the change, so a crash never separates the two. The
//! MQTT session words them when it sends; the recorder only knows when to queue them.

use std::future::Future;
use std::time::Duration;

use tracing::{error, warn};

use crate::events::{EventInfo, EventKind};
use crate::index::{Index, IndexError, MessageKind, Outbox};

/// Tries of a write the index refused for a reason that may clear up (busy, full disk).
const TRIES: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(25);
const LONGEST_RETRY: Duration = Duration::from_secs(1);

/// Runs `op` again while it fails with a retryable error, `TRIES` times in all over about
/// four seconds (on top of the index's own wait for the write lock).
pub(super) async fn retried<T, F, Fut>(what: &str, mut op: F) -> Result<T, IndexError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, IndexError>>,
{
    let mut delay = FIRST_RETRY;
    for _ in 1..TRIES {
        match op().await {
            Err(e) if e.is_retryable() => {
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what}: trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LONGEST_RETRY);
            }
            done => return done,
        }
    }
    op().await
}

fn message_kind(kind: EventKind) -> MessageKind {
    match kind {
        EventKind::Start => MessageKind::Start,
        EventKind::Update => MessageKind::Update,
        EventKind::End => MessageKind::End,
    }
}

/// Records the event change and, with MQTT on, queues its message together. An `end`
/// is queued separately, once the event's clips are finished (`queue_end`).
pub async fn record(index: &Index, outbox: Option<&Outbox>, kind: EventKind, e: &EventInfo) {
    let done = retried("recording an event", || {
        index.upsert_event_and_queue(e, message_kind(kind), outbox)
    })
    .await;
    if let Err(err) = done {
        error!(event_id = %e.id, error = %err, "could not record the event and its message");
    }
    if kind == EventKind::End {
        if let Some(outbox) = outbox {
            queue_end(index, outbox, &e.id).await;
        }
    }
}

/// Queues the `end` message once the event has ended and its clips are finished (called
/// at both moments; the index makes sure it happens once).
pub async fn queue_end(index: &Index, outbox: &Outbox, event_id: &str) {
    let queued = retried("queuing an end message", || {
        index.queue_end_once(event_id, outbox)
    })
    .await;
    if let Err(e) = queued {
        // The event stays owed an end: `queue_owed_ends` tries again.
        error!(event_id, error = %e, "could not queue the event's end message; trying again later");
    }
}

/// Queues the `end` of every ended event that is still owed one (a crash, or a write
/// the index refused).
pub async fn queue_owed_ends(index: &Index, outbox: &Outbox) {
    for id in index.events_owing_an_end().await.unwrap_or_default() {
        queue_end(index, outbox, &id).await;
    }
}
