//! Audio capture on real GStreamer: the test pattern's audio part gives Opus and AAC
//! frames timed like the video, and a microphone that fails is rebuilt on its own while
//! video goes on.

use std::time::{Duration, Instant};

use chrono::Utc;
use edgecam::capture::{self, template, AudioOutputs, CaptureState, PipelineSpec, TaskConfig};
use edgecam::config::{Audio, Camera};
use edgecam::media::{AudioCodec, AudioFrame};
use edgecam::metrics::AudioCounters;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::Daemon;
use crate::support::rtsp::RtspCamera;
use crate::support::{metric, poll_until, small_camera, Rig};

fn task_cfg() -> TaskConfig {
    TaskConfig {
        fps: 15,
        stall_timeout: Duration::from_secs(10),
    }
}

async fn take(sub: &mut edgecam::media::Subscription<AudioFrame>, n: usize) -> Vec<AudioFrame> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("audio frames arrive")
            .expect("the bus stays open");
        out.push(f);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_pattern_sounds_in_opus_and_aac_timed_like_video() {
    let camera = small_camera("test-pattern", 1.0);
    let spec = template::load_audio(&camera, &Audio::default())
        .unwrap()
        .expect("the test pattern has an audio part");
    capture::audio::check(&spec).unwrap();
    let out = AudioOutputs::new(AudioCounters::default());
    let (mut opus, mut aac) = (out.opus.subscribe("t", 100), out.aac.subscribe("t", 100));
    let cancel = CancellationToken::new();
    let (_state, task) = capture::spawn_audio(spec, task_cfg(), out.clone(), cancel.clone());

    let opus_frames = take(&mut opus, 50).await; // one second
    let aac_frames = take(&mut aac, 47).await;
    cancel.cancel();
    timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();

    let f = &opus_frames[0].format;
    assert_eq!((f.codec, f.rate, f.channels), (AudioCodec::Opus, 48_000, 1));
    let f = &aac_frames[0].format;
    assert_eq!((f.codec, f.rate, f.channels), (AudioCodec::Aac, 48_000, 1));
    assert_eq!(
        f.config[..2],
        [0x11, 0x88],
        "AudioSpecificConfig: AAC-LC, 48 kHz, one channel"
    );
    for (frames, step_us) in [(&opus_frames, 20_000), (&aac_frames, 21_333)] {
        // The first frame is shifted by the encoder's look-ahead (Opus: 6.5 ms).
        for w in frames[1..].windows(2) {
            let d = w[1].pts - w[0].pts;
            assert!(
                (d.as_micros() as i64 - step_us).abs() <= 1_000,
                "contiguous frames, {d:?} apart"
            );
            let wall = (w[1].captured_at - w[0].captured_at)
                .num_microseconds()
                .unwrap();
            assert!((wall - step_us).abs() <= 1_000, "wall-clock step {wall} µs");
        }
        let age = Utc::now() - frames.last().unwrap().captured_at;
        assert!(
            age < chrono::Duration::milliseconds(500),
            "captured_at is the capture time: {age}"
        );
    }
    assert!(out.counters.aac_frames.get() >= 47);
    assert_eq!(out.counters.pipeline_restarts.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_microphone_is_rebuilt_while_video_goes_on() {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut video = rig.frames.subscribe("t", 300);
    // A microphone that gives half a second of sound, then fails; rebuilt with backoff.
    let spec = PipelineSpec {
        path: "mic.pipeline".into(),
        text: "audiotestsrc is-live=true num-buffers=25 samplesperbuffer=960 \
               ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! voaacenc \
               ! aacparse ! audio/mpeg,stream-format=raw ! appsink name=aac sync=false"
            .into(),
    };
    let out = AudioOutputs::new(AudioCounters::default());
    let cancel = CancellationToken::new();
    let (mut state, task) = capture::spawn_audio(spec, task_cfg(), out.clone(), cancel.clone());

    let started = Instant::now();
    let mut frames = 0;
    while started.elapsed() < Duration::from_secs(4) {
        if timeout(Duration::from_secs(1), video.recv()).await.is_ok() {
            frames += 1;
        }
    }
    assert!(
        out.counters.pipeline_restarts.get() >= 2,
        "the audio pipeline was rebuilt: {}",
        out.counters.pipeline_restarts.get()
    );
    assert!(
        frames >= 45,
        "video kept flowing at 15 fps: {frames} frames in 4 s"
    );
    assert_eq!(
        rig.counters.pipeline_restarts.get(),
        0,
        "video never restarted"
    );
    // `wait_for`'s answer borrows the state: keep only whether it came.
    let restarting = timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, CaptureState::Restarting { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    assert!(restarting, "the audio state says it is being rebuilt");
    cancel.cancel();
    timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    rig.stop().await;
}

#[test]
fn audio_parts_are_optional_and_follow_the_config() {
    let camera = small_camera("test-pattern", 1.0);
    let off = Audio {
        enabled: false,
        ..Audio::default()
    };
    assert_eq!(template::load_audio(&camera, &off).unwrap(), None);
    // A file without an audio part: no sound, video as before.
    let dir = tempfile::tempdir().unwrap();
    let video_only = template::load(&camera).unwrap().text;
    std::fs::write(dir.path().join("silent.pipeline"), &video_only).unwrap();
    let silent = Camera {
        pipeline: "silent".into(),
        pipeline_dir: Some(dir.path().to_owned()),
        ..camera.clone()
    };
    assert_eq!(
        template::load_audio(&silent, &Audio::default()).unwrap(),
        None
    );
    assert!(
        template::load_audio(&small_camera("rtsp", 1.0), &Audio::default())
            .unwrap()
            .is_some(),
        "an IP camera's sound comes over RTSP"
    );
    let video = template::load(&camera).unwrap();
    assert!(
        !video.text.contains("audiotestsrc"),
        "the video part stops at @audio"
    );
    let mic = Audio {
        sample_rate: 16_000,
        channels: 2,
        ..Audio::default()
    };
    let v4l2 = template::load_audio(&small_camera("v4l2", 1.0), &mic)
        .unwrap()
        .unwrap();
    assert!(v4l2.text.contains("alsasrc"), "{}", v4l2.text);
    assert!(v4l2.text.contains("rate=16000,channels=2"), "{}", v4l2.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_say_whether_sound_is_on_and_flowing() {
    let d = Daemon::start_with("");
    let flowing = poll_until(Duration::from_secs(10), || {
        d.command(r#"{"command":"status"}"#).1["result"]["audio"]
            == serde_json::json!({"enabled": true, "flowing": true})
    })
    .await;
    assert!(flowing, "{}", d.command(r#"{"command":"status"}"#).1);
    assert!(metric(d.addr, r#"edgecam_audio_frames_total{codec="aac"}"#) > 0.0);
    // Opus is for viewers: none listens here, so none is made.
    assert_eq!(
        metric(d.addr, r#"edgecam_audio_frames_total{codec="opus"}"#),
        0.0
    );
    drop(d);

    let quiet = Daemon::start_with("[audio]\nenabled = false\n");
    let (_, reply) = quiet.command(r#"{"command":"status"}"#);
    assert_eq!(
        reply["result"]["audio"],
        serde_json::json!({"enabled": false, "flowing": false})
    );
}

/// The AAC and Opus frames an RTSP camera's sound gives through the `rtsp` file.
async fn rtsp_sound(sound: &str) -> (Vec<AudioFrame>, Vec<AudioFrame>) {
    let server = RtspCamera::start(sound);
    let camera = Camera {
        url: server.url.clone(),
        ..small_camera("rtsp", 1.0)
    };
    let spec = template::load_audio(&camera, &Audio::default())
        .unwrap()
        .unwrap();
    capture::audio::check(&spec).unwrap();
    let out = AudioOutputs::new(AudioCounters::default());
    let (mut opus, mut aac) = (out.opus.subscribe("t", 200), out.aac.subscribe("t", 200));
    let cancel = CancellationToken::new();
    let (_state, task) = capture::spawn_audio(spec, task_cfg(), out.clone(), cancel.clone());
    let got = (take(&mut aac, 20).await, take(&mut opus, 20).await);
    cancel.cancel();
    let _ = timeout(Duration::from_secs(5), task).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_s_aac_passes_through_and_its_g711_is_encoded_once_per_codec() {
    // AAC at 44.1 kHz stereo, what no edgecam encoder makes: passed through as it came.
    let (aac, opus) = rtsp_sound("aac").await;
    let f = &aac[0].format;
    assert_eq!((f.codec, f.rate, f.channels), (AudioCodec::Aac, 44_100, 2));
    assert_eq!(
        f.config[..2],
        [0x12, 0x10],
        "the camera's own AudioSpecificConfig"
    );
    assert_eq!(opus[0].format.rate, 48_000, "decoded for Opus only");

    // G.711 A-law at 8 kHz: decoded, then AAC and Opus encoded.
    let (aac, opus) = rtsp_sound("pcma").await;
    let f = &aac[0].format;
    assert_eq!((f.codec, f.rate, f.channels), (AudioCodec::Aac, 8_000, 1));
    assert_eq!(f.config[..2], [0x15, 0x88], "AAC-LC, 8 kHz, mono");
    assert_eq!(opus[0].format.codec, AudioCodec::Opus);
}
