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
    pub signaling: Signaling,
    /// Most viewers at once (1–10; KVS's limit is 10). Default 10.
    pub max_viewers: usize,
    /// Addresses to offer ICE host candidates on; empty means every non-loopback
    /// address. Default empty.
    pub ice_addresses: Vec<IpAddr>,
    /// KVS signaling channel (created when missing). Default unset: the aws.thing_name.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub channel_name: Option<String>,
    /// Send live view only through the TURN servers KVS hands out, so that viewers never
    /// learn the camera's addresses (needs `signaling = "kvs"`). Costs the direct path's
    /// lower latency. Default false.
    pub relay_only: bool,
}

/// `live.signaling`: how viewers find the camera.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Signaling {
    /// A WebSocket at `/signaling` on the local HTTP server.
    Lan,
    /// A KVS WebRTC signaling channel, the camera its master.
    Kvs,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            enabled: true,
            signaling: Signaling::Lan,
            max_viewers: 10,
            ice_addresses: Vec::new(),
            channel_name: None,
            relay_only: false,
        }
    }
}

impl Live {
    /// The configured channel name, if any (else the thing name is used).
    pub fn channel(&self) -> Option<&str> {
        self.channel_name.as_deref()
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if self.channel().is_some_and(|n| !super::valid_kvs_name(n)) {
            bad(
                "live",
                "channel_name",
                "must be 1-256 letters, digits, '_', '.' or '-'".into(),
            );
        }
        in_range(bad, "live", "max_viewers", self.max_viewers, 1, 10);
        if self.relay_only && self.signaling != Signaling::Kvs {
            bad(
                "live",
                "relay_only",
                "needs signaling = \"kvs\": only KVS hands out TURN servers".into(),
            );
        }
    }
}
