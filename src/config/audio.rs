//! `[audio]`: the camera's microphone.

use serde::{Deserialize, Serialize};

use super::in_range;

/// `[audio]`: sound from the camera, encoded once as Opus (live view) and once as AAC-LC
/// (clips and the cloud).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Audio {
    /// Capture sound, when the pipeline file has an audio part. Default true.
    pub enabled: bool,
    /// ALSA capture device for the `v4l2` and `raspberry-pi` pipelines (`default`,
    /// `hw:1,0`, `plughw:CARD=Device,DEV=0`; `arecord -L` lists them). Default `default`.
    pub device: String,
    /// Samples per second, 8000–96000. Default 48000.
    pub sample_rate: u32,
    /// 1 (mono) or 2. Default 1.
    pub channels: u32,
    /// Opus bitrate for live view in kbit/s, 6–510. Default 32.
    pub opus_bitrate_kbps: u32,
    /// AAC-LC bitrate for clips and the cloud in kbit/s, 16–320. Default 64.
    pub aac_bitrate_kbps: u32,
}

impl Default for Audio {
    fn default() -> Self {
        Self {
            enabled: true,
            device: "default".into(),
            sample_rate: 48_000,
            channels: 1,
            opus_bitrate_kbps: 32,
            aac_bitrate_kbps: 64,
        }
    }
}

impl Audio {
    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        in_range(bad, "audio", "sample_rate", self.sample_rate, 8_000, 96_000);
        if !(1..=2).contains(&self.channels) {
            bad(
                "audio",
                "channels",
                format!("must be 1 or 2, got {}", self.channels),
            );
        }
        in_range(
            bad,
            "audio",
            "opus_bitrate_kbps",
            self.opus_bitrate_kbps,
            6,
            510,
        );
        in_range(
            bad,
            "audio",
            "aac_bitrate_kbps",
            self.aac_bitrate_kbps,
            16,
            320,
        );
        if self.device.is_empty() || self.device.contains(['"', '!', '\n']) {
            bad(
                "audio",
                "device",
                "must be an ALSA device name such as \"default\" or \"hw:1,0\"".into(),
            );
        }
    }
}
