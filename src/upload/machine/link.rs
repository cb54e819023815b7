//! The PutMedia link's bookkeeping, pure: which fragments to send on the current
//! connection and when (at most 5 a second), what each ack means, when to reconnect
//! (error codes, a stalled connection, the 40-minute rotation) and after how long (backoff
//! with full jitter, none after a rotation, 10 minutes after the stream refused data),
//! and what to resend after. Time and randomness are inputs.
//!
//! A fragment is kept until PERSISTED. After a reconnect everything not persisted is sent
//! again, oldest first, on a fresh header (the service absorbs duplicates under
//! producer-timestamp playback). Fragment start times must strictly increase.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::upload::ack::{on_error, Ack, AckEvent, OnError};

/// No ack for this long while fragments are outstanding: the connection is dead.
pub const STALL: Duration = Duration::from_secs(30);
/// Rotate the connection (on the next fragment boundary) before the service's ~45 min.
pub const ROTATE_AFTER: Duration = Duration::from_secs(40 * 60);
/// At most 5 fragments a second per stream (the service's limit).
pub const MIN_SPACING: Duration = Duration::from_millis(200);
/// Waits between failed connection attempts: doubling from this…
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// …up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After the stream refused data for good (missing, deleted, access denied).
pub const STOP_RETRY: Duration = Duration::from_secs(600);

/// Where a fragment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting to be written on the current connection.
    Queued,
    /// Due on the current connection (a `Send` was given), not yet written.
    Sent,
    /// Written; BUFFERING/RECEIVED may have come, PERSISTED not yet.
    Written,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The caller's id (e.g. the SQLite row).
    pub id: u64,
    /// First and last frame time, ms since the epoch (the cluster timecode is `start_ms`).
    pub start_ms: u64,
    pub end_ms: u64,
    pub state: State,
}

/// Why a connection is being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// An ERROR ack whose code asks for a reconnect (4000, 4003, 5000, 5001, 5xxx).
    ErrorCode(u32),
    /// The connection dropped.
    Lost,
    /// No ack for `STALL`.
    Stalled,
    /// Planned, before the service's connection time limit.
    Rotation,
}

/// What the task layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Open a connection (new header) — after a backoff when `why` is not `Rotation`.
    Connect,
    /// Write this fragment on the open connection.
    Send(u64),
    /// The fragment is durable at KVS: record it, forget its frames.
    Persisted(u64),
    /// The service can never take this fragment (code): log it, record it, move on.
    Skipped { id: u64, code: u32 },
    /// The stream cannot take data (code): stop uploading and alert.
    Stop { code: u32 },
    /// Close the connection; a `Connect` follows.
    Reconnect(Why),
}

/// Why a fragment was refused at enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("fragment starts at {start_ms} ms, not after the previous one's last frame at {previous_end_ms} ms")]
    NotIncreasing { start_ms: u64, previous_end_ms: u64 },
    #[error("fragment ends before it starts")]
    Backwards,
}

#[derive(Debug)]
struct Connection {
    opened: Instant,
    last_ack: Instant,
    rotate: bool,
}

/// The upload state machine of one stream.
#[derive(Debug)]
pub struct Uploader {
    fragments: VecDeque<Fragment>,
    connection: Option<Connection>,
    last_end_ms: Option<u64>,
    stopped: bool,
    /// When to try to connect next; `None`: no attempt is due.
    connect_at: Option<Instant>,
    backoff: Backoff,
    /// The connection was replaced by a planned rotation: the next one opens at once.
    rotating: bool,
    /// The earliest time the next fragment may be written.
    write_at: Option<Instant>,
}

impl Default for Uploader {
    fn default() -> Self {
        Self {
            fragments: VecDeque::new(),
            connection: None,
            last_end_ms: None,
            stopped: false,
            connect_at: None,
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
            rotating: false,
            write_at: None,
        }
    }
}

impl Uploader {
    /// Fragments not yet persisted.
    pub fn backlog(&self) -> usize {
        self.fragments.len()
    }

