//! The recorder's clips, one owner for them all: opening a clip from the pre-roll,
//! writing frames and sound to every open one (and to the clip feed), opening it again
//! with backoff when it cannot be written, finishing clips in the background, and the
//! index writes a full disk refused, made once it takes writes again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinError, JoinSet};
use tracing::{error, info, warn};

use super::clip::{part_path, ClipWriter, AUDIO_IDLE};
use super::feed::ClipFeed;
use super::open_clip::{finish_clip, OpenClip, Owed};
use super::preroll::{AudioRing, PreRoll};
use super::publish;
use super::retry::{ClipRetry, Reopen};
use super::time::RecorderClock;
use crate::backoff::Backoff;
use crate::events::{IdSource, UlidIds};
use crate::index::{upload_state, Index, Outbox};
use crate::media::{AudioFrame, EncodedFrame, Snapshot};

/// Sound kept and offered from before a clip's first keyframe: the frame nearest the
/// picture's start may begin a little before it.
pub(super) const SOUND_MARGIN: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);

/// How long a clip whose picture is complete waits for the rest of its sound.
const CLOSING_WAIT: Duration = Duration::from_millis(500);

/// A clip past its end time with no newer frame is finished after this long anyway.
const END_GRACE: Duration = Duration::from_secs(2);

/// A clip that has been writing this long shows the disk takes writes again (one that
/// cannot write fails at its first fragment, well within it).
const PROVEN_AFTER: Duration = Duration::from_secs(3);

/// Index writes a full disk refused are tried again after this, doubling to the longest.
const OWED_FIRST: Duration = Duration::from_secs(1);
const OWED_LONGEST: Duration = Duration::from_secs(30);

/// Where the clips get their frames and what else they need.
pub(super) struct ClipDeps {
    pub index: Index,
    pub data_dir: PathBuf,
    /// Hands every frame written to a clip to its follower (events upload mode).
    pub feed: Option<ClipFeed>,
    /// The MQTT outbox: an event's `end` is queued once its last clip is finished.
    pub outbox: Option<Outbox>,
    /// Told when a clip cannot be written (a full disk?), so retention runs at once.
    pub disk_full: Option<Arc<Notify>>,
    /// The thumbnail of a clip is the snapshot at its start.
    pub snapshot: watch::Receiver<Option<Snapshot>>,
}

/// What the recorder lends for one call: the pre-roll a clip starts from, the sound
/// beside it, and the time.
pub(super) struct Sources<'a> {
    pub preroll: &'a PreRoll,
    pub sound: &'a AudioRing,
    pub clock: &'a RecorderClock,
}

pub(super) struct Clips {
    deps: ClipDeps,
    open: Vec<OpenClip>,
    finishing: JoinSet<Option<Owed>>,
    /// A clip that could not be written, to be opened again with backoff.
    retry: ClipRetry,
    /// Index writes about finished clips that failed; made again with backoff.
    owed: Vec<Owed>,
    owed_backoff: Backoff,
    owed_next: Option<Instant>,
}

impl Clips {
    pub fn new(deps: ClipDeps) -> Self {
        Self {
            deps,
            open: Vec::new(),
            finishing: JoinSet::new(),
            retry: ClipRetry::default(),
            owed: Vec::new(),
            owed_backoff: Backoff::new(OWED_FIRST, OWED_LONGEST),
            owed_next: None,
        }
    }

    /// The thumbnails of `event_id`'s open clips.
    pub fn thumbnails_of(&self, event_id: &str) -> Vec<PathBuf> {
        let open = self.open.iter().filter(|c| c.event_id == event_id);
        let rel = open.filter_map(|c| c.thumbnail.as_ref());
        rel.map(|r| self.deps.data_dir.join(r)).collect()
    }

    /// Clips being written now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// The recorder lost `n` frames: every open clip has a gap.
    pub fn lost(&mut self, n: u64) {
        for clip in &mut self.open {
            clip.frames_lost += n;
        }
    }

    /// The tracker ended a clip: it closes after its last frame captured by `until`.
    pub fn end(&mut self, tracker_id: &str, until: DateTime<Utc>) {
        if let Some(c) = self.open.iter_mut().find(|c| c.tracker_id == tracker_id) {
            c.until = Some(until);
        }
        self.retry.end(tracker_id, until);
    }

