//! Helpers shared by the integration tests: small cameras, HTTP on loopback, decoding.
#![allow(dead_code)]

pub mod browser;
pub mod control_fake;
pub mod coturn;
pub mod daemon;
pub mod get_images;
pub mod iot_fake;
pub mod kvs_fake;
pub mod mkv_reader;
pub mod mosquitto;
pub mod moto;
pub mod photos;
pub mod pki;
pub mod putmedia_fake;
pub mod rtsp;
pub mod sigv4;
pub mod small_disk;
pub mod soak;
pub mod sync_probe;
pub mod tone;
pub mod viewer;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::time::Instant;

use edgecam::capture::{self, CaptureHandle, Heartbeat, Outputs, PipelineSpec, TaskConfig};
use edgecam::config::Camera;
use edgecam::media::{AnalysisBus, EncodedFrame, FrameBus};
use edgecam::metrics::CaptureCounters;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// The repository root (pipelines/, config/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A small, fast camera on the shipped pipeline files.
pub fn small_camera(pipeline: &str, keyframe_interval_s: f64) -> Camera {
    Camera {
        pipeline: pipeline.into(),
        pipeline_dir: Some(repo().join("pipelines")),
        width: 320,
        height: 240,
        fps: 15,
        bitrate_kbps: 500,
        keyframe_interval_s,
        url: "rtsp://127.0.0.1:1/none".into(),
        ..Camera::default()
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET: `(status, headers, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
}

/// GET over HTTP/1.1 with `Connection: close` (for servers that refuse HTTP/1.0, such
/// as Chromium's DevTools endpoint; they answer with a Content-Length).
pub fn http_get11(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

pub fn http_request(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

/// The same over HTTPS, trusting only the certificates in `root_pem` (a CA, or a
/// self-signed certificate) and checking that the certificate names `name`.
pub fn https_request(
    addr: SocketAddr,
    root_pem: &Path,
    name: &str,
    request: &str,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(root_pem).map_err(std::io::Error::other)?
    {
        roots
            .add(cert.map_err(std::io::Error::other)?)
            .map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    let tls = rustls::ClientConnection::new(std::sync::Arc::new(config), server)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

/// Reads a response to the end, or to Content-Length when the server keeps the
/// connection open: `(status, headers, body)`.
fn read_response(stream: &mut impl Read) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still sent a whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if len.is_some_and(|len| raw.len() >= split + 4 + len) {
                break;
            }
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

/// A plain HTTP/1.0 POST of a JSON body: `(status, headers, body)`.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_request(addr, &format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// An `appsrc ! h264parse ! avdec_h264 ! appsink` pipeline (not started) for Annex-B
/// access units; `live` timestamps buffers on arrival.
pub fn h264_decoder(live: bool) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
    gst::init().unwrap();
    let src = if live {
        "appsrc name=src is-live=true do-timestamp=true"
    } else {
        "appsrc name=src"
    };
    appsrc_pipeline(&format!(
        "{src} format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! appsink name=out sync=false"
    ))
}

/// A pipeline (not started) from launch text ending in an `appsink name=out`.
pub fn sink_pipeline(launch: &str) -> (gst::Pipeline, gst_app::AppSink) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let out = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, out)
}

/// A pipeline (not started) from launch text with an `appsrc name=src` and an
/// `appsink name=out`.
pub fn appsrc_pipeline(launch: &str) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
    let (pipeline, out) = sink_pipeline(launch);
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    (pipeline, appsrc, out)
}

/// Decodes every stream of `path` with ffmpeg; whatever it says at `-v error` fails the
/// test.
pub fn decodes_silently(path: &Path) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed by make test");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "ffmpeg on {}: {said}",
        path.display()
    );
}

/// The codecs of `path`'s streams, as ffprobe names them, one per line.
pub fn codec_names(path: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed by make test");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Frames ffprobe decodes from `path`; any decoder message fails the test.
pub fn ffprobe_frames(path: &Path) -> u64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed by make test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe {}: {stderr}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Decodes Annex-B access units with GStreamer's H.264 decoder; returns the number of
/// decoded pictures.
pub fn decode_count(frames: &[EncodedFrame]) -> usize {
    let (pipeline, src, out) = h264_decoder(false);
    pipeline.set_state(gst::State::Playing).unwrap();
    for f in frames {
        let mut buf = gst::Buffer::from_slice(f.data.clone());
        buf.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_nseconds(f.pts.as_nanos() as u64));
        src.push_buffer(buf).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut decoded = 0;
    while out.pull_sample().is_ok() {
        decoded += 1;
    }
    let bus = pipeline.bus().unwrap();
    let error = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(error.is_none(), "decoder error: {error:?}");
    decoded
}

/// The value of the first `/metrics` line starting with `series` (name and labels, e.g.
/// `edgecam_viewers` or `edgecam_signaling_reconnects_total{reason="dropped"}`); 0 when absent.
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, _, body) = http_get(addr, "/metrics").unwrap();
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A process's resident memory, kB (0 once it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time so far (user + system), seconds.
pub fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name "(...)": utime is 14th, stime 15th of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Writes `text` to `dir/name` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A capture task on a pipeline spec, with its buses.
pub struct Rig {
    pub frames: FrameBus,
    pub analysis: AnalysisBus,
    pub counters: CaptureCounters,
    pub handle: CaptureHandle,
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Rig {
    pub fn start(spec: PipelineSpec, camera: &Camera) -> Self {
        let frames = FrameBus::new("frames");
        let analysis = AnalysisBus::new("analysis");
        let counters = CaptureCounters::default();
        let outputs = Outputs::new(
            frames.clone(),
            analysis.clone(),
            counters.clone(),
            Heartbeat::new(Instant::now()),
        );
        let cancel = CancellationToken::new();
        let cfg = TaskConfig {
            fps: camera.fps,
            stall_timeout: Duration::from_secs(camera.stall_timeout_s),
        };
        let (handle, task) = capture::spawn(spec, cfg, outputs, cancel.clone());
        Self {
            frames,
            analysis,
            counters,
            handle,
            cancel,
            task,
        }
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        timeout(Duration::from_secs(5), self.task)
            .await
            .expect("capture stops promptly")
            .unwrap();
    }
}

/// Polls `f` every 20 ms until it holds or `limit` passes; its last answer.
pub async fn poll_until(limit: Duration, f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// A recorder on `rig`'s frames with motion detection off, writing under `data`, with
/// the sound of `audio` when given.
pub async fn spawn_recorder(
    rig: &Rig,
    index: &edgecam::index::Index,
    data: &Path,
    stop: &tokio_util::sync::CancellationToken,
    (pre_roll, post_roll): (Duration, Duration),
    audio: Option<edgecam::media::AudioBus>,
) -> (
    edgecam::recorder::RecorderHandle,
    tokio::task::JoinHandle<()>,
) {
    use edgecam::events::{MotionSettings, TrackerSettings};
    let cfg = edgecam::recorder::RecorderConfig {
        tracker: TrackerSettings {
            pre_roll,
            post_roll,
            min_gap: Duration::ZERO,
            ..TrackerSettings::default()
        },
        motion: MotionSettings::default(),
        detect: false,
        pre_roll_max_bytes: 64 << 20,
        sight: None,
    };
    let deps = edgecam::recorder::RecorderDeps {
        frames: rig.frames.clone(),
        analysis: rig.analysis.clone(),
        snapshot: tokio::sync::watch::channel(None).1,
        index: index.clone(),
        data_dir: data.to_owned(),
        outbox: None,
        feed: None,
        audio,
        disk_full: None,
        motion: Default::default(),
        clock: None,
        sight: None,
    };
    edgecam::recorder::spawn(cfg, deps, stop.clone()).await
}

/// libfaketime, which moves the wall clock of the daemon (not its monotonic clock) to
/// what a file says, re-read every second.
pub fn faketime_env(file: &std::path::Path) -> Vec<(&'static str, String)> {
    let lib = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketimeMT.so.1"))
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime is installed (packaging/install-deps.sh --test)");
    vec![
        ("LD_PRELOAD", lib),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_CACHE_DURATION", "1".into()),
        ("DONT_FAKE_MONOTONIC", "1".into()),
    ]
}
