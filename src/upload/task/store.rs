//! Where the uploader finds a fragment's frames: a bounded cache of the GOPs cut live,
//! continuous mode's GOP files on disk (`upload::ring`: kept until KVS has them, read
//! back after a restart or a long outage, the oldest dropped past
//! `continuous_buffer_mb`), and the clip files of the rest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use crate::capture;
use crate::index::{FragmentRow, Index};
use crate::media::fmp4::{self, Scan};
use crate::media::{AudioCodec, AudioFormat};
use crate::upload::cache::FrameCache;
use crate::upload::gop::Gop;
use crate::upload::mkv::{AudioTrackInfo, TrackInfo};
use crate::upload::ring;
use crate::upload::source::{self, OwnedAudio, OwnedFrame};

/// Frames of recent fragments kept in memory for sending and resending.
const CACHE_BYTES: usize = 64 << 20;

/// A fragment ready to write: the stream header's tracks, frames, sound.
pub(super) type Loaded = (TrackInfo, Vec<OwnedFrame>, Vec<OwnedAudio>);

pub(super) struct FrameStore {
    index: Index,
    data_dir: PathBuf,
    cache: FrameCache,
    /// Continuous mode's GOP files on disk: fragment id → bytes; their most in all (0:
    /// none kept on disk).
    ring: BTreeMap<i64, u64>,
    ring_budget: u64,
    /// The last clip file's sample table, reused while the file does not change.
    scan: Option<(PathBuf, u64, Arc<Scan>)>,
    /// A frame of AAC silence per (rate, channels), made when first needed.
    silence: HashMap<(u32, u32), Bytes>,
}

impl FrameStore {
    /// `ring_budget`: bytes of continuous GOPs kept on disk (0: memory only).
    pub fn new(index: Index, data_dir: PathBuf, ring_budget: u64) -> Self {
        Self {
            index,
            data_dir,
            cache: FrameCache::new(CACHE_BYTES),
            ring: BTreeMap::new(),
            ring_budget,
            scan: None,
            silence: HashMap::new(),
        }
    }

    fn ring_dir(&self) -> PathBuf {
        self.data_dir.join(ring::DIR)
    }

    /// At start: the GOP files a previous run left.
    pub async fn open_ring(&mut self) {
        if self.ring_budget == 0 {
            return;
        }
        let dir = self.ring_dir();
        self.ring = tokio::task::spawn_blocking(move || ring::scan(&dir))
            .await
            .unwrap_or_default();
        if !self.ring.is_empty() {
            let mb = self.ring.values().sum::<u64>() >> 20;
            info!(
                gops = self.ring.len(),
                mb, "continuous video waiting on disk"
            );
        }
    }

    /// After the backlog is queued: files of fragments no longer pending go.
    pub async fn prune_ring(&mut self, pending: &[i64]) {
        let stale: Vec<i64> = self
            .ring
            .keys()
            .copied()
            .filter(|id| !pending.contains(id))
            .collect();
        self.forget(&stale).await;
    }

    /// Keeps a GOP just cut: in memory, and for continuous video on disk too. Returns the
    /// fragments dropped from disk to make room (the oldest).
    pub async fn keep(&mut self, id: i64, gop: Gop, continuous: bool) -> Vec<i64> {
        let mut full = Vec::new();
        if continuous && self.ring_budget > 0 {
            let bytes = ring::encode(&gop);
            let size = bytes.len() as u64;
            let dir = self.ring_dir();
            match tokio::task::spawn_blocking(move || ring::write(&dir, id, &bytes)).await {
                Ok(Ok(())) => {
                    self.ring.insert(id, size);
                }
                Ok(Err(e)) => {
                    warn!(fragment = id, error = %e, "cannot keep continuous video on disk")
                }
                Err(e) => warn!(fragment = id, error = %e, "cannot keep continuous video on disk"),
            }
            full = ring::over(&self.ring, self.ring_budget);
            if !full.is_empty() {
                warn!(
                    gops = full.len(),
                    "the continuous buffer is full: the oldest video not yet in KVS is dropped"
                );
                self.forget(&full).await;
            }
        }
        self.cache.insert(id, gop);
        full
    }

    /// Whether every row's frames are in memory (after `restore`).
    pub fn holds(&self, rows: &[FragmentRow]) -> bool {
        rows.iter().all(|r| self.cache.contains(r.id))
    }

    /// Brings GOPs of continuous `rows` that memory no longer holds back from disk.
    pub async fn restore(&mut self, rows: &[FragmentRow]) {
        for r in rows {
            if r.clip_id.is_some() || self.cache.contains(r.id) || !self.ring.contains_key(&r.id) {
                continue;
            }
            let file = ring::path(&self.ring_dir(), r.id);
            let read = tokio::task::spawn_blocking(move || std::fs::read(file)).await;
            match read.map(|r| r.map(|b| ring::decode(&b))) {
                Ok(Ok(Ok(gop))) => self.cache.insert(r.id, gop),
                _ => {
                    warn!(fragment = r.id, "a continuous GOP on disk cannot be read");
                    self.ring.remove(&r.id);
                }
            }
        }
    }

