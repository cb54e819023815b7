//! What the RTSP server is started with: its settings from the config, what it reads
//! and reports, and why it could not start.

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::capture::CaptureHandle;
use crate::commands::RtspReport;
use crate::config::Config;
use crate::media::{AudioBus, FrameBus};
use crate::metrics::RtspMetrics;

/// What the server needs from `[rtsp]` (and `[web]`, `[audio]`).
#[derive(Debug, Clone)]
pub struct RtspSettings {
    pub addr: SocketAddr,
    pub path: String,
    /// User and password for digest authentication; `None`: no authentication (only
    /// allowed on loopback).
    pub credentials: Option<(String, String)>,
    pub max_clients: u32,
    /// Serve the AAC sound as a second stream.
    pub audio: bool,
    pub sample_rate: u32,
    pub channels: u32,
}

impl RtspSettings {
    /// The settings when `[rtsp]` is on; `audio` says whether the camera has sound.
    pub fn from_config(config: &Config, audio: bool) -> Option<Self> {
        let rtsp = &config.rtsp;
        if !rtsp.enabled {
            return None;
        }
        if rtsp.password.is_none() && config.web.token.is_some() {
            tracing::warn!(
                "rtsp.password is unset: RTSP and ONVIF clients log in with the web token; \
                 give them a password of their own so NVRs never hold it"
            );
        }
        Some(Self {
            addr: rtsp.listen_addr(&config.web)?,
            path: rtsp.path.clone(),
            credentials: rtsp.credentials(&config.web),
            max_clients: u32::try_from(rtsp.max_clients).unwrap_or(4),
            audio,
            sample_rate: config.audio.sample_rate,
            channels: config.audio.channels,
        })
    }

    /// The URL to hand out (Home Assistant's discovery): the listen address, or when
    /// that is every address, the one this machine is reached on.
    pub fn advertised_url(&self) -> String {
        let ip = crate::net::local_ip_towards(None, self.addr.ip());
        format!(
            "rtsp://{}/{}",
            SocketAddr::new(ip, self.addr.port()),
            self.path
        )
    }

    /// The URL clients use, without credentials, for this port.
    pub fn url(&self, port: u16) -> String {
        format!(
            "rtsp://{}/{}",
            SocketAddr::new(self.addr.ip(), port),
            self.path
        )
    }
}

/// What the server reads and reports.
#[derive(Debug, Clone)]
pub struct RtspDeps {
    pub frames: FrameBus,
    /// The AAC bus, when the camera has sound.
    pub aac: Option<AudioBus>,
    pub capture: CaptureHandle,
    pub metrics: RtspMetrics,
    pub report: watch::Sender<RtspReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("rtsp.listen: cannot listen on {addr}: {message}")]
    Bind { addr: SocketAddr, message: String },
    #[error("RTSP server: {0}")]
    Init(String),
}
