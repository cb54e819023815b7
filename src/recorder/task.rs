//! The recorder task: owns the pre-roll ring, the motion detector, the event tracker and
//! the open clip writers; applies the tracker's actions to files and the index.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::clips::OpenClip;
use super::feed::ClipFeed;
use super::handle::{RecorderCommand, RecorderHandle, RecorderStatus, Request};
use super::motion::round_score;
use super::publish;
use super::retry::{ClipRetry, Reopen};
use super::{AudioRing, PreRoll};
use crate::clock::{ClockState, SharedClocks};
use crate::commands::{CommandError, MotionReport, Outcome, Record, StatusReport};
use crate::events::{
    Action, EventInfo, EventKind, IdSource, Input, MotionDetector, MotionSettings, Tracker,
    TrackerSettings, Trigger, TriggerKind, UlidIds,
};
use crate::index::{Index, Outbox};
use crate::media::{
    AnalysisBus, AnalysisFrame, AudioBus, AudioFrame, EncodedFrame, FrameBus, Snapshot,
    Subscription,
};
use crate::metrics::MotionMetrics;

/// Frames the recorder may fall behind by before it loses one: 4 s at 30 fps.
pub const RECORDER_QUEUE: usize = 120;
/// AAC frames the recorder may fall behind by: 4 s at 48 kHz.
const AUDIO_QUEUE: usize = 190;
/// How far sound is kept behind the newest frame when the picture stops.
const AUDIO_RING_MAX: Duration = Duration::from_secs(30);
const ANALYSIS_QUEUE: usize = 4;
const COMMAND_QUEUE: usize = 16;
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How long shutdown waits for open clips to be finished and synced.
const SHUTDOWN_FINISH_BUDGET: Duration = Duration::from_millis(1200);
const DETECT_SETTING: &str = "detect";
/// Motion counts as going on this long after the last analysis frame that showed some
/// (analysis runs at a few frames a second; a person pausing is still there).
pub const MOTION_HOLD: Duration = Duration::from_secs(2);

/// What the recorder needs to know.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub tracker: TrackerSettings,
    pub motion: MotionSettings,
    /// Detection at start-up, unless a `detect` command changed it since.
    pub detect: bool,
    pub pre_roll_max_bytes: usize,
}

/// Where it gets frames and time, and puts results.
#[derive(Debug, Clone)]
pub struct RecorderDeps {
    pub frames: FrameBus,
    pub analysis: AnalysisBus,
    pub snapshot: watch::Receiver<Option<Snapshot>>,
    pub index: Index,
    pub data_dir: PathBuf,
    pub clocks: SharedClocks,
    /// The MQTT outbox each event change is queued in (when MQTT is on); the tracker
    /// already spaces updates by `events.update_interval_s`.
    pub outbox: Option<Outbox>,
    /// Hands every frame written to a clip to its follower (events upload mode).
    pub feed: Option<ClipFeed>,
    /// The camera's sound as AAC, when audio is on: every clip gets a sound track.
    pub audio: Option<AudioBus>,
    /// Told when a clip cannot be written (a full disk?), so retention runs at once.
    pub disk_full: Option<Arc<Notify>>,
    /// The detector's score and the events motion started.
    pub motion: MotionMetrics,
    /// Steps of the wall clock and how to correct times recorded before it was set
    /// (none in tests that do not step it).
    pub clock: Option<watch::Receiver<ClockState>>,
}

/// Starts the recorder (`prepare`, then `Recorder::run` in a task of its own).
pub async fn spawn(
    cfg: RecorderConfig,
    deps: RecorderDeps,
    cancel: CancellationToken,
) -> (RecorderHandle, JoinHandle<()>) {
    let (handle, recorder) = prepare(cfg, deps).await;
    (handle, tokio::spawn(recorder.run(cancel)))
}

/// Makes the recorder and its handle without running it: it subscribes to the frames
/// now (so it sees the first keyframe of a capture started after), and commands sent to
/// the handle wait until it runs. Events a crash cut short get their owed `end` message.
pub async fn prepare(cfg: RecorderConfig, deps: RecorderDeps) -> (RecorderHandle, Recorder) {
    if let Some(outbox) = &deps.outbox {
        publish::queue_owed_ends(&deps.index, outbox).await;
    }
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
        audio: deps
            .audio
            .as_ref()
            .map(|bus| bus.subscribe("recorder", AUDIO_QUEUE)),
        sound: AudioRing::new(AUDIO_RING_MAX),
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
        retry: ClipRetry::default(),
        last_motion: None,
        moving: false,
        score: 0.0,
        published_score: 0.0,
        score_published_at: deps.clocks.monotonic(),
        owed_checked: deps.clocks.monotonic(),
        time_base: (deps.clocks.utc(), deps.clocks.monotonic()),
        clock_applied: ClockState::default(),
        status: status_tx,
        deps,
        commands: command_rx,
    };
    (RecorderHandle { commands, status }, task)
}

