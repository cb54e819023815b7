//! The KVS uploader: turns event clips (or, in continuous mode, the whole stream) into
//! one-GOP fragments recorded in the index, and sends them over PutMedia until each is
//! PERSISTED, resuming from the index after an outage or a restart.
//!
//! While an event is live the recorder hands every frame it writes to a clip to the
//! uploader (never blocking: if the uploader falls behind, the clip's remaining frames
//! are read back from its file once it is finished). Backlog goes oldest first, several
//! GOPs of one clip per fragment (up to 10 s), at most 5 fragments a second.

pub mod ack;
mod cache;
pub mod gop;
pub mod machine;
pub mod mkv;
mod playback;
pub mod putmedia;
pub mod ring;
pub mod sound;
pub mod source;
mod task;

use std::path::PathBuf;

use crate::aws::Aws;
use crate::index::{FragmentRow, Index};
use crate::media::{AudioBus, FrameBus};
use crate::metrics::UploadMetrics;

pub use playback::CloudPlayback;
pub use task::spawn;

/// A fragment made of several GOPs (backlog) spans at most this much.
pub const MAX_FRAGMENT_MS: i64 = 10_000;

/// What the uploader is told by the config.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub stream_name: String,
    pub retention_hours: u32,
    pub create_if_missing: bool,
    /// Every GOP of the camera, not just events.
    pub continuous: bool,
    /// The camera records sound: a stream created now is declared H.264 + AAC.
    pub audio: bool,
    /// Still images to S3: the stream is configured for them and every fragment asks.
    pub images: Option<crate::aws::images::ImageSettings>,
    /// The SNS topic KVS notifies of each clip's first fragment.
    pub sns_topic_arn: Option<String>,
    /// Continuous mode: bytes of GOPs kept on disk until persisted (0: memory only).
    pub continuous_buffer_bytes: u64,
}

/// What it works with.
#[derive(Debug, Clone)]
pub struct UploadDeps {
    pub aws: Aws,
    pub index: Index,
    pub data_dir: PathBuf,
    /// The camera's frames (continuous mode).
    pub frames: FrameBus,
    /// The camera's sound as AAC, when audio is on (continuous mode).
    pub audio: Option<AudioBus>,
    pub metrics: UploadMetrics,
    /// Whether the wall clock is set, and how to correct times recorded before
    /// (none: trusted as it is).
    pub clock: Option<tokio::sync::watch::Receiver<crate::clock::ClockState>>,
}

/// Groups pending rows (oldest first) into fragments: consecutive GOPs of one clip, up
/// to `MAX_FRAGMENT_MS`, so a backlog drains at several times real speed within the
/// service's 5 fragments a second.
pub fn group(rows: Vec<FragmentRow>) -> Vec<Vec<FragmentRow>> {
    let mut out: Vec<Vec<FragmentRow>> = Vec::new();
    for row in rows {
        if let Some(last) = out.last_mut() {
            let (head, tail) = (&last[0], &last[last.len() - 1]);
            let joins = row.clip_id.is_some()
                && row.clip_id == tail.clip_id
                && row.first_frame == tail.first_frame + tail.frames
                && (row.end_at - head.start_at).num_milliseconds() <= MAX_FRAGMENT_MS;
            if joins {
                last.push(row);
                continue;
            }
        }
        out.push(vec![row]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn row(id: i64, clip: Option<&str>, first: u64, start_ms: i64) -> FragmentRow {
        FragmentRow {
            id,
            clip_id: clip.map(str::to_owned),
            first_frame: first,
            frames: 60,
            start_at: DateTime::<Utc>::from_timestamp_millis(start_ms).unwrap(),
            end_at: DateTime::<Utc>::from_timestamp_millis(start_ms + 1_967).unwrap(),
        }
    }

    #[test]
    fn backlog_fragments_join_consecutive_gops_of_a_clip_up_to_ten_seconds() {
        let rows = vec![
            row(1, Some("a"), 0, 0),
            row(2, Some("a"), 60, 2_000),
            row(3, Some("a"), 120, 4_000),
            row(4, Some("a"), 180, 6_000),
            row(5, Some("a"), 240, 8_000), // would end at 9 967: still in
            row(6, Some("a"), 300, 10_000), // past 10 s: a new fragment
            row(7, Some("b"), 0, 12_000),  // another clip
            row(8, Some("b"), 120, 14_000), // not contiguous (a gap)
            row(9, None, 0, 16_000),       // continuous mode: alone
            row(10, None, 60, 18_000),
        ];
        let ids: Vec<Vec<i64>> = group(rows)
            .iter()
            .map(|g| g.iter().map(|r| r.id).collect())
            .collect();
        assert_eq!(
            ids,
            [
                vec![1, 2, 3, 4, 5],
                vec![6],
                vec![7],
                vec![8],
                vec![9],
                vec![10]
            ]
        );
    }
}
