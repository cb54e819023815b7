//! Config sections for recording: `[events]` timing, `[motion]` detection, `[storage]`
//! place and retention.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::in_range;

use crate::events::{MotionSettings, TrackerSettings};

/// `[events]`: how triggers become events and clips.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// Seconds of video kept from before the trigger (the clip starts on the keyframe at
    /// or before this), 0–30. Default 5.
    pub pre_roll_s: f64,
    /// Seconds recorded after the last trigger, 0–300. Default 10.
    pub post_roll_s: f64,
    /// Longest clip; a longer event continues in a new clip, 10–3600. Default 300.
    pub max_clip_s: f64,
    /// A trigger this soon after an event's clip ended continues that event, 0–300.
    /// Default 5.
    pub min_gap_s: f64,
    /// At most one "event updated" per this many seconds, 1–300. Default 5.
    pub update_interval_s: f64,
    /// What opens an event: `"motion"` (anything that moves), or `"objects"` (a listed
    /// object confirmed in a zone that wants it; motion only keeps the pre-roll warm).
    /// Default: `"objects"` when `detect.enabled`, else `"motion"`.
    pub trigger: Option<EventTrigger>,
}

/// What opens an event.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventTrigger {
    Motion,
    Objects,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            pre_roll_s: 5.0,
            post_roll_s: 10.0,
            max_clip_s: 300.0,
            min_gap_s: 5.0,
            update_interval_s: 5.0,
            trigger: None,
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

impl Events {
    pub fn tracker(&self) -> TrackerSettings {
        TrackerSettings {
            pre_roll: secs(self.pre_roll_s),
            post_roll: secs(self.post_roll_s),
            max_clip: secs(self.max_clip_s),
            min_gap: secs(self.min_gap_s),
            update_interval: secs(self.update_interval_s),
        }
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        for (key, value, lo, hi) in [
            ("pre_roll_s", self.pre_roll_s, 0.0, 30.0),
            ("post_roll_s", self.post_roll_s, 0.0, 300.0),
            ("max_clip_s", self.max_clip_s, 10.0, 3600.0),
            ("min_gap_s", self.min_gap_s, 0.0, 300.0),
            ("update_interval_s", self.update_interval_s, 1.0, 300.0),
        ] {
            if !(value >= lo && value <= hi) {
                bad(
                    "events",
                    key,
                    format!("must be between {lo} and {hi} seconds, got {value}"),
                );
            }
        }
    }
}

/// `[motion]`: the motion detector on the analysis frames.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Motion {
    /// Detect motion at start-up (the `detect` command changes it at run time, and that
    /// choice is remembered). Default true.
    pub enabled: bool,
    /// Brightness change (0–255) for a pixel to count as changed. Default 25.
    pub threshold: u8,
    /// Percentage of the (unmasked) picture that must change, 0.01–100. Default 0.5.
    pub min_area_percent: f32,
    /// Areas to ignore: polygons of `[x, y]` fractions of the picture (0–1), or
    /// rectangles `[x, y, width, height]`, e.g. `[[0.0, 0.0, 0.3, 0.2]]` for the top-left
    /// corner. Default none.
    pub masks: Vec<crate::events::Polygon>,
}

impl Default for Motion {
    fn default() -> Self {
        let d = MotionSettings::default();
        Self {
            enabled: true,
            threshold: d.threshold,
            min_area_percent: d.min_area_percent,
            masks: Vec::new(),
        }
    }
}

impl Motion {
    pub fn settings(&self) -> MotionSettings {
        MotionSettings {
            threshold: self.threshold,
            min_area_percent: self.min_area_percent,
            masks: self.masks.clone(),
            ..MotionSettings::default()
        }
    }

    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if self.threshold == 0 {
            bad(
                "motion",
                "threshold",
                "must be between 1 and 255 (0 would see noise as motion)".into(),
            );
        }
        if !(self.min_area_percent >= 0.01 && self.min_area_percent <= 100.0) {
            bad(
                "motion",
                "min_area_percent",
                format!(
                    "must be between 0.01 and 100, got {}",
                    self.min_area_percent
                ),
            );
        }
        for (i, m) in self.masks.iter().enumerate() {
            if let Some(problem) = m.problem() {
                bad("motion", "masks", format!("mask {}: {problem}", i + 1));
            }
        }
    }
}

/// `[storage]`: where edgecam keeps its data and how much.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Data directory (clips, index). Relative paths are taken from the working
    /// directory. Default `/var/lib/edgecam`.
    pub data_dir: PathBuf,
    /// Most bytes all clips may use; the oldest go first. 0 = no limit. Default 0.
    pub max_bytes: u64,
    /// Clips older than this many days are deleted. 0 = keep forever. Default 30.
    pub max_age_days: u32,
    /// Keep at least this percentage of the disk free by deleting the oldest clips,
    /// 0–90. Default 10.
    pub min_free_percent: f64,
    /// Most memory the pre-roll may hold, in MB (1–512). Default 64.
    pub pre_roll_max_mb: u32,
    /// Keep a clip whose upload is still pending past `max_age_days` and `max_bytes`; it
    /// is deleted only when the disk would otherwise fill. Default true.
    pub keep_until_uploaded: bool,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: "/var/lib/edgecam".into(),
            max_bytes: 0,
            max_age_days: 30,
            min_free_percent: 10.0,
            pre_roll_max_mb: 64,
            keep_until_uploaded: true,
        }
    }
}

impl Storage {
    pub(super) fn validate(&self, bad: &mut impl FnMut(&'static str, &'static str, String)) {
        if self.data_dir.as_os_str().is_empty() {
            bad("storage", "data_dir", "must not be empty".into());
        }
        in_range(
            bad,
            "storage",
            "min_free_percent",
            self.min_free_percent,
            0.0,
            90.0,
        );
        in_range(
            bad,
            "storage",
            "pre_roll_max_mb",
            self.pre_roll_max_mb,
            1,
            512,
        );
    }
}
