//! Joining sound to the GOPs cut from a feed (pure). A GOP spans from its keyframe to
//! the next keyframe; its sound is every AAC frame that starts in that span (by the
//! millisecond, as MKV times them), so a fragment never holds a time at or past the
//! next fragment's start. Sound arrives a little after the picture, so a GOP waits
//! until a frame at or past its end has been heard, the sound ends, or it is too late.

use std::collections::VecDeque;

use crate::media::{AudioFormat, AudioFrame};
use crate::upload::gop::Gop;

/// How long a GOP waits for its sound (after its end) before it goes without the rest.
pub const SOUND_WAIT_MS: i64 = 1000;

fn ms(frame: &AudioFrame) -> i64 {
    frame.captured_at.timestamp_millis()
}

/// One feed's GOPs waiting for their sound.
#[derive(Debug, Default)]
pub struct SoundJoin {
    /// The sound's format: `None` until some is heard (or for good, without sound).
    format: Option<AudioFormat>,
    heard: VecDeque<AudioFrame>,
    /// Start (ms) of the newest frame heard.
    heard_until: Option<i64>,
    ended: bool,
    /// GOPs and where each ends (the next keyframe, ms; `None`: where the clip ends).
    waiting: VecDeque<(Gop, Option<i64>)>,
}

impl SoundJoin {
    /// For a clip whose sound track has `format` (`None`: a picture-only clip, whose
    /// GOPs go at once).
    pub fn for_clip(format: Option<AudioFormat>) -> Self {
        Self {
            ended: format.is_none(),
            format,
            ..Self::default()
        }
    }

    /// For the live stream: the format is learnt from the frames heard.
    pub fn live() -> Self {
        Self::default()
    }

    /// A GOP cut from the feed, ending at `until` (ms); returns the GOPs now complete.
    pub fn gop(&mut self, gop: Gop, until: Option<i64>) -> Vec<Gop> {
        self.waiting.push_back((gop, until));
        self.release(None)
    }

    /// An AAC frame heard; returns the GOPs now complete.
    pub fn audio(&mut self, frame: AudioFrame) -> Vec<Gop> {
        if self.ended {
            return Vec::new(); // the clip's sound track is over (or it never had one)
        }
        match &self.format {
            // Another format cannot share the stream header; it is not taken.
            Some(f) if *f != frame.format => return Vec::new(),
            Some(_) => {}
            None => self.format = Some(frame.format.clone()),
        }
        self.heard_until = Some(ms(&frame));
        self.heard.push_back(frame);
        self.release(None)
    }

    /// No more sound comes: every waiting GOP goes with what was heard.
    pub fn end(&mut self) -> Vec<Gop> {
        self.ended = true;
        self.release(None)
    }

    /// GOPs whose end is more than `SOUND_WAIT_MS` before `now_ms` go with what was
    /// heard (a microphone that stalled).
    pub fn expire(&mut self, now_ms: i64) -> Vec<Gop> {
        self.release(Some(now_ms - SOUND_WAIT_MS))
    }

    /// Whether GOPs are waiting.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn release(&mut self, older_than: Option<i64>) -> Vec<Gop> {
        let mut out = Vec::new();
        while let Some((gop, until)) = self.waiting.front() {
            let heard_past = match until {
                Some(end) => self.heard_until.is_some_and(|h| h >= *end),
                None => false,
            };
            let late = match (until, older_than) {
                (Some(end), Some(limit)) => *end < limit,
                (None, Some(limit)) => gop.end_ms() < limit,
                _ => false,
            };
            if !(self.ended || heard_past || late) {
                break;
            }
            let Some((mut gop, until)) = self.waiting.pop_front() else {
                break;
            };
            let start = gop.start_ms();
            while self.heard.front().is_some_and(|f| ms(f) < start) {
                self.heard.pop_front();
            }
            while self
                .heard
                .front()
                .is_some_and(|f| until.is_none_or(|end| ms(f) < end))
            {
                gop.audio.extend(self.heard.pop_front());
            }
            gop.sound = self.format.clone();
            out.push(gop);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioCodec, EncodedFrame};
    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    /// Absolute ms of `ms` into the test.
    fn abs(ms: i64) -> i64 {
        1_000_000 + ms
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(abs(ms)).unwrap()
    }

    fn format() -> AudioFormat {
        AudioFormat {
            codec: AudioCodec::Aac,
            rate: 48_000,
            channels: 1,
            config: Bytes::from_static(&[0x11, 0x88]),
        }
    }

    fn sound(ms: i64) -> AudioFrame {
        AudioFrame {
            data: Bytes::from_static(&[1]),
            pts: Duration::from_millis(ms as u64),
            captured_at: at(ms),
            duration: Duration::from_millis(21),
            format: format(),
            generation: 1,
        }
    }

    /// A GOP of two frames from `start` ms, 500 ms apart.
    fn gop(start: i64) -> Gop {
        let frame = |ms: i64, keyframe| EncodedFrame {
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            pts: Duration::from_millis(ms as u64),
            captured_at: at(ms),
            keyframe,
            generation: 1,
        };
        Gop {
            first_frame: 0,
            frames: vec![frame(start, true), frame(start + 500, false)],
            audio: Vec::new(),
            sound: None,
        }
    }

    fn times(g: &Gop) -> Vec<i64> {
        g.audio
            .iter()
            .map(|f| f.captured_at.timestamp_millis() - 1_000_000)
            .collect()
    }

    #[test]
    fn a_gop_waits_for_the_sound_of_its_span_and_takes_no_more() {
        let mut j = SoundJoin::for_clip(Some(format()));
        for t in [-30, -9, 12, 990] {
            assert!(j.audio(sound(t)).is_empty());
        }
        assert!(
            j.gop(gop(0), Some(abs(1000))).is_empty(),
            "sound not past 1000 yet"
        );
        let done = j.audio(sound(1011));
        assert_eq!(done.len(), 1);
        assert_eq!(
            times(&done[0]),
            [12, 990],
            "from the keyframe, before the next"
        );
        assert_eq!(done[0].sound, Some(format()));
        // The clip ends: the last GOP takes the rest.
        assert!(j.gop(gop(1000), None).is_empty());
        j.audio(sound(1500));
        let last = j.end();
        assert_eq!(times(&last[0]), [1011, 1500]);
    }

    #[test]
    fn a_picture_only_clip_passes_at_once_and_stays_picture_only() {
        let mut j = SoundJoin::for_clip(None);
        let done = j.gop(gop(0), Some(abs(1000)));
        assert_eq!(done.len(), 1);
        assert!(done[0].audio.is_empty() && done[0].sound.is_none());
        j.audio(sound(1000));
        let later = j.gop(gop(1000), Some(abs(2000)));
        assert!(later[0].sound.is_none(), "its layout never changes");
    }

    #[test]
    fn a_stalled_microphone_holds_a_gop_only_so_long() {
        let mut j = SoundJoin::for_clip(Some(format()));
        j.audio(sound(100));
        j.gop(gop(0), Some(abs(1000)));
        assert!(j.expire(abs(1900)).is_empty());
        let done = j.expire(abs(2001));
        assert_eq!(times(&done[0]), [100]);
        assert!(!j.is_waiting());
    }

    #[test]
    fn the_live_stream_learns_its_format_and_ignores_another() {
        let mut j = SoundJoin::live();
        j.audio(sound(0));
        let mut other = sound(20);
        other.format.channels = 2;
        j.audio(other);
        j.gop(gop(0), Some(abs(1000)));
        let done = j.audio(sound(1000));
        assert_eq!(times(&done[0]), [0], "the two-channel frame was not taken");
    }
}