    /// The fragment a new connection starts with (its header comes from it).
    pub fn next_queued(&self) -> Option<u64> {
        self.fragments
            .iter()
            .find(|f| f.state == State::Queued)
            .map(|f| f.id)
    }

    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// A new fragment (one GOP). Sent at once when connected.
    pub fn enqueue(
        &mut self,
        id: u64,
        start_ms: u64,
        end_ms: u64,
        now: Instant,
    ) -> Result<Vec<LinkAction>, EnqueueError> {
        if end_ms < start_ms {
            return Err(EnqueueError::Backwards);
        }
        if let Some(prev) = self.last_end_ms {
            if start_ms <= prev {
                return Err(EnqueueError::NotIncreasing {
                    start_ms,
                    previous_end_ms: prev,
                });
            }
        }
        self.last_end_ms = Some(end_ms);
        self.fragments.push_back(Fragment {
            id,
            start_ms,
            end_ms,
            state: State::Queued,
        });
        Ok(self.pump(now))
    }

    /// Drops a fragment whose frames can no longer be read (the caller records why).
    pub fn forget(&mut self, id: u64) {
        self.fragments.retain(|f| f.id != id);
    }

    /// The connection is open (its header written).
    pub fn connected(&mut self, now: Instant) -> Vec<LinkAction> {
        self.backoff.reset();
        self.rotating = false;
        self.connect_at = None;
        self.write_at = Some(now);
        self.connection = Some(Connection {
            opened: now,
            last_ack: now,
            rotate: false,
        });
        for f in &mut self.fragments {
            f.state = State::Queued;
        }
        self.pump(now)
    }

    /// The connection ended (dropped, or closed on our request); the caller waits a
    /// backoff before connecting again unless `why` is `Rotation`.
    pub fn disconnected(&mut self, why: Why) -> Vec<LinkAction> {
        self.connection = None;
        self.rotating = why == Why::Rotation;
        for f in &mut self.fragments {
            f.state = State::Queued;
        }
        if self.stopped {
            return Vec::new();
        }
        vec![LinkAction::Connect]
    }

