//! Typed edgecam configuration: the TOML schema, its defaults and cross-field rules.
//!
//! Loading is strict (`deny_unknown_fields`): a typo is an error, not a silently ignored
//! key. Every default is written beside its field and repeated in `config/edgecam.toml`.

mod areas;
mod audio;
mod aws;
mod detect;
mod live;
mod load;
mod mqtt;
mod onvif;
mod recording;
mod rtsp;
mod upload;
mod web;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use areas::{
    areas_from_toml, areas_of, areas_path, areas_problems, areas_to_toml, set_areas, write_areas,
    AREAS_FILE,
};
pub use audio::{Audio, TALK_CHANNEL};
pub use aws::{Aws, CredentialSource};
pub use detect::{Detect, SHIPPED_MODEL};
pub use live::{Live, Signaling};
pub use load::{load, parse, ConfigError, Problem};
pub use mqtt::Mqtt;
pub use onvif::Onvif;
pub use recording::{EventTrigger, Events, Motion, Storage};
pub use rtsp::Rtsp;
pub use upload::{ImageFormat, Upload, UploadMode};
pub use web::{TlsMode, Web, MIN_TOKEN_LEN};

/// A KVS resource name (channel, stream): 1 to 256 of letters, digits, `_`, `.`, `-`.
pub(crate) fn valid_kvs_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Reads an optional text key, taking `""` (as files written for earlier versions say
/// "the default") as unset.
pub(crate) fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// Reports `value` outside `lo..=hi` as "must be between lo and hi, got value".
pub(crate) fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    bad: &mut impl FnMut(&'static str, &'static str, String),
    section: &'static str,
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
) {
    // `contains` is false for NaN too.
    if !(lo..=hi).contains(&value) {
        bad(
            section,
            key,
            format!("must be between {lo} and {hi}, got {value}"),
        );
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub camera: Camera,
    pub audio: Audio,
    pub events: Events,
    pub motion: Motion,
    pub detect: Detect,
    pub storage: Storage,
    pub live: Live,
    pub aws: Aws,
    pub mqtt: Mqtt,
    pub upload: Upload,
    pub web: Web,
    pub rtsp: Rtsp,
    pub onvif: Onvif,
    pub log: Log,
    /// `[[zones]]`: named areas and the labels that matter in each. Default none: the
    /// whole picture, every label of `detect.labels`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<crate::events::Zone>,
}

/// `[camera]`: which pipeline captures video and how it is encoded.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    /// Pipeline name: a file `<name>.pipeline` in the pipeline directory.
    /// Shipped: `test-pattern`, `v4l2`, `rtsp`, `raspberry-pi`. Default `test-pattern`.
    pub pipeline: String,
    /// Directory holding the pipeline files. Default: unset, meaning the first of
    /// `/etc/edgecam/pipelines`, `/usr/share/edgecam/pipelines`, `./pipelines` that has
    /// the named file.
    pub pipeline_dir: Option<PathBuf>,
    /// Frame width in pixels (even). Default 1280.
    pub width: u32,
    /// Frame height in pixels (even). Default 720.
    pub height: u32,
    /// Frames per second, 1–60. Default 15.
    pub fps: u32,
    /// Encoder target bitrate in kbit/s, 100–50000. Default 2000.
    pub bitrate_kbps: u32,
    /// Seconds between keyframes, > 0 and ≤ 10. Default 2.
    pub keyframe_interval_s: f64,
    /// V4L2 device for the `v4l2` pipeline. Default `/dev/video0`.
    pub device: String,
    /// Stream URL for the `rtsp` pipeline (`rtsp://user:pass@host/path`). Default empty.
    pub url: String,
    /// Motion-analysis frame size and rate. Defaults 160×90 at 5 fps.
    pub analysis_width: u32,
    pub analysis_height: u32,
    pub analysis_fps: u32,
    /// Seconds without a frame after which the pipeline is rebuilt. Default 10.
    pub stall_timeout_s: u64,
    /// Areas blacked out before anything else sees the picture (live view, clips, RTSP,
    /// the cloud, snapshots, detection): polygons, each a list of `[x, y]` fractions of
    /// the picture. Default none.
    pub privacy_masks: Vec<crate::events::Polygon>,
}

