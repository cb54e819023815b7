//! `[live]`: live view over WebRTC.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::in_range;

/// `[live]`: the WebRTC master.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    /// Serve live view. Default true.
    pub enabled: bool,
    /// How viewers find the camera: "lan" (a WebSocket at /signaling on the local HTTP
    /// server) or "kvs" (Amazon Kinesis Video Streams signaling). Default "lan".
    pub signaling: String,
    /// Most viewers at once (1–10; KVS's limit is 10). Default 10.
    pub max_viewers: usize,
    /// Addresses to offer ICE host candidates on; empty means every non-loopback
    /// address. Default empty.
    pub ice_addresses: Vec<IpAddr>,
    /// KVS signaling channel (created when missing). Default empty: the aws.thing_name.
    pub channel_name: String,
    /// Send live view only through the TURN servers KVS hands out, so that viewers never
    /// learn the camera's addresses (needs `signaling = "kvs"`). Costs the direct path's
    /// lower latency. Default false.
    pub relay_only: bool,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            enabled: true,
            signaling: "lan".into(),
            max_viewers: 10,
            ice_addresses: Vec::new(),
            channel_name: String::new(),
            relay_only: false,
        }
    }
}

impl Live {
    /// The configured channel name, if any (else the thing name is used).
    pub fn channel(&self) -> Option<&str> {
        Some(self.channel_name.as_str()).filter(|n| !n.is_empty())
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if !matches!(self.signaling.as_str(), "lan" | "kvs") {
            bad(
                "live",
                "signaling",
                format!("must be \"lan\" or \"kvs\", got {:?}", self.signaling),
            );
        }
        if !super::valid_kvs_name(&self.channel_name) {
            bad(
                "live",
                "channel_name",
                "must be 1-256 letters, digits, '_', '.' or '-'".into(),
            );
        }
        in_range(bad, "live", "max_viewers", self.max_viewers, 1, 10);
        if self.relay_only && self.signaling != "kvs" {
            bad(
                "live",
                "relay_only",
                "needs signaling = \"kvs\": only KVS hands out TURN servers".into(),
            );
        }
    }
}
