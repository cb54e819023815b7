//! The MQTT session task: connects with mutual TLS and a Last Will, sends the outbox in
//! order (at most `WINDOW` unacknowledged), deletes each message on its PUBACK, runs
//! commands from `<prefix>/cmd/+` and answers on `…/result`, keeps the retained state
//! current, and reconnects with jittered backoff forever. Each connection gets a fresh
//! rumqttc event loop: what was not acknowledged is resent from the outbox.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::labels::Presence;
use super::payload::{self, StateFacts};
use super::settings::{options, MqttSettings, REQUESTS};
use super::window::{Fetch, Window};
use crate::backoff::Backoff;
use crate::capture::{audio, Heartbeat};
use crate::commands::{self, Command, Reply};
use crate::control::Commands;
use crate::events::TriggerKind;
use crate::index::{Index, MessageKind, Outbox, Queued};
use crate::media::Snapshot;
use crate::metrics::MqttMetrics;

/// Outbox messages sent but not yet acknowledged (IoT Core allows 100 in flight).
const WINDOW: usize = 50;
const RECONNECT_INITIAL: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// State changes are published at most this often.
const STATE_EVERY: Duration = Duration::from_secs(1);
/// Storage use is re-read this often for the state message.
const STORAGE_EVERY: Duration = Duration::from_secs(10);
const REPLY_QUEUE: usize = 64;
/// On shutdown, how long to wait for `offline` to reach the broker.
const GOODBYE: Duration = Duration::from_millis(500);

/// What the session reads and drives.
#[derive(Debug, Clone)]
pub struct MqttDeps {
    pub index: Index,
    pub commands: Commands,
    pub snapshot: watch::Receiver<Option<Snapshot>>,
    pub viewers: watch::Receiver<usize>,
    pub metrics: MqttMetrics,
    /// The outbox's bound, and the bell rung when a message was queued (and when the
    /// clock is set: messages held until then may go).
    pub outbox: Outbox,
    /// The audio pipeline's heartbeat, when audio is on.
    pub audio: Option<Heartbeat>,
    /// Who talks through the speaker, when the camera has one.
    pub talk: Option<watch::Receiver<crate::speaker::TalkState>>,
    /// Queued messages wait while the clock is not set (their times are corrected then).
    pub clock: Option<watch::Receiver<crate::clock::ClockState>>,
}

/// Starts the session; it runs until `cancel`.
pub fn spawn(settings: MqttSettings, deps: MqttDeps, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(settings, deps, cancel))
}

/// Keeps `edgecam_mqtt_outbox_depth` current, connected or not (an outage is when it
/// matters), once a second rather than on every acknowledgement.
async fn watch_depth(deps: MqttDeps, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(STATE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Ok(depth) = deps.index.outbox_depth().await {
                    deps.metrics.outbox_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
                }
            }
        }
    }
}

