//! The continuous-mode buffer on disk: each GOP waiting for its PERSISTED ack is also a
//! file `<data_dir>/continuous/<fragment id>.gop`, so a restart or an outage longer than
//! memory holds loses nothing up to `upload.continuous_buffer_mb`; past that the oldest
//! GOPs go first. The file format is pure (`encode`/`decode`); the task does the I/O on
//! the blocking pool.
//!
//! ```text
//! "EDGOP1\0\0"  first_frame:u64
//! sound:u8 [rate:u32 channels:u32 config_len:u32 config]
//! frames:u32 { pts_ns:u64 captured_ms:i64 keyframe:u8 generation:u32 len:u32 data }
//! audio:u32  { pts_ns:u64 captured_ms:i64 duration_ns:u64 generation:u32 len:u32 data }
//! ```
//! (all big-endian). A file is written to a temporary name and renamed, so a kill leaves
//! whole files only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use chrono::{DateTime, Utc};

use crate::media::{AudioCodec, AudioFormat, AudioFrame, EncodedFrame};
use crate::upload::gop::Gop;

const MAGIC: &[u8; 8] = b"EDGOP1\0\0";
/// The directory under the data directory.
pub const DIR: &str = "continuous";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("not a GOP file")]
    Magic,
    #[error("the file ends early")]
    Short,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A GOP as file bytes.
pub fn encode(gop: &Gop) -> Vec<u8> {
    let size: usize = gop.frames.iter().map(|f| f.data.len() + 32).sum::<usize>()
        + gop.audio.iter().map(|a| a.data.len() + 40).sum::<usize>();
    let mut out = Vec::with_capacity(size + 64);
    out.put_slice(MAGIC);
    out.put_u64(gop.first_frame);
    match &gop.sound {
        Some(s) => {
            out.put_u8(1);
            out.put_u32(s.rate);
            out.put_u32(s.channels);
            out.put_u32(s.config.len() as u32);
            out.put_slice(&s.config);
        }
        None => out.put_u8(0),
    }
    out.put_u32(gop.frames.len() as u32);
    for f in &gop.frames {
        out.put_u64(nanos(f.pts));
        out.put_i64(f.captured_at.timestamp_millis());
        out.put_u8(u8::from(f.keyframe));
        out.put_u32(f.generation);
        out.put_u32(f.data.len() as u32);
        out.put_slice(&f.data);
    }
    out.put_u32(gop.audio.len() as u32);
    for a in &gop.audio {
        out.put_u64(nanos(a.pts));
        out.put_i64(a.captured_at.timestamp_millis());
        out.put_u64(nanos(a.duration));
        out.put_u32(a.generation);
        out.put_u32(a.data.len() as u32);
        out.put_slice(&a.data);
    }
    out
}

/// Reads what `encode` wrote.
pub fn decode(bytes: &[u8]) -> Result<Gop, RingError> {
    let mut b = Bytes::copy_from_slice(bytes);
    let need = |b: &Bytes, n: usize| {
        if b.remaining() < n {
            Err(RingError::Short)
        } else {
            Ok(())
        }
    };
    need(&b, 17)?;
    if &b.split_to(8)[..] != MAGIC {
        return Err(RingError::Magic);
    }
    let first_frame = b.get_u64();
    let sound = match b.get_u8() {
        0 => None,
        _ => {
            need(&b, 12)?;
            let (rate, channels, len) = (b.get_u32(), b.get_u32(), b.get_u32() as usize);
            need(&b, len)?;
            Some(AudioFormat {
                codec: AudioCodec::Aac,
                rate,
                channels,
                config: b.split_to(len),
            })
        }
    };
    need(&b, 4)?;
    let n = b.get_u32();
    let mut frames = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        need(&b, 25)?;
        let (pts, at, key, generation, len) = (
            b.get_u64(),
            b.get_i64(),
            b.get_u8() != 0,
            b.get_u32(),
            b.get_u32() as usize,
        );
        need(&b, len)?;
        frames.push(EncodedFrame {
            data: b.split_to(len),
            pts: Duration::from_nanos(pts),
            captured_at: time(at),
            keyframe: key,
            generation,
        });
    }
    need(&b, 4)?;
    let n = b.get_u32();
    let mut audio = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        need(&b, 32)?;
        let (pts, at, duration, generation, len) = (
            b.get_u64(),
            b.get_i64(),
            b.get_u64(),
            b.get_u32(),
            b.get_u32() as usize,
        );
        need(&b, len)?;
        let Some(format) = sound.clone() else {
            return Err(RingError::Magic);
        };
        audio.push(AudioFrame {
            data: b.split_to(len),
            pts: Duration::from_nanos(pts),
            captured_at: time(at),
            duration: Duration::from_nanos(duration),
            format,
            generation,
        });
    }
    Ok(Gop {
        first_frame,
        frames,
        audio,
        sound,
    })
}

