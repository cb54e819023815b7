//! The event recorder: the pre-roll ring, the clip writer, reading clips back, recovery
//! and retention.

pub mod clip;
pub mod fmp4;
pub mod preroll;

pub use clip::{ClipError, ClipWriter};
pub use preroll::PreRoll;
