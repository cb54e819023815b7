//! Lip sync as a viewer sees it: a viewer's tracks decoded for markers (a bright frame,
//! the onset of a beep), each marker's RTP time, and the RTCP sender reports that map
//! each track's RTP time to the sender's wall clock. A player that lip-syncs puts two
//! markers on one clock through those reports; their difference is the offset a viewer
//! hears.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::codecs::h264::H264Packet;
use webrtc::rtp::codecs::opus::OpusPacket;
use webrtc::rtp::packetizer::Depacketizer;
use webrtc::rtp_transceiver::rtp_receiver::RTCRtpReceiver;
use webrtc::track::track_remote::TrackRemote;

/// What the probe saw; RTP times are unwrapped from each track's first packet.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// RTP times (90 kHz) of frames that turned bright after dark ones.
    pub flashes: Vec<i64>,
    /// RTP times (48 kHz) of the first loud sample after a quiet spell.
    pub beeps: Vec<i64>,
    /// Sender reports: (NTP time in seconds, unwrapped RTP time).
    pub video_reports: Vec<(f64, i64)>,
    pub audio_reports: Vec<(f64, i64)>,
}

/// The wall-clock time the sender's reports give RTP time `rtp` (the report nearest it).
pub fn wall(reports: &[(f64, i64)], rtp: i64, clock: f64) -> Option<f64> {
    let (ntp, at) = reports.iter().min_by_key(|(_, r)| (r - rtp).abs())?;
    Some(ntp + (rtp - at) as f64 / clock)
}

/// Finds beeps' onsets in S16LE mono sound: the first loud sample after 100 ms (at
/// 48 kHz) of quiet. Keeps its count of quiet samples across buffers.
#[derive(Debug, Default)]
pub struct Onsets {
    quiet: usize,
}

impl Onsets {
    /// Indexes (in samples) within `pcm` where a beep starts.
    pub fn scan(&mut self, pcm: &[u8]) -> Vec<usize> {
        let mut found = Vec::new();
        for (i, s) in pcm.chunks_exact(2).enumerate() {
            if i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 8000 {
                if self.quiet > 4800 {
                    found.push(i);
                }
                self.quiet = 0;
            } else {
                self.quiet += 1;
            }
        }
        found
    }
}

fn ntp_seconds(ntp: u64) -> f64 {
    (ntp >> 32) as f64 + (ntp & 0xFFFF_FFFF) as f64 / 4_294_967_296.0
}

/// Unwraps a track's 32-bit RTP times relative to its first.
#[derive(Default)]
struct Unwrap {
    first: Option<u32>,
    last: i64,
}

impl Unwrap {
    /// `None` before the track's first packet (a report then maps nothing yet).
    fn known(&mut self, ts: u32) -> Option<i64> {
        self.first.is_some().then(|| self.at(ts))
    }

    fn at(&mut self, ts: u32) -> i64 {
        let first = *self.first.get_or_insert(ts);
        let d = i64::from(ts.wrapping_sub(first));
        // Nearest to the last value modulo 2^32.
        let k = (self.last - d + (1 << 31)).div_euclid(1 << 32);
        self.last = d + k * (1 << 32);
        self.last
    }
}

#[derive(Clone, Default)]
pub struct Probe {
    marks: Arc<Mutex<Marks>>,
    video_clock: Arc<Mutex<Unwrap>>,
    audio_clock: Arc<Mutex<Unwrap>>,
}

impl Probe {
    pub fn marks(&self) -> Marks {
        self.marks.lock().unwrap().clone()
    }

    /// Takes over a track the viewer received: decodes it for markers and reads its
    /// sender reports.
    pub fn on_track(&self, track: Arc<TrackRemote>, receiver: Arc<RTCRtpReceiver>, audio: bool) {
        let clock = if audio {
            Arc::clone(&self.audio_clock)
        } else {
            Arc::clone(&self.video_clock)
        };
        let marks = Arc::clone(&self.marks);
        let reports_clock = Arc::clone(&clock);
        tokio::spawn(async move {
            while let Ok((packets, _)) = receiver.read_rtcp().await {
                for p in packets {
                    if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                        let Some(rtp) = reports_clock.lock().unwrap().known(sr.rtp_time) else {
                            continue;
                        };
                        let entry = (ntp_seconds(sr.ntp_time), rtp);
                        let mut m = marks.lock().unwrap();
                        if audio {
                            m.audio_reports.push(entry);
                        } else {
                            m.video_reports.push(entry);
                        }
                    }
                }
            }
        });
        if audio {
            tokio::spawn(beeps(track, Arc::clone(&self.marks), clock));
        } else {
            tokio::spawn(flashes(track, Arc::clone(&self.marks), clock));
        }
    }
}

