//! The uploader's decisions, pure, with two verbs in the manner of str0m: `handle(now,
//! input)` tells it what happened (a feed message, a live frame, an ack, the clock, a
//! connection opened or lost, fragments the index holds), and `poll(now)` says what to do
//! next (record a GOP, open a connection, write a fragment, record an ack, reload from
//! the index…), until it says nothing; `deadline()` is when to poll again. No tokio, SQL,
//! HTTP or GStreamer: the task (`upload::task`) does what it is told.
//!
//! `link` keeps the PutMedia connection's bookkeeping (what to send, acks, reconnects),
//! `intake` cuts GOPs from what arrives live; this file joins them to the fragments of the
//! index, the clock and the periodic checks.

mod intake;
pub mod link;
mod messages;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::debug;

use crate::aws::images;
use crate::clock::{ClockState, Correction};
use crate::index::FragmentRow;
use intake::Intake;
use link::{EnqueueError, LinkAction, Uploader, Why};

pub use intake::FEED_IDLE;
pub use messages::{Input, Notice, Output, Settings};

/// The periodic checks (stall, rotation, sound waits, retries) run this often.
pub const TICK: Duration = Duration::from_secs(1);
/// How often finished clips are checked for frames still owed and for being done.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(5);

/// A fragment queued: the rows it is made of.
#[derive(Debug)]
struct Unit {
    rows: Vec<FragmentRow>,
    live: bool,
}

pub struct Machine {
    settings: Settings,
    link: Uploader,
    units: HashMap<u64, Unit>,
    intake: Intake,
    /// The task holds an open connection.
    open: bool,
    /// Rows older than what the connection already sent wait for the queue to drain.
    deferred: bool,
    clock: ClockState,
    /// Uploads are waiting for the clock to be set (said once).
    waiting_for_clock: bool,
    /// Clock corrections already applied to the index.
    corrections_seen: usize,
    next_tick: Instant,
    last_catch_up: Instant,
    rng: fastrand::Rng,
    out: VecDeque<Output>,
}

impl Machine {
    /// A machine at `now` on the clock as it is (its corrections already applied to the
    /// index); `seed` makes its jitter (a fixed one in tests).
    pub fn new(settings: Settings, clock: ClockState, now: Instant, seed: u64) -> Self {
        Self {
            settings,
            link: Uploader::default(),
            units: HashMap::new(),
            intake: Intake::new(settings.live_sound),
            open: false,
            deferred: false,
            corrections_seen: clock.corrections.len(),
            clock,
            waiting_for_clock: false,
            next_tick: now + TICK,
            last_catch_up: now,
            rng: fastrand::Rng::with_seed(seed),
            out: VecDeque::new(),
        }
    }

    /// A time recorded on the clock as it was, on the clock as it is set (the same
    /// correction the machine applied to the fragment's start, so acks match).
    pub fn corrected(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.clock.correct(t)
    }

    /// Fragments not yet persisted.
    pub fn backlog(&self) -> usize {
        self.link.backlog()
    }

    /// When the next connection attempt is due, if one is.
    pub fn next_connect(&self) -> Option<Instant> {
        self.link.connect_at().filter(|_| !self.open)
    }

