//! Benchmarks of the capture backbone; prints tables (run with `make bench`).
//!
//! 1. Frame bus: cost per frame of `publish` and of the whole process (publisher plus
//!    subscriber threads) with 1 and 12 subscribers, at 1080p30-sized frames.
//! 2. The daemon's own CPU per second of video: the capture path with a passthrough
//!    H.264 source (no encode, paced at real time, as with an RTSP camera), and for
//!    context the whole process with the test pattern including its x264 encode.
//! 3. The audio path's CPU per second (the test pattern's audio part: Opus and AAC-LC of
//!    48 kHz mono), and its share of the video path's: with a viewer listening (both
//!    encodes, frames to a viewer's and the recorder's subscriptions); on an idle camera
//!    (the recorder takes AAC, nobody listens, so the Opus valve is shut), and the same
//!    with the valve taken out of the file (Opus encoded for nobody, as before the valve).
//!
//! Arguments: `--quick` for short runs; `bus`, `video` or `audio` to run only those
//! sections (`audio` alone also runs the test pattern's video, for the share).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use common::{cpu_time, encode_clip, passthrough};
use edgecam::capture::{
    self, template, AudioOutputs, Heartbeat, Outputs, PipelineSpec, TaskConfig,
};
use edgecam::config::{Audio, Camera};
use edgecam::media::{AnalysisBus, EncodedFrame, FrameBus};
use edgecam::metrics::{AudioCounters, CaptureCounters};
use gstreamer as gst;
use tokio_util::sync::CancellationToken;

/// 1080p30 at about 4 Mbit/s: 14 KB P-frames, a 120 KB keyframe every 2 s.
const P_FRAME: usize = 14 * 1024;
const I_FRAME: usize = 120 * 1024;
const GOP: usize = 60;

fn frames_1080p() -> Vec<EncodedFrame> {
    let key = Bytes::from(vec![0x65u8; I_FRAME]);
    let delta = Bytes::from(vec![0x41u8; P_FRAME]);
    (0..GOP * 4)
        .map(|i| EncodedFrame {
            data: if i % GOP == 0 {
                key.clone()
            } else {
                delta.clone()
            },
            pts: Duration::from_millis(i as u64 * 33),
            captured_at: Utc::now(),
            keyframe: i % GOP == 0,
            generation: 1,
        })
        .collect()
}

/// Publishes `count` frames to `subscribers` reader threads, one every `interval`
/// (zero: as fast as possible). Returns (publish ns/frame, process CPU ns/frame, dropped).
fn bus_run(subscribers: usize, count: usize, interval: Duration) -> (f64, f64, u64) {
    let bus = FrameBus::new("bench");
    let frames = frames_1080p();
    let readers: Vec<_> = (0..subscribers)
        .map(|i| {
            let mut sub = bus.subscribe(&format!("sub{i}"), 64);
            std::thread::spawn(move || {
                let mut bytes = 0usize;
                while let Some(f) = sub.blocking_recv() {
                    bytes += f.data.len() + usize::from(f.data[0]);
                }
                bytes
            })
        })
        .collect();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut publishing = Duration::ZERO;
    for i in 0..count {
        if !interval.is_zero() {
            let due = start + interval * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let t = Instant::now();
        bus.publish(frames[i % frames.len()].clone());
        publishing += t.elapsed();
    }
    let stats = bus.stats();
    drop(bus);
    for r in readers {
        r.join().unwrap();
    }
    let cpu = cpu_time() - cpu0;
    let dropped = stats.per_subscriber.iter().map(|(_, _, d)| d).sum();
    (
        publishing.as_nanos() as f64 / count as f64,
        cpu.as_nanos() as f64 / count as f64,
        dropped,
    )
}

/// Runs the capture task on `spec` with `subscribers` draining tasks for `seconds` of
/// wall time after a 1 s warm-up; returns (process CPU, frames captured) in the window.
fn capture_run(spec: PipelineSpec, fps: u32, subscribers: usize, seconds: u64) -> (Duration, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let frames = FrameBus::new("frames");
        let counters = CaptureCounters::default();
        let outputs = Outputs::new(
            frames.clone(),
            AnalysisBus::new("analysis"),
            counters.clone(),
            Heartbeat::new(Instant::now()),
        );
        for i in 0..subscribers {
            let mut sub = frames.subscribe(&format!("sub{i}"), 64);
            tokio::spawn(async move { while sub.recv().await.is_some() {} });
        }
        let cancel = CancellationToken::new();
        let cfg = TaskConfig {
            fps,
            stall_timeout: Duration::from_secs(10),
        };
        let (_handle, task) = capture::spawn(spec, cfg, outputs, cancel.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, n0) = (cpu_time(), counters.frames_captured.get());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (cpu, n) = (cpu_time() - cpu0, counters.frames_captured.get() - n0);
        cancel.cancel();
        let _ = task.await;
        (cpu, n)
    })
}

/// Runs an audio part for `seconds`, with a subscriber on the Opus bus (a viewer's) and
/// on the AAC bus (the recorder's) as asked: process CPU and the AAC frames it gave.
fn audio_run(spec: PipelineSpec, seconds: u64, (opus, aac): (bool, bool)) -> (Duration, u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let out = AudioOutputs::new(AudioCounters::default());
        let wanted = [(&out.opus, opus), (&out.aac, aac)];
        for bus in wanted.into_iter().filter(|b| b.1).map(|b| b.0) {
            let mut sub = bus.subscribe("bench", 64);
            tokio::spawn(async move { while sub.recv().await.is_some() {} });
        }
        let cancel = CancellationToken::new();
        let cfg = TaskConfig {
            fps: 15,
            stall_timeout: Duration::from_secs(10),
        };
        let (_state, task) = capture::spawn_audio(spec, cfg, out.clone(), cancel.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, n0) = (cpu_time(), out.counters.aac_frames.get());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (cpu, n) = (cpu_time() - cpu0, out.counters.aac_frames.get() - n0);
        cancel.cancel();
        let _ = task.await;
        (cpu, n)
    })
}

