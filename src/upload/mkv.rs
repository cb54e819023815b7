//! The Matroska subset Kinesis Video Streams accepts for PutMedia (pure, no I/O):
//!
//! ```text
//! EBML header (DocType matroska, versions 2/2, MaxIDLength 4, MaxSizeLength 8)
//! Segment (unknown size)
//!   Info    SegmentUID(16) TimecodeScale=1_000_000 (1 ms) MuxingApp WritingApp
//!   Tracks  TrackEntry: TrackNumber 1, TrackUID, TrackType 1 (video),
//!           CodecID V_MPEG4/ISO/AVC, CodecPrivate = avcC, Video{PixelWidth, PixelHeight}
//!           [TrackEntry: TrackNumber 2, TrackUID, TrackType 2 (audio), CodecID A_AAC,
//!           CodecPrivate = AudioSpecificConfig, Audio{SamplingFrequency, Channels}]
//!   Cluster (unknown size) per fragment: Timecode = absolute ms, then SimpleBlocks
//!           (track 1 or 2, int16 relative timecode, flags 0x80 on keyframes and on
//!           every audio frame; AVCC frames, raw AAC frames) in timecode order
//!   [Tags   Tag{SimpleTag{TagName, TagString}} …]   optional: the metadata of the
//!           cluster before it (KVS developer guide, image generation troubleshooting)
//! ```
//!
//! A header (EBML + Segment + Info + Tracks) starts each PutMedia connection; every
//! fragment is one cluster that starts with a keyframe. KVS HLS and GetClip take AAC as
//! track 2 only, with its codec private data.

use crate::media::h264::{self, nal_type};
use crate::media::AudioFormat;

/// Element IDs (with their length-marker bits, as written).
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const SEGMENT_UID: u32 = 0x73A4;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
}

/// "Unknown size" in 8 bytes: the element runs until a parent-level element starts.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// Tags KVS allows per fragment.
pub const MAX_TAGS: usize = 10;
/// The only tag names starting with "AWS" a producer may write: they ask KVS for
/// images and notifications of the fragment.
pub const RESERVED_TAGS: [&str; 3] = [
    "AWS_KINESISVIDEO_IMAGE_GENERATION",
    "AWS_KINESISVIDEO_IMAGE_PREFIX",
    "AWS_KINESISVIDEO_NOTIFICATION",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    #[error("the keyframe has no SPS and PPS (needed for the codec private data)")]
    NoParameterSets,
    #[error("the SPS cannot be read: {0}")]
    BadSps(String),
    #[error("a fragment must start with a keyframe")]
    NotKeyframe,
    #[error("frame at {frame_ms} ms is {delta} ms from its cluster: over the int16 range")]
    TooFarFromCluster { frame_ms: u64, delta: i64 },
    #[error("1 to {MAX_TAGS} tags, and no tag name may start with \"AWS\" but KVS's own")]
    BadTags,
}

fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// An EBML variable-length size in the fewest bytes (1–8).
fn put_size(out: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    // n bytes hold 7n value bits; all ones is reserved for "unknown".
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    element(out, id, &bytes[skip..]);
}

fn float(out: &mut Vec<u8>, id: u32, v: f64) {
    element(out, id, &v.to_be_bytes());
}

fn text(out: &mut Vec<u8>, id: u32, s: &str) {
    element(out, id, s.as_bytes());
}

fn master(out: &mut Vec<u8>, id: u32, build: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    build(&mut body);
    element(out, id, &body);
}

/// The avcC record (ISO/IEC 14496-15) from one SPS and one PPS.
pub fn avcc(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut out = vec![
        1,                                   // configurationVersion
        sps.get(1).copied().unwrap_or(0x42), // profile
        sps.get(2).copied().unwrap_or(0),    // constraints
        sps.get(3).copied().unwrap_or(0x1f), // level
        0xFF,                                // 6 bits reserved + lengthSizeMinusOne = 3
        0xE1,                                // 3 bits reserved + 1 SPS
    ];
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1); // one PPS
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    // High profiles carry chroma format and bit depths too (ISO/IEC 14496-15 5.3.3.1).
    if let Ok(p) = h264::parse_sps(sps) {
        if matches!(p.profile_idc, 100 | 110 | 122 | 144) {
            out.push(0xFC | (p.chroma_format_idc & 0x03) as u8);
            out.push(0xF8 | (p.bit_depth_luma_minus8 & 0x07) as u8);
            out.push(0xF8 | (p.bit_depth_chroma_minus8 & 0x07) as u8);
            out.push(0); // no SPS extensions
        }
    }
    out
}

