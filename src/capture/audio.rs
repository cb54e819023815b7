//! The audio pipeline: a pipeline file's audio part, run apart from the video so a
//! microphone that fails or disappears is rebuilt on its own while video goes on. Its
//! appsinks `opus` (Opus, for live view) and `aac` (raw AAC-LC with its
//! AudioSpecificConfig, for clips and the cloud) feed one bus each; frames carry the
//! wall-clock time of their first sample, computed as for video, which lines the two up.
//! A `valve name=opus_valve` before the Opus encoder is open only while someone listens
//! (a viewer with sound): nothing is encoded to Opus for nobody.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::pipeline::{appsink, parse, timing, Running};
use super::template::PipelineSpec;
use super::{CaptureError, Heartbeat};
use crate::commands::AudioReport;
use crate::media::{AudioBus, AudioCodec, AudioFormat, AudioFrame};
use crate::metrics::AudioCounters;

/// Where the audio pipeline delivers. Survives rebuilds.
#[derive(Debug, Clone)]
pub struct AudioOutputs {
    pub opus: AudioBus,
    pub aac: AudioBus,
    pub counters: AudioCounters,
    /// When the last audio frame arrived (`status`, stall detection).
    pub heartbeat: Heartbeat,
}

impl AudioOutputs {
    pub fn new(counters: AudioCounters) -> Self {
        Self {
            opus: AudioBus::new("opus"),
            aac: AudioBus::new("aac"),
            counters,
            heartbeat: Heartbeat::new(Instant::now()),
        }
    }
}

/// Audio counts as flowing while its last frame is at most this old.
pub const FLOWING_WITHIN: Duration = Duration::from_secs(2);

/// Whether audio is on (`heartbeat` is the audio pipeline's, `None` when there is none)
/// and flowing at `now`.
pub fn report(heartbeat: Option<&Heartbeat>, now: Instant) -> AudioReport {
    AudioReport {
        enabled: heartbeat.is_some(),
        flowing: heartbeat
            .and_then(|h| h.age(now))
            .is_some_and(|age| age <= FLOWING_WITHIN),
    }
}

/// Builds an audio part without starting it: catches syntax errors, missing elements and
/// missing appsinks before the daemon commits to running.
pub fn check(spec: &PipelineSpec) -> Result<(), CaptureError> {
    let pipeline = parse(spec)?;
    let found = ["opus", "aac"]
        .iter()
        .any(|name| appsink(&pipeline, name).is_some());
    let _ = pipeline.set_state(gst::State::Null);
    if found {
        Ok(())
    } else {
        Err(CaptureError::MissingAudioSinks {
            path: spec.path.clone(),
        })
    }
}

/// Builds an audio part, wired to `outputs`, ready to play.
pub(super) fn start(
    spec: &PipelineSpec,
    outputs: &AudioOutputs,
    generation: u32,
) -> Result<Running, CaptureError> {
    Ok(Running::without_video(build(spec, outputs, generation)?))
}

/// Builds an audio part and wires its appsinks; at least one of `opus` and `aac` must be
/// there.
pub(super) fn build(
    spec: &PipelineSpec,
    outputs: &AudioOutputs,
    generation: u32,
) -> Result<gst::Pipeline, CaptureError> {
    let pipeline = parse(spec)?;
    let mut found = false;
    for (name, codec, bus) in [
        ("opus", AudioCodec::Opus, &outputs.opus),
        ("aac", AudioCodec::Aac, &outputs.aac),
    ] {
        match appsink(&pipeline, name) {
            Some(sink) => {
                wire(&sink, codec, bus.clone(), outputs.clone(), generation);
                found = true;
            }
            None => tracing::warn!(
                pipeline = %spec.path.display(),
                "audio part has no appsink named \"{name}\": no {} audio",
                codec.as_str()
            ),
        }
    }
    if !found {
        let _ = pipeline.set_state(gst::State::Null);
        return Err(CaptureError::MissingAudioSinks {
            path: spec.path.clone(),
        });
    }
    // Open only while someone listens: nothing is encoded to Opus for nobody.
    super::gate::valve(&pipeline, "opus_valve", outputs.opus.listeners(), |n| {
        *n > 0
    });
    Ok(pipeline)
}

/// The stream's format from the appsink's caps, or why it is not usable.
pub fn format_of(caps: &gst::CapsRef, codec: AudioCodec) -> Result<AudioFormat, String> {
    let s = caps.structure(0).ok_or("no caps")?;
    let rate = s.get::<i32>("rate").map_err(|_| "no rate in the caps")?;
    let channels = s
        .get::<i32>("channels")
        .map_err(|_| "no channels in the caps")?;
    let config = match codec {
        AudioCodec::Opus => {
            if s.name() != "audio/x-opus" {
                return Err(format!("expected audio/x-opus, got {}", s.name()));
            }
            Bytes::new()
        }
        AudioCodec::Aac => {
            if s.name() != "audio/mpeg" || s.get::<i32>("mpegversion").ok() != Some(4) {
                return Err(format!(
                    "expected AAC (audio/mpeg, mpegversion=4), got {caps}"
                ));
            }
            if s.get::<&str>("stream-format").ok() != Some("raw") {
                return Err("AAC must be stream-format=raw (end the branch with `aacparse ! audio/mpeg,stream-format=raw`)".into());
            }
            let data = s
                .get::<gst::Buffer>("codec_data")
                .map_err(|_| "raw AAC without codec_data (AudioSpecificConfig)")?;
            let map = data.map_readable().map_err(|_| "unreadable codec_data")?;
            Bytes::copy_from_slice(map.as_slice())
        }
    };
    Ok(AudioFormat {
        codec,
        rate: u32::try_from(rate).map_err(|_| "negative rate")?,
        channels: u32::try_from(channels).map_err(|_| "negative channel count")?,
        config,
    })
}

