//! The detection model: an ONNX file of the Darknet YOLO family loaded with tract (pure
//! Rust), and one inference on one picture.
//!
//! The file says what it is in its metadata (written by `packaging/model/darknet2onnx.py`):
//! `edgecam.labels` (class names in order, comma-separated) and `edgecam.anchors`
//! (`<output>:w,h,w,h,…;<output>:…`, in input pixels). A YOLOv3-tiny file without them
//! gets YOLOv3-tiny's anchors and the 80 COCO labels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

use super::letterbox::Letterbox;
use super::yolo::{self, Grid, Head};
use super::DetectError;
use crate::events::Detection;

/// The 80 COCO labels in Darknet's order.
pub const COCO_LABELS: &str = "person,bicycle,car,motorbike,aeroplane,bus,train,truck,boat,traffic light,fire hydrant,stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,baseball glove,skateboard,surfboard,tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,hot dog,pizza,donut,cake,chair,sofa,pottedplant,bed,diningtable,toilet,tvmonitor,laptop,mouse,remote,keyboard,cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,hair drier,toothbrush";

/// YOLOv3-tiny's anchors for its two outputs, coarse first.
const TINY_ANCHORS: [&[[f32; 2]]; 2] = [
    &[[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]],
    &[[10.0, 14.0], [23.0, 27.0], [37.0, 58.0]],
];

/// Boxes of one class overlapping more than this are one object.
const NMS_IOU: f32 = 0.45;

/// A loaded model, ready to run.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    /// The input's `[width, height]` in pixels.
    input: [usize; 2],
    heads: Vec<(Head, Grid)>,
    labels: Vec<String>,
    path: PathBuf,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("input", &self.input)
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

/// A string property of the model's metadata.
fn property(model: &InferenceModel, key: &str) -> Option<String> {
    let t = model
        .properties
        .get(&format!("onnx.metadata_props.{key}"))?;
    t.try_as_plain_ram()
        .ok()?
        .to_scalar::<String>()
        .ok()
        .cloned()
}

/// One output's name and its anchors.
type Anchors = (String, Vec<[f32; 2]>);

/// Parses `name:w,h,w,h;name:…`.
fn parse_anchors(text: &str) -> Result<Vec<Anchors>, String> {
    text.split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|part| {
            let (name, numbers) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} has no `output:` in front"))?;
            let values: Vec<f32> = numbers
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| format!("{v:?} is not a number"))
                })
                .collect::<Result<_, _>>()?;
            if values.is_empty()
                || !values.len().is_multiple_of(2)
                || values.iter().any(|v| v.is_nan() || *v <= 0.0)
            {
                return Err(format!(
                    "{name}: anchors come in positive pairs (width,height)"
                ));
            }
            Ok((
                name.trim().to_owned(),
                values.chunks(2).map(|c| [c[0], c[1]]).collect(),
            ))
        })
        .collect()
}

