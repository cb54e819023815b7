//! The recorder's motion detection: each analysis frame scored, motion turned into
//! triggers, and the score and "motion now" published (the score at most once a second).

use std::time::Duration;

use tracing::info;

use super::handle::RecorderStatus;
use super::task::{Recorder, MOTION_HOLD};
use crate::events::{Input, Trigger, TriggerKind};
use crate::media::AnalysisFrame;

/// The score goes out on the status at most this often.
pub const SCORE_EVERY: Duration = Duration::from_secs(1);

/// A score as the status gives it: one decimal, so tiny changes do not count as news.
pub fn round_score(score: f32) -> f32 {
    (score * 10.0).round() / 10.0
}

impl Recorder {
    pub(super) async fn on_analysis(&mut self, a: &AnalysisFrame) {
        if !self.detect {
            return;
        }
        let r = self.detector.process(&a.data, a.width, a.height, a.stride);
        self.deps.motion.score.set(f64::from(r.score));
        if r.lighting {
            info!("the light changed (most of the picture at once): not motion; the background starts again");
        }
        if r.motion {
            self.last_motion = Some(self.now());
        }
        self.score = r.score;
        self.update_motion();
        if r.motion {
            let trigger = Trigger {
                kind: TriggerKind::Motion,
                label: "motion".into(),
                score: r.score,
                duration: None,
            };
            let actions = self.tracker.handle(self.now(), Input::Trigger(trigger));
            self.apply(actions).await;
        }
    }

    pub(super) fn update_motion(&mut self) {
        let hold = chrono::Duration::from_std(MOTION_HOLD).unwrap_or_default();
        let now = self.now();
        let moving = self.detect && self.last_motion.is_some_and(|t| now - t <= hold);
        // The score goes out at most once a second (MQTT state, the viewer page).
        let mono = self.deps.clocks.monotonic();
        let score_due = self.published_score != round_score(self.score)
            && mono.duration_since(self.score_published_at) >= SCORE_EVERY;
        if moving != self.moving || score_due {
            self.moving = moving;
            self.publish_status();
        }
    }

    pub(super) fn publish_status(&mut self) {
        self.published_score = round_score(self.score);
        self.score_published_at = self.deps.clocks.monotonic();
        self.status.send_replace(RecorderStatus {
            recording: self.tracker.recording(),
            event_id: self.tracker.current().map(|e| e.id.clone()),
            detect: self.detect,
            motion: self.moving,
            motion_score: self.published_score,
        });
    }
}
