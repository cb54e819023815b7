//! The recorder's open clips: opening one from the pre-roll, writing frames to it (and
//! to the clip feed), finishing it in the background, and the periodic syncs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::clip::{ClipError, ClipWriter, AUDIO_IDLE};
use super::feed::ClipFeed;
use super::publish;
use super::recovery;
use super::retry::Reopen;
use super::task::Recorder;
use crate::clock::ClockState;
use crate::index::{upload_state, ClipStatus, Index};
use crate::media::{AudioFrame, EncodedFrame};

/// Sound kept and offered from before a clip's first keyframe: the frame nearest the
/// picture's start may begin a little before it.
pub(super) const SOUND_MARGIN: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);

/// How long a clip whose picture is complete waits for the rest of its sound.
const CLOSING_WAIT: Duration = Duration::from_millis(500);

/// How often ended events still owed their `end` message are looked for.
const OWED_CHECK: Duration = Duration::from_secs(10);

/// A clip past its end time with no newer frame is finished after this long anyway.
const END_GRACE: Duration = Duration::from_secs(2);

pub(super) struct OpenClip {
    /// The clip's file and index id.
    pub id: String,
    /// The same, for the clip feed.
    feed_id: Arc<str>,
    /// The id the tracker knows it by: a clip split by a stream restart keeps it.
    pub tracker_id: String,
    pub event_id: String,
    /// Pipeline generation of the frames in it; a new generation starts a new file.
    pub generation: Option<u32>,
    pub(super) writer: ClipWriter,
    /// Relative path of the final file.
    rel: String,
    thumbnail: Option<String>,
    pub until: Option<DateTime<Utc>>,
    pub frames_lost: u64,
    /// The follower missed some sound: it gets nothing more of this clip live (it sees
    /// the clip end short and reads the rest, with its sound, from the file).
    feed_cut: bool,
    /// The picture is complete (past `until`); the clip waits, at most `CLOSING_WAIT`,
    /// for the sound up to `until`, which arrives a little later.
    pub closing: Option<Instant>,
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

impl Recorder {
    /// Opens a clip file from the keyframe at or before `from` (frames of the newest
    /// stream generation only: a file holds one stream).
    pub(super) async fn open_clip(
        &mut self,
        event_id: &str,
        tracker_id: String,
        id: String,
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) {
        let day = from.format("%Y/%m/%d");
        let rel = format!("clips/{day}/{id}.mp4");
        let path = self.deps.data_dir.join(&rel);
        // Sound goes in when it is flowing now (a dead microphone would stall the muxer).
        let sound = self
            .preroll
            .newest()
            .and_then(|t| {
                self.sound
                    .format_since(t - chrono::Duration::from_std(AUDIO_IDLE).unwrap_or_default())
            })
            .cloned();
        // Creating the file and starting the muxer touch the disk: off the runtime.
        let created = {
            let (path, sound) = (path.clone(), sound.clone());
            tokio::task::spawn_blocking(move || ClipWriter::create(&path, sound.as_ref())).await
        };
        let created = created
            .map_err(|e| format!("clip writer: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let mut writer = match created {
            Ok(w) => w,
            Err(why) => {
                let again = Reopen {
                    event_id: event_id.to_owned(),
                    tracker_id,
                    until,
                };
                self.clip_failed(again, &why);
                return;
            }
        };
        let generation = self.preroll.since(from).last().map(|f| f.generation);
        let backlog = self.preroll.since(from).map(|f| f.data.len() as u64).sum();
        writer.allow_backlog(backlog);
        let mut written = Vec::new();
        for f in self
            .preroll
            .since(from)
            .filter(|f| Some(f.generation) == generation)
        {
            let index = writer.frames();
            if let Err(e) = writer.push(f) {
                error!(clip_id = %id, error = %e, "cannot write pre-roll");
                break;
            }
            if writer.frames() > index {
                written.push((index, f.clone()));
            }
        }
        let start = self
            .preroll
            .since(from)
            .find(|f| Some(f.generation) == generation && f.keyframe)
            .map_or(from, |f| f.captured_at);
        let now = self.deps.clocks.monotonic();
        let mut sound_written = Vec::new();
        for a in self.sound.since(start - SOUND_MARGIN) {
            match writer.push_audio(a, now) {
                Ok(true) => sound_written.push(a.clone()),
                Ok(false) => {}
                Err(e) => {
                    error!(clip_id = %id, error = %e, "cannot write pre-roll sound");
                    writer.end_audio();
                    break;
                }
            }
        }
        let part = format!("{rel}.part");
        let index = &self.deps.index;
        if let Err(e) = index
            .insert_clip(
                &id,
                event_id,
                &part,
                self.clock_applied.correct(start),
                self.now(),
            )
            .await
        {
            error!(clip_id = %id, error = %e, "could not record the clip in the index");
        }
        let feed_id: Arc<str> = id.as_str().into();
        if let Some(feed) = &self.deps.feed {
            if let Err(e) = index.set_upload_state(&id, upload_state::PENDING).await {
                error!(clip_id = %id, error = %e, "could not mark the clip for upload");
            }
            feed.clip_start(&feed_id, sound.as_ref().filter(|_| writer.takes_audio()));
            for (index, f) in &written {
                feed.frame(&feed_id, *index, f);
            }
            for a in &sound_written {
                feed.audio(&feed_id, a);
            }
            if sound.is_some() && !writer.takes_audio() {
                feed.audio_end(&feed_id);
            }
        }
        let thumbnail = self.write_thumbnail(&path, &id).await;
        info!(clip_id = %id, event_id, pre_roll_frames = writer.frames(), sound = writer.takes_audio(), "clip started");
        if self.retry.succeeded() {
            info!(clip_id = %id, event_id, "recording resumed");
        }
        self.open.push(OpenClip {
            feed_id,
            id,
            tracker_id,
            event_id: event_id.to_owned(),
            generation,
            writer,
            rel,
            thumbnail,
            until,
            frames_lost: 0,
            feed_cut: false,
            closing: None,
        });
    }

    /// A clip could not be started or written: the event goes on without a file until
    /// the retry (with backoff, logged once per run of failures).
    pub(super) fn clip_failed(&mut self, again: Reopen, why: &str) {
        let event_id = again.event_id.clone();
        if let Some(disk_full) = &self.deps.disk_full {
            disk_full.notify_one();
        }
        let (delay, first) =
            self.retry
                .failed(again, self.deps.clocks.monotonic(), fastrand::f64());
        if first {
            error!(event_id, error = why, retry_in_ms = delay.as_millis() as u64,
                "cannot record a clip (disk full or failing?); the event goes on and recording is tried again with backoff");
        } else {
            tracing::debug!(
                event_id,
                error = why,
                retry_in_ms = delay.as_millis() as u64,
                "clip still cannot be written"
            );
        }
    }

    /// Writes the latest snapshot beside the clip; returns its relative path.
    async fn write_thumbnail(&self, clip_path: &Path, id: &str) -> Option<String> {
        let jpeg = self.deps.snapshot.borrow().as_ref()?.jpeg.clone();
        let path = clip_path.with_extension("jpg");
        let rel = path
            .strip_prefix(&self.deps.data_dir)
            .ok()?
            .to_string_lossy()
            .into_owned();
        match tokio::fs::write(&path, &jpeg).await {
            Ok(()) => Some(rel),
            Err(e) => {
                warn!(clip_id = %id, error = %e, "could not write the thumbnail");
                None
            }
        }
    }

    /// Finishes a clip in the background: muxer EOS, fsync, rename, index row.
    pub(super) fn finish(&mut self, clip: OpenClip) {
        if let Some(feed) = &self.deps.feed {
            feed.clip_end(&clip.feed_id, clip.writer.frames());
        }
        let index = self.deps.index.clone();
        let data_dir = self.deps.data_dir.clone();
        let outbox = self.deps.outbox.clone();
        let now = self.now();
        let clock = self.clock_applied.clone();
        self.finishing.spawn(async move {
            let event_id = clip.event_id.clone();
            finish_clip(&index, &data_dir, clip, now, &clock).await;
            // The event's end message goes out once its last clip is finished.
            if let Some(outbox) = outbox {
                publish::queue_end(&index, &outbox, &event_id).await;
            }
        });
    }

    /// Finishes clips whose end passed without a newer frame; syncs the others' data.
    pub(super) async fn housekeeping(&mut self) {
        let now = self.now();
        let grace = chrono::Duration::from_std(END_GRACE).unwrap_or_default();
        let mono = self.deps.clocks.monotonic();
        let mut i = 0;
        while i < self.open.len() {
            let closed = self.open[i]
                .closing
                .is_some_and(|t| mono.duration_since(t) >= CLOSING_WAIT);
            if closed || self.open[i].until.is_some_and(|u| now > u + grace) {
                let clip = self.open.remove(i);
                self.finish(clip);
            } else {
                i += 1;
            }
        }
        let now = self.deps.clocks.monotonic();
        for clip in &mut self.open {
            if clip.writer.audio_idle(now) {
                warn!(clip_id = %clip.id, "the sound stopped; the clip goes on without it");
                clip.end_audio(self.deps.feed.as_ref());
            }
            if let Some(file) = clip.writer.due_sync(now) {
                tokio::task::spawn_blocking(move || file.sync_data());
            }
        }
        if now.duration_since(self.owed_checked) >= OWED_CHECK {
            self.owed_checked = now;
            if let Some(outbox) = &self.deps.outbox {
                publish::queue_owed_ends(&self.deps.index, outbox).await;
            }
        }
    }
}

/// Muxer EOS, fsync, rename, index row (or repair of what reached the disk).
/// Finishes a clip: its times are those of its first and last frames, corrected when
/// they were captured before the clock was set.
async fn finish_clip(
    index: &Index,
    data_dir: &Path,
    clip: OpenClip,
    now: DateTime<Utc>,
    clock: &ClockState,
) {
    let OpenClip {
        id,
        writer,
        rel,
        thumbnail,
        frames_lost,
        ..
    } = clip;
    let part = writer.part().to_owned();
    let result = tokio::task::spawn_blocking(move || writer.finish()).await;
    match result {
        Ok(Ok((_, mut stats))) => {
            stats.frames_lost += frames_lost;
            stats.start_at = clock.correct(stats.start_at);
            stats.end_at = clock.correct(stats.end_at);
            info!(clip_id = %id, frames = stats.frame_count, duration_s = stats.duration.as_secs_f64(), "clip finished");
            if let Err(e) = index
                .finish_clip(
                    &id,
                    &rel,
                    ClipStatus::Complete,
                    &stats,
                    thumbnail.as_deref(),
                )
                .await
            {
                error!(clip_id = %id, error = %e, "could not record the finished clip");
            }
        }
        Ok(Err(ClipError::Empty)) => {
            warn!(clip_id = %id, "clip had no frames; dropped");
            let _ = index.set_clip_status(&id, ClipStatus::Deleted).await;
        }
        Ok(Err(e)) => {
            // The muxer failed (disk full, stream change): keep what reached the disk.
            error!(clip_id = %id, error = %e, "clip could not be finished; repairing what was written");
            let start = match index.clip(&id).await {
                Ok(row) => row.start_at,
                Err(_) => now,
            };
            recovery::repair_now(index, data_dir, &id, &part, start).await;
        }
        Err(e) => error!(clip_id = %id, error = %e, "clip finishing panicked"),
    }
}
