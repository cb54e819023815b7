//! The Kinesis Video stream with the real AWS SDK clients: against `moto_server` the
//! stream is created once and found after; against a fake of the archived-media API,
//! `edgecam playback` asks for an HLS URL over the event's producer-timestamp range (or
//! live) and prints it, `edgecam clips fetch` downloads the event's MP4 (GetClip), and
//! both say what is wrong otherwise.

use crate::support;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::support::moto::Moto;
use edgecam::aws::{stream, Aws};
use edgecam::config::Aws as AwsConfig;
use edgecam::events::{EventInfo, TriggerKind};
use edgecam::index::{Index, INDEX_FILE};

const STREAM: &str = "porch-cam";

async fn aws(moto: &Moto) -> Aws {
    for (k, v) in Moto::env() {
        std::env::set_var(k, v);
    }
    let cfg = AwsConfig {
        endpoint_url: Some(moto.url.clone()),
        ..AwsConfig::default()
    };
    Aws::from_config(&cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_created_once_and_found_after() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    let missing = stream::ensure_stream(&aws, STREAM, stream::VIDEO_AUDIO, 24, false).await;
    assert!(missing.unwrap_err().to_string().contains("DescribeStream"));
    let arn = stream::ensure_stream(&aws, STREAM, stream::VIDEO_AUDIO, 24, true)
        .await
        .unwrap();
    assert!(arn.contains(STREAM), "{arn}");
    let info = aws
        .kinesis_video()
        .describe_stream()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.stream_info().and_then(|s| s.media_type()),
        Some("video/h264,audio/aac"),
        "a stream created for a camera with sound names both codecs"
    );
    assert_eq!(
        stream::ensure_stream(&aws, STREAM, stream::VIDEO_AUDIO, 24, true)
            .await
            .unwrap(),
        arn
    );
    let endpoint =
        stream::data_endpoint(&aws, STREAM, aws_sdk_kinesisvideo::types::ApiName::PutMedia)
            .await
            .unwrap();
    assert_eq!(
        endpoint, moto.url,
        "an endpoint off this machine is replaced in tests"
    );
    let err = stream::hls_url(&aws, STREAM, None, 60).await.unwrap_err();
    assert!(err.to_string().contains("300"), "{err}");
}

/// What the fake's GetClip returns: 300 KB standing in for an MP4.
fn clip_bytes() -> String {
    "ftypisom".repeat(300 * 1024 / 8)
}

