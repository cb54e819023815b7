//! Frames of a fragment when they are no longer in memory: read back from the clip file,
//! and the fragments a clip's file still owes (its tail after the last fragment made
//! from the live feed, or all of it after a restart).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::index::FragmentRow;
use crate::media::fmp4::{self, Scan};
use crate::upload::mkv::{self, AudioTrackInfo, TrackInfo};

/// A frame ready for the MKV writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// Shared with the capture path when the frame comes from memory.
    pub annex_b: Bytes,
    pub time_ms: u64,
    pub keyframe: bool,
}

/// An AAC frame ready for the MKV writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAudio {
    pub data: Bytes,
    pub time_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("clip file {0} is gone")]
    Missing(PathBuf),
    #[error("{0}")]
    Read(#[from] fmp4::Fmp4Error),
    #[error("frames {first}..{end} are not in the file (it has {have})")]
    Short { first: u64, end: u64, have: usize },
    #[error("the clip has no H.264 parameter sets")]
    NoTrack,
}

/// The clip file at `rel` (or its `.part` twin: the writer renames it when finished).
pub fn clip_path(data_dir: &Path, rel: &str) -> Result<PathBuf, SourceError> {
    let path = data_dir.join(rel);
    if path.exists() {
        return Ok(path);
    }
    let twin = match rel.strip_suffix(".part") {
        Some(done) => data_dir.join(done),
        None => data_dir.join(format!("{rel}.part")),
    };
    if twin.exists() {
        Ok(twin)
    } else {
        Err(SourceError::Missing(path))
    }
}

/// The stream header's track, from the file's `avcC`.
pub fn track(scan: &Scan) -> Result<TrackInfo, SourceError> {
    let (sps, pps) = scan.parameter_sets.as_ref().ok_or(SourceError::NoTrack)?;
    Ok(TrackInfo {
        codec_private: mkv::avcc(sps, pps),
        width: scan.width,
        height: scan.height,
        audio: scan.audio.as_ref().map(|a| AudioTrackInfo {
            config: a.config.clone(),
            rate: a.rate,
            channels: a.channels,
        }),
    })
}

/// AVCC (4-byte lengths) back to Annex-B, so live and file frames take one path.
fn annex_b(avcc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(avcc.len() + 16);
    let mut rest = avcc;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(nal) = rest.get(4..4 + len) else {
            break;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &rest[4 + len..];
    }
    out
}

/// Milliseconds from the sample at `from` to the one at `to` (decode time).
fn ms_between(scan: &Scan, from: usize, to: usize) -> u64 {
    let (Some(a), Some(b)) = (scan.samples.get(from), scan.samples.get(to)) else {
        return 0;
    };
    let ticks = b.dts.saturating_sub(a.dts);
    ticks * 1000 / u64::from(scan.timescale.max(1))
}

/// The frames of `rows` (consecutive fragments of one clip) from the file, timed from
/// each row's recorded start.
pub fn read_frames(
    path: &Path,
    scan: &Scan,
    rows: &[FragmentRow],
) -> Result<Vec<OwnedFrame>, SourceError> {
    let mut file = std::fs::File::open(path).map_err(fmp4::Fmp4Error::from)?;
    let mut out = Vec::new();
    for row in rows {
        // A file cut by a crash may end inside the row's GOP: what is there still goes.
        let (first, end) = (
            row.first_frame,
            (row.first_frame + row.frames).min(scan.samples.len() as u64),
        );
        if first >= end {
            return Err(SourceError::Short {
                first,
                end: row.first_frame + row.frames,
                have: scan.samples.len(),
            });
        }
        let start_ms = row.start_at.timestamp_millis().max(0) as u64;
        let end_ms = row.end_at.timestamp_millis().max(0) as u64;
        for i in first as usize..end as usize {
            let s = &scan.samples[i];
            let data = fmp4::read_sample(&mut file, s)?;
            out.push(OwnedFrame {
                annex_b: Bytes::from(annex_b(&data)),
                time_ms: (start_ms + ms_between(scan, first as usize, i)).min(end_ms),
                keyframe: s.keyframe || i == first as usize,
            });
        }
    }
    Ok(out)
}

/// Milliseconds of a sample's decode time from the start of its track.
fn track_ms(s: &fmp4::SampleRef, first: &fmp4::SampleRef, timescale: u32) -> u64 {
    s.dts.saturating_sub(first.dts) * 1000 / u64::from(timescale.max(1))
}

