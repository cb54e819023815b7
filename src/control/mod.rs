//! The command dispatcher every transport (HTTP API, MQTT, the WebRTC data channel)
//! goes through: recording commands to the recorder, `playback` to the cloud, each with
//! a typed answer.

pub mod areas;

use std::time::Instant;

use tokio::sync::watch;

use crate::capture::{audio, Heartbeat};
use crate::commands::{Command, CommandError, Outcome, RtspReport};
use crate::events::TriggerKind;
use crate::recorder::{RecorderCommand, RecorderHandle, RecorderStatus};
use crate::upload::CloudPlayback;

/// Runs commands; cheap to clone.
#[derive(Debug, Clone)]
pub struct Commands {
    recorder: RecorderHandle,
    /// Answers `playback` in the caller's task (a cloud call must not hold up frames);
    /// `None` when upload is off.
    playback: Option<CloudPlayback>,
    /// The audio pipeline's heartbeat, when audio is on.
    audio: Option<Heartbeat>,
    /// Zones and masks changed while the camera runs.
    areas: Option<areas::AreasHandle>,
    /// The RTSP server's state, when it runs.
    rtsp: Option<watch::Receiver<RtspReport>>,
}

impl Commands {
    pub fn new(recorder: RecorderHandle, playback: Option<CloudPlayback>) -> Self {
        Self {
            recorder,
            playback,
            audio: None,
            areas: None,
            rtsp: None,
        }
    }

    /// Zones and masks can then be changed while the camera runs.
    pub fn with_areas(mut self, areas: areas::AreasHandle) -> Self {
        self.areas = Some(areas);
        self
    }

    /// Who keeps the zones and masks (none in tests that do not need them).
    pub fn areas(&self) -> Option<&areas::AreasHandle> {
        self.areas.as_ref()
    }

    /// `status` then reports the audio pipeline behind `heartbeat`.
    pub fn with_audio(mut self, heartbeat: Option<Heartbeat>) -> Self {
        self.audio = heartbeat;
        self
    }

    /// `status` then reports the RTSP server behind `report`.
    pub fn with_rtsp(mut self, report: watch::Receiver<RtspReport>) -> Self {
        self.rtsp = Some(report);
        self
    }

    /// Runs a command; `source` says where it came from (it becomes the trigger kind).
    pub async fn execute(
        &self,
        source: TriggerKind,
        command: Command,
    ) -> Result<Outcome, CommandError> {
        let to_recorder = match command {
            Command::Playback {
                event_id,
                expires_s,
            } => {
                let playback = self.playback.as_ref().ok_or(CommandError::PlaybackOff)?;
                return playback
                    .url(event_id.as_deref(), expires_s)
                    .await
                    .map(Outcome::Playback);
            }
            Command::Record(r) => RecorderCommand::Record(r),
            Command::Detect { enabled } => RecorderCommand::Detect { enabled },
            Command::Snapshot => RecorderCommand::Snapshot,
            Command::Status => RecorderCommand::Status,
            // The data channel runs it itself (`live`): it needs the viewer's identity.
            Command::Talk { .. } => return Err(CommandError::TalkViewerOnly),
        };
        let mut outcome = self.recorder.execute(source, to_recorder).await?;
        if let Outcome::Status(report) = &mut outcome {
            report.audio = audio::report(self.audio.as_ref(), Instant::now());
            if let Some(rtsp) = &self.rtsp {
                report.rtsp = rtsp.borrow().clone();
            }
        }
        Ok(outcome)
    }

    /// The recorder's state as it changes.
    pub fn status(&self) -> watch::Receiver<RecorderStatus> {
        self.recorder.status()
    }

    /// Each event's picture, as the recorder makes it.
    pub fn best_shot(&self) -> watch::Receiver<Option<crate::recorder::BestShot>> {
        self.recorder.best_shot()
    }
}
