//! Audio/video offset ("lip sync"), measured from outside on loopback; prints a table
//! (run with `make bench`, or `cargo bench --bench av_sync -- --quick`).
//!
//! A source whose picture flashes white and whose sound beeps at the same instants,
//! once a second, reaches the daemon over RTP/UDP as an IP camera's would (the picture
//! encoded beforehand, so both leave the source at their true times). Then:
//!
//! 1. a webrtc-rs viewer decodes both tracks, finds each flash and beep, and puts them
//!    on one clock through the daemon's RTCP sender reports, as a lip-syncing player
//!    does: the difference is the offset a viewer sees;
//! 2. a clip of the same source is decoded with GStreamer (qtdemux) and each beep's time
//!    in the file compared with its flash's.
//!
//! Positive offsets mean the sound comes after the picture. Target: |offset| ≤ 40 ms.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use support::daemon::Daemon;
use support::sync_probe::{self, Marks};
use support::viewer::Viewer;

const FPS: u64 = 15;
const WIDTH: usize = 640;
const HEIGHT: usize = 360;
/// The source starts sending this long after its pipeline starts.
const LEAD: Duration = Duration::from_millis(500);
const RATE: u64 = 48_000;
/// Sound buffers of 20 ms.
const CHUNK: u64 = 960;

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn launch(text: &str) -> gst::Pipeline {
    gst::parse::launch(text)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

fn element<T: IsA<gst::Element>>(p: &gst::Pipeline, name: &str) -> T {
    p.by_name(name).unwrap().downcast::<T>().unwrap()
}

/// `seconds` of the picture, white on every whole second and dark otherwise, as H.264
/// access units with their times.
fn encode_picture(seconds: u64) -> Vec<(gst::ClockTime, gst::Buffer)> {
    let p = launch(&format!(
        "appsrc name=src format=time \
           caps=video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} bframes=0 \
         ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
         ! appsink name=out sync=false",
        FPS * 2
    ));
    let src: gst_app::AppSrc = element(&p, "src");
    let out: gst_app::AppSink = element(&p, "out");
    p.set_state(gst::State::Playing).unwrap();
    let luma = WIDTH * HEIGHT;
    let pusher = std::thread::spawn(move || {
        for i in 0..FPS * seconds {
            let y = if i % FPS == 0 { 235 } else { 40 };
            let mut frame = vec![y; luma];
            frame.resize(luma * 3 / 2, 128);
            let mut b = gst::Buffer::from_mut_slice(frame);
            let t = gst::ClockTime::from_nseconds(i * 1_000_000_000 / FPS);
            b.get_mut().unwrap().set_pts(t);
            src.push_buffer(b).unwrap();
        }
        let _ = src.end_of_stream();
    });
    let mut aus = Vec::new();
    while let Ok(s) = out.pull_sample() {
        let mut b = s.buffer_owned().unwrap();
        b.make_mut().set_dts(gst::ClockTime::NONE);
        aus.push((b.pts().unwrap(), b));
    }
    // x264enc moves its times 1000 hours on (room for B-frames' decode times).
    let first = aus.first().map_or(gst::ClockTime::ZERO, |(t, _)| *t);
    for (t, _) in &mut aus {
        *t -= first;
    }
    pusher.join().unwrap();
    p.set_state(gst::State::Null).unwrap();
    aus
}

/// 20 ms of sound starting at sample `n`: a 1 kHz beep in the first 50 ms of every
/// second, silence otherwise (S16BE, as RTP L16 carries it).
fn sound(n: u64) -> Vec<u8> {
    (n..n + CHUNK)
        .flat_map(|i| {
            let in_second = i % RATE;
            let v = if in_second < RATE / 20 {
                let t = in_second as f64 / RATE as f64;
                (f64::sin(2.0 * std::f64::consts::PI * 1000.0 * t) * 16_000.0) as i16
            } else {
                0
            };
            v.to_be_bytes()
        })
        .collect()
}

/// Sends the picture and the sound over RTP to the two ports, each buffer at its time.
fn start_source(
    aus: Vec<(gst::ClockTime, gst::Buffer)>,
    seconds: u64,
    video: u16,
    audio: u16,
) -> gst::Pipeline {
    let p = launch(&format!(
        "appsrc name=v is-live=true format=time max-bytes=0 \
           caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! rtph264pay config-interval=-1 pt=96 \
         ! udpsink host=127.0.0.1 port={video} sync=true \
         appsrc name=a is-live=true format=time max-bytes=0 \
           caps=audio/x-raw,format=S16BE,layout=interleaved,rate={RATE},channels=1 \
         ! rtpL16pay pt=97 ! udpsink host=127.0.0.1 port={audio} sync=true"
    ));
    let v: gst_app::AppSrc = element(&p, "v");
    let a: gst_app::AppSrc = element(&p, "a");
    p.set_state(gst::State::Playing).unwrap();
    let lead = gst::ClockTime::from_nseconds(LEAD.as_nanos() as u64);
    for (pts, mut b) in aus {
        b.make_mut().set_pts(lead + pts);
        v.push_buffer(b).unwrap();
    }
    for k in 0..seconds * RATE / CHUNK {
        let mut b = gst::Buffer::from_mut_slice(sound(k * CHUNK));
        let t = gst::ClockTime::from_nseconds(k * CHUNK * 1_000_000_000 / RATE);
        let m = b.get_mut().unwrap();
        m.set_pts(lead + t);
        m.set_duration(gst::ClockTime::from_nseconds(CHUNK * 1_000_000_000 / RATE));
        a.push_buffer(b).unwrap();
    }
    p
}

/// A pipeline file reading the two RTP streams: the picture passed through (as the
/// `rtsp` file does), the sound encoded as the shipped files encode it.
fn pipeline_file(dir: &Path, video: u16, audio: u16) {
    let text = format!(
        "udpsrc port={video} caps=\"application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96\"\n\
         ! rtph264depay ! h264parse config-interval=-1\n\
         ! video/x-h264,stream-format=byte-stream,alignment=au\n\
         ! appsink name=encoded sync=false max-buffers=8 drop=true\n\
         @audio\n\
         udpsrc port={audio} caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,encoding-params=(string)1,channels=1,payload=97\"\n\
         ! rtpL16depay ! audioconvert ! tee name=pcm\n\
         pcm. ! audioconvert ! audioresample ! opusenc bitrate=32000 frame-size=20 complexity=5\n\
         ! appsink name=opus sync=false async=false max-buffers=50 drop=true\n\
         pcm. ! audioconvert ! audioresample ! voaacenc bitrate=64000\n\
         ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw\n\
         ! appsink name=aac sync=false async=false max-buffers=50 drop=true\n"
    );
    std::fs::write(dir.join("udp-sync.pipeline"), text).unwrap();
}

/// Pairs each flash with the nearest beep (both in seconds); offsets in ms.
fn offsets(flashes: &[f64], beeps: &[f64]) -> Vec<f64> {
    flashes
        .iter()
        .filter_map(|f| {
            let b = beeps
                .iter()
                .min_by(|x, y| (*x - f).abs().total_cmp(&(*y - f).abs()))?;
            let d = (b - f) * 1000.0;
            (d.abs() < 400.0).then_some(d)
        })
        .collect()
}

fn viewer_offsets(m: &Marks) -> Vec<f64> {
    let flashes: Vec<f64> = m
        .flashes
        .iter()
        .filter_map(|&r| sync_probe::wall(&m.video_reports, r, 90_000.0))
        .collect();
    let beeps: Vec<f64> = m
        .beeps
        .iter()
        .filter_map(|&r| sync_probe::wall(&m.audio_reports, r, 48_000.0))
        .collect();
    offsets(&flashes, &beeps)
}

/// Flash and beep times (s) in a clip file, decoded with GStreamer.
fn clip_marks(path: &Path) -> (Vec<f64>, Vec<f64>) {
    let p = launch(&format!(
        "filesrc location={} ! qtdemux name=d \
         d.video_0 ! queue ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 \
           ! appsink name=v sync=false \
         d.audio_0 ! queue ! aacparse ! avdec_aac ! audioconvert \
           ! audio/x-raw,format=S16LE,channels=1 ! appsink name=a sync=false",
        path.display()
    ));
    let flashes = Arc::new(Mutex::new(Vec::new()));
    let beeps = Arc::new(Mutex::new(Vec::new()));
    let v: gst_app::AppSink = element(&p, "v");
    let a: gst_app::AppSink = element(&p, "a");
    let seen = Arc::clone(&flashes);
    let mut bright = true;
    v.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let b = sample.buffer().ok_or(gst::FlowError::Error)?;
                let t = b.pts().map_or(0.0, |t| t.nseconds() as f64 / 1e9);
                let m = b.map_readable().map_err(|_| gst::FlowError::Error)?;
                let luma = m.iter().step_by(64).map(|&x| f64::from(x)).sum::<f64>()
                    / (m.len() / 64).max(1) as f64;
                if luma > 128.0 && !bright {
                    seen.lock().unwrap().push(t);
                }
                bright = luma > 128.0;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let heard = Arc::clone(&beeps);
    let mut onsets = sync_probe::Onsets::default();
    a.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let b = sample.buffer().ok_or(gst::FlowError::Error)?;
                let rate = sample
                    .caps()
                    .and_then(|c| c.structure(0)?.get::<i32>("rate").ok())
                    .unwrap_or(48_000) as f64;
                let t0 = b.pts().map_or(0.0, |t| t.nseconds() as f64 / 1e9);
                let m = b.map_readable().map_err(|_| gst::FlowError::Error)?;
                for i in onsets.scan(m.as_slice()) {
                    heard.lock().unwrap().push(t0 + i as f64 / rate);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let _ = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    let f = flashes.lock().unwrap().clone();
    let b = beeps.lock().unwrap().clone();
    (f, b)
}

fn summary(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "no pairs found".into();
    }
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let worst = v.iter().map(|x| x.abs()).fold(0.0, f64::max);
    format!(
        "{median:>+6.1} ms median, {worst:.1} ms worst ({} pairs)",
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    gst::init().unwrap();
    let quick = std::env::args().any(|a| a == "--quick");
    let watch = if quick { 8 } else { 20 };
    let seconds = watch + 20;

    let (video, audio) = (free_udp_port(), free_udp_port());
    let dir = tempfile::tempdir().unwrap();
    pipeline_file(dir.path(), video, audio);
    let aus = encode_picture(seconds);
    let source = start_source(aus, seconds, video, audio);
    let d = Daemon::start_edited(|text| {
        let pipelines = support::repo().join("pipelines");
        let text = text.replace(
            &format!("pipeline_dir = \"{}\"", pipelines.display()),
            &format!(
                "pipeline = \"udp-sync\"\npipeline_dir = \"{}\"",
                dir.path().display()
            ),
        );
        format!(
            "{text}\n[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n\
             [events]\npre_roll_s = 1\npost_roll_s = 1\nmin_gap_s = 0\n"
        )
    });
    let started = Instant::now();
    let (viewer, probe) = Viewer::connect_probed(d.addr, "sync").await;
    let (status, _) = d.command(&format!(
        r#"{{"command":"record","duration_s":{}}}"#,
        watch.min(10)
    ));
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(watch)).await;
    let marks = probe.marks();
    viewer.close().await;

    // The clip: wait for it to be finished.
    let clip = loop {
        let (_, _, body) = support::http_get(d.addr, "/api/clips").unwrap();
        let clips: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        if let Some(c) = clips.into_iter().find(|c| c["status"] == "complete") {
            break d.data().join(c["path"].as_str().unwrap());
        }
        assert!(started.elapsed() < Duration::from_secs(seconds), "no clip");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (flashes, beeps) = clip_marks(&clip);
    let _ = source.set_state(gst::State::Null);

    println!("audio/video offset, a flash and a beep each second over RTP/UDP on loopback");
    println!("(sound after picture is positive; target |offset| <= 40 ms)");
    println!("{:<44} {:>44}", "measure", "value");
    println!(
        "{:<44} {:>44}",
        "at a viewer, through RTCP sender reports",
        summary(viewer_offsets(&marks))
    );
    println!(
        "{:<44} {:>44}",
        "in a clip (qtdemux, decoded times)",
        summary(offsets(&flashes, &beeps))
    );
    println!(
        "{:<44} {:>44}",
        "viewer saw",
        format!(
            "{} flashes, {} beeps, {}/{} sender reports",
            marks.flashes.len(),
            marks.beeps.len(),
            marks.video_reports.len(),
            marks.audio_reports.len()
        )
    );
}
