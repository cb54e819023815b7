//! Keeping the index bounded: rows that describe what no longer exists are removed, so
//! months of events (and of continuous upload) do not grow it without end.

use chrono::{DateTime, Utc};

use super::{ms, Index, IndexError};

/// How long the rows of deleted clips (and of events left with no clip) are kept, so
/// `clips show` can still say a recent clip was deleted.
pub const KEEP_DELETED: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// How long a settled fragment's row is kept once KVS has it (or refused it) and its
/// clip's upload is settled too (continuous mode: once KVS has it).
pub const KEEP_STREAMED: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub fragments: u64,
    pub clips: u64,
    pub events: u64,
}

impl Index {
    /// Removes, in one transaction: fragments that are settled (persisted or skipped)
    /// whose clip was deleted, or over `KEEP_STREAMED` old whose clip's upload is settled
    /// (or that were streamed in continuous mode); rows of clips deleted over `KEEP_DELETED` ago; ended events
    /// over `KEEP_DELETED` old that have no clip left and owe no MQTT message.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<Pruned, IndexError> {
        let old = ms(now - KEEP_DELETED);
        let streamed = ms(now - KEEP_STREAMED);
        let mut tx = self.write().await?;
        let fragments = sqlx::query(
            "DELETE FROM fragments WHERE state != 'pending' AND ( \
               (end_at < ?1 AND (clip_id IS NULL OR clip_id IN \
                 (SELECT id FROM clips WHERE upload_state IN ('uploaded', 'failed')))) \
               OR clip_id IN (SELECT id FROM clips WHERE status = 'deleted'))",
        )
        .bind(streamed)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let clips = sqlx::query(
            "DELETE FROM clips WHERE status = 'deleted' AND start_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM fragments f WHERE f.clip_id = clips.id)",
        )
        .bind(old)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query(
            "DELETE FROM events WHERE status = 'ended' AND COALESCE(ended_at, started_at) < ?1 \
             AND (end_queued = 1 OR start_queued = 0) \
             AND NOT EXISTS (SELECT 1 FROM clips c WHERE c.event_id = events.id) \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = events.id)",
        )
        .bind(old)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Pruned {
            fragments,
            clips,
            events,
        })
    }
}
