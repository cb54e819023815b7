//! Motion detection on small grayscale frames. Pure: frame in, score and box out.
//!
//! A running-average background; each frame is first matched to it in brightness and
//! contrast (one gain and offset for the whole picture), so a light turned on, the IR-cut
//! switch at dusk or a slow drift does not count. A pixel changed when it differs from
//! the matched background by more than `threshold`; a 4×4 cell moves when half its pixels
//! changed, so scattered sensor noise does not count either. The score is the share of
//! the unmasked picture in moving cells. More than 60 % of the cells moving at once is a
//! change of light, not motion: the background starts again from that frame.

use serde::{Deserialize, Serialize};

/// `[motion]` settings the detector needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// A pixel counts as changed when it differs from the background by more than this
    /// (0–255).
    pub threshold: u8,
    /// Motion when at least this percentage of the unmasked area changed.
    pub min_area_percent: f32,
    /// Areas to ignore (a tree, a road).
    pub masks: Vec<super::geometry::Polygon>,
    /// How fast the background follows the scene: 1/2^shift of the difference per frame
    /// (4 = 1/16: a lighting change is absorbed in a few seconds at 5 fps).
    pub adaptation_shift: u8,
}

impl Default for MotionSettings {
    fn default() -> Self {
        Self {
            threshold: 25,
            min_area_percent: 0.5,
            masks: Vec::new(),
            adaptation_shift: 4,
        }
    }
}

/// A pixel-space box within the analysis frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionResult {
    /// Percentage of the unmasked area that changed.
    pub score: f32,
    /// Box around the changed pixels, if any.
    pub bbox: Option<PixelBox>,
    /// `score >= min_area_percent`.
    pub motion: bool,
    /// The whole picture changed at once (light, not motion); the background restarted.
    pub lighting: bool,
}

const NO_MOTION: MotionResult = MotionResult {
    score: 0.0,
    bbox: None,
    motion: false,
    lighting: false,
};

/// Side of a cell, in analysis pixels.
const CELL: usize = 4;
/// Share of the cells that, moving at once, means the light changed.
const LIGHTING_SHARE: f32 = 0.6;
/// Below this mean deviation the scene is too flat to estimate its contrast: gain 1.
const FLAT: f32 = 2.0;

/// Background model and settings; feed it every analysis frame in order.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    settings: MotionSettings,
    /// Background in 8.8 fixed point, one per pixel.
    background: Vec<u16>,
    /// True for masked pixels.
    masked: Vec<bool>,
    /// Per cell: changed and considered pixels of the current frame.
    cells: Vec<(u16, u16)>,
    width: u32,
    height: u32,
}

/// One gain and offset that match a frame to the background in brightness and contrast.
#[derive(Debug, Clone, Copy)]
struct Match {
    gain: f32,
    offset: f32,
}

impl MotionDetector {
    pub fn new(settings: MotionSettings) -> Self {
        Self {
            settings,
            background: Vec::new(),
            masked: Vec::new(),
            cells: Vec::new(),
            width: 0,
            height: 0,
        }
    }

