//! The SQLite index (sqlx, WAL): events and clips. The source of truth every part
//! restarts from.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::events::EventInfo;

mod fragments;
mod outbox;
mod prune;
mod times;
pub mod upgrade;

pub use fragments::{upload_state, FragmentRow, NewFragment};
pub use outbox::{ClipFacts, MessageKind, Outbox, OutboxRow, Queued};
pub use prune::{Pruned, KEEP_DELETED, KEEP_STREAMED};

/// File name of the index inside `storage.data_dir`.
pub const INDEX_FILE: &str = "index.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Upgrade(#[from] upgrade::UpgradeError),
    #[error("no clip with id {0:?}")]
    NoSuchClip(String),
    #[error(
        "the index is at schema version {found}, this edgecam reads version {expected}: {fix}"
    )]
    Schema {
        found: i64,
        expected: i64,
        fix: &'static str,
    },
}

impl IndexError {
    /// Busy/locked databases, a full disk and I/O hiccups may clear up; schema problems
    /// do not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Db(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            // SQLite result codes: BUSY (5) and its extended codes (261 recovery, 517
            // snapshot), LOCKED (6), IOERR (10 and extended), FULL (13).
            Self::Db(sqlx::Error::Database(e)) => e
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xFF, 5 | 6 | 10 | 13)),
            _ => false,
        }
    }
}

/// Clip lifecycle, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipStatus {
    Recording,
    Complete,
    Recovered,
    Deleted,
}

impl ClipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Complete => "complete",
            Self::Recovered => "recovered",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "recording" => Self::Recording,
            "complete" => Self::Complete,
            "recovered" => Self::Recovered,
            _ => Self::Deleted,
        }
    }
}

/// One clip row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipRow {
    pub id: String,
    pub event_id: String,
    /// Relative to the data directory.
    pub path: String,
    pub status: ClipStatus,
    pub start_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub frame_count: Option<i64>,
    pub bytes: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub thumbnail: Option<String>,
    pub frames_lost: i64,
    pub upload_state: String,
    /// From the event.
    pub label: String,
    pub trigger: String,
    pub score: f64,
    /// The objects' labels seen in the event, each with its best score.
    pub labels: BTreeMap<String, f64>,
}

/// What a finished (or recovered) clip measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipStats {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub duration: Duration,
    pub frame_count: u64,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Frames the recorder missed while writing (0 for a clean clip).
    pub frames_lost: u64,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A handle to the index; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Index {
    pool: SqlitePool,
}

/// A clip query joined with its event: the columns `clip_row` reads, then `$tail`.
macro_rules! select_clips {
    ($tail:literal) => {
        concat!(
            "SELECT c.id, c.event_id, c.path, c.status, c.start_at, c.end_at, c.duration_ms, ",
            "c.frame_count, c.bytes, c.width, c.height, c.thumbnail, c.frames_lost, c.upload_state, ",
            "e.label, e.trigger, e.score, e.labels FROM clips c JOIN events e ON e.id = c.event_id ",
            $tail
        )
    };
}

