//! One clip being written: its frames and sound into the file (and onto the clip feed),
//! then finishing it (muxer EOS, fsync, rename, index row) in the background. An index
//! write that still fails after its retries (a full disk) comes back as `Owed`, to be
//! made once the disk takes writes again, so the index and the files end in agreement.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::clip::{ClipError, ClipWriter};
use super::feed::ClipFeed;
use super::publish::retried;
use super::recovery;
use crate::clock::ClockState;
use crate::index::{ClipStats, ClipStatus, Index, IndexError};
use crate::media::{AudioFrame, EncodedFrame};

pub(super) struct OpenClip {
    /// The clip's file and index id.
    pub id: String,
    /// The same, for the clip feed.
    pub feed_id: Arc<str>,
    /// The id the tracker knows it by: a clip split by a stream restart keeps it.
    pub tracker_id: String,
    pub event_id: String,
    /// Pipeline generation of the frames in it; a new generation starts a new file.
    pub generation: Option<u32>,
    pub writer: ClipWriter,
    /// Relative path of the final file.
    pub rel: String,
    /// Relative path of its thumbnail, if one was written.
    pub thumbnail: Option<String>,
    /// Capture time of its first frame (as recorded in the index).
    pub start_at: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub frames_lost: u64,
    /// The follower missed some sound: it gets nothing more of this clip live (it sees
    /// the clip end short and reads the rest, with its sound, from the file).
    pub feed_cut: bool,
    /// The picture is complete (past `until`); the clip waits, at most `CLOSING_WAIT`,
    /// for the sound up to `until`, which arrives a little later.
    pub closing: Option<Instant>,
    /// When it was opened: a clip that has been writing for a while proves the disk
    /// takes writes again.
    pub opened: Instant,
}

impl OpenClip {
    /// Writes a frame (and hands it to the feed); `false` when the file failed and the
    /// event must continue in a new clip.
    pub fn write(&mut self, frame: &EncodedFrame, feed: Option<&ClipFeed>) -> bool {
        let index = self.writer.frames();
        if let Err(e) = self.writer.push(frame) {
            error!(clip_id = %self.id, error = %e, "cannot write frame; continuing in a new clip");
            return false;
        }
        self.generation = Some(frame.generation);
        if self.writer.frames() > index && !self.feed_cut {
            if let Some(feed) = feed {
                // A follower that is behind sees the gap and reads the rest from the file.
                feed.frame(&self.feed_id, index, frame);
            }
        }
        true
    }

    /// Writes a sound frame (and hands it to the feed); a failure ends the clip's sound,
    /// never its picture.
    pub fn write_audio(&mut self, frame: &AudioFrame, feed: Option<&ClipFeed>, now: Instant) {
        if !self.writer.takes_audio() {
            return;
        }
        match self.writer.push_audio(frame, now) {
            Ok(true) => {
                if let Some(feed) = feed.filter(|_| !self.feed_cut) {
                    self.feed_cut = !feed.audio(&self.feed_id, frame);
                }
            }
            Ok(false) => {}
            Err(e) => {
                error!(clip_id = %self.id, error = %e, "cannot write sound; the clip goes on without it");
                self.writer.end_audio();
            }
        }
        if !self.writer.takes_audio() {
            self.sound_ended(feed);
        }
    }

    /// Ends the clip's sound track (the picture goes on) and tells the follower.
    pub fn end_audio(&mut self, feed: Option<&ClipFeed>) {
        self.writer.end_audio();
        self.sound_ended(feed);
    }

    fn sound_ended(&self, feed: Option<&ClipFeed>) {
        if let Some(feed) = feed.filter(|_| !self.feed_cut) {
            feed.audio_end(&self.feed_id);
        }
    }
}

/// What the index must say of a clip, when saying it failed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum OwedWrite {
    /// The clip is finished (or repaired) at `rel`.
    Finish {
        rel: String,
        status: ClipStatus,
        stats: ClipStats,
        thumbnail: Option<String>,
    },
    /// Nothing of the clip is on disk.
    Delete,
}