    /// Scores one GRAY8 frame (`stride` bytes per row). The first frame, and the first
    /// after a size change, only seeds the background.
    pub fn process(&mut self, data: &[u8], width: u32, height: u32, stride: u32) -> MotionResult {
        let (w, h, s) = (width as usize, height as usize, stride as usize);
        if w == 0 || h == 0 || s < w || data.len() < s * (h - 1) + w {
            return NO_MOTION;
        }
        if (width, height) != (self.width, self.height) || self.background.len() != w * h {
            self.reset(data, width, height, stride);
            return NO_MOTION;
        }
        let Some(m) = self.matching(data, w, h, s) else {
            return NO_MOTION; // everything is masked
        };
        self.mark_changes(data, w, h, s, m);
        let cols = w.div_ceil(CELL);
        let (mut moving_px, mut considered, mut moving, mut cells) = (0u32, 0u32, 0u32, 0u32);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, &(changed, n)) in self.cells.iter().enumerate() {
            if n == 0 {
                continue;
            }
            cells += 1;
            considered += u32::from(n);
            if changed * 2 >= n && changed > 0 {
                moving += 1;
                moving_px += u32::from(n);
                let (cx, cy) = (i % cols * CELL, i / cols * CELL);
                x0 = x0.min(cx);
                y0 = y0.min(cy);
                x1 = x1.max((cx + CELL).min(w));
                y1 = y1.max((cy + CELL).min(h));
            }
        }
        if moving as f32 > LIGHTING_SHARE * cells as f32 {
            self.reset(data, width, height, stride);
            return MotionResult {
                lighting: true,
                ..NO_MOTION
            };
        }
        let score = moving_px as f32 * 100.0 / considered.max(1) as f32;
        MotionResult {
            score,
            bbox: (moving > 0).then(|| PixelBox {
                x: x0 as u32,
                y: y0 as u32,
                width: (x1 - x0) as u32,
                height: (y1 - y0) as u32,
            }),
            motion: moving > 0 && score >= self.settings.min_area_percent,
            lighting: false,
        }
    }

    /// The gain and offset that best match the frame's unmasked pixels to the background
    /// (means and mean absolute deviations); `None` when everything is masked.
    fn matching(&self, data: &[u8], w: usize, h: usize, s: usize) -> Option<Match> {
        let (mut sum_f, mut sum_b, mut n) = (0f64, 0f64, 0u32);
        let pixels = || (0..h).flat_map(move |y| (0..w).map(move |x| (y * w + x, data[y * s + x])));
        for (i, px) in pixels().filter(|(i, _)| !self.masked[*i]) {
            sum_f += f64::from(px);
            sum_b += f64::from(self.background[i]) / 256.0;
            n += 1;
        }
        if n == 0 {
            return None;
        }
        let (mean_f, mean_b) = (sum_f / f64::from(n), sum_b / f64::from(n));
        let (mut dev_f, mut dev_b) = (0f64, 0f64);
        for (i, px) in pixels().filter(|(i, _)| !self.masked[*i]) {
            dev_f += (f64::from(px) - mean_f).abs();
            dev_b += (f64::from(self.background[i]) / 256.0 - mean_b).abs();
        }
        let (dev_f, dev_b) = (dev_f / f64::from(n), dev_b / f64::from(n));
        let gain = if dev_b as f32 > FLAT && dev_f as f32 > FLAT {
            (dev_f / dev_b).clamp(0.25, 4.0)
        } else {
            1.0
        };
        Some(Match {
            gain: gain as f32,
            offset: (mean_f - gain * mean_b) as f32,
        })
    }

    /// Counts changed pixels per cell against the matched background, and moves the
    /// background towards the frame by 1/2^shift of the difference.
    fn mark_changes(&mut self, data: &[u8], w: usize, h: usize, s: usize, m: Match) {
        let threshold = f32::from(self.settings.threshold);
        let shift = self.settings.adaptation_shift.min(15);
        let cols = w.div_ceil(CELL);
        self.cells.clear();
        self.cells.resize(cols * h.div_ceil(CELL), (0, 0));
        for y in 0..h {
            let row = &data[y * s..y * s + w];
            for (x, &px) in row.iter().enumerate() {
                let i = y * w + x;
                let bg = &mut self.background[i];
                // Clamped like the sensor: a window that brightens past white is white.
                let expected = (m.gain * (f32::from(*bg) / 256.0) + m.offset).clamp(0.0, 255.0);
                let changed = (f32::from(px) - expected).abs() > threshold;
                let value = u16::from(px) << 8;
                let diff = value.abs_diff(*bg);
                let step = (diff >> shift).max(u16::from(diff > 0));
                if value > *bg {
                    *bg += step;
                } else {
                    *bg -= step;
                }
                if self.masked[i] {
                    continue;
                }
                let cell = &mut self.cells[(y / CELL) * cols + x / CELL];
                cell.0 += u16::from(changed);
                cell.1 += 1;
            }
        }
    }

    /// New areas to ignore, from the next frame on (the background stays).
    pub fn set_masks(&mut self, masks: Vec<super::geometry::Polygon>) {
        self.settings.masks = masks;
        self.masked = self.mask_map();
    }

    /// Which pixels of a frame of the current size are masked.
    fn mask_map(&self) -> Vec<bool> {
        let (w, h) = (self.width as usize, self.height as usize);
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let (fx, fy) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
                self.settings.masks.iter().any(|m| m.contains([fx, fy]))
            })
            .collect()
    }

    fn reset(&mut self, data: &[u8], width: u32, height: u32, stride: u32) {
        let (w, h, s) = (width as usize, height as usize, stride as usize);
        self.width = width;
        self.height = height;
        self.background = (0..h)
            .flat_map(|y| data[y * s..y * s + w].iter().map(|&p| u16::from(p) << 8))
            .collect();
        self.masked = self.mask_map();
    }
}

#[cfg(test)]
#[path = "motion_tests.rs"]
mod tests;