/// An Annex-B access unit as AVCC (4-byte lengths), without access unit delimiters.
pub fn to_avcc(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len() + 16);
    for nal in h264::nal_units(annex_b) {
        if h264::nal_unit_type(nal) == Some(nal_type::AUD) || nal.is_empty() {
            continue;
        }
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// What the stream header needs: the picture's, taken from the first keyframe, and the
/// sound's when the fragments carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub codec_private: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub audio: Option<AudioTrackInfo>,
}

/// The AAC track 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrackInfo {
    /// AudioSpecificConfig.
    pub config: Vec<u8>,
    pub rate: u32,
    pub channels: u32,
}

impl TrackInfo {
    /// Reads SPS/PPS and the picture size from a keyframe access unit (Annex-B).
    pub fn from_keyframe(au: &[u8]) -> Result<Self, MkvError> {
        let (sps, pps) = h264::parameter_sets(au).ok_or(MkvError::NoParameterSets)?;
        let parsed = h264::parse_sps(sps).map_err(|e| MkvError::BadSps(e.to_string()))?;
        Ok(Self {
            codec_private: avcc(sps, pps),
            width: parsed.width,
            height: parsed.height,
            audio: None,
        })
    }

    pub fn with_audio(self, audio: Option<AudioTrackInfo>) -> Self {
        Self { audio, ..self }
    }
}

/// The start of a PutMedia body: EBML header, unknown-size Segment, Info, Tracks.
pub fn header(track: &TrackInfo, segment_uid: [u8; 16], track_uid: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + track.codec_private.len());
    master(&mut out, id::EBML, |b| {
        uint(b, id::EBML_VERSION, 1);
        uint(b, id::EBML_READ_VERSION, 1);
        uint(b, id::EBML_MAX_ID_LENGTH, 4);
        uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
        text(b, id::DOC_TYPE, "matroska");
        uint(b, id::DOC_TYPE_VERSION, 2);
        uint(b, id::DOC_TYPE_READ_VERSION, 2);
    });
    put_id(&mut out, id::SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE);
    master(&mut out, id::INFO, |b| {
        element(b, id::SEGMENT_UID, &segment_uid);
        uint(b, id::TIMECODE_SCALE, 1_000_000);
        text(b, id::MUXING_APP, "edgecam");
        text(
            b,
            id::WRITING_APP,
            concat!("edgecam ", env!("CARGO_PKG_VERSION")),
        );
    });
    master(&mut out, id::TRACKS, |b| {
        master(b, id::TRACK_ENTRY, |t| {
            uint(t, id::TRACK_NUMBER, 1);
            uint(t, id::TRACK_UID, track_uid.max(1));
            uint(t, id::TRACK_TYPE, 1);
            text(t, id::CODEC_ID, "V_MPEG4/ISO/AVC");
            element(t, id::CODEC_PRIVATE, &track.codec_private);
            master(t, id::VIDEO, |v| {
                uint(v, id::PIXEL_WIDTH, u64::from(track.width));
                uint(v, id::PIXEL_HEIGHT, u64::from(track.height));
            });
        });
        if let Some(audio) = &track.audio {
            master(b, id::TRACK_ENTRY, |t| {
                uint(t, id::TRACK_NUMBER, 2);
                uint(t, id::TRACK_UID, track_uid.max(1).wrapping_add(1).max(1));
                uint(t, id::TRACK_TYPE, 2);
                text(t, id::CODEC_ID, "A_AAC");
                element(t, id::CODEC_PRIVATE, &audio.config);
                master(t, id::AUDIO, |a| {
                    float(a, id::SAMPLING_FREQUENCY, f64::from(audio.rate));
                    uint(a, id::CHANNELS, u64::from(audio.channels));
                });
            });
        }
    });
    out
}

impl From<&AudioFormat> for AudioTrackInfo {
    fn from(f: &AudioFormat) -> Self {
        Self {
            config: f.config.to_vec(),
            rate: f.rate,
            channels: f.channels,
        }
    }
}

/// One AAC frame of a fragment (track 2): raw data and absolute time in ms.
#[derive(Debug, Clone, Copy)]
pub struct AudioBlock<'a> {
    pub data: &'a [u8],
    pub time_ms: u64,
}

