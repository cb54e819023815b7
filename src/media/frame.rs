//! The frames that leave the capture pipeline.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// One H.264 access unit in Annex-B form. Cloning is cheap (the bytes are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The access unit, start codes included. A keyframe carries SPS and PPS.
    pub data: Bytes,
    /// Presentation time, monotonic across pipeline rebuilds.
    pub pts: Duration,
    /// Wall-clock capture time (UTC): clip names, MKV timecodes, event times.
    pub captured_at: DateTime<Utc>,
    /// An IDR access unit: a decoder can start here.
    pub keyframe: bool,
    /// Counts pipeline (re)builds; a change means the stream restarted and its SPS may
    /// differ.
    pub generation: u32,
}

/// A small raw picture of one plane: GRAY8 for the motion detector (the analysis bus),
/// packed RGB for the object detector (the pictures bus: already scaled to fit the
/// model's input, taken only while something moves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Row-major pixels (1 byte each in GRAY8, 3 in RGB), `stride` bytes per row.
    pub data: Bytes,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub pts: Duration,
    pub captured_at: DateTime<Utc>,
}

/// A small GRAY8 frame for the motion detector.
pub type AnalysisFrame = RawFrame;
/// A small packed-RGB picture for the object detector.
pub type RgbFrame = RawFrame;

/// How an audio stream is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// For WebRTC: every browser plays it.
    Opus,
    /// AAC-LC, raw (no ADTS headers): for clips, KVS HLS and GetClip.
    Aac,
}

impl AudioCodec {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Aac => "aac",
        }
    }
}

/// What a decoder needs to know about an audio stream. Cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFormat {
    pub codec: AudioCodec,
    pub rate: u32,
    pub channels: u32,
    /// The codec's configuration: AAC's AudioSpecificConfig (MP4 `esds`, MKV
    /// CodecPrivate); empty for Opus.
    pub config: Bytes,
}

/// One encoded audio frame (an Opus packet of 20 ms, an AAC frame of 1024 samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub data: Bytes,
    /// Presentation time in the audio pipeline's running time.
    pub pts: Duration,
    /// Wall-clock capture time of its first sample (UTC), computed as for video frames:
    /// what lines audio up with the picture. For AAC, the capture time of the first
    /// sample a decoder plays when it decodes this frame (the encoder's delay taken off).
    pub captured_at: DateTime<Utc>,
    pub duration: Duration,
    pub format: AudioFormat,
    /// Counts audio pipeline (re)builds.
    pub generation: u32,
}

/// The latest JPEG snapshot of the scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub jpeg: Bytes,
    pub captured_at: DateTime<Utc>,
}

/// Whether a consumer that lost frames may start again at this one.
pub trait SyncPoint {
    fn is_sync_point(&self) -> bool;
}

impl SyncPoint for EncodedFrame {
    fn is_sync_point(&self) -> bool {
        self.keyframe
    }
}

impl SyncPoint for AudioFrame {
    fn is_sync_point(&self) -> bool {
        true
    }
}

impl SyncPoint for RawFrame {
    fn is_sync_point(&self) -> bool {
        true
    }
}
