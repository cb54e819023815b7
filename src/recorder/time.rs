//! The recorder's clock: monotonic time from the wall clock at start, moved only when a
//! step of the wall clock is applied (ARCHITECTURE.md, "Time").

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::clock::{ClockState, SharedClocks};

#[derive(Debug)]
pub(super) struct RecorderClock {
    clocks: SharedClocks,
    /// The wall-clock time at a monotonic instant.
    base: (DateTime<Utc>, Instant),
    /// The clock steps and corrections applied so far.
    applied: ClockState,
}

impl RecorderClock {
    pub fn new(clocks: SharedClocks) -> Self {
        Self {
            base: (clocks.utc(), clocks.monotonic()),
            clocks,
            applied: ClockState::default(),
        }
    }

    /// Now, on monotonic time from the wall clock at start (moved by each step of the
    /// wall clock as it is applied): a step never stretches or cuts an event.
    pub fn now(&self) -> DateTime<Utc> {
        let (utc, mono) = self.base;
        let elapsed = self.clocks.monotonic().saturating_duration_since(mono);
        utc + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    pub fn monotonic(&self) -> Instant {
        self.clocks.monotonic()
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
