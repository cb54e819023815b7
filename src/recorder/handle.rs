//! How other paths reach the recorder: its commands, their typed answers, and its state
//! as a watch.

use tokio::sync::{mpsc, oneshot, watch};

use crate::commands::{CommandError, Outcome, Record};
use crate::events::TriggerKind;

/// What the recorder can be asked to do (the recording part of the command set).
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderCommand {
    Record(Record),
    Detect {
        enabled: bool,
    },
    /// New zones and motion masks, applied from the next picture on.
    Areas(crate::events::Areas),
    Snapshot,
    Status,
}

/// The recorder's state as others see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderStatus {
    pub recording: bool,
    pub event_id: Option<String>,
    pub detect: bool,
    /// The detector sees motion now (it saw some within `MOTION_HOLD`): what a motion
    /// sensor shows, unlike `recording`, which lasts through the post-roll.
    pub motion: bool,
    /// The detector's score (percentage of the picture moving, one decimal), updated at
    /// most once a second.
    pub motion_score: f32,
    /// The objects in view by label (announced ones, while something moves).
    pub objects: std::collections::BTreeMap<String, u32>,
    /// The objects that matter in each `[[zones]]` zone.
    pub zones: std::collections::BTreeMap<String, u32>,
    /// The announced objects in view, with where they are (what the page draws).
    pub seen: Vec<crate::events::Object>,
}

pub(super) type Answer = oneshot::Sender<Result<Outcome, CommandError>>;
pub(super) type Request = (TriggerKind, RecorderCommand, Answer);

/// Reaches the recorder task.
#[derive(Debug, Clone)]
pub struct RecorderHandle {
    pub(super) commands: mpsc::Sender<Request>,
    pub(super) status: watch::Receiver<RecorderStatus>,
    pub(super) best_shot: watch::Receiver<Option<super::BestShot>>,
}

impl RecorderHandle {
    /// Runs a command; `source` says where it came from (it becomes the trigger kind).
    pub async fn execute(
        &self,
        source: TriggerKind,
        command: RecorderCommand,
    ) -> Result<Outcome, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((source, command, tx))
            .await
            .map_err(|_| CommandError::RecorderStopped)?;
        rx.await.map_err(|_| CommandError::NoAnswer)?
    }

    pub fn status(&self) -> watch::Receiver<RecorderStatus> {
        self.status.clone()
    }

    /// Each event's picture, as it is made (see `BestShot`).
    pub fn best_shot(&self) -> watch::Receiver<Option<super::BestShot>> {
        self.best_shot.clone()
    }
}
