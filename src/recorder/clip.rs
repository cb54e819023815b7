//! Writing one clip: `appsrc ! h264parse ! mp4mux fragment-duration=… ! filesink` into
//! `<id>.mp4.part`, renamed to `<id>.mp4` once finished. Fragmented MP4 keeps everything
//! but the last fragment readable after a crash; the data is flushed to disk every
//! second so a power cut loses little more.
//!
//! With sound, a second `appsrc` carries raw AAC into the same muxer. Its frames are
//! timed from the clip's first keyframe by their wall-clock capture time (the one clock
//! both pipelines map to), and frames from before that keyframe are left out, so sound
//! and picture start together.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::index::ClipStats;
use crate::media::{h264, AudioFormat, AudioFrame, EncodedFrame};

/// Longest fragment (a new one also starts at every keyframe): a crash loses at most about
/// this much plus one frame. Well under the 0.5 s loss target.
pub const FRAGMENT_MS: u32 = 250;
/// How often written data is forced to disk.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for the muxer to finish a file.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The muxer interleaves by time and waits for both tracks: sound that stops for this
/// long (a microphone unplugged) is ended in the clip, so the picture goes on being
/// written.
pub const AUDIO_IDLE: Duration = Duration::from_secs(1);
/// Most bytes of picture waiting in a clip's queue beyond its pre-roll. The queue fills
/// only when the disk stalls; past this, frames are dropped (and counted on the clip)
/// rather than memory growing until the camera runs out.
pub const QUEUE_HEADROOM: u64 = 32 * 1024 * 1024;
/// The same for sound (minutes of AAC).
const AUDIO_QUEUE_LIMIT: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("cannot create clip directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("clip pipeline: {0}")]
    Pipeline(String),
    #[error("clip {}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("clip has no frames")]
    Empty,
}

/// An open clip being written.
pub struct ClipWriter {
    pipeline: gst::Pipeline,
    /// The pipeline's bus, where a write error (a full disk) shows up.
    bus: gst::Bus,
    /// The error that stopped the muxer or the file, once seen.
    failed: Option<String>,
    src: gst_app::AppSrc,
    part: PathBuf,
    sync: Option<Arc<File>>,
    last_sync: Instant,
    first_pts: Option<Duration>,
    first_at: Option<DateTime<Utc>>,
    last_at: Option<DateTime<Utc>>,
    last_pts: Duration,
    frames: u64,
    bytes: u64,
    size: (u32, u32),
    audio: Option<AudioInput>,
    /// Most bytes queued for the muxer (`QUEUE_HEADROOM` plus the pre-roll).
    queue_limit: u64,
    /// Frames dropped because the queue was full.
    lost: u64,
    /// A frame was dropped: the next one written must be a keyframe.
    resync: bool,
}

/// The clip's sound track while it is open.
struct AudioInput {
    src: gst_app::AppSrc,
    format: AudioFormat,
    /// When the last frame was pushed (or the track opened).
    last_push: Instant,
    last_pts: Option<Duration>,
    /// Capture time of the last frame written.
    last_at: Option<DateTime<Utc>>,
    frames: u64,
    ended: bool,
}

/// The `.part` path for a final clip path.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// The final path for a `.part` path.
pub fn final_path(part: &Path) -> PathBuf {
    part.with_extension("")
}

