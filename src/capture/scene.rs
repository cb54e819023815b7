//! The built-in test scene. A pipeline element named `scene` (the test pattern's
//! `videotestsrc`) shows its moving ball for `MOVING`, then a still black picture for
//! `STILL`, over and over, so a camera on the defaults records events that start and
//! end, as a real scene would.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// How long the ball moves.
pub const MOVING: Duration = Duration::from_secs(10);
/// How long the picture then stays still: longer than the default post-roll (10 s) and
/// event gap (5 s), so each event ends before the next movement.
pub const STILL: Duration = Duration::from_secs(30);
/// How often the capture task looks at the time.
pub const TICK: Duration = Duration::from_millis(200);

/// Whether the ball moves `elapsed` after the pipeline started.
pub fn moving(elapsed: Duration) -> bool {
    let period = (MOVING + STILL).as_millis();
    elapsed.as_millis() % period < MOVING.as_millis()
}

/// The `scene` element of a running pipeline.
pub struct Scene {
    element: gst::Element,
    moving: bool,
}

impl Scene {
    /// The pipeline's `scene` element, when it is a `videotestsrc`.
    pub fn find(pipeline: &gst::Pipeline) -> Option<Scene> {
        let element = pipeline.by_name("scene")?;
        if element.factory()?.name() != "videotestsrc" {
            tracing::warn!("the element named \"scene\" is not a videotestsrc; it is left alone");
            return None;
        }
        Some(Scene {
            element,
            moving: true,
        })
    }

    /// Switches between the moving ball and the still picture as the time says.
    pub fn update(&mut self, elapsed: Duration) {
        let now = moving(elapsed);
        if now != self.moving {
            self.moving = now;
            let pattern = if now { "ball" } else { "black" };
            self.element.set_property_from_str("pattern", pattern);
            tracing::debug!(pattern, "test scene");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ball_moves_then_rests_over_and_over() {
        let s = Duration::from_secs;
        assert!(moving(s(0)));
        assert!(moving(s(9)));
        assert!(!moving(s(10)));
        assert!(!moving(s(39)));
        assert!(moving(s(40)));
        assert!(!moving(s(55)));
    }
}
