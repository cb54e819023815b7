//! Time as an input. Tasks read the time through `Clocks`, so decisions can be tested on
//! simulated time, including a wall clock that steps (an NTP correction) while the
//! monotonic clock does not.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The two clocks a task may read: UTC for what is recorded and reported, monotonic for
/// how long something took or when to do something next.
pub trait Clocks: Send + Sync + Debug {
    fn utc(&self) -> DateTime<Utc>;
    fn monotonic(&self) -> Instant;
}

/// Shared by the tasks that read the time.
pub type SharedClocks = Arc<dyn Clocks>;

/// The machine's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClocks;

impl Clocks for SystemClocks {
    fn utc(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// The machine's clocks, shared.
pub fn system() -> SharedClocks {
    Arc::new(SystemClocks)
}

/// Clocks that move only when told (tests).
#[derive(Debug, Clone)]
pub struct SimulatedClocks {
    now: Arc<Mutex<(DateTime<Utc>, Instant)>>,
}

impl SimulatedClocks {
    pub fn new(utc: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new((utc, Instant::now()))),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut (DateTime<Utc>, Instant)) -> T) -> T {
        // A poisoned lock still holds a valid pair of times.
        let mut guard = self.now.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Both clocks move on by `d`.
    pub fn advance(&self, d: Duration) {
        self.with(|(utc, mono)| {
            *utc += chrono::Duration::from_std(d).unwrap_or_default();
            *mono += d;
        });
    }

    /// Only the wall clock jumps (forwards or backwards), as when NTP corrects it.
    pub fn step_utc(&self, by: chrono::Duration) {
        self.with(|(utc, _)| *utc += by);
    }
}

impl Clocks for SimulatedClocks {
    fn utc(&self) -> DateTime<Utc> {
        self.with(|(utc, _)| *utc)
    }

    fn monotonic(&self) -> Instant {
        self.with(|(_, mono)| *mono)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_step_leaves_the_monotonic_clock_alone() {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let c = SimulatedClocks::new(start);
        let m0 = c.monotonic();
        c.advance(Duration::from_secs(2));
        c.step_utc(chrono::Duration::hours(-1));
        assert_eq!(c.monotonic() - m0, Duration::from_secs(2));
        assert_eq!(
            c.utc() - start,
            chrono::Duration::seconds(2) - chrono::Duration::hours(1)
        );
    }
}