/// The file of fragment `id`.
pub fn path(dir: &Path, id: i64) -> PathBuf {
    dir.join(format!("{id}.gop"))
}

/// Writes a GOP file whole (temporary name, data synced, rename). Blocking.
pub fn write(dir: &Path, id: i64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{id}.gop.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path(dir, id))
}

/// The GOP files in `dir` (id → bytes), temporary leftovers removed. Blocking.
pub fn scan(dir: &Path) -> BTreeMap<i64, u64> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let id = name
            .strip_suffix(".gop")
            .and_then(|n| n.parse::<i64>().ok());
        if let (Some(id), Ok(meta)) = (id, e.metadata()) {
            files.insert(id, meta.len());
        }
    }
    files
}

/// Which files to delete so that `files` fit in `max` bytes: the oldest first.
pub fn over(files: &BTreeMap<i64, u64>, max: u64) -> Vec<i64> {
    let mut total: u64 = files.values().sum();
    let mut out = Vec::new();
    for (id, size) in files {
        if total <= max {
            break;
        }
        total -= size;
        out.push(*id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gop(sound: bool) -> Gop {
        let format = AudioFormat {
            codec: AudioCodec::Aac,
            rate: 48_000,
            channels: 1,
            config: Bytes::from_static(&[0x11, 0x88]),
        };
        let at = time(1_796_083_200_000);
        Gop {
            first_frame: 42,
            frames: (0..3)
                .map(|i| EncodedFrame {
                    data: Bytes::from(vec![0, 0, 0, 1, if i == 0 { 0x65 } else { 0x41 }, i as u8]),
                    pts: Duration::from_millis(66 * i as u64),
                    captured_at: at + chrono::Duration::milliseconds(66 * i),
                    keyframe: i == 0,
                    generation: 2,
                })
                .collect(),
            audio: if sound {
                vec![AudioFrame {
                    data: Bytes::from_static(&[0x21, 0x10, 0x04]),
                    pts: Duration::from_millis(5),
                    captured_at: at,
                    duration: Duration::from_nanos(21_333_333),
                    format: format.clone(),
                    generation: 1,
                }]
            } else {
                Vec::new()
            },
            sound: sound.then_some(format),
        }
    }

    #[test]
    fn a_gop_round_trips_and_a_cut_file_is_refused() {
        for sound in [true, false] {
            let g = gop(sound);
            let bytes = encode(&g);
            let back = decode(&bytes).unwrap();
            assert_eq!(back.first_frame, 42);
            assert_eq!(back.frames, g.frames);
            assert_eq!(back.audio, g.audio);
            assert_eq!(back.sound, g.sound);
            for cut in [0, 8, 17, bytes.len() / 2, bytes.len() - 1] {
                assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut bad = encode(&gop(false));
        bad[0] = b'X';
        assert_eq!(decode(&bad).err(), Some(RingError::Magic));
    }

    #[test]
    fn the_oldest_files_go_when_the_ring_is_full() {
        let files = BTreeMap::from([(1, 400), (2, 400), (3, 400)]);
        assert_eq!(over(&files, 1_200), Vec::<i64>::new());
        assert_eq!(over(&files, 1_000), [1]);
        assert_eq!(over(&files, 300), [1, 2, 3]);
    }

    #[test]
    fn files_are_written_whole_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join(DIR);
        write(&d, 7, &encode(&gop(true))).unwrap();
        std::fs::write(d.join("8.gop.tmp"), b"torn").unwrap();
        let found = scan(&d);
        assert_eq!(found.keys().copied().collect::<Vec<_>>(), [7]);
        assert!(
            !d.join("8.gop.tmp").exists(),
            "a torn temporary file is removed"
        );
        let back = decode(&std::fs::read(path(&d, 7)).unwrap()).unwrap();
        assert_eq!(back.frames.len(), 3);
    }
}
