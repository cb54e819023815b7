//! The uploader and the wall clock: nothing goes up before the clock is set, and times
//! recorded before it was set (frames in memory, fragment rows) go up corrected, so no
//! fragment carries 1970 (ARCHITECTURE.md, "Time").

use chrono::{DateTime, Utc};
use tracing::{error, info};

use super::Task;
use crate::clock::ClockState;

impl Task {
    /// The clock's state now (set, with no corrections, when the daemon does not watch it).
    pub(super) fn clock(&self) -> ClockState {
        match &self.deps.clock {
            Some(rx) => rx.borrow().clone(),
            None => ClockState {
                synced: true,
                ..ClockState::default()
            },
        }
    }

    /// A time recorded on the clock as it was, on the clock as it is set.
    pub(super) fn corrected(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        match &self.deps.clock {
            Some(rx) => rx.borrow().correct(t),
            None => t,
        }
    }

    /// A frame time (ms since the epoch), corrected.
    pub(super) fn corrected_ms(&self, ms: u64) -> u64 {
        let t = DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
        self.corrected(t).timestamp_millis().max(0) as u64
    }

    /// True when uploads may start; says once why they wait.
    pub(super) fn may_upload(&mut self) -> bool {
        let synced = self.clock().synced;
        if !synced && !self.waiting_for_clock {
            info!("uploads wait until the clock is set (NTP): their times would be wrong");
        }
        self.waiting_for_clock = !synced;
        synced
    }

    /// The clock changed: fragment rows written before it was set get their times
    /// corrected (the recorder corrects the same rows; doing it twice changes nothing).
    pub(super) async fn on_clock(&mut self, state: ClockState) {
        let new = state.corrections.len() > self.corrections_seen;
        for c in state.corrections.iter().skip(self.corrections_seen) {
            if let Err(e) = self.deps.index.correct_times(c).await {
                error!(error = %e, "uploader: cannot correct fragment times");
            }
        }
        self.corrections_seen = state.corrections.len();
        if new {
            // The queue holds the old times: start again from the index (frames in
            // memory stay), as after a restart.
            self.reload().await;
        }
        if state.synced && self.waiting_for_clock {
            info!("the clock is set: uploads start");
            self.waiting_for_clock = false;
            self.machine.want_connection(std::time::Instant::now());
        }
    }
}
