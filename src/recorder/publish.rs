//! Event messages: what the recorder queues in the index's outbox in the same
//! transaction as the event change it reports, so a crash never separates the two. The
//! messages are built by the path that sends them (MQTT) through `EventMessages`; the
//! recorder only knows when to queue them.

use std::fmt::Debug;

use tracing::{error, warn};

use crate::events::{EventInfo, EventKind};
use crate::index::{ClipFacts, Index, NewMessage};

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
    if let Err(err) = index
        .upsert_event_and_queue(e, message.as_ref(), out.outbox_max())
        .await
    {
        error!(event_id = %e.id, error = %err, "could not record the event and its message");
    }
    out.queued();
}

/// Queues the `end` message once the event has ended and its clips are finished (called
/// at both moments; the index makes sure it happens once).
pub async fn queue_end(index: &Index, out: &dyn EventMessages, event_id: &str) {
    let built = index
        .queue_end_once(event_id, out.outbox_max(), |e, clips| {
            out.end_message(e, clips)
        })
        .await;
    match built {
        Ok(true) => out.queued(),
        Ok(false) => {}
        Err(e) => warn!(event_id, error = %e, "could not queue the event's end message"),
    }
}
