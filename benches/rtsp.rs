//! RTSP server benchmarks against the real daemon on loopback; prints a table (run with
//! `cargo bench --bench rtsp`, or `-- --quick`).
//!
//! 1. The daemon's CPU with 0, 1 and 4 RTSP clients (ffmpeg copying the stream to
//!    nothing, half over TCP, half over UDP), on the test pattern at 720p15 2 Mbit/s
//!    (its own x264 encode) and on an RTSP camera passed through (no encode); and, for
//!    comparison, with one WebRTC viewer instead.
//! 2. PLAY → first decoded frame at a GStreamer client (rtspsrc, latency 0) joining a
//!    media that already plays (mid-GOP, keyframes every 10 s), and starting a new one.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use support::daemon::Daemon;
use support::rtsp::RtspCamera;
use support::viewer::Viewer;

fn daemon(port: u16, camera: Option<&RtspCamera>, kis: u32) -> Daemon {
    Daemon::start_edited(|text| {
        let mut text = text
            .replace("width = 320", "width = 1280")
            .replace("height = 240", "height = 720")
            .replace("bitrate_kbps = 500", "bitrate_kbps = 2000")
            .replace(
                "keyframe_interval_s = 1",
                &format!("keyframe_interval_s = {kis}"),
            );
        if let Some(c) = camera {
            text = text.replace(
                "[camera]\n",
                &format!("[camera]\npipeline = \"rtsp\"\nurl = \"{}\"\n", c.url),
            );
        }
        format!(
            "{text}\n[rtsp]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
             [live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n"
        )
    })
}

fn url(port: u16) -> String {
    format!("rtsp://127.0.0.1:{port}/live")
}

fn reader(port: u16, tcp: bool) -> Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport"])
        .arg(if tcp { "tcp" } else { "udp" })
        .args(["-i", &url(port), "-c", "copy", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

async fn cpu_ms_per_s(pid: u32, window: Duration) -> f64 {
    let c0 = support::cpu_s(pid);
    tokio::time::sleep(window).await;
    (support::cpu_s(pid) - c0) * 1000.0 / window.as_secs_f64()
}

async fn cpu_rows(what: &str, camera: Option<&RtspCamera>, window: Duration) {
    let port = support::free_port();
    let d = daemon(port, camera, 2);
    let pid = d.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_ms_per_s(pid, window).await;
    println!("{:<56} {:>8.1} ms/s", format!("{what}: no client"), idle);
    let mut clients = vec![reader(port, true)];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let one = cpu_ms_per_s(pid, window).await;
    println!(
        "{:<56} {:>8.1} ms/s (+{:.1})",
        format!("{what}: 1 RTSP client"),
        one,
        one - idle
    );
    for i in 1..4 {
        clients.push(reader(port, i % 2 == 0));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let four = cpu_ms_per_s(pid, window).await;
    let sessions = support::metric(d.addr, "edgecam_rtsp_sessions");
    println!(
        "{:<56} {:>8.1} ms/s (+{:.1}; {sessions} sessions)",
        format!("{what}: 4 RTSP clients"),
        four,
        four - idle
    );
    for mut c in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut v = Viewer::connect(d.addr, "bench", None).await;
    v.expect_playing("viewer").await;
    let viewer = cpu_ms_per_s(pid, window).await;
    println!(
        "{:<56} {:>8.1} ms/s (+{:.1})",
        format!("{what}: 1 WebRTC viewer, no RTSP"),
        viewer,
        viewer - idle
    );
    v.close().await;
}

/// PLAY → first decoded frame at an rtspsrc client, ms.
fn first_frame_after_play(port: u16) -> Option<f64> {
    let pipeline = gst::parse::launch(&format!(
        "rtspsrc name=src location={} latency=0 protocols=tcp ! rtph264depay ! avdec_h264 \
         ! appsink name=out sync=false emit-signals=false",
        url(port)
    ))
    .ok()?
    .downcast::<gst::Bin>()
    .ok()?;
    // rtspsrc posts a progress message "Sending PLAY request" as it sends it.
    let played: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mark = Arc::clone(&played);
    pipeline.bus()?.set_sync_handler(move |_, message| {
        if let gst::MessageView::Progress(p) = message.view() {
            let (_, _, text) = p.get();
            if text.contains("PLAY") {
                mark.lock().unwrap().get_or_insert_with(Instant::now);
            }
        }
        gst::BusSyncReply::Pass
    });
    let sink = pipeline
        .by_name("out")?
        .downcast::<gstreamer_app::AppSink>()
        .ok()?;
    pipeline.set_state(gst::State::Playing).ok()?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(15));
    let got = Instant::now();
    let _ = pipeline.set_state(gst::State::Null);
    sample?;
    let play = (*played.lock().unwrap())?;
    Some(got.saturating_duration_since(play).as_secs_f64() * 1000.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    if times.is_empty() {
        println!("{what:<56} no frame");
        return;
    }
    println!(
        "{:<56} {:>8.0} ms p50, {:.0} ms p95, {:.0} ms max",
        format!("{what} ({})", times.len()),
        pct(&times, 0.5),
        pct(&times, 0.95),
        pct(&times, 1.0)
    );
}

async fn play_rows(runs: usize) {
    let port = support::free_port();
    let _d = daemon(port, None, 10);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A new media each time: the last client has gone, so the media starts again.
    let mut fresh = Vec::new();
    for _ in 0..runs {
        let t = tokio::task::spawn_blocking(move || first_frame_after_play(port))
            .await
            .ok()
            .flatten();
        fresh.extend(t);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report("PLAY → first frame, new media, GOP 10 s", fresh);
    // Joining a media another client keeps playing, at a random point of the GOP.
    let mut keep = reader(port, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut joined = Vec::new();
    for i in 0..runs {
        tokio::time::sleep(Duration::from_millis(300 + 137 * (i as u64 % 7))).await;
        let t = tokio::task::spawn_blocking(move || first_frame_after_play(port))
            .await
            .ok()
            .flatten();
        joined.extend(t);
    }
    report("PLAY → first frame, joining mid-GOP, GOP 10 s", joined);
    let _ = keep.kill();
    let _ = keep.wait();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    gst::init().expect("GStreamer");
    let quick = std::env::args().any(|a| a == "--quick");
    let (window, runs) = if quick {
        (Duration::from_secs(3), 5)
    } else {
        (Duration::from_secs(10), 20)
    };
    println!("RTSP server, 720p15 2 Mbit/s test pattern; passthrough from an RTSP camera");
    println!("{:<56} {:>12}", "measure", "value");
    cpu_rows("test pattern (x264 in the daemon)", None, window).await;
    let camera = RtspCamera::start("aac");
    cpu_rows("passthrough (RTSP camera, 320x240)", Some(&camera), window).await;
    play_rows(runs).await;
}
