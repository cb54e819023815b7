//! Valves the daemon opens and shuts while a pipeline runs: a `valve` element that drops
//! its branch's buffers until someone wants them (the Opus encode while a viewer
//! listens, the detector's pictures while something moves), so no work is done for
//! nobody.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::watch;

/// How often a gate whose pipeline may be gone looks (it ends with its pipeline).
const GATE_CHECK: Duration = Duration::from_secs(10);

/// Keeps the pipeline's valve `name` open while `open(value)` holds for the watched
/// value, and shut otherwise. Nothing happens when the pipeline has no such valve.
pub(super) fn valve<T: Send + Sync + 'static>(
    pipeline: &gst::Pipeline,
    name: &str,
    mut value: watch::Receiver<T>,
    open: fn(&T) -> bool,
) {
    let Some(valve) = pipeline.by_name(name) else {
        return;
    };
    let set = move |valve: &gst::Element, v: &T| valve.set_property("drop", !open(v));
    set(&valve, &value.borrow_and_update());
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let valve = valve.downgrade();
    runtime.spawn(async move {
        loop {
            let changed = tokio::time::timeout(GATE_CHECK, value.changed()).await;
            let Some(valve) = valve.upgrade() else { return };
            match changed {
                Ok(Ok(())) => set(&valve, &value.borrow_and_update()),
                Ok(Err(_)) => return,
                Err(_) => {}
            }
        }
    });
}
