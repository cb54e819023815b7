//! KVS WebRTC signaling transport: one master WebSocket to the channel's WSS endpoint,
//! presigned with SigV4, kept up forever. Viewers' offers and candidates go to the master;
//! its answers and candidates go out under the service's rate limits. Peer connections
//! do not depend on this socket, so viewers keep watching across any reconnect.

pub mod machine;

use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use webrtc::peer_connection::configuration::RTCConfiguration;

use self::machine::{Reason, SendLimit};
use super::message::{self, Inbound, Outbound, MAX_MESSAGE_BYTES};
use super::relay::Bridges;
use crate::aws::signaling::{self, Channel};
use crate::aws::{sign, skewed, Aws};
use crate::backoff::Backoff;
use crate::metrics::LiveMetrics;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry period for an ICE refresh that failed (the old servers stay in use).
const ICE_RETRY: Duration = Duration::from_secs(10);

/// Everything the transport needs.
pub struct KvsSignaling {
    pub aws: Aws,
    pub channel_name: String,
    /// Where viewers' offers and candidates go.
    pub master: mpsc::Sender<Inbound>,
    /// The master's answers and candidates.
    pub outbound: mpsc::Receiver<Outbound>,
    /// New sessions use the latest ICE servers.
    pub ice: watch::Sender<RTCConfiguration>,
    /// `live.relay_only`: sessions offer relay candidates only.
    pub relay_only: bool,
    pub metrics: LiveMetrics,
}

/// Starts the transport; it runs until `cancel`.
pub fn spawn(transport: KvsSignaling, cancel: CancellationToken) -> JoinHandle<()> {
    let state = State {
        t: transport,
        bridges: Bridges::new(cancel.clone()),
        channel: None,
        ice_refresh: None,
        skew_ms: 0,
        candidates: SendLimit::new(machine::CANDIDATES_PER_SEC),
        sdps: SendLimit::new(machine::SDP_PER_SEC),
        correlation: 0,
    };
    tokio::spawn(state.run(cancel))
}

struct State {
    t: KvsSignaling,
    bridges: Bridges,
    channel: Option<Channel>,
    ice_refresh: Option<Instant>,
    skew_ms: i64,
    candidates: SendLimit,
    sdps: SendLimit,
    correlation: u64,
}

/// How a connection attempt or a connection ended.
enum Ended {
    Cancelled,
    Reconnect(Reason),
}

