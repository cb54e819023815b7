//! `[mqtt]`: events out and commands in over MQTT (AWS IoT Core or any broker with TLS).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[mqtt]`: the MQTT session.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// Connect to the broker. Default false.
    pub enabled: bool,
    /// Broker host name, e.g. "abc123-ats.iot.eu-west-1.amazonaws.com". Default empty.
    pub host: String,
    /// Broker port: 8883 (TLS), or 443 with `alpn = true` on IoT Core. Default 8883.
    pub port: u16,
    /// Offer the ALPN protocol "x-amzn-mqtt-ca" (IoT Core on port 443). Default false.
    pub alpn: bool,
    /// MQTT client id. Default unset: aws.thing_name.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub thing_name: Option<String>,
    /// CA certificate(s) the broker is checked against (PEM). Default empty.
    pub ca: PathBuf,
    /// The camera's certificate (PEM). Default empty.
    pub cert: PathBuf,
    /// The camera's private key (PEM); must not be readable by others. Default empty.
    pub key: PathBuf,
    /// Topic prefix. Default unset: "edgecam/<thing_name>".
    #[serde(deserialize_with = "super::empty_is_none")]
    pub topic_prefix: Option<String>,
    /// Keep-alive in seconds, 30–1200 (IoT Core's range). Default 60.
    pub keep_alive_s: u64,
    /// Publish Home Assistant MQTT discovery configs. Default false.
    pub home_assistant: bool,
    /// Most messages kept for the broker while it is unreachable; beyond it the oldest
    /// `update` and `state` messages are dropped (never `start` or `end`). Default 10000.
    pub outbox_max: u64,
    /// Publish who talks through the speaker on `<prefix>/talk` (retained), when the
    /// camera has one (`audio.speaker`). Default true.
    pub publish_talk: bool,
}

impl Default for Mqtt {
    fn default() -> Self {
        Self {
            enabled: false,
            host: String::new(),
            port: 8883,
            alpn: false,
            thing_name: None,
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            topic_prefix: None,
            keep_alive_s: 60,
            home_assistant: false,
            outbox_max: 10_000,
            publish_talk: true,
        }
    }
}

/// Slashes the prefix may have: IoT Core allows 7 per topic and the longest topic adds
/// three (`/cmd/<name>/result`).
const MAX_PREFIX_SLASHES: usize = 4;

impl Mqtt {
    /// The client id: `thing_name`, else the AWS thing name.
    pub fn client_id<'a>(&'a self, aws_thing: &'a str) -> &'a str {
        self.thing_name.as_deref().unwrap_or(aws_thing)
    }

    /// The topic prefix for `client_id`.
    pub fn prefix(&self, client_id: &str) -> String {
        match &self.topic_prefix {
            Some(prefix) => prefix.trim_end_matches('/').to_owned(),
            None => format!("edgecam/{client_id}"),
        }
    }

    pub(super) fn validate(
        &self,
        aws_thing: &str,
        bad: &mut impl FnMut(&'static str, &'static str, String),
    ) {
        if !(30..=1200).contains(&self.keep_alive_s) {
            bad(
                "mqtt",
                "keep_alive_s",
                format!(
                    "must be between 30 and 1200 (IoT Core's range), got {}",
                    self.keep_alive_s
                ),
            );
        }
        if self.outbox_max < 100 {
            bad(
                "mqtt",
                "outbox_max",
                format!("must be at least 100, got {}", self.outbox_max),
            );
        }
        let id = self.client_id(aws_thing);
        if id.len() > 128
            || id
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "_-:".contains(c)))
        {
            bad(
                "mqtt",
                "thing_name",
                "must be up to 128 letters, digits, '_', '-' or ':'".into(),
            );
        }
        let prefix = self.prefix(id);
        if prefix.matches('/').count() > MAX_PREFIX_SLASHES
            || prefix.contains(['+', '#'])
            || prefix.starts_with('$')
        {
            bad(
                "mqtt",
                "topic_prefix",
                format!("must have at most {MAX_PREFIX_SLASHES} slashes and no '+', '#' or leading '$', got {prefix:?}"),
            );
        }
        if !self.enabled {
            return;
        }
        if self.host.is_empty() {
            bad(
                "mqtt",
                "host",
                "is required when mqtt.enabled = true".into(),
            );
        }
        if id.is_empty() {
            bad(
                "mqtt",
                "thing_name",
                "is required when mqtt.enabled = true (or set aws.thing_name)".into(),
            );
        }
        for (key, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if path.as_os_str().is_empty() {
                bad(
                    "mqtt",
                    key,
                    "is required when mqtt.enabled = true (a PEM file)".into(),
                );
            }
        }
    }
}
