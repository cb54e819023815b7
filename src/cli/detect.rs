//! `edgecam detect IMAGE`: what the object detector finds in a picture, with the
//! config's model, labels and scores (or every label), and how long an inference takes
//! on this machine: to choose labels and scores, and to size a camera's CPU.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use edgecam::config::Config;
use edgecam::detect::{Model, Picture};

/// `EX_CONFIG`: the model cannot be used.
const EXIT_CONFIG: u8 = 78;

/// A picture decoded to packed RGB.
struct Rgb {
    data: Vec<u8>,
    width: usize,
    height: usize,
    stride: usize,
}

/// Decodes any picture GStreamer reads (JPEG, PNG, …) to RGB.
fn decode(image: &Path) -> Result<Rgb, String> {
    gst::init().map_err(|e| e.to_string())?;
    let location = image.to_string_lossy().replace('"', "\\\"");
    let text = format!(
        "filesrc location=\"{location}\" ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! appsink name=out sync=false"
    );
    let pipeline = gst::parse::launch(&text)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("out")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| format!("{}: cannot be read as a picture", image.display()))?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let _ = pipeline.set_state(gst::State::Null);
    let sample = sample.ok_or(format!(
        "{}: not a picture GStreamer can decode",
        image.display()
    ))?;
    let caps = sample.caps().ok_or("no caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
    let map = sample
        .buffer()
        .ok_or("empty picture")?
        .map_readable()
        .map_err(|e| e.to_string())?;
    Ok(Rgb {
        data: map.as_slice().to_vec(),
        width: info.width() as usize,
        height: info.height() as usize,
        stride: info.stride()[0].max(0) as usize,
    })
}

/// Runs the detector `runs` times on `image` and prints what it found and how long it
/// took. `all_labels`: every label the model knows, at `detect.min_score`.
pub fn run(config: &Config, image: &Path, runs: u32, all_labels: bool) -> ExitCode {
    let model_path = &config.detect.model;
    let started = Instant::now();
    let model = match Model::load(model_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("edgecam: detect.model {}: {e}", model_path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let loaded = started.elapsed();
    let rgb = match decode(image) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("edgecam: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scores = config.detect.scores();
    let min = config.detect.min_score;
    let thresholds = model.thresholds(&|label| match all_labels {
        true => Some(min),
        false => scores.get(label).copied(),
    });
    let picture = Picture {
        rgb: &rgb.data,
        width: rgb.width,
        height: rgb.height,
        stride: rgb.stride,
    };
    let [w, h] = model.input();
    println!(
        "model {} ({w}×{h}), loaded in {} ms; picture {}×{}",
        model_path.display(),
        loaded.as_millis(),
        rgb.width,
        rgb.height
    );
    let mut tensor = Vec::new();
    let mut took: Vec<Duration> = Vec::new();
    let mut found = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        match model.detect(&picture, &thresholds, &mut tensor) {
            Ok(f) => found = f,
            Err(e) => {
                eprintln!("edgecam: detection failed: {e}");
                return ExitCode::FAILURE;
            }
        }
        took.push(t.elapsed());
    }
    if found.is_empty() {
        println!(
            "nothing found (labels {:?})",
            scores.keys().collect::<Vec<_>>()
        );
    }
    for d in &found {
        let r = d.rect;
        println!(
            "{:<12} {:.2}  box [{:.2}, {:.2}, {:.2}, {:.2}]",
            d.label, d.score, r.x0, r.y0, r.x1, r.y1
        );
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "inference: {} run(s), median {:.1} ms, slowest {:.1} ms",
        took.len(),
        ms(took[took.len() / 2]),
        ms(took[took.len() - 1])
    );
    ExitCode::SUCCESS
}
