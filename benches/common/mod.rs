//! Helpers shared by the benchmarks.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use edgecam::capture::PipelineSpec;
use gstreamer as gst;
use gstreamer::prelude::*;

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Encodes `seconds` of 1080p30 H.264 to a file (outside any measurement).
pub fn encode_clip(path: &Path, seconds: u32) {
    let text = format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,width=1920,height=1080,framerate=30/1,format=I420 \
         ! x264enc speed-preset=ultrafast tune=zerolatency bframes=0 key-int-max=60 bitrate=4000 \
         ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream ! filesink location={}",
        seconds * 30,
        path.display()
    );
    let pipeline = gst::parse::launch(&text).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(
        gst::ClockTime::NONE,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

/// A capture pipeline that replays an H.264 file at real time, like an RTSP camera
/// passed through (no encode).
pub fn passthrough(clip: &Path) -> PipelineSpec {
    PipelineSpec {
        path: "passthrough".into(),
        text: format!(
            "filesrc location={} ! h264parse ! video/x-h264,stream-format=byte-stream,alignment=au \
             ! identity sync=true ! appsink name=encoded sync=false",
            clip.display()
        ),
    }
}
