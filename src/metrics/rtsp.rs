//! The RTSP server's metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// RTSP server metrics. Clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct RtspMetrics {
    /// RTSP connections open now.
    pub clients: Gauge,
    /// Sessions (clients set up to receive the stream) now.
    pub sessions: Gauge,
    /// RTP bytes handed to clients' transports (each packet once per session).
    pub bytes: Counter,
    /// Connections accepted since start.
    pub connections: Counter,
}

impl RtspMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "edgecam_rtsp_clients",
            "RTSP connections open now",
            self.clients.clone(),
        );
        registry.register(
            "edgecam_rtsp_sessions",
            "RTSP sessions (clients set up to receive the stream) now",
            self.sessions.clone(),
        );
        registry.register(
            "edgecam_rtsp_bytes",
            "RTP bytes handed to RTSP clients (each packet once per session)",
            self.bytes.clone(),
        );
        registry.register(
            "edgecam_rtsp_connections",
            "RTSP connections accepted",
            self.connections.clone(),
        );
    }
}