/// One frame of a fragment: Annex-B data, absolute time in ms, keyframe flag.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub annex_b: &'a [u8],
    pub time_ms: u64,
    pub keyframe: bool,
}

/// A Segment-level Tags element: metadata of the fragment whose cluster precedes it.
/// Written right after that cluster it also ends the unknown-size cluster at once, so the
/// service acknowledges it without waiting for the next one (a cluster otherwise ends
/// only where the next begins).
pub fn fragment_tags(tags: &[(&str, &str)]) -> Result<Vec<u8>, MkvError> {
    let reserved_or_own = |n: &str| !n.starts_with("AWS") || RESERVED_TAGS.contains(&n);
    if tags.is_empty() || tags.len() > MAX_TAGS || !tags.iter().all(|(n, _)| reserved_or_own(n)) {
        return Err(MkvError::BadTags);
    }
    let mut out = Vec::new();
    master(&mut out, id::TAGS, |b| {
        master(b, id::TAG, |t| {
            for (name, value) in tags {
                master(t, id::SIMPLE_TAG, |s| {
                    text(s, id::TAG_NAME, name);
                    text(s, id::TAG_STRING, value);
                });
            }
        });
    });
    Ok(out)
}

fn block(out: &mut Vec<u8>, track: u8, rel: i16, keyframe: bool, data: &[u8]) {
    let mut b = Vec::with_capacity(data.len() + 4);
    b.push(0x80 | track); // the track number as a 1-byte vint
    b.extend_from_slice(&rel.to_be_bytes());
    b.push(if keyframe { 0x80 } else { 0x00 });
    b.extend_from_slice(data);
    element(out, id::SIMPLE_BLOCK, &b);
}

fn relative(time_ms: u64, cluster_ms: u64) -> Result<i16, MkvError> {
    let delta = time_ms as i64 - cluster_ms as i64;
    i16::try_from(delta).map_err(|_| MkvError::TooFarFromCluster {
        frame_ms: time_ms,
        delta,
    })
}