/// Samples per AAC-LC frame.
const AAC_FRAME_SAMPLES: u64 = 1024;
/// How far an AAC-LC decoder's output lags the frames it decodes: one frame of 1024
/// samples plus the 576-sample window overlap, measured with voaacenc → avdec_aac (a
/// beep at 1.000 s decodes at 1.033 s at 48 kHz). Camera encoders are built the same way.
pub const AAC_DELAY_SAMPLES: u64 = 1600;

/// One AAC-LC frame of silence in `format` (same rate and channels), for a stream
/// whose sound track must go on while the microphone is quiet. Runs a short pipeline:
/// call from a blocking thread.
pub fn silent_aac(format: &AudioFormat) -> Result<Bytes, CaptureError> {
    silence(format.rate, format.channels).map(|(frame, _)| frame)
}

/// One AAC-LC frame of silence at `rate` and `channels`, and its format (the encoder's
/// AudioSpecificConfig). Runs a short pipeline: call from a blocking thread.
pub fn silence(rate: u32, channels: u32) -> Result<(Bytes, AudioFormat), CaptureError> {
    let text = format!(
        "audiotestsrc wave=silence num-buffers=6 samplesperbuffer={AAC_FRAME_SAMPLES} \
         ! audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels={channels} ! voaacenc \
         ! aacparse ! audio/mpeg,stream-format=raw ! appsink name=out sync=false"
    );
    let fail = |message: String| CaptureError::Parse {
        path: "(silence)".into(),
        message,
    };
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let pipeline = gst::parse::launch(&text)
        .map_err(|e| fail(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let sink = appsink(&pipeline, "out").ok_or_else(|| fail("no appsink".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(e.to_string()))?;
    // The encoder's first frames carry its start-up; a later one is plain silence.
    let mut last = None;
    while let Ok(sample) = sink.pull_sample() {
        if let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) {
            if let (Ok(map), Ok(format)) = (buffer.map_readable(), format_of(caps, AudioCodec::Aac))
            {
                last = Some((Bytes::copy_from_slice(map.as_slice()), format));
            }
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    last.ok_or_else(|| fail("the encoder gave nothing".into()))
}

/// The caps of raw AAC-LC frames in `format` (for an `appsrc` that plays them).
pub fn aac_caps(format: &AudioFormat) -> gst::Caps {
    gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("rate", i32::try_from(format.rate).unwrap_or(48_000))
        .field("channels", i32::try_from(format.channels).unwrap_or(1))
        .field("codec_data", gst::Buffer::from_slice(format.config.clone()))
        .build()
}

fn wire(
    sink: &gst_app::AppSink,
    codec: AudioCodec,
    bus: AudioBus,
    out: AudioOutputs,
    generation: u32,
) {
    sink.set_property("enable-last-sample", false);
    let mut format: Option<(gst::Caps, Result<AudioFormat, String>)> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(caps), Some(buffer)) = (sample.caps_owned(), sample.buffer_owned())
                else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if format.as_ref().is_none_or(|(c, _)| *c != caps) {
                    let parsed = format_of(&caps, codec);
                    if let Err(e) = &parsed {
                        tracing::warn!(codec = codec.as_str(), error = %e, "audio appsink caps not usable; its frames are dropped");
                    }
                    format = Some((caps, parsed));
                }
                let Some((_, Ok(fmt))) = &format else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let duration = buffer.duration().map_or_else(
                    || match codec {
                        AudioCodec::Aac => Duration::from_nanos(
                            AAC_FRAME_SAMPLES * 1_000_000_000 / u64::from(fmt.rate.max(1)),
                        ),
                        AudioCodec::Opus => Duration::from_millis(20),
                    },
                    |d| Duration::from_nanos(d.nseconds()),
                );
                let (pts, mut captured_at) = timing(sink, &sample, buffer.pts());
                if codec == AudioCodec::Aac {
                    // A decoder's output runs AAC_DELAY_SAMPLES behind the frames' times
                    // (and MP4 and MKV players do not take it off): time each frame by
                    // the sound a player will play with it.
                    captured_at -= chrono::Duration::microseconds(
                        (AAC_DELAY_SAMPLES * 1_000_000 / u64::from(fmt.rate.max(1))) as i64,
                    );
                }
                let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                out.counters.frames(codec).inc();
                out.heartbeat.beat(Instant::now());
                bus.publish(AudioFrame {
                    data: Bytes::from_owner(mapped),
                    pts,
                    captured_at,
                    duration,
                    format: fmt.clone(),
                    generation,
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_must_be_raw_with_its_config_and_opus_is_opus() {
        gst::init().unwrap();
        let asc = gst::Buffer::from_slice([0x11u8, 0x88]); // AAC-LC, 48 kHz, mono
        let raw = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4)
            .field("stream-format", "raw")
            .field("rate", 48_000)
            .field("channels", 1)
            .field("codec_data", asc)
            .build();
        let f = format_of(&raw, AudioCodec::Aac).unwrap();
        assert_eq!(
            (f.rate, f.channels, &f.config[..]),
            (48_000, 1, &[0x11, 0x88][..])
        );
        let adts = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4)
            .field("stream-format", "adts")
            .field("rate", 48_000)
            .field("channels", 1)
            .build();
        assert!(format_of(&adts, AudioCodec::Aac)
            .unwrap_err()
            .contains("stream-format=raw"));
        let opus = gst::Caps::builder("audio/x-opus")
            .field("rate", 48_000)
            .field("channels", 2)
            .build();
        assert_eq!(format_of(&opus, AudioCodec::Opus).unwrap().channels, 2);
        assert!(format_of(&opus, AudioCodec::Aac).is_err());
    }
}
