//! A clip that cannot be written (a full disk, a failing card): the event goes on, and
//! its clip is tried again with backoff, not once per frame. Pure: the recorder passes
//! the time in.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::backoff::Backoff;

const FIRST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(30);

/// The clip to open again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopen {
    pub event_id: String,
    pub tracker_id: String,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub struct ClipRetry {
    backoff: Backoff,
    pending: Option<(Reopen, Instant)>,
    failing: bool,
}

impl Default for ClipRetry {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(FIRST, LONGEST),
            pending: None,
            failing: false,
        }
    }
}

impl ClipRetry {
    /// A clip failed at `now`: it is tried again after the returned delay. The flag says
    /// whether this starts a run of failures (worth a warning; the rest are not).
    pub fn failed(&mut self, clip: Reopen, now: Instant, jitter: f64) -> (Duration, bool) {
        let delay = self.backoff.next_delay(jitter);
        self.pending = Some((clip, now + delay));
        let first = !self.failing;
        self.failing = true;
        (delay, first)
    }

    /// The clip to open now, if its time came.
    pub fn due(&mut self, now: Instant) -> Option<Reopen> {
        match &self.pending {
            Some((_, at)) if now >= *at => self.pending.take().map(|(c, _)| c),
            _ => None,
        }
    }

    /// A clip opened and took frames: `true` when that ends a run of failures.
    pub fn succeeded(&mut self) -> bool {
        self.backoff.reset();
        std::mem::replace(&mut self.failing, false)
    }

    /// The tracker ended the clip waiting to be opened again.
    pub fn end(&mut self, tracker_id: &str, until: DateTime<Utc>) {
        if let Some((c, _)) = self
            .pending
            .as_mut()
            .filter(|(c, _)| c.tracker_id == tracker_id)
        {
            c.until = Some(until);
        }
    }

    /// The event ended for good (shutdown): nothing to open again.
    pub fn clear(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> Reopen {
        Reopen {
            event_id: "e".into(),
            tracker_id: "c".into(),
            until: None,
        }
    }

    #[test]
    fn failures_back_off_and_warn_once_per_run() {
        let t0 = Instant::now();
        let mut r = ClipRetry::default();
        let (d1, first) = r.failed(clip(), t0, 1.0);
        assert_eq!((d1, first), (Duration::from_secs(1), true));
        assert_eq!(r.due(t0 + Duration::from_millis(900)), None);
        assert_eq!(r.due(t0 + d1), Some(clip()));
        assert_eq!(r.due(t0 + d1), None, "taken once");
        let (d2, first) = r.failed(clip(), t0 + d1, 1.0);
        assert_eq!(
            (d2, first),
            (Duration::from_secs(2), false),
            "no second warning"
        );
        for _ in 0..10 {
            r.failed(clip(), t0, 1.0);
        }
        assert_eq!(r.failed(clip(), t0, 1.0).0, LONGEST, "capped");
        assert!(r.succeeded(), "the run of failures ended");
        assert!(!r.succeeded());
        assert_eq!(
            r.failed(clip(), t0, 1.0),
            (FIRST, true),
            "back to the start"
        );
        let until = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        r.end("c", until);
        assert_eq!(r.due(t0 + LONGEST).unwrap().until, Some(until));
    }
}
