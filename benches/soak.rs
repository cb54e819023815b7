//! Viewers coming and going for a long time: a thousand connects (about two a second,
//! every other one with sound, each watched until it plays, then closed), and what the
//! daemon holds before and after. Prints a table (`cargo bench --bench soak`, about nine
//! minutes; `EDGECAM_SOAK_CYCLES=200` for a shorter run). The test suite runs the short
//! form (`viewer_places`).

#[path = "../tests/it/support/mod.rs"]
mod support;

use support::daemon::Daemon;
use support::soak::{soak, Footprint};

/// What a thousand viewers may leave behind.
const RSS_GROWTH_KB: i64 = 5 * 1024;
const FD_GROWTH: i64 = 2;
const TASK_GROWTH: i64 = 2;

fn row(what: &str, before: i64, after: i64, allowed: i64, unit: &str) {
    let verdict = if after - before <= allowed {
        "ok"
    } else {
        "OVER"
    };
    println!(
        "{what:<28} {before:>10} {after:>10} {:>+9} {unit:<3} (at most {allowed:+}) {verdict}",
        after - before
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cycles: usize = std::env::var("EDGECAM_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let d =
        Daemon::start_with("[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n");
    let s = soak(&d, cycles, 50).await;
    let (b, a): (&Footprint, &Footprint) = (&s.before, &s.after);
    println!(
        "viewer soak: {} connect/disconnect cycles in {:.0} s, {} of them played",
        s.cycles,
        s.took.as_secs_f64(),
        s.playing
    );
    println!(
        "{:<28} {:>10} {:>10} {:>9}",
        "after 50 warm-up cycles ->", "before", "after", "change"
    );
    row(
        "daemon RSS",
        b.rss_kb as i64,
        a.rss_kb as i64,
        RSS_GROWTH_KB,
        "kB",
    );
    row(
        "file descriptors",
        b.fds.len() as i64,
        a.fds.len() as i64,
        FD_GROWTH,
        "",
    );
    row(
        "async tasks",
        b.tasks as i64,
        a.tasks as i64,
        TASK_GROWTH,
        "",
    );
    if b.fds != a.fds {
        println!("fds before: {:?}\nfds after:  {:?}", b.fds, a.fds);
    }
}