/// An index write about a clip that failed after its retries.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Owed {
    pub id: String,
    pub event_id: String,
    pub start_at: DateTime<Utc>,
    pub write: OwedWrite,
}

impl Owed {
    /// Makes the write. A clip whose row was never written (its insert failed too) gets
    /// one now.
    pub async fn make(&self, index: &Index, now: DateTime<Utc>) -> Result<(), IndexError> {
        let OwedWrite::Finish {
            rel,
            status,
            stats,
            thumbnail,
        } = &self.write
        else {
            return index.set_clip_status(&self.id, ClipStatus::Deleted).await;
        };
        let finished = index
            .finish_clip(&self.id, rel, *status, stats, thumbnail.as_deref())
            .await;
        if !matches!(finished, Err(IndexError::NoSuchClip(_))) {
            return finished;
        }
        index
            .insert_clip(&self.id, &self.event_id, rel, self.start_at, now)
            .await?;
        index
            .finish_clip(&self.id, rel, *status, stats, thumbnail.as_deref())
            .await
    }

    /// Makes the write, trying again for a few seconds while the index is busy or full;
    /// gives itself back when it still failed.
    pub async fn make_or_owe(self, index: &Index, now: DateTime<Utc>) -> Option<Owed> {
        match retried("recording a clip", || self.make(index, now)).await {
            Ok(()) => None,
            Err(e) if e.is_retryable() => {
                warn!(clip_id = %self.id, error = %e, "the index cannot record the clip now; trying again later");
                Some(self)
            }
            Err(e) => {
                error!(clip_id = %self.id, error = %e, "could not record the clip");
                None
            }
        }
    }
}

/// Removes a file that may not exist.
async fn remove(path: &Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e, "could not remove a leftover file"),
    }
}

/// Finishes a clip: muxer EOS, fsync, rename, index row (or repair of what reached the
/// disk). Its times are those of its first and last frames, corrected when they were
/// captured before the clock was set. An attempt that left nothing worth keeping leaves
/// no file behind, thumbnail included. Returns the index write it still owes.
pub(super) async fn finish_clip(
    index: &Index,
    data_dir: &Path,
    clip: OpenClip,
    now: DateTime<Utc>,
    clock: &ClockState,
) -> Option<Owed> {
    let OpenClip {
        id,
        event_id,
        writer,
        rel,
        thumbnail,
        start_at,
        frames_lost,
        ..
    } = clip;
    let part = writer.part().to_owned();
    let result = tokio::task::spawn_blocking(move || writer.finish()).await;
    let write = match result {
        Ok(Ok((_, mut stats))) => {
            stats.frames_lost += frames_lost;
            stats.start_at = clock.correct(stats.start_at);
            stats.end_at = clock.correct(stats.end_at);
            info!(clip_id = %id, frames = stats.frame_count, duration_s = stats.duration.as_secs_f64(), "clip finished");
            OwedWrite::Finish {
                rel,
                status: ClipStatus::Complete,
                stats,
                thumbnail: thumbnail.clone(),
            }
        }
        Ok(Err(ClipError::Empty)) => {
            warn!(clip_id = %id, "clip had no frames; dropped");
            OwedWrite::Delete
        }
        Ok(Err(e)) => {
            // The muxer failed (disk full, stream change): keep what reached the disk.
            error!(clip_id = %id, error = %e, "clip could not be finished; repairing what was written");
            let repaired = recovery::repair_now(&id, &part, start_at).await?;
            match repaired {
                Some((path, stats)) => OwedWrite::Finish {
                    rel: recovery::rel(data_dir, &path),
                    status: ClipStatus::Recovered,
                    stats,
                    thumbnail: thumbnail.clone(),
                },
                None => OwedWrite::Delete,
            }
        }
        Err(e) => {
            error!(clip_id = %id, error = %e, "clip finishing panicked");
            return None;
        }
    };
    if let (OwedWrite::Delete, Some(thumbnail)) = (&write, &thumbnail) {
        remove(&data_dir.join(thumbnail)).await;
    }
    let owed = Owed {
        id,
        event_id,
        start_at,
        write,
    };
    owed.make_or_owe(index, now).await
}
