//! MQTT to AWS IoT Core (or any broker with mutual TLS): event messages out through a
//! durable SQLite outbox, commands in, availability with a Last Will, a retained state
//! snapshot, and Home Assistant discovery.
//!
//! The recorder queues the facts of each event change in the index's outbox in the same
//! transaction that records the change; the session task (`session`) words them
//! (`payload::word`), sends them in order and deletes each on its PUBACK, so nothing is
//! lost across broker outages, restarts or `kill -9`.

mod labels;
pub mod payload;
pub mod session;
mod settings;
mod snapshot;
mod window;

pub use session::{spawn, MqttDeps};
pub use settings::{settings, MqttSettings};
