//! The `snapshot` command over MQTT: the latest JPEG published on its own topic.

use tokio::sync::{mpsc, watch};

use super::payload;
use crate::commands::{CommandError, Outcome};
use crate::media::Snapshot;

/// Publishes the latest snapshot (scaled down when over 128 KB) and says where.
pub(super) async fn snapshot_reply(
    snapshot: &watch::Receiver<Option<Snapshot>>,
    topic: String,
    tx: &mpsc::Sender<(String, Vec<u8>)>,
) -> Result<Outcome, CommandError> {
    let snap = snapshot.borrow().clone().ok_or(CommandError::NoSnapshot)?;
    let jpeg = if snap.jpeg.len() > payload::MAX_PAYLOAD {
        let big = snap.jpeg.clone();
        tokio::task::spawn_blocking(move || crate::media::jpeg::shrink(&big, payload::MAX_PAYLOAD))
            .await
            .map_err(|_| CommandError::SnapshotScaling("the scaler failed".into()))?
            .map_err(|e| CommandError::SnapshotScaling(e.to_string()))?
    } else {
        snap.jpeg.to_vec()
    };
    let bytes = jpeg.len();
    tx.send((topic.clone(), jpeg))
        .await
        .map_err(|_| CommandError::Closing)?;
    Ok(Outcome::SnapshotPublished {
        topic,
        bytes,
        captured_at: snap.captured_at,
    })
}
