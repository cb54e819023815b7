//! The pre-roll ring: the last few seconds of encoded frames, always starting on a
//! keyframe, so a clip can begin before its trigger. O(1) amortised per frame; bounded by
//! duration and bytes.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::media::{AudioFormat, AudioFrame, EncodedFrame};

#[derive(Debug)]
pub struct PreRoll {
    /// Keep frames back to the keyframe at or before `newest - keep`.
    keep: chrono::Duration,
    max_bytes: usize,
    frames: VecDeque<EncodedFrame>,
    /// Sequence numbers of the keyframes in `frames`, oldest first.
    keyframes: VecDeque<u64>,
    /// Sequence number of `frames[0]`.
    first_seq: u64,
    bytes: usize,
}

impl PreRoll {
    pub fn new(keep: Duration, max_bytes: usize) -> Self {
        Self {
            keep: chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX),
            max_bytes,
            frames: VecDeque::new(),
            keyframes: VecDeque::new(),
            first_seq: 0,
            bytes: 0,
        }
    }

    /// Adds the newest frame. Frames before the first keyframe are not kept: nothing could
    /// decode them.
    pub fn push(&mut self, frame: EncodedFrame) {
        if frame.keyframe {
            self.keyframes
                .push_back(self.first_seq + self.frames.len() as u64);
        } else if self.frames.is_empty() {
            return;
        }
        self.bytes += frame.data.len();
        let cutoff = frame.captured_at - self.keep;
        self.frames.push_back(frame);
        // Drop whole GOPs while the next keyframe is still old enough to start a clip.
        while self.keyframes.len() > 1 && self.at_seq(self.keyframes[1]).captured_at <= cutoff {
            self.drop_first_gop();
        }
        // A byte budget overrun also drops whole GOPs, but never the newest one.
        while self.keyframes.len() > 1 && self.bytes > self.max_bytes {
            self.drop_first_gop();
        }
    }

    fn at_seq(&self, seq: u64) -> &EncodedFrame {
        &self.frames[(seq - self.first_seq) as usize]
    }

    fn drop_first_gop(&mut self) {
        self.keyframes.pop_front();
        let next = self
            .keyframes
            .front()
            .copied()
            .unwrap_or(self.first_seq + self.frames.len() as u64);
        while self.first_seq < next {
            if let Some(f) = self.frames.pop_front() {
                self.bytes -= f.data.len();
            }
            self.first_seq += 1;
        }
    }

    /// Frames from the keyframe at or before `from` (or the oldest keyframe, if `from` is
    /// older than the ring) to the newest.
    pub fn since(&self, from: DateTime<Utc>) -> impl Iterator<Item = &EncodedFrame> {
        let start = self
            .keyframes
            .iter()
            .rev()
            .find(|&&seq| self.at_seq(seq).captured_at <= from)
            .or(self.keyframes.front())
            .map_or(self.frames.len(), |&seq| (seq - self.first_seq) as usize);
        self.frames.range(start..)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Time covered, oldest to newest frame.
    pub fn span(&self) -> Duration {
        match (self.frames.front(), self.frames.back()) {
            (Some(a), Some(b)) => (b.captured_at - a.captured_at).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }

    /// Capture time of the oldest frame kept.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.frames.front().map(|f| f.captured_at)
    }

    /// Capture time of the newest frame.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.frames.back().map(|f| f.captured_at)
    }
}

/// The sound beside the pre-roll: AAC frames back to the oldest video frame the ring
/// keeps (trimmed by the recorder), and never older than `max_age` behind the newest
/// (when the picture stops, sound does not pile up).
#[derive(Debug)]
pub struct AudioRing {
    max_age: chrono::Duration,
    frames: VecDeque<AudioFrame>,
    bytes: usize,
}

