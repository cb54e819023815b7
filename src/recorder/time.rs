//! The recorder's clock: monotonic time from the wall clock at start, moved only when a
//! step of the wall clock is applied (ARCHITECTURE.md, "Time").

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::clock::ClockState;

/// The recorder's one source of time: the task layer reads the clocks here and passes
/// the time to the decisions (tracker, retry, motion).
#[derive(Debug)]
pub(super) struct RecorderClock {
    /// The wall-clock time at a monotonic instant.
    base: (DateTime<Utc>, Instant),
    /// The clock steps and corrections applied so far.
    applied: ClockState,
}

impl RecorderClock {
    pub fn new() -> Self {
        Self {
            base: (Utc::now(), Instant::now()),
            applied: ClockState::default(),
        }
    }

    /// Now, on monotonic time from the wall clock at start (moved by each step of the
    /// wall clock as it is applied): a step never stretches or cuts an event.
    pub fn now(&self) -> DateTime<Utc> {
        let (utc, mono) = self.base;
        let elapsed = Instant::now().saturating_duration_since(mono);
        utc + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    pub fn monotonic(&self) -> Instant {
        Instant::now()
    }

    /// Takes what is new in the clock's state; returns the step the open event must move
    /// by, if the clock stepped (the clock part has already corrected the index; times
    /// written from now on are corrected with `applied`).
    pub fn apply(&mut self, state: ClockState) -> Option<chrono::Duration> {
        let delta = state.stepped - self.applied.stepped;
        self.applied = state;
        (delta != chrono::Duration::zero()).then(|| {
            self.base.0 += delta;
            delta
        })
    }

    /// The corrections applied so far.
    pub fn applied(&self) -> &ClockState {
        &self.applied
    }
}
/// How long from `now` until `deadline` (wall clock), for a tokio sleep.
pub(super) fn until(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> std::time::Duration {
    deadline
        .and_then(|d| (d - now).to_std().ok())
        .unwrap_or_default()
        .min(std::time::Duration::from_secs(3600))
}
