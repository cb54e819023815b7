//! Finished clips: fragments for the frames the live feed did not cover (the uploader
//! was behind, or a restart or power cut came first), and each clip's final upload state.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::store::FrameStore;
use crate::index::{upload_state, FragmentRow, Index, NewFragment};
use crate::upload::source;

/// Finished clips (not those in `cutting`, whose live feed is still cut): rows for the
/// frames no fragment covers yet, recorded in the index and returned oldest first, and
/// the clip's upload state settled once nothing is pending.
pub(super) async fn catch_up(
    index: &Index,
    store: &mut FrameStore,
    data_dir: &Path,
    cutting: &[Arc<str>],
) -> Vec<FragmentRow> {
    let clips = match index.clips_to_upload().await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "uploader: cannot list clips to upload");
            return Vec::new();
        }
    };
    let mut owed = Vec::new();
    for clip_id in clips {
        if cutting.iter().any(|c| **c == *clip_id) {
            continue;
        }
        let rows = match owed_rows(index, store, data_dir, &clip_id).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(clip_id, error = %e, "uploader: cannot read the clip; it will not be uploaded");
                let _ = index.set_upload_state(&clip_id, upload_state::FAILED).await;
                continue;
            }
        };
        if rows.is_empty() {
            if let Ok(Some(state)) = index.settle_clip_upload(&clip_id).await {
                info!(clip_id, state, "clip upload settled");
            }
        } else {
            info!(
                clip_id,
                fragments = rows.len(),
                "uploading the rest of the clip from its file"
            );
            owed.extend(rows);
        }
    }
    owed
}

/// Rows for the frames of a finished clip that no fragment covers yet.
async fn owed_rows(
    index: &Index,
    store: &mut FrameStore,
    data_dir: &Path,
    clip_id: &str,
) -> Result<Vec<FragmentRow>, String> {
    let clip = index.clip(clip_id).await.map_err(|e| e.to_string())?;
    let existing = index
        .clip_fragments(clip_id)
        .await
        .map_err(|e| e.to_string())?;
    let covered = existing
        .iter()
        .map(|r| r.first_frame + r.frames)
        .max()
        .unwrap_or(0);
    if clip.frame_count.is_some_and(|n| covered >= n.max(0) as u64) {
        return Ok(Vec::new());
    }
    let path = source::clip_path(data_dir, &clip.path).map_err(|e| e.to_string())?;
    let scan = store.scan(&path).await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for owed in source::owed(&scan, covered, clip.start_at) {
        let new = NewFragment {
            clip_id: Some(clip_id),
            first_frame: owed.first_frame,
            frames: owed.frames,
            start_at: owed.start_at,
            end_at: owed.end_at,
        };
        let id = index
            .insert_fragment(&new)
            .await
            .map_err(|e| e.to_string())?;
        rows.push(FragmentRow {
            id,
            clip_id: Some(clip_id.to_owned()),
            first_frame: owed.first_frame,
            frames: owed.frames,
            start_at: owed.start_at,
            end_at: owed.end_at,
        });
    }
    Ok(rows)
}
