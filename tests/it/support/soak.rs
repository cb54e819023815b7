//! Viewers coming and going against a running daemon, and what that left behind: the
//! short form is a test (`viewer_places`), the long one a benchmark (`benches/soak.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::daemon::Daemon;
use super::viewer::{Opts, Viewer};

/// The daemon's resources at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    pub rss_kb: u64,
    /// What its file descriptors point at, sorted (`socket`, `pipe`, `anon_inode:…`, a
    /// file), without inode numbers.
    pub fds: Vec<String>,
    /// Async tasks alive (`edgecam_tasks`).
    pub tasks: u64,
}

impl Footprint {
    pub fn of(d: &Daemon) -> Self {
        let pid = d.child.id();
        Self {
            rss_kb: super::rss_kb(pid),
            fds: fds(pid),
            tasks: super::metric(d.addr, "edgecam_tasks") as u64,
        }
    }
}

/// What the file descriptors of `pid` point at (`socket:[…]` kinds kept apart).
pub fn fds(pid: u32) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| {
            let t = t.display().to_string();
            // Keep the kind (socket, pipe, anon_inode:…), not the inode number.
            t.split_once(":[")
                .map_or(t.clone(), |(kind, _)| kind.to_owned())
        })
        .collect();
    out.sort();
    out
}

/// What `soak` saw.
#[derive(Debug, Clone)]
pub struct Soak {
    pub cycles: usize,
    pub took: Duration,
    /// After `warm_up` cycles, and after all of them with every place back.
    pub before: Footprint,
    pub after: Footprint,
    /// Connects that played.
    pub playing: usize,
}

/// `cycles` viewers, about two a second, each watched until it plays and then closed
/// (every other one asking for sound too), a few closing at once as tabs do. `before` is
/// measured after `warm_up` cycles, when allocator arenas, thread pools and caches have
/// their size; `after` once every place is back and the task count has settled.
pub async fn soak(d: &Daemon, cycles: usize, warm_up: usize) -> Soak {
    let mut closing = VecDeque::new();
    let mut before = None;
    let mut playing = 0;
    let start = Instant::now();
    for i in 0..cycles {
        let paced = start + Duration::from_millis(500 * i as u64);
        tokio::time::sleep_until(paced.into()).await;
        let opts = Opts {
            audio: i % 2 == 1,
            ..Opts::default()
        };
        let url = Viewer::lan_url(d.addr, &format!("c{}", i % 16));
        let mut v = Viewer::connect_with(&url, opts).await;
        v.expect_playing(&format!("connect {i}")).await;
        playing += 1;
        closing.push_back(tokio::spawn(v.close()));
        while closing.len() > 4 {
            if let Some(c) = closing.pop_front() {
                c.await.unwrap();
            }
        }
        if i + 1 == warm_up.min(cycles) {
            before = Some(settled(d, None).await);
        }
    }
    for c in closing {
        c.await.unwrap();
    }
    let before = before.unwrap_or_else(|| Footprint::of(d));
    let after = settled(d, Some(&before)).await;
    Soak {
        cycles,
        took: start.elapsed(),
        before,
        after,
        playing,
    }
}

/// The footprint once no viewer holds a place and the tasks of the last ones have ended
/// (at most as many as `baseline` had, or steady for a second), within 15 s.
async fn settled(d: &Daemon, baseline: Option<&Footprint>) -> Footprint {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Footprint::of(d);
    let mut steady_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Footprint::of(d);
        let viewers = super::metric(d.addr, "edgecam_viewers");
        let low_enough =
            baseline.is_none_or(|b| now.tasks <= b.tasks && now.fds.len() <= b.fds.len());
        if now.tasks != last.tasks || now.fds != last.fds {
            steady_since = Instant::now();
        }
        last = now;
        let steady = steady_since.elapsed() >= Duration::from_secs(1);
        if viewers == 0.0 && (low_enough || steady) {
            break;
        }
    }
    last
}
