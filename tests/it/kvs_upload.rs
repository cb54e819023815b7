//! Event video to Kinesis Video Streams, with the daemon run as a user runs it: the stream
//! is set up on `moto_server`, fragments go over PutMedia to the fake data endpoint in
//! tests/support (SigV4, MKV and timecodes checked as KVS does), pre-roll included and
//! while the event is live. Dropped connections, refused fragments, internal errors,
//! expiring credentials and a `kill -9` mid-event lose nothing.

use crate::support;
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::control_fake::FakeControl;
use crate::support::daemon::Daemon;
use crate::support::iot_fake::{FakeIot, ROLE_ALIAS};
use crate::support::mosquitto::{client_leaf, Broker, Observer};
use crate::support::moto::Moto;
use crate::support::pki::Pki;
use crate::support::poll_until;
use crate::support::putmedia_fake::{FakePutMedia, Fragment};
use crate::support::sigv4;
use edgecam::index::{Index, INDEX_FILE};

const STREAM: &str = "porch-cam";
const THING: &str = "porch-cam";

struct Cloud {
    moto: Moto,
    fake: FakePutMedia,
    pki: Pki,
    _dir: tempfile::TempDir,
}

async fn cloud() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fake = FakePutMedia::start(&pki, "eu-west-1").await;
    fake.add_stream(STREAM);
    let moto = tokio::task::block_in_place(Moto::start);
    Cloud {
        moto,
        fake,
        pki,
        _dir: dir,
    }
}

/// `[events]`, `[aws]` and `[upload]` for a daemon uploading to `cloud`.
fn upload_config(cloud: &Cloud, aws_extra: &str) -> String {
    format!(
        "[events]\npre_roll_s = 2.0\npost_roll_s = 1.0\n[motion]\nenabled = false\n\
         [aws]\nregion = \"eu-west-1\"\nendpoint_url = \"{}\"\ndata_endpoint_url = \"{}\"\n{aws_extra}\
         [upload]\nenabled = true\nstream_name = \"{STREAM}\"\n",
        cloud.moto.url, cloud.fake.url
    )
}

fn static_env(cloud: &Cloud) -> Vec<(&'static str, String)> {
    sigv4::daemon_env(&cloud.pki.ca_pem)
}