async fn run(s: MqttSettings, deps: MqttDeps, cancel: CancellationToken) {
    tokio::spawn(watch_depth(deps.clone(), cancel.clone()));
    let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
    let (reply_tx, mut replies) = mpsc::channel(REPLY_QUEUE);
    loop {
        let started = Instant::now();
        let mut conn = Connection::new(&s, &deps, reply_tx.clone());
        match conn.serve(&mut replies, &cancel).await {
            Ok(()) => return,
            Err(e) => warn!(error = %e, host = %s.host, "MQTT connection lost"),
        }
        deps.metrics.connected.set(0);
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay_full(fastrand::f64());
        debug!(retry_in_ms = delay.as_millis() as u64, "MQTT reconnecting");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

struct Connection<'a> {
    s: &'a MqttSettings,
    deps: &'a MqttDeps,
    client: AsyncClient,
    eventloop: EventLoop,
    reply_tx: mpsc::Sender<(String, Vec<u8>)>,
    /// Which outbox messages are in flight on this connection.
    window: Window,
    connected: bool,
    last_state: Option<StateFacts>,
    /// The labels, and the zones, last published `ON` on their own topics.
    presence: Presence,
    last_talk: Option<crate::speaker::TalkState>,
    /// Each event's picture, published on the snapshot topic (Home Assistant's camera
    /// image, and what notifications show).
    best_shot: watch::Receiver<Option<crate::recorder::BestShot>>,
    storage: (u64, Option<Instant>),
}

impl<'a> Connection<'a> {
    fn new(
        s: &'a MqttSettings,
        deps: &'a MqttDeps,
        reply_tx: mpsc::Sender<(String, Vec<u8>)>,
    ) -> Self {
        let (client, eventloop) = AsyncClient::new(options(s), REQUESTS);
        Self {
            s,
            deps,
            client,
            eventloop,
            reply_tx,
            window: Window::new(WINDOW),
            connected: false,
            last_state: None,
            presence: Presence::default(),
            last_talk: None,
            best_shot: {
                let mut shots = deps.commands.best_shot();
                // Pictures made before this connection were sent (or were too late).
                shots.mark_unchanged();
                shots
            },
            storage: (0, None),
        }
    }

    async fn serve(
        &mut self,
        replies: &mut mpsc::Receiver<(String, Vec<u8>)>,
        cancel: &CancellationToken,
    ) -> Result<(), ConnectionError> {
        let mut state_tick = tokio::time::interval(STATE_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.goodbye().await;
                    return Ok(());
                }
                ev = self.eventloop.poll() => self.on_event(ev?).await,
                _ = self.deps.outbox.queued.notified(), if self.connected => self.top_up().await,
                Some((topic, body)) = replies.recv(), if self.connected => {
                    // Pictures are kept: Home Assistant's camera shows the last one
                    // after it restarts.
                    let retain = topic == self.s.topics.snapshot();
                    self.publish(topic, body, retain, None);
                }
                _ = state_tick.tick(), if self.connected => self.maybe_state(false).await,
                Ok(()) = self.best_shot.changed(), if self.connected => self.event_picture(),
            }
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                info!(host = %self.s.host, client_id = %self.s.client_id, session_present = ack.session_present, "MQTT connected");
                self.connected = true;
                self.deps.metrics.connected.set(1);
                let _ = self
                    .client
                    .try_subscribe(self.s.topics.commands(), QoS::AtLeastOnce);
                self.publish(self.s.topics.availability(), b"online".to_vec(), true, None);
                if self.s.home_assistant {
                    let _ = self
                        .client
                        .try_subscribe("homeassistant/status", QoS::AtLeastOnce);
                    self.discovery();
                }
                self.maybe_state(true).await;
                self.top_up().await;
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => self.window.sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = self.window.acked(ack.pkid) {
                    if let Err(e) = self.deps.index.outbox_delete(seq).await {
                        warn!(error = %e, "could not remove an acknowledged message from the outbox");
                    }
                    self.deps.metrics.published.inc();
                    self.top_up().await;
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                if p.topic == "homeassistant/status" {
                    if p.payload.as_ref() == b"online" && self.s.home_assistant {
                        info!("Home Assistant is back: discovery sent again");
                        self.discovery();
                    }
                } else if let Some(name) = self.s.topics.command_of(&p.topic) {
                    self.on_command(name.to_owned(), p.payload.to_vec());
                }
            }
            _ => {}
        }
    }

    /// Hands a message to rumqttc (QoS 1); `seq` when it comes from the outbox.
    fn publish(&mut self, topic: String, body: Vec<u8>, retain: bool, seq: Option<i64>) -> bool {
        if body.len() > payload::MAX_PAYLOAD {
            warn!(
                topic,
                bytes = body.len(),
                "MQTT message over 128 KB refused; not sent"
            );
            return false;
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, body)
        {
            Ok(()) => {
                match seq {
                    Some(seq) => self.window.handed(seq),
                    None => self.window.handed_other(),
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "MQTT request queue full; message kept for later");
                false
            }
        }
    }

    /// Sends queued messages until `WINDOW` are unacknowledged (none while the clock is
    /// not set: the clock part rings `wake` once it is).
    async fn top_up(&mut self) {
        if self.deps.clock.as_ref().is_some_and(|c| !c.borrow().synced) {
            return;
        }
        while let Some(Fetch { after, limit }) = self.window.fetch() {
            let rows = match self.deps.index.outbox_after(after, limit).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "could not read the MQTT outbox");
                    break;
                }
            };
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let Some((topic, body, retain)) = self.word(r.seq, r.message.as_ref()) else {
                    let _ = self.deps.index.outbox_delete(r.seq).await;
                    self.window.passed_over(r.seq);
                    continue;
                };
                if !self.publish(topic, body, retain, Some(r.seq)) {
                    return;
                }
            }
        }
    }

    /// The queued message `seq` in words, or `None` (logged) when it cannot be sent: its
    /// facts are unreadable, or it is over IoT Core's 128 KB.
    fn word(&self, seq: i64, q: Option<&Queued>) -> Option<(String, Vec<u8>, bool)> {
        let stream = self.s.stream.as_deref();
        let worded = q.map(|q| payload::word(q, &self.s.topics, &self.s.client_id, stream));
        match worded {
            Some(Ok(m)) => {
                let body = m.body.to_string().into_bytes();
                if body.len() > payload::MAX_PAYLOAD {
                    warn!(
                        seq,
                        bytes = body.len(),
                        "queued message over 128 KB dropped"
                    );
                    return None;
                }
                Some((m.topic, body, m.retain))
            }
            Some(Err(e)) => {
                warn!(seq, error = %e, "queued message unreadable; dropped");
                None
            }
            None => {
                warn!(
                    seq,
                    "queued message about an event no longer indexed; dropped"
                );
                None
            }
        }
    }

    fn discovery(&mut self) {
        let s = self.s;
        let rtsp = s.rtsp_url.is_some();
        let configs = payload::discovery(&s.topics, &s.client_id, &s.labels, &s.zones, rtsp);
        for (topic, config) in configs {
            self.publish(topic, config.to_string().into_bytes(), true, None);
        }
        if let Some(url) = &s.rtsp_url {
            self.publish(s.topics.rtsp(), url.clone().into_bytes(), true, None);
        }
    }

    /// Queues the retained state when it changed (or always, when `force`).
    async fn maybe_state(&mut self, force: bool) {
        let now = Instant::now();
        if self
            .storage
            .1
            .is_none_or(|t| now.duration_since(t) >= STORAGE_EVERY)
        {
            if let Ok(b) = self.deps.index.clip_bytes().await {
                self.storage = (b, Some(now));
            }
        }
        let upload_backlog = self.deps.index.upload_backlog().await.unwrap_or(0);
        let status = self.deps.commands.status().borrow().clone();
        let facts = StateFacts {
            recording: status.recording,
            event_id: status.event_id,
            detect: status.detect,
            motion: status.motion,
            motion_score: status.motion_score,
            motion_min_area_percent: self.s.motion_min_area_percent,
            viewers: *self.deps.viewers.borrow(),
            storage_bytes: self.storage.0,
            upload_backlog,
            audio: audio::report(self.deps.audio.as_ref(), now),
            objects: status.objects,
            zones: status.zones,
        };
        self.object_states(&facts, force);
        self.maybe_talk(force).await;
        if !force && self.last_state.as_ref() == Some(&facts) {
            return;
        }
        if queue_state(self.deps, MessageKind::State, &facts).await {
            self.last_state = Some(facts);
            self.top_up().await;
        }
    }

    /// Queues the retained talk state when it changed (or always, when `force`).
    async fn maybe_talk(&mut self, force: bool) {
        let Some(talk) = self.deps.talk.as_ref().filter(|_| self.s.publish_talk) else {
            return;
        };
        let now = talk.borrow().clone();
        if !force && self.last_talk.as_ref() == Some(&now) {
            return;
        }
        if queue_state(self.deps, MessageKind::Talk, &now).await {
            self.last_talk = Some(now);
            self.top_up().await;
        }
    }

    /// Publishes each `[detect]` label's and zone's `ON`/`OFF` when it changed (all on
    /// `force`).
    fn object_states(&mut self, facts: &StateFacts, force: bool) {
        for (topic, body) in self.presence.changes(self.s, facts, force) {
            self.publish(topic, body.as_bytes().to_vec(), true, None);
        }
    }

    fn event_picture(&mut self) {
        let Some(shot) = self.best_shot.borrow_and_update().clone() else {
            return;
        };
        let topic = self.s.topics.snapshot();
        let tx = self.reply_tx.clone();
        tokio::spawn(super::snapshot::event_picture(shot, topic, tx));
    }

    /// Runs a command off the event loop; the reply comes back through `reply_tx`.
    fn on_command(&self, name: String, body: Vec<u8>) {
        let result_topic = self.s.topics.result(&name);
        let req = match commands::parse(&body, Some(&name)) {
            Ok(r) => r,
            Err(bad) => {
                warn!(command = %name, error = %bad, "bad MQTT command");
                if bad.id.is_some() {
                    let reply = Reply::bad_request(&bad);
                    let _ = self.reply_tx.try_send((result_topic, to_json(&reply)));
                }
                return;
            }
        };
        if req.id.is_none() {
            warn!(command = %name, "MQTT command without an \"id\" ignored (its result could not be matched)");
            return;
        }
        if req.command.name() != name {
            let reply = Reply::refused(
                &req,
                format!(
                    "the topic says {name:?} but the body says {:?}",
                    req.command.name()
                ),
            );
            let _ = self.reply_tx.try_send((result_topic, to_json(&reply)));
            return;
        }
        let commands = self.deps.commands.clone();
        let snapshot = self.deps.snapshot.clone();
        let snapshot_topic = self.s.topics.snapshot();
        let tx = self.reply_tx.clone();
        tokio::spawn(async move {
            let result = match &req.command {
                Command::Snapshot => {
                    super::snapshot::snapshot_reply(&snapshot, snapshot_topic, &tx).await
                }
                cmd => commands.execute(TriggerKind::Mqtt, cmd.clone()).await,
            };
            let reply = Reply::of(&req, &result);
            let _ = tx.send((result_topic, to_json(&reply))).await;
        });
    }

    /// Publishes `offline` (retained) and disconnects cleanly, briefly driving the loop.
    async fn goodbye(&mut self) {
        if !self.connected {
            return;
        }
        // Let what is queued (the end messages of clips just finished) reach the broker.
        self.top_up().await;
        let deadline = tokio::time::Instant::now() + GOODBYE;
        while self.window.is_draining() {
            match tokio::time::timeout_at(deadline, self.eventloop.poll()).await {
                Ok(Ok(ev)) => self.on_event(ev).await,
                _ => break,
            }
        }
        let _ = self.client.try_publish(
            self.s.topics.availability(),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
        let _ = self.client.try_disconnect();
        let drive = async {
            while let Ok(ev) = self.eventloop.poll().await {
                if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(GOODBYE, drive).await;
        info!("MQTT disconnected");
    }
}

/// Queues a retained `State` or `Talk` message (the first dropped when the outbox is
/// full); false when it could not be written.
async fn queue_state(deps: &MqttDeps, kind: MessageKind, facts: &impl serde::Serialize) -> bool {
    let queued = match serde_json::to_string(facts) {
        Ok(facts) => {
            let at = chrono::Utc::now();
            deps.index.queue_state(kind, &facts, at, &deps.outbox).await
        }
        Err(e) => {
            warn!(error = %e, kind = kind.as_str(), "could not write a state message");
            return false;
        }
    };
    match queued {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, kind = kind.as_str(), "could not queue a state message");
            false
        }
    }
}

fn to_json(reply: &Reply) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_default()
}
