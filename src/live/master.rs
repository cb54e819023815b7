//! The WebRTC master: one session per viewer client id, at most `max_viewers`; queues
//! candidates that arrive before their offer; frees sessions that failed or went away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};
use webrtc::api::API;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState as State;

use super::early::EarlyCandidates;
use super::events::SessionEvent;
use super::message::{Inbound, Outbound};
use super::session::Session;
use super::LiveDeps;

pub use super::early::EARLY_CANDIDATE_TTL;
/// A disconnected session that has not come back after this long is freed.
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(3);
/// A session that never connects (the viewer vanished after its offer) is freed after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const INBOUND_QUEUE: usize = 256;
const EVENT_QUEUE: usize = 256;
const REAP_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for peer connections to close.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Reaches the master.
#[derive(Debug, Clone)]
pub struct MasterHandle {
    pub inbound: mpsc::Sender<Inbound>,
    pub viewers: watch::Receiver<usize>,
}

struct Entry {
    session: Session,
    created: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
}

struct Master {
    api: Arc<API>,
    ice: watch::Receiver<RTCConfiguration>,
    max_viewers: usize,
    deps: LiveDeps,
    outbound: mpsc::Sender<Outbound>,
    sessions: HashMap<String, Entry>,
    early: EarlyCandidates,
    serial: u64,
    events_tx: mpsc::Sender<(u64, SessionEvent)>,
    viewers: watch::Sender<usize>,
}

/// Starts the master; answers and candidates go out on `outbound`. New sessions use the
/// latest ICE servers in `ice`.
pub fn spawn(
    api: Arc<API>,
    ice: watch::Receiver<RTCConfiguration>,
    max_viewers: usize,
    deps: LiveDeps,
    outbound: mpsc::Sender<Outbound>,
    cancel: CancellationToken,
) -> (MasterHandle, JoinHandle<()>) {
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (viewers_tx, viewers) = watch::channel(0);
    let master = Master {
        api,
        ice,
        max_viewers,
        deps,
        outbound,
        sessions: HashMap::new(),
        early: EarlyCandidates::default(),
        serial: 0,
        events_tx,
        viewers: viewers_tx,
    };
    let task = tokio::spawn(master.run(inbound_rx, events_rx, cancel));
    (MasterHandle { inbound, viewers }, task)
}

