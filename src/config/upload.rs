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
    pub mode: String,
    /// The KVS stream; empty means aws.thing_name. Default empty.
    pub stream_name: String,
    /// Hours KVS keeps the video, 1–87600 (needed for playback). Default 24.
    pub retention_hours: u32,
    /// Create the stream when it does not exist. Default true.
    pub create_if_missing: bool,
}

impl Default for Upload {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: "events".into(),
            stream_name: String::new(),
            retention_hours: 24,
            create_if_missing: true,
        }
    }
}

impl Upload {
    /// The stream name: `stream_name`, else the thing name.
    pub fn stream<'a>(&'a self, thing: &'a str) -> &'a str {
        if self.stream_name.is_empty() {
            thing
        } else {
            &self.stream_name
        }
    }

    /// `mode = "continuous"`.
    pub fn continuous(&self) -> bool {
        self.mode == "continuous"
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if !["events", "continuous"].contains(&self.mode.as_str()) {
            bad(
                "upload",
                "mode",
                format!("must be \"events\" or \"continuous\", got {:?}", self.mode),
            );
        }
        in_range(
            bad,
            "upload",
            "retention_hours",
            self.retention_hours,
            1,
            87_600,
        );
        if !super::valid_kvs_name(&self.stream_name) {
            bad(
                "upload",
                "stream_name",
                "must be 1-256 letters, digits, '_', '.' or '-'".into(),
            );
        }
    }
}
