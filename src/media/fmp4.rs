//! Reading edgecam's fragmented MP4 clips (`ftyp moov [moof mdat]… mfra`): finding the
//! last complete fragment after a crash, and listing samples for export or upload. A
//! clip has an H.264 track and may have an AAC track; each `moof` holds fragments of
//! either or both (`mp4mux` writes one per track), told apart by track id.
//!
//! Box bodies are decoded with `mp4-atom`; the walk over top-level boxes is ours, because
//! it must stop cleanly at a torn box. (The `mp4` crate 0.14 reads fragment sample data
//! from the wrong offset and skips one-sample fragments, so it is not used.)

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use mp4_atom::{Decode, Moof, Moov};

#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    #[error("cannot read clip: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an edgecam clip: {0}")]
    Format(String),
}

/// One sample (an access unit, AVCC length-prefixed) located in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    pub offset: u64,
    pub size: u32,
    /// Decode time in track timescale units, from the first fragment's `tfdt`.
    pub dts: u64,
    pub duration: u32,
    pub keyframe: bool,
}

/// What a clip file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Bytes up to the end of the last complete fragment (or the whole file when it was
    /// finished cleanly).
    pub valid_len: u64,
    pub file_len: u64,
    /// An `mfra` follows the fragments: the writer finished the file.
    pub finished: bool,
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    pub fragments: u64,
    pub samples: Vec<SampleRef>,
    /// The first SPS and PPS of the track's `avcC` (samples may not carry them in-band).
    pub parameter_sets: Option<(Vec<u8>, Vec<u8>)>,
    /// The sound track, when the clip has one.
    pub audio: Option<AudioTrack>,
}

/// A clip's AAC track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    pub timescale: u32,
    pub rate: u32,
    pub channels: u32,
    /// The AudioSpecificConfig from the track's `esds` (MKV CodecPrivate).
    pub config: Vec<u8>,
    /// Raw AAC frames, one per sample.
    pub samples: Vec<SampleRef>,
}

impl AudioTrack {
    /// Time from the first sample's start to the last sample's end.
    pub fn duration(&self) -> Duration {
        span(&self.samples, self.timescale)
    }

    /// Where the first sample starts, from the start of the clip's timeline.
    pub fn start(&self) -> Duration {
        first_start(&self.samples, self.timescale)
    }
}

fn ticks(n: u64, timescale: u32) -> Duration {
    if timescale == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((u128::from(n) * 1_000_000_000 / u128::from(timescale)) as u64)
}

fn first_start(samples: &[SampleRef], timescale: u32) -> Duration {
    samples
        .first()
        .map_or(Duration::ZERO, |s| ticks(s.dts, timescale))
}

fn span(samples: &[SampleRef], timescale: u32) -> Duration {
    match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => ticks(
            (b.dts + u64::from(b.duration)).saturating_sub(a.dts),
            timescale,
        ),
        _ => Duration::ZERO,
    }
}

impl Scan {
    /// Time from the first sample's start to the last sample's end.
    pub fn duration(&self) -> Duration {
        span(&self.samples, self.timescale)
    }

    /// Where the first video sample starts, from the start of the clip's timeline.
    pub fn start(&self) -> Duration {
        first_start(&self.samples, self.timescale)
    }

    pub fn keyframes(&self) -> usize {
        self.samples.iter().filter(|s| s.keyframe).count()
    }
}

/// A top-level box header: kind, where its body starts, where it ends.
struct BoxHead {
    kind: [u8; 4],
    start: u64,
    end: u64,
}

/// Reads the header at `pos`; `None` when the file ends inside it or it is malformed.
fn read_head(f: &mut File, pos: u64, file_len: u64) -> Result<Option<BoxHead>, Fmp4Error> {
    if pos + 8 > file_len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(pos))?;
    let mut h = [0u8; 16];
    f.read_exact(&mut h[..8])?;
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let kind = [h[4], h[5], h[6], h[7]];
    let size = match size32 {
        0 => return Ok(None), // "to end of file": only a writer that died leaves this
        1 => {
            if pos + 16 > file_len {
                return Ok(None);
            }
            f.read_exact(&mut h[8..16])?;
            let mut large = [0u8; 8];
            large.copy_from_slice(&h[8..16]);
            u64::from_be_bytes(large)
        }
        n => u64::from(n),
    };
    if size < 8 {
        return Ok(None);
    }
    Ok(Some(BoxHead {
        kind,
        start: pos,
        end: pos.saturating_add(size),
    }))
}

