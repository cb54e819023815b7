//! What systemd is told: READY=1 once the pipeline plays, STOPPING=1 on shutdown, and
//! watchdog pings only while frames flow.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::warn;

use crate::capture::{CaptureState, Heartbeat};

/// Starts the readiness notice and, under `WatchdogSec=`, the watchdog pings.
pub fn supervise(capture: watch::Receiver<CaptureState>, heartbeat: Heartbeat, stall: Duration) {
    tokio::spawn(notify_ready_when_playing(capture));
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(ping_watchdog(heartbeat, period, stall));
    }
}

/// Tells systemd the daemon is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Whether the watchdog may be told all is well: frames arrived within `limit`.
fn frames_flowing(age: Option<Duration>, limit: Duration) -> bool {
    age.is_some_and(|a| a < limit)
}

/// Pings systemd's watchdog (`WatchdogSec=`) twice per period, but only while frames flow:
/// a camera wedged beyond what pipeline rebuilds fix gets the whole service restarted.
async fn ping_watchdog(heartbeat: Heartbeat, period: Duration, stall: Duration) {
    // The first check comes half a period in, not before the first frame could arrive.
    let half = period / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let mut warned = false;
    loop {
        tick.tick().await;
        if frames_flowing(heartbeat.age(Instant::now()), stall) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            warned = false;
        } else if !warned {
            warn!(
                stall_s = stall.as_secs(),
                "no frames: not pinging the systemd watchdog"
            );
            warned = true;
        }
    }
}

/// Tells systemd READY=1 the first time the pipeline reaches PLAYING.
async fn notify_ready_when_playing(mut state: watch::Receiver<CaptureState>) {
    let playing = state
        .wait_for(|s| matches!(s, CaptureState::Playing { .. }))
        .await;
    if playing.is_ok() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "could not notify systemd of readiness");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_only_while_frames_flow() {
        let limit = Duration::from_secs(10);
        assert!(!frames_flowing(None, limit), "no frame yet");
        assert!(frames_flowing(Some(Duration::from_millis(70)), limit));
        assert!(!frames_flowing(Some(Duration::from_secs(11)), limit));
    }
}
