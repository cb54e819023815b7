//! Live view through KVS signaling, against the fake KVS service in tests/support: the
//! daemon sets up the channel with SigV4-signed calls, connects with a presigned URL,
//! answers a viewer; the socket drops, GO_AWAY, RECONNECT_ICE_SERVER and refused
//! handshakes never interrupt a viewer who is already watching.

use crate::support;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::kvs_fake::FakeKvs;
use crate::support::viewer::Viewer;

fn metric(d: &Daemon, series: &str) -> f64 {
    support::metric(d.addr, series)
}

async fn daemon_on(fake: &FakeKvs) -> Daemon {
    daemon_with(fake, "").await
}

/// A daemon on the fake KVS, with `more` config appended.
async fn daemon_with(fake: &FakeKvs, more: &str) -> Daemon {
    let env = fake.daemon_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let extra = format!(
        "{}[motion]\nenabled = false\n{more}",
        fake.daemon_config("front-door")
    );
    let d = tokio::task::block_in_place(|| Daemon::start_env(&env, |t| format!("{t}\n{extra}")));
    assert!(
        fake.wait(Duration::from_secs(15), |f| f.master_online())
            .await,
        "the daemon connects as master: {:?}",
        fake.errors()
    );
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_watches_through_kvs_signaling() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKvs::start(dir.path()).await;
    let d = daemon_on(&fake).await;
    // A missing channel is created, then its endpoints and ICE servers are fetched.
    for op in [
        "DescribeSignalingChannel",
        "CreateSignalingChannel",
        "GetSignalingChannelEndpoint",
        "GetIceServerConfig",
    ] {
        assert!(fake.calls(op) >= 1, "{op} was called");
    }
    // Asking for sound, as a browser does: both tracks come through KVS signaling too.
    let mut v = Viewer::connect_url_with_audio(&fake.viewer_url("phone")).await;
    let seen = v
        .wait(Duration::from_secs(10), |s| {
            s.decoded >= 10 && s.audio_decoded >= 25
        })
        .await;
    let ttff = seen
        .first_frame
        .expect("video arrives through KVS signaling");
    eprintln!("first frame through KVS signaling after {ttff:?}");
    assert!(seen.decoded >= 10);
    assert!(
        seen.audio_decoded >= 25,
        "sound arrives through KVS signaling: {} Opus frames",
        seen.audio_decoded
    );
    assert_eq!(
        fake.errors(),
        Vec::<String>::new(),
        "the fake found nothing wrong"
    );
    assert_eq!(
        metric(&d, "edgecam_viewer_candidates_total{type=\"host\"}"),
        1.0
    );

    // Garbage from the service is logged and ignored: same connection, video flows.
    let connects = fake.master_connects();
    let big = "A".repeat(70_000);
    for text in [
        "{not json",
        r#"{"messageType":"SOMETHING_NEW","messagePayload":""}"#,
        r#"{"messageType":"SDP_OFFER","senderClientId":"x","messagePayload":"%%%not base64"}"#,
        r#"{"messageType":"SDP_OFFER","senderClientId":"x","messagePayload":"eyJzZHAiOiJnYXJiYWdlIiwidHlwZSI6Im9mZmVyIn0="}"#,
        r#"{"messageType":"ICE_CANDIDATE","senderClientId":"phone","messagePayload":"eyJjYW5kaWRhdGUiOjF9"}"#,
        &big,
    ] {
        fake.send_raw(text);
    }
    let before = v.decoded();
    let after = v
        .wait(Duration::from_secs(3), |s| s.decoded > before + 5)
        .await;
    assert!(
        after.decoded > before + 5,
        "video keeps flowing after garbage"
    );
    assert_eq!(
        fake.master_connects(),
        connects,
        "garbage does not cost the connection"
    );
    v.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_keeps_watching_while_the_socket_drops_ten_times() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKvs::start(dir.path()).await;
    let d = daemon_on(&fake).await;
    let mut v = Viewer::connect_url(&fake.viewer_url("tablet")).await;
    v.wait(Duration::from_secs(10), |s| s.decoded >= 5).await;
    let mut last = v.decoded();
    for i in 0..10 {
        let connects = fake.master_connects();
        fake.drop_master();
        assert!(
            fake.wait(Duration::from_secs(15), |f| f.master_connects() > connects
                && f.master_online())
                .await,
            "reconnected after drop {i}"
        );
        // Frames kept coming while signaling was down and back.
        let now = v
            .wait(Duration::from_secs(3), |s| s.decoded > last)
            .await
            .decoded;
        assert!(now > last, "video stalled around drop {i}: {now} frames");
        last = now;
    }
    assert!(metric(&d, "edgecam_signaling_reconnects_total{reason=\"dropped\"}") >= 10.0);
    // Signaling still works for a newcomer after all that.
    let mut late = Viewer::connect_url(&fake.viewer_url("late")).await;
    let seen = late.wait(Duration::from_secs(10), |s| s.decoded >= 5).await;
    assert!(seen.decoded >= 5, "a new viewer joins after the reconnects");
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_away_ice_refresh_and_refused_handshakes_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = FakeKvs::start(dir.path()).await;
    fake.go_away_grace = Duration::from_secs(60);
    let d = daemon_on(&fake).await;
    let mut v = Viewer::connect_url(&fake.viewer_url("laptop")).await;
    v.wait(Duration::from_secs(10), |s| s.decoded >= 5).await;

    // GO_AWAY: the daemon describes the channel again and reconnects well within the
    // service's grace, before the service would close the old socket.
    let (connects, describes) = (
        fake.master_connects(),
        fake.calls("DescribeSignalingChannel"),
    );
    let t = std::time::Instant::now();
    fake.go_away();
    assert!(
        fake.wait(Duration::from_secs(10), |f| f.master_connects() > connects)
            .await,
        "reconnected after GO_AWAY"
    );
    eprintln!("reconnected {:?} after GO_AWAY", t.elapsed());
    assert!(fake.calls("DescribeSignalingChannel") > describes);
    assert_eq!(
        metric(&d, "edgecam_signaling_reconnects_total{reason=\"go_away\"}"),
        1.0
    );

    // RECONNECT_ICE_SERVER: new ICE servers, same connection.
    let (connects, ice) = (fake.master_connects(), fake.calls("GetIceServerConfig"));
    fake.reconnect_ice_server();
    assert!(
        fake.wait(Duration::from_secs(10), |f| f.calls("GetIceServerConfig")
            > ice)
            .await,
        "ICE servers fetched again"
    );
    assert_eq!(
        fake.master_connects(),
        connects,
        "no reconnect for an ICE refresh"
    );

    // A refused handshake (403) is retried with fresh credentials and succeeds.
    fake.refuse_next(403);
    fake.drop_master();
    assert!(
        fake.wait(Duration::from_secs(15), |f| f.master_connects() > connects
            && f.master_online())
            .await,
        "connected again after a 403"
    );
    assert!(
        metric(
            &d,
            "edgecam_signaling_reconnects_total{reason=\"unauthorized\"}"
        ) >= 1.0
    );
    let before = v.decoded();
    let after = v.wait(Duration::from_secs(3), |s| s.decoded > before).await;
    assert!(after.decoded > before, "the viewer watched throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_through_kvs_signaling_talks_through_the_speaker() {
    use crate::support::tone::{self, loudest_of, opus_packets, Speaker};
    use crate::support::viewer::Opts;
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKvs::start(dir.path()).await;
    let speaker = Speaker::listen();
    let more = format!(
        "[audio]\nspeaker = true\nspeaker_sink = \"{}\"\n",
        tone::speaker_sink(speaker.port)
    );
    let d = daemon_with(&fake, &more).await;
    let opts = Opts {
        talk: true,
        ..Opts::default()
    };
    let mut v = Viewer::connect_with(&fake.viewer_url("doorbell-app"), opts).await;
    v.expect_playing("a KVS viewer").await;
    v.command(r#"{"command":"talk","action":"start","name":"Dad"}"#)
        .await;
    let seen = v
        .wait(Duration::from_secs(5), |s| !s.control.is_empty())
        .await;
    assert_eq!(
        seen.control[0]["result"]["talking"], true,
        "{:?}",
        seen.control
    );
    let started = std::time::Instant::now();
    v.speak(&opus_packets("sine", 660.0, 1.0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = speaker.samples_since(started);
    assert!(
        tone::rms(&heard) > tone::LOUD,
        "the speaker played the KVS viewer"
    );
    assert_eq!(loudest_of(&heard, &[440.0, 660.0, 880.0]), 660.0);
    assert_eq!(metric(&d, "edgecam_talks_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_an_hour_behind_signs_every_call_with_the_services_time() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeKvs::start(dir.path()).await;
    // The camera's clock is an hour behind (but set: after this release's date).
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "-1h\n").unwrap();
    let mut env = fake.daemon_env();
    env.extend(support::faketime_env(&clock));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let extra = format!(
        "{}[motion]\nenabled = false\n",
        fake.daemon_config("front-door")
    );
    let _d = tokio::task::block_in_place(|| Daemon::start_env(&env, |t| format!("{t}\n{extra}")));
    // The first control-plane call is refused ("Signature expired"); its answer's Date
    // teaches the daemon the service's time, and from then on every call passes.
    assert!(
        fake.wait(Duration::from_secs(30), |f| f.master_online())
            .await,
        "the daemon connects as master: {:?}",
        fake.errors()
    );
    let mut v = Viewer::connect_url(&fake.viewer_url("phone")).await;
    v.expect_playing("through KVS signaling with a clock an hour off")
        .await;
    let refused = fake.errors();
    assert!(
        !refused.is_empty() && refused.len() <= 3,
        "a refusal or two teach the skew: {refused:?}"
    );
    for op in [
        "DescribeSignalingChannel",
        "GetSignalingChannelEndpoint",
        "GetIceServerConfig",
    ] {
        assert!(fake.calls(op) >= 1, "{op} was called");
    }
    v.close().await;
}