impl Index {
    /// Opens (creating if needed) the index at `path` and brings its schema up to date,
    /// keeping a copy of an older one (`upgrade`).
    pub async fn open(path: &Path) -> Result<Self, IndexError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a power cut may lose the last transactions, never corrupt.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        upgrade::upgrade(&pool, path).await?;
        Ok(Self { pool })
    }

    /// Opens an existing index read-only, for the command line: it never migrates (only
    /// the daemon does) and cannot write. Refuses an index of another schema version.
    pub async fn open_read_only(path: &Path) -> Result<Self, IndexError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        let expected = upgrade::latest_version();
        let found = upgrade::version(&pool).await;
        if found != expected {
            pool.close().await;
            let fix = if found < expected {
                "start the daemon once (it updates the index), then try again"
            } else {
                "this edgecam is older than the daemon that wrote the index; use the installed edgecam"
            };
            return Err(IndexError::Schema {
                found,
                expected,
                fix,
            });
        }
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction that holds the write lock from its start (`BEGIN IMMEDIATE`).
    /// A deferred one that reads first fails at once with SQLITE_BUSY_SNAPSHOT (517) when
    /// another connection wrote meanwhile, and `busy_timeout` does not retry that; this
    /// one waits its turn instead.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Sqlite>, IndexError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn upsert_event(&self, e: &EventInfo) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        upsert_event_in(&mut tx, e).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a clip being written.
    pub async fn insert_clip(
        &self,
        id: &str,
        event_id: &str,
        path: &str,
        start_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), IndexError> {
        sqlx::query(
            "INSERT INTO clips (id, event_id, path, status, start_at, created_at) \
             VALUES (?1, ?2, ?3, 'recording', ?4, ?5)",
        )
        .bind(id)
        .bind(event_id)
        .bind(path)
        .bind(ms(start_at))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a clip complete or recovered with what its file holds.
    pub async fn finish_clip(
        &self,
        id: &str,
        path: &str,
        status: ClipStatus,
        stats: &ClipStats,
        thumbnail: Option<&str>,
    ) -> Result<(), IndexError> {
        let done = sqlx::query(
            "UPDATE clips SET path = ?2, status = ?3, start_at = ?4, end_at = ?5, duration_ms = ?6, \
             frame_count = ?7, bytes = ?8, width = ?9, height = ?10, thumbnail = COALESCE(?11, thumbnail), \
             frames_lost = ?12 WHERE id = ?1",
        )
        .bind(id)
        .bind(path)
        .bind(status.as_str())
        .bind(ms(stats.start_at))
        .bind(ms(stats.end_at))
        .bind(stats.duration.as_millis() as i64)
        .bind(stats.frame_count as i64)
        .bind(stats.bytes as i64)
        .bind(i64::from(stats.width))
        .bind(i64::from(stats.height))
        .bind(thumbnail)
        .bind(stats.frames_lost as i64)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(IndexError::NoSuchClip(id.into()));
        }
        Ok(())
    }

    pub async fn set_clip_status(&self, id: &str, status: ClipStatus) -> Result<(), IndexError> {
        sqlx::query("UPDATE clips SET status = ?2 WHERE id = ?1")
            .bind(id)
            .bind(status.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_thumbnail(&self, id: &str, thumbnail: &str) -> Result<(), IndexError> {
        sqlx::query("UPDATE clips SET thumbnail = ?2 WHERE id = ?1")
            .bind(id)
            .bind(thumbnail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn clip(&self, id: &str) -> Result<ClipRow, IndexError> {
        let row = sqlx::query(select_clips!("WHERE c.id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| clip_row(&r))
            .ok_or_else(|| IndexError::NoSuchClip(id.into()))
    }

    /// Clips not deleted, newest first, started at or after `since`, of events with
    /// `label` (an object seen in them, or the event's own label) when given.
    pub async fn clips(
        &self,
        since: Option<DateTime<Utc>>,
        label: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ClipRow>, IndexError> {
        let rows = sqlx::query(select_clips!(
            "WHERE c.status != 'deleted' AND c.start_at >= ?1 \
             AND (?3 IS NULL OR e.label = ?3 \
                  OR EXISTS (SELECT 1 FROM json_each(e.labels) WHERE key = ?3)) \
             ORDER BY c.start_at DESC LIMIT ?2"
        ))
        .bind(since.map_or(i64::MIN, ms))
        .bind(i64::from(limit))
        .bind(label)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(clip_row).collect())
    }

    /// Clips in one status, oldest first.
    pub async fn clips_with_status(&self, status: ClipStatus) -> Result<Vec<ClipRow>, IndexError> {
        let rows = sqlx::query(select_clips!("WHERE c.status = ?1 ORDER BY c.start_at ASC"))
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(clip_row).collect())
    }

    /// Events left open by a crash are closed at their last clip's end.
    pub async fn close_open_events(&self) -> Result<u64, IndexError> {
        let done = sqlx::query(
            "UPDATE events SET status = 'ended', ended_at = COALESCE( \
               (SELECT MAX(end_at) FROM clips WHERE clips.event_id = events.id), started_at) \
             WHERE status = 'open'",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// An event for clips found on disk with no row (index lost or restored from backup).
    pub async fn ensure_orphan_event(&self, id: &str, at: DateTime<Utc>) -> Result<(), IndexError> {
        sqlx::query(
            "INSERT OR IGNORE INTO events (id, label, trigger, score, started_at, ended_at, status) \
             VALUES (?1, 'recovered', 'motion', 0, ?2, ?2, 'ended')",
        )
        .bind(id)
        .bind(ms(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The time an event's video covers: its clips' first to last frame, else the event's
    /// own start and end. `None` when there is no such event.
    pub async fn event_range(
        &self,
        event_id: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, IndexError> {
        let row = sqlx::query(
            "SELECT COALESCE(MIN(c.start_at), e.started_at), \
                    COALESCE(MAX(COALESCE(c.end_at, e.ended_at, c.start_at)), e.ended_at, e.started_at) \
             FROM events e LEFT JOIN clips c ON c.event_id = e.id AND c.status != 'deleted' \
             WHERE e.id = ?1 GROUP BY e.id",
        )
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (time(r.get(0)), time(r.get(1)))))
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>, IndexError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), IndexError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bytes used by clips that are not deleted.
    pub async fn clip_bytes(&self) -> Result<u64, IndexError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT SUM(bytes) FROM clips WHERE status != 'deleted'")
                .fetch_one(&self.pool)
                .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn clip_row(r: &sqlx::sqlite::SqliteRow) -> ClipRow {
    ClipRow {
        id: r.get(0),
        event_id: r.get(1),
        path: r.get(2),
        status: ClipStatus::parse(r.get::<&str, _>(3)),
        start_at: time(r.get(4)),
        end_at: r.get::<Option<i64>, _>(5).map(time),
        duration_ms: r.get(6),
        frame_count: r.get(7),
        bytes: r.get(8),
        width: r.get(9),
        height: r.get(10),
        thumbnail: r.get(11),
        frames_lost: r.get(12),
        upload_state: r.get(13),
        label: r.get(14),
        trigger: r.get(15),
        score: r.get(16),
        labels: serde_json::from_str(r.get::<&str, _>(17)).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

async fn upsert_event_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &EventInfo,
) -> Result<(), IndexError> {
    sqlx::query(
        "INSERT INTO events (id, label, trigger, score, started_at, ended_at, status, labels, zones) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET label = ?2, score = ?4, ended_at = ?6, status = ?7, \
         labels = ?8, zones = ?9",
    )
    .bind(&e.id)
    .bind(&e.label)
    .bind(e.trigger.as_str())
    .bind(f64::from(e.score))
    .bind(ms(e.started_at))
    .bind(e.ended_at.map(ms))
    .bind(if e.ended_at.is_some() {
        "ended"
    } else {
        "open"
    })
    .bind(serde_json::to_string(&e.labels).unwrap_or_else(|_| "{}".into()))
    .bind(serde_json::to_string(&e.zones).unwrap_or_else(|_| "[]".into()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
