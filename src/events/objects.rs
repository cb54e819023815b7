//! Objects across frames: the detector's boxes of each analysed frame matched to the
//! objects already known (greatest overlap first), so a person who stays is one object
//! with one id, not an alert per frame. Pure: detections and time in, what changed out.
//!
//! - An object *counts* (is confirmed) once it was seen in `confirm_hits` of the last
//!   `confirm_window` frames it could have been seen in, each at or above its label's
//!   minimum score.
//! - It is *announced* once, when it counts and is active: its box moved since it was
//!   first seen, or a good part of it changed (the motion detector's box covers it). A
//!   car parked before anything moved is confirmed but never announced.
//! - An announced object that stays put for `still_after` is *still*: remembered, not
//!   re-announced, and no longer a reason to keep an event going. When it is lost from
//!   view (a person walks in front) and found again in the same place, it keeps its id.
//! - An object not seen in `forget_misses` analysed frames in a row is forgotten; a still
//!   one is remembered for `remember` after it was last seen. Frames are analysed only
//!   while something moves, so a parked car is not forgotten by a quiet night.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::geometry::Rect;
use super::tracker::Time;

/// One box the detector found in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub label: String,
    pub score: f32,
    pub rect: Rect,
}

/// How detections become objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSettings {
    /// The labels that count, each with its minimum score (0–1).
    pub min_scores: BTreeMap<String, f32>,
    /// Seen in this many of the last `confirm_window` frames: the object counts.
    pub confirm_hits: u32,
    pub confirm_window: u32,
    /// Boxes of the same label overlapping at least this much (IoU) are one object.
    pub match_iou: f32,
    /// Moved this much (in box widths or heights) since first seen: the object moves.
    pub move_boxes: f32,
    /// At least this share of the box inside the motion detector's box: active.
    pub motion_cover: f32,
    /// An announced object that has not moved for this long is still.
    pub still_after: Duration,
    /// Not seen in this many analysed frames in a row: forgotten (unless still).
    pub forget_misses: u32,
    /// A still object is remembered this long after it was last seen.
    pub remember: Duration,
}

impl Default for ObjectSettings {
    fn default() -> Self {
        Self {
            min_scores: BTreeMap::new(),
            confirm_hits: 2,
            confirm_window: 3,
            match_iou: 0.3,
            move_boxes: 0.5,
            motion_cover: 0.3,
            still_after: Duration::from_secs(30),
            forget_misses: 6,
            remember: Duration::from_secs(24 * 3600),
        }
    }
}

/// An object as others see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Object {
    pub id: u64,
    pub label: String,
    /// Its best score so far.
    pub score: f32,
    /// Where it was last seen.
    #[serde(rename = "box")]
    pub rect: Rect,
    /// Announced and not still: a reason for an event to go on.
    pub active: bool,
}

/// What one frame changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Objects announced in this frame (each object once in its life).
    pub announced: Vec<Object>,
    /// Every announced object still known, with where it is now.
    pub present: Vec<Object>,
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    label: String,
    rect: Rect,
    score: f32,
    /// Where it was first seen, or last came to rest.
    anchor: Rect,
    /// When it last moved by `move_boxes` from `anchor`.
    moved_at: Time,
    /// The last frames, newest in bit 0: 1 = seen.
    seen: u32,
    misses: u32,
    last_seen: Time,
    moved: bool,
    announced: bool,
    still: bool,
}

impl Track {
    fn confirmed(&self, s: &ObjectSettings) -> bool {
        let window = s.confirm_window.clamp(1, 32);
        let mask = if window == 32 {
            u32::MAX
        } else {
            (1 << window) - 1
        };
        (self.seen & mask).count_ones() >= s.confirm_hits
    }

    fn view(&self) -> Object {
        Object {
            id: self.id,
            label: self.label.clone(),
            score: self.score,
            rect: self.rect,
            active: self.announced && !self.still,
        }
    }
}

