//! The uploader task, thin: it feeds what arrives (the recorder's clip feed, the live
//! stream, acks, the clock) to the pure `upload::machine` and does what the machine says
//! (record a fragment, open a connection, write, record acks, reload from the index),
//! with the frames in its `FrameStore` and the connection in its `Link`.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

mod catch_up;
mod link;
mod store;

use crate::clock::ClockState;
use crate::index::{FragmentRow, NewFragment};
use crate::media::{AudioFrame, EncodedFrame, Subscription};
use crate::recorder::FeedReceiver;
use crate::upload::ack::AckEvent;
use crate::upload::gop::Gop;
use crate::upload::machine::{Input, Machine, Notice, Output, Settings};
use crate::upload::mkv;
use crate::upload::putmedia::Event;
use crate::upload::{group, UploadConfig, UploadDeps};
use link::Link;
use store::FrameStore;

/// Frames of the live stream the uploader may fall behind by in continuous mode.
const LIVE_QUEUE: usize = 300;
/// The fragment tag naming the labels of the objects seen in its event.
pub const LABELS_TAG: &str = "EDGECAM_LABELS";
/// The longest tag value KVS keeps.
const LABELS_MAX: usize = 256;
/// The same for its sound: 10 s of AAC frames.
const LIVE_AUDIO_QUEUE: usize = 470;

struct Task {
    continuous: bool,
    stream_name: String,
    deps: UploadDeps,
    feed: FeedReceiver,
    live: Option<Subscription<EncodedFrame>>,
    live_audio: Option<Subscription<AudioFrame>>,
    machine: Machine,
    store: FrameStore,
    link: Link,
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
    let settings = Settings {
        images: cfg.images.is_some(),
        notify: cfg.sns_topic_arn.is_some(),
        live_sound: live_audio.is_some(),
    };
    let clock = match &deps.clock {
        Some(rx) => rx.borrow().clone(),
        None => ClockState {
            synced: true,
            ..ClockState::default()
        },
    };
    let ring_budget = match cfg.continuous {
        true => cfg.continuous_buffer_bytes,
        false => 0,
    };
    let task = Task {
        continuous: cfg.continuous,
        stream_name: cfg.stream_name.clone(),
        machine: Machine::new(settings, clock, Instant::now(), fastrand::u64(..)),
        store: FrameStore::new(deps.index.clone(), deps.data_dir.clone(), ring_budget),
        link: Link::new(deps.aws.clone(), cfg),
        deps,
        feed,
        live,
        live_audio,
    };
    tokio::spawn(task.run(cancel))
}

