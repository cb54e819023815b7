//! The object detector: a YOLO model (ONNX, run by tract in pure Rust) on the small
//! colour pictures the pipeline takes while something moves, on the blocking pool, one
//! picture at a time, the newest first. Capture, live view and recording never wait
//! for it: pictures that arrive while it works are replaced by newer ones.

pub mod letterbox;
pub mod model;
mod task;
pub mod yolo;

use std::path::PathBuf;

pub use model::{Model, Picture, COCO_LABELS};
pub use task::{spawn, Detections, RESULT_QUEUE};

/// What can go wrong with detection.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detect.model {}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    #[error("the picture is smaller than its size says")]
    BadFrame,
    #[error("inference failed: {0}")]
    Inference(String),
}