    /// An ack from the service.
    pub fn ack(&mut self, ack: &Ack, now: Instant) -> Vec<LinkAction> {
        if let Some(c) = &mut self.connection {
            c.last_ack = now;
        }
        let pos = ack
            .fragment_timecode
            .and_then(|t| self.fragments.iter().position(|f| f.start_ms == t));
        match (ack.event, pos) {
            (AckEvent::Persisted, Some(i)) => {
                let f = self.fragments.remove(i).map(|f| f.id);
                f.map(LinkAction::Persisted).into_iter().collect()
            }
            (AckEvent::Error, _) => {
                let code = ack.error_id.unwrap_or(0);
                match on_error(code) {
                    OnError::Reconnect => vec![LinkAction::Reconnect(Why::ErrorCode(code))],
                    OnError::SkipFragment => match pos.and_then(|i| self.fragments.remove(i)) {
                        Some(f) => vec![LinkAction::Skipped { id: f.id, code }],
                        None => Vec::new(),
                    },
                    OnError::Stop => {
                        self.stopped = true;
                        self.connect_at = Some(now + STOP_RETRY);
                        vec![LinkAction::Stop { code }]
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    /// Periodic check: a stalled connection, or one due for rotation.
    pub fn tick(&mut self, now: Instant) -> Vec<LinkAction> {
        let Some(c) = &mut self.connection else {
            return Vec::new();
        };
        let outstanding = self.fragments.iter().any(|f| f.state != State::Queued);
        if outstanding && now.duration_since(c.last_ack) >= STALL {
            return vec![LinkAction::Reconnect(Why::Stalled)];
        }
        if now.duration_since(c.opened) >= ROTATE_AFTER {
            c.rotate = true;
        }
        if c.rotate && !outstanding {
            return vec![LinkAction::Reconnect(Why::Rotation)];
        }
        Vec::new()
    }

    /// A connection is wanted now (there is something to send and none is open or due).
    pub fn want_connection(&mut self, now: Instant) {
        if self.connection.is_none()
            && self.connect_at.is_none()
            && !self.stopped
            && !self.fragments.is_empty()
        {
            self.connect_at = Some(now);
        }
    }

    /// After `Connect`: when to try (at once after a rotation, else after a backoff with
    /// full jitter, `jitter` in [0, 1)). Nothing is due while nothing waits.
    pub fn schedule_connect(&mut self, now: Instant, jitter: f64) {
        if self.fragments.is_empty() {
            return;
        }
        let delay = if std::mem::take(&mut self.rotating) {
            Duration::ZERO
        } else {
            self.backoff.next_delay_full(jitter)
        };
        self.connect_at = Some(now + delay);
    }

    /// Opening a connection failed: try again after a backoff, or after `STOP_RETRY` when
    /// the service refused for a reason a retry does not fix. Returns the wait.
    pub fn connect_failed(&mut self, now: Instant, retryable: bool, jitter: f64) -> Duration {
        let delay = if retryable {
            self.backoff.next_delay_full(jitter)
        } else {
            STOP_RETRY
        };
        self.connect_at = Some(now + delay);
        delay
    }

    /// When the next connection attempt is due (`None`: none is).
    pub fn connect_at(&self) -> Option<Instant> {
        self.connect_at
            .filter(|_| !self.stopped && self.connection.is_none())
    }

    /// Takes the due connection attempt (the caller opens the connection now).
    pub fn take_connect(&mut self) {
        self.connect_at = None;
    }

    /// After `Stop`: whether the wait before trying the stream again is over.
    pub fn stop_retry_due(&self, now: Instant) -> bool {
        self.stopped && self.connect_at.is_some_and(|t| now >= t)
    }

    /// When the next fragment may be written (`None`: nothing is due).
    pub fn write_at(&self) -> Option<Instant> {
        self.connection.as_ref()?;
        self.fragments
            .iter()
            .any(|f| f.state == State::Sent)
            .then_some(self.write_at)
            .flatten()
    }

    /// The fragment to write now, if one is due and the pace allows: at most one every
    /// `MIN_SPACING`.
    pub fn poll_write(&mut self, now: Instant) -> Option<u64> {
        if self.write_at().is_none_or(|t| now < t) {
            return None;
        }
        let f = self.fragments.iter_mut().find(|f| f.state == State::Sent)?;
        f.state = State::Written;
        self.write_at = Some(now + MIN_SPACING);
        Some(f.id)
    }

    /// Sends what is queued, unless a rotation is waiting for the connection to drain.
    fn pump(&mut self, now: Instant) -> Vec<LinkAction> {
        let Some(c) = &mut self.connection else {
            return Vec::new();
        };
        if self.stopped {
            return Vec::new();
        }
        if now.duration_since(c.opened) >= ROTATE_AFTER {
            c.rotate = true;
        }
        if c.rotate {
            // The next fragment goes on a fresh connection.
            let outstanding = self.fragments.iter().any(|f| f.state != State::Queued);
            return if outstanding {
                Vec::new()
            } else {
                vec![LinkAction::Reconnect(Why::Rotation)]
            };
        }
        if !self.fragments.iter().any(|f| f.state != State::Queued) {
            c.last_ack = now;
        }
        self.fragments
            .iter_mut()
            .filter(|f| f.state == State::Queued)
            .map(|f| {
                f.state = State::Sent;
                LinkAction::Send(f.id)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(event: AckEvent, t: u64) -> Ack {
        Ack {
            event,
            fragment_timecode: Some(t),
            fragment_number: Some("1".into()),
            error_id: None,
            error_code: None,
        }
    }

    fn error(t: u64, id: u32) -> Ack {
        Ack {
            error_id: Some(id),
            ..ack(AckEvent::Error, t)
        }
    }

    /// Fragment i covers [1000 i, 1000 i + 900] ms.
    fn enqueue(u: &mut Uploader, i: u64, now: Instant) -> Vec<LinkAction> {
        u.enqueue(i, i * 1000, i * 1000 + 900, now).unwrap()
    }

    #[test]
    fn fragments_go_out_in_order_and_leave_when_persisted() {
        let t = Instant::now();
        let mut u = Uploader::default();
        assert!(enqueue(&mut u, 1, t).is_empty(), "not connected yet");
        assert_eq!(u.connected(t), [LinkAction::Send(1)]);
        assert_eq!(enqueue(&mut u, 2, t), [LinkAction::Send(2)]);
        assert!(u.ack(&ack(AckEvent::Buffering, 1000), t).is_empty());
        assert!(u.ack(&ack(AckEvent::Received, 1000), t).is_empty());
        assert_eq!(
            u.ack(&ack(AckEvent::Persisted, 1000), t),
            [LinkAction::Persisted(1)]
        );
        assert_eq!(u.backlog(), 1);
        assert_eq!(
            u.ack(&ack(AckEvent::Persisted, 2000), t),
            [LinkAction::Persisted(2)]
        );
        assert_eq!(u.backlog(), 0);
    }

    #[test]
    fn a_dropped_connection_resends_everything_not_persisted() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.connected(t);
        for i in 1..=3 {
            enqueue(&mut u, i, t);
        }
        u.ack(&ack(AckEvent::Persisted, 1000), t);
        assert_eq!(u.disconnected(Why::Lost), [LinkAction::Connect]);
        // Queued while offline: kept for the next connection.
        assert!(enqueue(&mut u, 4, t).is_empty());
        assert_eq!(
            u.connected(t),
            [
                LinkAction::Send(2),
                LinkAction::Send(3),
                LinkAction::Send(4)
            ],
            "oldest first, fragment 1 (persisted) not again"
        );
    }

    #[test]
    fn error_codes_reconnect_skip_or_stop() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.connected(t);
        for i in 1..=3 {
            enqueue(&mut u, i, t);
        }
        // 4006 invalid MKV: that fragment is dropped, no loop.
        assert_eq!(
            u.ack(&error(2000, 4006), t),
            [LinkAction::Skipped { id: 2, code: 4006 }]
        );
        // 5000 internal error: reconnect and resend the rest.
        assert_eq!(
            u.ack(&error(3000, 5000), t),
            [LinkAction::Reconnect(Why::ErrorCode(5000))]
        );
        u.disconnected(Why::ErrorCode(5000));
        assert_eq!(u.connected(t), [LinkAction::Send(1), LinkAction::Send(3)]);
        // 4008 stream not active: stop, and stay stopped.
        assert_eq!(
            u.ack(&error(1000, 4008), t),
            [LinkAction::Stop { code: 4008 }]
        );
        assert!(u.is_stopped());
        assert!(u.disconnected(Why::Lost).is_empty(), "no reconnect loop");
        assert!(enqueue(&mut u, 5, t).is_empty());
    }

    #[test]
    fn timecodes_must_increase_across_fragments() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.enqueue(1, 1000, 1900, t).unwrap();
        assert_eq!(
            u.enqueue(2, 1900, 2500, t),
            Err(EnqueueError::NotIncreasing {
                start_ms: 1900,
                previous_end_ms: 1900
            }),
            "equal to the previous last frame fails at KVS (4004)"
        );
        assert_eq!(u.enqueue(3, 2500, 2400, t), Err(EnqueueError::Backwards));
        assert!(u.enqueue(4, 1901, 2500, t).is_ok());
    }

    #[test]
    fn a_silent_connection_is_replaced() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.connected(t);
        enqueue(&mut u, 1, t);
        assert!(u.tick(t + Duration::from_secs(29)).is_empty());
        assert_eq!(
            u.tick(t + Duration::from_secs(30)),
            [LinkAction::Reconnect(Why::Stalled)]
        );
        // Idle with nothing outstanding is not a stall.
        let mut idle = Uploader::default();
        idle.connected(t);
        assert!(idle.tick(t + Duration::from_secs(600)).is_empty());
    }

    #[test]
    fn rotation_waits_for_outstanding_acks_then_happens_between_fragments() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.connected(t);
        enqueue(&mut u, 1, t);
        let late = t + ROTATE_AFTER;
        u.ack(&ack(AckEvent::Received, 1000), late);
        // Fragment 1 is still outstanding: the new one waits, no rotation yet.
        assert!(enqueue(&mut u, 2, late).is_empty());
        assert_eq!(
            u.ack(&ack(AckEvent::Persisted, 1000), late),
            [LinkAction::Persisted(1)]
        );
        assert_eq!(u.tick(late), [LinkAction::Reconnect(Why::Rotation)]);
        u.disconnected(Why::Rotation);
        assert_eq!(u.connected(late), [LinkAction::Send(2)]);
    }

    #[test]
    fn fragments_are_written_at_most_five_a_second() {
        let t = Instant::now();
        let mut u = Uploader::default();
        for i in 1..=3 {
            enqueue(&mut u, i, t);
        }
        assert_eq!(u.write_at(), None, "nothing is written before a connection");
        u.connected(t);
        assert_eq!(u.poll_write(t), Some(1));
        assert_eq!(u.poll_write(t), None, "the next waits");
        assert_eq!(u.write_at(), Some(t + MIN_SPACING));
        assert_eq!(u.poll_write(t + MIN_SPACING), Some(2));
        assert_eq!(u.poll_write(t + 2 * MIN_SPACING), Some(3));
        assert_eq!(u.write_at(), None, "all written");
        // A drop makes every unpersisted fragment due again on the next connection.
        u.disconnected(Why::Lost);
        assert_eq!(u.write_at(), None);
        let later = t + Duration::from_secs(5);
        u.connected(later);
        assert_eq!(u.poll_write(later), Some(1));
    }

    #[test]
    fn reconnects_back_off_with_full_jitter_but_not_after_a_rotation() {
        let t = Instant::now();
        let mut u = Uploader::default();
        enqueue(&mut u, 1, t);
        u.want_connection(t);
        assert_eq!(u.connect_at(), Some(t), "the first attempt at once");
        u.take_connect();
        let waits: Vec<Duration> = (0..4)
            .map(|_| u.connect_failed(t, true, 0.999_999))
            .collect();
        let ms: Vec<u128> = waits.iter().map(|d| (d.as_micros() + 500) / 1000).collect();
        assert_eq!(ms, [200, 400, 800, 1600], "doubling from 200 ms");
        assert_eq!(
            u.connect_failed(t, true, 0.0),
            Duration::ZERO,
            "full jitter reaches 0"
        );
        assert_eq!(
            u.connect_failed(t, false, 0.5),
            STOP_RETRY,
            "refused for good"
        );
        u.connected(t);
        assert_eq!(u.connect_at(), None);
        // A rotation reconnects at once; a drop after a good connection starts over.
        u.disconnected(Why::Rotation);
        u.schedule_connect(t, 0.9);
        assert_eq!(u.connect_at(), Some(t));
        u.connected(t);
        u.disconnected(Why::Lost);
        u.schedule_connect(t, 0.999_999);
        let wait = u.connect_at().unwrap() - t;
        assert!(
            wait <= FIRST_BACKOFF,
            "backoff reset by the good connection: {wait:?}"
        );
    }

    #[test]
    fn a_refusal_for_good_is_retried_after_ten_minutes_only() {
        let t = Instant::now();
        let mut u = Uploader::default();
        u.connected(t);
        enqueue(&mut u, 1, t);
        assert_eq!(
            u.ack(&error(1000, 4008), t),
            [LinkAction::Stop { code: 4008 }]
        );
        assert_eq!(u.connect_at(), None, "a stopped stream is not reconnected");
        assert!(!u.stop_retry_due(t + STOP_RETRY - Duration::from_secs(1)));
        assert!(u.stop_retry_due(t + STOP_RETRY));
    }
}
