//! What a session sends and hears back on its senders: the video and sound pumps, and
//! the RTCP readers that turn keyframe requests into forced keyframes and an RTCP BYE
//! into a goodbye.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use webrtc::media::Sample;
use webrtc::rtcp::goodbye::Goodbye as RtcpGoodbye;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use super::events::{EventSender, Goodbye, SessionEvent};
use super::LiveDeps;
use crate::media::AudioBus;

/// Frames a viewer may fall behind by before it skips to the next keyframe.
pub const VIEWER_QUEUE: usize = 30;

/// Audio frames a viewer may fall behind by (1 s of 20 ms Opus frames).
const VIEWER_AUDIO_QUEUE: usize = 50;
/// At most one keyframe request per viewer per this long (PLI storms).
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// Where a sender's RTCP reader reports an RTCP BYE.
pub(super) type ByeTo = (EventSender, u64);

/// Whether RTCP packets hold a BYE. A BYE reaches a sender when it is part of a compound
/// packet whose report blocks name the sender's SSRC, which is how RFC 3550 §6.1 says to
/// send it.
fn says_bye(packets: &[Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>]) -> bool {
    packets
        .iter()
        .any(|p| p.as_any().downcast_ref::<RtcpGoodbye>().is_some())
}

async fn report_bye((events, serial): &ByeTo) {
    let _ = events
        .send((*serial, SessionEvent::Goodbye(Goodbye::RtcpBye)))
        .await;
}

/// Turns the viewer's PLI/FIR into (rate-limited) keyframe requests, and its BYE into a
/// goodbye.
pub(super) async fn read_rtcp(
    sender: Arc<RTCRtpSender>,
    deps: LiveDeps,
    bye: ByeTo,
    stop: CancellationToken,
) {
    let mut last: Option<Instant> = None;
    while let Some(packets) = next_rtcp(&sender, &stop).await {
        if says_bye(&packets) {
            report_bye(&bye).await;
            return;
        }
        let wants_key = packets.iter().any(|p| {
            p.as_any().downcast_ref::<PictureLossIndication>().is_some()
                || p.as_any().downcast_ref::<FullIntraRequest>().is_some()
        });
        if wants_key && last.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
            last = Some(Instant::now());
            deps.capture.force_keyframe();
        }
    }
}

/// The sender's next RTCP packets; `None` once stopped or closed.
async fn next_rtcp(
    sender: &RTCRtpSender,
    stop: &CancellationToken,
) -> Option<Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>>> {
    tokio::select! {
        _ = stop.cancelled() => None,
        r = sender.read_rtcp() => r.ok().map(|(packets, _)| packets),
    }
}

/// Reads a sender's RTCP so its interceptors (reports, NACK) see it; only a BYE matters.
pub(super) async fn drain_rtcp(sender: Arc<RTCRtpSender>, bye: ByeTo, stop: CancellationToken) {
    while let Some(packets) = next_rtcp(&sender, &stop).await {
        if says_bye(&packets) {
            report_bye(&bye).await;
            return;
        }
    }
}

/// Feeds this viewer's audio track once DTLS is up. RTP time advances by each frame's
/// duration; a frame lost to a full queue is simply skipped (Opus conceals it).
pub(super) async fn pump_audio(
    track: Arc<TrackLocalStaticSample>,
    bus: AudioBus,
    mut connected: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        r = connected.wait_for(|c| *c) => if r.is_err() { return },
    }
    let mut frames = bus.subscribe("viewer-audio", VIEWER_AUDIO_QUEUE);
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            f = frames.recv() => match f { Some(f) => f, None => return },
        };
        let sample = Sample {
            data: frame.data,
            duration: frame.duration,
            ..Default::default()
        };
        if let Err(e) = track.write_sample(&sample).await {
            debug!(error = %e, "writing audio to a viewer failed");
            return;
        }
    }
}

/// Feeds this viewer's track once DTLS is up: subscribe, ask for a keyframe, send from it.
pub(super) async fn pump(
    track: Arc<TrackLocalStaticSample>,
    deps: LiveDeps,
    mut connected: watch::Receiver<bool>,
    events: EventSender,
    serial: u64,
    offered_at: Instant,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        r = connected.wait_for(|c| *c) => if r.is_err() { return },
    }
    // A new subscription starts at the next keyframe; ask for one now so the first
    // frame does not wait for the keyframe interval.
    let mut frames = deps.frames.subscribe("viewer", VIEWER_QUEUE);
    deps.capture.force_keyframe();
    let mut prev_pts: Option<Duration> = None;
    let mut dropped_seen = 0;
    let mut first = true;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => return,
            f = frames.recv() => match f { Some(f) => f, None => return },
        };
        let dropped = frames.dropped();
        if dropped > dropped_seen {
            deps.metrics
                .viewer_frames_dropped
                .inc_by(dropped - dropped_seen);
            dropped_seen = dropped;
        }
        // RTP time advances by each frame's PTS step (the nominal 1/30 s for the first).
        let duration = prev_pts.map_or(Duration::from_millis(33), |p| frame.pts.saturating_sub(p));
        prev_pts = Some(frame.pts);
        let sample = Sample {
            data: frame.data,
            duration,
            ..Default::default()
        };
        if let Err(e) = track.write_sample(&sample).await {
            warn!(error = %e, "writing to a viewer failed");
            return;
        }
        if std::mem::take(&mut first) {
            let ttff = offered_at.elapsed();
            deps.metrics.ttff.observe(ttff.as_secs_f64());
            info!(
                ttff_ms = ttff.as_millis() as u64,
                "first keyframe sent to viewer"
            );
            let _ = events.send((serial, SessionEvent::FirstFrame(ttff))).await;
        }
    }
}
