//! The MQTT outbox: facts written in the same transaction as the change they report,
//! deleted on PUBACK, read back in order after a reconnect or a restart. A row holds the
//! kind of message, the event it is about and the values that change between messages;
//! the sender builds the message from it and the event's own row, so every time in it is
//! one the index keeps (and corrects). Bounded: the oldest `update`s go first, then old
//! `state`s; `start` and `end` are never dropped.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::Notify;

use super::{ms, time, Index, IndexError};
use crate::events::{EventInfo, TriggerKind};

/// What an outbox row will become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// An event began.
    Start,
    /// An open event changed (score, label, a new clip).
    Update,
    /// An event ended and its clips are finished.
    End,
    /// The camera's retained state.
    State,
    /// Who talks through the speaker (retained).
    Talk,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Update => "update",
            Self::End => "end",
            Self::State => "state",
            Self::Talk => "talk",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Start,
            Self::Update,
            Self::End,
            Self::State,
            Self::Talk,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
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

/// A queued message's facts, ready to be put into words.
#[derive(Debug, Clone, PartialEq)]
pub enum Queued {
    /// `start` or `update`: the event as it was when the message was queued.
    Event(MessageKind, EventInfo),
    /// `end`: the ended event and its clips.
    End(EventInfo, Vec<ClipFacts>),
    /// `state` or `talk`: the sender's own facts (JSON without times) and when they held.
    State(MessageKind, String, DateTime<Utc>),
}

/// A queued message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    /// `None` when the row can no longer be described (its event is gone): the sender
    /// drops it.
    pub message: Option<Queued>,
}

/// The outbox's bound, and who to tell when something was queued.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Rows kept at most (`mqtt.outbox_max`).
    pub max: u64,
    /// Rung after every row queued.
    pub queued: Arc<Notify>,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// A row to insert.
struct NewRow<'a> {
    kind: MessageKind,
    event: Option<&'a EventInfo>,
    event_id: Option<&'a str>,
    facts: Option<&'a str>,
    at: DateTime<Utc>,
}

