//! The recorder task: owns the pre-roll ring, the motion detector, the event tracker and
//! the open clip writers; applies the tracker's actions to files and the index.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::clip::{ClipError, ClipWriter};
use super::{recovery, PreRoll};
use crate::commands::{Command, Record};
use crate::events::{
    Action, EventInfo, IdSource, Input, MotionDetector, MotionSettings, Tracker, TrackerSettings,
    Trigger, TriggerKind, UlidIds,
};
use crate::index::{ClipStatus, Index};
use crate::media::{AnalysisBus, AnalysisFrame, EncodedFrame, FrameBus, Snapshot, Subscription};
use crate::mqtt::payload::EventKind;
use crate::mqtt::EventPublisher;
use crate::upload::UploadFeed;

/// Frames the recorder may fall behind by before it loses one: 4 s at 30 fps.
pub const RECORDER_QUEUE: usize = 120;
const ANALYSIS_QUEUE: usize = 4;
const COMMAND_QUEUE: usize = 16;
/// A clip past its end time with no newer frame is finished after this long anyway.
const END_GRACE: Duration = Duration::from_secs(2);
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How long shutdown waits for open clips to be finished and synced.
const SHUTDOWN_FINISH_BUDGET: Duration = Duration::from_millis(1200);
const DETECT_SETTING: &str = "detect";

/// What the recorder needs to know.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub tracker: TrackerSettings,
    pub motion: MotionSettings,
    /// Detection at start-up, unless a `detect` command changed it since.
    pub detect: bool,
    pub pre_roll_max_bytes: usize,
}

/// Where it gets frames and puts results.
#[derive(Debug, Clone)]
pub struct RecorderDeps {
    pub frames: FrameBus,
    pub analysis: AnalysisBus,
    pub snapshot: watch::Receiver<Option<Snapshot>>,
    pub index: Index,
    pub data_dir: PathBuf,
    /// Queues MQTT event messages with each event change (when MQTT is on); the
    /// tracker already spaces updates by `events.update_interval_s`.
    pub events: Option<EventPublisher>,
    /// Hands every frame written to a clip to the uploader (events upload mode).
    pub upload: Option<UploadFeed>,
}

/// The recorder's state as others see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderStatus {
    pub recording: bool,
    pub event_id: Option<String>,
    pub detect: bool,
}

type Reply = oneshot::Sender<Result<Value, String>>;

/// Reaches the recorder task.
#[derive(Debug, Clone)]
pub struct RecorderHandle {
    commands: mpsc::Sender<(TriggerKind, Command, Reply)>,
    status: watch::Receiver<RecorderStatus>,
    /// Answers `playback` in the caller's task (a cloud call must not hold up frames).
    playback: Option<crate::upload::Playback>,
}

