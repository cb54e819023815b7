//! Talk-back against the running daemon: webrtc-rs viewers send a known tone and the
//! camera's speaker (a UDP sink in tests) plays it at that frequency; one viewer talks at
//! a time, the others are told who; a talker who vanishes or falls silent frees the floor.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::Daemon;
use crate::support::tone::{self, loudest_of, opus_packets, power_at, rms, Speaker, LOUD};
use crate::support::viewer::{Opts, Viewer};
use crate::support::{http_get, metric};

fn daemon(speaker: &Speaker) -> Daemon {
    Daemon::start_with(&format!(
        "[audio]\nspeaker = true\nspeaker_sink = \"{}\"\ntalk_silence_s = 3\n\
         [live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n",
        tone::speaker_sink(speaker.port)
    ))
}

async fn talker(d: &Daemon, id: &str) -> Viewer {
    let opts = Opts {
        talk: true,
        ..Opts::default()
    };
    let mut v = Viewer::connect_with(&Viewer::lan_url(d.addr, id), opts).await;
    v.expect_playing(id).await;
    v
}

/// Sends a `talk` command and returns its reply.
async fn talk(v: &mut Viewer, body: &str) -> Value {
    let before = v.seen.borrow().control.len();
    v.command(body).await;
    let seen = v
        .wait(Duration::from_secs(5), |s| s.control.len() > before)
        .await;
    seen.control
        .get(before)
        .cloned()
        .unwrap_or_else(|| panic!("no reply to {body}"))
}