    /// When `poll` has something to say next, unless an input comes first.
    pub fn deadline(&self) -> Instant {
        let write = self.link.write_at().filter(|_| self.open);
        [Some(self.next_tick), self.next_connect(), write]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_tick)
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Feed(feed) => {
                let cut = self.intake.feed(feed, now);
                self.record(cut);
            }
            Input::Live { frame, lost } => {
                let cut = self.intake.live(frame, lost, now);
                self.record(cut);
            }
            Input::LiveAudio(frame) => {
                let cut = self.intake.live_audio(frame);
                self.record(cut);
            }
            Input::Clock(state) => self.on_clock(now, state),
            Input::Queue { rows, live } => self.enqueue(now, rows, live),
            Input::Connected => {
                self.open = true;
                let actions = self.link.connected(now);
                self.apply(now, actions, None);
            }
            Input::ConnectFailed { retryable } => {
                let jitter = self.rng.f64();
                self.link.connect_failed(now, retryable, jitter);
            }
            Input::Unreadable { id, why } => {
                self.link.forget(id);
                if let Some(unit) = self.units.remove(&id) {
                    self.skip(unit.rows, 0, why);
                }
                self.link.want_connection(now);
            }
            Input::Ack(ack) => {
                let actions = self.link.ack(&ack, now);
                self.apply(now, actions, ack.fragment_number);
            }
            Input::Lost => {
                self.close();
                let actions = self.link.disconnected(Why::Lost);
                self.apply(now, actions, None);
            }
            Input::Forget(ids) => {
                for id in ids {
                    let id = id as u64;
                    self.units.remove(&id);
                    self.link.forget(id);
                }
            }
        }
    }

    /// What to do now, oldest first; `None` when nothing is due before `deadline()`.
    pub fn poll(&mut self, now: Instant) -> Option<Output> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        if now >= self.next_tick {
            self.tick(now);
            if let Some(o) = self.out.pop_front() {
                return Some(o);
            }
        }
        if self.next_connect().is_some_and(|t| now >= t) {
            self.connect(now);
            if let Some(o) = self.out.pop_front() {
                return Some(o);
            }
        }
        if !self.open {
            return None;
        }
        let id = self.link.poll_write(now)?;
        // A fragment persisted or skipped meanwhile is not written.
        let rows = self.units.get(&id)?.rows.clone();
        let tags = self.tags(&rows);
        Some(Output::Write { id, rows, tags })
    }

    fn record(&mut self, cut: intake::Cut) {
        for (clip_id, gop) in cut {
            let (Some(first), Some(last)) = (gop.frames.first(), gop.frames.last()) else {
                continue;
            };
            let (start_at, end_at) = (
                self.corrected(first.captured_at),
                self.corrected(last.captured_at),
            );
            self.out.push_back(Output::Record {
                clip_id,
                gop,
                start_at,
                end_at,
            });
        }
    }

    fn enqueue(&mut self, now: Instant, rows: Vec<FragmentRow>, live: bool) {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        let id = first.id as u64;
        let ms = |t| self.corrected(t).timestamp_millis().max(0) as u64;
        let (start, end) = (ms(first.start_at), ms(last.end_at));
        match self.link.enqueue(id, start, end, now) {
            Ok(actions) => {
                self.units.insert(id, Unit { rows, live });
                self.apply(now, actions, None);
                self.link.want_connection(now);
            }
            Err(EnqueueError::NotIncreasing { .. }) => {
                // Older than what this connection sent: it goes on a fresh one later.
                debug!(fragment = id, "uploader: older fragment deferred");
                self.deferred = true;
            }
            Err(EnqueueError::Backwards) => {
                self.skip(rows, 0, "fragment ends before it starts".into());
            }
        }
    }

    fn apply(&mut self, now: Instant, actions: Vec<LinkAction>, number: Option<String>) {
        let mut queue: VecDeque<LinkAction> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                LinkAction::Connect => {
                    self.close();
                    let jitter = self.rng.f64();
                    self.link.schedule_connect(now, jitter);
                }
                // Written as `poll` paces them.
                LinkAction::Send(_) => {}
                LinkAction::Persisted(id) => {
                    if let Some(unit) = self.units.remove(&id) {
                        self.out.push_back(Output::Persisted {
                            rows: unit.rows,
                            fragment_number: number.clone(),
                            live: unit.live,
                        });
                    }
                }
                LinkAction::Skipped { id, code } => {
                    if let Some(unit) = self.units.remove(&id) {
                        self.skip(unit.rows, code, "refused by KVS".into());
                    }
                }
                LinkAction::Stop { code } => {
                    self.close();
                    self.out.push_back(Output::Stopped { code });
                }
                LinkAction::Reconnect(why) => {
                    if why == Why::Rotation {
                        self.out.push_back(Output::Notice(Notice::Rotation));
                    }
                    self.close();
                    queue.extend(self.link.disconnected(why));
                }
            }
        }
    }

    fn skip(&mut self, rows: Vec<FragmentRow>, code: u32, why: String) {
        self.out.push_back(Output::Skipped { rows, code, why });
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.out.push_back(Output::Close);
        }
    }

    /// Starts again from the index, on a fresh link.
    fn reload(&mut self) {
        self.close();
        self.link = Uploader::default();
        self.units.clear();
        self.deferred = false;
        self.out.push_back(Output::Reload {
            cutting: self.intake.cutting(),
        });
    }

    fn connect(&mut self, now: Instant) {
        self.link.take_connect();
        let Some(id) = self.link.next_queued() else {
            return;
        };
        if !self.clock.synced {
            // `on_clock` asks again once the clock is set.
            if !self.waiting_for_clock {
                self.out.push_back(Output::Notice(Notice::WaitingForClock));
            }
            self.waiting_for_clock = true;
            return;
        }
        self.waiting_for_clock = false;
        match self.units.get(&id).and_then(|u| u.rows.first()) {
            Some(first) => {
                let first = first.clone();
                self.out.push_back(Output::Connect { id, first });
            }
            None => self.handle(
                now,
                Input::Unreadable {
                    id,
                    why: "unknown fragment".into(),
                },
            ),
        }
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + TICK;
        let actions = self.link.tick(now);
        self.apply(now, actions, None);
        let cut = self.intake.expire(now);
        self.record(cut);
        if self.link.stop_retry_due(now) {
            // A fresh link: the stream is tried again from the index.
            self.reload();
            return;
        }
        if self.deferred && self.link.backlog() == 0 {
            // Older fragments go on a fresh connection, oldest first.
            self.reload();
        }
        if now.duration_since(self.last_catch_up) >= CATCH_UP_EVERY {
            self.last_catch_up = now;
            self.out.push_back(Output::CatchUp {
                cutting: self.intake.cutting(),
            });
        }
        self.out.push_back(Output::CountBacklog);
    }

    /// The clock changed: rows written before it was set get their times corrected, and
    /// the queue (which holds the old times) starts again from the index.
    fn on_clock(&mut self, now: Instant, state: ClockState) {
        let new: Vec<Correction> = state
            .corrections
            .iter()
            .skip(self.corrections_seen)
            .copied()
            .collect();
        self.corrections_seen = state.corrections.len();
        let synced = state.synced;
        self.clock = state;
        if !new.is_empty() {
            self.out.push_back(Output::CorrectTimes(new));
            self.reload();
        }
        if synced && self.waiting_for_clock {
            self.waiting_for_clock = false;
            self.out.push_back(Output::Notice(Notice::ClockSet));
            self.link.want_connection(now);
        }
    }

    /// The metadata written after a fragment's cluster: who wrote it, and the requests
    /// for images and a notification.
    fn tags(&self, rows: &[FragmentRow]) -> Vec<(&'static str, String)> {
        let mut tags = vec![("EDGECAM_WRITER", "edgecam".to_owned())];
        let first = rows.first();
        if let Some(clip) = first.and_then(|r| r.clip_id.as_deref()) {
            tags.push(("EDGECAM_CLIP", clip.to_owned()));
        }
        if self.settings.images {
            tags.push((images::IMAGE_TAG, String::new()));
        }
        let starts_clip = first.is_some_and(|r| r.clip_id.is_some() && r.first_frame == 0);
        if self.settings.notify && starts_clip {
            tags.push((images::NOTIFICATION_TAG, String::new()));
        }
        tags
    }
}

#[cfg(test)]
mod tests;
