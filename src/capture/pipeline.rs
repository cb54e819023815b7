//! One built GStreamer pipeline and the appsink callbacks that turn its samples into
//! frames on the buses. Callbacks run on GStreamer streaming threads and never wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::watch;

use super::assemble::AuAssembler;
use super::template::PipelineSpec;
use super::{CaptureError, Heartbeat};
use crate::events::Polygon;
use crate::media::{AnalysisBus, EncodedFrame, FrameBus, RawFrame, RgbBus, Snapshot};
use crate::metrics::CaptureCounters;

/// Where a running pipeline delivers what it captures. Survives pipeline rebuilds.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub frames: FrameBus,
    pub analysis: AnalysisBus,
    pub snapshot: watch::Sender<Option<Snapshot>>,
    pub counters: CaptureCounters,
    pub heartbeat: Heartbeat,
    /// Last PTS handed out (ns), so PTS keeps increasing across rebuilds.
    pub last_pts: Arc<AtomicU64>,
    /// The object detector's pictures (appsink `detect`), while `wanted` says so.
    pub pictures: Pictures,
    /// Polygons blacked out at the pipeline's `privacy` point, before every branch; a
    /// change applies from the next frame.
    pub privacy: watch::Receiver<Arc<Vec<Polygon>>>,
}

/// Where the `detect` appsink's pictures go, and when.
#[derive(Debug, Clone)]
pub struct Pictures {
    pub bus: RgbBus,
    /// True while the detector wants pictures (something moves): the pipeline's
    /// `detect_valve` is open only then.
    pub wanted: watch::Receiver<bool>,
    /// The least time between two pictures (the detector's rate).
    pub every: Duration,
}

impl Default for Pictures {
    /// No detector: the valve stays shut.
    fn default() -> Self {
        Self {
            bus: RgbBus::new("pictures"),
            wanted: watch::channel(false).1,
            every: Duration::from_millis(500),
        }
    }
}

impl Outputs {
    pub fn new(
        frames: FrameBus,
        analysis: AnalysisBus,
        counters: CaptureCounters,
        heartbeat: Heartbeat,
    ) -> Self {
        Self {
            frames,
            analysis,
            snapshot: watch::channel(None).0,
            counters,
            heartbeat,
            last_pts: Arc::new(AtomicU64::new(0)),
            pictures: Pictures::default(),
            privacy: watch::channel(Arc::new(Vec::new())).1,
        }
    }

    /// The same outputs, with `masks` blacked out of every frame.
    pub fn with_privacy(self, masks: Vec<Polygon>) -> Self {
        self.with_privacy_watch(watch::channel(Arc::new(masks)).1)
    }

    /// The same outputs, with the masks `privacy` holds (as they change) blacked out.
    pub fn with_privacy_watch(self, privacy: watch::Receiver<Arc<Vec<Polygon>>>) -> Self {
        Self { privacy, ..self }
    }

    /// The same outputs, with the detector's pictures going to `pictures`.
    pub fn with_pictures(self, pictures: Pictures) -> Self {
        Self { pictures, ..self }
    }
}

/// A built pipeline with its callbacks attached. Dropping it stops it.
pub struct Running {
    pipeline: gst::Pipeline,
    /// The video's encoded frames (none in an audio pipeline).
    encoded: Option<gst_app::AppSink>,
}

/// Builds `spec` without starting it: catches syntax errors, missing elements and a
/// missing `encoded` appsink before the daemon commits to running.
pub fn check(spec: &PipelineSpec) -> Result<(), CaptureError> {
    let pipeline = parse(spec)?;
    let result =
        appsink(&pipeline, "encoded")
            .map(|_| ())
            .ok_or_else(|| CaptureError::MissingEncoded {
                path: spec.path.clone(),
            });
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Checks that `spec` has the `privacy` point privacy masks need.
pub fn check_privacy(spec: &PipelineSpec) -> Result<(), CaptureError> {
    let pipeline = parse(spec)?;
    let found = pipeline.by_name("privacy").is_some();
    let _ = pipeline.set_state(gst::State::Null);
    match found {
        true => Ok(()),
        false => Err(CaptureError::NoPrivacyPoint {
            path: spec.path.clone(),
        }),
    }
}

pub(super) fn parse(spec: &PipelineSpec) -> Result<gst::Pipeline, CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let element = gst::parse::launch(&spec.text).map_err(|e| CaptureError::Parse {
        path: spec.path.clone(),
        message: e.to_string(),
    })?;
    element
        .downcast::<gst::Pipeline>()
        .map_err(|_| CaptureError::Parse {
            path: spec.path.clone(),
            message: "the text describes a single element, not a pipeline with appsinks".into(),
        })
}

