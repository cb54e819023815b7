//! Pictures on the snapshot topic: the latest JPEG for the `snapshot` command, and each
//! event's picture.

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

/// Publishes an event's picture (scaled down when over the payload limit).
pub(super) async fn event_picture(
    shot: crate::recorder::BestShot,
    topic: String,
    tx: mpsc::Sender<(String, Vec<u8>)>,
) {
    let jpeg = shot.jpeg.clone();
    let fitted = tokio::task::spawn_blocking(move || {
        crate::media::jpeg::shrink(&jpeg, payload::MAX_PAYLOAD)
    })
    .await;
    match fitted {
        Ok(Ok(jpeg)) => {
            tracing::debug!(event_id = %shot.event_id, label = %shot.label, bytes = jpeg.len(), "event picture published");
            let _ = tx.send((topic, jpeg)).await;
        }
        Ok(Err(e)) => {
            tracing::warn!(event_id = %shot.event_id, error = %e, "the event's picture does not fit in an MQTT message")
        }
        Err(_) => {}
    }
}
