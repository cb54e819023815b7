//! `[upload]`: the Kinesis Video stream that event clips go to, and cloud playback.

use serde::{Deserialize, Serialize};

/// `[upload]`: the KVS stream.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upload {
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

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if !(1..=87_600).contains(&self.retention_hours) {
            bad(
                "upload",
                "retention_hours",
                format!("must be between 1 and 87600, got {}", self.retention_hours),
            );
        }
        if !super::valid_kvs_name(&self.stream_name) {
            bad(
                "upload",
                "stream_name",
                "must be 1-256 letters, digits, '_', '.' or '-'".into(),
            );
        }
    }
}