impl RecorderHandle {
    /// Runs a command; `source` says where it came from (it becomes the trigger kind).
    pub async fn execute(&self, source: TriggerKind, command: Command) -> Result<Value, String> {
        if let Command::Playback {
            event_id,
            expires_s,
        } = &command
        {
            return match &self.playback {
                Some(p) => p.url(event_id.as_deref(), *expires_s).await,
                None => Err("cloud playback is off: set [upload] enabled = true".into()),
            };
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((source, command, tx))
            .await
            .map_err(|_| "the recorder is not running".to_string())?;
        rx.await
            .map_err(|_| "the recorder stopped before answering".to_string())?
    }

    pub fn status(&self) -> watch::Receiver<RecorderStatus> {
        self.status.clone()
    }

    /// Lets `playback` commands be answered (upload on).
    pub fn with_playback(mut self, playback: Option<crate::upload::Playback>) -> Self {
        self.playback = playback;
        self
    }
}

struct OpenClip {
    /// The clip's file and index id.
    id: String,
    /// The same, for the uploader's feed.
    feed_id: std::sync::Arc<str>,
    /// The id the tracker knows it by: a clip split by a stream restart keeps it.
    tracker_id: String,
    event_id: String,
    /// Pipeline generation of the frames in it; a new generation starts a new file.
    generation: Option<u32>,
    writer: ClipWriter,
    /// Relative path of the final file.
    rel: String,
    thumbnail: Option<String>,
    until: Option<DateTime<Utc>>,
    frames_lost: u64,
}

/// Starts the recorder.
pub async fn spawn(
    cfg: RecorderConfig,
    deps: RecorderDeps,
    cancel: CancellationToken,
) -> (RecorderHandle, JoinHandle<()>) {
    let detect = match deps.index.setting(DETECT_SETTING).await {
        Ok(Some(v)) => v == "on",
        _ => cfg.detect,
    };
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (status_tx, status) = watch::channel(RecorderStatus {
        detect,
        ..RecorderStatus::default()
    });
    let task = Recorder {
        frames: deps.frames.subscribe("recorder", RECORDER_QUEUE),
        analysis: deps.analysis.subscribe("motion", ANALYSIS_QUEUE),
        preroll: PreRoll::new(
            cfg.tracker.pre_roll + Duration::from_secs(1),
            cfg.pre_roll_max_bytes,
        ),
        tracker: Tracker::new(cfg.tracker.clone(), UlidIds),
        detector: MotionDetector::new(cfg.motion.clone()),
        motion: cfg.motion,
        detect,
        open: Vec::new(),
        finishing: JoinSet::new(),
        lost_seen: 0,
        status: status_tx,
        deps,
        commands: command_rx,
    };
    (
        RecorderHandle {
            commands,
            status,
            playback: None,
        },
        tokio::spawn(task.run(cancel)),
    )
}

struct Recorder {
    frames: Subscription<EncodedFrame>,
    analysis: Subscription<AnalysisFrame>,
    preroll: PreRoll,
    tracker: Tracker<UlidIds>,
    detector: MotionDetector,
    motion: MotionSettings,
    detect: bool,
    open: Vec<OpenClip>,
    finishing: JoinSet<()>,
    lost_seen: u64,
    status: watch::Sender<RecorderStatus>,
    deps: RecorderDeps,
    commands: mpsc::Receiver<(TriggerKind, Command, Reply)>,
}

/// How long until `deadline` (wall clock), for a tokio sleep.
fn until(deadline: Option<DateTime<Utc>>) -> Duration {
    deadline
        .and_then(|d| (d - Utc::now()).to_std().ok())
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(3600))
}

