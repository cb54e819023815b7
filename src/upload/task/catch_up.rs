//! Finished clips: fragments for the frames the live feed did not cover (the uploader
//! was behind, or a restart or power cut came first), and each clip's final upload state.

use super::*;

impl Task {
    /// Finished clips: fragments for frames the live feed did not cover, and the clip's
    /// upload state once nothing is pending.
    pub(super) async fn catch_up(&mut self, enqueue: bool) {
        let clips = match self.deps.index.clips_to_upload().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "uploader: cannot list clips to upload");
                return;
            }
        };
        for clip_id in clips {
            if self.clips.contains_key(clip_id.as_str()) {
                continue; // its live feed is still being cut
            }
            let rows = match self.owed_rows(&clip_id).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(clip_id, error = %e, "uploader: cannot read the clip; it will not be uploaded");
                    let _ = self
                        .deps
                        .index
                        .set_upload_state(&clip_id, upload_state::FAILED)
                        .await;
                    continue;
                }
            };
            if rows.is_empty() {
                if let Ok(Some(state)) = self.deps.index.settle_clip_upload(&clip_id).await {
                    info!(clip_id, state, "clip upload settled");
                }
            } else if enqueue {
                info!(
                    clip_id,
                    fragments = rows.len(),
                    "uploading the rest of the clip from its file"
                );
                for unit in group(rows) {
                    self.enqueue(unit, false).await;
                }
            }
        }
    }

    /// Rows for the frames of a finished clip that no fragment covers yet.
    pub(super) async fn owed_rows(&mut self, clip_id: &str) -> Result<Vec<FragmentRow>, String> {
        let index = self.deps.index.clone();
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
        let path = source::clip_path(&self.deps.data_dir, &clip.path).map_err(|e| e.to_string())?;
        let scan = self.scan(&path).map_err(|e| e.to_string())?;
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

    /// The file's sample table, reused while the file does not change.
    pub(super) fn scan(&mut self, path: &std::path::Path) -> Result<Arc<Scan>, fmp4::Fmp4Error> {
        let len = std::fs::metadata(path)?.len();
        if let Some((p, l, s)) = &self.scan {
            if p == path && *l == len {
                return Ok(Arc::clone(s));
            }
        }
        let scan = Arc::new(fmp4::scan(path)?);
        self.scan = Some((path.to_owned(), len, Arc::clone(&scan)));
        Ok(scan)
    }
}
