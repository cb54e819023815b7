//! The KVS signaling connection's decisions, pure: why a connection ended and what to
//! fetch again before the next one, the per-connection send rate limits, and which of
//! the service's ICE servers viewers' sessions get.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use webrtc::ice_transport::ice_server::RTCIceServer;

use crate::aws::signaling::IceServer;
use crate::live::relay::{self, Route, Upstream};

/// First reconnect delay; doubles up to `RECONNECT_MAX`.
pub const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
pub const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// A connection that lasted this long counts as healthy: the backoff starts over.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// Ping period (the service closes a connection idle for 10 min; ping ≤ 30 s).
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// Planned reconnect, before the service's 1 h limit on a master connection.
pub const ROTATE_AFTER: Duration = Duration::from_secs(55 * 60);
/// ICE servers are refetched this long before their TTL runs out.
pub const ICE_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Per-connection send limits of the service.
pub const CANDIDATES_PER_SEC: usize = 20;
pub const SDP_PER_SEC: usize = 5;

/// Why a signaling connection ended (the `reason` label of
/// `edgecam_signaling_reconnects_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The service announced it will close the connection.
    GoAway,
    /// The socket closed or failed without notice.
    Dropped,
    /// The service refused our credentials or signature (401/403).
    Unauthorized,
    /// The handshake got a 5xx or 400 (endpoint moved or the channel changed).
    ServerError,
    /// The 1 h limit is near: a planned reconnect.
    Rotation,
    /// A control-plane call (describe, endpoint, ICE) failed.
    ControlPlane,
    /// No pong in time.
    Unresponsive,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Self::GoAway => "go_away",
            Self::Dropped => "dropped",
            Self::Unauthorized => "unauthorized",
            Self::ServerError => "server_error",
            Self::Rotation => "rotation",
            Self::ControlPlane => "control_plane",
            Self::Unresponsive => "unresponsive",
        }
    }

    /// What to fetch again before reconnecting.
    pub fn refetch(self) -> Refetch {
        match self {
            Self::GoAway | Self::ServerError | Self::ControlPlane => Refetch {
                channel: true,
                credentials: false,
            },
            Self::Unauthorized => Refetch {
                channel: false,
                credentials: true,
            },
            Self::Dropped | Self::Rotation | Self::Unresponsive => Refetch::default(),
        }
    }

    /// Whether to wait (backoff) before reconnecting: announced and planned ones go at once.
    pub fn immediate(self) -> bool {
        matches!(self, Self::GoAway | Self::Rotation)
    }

    /// Classifies a failed WebSocket handshake by its HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Unauthorized,
            _ => Self::ServerError,
        }
    }
}

/// What a reconnect must fetch again (the endpoint and ICE servers come with the channel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refetch {
    pub channel: bool,
    pub credentials: bool,
}

/// At most `per_sec` sends in any one-second window.
#[derive(Debug)]
pub struct SendLimit {
    per_sec: usize,
    sent: VecDeque<Instant>,
}

impl SendLimit {
    pub fn new(per_sec: usize) -> Self {
        Self {
            per_sec: per_sec.max(1),
            sent: VecDeque::new(),
        }
    }

    /// How long to wait before the next send at `now` (zero: send now). Call `record`
    /// when it is sent.
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.sent.pop_front();
        }
        if self.sent.len() < self.per_sec {
            return Duration::ZERO;
        }
        self.sent
            .front()
            .map(|t| (*t + Duration::from_secs(1)).saturating_duration_since(now))
            .unwrap_or_default()
    }

    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// A new connection starts with a fresh budget.
    pub fn reset(&mut self) {
        self.sent.clear();
    }
}

/// When the ICE servers fetched at `fetched` with `ttl` should be fetched again.
pub fn ice_refresh_at(fetched: Instant, ttl: Duration) -> Instant {
    fetched
        + ttl
            .saturating_sub(ICE_REFRESH_MARGIN)
            .max(Duration::from_secs(5))
}

pub use crate::aws::skew_ms;

