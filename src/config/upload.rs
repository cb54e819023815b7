//! `[upload]`: the Kinesis Video stream that event clips go to, and cloud playback.

use serde::{Deserialize, Serialize};

use super::in_range;

/// `[upload]`: the KVS stream.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upload {
    /// Upload video to Kinesis Video Streams (needs `[aws]`). Default false.
    pub enabled: bool,
    /// `events`: every event clip, pre-roll included, while the event is live;
    /// `continuous`: every GOP of the camera. Default "events".
    pub mode: UploadMode,
    /// The KVS stream. Default unset: aws.thing_name.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub stream_name: Option<String>,
    /// Hours KVS keeps the video, 1–87600 (needed for playback). Default 24.
    pub retention_hours: u32,
    /// Create the stream when it does not exist. Default true.
    pub create_if_missing: bool,
    /// Continuous mode: MB of video kept on disk until KVS has it, so a restart or an
    /// outage loses nothing up to this much (the oldest goes first); 0 keeps it in
    /// memory only (64 MB). 0–65536. Default 256.
    pub continuous_buffer_mb: u32,
    /// Where KVS puts still images of event video: "s3://bucket" or "s3://bucket/prefix".
    /// Default unset: no images.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub images_s3_uri: Option<String>,
    /// The bucket's region. Default unset: aws.region.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub images_region: Option<String>,
    /// "JPEG" or "PNG". Default "JPEG".
    pub images_format: ImageFormat,
    /// JPEG quality, 1–100. Default 80.
    pub images_quality: u32,
    /// One image per this many ms of event video, 200–20000. Default 1000.
    pub images_interval_ms: u32,
    /// Image width in pixels, 0–3840; 0 keeps the video's (or follows the height's
    /// aspect ratio). Default 0.
    pub images_width: u32,
    /// Image height in pixels, 0–2160; 0 keeps the video's. Default 0.
    pub images_height: u32,
    /// An SNS topic ARN that KVS notifies when the first fragment of each event is
    /// stored. Default unset: no notifications.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub sns_topic_arn: Option<String>,
}

/// `upload.mode`: what goes up to the stream.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// Each event's clips, pre-roll included.
    Events,
    /// Every GOP the camera makes.
    Continuous,
}

/// `upload.images_format`: the still images KVS makes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl Default for Upload {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: UploadMode::Events,
            stream_name: None,
            retention_hours: 24,
            create_if_missing: true,
            continuous_buffer_mb: 256,
            images_s3_uri: None,
            images_region: None,
            images_format: ImageFormat::Jpeg,
            images_quality: 80,
            images_interval_ms: 1000,
            images_width: 0,
            images_height: 0,
            sns_topic_arn: None,
        }
    }
}

impl Upload {
    /// The stream name: `stream_name`, else the thing name.
    pub fn stream<'a>(&'a self, thing: &'a str) -> &'a str {
        self.stream_name.as_deref().unwrap_or(thing)
    }

    /// Still images are configured.
    pub fn images(&self) -> bool {
        self.images_s3_uri.is_some()
    }

    fn validate_images(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if let Some(uri) = self.images_s3_uri.as_deref().filter(|u| !valid_s3_uri(u)) {
            bad(
                "upload",
                "images_s3_uri",
                format!(
                    "must be s3://bucket or s3://bucket/prefix (bucket: 3-63 lower-case letters, digits, '.', '-'), got {uri:?}"
                ),
            );
        }
        if self.images() && !self.enabled {
            bad(
                "upload",
                "images_s3_uri",
                "images come from the uploaded video: set upload.enabled = true".into(),
            );
        }
        in_range(bad, "upload", "images_quality", self.images_quality, 1, 100);
        let interval = self.images_interval_ms;
        in_range(bad, "upload", "images_interval_ms", interval, 200, 20_000);
        in_range(bad, "upload", "images_width", self.images_width, 0, 3840);
        in_range(bad, "upload", "images_height", self.images_height, 0, 2160);
        let sns = self.sns_topic_arn.as_deref().unwrap_or_default();
        let topic_arn = sns.starts_with("arn:aws") && sns.contains(":sns:");
        if !sns.is_empty() && !topic_arn {
            bad(
                "upload",
                "sns_topic_arn",
                format!("must be an SNS topic ARN (arn:aws:sns:region:account:name), got {sns:?}"),
            );
        }
    }

    /// `mode = "continuous"`.
    pub fn continuous(&self) -> bool {
        self.mode == UploadMode::Continuous
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        in_range(
            bad,
            "upload",
            "retention_hours",
            self.retention_hours,
            1,
            87_600,
        );
        let buffer = self.continuous_buffer_mb;
        in_range(bad, "upload", "continuous_buffer_mb", buffer, 0, 65_536);
        self.validate_images(bad);
        if self
            .stream_name
            .as_deref()
            .is_some_and(|n| !super::valid_kvs_name(n))
        {
            bad(
                "upload",
                "stream_name",
                "must be 1-256 letters, digits, '_', '.' or '-'".into(),
            );
        }
    }
}

/// `s3://bucket[/prefix]` with a bucket name S3 accepts.
fn valid_s3_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("s3://") else {
        return false;
    };
    let bucket = rest.split('/').next().unwrap_or_default();
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_settings_are_checked() {
        let mut u = Upload::default();
        let mut keys = Vec::new();
        u.validate(&mut |_, k, _| keys.push(k));
        assert!(keys.is_empty(), "{keys:?}");
        u.images_s3_uri = Some("s3://porch-images".into());
        let mut keys = Vec::new();
        u.validate(&mut |_, k, _| keys.push(k));
        assert_eq!(keys, ["images_s3_uri"], "images need upload.enabled");
        u.enabled = true;
        u.images_s3_uri = Some("s3://Bad_Bucket".into());
        u.images_interval_ms = 100;
        u.images_width = 4000;
        u.sns_topic_arn = Some("my-topic".into());
        let mut keys = Vec::new();
        u.validate(&mut |_, k, _| keys.push(k));
        assert_eq!(
            keys,
            [
                "images_s3_uri",
                "images_interval_ms",
                "images_width",
                "sns_topic_arn"
            ]
        );
        for good in ["s3://porch-images", "s3://porch.images-1/cam/front"] {
            assert!(valid_s3_uri(good), "{good}");
        }
        for bad in [
            "porch",
            "s3://ab",
            "s3://-x-y",
            "s3:///prefix",
            "https://b/x",
        ] {
            assert!(!valid_s3_uri(bad), "{bad}");
        }
    }
}
