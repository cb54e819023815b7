//! The MQTT session's settings, resolved from `[mqtt]` with the TLS files loaded and
//! checked, and the client options they make: persistent session, Last Will, TLS.

use std::sync::Arc;
use std::time::Duration;

use super::payload::Topics;

/// rumqttc's request queue; more than the window plus a burst of replies.
pub(super) const REQUESTS: usize = 512;

/// The session's settings, resolved from `[mqtt]`.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub topics: Topics,
    pub keep_alive: Duration,
    pub home_assistant: bool,
    pub outbox_max: u64,
    pub tls: Arc<rustls::ClientConfig>,
    /// `motion.min_area_percent`, reported beside the detector's score.
    pub motion_min_area_percent: f32,
    /// Publish `<prefix>/talk`.
    pub publish_talk: bool,
    /// The KVS stream event video goes to (upload on): `end` messages say where to play
    /// the event back from.
    pub stream: Option<String>,
    /// The object detector's labels (`[detect]` on): each gets `<prefix>/<label>` and a
    /// Home Assistant sensor.
    pub labels: Vec<String>,
    /// The `[[zones]]`' names (`[detect]` on): each gets `<prefix>/zone/<name>` and a
    /// Home Assistant sensor.
    pub zones: Vec<String>,
    /// The RTSP URL (no credentials) when `[rtsp]` is on: Home Assistant's discovery
    /// shows it, retained on `<prefix>/rtsp`.
    pub rtsp_url: Option<String>,
}

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
        labels: match config.detect.enabled {
            true => config.detect.labels.clone(),
            false => Vec::new(),
        },
        zones: match config.detect.enabled {
            true => config.zones.iter().map(|z| z.name.clone()).collect(),
            false => Vec::new(),
        },
        // The daemon fills it in: it knows the RTSP server's address.
        rtsp_url: None,
    }))
}

/// The client options for a session: persistent, with a last will on the availability
/// topic, over TLS.
pub(super) fn options(s: &MqttSettings) -> rumqttc::MqttOptions {
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
    o.set_request_channel_capacity(REQUESTS);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        std::sync::Arc::clone(&s.tls),
    )));
    o
}
