//! What strangers on the network can do to the running daemon with connections and
//! messages alone: 1,000 idle sockets and 100 slowloris clients leave `/healthz` answering
//! and the camera recording, with its file descriptors bounded; 1,000 bad SDP offers
//! leave its task count and memory where they were.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::daemon::Daemon;
use crate::support::viewer::Viewer;
use crate::support::{http_get, http_post, metric};

const IDLE: usize = 1000;
const SLOW: usize = 100;

/// Lets this test process hold a few thousand sockets (CI's soft limit may be 1,024).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(8192);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur as usize > IDLE + SLOW + 200,
        "the hard file limit ({}) is too low for this test",
        limit.rlim_max
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The daemon's open sockets (its files, such as a clip being recorded, not counted).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

/// Whether the server has closed `s` (EOF or reset), waiting at most a moment.
fn closed_by_server(mut s: &TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        // A 408 or 400 before closing is a close too; then read again to see the EOF.
        Ok(_) => closed_by_server(s),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_and_slow_clients_cannot_lock_out_the_owner_or_stop_recording() {
    raise_fd_limit();
    let d = Daemon::start_with(
        "[events]\npre_roll_s = 1\npost_roll_s = 1\nmin_gap_s = 0\n[motion]\nenabled = false\n",
    );
    let addr = d.addr;
    let pid = d.child.id();
    let fds_before = open_fds(pid);
    let sockets_before = open_sockets(pid);

    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            let _ = write!(s, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n");
            s
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let mut slow = slow;
        std::thread::spawn(move || {
            // One header line a second, never the end of the headers.
            while !stop.load(Ordering::Relaxed) {
                for s in &mut slow {
                    let _ = s.write_all(b"X-Slow: 1\r\n");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            slow
        })
    };

    // The owner keeps asking while the sockets are held, and records an event.
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut probes = 0;
    let mut peak_fds = 0;
    let mut peak_sockets = 0;
    let mut recorded = None;
    while started.elapsed() < Duration::from_secs(13) {
        match http_get(addr, "/healthz") {
            Ok((200, _, _)) => {}
            other => failures.push(format!("{:?}: {other:?}", started.elapsed())),
        }
        probes += 1;
        if recorded.is_none() && started.elapsed() > Duration::from_secs(1) {
            let body = json!({"command": "record", "duration_s": 2}).to_string();
            recorded = Some(http_post(addr, "/api/commands", &body).map(|r| r.0));
        }
        peak_fds = peak_fds.max(open_fds(pid));
        peak_sockets = peak_sockets.max(open_sockets(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let slow = trickle.join().unwrap();

    eprintln!(
        "{probes} health probes, {} failed; daemon fds {fds_before} → peak {peak_fds}, \
         sockets {sockets_before} → peak {peak_sockets}; evicted {}",
        failures.len(),
        metric(addr, "edgecam_http_connections_evicted_total")
    );
    assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    assert!(matches!(recorded, Some(Ok(200))), "record: {recorded:?}");
    // At most web.max_connections, plus the few an eviction has not closed yet and the
    // probe's own (a clip being recorded opens files, not sockets).
    assert!(
        peak_sockets <= sockets_before + 256 + 16,
        "connections bounded by web.max_connections: {sockets_before} → {peak_sockets} sockets"
    );
    // After the header timeout (10 s) every idle and slow socket has been closed.
    let slow_open = slow.iter().filter(|s| !closed_by_server(s)).count();
    let idle_open = idle.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(
        (slow_open, idle_open),
        (0, 0),
        "slowloris and idle sockets still open"
    );
    assert!(metric(addr, "edgecam_http_connections_evicted_total") > 0.0);

    // The event recorded during the attack has its clip, with frames.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = http_get(addr, "/api/clips").unwrap();
        let clips: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        if let Some(c) = clips.iter().find(|c| c["status"] == "complete") {
            assert!(c["frame_count"].as_u64().unwrap_or(0) > 30, "{c}");
            break;
        }
        assert!(Instant::now() < deadline, "no complete clip: {clips:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kinds of broken offers: unreadable SDP, and SDP that parses but cannot be answered
/// (no ICE credentials, no DTLS fingerprint), which gets as far as a peer connection.
fn bad_offer(i: usize) -> String {
    let sdp = match i % 3 {
        0 => "v=0\r\ngarbage".to_string(),
        1 => "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
              m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
              a=rtpmap:96 H264/90000\r\na=recvonly\r\n"
            .to_string(),
        _ => "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
              m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
              a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
              a=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n"
            .to_string(),
    };
    let payload = json!({"type": "offer", "sdp": sdp}).to_string();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, payload);
    json!({"action": "SDP_OFFER", "messagePayload": b64}).to_string()
}

/// `count` bad offers over `sockets` signaling sockets at once, each answered.
async fn send_bad_offers(addr: SocketAddr, count: usize, sockets: usize) {
    let per_socket = count / sockets;
    let tasks = (0..sockets).map(|s| async move {
        let url = Viewer::lan_url(addr, &format!("bad-{s}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        for i in 0..per_socket {
            ws.send(Message::text(bad_offer(i))).await.unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer to every offer")
                .unwrap()
                .unwrap();
            let text = reply.to_text().unwrap();
            let (kind, _) = edgecam::live::message::viewer_payload(text).unwrap();
            assert_eq!(kind, "STATUS_RESPONSE", "offer {i}: {text}");
            // Under the per-socket message rate limit.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let _ = ws.close(None).await;
    });
    futures_util::future::join_all(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bad_offers_leave_tasks_and_memory_flat() {
    let d =
        Daemon::start_with("[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n");
    let pid = d.child.id();
    // Warm up: first uses allocate what the daemon keeps for good.
    send_bad_offers(d.addr, 60, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tasks_before = metric(d.addr, "edgecam_tasks");
    let rss_before = crate::support::rss_kb(pid);

    send_bad_offers(d.addr, 1000, 10).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tasks_after = metric(d.addr, "edgecam_tasks");
    let rss_after = crate::support::rss_kb(pid);
    eprintln!(
        "1,000 bad offers: tasks {tasks_before} → {tasks_after}, \
         RSS {rss_before} → {rss_after} kB"
    );
    assert!(tasks_before > 0.0, "the task gauge is exported");
    assert!(
        tasks_after <= tasks_before + 2.0,
        "tasks leaked: {tasks_before} → {tasks_after}"
    );
    assert!(
        rss_after <= rss_before + 3 * 1024,
        "memory grew: {rss_before} → {rss_after} kB"
    );
    assert_eq!(metric(d.addr, "edgecam_viewers"), 0.0);

    // And a real viewer still gets the camera.
    let mut v = Viewer::connect(d.addr, "after", None).await;
    v.expect_playing("after 1,000 bad offers").await;
    v.close().await;
}