impl Model {
    /// Loads and checks the model at `path`; every problem is a `DetectError::Model`
    /// naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Model, DetectError> {
        let bad = |reason: String| DetectError::Model {
            path: path.to_owned(),
            reason,
        };
        if !path.is_file() {
            return Err(bad("no such file".into()));
        }
        // A malformed file must be an error, even where the parser would panic on it.
        let parsed = std::panic::catch_unwind(|| tract_onnx::onnx().model_for_path(path))
            .map_err(|_| bad("not a readable ONNX model (the parser gave up on it)".into()))?;
        let inference = parsed.map_err(|e| bad(format!("not a readable ONNX model: {e}")))?;
        let labels: Vec<String> = property(&inference, "edgecam.labels")
            .unwrap_or_else(|| COCO_LABELS.into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let anchors = property(&inference, "edgecam.anchors")
            .map(|a| parse_anchors(&a))
            .transpose()
            .map_err(|e| bad(format!("edgecam.anchors: {e}")))?;
        // Optimising renames nodes: take the outputs' names first (their order stays).
        let names: Vec<String> = inference
            .output_outlets()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|o| inference.node(o.node).name.clone())
            .collect();
        let typed = inference
            .into_optimized()
            .map_err(|e| bad(format!("tract cannot prepare it: {e}")))?;
        let input = match typed.input_fact(0).ok().and_then(|f| f.shape.as_concrete()) {
            Some([1, 3, h, w]) if (16..=4096).contains(w) && (16..=4096).contains(h) => [*w, *h],
            other => {
                return Err(bad(format!(
                    "its input must be one RGB picture of a fixed size from 16 to 4096 pixels a side, [1, 3, height, width]; it is {other:?}"
                )))
            }
        };
        let mut heads = Vec::new();
        let outlets = typed
            .output_outlets()
            .map_err(|e| bad(e.to_string()))?
            .to_vec();
        for (i, name) in names.into_iter().enumerate().take(outlets.len()) {
            let anchors = match &anchors {
                Some(list) => list
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, a)| a.clone())
                    .ok_or_else(|| bad(format!("edgecam.anchors names no output {name:?}")))?,
                None => TINY_ANCHORS
                    .get(i)
                    .map(|a| a.to_vec())
                    .ok_or_else(|| bad("more than two outputs and no edgecam.anchors".into()))?,
            };
            let shape = typed
                .output_fact(i)
                .ok()
                .and_then(|f| f.shape.as_concrete().map(<[usize]>::to_vec))
                .unwrap_or_default();
            let grid = Grid::of(&shape, anchors.len(), labels.len())
                .map_err(|e| bad(format!("output {name:?}: {e}")))?;
            heads.push((Head { name, anchors }, grid));
        }
        if heads.is_empty() {
            return Err(bad("it has no outputs".into()));
        }
        let plan = typed
            .into_runnable()
            .map_err(|e| bad(format!("tract cannot run it: {e}")))?;
        Ok(Model {
            plan,
            input,
            heads,
            labels,
            path: path.to_owned(),
        })
    }

    /// The input's `[width, height]`.
    pub fn input(&self) -> [usize; 2] {
        self.input
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The labels' minimum scores in the model's class order (`None`: not wanted).
    pub fn thresholds(&self, wanted: &dyn Fn(&str) -> Option<f32>) -> Vec<Option<f32>> {
        self.labels.iter().map(|l| wanted(l)).collect()
    }

    /// Runs the model on a packed RGB picture: the boxes of the wanted classes, in
    /// fractions of the picture, duplicates removed, best first.
    pub fn detect(
        &self,
        picture: &Picture<'_>,
        thresholds: &[Option<f32>],
        tensor: &mut Vec<f32>,
    ) -> Result<Vec<Detection>, DetectError> {
        let [w, h] = self.input;
        tensor.resize(3 * w * h, 0.0);
        let lb = Letterbox::new(picture.width, picture.height, self.input);
        if !lb.fill(
            picture.rgb,
            picture.width,
            picture.height,
            picture.stride,
            tensor,
        ) {
            return Err(DetectError::BadFrame);
        }
        let input = Tensor::from_shape(&[1, 3, h, w], tensor)
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let mut candidates = Vec::new();
        for ((head, grid), out) in self.heads.iter().zip(outputs.iter()) {
            let data = out
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec))
                .map_err(|e| DetectError::Inference(e.to_string()))?;
            candidates.extend(yolo::decode(
                &data,
                *grid,
                head,
                [w as f32, h as f32],
                thresholds,
            ));
        }
        Ok(yolo::suppress(candidates, NMS_IOU)
            .into_iter()
            .map(|c| Detection {
                label: self.labels.get(c.class).cloned().unwrap_or_default(),
                score: c.score,
                rect: lb.to_picture(c.rect),
            })
            .collect())
    }
}

/// A packed RGB picture (`stride` bytes a row).
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    pub rgb: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_read_from_the_metadata() {
        let a = parse_anchors("stride32:81,82,135,169;stride16:10,14").unwrap();
        assert_eq!(a[0].0, "stride32");
        assert_eq!(a[0].1, vec![[81.0, 82.0], [135.0, 169.0]]);
        assert_eq!(a[1].1, vec![[10.0, 14.0]]);
        assert!(parse_anchors("stride32:81,82,135").is_err());
        assert!(parse_anchors("81,82").is_err());
        assert!(parse_anchors("s:a,b").is_err());
        assert_eq!(COCO_LABELS.split(',').count(), 80);
    }

    #[test]
    fn a_file_that_is_not_a_model_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.onnx");
        std::fs::write(&path, b"not a model at all").unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("broken.onnx") && e.contains("ONNX"), "{e}");
        let e = Model::load(&dir.path().join("missing.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
