//! Event messages: what the recorder queues in the index's outbox in the same
//! transaction as the event change it reports, so a crash never separates the two. The
//! messages are built by the path that sends them (MQTT) through `EventMessages`; the
//! recorder only knows when to queue them.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tracing::{error, warn};

use crate::events::{EventInfo, EventKind};
use crate::index::{ClipFacts, Index, IndexError, NewMessage};

/// Tries of a write the index refused for a reason that may clear up (busy, full disk).
const TRIES: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(25);
const LONGEST_RETRY: Duration = Duration::from_secs(1);

/// Runs `op` again while it fails with a retryable error, `TRIES` times in all over about
/// four seconds (on top of the index's own wait for the write lock).
async fn retried<T, F, Fut>(what: &str, mut op: F) -> Result<T, IndexError>
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

/// Builds the messages of event changes (implemented by the MQTT path).
pub trait EventMessages: Send + Sync + Debug {
    /// The `start` or `update` message of an event; `None` when it cannot be sent.
    fn message(&self, kind: EventKind, e: &EventInfo) -> Option<NewMessage>;
    /// The `end` message, from the ended event and its finished clips.
    fn end_message(&self, e: &EventInfo, clips: &[ClipFacts]) -> NewMessage;
    /// How many messages the outbox holds at most.
    fn outbox_max(&self) -> u64;
    /// A message was queued: the sender may want to look.
    fn queued(&self);
}

/// Records the event and queues `message` together, then tells the sender.
pub async fn record(
    index: &Index,
    out: &dyn EventMessages,
    e: &EventInfo,
    message: Option<NewMessage>,
) {
    let done = retried("recording an event", || {
        index.upsert_event_and_queue(e, message.as_ref(), out.outbox_max())
    })
    .await;
    if let Err(err) = done {
        error!(event_id = %e.id, error = %err, "could not record the event and its message");
    }
    out.queued();
}

/// Queues the `end` message once the event has ended and its clips are finished (called
/// at both moments; the index makes sure it happens once).
pub async fn queue_end(index: &Index, out: &dyn EventMessages, event_id: &str) {
    let built = retried("queuing an end message", || {
        index.queue_end_once(event_id, out.outbox_max(), |e, clips| {
            out.end_message(e, clips)
        })
    })
    .await;
    match built {
        Ok(true) => out.queued(),
        Ok(false) => {}
        // The event stays owed an end: `queue_owed_ends` tries again.
        Err(e) => {
            error!(event_id, error = %e, "could not queue the event's end message; trying again later")
        }
    }
}

/// Queues the `end` of every ended event that is still owed one (a crash, or a write
/// the index refused).
pub async fn queue_owed_ends(index: &Index, out: &dyn EventMessages) {
    for id in index.events_owing_an_end().await.unwrap_or_default() {
        queue_end(index, out, &id).await;
    }
}
