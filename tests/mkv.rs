//! The KVS MKV writer on real encoded video: a header and three one-GOP fragments from the
//! test pattern must read cleanly in `mkvinfo` (mkvtoolnix) and decode frame for frame
//! with GStreamer's `matroskademux ! h264parse ! avdec_h264`.

mod support;

use std::process::Command;
use std::time::Duration;

use edgecam::capture::template;
use edgecam::kvs::mkv::{self, Frame, TrackInfo};
use edgecam::media::EncodedFrame;
use gstreamer as gst;
use gstreamer::prelude::*;
use support::{small_camera, Rig};

/// Three GOPs of captured frames, starting at a keyframe.
async fn three_gops() -> Vec<Vec<EncodedFrame>> {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("mkv-test", 256);
    let mut gops: Vec<Vec<EncodedFrame>> = Vec::new();
    while gops.len() < 4 {
        let f = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("frames flow")
            .unwrap();
        if f.keyframe {
            gops.push(Vec::new());
        }
        if let Some(g) = gops.last_mut() {
            g.push(f);
        }
    }
    rig.stop().await;
    gops.truncate(3);
    gops
}

fn ms(f: &EncodedFrame) -> u64 {
    f.captured_at.timestamp_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_read_in_mkvinfo_and_decode_in_gstreamer() {
    let gops = three_gops().await;
    let track = TrackInfo::from_keyframe(&gops[0][0].data).unwrap();
    let mut body = mkv::header(&track, [0x5A; 16], 42);
    let mut written = 0;
    for (i, gop) in gops.iter().enumerate() {
        let frames: Vec<Frame<'_>> = gop
            .iter()
            .map(|f| Frame {
                annex_b: &f.data,
                time_ms: ms(f),
                keyframe: f.keyframe,
            })
            .collect();
        written += frames.len();
        let id = format!("event-{i}");
        body.extend(mkv::fragment(&frames, &[("EVENT_ID", &id)]).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fragments.mkv");
    std::fs::write(&path, &body).unwrap();

    // -v: read every cluster (plain mkvinfo stops after the first).
    let info = Command::new("mkvinfo")
        .arg("-v")
        .arg(&path)
        .output()
        .expect("mkvinfo is installed by make test (mkvtoolnix)");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "mkvinfo failed: {text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
    assert!(text.contains("V_MPEG4/ISO/AVC"), "{text}");
    let lines = |l: &str| text.lines().filter(|x| x.trim() == l).count();
    assert_eq!(lines("|+ Cluster"), 3, "{text}");
    assert_eq!(lines("|+ Tags"), 3, "{text}");
    assert_eq!(text.matches("+ Simple block:").count(), written, "{text}");

    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! matroskademux ! h264parse ! avdec_h264 ! appsink name=out sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let out = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut decoded = 0;
    while out.pull_sample().is_ok() {
        decoded += 1;
    }
    let error = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "GStreamer: {error:?}");
    assert_eq!(decoded, written, "every frame written decodes");
}
