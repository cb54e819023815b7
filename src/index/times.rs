//! Correcting the times of a run recorded before the wall clock was set (a camera
//! without a real-time clock that booted in the past).

use super::{Index, IndexError};

impl Index {
    /// Moves the times of this run that were recorded before the wall clock was set
    /// (events, clips, fragments and queued MQTT messages within `c.since..=c.until`) by
    /// `c.delta`; returns how many times moved. Queued messages hold no time of their own
    /// but `at`: they are worded from these rows when they are sent.
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
            ("outbox", "at"),
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
        tx.commit().await?;
        Ok(moved)
    }
}