/// One fragment: an unknown-size Cluster at the first frame's time holding the frames and
/// the sound (`audio`, times at or after the first frame's) in timecode order, then its
/// Tags when there are any.
pub fn fragment(
    frames: &[Frame<'_>],
    audio: &[AudioBlock<'_>],
    tags: &[(&str, &str)],
) -> Result<Vec<u8>, MkvError> {
    let first = frames.first().ok_or(MkvError::NotKeyframe)?;
    if !first.keyframe {
        return Err(MkvError::NotKeyframe);
    }
    let bytes: usize = frames.iter().map(|f| f.annex_b.len() + 16).sum::<usize>()
        + audio.iter().map(|a| a.data.len() + 8).sum::<usize>();
    let mut out = Vec::with_capacity(bytes + 64);
    let tags = match tags {
        [] => Vec::new(),
        tags => fragment_tags(tags)?,
    };
    put_id(&mut out, id::CLUSTER);
    out.extend_from_slice(&UNKNOWN_SIZE);
    uint(&mut out, id::TIMECODE, first.time_ms);
    let mut sound = audio
        .iter()
        .filter(|a| a.time_ms >= first.time_ms && !a.data.is_empty())
        .peekable();
    for (i, f) in frames.iter().enumerate() {
        let avcc = to_avcc(f.annex_b);
        if avcc.is_empty() {
            // No NAL unit (not Annex-B): an empty block is invalid MKV for KVS.
            if i == 0 {
                return Err(MkvError::NotKeyframe);
            }
            continue;
        }
        // Sound before this frame goes first; at equal times the picture leads.
        while let Some(a) = sound.next_if(|a| a.time_ms < f.time_ms) {
            block(
                &mut out,
                2,
                relative(a.time_ms, first.time_ms)?,
                true,
                a.data,
            );
        }
        block(
            &mut out,
            1,
            relative(f.time_ms, first.time_ms)?,
            f.keyframe,
            &avcc,
        );
    }
    for a in sound {
        block(
            &mut out,
            2,
            relative(a.time_ms, first.time_ms)?,
            true,
            a.data,
        );
    }
    out.extend_from_slice(&tags);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_fewest_bytes_and_avoid_the_reserved_value() {
        let enc = |n| {
            let mut v = Vec::new();
            put_size(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 in one byte would be 0xFF, "unknown": it takes two.
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(300), [0x41, 0x2C]);
        assert_eq!(enc(16_383), [0x20, 0x3F, 0xFF]);
    }

    #[test]
    fn integers_are_big_endian_and_minimal() {
        let mut v = Vec::new();
        uint(&mut v, id::TIMECODE_SCALE, 1_000_000);
        // ID 2A D7 B1, size 3, 0x0F4240
        assert_eq!(v, [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
        let mut z = Vec::new();
        uint(&mut z, id::TRACK_NUMBER, 0);
        assert_eq!(z, [0xD7, 0x81, 0x00], "zero still takes one byte");
    }

    // A 320×240 constrained-baseline SPS (level 2.1, with emulation prevention bytes)
    // and its PPS, as x264 wrote them for videotestsrc.
    const SPS: [u8; 28] = [
        0x67, 0x42, 0xC0, 0x15, 0xD9, 0x01, 0x41, 0xFB, 0x01, 0x6A, 0x0C, 0x0C, 0x0D, 0x4A, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x79, 0x1E, 0x2C, 0x5C, 0x90,
    ];
    const PPS: [u8; 4] = [0x68, 0xCB, 0x8C, 0xB2];

    fn keyframe() -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x09, 0x10]; // AUD
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&SPS);
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(&PPS);
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84]); // IDR slice, 3-byte start code
        au
    }

    #[test]
    fn avcc_and_frames_are_length_prefixed() {
        let c = avcc(&SPS, &PPS);
        // version 1, profile 66, constraints C0, level 21, 4-byte lengths, 1 SPS.
        assert_eq!(&c[..6], &[1, 0x42, 0xC0, 0x15, 0xFF, 0xE1]);
        assert_eq!(&c[6..8], &[0, 28]);
        assert_eq!(&c[36..39], &[1, 0, 4], "one PPS of 4 bytes");
        let f = to_avcc(&keyframe());
        // SPS (len 28), PPS (len 4), IDR (len 3); the AUD is dropped.
        assert_eq!(&f[..4], &[0, 0, 0, 28]);
        assert_eq!(&f[32..36], &[0, 0, 0, 4]);
        assert_eq!(&f[40..], &[0, 0, 0, 3, 0x65, 0x88, 0x84]);
        assert_eq!(c.len(), 39 + 4, "baseline: no High-profile extension");
    }

    #[test]
    fn high_profile_avcc_carries_chroma_format_and_bit_depths() {
        // x264 High profile, 64x48 4:2:0 8-bit.
        let sps = hex::decode("67640014acd9447b016a0c0c0d4a000003000200000300791e28532c").unwrap();
        let pps = [0x68, 0xeb, 0xec, 0xb2, 0x2c];
        let c = avcc(&sps, &pps);
        assert_eq!(&c[1..4], &[0x64, 0x00, 0x14], "profile 100, level 2.0");
        let tail = &c[c.len() - 4..];
        // 111111 + chroma_format 1, 11111 + luma depth-8 0, 11111 + chroma depth-8 0, 0 ext.
        assert_eq!(tail, &[0xFD, 0xF8, 0xF8, 0x00]);
        assert_eq!(c.len(), 6 + 2 + sps.len() + 1 + 2 + pps.len() + 4);
    }

    #[test]
    fn header_starts_with_ebml_and_an_unknown_size_segment() {
        let track = TrackInfo::from_keyframe(&keyframe()).unwrap();
        assert_eq!((track.width, track.height), (320, 240));
        let h = header(&track, [7; 16], 1);
        assert_eq!(&h[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        let seg = h
            .windows(4)
            .position(|w| w == [0x18, 0x53, 0x80, 0x67])
            .unwrap();
        assert_eq!(&h[seg + 4..seg + 12], &UNKNOWN_SIZE);
        assert!(h.windows(15).any(|w| w == b"V_MPEG4/ISO/AVC"));
        assert!(h.windows(8).any(|w| w == b"matroska"));
    }

    #[test]
    fn fragments_start_on_a_keyframe_with_relative_block_times() {
        let key = keyframe();
        let delta = [0u8, 0, 0, 1, 0x41, 0x9A];
        let frames = [
            Frame {
                annex_b: &key,
                time_ms: 1_800_000_000_000,
                keyframe: true,
            },
            Frame {
                annex_b: &delta,
                time_ms: 1_800_000_000_066,
                keyframe: false,
            },
        ];
        let c = fragment(&frames, &[], &[("EVENT_ID", "01J")]).unwrap();
        let tags_at = c.windows(4).rposition(|w| w == [0x12, 0x54, 0xC3, 0x67]);
        assert!(
            tags_at.is_some_and(|t| t > 4),
            "Tags after the cluster they describe"
        );
        let cl = c
            .windows(4)
            .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
            .unwrap();
        // Cluster, unknown size, Timecode (E7, 6 bytes of 1_800_000_000_000).
        assert_eq!(&c[cl + 12..cl + 14], &[0xE7, 0x86]);
        assert_eq!(
            &c[cl + 14..cl + 20],
            &1_800_000_000_000u64.to_be_bytes()[2..]
        );
        // Second block: track 1, +66 ms, not a keyframe.
        let second = c.windows(4).rposition(|w| w == [0x81, 0x00, 0x42, 0x00]);
        assert!(second.is_some(), "relative time 66 and flags 0");
        assert_eq!(
            fragment(&frames[1..], &[], &[]),
            Err(MkvError::NotKeyframe),
            "a cluster must start on a keyframe"
        );
        assert_eq!(
            fragment(&frames, &[], &[("AWS_X", "y")]),
            Err(MkvError::BadTags)
        );
        assert!(
            fragment(&frames, &[], &[("AWS_KINESISVIDEO_IMAGE_GENERATION", "")]).is_ok(),
            "KVS's own image tag may be written"
        );
        let far = [
            frames[0],
            Frame {
                time_ms: frames[0].time_ms + 40_000,
                ..frames[1]
            },
        ];
        assert!(matches!(
            fragment(&far, &[], &[]),
            Err(MkvError::TooFarFromCluster { .. })
        ));
    }

    #[test]
    fn sound_is_track_2_interleaved_with_the_picture_by_time() {
        let track = TrackInfo::from_keyframe(&keyframe())
            .unwrap()
            .with_audio(Some(AudioTrackInfo {
                config: vec![0x11, 0x88],
                rate: 48_000,
                channels: 1,
            }));
        let h = header(&track, [7; 16], 1);
        assert!(h.windows(5).any(|w| w == b"A_AAC"));
        // CodecPrivate (63 A2), 2 bytes: the AudioSpecificConfig.
        assert!(h.windows(5).any(|w| w == [0x63, 0xA2, 0x82, 0x11, 0x88]));
        // SamplingFrequency (B5), an 8-byte float 48000.0; Channels (9F) 1.
        let mut rate = vec![0xB5, 0x88];
        rate.extend_from_slice(&48_000f64.to_be_bytes());
        assert!(h.windows(rate.len()).any(|w| w == rate));
        assert!(h.windows(3).any(|w| w == [0x9F, 0x81, 0x01]));

        let key = keyframe();
        let delta = [0u8, 0, 0, 1, 0x41, 0x9A];
        let frames = [
            Frame {
                annex_b: &key,
                time_ms: 1000,
                keyframe: true,
            },
            Frame {
                annex_b: &delta,
                time_ms: 1066,
                keyframe: false,
            },
        ];
        let sound = [
            AudioBlock {
                data: &[0xA1],
                time_ms: 999, // before the cluster: left out
            },
            AudioBlock {
                data: &[0xA2],
                time_ms: 1000,
            },
            AudioBlock {
                data: &[0xA3],
                time_ms: 1021,
            },
            AudioBlock {
                data: &[0xA4],
                time_ms: 1070,
            },
        ];
        let c = fragment(&frames, &sound, &[]).unwrap();
        // Each block: A3, size, track vint, int16 time, flags, data. Order by time.
        let at = |pat: &[u8]| c.windows(pat.len()).position(|w| w == pat);
        let a2 = at(&[0x82, 0x00, 0x00, 0x80, 0xA2]).expect("sound at +0, after the keyframe");
        let a3 = at(&[0x82, 0x00, 21, 0x80, 0xA3]).expect("sound at +21");
        let v2 = at(&[0x81, 0x00, 66, 0x00]).expect("the picture at +66");
        let a4 = at(&[0x82, 0x00, 70, 0x80, 0xA4]).expect("sound at +70");
        let v1 = at(&[0x81, 0x00, 0x00, 0x80]).unwrap();
        assert!(
            v1 < a2 && a2 < a3 && a3 < v2 && v2 < a4,
            "{v1} {a2} {a3} {v2} {a4}"
        );
        assert!(at(&[0x82, 0xFF, 0xFF, 0x80, 0xA1]).is_none());
    }
}
