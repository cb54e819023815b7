//! The event recorder: the pre-roll ring, the event tracker's actions applied to clip
//! files and the index, recovery and retention. It knows nothing of the paths that
//! follow it: event changes go into the index's outbox as facts (`publish`), and the
//! frames of clips go out on the `feed`.

pub mod clip;
mod clips;
pub mod feed;
mod handle;
mod motion;
mod open_clip;
pub mod preroll;
pub mod publish;
pub mod recovery;
pub mod retention;
mod retry;
mod shots;
pub mod sight;
mod task;
mod time;

pub use clip::{ClipError, ClipWriter};
pub use feed::{ClipFeed, Feed, FeedReceiver};
pub use handle::{RecorderCommand, RecorderHandle, RecorderStatus};
pub use preroll::{AudioRing, PreRoll};
pub use shots::BestShot;
pub use sight::{SightConfig, SightDeps};
pub use task::{prepare, spawn, Recorder, RecorderConfig, RecorderDeps, RECORDER_QUEUE};