impl Recorder {
    async fn run(mut self, cancel: CancellationToken) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let deadline = self.tracker.poll_timeout();
            let wait = if deadline.is_some() {
                until(deadline)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                frame = self.frames.recv() => match frame {
                    Some(f) => self.on_frame(f).await,
                    None => break,
                },
                Some(a) = self.analysis.recv() => self.on_analysis(&a).await,
                Some((source, cmd, reply)) = self.commands.recv() => {
                    let result = self.on_command(source, cmd).await;
                    let _ = reply.send(result);
                }
                _ = tokio::time::sleep(wait), if deadline.is_some() => {
                    let actions = self.tracker.handle(Utc::now(), Input::Tick);
                    self.apply(actions).await;
                }
                _ = housekeeping.tick() => self.housekeeping().await,
                Some(done) = self.finishing.join_next(), if !self.finishing.is_empty() => {
                    if let Err(e) = done {
                        error!(error = %e, "clip finishing task failed");
                    }
                }
            }
        }
        // Shutdown: end the open event now and finish every clip before returning.
        let actions = self.tracker.handle(Utc::now(), Input::Stop);
        self.apply(actions).await;
        for clip in std::mem::take(&mut self.open) {
            self.finish(clip);
        }
        // Finishing ends with an fsync, which a busy disk can stretch to seconds. Past
        // the budget, exit anyway: an unfinished clip stays `.part` and the next start
        // recovers it.
        let all = async { while self.finishing.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_FINISH_BUDGET, all)
            .await
            .is_err()
        {
            warn!("clips still finishing at shutdown; they will be recovered at the next start");
        }
        info!("recorder stopped");
    }

    async fn on_frame(&mut self, frame: EncodedFrame) {
        self.preroll.push(frame.clone());
        let lost = self.frames.dropped();
        if lost > self.lost_seen {
            error!(
                lost = lost - self.lost_seen,
                "recorder fell behind and lost frames; open clips have a gap"
            );
            for clip in &mut self.open {
                clip.frames_lost += lost - self.lost_seen;
            }
            self.lost_seen = lost;
        }
        let (mut done, mut split) = (Vec::new(), Vec::new());
        for (i, clip) in self.open.iter_mut().enumerate() {
            if clip.until.is_some_and(|u| frame.captured_at > u) {
                done.push(i);
            } else if clip.generation.is_some_and(|g| g != frame.generation) {
                info!(clip_id = %clip.id, "the camera stream restarted; continuing the event in a new clip");
                split.push(i);
            } else {
                let index = clip.writer.frames();
                if let Err(e) = clip.writer.push(&frame) {
                    error!(clip_id = %clip.id, error = %e, "cannot write frame; continuing in a new clip");
                    split.push(i);
                    continue;
                }
                clip.generation = Some(frame.generation);
                if clip.writer.frames() > index {
                    if let Some(feed) = &self.deps.upload {
                        // When the uploader is behind it sees the gap and reads the
                        // clip's rest from the file.
                        feed.frame(&clip.feed_id, index, &frame);
                    }
                }
            }
        }
        for i in (0..self.open.len()).rev() {
            if done.contains(&i) {
                let clip = self.open.remove(i);
                self.finish(clip);
            } else if split.contains(&i) {
                let clip = self.open.remove(i);
                let (event_id, tracker_id, until) =
                    (clip.event_id.clone(), clip.tracker_id.clone(), clip.until);
                self.finish(clip);
                let id = UlidIds.next_id(frame.captured_at);
                self.open_clip(&event_id, tracker_id, id, frame.captured_at, until)
                    .await;
            }
        }
    }

    async fn on_analysis(&mut self, a: &AnalysisFrame) {
        if !self.detect {
            return;
        }
        let r = self.detector.process(&a.data, a.width, a.height, a.stride);
        if r.motion {
            let trigger = Trigger {
                kind: TriggerKind::Motion,
                label: "motion".into(),
                score: r.score,
                duration: None,
            };
            let actions = self.tracker.handle(Utc::now(), Input::Trigger(trigger));
            self.apply(actions).await;
        }
    }

    async fn on_command(&mut self, source: TriggerKind, cmd: Command) -> Result<Value, String> {
        match cmd {
            Command::Record(Record::Start { duration_s, label }) => {
                let label = if label.is_empty() {
                    source.as_str().to_owned()
                } else {
                    label
                };
                let trigger = Trigger {
                    kind: source,
                    label,
                    score: 0.0,
                    duration: duration_s.map(Duration::from_secs_f64),
                };
                let actions = self.tracker.handle(Utc::now(), Input::Trigger(trigger));
                self.apply(actions).await;
                let event = self.tracker.current().map(|e| e.id.clone());
                Ok(json!({ "recording": self.tracker.recording(), "event_id": event }))
            }
            Command::Record(Record::Stop) => {
                let event = self.tracker.current().map(|e| e.id.clone());
                let actions = self.tracker.handle(Utc::now(), Input::Stop);
                self.apply(actions).await;
                Ok(json!({ "recording": false, "stopped_event_id": event }))
            }
            Command::Detect { enabled } => {
                if enabled && !self.detect {
                    // A stale background would see everything that changed meanwhile.
                    self.detector = MotionDetector::new(self.motion.clone());
                }
                self.detect = enabled;
                if let Err(e) = self
                    .deps
                    .index
                    .set_setting(DETECT_SETTING, if enabled { "on" } else { "off" })
                    .await
                {
                    warn!(error = %e, "could not persist the detect setting");
                }
                self.publish_status();
                Ok(json!({ "detect": enabled }))
            }
            Command::Snapshot => match self.deps.snapshot.borrow().as_ref() {
                Some(s) => Ok(
                    json!({ "captured_at": s.captured_at, "bytes": s.jpeg.len(), "url": "/api/snapshot.jpg" }),
                ),
                None => Err("no snapshot yet: the camera has not produced one".into()),
            },
            Command::Playback { .. } => {
                Err("cloud playback is off: set [upload] enabled = true".into())
            }
            Command::Status => Ok(json!({
                "recording": self.tracker.recording(),
                "event_id": self.tracker.current().map(|e| e.id.clone()),
                "detect": self.detect,
                "pre_roll_s": self.preroll.span().as_secs_f64(),
                "pre_roll_bytes": self.preroll.bytes(),
                "open_clips": self.open.len(),
                "frames_lost": self.lost_seen,
            })),
        }
    }

    fn publish_status(&self) {
        self.status.send_replace(RecorderStatus {
            recording: self.tracker.recording(),
            event_id: self.tracker.current().map(|e| e.id.clone()),
            detect: self.detect,
        });
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::EventStarted(e) => self.record_event(EventKind::Start, &e).await,
                Action::EventUpdated(e) => self.record_event(EventKind::Update, &e).await,
                Action::EventEnded(e) => {
                    info!(event_id = %e.id, label = %e.label, clips = e.clip_ids.len(), "event ended");
                    self.record_event(EventKind::End, &e).await;
                }
                Action::StartClip {
                    event_id,
                    clip_id,
                    from,
                } => self.start_clip(&event_id, clip_id, from).await,
                Action::EndClip { clip_id, until } => {
                    if let Some(c) = self.open.iter_mut().find(|c| c.tracker_id == clip_id) {
                        c.until = Some(until);
                    }
                }
            }
        }
        self.publish_status();
    }

    /// Records an event change in the index, with its MQTT message when MQTT is on (the
    /// `end` message waits for the event's clips to be finished).
    async fn record_event(&mut self, kind: EventKind, e: &EventInfo) {
        let Some(out) = &self.deps.events else {
            if let Err(err) = self.deps.index.upsert_event(e).await {
                error!(event_id = %e.id, error = %err, "could not record the event in the index");
            }
            return;
        };
        let message = match kind {
            EventKind::Start | EventKind::Update => out.message(kind, e),
            EventKind::End => None,
        };
        out.record(&self.deps.index, e, message).await;
        if kind == EventKind::End {
            out.queue_end(&self.deps.index, &e.id).await;
        }
    }

    async fn start_clip(&mut self, event_id: &str, id: String, from: DateTime<Utc>) {
        self.open_clip(event_id, id.clone(), id, from, None).await;
    }

    /// Opens a clip file from the keyframe at or before `from` (frames of the newest
    /// stream generation only: a file holds one stream).
    async fn open_clip(
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
        let mut writer = match ClipWriter::create(&path) {
            Ok(w) => w,
            Err(e) => {
                error!(clip_id = %id, error = %e, "cannot start a clip");
                return;
            }
        };
        let generation = self.preroll.since(from).last().map(|f| f.generation);
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
        let part = format!("{rel}.part");
        if let Err(e) = self
            .deps
            .index
            .insert_clip(&id, event_id, &part, start, Utc::now())
            .await
        {
            error!(clip_id = %id, error = %e, "could not record the clip in the index");
        }
        let feed_id: std::sync::Arc<str> = id.as_str().into();
        if let Some(feed) = &self.deps.upload {
            if let Err(e) = self
                .deps
                .index
                .set_upload_state(&id, crate::index::upload_state::PENDING)
                .await
            {
                error!(clip_id = %id, error = %e, "could not mark the clip for upload");
            }
            for (index, f) in &written {
                feed.frame(&feed_id, *index, f);
            }
        }
        let thumbnail = self.write_thumbnail(&path, &id).await;
        info!(clip_id = %id, event_id, pre_roll_frames = writer.frames(), "clip started");
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
        });
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
    fn finish(&mut self, clip: OpenClip) {
        if let Some(feed) = &self.deps.upload {
            feed.clip_end(&clip.feed_id, clip.writer.frames());
        }
        let index = self.deps.index.clone();
        let data_dir = self.deps.data_dir.clone();
        let events = self.deps.events.clone();
        self.finishing.spawn(async move {
            let event_id = clip.event_id.clone();
            finish_clip(&index, &data_dir, clip).await;
            // The event's end message goes out once its last clip is finished.
            if let Some(out) = events {
                out.queue_end(&index, &event_id).await;
            }
        });
    }
}

/// Muxer EOS, fsync, rename, index row (or repair of what reached the disk).
async fn finish_clip(index: &Index, data_dir: &Path, clip: OpenClip) {
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
            stats.frames_lost = frames_lost;
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
                Err(_) => Utc::now(),
            };
            recovery::repair_now(index, data_dir, &id, &part, start).await;
        }
        Err(e) => error!(clip_id = %id, error = %e, "clip finishing panicked"),
    }
}

impl Recorder {
    async fn housekeeping(&mut self) {
        let now = Utc::now();
        let grace = chrono::Duration::from_std(END_GRACE).unwrap_or_default();
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].until.is_some_and(|u| now > u + grace) {
                let clip = self.open.remove(i);
                self.finish(clip);
            } else {
                i += 1;
            }
        }
        let now = Instant::now();
        for clip in &mut self.open {
            if let Some(file) = clip.writer.due_sync(now) {
                tokio::task::spawn_blocking(move || file.sync_data());
            }
        }
    }
}