/// The recorder task's state; `run` it.
pub struct Recorder {
    frames: Subscription<EncodedFrame>,
    audio: Option<Subscription<AudioFrame>>,
    pub(super) sound: AudioRing,
    analysis: Subscription<AnalysisFrame>,
    pub(super) preroll: PreRoll,
    pub(super) tracker: Tracker<UlidIds>,
    pub(super) detector: MotionDetector,
    motion: MotionSettings,
    pub(super) detect: bool,
    pub(super) open: Vec<OpenClip>,
    pub(super) finishing: JoinSet<()>,
    lost_seen: u64,
    /// A clip that could not be written, to be opened again with backoff.
    pub(super) retry: ClipRetry,
    /// When the detector last saw motion.
    pub(super) last_motion: Option<DateTime<Utc>>,
    /// What the status says about motion now.
    pub(super) moving: bool,
    /// The detector's last score, and the one the status last gave, and when.
    pub(super) score: f32,
    pub(super) published_score: f32,
    pub(super) score_published_at: std::time::Instant,
    /// When ended events were last checked for an `end` message still owed.
    pub(super) owed_checked: std::time::Instant,
    pub(super) status: watch::Sender<RecorderStatus>,
    /// The wall-clock time at a monotonic instant: the recorder's clock runs on
    /// monotonic time and moves only when a step of the wall clock is applied.
    pub(super) time_base: (DateTime<Utc>, std::time::Instant),
    /// The clock steps and corrections applied so far.
    pub(super) clock_applied: ClockState,
    pub(super) deps: RecorderDeps,
    commands: mpsc::Receiver<Request>,
}

/// The next audio frame, or never when there is no sound.
async fn next_audio(audio: &mut Option<Subscription<AudioFrame>>) -> Option<AudioFrame> {
    match audio {
        Some(sub) => sub.recv().await,
        None => std::future::pending().await,
    }
}

/// How long from `now` until `deadline` (wall clock), for a tokio sleep.
fn until(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    deadline
        .and_then(|d| (d - now).to_std().ok())
        .unwrap_or(Duration::ZERO)
        .min(Duration::from_secs(3600))
}