fn read_box(f: &mut File, head: &BoxHead) -> Result<Vec<u8>, Fmp4Error> {
    let len = usize::try_from(head.end - head.start)
        .map_err(|_| Fmp4Error::Format("box too large".into()))?;
    if len > 64 << 20 {
        return Err(Fmp4Error::Format(format!(
            "{} box of {len} bytes",
            String::from_utf8_lossy(&head.kind)
        )));
    }
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(head.start))?;
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// Walks the file and returns what it holds up to the last complete fragment.
pub fn scan(path: &Path) -> Result<Scan, Fmp4Error> {
    let mut f = File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut out = Scan {
        valid_len: 0,
        file_len,
        finished: false,
        timescale: 0,
        width: 0,
        height: 0,
        fragments: 0,
        samples: Vec::new(),
        parameter_sets: None,
        audio: None,
    };
    let mut ids = TrackIds::default();
    let mut have_moov = false;
    while let Some(head) = read_head(&mut f, pos, file_len)? {
        if head.end > file_len {
            break; // torn box
        }
        match &head.kind {
            b"ftyp" | b"free" | b"skip" => {}
            b"moov" => {
                let moov = Moov::decode(&mut read_box(&mut f, &head)?.as_slice())
                    .map_err(|e| Fmp4Error::Format(format!("moov: {e}")))?;
                ids = tracks(&moov, &mut out)?;
                have_moov = true;
            }
            b"moof" if have_moov => {
                let Some(mdat) = read_head(&mut f, head.end, file_len)? else {
                    break;
                };
                if &mdat.kind != b"mdat" || mdat.end > file_len {
                    break;
                }
                let moof = match Moof::decode(&mut read_box(&mut f, &head)?.as_slice()) {
                    Ok(m) => m,
                    Err(_) => break,
                };
                if !add_fragment(&mut out, &ids, &moof, &head, &mdat) {
                    break;
                }
                out.fragments += 1;
                pos = mdat.end;
                out.valid_len = pos;
                continue;
            }
            b"mfra" => out.finished = true,
            _ => break,
        }
        pos = head.end;
        if have_moov && out.fragments == 0 {
            out.valid_len = pos;
        }
        if out.finished {
            out.valid_len = pos;
            break;
        }
    }
    if !have_moov {
        return Err(Fmp4Error::Format(
            "no moov box: the clip has no header".into(),
        ));
    }
    Ok(out)
}

/// AAC's sampling frequency index (ISO/IEC 14496-3, 1.6.3.4).
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The track ids of the video and audio tracks.
#[derive(Debug, Default)]
struct TrackIds {
    video: u32,
    audio: Option<u32>,
}

/// Fills the tracks' descriptions from the `moov`: the H.264 track (required) and an AAC
/// track (optional; other tracks are ignored).
fn tracks(moov: &Moov, out: &mut Scan) -> Result<TrackIds, Fmp4Error> {
    let mut ids = TrackIds::default();
    let mut video = false;
    for trak in &moov.trak {
        let codecs = &trak.mdia.minf.stbl.stsd.codecs;
        if let Some(sets) = parameter_sets(trak) {
            if video {
                continue;
            }
            video = true;
            ids.video = trak.tkhd.track_id;
            out.timescale = trak.mdia.mdhd.timescale;
            out.width = u32::from(trak.tkhd.width.integer());
            out.height = u32::from(trak.tkhd.height.integer());
            out.parameter_sets = Some(sets);
        } else if let Some(mp4a) = codecs.iter().find_map(|c| match c {
            mp4_atom::Codec::Mp4a(a) => Some(a),
            _ => None,
        }) {
            if ids.audio.is_some() {
                continue;
            }
            let specific = mp4a.esds.es_desc.dec_config.dec_specific.as_ref();
            let timescale = trak.mdia.mdhd.timescale;
            ids.audio = Some(trak.tkhd.track_id);
            out.audio = Some(AudioTrack {
                timescale,
                // The MP4 sample entry holds the rate in 16 bits; the AAC config does not.
                rate: specific
                    .and_then(|d| AAC_RATES.get(usize::from(d.freq_index)).copied())
                    .unwrap_or(timescale),
                config: specific.map(|d| d.raw.clone()).unwrap_or_default(),
                channels: u32::from(mp4a.audio.channel_count),
                samples: Vec::new(),
            });
        }
    }
    if !video {
        return Err(Fmp4Error::Format("no H.264 track".into()));
    }
    Ok(ids)
}

