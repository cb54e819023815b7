//! `[rtsp]`: the camera's own RTSP server, for NVRs, Home Assistant and VLC.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{in_range, Web};

/// Shortest `rtsp.password` accepted. NVRs store it, people type it once: 8 characters
/// is what cameras' own firmware asks for.
pub const MIN_PASSWORD_LEN: usize = 8;

/// `[rtsp]`: serves the one encode (and its AAC sound) to RTSP clients.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rtsp {
    /// Serve RTSP. Default false.
    pub enabled: bool,
    /// Address and port. Default unset: `0.0.0.0:8554` when `web.listen` is reachable
    /// from the network, else `127.0.0.1:8554`.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub listen: Option<String>,
    /// The stream's path: `rtsp://<camera>:8554/<path>`. Default `live`.
    pub path: String,
    /// User name for digest authentication. Default `edgecam`.
    pub user: String,
    /// Password for digest authentication (at least 8 characters). Default unset: the
    /// `web.token`, if set. Required (one or the other) when `listen` is reachable from
    /// the network.
    #[serde(deserialize_with = "super::empty_is_none")]
    pub password: Option<String>,
    /// Clients served at once (1-32); one more is refused with 503. Default 4.
    pub max_clients: usize,
}

impl Default for Rtsp {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: None,
            path: "live".into(),
            user: "edgecam".into(),
            password: None,
            max_clients: 4,
        }
    }
}

impl Rtsp {
    /// The address to listen on: the setting, or the default that follows `web.listen`.
    pub fn listen_addr(&self, web: &Web) -> Option<SocketAddr> {
        match &self.listen {
            Some(text) => text.parse().ok(),
            None => {
                let open = web.listen_addr().is_some_and(|a| !a.ip().is_loopback());
                Some(SocketAddr::from((
                    if open { [0, 0, 0, 0] } else { [127, 0, 0, 1] },
                    8554,
                )))
            }
        }
    }

    /// The user and password clients must give, if any: `password`, else the web token.
    pub fn credentials(&self, web: &Web) -> Option<(String, String)> {
        self.password
            .clone()
            .or_else(|| web.token.clone())
            .map(|password| (self.user.clone(), password))
    }

    pub(super) fn validate(
        &self,
        web: &Web,
        bad: &mut impl FnMut(&'static str, &'static str, String),
    ) {
        let Some(addr) = self.listen_addr(web) else {
            bad(
                "rtsp",
                "listen",
                format!(
                    "must be an address and port such as \"0.0.0.0:8554\", got {:?}",
                    self.listen.as_deref().unwrap_or_default()
                ),
            );
            return;
        };
        let path_ok = !self.path.is_empty()
            && self.path.len() <= 64
            && self
                .path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !path_ok {
            bad(
                "rtsp",
                "path",
                format!(
                    "must be 1-64 letters, digits, '_', '-' or '.' (no slashes), got {:?}",
                    self.path
                ),
            );
        }
        if self.user.is_empty() || self.user.contains([':', '"']) {
            bad("rtsp", "user", "must be a name without ':' or '\"'".into());
        }
        if self
            .password
            .as_ref()
            .is_some_and(|p| p.len() < MIN_PASSWORD_LEN)
        {
            bad(
                "rtsp",
                "password",
                format!("must be at least {MIN_PASSWORD_LEN} characters"),
            );
        }
        if self.enabled && !addr.ip().is_loopback() && self.credentials(web).is_none() {
            bad(
                "rtsp",
                "password",
                format!(
                    "must be set when rtsp.listen ({addr}) is reachable from the network \
                     (or set web.token, which RTSP then takes as its password), \
                     or listen on 127.0.0.1"
                ),
            );
        }
        in_range(bad, "rtsp", "max_clients", self.max_clients, 1, 32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(rtsp: &Rtsp, web: &Web) -> Vec<String> {
        let mut out = Vec::new();
        rtsp.validate(web, &mut |s, k, m| out.push(format!("{s}.{k}: {m}")));
        out
    }

    #[test]
    fn listen_follows_the_web_surface() {
        let mut web = Web::default();
        let rtsp = Rtsp::default();
        assert_eq!(rtsp.listen_addr(&web), "127.0.0.1:8554".parse().ok());
        web.listen = "0.0.0.0:8080".into();
        assert_eq!(rtsp.listen_addr(&web), "0.0.0.0:8554".parse().ok());
    }

    #[test]
    fn open_to_the_lan_needs_a_password_or_the_web_token() {
        let mut web = Web::default();
        let mut rtsp = Rtsp {
            enabled: true,
            listen: Some("0.0.0.0:8554".into()),
            ..Rtsp::default()
        };
        let got = problems(&rtsp, &web);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("rtsp.password: must be set"), "{got:?}");
        web.token = Some("0123456789abcdef0123".into());
        assert_eq!(problems(&rtsp, &web), Vec::<String>::new());
        assert_eq!(
            rtsp.credentials(&web),
            Some(("edgecam".into(), "0123456789abcdef0123".into()))
        );
        rtsp.password = Some("short".into());
        assert_eq!(
            problems(&rtsp, &web),
            ["rtsp.password: must be at least 8 characters"]
        );
        rtsp.password = Some("porch-camera".into());
        assert_eq!(
            rtsp.credentials(&web),
            Some(("edgecam".into(), "porch-camera".into()))
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let web = Web::default();
        let rtsp = Rtsp {
            listen: Some("8554".into()),
            ..Rtsp::default()
        };
        assert_eq!(problems(&rtsp, &web).len(), 1);
        let rtsp = Rtsp {
            path: "a/b".into(),
            user: "a:b".into(),
            max_clients: 0,
            ..Rtsp::default()
        };
        let keys: Vec<_> = problems(&rtsp, &web)
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(keys, ["rtsp.path", "rtsp.user", "rtsp.max_clients"]);
    }
}
