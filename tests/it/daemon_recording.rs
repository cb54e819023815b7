//! The daemon as a user runs it, recording: `edgecam trigger` and the clips CLI, bad
//! commands refused while recording continues, and a `kill -9` mid-event recovered at
//! the next start.

use crate::support;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::daemon::Daemon;
use crate::support::http_get;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Motion off so only our commands make events; short timings so tests are quick.
const RECORDING: &str =
    "[events]\npre_roll_s = 1\npost_roll_s = 1\nmin_gap_s = 0\n[motion]\nenabled = false\n";

fn edgecam(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap()
}

fn clips(d: &Daemon) -> Vec<Value> {
    let (status, _, body) = http_get(d.addr, "/api/clips").unwrap();
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Waits until some clip has `status`.
fn wait_for_clip(d: &Daemon, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(c) = clips(d).into_iter().find(|c| c["status"] == status) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} clip within 20 s: {:?}",
            clips(d)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn frames_captured(d: &Daemon) -> f64 {
    let (_, _, body) = http_get(d.addr, "/metrics").unwrap();
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("edgecam_frames_captured_total ")
                .and_then(|v| v.parse().ok())
        })
        .unwrap()
}

#[test]
fn bad_commands_get_400_and_recording_goes_on() {
    let d = Daemon::start_with(RECORDING);
    let (status, reply) = d.command(r#"{"command":"record","duration_s":30}"#);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["result"]["recording"], true);
    for (body, says) in [
        ("{oops", "malformed JSON"),
        (r#"{"command":"dance"}"#, "unknown command \"dance\""),
        (
            r#"{"command":"record","duration_s":-3}"#,
            "duration_s must be more than 0",
        ),
        (r#"{"command":"detect","enabled":"maybe"}"#, "invalid type"),
    ] {
        let (status, reply) = d.command(body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["ok"], false);
        assert!(
            reply["error"].as_str().unwrap().contains(says),
            "{body}: {reply}"
        );
    }
    let before = frames_captured(&d);
    std::thread::sleep(Duration::from_millis(500));
    assert!(frames_captured(&d) > before, "capture goes on");
    let (_, status) = d.command(r#"{"command":"status"}"#);
    assert_eq!(
        status["result"]["recording"], true,
        "the recording goes on: {status}"
    );
    assert_eq!(http_get(d.addr, "/healthz").unwrap().0, 200);
}

#[test]
fn trigger_cli_records_a_clip_the_clips_cli_lists_and_exports() {
    let d = Daemon::start_with(RECORDING);
    std::thread::sleep(Duration::from_secs(2)); // some pre-roll
    let out = edgecam(&d, &["trigger", "--duration", "1", "--label", "doorbell"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true);

    let clip = wait_for_clip(&d, "complete");
    assert_eq!(clip["label"], "doorbell");
    assert_eq!(clip["trigger"], "cli");
    let id = clip["id"].as_str().unwrap();

    let list = edgecam(&d, &["clips", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains(id) && text.contains("doorbell") && text.contains("complete"),
        "{text}"
    );

    let (status, head, mp4) = http_get(d.addr, &format!("/api/clips/{id}.mp4")).unwrap();
    assert_eq!(status, 200, "{head}");
    assert_eq!(&mp4[4..8], b"ftyp");
    let (status, _, jpeg) = http_get(d.addr, &format!("/api/clips/{id}.jpg")).unwrap();
    assert_eq!((status, &jpeg[..2]), (200, &[0xff, 0xd8][..]), "thumbnail");
    assert_eq!(
        http_get(d.addr, "/api/clips/../../etc/passwd").unwrap().0,
        404
    );
    assert_eq!(http_get(d.addr, "/api/clips/nope.mp4").unwrap().0, 404);

    let out_path = d.dir.path().join("exported.mp4");
    let export = edgecam(&d, &["clips", "export", id, out_path.to_str().unwrap()]);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), mp4);
}

#[test]
fn trigger_without_a_daemon_says_so() {
    let d = Daemon::start_with(RECORDING);
    d.signal("-TERM");
    let mut d = d;
    let _ = d.child.wait();
    let out = edgecam(&d, &["trigger"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running?"));
}

#[test]
fn kill_9_mid_event_loses_at_most_half_a_second() {
    let mut d = Daemon::start_with(RECORDING);
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = d.command(r#"{"command":"record","duration_s":60}"#);
    assert_eq!(status, 200);
    let recording = wait_for_clip(&d, "recording");
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = Utc::now();
    d.signal("-KILL");
    let _ = d.child.wait();
    let part = d.data().join(recording["path"].as_str().unwrap());
    assert!(part.to_string_lossy().ends_with(".mp4.part"));
    assert!(part.exists(), "the torn clip is still a .part file");

    d.restart();
    let id = recording["id"].as_str().unwrap();
    let (_, _, body) = http_get(d.addr, &format!("/api/clips/{id}")).unwrap();
    let clip: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(clip["status"], "recovered", "{clip}");
    assert!(!part.exists());
    let path = d.data().join(clip["path"].as_str().unwrap());
    let decoded = support::ffprobe_frames(&path) as i64;
    assert_eq!(
        decoded,
        clip["frame_count"].as_i64().unwrap(),
        "every recovered frame decodes"
    );

    let end: DateTime<Utc> = clip["end_at"].as_str().unwrap().parse().unwrap();
    let lost = (killed_at - end).num_milliseconds();
    eprintln!("kill -9: recovered clip ends {lost} ms before the kill ({decoded} frames)");
    assert!(lost <= 500, "lost {lost} ms of video");
}