impl Master {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut events: mpsc::Receiver<(u64, SessionEvent)>,
        cancel: CancellationToken,
    ) {
        let mut reap = tokio::time::interval(REAP_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(msg) = inbound.recv() => self.on_inbound(msg).await,
                Some((serial, ev)) = events.recv() => self.on_event(serial, ev).await,
                _ = reap.tick() => self.reap(Instant::now()).await,
            }
        }
        let closing: Vec<_> = self
            .sessions
            .drain()
            .map(|(_, e)| e.session.close())
            .collect();
        self.viewers.send_replace(0);
        // Let the viewers hear DTLS close_notify, but never hold shutdown up for long.
        let all = futures_util::future::join_all(closing);
        let _ = tokio::time::timeout(CLOSE_WAIT, all).await;
    }

    fn publish_count(&self) {
        let n = self.sessions.len();
        self.viewers.send_replace(n);
        self.deps.metrics.viewers.set(n as i64);
    }

    async fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Offer { from, sdp } => self.on_offer(from, sdp).await,
            Inbound::Candidate { from, candidate } => match self.sessions.get(&from) {
                Some(e) => {
                    if let Err(err) = e.session.add_candidate(candidate).await {
                        warn!(client = %from, error = %err, "ignoring a bad ICE candidate");
                    }
                }
                None => {
                    if !self.early.push(from.clone(), candidate, Instant::now()) {
                        debug!(client = %from, "early ICE candidate dropped: too many waiting");
                    }
                }
            },
            Inbound::Left { from } => {
                self.early.take(&from);
                if self.sessions.get(&from).is_some_and(|e| !e.connected) {
                    info!(client = %from, "viewer left before connecting");
                    self.remove(&from);
                }
            }
            // Service messages are the transport's business.
            Inbound::GoAway | Inbound::ReconnectIceServer | Inbound::Status { .. } => {}
        }
    }

    async fn on_offer(&mut self, from: String, sdp: String) {
        if let Some(old) = self.sessions.remove(&from) {
            info!(client = %from, "repeat offer replaces the viewer's session");
            old.session.close();
        }
        if self.sessions.len() >= self.max_viewers {
            self.take_over_stalled(&from);
        }
        if self.sessions.len() >= self.max_viewers {
            warn!(client = %from, max_viewers = self.max_viewers, "viewer refused: the viewer limit is reached");
            let reason = format!(
                "this camera already has {} viewers (the limit)",
                self.max_viewers
            );
            let _ = self
                .outbound
                .send(Outbound::Refused { to: from, reason })
                .await;
            return;
        }
        self.serial += 1;
        let span = info_span!("viewer", client = %from, serial = self.serial);
        let ice = self.ice.borrow().clone();
        let created = Session::answer(
            &self.api,
            ice,
            &from,
            self.serial,
            sdp,
            self.deps.clone(),
            self.events_tx.clone(),
        )
        .instrument(span)
        .await;
        let (session, answer) = match created {
            Ok(x) => x,
            Err(e) => {
                warn!(client = %from, error = %e, "cannot answer the viewer's offer");
                let _ = self
                    .outbound
                    .send(Outbound::Refused {
                        to: from,
                        reason: format!("bad offer: {e}"),
                    })
                    .await;
                return;
            }
        };
        info!(client = %from, viewers = self.sessions.len() + 1, "viewer joined");
        let _ = self
            .outbound
            .send(Outbound::Answer {
                to: from.clone(),
                sdp: answer,
            })
            .await;
        for c in self.early.take(&from) {
            if let Err(e) = session.add_candidate(c).await {
                warn!(client = %from, error = %e, "ignoring a bad early ICE candidate");
            }
        }
        self.sessions.insert(
            from,
            Entry {
                session,
                created: Instant::now(),
                connected: false,
                disconnected_since: None,
            },
        );
        self.publish_count();
    }

    fn client_of(&self, serial: u64) -> Option<String> {
        self.sessions
            .iter()
            .find(|(_, e)| e.session.serial == serial)
            .map(|(k, _)| k.clone())
    }

    async fn on_event(&mut self, serial: u64, ev: SessionEvent) {
        let Some(client) = self.client_of(serial) else {
            return;
        };
        match ev {
            SessionEvent::LocalCandidate(candidate) => {
                let _ = self
                    .outbound
                    .send(Outbound::Candidate {
                        to: client,
                        candidate,
                    })
                    .await;
            }
            SessionEvent::State(state) => {
                info!(client = %client, ?state, "viewer connection state");
                match state {
                    State::Failed | State::Closed => self.remove(&client),
                    State::Disconnected => {
                        if let Some(e) = self.sessions.get_mut(&client) {
                            e.disconnected_since.get_or_insert(Instant::now());
                        }
                    }
                    State::Connected => {
                        if let Some(e) = self.sessions.get_mut(&client) {
                            let first = !e.connected;
                            e.connected = true;
                            e.disconnected_since = None;
                            if first {
                                let kind = e.session.local_candidate_type().await;
                                let kind = kind.unwrap_or("unknown");
                                info!(client = %client, candidate = kind, "viewer connected");
                                self.deps
                                    .metrics
                                    .candidate_types
                                    .get_or_create(&[("type", kind)])
                                    .inc();
                            }
                        }
                    }
                    _ => {}
                }
            }
            SessionEvent::FirstFrame(_) => {}
            SessionEvent::Goodbye(how) => {
                info!(client = %client, how = how.as_str(), "viewer said goodbye");
                self.remove(&client);
            }
        }
    }

    /// The camera is full: a viewer whose connection has gone quiet (ICE disconnected,
    /// a phone that left the Wi-Fi) gives its place to the new one.
    fn take_over_stalled(&mut self, newcomer: &str) {
        let stalled = self
            .sessions
            .iter()
            .filter_map(|(k, e)| e.disconnected_since.map(|t| (t, k.clone())))
            .min();
        if let Some((_, client)) = stalled {
            info!(client = %client, newcomer, "a new viewer takes the place of a stalled one");
            self.remove(&client);
        }
    }

    fn remove(&mut self, client: &str) {
        if let Some(e) = self.sessions.remove(client) {
            e.session.close();
            info!(client, viewers = self.sessions.len(), "viewer left");
            self.publish_count();
        }
    }

    /// Frees sessions disconnected too long and expires early candidates.
    async fn reap(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, e)| {
                let gone = e
                    .disconnected_since
                    .is_some_and(|t| now.duration_since(t) >= DISCONNECTED_GRACE);
                let never = !e.connected && now.duration_since(e.created) >= CONNECT_TIMEOUT;
                gone || never
            })
            .map(|(k, _)| k.clone())
            .collect();
        for client in stale {
            self.remove(&client);
        }
        self.early.expire(now);
    }
}
