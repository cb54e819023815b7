//! The recorder's motion detection: each analysis frame scored, motion turned into
//! triggers, and whether there is motion now, with the score, for the status (the score
//! at most once a second).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::info;

use crate::commands::MotionReport;
use crate::events::{MotionDetector, MotionSettings, Rect, Trigger, TriggerKind};
use crate::media::AnalysisFrame;
use crate::metrics::MotionMetrics;

/// The score goes out on the status at most this often.
pub const SCORE_EVERY: Duration = Duration::from_secs(1);

/// Motion counts as going on this long after the last analysis frame that showed some
/// (analysis runs at a few frames a second; a person pausing is still there).
pub const MOTION_HOLD: Duration = Duration::from_secs(2);

/// A score as the status gives it: one decimal, so tiny changes do not count as news.
pub fn round_score(score: f32) -> f32 {
    (score * 10.0).round() / 10.0
}

/// The detector, whether it is on, and what the status last said of it.
#[derive(Debug)]
pub(super) struct Motion {
    detector: MotionDetector,
    settings: MotionSettings,
    detect: bool,
    /// When the detector last saw motion.
    last_motion: Option<DateTime<Utc>>,
    /// What the status says about motion now.
    moving: bool,
    /// The box around what changed in the last frame that showed motion, in fractions.
    changed_box: Option<Rect>,
    /// The detector's last score, and the one the status last gave, and when.
    score: f32,
    published_score: f32,
    published_at: Instant,
}

impl Motion {
    pub fn new(settings: MotionSettings, detect: bool, now: Instant) -> Self {
        Self {
            detector: MotionDetector::new(settings.clone()),
            settings,
            detect,
            last_motion: None,
            moving: false,
            changed_box: None,
            score: 0.0,
            published_score: 0.0,
            published_at: now,
        }
    }

    /// New areas to ignore, from the next analysis frame on.
    pub fn set_masks(&mut self, masks: Vec<crate::events::Polygon>) {
        self.settings.masks = masks.clone();
        self.detector.set_masks(masks);
    }

    pub fn detect(&self) -> bool {
        self.detect
    }

    /// Turns detection on or off; on starts from a fresh background (a stale one would
    /// see everything that changed meanwhile).
    pub fn set_detect(&mut self, enabled: bool) {
        if enabled && !self.detect {
            self.detector = MotionDetector::new(self.settings.clone());
        }
        self.detect = enabled;
    }

    /// Scores an analysis frame taken at `now`: the trigger it makes when it shows
    /// motion. Nothing while detection is off.
    pub fn analyse(
        &mut self,
        a: &AnalysisFrame,
        now: DateTime<Utc>,
        metrics: &MotionMetrics,
    ) -> Option<Trigger> {
        if !self.detect {
            return None;
        }
        let r = self.detector.process(&a.data, a.width, a.height, a.stride);
        metrics.score.set(f64::from(r.score));
        if r.lighting {
            info!("the light changed (most of the picture at once): not motion; the background starts again");
        }
        self.score = r.score;
        if !r.motion {
            return None;
        }
        self.last_motion = Some(now);
        self.changed_box = r.bbox.map(|b| {
            let (w, h) = (a.width.max(1) as f32, a.height.max(1) as f32);
            Rect::new(
                b.x as f32 / w,
                b.y as f32 / h,
                (b.x + b.width) as f32 / w,
                (b.y + b.height) as f32 / h,
            )
        });
        Some(Trigger {
            kind: TriggerKind::Motion,
            label: "motion".into(),
            score: r.score,
            duration: None,
            since: None,
            zones: Vec::new(),
        })
    }

    /// Whether the status must go out now: motion started or stopped, or a new score
    /// is due.
    pub fn changed(&mut self, now: DateTime<Utc>, mono: Instant) -> bool {
        let hold = chrono::Duration::from_std(MOTION_HOLD).unwrap_or_default();
        let moving = self.detect && self.last_motion.is_some_and(|t| now - t <= hold);
        let score_due = self.published_score != round_score(self.score)
            && mono.duration_since(self.published_at) >= SCORE_EVERY;
        let changed = moving != self.moving || score_due;
        self.moving = moving;
        changed
    }

    /// The status goes out at `mono`: whether there is motion, and the score it gives.
    pub fn published(&mut self, mono: Instant) -> (bool, f32) {
        self.published_score = round_score(self.score);
        self.published_at = mono;
        (self.moving, self.published_score)
    }

    /// The box around what changed in the last frame that showed motion.
    pub fn changed_box(&self) -> Option<Rect> {
        self.changed_box
    }

    pub fn report(&self) -> MotionReport {
        MotionReport {
            moving: self.moving,
            score: round_score(self.score),
            min_area_percent: self.settings.min_area_percent,
            threshold: self.settings.threshold,
        }
    }
}