    /// Forgets the frames of `ids` (persisted, skipped or dropped), in memory and on disk.
    pub async fn forget(&mut self, ids: &[i64]) {
        for id in ids {
            self.cache.remove(*id);
        }
        let dir = self.ring_dir();
        let gone: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| self.ring.remove(id).is_some())
            .collect();
        if gone.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for id in gone {
                let _ = std::fs::remove_file(ring::path(&dir, id));
            }
        })
        .await;
    }

    /// The file holding a fragment's frames.
    async fn clip_file(&self, row: Option<&FragmentRow>) -> Result<PathBuf, String> {
        let clip_id = row
            .and_then(|r| r.clip_id.clone())
            .ok_or("frames no longer in memory")?;
        let clip = self.index.clip(&clip_id).await.map_err(|e| e.to_string())?;
        source::clip_path(&self.data_dir, &clip.path).map_err(|e| e.to_string())
    }

    /// The stream header's track for a connection starting with `first`, without
    /// reading its frames.
    pub async fn track_of(&mut self, first: &FragmentRow) -> Result<TrackInfo, String> {
        self.restore(std::slice::from_ref(first)).await;
        if let Some(gop) = self.cache.get(first.id) {
            let frame = gop.frames.first().ok_or("empty fragment")?;
            return Ok(TrackInfo::from_keyframe(&frame.data)
                .map_err(|e| e.to_string())?
                .with_audio(gop.sound.as_ref().map(AudioTrackInfo::from)));
        }
        let path = self.clip_file(Some(first)).await?;
        let scan = self.scan(&path).await.map_err(|e| e.to_string())?;
        source::track(&scan).map_err(|e| e.to_string())
    }

    /// A fragment's track, frames and sound: from memory, else from its clip file.
    pub async fn load(&mut self, rows: &[FragmentRow]) -> Result<Loaded, String> {
        self.restore(rows).await;
        let cached: Option<Vec<Arc<Gop>>> = rows.iter().map(|r| self.cache.get(r.id)).collect();
        if let Some(gops) = cached {
            let frames: Vec<OwnedFrame> = gops
                .iter()
                .flat_map(|g| g.frames.iter())
                .map(|f| OwnedFrame {
                    annex_b: f.data.clone(),
                    time_ms: f.captured_at.timestamp_millis().max(0) as u64,
                    keyframe: f.keyframe,
                })
                .collect();
            let audio: Vec<OwnedAudio> = gops
                .iter()
                .flat_map(|g| g.audio.iter())
                .map(|f| OwnedAudio {
                    data: f.data.clone(),
                    time_ms: f.captured_at.timestamp_millis().max(0) as u64,
                })
                .collect();
            let first = frames.first().ok_or("empty fragment")?;
            let sound = gops.first().and_then(|g| g.sound.as_ref());
            let track = TrackInfo::from_keyframe(&first.annex_b)
                .map_err(|e| e.to_string())?
                .with_audio(sound.map(AudioTrackInfo::from));
            return Ok((track, frames, audio));
        }
        let path = self.clip_file(rows.first()).await?;
        let scan = self.scan(&path).await.map_err(|e| e.to_string())?;
        let track = source::track(&scan).map_err(|e| e.to_string())?;
        let frames = source::read_frames(&path, &scan, rows).map_err(|e| e.to_string())?;
        let audio = source::read_audio(&path, &scan, rows).map_err(|e| e.to_string())?;
        Ok((track, frames, audio))
    }

    /// Silence for a fragment whose sound track has no frame (KVS wants a frame of every
    /// track in every fragment): AAC frames of silence over the picture's span.
    pub async fn silence(
        &mut self,
        track: &AudioTrackInfo,
        frames: &[OwnedFrame],
    ) -> Vec<OwnedAudio> {
        let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
            return Vec::new();
        };
        let key = (track.rate, track.channels);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.silence.entry(key) {
            let format = AudioFormat {
                codec: AudioCodec::Aac,
                rate: track.rate,
                channels: track.channels,
                config: Bytes::from(track.config.clone()),
            };
            match tokio::task::spawn_blocking(move || capture::audio::silent_aac(&format)).await {
                Ok(Ok(frame)) => {
                    slot.insert(frame);
                }
                Ok(Err(e)) => warn!(error = %e, "cannot make silence for a fragment without sound"),
                Err(e) => warn!(error = %e, "cannot make silence for a fragment without sound"),
            }
        }
        let Some(frame) = self.silence.get(&key) else {
            return Vec::new();
        };
        let step = 1024.0 * 1000.0 / f64::from(track.rate.max(1));
        (0..)
            .map(|k| first.time_ms + (f64::from(k) * step) as u64)
            .take_while(|&t| t <= last.time_ms)
            .map(|time_ms| OwnedAudio {
                data: frame.clone(),
                time_ms,
            })
            .collect()
    }

    /// The clip file's sample table (scanned off the runtime), reused while the file
    /// does not change.
    pub async fn scan(&mut self, path: &Path) -> Result<Arc<Scan>, fmp4::Fmp4Error> {
        let len = tokio::fs::metadata(path).await?.len();
        if let Some((p, l, s)) = &self.scan {
            if p == path && *l == len {
                return Ok(Arc::clone(s));
            }
        }
        let owned = path.to_owned();
        let scanned = tokio::task::spawn_blocking(move || fmp4::scan(&owned))
            .await
            .map_err(|e| fmp4::Fmp4Error::Io(std::io::Error::other(e.to_string())))??;
        let scan = Arc::new(scanned);
        self.scan = Some((path.to_owned(), len, Arc::clone(&scan)));
        Ok(scan)
    }
}
