//! The first thing a new user does: `make run` on the shipped defaults
//! (`config/dev.toml`: the test pattern at 1280×720, motion and the object detector on).
//! The moving ball opens no event; within a minute the person walking across the scene
//! does, and once she is gone it ends with its clip and thumbnail there.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::{http_get, repo};

#[test]
fn make_run_on_the_defaults_records_an_event_that_starts_and_ends_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    // The checkout as `make run` sees it: config/dev.toml read from the current directory,
    // pipelines/ beside it, data under ./var.
    std::os::unix::fs::symlink(repo().join("pipelines"), home.join("pipelines")).unwrap();
    std::os::unix::fs::symlink(repo().join("scene"), home.join("scene")).unwrap();
    // What `make run` links into the checkout.
    std::fs::create_dir_all(home.join("models")).unwrap();
    let model = crate::support::photos::model();
    std::os::unix::fs::symlink(&model, home.join("models/yolov3-tiny-320.onnx")).unwrap();
    let dev = std::fs::read_to_string(repo().join("config/dev.toml")).unwrap();
    let in_home = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "cd \"$0\" && exec \"$@\"".to_owned(),
        home.display().to_string(),
    ];
    let started = Instant::now();
    let d = Daemon::start_in(dir, in_home, &[], |test_config| {
        // Only what a test must change: a free port, loopback-only WebRTC.
        let listen = test_config
            .lines()
            .find(|l| l.starts_with("listen = "))
            .unwrap()
            .to_owned();
        format!("{dev}\n[web]\n{listen}\n[live]\nice_addresses = [\"127.0.0.1\"]\n")
    });
    let mut started_event = None;
    let finished = loop {
        assert!(
            started_event.is_some() || started.elapsed() < Duration::from_secs(60),
            "no event started within 60 s"
        );
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the event started at {started_event:?} did not end with its clip within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
        let (_, status) = d.command(r#"{"command":"status"}"#);
        let recording = status["result"]["recording"].as_bool().unwrap_or(false);
        if recording && started_event.is_none() {
            started_event = Some(started.elapsed());
        }
        let (_, _, body) = http_get(d.addr, "/api/clips").unwrap();
        let clips: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
        let done = clips
            .into_iter()
            .find(|c| c["status"] == "complete" && c["trigger"] == "object");
        if let (Some(clip), false) = (done, recording) {
            break clip;
        }
    };
    eprintln!(
        "event started after {started_event:?}, ended with its clip after {:?}: {finished}",
        started.elapsed()
    );
    assert!(
        started_event.is_some(),
        "the recorder said it was recording"
    );
    let clip = home.join("var").join(finished["path"].as_str().unwrap());
    assert!(clip.is_file(), "{} is in var/", clip.display());
    assert_eq!(finished["label"], "person", "{finished}");
    let thumbnail = finished["thumbnail"].as_str().expect("a thumbnail");
    assert!(home.join("var").join(thumbnail).is_file());
    assert!(
        finished["duration_ms"].as_i64().unwrap() > 10_000,
        "{finished}"
    );
}
