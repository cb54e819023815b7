//! Cutting fragments from what arrives live: the recorder's per-clip feed (events
//! mode) or the camera's frames (continuous mode); each GOP waits for its sound, then
//! is recorded, cached and queued.

use super::*;

/// One clip being cut from the recorder's feed.
pub(super) struct ClipIntake {
    gops: GopAssembler,
    join: SoundJoin,
    /// When the feed last said something about it.
    pub(super) seen: Instant,
}

impl ClipIntake {
    fn new(sound: Option<AudioFormat>) -> Self {
        Self {
            gops: GopAssembler::for_clip(),
            join: SoundJoin::for_clip(sound),
            seen: Instant::now(),
        }
    }

    /// A clip whose start the feed did not bring: nothing is taken live (its file has
    /// everything, picture and sound).
    fn missed() -> Self {
        let mut c = Self::new(None);
        c.gops.push(1, keyless());
        c
    }
}

/// A frame that only serves to mark an assembler as having missed frames.
fn keyless() -> EncodedFrame {
    EncodedFrame {
        data: Bytes::new(),
        pts: Duration::ZERO,
        captured_at: Utc::now(),
        keyframe: false,
        generation: 0,
    }
}

impl Task {
    pub(super) async fn on_feed(&mut self, feed: Feed) {
        let (clip_id, done) = match feed {
            Feed::ClipStart { clip_id, sound } => {
                self.clips
                    .insert(Arc::clone(&clip_id), ClipIntake::new(sound));
                return;
            }
            Feed::Frame {
                clip_id,
                index,
                frame,
            } => {
                let entry = self
                    .clips
                    .entry(Arc::clone(&clip_id))
                    .or_insert_with(ClipIntake::missed);
                entry.seen = Instant::now();
                let was_broken = entry.gops.is_broken();
                let until = frame.captured_at.timestamp_millis();
                let done = match entry.gops.push(index, frame) {
                    Some(gop) => entry.join.gop(gop, Some(until), Instant::now()),
                    None => Vec::new(),
                };
                if entry.gops.is_broken() && !was_broken {
                    warn!(clip_id = %clip_id, "uploader fell behind the recorder; the clip's rest will be read from its file");
                }
                (clip_id, done)
            }
            Feed::Audio { clip_id, frame } => {
                let Some(entry) = self.clips.get_mut(&clip_id) else {
                    return;
                };
                entry.seen = Instant::now();
                let done = entry.join.audio(frame);
                (clip_id, done)
            }
            Feed::AudioEnd { clip_id } => {
                let Some(entry) = self.clips.get_mut(&clip_id) else {
                    return;
                };
                let done = entry.join.end();
                (clip_id, done)
            }
            Feed::ClipEnd { clip_id, frames } => {
                let Some(mut entry) = self.clips.remove(&clip_id) else {
                    return;
                };
                let mut done = match entry.gops.finish(frames) {
                    Some(gop) => entry.join.gop(gop, None, Instant::now()),
                    None => Vec::new(),
                };
                done.extend(entry.join.end());
                (clip_id, done)
            }
        };
        for gop in done {
            self.new_gop(Some(&clip_id), gop).await;
        }
    }

    /// GOPs that waited too long for their sound go with what was heard.
    pub(super) async fn expire_sound(&mut self) {
        let now = Instant::now();
        let mut done = Vec::new();
        for (clip_id, entry) in &mut self.clips {
            for gop in entry.join.expire(now) {
                done.push((Arc::clone(clip_id), gop));
            }
        }
        for (clip_id, gop) in done {
            self.new_gop(Some(&clip_id), gop).await;
        }
        for gop in self.live_join.expire(now) {
            self.new_gop(None, gop).await;
        }
    }

    pub(super) async fn on_live(&mut self, frame: EncodedFrame) {
        let lost = self.live.as_ref().map_or(0, Subscription::dropped);
        self.live_index += lost.saturating_sub(self.live_lost);
        self.live_lost = lost;
        let index = self.live_index;
        self.live_index += 1;
        let until = frame.captured_at.timestamp_millis();
        if let Some(gop) = self.live_gop.push(index, frame) {
            for gop in self.live_join.gop(gop, Some(until), Instant::now()) {
                self.new_gop(None, gop).await;
            }
        }
    }

    pub(super) async fn on_live_audio(&mut self, frame: AudioFrame) {
        for gop in self.live_join.audio(frame) {
            self.new_gop(None, gop).await;
        }
    }

    /// Records a fragment cut from the live feed and queues it.
    pub(super) async fn new_gop(&mut self, clip_id: Option<&str>, gop: Gop) {
        let (Some(first), Some(last)) = (gop.frames.first(), gop.frames.last()) else {
            return;
        };
        let new = NewFragment {
            clip_id,
            first_frame: gop.first_frame,
            frames: gop.frames.len() as u64,
            start_at: self.corrected(first.captured_at),
            end_at: self.corrected(last.captured_at),
        };
        let id = match self.deps.index.insert_fragment(&new).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "uploader: cannot record a fragment; it will be read from the clip later");
                return;
            }
        };
        if clip_id.is_none() {
            self.keep_on_disk(id, &gop).await;
        }
        self.cache.insert(id, gop);
        let row = FragmentRow {
            id,
            clip_id: clip_id.map(str::to_owned),
            first_frame: new.first_frame,
            frames: new.frames,
            start_at: new.start_at,
            end_at: new.end_at,
        };
        self.enqueue(vec![row], true).await;
    }
}
