//! `[audio]`: the camera's microphone and speaker.

use serde::{Deserialize, Serialize};

use super::in_range;

/// The in-process `interaudio` channel on which the speaker pipeline hands what viewers
/// say to the capture's audio part, with `record_talk`.
pub const TALK_CHANNEL: &str = "edgecam-talk";

/// `[audio]`: sound from the camera, encoded once as Opus (live view) and once as AAC-LC
/// (clips and the cloud); and the speaker viewers talk through.
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
    /// The camera has a speaker: viewers may talk through it (push-to-talk), one at a
    /// time. Default false.
    pub speaker: bool,
    /// ALSA playback device for the speaker (`aplay -L` lists them). Default `default`.
    pub speaker_device: String,
    /// The speaker pipeline's sink end as GStreamer launch text, instead of
    /// `alsasink device=<speaker_device>` (e.g. `pulsesink`). Default unset.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub speaker_sink: Option<String>,
    /// Speaker volume in percent of the viewer's level, 0–400. Default 100.
    pub speaker_volume: u32,
    /// The jitter buffer before the speaker, in ms (20–500): enough for a home
    /// network's jitter, low enough for a conversation. Default 60.
    pub talk_latency_ms: u32,
    /// A talker heard saying nothing for this many seconds loses the floor (2–600).
    /// Default 15.
    pub talk_silence_s: u32,
    /// Mix what viewers say through the speaker into the recorded sound (clips and the
    /// cloud). Off by default: privacy. Needs the pipeline file's audio part to name its
    /// raw sound `tee name=pcm`, as the shipped ones do. Default false.
    pub record_talk: bool,
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
            speaker: false,
            speaker_device: "default".into(),
            speaker_sink: None,
            speaker_volume: 100,
            talk_latency_ms: 60,
            talk_silence_s: 15,
            record_talk: false,
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
        for (key, device) in [
            ("device", &self.device),
            ("speaker_device", &self.speaker_device),
        ] {
            if device.is_empty() || device.contains(['"', '!', '\n']) {
                bad(
                    "audio",
                    key,
                    "must be an ALSA device name such as \"default\" or \"hw:1,0\"".into(),
                );
            }
        }
        in_range(bad, "audio", "speaker_volume", self.speaker_volume, 0, 400);
        in_range(
            bad,
            "audio",
            "talk_latency_ms",
            self.talk_latency_ms,
            20,
            500,
        );
        in_range(bad, "audio", "talk_silence_s", self.talk_silence_s, 2, 600);
    }
}