fn pipeline(launch: &str) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
    let (p, src, out) = super::appsrc_pipeline(launch);
    (p, src, out)
}

fn buffer(data: &[u8], rtp: i64, clock: f64) -> gst::Buffer {
    let mut b = gst::Buffer::from_slice(data.to_vec());
    if let Some(m) = b.get_mut() {
        m.set_pts(gst::ClockTime::from_nseconds(
            (rtp.max(0) as f64 / clock * 1e9) as u64,
        ));
    }
    b
}

async fn flashes(track: Arc<TrackRemote>, marks: Arc<Mutex<Marks>>, clock: Arc<Mutex<Unwrap>>) {
    let (p, src, out) = pipeline(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 \
         ! appsink name=out sync=false",
    );
    let seen = Arc::clone(&marks);
    let mut bright = true; // a flash is dark → bright
    out.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(b) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let pts = b.pts().map_or(0, |t| t.nseconds());
                let luma = b.map_readable().map_or(0.0, |m| {
                    let s = m.as_slice();
                    let n = (s.len() / 64).max(1);
                    s.iter().step_by(64).map(|&v| f64::from(v)).sum::<f64>() / n as f64
                });
                let now = luma > 128.0;
                if now && !bright {
                    let rtp = (pts as f64 / 1e9 * 90_000.0).round() as i64;
                    seen.lock().unwrap().flashes.push(rtp);
                }
                bright = now;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing).unwrap();
    let mut depacketizer = H264Packet::default();
    let mut au = BytesMut::new();
    while let Ok((packet, _)) = track.read_rtp().await {
        if let Ok(nals) = depacketizer.depacketize(&packet.payload) {
            au.extend_from_slice(&nals);
        }
        if packet.header.marker && !au.is_empty() {
            let rtp = clock.lock().unwrap().at(packet.header.timestamp);
            if src.push_buffer(buffer(&au.split(), rtp, 90_000.0)).is_err() {
                break;
            }
        }
    }
    let _ = p.set_state(gst::State::Null);
}

async fn beeps(track: Arc<TrackRemote>, marks: Arc<Mutex<Marks>>, clock: Arc<Mutex<Unwrap>>) {
    let (p, src, out) = pipeline(
        "appsrc name=src format=time \
           caps=audio/x-opus,channel-mapping-family=0,rate=48000,channels=2 \
         ! opusdec ! audioconvert ! audio/x-raw,format=S16LE,channels=1,rate=48000 \
         ! appsink name=out sync=false",
    );
    let seen = Arc::clone(&marks);
    let mut onsets = Onsets::default();
    out.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(b) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let start =
                    (b.pts().map_or(0, |t| t.nseconds()) as f64 / 1e9 * 48_000.0).round() as i64;
                if let Ok(m) = b.map_readable() {
                    for i in onsets.scan(m.as_slice()) {
                        seen.lock().unwrap().beeps.push(start + i as i64);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing).unwrap();
    let mut depacketizer = OpusPacket;
    while let Ok((packet, _)) = track.read_rtp().await {
        if let Ok(frame) = depacketizer.depacketize(&packet.payload) {
            let rtp = clock.lock().unwrap().at(packet.header.timestamp);
            if src.push_buffer(buffer(&frame, rtp, 48_000.0)).is_err() {
                break;
            }
        }
    }
    let _ = p.set_state(gst::State::Null);
}

#[cfg(test)]
mod tests {
    #[test]
    fn rtp_times_unwrap_across_the_32_bit_edge() {
        let mut u = super::Unwrap::default();
        assert_eq!(u.at(u32::MAX - 10), 0);
        assert_eq!(u.at(5), 16);
        assert_eq!(
            u.at(u32::MAX - 20),
            -10,
            "a late packet from before the edge"
        );
        assert_eq!(
            super::wall(&[(100.0, 0), (101.0, 90_000)], 135_000, 90_000.0),
            Some(101.5)
        );
    }
}
