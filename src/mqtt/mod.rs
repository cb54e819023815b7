//! MQTT to AWS IoT Core (or any broker with mutual TLS): event messages out through a
//! durable SQLite outbox, commands in, availability with a Last Will, a retained state
//! snapshot, and Home Assistant discovery.
//!
//! The recorder queues the facts of each event change in the index's outbox in the same
//! transaction that records the change; the session task (`session`) words them
//! (`payload::word`), sends them in order and deletes each on its PUBACK, so nothing is
//! lost across broker outages, restarts or `kill -9`.

pub mod payload;
pub mod session;
mod snapshot;
mod window;

use std::time::Duration;

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
        stream: config
            .upload
            .enabled
            .then(|| config.upload.stream(&config.aws.thing_name).to_owned()),
    }))
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
