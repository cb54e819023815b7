//! Subcommands of the `edgecam` binary that talk to a running daemon or read its data.

pub mod clips;
pub mod detect;
pub mod playback;
pub mod trigger;

/// `EX_UNAVAILABLE`: the daemon could not be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;
