//! Talk-back: viewers speak through the camera's speaker, one at a time. The speaker
//! task owns the `floor` (who talks) and the `playback` pipeline (built when a viewer
//! takes the floor, torn down when it frees). Live view reaches it through a
//! `SpeakerHandle`: `talk` (start/stop), `push` (the viewer's RTP audio) and `left`.

pub mod floor;
pub mod playback;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::TalkMetrics;
pub use floor::{Answer, Release, Talker};
use floor::{Change, Floor};
use playback::Playback;
pub use playback::{PlaybackConfig, PlaybackError};

/// Talk requests waiting for the task.
const REQUEST_QUEUE: usize = 32;
/// Audio packets waiting for the task (about 0.6 s of 20 ms frames from one talker).
const AUDIO_QUEUE: usize = 32;
/// How often the task checks for silence and pipeline errors while someone talks.
const TICK: Duration = Duration::from_millis(200);

/// What the speaker part needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerConfig {
    pub playback: PlaybackConfig,
    /// The floor frees after this long without anything loud from the talker.
    pub silence: Duration,
}

impl SpeakerConfig {
    /// From `[audio]`, when the camera has a speaker.
    pub fn from_config(audio: &crate::config::Audio) -> Option<Self> {
        if !audio.speaker {
            return None;
        }
        let sink = match audio.speaker_sink.as_deref().map(str::trim) {
            Some(sink) if !sink.is_empty() => sink.to_owned(),
            _ => format!("alsasink device=\"{}\"", audio.speaker_device),
        };
        Some(Self {
            playback: PlaybackConfig {
                sink,
                volume: f64::from(audio.speaker_volume) / 100.0,
                latency_ms: audio.talk_latency_ms,
                // Mixed only where the microphone's sound is made.
                record: audio.record_talk && audio.enabled,
            },
            silence: Duration::from_secs(u64::from(audio.talk_silence_s)),
        })
    }
}

/// Who talks now, for the viewer page, MQTT and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalkState {
    pub talking: bool,
    pub talker: Option<String>,
}

/// Why a talk request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TalkError {
    #[error("{holder} is talking; try again when they stop")]
    Busy { holder: String },
    #[error("{0}")]
    Playback(String),
    #[error("the speaker is not running")]
    Stopped,
}

enum Request {
    Start {
        who: Talker,
        reply: oneshot::Sender<Result<(), TalkError>>,
    },
    Stop {
        serial: u64,
        why: Release,
    },
}

/// The way to the speaker task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SpeakerHandle {
    requests: mpsc::Sender<Request>,
    audio: mpsc::Sender<(u64, Bytes)>,
    state: watch::Receiver<TalkState>,
    metrics: TalkMetrics,
}

impl SpeakerHandle {
    /// `talk start` (`true`) or `stop` from a viewer.
    pub async fn talk(&self, who: Talker, start: bool) -> Result<(), TalkError> {
        if !start {
            self.stop(who.serial, Release::Stopped);
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Start { who, reply })
            .await
            .map_err(|_| TalkError::Stopped)?;
        answer.await.map_err(|_| TalkError::Stopped)?
    }

    /// The viewer `serial` left: frees the floor if it held it.
    pub fn left(&self, serial: u64) {
        self.stop(serial, Release::Left);
    }

    fn stop(&self, serial: u64, why: Release) {
        if self
            .requests
            .try_send(Request::Stop { serial, why })
            .is_err()
        {
            warn!(
                serial,
                "speaker busy: a talk stop was lost; silence frees the floor"
            );
        }
    }

    /// One RTP packet of viewer `serial`'s audio; played only while it holds the floor.
    pub fn push(&self, serial: u64, packet: Bytes) {
        if self.audio.try_send((serial, packet)).is_err() {
            self.metrics.dropped.inc();
        }
    }

    /// Who talks, as it changes.
    pub fn state(&self) -> watch::Receiver<TalkState> {
        self.state.clone()
    }
}