fn start(env: &[(&'static str, String)], config: &str) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tokio::task::block_in_place(|| Daemon::start_env(&env, |t| format!("{t}\n{config}")))
}

fn metric(d: &Daemon, series: &str) -> f64 {
    support::metric(d.addr, series)
}

/// Starts an event of `duration_s` after the pre-roll filled; returns its id.
async fn record(d: &Daemon, duration_s: u32) -> String {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, reply) = d.command(&format!(
        r#"{{"command":"record","duration_s":{duration_s}}}"#
    ));
    assert_eq!(status, 200, "{reply}");
    reply["result"]["event_id"].as_str().unwrap().to_owned()
}

/// Persisted fragments by timecode (a resent fragment counts once).
fn unique(fragments: &[Fragment]) -> BTreeMap<u64, Fragment> {
    let mut out = BTreeMap::new();
    for f in fragments {
        out.entry(f.timecode_ms).or_insert_with(|| f.clone());
    }
    out
}

/// Waits until the event's clips are finished and settled; returns (clip start ms,
/// frames in the clips, upload states).
async fn settled(d: &Daemon, event: &str, limit: Duration) -> (u64, u64, Vec<String>) {
    let index = Index::open(&d.data().join(INDEX_FILE)).await.unwrap();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let clips: Vec<_> = index
            .clips(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.event_id == event)
            .collect();
        let states: Vec<String> = clips.iter().map(|c| c.upload_state.clone()).collect();
        let done = !clips.is_empty()
            && clips.iter().all(|c| {
                c.frame_count.is_some() && ["uploaded", "failed"].contains(&c.upload_state.as_str())
            });
        if done {
            let start = clips
                .iter()
                .map(|c| c.start_at.timestamp_millis())
                .min()
                .unwrap();
            let frames = clips.iter().map(|c| c.frame_count.unwrap() as u64).sum();
            index.close().await;
            return (start as u64, frames, states);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event's clips were not uploaded in {limit:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every frame of the event reached KVS exactly in order: unique fragments cover the
/// clip's frames from its first (pre-roll) keyframe, timecodes strictly increasing.
fn assert_complete(fake: &FakePutMedia, clip_start_ms: u64, frames: u64) -> usize {
    let all = fake.persisted();
    let unique = unique(&all);
    let first = *unique.keys().next().expect("fragments persisted");
    assert_eq!(
        first, clip_start_ms,
        "the first fragment is the clip's first (pre-roll) GOP"
    );
    let total: usize = unique.values().map(|f| f.frames).sum();
    // After a power cut KVS may hold the last frames the torn file lost.
    assert!(
        (frames..=frames + 15).contains(&(total as u64)),
        "every frame of the clip reached KVS: {total} of {frames}"
    );
    let mut last = 0;
    for f in unique.values() {
        assert!(f.timecode_ms > last, "fragments overlap: {f:?}");
        assert!(f.keyframes >= 1);
        last = f.last_frame_ms;
    }
    unique.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_fragments_survive_five_dropped_connections() {
    let cloud = cloud().await;
    let d = start(&static_env(&cloud), &upload_config(&cloud, ""));
    let event = record(&d, 27).await;
    // Cut the connection mid-fragment five times, spread over the event.
    for k in 1..=5u64 {
        let fake = &cloud.fake;
        assert!(
            fake.wait(Duration::from_secs(30), |f| unique(&f.persisted()).len()
                as u64
                >= 4 * k)
                .await,
            "fragments persist while the event is live: {:?}",
            fake.errors()
        );
        fake.drop_mid_fragment(1);
    }
    let (start, frames, states) = settled(&d, &event, Duration::from_secs(60)).await;
    assert_eq!(states, ["uploaded"]);
    let n = assert_complete(&cloud.fake, start, frames);
    assert!(
        n >= 30,
        "a 30 s event at one keyframe a second: {n} fragments"
    );
    assert!(cloud.fake.connections() >= 6, "reconnected after every cut");
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
    assert_eq!(metric(&d, "edgecam_upload_backlog_fragments"), 0.0);
    assert!(metric(&d, "edgecam_fragments_persisted_total") >= n as f64);
    // Live fragments: capture → PERSISTED within a GOP and a bit.
    assert!(metric(&d, "edgecam_upload_latency_seconds_count") >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_uploads_every_gop_without_an_event() {
    let cloud = cloud().await;
    let config = upload_config(&cloud, "").replace(
        "[upload]\nenabled = true\n",
        "[upload]\nenabled = true\nmode = \"continuous\"\n",
    );
    let d = start(&static_env(&cloud), &config);
    let fake = &cloud.fake;
    assert!(
        fake.wait(Duration::from_secs(20), |f| unique(&f.persisted()).len()
            >= 6)
            .await,
        "GOPs go up with no event: {:?}",
        fake.errors()
    );
    let fragments = unique(&fake.persisted());
    let mut last = 0;
    for f in fragments.values() {
        assert!(f.timecode_ms > last && f.keyframes >= 1, "{f:?}");
        assert!(f.frames >= 10, "whole GOPs of a second: {f:?}");
        last = f.last_frame_ms;
    }
    // The daemon counts an ack once it has read it, a moment after the fake sent it.
    assert!(
        poll_until(Duration::from_secs(5), || metric(
            &d,
            "edgecam_fragments_persisted_total"
        ) >= 6.0)
        .await
    );
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fragment_is_skipped_and_an_internal_error_resends() {
    let cloud = cloud().await;
    let d = start(&static_env(&cloud), &upload_config(&cloud, ""));
    let event = record(&d, 9).await;
    let fake = &cloud.fake;
    assert!(
        fake.wait(Duration::from_secs(20), |f| !f.persisted().is_empty())
            .await
    );
    fake.fail_next(4006);
    assert!(
        fake.wait(Duration::from_secs(20), |f| f.acks_sent("ERROR") >= 1)
            .await,
        "the fake refused one fragment"
    );
    let connections = fake.connections();
    fake.fail_next(5000);
    assert!(
        fake.wait(Duration::from_secs(20), |f| f.acks_sent("ERROR") >= 2)
            .await
    );
    let (start, frames, states) = settled(&d, &event, Duration::from_secs(60)).await;
    assert_eq!(states, ["failed"], "one fragment was refused for good");
    assert!(
        fake.connections() > connections,
        "5000 means reconnect and resend"
    );
    assert!(fake.connections() <= connections + 2, "no reconnect loop");
    assert_eq!(
        metric(&d, "edgecam_upload_errors_total{code=\"4006\"}"),
        1.0
    );
    assert_eq!(
        metric(&d, "edgecam_upload_errors_total{code=\"5000\"}"),
        1.0
    );
    // The refused fragment is the only one missing; the one after the 5000 came back.
    let index = Index::open(&d.data().join(INDEX_FILE)).await.unwrap();
    let skipped: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM fragments WHERE state = 'skipped' AND error_code = 4006",
    )
    .fetch_one(index.pool())
    .await
    .unwrap();
    assert_eq!(skipped, 1);
    let refused: i64 = sqlx::query_scalar("SELECT frames FROM fragments WHERE state = 'skipped'")
        .fetch_one(index.pool())
        .await
        .unwrap();
    let unique = unique(&fake.persisted());
    let persisted: usize = unique.values().map(|f| f.frames).sum();
    assert_eq!(persisted as u64 + refused as u64, frames);
    assert_eq!(*unique.keys().next().unwrap(), start);
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_expiring_mid_stream_are_refreshed() {
    let cloud = cloud().await;
    let iot = FakeIot::start(&cloud.pki, THING).await;
    *iot.lifetime.lock().unwrap() = Duration::from_secs(8);
    cloud.fake.accept_tokens(iot.token_expiry());
    let leaf = support::mosquitto::client_leaf(&cloud.pki, THING);
    let aws = format!(
        "credentials = \"iot\"\nthing_name = \"{THING}\"\niot_credentials_endpoint = \"{}\"\n\
         role_alias = \"{ROLE_ALIAS}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        iot.host,
        cloud.pki.ca_pem.display(),
        leaf.cert.display(),
        leaf.key.display()
    );
    // No AWS keys in the environment: only the IoT provider can sign.
    let env: Vec<(&'static str, String)> = static_env(&cloud)
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("AWS_ACCESS")
                && !k.starts_with("AWS_SECRET")
                && *k != "AWS_SESSION_TOKEN"
        })
        .collect();
    let d = start(&env, &upload_config(&cloud, &aws));
    let event = record(&d, 20).await;
    let (start, frames, states) = settled(&d, &event, Duration::from_secs(60)).await;
    assert_eq!(states, ["uploaded"]);
    assert_complete(&cloud.fake, start, frames);
    assert!(
        iot.fetches() >= 3,
        "refreshed before each expiry: {}",
        iot.fetches()
    );
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_resumes_where_it_stopped() {
    let cloud = cloud().await;
    let mut d = start(&static_env(&cloud), &upload_config(&cloud, ""));
    let event = record(&d, 30).await;
    let fake = &cloud.fake;
    assert!(
        fake.wait(Duration::from_secs(30), |f| unique(&f.persisted()).len()
            >= 3)
            .await
    );
    // KVS stops acknowledging: a backlog builds up in the index.
    fake.set_persist_delay(Duration::from_secs(3600));
    let persisted_before = fake.persisted().len();
    let before = unique(&fake.persisted());
    assert!(
        support::poll_until(Duration::from_secs(20), || {
            metric(&d, "edgecam_upload_backlog_fragments") >= 6.0
        })
        .await,
        "a backlog builds up while KVS does not persist"
    );
    // Power cut mid-event: the clip is recovered from disk at the next start, and the
    // fragments not persisted are read back from the file.
    d.signal("-KILL");
    fake.set_persist_delay(Duration::ZERO);
    tokio::task::block_in_place(|| d.restart());
    let (start, frames, states) = settled(&d, &event, Duration::from_secs(60)).await;
    assert_eq!(states, ["uploaded"]);
    assert_complete(fake, start, frames);
    // Nothing persisted before the backlog was sent again.
    let again = fake.persisted()[persisted_before..]
        .iter()
        .filter(|f| before.contains_key(&f.timecode_ms))
        .count();
    assert_eq!(
        again, 0,
        "fragments persisted before the restart were resent"
    );
    assert_eq!(
        metric(&d, "edgecam_upload_silent_fragments_total"),
        0.0,
        "the sound of fragments read back from the file came from the file"
    );
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_up_with_its_sound_in_every_fragment() {
    let cloud = cloud().await;
    let d = start(&static_env(&cloud), &upload_config(&cloud, ""));
    let event = record(&d, 4).await;
    let (start, frames, states) = settled(&d, &event, Duration::from_secs(40)).await;
    assert_eq!(states, ["uploaded"]);
    assert_complete(&cloud.fake, start, frames);
    let fragments = unique(&cloud.fake.persisted());
    for f in fragments.values() {
        // A 1 s GOP holds about 47 AAC frames (1024 samples at 48 kHz); the last GOP of
        // a clip may be shorter.
        assert!(f.audio_frames >= 1, "{f:?}");
    }
    let sound: usize = fragments.values().map(|f| f.audio_frames).sum();
    let seconds = fragments.len() as f64;
    assert!(
        sound as f64 >= 40.0 * (seconds - 1.0),
        "{sound} AAC frames in {seconds} one-second fragments"
    );
    // What went over the wire, read by independent tools: two tracks, clean decoding.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("putmedia.mkv");
    std::fs::write(&path, cloud.fake.body(1)).unwrap();
    let info = std::process::Command::new("mkvinfo")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("Codec ID: V_MPEG4/ISO/AVC"), "{text}");
    assert!(text.contains("Codec ID: A_AAC"), "{text}");
    support::decodes_silently(&path);
    assert_eq!(metric(&d, "edgecam_upload_silent_fragments_total"), 0.0);
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_clock_an_hour_off_signs_with_the_services_time() {
    // The service's clock is an hour ahead of the camera's (a camera that has not synced
    // its clock yet): the first PutMedia is refused as "Signature expired", and the
    // daemon learns the offset from the refusal's Date and signs with it.
    let cloud = cloud().await;
    cloud.fake.set_clock_ahead(Duration::from_secs(3600));
    let d = start(&static_env(&cloud), &upload_config(&cloud, ""));
    record(&d, 3).await;
    let fake = &cloud.fake;
    assert!(
        fake.wait(Duration::from_secs(30), |f| !f.persisted().is_empty())
            .await,
        "fragments go up once the clock is corrected: {:?}",
        fake.errors()
    );
    let errors = fake.errors();
    assert!(
        errors.iter().any(|e| e.contains("Signature expired")),
        "the first attempt was refused: {errors:?}"
    );
    assert!(
        errors.len() <= 2,
        "corrected at once, no refusal loop: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_images_are_set_up_asked_for_and_fetched_for_an_event() {
    let cloud = cloud().await;
    // moto has no image or notification calls: a fake control plane in front of it.
    let control = FakeControl::start(&cloud.moto.url, "eu-west-1").await;
    let topic = "arn:aws:sns:eu-west-1:123456789012:porch-events";
    let config = format!(
        "{}images_s3_uri = \"s3://porch-images/front\"\nimages_interval_ms = 500\n\
         images_width = 320\nimages_quality = 70\nsns_topic_arn = \"{topic}\"\n",
        upload_config(&cloud, "").replace(&cloud.moto.url, &control.url)
    );
    let env = static_env(&cloud);
    let d = start(&env, &config);
    let event = record(&d, 3).await;
    let (start_ms, frames, states) = settled(&d, &event, Duration::from_secs(40)).await;
    assert_eq!(states, ["uploaded"]);
    assert_complete(&cloud.fake, start_ms, frames);

    // The stream is configured with exactly the configured values.
    let set = control.calls("UpdateImageGenerationConfiguration");
    assert_eq!(set.len(), 1, "{:?}", control.errors());
    assert_eq!(set[0]["StreamName"], STREAM);
    let c = &set[0]["ImageGenerationConfiguration"];
    assert_eq!(c["Status"], "ENABLED");
    assert_eq!(c["ImageSelectorType"], "PRODUCER_TIMESTAMP");
    assert_eq!(c["DestinationConfig"]["Uri"], "s3://porch-images/front");
    assert_eq!(c["DestinationConfig"]["DestinationRegion"], "eu-west-1");
    assert_eq!(c["SamplingInterval"], 500);
    assert_eq!(c["Format"], "JPEG");
    assert_eq!(c["FormatConfig"]["JPEGQuality"], "70");
    assert_eq!(c["WidthPixels"], 320);
    assert!(
        c.get("HeightPixels").is_none(),
        "the height follows the aspect ratio"
    );
    let notify = control.calls("UpdateNotificationConfiguration");
    assert_eq!(notify.len(), 1);
    assert_eq!(
        notify[0]["NotificationConfiguration"]["DestinationConfig"]["Uri"],
        topic
    );
    assert_eq!(control.errors(), Vec::<String>::new());

    // Every fragment asks for images; the clip's first also for a notification.
    let fragments = unique(&cloud.fake.persisted());
    let has = |f: &Fragment, name: &str| f.tags.iter().any(|(n, _)| n == name);
    for f in fragments.values() {
        assert!(has(f, "AWS_KINESISVIDEO_IMAGE_GENERATION"), "{f:?}");
        assert!(has(f, "EDGECAM_CLIP"), "{f:?}");
    }
    let notified: Vec<bool> = fragments
        .values()
        .map(|f| has(f, "AWS_KINESISVIDEO_NOTIFICATION"))
        .collect();
    assert!(notified[0], "the first fragment notifies");
    assert!(
        !notified[1..].contains(&true),
        "only the first: {notified:?}"
    );

    // `edgecam playback --images` fetches the event's pictures with GetImages.
    let out_dir = d.dir.path().join("images");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"));
    cmd.args(["--config", d.config.to_str().unwrap(), "playback", &event])
        .args(["--images", "--out", out_dir.to_str().unwrap()])
        .envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // The event's range (pre-roll to end) at one image per 500 ms.
    assert!(files.len() >= 8, "{} images: {stdout}", files.len());
    for f in &files {
        assert_eq!(f.extension().unwrap(), "jpg");
        assert_eq!(support::codec_names(f), "mjpeg");
    }
    assert!(cloud.fake.calls("GetImages") >= 1);
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_boots_in_the_past_records_on_the_set_clock_and_uploads_after() {
    let cloud = cloud().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("faketime");
    // A camera without a real-time clock: it boots about 55 years in the past.
    std::fs::write(&clock, "-20000d\n").unwrap();
    let mut env = static_env(&cloud);
    env.extend(support::faketime_env(&clock));
    // Events go to a broker too: their messages must carry the set clock's times.
    let broker = Broker::start(dir.path(), &cloud.pki);
    let observer = Observer::start(&broker, &cloud.pki, &["edgecam/porch-cam/#"]).await;
    let client = client_leaf(&cloud.pki, THING);
    let mqtt = broker.daemon_config(&cloud.pki, &client, THING, "");
    let d = start(&env, &format!("{}{mqtt}", upload_config(&cloud, "")));
    let event = record(&d, 8).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cloud.fake.connections(),
        0,
        "nothing goes up while the clock is not set"
    );
    // NTP sets the clock, mid-event.
    std::fs::write(&clock, "+0\n").unwrap();
    let set_at = chrono::Utc::now();
    let (start_ms, frames, states) = settled(&d, &event, Duration::from_secs(60)).await;
    assert_eq!(states, ["uploaded"]);

    // The event and its clip are on the set clock, and the event lasted what it was
    // asked to (its deadline moved with the clock instead of passing at once).
    let index = Index::open(&d.data().join(INDEX_FILE)).await.unwrap();
    let (started, ended) = index.event_range(&event).await.unwrap().unwrap();
    index.close().await;
    let set_ms = set_at.timestamp_millis() as u64;
    assert!(
        (set_ms - 15_000..set_ms).contains(&(started.timestamp_millis() as u64)),
        "the event started {started}, shortly before the clock was set at {set_at}"
    );
    let lasted = (ended - started).num_milliseconds();
    assert!(
        (8_000..13_000).contains(&lasted),
        "the event lasted {lasted} ms (8 s asked, plus pre-roll and post-roll)"
    );
    assert!(
        (set_ms - 20_000..set_ms).contains(&start_ms),
        "the clip starts on the set clock: {start_ms}"
    );
    // What went up: every frame, on the set clock, in order (assert_complete checks
    // timecodes increase and start at the clip's start).
    assert_complete(&cloud.fake, start_ms, frames);
    for f in cloud.fake.persisted() {
        assert!(
            f.timecode_ms > 1_790_000_000_000,
            "a fragment from before the clock was set went up as {}",
            f.timecode_ms
        );
    }
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
    // The event's messages, `start` (queued in 1972) included, carry the set clock's
    // times, and its `end` says when it really started.
    let msgs = observer
        .wait("edgecam/porch-cam/events", Duration::from_secs(20), |m| {
            m.iter().any(|m| m.json()["type"] == "end")
        })
        .await;
    let types: Vec<Value> = msgs.iter().map(|m| m.json()["type"].clone()).collect();
    assert!(
        types.contains(&"start".into()) && types.contains(&"end".into()),
        "{types:?}"
    );
    for m in &msgs {
        let text = m.text();
        assert!(
            !text.contains("\"1972-"),
            "a message with a time of before: {text}"
        );
        let v = m.json();
        assert_eq!(v["event_id"], event.as_str());
        let at = chrono::DateTime::parse_from_rfc3339(v["started_at"].as_str().unwrap()).unwrap();
        // The clips start with the pre-roll, 2 s before the event.
        let after_pre_roll = (at.to_utc() - started).num_milliseconds();
        assert!((1_500..3_000).contains(&after_pre_roll), "{text}");
    }
    let starts: std::collections::BTreeSet<String> = msgs
        .iter()
        .map(|m| m.json()["started_at"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "every message has the same start: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_video_waits_on_disk_through_a_kill_and_goes_up_after() {
    let cloud = cloud().await;
    let config = upload_config(&cloud, "").replace(
        "[upload]\nenabled = true\n",
        "[upload]\nenabled = true\nmode = \"continuous\"\ncontinuous_buffer_mb = 64\n",
    );
    let fake = &cloud.fake;
    // KVS takes the video but never says PERSISTED: it all waits.
    fake.set_persist_delay(Duration::from_secs(3600));
    let mut d = start(&static_env(&cloud), &config);
    assert!(
        support::poll_until(Duration::from_secs(30), || {
            metric(&d, "edgecam_upload_backlog_fragments") >= 6.0
        })
        .await,
        "a backlog builds up"
    );
    let ring = d.data().join("continuous");
    let on_disk = std::fs::read_dir(&ring).unwrap().count();
    assert!(on_disk >= 6, "{on_disk} GOP files on disk");
    // Power cut: memory is gone; the disk is not.
    d.signal("-KILL");
    let killed_ms = chrono::Utc::now().timestamp_millis() as u64;
    assert!(fake.persisted().is_empty());
    fake.set_persist_delay(Duration::ZERO);
    tokio::task::block_in_place(|| d.restart());
    assert!(
        fake.wait(Duration::from_secs(40), |f| {
            unique(&f.persisted())
                .keys()
                .filter(|t| **t < killed_ms)
                .count()
                >= on_disk - 1
        })
        .await,
        "the GOPs from before the kill go up: {:?}",
        unique(&fake.persisted()).keys().collect::<Vec<_>>()
    );
    let fragments = unique(&fake.persisted());
    let mut last = 0;
    for f in fragments.values() {
        assert!(f.timecode_ms > last && f.keyframes >= 1, "{f:?}");
        last = f.last_frame_ms;
    }
    // Once persisted, their files go.
    assert!(
        support::poll_until(Duration::from_secs(20), || {
            std::fs::read_dir(&ring).map_or(0, |r| r.count()) <= 3
        })
        .await,
        "persisted GOPs leave the disk"
    );
    assert_eq!(fake.errors(), Vec::<String>::new());
}

/// What the KVS stream carries is masked too: the PutMedia body, decoded as a player
/// decodes the stream, is black behind the privacy mask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_pixels_are_black_in_the_kvs_stream() {
    let cloud = cloud().await;
    let pipelines = tempfile::tempdir().unwrap();
    crate::privacy::write_bars_pipeline(pipelines.path());
    let env = static_env(&cloud);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = pipelines.path().to_owned();
    let upload = upload_config(&cloud, "");
    let d = tokio::task::block_in_place(|| {
        Daemon::start_env(&env, |t| {
            format!("{}\n{upload}", crate::privacy::bars_masked(&t, &dir))
        })
    });
    let event = record(&d, 2).await;
    let (_, frames, states) = settled(&d, &event, Duration::from_secs(40)).await;
    assert_eq!(states, ["uploaded"]);
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), cloud.fake.body(1)).unwrap();
    let source = format!(
        "filesrc location=\"{}\" ! matroskademux ! h264parse ! avdec_h264",
        body.path().display()
    );
    let decoded = tokio::task::block_in_place(|| crate::support::photos::decode_all(&source));
    assert!(
        decoded.len() as u64 >= frames.min(15),
        "{} of {frames} frames decoded from the stream",
        decoded.len()
    );
    for (i, f) in decoded.iter().enumerate() {
        crate::privacy::check(&format!("KVS frame {i}"), f, 40);
    }
}

/// Each fragment of an event the detector opened names its labels, so cloud playback
/// can find every fragment with a person in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_of_a_person_event_are_tagged_with_her_label() {
    let cloud = cloud().await;
    let mut env = static_env(&cloud);
    // The test scene starts 34 s into its cycle: the person walks at 6-16 s.
    env.push(("EDGECAM_SCENE_OFFSET_S", "34".into()));
    let config = format!(
        "{}[detect]\nenabled = true\nmodel = \"{}\"\nlabels = [\"person\"]\nmin_scores = {{ person = 0.2 }}\n",
        // The detector looks only while something moves.
        upload_config(&cloud, "").replace("[motion]\nenabled = false\n", ""),
        crate::support::photos::model().display()
    );
    let _d = start(&env, &config);
    let tagged = |f: &Fragment| {
        f.tags
            .iter()
            .any(|(n, v)| n == "EDGECAM_LABELS" && v == "person")
    };
    let found = cloud
        .fake
        .wait(Duration::from_secs(50), |fake| {
            fake.persisted().iter().any(tagged)
        })
        .await;
    let fragments = cloud.fake.persisted();
    assert!(found, "no fragment tagged with the person: {fragments:?}");
    assert_eq!(cloud.fake.errors(), Vec::<String>::new());
}
