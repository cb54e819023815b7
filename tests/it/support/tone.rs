//! Sound for talk-back tests: Opus packets of a tone (what a viewer's microphone sends),
//! and the camera's speaker as a UDP socket receiving raw PCM (48 kHz mono S16LE, the
//! `speaker_sink` tests configure), with the tone's frequency measured by Goertzel.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;

pub const RATE: u32 = 48_000;

/// 20 ms Opus packets of `seconds` of `wave` (`sine`, `silence`) at `freq` Hz.
pub fn opus_packets(wave: &str, freq: f64, seconds: f64) -> Vec<Bytes> {
    gst::init().unwrap();
    let buffers = (seconds * 50.0).round() as u32;
    let launch = format!(
        "audiotestsrc wave={wave} freq={freq} volume=0.5 num-buffers={buffers} samplesperbuffer=960 \
         ! audio/x-raw,rate={RATE},channels=1,format=S16LE ! opusenc frame-size=20 \
         ! appsink name=out sync=false"
    );
    let (pipeline, sink) = super::sink_pipeline(&launch);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        out.push(Bytes::copy_from_slice(&map));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// The sink text that sends the speaker's sound to `port`.
pub fn speaker_sink(port: u16) -> String {
    format!("audio/x-raw,format=S16LE,rate={RATE},channels=1 ! udpsink host=127.0.0.1 port={port}")
}

/// Datagrams of samples with their arrival time.
type Heard = Arc<Mutex<Vec<(Instant, Vec<i16>)>>>;

/// What the camera's speaker played.
pub struct Speaker {
    pub port: u16,
    heard: Heard,
}

impl Speaker {
    pub fn listen() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let heard: Heard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&heard);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65_536];
            // Ends when the test drops its `Speaker` (the only other owner).
            while Arc::strong_count(&sink) > 1 {
                if let Ok(n) = socket.recv(&mut buf) {
                    let samples = buf[..n]
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    sink.lock().unwrap().push((Instant::now(), samples));
                }
            }
        });
        Self { port, heard }
    }

    /// Every sample that arrived after `since`.
    pub fn samples_since(&self, since: Instant) -> Vec<i16> {
        let heard = self.heard.lock().unwrap();
        heard
            .iter()
            .filter(|(at, _)| *at >= since)
            .flat_map(|(_, s)| s.iter().copied())
            .collect()
    }

    /// (time since `since`, RMS) of every datagram after `since`.
    pub fn timeline(&self, since: Instant) -> Vec<(Duration, f64)> {
        let heard = self.heard.lock().unwrap();
        heard
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(at, s)| (at.duration_since(since), rms(s)))
            .collect()
    }

    /// When the first datagram with sound in it (RMS above `LOUD`) arrived after `since`.
    pub fn first_loud_after(&self, since: Instant) -> Option<Instant> {
        let heard = self.heard.lock().unwrap();
        heard
            .iter()
            .find(|(at, s)| *at >= since && rms(s) > LOUD)
            .map(|(at, _)| *at)
    }
}

/// Loud enough to be the tone, not silence or comfort noise.
pub const LOUD: f64 = 0.02;

pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples
        .iter()
        .map(|&s| (f64::from(s) / 32768.0).powi(2))
        .sum();
    (sum / samples.len() as f64).sqrt()
}

/// The power of `freq` in `samples` (Goertzel).
pub fn power_at(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (samples.len().max(1) as f64)
}

/// Of `candidates`, the frequency strongest in `samples`.
pub fn loudest_of(samples: &[i16], candidates: &[f64]) -> f64 {
    candidates
        .iter()
        .copied()
        .max_by(|a, b| power_at(samples, *a).total_cmp(&power_at(samples, *b)))
        .unwrap_or(0.0)
}
