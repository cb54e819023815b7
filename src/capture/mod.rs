//! The capture pipeline: built from a pipeline file, feeding the frame bus, the analysis
//! bus and the latest snapshot, rebuilt with backoff when the camera fails.

mod assemble;
pub mod audio;
mod gate;
mod pipeline;
mod privacy;
pub mod scene;
mod task;
pub mod template;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::backoff::Backoff;
pub use audio::{aac_caps, AudioOutputs};
pub use pipeline::{check, check_privacy, Outputs, Pictures, Running};
pub use task::{spawn, spawn_audio, CaptureHandle, CaptureState, TaskConfig};
pub use template::PipelineSpec;

/// Why capture failed. [`CaptureError::is_retryable`] tells the supervisor whether a
/// rebuild can help or a person must change something.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("pipeline file {file} not found (looked in: {searched}); set camera.pipeline to one of the shipped pipelines or camera.pipeline_dir to where yours is")]
    PipelineNotFound { file: String, searched: String },
    #[error("{}: cannot read the pipeline file: {source}", path.display())]
    ReadPipeline {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: unknown placeholder ${{{var}}}; known ones: {known}", path.display())]
    UnknownPlaceholder {
        path: PathBuf,
        var: String,
        /// The placeholders there are, comma-separated.
        known: String,
    },
    #[error("{}: GStreamer cannot build this pipeline: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: the pipeline has no appsink named \"encoded\"; every pipeline must end its H.264 branch in `appsink name=encoded`", path.display())]
    MissingEncoded { path: PathBuf },
    #[error("{}: the audio part has no appsink named \"opus\" or \"aac\"; end its branches in `appsink name=opus` (Opus, live view) and `appsink name=aac` (raw AAC, clips)", path.display())]
    MissingAudioSinks { path: PathBuf },
    #[error("{}: audio.record_talk needs the audio part's raw sound to go through `tee name=pcm` (as the shipped files do), where the talk is mixed in", path.display())]
    NoTalkMix { path: PathBuf },
    #[error("{}: camera.privacy_masks needs an element named \"privacy\" (an identity) on the raw picture before the tee, as the shipped pipelines have; a pipeline that passes the camera's own H.264 through cannot mask it (set the masks in the camera)", path.display())]
    NoPrivacyPoint { path: PathBuf },
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("{element}: {message}{}", debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Element {
        element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("the source ended its stream (end of stream)")]
    EndOfStream,
    #[error("no frame for {0:?}: the camera stalled")]
    Stalled(Duration),
    #[error("the pipeline refused to start playing")]
    StateChange,
}

impl CaptureError {
    /// True when rebuilding the pipeline later may succeed (camera unplugged, network
    /// down); false for mistakes in the config or pipeline file.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Element { .. } | Self::EndOfStream | Self::Stalled(_) | Self::StateChange
        )
    }
}

/// When the last encoded frame arrived; read by `/healthz` and the stall watchdog.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<HeartbeatInner>,
}

#[derive(Debug)]
struct HeartbeatInner {
    base: Instant,
    /// Nanoseconds after `base` of the last beat, plus one (0 = never).
    last: AtomicU64,
}

impl Heartbeat {
    pub fn new(base: Instant) -> Self {
        Self {
            inner: Arc::new(HeartbeatInner {
                base,
                last: AtomicU64::new(0),
            }),
        }
    }

    pub fn beat(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.inner.base).as_nanos() as u64;
        self.inner
            .last
            .store(ns.saturating_add(1), Ordering::Relaxed);
    }

    pub fn last(&self) -> Option<Instant> {
        match self.inner.last.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.inner.base + Duration::from_nanos(n - 1)),
        }
    }

    /// Time since the last beat, `None` if there never was one.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last().map(|t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_reports_age() {
        let base = Instant::now();
        let hb = Heartbeat::new(base);
        assert_eq!(hb.age(base), None);
        hb.beat(base + Duration::from_secs(1));
        assert_eq!(
            hb.age(base + Duration::from_secs(4)),
            Some(Duration::from_secs(3))
        );
        hb.beat(base);
        assert_eq!(
            hb.last(),
            Some(base),
            "a beat at the base instant still counts"
        );
    }

    #[test]
    fn config_mistakes_are_not_retried() {
        assert!(!CaptureError::MissingEncoded { path: "x".into() }.is_retryable());
        assert!(CaptureError::EndOfStream.is_retryable());
    }
}
