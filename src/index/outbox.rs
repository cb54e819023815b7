//! The MQTT outbox: messages written in the same transaction as the change they report,
//! deleted on PUBACK, read back in order after a reconnect or a restart. Bounded: the
//! oldest `update`s go first, then old `state`s; `start` and `end` are never dropped.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{ms, time, Index, IndexError};
use crate::events::{EventInfo, TriggerKind};

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// `start`, `update`, `end` or `state`.
    pub kind: &'static str,
    pub event_id: Option<String>,
}

/// A finished clip, as the `end` message reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFacts {
    pub id: String,
    pub start_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub thumbnail: bool,
}

/// A queued message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub kind: String,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

async fn insert(tx: &mut Tx<'_>, m: &NewMessage, max: u64) -> Result<(), IndexError> {
    if m.kind == "state" {
        // Only the newest state matters (it is retained): older unsent ones go.
        sqlx::query("DELETE FROM mqtt_outbox WHERE kind = 'state'")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO mqtt_outbox (topic, payload, retain, kind, event_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(&m.topic)
    .bind(&m.payload)
    .bind(i64::from(m.retain))
    .bind(m.kind)
    .bind(&m.event_id)
    .bind(ms(Utc::now()))
    .execute(&mut **tx)
    .await?;
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mqtt_outbox")
        .fetch_one(&mut **tx)
        .await?;
    let over = depth - i64::try_from(max).unwrap_or(i64::MAX);
    if over > 0 {
        let dropped = sqlx::query(
            "DELETE FROM mqtt_outbox WHERE seq IN (SELECT seq FROM mqtt_outbox \
             WHERE kind IN ('update', 'state') ORDER BY kind = 'state', seq LIMIT ?1)",
        )
        .bind(over)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        tracing::warn!(dropped, depth, "MQTT outbox full: oldest updates dropped");
    }
    Ok(())
}

impl Index {
    /// Records the event and queues `message` in one transaction.
    pub async fn upsert_event_and_queue(
        &self,
        e: &EventInfo,
        message: Option<&NewMessage>,
        max: u64,
    ) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        super::upsert_event_in(&mut tx, e).await?;
        if let Some(m) = message {
            insert(&mut tx, m, max).await?;
            if m.kind == "start" {
                sqlx::query("UPDATE events SET start_queued = 1 WHERE id = ?1")
                    .bind(&e.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues a message that reports no event change (state).
    pub async fn queue(&self, message: &NewMessage, max: u64) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        insert(&mut tx, message, max).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues the event's `end` message exactly once, when the event has ended and none
    /// of its clips is still being written. `build` makes the message from the event and
    /// its clips. Returns whether it was queued now.
    pub async fn queue_end_once(
        &self,
        event_id: &str,
        max: u64,
        build: impl FnOnce(&EventInfo, &[ClipFacts]) -> NewMessage,
    ) -> Result<bool, IndexError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "SELECT label, trigger, score, started_at, ended_at FROM events \
             WHERE id = ?1 AND status = 'ended' AND end_queued = 0 \
             AND NOT EXISTS (SELECT 1 FROM clips WHERE event_id = ?1 AND status = 'recording')",
        )
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let clips: Vec<ClipFacts> = sqlx::query(
            "SELECT id, start_at, end_at, duration_ms, thumbnail FROM clips \
             WHERE event_id = ?1 AND status != 'deleted' ORDER BY start_at",
        )
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| ClipFacts {
            id: r.get(0),
            start_at: time(r.get(1)),
            end_at: r.get::<Option<i64>, _>(2).map(time),
            duration_ms: r
                .get::<Option<i64>, _>(3)
                .and_then(|d| u64::try_from(d).ok()),
            thumbnail: r.get::<Option<String>, _>(4).is_some(),
        })
        .collect();
        let trigger: String = row.get(1);
        let event = EventInfo {
            id: event_id.to_owned(),
            label: row.get(0),
            trigger: TriggerKind::parse(&trigger).unwrap_or(TriggerKind::Cli),
            score: row.get::<f64, _>(2) as f32,
            started_at: time(row.get(3)),
            ended_at: row.get::<Option<i64>, _>(4).map(time),
            clip_ids: clips.iter().map(|c| c.id.clone()).collect(),
        };
        let message = build(&event, &clips);
        sqlx::query("UPDATE events SET end_queued = 1 WHERE id = ?1")
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        insert(&mut tx, &message, max).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Events whose `start` went out but whose `end` is still owed, though they are over
    /// (a crash ended them; recovery closed them): their `end` is queued at start-up.
    pub async fn events_owing_an_end(&self) -> Result<Vec<String>, IndexError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM events WHERE start_queued = 1 AND end_queued = 0 \
             AND status = 'ended' ORDER BY started_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Up to `limit` queued messages after `seq`, oldest first.
    pub async fn outbox_after(&self, seq: i64, limit: u32) -> Result<Vec<OutboxRow>, IndexError> {
        let rows = sqlx::query(
            "SELECT seq, topic, payload, retain, kind FROM mqtt_outbox WHERE seq > ?1 \
             ORDER BY seq LIMIT ?2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| OutboxRow {
                seq: r.get(0),
                topic: r.get(1),
                payload: r.get(2),
                retain: r.get::<i64, _>(3) != 0,
                kind: r.get(4),
            })
            .collect())
    }

    /// Forgets a message the broker acknowledged.
    pub async fn outbox_delete(&self, seq: i64) -> Result<(), IndexError> {
        sqlx::query("DELETE FROM mqtt_outbox WHERE seq = ?1")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_depth(&self) -> Result<u64, IndexError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mqtt_outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