/// Adds the samples of one `moof`+`mdat` to their tracks; `false` when the fragment is
/// inconsistent (sizes do not fit the mdat), where a torn file ends.
fn add_fragment(
    out: &mut Scan,
    ids: &TrackIds,
    moof: &Moof,
    head: &BoxHead,
    mdat: &BoxHead,
) -> bool {
    let mut found = Vec::new();
    for traf in &moof.traf {
        let id = traf.tfhd.track_id;
        let prev = if id == ids.video {
            out.samples.last()
        } else if Some(id) == ids.audio {
            out.audio.as_ref().and_then(|a| a.samples.last())
        } else {
            continue;
        };
        match fragment_samples(traf, head, mdat, prev) {
            Some(samples) => found.push((id, samples)),
            None => return false,
        }
    }
    if found.is_empty() {
        return false;
    }
    for (id, samples) in found {
        if id == ids.video {
            out.samples.extend(samples);
        } else if let Some(audio) = out.audio.as_mut() {
            audio.samples.extend(samples);
        }
    }
    true
}

/// The samples of one track's fragment, if they are consistent (sizes fit the mdat).
fn fragment_samples(
    traf: &mp4_atom::Traf,
    head: &BoxHead,
    mdat: &BoxHead,
    prev: Option<&SampleRef>,
) -> Option<Vec<SampleRef>> {
    let tfhd = &traf.tfhd;
    let base = tfhd.base_data_offset.unwrap_or(head.start);
    let mut dts = traf
        .tfdt
        .as_ref()
        .map(|t| t.base_media_decode_time)
        .or_else(|| prev.map(|p| p.dts + u64::from(p.duration)))
        .unwrap_or(0);
    let mut out = Vec::new();
    for trun in &traf.trun {
        let mut offset = base.checked_add_signed(i64::from(trun.data_offset.unwrap_or(0)))?;
        for i in 0..trun.samples.len() {
            let entry = trun.samples.get(i)?;
            let size = entry.size.or(tfhd.default_sample_size)?;
            let duration = entry.duration.or(tfhd.default_sample_duration).unwrap_or(0);
            let flags = entry.flags.or(tfhd.default_sample_flags).unwrap_or(0);
            out.push(SampleRef {
                offset,
                size,
                dts,
                duration,
                // sample_is_non_sync_sample is bit 16 of the sample flags.
                keyframe: (flags >> 16) & 1 == 0,
            });
            offset += u64::from(size);
            dts += u64::from(duration);
        }
    }
    let data_start = mdat.start + 8;
    let fits = out
        .iter()
        .all(|s| s.offset >= data_start && s.offset + u64::from(s.size) <= mdat.end);
    (fits && !out.is_empty()).then_some(out)
}

fn parameter_sets(trak: &mp4_atom::Trak) -> Option<(Vec<u8>, Vec<u8>)> {
    let avcc = trak
        .mdia
        .minf
        .stbl
        .stsd
        .codecs
        .iter()
        .find_map(|c| match c {
            mp4_atom::Codec::Avc1(a) => Some(&a.avcc),
            mp4_atom::Codec::Avc3(a) => Some(&a.avcc),
            _ => None,
        })?;
    Some((
        avcc.sequence_parameter_sets.first()?.clone(),
        avcc.picture_parameter_sets.first()?.clone(),
    ))
}

/// Reads one sample's bytes (AVCC: 4-byte length-prefixed NAL units).
pub fn read_sample(f: &mut File, s: &SampleRef) -> Result<Vec<u8>, Fmp4Error> {
    let mut buf = vec![0u8; s.size as usize];
    f.seek(SeekFrom::Start(s.offset))?;
    f.read_exact(&mut buf)?;
    Ok(buf)
}