fn main() {
    gst::init().unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["bus", "video", "audio"].contains(a))
        .collect();
    let run = |section: &str| chosen.is_empty() || chosen.contains(&section);
    if run("bus") {
        bus_table(quick);
    }
    let seconds = if quick { 3 } else { 10 };
    let camera = Camera {
        pipeline_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines").into()),
        ..Camera::default()
    };
    let test_pattern = template::load(&camera).unwrap();
    let mut video_ms_per_s = None;
    if run("video") || run("audio") {
        println!();
        println!("daemon CPU per second of video ({seconds} s windows)");
        println!(
            "{:<58} {:>8} {:>10} {:>16}",
            "capture path", "frames", "CPU ms/s", "% of one core"
        );
    }
    if run("video") {
        passthrough_rows(seconds);
    }
    if run("video") || run("audio") {
        let (cpu, frames) = capture_run(test_pattern, camera.fps, 3, seconds);
        let ms_per_s = video_row(
            "test pattern 720p15 incl. x264 encode, analysis, JPEG",
            cpu,
            frames,
            camera.fps,
        );
        video_ms_per_s = Some(ms_per_s);
    }
    if run("audio") {
        audio_table(&camera, seconds, video_ms_per_s);
    }
}

/// Prints one row of the video table; returns its CPU ms per second of video.
fn video_row(label: &str, cpu: Duration, frames: u64, fps: u32) -> f64 {
    let video_s = frames as f64 / f64::from(fps);
    let ms_per_s = cpu.as_secs_f64() * 1000.0 / video_s.max(1e-9);
    println!(
        "{label:<58} {frames:>8} {ms_per_s:>10.1} {:>15.2}%",
        ms_per_s / 10.0
    );
    ms_per_s
}

fn bus_table(quick: bool) {
    println!(
        "frame bus, 1080p30-sized frames ({} KB P, {} KB I every {GOP})",
        P_FRAME / 1024,
        I_FRAME / 1024
    );
    println!(
        "{:<12} {:<24} {:>16} {:>22} {:>9}",
        "subscribers", "rate", "publish ns/frame", "process CPU ns/frame", "dropped"
    );
    let paced = if quick { 90 } else { 300 };
    let flood = if quick { 20_000 } else { 200_000 };
    for subs in [1, 12] {
        for (rate, count, interval) in [
            ("30 fps (real time)", paced, Duration::from_micros(33_333)),
            ("flood (max rate)", flood, Duration::ZERO),
        ] {
            let (publish, cpu, dropped) = bus_run(subs, count, interval);
            println!("{subs:<12} {rate:<24} {publish:>16.0} {cpu:>22.0} {dropped:>9}");
        }
    }
}

/// The passthrough source (no encode) at 1080p30: the daemon's own work.
fn passthrough_rows(seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.h264");
    encode_clip(&clip, seconds as u32 + 3);
    let spec = passthrough(&clip);
    for (label, subs) in [
        (
            "passthrough 1080p30 H.264, 3 subscribers (own work only)",
            3,
        ),
        ("passthrough 1080p30 H.264, 12 subscribers", 12),
    ] {
        let (cpu, frames) = capture_run(spec.clone(), 30, subs, seconds);
        video_row(label, cpu, frames, 30);
    }
}

fn audio_table(camera: &Camera, seconds: u64, video_ms_per_s: Option<f64>) {
    let audio = template::load_audio(camera, &Audio::default())
        .unwrap()
        .expect("the test pattern has an audio part");
    println!();
    println!("audio CPU per second of sound ({seconds} s windows; 48 kHz mono, Opus 32 kbit/s + AAC-LC 64 kbit/s)");
    println!(
        "{:<58} {:>10} {:>16} {:>14}",
        "audio path", "CPU ms/s", "% of one core", "% of video"
    );
    let without_valve = PipelineSpec {
        text: audio.text.replace("valve name=opus_valve drop=true ! ", ""),
        ..audio.clone()
    };
    assert_ne!(without_valve.text, audio.text, "the file has an Opus valve");
    for (label, spec, subscribed) in [
        (
            "a viewer listens: both encodes, to it and the recorder",
            &audio,
            (true, true),
        ),
        (
            "idle camera: AAC to the recorder, Opus valve shut",
            &audio,
            (false, true),
        ),
        (
            "idle camera without the valve (Opus for nobody)",
            &without_valve,
            (false, true),
        ),
    ] {
        let (cpu, aac_frames) = audio_run(spec.clone(), seconds, subscribed);
        let audio_s = aac_frames as f64 * 1024.0 / 48_000.0;
        let ms_per_s = cpu.as_secs_f64() * 1000.0 / audio_s.max(1e-9);
        let share = video_ms_per_s.map_or("-".to_string(), |v| {
            format!("{:.1}%", 100.0 * ms_per_s / v.max(1e-9))
        });
        println!(
            "{label:<58} {ms_per_s:>10.1} {:>15.2}% {share:>14}",
            ms_per_s / 10.0,
        );
    }
}
