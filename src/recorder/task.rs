//! The recorder task: owns the pre-roll ring, the motion detector, the event tracker and
//! the open clip writers; applies the tracker's actions to files and the index.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::clips::{ClipDeps, Clips, Sources, SOUND_MARGIN};
use super::feed::ClipFeed;
use super::handle::{RecorderCommand, RecorderHandle, RecorderStatus, Request};
use super::motion::Motion;
use super::preroll::next_audio;
use super::preroll::{AudioRing, PreRoll};
use super::publish;
use super::shots::Shots;
use super::sight::{self, Sight, SightConfig, SightDeps};
use super::time::{until, RecorderClock};
use crate::clock::ClockState;
use crate::commands::{CommandError, ObjectsReport, Outcome, Record, StatusReport};
use crate::detect::Detections;
use crate::events::{
    Action, EventInfo, EventKind, Input, MotionSettings, Tracker, TrackerSettings, Trigger,
    TriggerKind, UlidIds,
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
/// How often ended events still owed their `end` message are looked for.
const OWED_CHECK: Duration = Duration::from_secs(10);

/// What the recorder needs to know.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub tracker: TrackerSettings,
    pub motion: MotionSettings,
    /// Detection at start-up, unless a `detect` command changed it since.
    pub detect: bool,
    pub pre_roll_max_bytes: usize,
    /// Objects, zones and what opens events, when the detector runs.
    pub sight: Option<SightConfig>,
}

/// How long an object may take to be confirmed after the motion that led to it: the
/// pre-roll keeps this much more, so its clip can start before that motion.
const CONFIRM_SLACK: Duration = Duration::from_secs(10);

