//! Event detection and tracking: the motion detector and the trigger → event state
//! machine. No I/O here.

pub mod motion;
pub mod tracker;

/// Which change of an event is being reported (to the index, MQTT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    Update,
    End,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Update => "update",
            Self::End => "end",
        }
    }
}

pub use motion::{MotionDetector, MotionResult, MotionSettings};
pub use tracker::{
    Action, EventInfo, IdSource, Input, Tracker, TrackerSettings, Trigger, TriggerKind, UlidIds,
};
