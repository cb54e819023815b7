//! The capture tasks: each owns a running pipeline (the video, or the audio part), turns
//! bus messages into typed errors, watches for stalls and rebuilds with backoff until
//! cancelled. The two are independent: audio failing never stops video.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::audio::AudioOutputs;
use super::pipeline::{Outputs, Running};
use super::scene::{self, Scene};
use super::template::PipelineSpec;
use super::{Backoff, CaptureError, Heartbeat};

/// Commands waiting for the task; a full queue means a keyframe is already on its way.
const COMMAND_CAPACITY: usize = 8;
/// A run this long counts as recovered: the next failure starts backoff from scratch.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STALL_CHECK: Duration = Duration::from_millis(500);

/// What capture is doing, for readiness and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureState {
    Starting,
    Playing {
        generation: u32,
    },
    Restarting {
        attempt: u32,
        error: String,
        retry_in: Duration,
    },
    Stopped,
}

#[derive(Debug)]
enum Command {
    ForceKeyframe,
}

/// Reaches the capture task.
#[derive(Debug, Clone)]
pub struct CaptureHandle {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<CaptureState>,
}

impl CaptureHandle {
    /// Requests an IDR as soon as possible. Never waits.
    pub fn force_keyframe(&self) {
        let _ = self.commands.try_send(Command::ForceKeyframe);
    }

    pub fn state(&self) -> watch::Receiver<CaptureState> {
        self.state.clone()
    }
}

/// Settings the task needs from `[camera]`.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub fps: u32,
    pub stall_timeout: Duration,
}

/// Starts capturing `spec` into `outputs` until `cancel` fires.
pub fn spawn(
    spec: PipelineSpec,
    cfg: TaskConfig,
    outputs: Outputs,
    cancel: CancellationToken,
) -> (CaptureHandle, JoinHandle<()>) {
    start(spec, cfg, Branch::Video(outputs), cancel)
}

/// Starts capturing a pipeline file's audio part into `outputs` until `cancel` fires;
/// the state says whether it plays or waits to be rebuilt.
pub fn spawn_audio(
    spec: PipelineSpec,
    cfg: TaskConfig,
    outputs: AudioOutputs,
    cancel: CancellationToken,
) -> (watch::Receiver<CaptureState>, JoinHandle<()>) {
    let (handle, task) = start(spec, cfg, Branch::Audio(outputs), cancel);
    (handle.state, task)
}

fn start(
    spec: PipelineSpec,
    cfg: TaskConfig,
    branch: Branch,
    cancel: CancellationToken,
) -> (CaptureHandle, JoinHandle<()>) {
    let (commands, rx) = mpsc::channel(COMMAND_CAPACITY);
    let (state_tx, state) = watch::channel(CaptureState::Starting);
    let task = Task {
        spec,
        cfg,
        branch,
        cancel,
        commands: rx,
        state: state_tx,
    };
    (CaptureHandle { commands, state }, tokio::spawn(task.run()))
}

/// What a task captures.
#[derive(Clone)]
enum Branch {
    Video(Outputs),
    Audio(AudioOutputs),
}

impl Branch {
    fn name(&self) -> &'static str {
        match self {
            Self::Video(_) => "capture",
            Self::Audio(_) => "audio",
        }
    }

    fn heartbeat(&self) -> &Heartbeat {
        match self {
            Self::Video(o) => &o.heartbeat,
            Self::Audio(o) => &o.heartbeat,
        }
    }

    fn restarted(&self) {
        match self {
            Self::Video(o) => o.counters.pipeline_restarts.inc(),
            Self::Audio(o) => o.counters.pipeline_restarts.inc(),
        };
    }

    fn build(
        &self,
        spec: &PipelineSpec,
        generation: u32,
        fps: u32,
    ) -> Result<Running, CaptureError> {
        match self {
            Self::Video(o) => Running::build(spec, o, generation, fps),
            Self::Audio(o) => super::audio::start(spec, o, generation),
        }
    }
}

