//! The event state machine: triggers open, extend and (through a stop) end events; the
//! tracker decides when clips start and end. Pure: time and ids are inputs, actions out.
//!
//! Timeline of one event: a trigger at `t` opens it and a clip from `t - pre_roll`; each
//! trigger moves `active_until` (the trigger time, or `t + duration` for a timed
//! recording); the clip ends `post_roll` after `active_until`. The event then lingers for
//! `min_gap`: a trigger in that window continues the same event in a new clip whose start
//! is clamped to the previous clip's end (no overlap, no gap when pre_roll ≥ min_gap).
//! A clip longer than `max_clip` is cut and continued in a new clip of the same event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type Time = DateTime<Utc>;

/// Where a trigger came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Motion,
    Http,
    Mqtt,
    DataChannel,
    Cli,
    /// An object the detector confirmed (a person, a car, …).
    Object,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Motion => "motion",
            Self::Http => "http",
            Self::Mqtt => "mqtt",
            Self::DataChannel => "data_channel",
            Self::Cli => "cli",
            Self::Object => "object",
        }
    }

    /// The inverse of `as_str`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Motion,
            Self::Http,
            Self::Mqtt,
            Self::DataChannel,
            Self::Cli,
            Self::Object,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Something that starts or extends an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub label: String,
    /// Motion score (percent of area), an object's score (0–1), 0 for commands.
    pub score: f32,
    /// For timed recordings: keep recording at least this long.
    pub duration: Option<Duration>,
    /// The zones it happened in (an object's), if any.
    pub zones: Vec<String>,
    /// When what led to it began (the first motion before an object was confirmed): a
    /// new event's clip starts `pre_roll` before this, not before the trigger.
    pub since: Option<Time>,
}

/// What the tracker is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Trigger(Trigger),
    /// `record stop`: end the open event now, without post-roll.
    Stop,
    /// Time passed; call at least by `poll_timeout()`.
    Tick,
    /// The wall clock stepped by this much: every time held moves with it, so an event
    /// lasts as long as it would have, and its times are on the new clock.
    ClockStepped(chrono::Duration),
}

/// An event as reported to the index, MQTT and the uploader.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventInfo {
    pub id: String,
    pub label: String,
    pub trigger: TriggerKind,
    /// Highest score seen.
    pub score: f32,
    pub started_at: Time,
    /// End of activity (last trigger, or end of a timed recording); set once ended.
    pub ended_at: Option<Time>,
    pub clip_ids: Vec<String>,
    /// The objects' labels seen in it, each with its best score.
    pub labels: BTreeMap<String, f32>,
    /// The zones they were seen in.
    pub zones: BTreeSet<String>,
}

/// What the task layer must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    EventStarted(EventInfo),
    EventUpdated(EventInfo),
    EventEnded(EventInfo),
    /// Open a clip with frames from the keyframe at or before `from`.
    StartClip {
        event_id: String,
        clip_id: String,
        from: Time,
    },
    /// Close a clip after its last frame captured at or before `until`.
    EndClip {
        clip_id: String,
        until: Time,
    },
}

/// `[events]` timing.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerSettings {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    pub max_clip: Duration,
    pub min_gap: Duration,
    /// At most one `EventUpdated` per this interval.
    pub update_interval: Duration,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            pre_roll: Duration::from_secs(5),
            post_roll: Duration::from_secs(10),
            max_clip: Duration::from_secs(300),
            min_gap: Duration::from_secs(5),
            update_interval: Duration::from_secs(5),
        }
    }
}

/// Makes ids; production uses ULIDs, tests a counter.
pub trait IdSource {
    fn next_id(&mut self, now: Time) -> String;
}

/// ULIDs: sortable by time, so clip files list in order. Randomness from `fastrand`.
#[derive(Debug, Default)]
pub struct UlidIds;

impl IdSource for UlidIds {
    fn next_id(&mut self, now: Time) -> String {
        let ms = now.timestamp_millis().max(0) as u64;
        ulid::Ulid::from_parts(ms, fastrand::u128(..))
            .to_string()
            .to_lowercase()
    }
}

#[derive(Debug)]
struct Open {
    info: EventInfo,
    active_until: Time,
    clip: Option<OpenClip>,
    /// Set while lingering after the clip closed: the event ends at this time.
    linger_until: Option<Time>,
    last_clip_end: Option<Time>,
    last_update: Time,
    dirty: bool,
}

#[derive(Debug)]
struct OpenClip {
    id: String,
    from: Time,
}

/// The tracker; one per camera.
pub struct Tracker<I> {
    settings: TrackerSettings,
    ids: I,
    open: Option<Open>,
}

