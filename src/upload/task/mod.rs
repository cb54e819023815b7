//! The uploader task: owns the upload state machine, the PutMedia connection, the GOPs
//! being cut from the recorder's feed and a bounded cache of their frames.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod catch_up;
mod clock;
mod disk;
mod intake;
mod send;

use crate::aws::{images, stream, AwsError};
use crate::capture;
use crate::index::{upload_state, FragmentRow, NewFragment};
use crate::media::fmp4::{self, Scan};
use crate::media::AudioCodec;
use crate::media::{AudioFormat, AudioFrame, EncodedFrame, Subscription};
use crate::recorder::{Feed, FeedReceiver};
use crate::upload::ack::AckEvent;
use crate::upload::cache::FrameCache;
use crate::upload::gop::{Gop, GopAssembler};
use crate::upload::machine::{Action, EnqueueError, Uploader, Why};
use crate::upload::mkv::{self, AudioTrackInfo, TrackInfo};
use crate::upload::putmedia::{self, Connection, Event, PutMediaError, Target};
use crate::upload::sound::SoundJoin;
use crate::upload::source::{self, OwnedAudio, OwnedFrame};
use crate::upload::{group, UploadConfig, UploadDeps};

/// Frames of recent fragments kept in memory for sending and resending.
const CACHE_BYTES: usize = 64 << 20;
/// The data endpoint is fetched again after this long.
const ENDPOINT_TTL: Duration = Duration::from_secs(45 * 60);
const TICK: Duration = Duration::from_secs(1);
/// How often finished clips are checked for frames still owed and for being done.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);
/// A clip whose feed went quiet this long without an end is finished from its file.
const FEED_IDLE: Duration = Duration::from_secs(10);
/// Frames of the live stream the uploader may fall behind by in continuous mode.
const LIVE_QUEUE: usize = 300;
/// The same for its sound: 10 s of AAC frames.
const LIVE_AUDIO_QUEUE: usize = 470;

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Kvs(#[from] AwsError),
    #[error(transparent)]
    PutMedia(#[from] PutMediaError),
    #[error("fragment {0}: {1}")]
    Frames(u64, String),
}

/// A fragment ready to write: the stream header's tracks, frames, sound.
type Loaded = (TrackInfo, Vec<OwnedFrame>, Vec<OwnedAudio>);

struct Unit {
    rows: Vec<FragmentRow>,
    /// Cut from the live feed (its latency is measured).
    live: bool,
}

struct Open {
    conn: Connection,
    track: TrackInfo,
}

struct Task {
    cfg: UploadConfig,
    deps: UploadDeps,
    feed: FeedReceiver,
    live: Option<Subscription<EncodedFrame>>,
    live_audio: Option<Subscription<AudioFrame>>,
    live_gop: GopAssembler,
    live_join: SoundJoin,
    live_index: u64,
    live_lost: u64,
    clips: HashMap<Arc<str>, intake::ClipIntake>,
    cache: FrameCache,
    machine: Uploader,
    units: HashMap<u64, Unit>,
    open: Option<Open>,
    stream_ready: bool,
    /// The image and notification configurations are set (or not asked for).
    images_applied: bool,
    endpoint: Option<(String, Instant)>,
    /// The PutMedia service's clock minus ours, ms, learned from a refusal's `Date`.
    skew_ms: i64,
    /// Rows older than what the connection already sent wait for the queue to drain.
    deferred: bool,
    last_number: Option<String>,
    scan: Option<(PathBuf, u64, Arc<Scan>)>,
    last_catch_up: Instant,
    /// A frame of AAC silence per (rate, channels), made when first needed.
    silence: HashMap<(u32, u32), Bytes>,
    /// Uploads are waiting for the clock to be set (said once).
    waiting_for_clock: bool,
    /// Clock corrections already applied to the index.
    corrections_seen: usize,
    /// Continuous mode's GOP files on disk: fragment id → bytes.
    ring: std::collections::BTreeMap<i64, u64>,
}

/// Starts the uploader.
pub fn spawn(
    cfg: UploadConfig,
    deps: UploadDeps,
    feed: FeedReceiver,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let live = cfg
        .continuous
        .then(|| deps.frames.subscribe("uploader", LIVE_QUEUE));
    let live_audio = match (&deps.audio, cfg.continuous) {
        (Some(bus), true) => Some(bus.subscribe("uploader", LIVE_AUDIO_QUEUE)),
        _ => None,
    };
    let live_join = match live_audio {
        Some(_) => SoundJoin::live(),
        None => SoundJoin::for_clip(None),
    };
    let now = Instant::now();
    let task = Task {
        cfg,
        deps,
        feed,
        live,
        live_audio,
        live_join,
        live_gop: GopAssembler::resynchronising(),
        live_index: 0,
        live_lost: 0,
        clips: HashMap::new(),
        cache: FrameCache::new(CACHE_BYTES),
        machine: Uploader::default(),
        units: HashMap::new(),
        open: None,
        stream_ready: false,
        images_applied: false,
        endpoint: None,
        skew_ms: 0,
        deferred: false,
        last_number: None,
        scan: None,
        last_catch_up: now,
        silence: HashMap::new(),
        waiting_for_clock: false,
        corrections_seen: 0,
        ring: std::collections::BTreeMap::new(),
    };
    tokio::spawn(task.run(cancel))
}

async fn next_event(open: &mut Option<Open>) -> Event {
    match open {
        Some(o) => o
            .conn
            .events
            .recv()
            .await
            .unwrap_or_else(|| Event::Closed("the connection ended".into())),
        None => std::future::pending().await,
    }
}

async fn next_live<T>(live: &mut Option<Subscription<T>>) -> Option<T> {
    match live {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        info!(stream = %self.cfg.stream_name, continuous = self.cfg.continuous, "uploader started");
        self.open_ring().await;
        self.reload().await;
        self.prune_ring().await;
        let mut tick = tokio::time::interval(TICK);
        loop {
            let write_at = self.machine.write_at().filter(|_| self.open.is_some());
            let connect_at = self.machine.connect_at().filter(|_| self.open.is_none());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                event = next_event(&mut self.open) => self.on_event(event).await,
                Some(feed) = self.feed.recv() => self.on_feed(feed).await,
                Some(frame) = next_live(&mut self.live) => self.on_live(frame).await,
                Some(frame) = next_live(&mut self.live_audio) => self.on_live_audio(frame).await,
                _ = sleep_until(write_at.unwrap_or_else(far_future).into()), if write_at.is_some() => {
                    self.write_next().await
                }
                _ = sleep_until(connect_at.unwrap_or_else(far_future).into()), if connect_at.is_some() => {
                    self.connect().await
                }
                _ = tick.tick() => self.on_tick().await,
                Some(state) = crate::clock::next_state(&mut self.deps.clock) => self.on_clock(state).await,
            }
        }
        info!("uploader stopped");
    }

    /// (Re)starts from the index: clips' owed frames, then every pending fragment.
    async fn reload(&mut self) {
        self.machine = Uploader::default();
        self.units.clear();
        self.open = None;
        self.deps.metrics.connected.set(0);
        self.deferred = false;
        self.catch_up(false).await;
        let rows = match self.deps.index.pending_fragments().await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "uploader: cannot read pending fragments");
                return;
            }
        };
        if !rows.is_empty() {
            info!(fragments = rows.len(), "uploader: resuming the backlog");
        }
        for unit in group(rows) {
            self.enqueue(unit, false).await;
        }
        self.update_backlog().await;
    }

    async fn enqueue(&mut self, rows: Vec<FragmentRow>, live: bool) {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        self.restore(&rows).await;
        if first.clip_id.is_none() && !rows.iter().all(|r| self.cache.contains(r.id)) {
            // Continuous mode's frames are in memory, or on disk: these are gone.
            self.skip_rows(&rows, 0, "frames no longer in memory").await;
            return;
        }
        let id = first.id as u64;
        let start = self.corrected(first.start_at).timestamp_millis().max(0) as u64;
        let end = self.corrected(last.end_at).timestamp_millis().max(0) as u64;
        match self.machine.enqueue(id, start, end, Instant::now()) {
            Ok(actions) => {
                self.units.insert(id, Unit { rows, live });
                self.apply(actions).await;
                self.machine.want_connection(Instant::now());
            }
            Err(EnqueueError::NotIncreasing { .. }) => {
                // Older than what this connection sent: it goes on a fresh one later.
                debug!(fragment = id, "uploader: older fragment deferred");
                self.deferred = true;
            }
            Err(EnqueueError::Backwards) => {
                self.skip_rows(&rows, 0, "fragment ends before it starts")
                    .await;
            }
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Connect => {
                    self.close();
                    self.machine
                        .schedule_connect(Instant::now(), fastrand::f64());
                }
                // Written by `write_next` as the pace allows.
                Action::Send(_) => {}
                Action::Persisted(id) => self.persisted(id).await,
                Action::Skipped { id, code } => {
                    if let Some(unit) = self.units.remove(&id) {
                        self.skip_rows(&unit.rows, code, "refused by KVS").await;
                    }
                }
                Action::Stop { code } => {
                    error!(
                        stream = %self.cfg.stream_name, code,
                        "KVS will not take data on this stream (missing, deleted, KMS or access denied): \
                         check the stream and the role's kinesisvideo:PutMedia permission; retrying in 10 min"
                    );
                    self.close();
                }
                Action::Reconnect(why) => {
                    if why == Why::Rotation {
                        info!("uploader: new PutMedia connection (rotation)");
                    }
                    self.close();
                    queue.extend(self.machine.disconnected(why));
                }
            }
        }
    }

    async fn persisted(&mut self, id: u64) {
        let Some(unit) = self.units.remove(&id) else {
            return;
        };
        let now = Utc::now();
        for row in &unit.rows {
            if let Err(e) = self
                .deps
                .index
                .fragment_persisted(row.id, self.last_number.as_deref(), now)
                .await
            {
                error!(fragment = row.id, error = %e, "uploader: cannot record a persisted fragment");
            }
            self.cache.remove(row.id);
        }
        let ids: Vec<i64> = unit.rows.iter().map(|r| r.id).collect();
        self.forget_on_disk(&ids).await;
        self.deps.metrics.persisted.inc_by(unit.rows.len() as u64);
        if unit.live {
            if let Some(first) = unit.rows.first() {
                let latency = (now - first.start_at).num_milliseconds().max(0);
                self.deps.metrics.latency.observe(latency as f64 / 1000.0);
            }
        }
        debug!(fragment = id, rows = unit.rows.len(), "persisted");
    }

    async fn skip_rows(&mut self, rows: &[FragmentRow], code: u32, why: &str) {
        for row in rows {
            warn!(fragment = row.id, clip_id = ?row.clip_id, code, why, "fragment skipped");
            if let Err(e) = self.deps.index.fragment_skipped(row.id, code).await {
                error!(fragment = row.id, error = %e, "uploader: cannot record a skipped fragment");
            }
            self.cache.remove(row.id);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        self.forget_on_disk(&ids).await;
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Ack(ack) => {
                if ack.event == AckEvent::Error {
                    let code = ack.error_id.unwrap_or(0);
                    warn!(
                        code,
                        error = ack.error_code.as_deref().unwrap_or(""),
                        timecode = ack.fragment_timecode,
                        "PutMedia error"
                    );
                    self.deps
                        .metrics
                        .errors
                        .get_or_create(&[("code", code.to_string())])
                        .inc();
                }
                self.last_number.clone_from(&ack.fragment_number);
                let actions = self.machine.ack(&ack, Instant::now());
                self.apply(actions).await;
            }
            Event::BadAck(e) => warn!(error = %e, "PutMedia: unreadable acknowledgement ignored"),
            Event::Closed(why) => {
                if self.machine.backlog() > 0 {
                    warn!(
                        why,
                        "PutMedia connection lost; resending what is not persisted"
                    );
                } else {
                    debug!(why, "PutMedia connection closed while idle");
                }
                self.close();
                let actions = self.machine.disconnected(Why::Lost);
                self.apply(actions).await;
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let actions = self.machine.tick(now);
        self.apply(actions).await;
        // A clip whose end never came (the feed was full) is finished from its file.
        self.clips
            .retain(|_, c| now.duration_since(c.seen) < FEED_IDLE);
        self.expire_sound().await;
        if self.machine.stop_retry_due(now) {
            // A fresh machine: the stream is tried again from the index.
            self.reload().await;
            self.machine.want_connection(now);
            return;
        }
        if self.deferred && self.machine.backlog() == 0 {
            // Older fragments go on a fresh connection, oldest first.
            self.reload().await;
        }
        if now.duration_since(self.last_catch_up) >= CATCH_UP_EVERY {
            self.last_catch_up = now;
            self.catch_up(true).await;
        }
        self.update_backlog().await;
    }

    async fn update_backlog(&self) {
        if let Ok(n) = self.deps.index.upload_backlog().await {
            self.deps.metrics.backlog.set(n as i64);
        }
    }
}
