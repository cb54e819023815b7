//! The uploader task: owns the upload state machine, the PutMedia connection, the GOPs
//! being cut from the recorder's feed and a bounded cache of their frames.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::Utc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::gop::{Gop, GopAssembler};
use super::source::{self, OwnedFrame};
use super::{group, Feed, FeedReceiver, UploadConfig, UploadDeps};
use crate::index::{upload_state, FragmentRow, NewFragment};
use crate::kvs::ack::AckEvent;
use crate::kvs::mkv::{self, TrackInfo};
use crate::kvs::putmedia::{self, Connection, Event, PutMediaError, Target};
use crate::kvs::upload::{Action, EnqueueError, Uploader, Why};
use crate::kvs::{stream, KvsError};
use crate::media::{EncodedFrame, Subscription};
use crate::recorder::fmp4::{self, Scan};

/// Frames of recent fragments kept in memory for sending and resending.
const CACHE_BYTES: usize = 64 << 20;
/// At most 5 fragments a second per stream (the service's limit).
const MIN_SPACING: Duration = Duration::from_millis(200);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After the stream refused data for good (missing, deleted, access denied).
const STOP_RETRY: Duration = Duration::from_secs(600);
/// The data endpoint is fetched again after this long.
const ENDPOINT_TTL: Duration = Duration::from_secs(45 * 60);
const TICK: Duration = Duration::from_secs(1);
/// How often finished clips are checked for frames still owed and for being done.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);
/// A clip whose feed went quiet this long without an end is finished from its file.
const FEED_IDLE: Duration = Duration::from_secs(10);
/// Frames of the live stream the uploader may fall behind by in continuous mode.
const LIVE_QUEUE: usize = 300;

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Kvs(#[from] KvsError),
    #[error(transparent)]
    PutMedia(#[from] PutMediaError),
    #[error("fragment {0}: {1}")]
    Frames(u64, String),
}

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
    live_gop: GopAssembler,
    live_index: u64,
    live_lost: u64,
    clips: HashMap<Arc<str>, (GopAssembler, Instant)>,
    cache: BTreeMap<i64, Arc<Vec<EncodedFrame>>>,
    cache_bytes: usize,
    machine: Uploader,
    units: HashMap<u64, Unit>,
    open: Option<Open>,
    to_write: VecDeque<u64>,
    next_write: Instant,
    reconnect_at: Option<Instant>,
    backoff: Duration,
    stream_ready: bool,
    endpoint: Option<(String, Instant)>,
    /// Rows older than what the connection already sent wait for the queue to drain.
    deferred: bool,
    last_number: Option<String>,
    scan: Option<(PathBuf, u64, Arc<Scan>)>,
    last_catch_up: Instant,
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
    let now = Instant::now();
    let task = Task {
        cfg,
        deps,
        feed,
        live,
        live_gop: GopAssembler::resynchronising(),
        live_index: 0,
        live_lost: 0,
        clips: HashMap::new(),
        cache: BTreeMap::new(),
        cache_bytes: 0,
        machine: Uploader::default(),
        units: HashMap::new(),
        open: None,
        to_write: VecDeque::new(),
        next_write: now,
        reconnect_at: None,
        backoff: FIRST_BACKOFF,
        stream_ready: false,
        endpoint: None,
        deferred: false,
        last_number: None,
        scan: None,
        last_catch_up: now,
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

async fn next_live(live: &mut Option<Subscription<EncodedFrame>>) -> Option<EncodedFrame> {
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
        self.reload().await;
        let mut tick = tokio::time::interval(TICK);
        loop {
            let write_at = self.next_write;
            let can_write = self.open.is_some() && !self.to_write.is_empty();
            let reconnect_at = self.reconnect_at.unwrap_or_else(far_future);
            let may_connect = self.open.is_none() && self.reconnect_at.is_some();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                event = next_event(&mut self.open) => self.on_event(event).await,
                Some(feed) = self.feed.0.recv() => self.on_feed(feed).await,
                Some(frame) = next_live(&mut self.live) => self.on_live(frame).await,
                _ = sleep_until(write_at.into()), if can_write => self.write_next().await,
                _ = sleep_until(reconnect_at.into()), if may_connect => self.connect().await,
                _ = tick.tick() => self.on_tick().await,
            }
        }
        info!("uploader stopped");
    }

    /// (Re)starts from the index: clips' owed frames, then every pending fragment.
    async fn reload(&mut self) {
        self.machine = Uploader::default();
        self.units.clear();
        self.to_write.clear();
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
        if first.clip_id.is_none() && !rows.iter().all(|r| self.cache.contains_key(&r.id)) {
            // Continuous mode keeps frames only in memory: these are gone.
            self.skip_rows(&rows, 0, "frames no longer in memory").await;
            return;
        }
        let id = first.id as u64;
        let start = first.start_at.timestamp_millis().max(0) as u64;
        let end = last.end_at.timestamp_millis().max(0) as u64;
        match self.machine.enqueue(id, start, end, Instant::now()) {
            Ok(actions) => {
                self.units.insert(id, Unit { rows, live });
                self.apply(actions).await;
                self.want_connection();
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

    fn want_connection(&mut self) {
        if self.open.is_none()
            && self.reconnect_at.is_none()
            && !self.machine.is_stopped()
            && self.machine.backlog() > 0
        {
            self.reconnect_at = Some(Instant::now());
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Connect => {
                    self.close();
                    if self.machine.backlog() > 0 {
                        self.reconnect_at = Some(Instant::now() + self.next_delay());
                    }
                }
                Action::Send(id) => self.to_write.push_back(id),
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
                    self.reconnect_at = Some(Instant::now() + STOP_RETRY);
                }
                Action::Reconnect(why) => {
                    if why == Why::Rotation {
                        info!("uploader: new PutMedia connection (rotation)");
                        self.backoff = Duration::ZERO;
                    }
                    self.close();
                    queue.extend(self.machine.disconnected(why));
                }
            }
        }
    }

    /// The wait before the next connection attempt (full jitter), doubling up to 30 s;
    /// zero right after a planned rotation.
    fn next_delay(&mut self) -> Duration {
        let d = self.backoff;
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        if d.is_zero() {
            return d;
        }
        Duration::from_millis(fastrand::u64(
            d.as_millis() as u64 / 2..=d.as_millis() as u64,
        ))
    }

    fn close(&mut self) {
        self.open = None;
        self.to_write.clear();
        self.deps.metrics.connected.set(0);
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
            if let Some(frames) = self.cache.remove(&row.id) {
                self.cache_bytes -= frames.iter().map(|f| f.data.len()).sum::<usize>();
            }
        }
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
            self.cache.remove(&row.id);
        }
        self.cache_bytes = self
            .cache
            .values()
            .map(|f| f.iter().map(|x| x.data.len()).sum::<usize>())
            .sum();
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

    async fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Frame {
                clip_id,
                index,
                frame,
            } => {
                let entry = self
                    .clips
                    .entry(Arc::clone(&clip_id))
                    .or_insert_with(|| (GopAssembler::for_clip(), Instant::now()));
                entry.1 = Instant::now();
                let was_broken = entry.0.is_broken();
                let done = entry.0.push(index, frame);
                if entry.0.is_broken() && !was_broken {
                    warn!(clip_id = %clip_id, "uploader fell behind the recorder; the clip's rest will be read from its file");
                }
                if let Some(gop) = done {
                    self.new_gop(Some(&clip_id), gop).await;
                }
            }
            Feed::ClipEnd { clip_id, frames } => {
                if let Some((mut asm, _)) = self.clips.remove(&clip_id) {
                    if let Some(gop) = asm.finish(frames) {
                        self.new_gop(Some(&clip_id), gop).await;
                    }
                }
            }
        }
    }

    async fn on_live(&mut self, frame: EncodedFrame) {
        let lost = self.live.as_ref().map_or(0, Subscription::dropped);
        self.live_index += lost.saturating_sub(self.live_lost);
        self.live_lost = lost;
        let index = self.live_index;
        self.live_index += 1;
        if let Some(gop) = self.live_gop.push(index, frame) {
            self.new_gop(None, gop).await;
        }
    }

    /// Records a fragment cut from the live feed and queues it.
    async fn new_gop(&mut self, clip_id: Option<&str>, gop: Gop) {
        let new = NewFragment {
            clip_id,
            first_frame: gop.first_frame,
            frames: gop.frames.len() as u64,
            start_at: gop.frames[0].captured_at,
            end_at: gop.frames[gop.frames.len() - 1].captured_at,
        };
        let id = match self.deps.index.insert_fragment(&new).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "uploader: cannot record a fragment; it will be read from the clip later");
                return;
            }
        };
        self.cache_bytes += gop.bytes();
        self.cache.insert(id, Arc::new(gop.frames));
        while self.cache_bytes > CACHE_BYTES {
            let Some((_, old)) = self.cache.pop_first() else {
                break;
            };
            self.cache_bytes -= old.iter().map(|f| f.data.len()).sum::<usize>();
        }
        let row = FragmentRow {
            id,
            clip_id: clip_id.map(str::to_owned),
            first_frame: new.first_frame,
            frames: new.frames,
            start_at: new.start_at,
            end_at: new.end_at,
        };
        self.enqueue(vec![row], true).await;
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let actions = self.machine.tick(now);
        self.apply(actions).await;
        // A clip whose end never came (the feed was full) is finished from its file.
        self.clips
            .retain(|_, (_, seen)| now.duration_since(*seen) < FEED_IDLE);
        if self.machine.is_stopped() && self.reconnect_at.is_some_and(|t| now >= t) {
            self.reconnect_at = None;
            self.reload().await;
            self.want_connection();
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

    /// Finished clips: fragments for frames the live feed did not cover, and the clip's
    /// upload state once nothing is pending.
    async fn catch_up(&mut self, enqueue: bool) {
        let clips = match self.deps.index.clips_to_upload().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "uploader: cannot list clips to upload");
                return;
            }
        };
        for clip_id in clips {
            if self.clips.contains_key(clip_id.as_str()) {
                continue; // its live feed is still being cut
            }
            let rows = match self.owed_rows(&clip_id).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(clip_id, error = %e, "uploader: cannot read the clip; it will not be uploaded");
                    let _ = self
                        .deps
                        .index
                        .set_upload_state(&clip_id, upload_state::FAILED)
                        .await;
                    continue;
                }
            };
            if rows.is_empty() {
                if let Ok(Some(state)) = self.deps.index.settle_clip_upload(&clip_id).await {
                    info!(clip_id, state, "clip upload settled");
                }
            } else if enqueue {
                info!(
                    clip_id,
                    fragments = rows.len(),
                    "uploading the rest of the clip from its file"
                );
                for unit in group(rows) {
                    self.enqueue(unit, false).await;
                }
            }
        }
    }

    /// Rows for the frames of a finished clip that no fragment covers yet.
    async fn owed_rows(&mut self, clip_id: &str) -> Result<Vec<FragmentRow>, String> {
        let index = self.deps.index.clone();
        let clip = index.clip(clip_id).await.map_err(|e| e.to_string())?;
        let existing = index
            .clip_fragments(clip_id)
            .await
            .map_err(|e| e.to_string())?;
        let covered = existing
            .iter()
            .map(|r| r.first_frame + r.frames)
            .max()
            .unwrap_or(0);
        if clip.frame_count.is_some_and(|n| covered >= n.max(0) as u64) {
            return Ok(Vec::new());
        }
        let path = source::clip_path(&self.deps.data_dir, &clip.path).map_err(|e| e.to_string())?;
        let scan = self.scan(&path).map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for owed in source::owed(&scan, covered, clip.start_at) {
            let new = NewFragment {
                clip_id: Some(clip_id),
                first_frame: owed.first_frame,
                frames: owed.frames,
                start_at: owed.start_at,
                end_at: owed.end_at,
            };
            let id = index
                .insert_fragment(&new)
                .await
                .map_err(|e| e.to_string())?;
            rows.push(FragmentRow {
                id,
                clip_id: Some(clip_id.to_owned()),
                first_frame: owed.first_frame,
                frames: owed.frames,
                start_at: owed.start_at,
                end_at: owed.end_at,
            });
        }
        Ok(rows)
    }

    /// The file's sample table, reused while the file does not change.
    fn scan(&mut self, path: &std::path::Path) -> Result<Arc<Scan>, fmp4::Fmp4Error> {
        let len = std::fs::metadata(path)?.len();
        if let Some((p, l, s)) = &self.scan {
            if p == path && *l == len {
                return Ok(Arc::clone(s));
            }
        }
        let scan = Arc::new(fmp4::scan(path)?);
        self.scan = Some((path.to_owned(), len, Arc::clone(&scan)));
        Ok(scan)
    }

    /// A fragment's track and frames: from memory, else from its clip file.
    async fn load(&mut self, id: u64) -> Result<(TrackInfo, Vec<OwnedFrame>), String> {
        let unit = self.units.get(&id).ok_or("unknown fragment")?;
        let cached: Option<Vec<Arc<Vec<EncodedFrame>>>> = unit
            .rows
            .iter()
            .map(|r| self.cache.get(&r.id).cloned())
            .collect();
        if let Some(gops) = cached {
            let frames: Vec<OwnedFrame> = gops
                .iter()
                .flat_map(|g| g.iter())
                .map(|f| OwnedFrame {
                    annex_b: f.data.to_vec(),
                    time_ms: f.captured_at.timestamp_millis().max(0) as u64,
                    keyframe: f.keyframe,
                })
                .collect();
            let first = frames.first().ok_or("empty fragment")?;
            let track = TrackInfo::from_keyframe(&first.annex_b).map_err(|e| e.to_string())?;
            return Ok((track, frames));
        }
        let rows = unit.rows.clone();
        let clip_id = rows[0]
            .clip_id
            .clone()
            .ok_or("frames no longer in memory")?;
        let clip = self
            .deps
            .index
            .clip(&clip_id)
            .await
            .map_err(|e| e.to_string())?;
        let path = source::clip_path(&self.deps.data_dir, &clip.path).map_err(|e| e.to_string())?;
        let scan = self.scan(&path).map_err(|e| e.to_string())?;
        let track = source::track(&scan).map_err(|e| e.to_string())?;
        let frames = source::read_frames(&path, &scan, &rows).map_err(|e| e.to_string())?;
        Ok((track, frames))
    }

    async fn connect(&mut self) {
        self.reconnect_at = None;
        let Some(first) = self.machine.next_queued() else {
            return;
        };
        match self.open_connection(first).await {
            Ok(open) => {
                info!(stream = %self.cfg.stream_name, "PutMedia connection open");
                self.open = Some(open);
                self.deps.metrics.connected.set(1);
                self.backoff = FIRST_BACKOFF;
                self.next_write = Instant::now();
                let actions = self.machine.connected(Instant::now());
                self.apply(actions).await;
            }
            Err(OpenError::Frames(id, why)) => {
                self.drop_unit(id, &why).await;
                self.want_connection();
            }
            Err(e) => {
                let (retry, code) = match &e {
                    OpenError::PutMedia(p) => (p.is_retryable(), p.code()),
                    _ => (true, 0),
                };
                self.deps
                    .metrics
                    .errors
                    .get_or_create(&[("code", code.to_string())])
                    .inc();
                self.endpoint = None; // fetched again on the next attempt
                let delay = if retry {
                    let d = self.next_delay();
                    warn!(error = %e, retry_in_ms = d.as_millis() as u64, "cannot open PutMedia");
                    d
                } else {
                    error!(error = %e, "KVS refused the upload: fix the stream or the credentials; retrying in 10 min");
                    STOP_RETRY
                };
                self.reconnect_at = Some(Instant::now() + delay);
            }
        }
    }

    async fn open_connection(&mut self, first: u64) -> Result<Open, OpenError> {
        let aws = self.deps.aws.clone();
        let name = self.cfg.stream_name.clone();
        if !self.stream_ready {
            stream::ensure_stream(
                &aws,
                &name,
                self.cfg.retention_hours,
                self.cfg.create_if_missing,
            )
            .await?;
            self.stream_ready = true;
        }
        let endpoint = match &self.endpoint {
            Some((e, at)) if at.elapsed() < ENDPOINT_TTL => e.clone(),
            _ => {
                let e = stream::data_endpoint(
                    &aws,
                    &name,
                    aws_sdk_kinesisvideo::types::ApiName::PutMedia,
                )
                .await?;
                self.endpoint = Some((e.clone(), Instant::now()));
                e
            }
        };
        let (track, frames) = self
            .load(first)
            .await
            .map_err(|e| OpenError::Frames(first, e))?;
        let start = frames.first().map_or(0, |f| f.time_ms);
        let header = mkv::header(&track, fastrand::u128(..).to_be_bytes(), fastrand::u64(1..));
        let creds = aws.credentials().await?;
        let target = Target {
            endpoint,
            stream_name: name,
            region: aws.region().to_owned(),
        };
        let producer_start =
            chrono::DateTime::from_timestamp_millis(start as i64).unwrap_or_default();
        let conn = putmedia::connect(
            &target,
            &creds,
            producer_start,
            Bytes::from(header),
            SystemTime::now(),
        )
        .await?;
        Ok(Open { conn, track })
    }

    /// A fragment whose frames cannot be read any more: recorded as skipped.
    async fn drop_unit(&mut self, id: u64, why: &str) {
        self.machine.forget(id);
        if let Some(unit) = self.units.remove(&id) {
            self.skip_rows(&unit.rows, 0, why).await;
        }
    }

    async fn write_next(&mut self) {
        let Some(id) = self.to_write.pop_front() else {
            return;
        };
        self.next_write = Instant::now() + MIN_SPACING;
        if !self.units.contains_key(&id) {
            return; // persisted or skipped meanwhile
        }
        let (track, frames) = match self.load(id).await {
            Ok(x) => x,
            Err(why) => {
                self.drop_unit(id, &why).await;
                return;
            }
        };
        let Some(open) = &self.open else {
            return;
        };
        if track != open.track {
            // A new header is needed; the stall check replaces the connection once the
            // fragments already written are acknowledged.
            warn!(
                fragment = id,
                "the camera's stream parameters changed; a new PutMedia connection follows"
            );
            return;
        }
        let mkv_frames: Vec<mkv::Frame<'_>> = frames
            .iter()
            .map(|f| mkv::Frame {
                annex_b: &f.annex_b,
                time_ms: f.time_ms,
                keyframe: f.keyframe,
            })
            .collect();
        // The trailing Tags (metadata of the next fragment) ends this cluster now, so
        // the fragment is acknowledged without waiting for the next GOP.
        let bytes = match mkv::fragment(&mkv_frames, &[]).and_then(|mut b| {
            b.extend(mkv::fragment_tags(&[("EDGECAM_WRITER", "edgecam")])?);
            Ok(b)
        }) {
            Ok(b) => b,
            Err(e) => {
                let why = e.to_string();
                self.drop_unit(id, &why).await;
                return;
            }
        };
        if !open.conn.write(Bytes::from(bytes)).await {
            self.close();
            let actions = self.machine.disconnected(Why::Lost);
            self.apply(actions).await;
        }
    }
}