fn talk_state(d: &Daemon) -> Value {
    let (_, _, body) = http_get(d.addr, "/api/live").unwrap();
    serde_json::from_slice::<Value>(&body).unwrap()["talk"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_voice_comes_out_of_the_speaker_one_talker_at_a_time() {
    let speaker = Speaker::listen();
    let d = daemon(&speaker);
    let mut dad = talker(&d, "dad-phone").await;
    let mut mum = talker(&d, "mum-phone").await;

    let granted = talk(
        &mut dad,
        r#"{"command":"talk","action":"start","name":"Dad"}"#,
    )
    .await;
    assert_eq!(granted["ok"], true, "{granted}");
    assert_eq!(granted["result"]["talking"], true);
    let refused = talk(&mut mum, r#"{"command":"talk","action":"start"}"#).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["result"]["holder"], "Dad");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("Dad is talking"));
    assert_eq!(talk_state(&d)["talker"], "Dad");

    // Both speak at once: only Dad's 880 Hz reaches the speaker, not Mum's 440 Hz.
    let (high, low) = (
        opus_packets("sine", 880.0, 2.0),
        opus_packets("sine", 440.0, 2.0),
    );
    let started = Instant::now();
    tokio::join!(dad.speak(&high), mum.speak(&low));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = speaker.samples_since(started);
    eprintln!(
        "speaker: {} samples, RMS {:.3}, 880 Hz {:.2e}, 440 Hz {:.2e}",
        heard.len(),
        rms(&heard),
        power_at(&heard, 880.0),
        power_at(&heard, 440.0)
    );
    assert!(
        heard.len() > tone::RATE as usize,
        "over a second of sound played"
    );
    assert!(rms(&heard) > LOUD, "the tone is loud: {}", rms(&heard));
    assert_eq!(loudest_of(&heard, &[440.0, 660.0, 880.0, 1320.0]), 880.0);
    assert!(
        power_at(&heard, 880.0) > 20.0 * power_at(&heard, 440.0),
        "Mum's audio is dropped"
    );

    // Dad stops; now Mum may talk and is heard.
    assert_eq!(
        talk(&mut dad, r#"{"command":"talk","action":"stop"}"#).await["ok"],
        true
    );
    let granted = talk(&mut mum, r#"{"command":"talk","action":"start"}"#).await;
    assert_eq!(granted["result"]["talking"], true, "{granted}");
    assert_eq!(
        talk_state(&d)["talker"],
        "mum-phone",
        "no name: the client id"
    );
    let started = Instant::now();
    mum.speak(&opus_packets("sine", 440.0, 1.0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = speaker.samples_since(started);
    assert_eq!(loudest_of(&heard, &[440.0, 660.0, 880.0, 1320.0]), 440.0);

    assert_eq!(metric(d.addr, "edgecam_talks_total"), 2.0);
    assert_eq!(metric(d.addr, "edgecam_talk_refused_total"), 1.0);
    assert!(metric(d.addr, "edgecam_talk_packets_total") > 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talker_who_vanishes_or_falls_silent_frees_the_floor() {
    let speaker = Speaker::listen();
    let d = daemon(&speaker);
    let mut gone = talker(&d, "gone").await;
    let mut next = talker(&d, "next").await;
    assert_eq!(
        talk(&mut gone, r#"{"command":"talk","action":"start"}"#).await["ok"],
        true
    );
    gone.close().await;
    // The viewer's goodbye frees its place, and with it the floor.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = talk(&mut next, r#"{"command":"talk","action":"start"}"#).await;
        if reply["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the floor stayed taken: {reply}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // `next` holds the floor and says nothing: after talk_silence_s (3 s) it is free.
    let held = Instant::now();
    let deadline = held + Duration::from_secs(10);
    while talk_state(&d)["talking"] == true {
        assert!(Instant::now() < deadline, "a silent talker kept the floor");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = held.elapsed();
    eprintln!("a silent talker lost the floor after {after:?}");
    assert!(after >= Duration::from_secs(2), "freed too soon: {after:?}");
    assert_eq!(metric(d.addr, "edgecam_talking"), 0.0);
}

#[test]
fn talk_needs_a_viewer_and_a_speaker() {
    let d = Daemon::start_with("[motion]\nenabled = false\n");
    let (_, reply) = d.command(r#"{"command":"talk","action":"start"}"#);
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"].as_str().unwrap().contains("live viewer"),
        "{reply}"
    );

    // A speaker pipeline that cannot be built is a config error, found before the first talk.
    let text = std::fs::read_to_string(&d.config).unwrap()
        + "\n[audio]\nspeaker = true\nspeaker_sink = \"nosuchsink\"\n";
    let path = crate::support::write_file(d.dir.path(), "bad.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("audio.speaker_sink"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_talks_is_published_on_mqtt() {
    let s = crate::mqtt::setup().await;
    let client = crate::support::mosquitto::client_leaf(&s.pki, "cam1");
    let mqtt = s.broker.daemon_config(&s.pki, &client, "cam1", "");
    let speaker = Speaker::listen();
    let d = tokio::task::block_in_place(|| {
        Daemon::start_with(&format!(
            "{mqtt}\n[audio]\nspeaker = true\nspeaker_sink = \"{}\"\n\
             [live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n",
            tone::speaker_sink(speaker.port)
        ))
    });
    let mut v = talker(&d, "phone").await;
    let name = r#"{"command":"talk","action":"start","name":"Grandma"}"#;
    assert_eq!(talk(&mut v, name).await["ok"], true);
    let on = s
        .observer
        .wait("edgecam/cam1/talk", Duration::from_secs(10), |m| {
            m.iter().any(|x| x.json()["talking"] == true)
        })
        .await;
    let last = on.last().unwrap();
    assert_eq!(last.json()["talker"], "Grandma", "{:?}", last.json());
    assert_eq!(
        talk(&mut v, r#"{"command":"talk","action":"stop"}"#).await["ok"],
        true
    );
    let off = s
        .observer
        .wait("edgecam/cam1/talk", Duration::from_secs(10), |m| {
            m.last().is_some_and(|x| x.json()["talking"] == false)
        })
        .await;
    assert_eq!(off.last().unwrap().json()["talker"], Value::Null);
}

/// Records a 6 s event while a viewer says 880 Hz for its first 2 s; the 880 Hz power
/// in the clip's sound while talking and after.
async fn talk_in_a_clip(record_talk: bool) -> (f64, f64) {
    let speaker = Speaker::listen();
    let d = Daemon::start_with(&format!(
        "[audio]\nspeaker = true\nrecord_talk = {record_talk}\nspeaker_sink = \"{}\"\n\
         [live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n\
         [events]\npre_roll_s = 0\npost_roll_s = 0\nmin_gap_s = 0\n",
        tone::speaker_sink(speaker.port)
    ));
    let mut v = talker(&d, "phone").await;
    assert_eq!(
        talk(&mut v, r#"{"command":"talk","action":"start"}"#).await["ok"],
        true
    );
    let (status, reply) = tokio::task::block_in_place(|| {
        d.command(r#"{"command":"record","duration_s":6,"label":"talk"}"#)
    });
    assert_eq!(status, 200, "{reply}");
    v.speak(&opus_packets("sine", 880.0, 2.0)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let (_, _, body) = http_get(d.addr, "/api/clips").unwrap();
        let clips: Vec<Value> = serde_json::from_slice(&body).unwrap();
        if let Some(c) = clips.iter().find(|c| c["status"] == "complete") {
            break c["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no clip: {clips:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (_, _, mp4) = http_get(d.addr, &format!("/api/clips/{id}.mp4")).unwrap();
    let path = d.dir.path().join("talk.mp4");
    std::fs::write(&path, mp4).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args([
            "-map", "0:a", "-ac", "1", "-ar", "48000", "-f", "s16le", "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcm: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let rate = tone::RATE as usize;
    assert!(
        pcm.len() > 5 * rate,
        "a 6 s clip has sound: {} samples",
        pcm.len()
    );
    // Talk is in the first 2.5 s (the event started as the viewer began); the last 2 s
    // are without it.
    let during = power_at(&pcm[..rate * 5 / 2], 880.0);
    let after = power_at(&pcm[pcm.len() - 2 * rate..], 880.0);
    eprintln!("record_talk = {record_talk}: 880 Hz while talking {during:.2e}, after {after:.2e}");
    (during, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_is_recorded_into_clips_only_when_asked() {
    let (private, _) = talk_in_a_clip(false).await;
    let (recorded, after) = talk_in_a_clip(true).await;
    assert!(
        recorded > 100.0 * after.max(1e-12),
        "recorded with record_talk: {recorded:.2e} while talking, {after:.2e} after"
    );
    assert!(
        private < recorded / 100.0,
        "not recorded by default: {private:.2e}, against {recorded:.2e} when asked"
    );
}
