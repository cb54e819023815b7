//! The capture pipeline on real GStreamer with `videotestsrc`: the encoded-frame contract,
//! forced keyframes, slow subscribers, refused pipeline files, hardware pipeline files on
//! test sources, and rebuilding after the source goes away.

use crate::support;
use std::time::{Duration, Instant};

use edgecam::capture::{self, template, CaptureError, PipelineSpec};
use edgecam::config::Camera;
use edgecam::media::h264;
use edgecam::media::{EncodedFrame, Subscription};
use tokio::time::timeout;

use crate::support::{small_camera, Rig};

async fn next(sub: &mut Subscription<EncodedFrame>) -> EncodedFrame {
    timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("a frame within 10 s")
        .expect("bus open")
}

async fn collect(sub: &mut Subscription<EncodedFrame>, n: usize) -> Vec<EncodedFrame> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(sub).await);
    }
    out
}

fn keyframe_indices(frames: &[EncodedFrame]) -> Vec<usize> {
    frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect()
}

/// Checks the pipeline contract (README.md, "Pipelines") on a run of frames: starts on a
/// keyframe, PTS and wall-clock increase, every keyframe is an IDR carrying SPS+PPS of the
/// expected size.
fn assert_contract(frames: &[EncodedFrame], width: u32, height: u32) {
    assert!(frames[0].keyframe, "a new subscriber starts on a keyframe");
    for pair in frames.windows(2) {
        assert!(
            pair[1].pts > pair[0].pts,
            "PTS must increase: {:?} then {:?}",
            pair[0].pts,
            pair[1].pts
        );
        assert!(
            pair[1].captured_at >= pair[0].captured_at,
            "wall-clock must not go back"
        );
    }
    for f in frames {
        let s = h264::summarize(&f.data);
        assert!(s.slices > 0, "every access unit carries a picture");
        assert_eq!(s.has_idr, f.keyframe, "keyframe flag matches the NAL types");
        if f.keyframe {
            assert!(s.has_sps && s.has_pps, "SPS and PPS in every keyframe AU");
            let (sps, _) = h264::parameter_sets(&f.data).unwrap();
            let sps = h264::parse_sps(sps).unwrap();
            // Constrained baseline has no B-slices, so this also proves "no B-frames".
            assert!(
                sps.is_constrained_baseline(),
                "profile {}",
                sps.profile_level_id()
            );
            assert_eq!((sps.width, sps.height), (width, height));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_pattern_meets_the_encoded_frame_contract() {
    let camera = small_camera("test-pattern", 1.0); // 15 fps → keyframe every 15 frames
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    let mut analysis = rig.analysis.subscribe("test", 16);
    let frames = collect(&mut sub, 61).await;

    assert_contract(&frames, 320, 240);
    let keys = keyframe_indices(&frames);
    assert!(keys.len() >= 4, "keyframes at {keys:?}");
    for pair in keys.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (14..=16).contains(&gap),
            "keyframe interval {gap} frames, expected 15 ±1 ({keys:?})"
        );
    }
    assert_eq!(
        support::decode_count(&frames),
        frames.len(),
        "every frame decodes"
    );

    let a = timeout(Duration::from_secs(5), analysis.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.width, a.height), (160, 90));
    assert!(a.data.len() >= (a.stride * a.height) as usize);
    assert!(rig.counters.frames_captured.get() >= 61);
    assert!(rig.counters.keyframes.get() >= 4);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_keyframe_arrives_within_two_frames() {
    let camera = small_camera("test-pattern", 10.0); // natural keyframes only every 150 frames
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    collect(&mut sub, 5).await;
    for attempt in 0..3 {
        rig.handle.force_keyframe();
        let mut waited = 0;
        loop {
            waited += 1;
            if next(&mut sub).await.keyframe {
                break;
            }
            assert!(
                waited < 10,
                "attempt {attempt}: no keyframe after {waited} frames"
            );
        }
        assert!(
            waited <= 2,
            "attempt {attempt}: forced keyframe came {waited} frames later"
        );
        collect(&mut sub, 5).await;
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_neither_delays_others_nor_misses_its_resync() {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut steady = rig.frames.subscribe("steady", 8);
    const STALLED_QUEUE: usize = 8;
    let mut stalled = rig.frames.subscribe("stalled", STALLED_QUEUE);
    next(&mut steady).await;

    // `stalled` reads nothing for 3 s while `steady` keeps reading.
    let start = Instant::now();
    let mut last = Instant::now();
    let mut worst_gap = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(3) {
        next(&mut steady).await;
        let now = Instant::now();
        worst_gap = worst_gap.max(now - last);
        last = now;
    }
    // 15 fps is one frame per 67 ms; being held up by `stalled` would mean seconds.
    assert!(
        worst_gap < Duration::from_millis(700),
        "steady subscriber waited {worst_gap:?} between frames"
    );
    assert!(
        stalled.dropped() > 0,
        "the stalled subscriber lost its own frames"
    );
    assert_eq!(steady.dropped(), 0);

    // It finds its queue as it left it, then resumes exactly on a keyframe.
    let queued = collect(&mut stalled, STALLED_QUEUE).await;
    assert!(queued[0].keyframe);
    let resumed = next(&mut stalled).await;
    assert!(
        resumed.keyframe,
        "after losing frames a subscriber resumes on a keyframe"
    );
    assert!(resumed.pts > queued.last().unwrap().pts);
    rig.stop().await;
}

#[test]
fn pipeline_without_encoded_is_refused() {
    let spec = PipelineSpec {
        path: "broken.pipeline".into(),
        text: "videotestsrc ! x264enc ! appsink name=frames".into(),
    };
    let err = capture::check(&spec).unwrap_err();
    assert!(matches!(err, CaptureError::MissingEncoded { .. }), "{err}");
    assert!(
        err.to_string().contains("appsink named \"encoded\""),
        "{err}"
    );
    assert!(!err.is_retryable());

    let bad = PipelineSpec {
        path: "typo.pipeline".into(),
        text: "videotestsrc ! no-such-element ! appsink name=encoded".into(),
    };
    let err = capture::check(&bad).unwrap_err();
    assert!(matches!(err, CaptureError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("typo.pipeline"), "{err}");
}

/// Hardware-only elements and the test elements that stand in for them, producing the
/// same kind of output.
fn test_sources(camera: &Camera) -> Vec<(&'static str, String)> {
    let raw = format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width={},height={},framerate={}/1",
        camera.width, camera.height, camera.fps
    );
    vec![
        ("v4l2src", raw.clone()),
        // The pipeline file's own caps follow (two caps in a row do not parse).
        ("libcamerasrc", "videotestsrc is-live=true pattern=ball".to_string()),
        (
            "rtspsrc",
            format!(
                "{raw} ! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={} ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1",
                camera.keyframe_interval_frames()
            ),
        ),
        (
            "v4l2h264enc",
            format!("x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={}", camera.keyframe_interval_frames()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_pipeline_files_run_on_test_sources() {
    for name in ["v4l2", "rtsp", "raspberry-pi"] {
        let camera = small_camera(name, 1.0);
        let spec = template::load(&camera).unwrap();
        let swaps = test_sources(&camera);
        let swaps: Vec<(&str, &str)> = swaps.iter().map(|(f, r)| (*f, r.as_str())).collect();
        let text = template::swap_elements(&spec.text, &swaps);
        assert_ne!(text, spec.text, "{name}: nothing was swapped");
        let spec = PipelineSpec { text, ..spec };
        capture::check(&spec).unwrap_or_else(|e| panic!("{name}: {e}\n{}", spec.text));

        let rig = Rig::start(spec, &camera);
        let mut sub = rig.frames.subscribe("test", 64);
        let mut analysis = rig.analysis.subscribe("test", 4);
        let frames = collect(&mut sub, 20).await;
        assert_contract(&frames, 320, 240);
        let a = timeout(Duration::from_secs(10), analysis.recv()).await;
        assert!(matches!(a, Ok(Some(_))), "{name}: analysis frames flow");
        rig.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_is_rebuilt_when_the_source_goes_away() {
    let camera = small_camera("test-pattern", 1.0);
    let spec = template::load(&camera).unwrap();
    // The source ends after 20 frames, like a camera that is unplugged.
    let text = spec
        .text
        .replacen("is-live=true", "is-live=true num-buffers=20", 1);
    let rig = Rig::start(PipelineSpec { text, ..spec }, &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    let frames = collect(&mut sub, 50).await;

    let generations: Vec<u32> = frames.iter().map(|f| f.generation).collect();
    assert!(
        generations.last() > generations.first(),
        "the pipeline was rebuilt: {generations:?}"
    );
    assert!(rig.counters.pipeline_restarts.get() >= 1);
    for pair in frames.windows(2) {
        assert!(
            pair[1].pts > pair[0].pts,
            "PTS keeps increasing across rebuilds"
        );
        if pair[1].generation != pair[0].generation {
            assert!(pair[1].keyframe, "a rebuilt pipeline starts on a keyframe");
        }
    }
    assert!(matches!(
        *rig.handle.state().borrow(),
        capture::CaptureState::Playing { .. } | capture::CaptureState::Restarting { .. }
    ));
    rig.stop().await;
}

#[test]
fn shipped_pipelines_all_declare_the_contract_sinks() {
    for name in ["test-pattern", "v4l2", "rtsp", "raspberry-pi"] {
        let camera = small_camera(name, 2.0);
        let spec = template::load(&camera).unwrap();
        for sink in [
            "appsink name=encoded",
            "appsink name=analysis",
            "appsink name=snapshot",
        ] {
            assert!(spec.text.contains(sink), "{name} lacks {sink}");
        }
        if name != "rtsp" {
            assert!(
                spec.text.contains("name=encoder"),
                "{name} names its encoder"
            );
        }
        assert!(!spec.text.contains("${"), "{name}: unfilled placeholder");
    }
}
