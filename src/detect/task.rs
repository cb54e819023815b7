//! The detector task: takes the newest picture from the `detect` bus, runs the model on
//! it on the blocking pool, and hands what it found to the recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Model, Picture};
use crate::events::Detection;
use crate::media::{RgbBus, RgbFrame};
use crate::metrics::DetectMetrics;

/// Pictures waiting for the detector: one being read while the next arrives. Older
/// ones are skipped (the newest wins).
const PICTURE_QUEUE: usize = 2;
/// Results waiting for the recorder (a few seconds at the detector's rate).
pub const RESULT_QUEUE: usize = 8;
/// At most one warning about failed inferences per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the detector found in one picture.
#[derive(Debug, Clone)]
pub struct Detections {
    pub captured_at: DateTime<Utc>,
    pub pts: Duration,
    pub objects: Vec<Detection>,
    /// How long the inference took.
    pub took: Duration,
}

/// Starts the detector on `frames` with the labels it looks for and their minimum
/// scores; its results go to `tx` (made with `RESULT_QUEUE`) until `cancel`.
pub fn spawn(
    model: Arc<Model>,
    min_scores: BTreeMap<String, f32>,
    frames: &RgbBus,
    tx: mpsc::Sender<Detections>,
    metrics: DetectMetrics,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let thresholds = Arc::new(model.thresholds(&|label| min_scores.get(label).copied()));
    let sub = frames.subscribe("detect", PICTURE_QUEUE);
    let task = async move {
        let mut sub = sub;
        let mut tensor = Vec::new();
        let mut warned: Option<Instant> = None;
        loop {
            let mut frame = tokio::select! {
                _ = cancel.cancelled() => break,
                f = sub.recv() => match f { Some(f) => f, None => break },
            };
            while let Ok(newer) = sub.try_recv() {
                metrics.skipped.inc();
                frame = newer;
            }
            let (model, thresholds) = (model.clone(), thresholds.clone());
            let job = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let result = model.detect(&picture(&frame), &thresholds, &mut tensor);
                (result, tensor, started.elapsed(), frame)
            });
            let (result, back, took, frame) = match job.await {
                Ok(done) => done,
                Err(e) if e.is_panic() => {
                    // A model that trips the inference engine must not stop the camera.
                    warn!("object detection failed on a picture (the inference engine panicked)");
                    tensor = Vec::new();
                    continue;
                }
                Err(_) => break,
            };
            tensor = back;
            metrics.analysed.inc();
            metrics.inference.observe(took.as_secs_f64());
            match result {
                Ok(objects) => {
                    debug!(
                        found = objects.len(),
                        took_ms = took.as_millis() as u64,
                        "picture analysed"
                    );
                    let found = Detections {
                        captured_at: frame.captured_at,
                        pts: frame.pts,
                        objects,
                        took,
                    };
                    if tx.try_send(found).is_err() {
                        debug!("the recorder has not taken the last detections; these are dropped");
                    }
                }
                Err(e) => {
                    if warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                        warn!(error = %e, "object detection failed on a picture");
                        warned = Some(Instant::now());
                    }
                }
            }
        }
    };
    tokio::spawn(task)
}

fn picture(frame: &RgbFrame) -> Picture<'_> {
    Picture {
        rgb: &frame.data,
        width: frame.width as usize,
        height: frame.height as usize,
        stride: frame.stride as usize,
    }
}