/// The ICE servers as webrtc-rs can use them: STUN and TURN over UDP as given, TURN
/// over TCP and TLS through the loopback bridge `bridge` returns for its server (see
/// `live::relay`), TURN over DTLS dropped. Also the servers bridged, so that bridges no
/// longer handed out can be retired.
pub fn usable_ice_servers(
    servers: Vec<IceServer>,
    mut bridge: impl FnMut(&Upstream) -> Option<SocketAddr>,
) -> (Vec<RTCIceServer>, HashSet<Upstream>) {
    let mut bridged = HashSet::new();
    let usable = servers
        .into_iter()
        .filter_map(|s| {
            let urls: Vec<String> = s
                .urls
                .into_iter()
                .filter_map(|u| match relay::route(&u) {
                    Route::Direct => Some(u),
                    Route::Bridge(up) => {
                        let local = bridge(&up)?;
                        bridged.insert(up);
                        Some(relay::bridged_uri(local))
                    }
                    Route::Unusable => None,
                })
                .collect();
            (!urls.is_empty()).then_some(RTCIceServer {
                urls,
                username: s.username,
                credential: s.credential,
            })
        })
        .collect();
    (usable, bridged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_limit_allows_a_burst_then_spaces_sends() {
        let t0 = Instant::now();
        let mut lim = SendLimit::new(SDP_PER_SEC);
        for i in 0..5 {
            let now = t0 + Duration::from_millis(i * 10);
            assert_eq!(lim.wait(now), Duration::ZERO);
            lim.record(now);
        }
        // The sixth waits for the first to leave the window.
        assert_eq!(
            lim.wait(t0 + Duration::from_millis(50)),
            Duration::from_millis(950)
        );
        assert_eq!(lim.wait(t0 + Duration::from_secs(1)), Duration::ZERO);
        lim.reset();
        assert_eq!(lim.wait(t0), Duration::ZERO);
    }

    #[test]
    fn no_one_second_window_exceeds_the_limit() {
        let t0 = Instant::now();
        let mut lim = SendLimit::new(CANDIDATES_PER_SEC);
        let mut now = t0;
        let mut sent = Vec::new();
        for _ in 0..100 {
            now += lim.wait(now);
            lim.record(now);
            sent.push(now);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|s| s.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(
                in_window <= CANDIDATES_PER_SEC,
                "{in_window} sends within 1 s"
            );
        }
        // 100 sends at 20/s take about 4 s, not longer.
        assert!(now.duration_since(t0) <= Duration::from_secs(4));
    }

    #[test]
    fn reasons_decide_what_is_fetched_again() {
        assert!(Reason::GoAway.refetch().channel);
        assert!(Reason::GoAway.immediate());
        assert!(Reason::from_status(403).refetch().credentials);
        assert_eq!(Reason::from_status(401), Reason::Unauthorized);
        assert_eq!(Reason::from_status(503), Reason::ServerError);
        assert!(Reason::from_status(400).refetch().channel);
        assert_eq!(Reason::Dropped.refetch(), Refetch::default());
        assert!(!Reason::Dropped.immediate());
    }

    #[test]
    fn ice_servers_refresh_before_their_ttl() {
        let t0 = Instant::now();
        assert_eq!(
            ice_refresh_at(t0, Duration::from_secs(300)),
            t0 + Duration::from_secs(270)
        );
        assert_eq!(
            ice_refresh_at(t0, Duration::from_secs(10)),
            t0 + Duration::from_secs(5)
        );
    }

    #[test]
    fn small_skews_are_ignored() {
        let local = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(skew_ms(local + chrono::Duration::seconds(30), local), None);
        assert_eq!(
            skew_ms(local - chrono::Duration::minutes(20), local),
            Some(-1_200_000)
        );
    }

    #[test]
    fn turn_over_tcp_and_tls_goes_through_a_bridge_and_dtls_is_dropped() {
        let host = "1-2-3-4.t-1.kinesisvideo.eu-west-1.amazonaws.com";
        let kvs = vec![
            IceServer {
                urls: vec!["stun:stun.kinesisvideo.eu-west-1.amazonaws.com:443".into()],
                ..Default::default()
            },
            IceServer {
                urls: vec![
                    format!("turn:{host}:443?transport=udp"),
                    format!("turns:{host}:443?transport=udp"),
                    format!("turns:{host}:443?transport=tcp"),
                ],
                username: "user".into(),
                credential: "pass".into(),
            },
            IceServer {
                urls: vec!["turns:only-dtls:443?transport=udp".into()],
                ..Default::default()
            },
        ];
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut asked = Vec::new();
        let (usable, bridged) = usable_ice_servers(kvs, |up| {
            asked.push(up.clone());
            Some(local)
        });
        assert_eq!(usable.len(), 2, "the DTLS-only server is dropped");
        assert_eq!(
            usable[1].urls,
            [
                format!("turn:{host}:443?transport=udp"),
                "turn:127.0.0.1:40000?transport=udp".to_owned()
            ],
            "UDP first, as given; TLS through the bridge"
        );
        assert_eq!(
            (usable[1].username.as_str(), usable[1].credential.as_str()),
            ("user", "pass")
        );
        let tls = Upstream {
            host: host.into(),
            port: 443,
            tls: true,
        };
        assert_eq!(asked, std::slice::from_ref(&tls));
        assert_eq!(bridged, HashSet::from([tls]));
        // A bridge that cannot start loses only its URI.
        let (usable, bridged) = usable_ice_servers(
            vec![IceServer {
                urls: vec![format!("turns:{host}:443")],
                ..Default::default()
            }],
            |_| None,
        );
        assert!(usable.is_empty() && bridged.is_empty());
    }
}
