//! The event recorder: the pre-roll ring and (growing) the clip writer, recovery and
//! retention.

pub mod preroll;

pub use preroll::PreRoll;
