//! The recorder's clock: monotonic time from the wall clock at start, moved only when a
//! step of the wall clock is applied (ARCHITECTURE.md, "Time").

use chrono::{DateTime, Utc};

use super::task::Recorder;
use crate::clock::ClockState;
use crate::events::Input;

impl Recorder {
    /// Now, on monotonic time from the wall clock at start (moved by each step of the
    /// wall clock as it is applied): a step never stretches or cuts an event.
    pub(super) fn now(&self) -> DateTime<Utc> {
        let (utc, mono) = self.time_base;
        let elapsed = self.deps.clocks.monotonic().saturating_duration_since(mono);
        utc + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// Applies what is new in the clock's state: a step moves the recorder's clock and
    /// the open event's times (the clock part has already corrected the index; clip
    /// times written from now on are corrected with `clock_applied`).
    pub(super) async fn on_clock(&mut self, state: ClockState) {
        let delta = state.stepped - self.clock_applied.stepped;
        self.clock_applied = state;
        if delta != chrono::Duration::zero() {
            self.time_base.0 += delta;
            let actions = self.tracker.handle(self.now(), Input::ClockStepped(delta));
            self.apply(actions).await;
        }
    }
}