impl Recorder {
    /// Runs until `cancel`, then ends the open event and finishes its clips.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let deadline = self.tracker.poll_timeout();
            let wait = if deadline.is_some() {
                until(deadline, self.now())
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                frame = self.frames.recv() => match frame {
                    Some(f) => self.on_frame(f).await,
                    None => break,
                },
                Some(a) = next_audio(&mut self.audio) => self.on_audio(a),
                Some(state) = crate::clock::next_state(&mut self.deps.clock) => self.on_clock(state).await,
                Some(a) = self.analysis.recv() => self.on_analysis(&a).await,
                Some((source, cmd, reply)) = self.commands.recv() => {
                    let result = self.on_command(source, cmd).await;
                    let _ = reply.send(result);
                }
                _ = tokio::time::sleep(wait), if deadline.is_some() => {
                    let actions = self.tracker.handle(self.now(), Input::Tick);
                    self.apply(actions).await;
                }
                _ = housekeeping.tick() => {
                    self.update_motion();
                    self.housekeeping().await
                }
                Some(done) = self.finishing.join_next(), if !self.finishing.is_empty() => {
                    if let Err(e) = done {
                        error!(error = %e, "clip finishing task failed");
                    }
                }
            }
        }
        // Shutdown: end the open event now and finish every clip before returning.
        let actions = self.tracker.handle(self.now(), Input::Stop);
        self.apply(actions).await;
        self.retry.clear();
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
        if let Some(oldest) = self.preroll.oldest() {
            self.sound.trim_before(oldest - super::clips::SOUND_MARGIN);
        }
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
        if let Some(r) = self.retry.due(self.deps.clocks.monotonic()) {
            if r.until.is_none_or(|u| frame.captured_at <= u) {
                let id = UlidIds.next_id(frame.captured_at);
                self.open_clip(&r.event_id, r.tracker_id, id, frame.captured_at, r.until)
                    .await;
            }
        }
        let (mut done, mut split, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        let mono = self.deps.clocks.monotonic();
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
            } else if !clip.write(&frame, self.deps.feed.as_ref()) {
                failed.push(i);
            }
        }
        for i in (0..self.open.len()).rev() {
            if done.contains(&i) {
                let clip = self.open.remove(i);
                self.finish(clip);
            } else if failed.contains(&i) {
                // Not a new file per frame: the event goes on, its clip comes back later.
                let clip = self.open.remove(i);
                let again = Reopen {
                    event_id: clip.event_id.clone(),
                    tracker_id: clip.tracker_id.clone(),
                    until: clip.until,
                };
                self.finish(clip);
                self.clip_failed(again, "the clip file cannot be written");
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

    fn on_audio(&mut self, frame: AudioFrame) {
        let now = self.deps.clocks.monotonic();
        let mut done = Vec::new();
        for (i, clip) in self.open.iter_mut().enumerate() {
            let past = clip.until.is_some_and(|u| frame.captured_at > u);
            if !(clip.closing.is_some() && past) {
                clip.write_audio(&frame, self.deps.feed.as_ref(), now);
            }
            if clip.closing.is_some() && (past || !clip.writer.takes_audio()) {
                done.push(i); // the sound caught up with the picture's end
            }
        }
        for i in done.into_iter().rev() {
            let clip = self.open.remove(i);
            self.finish(clip);
        }
        self.sound.push(frame);
    }

    async fn on_command(
        &mut self,
        source: TriggerKind,
        cmd: RecorderCommand,
    ) -> Result<Outcome, CommandError> {
        match cmd {
            RecorderCommand::Record(Record::Start { duration_s, label }) => {
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
                let actions = self.tracker.handle(self.now(), Input::Trigger(trigger));
                self.apply(actions).await;
                Ok(Outcome::Recording {
                    recording: self.tracker.recording(),
                    event_id: self.tracker.current().map(|e| e.id.clone()),
                })
            }
            RecorderCommand::Record(Record::Stop) => {
                let event = self.tracker.current().map(|e| e.id.clone());
                let actions = self.tracker.handle(self.now(), Input::Stop);
                self.apply(actions).await;
                Ok(Outcome::Stopped {
                    recording: false,
                    stopped_event_id: event,
                })
            }
            RecorderCommand::Detect { enabled } => {
                self.set_detect(enabled).await;
                Ok(Outcome::Detect { detect: enabled })
            }
            RecorderCommand::Snapshot => match self.deps.snapshot.borrow().as_ref() {
                Some(s) => Ok(Outcome::Snapshot {
                    captured_at: s.captured_at,
                    bytes: s.jpeg.len(),
                    url: "/api/snapshot.jpg",
                }),
                None => Err(CommandError::NoSnapshot),
            },
            RecorderCommand::Status => Ok(Outcome::Status(StatusReport {
                recording: self.tracker.recording(),
                event_id: self.tracker.current().map(|e| e.id.clone()),
                detect: self.detect,
                pre_roll_s: self.preroll.span().as_secs_f64(),
                pre_roll_bytes: self.preroll.bytes(),
                open_clips: self.open.len(),
                frames_lost: self.lost_seen,
                // The dispatcher knows about audio capture.
                audio: Default::default(),
                motion: MotionReport {
                    moving: self.moving,
                    score: round_score(self.score),
                    min_area_percent: self.motion.min_area_percent,
                    threshold: self.motion.threshold,
                },
            })),
        }
    }

    async fn set_detect(&mut self, enabled: bool) {
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
    }

    /// Whether motion is going on now; the status follows when it changes.
    pub(super) async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::EventStarted(e) => {
                    if e.trigger == TriggerKind::Motion {
                        self.deps.motion.events.inc();
                    }
                    self.record_event(EventKind::Start, &e).await
                }
                Action::EventUpdated(e) => self.record_event(EventKind::Update, &e).await,
                Action::EventEnded(e) => {
                    info!(event_id = %e.id, label = %e.label, clips = e.clip_ids.len(), "event ended");
                    self.record_event(EventKind::End, &e).await;
                }
                Action::StartClip {
                    event_id,
                    clip_id,
                    from,
                } => {
                    self.open_clip(&event_id, clip_id.clone(), clip_id, from, None)
                        .await
                }
                Action::EndClip { clip_id, until } => {
                    if let Some(c) = self.open.iter_mut().find(|c| c.tracker_id == clip_id) {
                        c.until = Some(until);
                    }
                    self.retry.end(&clip_id, until);
                }
            }
        }
        self.publish_status();
    }

    /// Records an event change in the index, with its MQTT message when MQTT is on (the
    /// `end` message waits for the event's clips to be finished).
    async fn record_event(&mut self, kind: EventKind, e: &EventInfo) {
        publish::record(&self.deps.index, self.deps.outbox.as_ref(), kind, e).await;
    }
}
