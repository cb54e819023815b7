//! `[web]`: the local HTTP server, and the rules that keep it safe on a home network.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::in_range;

/// Shortest `web.token` accepted: guessing must be hopeless even without throttling.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[web]`: the local HTTP server (health, metrics, API, viewer page).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Address and port to listen on. Default `127.0.0.1:8080` (this machine only).
    pub listen: String,
    /// The credential every route but `/healthz` needs when set: programs send
    /// `Authorization: Bearer <token>`, people log in once at `/login`. Required when
    /// `listen` is not a loopback address. Default unset (no credential, loopback only).
    #[serde(deserialize_with = "super::empty_is_none")]
    pub token: Option<String>,
    /// Serve `/metrics` without the credential (for a Prometheus on the LAN). Default false.
    pub metrics_public: bool,
    /// Host names the camera answers to besides its addresses, `localhost` and its
    /// hostname (e.g. `["camera.home.arpa"]`); any other `Host` is refused, which stops
    /// DNS-rebinding pages. Default none.
    pub hosts: Vec<String>,
    /// HTTPS: `"auto"` (off on loopback, else `"self-signed"`), `"off"`, `"self-signed"`
    /// (a certificate made at first start, kept in the data directory; its SHA-256
    /// fingerprint is logged and printed by `edgecam version`), or `"files"`
    /// (`tls_cert` and `tls_key`). Browsers give the viewer page the microphone, and
    /// keep the session cookie off the wire, only over HTTPS. Default `"auto"`.
    pub tls: TlsMode,
    /// PEM certificate chain for `tls = "files"`.
    pub tls_cert: PathBuf,
    /// PEM private key for `tls = "files"` (mode 0600).
    pub tls_key: PathBuf,
    /// HTTP connections served at once (8-4096). A newcomer beyond it closes the oldest
    /// connection that is not in the middle of a request. Default 256.
    pub max_connections: usize,
}

/// `web.tls`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    Auto,
    Off,
    SelfSigned,
    Files,
}

impl Default for Web {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            metrics_public: false,
            hosts: Vec::new(),
            tls: TlsMode::Auto,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            max_connections: 256,
        }
    }
}

impl Web {
    /// The parsed listen address; `validate()` guarantees it parses.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// The HTTPS mode in effect: `auto` resolved against the listen address.
    pub fn tls_mode(&self) -> TlsMode {
        match self.tls {
            TlsMode::Auto if self.listen_addr().is_some_and(|a| a.ip().is_loopback()) => {
                TlsMode::Off
            }
            TlsMode::Auto => TlsMode::SelfSigned,
            other => other,
        }
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if self.listen_addr().is_none() {
            bad(
                "web",
                "listen",
                format!(
                    "must be an address and port such as \"127.0.0.1:8080\", got {:?}",
                    self.listen
                ),
            );
        }
        if let Some(addr) = self.listen_addr() {
            if !addr.ip().is_loopback() && self.token.is_none() {
                bad(
                    "web",
                    "token",
                    format!(
                        "must be set when web.listen ({}) is reachable from the network: \
                         set a long random token (e.g. the output of `openssl rand -hex 24`), \
                         or listen on 127.0.0.1",
                        self.listen
                    ),
                );
            }
            if self.token.as_ref().is_some_and(|t| t.len() < MIN_TOKEN_LEN) {
                bad(
                    "web",
                    "token",
                    format!("must be at least {MIN_TOKEN_LEN} characters (`openssl rand -hex 24` makes one)"),
                );
            }
        }
        self.validate_tls(bad);
        in_range(bad, "web", "max_connections", self.max_connections, 8, 4096);
    }

    fn validate_tls(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        let files = self.tls == TlsMode::Files;
        for (key, value) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if files && value.as_os_str().is_empty() {
                bad(
                    "web",
                    key,
                    "must be set when web.tls = \"files\" (a PEM file)".into(),
                );
            }
            if !files && !value.as_os_str().is_empty() {
                bad(
                    "web",
                    key,
                    "is only used with web.tls = \"files\": set that too, or remove this line"
                        .into(),
                );
            }
        }
    }
}
