//! The speaker's GStreamer pipeline: the talker's RTP (Opus) in through an `appsrc`, a
//! short jitter buffer (`audio.talk_latency_ms`: a home network's jitter, not seconds),
//! decoded and played on the configured sink. One pipeline per talk: a new talker is a
//! new stream (SSRC, sequence numbers, clock), so each grant builds a fresh one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// The payload type the pipeline's caps name; packets are rewritten to it, whatever
/// number the viewer's offer gave Opus.
const PAYLOAD_TYPE: u8 = 111;
/// RMS above this (of full scale, about -46 dBFS) counts as someone speaking.
const LOUD_RMS: f64 = 0.005;
/// Most bytes waiting in the appsrc (about 2 s of 32 kbit/s Opus); beyond, dropped.
const MAX_QUEUED_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PlaybackError {
    #[error("audio.speaker_sink: the speaker pipeline does not parse: {0}")]
    Parse(String),
    #[error("the speaker pipeline has no appsrc named \"talk\"")]
    NoSource,
    #[error(
        "the speaker cannot play (is audio.speaker_device right? `aplay -L` lists devices): {0}"
    )]
    Start(String),
}

/// What the pipeline is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybackConfig {
    /// The sink end, GStreamer launch text (`alsasink device=…`, or a test's sink).
    pub sink: String,
    /// Linear gain, 1.0 = as sent.
    pub volume: f64,
    pub latency_ms: u32,
    /// Also send the sound to the capture's audio part to be mixed into recordings
    /// (`audio.record_talk`).
    pub record: bool,
}

impl PlaybackConfig {
    /// The whole pipeline's launch text.
    pub fn launch(&self) -> String {
        format!(
            "appsrc name=talk is-live=true do-timestamp=true format=time min-latency=0 \
               max-bytes={MAX_QUEUED_BYTES} block=false leaky-type=downstream \
               caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload={PAYLOAD_TYPE}\" \
             ! rtpjitterbuffer latency={latency} drop-on-latency=true do-lost=true \
             ! rtpopusdepay ! opusdec plc=true \
             ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,layout=interleaved \
             ! volume name=gain volume={volume} \
             ! {out}",
            latency = self.latency_ms,
            volume = self.volume,
            out = self.output(),
        )
    }

    /// The sink, and with `record` a branch to the capture's mixer beside it.
    fn output(&self) -> String {
        if !self.record {
            return self.sink.clone();
        }
        format!(
            "tee name=talkout ! queue ! {sink} \
             talkout. ! queue leaky=downstream ! interaudiosink channel={channel}",
            sink = self.sink,
            channel = crate::config::TALK_CHANNEL,
        )
    }

    /// Parses the pipeline without starting it: a bad `speaker_sink` is a config error
    /// at start-up, not a surprise at the first talk.
    pub fn check(&self) -> Result<(), PlaybackError> {
        let pipeline = parse(&self.launch())?;
        let _ = pipeline.set_state(gst::State::Null);
        Ok(())
    }
}

fn parse(launch: &str) -> Result<gst::Pipeline, PlaybackError> {
    gst::init().map_err(|e| PlaybackError::Parse(e.to_string()))?;
    gst::parse::launch(launch)
        .map_err(|e| PlaybackError::Parse(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| PlaybackError::Parse("not a pipeline".into()))
}

/// A running speaker pipeline.
pub struct Playback {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    loud: Arc<AtomicBool>,
}

impl Playback {
    /// Builds and starts the pipeline (blocking: run it off the async workers).
    pub fn start(config: &PlaybackConfig) -> Result<Self, PlaybackError> {
        let pipeline = parse(&config.launch())?;
        let src = pipeline
            .by_name("talk")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or(PlaybackError::NoSource)?;
        let loud = Arc::new(AtomicBool::new(false));
        if let Some(pad) = pipeline.by_name("gain").and_then(|g| g.static_pad("sink")) {
            let flag = Arc::clone(&loud);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    if buffer.map_readable().is_ok_and(|m| rms(&m) > LOUD_RMS) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(PlaybackError::Start(
                first_error(&pipeline).unwrap_or(e.to_string()),
            ));
        }
        Ok(Self {
            pipeline,
            src,
            loud,
        })
    }

    /// Queues one RTP packet; false when the queue is full or the pipeline stopped.
    pub fn push(&self, packet: &Bytes) -> bool {
        if packet.len() < 12 {
            return false;
        }
        let mut bytes = packet.to_vec();
        bytes[1] = (bytes[1] & 0x80) | PAYLOAD_TYPE;
        self.src
            .push_buffer(gst::Buffer::from_mut_slice(bytes))
            .is_ok()
    }

    /// Whether anything loud was played since the last call.
    pub fn take_loud(&self) -> bool {
        self.loud.swap(false, Ordering::Relaxed)
    }

    /// An error the pipeline posted since the last call, if any.
    pub fn error(&self) -> Option<String> {
        first_error(&self.pipeline)
    }

    /// Stops the pipeline (blocking).
    pub fn stop(self) {
        let _ = self.src.end_of_stream();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn first_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

/// Root mean square of interleaved S16LE samples, as a fraction of full scale.
pub fn rms(bytes: &[u8]) -> f64 {
    let samples = bytes.len() / 2;
    if samples == 0 {
        return 0.0;
    }
    let sum: f64 = bytes
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .map(|s| s * s)
        .sum();
    (sum / samples as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudness_is_the_rms_of_the_samples() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[0, 0, 0, 0]), 0.0);
        let full = i16::MAX.to_le_bytes();
        let half = (-16384i16).to_le_bytes();
        assert!((rms(&[full[0], full[1]]) - 1.0).abs() < 1e-4);
        assert!((rms(&[half[0], half[1], half[0], half[1]]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_sink_that_does_not_exist_is_refused_before_the_first_talk() {
        let bad = PlaybackConfig {
            sink: "nosuchsink".into(),
            volume: 1.0,
            latency_ms: 60,
            record: false,
        };
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains("audio.speaker_sink"), "{err}");
        let good = PlaybackConfig {
            sink: "fakesink".into(),
            ..bad
        };
        assert!(good.check().is_ok());
        let recorded = PlaybackConfig {
            record: true,
            ..good
        };
        assert!(recorded.check().is_ok(), "{}", recorded.launch());
    }
}
