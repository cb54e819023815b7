//! Event detection and tracking: the motion detector and the trigger → event state
//! machine. No I/O here.

pub mod motion;
pub mod tracker;

pub use motion::{MotionDetector, MotionResult, MotionSettings};
pub use tracker::{
    Action, EventInfo, IdSource, Input, Tracker, TrackerSettings, Trigger, TriggerKind, UlidIds,
};
