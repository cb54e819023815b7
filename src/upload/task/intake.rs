//! Cutting fragments from what arrives live: the recorder's per-clip feed (events
//! mode) or the camera's frames (continuous mode); each GOP is recorded, cached and queued.

use super::*;

impl Task {
    pub(super) async fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Frame {
                clip_id,
                index,
                frame,
            } => {
                let entry = self
                    .clips
                    .entry(Arc::clone(&clip_id))
                    .or_insert_with(|| (GopAssembler::for_clip(), Instant::now()));
                entry.1 = Instant::now();
                let was_broken = entry.0.is_broken();
                let done = entry.0.push(index, frame);
                if entry.0.is_broken() && !was_broken {
                    warn!(clip_id = %clip_id, "uploader fell behind the recorder; the clip's rest will be read from its file");
                }
                if let Some(gop) = done {
                    self.new_gop(Some(&clip_id), gop).await;
                }
            }
            Feed::ClipEnd { clip_id, frames } => {
                if let Some((mut asm, _)) = self.clips.remove(&clip_id) {
                    if let Some(gop) = asm.finish(frames) {
                        self.new_gop(Some(&clip_id), gop).await;
                    }
                }
            }
        }
    }

    pub(super) async fn on_live(&mut self, frame: EncodedFrame) {
        let lost = self.live.as_ref().map_or(0, Subscription::dropped);
        self.live_index += lost.saturating_sub(self.live_lost);
        self.live_lost = lost;
        let index = self.live_index;
        self.live_index += 1;
        if let Some(gop) = self.live_gop.push(index, frame) {
            self.new_gop(None, gop).await;
        }
    }

    /// Records a fragment cut from the live feed and queues it.
    pub(super) async fn new_gop(&mut self, clip_id: Option<&str>, gop: Gop) {
        let (Some(first), Some(last)) = (gop.frames.first(), gop.frames.last()) else {
            return;
        };
        let new = NewFragment {
            clip_id,
            first_frame: gop.first_frame,
            frames: gop.frames.len() as u64,
            start_at: first.captured_at,
            end_at: last.captured_at,
        };
        let id = match self.deps.index.insert_fragment(&new).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "uploader: cannot record a fragment; it will be read from the clip later");
                return;
            }
        };
        self.cache.insert(id, gop.frames);
        let row = FragmentRow {
            id,
            clip_id: clip_id.map(str::to_owned),
            first_frame: new.first_frame,
            frames: new.frames,
            start_at: new.start_at,
            end_at: new.end_at,
        };
        self.enqueue(vec![row], true).await;
    }
}
