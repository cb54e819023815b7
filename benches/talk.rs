//! Talk-back benchmark against the real daemon on loopback; prints a table (`make bench`,
//! or `cargo bench --bench talk -- --quick`).
//!
//! 1. Viewer → speaker latency: a webrtc-rs viewer holds the floor and sends bursts of a
//!    tone between silences (pre-encoded Opus, 20 ms packets); the latency of a burst is
//!    from the moment its first packet is handed to the viewer's WebRTC stack to the
//!    arrival of the first loud datagram from the camera's speaker sink (raw PCM over
//!    UDP). It includes the jitter buffer (`audio.talk_latency_ms`), decoding and the
//!    sink's clock; not the viewer's own capture and encode.
//! 2. Daemon CPU with one viewer watching, and with that viewer talking.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::tone::{opus_packets, Speaker};
use support::viewer::{Opts, Viewer};

fn daemon(speaker: &Speaker, latency_ms: u32) -> Daemon {
    Daemon::start_with(&format!(
        "[audio]\nspeaker = true\nspeaker_sink = \"{}\"\ntalk_latency_ms = {latency_ms}\n\
         [live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n",
        support::tone::speaker_sink(speaker.port)
    ))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn start_talking(v: &mut Viewer) {
    let before = v.seen.borrow().control.len();
    v.command(r#"{"command":"talk","action":"start"}"#).await;
    let seen = v
        .wait(Duration::from_secs(5), |s| s.control.len() > before)
        .await;
    assert_eq!(seen.control[before]["ok"], true, "{:?}", seen.control);
}

/// Latencies (ms) of `bursts` tone bursts.
async fn latencies(latency_ms: u32, bursts: usize) -> Vec<f64> {
    let speaker = Speaker::listen();
    let d = daemon(&speaker, latency_ms);
    let opts = Opts {
        talk: true,
        ..Opts::default()
    };
    let mut v = Viewer::connect_with(&Viewer::lan_url(d.addr, "talker"), opts).await;
    v.expect_playing("talker").await;
    start_talking(&mut v).await;
    let silence = opus_packets("silence", 440.0, 0.4);
    let burst = opus_packets("sine", 880.0, 0.2);
    let mut out = Vec::new();
    // A first burst opens the path (the pipeline's first buffers); not counted.
    for i in 0..=bursts {
        v.speak(&silence).await;
        let sent = v.speak(&burst).await;
        v.speak(&silence).await;
        let heard = speaker.first_loud_after(sent[0]);
        if i == 0 {
            continue;
        }
        match heard {
            Some(at) => out.push(at.duration_since(sent[0]).as_secs_f64() * 1000.0),
            None => eprintln!("burst {i}: not heard"),
        }
    }
    v.close().await;
    out.sort_by(f64::total_cmp);
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let bursts = if quick { 10 } else { 40 };
    println!("talk-back (viewer → speaker), {bursts} bursts each, loopback\n");
    println!("| talk_latency_ms | heard | p50 ms | p95 ms | max ms |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for latency in [60, 30] {
        let l = latencies(latency, bursts).await;
        if l.is_empty() {
            println!("| {latency} | 0/{bursts} | – | – | – |");
            continue;
        }
        println!(
            "| {latency} | {}/{bursts} | {:.0} | {:.0} | {:.0} |",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.95),
            l[l.len() - 1]
        );
    }

    let speaker = Speaker::listen();
    let d = daemon(&speaker, 60);
    let pid = d.child.id();
    let opts = Opts {
        talk: true,
        ..Opts::default()
    };
    let mut v = Viewer::connect_with(&Viewer::lan_url(d.addr, "cpu"), opts).await;
    v.expect_playing("cpu").await;
    let window = Duration::from_secs(if quick { 5 } else { 10 });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c0 = support::cpu_s(pid);
    tokio::time::sleep(window).await;
    let watching = (support::cpu_s(pid) - c0) * 1000.0 / window.as_secs_f64();
    start_talking(&mut v).await;
    let tone = opus_packets("sine", 880.0, window.as_secs_f64());
    let c0 = support::cpu_s(pid);
    let t0 = Instant::now();
    v.speak(&tone).await;
    let talking = (support::cpu_s(pid) - c0) * 1000.0 / t0.elapsed().as_secs_f64();
    println!("\n| daemon CPU (ms per s, 320×240 test pattern) | value |");
    println!("| --- | ---: |");
    println!("| one viewer watching | {watching:.1} |");
    println!("| the same viewer talking | {talking:.1} |");
    println!("| one talker costs | {:.1} |", talking - watching);
    v.close().await;
}
