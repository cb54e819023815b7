//! The event recorder: the pre-roll ring, the clip writer, reading clips back, recovery
//! and retention.

pub mod clip;
pub mod fmp4;
pub mod preroll;
pub mod recovery;
pub mod retention;
pub mod task;

pub use clip::{ClipError, ClipWriter};
pub use preroll::PreRoll;
pub use task::{spawn, RecorderConfig, RecorderDeps, RecorderHandle, RecorderStatus};
