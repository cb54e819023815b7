//! The clock part: reads the wall and monotonic clocks every second, decides with
//! `clock::ClockWatch` whether the wall clock is set and whether it stepped, corrects
//! the index when it was set, then publishes `ClockState` to the parts that record,
//! send or show times.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::{ClockState, ClockWatch, FLOOR_UNIX_S};
use crate::index::Index;

/// How often the clocks are read.
const EVERY: Duration = Duration::from_secs(1);

/// Starts watching; the first state is already in the receiver.
pub fn spawn(
    index: Index,
    wake: Vec<std::sync::Arc<tokio::sync::Notify>>,
    stop: CancellationToken,
) -> (watch::Receiver<ClockState>, JoinHandle<()>) {
    let floor = DateTime::<Utc>::from_timestamp(FLOOR_UNIX_S, 0).unwrap_or_default();
    let mut watch = ClockWatch::new(floor);
    let origin = Instant::now();
    let now = Utc::now();
    watch.observe(now, Duration::ZERO);
    if !watch.state().synced {
        warn!(
            clock = %now,
            floor = %floor,
            "the clock is not set (it reads a time before this release): recording on \
             provisional times until NTP sets it; uploads wait, and this run's times are \
             corrected then"
        );
    }
    let (tx, rx) = watch::channel(watch.state().clone());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let step = watch.observe(Utc::now(), origin.elapsed());
            let Some(step) = step else { continue };
            match step.correction {
                // Corrected before anyone is told, so nothing sends an old time after.
                Some(c) => match index.correct_times(&c).await {
                    Ok(moved) => info!(
                        by_s = step.delta.num_seconds(),
                        moved,
                        clock = %Utc::now(),
                        "the clock is set; times recorded before are corrected"
                    ),
                    Err(e) => {
                        error!(error = %e, "the clock is set, but the times recorded before cannot be corrected")
                    }
                },
                None => warn!(by_ms = step.delta.num_milliseconds(), "the clock stepped"),
            }
            tx.send_replace(watch.state().clone());
            for w in &wake {
                w.notify_one();
            }
        }
    });
    (rx, task)
}
