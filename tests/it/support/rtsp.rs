//! A real RTSP camera on loopback: GStreamer's RTSP server (`rtsp_camera.py`), serving
//! H.264 and, as asked, AAC, G.711 A-law or no sound.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::{free_port, repo};

/// The camera; stopped when dropped.
pub struct RtspCamera {
    child: Child,
    pub url: String,
}

impl RtspCamera {
    /// `sound`: `aac` (44.1 kHz stereo), `pcma` (8 kHz mono) or `none`.
    pub fn start(sound: &str) -> Self {
        let port = free_port();
        // Debian's python3 (the one with python3-gi), whatever else is on the PATH.
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/it/support/rtsp_camera.py"))
            .arg(port.to_string())
            .arg(sound)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "python3 with python3-gi and gir1.2-gst-rtsp-server-1.0 (make test installs them)",
            );
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        assert_eq!(line.trim(), "ready", "the RTSP camera did not start");
        Self {
            child,
            url: format!("rtsp://127.0.0.1:{port}/cam"),
        }
    }
}

impl Drop for RtspCamera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
