//! Turns what the `encoded` appsink delivers into clean access units: a buffer holding
//! only parameter sets (some RTP depayloaders split SPS/PPS from their IDR) is joined to
//! the next picture, a missing PTS is inferred, and PTS always increases. Pure.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::media::h264;

/// Smallest step between two PTS when a source repeats or reverses one.
const PTS_STEP: Duration = Duration::from_micros(1);

/// One finished access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub data: Bytes,
    /// Running time of the picture.
    pub pts: Duration,
    /// Contains an IDR slice.
    pub keyframe: bool,
    /// The PTS had to be inferred or moved forward.
    pub pts_fixed: bool,
}

#[derive(Debug, Default)]
pub struct AuAssembler {
    held: Option<(Bytes, Option<Duration>)>,
    last_pts: Option<Duration>,
}

impl AuAssembler {
    /// Takes one buffer and its running time; returns a picture when one is complete.
    pub fn push(&mut self, data: Bytes, pts: Option<Duration>) -> Option<Assembled> {
        let summary = h264::summarize(&data);
        if summary.slices == 0 {
            // Parameter sets / SEI without a picture: keep them for the next picture.
            self.held = Some(match self.held.take() {
                Some((prev, prev_pts)) => (concat(&prev, &data), prev_pts.or(pts)),
                None => (data, pts),
            });
            return None;
        }
        let (data, held_pts) = match self.held.take() {
            Some((prefix, prefix_pts)) => (concat(&prefix, &data), prefix_pts),
            None => (data, None),
        };
        let keyframe = summary.has_idr;
        let wanted = pts.or(held_pts);
        let floor = self.last_pts.map(|p| p + PTS_STEP);
        let pts = match (wanted, floor) {
            (Some(p), Some(f)) => p.max(f),
            (Some(p), None) => p,
            (None, Some(f)) => f,
            (None, None) => Duration::ZERO,
        };
        self.last_pts = Some(pts);
        Some(Assembled {
            data,
            pts,
            keyframe,
            pts_fixed: wanted != Some(pts),
        })
    }
}

fn concat(a: &[u8], b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS_PPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce];
    const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88];
    const P: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a];

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn split_parameter_sets_join_their_idr() {
        let mut a = AuAssembler::default();
        assert_eq!(a.push(Bytes::from_static(SPS_PPS), ms(1000)), None);
        let au = a.push(Bytes::from_static(IDR), None).unwrap();
        assert_eq!(&au.data[..], [SPS_PPS, IDR].concat().as_slice());
        assert!(au.keyframe);
        assert_eq!(
            au.pts,
            Duration::from_millis(1000),
            "the IDR takes the held PTS"
        );
        assert!(!au.pts_fixed);
        let p = a.push(Bytes::from_static(P), ms(1066)).unwrap();
        assert!(!p.keyframe);
        assert_eq!(
            p.data,
            Bytes::from_static(P),
            "whole pictures pass through untouched"
        );
    }

    #[test]
    fn pts_never_goes_back() {
        let mut a = AuAssembler::default();
        a.push(Bytes::from_static(IDR), ms(100));
        let back = a.push(Bytes::from_static(P), ms(90)).unwrap();
        assert_eq!(back.pts, Duration::from_millis(100) + PTS_STEP);
        assert!(back.pts_fixed);
        let none = a.push(Bytes::from_static(P), None).unwrap();
        assert!(none.pts > back.pts && none.pts_fixed);
    }
}