impl State {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(machine::RECONNECT_INITIAL, machine::RECONNECT_MAX);
        info!(channel = %self.t.channel_name, "KVS signaling starting");
        loop {
            let started = Instant::now();
            let reason = match self.connect_and_serve(&cancel).await {
                Ended::Cancelled => return,
                Ended::Reconnect(r) => r,
            };
            self.t
                .metrics
                .signaling_reconnects
                .get_or_create(&[("reason", reason.label())])
                .inc();
            let refetch = reason.refetch();
            if refetch.channel {
                self.channel = None;
            }
            if started.elapsed() >= machine::HEALTHY_AFTER {
                backoff.reset();
            }
            let delay = if reason.immediate() {
                Duration::ZERO
            } else {
                backoff.next_delay_full(fastrand::f64())
            };
            info!(
                reason = reason.label(),
                retry_in_ms = delay.as_millis() as u64,
                "KVS signaling reconnecting"
            );
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn connect_and_serve(&mut self, cancel: &CancellationToken) -> Ended {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => match signaling::resolve(&self.t.aws, &self.t.channel_name).await {
                Ok(c) => {
                    info!(arn = %c.arn, wss = %c.wss, "signaling channel ready");
                    self.channel = Some(c.clone());
                    self.ice_refresh = None;
                    c
                }
                Err(e) => {
                    warn!(error = %e, "cannot set up the signaling channel");
                    return Ended::Reconnect(Reason::ControlPlane);
                }
            },
        };
        if self.ice_refresh.is_none_or(|at| Instant::now() >= at) {
            self.refresh_ice(&channel).await;
        }
        let creds = match self.t.aws.credentials().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "no credentials for KVS signaling");
                return Ended::Reconnect(Reason::Unauthorized);
            }
        };
        let now = skewed(SystemTime::now(), self.skew_ms);
        let url =
            match sign::master_url(&channel.wss, &channel.arn, &creds, self.t.aws.region(), now) {
                Ok(u) => u,
                Err(e) => {
                    warn!(error = %e, "cannot presign the signaling URL");
                    return Ended::Reconnect(Reason::Unauthorized);
                }
            };
        let socket = tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            r = self.open(&url) => match r {
                Ok(s) => s,
                Err(reason) => return Ended::Reconnect(reason),
            },
        };
        info!(channel = %self.t.channel_name, "KVS signaling connected");
        self.candidates.reset();
        self.sdps.reset();
        self.serve(socket, &channel, cancel).await
    }

    /// Opens the WebSocket; a refused handshake is classified by its status, and the
    /// server's `Date` corrects our clock for the next signature.
    async fn open(&mut self, url: &str) -> Result<Socket, Reason> {
        // Room above the parser's limit, so an oversized message is refused by the parser
        // (logged, connection kept) rather than by the socket (connection lost).
        let config = WebSocketConfig::default()
            .max_message_size(Some(2 * MAX_MESSAGE_BYTES))
            .max_frame_size(Some(2 * MAX_MESSAGE_BYTES));
        let attempt = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let server_date = resp
                    .headers()
                    .get("date")
                    .and_then(|d| d.to_str().ok())
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
                if let Some(skew) =
                    server_date.and_then(|d| machine::skew_ms(d.to_utc(), chrono::Utc::now()))
                {
                    warn!(
                        skew_ms = skew,
                        "the local clock is off; correcting signatures"
                    );
                    self.skew_ms = skew;
                }
                warn!(status, "KVS signaling refused the connection");
                Err(Reason::from_status(status))
            }
            Ok(Err(e)) => {
                warn!(error = %e, "KVS signaling connection failed");
                Err(Reason::Dropped)
            }
            Err(_) => {
                warn!("KVS signaling connection timed out");
                Err(Reason::Dropped)
            }
        }
    }

    async fn refresh_ice(&mut self, channel: &Channel) {
        match signaling::ice_servers(&self.t.aws, channel).await {
            Ok((servers, ttl)) => {
                let bridges = &mut self.bridges;
                let (servers, bridged) = machine::usable_ice_servers(servers, |up| {
                    bridges
                        .local(up)
                        .inspect_err(|e| warn!(error = %e, "cannot start a TURN bridge"))
                        .ok()
                });
                self.bridges.keep_only(&bridged);
                debug!(
                    servers = servers.len(),
                    bridged = bridged.len(),
                    ttl_s = ttl.as_secs(),
                    "ICE servers fetched"
                );
                self.t
                    .ice
                    .send_replace(super::ice_config(servers, self.t.relay_only));
                self.ice_refresh = Some(machine::ice_refresh_at(Instant::now(), ttl));
            }
            Err(e) => {
                warn!(error = %e, "cannot fetch ICE servers; keeping the old ones");
                self.ice_refresh = Some(Instant::now() + ICE_RETRY);
            }
        }
    }

    async fn serve(
        &mut self,
        socket: Socket,
        channel: &Channel,
        cancel: &CancellationToken,
    ) -> Ended {
        let (mut sink, mut stream) = socket.split();
        let connected = Instant::now();
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + machine::PING_EVERY,
            machine::PING_EVERY,
        );
        let rotate = tokio::time::Instant::now() + machine::ROTATE_AFTER;
        let mut pending: Option<(String, bool)> = None;
        let mut pending_until = tokio::time::Instant::now();
        loop {
            let ice_at = self
                .ice_refresh
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + ICE_RETRY);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Cancelled;
                }
                msg = stream.next() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(reason) = self.on_message(&text, channel).await {
                                return Ended::Reconnect(reason);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            debug!(?frame, "KVS signaling closed by the service");
                            return Ended::Reconnect(Reason::Dropped);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            debug!(error = %e, "KVS signaling socket failed");
                            return Ended::Reconnect(Reason::Dropped);
                        }
                        None => return Ended::Reconnect(Reason::Dropped),
                    }
                }
                _ = tokio::time::sleep_until(pending_until), if pending.is_some() => {
                    if let Some((text, sdp)) = pending.take() {
                        self.record_send(sdp);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return Ended::Reconnect(Reason::Dropped);
                        }
                    }
                }
                out = self.t.outbound.recv(), if pending.is_none() => {
                    let Some(out) = out else { return Ended::Cancelled };
                    let Some((text, sdp)) = self.encode(&out) else { continue };
                    let wait = self.limit(sdp).wait(Instant::now());
                    if wait.is_zero() {
                        self.record_send(sdp);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return Ended::Reconnect(Reason::Dropped);
                        }
                    } else {
                        debug!(wait_ms = wait.as_millis() as u64, "signaling send rate limit");
                        pending = Some((text, sdp));
                        pending_until = tokio::time::Instant::now() + wait;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > machine::PING_EVERY * 2 + Duration::from_secs(5) {
                        warn!("KVS signaling stopped answering pings");
                        return Ended::Reconnect(Reason::Unresponsive);
                    }
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return Ended::Reconnect(Reason::Dropped);
                    }
                }
                _ = tokio::time::sleep_until(rotate) => {
                    info!(connected_min = connected.elapsed().as_secs() / 60, "planned signaling reconnect before the 1 h limit");
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Reconnect(Reason::Rotation);
                }
                _ = tokio::time::sleep_until(ice_at) => self.refresh_ice(channel).await,
            }
        }
    }

    /// Handles one service message; `Some` ends the connection.
    async fn on_message(&mut self, text: &str, channel: &Channel) -> Option<Reason> {
        match message::parse_kvs(text) {
            Ok(Inbound::GoAway) => {
                info!("KVS signaling: GO_AWAY");
                Some(Reason::GoAway)
            }
            Ok(Inbound::ReconnectIceServer) => {
                info!("KVS signaling: RECONNECT_ICE_SERVER");
                self.refresh_ice(channel).await;
                None
            }
            Ok(Inbound::Status { description }) => {
                warn!(%description, "KVS signaling refused a message");
                None
            }
            Ok(inbound) => {
                // Never block the socket on the master for long: a full queue drops.
                if self.t.master.try_send(inbound).is_err() {
                    warn!("live master is not keeping up; signaling message dropped");
                }
                None
            }
            Err(e) => {
                warn!(error = %e, "ignoring a bad KVS signaling message");
                None
            }
        }
    }

    /// The KVS text of a message, and whether it counts as an SDP send.
    fn encode(&mut self, out: &Outbound) -> Option<(String, bool)> {
        self.correlation += 1;
        let id = format!("edgecam-{}", self.correlation);
        match message::to_kvs(out, &id) {
            Some(text) => Some((text, matches!(out, Outbound::Answer { .. }))),
            None => {
                match out {
                    Outbound::Refused { to, reason } => {
                        info!(client = %to, %reason, "viewer refused (KVS has no refusal message)")
                    }
                    _ => warn!(
                        client = out.recipient(),
                        "signaling payload over 10 KB; not sent"
                    ),
                }
                None
            }
        }
    }

    fn limit(&mut self, sdp: bool) -> &mut SendLimit {
        if sdp {
            &mut self.sdps
        } else {
            &mut self.candidates
        }
    }

    fn record_send(&mut self, sdp: bool) {
        self.limit(sdp).record(Instant::now());
    }
}
