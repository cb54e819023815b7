//! Cutting fragments from what arrives live, pure: the recorder's per-clip feed (events
//! mode) or the camera's frames (continuous mode), one GOP a fragment, each held until
//! the sound of its span arrived (or waited long enough). Time is an input.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::DateTime;
use tracing::warn;

use crate::media::{AudioFormat, AudioFrame, EncodedFrame};
use crate::recorder::Feed;
use crate::upload::gop::{Gop, GopAssembler};
use crate::upload::sound::SoundJoin;

/// A clip whose feed went quiet this long without an end is finished from its file.
pub const FEED_IDLE: Duration = Duration::from_secs(10);

/// One clip being cut from the recorder's feed.
struct ClipIntake {
    gops: GopAssembler,
    join: SoundJoin,
    /// When the feed last said something about it.
    seen: Instant,
}

impl ClipIntake {
    fn new(sound: Option<AudioFormat>, now: Instant) -> Self {
        Self {
            gops: GopAssembler::for_clip(),
            join: SoundJoin::for_clip(sound),
            seen: now,
        }
    }

    /// A clip whose start the feed did not bring: nothing is taken live (its file has
    /// everything, picture and sound).
    fn missed(now: Instant) -> Self {
        let mut c = Self::new(None, now);
        c.gops.push(1, keyless());
        c
    }
}

/// A frame that only serves to mark an assembler as having missed frames.
fn keyless() -> EncodedFrame {
    EncodedFrame {
        data: Bytes::new(),
        pts: Duration::ZERO,
        captured_at: DateTime::default(),
        keyframe: false,
        generation: 0,
    }
}

/// GOPs completed, each with the clip it belongs to (`None`: the live stream).
pub type Cut = Vec<(Option<Arc<str>>, Gop)>;

/// Everything being cut.
pub struct Intake {
    clips: HashMap<Arc<str>, ClipIntake>,
    live_gops: GopAssembler,
    live_join: SoundJoin,
    /// Index of the next live frame, counting those the subscription lost.
    live_index: u64,
    /// Frames the live subscription had lost when last told.
    live_lost: u64,
}

impl Intake {
    /// `live_sound`: the live stream's GOPs wait for the camera's sound (continuous mode
    /// with audio).
    pub fn new(live_sound: bool) -> Self {
        Self {
            clips: HashMap::new(),
            live_gops: GopAssembler::resynchronising(),
            live_join: match live_sound {
                true => SoundJoin::live(),
                false => SoundJoin::for_clip(None),
            },
            live_index: 0,
            live_lost: 0,
        }
    }

    /// The clips whose live feed is still being cut (their files are not read meanwhile).
    pub fn cutting(&self) -> Vec<Arc<str>> {
        self.clips.keys().cloned().collect()
    }

    /// A message of the recorder's feed, at `now`.
    pub fn feed(&mut self, feed: Feed, now: Instant) -> Cut {
        let (clip_id, done) = match feed {
            Feed::ClipStart { clip_id, sound } => {
                self.clips
                    .insert(Arc::clone(&clip_id), ClipIntake::new(sound, now));
                return Vec::new();
            }
            Feed::Frame {
                clip_id,
                index,
                frame,
            } => {
                let entry = self
                    .clips
                    .entry(Arc::clone(&clip_id))
                    .or_insert_with(|| ClipIntake::missed(now));
                entry.seen = now;
                let was_broken = entry.gops.is_broken();
                let until = frame.captured_at.timestamp_millis();
                let done = match entry.gops.push(index, frame) {
                    Some(gop) => entry.join.gop(gop, Some(until), now),
                    None => Vec::new(),
                };
                if entry.gops.is_broken() && !was_broken {
                    warn!(clip_id = %clip_id, "uploader fell behind the recorder; the clip's rest will be read from its file");
                }
                (clip_id, done)
            }
            Feed::Audio { clip_id, frame } => {
                let Some(entry) = self.clips.get_mut(&clip_id) else {
                    return Vec::new();
                };
                entry.seen = now;
                let done = entry.join.audio(frame);
                (clip_id, done)
            }
            Feed::AudioEnd { clip_id } => {
                let Some(entry) = self.clips.get_mut(&clip_id) else {
                    return Vec::new();
                };
                let done = entry.join.end();
                (clip_id, done)
            }
            Feed::ClipEnd { clip_id, frames } => {
                let Some(mut entry) = self.clips.remove(&clip_id) else {
                    return Vec::new();
                };
                let mut done = match entry.gops.finish(frames) {
                    Some(gop) => entry.join.gop(gop, None, now),
                    None => Vec::new(),
                };
                done.extend(entry.join.end());
                (clip_id, done)
            }
        };
        done.into_iter()
            .map(|gop| (Some(Arc::clone(&clip_id)), gop))
            .collect()
    }

    /// A frame of the live stream at `now`; `lost` is how many its subscription has
    /// lost so far (a jump means a gap, and the next GOP starts at a keyframe).
    pub fn live(&mut self, frame: EncodedFrame, lost: u64, now: Instant) -> Cut {
        self.live_index += lost.saturating_sub(self.live_lost);
        self.live_lost = lost;
        let index = self.live_index;
        self.live_index += 1;
        let until = frame.captured_at.timestamp_millis();
        let Some(gop) = self.live_gops.push(index, frame) else {
            return Vec::new();
        };
        self.live_join
            .gop(gop, Some(until), now)
            .into_iter()
            .map(|gop| (None, gop))
            .collect()
    }

    /// A sound frame of the live stream.
    pub fn live_audio(&mut self, frame: AudioFrame) -> Cut {
        self.live_join
            .audio(frame)
            .into_iter()
            .map(|gop| (None, gop))
            .collect()
    }

    /// Clips whose feed went quiet are left to their files; GOPs that waited too long
    /// for their sound go with what was heard.
    pub fn expire(&mut self, now: Instant) -> Cut {
        self.clips
            .retain(|_, c| now.duration_since(c.seen) < FEED_IDLE);
        let mut done = Vec::new();
        for (clip_id, entry) in &mut self.clips {
            for gop in entry.join.expire(now) {
                done.push((Some(Arc::clone(clip_id)), gop));
            }
        }
        done.extend(self.live_join.expire(now).into_iter().map(|g| (None, g)));
        done
    }
}