pub(super) fn appsink(pipeline: &gst::Pipeline, name: &str) -> Option<gst_app::AppSink> {
    pipeline.by_name(name)?.downcast::<gst_app::AppSink>().ok()
}

impl Running {
    /// Builds the pipeline of `spec` and wires its appsinks to `outputs`.
    pub fn build(
        spec: &PipelineSpec,
        outputs: &Outputs,
        generation: u32,
        fps: u32,
    ) -> Result<Self, CaptureError> {
        let pipeline = parse(spec)?;
        // Masks can be drawn while the camera runs: a pipeline with a privacy point
        // always gets the probe (it does nothing while there are no masks).
        let point = pipeline.by_name("privacy");
        let attached = point.is_some_and(|p| super::privacy::attach(&p, outputs.privacy.clone()));
        if !attached && !outputs.privacy.borrow().is_empty() {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(CaptureError::NoPrivacyPoint {
                path: spec.path.clone(),
            });
        }
        super::scene::feed_person(&pipeline);
        let encoded =
            appsink(&pipeline, "encoded").ok_or_else(|| CaptureError::MissingEncoded {
                path: spec.path.clone(),
            })?;
        let last = outputs.last_pts.load(Ordering::Relaxed);
        let pts_offset = if last == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(last) + Duration::from_secs(1) / fps.max(1)
        };
        wire_encoded(&encoded, outputs.clone(), generation, pts_offset);
        match appsink(&pipeline, "analysis") {
            Some(sink) => wire_analysis(&sink, outputs.analysis.clone()),
            None => {
                tracing::warn!(pipeline = %spec.path.display(), "no appsink named \"analysis\": motion detection gets no frames")
            }
        }
        match appsink(&pipeline, "detect") {
            Some(sink) => wire_pictures(&sink, outputs.pictures.clone()),
            None if outputs.pictures.bus.listeners().borrow().to_owned() > 0 => {
                tracing::warn!(pipeline = %spec.path.display(), "no appsink named \"detect\": the object detector gets no pictures")
            }
            None => {}
        }
        let p = &outputs.pictures;
        super::gate::valve(&pipeline, "detect_valve", p.wanted.clone(), |w| *w);
        match appsink(&pipeline, "snapshot") {
            Some(sink) => wire_snapshot(&sink, outputs.snapshot.clone()),
            None => {
                tracing::warn!(pipeline = %spec.path.display(), "no appsink named \"snapshot\": no snapshots or thumbnails")
            }
        }
        Ok(Self {
            pipeline,
            encoded: Some(encoded),
        })
    }

    /// A pipeline built elsewhere (an audio part) that gives no video.
    pub(super) fn without_video(pipeline: gst::Pipeline) -> Self {
        Self {
            pipeline,
            encoded: None,
        }
    }

    pub fn play(&self) -> Result<(), CaptureError> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|_| CaptureError::StateChange)
    }

    pub fn bus(&self) -> Option<gst::Bus> {
        self.pipeline.bus()
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Asks the encoder upstream of `encoded` for an IDR with SPS/PPS (for RTSP
    /// passthrough the depayloader turns it into a PLI to the camera).
    pub fn force_keyframe(&self) -> bool {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        self.encoded.as_ref().is_some_and(|e| e.send_event(event))
    }
}

/// Dropping stops the pipeline; it blocks until the streaming threads are gone.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The running time of a buffer timestamp in the sample's segment.
fn running_time(sample: &gst::Sample, pts: Option<gst::ClockTime>) -> Option<Duration> {
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?.clone();
    seg.to_running_time(pts?)
        .map(|t| Duration::from_nanos(t.nseconds()))
}

/// The running time now on the sink's clock (zero before the pipeline has a clock).
fn running_now(sink: &gst_app::AppSink) -> Duration {
    match (sink.clock(), sink.base_time()) {
        (Some(clock), Some(base)) => {
            Duration::from_nanos(clock.time().saturating_sub(base).nseconds())
        }
        _ => Duration::ZERO,
    }
}

/// Reading the pipeline clock on both sides of the wall clock: a pair further apart than
/// this means the thread was preempted in between, and is read again.
const CLOCK_PAIR_SPREAD: Duration = Duration::from_micros(20);

/// Wall-clock capture time of something at `running` time: now, minus how long ago that
/// was (or plus how far ahead it is). The wall clock is read between two readings of the pipeline clock (the best of
/// three tries), so a thread preempted between the readings does not shift the result:
/// frames of the video and the audio pipeline line up to within microseconds.
fn wall_clock(sink: &gst_app::AppSink, running: Duration) -> DateTime<Utc> {
    let (Some(clock), Some(base)) = (sink.clock(), sink.base_time()) else {
        return Utc::now();
    };
    let mut best: Option<(Duration, DateTime<Utc>, Duration)> = None;
    for _ in 0..3 {
        let before = clock.time();
        let wall = Utc::now();
        let after = clock.time();
        let spread = Duration::from_nanos(after.saturating_sub(before).nseconds());
        let middle = Duration::from_nanos(before.saturating_sub(base).nseconds()) + spread / 2;
        if best.is_none_or(|(s, _, _)| spread < s) {
            best = Some((spread, wall, middle));
        }
        if spread <= CLOCK_PAIR_SPREAD {
            break;
        }
    }
    let Some((_, wall_now, running_now)) = best else {
        return Utc::now();
    };
    // A synthetic live source (audiotestsrc) pushes a buffer at its start time, so the
    // time can be ahead of the clock: the difference is signed.
    let to = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
    wall_now - to(running_now) + to(running)
}

/// Running time and wall-clock time of a sample (now, if it has no timestamp).
pub(super) fn timing(
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    pts: Option<gst::ClockTime>,
) -> (Duration, DateTime<Utc>) {
    let running = running_time(sample, pts).unwrap_or_else(|| running_now(sink));
    (running, wall_clock(sink, running))
}

fn wire_encoded(sink: &gst_app::AppSink, out: Outputs, generation: u32, pts_offset: Duration) {
    sink.set_property("enable-last-sample", false);
    let mut assembler = AuAssembler::default();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let running = running_time(&sample, buffer.pts().or(buffer.dts()));
                let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
                    tracing::warn!("unreadable encoded buffer skipped");
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(au) = assembler.push(Bytes::from_owner(mapped), running) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if au.pts_fixed {
                    tracing::debug!(
                        pts_ms = au.pts.as_millis() as u64,
                        "source gave no or a non-increasing PTS; adjusted"
                    );
                }
                let pts = pts_offset + au.pts;
                out.last_pts.store(pts.as_nanos() as u64, Ordering::Relaxed);
                out.counters.frames_captured.inc();
                if au.keyframe {
                    out.counters.keyframes.inc();
                    tracing::trace!(pts_ms = au.pts.as_millis() as u64, "keyframe captured");
                }
                out.heartbeat.beat(Instant::now());
                out.frames.publish(EncodedFrame {
                    data: au.data,
                    pts,
                    captured_at: wall_clock(sink, au.pts),
                    keyframe: au.keyframe,
                    generation,
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// The picture of `sample`, or `None` (with a warning naming the `sink`) when it is not
/// in `format` or cannot be read.
fn raw(
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    format: gst_video::VideoFormat,
) -> Option<RawFrame> {
    let info = sample
        .caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())?;
    let buffer = sample.buffer_owned()?;
    if info.format() != format {
        tracing::warn!(sink = %sink.name(), got = ?info.format(), want = ?format, "wrong picture format at an appsink; picture skipped");
        return None;
    }
    let (pts, captured_at) = timing(sink, sample, buffer.pts());
    let mapped = buffer.into_mapped_buffer_readable().ok()?;
    Some(RawFrame {
        data: Bytes::from_owner(mapped),
        width: info.width(),
        height: info.height(),
        stride: info.stride()[0].max(0) as u32,
        pts,
        captured_at,
    })
}

fn wire_analysis(sink: &gst_app::AppSink, bus: AnalysisBus) {
    sink.set_property("enable-last-sample", false);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(frame) = raw(sink, &sample, gst_video::VideoFormat::Gray8) {
                    bus.publish(frame);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn wire_pictures(sink: &gst_app::AppSink, out: Pictures) {
    sink.set_property("enable-last-sample", false);
    let mut next_due: Option<Duration> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(r) = raw(sink, &sample, gst_video::VideoFormat::Rgb) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // videorate's max-rate is whole frames a second and its pictures fall on
                // the camera's frames: keep to the exact rate on average, a quarter of a
                // period either way.
                if next_due.is_some_and(|due| r.pts + out.every / 4 < due) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                next_due = Some(match next_due {
                    Some(due) if r.pts <= due + out.every => due + out.every,
                    _ => r.pts + out.every,
                });
                out.bus.publish(r);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn wire_snapshot(sink: &gst_app::AppSink, latest: watch::Sender<Option<Snapshot>>) {
    sink.set_property("enable-last-sample", false);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let (_, captured_at) = timing(sink, &sample, buffer.pts());
                if let Ok(mapped) = buffer.into_mapped_buffer_readable() {
                    latest.send_replace(Some(Snapshot {
                        jpeg: Bytes::from_owner(mapped),
                        captured_at,
                    }));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}
