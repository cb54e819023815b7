//! Cutting a clip's frames into fragments, one GOP each (pure): a fragment is complete
//! when the next keyframe arrives or the clip ends. A gap in the frame numbers means the
//! uploader missed frames; the clip is then finished from its file instead.

use crate::media::{AudioFormat, AudioFrame, EncodedFrame};

/// One GOP: a keyframe and the frames up to the next one, and the sound of that span
/// (joined by `upload::sound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gop {
    /// Index of the first frame in the clip (its sample number in the file).
    pub first_frame: u64,
    pub frames: Vec<EncodedFrame>,
    pub audio: Vec<AudioFrame>,
    /// The sound track's format (`None`: picture only).
    pub sound: Option<AudioFormat>,
}

impl Gop {
    pub fn start_ms(&self) -> i64 {
        self.frames
            .first()
            .map_or(0, |f| f.captured_at.timestamp_millis())
    }

    pub fn end_ms(&self) -> i64 {
        self.frames
            .last()
            .map_or(0, |f| f.captured_at.timestamp_millis())
    }
}

/// The GOP being built for one clip.
#[derive(Debug, Default)]
pub struct GopAssembler {
    current: Option<Gop>,
    next_index: u64,
    /// Frames were missed: nothing more is taken from the live feed for this clip.
    broken: bool,
    /// Resynchronise at the next keyframe after a gap instead of giving up (continuous
    /// mode: there is no file to catch up from).
    resync: bool,
}

impl GopAssembler {
    /// For a clip: a gap ends the live feed (the file has the rest).
    pub fn for_clip() -> Self {
        Self::default()
    }

    /// For the live stream: a gap drops the GOP in progress, and the next keyframe starts
    /// a new one.
    pub fn resynchronising() -> Self {
        Self {
            resync: true,
            ..Self::default()
        }
    }

    /// Frames were missed (`true` until the end for a clip).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Adds frame number `index`; returns the GOP it completed, if any.
    pub fn push(&mut self, index: u64, frame: EncodedFrame) -> Option<Gop> {
        if self.broken && !self.resync {
            return None;
        }
        if index != self.next_index {
            // Missed frames: the GOP in progress cannot be completed from memory.
            self.current = None;
            self.broken = true;
            if !self.resync {
                return None;
            }
        }
        self.next_index = index + 1;
        if frame.keyframe {
            self.broken = false;
            let done = self.current.take();
            self.current = Some(Gop {
                first_frame: index,
                frames: vec![frame],
                audio: Vec::new(),
                sound: None,
            });
            return done;
        }
        match &mut self.current {
            Some(gop) => gop.frames.push(frame),
            None => self.broken = true, // no keyframe yet: undecodable, wait for one
        }
        None
    }

    /// The clip ended with `total` frames: the last GOP is complete if none is missing.
    pub fn finish(&mut self, total: u64) -> Option<Gop> {
        let gop = self.current.take()?;
        (self.next_index == total && !self.broken).then_some(gop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::{DateTime, Utc};
    use std::time::Duration;

    fn frame(i: u64, keyframe: bool) -> EncodedFrame {
        EncodedFrame {
            data: Bytes::from(vec![i as u8; 10]),
            pts: Duration::from_millis(i * 100),
            captured_at: DateTime::<Utc>::from_timestamp_millis(1_000_000 + i as i64 * 100)
                .unwrap(),
            keyframe,
            generation: 0,
        }
    }

    /// Frames 0..n with a keyframe every `gop` frames.
    fn feed(a: &mut GopAssembler, range: std::ops::Range<u64>, gop: u64) -> Vec<Gop> {
        range
            .filter_map(|i| a.push(i, frame(i, i % gop == 0)))
            .collect()
    }

    #[test]
    fn a_gop_is_complete_when_the_next_keyframe_comes_or_the_clip_ends() {
        let mut a = GopAssembler::for_clip();
        let done = feed(&mut a, 0..10, 4);
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].first_frame, 0);
        assert_eq!(done[0].frames.len(), 4);
        assert_eq!(done[1].first_frame, 4);
        assert_eq!(
            (done[1].start_ms(), done[1].end_ms()),
            (1_000_400, 1_000_700)
        );
        let last = a.finish(10).unwrap();
        assert_eq!((last.first_frame, last.frames.len()), (8, 2));
        assert!(a.finish(10).is_none());
        // The clip had 11 frames: the last one never came, the GOP is not complete.
        let mut b = GopAssembler::for_clip();
        feed(&mut b, 0..10, 4);
        assert!(b.finish(11).is_none(), "the file has the rest");
    }

    #[test]
    fn a_gap_in_a_clip_stops_the_live_feed_for_good() {
        let mut a = GopAssembler::for_clip();
        assert_eq!(feed(&mut a, 0..6, 4).len(), 1);
        // Frame 6 was missed: the GOP at 4 is incomplete, and nothing more is taken.
        assert!(a.push(7, frame(7, false)).is_none());
        assert!(a.is_broken());
        assert!(feed(&mut a, 8..20, 4).is_empty());
        assert!(a.finish(20).is_none(), "the rest comes from the file");
    }

    #[test]
    fn the_live_stream_resynchronises_at_the_next_keyframe() {
        let mut a = GopAssembler::resynchronising();
        assert_eq!(feed(&mut a, 0..6, 4).len(), 1);
        assert!(a.push(7, frame(7, false)).is_none());
        let after = feed(&mut a, 8..13, 4);
        assert_eq!(after.len(), 1, "the GOP from 8 completes at 12");
        assert_eq!(after[0].first_frame, 8);
    }

    #[test]
    fn frames_before_the_first_keyframe_are_not_a_fragment() {
        let mut a = GopAssembler::resynchronising();
        assert!(a.push(0, frame(0, false)).is_none());
        assert!(feed(&mut a, 1..4, 2).is_empty());
        assert_eq!(a.finish(4).unwrap().first_frame, 2);
    }
}
