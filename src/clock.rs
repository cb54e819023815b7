//! The wall clock, judged. Decisions take the time as an input (the task layer reads the
//! clocks and passes them in; tests pass made-up times). `ClockWatch` decides, from
//! readings of the wall and monotonic clocks, whether the wall clock can be trusted yet
//! and what a step means for times already recorded.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A wall clock before this is certainly wrong (this release was made after it): a
/// camera without a real-time clock boots in 1970, or at its last shutdown.
pub const FLOOR_UNIX_S: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z

/// A change of (wall − monotonic) at least this big is a step of the wall clock, not
/// the noise of reading two clocks.
const STEP_MS: i64 = 1_000;

/// Times recorded in `since..=until` (on the wrong clock) are right once moved by `delta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correction {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub delta: chrono::Duration,
}

impl Correction {
    /// `t` corrected, when it was recorded on the wrong clock.
    pub fn apply(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        if (self.since..=self.until).contains(&t) {
            t + self.delta
        } else {
            t
        }
    }
}

/// What the daemon knows about the wall clock, published to the parts that record,
/// send or show times.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClockState {
    /// The wall clock is at or past `FLOOR_UNIX_S`: times may be sent out.
    pub synced: bool,
    /// Every step of the wall clock so far, added up: deadlines move by it.
    pub stepped: chrono::Duration,
    /// How to correct times recorded before the clock was set.
    pub corrections: Vec<Correction>,
}

impl ClockState {
    /// `t` with every correction applied (times recorded on a clock that was not set).
    pub fn correct(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.corrections.iter().fold(t, |t, c| c.apply(t))
    }
}

/// The clock's next state, or never without one (a part whose clock is not watched).
pub async fn next_state(
    clock: &mut Option<tokio::sync::watch::Receiver<ClockState>>,
) -> Option<ClockState> {
    match clock {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// A step of the wall clock seen by `ClockWatch::observe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub delta: chrono::Duration,
    /// Set when the clock before the step was not set: the times it gave are wrong.
    pub correction: Option<Correction>,
}

/// Watches the wall clock against the monotonic one (pure: readings in, steps out).
#[derive(Debug)]
pub struct ClockWatch {
    floor: DateTime<Utc>,
    /// Wall minus monotonic, ms, at the last reading.
    offset_ms: Option<i64>,
    /// Since when the current wall-clock frame holds (start, or the last step).
    since: Option<DateTime<Utc>>,
    state: ClockState,
}

impl ClockWatch {
    pub fn new(floor: DateTime<Utc>) -> Self {
        Self {
            floor,
            offset_ms: None,
            since: None,
            state: ClockState::default(),
        }
    }

    pub fn state(&self) -> &ClockState {
        &self.state
    }

    /// Takes a reading of the wall clock and of the monotonic clock (any origin) made
    /// together; a step of the wall clock since the last reading is returned.
    pub fn observe(&mut self, utc: DateTime<Utc>, mono: Duration) -> Option<Step> {
        let mono_ms = i64::try_from(mono.as_millis()).unwrap_or(i64::MAX);
        let offset = utc.timestamp_millis().saturating_sub(mono_ms);
        let was_synced = self.state.synced;
        self.state.synced = utc >= self.floor;
        let Some(before) = self.offset_ms.replace(offset) else {
            self.since = Some(utc);
            return None;
        };
        let change = offset.saturating_sub(before);
        if change.abs() < STEP_MS {
            return None;
        }
        let delta = chrono::Duration::milliseconds(change);
        let until = utc - delta;
        let correction = (!was_synced).then(|| Correction {
            since: self.since.unwrap_or(until),
            until,
            delta,
        });
        self.state.stepped += delta;
        self.state.corrections.extend(correction);
        self.since = Some(utc);
        Some(Step { delta, correction })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_clock_set_at_boot_corrects_what_was_recorded_before() {
        let floor = at(FLOOR_UNIX_S);
        let mut w = ClockWatch::new(floor);
        // Booted in 1970: 100 s after the epoch, 5 s of uptime.
        assert_eq!(w.observe(at(100), Duration::from_secs(5)), None);
        assert!(!w.state().synced, "1970 is before the floor");
        // Readings a second apart, with a few ms of noise: no step.
        assert_eq!(w.observe(at(101), Duration::from_millis(6_004)), None);
        let recorded = at(103);
        // NTP sets the clock: the wall clock jumps to 2026-12-01 while 3 s pass.
        let real = at(1_796_083_200);
        let step = w.observe(real, Duration::from_secs(9)).unwrap();
        // The step is measured from the last reading (which had 4 ms of noise).
        let delta = real - at(104) + chrono::Duration::milliseconds(4);
        assert_eq!(step.delta, delta);
        assert_eq!(
            step.correction,
            Some(Correction {
                since: at(100),
                until: real - delta,
                delta
            })
        );
        let s = w.state();
        assert!(s.synced);
        assert_eq!(s.stepped, delta);
        assert_eq!(
            s.correct(recorded),
            recorded + delta,
            "a time of the past run"
        );
        assert_eq!(
            s.correct(real),
            real,
            "a time on the set clock is left alone"
        );
        assert_eq!(
            s.correct(at(50)),
            at(50),
            "a time before this run is left alone"
        );
    }

    #[test]
    fn a_step_of_a_set_clock_moves_deadlines_but_corrects_nothing() {
        let mut w = ClockWatch::new(at(FLOOR_UNIX_S));
        let t0 = at(1_796_083_200);
        w.observe(t0, Duration::from_secs(100));
        assert!(w.state().synced);
        let step = w
            .observe(t0 - chrono::Duration::seconds(30), Duration::from_secs(101))
            .unwrap();
        assert_eq!(step.delta, chrono::Duration::seconds(-31));
        assert_eq!(step.correction, None);
        assert_eq!(w.state().stepped, chrono::Duration::seconds(-31));
        assert!(w.state().corrections.is_empty());
    }
}