    /// Opens clip `id` from the keyframe at or before `from` (frames of the newest
    /// stream generation only: a file holds one stream).
    pub async fn start(
        &mut self,
        src: &Sources<'_>,
        event_id: &str,
        (tracker_id, id): (String, String),
        from: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) {
        let day = from.format("%Y/%m/%d");
        let rel = format!("clips/{day}/{id}.mp4");
        let path = self.deps.data_dir.join(&rel);
        // Sound goes in when it is flowing now (a dead microphone would stall the muxer).
        let idle = chrono::Duration::from_std(AUDIO_IDLE).unwrap_or_default();
        let sound = src
            .preroll
            .newest()
            .and_then(|t| src.sound.format_since(t - idle))
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
                // A file the muxer may have made before failing holds nothing.
                let _ = tokio::fs::remove_file(part_path(&path)).await;
                let again = Reopen {
                    event_id: event_id.to_owned(),
                    tracker_id,
                    until,
                };
                self.failed(again, &why, src.clock.monotonic());
                return;
            }
        };
        let generation = src.preroll.since(from).last().map(|f| f.generation);
        let backlog = src.preroll.since(from).map(|f| f.data.len() as u64).sum();
        writer.allow_backlog(backlog);
        let mut written = Vec::new();
        for f in src
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
        let start = src
            .preroll
            .since(from)
            .find(|f| Some(f.generation) == generation && f.keyframe)
            .map_or(from, |f| f.captured_at);
        let now = src.clock.monotonic();
        let mut sound_written = Vec::new();
        for a in src.sound.since(start - SOUND_MARGIN) {
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
        let start_at = src.clock.applied().correct(start);
        let part = format!("{rel}.part");
        let index = &self.deps.index;
        // A row that cannot be written now is written when the clip is finished.
        if let Err(e) = index
            .insert_clip(&id, event_id, &part, start_at, src.clock.now())
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
        self.open.push(OpenClip {
            feed_id,
            id,
            tracker_id,
            event_id: event_id.to_owned(),
            generation,
            writer,
            rel,
            thumbnail,
            start_at,
            until,
            frames_lost: 0,
            feed_cut: false,
            closing: None,
            opened: now,
        });
    }

    /// A frame for the open clips: written to each, or the clip ends (past its end, a
    /// restarted stream, a file that cannot be written); a clip due to be opened again
    /// is opened first.
    pub async fn on_frame(&mut self, frame: &EncodedFrame, src: &Sources<'_>) {
        let mono = src.clock.monotonic();
        if let Some(r) = self.retry.due(mono) {
            if r.until.is_none_or(|u| frame.captured_at <= u) {
                let ids = (r.tracker_id, UlidIds.next_id(frame.captured_at));
                self.start(src, &r.event_id, ids, frame.captured_at, r.until)
                    .await;
            }
        }
        let (mut done, mut split, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for (i, clip) in self.open.iter_mut().enumerate() {
            if clip.closing.is_some() {
                continue; // the picture is complete; the sound is catching up
            }
            if let Some(u) = clip.until.filter(|u| frame.captured_at > *u) {
                if clip.writer.audio_short_of(u) {
                    clip.closing = Some(mono);
                } else {
                    done.push(i);
                }
            } else if clip.generation.is_some_and(|g| g != frame.generation) {
                info!(clip_id = %clip.id, "the camera stream restarted; continuing the event in a new clip");
                split.push(i);
            } else if !clip.write(frame, self.deps.feed.as_ref()) {
                failed.push(i);
            }
        }
        for i in (0..self.open.len()).rev() {
            if done.contains(&i) {
                let clip = self.open.remove(i);
                self.finish(clip, src.clock);
            } else if failed.contains(&i) {
                // Not a new file per frame: the event goes on, its clip comes back later.
                let clip = self.open.remove(i);
                let again = Reopen {
                    event_id: clip.event_id.clone(),
                    tracker_id: clip.tracker_id.clone(),
                    until: clip.until,
                };
                self.finish(clip, src.clock);
                self.failed(again, "the clip file cannot be written", mono);
            } else if split.contains(&i) {
                let clip = self.open.remove(i);
                let (event_id, tracker_id, until) =
                    (clip.event_id.clone(), clip.tracker_id.clone(), clip.until);
                self.finish(clip, src.clock);
                let ids = (tracker_id, UlidIds.next_id(frame.captured_at));
                self.start(src, &event_id, ids, frame.captured_at, until)
                    .await;
            }
        }
    }

    /// A sound frame for the open clips; a clip waiting for its sound is finished once
    /// the sound passed its end.
    pub fn on_audio(&mut self, frame: &AudioFrame, clock: &RecorderClock) {
        let now = clock.monotonic();
        let mut done = Vec::new();
        for (i, clip) in self.open.iter_mut().enumerate() {
            let past = clip.until.is_some_and(|u| frame.captured_at > u);
            if !(clip.closing.is_some() && past) {
                clip.write_audio(frame, self.deps.feed.as_ref(), now);
            }
            if clip.closing.is_some() && (past || !clip.writer.takes_audio()) {
                done.push(i); // the sound caught up with the picture's end
            }
        }
        for i in done.into_iter().rev() {
            let clip = self.open.remove(i);
            self.finish(clip, clock);
        }
    }

    /// A clip could not be started or written: the event goes on without a file until
    /// the retry (with backoff, logged once per run of failures).
    fn failed(&mut self, again: Reopen, why: &str, now: Instant) {
        let event_id = again.event_id.clone();
        if let Some(disk_full) = &self.deps.disk_full {
            disk_full.notify_one();
        }
        let (delay, first) = self.retry.failed(again, now, fastrand::f64());
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

    /// Writes the latest snapshot beside the clip; returns its relative path. A write
    /// that fails leaves no file.
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
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
        }
    }

    /// Finishes a clip in the background: muxer EOS, fsync, rename, index row.
    fn finish(&mut self, clip: OpenClip, clock: &RecorderClock) {
        if let Some(feed) = &self.deps.feed {
            feed.clip_end(&clip.feed_id, clip.writer.frames());
        }
        let index = self.deps.index.clone();
        let data_dir = self.deps.data_dir.clone();
        let outbox = self.deps.outbox.clone();
        let now = clock.now();
        let applied = clock.applied().clone();
        self.finishing.spawn(async move {
            let event_id = clip.event_id.clone();
            let owed = finish_clip(&index, &data_dir, clip, now, &applied).await;
            // The event's end message goes out once its last clip is finished.
            if let Some(outbox) = outbox {
                publish::queue_end(&index, &outbox, &event_id).await;
            }
            owed
        });
    }

    /// Waits for a clip being finished in the background (never, while none is).
    pub async fn finished(&mut self) -> Result<Option<Owed>, JoinError> {
        match self.finishing.join_next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A clip finished in the background; the index write it could not make is kept.
    pub fn reap(&mut self, done: Result<Option<Owed>, JoinError>) {
        match done {
            Ok(Some(owed)) => self.owe(owed),
            Ok(None) => {}
            Err(e) => error!(error = %e, "clip finishing task failed"),
        }
    }

    fn owe(&mut self, owed: Owed) {
        self.owed.retain(|o| o.id != owed.id);
        self.owed.push(owed);
    }

    /// Finishes clips whose end passed without a newer frame; syncs the others' data;
    /// makes the index writes a full disk refused; a clip that has been writing a while
    /// ends a run of failures.
    pub async fn housekeeping(&mut self, clock: &RecorderClock) {
        let now = clock.now();
        let grace = chrono::Duration::from_std(END_GRACE).unwrap_or_default();
        let mono = clock.monotonic();
        let mut i = 0;
        while i < self.open.len() {
            let closed = self.open[i]
                .closing
                .is_some_and(|t| mono.duration_since(t) >= CLOSING_WAIT);
            if closed || self.open[i].until.is_some_and(|u| now > u + grace) {
                let clip = self.open.remove(i);
                self.finish(clip, clock);
            } else {
                i += 1;
            }
        }
        for clip in &mut self.open {
            if clip.writer.audio_idle(mono) {
                warn!(clip_id = %clip.id, "the sound stopped; the clip goes on without it");
                clip.end_audio(self.deps.feed.as_ref());
            }
            if let Some(file) = clip.writer.due_sync(mono) {
                tokio::task::spawn_blocking(move || file.sync_data());
            }
        }
        let proven = self
            .open
            .iter()
            .find(|c| mono.duration_since(c.opened) >= PROVEN_AFTER);
        if let Some(clip) = proven {
            let (id, event_id) = (clip.id.clone(), clip.event_id.clone());
            if self.retry.succeeded() {
                info!(clip_id = %id, event_id, "recording resumed");
            }
        }
        if self.owed_next.is_none_or(|t| mono >= t) {
            self.make_owed(clock).await;
        }
    }

    /// Makes the owed index writes, oldest first; stops at the first the index refuses
    /// and tries again later.
    async fn make_owed(&mut self, clock: &RecorderClock) {
        while let Some(owed) = self.owed.first().cloned() {
            match owed.make(&self.deps.index, clock.now()).await {
                Ok(()) => {
                    info!(clip_id = %owed.id, "the index took the clip's record it had refused");
                    self.owed.remove(0);
                }
                Err(e) if e.is_retryable() => {
                    let delay = self.owed_backoff.next_delay(fastrand::f64());
                    self.owed_next = Some(clock.monotonic() + delay);
                    return;
                }
                Err(e) => {
                    error!(clip_id = %owed.id, error = %e, "could not record the clip");
                    self.owed.remove(0);
                }
            }
        }
        self.owed_backoff.reset();
        self.owed_next = None;
    }

    /// Shutdown: nothing more is opened; every open clip is finished within `budget`
    /// (past it, an unfinished clip stays `.part` and the next start recovers it), and
    /// the owed index writes are tried a last time.
    pub async fn shutdown(&mut self, clock: &RecorderClock, budget: Duration) {
        self.retry.clear();
        for clip in std::mem::take(&mut self.open) {
            self.finish(clip, clock);
        }
        let all = async {
            while let Some(done) = self.finishing.join_next().await {
                self.reap(done);
            }
        };
        if tokio::time::timeout(budget, all).await.is_err() {
            warn!("clips still finishing at shutdown; they will be recovered at the next start");
        }
        self.make_owed(clock).await;
        if !self.owed.is_empty() {
            warn!(
                clips = self.owed.len(),
                "the index refused records of finished clips; the next start reconciles them"
            );
        }
    }
}
