//! Motion detection on small grayscale frames: a running-average background, a per-pixel
//! threshold, optional masked rectangles, and a minimum changed area. Pure: frame in,
//! score and bounding box out.

use serde::{Deserialize, Serialize};

/// A rectangle in frame-relative coordinates: `[x, y, width, height]`, each 0.0–1.0.
pub type RelRect = [f32; 4];

/// `[motion]` settings the detector needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// A pixel counts as changed when it differs from the background by more than this
    /// (0–255).
    pub threshold: u8,
    /// Motion when at least this percentage of the unmasked area changed.
    pub min_area_percent: f32,
    /// Areas to ignore (a tree, a road).
    pub masks: Vec<RelRect>,
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
}

const NO_MOTION: MotionResult = MotionResult {
    score: 0.0,
    bbox: None,
    motion: false,
};

/// Background model and settings; feed it every analysis frame in order.
#[derive(Debug, Clone)]
pub struct MotionDetector {
    settings: MotionSettings,
    /// Background in 8.8 fixed point, one per pixel.
    background: Vec<u16>,
    /// True for masked pixels.
    masked: Vec<bool>,
    width: u32,
    height: u32,
}

impl MotionDetector {
    pub fn new(settings: MotionSettings) -> Self {
        Self {
            settings,
            background: Vec::new(),
            masked: Vec::new(),
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
        let threshold = u16::from(self.settings.threshold) << 8;
        let shift = self.settings.adaptation_shift.min(15);
        let (mut changed, mut considered) = (0u32, 0u32);
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        for y in 0..h {
            let row = &data[y * s..y * s + w];
            for (x, &px) in row.iter().enumerate() {
                let i = y * w + x;
                let value = u16::from(px) << 8;
                let bg = &mut self.background[i];
                let diff = value.abs_diff(*bg);
                // Move the background towards the pixel by diff / 2^shift (at least one step).
                let step = (diff >> shift).max(u16::from(diff > 0));
                if value > *bg {
                    *bg += step;
                } else {
                    *bg -= step;
                }
                if self.masked[i] {
                    continue;
                }
                considered += 1;
                if diff > threshold {
                    changed += 1;
                    let (xu, yu) = (x as u32, y as u32);
                    x0 = x0.min(xu);
                    y0 = y0.min(yu);
                    x1 = x1.max(xu);
                    y1 = y1.max(yu);
                }
            }
        }
        if considered == 0 {
            return NO_MOTION;
        }
        let score = changed as f32 * 100.0 / considered as f32;
        MotionResult {
            score,
            bbox: (changed > 0).then(|| PixelBox {
                x: x0,
                y: y0,
                width: x1 - x0 + 1,
                height: y1 - y0 + 1,
            }),
            motion: changed > 0 && score >= self.settings.min_area_percent,
        }
    }

    fn reset(&mut self, data: &[u8], width: u32, height: u32, stride: u32) {
        let (w, h, s) = (width as usize, height as usize, stride as usize);
        self.width = width;
        self.height = height;
        self.background = (0..h)
            .flat_map(|y| data[y * s..y * s + w].iter().map(|&p| u16::from(p) << 8))
            .collect();
        self.masked = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let (fx, fy) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
                self.settings
                    .masks
                    .iter()
                    .any(|[mx, my, mw, mh]| fx >= *mx && fx < mx + mw && fy >= *my && fy < my + mh)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 160;
    const H: u32 = 90;

    /// A gray frame with a white 12×12 square at (x, y).
    fn frame(square: Option<(u32, u32)>, noise_seed: Option<u64>) -> Vec<u8> {
        let mut rng = noise_seed.map(fastrand::Rng::with_seed);
        let mut data = vec![100u8; (W * H) as usize];
        for (i, px) in data.iter_mut().enumerate() {
            let (x, y) = (i as u32 % W, i as u32 / W);
            if let Some((sx, sy)) = square {
                if (sx..sx + 12).contains(&x) && (sy..sy + 12).contains(&y) {
                    *px = 250;
                }
            }
            if let Some(rng) = rng.as_mut() {
                *px = px.saturating_add_signed(rng.i8(-8..=8));
            }
        }
        data
    }

    fn run(
        detector: &mut MotionDetector,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) -> Vec<MotionResult> {
        frames
            .into_iter()
            .map(|f| detector.process(&f, W, H, W))
            .collect()
    }

    #[test]
    fn moving_square_is_motion_with_its_box() {
        let mut d = MotionDetector::new(MotionSettings::default());
        let results = run(&mut d, (0..6).map(|i| frame(Some((10 + i * 20, 40)), None)));
        assert!(
            !results[0].motion,
            "the first frame only seeds the background"
        );
        for r in &results[1..] {
            assert!(r.motion, "{r:?}");
        }
        // Frame 1: the square left (10..22) and arrived at (30..42): both differ.
        let b = results[1].bbox.unwrap();
        assert_eq!((b.x, b.y, b.width, b.height), (10, 40, 32, 12));
        assert!((results[1].score - 2.0 * 144.0 * 100.0 / (W * H) as f32).abs() < 0.01);
    }

    #[test]
    fn static_and_noisy_scenes_are_not_motion() {
        let mut d = MotionDetector::new(MotionSettings::default());
        let still = run(&mut d, (0..20).map(|_| frame(Some((50, 50)), None)));
        assert!(still.iter().all(|r| !r.motion && r.score == 0.0));
        let mut d = MotionDetector::new(MotionSettings::default());
        let noisy = run(&mut d, (0..20).map(|i| frame(None, Some(i))));
        assert!(
            noisy.iter().all(|r| !r.motion),
            "sensor noise below threshold"
        );
    }

    #[test]
    fn masked_area_is_ignored() {
        let settings = MotionSettings {
            masks: vec![[0.0, 0.0, 0.5, 1.0]], // left half
            ..MotionSettings::default()
        };
        let mut d = MotionDetector::new(settings);
        let left = run(&mut d, (0..5).map(|i| frame(Some((5 + i * 10, 30)), None)));
        assert!(left.iter().all(|r| !r.motion), "{left:?}");
        let right = run(&mut d, (0..5).map(|i| frame(Some((90 + i * 10, 30)), None)));
        assert!(right[1..].iter().all(|r| r.motion));
    }

    #[test]
    fn small_change_below_min_area_is_not_motion() {
        let settings = MotionSettings {
            min_area_percent: 5.0,
            ..MotionSettings::default()
        };
        let mut d = MotionDetector::new(settings);
        let r = run(&mut d, [frame(None, None), frame(Some((10, 10)), None)]);
        assert!(r[1].score > 0.0 && !r[1].motion);
    }

    #[test]
    fn background_absorbs_a_lighting_change() {
        let mut d = MotionDetector::new(MotionSettings::default());
        d.process(&vec![100u8; (W * H) as usize], W, H, W);
        let bright = vec![160u8; (W * H) as usize];
        let results: Vec<_> = (0..60).map(|_| d.process(&bright, W, H, W)).collect();
        assert!(results[0].motion, "a sudden change is motion at first");
        assert!(!results[59].motion, "after adapting it is not");
    }

    #[test]
    fn malformed_frames_are_ignored() {
        let mut d = MotionDetector::new(MotionSettings::default());
        assert_eq!(d.process(&[1, 2, 3], W, H, W), NO_MOTION);
        assert_eq!(d.process(&[], 0, 0, 0), NO_MOTION);
        assert_eq!(
            d.process(&[0; 100], 10, 10, 5),
            NO_MOTION,
            "stride below width"
        );
    }
}