struct Task {
    spec: PipelineSpec,
    cfg: TaskConfig,
    branch: Branch,
    cancel: CancellationToken,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<CaptureState>,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
        let mut generation = 0u32;
        loop {
            generation = generation.wrapping_add(1);
            let started = Instant::now();
            let span = tracing::info_span!("pipeline", part = self.branch.name(), generation);
            let result = tracing::Instrument::instrument(self.run_once(generation), span).await;
            let error = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            if started.elapsed() >= HEALTHY_RUN {
                backoff.reset();
            }
            self.branch.restarted();
            let retry_in = backoff.next_delay(fastrand::f64());
            match self.branch {
                Branch::Video(_) => {
                    warn!(error = %error, retryable = error.is_retryable(), attempt = backoff.attempts(), retry_in_ms = retry_in.as_millis() as u64, "capture pipeline failed; rebuilding")
                }
                Branch::Audio(_) => {
                    warn!(error = %error, retryable = error.is_retryable(), attempt = backoff.attempts(), retry_in_ms = retry_in.as_millis() as u64, "audio pipeline failed; rebuilding it (video goes on)")
                }
            }
            self.state.send_replace(CaptureState::Restarting {
                attempt: backoff.attempts(),
                error: error.to_string(),
                retry_in,
            });
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                _ = self.cancel.cancelled() => break,
            }
        }
        self.state.send_replace(CaptureState::Stopped);
    }

    /// Runs one pipeline instance: `Ok` when cancelled, `Err` when it must be rebuilt.
    async fn run_once(&mut self, generation: u32) -> Result<(), CaptureError> {
        // Building and starting a pipeline opens devices and sockets and waits on state
        // changes (a busy camera can take seconds): keep that off the async workers.
        let (branch, spec, fps) = (self.branch.clone(), self.spec.clone(), self.cfg.fps);
        let running = off_runtime(move || branch.build(&spec, generation, fps)).await?;
        let bus = running.bus().ok_or(CaptureError::StateChange)?;
        let mut messages = bus.stream();
        let running = off_runtime(move || running.play().map(|()| running)).await?;
        let started = Instant::now();
        let mut stall_check = tokio::time::interval(STALL_CHECK);
        let mut scene = Scene::find(running.pipeline());
        let mut scene_tick = tokio::time::interval(scene::TICK);
        let outcome = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break Ok(()),
                Some(cmd) = self.commands.recv() => match cmd {
                    Command::ForceKeyframe => {
                        tracing::debug!("forcing a keyframe");
                        if !running.force_keyframe() {
                            tracing::debug!("force-keyframe event not handled upstream");
                        }
                    }
                },
                msg = messages.next() => match msg {
                    Some(msg) => {
                        if let Err(e) = self.on_message(&running, &msg, generation) {
                            break Err(e);
                        }
                    }
                    None => break Err(CaptureError::StateChange),
                },
                _ = scene_tick.tick(), if scene.is_some() => {
                    if let Some(scene) = scene.as_mut() {
                        scene.update(started.elapsed() + scene::test_offset());
                    }
                }
                _ = stall_check.tick() => {
                    let now = Instant::now();
                    let since = self.branch.heartbeat().last().map_or(started, |t| t.max(started));
                    let quiet = now.saturating_duration_since(since);
                    if quiet >= self.cfg.stall_timeout {
                        break Err(CaptureError::Stalled(quiet));
                    }
                }
            }
        };
        // Setting a pipeline to NULL joins its streaming threads: keep that off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(running)).await;
        outcome
    }

    fn on_message(
        &self,
        running: &Running,
        msg: &gst::Message,
        generation: u32,
    ) -> Result<(), CaptureError> {
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(err) => Err(CaptureError::Element {
                element: err
                    .src()
                    .map_or_else(|| "pipeline".into(), |s| s.path_string().to_string()),
                message: err.error().to_string(),
                debug: err.debug().map(|d| d.to_string()),
            }),
            MessageView::Eos(_) => Err(CaptureError::EndOfStream),
            MessageView::Warning(w) => {
                warn!(element = %w.src().map(|s| s.path_string().to_string()).unwrap_or_default(), warning = %w.error(), "GStreamer warning");
                Ok(())
            }
            MessageView::Latency(_) => {
                let _ = running.pipeline().recalculate_latency();
                Ok(())
            }
            MessageView::StateChanged(change)
                if msg.src() == Some(running.pipeline().upcast_ref()) =>
            {
                if change.current() == gst::State::Playing {
                    info!("pipeline playing");
                    self.state
                        .send_replace(CaptureState::Playing { generation });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Runs blocking GStreamer work on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CaptureError> + Send + 'static,
) -> Result<T, CaptureError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| CaptureError::StateChange)?
}
