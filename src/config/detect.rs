//! `[detect]`: the object detector, and `[[zones]]`: where which objects matter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::in_range;
use crate::events::{ObjectSettings, Zone};

/// Where the Debian package installs the model.
pub const SHIPPED_MODEL: &str = "/usr/share/edgecam/models/yolov3-tiny-320.onnx";

/// `[detect]`: what the detector looks for, and how hard it works.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Detect {
    /// Run the object detector on pictures where something moves. Default false.
    pub enabled: bool,
    /// The model: an ONNX file of the Darknet YOLO family (as shipped, or converted
    /// with the package's `darknet2onnx.py`). Default
    /// `/usr/share/edgecam/models/yolov3-tiny-320.onnx`.
    pub model: PathBuf,
    /// Pictures analysed per second at most, and only while something moves, 0.2–10.
    /// Default 2.
    pub fps: f64,
    /// The labels that count (the model's names, COCO: person, bicycle, car, motorbike,
    /// bus, truck, cat, dog, bird, …). Default person, bicycle, car, motorbike, bus,
    /// truck, cat, dog, bird.
    pub labels: Vec<String>,
    /// The lowest score (0.05–1) at which a box counts. Default 0.3.
    pub min_score: f32,
    /// Per-label minimum scores, overriding `min_score`, e.g. `{ person = 0.25 }`.
    /// Default none.
    pub min_scores: BTreeMap<String, f32>,
    /// An object counts once seen in `confirm_frames` of `confirm_window` pictures in a
    /// row (1–10 of 1–10). Defaults 2 of 3.
    pub confirm_frames: u32,
    pub confirm_window: u32,
    /// An object that has not moved for this many seconds is still (a parked car):
    /// remembered, not announced again, 5–3600. Default 30.
    pub still_after_s: f64,
}

impl Default for Detect {
    fn default() -> Self {
        Self {
            enabled: false,
            model: SHIPPED_MODEL.into(),
            fps: 2.0,
            labels: [
                "person",
                "bicycle",
                "car",
                "motorbike",
                "bus",
                "truck",
                "cat",
                "dog",
                "bird",
            ]
            .map(String::from)
            .to_vec(),
            min_score: 0.3,
            min_scores: BTreeMap::new(),
            confirm_frames: 2,
            confirm_window: 3,
            still_after_s: 30.0,
        }
    }
}

impl Detect {
    /// Each wanted label with its minimum score.
    pub fn scores(&self) -> BTreeMap<String, f32> {
        self.labels
            .iter()
            .map(|l| {
                let min = self.min_scores.get(l).copied().unwrap_or(self.min_score);
                (l.clone(), min)
            })
            .collect()
    }

    pub fn objects(&self) -> ObjectSettings {
        ObjectSettings {
            min_scores: self.scores(),
            confirm_hits: self.confirm_frames,
            confirm_window: self.confirm_window,
            still_after: Duration::try_from_secs_f64(self.still_after_s).unwrap_or_default(),
            ..ObjectSettings::default()
        }
    }

    pub(super) fn validate(
        &self,
        zones: &[Zone],
        bad: &mut impl FnMut(&'static str, &'static str, String),
    ) {
        in_range(bad, "detect", "fps", self.fps, 0.2, 10.0);
        in_range(bad, "detect", "min_score", self.min_score, 0.05, 1.0);
        for (label, score) in &self.min_scores {
            if !(0.05..=1.0).contains(score) {
                bad(
                    "detect",
                    "min_scores",
                    format!("{label}: must be between 0.05 and 1, got {score}"),
                );
            }
            if !self.labels.contains(label) {
                bad(
                    "detect",
                    "min_scores",
                    format!(
                        "{label:?} is not one of detect.labels; add it there or remove it here"
                    ),
                );
            }
        }
        if self.enabled && self.labels.is_empty() {
            bad(
                "detect",
                "labels",
                "names no label; name at least one (such as \"person\") or set detect.enabled = false".into(),
            );
        }
        in_range(bad, "detect", "confirm_window", self.confirm_window, 1, 10);
        if !(1..=self.confirm_window.max(1)).contains(&self.confirm_frames) {
            bad(
                "detect",
                "confirm_frames",
                format!(
                    "must be between 1 and confirm_window ({}), got {}",
                    self.confirm_window, self.confirm_frames
                ),
            );
        }
        in_range(
            bad,
            "detect",
            "still_after_s",
            self.still_after_s,
            5.0,
            3600.0,
        );
        let mut names = std::collections::BTreeSet::new();
        for z in zones {
            if z.name.trim().is_empty() || !names.insert(z.name.as_str()) {
                bad(
                    "zones",
                    "name",
                    format!("every zone needs a name of its own, got {:?}", z.name),
                );
            }
            if let Some(problem) = z.polygon.problem() {
                bad("zones", "polygon", format!("zone {:?}: {problem}", z.name));
            }
            for l in &z.labels {
                if !self.labels.contains(l) {
                    bad(
                        "zones",
                        "labels",
                        format!(
                            "zone {:?} wants {l:?}, which is not one of detect.labels",
                            z.name
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Polygon;

    fn keys(d: &Detect, zones: &[Zone]) -> Vec<String> {
        let mut out = Vec::new();
        d.validate(zones, &mut |s: &'static str, k: &'static str, m: String| {
            out.push(format!("{s}.{k}: {m}"))
        });
        out
    }

    #[test]
    fn scores_fall_back_to_min_score() {
        let d = Detect {
            labels: vec!["person".into(), "car".into()],
            min_scores: BTreeMap::from([("person".into(), 0.25)]),
            ..Detect::default()
        };
        assert_eq!(
            d.scores(),
            BTreeMap::from([("car".into(), 0.3), ("person".into(), 0.25)])
        );
        assert!(keys(&d, &[]).is_empty());
    }

    #[test]
    fn mistakes_name_their_key() {
        let d = Detect {
            min_scores: BTreeMap::from([("unicorn".into(), 2.0)]),
            confirm_frames: 4,
            ..Detect::default()
        };
        let zones = vec![
            Zone {
                name: "drive".into(),
                polygon: Polygon(vec![[0.0, 0.0], [1.0, 0.0]]),
                labels: vec!["tractor".into()],
            },
            Zone {
                name: "drive".into(),
                polygon: Polygon::from_xywh([0.0, 0.0, 0.5, 0.5]),
                labels: vec![],
            },
        ];
        let got = keys(&d, &zones);
        let text = got.join("\n");
        assert_eq!(got.len(), 6, "{text}");
        for want in [
            "unicorn: must be between",
            "\"unicorn\" is not one of detect.labels",
            "detect.confirm_frames",
            "zone \"drive\": a polygon needs at least 3",
            "wants \"tractor\"",
            "a name of its own",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