/// The sound of `rows` (consecutive fragments of one clip) from the file: the AAC frames
/// that start from the first row's keyframe up to the keyframe after the last row (or
/// the end of the file), timed from the first row's recorded start. Both tracks of a
/// clip start at its first keyframe.
pub fn read_audio(
    path: &Path,
    scan: &Scan,
    rows: &[FragmentRow],
) -> Result<Vec<OwnedAudio>, SourceError> {
    let (Some(audio), Some(first_row), Some(last_row)) = (&scan.audio, rows.first(), rows.last())
    else {
        return Ok(Vec::new());
    };
    let (Some(v0), Some(a0)) = (scan.samples.first(), audio.samples.first()) else {
        return Ok(Vec::new());
    };
    let video_ms = |i: usize| scan.samples.get(i).map(|s| track_ms(s, v0, scan.timescale));
    let Some(from) = video_ms(first_row.first_frame as usize) else {
        return Ok(Vec::new());
    };
    let until = video_ms((last_row.first_frame + last_row.frames) as usize);
    let start_ms = first_row.start_at.timestamp_millis().max(0) as u64;
    let mut file = std::fs::File::open(path).map_err(fmp4::Fmp4Error::from)?;
    let mut out = Vec::new();
    for s in &audio.samples {
        let t = track_ms(s, a0, audio.timescale);
        if t < from || until.is_some_and(|u| t >= u) {
            continue;
        }
        out.push(OwnedAudio {
            data: Bytes::from(fmp4::read_sample(&mut file, s)?),
            time_ms: start_ms + (t - from),
        });
    }
    Ok(out)
}

/// A fragment the file still owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub first_frame: u64,
    pub frames: u64,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// The GOPs of the file from sample `covered` on (a partial GOP at `covered` is skipped
/// up to the next keyframe), timed from the clip's first frame at `clip_start`.
pub fn owed(scan: &Scan, covered: u64, clip_start: DateTime<Utc>) -> Vec<Owed> {
    let at = |i: usize| clip_start + chrono::Duration::milliseconds(ms_between(scan, 0, i) as i64);
    let n = scan.samples.len();
    let starts: Vec<usize> = (covered as usize..n)
        .filter(|&i| scan.samples[i].keyframe)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let end = starts.get(k + 1).copied().unwrap_or(n);
            Owed {
                first_frame: s as u64,
                frames: (end - s) as u64,
                start_at: at(s),
                end_at: at(end - 1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fmp4::SampleRef;

    fn scan(keyframes: &[bool]) -> Scan {
        Scan {
            valid_len: 0,
            file_len: 0,
            finished: true,
            timescale: 1000,
            width: 64,
            height: 48,
            fragments: 1,
            samples: keyframes
                .iter()
                .enumerate()
                .map(|(i, &keyframe)| SampleRef {
                    offset: 0,
                    size: 1,
                    dts: 5000 + i as u64 * 100,
                    duration: 100,
                    keyframe,
                })
                .collect(),
            parameter_sets: None,
            audio: None,
        }
    }

    #[test]
    fn the_file_owes_whole_gops_after_what_was_covered() {
        let s = scan(&[true, false, false, true, false, true, false, false]);
        let t0 = DateTime::<Utc>::from_timestamp_millis(1_000_000).unwrap();
        let all = owed(&s, 0, t0);
        assert_eq!(
            all.iter()
                .map(|o| (o.first_frame, o.frames))
                .collect::<Vec<_>>(),
            [(0, 3), (3, 2), (5, 3)]
        );
        assert_eq!(all[1].start_at.timestamp_millis(), 1_000_300);
        assert_eq!(all[1].end_at.timestamp_millis(), 1_000_400);
        // Covered up to 3: the rest. Covered mid-GOP (4): from the next keyframe.
        assert_eq!(owed(&s, 3, t0).len(), 2);
        assert_eq!(owed(&s, 4, t0)[0].first_frame, 5);
        assert!(owed(&s, 8, t0).is_empty());
    }

    #[test]
    fn avcc_frames_become_annex_b() {
        let avcc = [0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x06];
        assert_eq!(annex_b(&avcc), [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x06]);
        assert_eq!(annex_b(&[0, 0, 0, 9, 1]), Vec::<u8>::new(), "truncated");
    }
}
