//! `[live]`: live view over WebRTC.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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
}

impl Default for Live {
    fn default() -> Self {
        Self {
            enabled: true,
            signaling: "lan".into(),
            max_viewers: 10,
            ice_addresses: Vec::new(),
        }
    }
}

impl Live {
    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if !matches!(self.signaling.as_str(), "lan" | "kvs") {
            bad(
                "live",
                "signaling",
                format!("must be \"lan\" or \"kvs\", got {:?}", self.signaling),
            );
        }
        if self.signaling == "kvs" && self.enabled {
            bad(
                "live",
                "signaling",
                "KVS signaling is not available in this version yet; use \"lan\"".into(),
            );
        }
        if !(1..=10).contains(&self.max_viewers) {
            bad(
                "live",
                "max_viewers",
                format!("must be between 1 and 10, got {}", self.max_viewers),
            );
        }
    }
}
