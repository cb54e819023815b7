//! Live-view benchmarks against the real daemon on loopback; prints a table (run with
//! `make bench`, or `cargo bench --bench live -- --quick`).
//!
//! 1. Time to first frame (viewer's offer sent → first picture decoded by the viewer)
//!    over N connects, with keyframe intervals of 2 s and 10 s, without sound and with
//!    sound (the daemon's audio on, the viewer asking for it as a browser does).
//! 2. Daemon RSS with 0, 1 and 10 viewers (asking for sound, as browsers do), and per
//!    extra viewer.
//! 3. Daemon RSS after the first 10 and after all connect/disconnect cycles (flat?).
//! 4. Daemon CPU with 0, 1 and 10 viewers.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::viewer::Viewer;

/// 720p15 at 2 Mbit/s, like a default camera; loopback host candidates only.
fn daemon(kis: u32) -> Daemon {
    daemon_with(kis, true)
}

fn daemon_with(kis: u32, audio: bool) -> Daemon {
    Daemon::start_edited(|text| {
        let text = text
            .replace("width = 320", "width = 1280")
            .replace("height = 240", "height = 720")
            .replace("bitrate_kbps = 500", "bitrate_kbps = 2000")
            .replace(
                "keyframe_interval_s = 1",
                &format!("keyframe_interval_s = {kis}"),
            );
        format!(
            "{text}\n[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n\
             [audio]\nenabled = {audio}\n"
        )
    })
}

fn rss_mb(pid: u32) -> f64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What the open file descriptors are, by kind (socket, pipe, a file…), most first.
fn fd_kinds(pid: u32) -> String {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(e.path()).map_or("?".into(), |t| t.display().to_string());
        let kind = target
            .split_once(":[")
            .map_or(target.clone(), |(k, _)| k.to_owned());
        *kinds.entry(kind).or_default() += 1;
    }
    let mut v: Vec<_> = kinds.into_iter().collect();
    v.sort_by_key(|k| std::cmp::Reverse(k.1));
    v.iter()
        .take(4)
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn cpu_ms_per_s(pid: u32, window: Duration) -> f64 {
    let c0 = support::cpu_s(pid);
    tokio::time::sleep(window).await;
    (support::cpu_s(pid) - c0) * 1000.0 / window.as_secs_f64()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

async fn ttff(d: &Daemon, n: usize, sound: bool) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("t{i}");
        let mut v = if sound {
            Viewer::connect_with_audio(d.addr, &id).await
        } else {
            Viewer::connect(d.addr, &id, None).await
        };
        let seen = v
            .wait(Duration::from_secs(10), |s| s.first_frame.is_some())
            .await;
        out.push(seen.first_frame.unwrap_or(Duration::from_secs(10)));
        v.close().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let (connects, cycles, window) = if quick {
        (10, 40, Duration::from_secs(3))
    } else {
        (50, 1000, Duration::from_secs(10))
    };
    // `EDGECAM_BENCH_CYCLES` runs fewer (or more) connect/disconnect cycles.
    let cycles: usize = std::env::var("EDGECAM_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cycles);

    println!("live view, 720p15 H.264 on loopback");
    println!("{:<52} {:>22}", "measure", "value");
    for kis in [2, 10] {
        for sound in [false, true] {
            let d = daemon_with(kis, sound);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let t = ttff(&d, connects, sound).await;
            let what = if sound { "with sound" } else { "no sound" };
            println!(
                "{:<52} {:>9.0} ms p50, {:.0} ms p95, {:.0} ms max",
                format!("time to first frame, keyframe every {kis} s, {what} ({connects})"),
                pct(&t, 0.5),
                pct(&t, 0.95),
                pct(&t, 1.0)
            );
        }
    }

    let d = daemon(2);
    let pid = d.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_ms_per_s(pid, window).await;
    let rss0 = rss_mb(pid);
    let fds0 = fd_kinds(pid);
    let mut viewers = vec![Viewer::connect_with_audio(d.addr, "r0").await];
    viewers[0]
        .wait(Duration::from_secs(10), |s| s.decoded > 0)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_mb(pid);
    let cpu1 = cpu_ms_per_s(pid, window).await;
    for i in 1..10 {
        viewers.push(Viewer::connect_with_audio(d.addr, &format!("r{i}")).await);
    }
    for v in &mut viewers {
        v.wait(Duration::from_secs(10), |s| s.decoded > 0).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss10 = rss_mb(pid);
    let cpu10 = cpu_ms_per_s(pid, window).await;
    for v in viewers {
        v.close().await;
    }
    println!("{:<52} {:>9.1} MB", "daemon RSS, no viewer", rss0);
    println!("{:<52} {:>9.1} MB", "daemon RSS, 1 viewer", rss1);
    println!("{:<52} {:>9.1} MB", "daemon RSS, 10 viewers", rss10);
    println!(
        "{:<52} {:>9.2} MB",
        "RSS per extra viewer ((10 - 1) / 9)",
        (rss10 - rss1) / 9.0
    );
    println!(
        "{:<52} {:>9.1} ms/s ({:.1}% of a core)",
        "daemon CPU, no viewer (incl. x264 encode)",
        idle_cpu,
        idle_cpu / 10.0
    );
    println!(
        "{:<52} {:>9.1} ms/s ({:.1}% of a core)",
        "daemon CPU, 1 viewer",
        cpu1,
        cpu1 / 10.0
    );
    println!(
        "{:<52} {:>9.1} ms/s ({:.1}% of a core)",
        "daemon CPU, 10 viewers",
        cpu10,
        cpu10 / 10.0
    );

    let start = Instant::now();
    let mut after10 = 0.0;
    let mut fds10 = 0;
    let mut playing = 0;
    // The viewer's own close (webrtc-rs) can take a while; the daemon frees the session
    // as soon as the viewer says goodbye, so let closes overlap (a few at once).
    let mut closing = std::collections::VecDeque::new();
    for i in 0..cycles {
        let mut v = Viewer::connect_with_audio(d.addr, &format!("c{}", i % 20)).await;
        let seen = v.wait(Duration::from_secs(10), |s| s.decoded > 0).await;
        if seen.decoded > 0 {
            playing += 1;
        }
        closing.push_back(tokio::spawn(v.close()));
        if closing.len() > 4 {
            if let Some(c) = closing.pop_front() {
                let _ = c.await;
            }
        }
        if i == 9 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            after10 = rss_mb(pid);
            fds10 = open_fds(pid);
        }
    }
    for c in closing {
        let _ = c.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_all = rss_mb(pid);
    println!("{:<52} {:>9}", "daemon fds, no viewer", fds0);
    println!("{:<52} {:>9}", "daemon fds after the cycles", fd_kinds(pid));
    println!(
        "{:<52} {:>9.1} MB, {} fds",
        "daemon RSS after 10 connect/disconnect cycles", after10, fds10
    );
    println!(
        "{:<52} {:>9.1} MB ({:+.1} MB), {} fds, {:.0} s",
        format!("daemon RSS after {cycles} cycles"),
        after_all,
        after_all - after10,
        open_fds(pid),
        start.elapsed().as_secs_f64()
    );
    println!(
        "{:<52} {:>9} of {cycles}",
        "connects answered and playing", playing
    );
}