/// Where it gets frames and time, and puts results.
#[derive(Debug)]
pub struct RecorderDeps {
    pub frames: FrameBus,
    pub analysis: AnalysisBus,
    pub snapshot: watch::Receiver<Option<Snapshot>>,
    pub index: Index,
    pub data_dir: PathBuf,
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
    /// The object detector's results and the switch that makes it look (with
    /// `RecorderConfig::sight`).
    pub sight: Option<SightDeps>,
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
pub async fn prepare(cfg: RecorderConfig, mut deps: RecorderDeps) -> (RecorderHandle, Recorder) {
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
    let (shot_tx, best_shot) = watch::channel(None);
    let clips = Clips::new(ClipDeps {
        index: deps.index.clone(),
        data_dir: deps.data_dir.clone(),
        feed: deps.feed.clone(),
        outbox: deps.outbox.clone(),
        disk_full: deps.disk_full.clone(),
        snapshot: deps.snapshot.clone(),
    });
    let (sight, detections) = match (cfg.sight.clone(), deps.sight.take()) {
        (Some(c), Some(d)) => (Some(Sight::new(c, d.wanted, d.metrics)), Some(d.detections)),
        _ => (None, None),
    };
    let slack = match &sight {
        Some(s) if !s.motion_opens_events() => CONFIRM_SLACK,
        _ => Duration::ZERO,
    };
    let task = Recorder {
        frames: deps.frames.subscribe("recorder", RECORDER_QUEUE),
        audio: deps
            .audio
            .as_ref()
            .map(|bus| bus.subscribe("recorder", AUDIO_QUEUE)),
        sound: AudioRing::new(AUDIO_RING_MAX),
        analysis: deps.analysis.subscribe("motion", ANALYSIS_QUEUE),
        preroll: PreRoll::new(
            cfg.tracker.pre_roll + Duration::from_secs(1) + slack,
            cfg.pre_roll_max_bytes,
        ),
        tracker: Tracker::new(cfg.tracker.clone(), UlidIds),
        motion: Motion::new(cfg.motion, detect, std::time::Instant::now()),
        sight,
        detections,
        clips,
        shots: Shots::spawn(deps.snapshot.clone(), shot_tx),
        lost_seen: 0,
        owed_checked: std::time::Instant::now(),
        clock: RecorderClock::new(),
        status: status_tx,
        deps,
        commands: command_rx,
    };
    let handle = RecorderHandle {
        commands,
        status,
        best_shot,
    };
    (handle, task)
}

/// The recorder task's state; `run` it. It owns the frames' subscriptions, the pre-roll,
/// the event tracker and the status; the clips and the motion detector have owners of
/// their own.
pub struct Recorder {
    frames: Subscription<EncodedFrame>,
    audio: Option<Subscription<AudioFrame>>,
    sound: AudioRing,
    analysis: Subscription<AnalysisFrame>,
    preroll: PreRoll,
    tracker: Tracker<UlidIds>,
    motion: Motion,
    sight: Option<Sight>,
    detections: Option<mpsc::Receiver<Detections>>,
    clips: Clips,
    /// Each event's picture.
    shots: Shots,
    lost_seen: u64,
    /// When ended events were last checked for an `end` message still owed.
    owed_checked: std::time::Instant,
    clock: RecorderClock,
    status: watch::Sender<RecorderStatus>,
    deps: RecorderDeps,
    commands: mpsc::Receiver<Request>,
}

impl Recorder {
    /// Runs until `cancel`, then ends the open event and finishes its clips.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let deadline = self.tracker.poll_timeout();
            let wait = if deadline.is_some() {
                until(deadline, self.clock.now())
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                frame = self.frames.recv() => match frame {
                    Some(f) => self.on_frame(f).await,
                    None => break,
                },
                Some(a) = next_audio(&mut self.audio) => {
                    self.clips.on_audio(&a, &self.clock);
                    self.sound.push(a);
                }
                Some(state) = crate::clock::next_state(&mut self.deps.clock) => self.on_clock(state).await,
                Some(a) = self.analysis.recv() => self.on_analysis(&a).await,
                Some(d) = sight::next(&mut self.detections) => self.on_detections(&d).await,
                Some((source, cmd, reply)) = self.commands.recv() => {
                    let result = self.on_command(source, cmd).await;
                    let _ = reply.send(result);
                }
                _ = tokio::time::sleep(wait), if deadline.is_some() => {
                    let actions = self.tracker.handle(self.clock.now(), Input::Tick);
                    self.apply(actions).await;
                }
                _ = housekeeping.tick() => self.housekeeping().await,
                done = self.clips.finished() => self.clips.reap(done),
            }
        }
        // Shutdown: end the open event now and finish every clip before returning.
        let actions = self.tracker.handle(self.clock.now(), Input::Stop);
        self.apply(actions).await;
        // Finishing ends with an fsync, which a busy disk can stretch to seconds.
        self.clips
            .shutdown(&self.clock, SHUTDOWN_FINISH_BUDGET)
            .await;
        info!("recorder stopped");
    }

    async fn on_frame(&mut self, frame: EncodedFrame) {
        self.preroll.push(frame.clone());
        if let Some(oldest) = self.preroll.oldest() {
            self.sound.trim_before(oldest - SOUND_MARGIN);
        }
        let lost = self.frames.dropped();
        if lost > self.lost_seen {
            error!(
                lost = lost - self.lost_seen,
                "recorder fell behind and lost frames; open clips have a gap"
            );
            self.clips.lost(lost - self.lost_seen);
            self.lost_seen = lost;
        }
        let src = Sources {
            preroll: &self.preroll,
            sound: &self.sound,
            clock: &self.clock,
        };
        self.clips.on_frame(&frame, &src).await;
    }

    async fn on_analysis(&mut self, a: &AnalysisFrame) {
        let now = self.clock.now();
        let trigger = self.motion.analyse(a, now, &self.deps.motion);
        self.update_motion();
        let opens = self.sight.as_ref().is_none_or(Sight::motion_opens_events);
        if let Some(trigger) = trigger.filter(|_| opens) {
            let actions = self.tracker.handle(now, Input::Trigger(trigger));
            self.apply(actions).await;
        }
    }

    /// Objects that matter are triggers (with `events.trigger = "objects"` the only
    /// ones besides commands).
    async fn on_detections(&mut self, found: &Detections) {
        let now = self.clock.now();
        let Some(sight) = self.sight.as_mut() else {
            return;
        };
        let before = self.status.borrow().seen.clone();
        let seen = sight.detections(now, found);
        for (trigger, _) in seen.clone() {
            let actions = self.tracker.handle(now, Input::Trigger(trigger));
            self.apply(actions).await;
        }
        if let Some(e) = self.tracker.current().filter(|_| !seen.is_empty()) {
            let thumbnails = self.clips.thumbnails_of(&e.id);
            let mono = self.clock.monotonic();
            (self.shots).sighting(&e.id, &seen, found.captured_at, thumbnails, mono);
        }
        // Counts, zones and boxes all follow from what is in view.
        if self.sight.as_ref().map(|s| s.present()) != Some(before.as_slice()) {
            self.publish_status();
        }
    }

    /// Applies a step of the wall clock to the open event (see `RecorderClock::apply`).
    async fn on_clock(&mut self, state: ClockState) {
        if let Some(delta) = self.clock.apply(state) {
            let actions = self
                .tracker
                .handle(self.clock.now(), Input::ClockStepped(delta));
            self.apply(actions).await;
        }
    }

    async fn housekeeping(&mut self) {
        self.update_motion();
        self.clips.housekeeping(&self.clock).await;
        let mono = self.clock.monotonic();
        if mono.duration_since(self.owed_checked) >= OWED_CHECK {
            self.owed_checked = mono;
            if let Some(outbox) = &self.deps.outbox {
                publish::queue_owed_ends(&self.deps.index, outbox).await;
            }
        }
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
                    since: None,
                    zones: Vec::new(),
                };
                let actions = self
                    .tracker
                    .handle(self.clock.now(), Input::Trigger(trigger));
                self.apply(actions).await;
                Ok(Outcome::Recording {
                    recording: self.tracker.recording(),
                    event_id: self.tracker.current().map(|e| e.id.clone()),
                })
            }
            RecorderCommand::Record(Record::Stop) => {
                let event = self.tracker.current().map(|e| e.id.clone());
                let actions = self.tracker.handle(self.clock.now(), Input::Stop);
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
            RecorderCommand::Areas(areas) => {
                self.motion.set_masks(areas.motion_masks.clone());
                if let Some(sight) = self.sight.as_mut() {
                    sight.set_zones(areas.zones.clone());
                }
                self.publish_status();
                Ok(Outcome::Areas(areas))
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
                detect: self.motion.detect(),
                pre_roll_s: self.preroll.span().as_secs_f64(),
                pre_roll_bytes: self.preroll.bytes(),
                open_clips: self.clips.len(),
                frames_lost: self.lost_seen,
                // The dispatcher knows about audio capture.
                audio: Default::default(),
                motion: self.motion.report(),
                objects: self
                    .sight
                    .as_ref()
                    .map(Sight::report)
                    .unwrap_or(ObjectsReport {
                        trigger: "motion",
                        ..Default::default()
                    }),
                // The dispatcher knows about the RTSP server too.
                rtsp: Default::default(),
            })),
        }
    }

    async fn set_detect(&mut self, enabled: bool) {
        self.motion.set_detect(enabled);
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
    fn update_motion(&mut self) {
        let changed = self
            .motion
            .changed(self.clock.now(), self.clock.monotonic());
        if let Some(sight) = self.sight.as_mut() {
            let moving = self.motion.report().moving;
            sight.motion(self.clock.now(), moving, self.motion.changed_box());
        }
        if changed {
            self.publish_status();
        }
    }

    fn publish_status(&mut self) {
        let (motion, motion_score) = self.motion.published(self.clock.monotonic());
        let objects = self.sight.as_ref().map(Sight::report).unwrap_or_default();
        self.status.send_replace(RecorderStatus {
            recording: self.tracker.recording(),
            event_id: self.tracker.current().map(|e| e.id.clone()),
            detect: self.motion.detect(),
            motion,
            motion_score,
            objects: objects.present,
            zones: objects.zones,
            seen: self
                .sight
                .as_ref()
                .map(|s| s.present().to_vec())
                .unwrap_or_default(),
        });
    }

    /// Applies the tracker's actions to the index and the clips.
    async fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::EventStarted(e) => {
                    if e.trigger == TriggerKind::Motion {
                        self.deps.motion.events.inc();
                    }
                    if e.trigger != TriggerKind::Object {
                        let (now, mono) = (self.clock.now(), self.clock.monotonic());
                        self.shots.plain(&e.id, now, mono);
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
                    let src = Sources {
                        preroll: &self.preroll,
                        sound: &self.sound,
                        clock: &self.clock,
                    };
                    let ids = (clip_id.clone(), clip_id);
                    self.clips.start(&src, &event_id, ids, from, None).await
                }
                Action::EndClip { clip_id, until } => self.clips.end(&clip_id, until),
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
