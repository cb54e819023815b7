//! Upload benchmark (prints a table): capture → PERSISTED latency of live event fragments,
//! and how fast an offline backlog drains, against the fake PutMedia endpoint on
//! loopback (the stream set up on `moto_server`). Keyframe every 2 s (the default).
//!
//! `cargo bench --bench upload`

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::Daemon;
use support::moto::Moto;
use support::pki::Pki;
use support::putmedia_fake::FakePutMedia;
use support::sigv4;

const STREAM: &str = "bench-cam";
const LIVE_EVENT_S: u32 = 40;
const BACKLOG_EVENT_S: u32 = 90;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn config(moto: &Moto, data_url: &str) -> String {
    format!(
        "[events]\npre_roll_s = 2.0\npost_roll_s = 1.0\n[motion]\nenabled = false\n\
         [aws]\nregion = \"eu-west-1\"\nendpoint_url = \"{}\"\ndata_endpoint_url = \"{data_url}\"\n\
         [upload]\nenabled = true\nstream_name = \"{STREAM}\"\n",
        moto.url
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn record(d: &Daemon, duration_s: u32) {
    let (status, reply) = d.command(&format!(
        r#"{{"command":"record","duration_s":{duration_s}}}"#
    ));
    assert_eq!(status, 200, "{reply}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fake = FakePutMedia::start(&pki, "eu-west-1").await;
    fake.add_stream(STREAM);
    let moto = Moto::start();
    let env = sigv4::daemon_env(&pki.ca_pem);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gop2 = |t: String| t.replace("keyframe_interval_s = 1", "keyframe_interval_s = 2");

    // 1. Live: latency from a fragment's first frame to its PERSISTED ack.
    let extra = config(&moto, &fake.url);
    let d = tokio::task::block_in_place(|| {
        Daemon::start_env(&env, |t| format!("{}\n{extra}", gop2(t)))
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    record(&d, LIVE_EVENT_S);
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let until = Instant::now() + Duration::from_secs(u64::from(LIVE_EVENT_S) + 15);
    while Instant::now() < until {
        let t = now_ms();
        for f in fake.persisted() {
            seen.entry(f.timecode_ms).or_insert(t);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut latency: Vec<f64> = seen
        .iter()
        .map(|(tc, at)| at.saturating_sub(*tc) as f64 / 1000.0)
        .collect();
    latency.sort_by(f64::total_cmp);
    let live_fragments = latency.len();
    drop(d);

    // 2. Backlog: an event recorded while KVS is unreachable, then the endpoint is back.
    let closed = format!("https://127.0.0.1:{}", support::free_port());
    let extra = config(&moto, &closed);
    let mut d = tokio::task::block_in_place(|| {
        Daemon::start_env(&env, |t| format!("{}\n{extra}", gop2(t)))
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    record(&d, BACKLOG_EVENT_S);
    tokio::time::sleep(Duration::from_secs(u64::from(BACKLOG_EVENT_S) + 6)).await;
    let backlog = support::metric(d.addr, "edgecam_upload_backlog_fragments");
    d.signal("-TERM");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace(&closed, &fake.url)).unwrap();
    let persisted_before = fake.persisted().len();
    let started = Instant::now();
    tokio::task::block_in_place(|| d.restart());
    let mut drained = None;
    while started.elapsed() < Duration::from_secs(120) {
        if support::metric(d.addr, "edgecam_upload_backlog_fragments") == 0.0
            && fake.persisted().len() > persisted_before
        {
            drained = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = &fake.persisted()[persisted_before..];
    let video_ms: u64 = new
        .iter()
        .map(|f| f.last_frame_ms - f.timecode_ms + 67)
        .sum();
    let drained = drained.expect("the backlog drained within 2 min");
    let first_connect_to_done = drained.as_secs_f64();

    println!();
    println!("upload benchmark (320x240 @ 15 fps, keyframe every 2 s, loopback fake KVS)");
    println!("{:<52} {:>12}", "measure", "value");
    println!(
        "{:<52} {:>12}",
        "live fragments (one GOP each)", live_fragments
    );
    println!(
        "{:<52} {:>10.2} s",
        "capture -> PERSISTED p50",
        percentile(&latency, 0.50)
    );
    println!(
        "{:<52} {:>10.2} s",
        "capture -> PERSISTED p99",
        percentile(&latency, 0.99)
    );
    println!(
        "{:<52} {:>10.2} s",
        "capture -> PERSISTED max",
        latency.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "{:<52} {:>12}",
        "backlog before restart (GOP fragments)", backlog
    );
    println!(
        "{:<52} {:>10.1} s",
        "backlog video sent",
        video_ms as f64 / 1000.0
    );
    println!(
        "{:<52} {:>12}",
        "backlog fragments sent (up to 10 s each)",
        new.len()
    );
    println!(
        "{:<52} {:>10.2} s",
        "restart -> backlog drained (incl. daemon start)", first_connect_to_done
    );
    println!(
        "{:<52} {:>10.1} x",
        "drain speed (video time / wall time)",
        video_ms as f64 / 1000.0 / first_connect_to_done
    );
    assert!(fake.errors().is_empty(), "{:?}", fake.errors());
}
