//! The built-in test scene. A pipeline element named `scene` (the test pattern's
//! `videotestsrc`) shows its moving ball, and an overlay named `stage`
//! (`gdkpixbufoverlay`) can show a photograph of a person walking across the picture,
//! each in its turn, with a still black picture in between:
//!
//! | from | for | what moves |
//! |---|---|---|
//! | 0 s | 10 s | the ball |
//! | 10 s | 30 s | nothing |
//! | 40 s | 10 s | a person walks from right to left |
//! | 50 s | 30 s | nothing |
//!
//! So a camera on the defaults records events that start and end, as a real scene would,
//! and the object detector has something to tell from a ball. The photograph is the
//! first of `PERSON_PHOTOS` that exists (the package ships scikit-image's astronaut, a
//! NASA photograph in the public domain); without one the person stays hidden.

use std::path::PathBuf;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

/// How long the ball moves, then the person walks.
pub const MOVING: Duration = Duration::from_secs(10);
/// How long the picture then stays still: longer than the default post-roll (10 s) and
/// event gap (5 s), so each event ends before the next movement.
pub const STILL: Duration = Duration::from_secs(30);
/// How often the capture task looks at the time.
pub const TICK: Duration = Duration::from_millis(200);

/// Where the person's photograph is looked for (the last relative to the working
/// directory, as `pipelines/` is, for a source checkout).
pub const PERSON_PHOTOS: &[&str] = &[
    "/etc/edgecam/scene/person.png",
    "/usr/share/edgecam/scene/person.png",
    "scene/person.png",
];

/// `EDGECAM_SCENE_OFFSET_S=<seconds>` starts the scene that far into its cycle, so a
/// test, a benchmark or a demo that needs the person need not wait 40 s for her. It
/// changes nothing but the built-in test scene.
pub fn test_offset() -> Duration {
    std::env::var("EDGECAM_SCENE_OFFSET_S")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// What the scene shows `elapsed` after the pipeline started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Ball,
    /// The person, this far across (0 = entering on the right, 1 = gone on the left).
    Person(f32),
    Still,
}

/// The phase at `elapsed`.
pub fn phase(elapsed: Duration) -> Phase {
    let turn = (MOVING + STILL).as_millis();
    let at = elapsed.as_millis() % (2 * turn);
    let moving = MOVING.as_millis();
    if at < moving {
        Phase::Ball
    } else if (turn..turn + moving).contains(&at) {
        Phase::Person((at - turn) as f32 / moving as f32)
    } else {
        Phase::Still
    }
}

/// Whether the ball moves `elapsed` after the pipeline started.
pub fn moving(elapsed: Duration) -> bool {
    phase(elapsed) == Phase::Ball
}

/// The first person photograph that exists.
pub fn person_photo() -> Option<PathBuf> {
    PERSON_PHOTOS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Gives the pipeline's `stage` overlay (if any) the person's photograph; without one
/// it draws nothing. Runs while the pipeline is built.
pub fn feed_person(pipeline: &gst::Pipeline) {
    let Some(stage) = pipeline.by_name("stage") else {
        return;
    };
    match person_photo() {
        Some(photo) => stage.set_property("location", photo.to_string_lossy().as_ref()),
        None => tracing::info!(
            looked_in = PERSON_PHOTOS.join(", "),
            "no photograph for the test scene's person: only the ball moves"
        ),
    }
}

/// The scene's elements in a running pipeline.
pub struct Scene {
    element: gst::Element,
    /// The overlay that draws the person.
    person: Option<gst::Element>,
    shown: Option<Phase>,
}

impl Scene {
    /// The pipeline's `scene` element, when it is a `videotestsrc`.
    pub fn find(pipeline: &gst::Pipeline) -> Option<Scene> {
        let element = pipeline.by_name("scene")?;
        if element.factory()?.name() != "videotestsrc" {
            tracing::warn!("the element named \"scene\" is not a videotestsrc; it is left alone");
            return None;
        }
        let person = pipeline.by_name("stage");
        Some(Scene {
            element,
            person,
            shown: None,
        })
    }

    /// Moves the ball or the person as the time says.
    pub fn update(&mut self, elapsed: Duration) {
        let now = phase(elapsed);
        if self.shown == Some(now) {
            return;
        }
        let was = self.shown.replace(now);
        let pattern = if now == Phase::Ball { "ball" } else { "black" };
        if was.is_none() || (was == Some(Phase::Ball)) != (now == Phase::Ball) {
            self.element.set_property_from_str("pattern", pattern);
            tracing::debug!(pattern, "test scene");
        }
        let Some(stage) = &self.person else { return };
        if matches!(now, Phase::Person(_)) && !matches!(was, Some(Phase::Person(_))) {
            // Benchmarks time what follows from here (`benches/detect.rs`).
            tracing::info!("test scene: the person walks in");
        }
        match now {
            Phase::Person(across) => {
                let width = stage
                    .static_pad("src")
                    .and_then(|p| p.current_caps())
                    .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("width").ok()))
                    .unwrap_or(0);
                // From right to left: the photograph's left part, where she stands,
                // comes into view first, so she is in view from the first frame.
                let person = stage.property::<i32>("overlay-width");
                let x = width as f32 - across * (width + person) as f32;
                stage.set_property("offset-x", x.round() as i32);
                stage.set_property("alpha", 1.0f64);
            }
            _ => stage.set_property("alpha", 0.0f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ball_moves_then_a_person_walks_with_rests_between() {
        let s = Duration::from_secs;
        assert!(moving(s(0)));
        assert!(moving(s(9)));
        assert!(!moving(s(10)));
        assert_eq!(phase(s(39)), Phase::Still);
        assert_eq!(phase(s(40)), Phase::Person(0.0));
        assert_eq!(phase(s(45)), Phase::Person(0.5));
        assert_eq!(phase(s(50)), Phase::Still);
        assert_eq!(phase(s(79)), Phase::Still);
        assert!(moving(s(80)));
        assert!(!moving(s(95)));
    }
}
