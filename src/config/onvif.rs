//! `[onvif]`: the ONVIF Profile S services NVRs and Home Assistant add a camera with.

use serde::{Deserialize, Serialize};

use super::{Rtsp, Web};

/// `[onvif]`: Device and Media services on the local HTTP server, and WS-Discovery.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Onvif {
    /// Serve ONVIF at `/onvif/device_service` and `/onvif/media_service`. Needs
    /// `[rtsp]`: the stream it hands out is the RTSP server's. Default false.
    pub enabled: bool,
    /// Answer WS-Discovery probes (and say Hello and Bye) so NVRs find the camera.
    /// Default unset: on when `web.listen` is reachable from the network.
    pub discovery: Option<bool>,
    /// WS-Discovery's UDP port (the standard's is 3702). Default 3702.
    pub discovery_port: u16,
    /// The name NVRs show. Default unset: `aws.thing_name`, else the hostname.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub name: Option<String>,
}

impl Default for Onvif {
    fn default() -> Self {
        Self {
            enabled: false,
            discovery: None,
            discovery_port: 3702,
            name: None,
        }
    }
}

impl Onvif {
    /// Whether discovery runs: the setting, else whether the web surface is on the
    /// network.
    pub fn discovery_on(&self, web: &Web) -> bool {
        self.enabled
            && self
                .discovery
                .unwrap_or_else(|| web.listen_addr().is_some_and(|a| !a.ip().is_loopback()))
    }

    pub(super) fn validate(
        &self,
        rtsp: &Rtsp,
        bad: &mut impl FnMut(&'static str, &'static str, String),
    ) {
        if self.enabled && !rtsp.enabled {
            bad(
                "onvif",
                "enabled",
                "needs rtsp.enabled = true: NVRs play the stream ONVIF points them at over RTSP"
                    .into(),
            );
        }
        if self.discovery_port == 0 {
            bad(
                "onvif",
                "discovery_port",
                "must be a port number (1-65535)".into(),
            );
        }
        if self.name.as_ref().is_some_and(|n| n.len() > 64) {
            bad("onvif", "name", "must be at most 64 characters".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onvif_needs_rtsp_and_discovery_follows_the_web_surface() {
        let mut got = Vec::new();
        let on = Onvif {
            enabled: true,
            ..Onvif::default()
        };
        on.validate(&Rtsp::default(), &mut |s, k, m| {
            got.push(format!("{s}.{k}: {m}"))
        });
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("onvif.enabled: needs rtsp.enabled"));
        let mut web = Web::default();
        assert!(!on.discovery_on(&web));
        web.listen = "0.0.0.0:8080".into();
        assert!(on.discovery_on(&web));
        let off = Onvif {
            discovery: Some(false),
            ..on
        };
        assert!(!off.discovery_on(&web));
    }
}
