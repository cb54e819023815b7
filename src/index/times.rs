//! Correcting the times of a run recorded before the wall clock was set (a camera
//! without a real-time clock that booted in the past).

use super::{Index, IndexError};

impl Index {
    /// Moves the times of this run that were recorded before the wall clock was set
    /// (events, clips, fragments within `c.since..=c.until`, and the times inside queued
    /// MQTT messages) by `c.delta`; returns how many times and messages moved.
    pub async fn correct_times(&self, c: &crate::clock::Correction) -> Result<u64, IndexError> {
        let (since, until) = (c.since.timestamp_millis(), c.until.timestamp_millis());
        let delta = c.delta.num_milliseconds();
        let mut tx = self.write().await?;
        let mut moved = 0;
        for (table, column) in [
            ("events", "started_at"),
            ("events", "ended_at"),
            ("clips", "start_at"),
            ("clips", "end_at"),
            ("fragments", "start_at"),
            ("fragments", "end_at"),
        ] {
            // Table and column names come from the list above, never from outside.
            let sql = format!(
                "UPDATE {table} SET {column} = {column} + ?3 WHERE {column} BETWEEN ?1 AND ?2"
            );
            moved += sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(since)
                .bind(until)
                .bind(delta)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        let queued: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, payload FROM mqtt_outbox")
            .fetch_all(&mut *tx)
            .await?;
        for (seq, payload) in queued {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                continue;
            };
            if crate::clock::correct_json(&mut v, c) {
                sqlx::query("UPDATE mqtt_outbox SET payload = ?1 WHERE seq = ?2")
                    .bind(v.to_string().into_bytes())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                moved += 1;
            }
        }
        tx.commit().await?;
        Ok(moved)
    }
}
