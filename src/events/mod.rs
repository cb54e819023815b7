//! Event detection and tracking: the motion detector, objects followed across frames,
//! zones, and the trigger → event state machine. No I/O here.

pub mod geometry;
pub mod motion;
pub mod objects;
pub mod tracker;
pub mod zones;

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

pub use geometry::{Polygon, Rect};
pub use motion::{MotionDetector, MotionResult, MotionSettings};
pub use objects::{Detection, Object, ObjectSettings, Objects};
pub use tracker::{
    Action, EventInfo, IdSource, Input, Tracker, TrackerSettings, Trigger, TriggerKind, UlidIds,
};
pub use zones::{Areas, Zone};
