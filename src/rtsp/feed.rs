//! What one RTSP media gets from the frame buses: the video and sound feeders that push
//! the shared encode into the media's `appsrc`s, timed so both line up by capture time.
//!
//! A media's pipeline may fall behind (a client that stops reading can hold it up): the
//! feeder then drops frames until the next keyframe, on the media's side only; capture
//! and every other consumer of the bus go on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::capture::CaptureHandle;
use crate::media::{AudioBus, EncodedFrame, FrameBus};

/// Frames the feeder may fall behind the bus by before it skips to the next keyframe.
const FEED_QUEUE: usize = 30;
/// Audio frames the feeder may fall behind by (about 1 s of AAC).
const AUDIO_FEED_QUEUE: usize = 50;
/// Bytes a media's `appsrc` may hold before the feeder drops frames (about 8 s of the
/// default 2 Mbit/s encode).
const MAX_QUEUED_BYTES: u64 = 2 << 20;
/// A frame captured longer ago than this (a clock step, a stalled bus) is timed as if
/// captured now.
const MAX_LAG: Duration = Duration::from_secs(2);

/// Maps capture times onto a media pipeline's running time, so video and sound, which
/// reach the bus with different delays, leave with the timing they were captured with.
/// Pure: the caller reads the clocks.
#[derive(Debug, Default)]
pub struct Timing {
    last: Option<Duration>,
    /// The last frame's duration, for streams of frames that follow each other
    /// (sound).
    duration: Option<Duration>,
}

/// How far ahead of the running time the last PTS may be and still be followed on.
const MAX_AHEAD: Duration = Duration::from_secs(1);

/// How far a sound frame's capture timing may stray from following on the last one
/// before it is taken as a gap.
const AUDIO_JITTER: Duration = Duration::from_millis(50);

impl Timing {
    /// The PTS of a frame captured at `captured_at`, pushed when the pipeline's running
    /// time is `running` and the wall clock reads `now`: `running` minus how long ago it
    /// was captured, never going back.
    pub fn pts(
        &mut self,
        running: Duration,
        now: DateTime<Utc>,
        captured_at: DateTime<Utc>,
    ) -> Duration {
        let lag = (now - captured_at)
            .to_std()
            .ok()
            .filter(|lag| *lag <= MAX_LAG)
            .unwrap_or_default();
        let mut pts = running.saturating_sub(lag);
        // Never ahead of the pipeline by more than a moment: a media paused and played
        // again runs from an earlier running time, and frames held to an old last PTS
        // would wait for the clock in the sinks.
        if let Some(last) = self.last.filter(|l| *l <= running + MAX_AHEAD) {
            pts = pts.max(last + Duration::from_micros(1));
        }
        self.last = Some(pts);
        pts
    }

    /// As `pts`, for a frame of `duration` in a stream whose frames follow each other
    /// (sound): it follows on the last frame unless its capture time says a frame or more
    /// is missing, so bursts and jitter on the way never bunch frames together.
    pub fn pts_following(
        &mut self,
        running: Duration,
        now: DateTime<Utc>,
        captured_at: DateTime<Utc>,
        duration: Duration,
    ) -> Duration {
        let expected = self.last.zip(self.duration).map(|(l, d)| l + d);
        let measured = self.pts(running, now, captured_at);
        // Follow on the last frame while capture agrees within the jitter; else (a gap,
        // or a stream that drifted) take the capture timing.
        let pts = match expected {
            Some(e) if measured + AUDIO_JITTER >= e && measured <= e + AUDIO_JITTER => e,
            _ => measured,
        };
        self.last = Some(pts);
        self.duration = Some(duration);
        pts
    }
}

/// The element's running time now, once it is playing (not while its state is
/// changing: a pipeline hands out its clock before the base time, and in between this
/// would read the clock's own time, hours ahead).
fn running_time(src: &gst_app::AppSrc) -> Option<Duration> {
    let (_, state, pending) = src.state(gst::ClockTime::ZERO);
    if state != gst::State::Playing || pending != gst::State::VoidPending {
        return None;
    }
    let clock = src.clock()?;
    let base = src.base_time()?;
    let now = clock.time();
    Some(Duration::from_nanos(now.checked_sub(base)?.nseconds()))
}

/// Whether the media holds so much already that this frame should go.
fn backed_up(src: &gst_app::AppSrc) -> bool {
    src.current_level_bytes() > MAX_QUEUED_BYTES
}

