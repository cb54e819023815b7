//! KVS upload progress: one row per fragment, from creation (`pending`) to `persisted` or
//! `skipped`, and each clip's `upload_state` derived from its fragments.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{ms, time, Index, IndexError};

/// A fragment to upload (or uploaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentRow {
    pub id: i64,
    /// The clip its frames are in; `None` in continuous mode (frames only in memory).
    pub clip_id: Option<String>,
    /// Index of its first sample in the clip file.
    pub first_frame: u64,
    pub frames: u64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// A new fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFragment<'a> {
    pub clip_id: Option<&'a str>,
    pub first_frame: u64,
    pub frames: u64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// Upload states of a clip (the `clips.upload_state` column).
pub mod upload_state {
    /// Upload is off, or the clip predates it.
    pub const NONE: &str = "none";
    /// Waiting for (more of) its fragments to be persisted.
    pub const PENDING: &str = "pending";
    /// Some fragments persisted, not all yet.
    pub const UPLOADING: &str = "uploading";
    /// Every frame persisted at KVS.
    pub const UPLOADED: &str = "uploaded";
    /// Finished, but KVS refused some fragments (or their frames were gone).
    pub const FAILED: &str = "failed";
}

fn fragment_row(r: &sqlx::sqlite::SqliteRow) -> FragmentRow {
    FragmentRow {
        id: r.get(0),
        clip_id: r.get(1),
        first_frame: r.get::<i64, _>(2).max(0) as u64,
        frames: r.get::<i64, _>(3).max(0) as u64,
        start_at: time(r.get(4)),
        end_at: time(r.get(5)),
    }
}

impl Index {
    /// Marks a clip as one to upload (or sets its state later on).
    pub async fn set_upload_state(&self, clip_id: &str, state: &str) -> Result<(), IndexError> {
        sqlx::query("UPDATE clips SET upload_state = ?2 WHERE id = ?1")
            .bind(clip_id)
            .bind(state)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a fragment to upload; returns its id.
    pub async fn insert_fragment(&self, f: &NewFragment<'_>) -> Result<i64, IndexError> {
        let row = sqlx::query(
            "INSERT INTO fragments (clip_id, first_frame, frames, start_at, end_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )
        .bind(f.clip_id)
        .bind(f.first_frame as i64)
        .bind(f.frames as i64)
        .bind(ms(f.start_at))
        .bind(ms(f.end_at))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get(0))
    }

    /// Fragments not yet persisted nor skipped, oldest capture first.
    pub async fn pending_fragments(&self) -> Result<Vec<FragmentRow>, IndexError> {
        let rows = sqlx::query(
            "SELECT id, clip_id, first_frame, frames, start_at, end_at FROM fragments \
             WHERE state = 'pending' ORDER BY start_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(fragment_row).collect())
    }

    /// Every fragment of a clip, in frame order.
    pub async fn clip_fragments(&self, clip_id: &str) -> Result<Vec<FragmentRow>, IndexError> {
        let rows = sqlx::query(
            "SELECT id, clip_id, first_frame, frames, start_at, end_at FROM fragments \
             WHERE clip_id = ?1 ORDER BY first_frame",
        )
        .bind(clip_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(fragment_row).collect())
    }

    /// The fragment is durable at KVS; its clip is at least `uploading`.
    pub async fn fragment_persisted(
        &self,
        id: i64,
        fragment_number: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), IndexError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE fragments SET state = 'persisted', fragment_number = ?2, persisted_at = ?3 \
             WHERE id = ?1",
        )
        .bind(id)
        .bind(fragment_number)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE clips SET upload_state = 'uploading' WHERE upload_state = 'pending' \
             AND id = (SELECT clip_id FROM fragments WHERE id = ?1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// KVS will never take the fragment (or its frames are gone): `code` says why.
    pub async fn fragment_skipped(&self, id: i64, code: u32) -> Result<(), IndexError> {
        sqlx::query("UPDATE fragments SET state = 'skipped', error_code = ?2 WHERE id = ?1")
            .bind(id)
            .bind(i64::from(code))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Fragments waiting to be persisted.
    pub async fn upload_backlog(&self) -> Result<u64, IndexError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fragments WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// The labels of the objects seen in the event a clip belongs to, sorted (none for
    /// an event of motion or a command).
    pub async fn clip_labels(&self, clip_id: &str) -> Result<Vec<String>, IndexError> {
        let json: Option<String> = sqlx::query_scalar(
            "SELECT e.labels FROM clips c JOIN events e ON e.id = c.event_id WHERE c.id = ?1",
        )
        .bind(clip_id)
        .fetch_optional(&self.pool)
        .await?;
        let labels: std::collections::BTreeMap<String, f64> = json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        Ok(labels.into_keys().collect())
    }

    /// Finished clips whose upload is not settled (their tail may still need fragments).
    pub async fn clips_to_upload(&self) -> Result<Vec<String>, IndexError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM clips WHERE upload_state IN ('pending', 'uploading') \
             AND status IN ('complete', 'recovered') ORDER BY start_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Settles a finished clip whose frames all have fragments: `uploaded` once none is
    /// pending and none was skipped, `failed` when some were. Returns the new state.
    pub async fn settle_clip_upload(
        &self,
        clip_id: &str,
    ) -> Result<Option<&'static str>, IndexError> {
        let row = sqlx::query(
            "SELECT SUM(state = 'pending'), SUM(state = 'skipped') FROM fragments WHERE clip_id = ?1",
        )
        .bind(clip_id)
        .fetch_one(&self.pool)
        .await?;
        let pending: Option<i64> = row.get(0);
        let skipped: Option<i64> = row.get(1);
        if pending.unwrap_or(0) > 0 {
            return Ok(None);
        }
        let state = if skipped.unwrap_or(0) > 0 {
            upload_state::FAILED
        } else {
            upload_state::UPLOADED
        };
        self.set_upload_state(clip_id, state).await?;
        Ok(Some(state))
    }
}
