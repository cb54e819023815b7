//! MQTT to AWS IoT Core (or any broker with mutual TLS): event messages out through a
//! durable SQLite outbox, commands in, availability with a Last Will, a retained state
//! snapshot, and Home Assistant discovery.
//!
//! The recorder queues event messages (built here by `EventPublisher`) in the same
//! transaction that records the event; the session task (`session`) sends the outbox in order and deletes
//! each message on its PUBACK, so nothing is lost across broker outages, restarts or
//! `kill -9`.

pub mod payload;
pub mod session;
mod snapshot;
mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::error;

use crate::events::{EventInfo, EventKind};
use crate::index::{ClipFacts, NewMessage};
use crate::recorder::publish::EventMessages;
use payload::Topics;

pub use session::{spawn, MqttDeps, MqttSettings};

/// The session settings from the config, with the TLS files loaded and checked; `None`
/// when MQTT is off.
pub fn settings(
    config: &crate::config::Config,
) -> Result<Option<MqttSettings>, crate::tls::TlsError> {
    let m = &config.mqtt;
    if !m.enabled {
        return Ok(None);
    }
    let client_id = m.client_id(&config.aws.thing_name).to_owned();
    Ok(Some(MqttSettings {
        host: m.host.clone(),
        port: m.port,
        topics: Topics {
            prefix: m.prefix(&client_id),
        },
        client_id,
        keep_alive: Duration::from_secs(m.keep_alive_s),
        home_assistant: m.home_assistant,
        outbox_max: m.outbox_max,
        tls: crate::tls::client_config("mqtt", &m.ca, &m.cert, &m.key, m.alpn)?,
        motion_min_area_percent: config.motion.min_area_percent,
        publish_talk: m.publish_talk,
    }))
}

/// Builds the event messages the recorder queues, and wakes the session task when one
/// was queued; clones share the wake-up.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    topics: Topics,
    camera: String,
    /// The KVS stream the event's video goes to (upload on).
    stream: Option<String>,
    outbox_max: u64,
    wake: Arc<Notify>,
}

impl EventPublisher {
    /// `end` messages then name the KVS stream and the event's range in it.
    pub fn with_stream(mut self, stream: Option<String>) -> Self {
        self.stream = stream;
        self
    }

    pub fn new(topics: Topics, camera: String, outbox_max: u64, wake: Arc<Notify>) -> Self {
        Self {
            topics,
            camera,
            stream: None,
            outbox_max,
            wake,
        }
    }

    fn bounded(&self, kind: EventKind, v: serde_json::Value, event_id: &str) -> Option<NewMessage> {
        let payload = v.to_string().into_bytes();
        if payload.len() > payload::MAX_PAYLOAD {
            error!(
                event_id,
                bytes = payload.len(),
                "event message over 128 KB; not sent"
            );
            return None;
        }
        Some(NewMessage {
            topic: self.topics.events(),
            payload,
            retain: false,
            kind: kind.as_str(),
            event_id: Some(event_id.to_owned()),
        })
    }
}

impl EventMessages for EventPublisher {
    fn message(&self, kind: EventKind, e: &EventInfo) -> Option<NewMessage> {
        let v = payload::event(kind, e, &self.camera, &[], None);
        self.bounded(kind, v, &e.id)
    }

    fn end_message(&self, e: &EventInfo, clips: &[ClipFacts]) -> NewMessage {
        let v = payload::event(
            EventKind::End,
            e,
            &self.camera,
            clips,
            self.stream.as_deref(),
        );
        NewMessage {
            topic: self.topics.events(),
            payload: v.to_string().into_bytes(),
            retain: false,
            kind: "end",
            event_id: Some(e.id.clone()),
        }
    }

    fn outbox_max(&self) -> u64 {
        self.outbox_max
    }

    fn queued(&self) {
        self.wake.notify_one();
    }
}

/// The client options for a session: persistent, with a last will on the availability
/// topic, over TLS.
fn options(s: &MqttSettings) -> rumqttc::MqttOptions {
    use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
    let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
    o.set_keep_alive(s.keep_alive);
    // A persistent session keeps our command subscription (and QoS 1 commands) across
    // reconnects.
    o.set_clean_session(false);
    o.set_last_will(LastWill::new(
        s.topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    o.set_inflight(100);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    o.set_request_channel_capacity(session::REQUESTS);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        std::sync::Arc::clone(&s.tls),
    )));
    o
}