impl AudioRing {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age: chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX),
            frames: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn push(&mut self, frame: AudioFrame) {
        let cutoff = frame.captured_at - self.max_age;
        self.bytes += frame.data.len();
        self.frames.push_back(frame);
        self.trim_before(cutoff);
    }

    /// Drops frames captured before `t`.
    pub fn trim_before(&mut self, t: DateTime<Utc>) {
        while self.frames.front().is_some_and(|f| f.captured_at < t) {
            if let Some(f) = self.frames.pop_front() {
                self.bytes -= f.data.len();
            }
        }
    }

    /// Frames captured at or after `t`.
    pub fn since(&self, t: DateTime<Utc>) -> impl Iterator<Item = &AudioFrame> {
        let start = self.frames.partition_point(|f| f.captured_at < t);
        self.frames.range(start..)
    }

    /// The format of the newest frame, if it was captured at or after `t` (sound that
    /// stopped before then is not offered to a new clip).
    pub fn format_since(&self, t: DateTime<Utc>) -> Option<&AudioFormat> {
        self.frames
            .back()
            .filter(|f| f.captured_at >= t)
            .map(|f| &f.format)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The next audio frame, or never when there is no sound.
pub(super) async fn next_audio(
    audio: &mut Option<crate::media::Subscription<AudioFrame>>,
) -> Option<AudioFrame> {
    match audio {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::TimeZone;

    /// Frame `n` of a 10 fps stream with a keyframe every 10 frames (1 s GOP), 100 bytes.
    fn frame(n: u64) -> EncodedFrame {
        EncodedFrame {
            data: Bytes::from(vec![0u8; 100]),
            pts: Duration::from_millis(n * 100),
            captured_at: at(n),
            keyframe: n.is_multiple_of(10),
            generation: 1,
        }
    }

    fn at(n: u64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
            + chrono::Duration::milliseconds(n as i64 * 100)
    }

    fn pts(ring: &PreRoll, from: DateTime<Utc>) -> Vec<u64> {
        ring.since(from)
            .map(|f| f.pts.as_millis() as u64 / 100)
            .collect()
    }

    #[test]
    fn keeps_back_to_the_keyframe_at_or_before_the_pre_roll() {
        let mut ring = PreRoll::new(Duration::from_millis(2500), usize::MAX);
        for n in 0..=57 {
            ring.push(frame(n));
        }
        // Newest 57 → cutoff 32 → keyframe 30 is the oldest kept.
        assert_eq!(
            ring.since(at(0)).next().unwrap().pts,
            Duration::from_millis(3000)
        );
        assert_eq!(ring.len(), 28);
        assert_eq!(ring.bytes(), 2800);
        // A clip from 45 starts at keyframe 40; from exactly 50 starts at 50.
        assert_eq!(pts(&ring, at(45))[0], 40);
        assert_eq!(pts(&ring, at(50)), (50..=57).collect::<Vec<_>>());
        assert_eq!(ring.span(), Duration::from_millis(2700));
    }

    #[test]
    fn frames_before_the_first_keyframe_are_skipped() {
        let mut ring = PreRoll::new(Duration::from_secs(5), usize::MAX);
        for n in 5..12 {
            ring.push(frame(n));
        }
        assert_eq!(pts(&ring, at(0)), [10, 11]);
    }

    #[test]
    fn byte_budget_drops_old_gops_but_keeps_the_newest() {
        let mut ring = PreRoll::new(Duration::from_secs(60), 1500);
        for n in 0..35 {
            ring.push(frame(n));
        }
        // 3500 bytes pushed; the GOPs from 20 and 30 (1500 bytes) are exactly the budget.
        assert_eq!(pts(&ring, at(0))[0], 20);
        let mut tiny = PreRoll::new(Duration::from_secs(60), 10);
        for n in 0..15 {
            tiny.push(frame(n));
        }
        assert_eq!(
            pts(&tiny, at(0))[0],
            10,
            "the newest GOP stays even over budget"
        );
    }

    fn sound(n: u64) -> AudioFrame {
        AudioFrame {
            data: Bytes::from(vec![0u8; 10]),
            pts: Duration::from_millis(n * 100),
            captured_at: at(n),
            duration: Duration::from_millis(100),
            format: AudioFormat {
                codec: crate::media::AudioCodec::Aac,
                rate: 48_000,
                channels: 1,
                config: Bytes::from_static(&[0x11, 0x88]),
            },
            generation: 1,
        }
    }

    #[test]
    fn sound_is_kept_beside_the_picture_and_never_beyond_its_age() {
        let mut ring = AudioRing::new(Duration::from_secs(2));
        for n in 0..30 {
            ring.push(sound(n));
        }
        // Newest 29 → frames from 9 on (2 s at 10 frames a second).
        assert_eq!(ring.len(), 21);
        assert_eq!(ring.bytes(), 210);
        ring.trim_before(at(25));
        assert_eq!(ring.since(at(0)).count(), 5);
        assert_eq!(ring.since(at(27)).next().unwrap().captured_at, at(27));
        assert!(ring.format_since(at(29)).is_some());
        assert!(
            ring.format_since(at(30)).is_none(),
            "sound that stopped is not offered"
        );
    }

    #[test]
    fn empty_ring_yields_nothing() {
        let ring = PreRoll::new(Duration::from_secs(5), usize::MAX);
        assert!(ring.is_empty());
        assert_eq!(ring.since(at(0)).count(), 0);
        assert_eq!(ring.span(), Duration::ZERO);
    }
}