impl ClipWriter {
    /// Starts writing `<final_path>.part`, with an AAC track of `audio` when given.
    pub fn create(final_path: &Path, audio: Option<&AudioFormat>) -> Result<Self, ClipError> {
        if let Some(dir) = final_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ClipError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        gst::init().map_err(|e| ClipError::Pipeline(e.to_string()))?;
        let part = part_path(final_path);
        let pipeline = gst::Pipeline::new();
        let make = |factory: &str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|e| ClipError::Pipeline(format!("{factory}: {e}")))
        };
        let src = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build(),
            )
            .format(gst::Format::Time)
            .is_live(true)
            // Never block the recorder: the queue is unbounded, the clip is bounded in time.
            .max_bytes(0)
            .block(false)
            .build();
        let parse = make("h264parse")?;
        let mux = make("mp4mux")?;
        mux.set_property("fragment-duration", FRAGMENT_MS);
        let sink = make("filesink")?;
        sink.set_property("location", part.to_string_lossy().as_ref());
        sink.set_property_from_str("buffer-mode", "unbuffered");
        sink.set_property("async", false);
        pipeline
            .add_many([src.upcast_ref(), &parse, &mux, &sink])
            .and_then(|()| gst::Element::link_many([src.upcast_ref(), &parse, &mux, &sink]))
            .map_err(|e| ClipError::Pipeline(e.to_string()))?;
        let audio = match audio {
            Some(format) => {
                let asrc = gst_app::AppSrc::builder()
                    .caps(&crate::capture::aac_caps(format))
                    .format(gst::Format::Time)
                    .is_live(true)
                    .max_bytes(0)
                    .block(false)
                    .build();
                pipeline
                    .add(&asrc)
                    .and_then(|()| asrc.link(&mux))
                    .map_err(|e| ClipError::Pipeline(format!("audio track: {e}")))?;
                Some(AudioInput {
                    src: asrc,
                    format: format.clone(),
                    last_push: Instant::now(),
                    last_pts: None,
                    last_at: None,
                    frames: 0,
                    ended: false,
                })
            }
            None => None,
        };
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| ClipError::Pipeline(format!("cannot start: {e}")))?;
        let sync = File::open(&part).ok().map(Arc::new);
        let bus = pipeline
            .bus()
            .ok_or_else(|| ClipError::Pipeline("no bus".into()))?;
        Ok(Self {
            pipeline,
            bus,
            failed: None,
            src,
            part,
            sync,
            last_sync: Instant::now(),
            first_pts: None,
            first_at: None,
            last_at: None,
            last_pts: Duration::ZERO,
            frames: 0,
            bytes: 0,
            size: (0, 0),
            audio,
            queue_limit: QUEUE_HEADROOM,
            lost: 0,
            resync: false,
        })
    }

    /// Whether the clip has a sound track still taking frames.
    pub fn takes_audio(&self) -> bool {
        self.audio.as_ref().is_some_and(|a| !a.ended)
    }

    /// Lets the queue hold `bytes` of pre-roll on top of `QUEUE_HEADROOM`: the pre-roll
    /// is queued at once when the clip opens.
    pub fn allow_backlog(&mut self, bytes: u64) {
        self.queue_limit = QUEUE_HEADROOM + bytes;
    }

    /// Bytes of picture waiting for the muxer.
    pub fn queued_bytes(&self) -> u64 {
        self.src.current_level_bytes()
    }

    /// Frames dropped because the disk did not keep up.
    pub fn frames_lost(&self) -> u64 {
        self.lost
    }

    /// Audio frames written so far.
    pub fn audio_frames(&self) -> u64 {
        self.audio.as_ref().map_or(0, |a| a.frames)
    }

    /// Appends an AAC frame. Frames from before the clip's first keyframe, or repeated,
    /// are skipped; a frame of another format ends the clip's sound (the next clip takes
    /// it up). Returns whether the frame was written.
    pub fn push_audio(&mut self, frame: &AudioFrame, now: Instant) -> Result<bool, ClipError> {
        self.check()?;
        let Some(first_at) = self.first_at else {
            return Ok(false);
        };
        let Some(audio) = self.audio.as_mut().filter(|a| !a.ended) else {
            return Ok(false);
        };
        if frame.format != audio.format {
            self.end_audio();
            return Ok(false);
        }
        // mp4mux starts each track of a fragmented file at zero, whatever its first
        // timestamp: the first frame is the one nearest the picture's start (at most
        // half a frame away), and the ones before it are left out.
        let half = chrono::Duration::from_std(frame.duration / 2).unwrap_or_default();
        let offset = frame.captured_at - first_at;
        if offset < -half {
            return Ok(false);
        }
        let pts = offset.to_std().unwrap_or(Duration::ZERO);
        if audio.last_pts.is_some_and(|last| pts <= last) {
            return Ok(false);
        }
        if audio.src.current_level_bytes() + frame.data.len() as u64 > AUDIO_QUEUE_LIMIT {
            return Ok(false); // the disk stalls; the picture's queue counts the loss
        }
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
            b.set_duration(gst::ClockTime::from_nseconds(
                frame.duration.as_nanos() as u64
            ));
        }
        audio
            .src
            .push_buffer(buffer)
            .map_err(|e| ClipError::Pipeline(format!("push audio: {e:?}")))?;
        audio.last_pts = Some(pts);
        audio.last_at = Some(frame.captured_at);
        audio.last_push = now;
        audio.frames += 1;
        self.bytes += frame.data.len() as u64;
        Ok(true)
    }

    /// Whether the sound track still waits for frames up to `until` (sound arrives a
    /// little after the picture it goes with).
    pub fn audio_short_of(&self, until: DateTime<Utc>) -> bool {
        self.audio
            .as_ref()
            .is_some_and(|a| !a.ended && a.last_at.is_none_or(|t| t < until))
    }

    /// Whether sound stopped arriving (`AUDIO_IDLE`) while the clip goes on.
    pub fn audio_idle(&self, now: Instant) -> bool {
        self.audio
            .as_ref()
            .is_some_and(|a| !a.ended && now.duration_since(a.last_push) >= AUDIO_IDLE)
    }

    /// Ends the clip's sound track; the picture goes on alone.
    pub fn end_audio(&mut self) {
        if let Some(a) = self.audio.as_mut().filter(|a| !a.ended) {
            a.ended = true;
            let _ = a.src.end_of_stream();
        }
    }

    pub fn part(&self) -> &Path {
        &self.part
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Fails once the pipeline reported an error: `appsrc` goes on taking frames after
    /// the file failed (ENOSPC), so without this a full disk would pass unnoticed.
    fn check(&mut self) -> Result<(), ClipError> {
        if self.failed.is_none() {
            if let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error]) {
                if let gst::MessageView::Error(e) = msg.view() {
                    self.failed = Some(format!("{}: {}", e.error(), e.debug().unwrap_or_default()));
                }
            }
        }
        match &self.failed {
            Some(why) => Err(ClipError::Pipeline(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends a frame. Frames before the first keyframe are skipped (undecodable).
    pub fn push(&mut self, frame: &EncodedFrame) -> Result<(), ClipError> {
        self.check()?;
        if self.first_pts.is_none() {
            if !frame.keyframe {
                return Ok(());
            }
            self.first_pts = Some(frame.pts);
            self.first_at = Some(frame.captured_at);
            if let Some(sps) =
                h264::parameter_sets(&frame.data).and_then(|(sps, _)| h264::parse_sps(sps).ok())
            {
                self.size = (sps.width, sps.height);
            }
        }
        // mp4mux needs timestamps from zero (a large first PTS corrupts the duration).
        let pts = frame.pts.saturating_sub(self.first_pts.unwrap_or_default());
        if self.frames > 0 && pts <= self.last_pts {
            return Ok(()); // a duplicate or out-of-order frame would stall the muxer
        }
        if self.queue_full(frame) {
            return Ok(());
        }
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            let t = gst::ClockTime::from_nseconds(pts.as_nanos() as u64);
            b.set_pts(t);
            b.set_dts(t);
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| ClipError::Pipeline(format!("push: {e:?}")))?;
        self.last_pts = pts;
        self.last_at = Some(frame.captured_at);
        self.frames += 1;
        self.bytes += frame.data.len() as u64;
        Ok(())
    }

    /// Whether `frame` is dropped because the disk is not keeping up: past the queue's
    /// limit, and after that until the next keyframe (a picture needs its references).
    fn queue_full(&mut self, frame: &EncodedFrame) -> bool {
        let full = self.queued_bytes() + frame.data.len() as u64 > self.queue_limit;
        if full && !self.resync {
            tracing::warn!(clip = %self.part.display(), queued_bytes = self.queued_bytes(),
                "the disk is not keeping up with the clip; dropping frames until it does");
        }
        if full || (self.resync && !frame.keyframe) {
            self.resync = true;
            self.lost += 1;
            return true;
        }
        self.resync = false;
        false
    }

    /// A handle to flush the file to disk, when `SYNC_INTERVAL` has passed since the last.
    pub fn due_sync(&mut self, now: Instant) -> Option<Arc<File>> {
        if now.duration_since(self.last_sync) < SYNC_INTERVAL {
            return None;
        }
        self.last_sync = now;
        if self.sync.is_none() {
            self.sync = File::open(&self.part).ok().map(Arc::new);
        }
        self.sync.clone()
    }

    /// Ends the stream, waits for the muxer, syncs and renames to the final name. Blocks:
    /// call from a blocking thread.
    pub fn finish(mut self) -> Result<(PathBuf, ClipStats), ClipError> {
        if let Err(e) = self.check() {
            let _ = self.pipeline.set_state(gst::State::Null);
            return Err(e);
        }
        self.end_audio();
        let _ = self.src.end_of_stream();
        let msg = self.bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(FINISH_TIMEOUT.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = self.pipeline.set_state(gst::State::Null);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => {
                return Err(ClipError::Pipeline(format!(
                    "{}: {}",
                    e.error(),
                    e.debug().unwrap_or_default()
                )))
            }
            _ => return Err(ClipError::Pipeline("muxer did not finish in time".into())),
        }
        let (Some(start_at), Some(end_at)) = (self.first_at, self.last_at) else {
            let _ = std::fs::remove_file(&self.part);
            return Err(ClipError::Empty);
        };
        let file_err = |source| ClipError::File {
            path: self.part.clone(),
            source,
        };
        File::open(&self.part)
            .and_then(|f| f.sync_all())
            .map_err(file_err)?;
        let done = final_path(&self.part);
        std::fs::rename(&self.part, &done).map_err(file_err)?;
        if let Some(dir) = done.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let bytes = std::fs::metadata(&done)
            .map(|m| m.len())
            .unwrap_or(self.bytes);
        let frame_time = if self.frames > 1 {
            self.last_pts / (self.frames - 1) as u32
        } else {
            Duration::ZERO
        };
        let stats = ClipStats {
            start_at,
            end_at,
            duration: self.last_pts + frame_time,
            frame_count: self.frames,
            bytes,
            width: self.size.0,
            height: self.size.1,
            frames_lost: self.lost,
        };
        Ok((done, stats))
    }
}

impl Drop for ClipWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