impl Default for Camera {
    fn default() -> Self {
        Self {
            pipeline: "test-pattern".into(),
            pipeline_dir: None,
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 2000,
            keyframe_interval_s: 2.0,
            device: "/dev/video0".into(),
            url: String::new(),
            analysis_width: 160,
            analysis_height: 90,
            analysis_fps: 5,
            stall_timeout_s: 10,
            privacy_masks: Vec::new(),
        }
    }
}

impl Camera {
    /// Keyframe interval in frames, as encoders want it (at least 1).
    pub fn keyframe_interval_frames(&self) -> u32 {
        ((self.keyframe_interval_s * f64::from(self.fps)).round() as u32).max(1)
    }
}

/// `[log]`: diagnostics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// tracing filter (`error`, `warn`, `info`, `debug`, `trace`, or directives such as
    /// `edgecam=debug,info`). `RUST_LOG` overrides it. Default `info`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// A rule the values break, naming the field so the message can point at its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub section: &'static str,
    pub key: &'static str,
    pub message: String,
}

impl Config {
    /// What opens events: the setting, or objects when the detector is on.
    pub fn trigger(&self) -> EventTrigger {
        self.events.trigger.unwrap_or(if self.detect.enabled {
            EventTrigger::Objects
        } else {
            EventTrigger::Motion
        })
    }

    /// Cross-field and range rules that serde cannot express. Returns every problem found.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut out = Vec::new();
        let mut bad = |section, key, message: String| {
            out.push(Invalid {
                section,
                key,
                message,
            })
        };
        let c = &self.camera;
        if c.pipeline.is_empty() || c.pipeline.contains('/') {
            bad(
                "camera",
                "pipeline",
                "must be a pipeline name such as \"test-pattern\" (no slashes)".into(),
            );
        }
        in_range(&mut bad, "camera", "fps", c.fps, 1, 60);
        for (key, v) in [("width", c.width), ("height", c.height)] {
            if !(16..=7680).contains(&v) || v % 2 != 0 {
                bad(
                    "camera",
                    key,
                    format!("must be an even number between 16 and 7680, got {v}"),
                );
            }
        }
        in_range(
            &mut bad,
            "camera",
            "bitrate_kbps",
            c.bitrate_kbps,
            100,
            50_000,
        );
        if !(c.keyframe_interval_s > 0.0 && c.keyframe_interval_s <= 10.0) {
            bad(
                "camera",
                "keyframe_interval_s",
                format!("must be more than 0 and at most 10 seconds (KVS fragments and pre-roll rely on it), got {}", c.keyframe_interval_s),
            );
        }
        if c.pipeline == "rtsp" && !c.url.starts_with("rtsp://") && !c.url.starts_with("rtsps://") {
            bad(
                "camera",
                "url",
                "the rtsp pipeline needs url = \"rtsp://host/path\"".into(),
            );
        }
        if c.pipeline == "v4l2" && c.device.is_empty() {
            bad(
                "camera",
                "device",
                "the v4l2 pipeline needs a device such as \"/dev/video0\"".into(),
            );
        }
        if !(16..=640).contains(&c.analysis_width) || !(16..=480).contains(&c.analysis_height) {
            bad(
                "camera",
                "analysis_width",
                "analysis frames must be between 16×16 and 640×480".into(),
            );
        }
        if !(1..=c.fps.max(1)).contains(&c.analysis_fps) {
            bad(
                "camera",
                "analysis_fps",
                format!(
                    "must be between 1 and fps ({}), got {}",
                    c.fps, c.analysis_fps
                ),
            );
        }
        for (i, mask) in c.privacy_masks.iter().enumerate() {
            if let Some(problem) = mask.problem() {
                bad(
                    "camera",
                    "privacy_masks",
                    format!("mask {}: {problem}", i + 1),
                );
            }
        }
        if c.pipeline == "rtsp" && !c.privacy_masks.is_empty() {
            bad(
                "camera",
                "privacy_masks",
                "the rtsp pipeline passes the camera's own H.264 through, so nothing can be masked before the encoder: set the masks in the camera".into(),
            );
        }
        if c.stall_timeout_s < 2 {
            bad(
                "camera",
                "stall_timeout_s",
                "must be at least 2 seconds".into(),
            );
        }
        self.audio.validate(&mut bad);
        self.events.validate(&mut bad);
        self.motion.validate(&mut bad);
        self.detect.validate(&self.zones, &mut bad);
        if self.events.trigger == Some(EventTrigger::Objects) && !self.detect.enabled {
            bad(
                "events",
                "trigger",
                "\"objects\" needs the detector: set detect.enabled = true, or trigger = \"motion\"".into(),
            );
        }
        self.storage.validate(&mut bad);
        self.live.validate(&mut bad);
        self.aws.validate(&mut bad);
        self.mqtt.validate(&self.aws.thing_name, &mut bad);
        self.upload.validate(&mut bad);
        if self.live.enabled
            && self.live.signaling == Signaling::Kvs
            && self.live.channel_name.is_none()
            && self.aws.thing_name.is_empty()
        {
            bad(
                "live",
                "channel_name",
                "KVS signaling needs a channel: set live.channel_name or aws.thing_name".into(),
            );
        }
        if self.upload.enabled && self.upload.stream(&self.aws.thing_name).is_empty() {
            bad(
                "upload",
                "stream_name",
                "uploading needs a stream: set upload.stream_name or aws.thing_name".into(),
            );
        }
        self.web.validate(&mut bad);
        self.rtsp.validate(&self.web, &mut bad);
        self.onvif.validate(&self.rtsp, &mut bad);
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            bad(
                "log",
                "level",
                format!("is not a valid filter: {:?}", self.log.level),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks_say_the_range_and_refuse_nan() {
        let mut got = Vec::new();
        let mut bad =
            |s: &'static str, k: &'static str, m: String| got.push(format!("{s}.{k}: {m}"));
        in_range(&mut bad, "storage", "min_free_percent", f64::NAN, 0.0, 90.0);
        in_range(&mut bad, "camera", "fps", 61, 1, 60);
        in_range(&mut bad, "camera", "fps", 60, 1, 60);
        assert_eq!(
            got,
            [
                "storage.min_free_percent: must be between 0 and 90, got NaN",
                "camera.fps: must be between 1 and 60, got 61"
            ]
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), vec![]);
    }

