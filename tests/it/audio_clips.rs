//! Clips with sound, read by independent tools: `ffprobe` sees an H.264 and an AAC
//! stream that start together, `ffmpeg` decodes both without a word, a `kill -9` keeps
//! both tracks, and a microphone that stops mid-clip does not stop the picture.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgecam::capture::{self, template, AudioOutputs, PipelineSpec, TaskConfig};
use edgecam::index::{ClipStatus, Index, INDEX_FILE};
use edgecam::media::fmp4;
use edgecam::metrics::AudioCounters;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::Daemon;
use crate::support::{decodes_silently, http_get, small_camera, spawn_recorder, Rig};

/// Motion off so only our commands make events.
const RECORDING: &str =
    "[events]\npre_roll_s = 1\npost_roll_s = 1\nmin_gap_s = 0\n[motion]\nenabled = false\n";
/// The test daemon's keyframe interval (support::daemon).
const GOP_S: f64 = 1.0;

/// `(codec, start s, end s)` of each stream, from ffprobe.
fn streams(path: &Path) -> Vec<(String, f64, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_streams"])
        .arg(path)
        .output()
        .expect("ffprobe is installed by make test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |s: &Value, k: &str| s[k].as_str().and_then(|t| t.parse::<f64>().ok());
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let start = num(s, "start_time").unwrap_or(0.0);
            let duration = num(s, "duration").unwrap_or(0.0);
            (
                s["codec_name"].as_str().unwrap_or("").to_owned(),
                start,
                start + duration,
            )
        })
        .collect()
}

fn clip(d: &Daemon, id: &str) -> Value {
    let (_, _, body) = http_get(d.addr, &format!("/api/clips/{id}")).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Waits until some clip has `status`.
fn wait_for_clip(d: &Daemon, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = http_get(d.addr, "/api/clips").unwrap();
        let all: Vec<Value> = serde_json::from_slice(&body).unwrap();
        if let Some(c) = all.into_iter().find(|c| c["status"] == status) {
            return c;
        }
        assert!(Instant::now() < deadline, "no {status} clip within 20 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_clip_has_sound_and_picture_that_start_together() {
    let d = Daemon::start_with(RECORDING);
    std::thread::sleep(Duration::from_secs(2)); // pre-roll with sound
    let (status, _) = d.command(r#"{"command":"record","duration_s":3}"#);
    assert_eq!(status, 200);
    let row = wait_for_clip(&d, "complete");
    let path = d.data().join(row["path"].as_str().unwrap());

    let found = streams(&path);
    let codecs: Vec<&str> = found.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{found:?}");
    let (video, audio) = (&found[0], &found[1]);
    let start_gap = (audio.1 - video.1).abs();
    let end_gap = (audio.2 - video.2).abs();
    eprintln!("clip sound starts {start_gap:.3} s from the picture, ends {end_gap:.3} s apart");
    assert!(
        start_gap <= 0.040,
        "sound and picture start {start_gap} s apart"
    );
    assert!(end_gap <= GOP_S, "sound and picture end {end_gap} s apart");
    assert!(video.2 - video.1 >= 3.0, "pre-roll and 3 s: {video:?}");
    decodes_silently(&path);

    let scan = fmp4::scan(&path).unwrap();
    let sound = scan.audio.as_ref().expect("an AAC track");
    eprintln!(
        "in the file: picture from {:?}, sound from {:?}",
        scan.start(),
        sound.start()
    );
    assert_eq!((sound.rate, sound.channels), (48_000, 1));
    assert_eq!(sound.config[..2], [0x11, 0x88], "AAC-LC, 48 kHz, mono");

    let shown = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["clips", "show", row["id"].as_str().unwrap(), "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("video: H.264 320x240"), "{text}");
    assert!(text.contains("audio: AAC 48000 Hz, 1 channel(s)"), "{text}");
}

#[test]
fn a_camera_without_sound_records_a_picture_only_clip() {
    let d = Daemon::start_with(&format!("{RECORDING}[audio]\nenabled = false\n"));
    std::thread::sleep(Duration::from_secs(1));
    d.command(r#"{"command":"record","duration_s":1}"#);
    let row = wait_for_clip(&d, "complete");
    let path = d.data().join(row["path"].as_str().unwrap());
    let codecs: Vec<String> = streams(&path).into_iter().map(|s| s.0).collect();
    assert_eq!(codecs, ["h264"]);
    decodes_silently(&path);
}

#[test]
fn kill_9_mid_clip_keeps_both_tracks() {
    let mut d = Daemon::start_with(RECORDING);
    std::thread::sleep(Duration::from_secs(2));
    d.command(r#"{"command":"record","duration_s":60}"#);
    let recording = wait_for_clip(&d, "recording");
    std::thread::sleep(Duration::from_secs(3));
    d.signal("-KILL");
    let _ = d.child.wait();

    d.restart();
    let row = clip(&d, recording["id"].as_str().unwrap());
    assert_eq!(row["status"], "recovered", "{row}");
    let path = d.data().join(row["path"].as_str().unwrap());
    let found = streams(&path);
    let codecs: Vec<&str> = found.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{found:?}");
    assert!(
        (found[0].1 - found[1].1).abs() <= 0.040,
        "still starting together: {found:?}"
    );
    assert!(
        found[1].2 - found[1].1 >= 3.0,
        "the sound survived: {found:?}"
    );
    decodes_silently(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microphone_that_stops_mid_clip_leaves_the_picture_recording() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    // A microphone that is unplugged (its pipeline stopped) two seconds into the clip.
    let mic = PipelineSpec {
        path: "mic.pipeline".into(),
        text: "audiotestsrc is-live=true samplesperbuffer=960 \
               ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! voaacenc \
               ! aacparse ! audio/mpeg,stream-format=raw ! appsink name=aac sync=false"
            .into(),
    };
    let sound = AudioOutputs::new(AudioCounters::default());
    let stop = CancellationToken::new();
    let unplug = CancellationToken::new();
    let task_cfg = TaskConfig {
        fps: 15,
        stall_timeout: Duration::from_secs(30),
    };
    let (_state, audio_task) = capture::spawn_audio(mic, task_cfg, sound.clone(), unplug.clone());
    let rolls = (Duration::from_millis(500), Duration::ZERO);
    let (handle, task) = spawn_recorder(
        &rig,
        &index,
        dir.path(),
        &stop,
        rolls,
        Some(sound.aac.clone()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle
        .execute(
            edgecam::events::TriggerKind::Http,
            edgecam::recorder::RecorderCommand::Record(edgecam::commands::Record::Start {
                duration_s: Some(5.0),
                label: String::new(),
            }),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    unplug.cancel();
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let done = index.clips_with_status(ClipStatus::Complete).await.unwrap();
        if let Some(c) = done.into_iter().next() {
            break c;
        }
        assert!(Instant::now() < deadline, "the clip never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), audio_task).await;
    rig.stop().await;

    let path = dir.path().join(&row.path);
    let scan = fmp4::scan(&path).unwrap();
    let video = scan.duration().as_secs_f64();
    let audio = scan
        .audio
        .as_ref()
        .map_or(0.0, |a| a.duration().as_secs_f64());
    eprintln!("picture {video:.2} s, sound {audio:.2} s");
    assert!(
        video >= 5.0,
        "the picture was recorded to the end: {video} s"
    );
    assert!(
        audio > 0.5 && audio < video - 1.0,
        "the sound ended when the microphone stopped: {audio} s of {video} s"
    );
    decodes_silently(&path);
}
