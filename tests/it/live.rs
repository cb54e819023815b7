//! Live view through LAN signaling against the real daemon: webrtc-rs viewers decode
//! with GStreamer; the viewer limit, abrupt viewer deaths, the control data channel, the
//! token, and bad signaling input.

use crate::support;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::http_get;
use crate::support::viewer::Viewer;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const LIVE: &str = "[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n";

fn viewers_metric(d: &Daemon) -> f64 {
    support::metric(d.addr, "edgecam_viewers")
}

/// A daemon whose keyframes come only every `kis` seconds, optionally with a token.
fn daemon(kis: u32, token: Option<&str>) -> Daemon {
    Daemon::start_edited(|text| {
        let mut text = text.replace(
            "keyframe_interval_s = 1",
            &format!("keyframe_interval_s = {kis}"),
        );
        if let Some(t) = token {
            text = text.replace("[web]\n", &format!("[web]\ntoken = \"{t}\"\n"));
        }
        format!("{text}\n{LIVE}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_is_fast_even_with_a_10_s_keyframe_interval() {
    let d = daemon(10, None);
    for i in 0..3 {
        let mut v = Viewer::connect(d.addr, &format!("phone-{i}"), None).await;
        let seen = v.wait(Duration::from_secs(10), |s| s.decoded >= 10).await;
        let ttff = seen.first_frame.expect("video arrives");
        eprintln!("viewer {i}: first decoded frame after {ttff:?}");
        assert!(
            ttff < Duration::from_secs(1),
            "first frame after {ttff:?} with a 10 s GOP"
        );
        assert!(
            seen.decoded >= 10,
            "video keeps flowing: {} frames",
            seen.decoded
        );
        v.close().await;
    }
    let (_, _, body) = http_get(d.addr, "/metrics").unwrap();
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("edgecam_ttff_seconds_count 3"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_viewers_watch_the_eleventh_is_refused_and_dead_viewers_are_freed() {
    let d = daemon(2, None);
    // The first ten live on their own runtime so they can die abruptly, like phones
    // leaving Wi-Fi: no close, no goodbye.
    let addr = d.addr;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let doomed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let decoded = rt.block_on(async {
            let mut viewers = Vec::new();
            for i in 0..10 {
                viewers.push(Viewer::connect(addr, &format!("v{i}"), None).await);
            }
            let mut counts = Vec::new();
            for v in &mut viewers {
                counts.push(
                    v.wait(Duration::from_secs(15), |s| s.decoded >= 5)
                        .await
                        .decoded,
                );
            }
            std::mem::forget(viewers);
            counts
        });
        done_tx.send(decoded).unwrap();
        let _ = std::sync::mpsc::channel::<()>()
            .1
            .recv_timeout(Duration::from_secs(2));
        rt.shutdown_background();
    });
    let counts = done_rx.recv().unwrap();
    assert!(
        counts.iter().all(|&n| n >= 5),
        "all ten receive video: {counts:?}"
    );
    assert_eq!(viewers_metric(&d), 10.0);

    let mut eleventh = Viewer::connect(d.addr, "v10", None).await;
    let seen = eleventh
        .wait(Duration::from_secs(5), |s| s.refused.is_some())
        .await;
    assert!(
        seen.refused.unwrap_or_default().contains("limit"),
        "the eleventh is told why"
    );
    assert_eq!(eleventh.decoded(), 0);

    doomed.join().unwrap();
    let start = std::time::Instant::now();
    while viewers_metric(&d) > 0.0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "dead viewers still held after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("10 dead viewers freed after {:?}", start.elapsed());

    let mut fresh = Vec::new();
    for i in 0..10 {
        fresh.push(Viewer::connect(d.addr, &format!("w{i}"), None).await);
    }
    for v in &mut fresh {
        let seen = v.wait(Duration::from_secs(15), |s| s.decoded >= 5).await;
        assert!(
            seen.decoded >= 5,
            "a new viewer gets video after the dead ones were freed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_channel_runs_commands() {
    let d = daemon(2, None);
    let mut v = Viewer::connect(d.addr, "app", None).await;
    v.wait(Duration::from_secs(10), |s| s.decoded >= 1).await;
    v.command(r#"{"command":"status","id":"s1"}"#).await;
    v.command(r#"{"command":"fly"}"#).await;
    let seen = v
        .wait(Duration::from_secs(5), |s| s.control.len() >= 2)
        .await;
    assert_eq!(seen.control[0]["id"], "s1");
    assert_eq!(seen.control[0]["ok"], true);
    assert_eq!(seen.control[0]["result"]["detect"], false);
    assert_eq!(seen.control[1]["ok"], false);
    assert!(seen.control[1]["error"]
        .as_str()
        .unwrap()
        .contains("unknown command"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_when_set() {
    let d = daemon(2, Some("s3cret-s3cret-s3cret"));
    let url = format!("ws://{}/signaling", d.addr);
    let err = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("401"), "{err}");
    let mut v = Viewer::connect(d.addr, "owner", Some("s3cret-s3cret-s3cret")).await;
    assert!(
        v.wait(Duration::from_secs(10), |s| s.decoded >= 1)
            .await
            .decoded
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_is_ignored_and_viewers_keep_watching() {
    let d = daemon(2, None);
    let mut v = Viewer::connect(d.addr, "good", None).await;
    v.wait(Duration::from_secs(10), |s| s.decoded >= 1).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/signaling?clientId=evil", d.addr))
            .await
            .unwrap();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let garbage = [
        "{not json".to_string(),
        json!({"action": "DANCE", "messagePayload": ""}).to_string(),
        json!({"action": "SDP_OFFER", "messagePayload": "%%%not base64%%%"}).to_string(),
        json!({"action": "SDP_OFFER", "messagePayload": b64(r#"{"type":"offer","sdp":"v=0\r\ngarbage"}"#)}).to_string(),
        json!({"action": "ICE_CANDIDATE", "messagePayload": b64(r#"{"nope":1}"#)}).to_string(),
        json!({"action": "SDP_OFFER", "messagePayload": b64(&"x".repeat(40_000))}).to_string(),
    ];
    for text in &garbage {
        ws.send(Message::text(text.clone())).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (kind, _) = edgecam::live::message::viewer_payload(reply.to_text().unwrap()).unwrap();
        assert_eq!(kind, "STATUS_RESPONSE", "{text}: {reply}");
    }
    // Oversized beyond the socket limit: the socket is closed, the daemon is fine.
    let _ = ws.send(Message::text("y".repeat(200_000))).await;
    let before = v.decoded();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(v.decoded() > before, "the good viewer keeps watching");
    assert_eq!(http_get(d.addr, "/healthz").unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_leaves_frees_its_place_at_once() {
    // Reloading the page 15 times in a row must never hit the 10-viewer limit.
    let d = daemon(2, None);
    for i in 0..15 {
        let mut v = Viewer::connect(d.addr, &format!("reload-{i}"), None).await;
        v.expect_playing(&format!("connect {i}")).await;
        v.close().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        viewers_metric(&d),
        0.0,
        "every session that said goodbye is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_signaling_sockets_are_bounded() {
    let d = daemon(2, None);
    let url = |i: usize| format!("ws://{}/signaling?clientId=idle-{i}", d.addr);
    let mut open = Vec::new();
    for i in 0..edgecam::live::lan::MAX_SOCKETS {
        open.push(tokio_tungstenite::connect_async(url(i)).await.unwrap().0);
    }
    let err = tokio_tungstenite::connect_async(url(99))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("503"), "{err}");
    // Closing one makes room again; viewers are not locked out for good.
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url(100)).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a socket is accepted once one closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_asks_for_sound_hears_the_camera_beside_the_picture() {
    let d = daemon(1, None);
    let frames = |codec: &str| {
        support::metric(
            d.addr,
            &format!("edgecam_audio_frames_total{{codec=\"{codec}\"}}"),
        )
    };
    // Sound is captured for clips (AAC), but nobody listens: nothing is encoded to Opus.
    let recorded = support::poll_until(Duration::from_secs(10), || frames("aac") >= 25.0).await;
    assert!(recorded, "AAC flows");
    assert_eq!(frames("opus"), 0.0, "no Opus for nobody");
    let mut v = Viewer::connect_with_audio(d.addr, "ears").await;
    // Two seconds of sound: the test pattern ticks once a second.
    let seen = v
        .wait(Duration::from_secs(10), |s| {
            s.decoded >= 10 && s.audio_decoded >= 100
        })
        .await;
    assert!(seen.decoded >= 10, "video plays: {seen:?}");
    assert!(seen.audio_decoded >= 100, "Opus decodes: {seen:?}");
    assert!(
        seen.audio_loud >= 1 && seen.audio_quiet >= 10,
        "the ticks are heard, with quiet between them: {seen:?}"
    );
    v.close().await;
    // A viewer that does not ask for sound gets the picture as before.
    let mut mute = Viewer::connect(d.addr, "no-ears", None).await;
    let seen = mute
        .wait(Duration::from_secs(10), |s| s.decoded >= 10)
        .await;
    assert!(seen.decoded >= 10 && seen.audio_decoded == 0, "{seen:?}");
    // Nobody listens again: the Opus encoder stops (20 ms frames: 50 a second).
    let stopped = support::poll_until(Duration::from_secs(5), || {
        let before = frames("opus");
        std::thread::sleep(Duration::from_millis(300));
        frames("opus") == before
    })
    .await;
    assert!(stopped, "Opus is still encoded with no one listening");
    mute.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_floods_is_closed_and_viewers_keep_watching() {
    let d = daemon(2, None);
    let mut v = Viewer::connect(d.addr, "watcher", None).await;
    v.wait(Duration::from_secs(10), |s| s.decoded >= 1).await;
    let url = format!("ws://{}/signaling?clientId=flood", d.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Candidates for made-up offers, as fast as the socket takes them.
    let candidate = edgecam::live::message::from_viewer(
        "ICE_CANDIDATE",
        &json!({"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}),
    );
    let mut sent = 0;
    for _ in 0..5000 {
        if ws.send(Message::text(candidate.clone())).await.is_err() {
            break;
        }
        sent += 1;
    }
    // The daemon closes the socket after the first second's allowance.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the flooding socket was closed ({sent} sent)"
    );
    let before = v.decoded();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(v.decoded() > before, "the viewer keeps watching");
    assert_eq!(http_get(d.addr, "/healthz").unwrap().0, 200);
}
