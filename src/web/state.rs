//! What the handlers read, and the parts of it the authentication and origin checks
//! take on their own.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::watch;

use super::auth::Auth;
use super::origin::Hosts;
use crate::capture::Heartbeat;
use crate::control::Commands;
use crate::index::Index;
use crate::live::lan::LanSignaling;
use crate::media::Snapshot;
use crate::metrics::Metrics;

/// What the handlers read. Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub heartbeat: Heartbeat,
    pub snapshot: watch::Receiver<Option<Snapshot>>,
    pub commands: Commands,
    pub index: Index,
    pub data_dir: std::path::PathBuf,
    /// LAN signaling, when live view uses it.
    pub lan: Option<LanSignaling>,
    /// Viewers connected (0 when live view is off) and the limit.
    pub viewers: watch::Receiver<usize>,
    pub max_viewers: usize,
    /// The credential check in front of every route.
    pub auth: Arc<Auth>,
    /// The host names the camera answers to (DNS-rebinding defence).
    pub hosts: Arc<Hosts>,
    /// Who talks through the speaker, when the camera has one.
    pub talk: Option<watch::Receiver<crate::speaker::TalkState>>,
    /// The ONVIF services, when `[onvif]` is on.
    pub onvif: Option<Arc<crate::onvif::Onvif>>,
}

impl FromRef<WebState> for Arc<Auth> {
    fn from_ref(s: &WebState) -> Self {
        Arc::clone(&s.auth)
    }
}
