//! Viewer places come back at once: every way a viewer can say goodbye frees its place
//! within a second (not after ICE notices), a full camera gives a stalled viewer's place
//! to a new one, and viewers coming and going leave file descriptors and tasks where
//! they were (`cargo bench --bench soak` runs a thousand and measures memory too).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;

use crate::support;
use crate::support::daemon::Daemon;
use crate::support::soak;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_coming_and_going_leave_no_descriptor_or_task_behind() {
    // The short form of `cargo bench --bench soak` (1,000 cycles, with memory figures).
    let d = daemon();
    let s = soak::soak(&d, 50, 10).await;
    eprintln!(
        "{} cycles in {:.0} s: fds {} -> {}, tasks {} -> {}, RSS {} -> {} kB",
        s.cycles,
        s.took.as_secs_f64(),
        s.before.fds.len(),
        s.after.fds.len(),
        s.before.tasks,
        s.after.tasks,
        s.before.rss_kb,
        s.after.rss_kb
    );
    assert_eq!(s.playing, s.cycles, "every connect played");
    assert_eq!(viewers(&d), 0.0, "every place is back");
    assert!(
        s.after.fds.len() <= s.before.fds.len() + 2,
        "file descriptors grew:\nbefore: {:?}\nafter:  {:?}",
        s.before.fds,
        s.after.fds
    );
    assert!(
        s.after.tasks <= s.before.tasks + 2,
        "tasks {} -> {}",
        s.before.tasks,
        s.after.tasks
    );
}