/// A fake of the archived-media side (moto_server cannot route it: it dispatches by the
/// signing name, which archived media shares with the control plane): GetDataEndpoint and
/// GetHLSStreamingSessionURL, SigV4 verified, the last HLS request kept for assertions.
async fn fake_archived_media() -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (reqs, errs, base) = (Arc::clone(&requests), Arc::clone(&errors), url.clone());
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (reqs, errs, base) = (Arc::clone(&reqs), Arc::clone(&errs), base.clone());
            async move {
                if let Err(e) = support::sigv4::verify_headers(
                    method.as_str(), uri.path(), uri.query().unwrap_or(""), &headers, &body,
                    (support::kvs_fake::REGION, "kinesisvideo"), chrono::Utc::now(),
                ) {
                    errs.lock().unwrap().push(format!("{}: {e}", uri.path()));
                    return (axum::http::StatusCode::FORBIDDEN, "{}".to_string());
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                match uri.path() {
                    "/getDataEndpoint" => (axum::http::StatusCode::OK, json!({"DataEndpoint": base}).to_string()),
                    "/getClip" => {
                        reqs.lock().unwrap().push(v);
                        (axum::http::StatusCode::OK, clip_bytes())
                    }
                    "/getHLSStreamingSessionURL" => {
                        reqs.lock().unwrap().push(v);
                        (axum::http::StatusCode::OK, json!({"HLSStreamingSessionURL":
                            "https://b-1.kinesisvideo.eu-west-1.amazonaws.com/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=t"}).to_string())
                    }
                    _ => (axum::http::StatusCode::NOT_FOUND, "{}".to_string()),
                }
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, requests, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_prints_a_url_for_an_event() {
    let (fake, requests, errors) = fake_archived_media().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let index = Index::open(&data.join(INDEX_FILE)).await.unwrap();
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
        .unwrap()
        .to_utc();
    let event = EventInfo {
        id: "01JPLAYBACK".into(),
        label: "doorbell".into(),
        trigger: TriggerKind::Http,
        score: 0.0,
        started_at: t0,
        ended_at: Some(t0 + chrono::Duration::seconds(10)),
        clip_ids: vec![],
        labels: Default::default(),
        zones: Default::default(),
    };
    index.upsert_event(&event).await.unwrap();
    index
        .insert_clip(
            "c1",
            "01JPLAYBACK",
            "c1.mp4",
            t0 - chrono::Duration::seconds(5),
            t0,
        )
        .await
        .unwrap();
    index.close().await;
    let config = support::write_file(
        dir.path(),
        "edgecam.toml",
        &format!(
            "[storage]\ndata_dir = \"{}\"\n[aws]\nregion = \"{}\"\nendpoint_url = \"{fake}\"\n[upload]\nstream_name = \"{STREAM}\"\n",
            data.display(),
            support::kvs_fake::REGION,
        ),
    );
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgecam"));
        c.args(["--config", config.to_str().unwrap()]).args(args);
        c.env("AWS_ACCESS_KEY_ID", support::sigv4::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", support::sigv4::SECRET_KEY)
            .env("AWS_SESSION_TOKEN", support::sigv4::SESSION_TOKEN)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c.output().unwrap()
    };
    let out = run(&["playback", "01JPLAYBACK", "--expires", "900"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim().starts_with("https://") && stdout.contains(".m3u8"),
        "{stdout}"
    );
    let req = requests.lock().unwrap()[0].clone();
    assert_eq!(req["StreamName"], STREAM);
    assert_eq!(req["PlaybackMode"], "ON_DEMAND");
    assert_eq!(req["ContainerFormat"], "FRAGMENTED_MP4");
    assert_eq!(req["Expires"], 900);
    let sel = &req["HLSFragmentSelector"];
    assert_eq!(sel["FragmentSelectorType"], "PRODUCER_TIMESTAMP");
    // From the clip's first frame (5 s before the trigger) to the event's end.
    let start = sel["TimestampRange"]["StartTimestamp"].as_f64().unwrap();
    let end = sel["TimestampRange"]["EndTimestamp"].as_f64().unwrap();
    assert_eq!(start as i64, t0.timestamp() - 5, "{req}");
    assert_eq!(
        end as i64,
        t0.timestamp() + 10,
        "a clip with no end yet: the event's end, {req}"
    );

    let live = run(&["playback", "--live"]);
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert_eq!(requests.lock().unwrap()[1]["PlaybackMode"], "LIVE");
    let unknown = run(&["playback", "NOPE"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no event NOPE"));
    // The event's video from the cloud, as an MP4 file.
    let out_path = dir.path().join("cloud.mp4");
    let fetched = run(&["clips", "fetch", "01JPLAYBACK", out_path.to_str().unwrap()]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), clip_bytes());
    let req = requests.lock().unwrap()[2].clone();
    assert_eq!(req["StreamName"], STREAM);
    let sel = &req["ClipFragmentSelector"];
    assert_eq!(sel["FragmentSelectorType"], "PRODUCER_TIMESTAMP");
    assert_eq!(
        sel["TimestampRange"]["StartTimestamp"].as_f64().unwrap() as i64,
        t0.timestamp() - 5
    );
    assert_eq!(
        sel["TimestampRange"]["EndTimestamp"].as_f64().unwrap() as i64,
        t0.timestamp() + 10
    );
    let neither = run(&["playback"]);
    assert_eq!(
        neither.status.code(),
        Some(2),
        "clap says an event id or --live is needed"
    );
    assert_eq!(errors.lock().unwrap().clone(), Vec::<String>::new());
}

/// The `playback` command (here over the HTTP API; MQTT and the data channel take the
/// same path) answers with the URL, and says what is wrong for an unknown event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playback_command_answers_with_a_url() {
    let (fake, requests, errors) = fake_archived_media().await;
    // A plain-HTTP fake: the system's CAs stay as they are.
    let env = support::sigv4::daemon_env(std::path::Path::new(""));
    let env: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| *k != "SSL_CERT_FILE")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let extra = format!(
        "[motion]\nenabled = false\n[aws]\nregion = \"{}\"\nendpoint_url = \"{fake}\"\n\
         [upload]\nenabled = true\nstream_name = \"{STREAM}\"\n",
        support::kvs_fake::REGION
    );
    let d = tokio::task::block_in_place(|| {
        support::daemon::Daemon::start_env(&env, |t| format!("{t}\n{extra}"))
    });
    let (status, reply) = tokio::task::block_in_place(|| {
        d.command(r#"{"command":"playback","expires_s":600,"id":"p1"}"#)
    });
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
    let url = reply["result"]["url"].as_str().unwrap();
    assert!(url.contains("getHLSMasterPlaylist"), "{url}");
    assert_eq!(reply["result"]["stream"], STREAM);
    let sent = requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["PlaybackMode"], "LIVE");
    assert_eq!(sent["Expires"], 600);
    let (_, reply) = tokio::task::block_in_place(|| {
        d.command(r#"{"command":"playback","event_id":"01JNOSUCHEVENT"}"#)
    });
    assert_eq!(reply["ok"], false);
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no event 01JNOSUCHEVENT"),
        "{reply}"
    );
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
}