    #[test]
    fn kvs_signaling_needs_a_channel_and_sane_aws_settings() {
        let mut c = Config::default();
        c.live.relay_only = true;
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(keys, ["relay_only"], "relay only needs KVS's TURN servers");
        c.live.signaling = Signaling::Kvs;
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(keys, ["channel_name"]);
        c.aws.thing_name = "cam-1".into();
        assert_eq!(c.validate(), vec![]);
        c.live.channel_name = Some("bad name/with slash".into());
        c.aws.region = "EU West".into();
        c.aws.endpoint_url = Some("ftp://x".into());
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(keys, ["channel_name", "region", "endpoint_url"]);
        c = Config::default();
        c.aws.credentials = CredentialSource::Iot;
        c.aws.role_alias = "camera".into();
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            [
                "iot_credentials_endpoint",
                "thing_name",
                "ca",
                "cert",
                "key"
            ]
        );
    }

    #[test]
    fn keyframe_interval_in_frames() {
        let mut c = Camera::default();
        assert_eq!(c.keyframe_interval_frames(), 30); // 2 s × 15 fps
        c.keyframe_interval_s = 0.01;
        assert_eq!(c.keyframe_interval_frames(), 1);
    }

    #[test]
    fn cross_field_rules_name_their_field() {
        let mut c = Config::default();
        c.camera.keyframe_interval_s = 12.0;
        c.camera.fps = 0;
        c.camera.pipeline = "rtsp".into();
        c.web.listen = "localhost".into();
        let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            [
                "fps",
                "keyframe_interval_s",
                "url",
                "analysis_fps",
                "listen"
            ]
        );
    }

    #[test]
    fn odd_sizes_are_refused() {
        let mut c = Config::default();
        c.camera.width = 641;
        let errs = c.validate();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].key, "width");
    }
}