/// The objects known now; feed it each analysed frame's detections in order.
#[derive(Debug, Clone)]
pub struct Objects {
    settings: ObjectSettings,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Objects {
    pub fn new(settings: ObjectSettings) -> Self {
        Self {
            settings,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn settings(&self) -> &ObjectSettings {
        &self.settings
    }

    /// New settings (labels, scores); the objects known stay.
    pub fn set_settings(&mut self, settings: ObjectSettings) {
        self.settings = settings;
    }

    /// Takes one analysed frame at `now`: its detections and the box around what the
    /// motion detector saw change (if anything).
    pub fn handle(&mut self, now: Time, detections: &[Detection], motion: Option<Rect>) -> Frame {
        let wanted: Vec<&Detection> = detections
            .iter()
            .filter(|d| {
                self.settings
                    .min_scores
                    .get(&d.label)
                    .is_some_and(|min| d.score >= *min)
            })
            .collect();
        let matched = self.match_boxes(&wanted);
        for track in &mut self.tracks {
            track.seen <<= 1;
            track.misses += 1;
        }
        for (i, d) in wanted.iter().enumerate() {
            match matched[i] {
                Some(t) => self.seen_again(t, d, now, motion),
                None => self.seen_first(d, now, motion),
            }
        }
        let mut frame = Frame::default();
        for track in &mut self.tracks {
            if !track.announced && track.confirmed(&self.settings) && track.moved {
                track.announced = true;
                frame.announced.push(track.view());
            }
            let still_for = (now - track.moved_at).to_std().unwrap_or_default();
            if track.announced && !track.still && still_for >= self.settings.still_after {
                track.still = true;
            }
        }
        let (forget, remember) = (self.settings.forget_misses, self.settings.remember);
        self.tracks.retain(|t| {
            if t.still {
                (now - t.last_seen).to_std().unwrap_or_default() < remember
            } else {
                t.misses < forget
            }
        });
        frame.present = self
            .tracks
            .iter()
            .filter(|t| t.announced && t.misses == 0)
            .map(Track::view)
            .collect();
        frame
    }

    /// For each detection, the track it continues: pairs of the same label by overlap,
    /// greatest first, each track and detection used once.
    fn match_boxes(&self, wanted: &[&Detection]) -> Vec<Option<usize>> {
        let mut pairs = Vec::new();
        for (d, det) in wanted.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                if track.label != det.label {
                    continue;
                }
                // Overlapping boxes pair first; a fast object whose boxes barely
                // overlap from one picture to the next still pairs with the nearest.
                let iou = track.rect.iou(&det.rect);
                if iou >= self.settings.match_iou {
                    pairs.push((1.0 + iou, d, t));
                } else if !displaced(&track.rect, &det.rect, NEAR_BOXES) {
                    pairs.push((iou, d, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut by_detection = vec![None; wanted.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, d, t) in pairs {
            if by_detection[d].is_none() && !taken[t] {
                by_detection[d] = Some(t);
                taken[t] = true;
            }
        }
        by_detection
    }

    fn seen_again(&mut self, t: usize, d: &Detection, now: Time, motion: Option<Rect>) {
        let s = &self.settings;
        let track = &mut self.tracks[t];
        track.seen |= 1;
        track.misses = 0;
        track.rect = d.rect;
        track.score = track.score.max(d.score);
        track.last_seen = now;
        if displaced(&track.anchor, &d.rect, s.move_boxes) {
            track.moved = true;
            track.anchor = d.rect;
            track.moved_at = now;
            track.still = false;
        } else if !track.announced && covered(&d.rect, motion, s.motion_cover) {
            track.moved = true;
        }
    }

    fn seen_first(&mut self, d: &Detection, now: Time, motion: Option<Rect>) {
        let id = self.next_id;
        self.next_id += 1;
        self.tracks.push(Track {
            id,
            label: d.label.clone(),
            rect: d.rect,
            score: d.score,
            anchor: d.rect,
            moved_at: now,
            seen: 1,
            misses: 0,
            last_seen: now,
            moved: covered(&d.rect, motion, self.settings.motion_cover),
            announced: false,
            still: false,
        });
    }
}

/// A box whose centre is within this many box sizes of a known object's may be that
/// object, moved.
const NEAR_BOXES: f32 = 0.75;

/// Whether `now` is more than `boxes` of the box's size away from `from`.
fn displaced(from: &Rect, now: &Rect, boxes: f32) -> bool {
    let ([ax, ay], [bx, by]) = (from.centre(), now.centre());
    let w = from.width().max(now.width()).max(1e-3);
    let h = from.height().max(now.height()).max(1e-3);
    ((bx - ax) / w).abs() > boxes || ((by - ay) / h).abs() > boxes
}

/// Whether at least `share` of `rect` lies inside the motion box.
fn covered(rect: &Rect, motion: Option<Rect>, share: f32) -> bool {
    let Some(m) = motion else { return false };
    let inter = rect.intersection(&m).area();
    rect.area() > 0.0 && inter / rect.area() >= share
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