/// Adds an object trigger's label (with its best score) and zones to the event: whether
/// anything was new.
fn note_object(info: &mut EventInfo, t: &Trigger) -> bool {
    if t.kind != TriggerKind::Object {
        return false;
    }
    let best = info.labels.entry(t.label.clone()).or_insert(0.0);
    let mut changed = t.score > *best;
    *best = best.max(t.score);
    for z in &t.zones {
        changed |= info.zones.insert(z.clone());
    }
    changed
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl<I: IdSource> Tracker<I> {
    pub fn new(settings: TrackerSettings, ids: I) -> Self {
        Self {
            settings,
            ids,
            open: None,
        }
    }

    /// The open event, if any.
    pub fn current(&self) -> Option<&EventInfo> {
        self.open.as_ref().map(|o| &o.info)
    }

    /// True while a clip is being recorded.
    pub fn recording(&self) -> bool {
        self.open.as_ref().is_some_and(|o| o.clip.is_some())
    }

    /// When the tracker next needs a `Tick`.
    pub fn poll_timeout(&self) -> Option<Time> {
        let o = self.open.as_ref()?;
        Some(match (&o.clip, o.linger_until) {
            (Some(clip), _) => {
                let end = o.active_until + dur(self.settings.post_roll);
                let cut = clip.from + dur(self.settings.max_clip);
                let update = if o.dirty {
                    o.last_update + dur(self.settings.update_interval)
                } else {
                    end
                };
                end.min(cut).min(update)
            }
            (None, Some(linger)) => linger,
            (None, None) => o.active_until,
        })
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Trigger(t) => self.trigger(now, t, &mut out),
            Input::Stop => self.stop(now, &mut out),
            Input::Tick => {}
            Input::ClockStepped(delta) => self.shift(delta, &mut out),
        }
        self.advance(now, &mut out);
        out
    }

    fn shift(&mut self, delta: chrono::Duration, out: &mut Vec<Action>) {
        let Some(o) = self.open.as_mut() else { return };
        let by = |t: &mut Time| *t += delta;
        by(&mut o.info.started_at);
        o.info.ended_at.as_mut().map(by);
        by(&mut o.active_until);
        by(&mut o.last_update);
        o.linger_until.as_mut().map(by);
        o.last_clip_end.as_mut().map(by);
        if let Some(c) = o.clip.as_mut() {
            by(&mut c.from);
        }
        out.push(Action::EventUpdated(o.info.clone()));
    }

    fn trigger(&mut self, now: Time, t: Trigger, out: &mut Vec<Action>) {
        let until = now + t.duration.map_or(chrono::Duration::zero(), dur);
        if let Some(o) = self.open.as_mut() {
            if note_object(&mut o.info, &t) {
                o.dirty = true;
            }
        }
        let Some(o) = self.open.as_mut() else {
            let id = self.ids.next_id(now);
            let info = EventInfo {
                id,
                label: t.label.clone(),
                trigger: t.kind,
                score: t.score,
                started_at: now,
                ended_at: None,
                clip_ids: Vec::new(),
                labels: Default::default(),
                zones: Default::default(),
            };
            let mut info = info;
            note_object(&mut info, &t);
            out.push(Action::EventStarted(info.clone()));
            self.open = Some(Open {
                info,
                active_until: until,
                clip: None,
                linger_until: None,
                last_clip_end: None,
                last_update: now,
                dirty: false,
            });
            let began = t.since.map_or(now, |s| s.min(now));
            self.start_clip(began - dur(self.settings.pre_roll), out);
            return;
        };
        o.active_until = o.active_until.max(until);
        if t.score > o.info.score {
            o.info.score = t.score;
        }
        if o.info.label.is_empty() && !t.label.is_empty() {
            o.info.label = t.label;
        }
        o.dirty = true;
        if o.clip.is_none() {
            // Lingering: continue the same event in a new clip.
            o.linger_until = None;
            let from = (now - dur(self.settings.pre_roll)).max(o.last_clip_end.unwrap_or(now));
            self.start_clip(from, out);
        }
    }

    fn stop(&mut self, now: Time, out: &mut Vec<Action>) {
        if let Some(o) = self.open.as_mut() {
            o.active_until = now;
            if let Some(clip) = o.clip.take() {
                o.info.ended_at = Some(now);
                out.push(Action::EndClip {
                    clip_id: clip.id,
                    until: now,
                });
            }
            self.end_event(now, out);
        }
    }

    fn start_clip(&mut self, from: Time, out: &mut Vec<Action>) {
        let Some(o) = self.open.as_mut() else { return };
        let clip_id = self.ids.next_id(from);
        o.info.clip_ids.push(clip_id.clone());
        out.push(Action::StartClip {
            event_id: o.info.id.clone(),
            clip_id: clip_id.clone(),
            from,
        });
        o.clip = Some(OpenClip { id: clip_id, from });
    }

    fn end_event(&mut self, now: Time, out: &mut Vec<Action>) {
        if let Some(mut o) = self.open.take() {
            o.info.ended_at = Some(o.info.ended_at.unwrap_or(o.active_until).min(now));
            out.push(Action::EventEnded(o.info));
        }
    }

    /// Applies every deadline that `now` has reached.
    fn advance(&mut self, now: Time, out: &mut Vec<Action>) {
        let s = self.settings.clone();
        let Some(o) = self.open.as_mut() else { return };
        if let Some(clip) = &o.clip {
            let end = o.active_until + dur(s.post_roll);
            let cut = clip.from + dur(s.max_clip);
            if now >= end {
                let Some(clip) = o.clip.take() else { return };
                out.push(Action::EndClip {
                    clip_id: clip.id,
                    until: end,
                });
                o.info.ended_at = Some(o.active_until);
                o.last_clip_end = Some(end);
                o.linger_until = Some(end + dur(s.min_gap));
            } else if now >= cut {
                let Some(clip) = o.clip.take() else { return };
                out.push(Action::EndClip {
                    clip_id: clip.id,
                    until: cut,
                });
                self.start_clip(cut, out);
                return self.advance(now, out);
            } else if o.dirty && now >= o.last_update + dur(s.update_interval) {
                o.dirty = false;
                o.last_update = now;
                out.push(Action::EventUpdated(o.info.clone()));
            }
        }
        let Some(o) = self.open.as_ref() else { return };
        if o.clip.is_none() && o.linger_until.is_some_and(|l| now >= l) {
            self.end_event(now, out);
        }
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
