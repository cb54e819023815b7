//! Viewer places come back at once: every way a viewer can say goodbye frees its place
//! within a second (not after ICE notices), a full camera gives a stalled viewer's place
//! to a new one, and a thousand viewers coming and going leave memory and file
//! descriptors where they were.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

use crate::support;
use crate::support::daemon::Daemon;
use crate::support::viewer::{Opts, Viewer};

/// Goodbyes are seen within this; without them the place comes back only after ICE
/// notices (3 s) plus the grace (3 s), or after the 20 s connect timeout.
const AT_ONCE: Duration = Duration::from_secs(2);

fn daemon() -> Daemon {
    Daemon::start_with("[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n")
}

fn viewers(d: &Daemon) -> f64 {
    support::metric(d.addr, "edgecam_viewers")
}

/// Waits until the daemon counts `n` viewers; how long that took, or `None` after `limit`.
async fn until_viewers(d: &Daemon, n: f64, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if viewers(d) == n {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn watching(url: &str, opts: Opts) -> Viewer {
    let mut v = Viewer::connect_with(url, opts).await;
    let seen = v.wait(Duration::from_secs(10), |s| s.decoded >= 3).await;
    assert!(seen.refused.is_none(), "refused: {:?}", seen.refused);
    assert!(seen.decoded >= 3, "no video");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_sends_rtcp_bye_is_freed_at_once() {
    // A plain media player: no data channel, so no SCTP to watch; its BYE is the goodbye.
    let d = daemon();
    let opts = Opts {
        no_control: true,
        ..Opts::default()
    };
    let v = watching(&Viewer::lan_url(d.addr, "player"), opts).await;
    assert_eq!(viewers(&d), 1.0);
    v.say_bye().await;
    let freed = until_viewers(&d, 0.0, AT_ONCE).await;
    assert!(
        freed.is_some(),
        "a viewer that sent BYE still holds its place"
    );
    eprintln!("freed {freed:?} after RTCP BYE");
    v.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_closes_its_peer_connection_is_freed_at_once() {
    // webrtc-rs closes as a browser does: SCTP goes, DTLS sends close_notify. The app's
    // data channel is its own, not `control`, so the association's end is what counts.
    let d = daemon();
    let opts = Opts {
        channel: Some("chat"),
        ..Opts::default()
    };
    let v = watching(&Viewer::lan_url(d.addr, "tab"), opts).await;
    // The signaling socket stays open, so the close of the peer connection alone counts.
    let pc = std::sync::Arc::clone(&v.pc);
    pc.close().await.unwrap();
    let freed = until_viewers(&d, 0.0, AT_ONCE).await;
    assert!(
        freed.is_some(),
        "a closed peer connection still holds its place"
    );
    eprintln!("freed {freed:?} after the peer connection closed");
    v.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_leaves_before_connecting_is_freed_at_once() {
    let d = daemon();
    // An offer nobody will ever complete: the page is closed right after sending it.
    let api = edgecam::live::api(&["127.0.0.1".parse().unwrap()]).unwrap();
    let pc = api
        .new_peer_connection(RTCConfiguration::default())
        .await
        .unwrap();
    pc.add_transceiver_from_kind(RTPCodecType::Video, None)
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    let url = Viewer::lan_url(d.addr, "gone");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let payload = json!({"type": "offer", "sdp": offer.sdp});
    let msg = edgecam::live::message::from_viewer("SDP_OFFER", &payload);
    ws.send(Message::text(msg)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    let text = match answer {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no answer: {other:?}"),
    };
    assert!(text.contains("SDP_ANSWER"), "{text}");
    assert_eq!(viewers(&d), 1.0, "the offer holds a place");
    drop(ws);
    let freed = until_viewers(&d, 0.0, AT_ONCE).await;
    assert!(
        freed.is_some(),
        "a viewer gone before connecting holds its place"
    );
    let _ = pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_offer_from_the_same_viewer_keeps_one_place() {
    let d = daemon();
    let url = Viewer::lan_url(d.addr, "same");
    let first = watching(&url, Opts::default()).await;
    first.close_signaling();
    let second = watching(&url, Opts::default()).await;
    assert_eq!(viewers(&d), 1.0, "one client id, one place");
    first.close().await;
    second.close().await;
}

/// A viewer on a runtime of its own, so it can vanish without a word, like a phone that
/// left the Wi-Fi: `vanish` drops its sockets, no close, no goodbye.
struct Doomed {
    vanish: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Doomed {
    fn start(url: String) -> Doomed {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (vanish, vanish_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let v = rt.block_on(watching(&url, Opts::default()));
            ready_tx.send(()).unwrap();
            let _ = vanish_rx.recv();
            std::mem::forget(v);
            rt.shutdown_background();
        });
        ready.recv().expect("the doomed viewer watches");
        Doomed { vanish, thread }
    }

    fn vanish(self) {
        let _ = self.vanish.send(());
        self.thread.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_camera_gives_a_stalled_viewers_place_to_a_new_one() {
    let d = daemon();
    let doomed = Doomed::start(Viewer::lan_url(d.addr, "phone"));
    let mut others = Vec::new();
    for i in 0..9 {
        others.push(watching(&Viewer::lan_url(d.addr, &format!("v{i}")), Opts::default()).await);
    }
    assert_eq!(viewers(&d), 10.0);
    doomed.vanish();
    // ICE notices the silence after 3 s; the session is freed 3 s later. In between,
    // the place of a stalled viewer goes to whoever asks for it.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(viewers(&d), 10.0, "the stalled viewer still counts");
    let newcomer = watching(&Viewer::lan_url(d.addr, "newcomer"), Opts::default()).await;
    assert_eq!(viewers(&d), 10.0, "the newcomer took the stalled place");
    for v in &mut others {
        let before = v.decoded();
        let seen = v.wait(Duration::from_secs(5), |s| s.decoded > before).await;
        assert!(seen.decoded > before, "the other viewers keep watching");
    }
    newcomer.close().await;
    for v in others {
        v.close().await;
    }
}

/// What the daemon's file descriptors point at (`socket:[…]` kinds kept apart).
fn fds(pid: u32) -> Vec<String> {
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

/// 1,000 by default; `EDGECAM_SOAK_CYCLES` makes a quick local run shorter.
fn soak_cycles() -> usize {
    std::env::var("EDGECAM_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_come_and_go_and_the_camera_stays_the_same() {
    let d = daemon();
    let pid = d.child.id();
    let cycles = soak_cycles();
    // About two connects a second, each watched until it plays and then closed (half
    // asking for sound too), a few closing at once as tabs do.
    let mut closing = std::collections::VecDeque::new();
    let mut baseline = None;
    let start = Instant::now();
    for i in 0..cycles {
        let paced = start + Duration::from_millis(500 * i as u64);
        tokio::time::sleep_until(paced.into()).await;
        let opts = Opts {
            audio: i % 2 == 1,
            ..Opts::default()
        };
        let mut v =
            Viewer::connect_with(&Viewer::lan_url(d.addr, &format!("c{}", i % 16)), opts).await;
        v.expect_playing(&format!("connect {i}")).await;
        closing.push_back(tokio::spawn(v.close()));
        while closing.len() > 4 {
            if let Some(c) = closing.pop_front() {
                c.await.unwrap();
            }
        }
        // Warmed up: allocator arenas, thread pools and caches have their size.
        if i == 49.min(cycles - 1) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            baseline = Some((crate::support::rss_kb(pid), fds(pid)));
        }
    }
    for c in closing {
        c.await.unwrap();
    }
    assert_eq!(
        until_viewers(&d, 0.0, Duration::from_secs(10))
            .await
            .map(|_| ()),
        Some(()),
        "every viewer's place is back"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, fds0) = baseline.unwrap();
    let (rss1, fds1) = (crate::support::rss_kb(pid), fds(pid));
    eprintln!(
        "{cycles} cycles in {:.0} s: RSS {rss0} kB -> {rss1} kB ({:+} kB), fds {} -> {}",
        start.elapsed().as_secs_f64(),
        rss1 as i64 - rss0 as i64,
        fds0.len(),
        fds1.len()
    );
    if fds0 != fds1 {
        eprintln!("fds before: {fds0:?}\nfds after:  {fds1:?}");
    }
    let (fds0, fds1) = (fds0.len(), fds1.len());
    assert!(
        rss1 <= rss0 + 5 * 1024,
        "RSS grew {} kB over {cycles} cycles",
        rss1 - rss0
    );
    assert!(
        fds1 <= fds0 + 2,
        "fds {fds0} -> {fds1} over {cycles} cycles"
    );
}