/// Pushes the encode into `src` until the media goes (`stop`, or the element flushing).
/// Asks capture for a keyframe first, so the media (and the client whose request made
/// it) starts on a picture at once.
pub async fn video(
    src: gst_app::AppSrc,
    frames: FrameBus,
    capture: CaptureHandle,
    stop: CancellationToken,
) {
    let mut sub = frames.subscribe("rtsp", FEED_QUEUE);
    capture.force_keyframe();
    let mut timing = Timing::default();
    let mut skipping = false;
    // Frames that came before the media ran on a clock: they go once it does.
    let mut waiting: Vec<EncodedFrame> = Vec::new();
    let mut pushed = 0u64;
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            f = sub.recv() => match f { Some(f) => f, None => break },
        };
        if backed_up(&src) || waiting.len() >= FEED_QUEUE {
            skipping = true;
            waiting.clear();
        }
        if skipping && !frame.keyframe {
            continue;
        }
        skipping = false;
        waiting.push(frame);
        let Some(running) = running_time(&src) else {
            if waiting.len() == 1 {
                debug!("RTSP media not playing yet: frames wait");
            }
            continue;
        };
        for frame in waiting.drain(..) {
            let pts = timing.pts(running, Utc::now(), frame.captured_at);
            if pushed.is_multiple_of(50) {
                debug!(pushed, ?pts, ?running, state = ?src.current_state(), level = src.current_level_bytes(), "RTSP video");
            }
            pushed += 1;
            let mut buffer = gst::Buffer::from_slice(frame.data);
            if let Some(b) = buffer.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
                if !frame.keyframe {
                    b.set_flags(gst::BufferFlags::DELTA_UNIT);
                }
            }
            if let Err(e) = src.push_buffer(buffer) {
                // Flushing (the media seeks or changes state): only `stop` ends a feed.
                debug!(error = ?e, "RTSP video frame not taken; resuming at a keyframe");
                skipping = true;
                break;
            }
        }
    }
    debug!("RTSP video feed stopped");
}

/// Pushes the AAC sound into `src` until the media goes. Caps follow the frames' format.
/// Until the microphone's first frame, it pushes silence, so a quiet or broken
/// microphone never holds up the picture (a media starts only once every stream has
/// data).
pub async fn audio(
    src: gst_app::AppSrc,
    bus: AudioBus,
    silence: Option<SilentAac>,
    stop: CancellationToken,
) {
    let mut sub = bus.subscribe("rtsp-audio", AUDIO_FEED_QUEUE);
    let mut timing = Timing::default();
    let mut caps: Option<gst::Caps> = None;
    let mut live = false;
    let mut tick = tokio::time::interval(
        silence
            .as_ref()
            .map_or(Duration::from_secs(3600), |s| s.duration),
    );
    loop {
        let (data, captured_at, duration, format) = tokio::select! {
            _ = stop.cancelled() => break,
            f = sub.recv() => match f {
                Some(f) => { live = true; (f.data, f.captured_at, f.duration, f.format) }
                None => break,
            },
            _ = tick.tick(), if !live && silence.is_some() => match &silence {
                Some(s) => (s.frame.clone(), Utc::now(), s.duration, s.format.clone()),
                None => continue,
            },
        };
        let want = crate::capture::aac_caps(&format);
        if caps.as_ref() != Some(&want) {
            src.set_caps(Some(&want));
            caps = Some(want);
        }
        let Some(running) = running_time(&src) else {
            continue;
        };
        if backed_up(&src) {
            continue;
        }
        let pts = timing.pts_following(running, Utc::now(), captured_at, duration);
        let mut buffer = gst::Buffer::from_slice(data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
        }
        if let Err(e) = src.push_buffer(buffer) {
            // Flushing (the media seeks or changes state): only `stop` ends a feed.
            debug!(error = ?e, "RTSP audio frame not taken");
        }
    }
    debug!("RTSP audio feed stopped");
}

/// One frame of AAC silence and its format, for the time before the microphone's first.
#[derive(Debug, Clone)]
pub struct SilentAac {
    pub frame: bytes::Bytes,
    pub format: crate::media::AudioFormat,
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_leave_with_their_capture_timing_and_never_go_back() {
        let t0: DateTime<Utc> = "2026-12-08T10:00:00Z".parse().unwrap();
        let ms = |n: i64| chrono::Duration::milliseconds(n);
        let mut video = Timing::default();
        let mut audio = Timing::default();
        let run = Duration::from_secs(5);
        // Video captured 40 ms ago, sound captured 100 ms ago (its encoder is slower):
        // both get the running time of their capture.
        assert_eq!(
            video.pts(run, t0 + ms(40), t0),
            run - Duration::from_millis(40)
        );
        assert_eq!(
            audio.pts(run, t0 + ms(100), t0),
            run - Duration::from_millis(100)
        );
        // A frame that would go back in time is moved just after the last one.
        let p = video.pts(run, t0 + ms(500), t0);
        assert_eq!(
            p,
            run - Duration::from_millis(40) + Duration::from_micros(1)
        );
        // A clock step (captured "in the future", or hours ago) counts as captured now.
        let mut t = Timing::default();
        assert_eq!(t.pts(run, t0, t0 + ms(3000)), run);
        let mut t = Timing::default();
        assert_eq!(t.pts(run, t0 + ms(3_600_000), t0), run);
    }

    #[test]
    fn sound_frames_follow_each_other_through_bursts_and_jump_only_over_a_gap() {
        let t0: DateTime<Utc> = "2026-12-08T10:00:00Z".parse().unwrap();
        let ms = |n: u64| Duration::from_millis(n);
        let at = |n: i64| t0 + chrono::Duration::milliseconds(n);
        let frame = ms(20);
        let mut t = Timing::default();
        let run = Duration::from_secs(5);
        assert_eq!(t.pts_following(run, at(0), at(0), frame), run);
        // Three frames arrive at once, 60 ms late: each follows the last.
        for i in 1..=3 {
            assert_eq!(
                t.pts_following(run + ms(60), at(60), at(20 * i), frame),
                run + ms(20 * i as u64)
            );
        }
        // A frame whose capture says 200 ms went missing starts after the gap.
        let p = t.pts_following(run + ms(300), at(300), at(300), frame);
        assert_eq!(p, run + ms(300));
    }
}