async fn insert(tx: &mut Tx<'_>, r: NewRow<'_>, max: u64) -> Result<(), IndexError> {
    if matches!(r.kind, MessageKind::State | MessageKind::Talk) {
        // Only the newest of each retained kind matters: older unsent ones go.
        sqlx::query("DELETE FROM outbox WHERE kind = ?1")
            .bind(r.kind.as_str())
            .execute(&mut **tx)
            .await?;
    }
    let clip_ids = r
        .event
        .map(|e| serde_json::to_string(&e.clip_ids).unwrap_or_else(|_| "[]".into()));
    sqlx::query(
        "INSERT INTO outbox (kind, event_id, label, score, clip_ids, facts, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(r.kind.as_str())
    .bind(r.event.map(|e| e.id.as_str()).or(r.event_id))
    .bind(r.event.map(|e| e.label.as_str()))
    .bind(r.event.map(|e| f64::from(e.score)))
    .bind(clip_ids)
    .bind(r.facts)
    .bind(ms(r.at))
    .execute(&mut **tx)
    .await?;
    let depth: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(&mut **tx)
        .await?;
    let over = depth - i64::try_from(max).unwrap_or(i64::MAX);
    if over > 0 {
        let dropped = sqlx::query(
            "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox \
             WHERE kind IN ('update', 'state', 'talk') ORDER BY kind != 'update', seq LIMIT ?1)",
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
    /// Records the event and, when `outbox` is given and `kind` is `Start` or `Update`,
    /// queues its message in the same transaction.
    pub async fn upsert_event_and_queue(
        &self,
        e: &EventInfo,
        kind: MessageKind,
        outbox: Option<&Outbox>,
    ) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        super::upsert_event_in(&mut tx, e).await?;
        let queue = matches!(kind, MessageKind::Start | MessageKind::Update);
        if let Some(o) = outbox.filter(|_| queue) {
            let row = NewRow {
                kind,
                event: Some(e),
                event_id: None,
                facts: None,
                at: e.started_at,
            };
            insert(&mut tx, row, o.max).await?;
            if kind == MessageKind::Start {
                sqlx::query("UPDATE events SET start_queued = 1 WHERE id = ?1")
                    .bind(&e.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        if let Some(o) = outbox.filter(|_| queue) {
            o.queued.notify_one();
        }
        Ok(())
    }

    /// Queues a retained `State` or `Talk` message: `facts` is the sender's JSON (no times
    /// in it), `at` when it held. Older unsent ones of the kind go.
    pub async fn queue_state(
        &self,
        kind: MessageKind,
        facts: &str,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        let row = NewRow {
            kind,
            event: None,
            event_id: None,
            facts: Some(facts),
            at,
        };
        insert(&mut tx, row, outbox.max).await?;
        tx.commit().await?;
        outbox.queued.notify_one();
        Ok(())
    }

    /// Queues the event's `end` message exactly once, when the event has ended and none
    /// of its clips is still being written. Returns whether it was queued now.
    pub async fn queue_end_once(
        &self,
        event_id: &str,
        outbox: &Outbox,
    ) -> Result<bool, IndexError> {
        let mut tx = self.write().await?;
        let ended: Option<i64> = sqlx::query_scalar(
            "SELECT ended_at FROM events \
             WHERE id = ?1 AND status = 'ended' AND end_queued = 0 \
             AND NOT EXISTS (SELECT 1 FROM clips WHERE event_id = ?1 AND status = 'recording')",
        )
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        let Some(ended) = ended else {
            return Ok(false);
        };
        sqlx::query("UPDATE events SET end_queued = 1 WHERE id = ?1")
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        let row = NewRow {
            kind: MessageKind::End,
            event: None,
            event_id: Some(event_id),
            facts: None,
            at: time(ended),
        };
        insert(&mut tx, row, outbox.max).await?;
        tx.commit().await?;
        outbox.queued.notify_one();
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

    /// Up to `limit` queued messages after `seq`, oldest first, with what the sender
    /// needs to word them.
    pub async fn outbox_after(&self, seq: i64, limit: u32) -> Result<Vec<OutboxRow>, IndexError> {
        let rows = sqlx::query(
            "SELECT o.seq, o.kind, o.event_id, o.label, o.score, o.clip_ids, o.facts, o.at, \
             e.trigger, e.started_at, e.ended_at, e.label, e.score, e.labels, e.zones \
             FROM outbox o LEFT JOIN events e ON e.id = o.event_id \
             WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq: i64 = r.get(0);
            let message = match self.queued(r).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(seq, error = %e, "an outbox row cannot be read; dropped");
                    None
                }
            };
            out.push(OutboxRow { seq, message });
        }
        Ok(out)
    }

    /// The facts of one row of `outbox_after`'s query.
    async fn queued(&self, r: &sqlx::sqlite::SqliteRow) -> Result<Option<Queued>, IndexError> {
        let kind = MessageKind::parse(r.get(1));
        let at = time(r.get(7));
        let (Some(kind), Some(event_id)) = (kind, r.get::<Option<String>, _>(2)) else {
            return Ok(kind
                .zip(r.get::<Option<String>, _>(6))
                .map(|(k, facts)| Queued::State(k, facts, at)));
        };
        // The event's own row: gone only if something deleted it under the outbox.
        let Some(trigger) = r.get::<Option<String>, _>(8) else {
            return Ok(None);
        };
        let mut event = EventInfo {
            id: event_id,
            label: r.get(11),
            trigger: TriggerKind::parse(&trigger).unwrap_or(TriggerKind::Cli),
            score: r.get::<f64, _>(12) as f32,
            started_at: time(r.get(9)),
            ended_at: None,
            clip_ids: Vec::new(),
            labels: serde_json::from_str(r.get::<Option<&str>, _>(13).unwrap_or("{}"))
                .unwrap_or_default(),
            zones: serde_json::from_str(r.get::<Option<&str>, _>(14).unwrap_or("[]"))
                .unwrap_or_default(),
        };
        if kind == MessageKind::End {
            event.ended_at = r.get::<Option<i64>, _>(10).map(time);
            let clips = self.clip_facts(&event.id).await?;
            event.clip_ids = clips.iter().map(|c| c.id.clone()).collect();
            return Ok(Some(Queued::End(event, clips)));
        }
        if let Some(label) = r.get::<Option<String>, _>(3) {
            event.label = label;
        }
        if let Some(score) = r.get::<Option<f64>, _>(4) {
            event.score = score as f32;
        }
        let clip_ids = r.get::<Option<String>, _>(5).unwrap_or_default();
        event.clip_ids = serde_json::from_str(&clip_ids).unwrap_or_default();
        Ok(Some(Queued::Event(kind, event)))
    }

    /// The event's clips that were not deleted, oldest first.
    async fn clip_facts(&self, event_id: &str) -> Result<Vec<ClipFacts>, IndexError> {
        Ok(sqlx::query(
            "SELECT id, start_at, end_at, duration_ms, thumbnail FROM clips \
             WHERE event_id = ?1 AND status != 'deleted' ORDER BY start_at",
        )
        .bind(event_id)
        .fetch_all(&self.pool)
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
        .collect())
    }

    /// Forgets a message the broker acknowledged.
    pub async fn outbox_delete(&self, seq: i64) -> Result<(), IndexError> {
        sqlx::query("DELETE FROM outbox WHERE seq = ?1")
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn outbox_depth(&self) -> Result<u64, IndexError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
