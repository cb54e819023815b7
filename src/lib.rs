//! edgecam: a daemon for home security cameras. One GStreamer capture pipeline feeds
//! live view and the event recorder; `ARCHITECTURE.md` at the top of the repository is
//! the map of these modules and of the order in which they may import each other.

pub mod aws;
pub mod backoff;
pub mod capture;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod detect;
pub mod events;
pub mod index;
pub mod live;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod net;
pub mod onvif;
pub mod recorder;
pub mod rtsp;
pub mod speaker;
pub mod tls;
pub mod upload;
pub mod web;

/// Exit code for a configuration the daemon cannot use (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;
