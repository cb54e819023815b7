//! edgecam: a daemon for home security cameras. One GStreamer capture pipeline feeds
//! live view and the event recorder; see `DESIGN.md` in the project's shared notes.

pub mod capture;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod events;
pub mod index;
pub mod kvs;
pub mod live;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod recorder;
pub mod tls;
pub mod upload;
pub mod web;

/// Exit code for a configuration the daemon cannot use (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;
