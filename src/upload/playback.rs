//! The `playback` command: an HLS URL for an event's producer-timestamp range (or the
//! live stream) on the camera's KVS stream, for MQTT, the HTTP API and the data channel.

use crate::aws::{stream, Aws};
use crate::commands::{CommandError, PlaybackUrl};
use crate::index::Index;

/// Answers `playback` commands (upload on).
#[derive(Debug, Clone)]
pub struct CloudPlayback {
    aws: Aws,
    stream: String,
    index: Index,
}

impl CloudPlayback {
    pub fn new(aws: Aws, stream: String, index: Index) -> Self {
        Self { aws, stream, index }
    }

    /// The HLS URL of an event's range (or of the live stream); the error says what is
    /// wrong for the person who asked.
    pub async fn url(
        &self,
        event_id: Option<&str>,
        expires_s: u32,
    ) -> Result<PlaybackUrl, CommandError> {
        let range = match event_id {
            None => None,
            Some(id) => Some(
                self.index
                    .event_range(id)
                    .await
                    .map_err(|e| CommandError::Index(e.to_string()))?
                    .ok_or_else(|| CommandError::NoSuchEvent(id.to_owned()))?,
            ),
        };
        let url = stream::hls_url(&self.aws, &self.stream, range, expires_s)
            .await
            .map_err(|e| CommandError::Cloud(e.to_string()))?;
        Ok(PlaybackUrl {
            url,
            stream: self.stream.clone(),
            expires_s,
            event_id: event_id.map(str::to_owned),
            start: range.map(|r| r.0),
            end: range.map(|r| r.1),
        })
    }
}
