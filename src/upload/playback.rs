//! The `playback` command: an HLS URL for an event's producer-timestamp range (or the
//! live stream) on the camera's KVS stream, for MQTT, the HTTP API and the data channel.

use serde_json::{json, Value};

use crate::index::Index;
use crate::kvs::{stream, Aws};

/// Answers `playback` commands (upload on).
#[derive(Debug, Clone)]
pub struct Playback {
    aws: Aws,
    stream: String,
    index: Index,
}

impl Playback {
    pub fn new(aws: Aws, stream: String, index: Index) -> Self {
        Self { aws, stream, index }
    }

    /// `{"url","stream","expires_s","event_id","start","end"}`; the error says what is
    /// wrong for the person who asked.
    pub async fn url(&self, event_id: Option<&str>, expires_s: u32) -> Result<Value, String> {
        let range = match event_id {
            None => None,
            Some(id) => Some(
                self.index
                    .event_range(id)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("no event {id} with clips on this camera"))?,
            ),
        };
        let url = stream::hls_url(&self.aws, &self.stream, range, expires_s)
            .await
            .map_err(|e| format!("cloud playback: {e}"))?;
        Ok(json!({
            "url": url,
            "stream": self.stream,
            "expires_s": expires_s,
            "event_id": event_id,
            "start": range.map(|r| r.0),
            "end": range.map(|r| r.1),
        }))
    }
}