async fn next_live<T>(live: &mut Option<Subscription<T>>) -> Option<T> {
    match live {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        info!(stream = %self.stream_name, continuous = self.continuous, "uploader started");
        self.store.open_ring().await;
        self.reload(&[]).await;
        let pending = self.pending_ids().await;
        self.store.prune_ring(&pending).await;
        loop {
            while let Some(out) = self.machine.poll(Instant::now()) {
                self.perform(out).await;
            }
            let deadline = self.machine.deadline();
            let input = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // The clock first: GOPs cut after it is set must get corrected times.
                Some(state) = crate::clock::next_state(&mut self.deps.clock) => Input::Clock(state),
                event = self.link.next_event() => match self.on_event(event) {
                    Some(input) => input,
                    None => continue,
                },
                Some(feed) = self.feed.recv() => Input::Feed(feed),
                Some(frame) = next_live(&mut self.live) => {
                    let lost = self.live.as_ref().map_or(0, Subscription::dropped);
                    Input::Live { frame, lost }
                }
                Some(frame) = next_live(&mut self.live_audio) => Input::LiveAudio(frame),
                _ = sleep_until(deadline.into()) => continue,
            };
            self.machine.handle(Instant::now(), input);
        }
        info!("uploader stopped");
    }

    /// What the connection said, for the machine (errors counted and logged here).
    fn on_event(&self, event: Event) -> Option<Input> {
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
                    self.count_error(code);
                }
                Some(Input::Ack(ack))
            }
            Event::BadAck(e) => {
                warn!(error = %e, "PutMedia: unreadable acknowledgement ignored");
                None
            }
            Event::Closed(why) => {
                if self.machine.backlog() > 0 {
                    warn!(
                        why,
                        "PutMedia connection lost; resending what is not persisted"
                    );
                } else {
                    debug!(why, "PutMedia connection closed while idle");
                }
                Some(Input::Lost)
            }
        }
    }

    fn count_error(&self, code: u32) {
        self.deps
            .metrics
            .errors
            .get_or_create(&[("code", code.to_string())])
            .inc();
    }

    async fn perform(&mut self, out: Output) {
        match out {
            Output::Record {
                clip_id,
                gop,
                start_at,
                end_at,
            } => self.record(clip_id, gop, (start_at, end_at)).await,
            Output::Connect { id, first } => self.connect(id, &first).await,
            Output::Write { id, rows, tags } => self.write(id, &rows, &tags).await,
            Output::Close => {
                self.link.close();
                self.deps.metrics.connected.set(0);
            }
            Output::Persisted {
                rows,
                fragment_number,
                live,
            } => {
                self.persisted(&rows, fragment_number.as_deref(), live)
                    .await
            }
            Output::Skipped { rows, code, why } => self.skip_rows(&rows, code, &why).await,
            Output::Stopped { code } => error!(
                stream = %self.stream_name, code,
                "KVS will not take data on this stream (missing, deleted, KMS or access denied): \
                 check the stream and the role's kinesisvideo:PutMedia permission; retrying in 10 min"
            ),
            Output::Reload { cutting } => self.reload(&cutting).await,
            Output::CatchUp { cutting } => {
                let owed = self.catch_up(&cutting).await;
                self.queue(owed).await;
            }
            Output::CorrectTimes(corrections) => {
                for c in &corrections {
                    if let Err(e) = self.deps.index.correct_times(c).await {
                        error!(error = %e, "uploader: cannot correct fragment times");
                    }
                }
            }
            Output::Notice(Notice::WaitingForClock) => {
                info!("uploads wait until the clock is set (NTP): their times would be wrong")
            }
            Output::Notice(Notice::ClockSet) => info!("the clock is set: uploads start"),
            Output::Notice(Notice::Rotation) => {
                info!("uploader: new PutMedia connection (rotation)")
            }
            Output::CountBacklog => self.update_backlog().await,
        }
    }

    async fn catch_up(&mut self, cutting: &[Arc<str>]) -> Vec<FragmentRow> {
        let (index, data_dir) = (self.deps.index.clone(), self.deps.data_dir.clone());
        catch_up::catch_up(&index, &mut self.store, &data_dir, cutting).await
    }

    /// (Re)starts from the index: clips' owed frames, then every pending fragment.
    async fn reload(&mut self, cutting: &[Arc<str>]) {
        self.catch_up(cutting).await;
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
        self.queue(rows).await;
        self.update_backlog().await;
    }

    async fn pending_ids(&self) -> Vec<i64> {
        let rows = self.deps.index.pending_fragments().await;
        rows.unwrap_or_default().iter().map(|r| r.id).collect()
    }

    /// Hands rows of the index to the machine, grouped into fragments; continuous rows
    /// whose frames are neither in memory nor on disk any more are skipped.
    async fn queue(&mut self, rows: Vec<FragmentRow>) {
        for unit in group(rows) {
            self.store.restore(&unit).await;
            let continuous = unit.first().is_some_and(|r| r.clip_id.is_none());
            if continuous && !self.store.holds(&unit) {
                self.skip_rows(&unit, 0, "frames no longer in memory").await;
                continue;
            }
            let input = Input::Queue {
                rows: unit,
                live: false,
            };
            self.machine.handle(Instant::now(), input);
        }
    }

    /// Records a GOP cut live as a fragment, keeps its frames, and queues it.
    async fn record(
        &mut self,
        clip_id: Option<Arc<str>>,
        gop: Gop,
        at: (DateTime<Utc>, DateTime<Utc>),
    ) {
        let new = NewFragment {
            clip_id: clip_id.as_deref(),
            first_frame: gop.first_frame,
            frames: gop.frames.len() as u64,
            start_at: at.0,
            end_at: at.1,
        };
        let id = match self.deps.index.insert_fragment(&new).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "uploader: cannot record a fragment; it will be read from the clip later");
                return;
            }
        };
        let row = FragmentRow {
            id,
            clip_id: clip_id.as_deref().map(str::to_owned),
            first_frame: new.first_frame,
            frames: new.frames,
            start_at: new.start_at,
            end_at: new.end_at,
        };
        let dropped = self.store.keep(id, gop, clip_id.is_none()).await;
        for old in &dropped {
            if let Err(e) = self.deps.index.fragment_skipped(*old, 0).await {
                error!(fragment = old, error = %e, "uploader: cannot record a skipped fragment");
            }
        }
        if !dropped.is_empty() {
            self.machine.handle(Instant::now(), Input::Forget(dropped));
        }
        let input = Input::Queue {
            rows: vec![row],
            live: true,
        };
        self.machine.handle(Instant::now(), input);
    }

    async fn connect(&mut self, id: u64, first: &FragmentRow) {
        let track = match self.store.track_of(first).await {
            Ok(t) => t,
            Err(why) => {
                let input = Input::Unreadable { id, why };
                self.machine.handle(Instant::now(), input);
                return;
            }
        };
        let start = self.machine.corrected(first.start_at);
        let start_ms = start.timestamp_millis().max(0) as u64;
        match self.link.open(track, start_ms).await {
            Ok(()) => {
                self.deps.metrics.connected.set(1);
                self.machine.handle(Instant::now(), Input::Connected);
            }
            Err(e) => {
                let (retryable, code) = e.retry();
                self.count_error(code);
                let now = Instant::now();
                self.machine.handle(now, Input::ConnectFailed { retryable });
                let wait = self.machine.next_connect().unwrap_or(now) - now;
                if retryable {
                    warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot open PutMedia");
                } else {
                    error!(error = %e, "KVS refused the upload: fix the stream or the credentials; retrying in 10 min");
                }
            }
        }
    }

    /// What the detector saw in the fragment's event so far, as `EDGECAM_LABELS`'s
    /// value ("car,person"), so cloud playback can find every fragment with a person.
    async fn labels(&self, rows: &[FragmentRow]) -> String {
        let Some(clip) = rows.first().and_then(|r| r.clip_id.as_deref()) else {
            return String::new();
        };
        let labels = self.deps.index.clip_labels(clip).await.unwrap_or_default();
        let mut value = String::new();
        for l in labels {
            // KVS takes tag values of at most 256 characters: the first labels will do.
            if value.len() + l.len() + 1 > LABELS_MAX {
                break;
            }
            if !value.is_empty() {
                value.push(',');
            }
            value.push_str(&l);
        }
        value
    }

    async fn write(&mut self, id: u64, rows: &[FragmentRow], tags: &[(&'static str, String)]) {
        let (track, frames, mut audio) = match self.store.load(rows).await {
            Ok(x) => x,
            Err(why) => {
                self.machine
                    .handle(Instant::now(), Input::Unreadable { id, why });
                return;
            }
        };
        if let (Some(sound), true) = (&track.audio, audio.is_empty()) {
            audio = self.store.silence(sound, &frames).await;
            self.deps.metrics.silent.inc();
        }
        if self.link.track().is_some_and(|t| *t != track) {
            // A new header is needed; the stall check replaces the connection once the
            // fragments already written are acknowledged.
            warn!(
                fragment = id,
                "the camera's stream parameters changed; a new PutMedia connection follows"
            );
            return;
        }
        // Frames recorded before the clock was set go up on the set clock, corrected as
        // the machine corrected the fragment's start (acks match on it).
        let ms = |t: u64| {
            let at = DateTime::from_timestamp_millis(t as i64).unwrap_or_default();
            self.machine.corrected(at).timestamp_millis().max(0) as u64
        };
        let mkv_frames: Vec<mkv::Frame<'_>> = frames
            .iter()
            .map(|f| mkv::Frame {
                annex_b: &f.annex_b,
                time_ms: ms(f.time_ms),
                keyframe: f.keyframe,
            })
            .collect();
        let blocks: Vec<mkv::AudioBlock<'_>> = audio
            .iter()
            .map(|a| mkv::AudioBlock {
                data: &a.data,
                time_ms: ms(a.time_ms),
            })
            .collect();
        // The trailing Tags (this fragment's metadata) also ends the cluster now, so the
        // fragment is acknowledged without waiting for the next GOP.
        let labels = self.labels(rows).await;
        let mut tags: Vec<(&str, &str)> = tags.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if !labels.is_empty() {
            tags.push((LABELS_TAG, &labels));
        }
        let bytes = match mkv::fragment(&mkv_frames, &blocks, &tags) {
            Ok(b) => b,
            Err(e) => {
                let why = e.to_string();
                self.machine
                    .handle(Instant::now(), Input::Unreadable { id, why });
                return;
            }
        };
        if !self.link.write(bytes).await {
            self.machine.handle(Instant::now(), Input::Lost);
        }
    }

    async fn persisted(&mut self, rows: &[FragmentRow], number: Option<&str>, live: bool) {
        let now = Utc::now();
        for row in rows {
            let done = self
                .deps
                .index
                .fragment_persisted(row.id, number, now)
                .await;
            if let Err(e) = done {
                error!(fragment = row.id, error = %e, "uploader: cannot record a persisted fragment");
            }
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        self.store.forget(&ids).await;
        self.deps.metrics.persisted.inc_by(rows.len() as u64);
        if live {
            if let Some(first) = rows.first() {
                let latency = (now - first.start_at).num_milliseconds().max(0);
                self.deps.metrics.latency.observe(latency as f64 / 1000.0);
            }
        }
        debug!(fragment = ?ids.first(), rows = rows.len(), "persisted");
    }

    async fn skip_rows(&mut self, rows: &[FragmentRow], code: u32, why: &str) {
        for row in rows {
            warn!(fragment = row.id, clip_id = ?row.clip_id, code, why, "fragment skipped");
            if let Err(e) = self.deps.index.fragment_skipped(row.id, code).await {
                error!(fragment = row.id, error = %e, "uploader: cannot record a skipped fragment");
            }
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        self.store.forget(&ids).await;
    }

    async fn update_backlog(&self) {
        if let Ok(n) = self.deps.index.upload_backlog().await {
            self.deps.metrics.backlog.set(n as i64);
        }
    }
}