/// Starts the speaker task.
pub fn spawn(
    config: SpeakerConfig,
    metrics: TalkMetrics,
    stop: CancellationToken,
) -> (SpeakerHandle, JoinHandle<()>) {
    let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let (audio, audio_rx) = mpsc::channel(AUDIO_QUEUE);
    let (state_tx, state) = watch::channel(TalkState::default());
    let handle = SpeakerHandle {
        requests,
        audio,
        state,
        metrics: metrics.clone(),
    };
    let task = Task {
        floor: Floor::new(config.silence),
        config,
        playback: None,
        metrics,
        state: state_tx,
        since: None,
    };
    (handle, tokio::spawn(task.run(requests_rx, audio_rx, stop)))
}

struct Task {
    config: SpeakerConfig,
    floor: Floor,
    playback: Option<Playback>,
    metrics: TalkMetrics,
    state: watch::Sender<TalkState>,
    /// When the current talk began.
    since: Option<Instant>,
}

impl Task {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut audio: mpsc::Receiver<(u64, Bytes)>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(request) = requests.recv() => self.request(request).await,
                Some((serial, packet)) = audio.recv() => self.audio(serial, &packet),
                _ = tick.tick(), if self.floor.holder().is_some() => self.tick().await,
            }
        }
        if let Some(holder) = self.floor.holder().map(|t| t.serial) {
            if let Some(change) = self.floor.stop(holder, Release::Stopped) {
                let _ = self.apply(change).await;
            }
        }
    }

    async fn request(&mut self, request: Request) {
        match request {
            Request::Start { who, reply } => {
                let (answer, change) = self.floor.start(Instant::now(), who.clone());
                let result = match answer {
                    Answer::Busy { holder } => {
                        self.metrics.refused.inc();
                        info!(viewer = %who.name, holder = %holder, "talk refused: someone else is talking");
                        Err(TalkError::Busy { holder })
                    }
                    Answer::Granted => match change {
                        Some(change) => self.apply(change).await,
                        None => Ok(()),
                    },
                };
                let _ = reply.send(result);
            }
            Request::Stop { serial, why } => {
                if let Some(change) = self.floor.stop(serial, why) {
                    let _ = self.apply(change).await;
                }
            }
        }
    }

    fn audio(&mut self, serial: u64, packet: &Bytes) {
        let played =
            self.floor.plays(serial) && self.playback.as_ref().is_some_and(|p| p.push(packet));
        if played {
            self.metrics.packets.inc();
        } else {
            self.metrics.dropped.inc();
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if let Some(p) = &self.playback {
            if p.take_loud() {
                self.floor.heard(now);
            }
            if let Some(e) = p.error() {
                warn!(error = %e, "the speaker pipeline failed; the talk ends");
                if let Some(serial) = self.floor.holder().map(|t| t.serial) {
                    if let Some(change) = self.floor.stop(serial, Release::Stopped) {
                        let _ = self.apply(change).await;
                    }
                }
                return;
            }
        }
        if let Some(change) = self.floor.tick(now) {
            let _ = self.apply(change).await;
        }
    }

    /// Starts or stops playback for a change of talker, and tells everyone.
    async fn apply(&mut self, change: Change) -> Result<(), TalkError> {
        match change {
            Change::Granted(who) => {
                let config = self.config.playback.clone();
                let started = tokio::task::spawn_blocking(move || Playback::start(&config))
                    .await
                    .map_err(|e| TalkError::Playback(e.to_string()))
                    .and_then(|r| r.map_err(|e| TalkError::Playback(e.to_string())));
                match started {
                    Ok(playback) => {
                        self.playback = Some(playback);
                        self.since = Some(Instant::now());
                        self.metrics.talking.set(1);
                        self.metrics.talks.inc();
                        info!(viewer = %who.name, serial = who.serial, "talk started");
                        self.state.send_replace(TalkState {
                            talking: true,
                            talker: Some(who.name),
                        });
                        Ok(())
                    }
                    Err(e) => {
                        warn!(error = %e, "talk refused: the speaker cannot play");
                        self.floor.stop(who.serial, Release::Stopped);
                        Err(e)
                    }
                }
            }
            Change::Released(who, why) => {
                if let Some(p) = self.playback.take() {
                    let _ = tokio::task::spawn_blocking(move || p.stop()).await;
                }
                let seconds = self.since.take().map_or(0.0, |s| s.elapsed().as_secs_f64());
                self.metrics.talking.set(0);
                info!(viewer = %who.name, serial = who.serial, reason = why.as_str(), seconds, "talk ended");
                self.state.send_replace(TalkState::default());
                Ok(())
            }
        }
    }
}
