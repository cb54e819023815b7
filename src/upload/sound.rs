//! Joining sound to the GOPs cut from a feed (pure). A GOP spans from its keyframe to
//! the next keyframe; its sound is every AAC frame that starts in that span (by the
//! millisecond, as MKV times them), so a fragment never holds a time at or past the
//! next fragment's start. Sound arrives a little after the picture, so a GOP waits
//! until a frame at or past its end has been heard, the sound ends, or it has waited
//! too long. The wait counts from when the GOP arrived, not from its capture time: a
//! clip's pre-roll arrives seconds after it was captured, its sound just behind it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::{AudioFormat, AudioFrame};
use crate::upload::gop::Gop;

/// How long a GOP waits for its sound (after it arrived) before it goes without the rest.
pub const SOUND_WAIT: Duration = Duration::from_secs(1);

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
    /// GOPs, where each ends (the next keyframe, ms; `None`: where the clip ends), and
    /// when each stops waiting for its sound.
    waiting: VecDeque<(Gop, Option<i64>, Instant)>,
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

    /// A GOP cut from the feed at `now`, ending at `until` (ms); returns the GOPs now
    /// complete.
    pub fn gop(&mut self, gop: Gop, until: Option<i64>, now: Instant) -> Vec<Gop> {
        self.waiting.push_back((gop, until, now + SOUND_WAIT));
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

    /// GOPs that arrived `SOUND_WAIT` or more before `now` go with what was heard (a
    /// microphone that stalled).
    pub fn expire(&mut self, now: Instant) -> Vec<Gop> {
        self.release(Some(now))
    }

    /// Whether GOPs are waiting.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn release(&mut self, now: Option<Instant>) -> Vec<Gop> {
        let mut out = Vec::new();
        while let Some((_, until, due)) = self.waiting.front() {
            let heard_past = match until {
                Some(end) => self.heard_until.is_some_and(|h| h >= *end),
                None => false,
            };
            let late = now.is_some_and(|now| now >= *due);
            if !(self.ended || heard_past || late) {
                break;
            }
            let Some((mut gop, until, _)) = self.waiting.pop_front() else {
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
        let now = Instant::now();
        assert!(
            j.gop(gop(0), Some(abs(1000)), now).is_empty(),
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
        assert!(j.gop(gop(1000), None, now).is_empty());
        j.audio(sound(1500));
        let last = j.end();
        assert_eq!(times(&last[0]), [1011, 1500]);
    }

    #[test]
    fn a_picture_only_clip_passes_at_once_and_stays_picture_only() {
        let mut j = SoundJoin::for_clip(None);
        let now = Instant::now();
        let done = j.gop(gop(0), Some(abs(1000)), now);
        assert_eq!(done.len(), 1);
        assert!(done[0].audio.is_empty() && done[0].sound.is_none());
        j.audio(sound(1000));
        let later = j.gop(gop(1000), Some(abs(2000)), now);
        assert!(later[0].sound.is_none(), "its layout never changes");
    }

    #[test]
    fn a_stalled_microphone_holds_a_gop_only_so_long() {
        let mut j = SoundJoin::for_clip(Some(format()));
        let t0 = Instant::now();
        j.audio(sound(100));
        j.gop(gop(0), Some(abs(1000)), t0);
        assert!(j.expire(t0 + Duration::from_millis(900)).is_empty());
        let done = j.expire(t0 + SOUND_WAIT);
        assert_eq!(times(&done[0]), [100]);
        assert!(!j.is_waiting());
    }

    #[test]
    fn a_pre_roll_gop_captured_long_ago_still_waits_for_its_sound() {
        // A clip opens with seconds of pre-roll: its GOPs arrive long after they were
        // captured, and their sound right behind them. Lateness counts from arrival.
        let mut j = SoundJoin::for_clip(Some(format()));
        let t0 = Instant::now();
        j.gop(gop(0), Some(abs(1000)), t0);
        j.gop(gop(1000), Some(abs(2000)), t0);
        assert!(j.expire(t0 + Duration::from_millis(10)).is_empty());
        for t in [5, 500, 1005, 1500, 2010] {
            j.audio(sound(t));
        }
        assert!(!j.is_waiting());
        let mut k = SoundJoin::for_clip(Some(format()));
        k.gop(gop(0), Some(abs(1000)), t0);
        for t in [5, 500] {
            k.audio(sound(t));
        }
        let done = k.expire(t0 + Duration::from_millis(10));
        assert!(done.is_empty(), "the pre-roll's sound is still arriving");
    }

    #[test]
    fn the_live_stream_learns_its_format_and_ignores_another() {
        let mut j = SoundJoin::live();
        j.audio(sound(0));
        let mut other = sound(20);
        other.format.channels = 2;
        j.audio(other);
        j.gop(gop(0), Some(abs(1000)), Instant::now());
        let done = j.audio(sound(1000));
        assert_eq!(times(&done[0]), [0], "the two-channel frame was not taken");
    }
}
