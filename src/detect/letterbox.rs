//! Fitting a picture into the model's square input without stretching it: scaled to fit,
//! centred, the rest grey (Darknet's letterbox), and mapping the model's boxes back to
//! fractions of the picture. The pipeline already scales to fit, so the copy here is
//! usually 1:1; a picture of another size is resampled (nearest neighbour).

use crate::events::Rect;

/// The grey of the padding, as the model was trained with.
const PAD: f32 = 0.5;

/// Where the picture lies in the model's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// The model's input, `[width, height]` in pixels.
    pub input: [usize; 2],
    /// The picture's size inside it and its top-left corner.
    pub size: [usize; 2],
    pub offset: [usize; 2],
}

impl Letterbox {
    /// The letterbox of a `width × height` picture in an input of `input` pixels.
    pub fn new(width: usize, height: usize, input: [usize; 2]) -> Letterbox {
        let scale =
            (input[0] as f64 / width.max(1) as f64).min(input[1] as f64 / height.max(1) as f64);
        let w = ((width as f64 * scale).round() as usize).clamp(1, input[0]);
        let h = ((height as f64 * scale).round() as usize).clamp(1, input[1]);
        Letterbox {
            input,
            size: [w, h],
            offset: [(input[0] - w) / 2, (input[1] - h) / 2],
        }
    }

    /// Writes the picture (packed RGB, `stride` bytes a row) into `tensor`, planar
    /// `[3][height][width]` floats of 0–1, grey around it. `false` if the picture is
    /// shorter than its size says.
    pub fn fill(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        stride: usize,
        tensor: &mut [f32],
    ) -> bool {
        let [iw, ih] = self.input;
        let plane = iw * ih;
        if tensor.len() < 3 * plane
            || width == 0
            || height == 0
            || stride < width * 3
            || rgb.len() < stride * (height - 1) + width * 3
        {
            return false;
        }
        tensor[..3 * plane].fill(PAD);
        let [w, h] = self.size;
        let [ox, oy] = self.offset;
        let columns: Vec<usize> = (0..w).map(|x| (x * width / w).min(width - 1) * 3).collect();
        for y in 0..h {
            let row = &rgb[(y * height / h).min(height - 1) * stride..];
            let at = (oy + y) * iw + ox;
            for (x, &src) in columns.iter().enumerate() {
                for c in 0..3 {
                    tensor[c * plane + at + x] = f32::from(row[src + c]) / 255.0;
                }
            }
        }
        true
    }

    /// A box in fractions of the input, as fractions of the picture (clamped to it).
    pub fn to_picture(&self, r: Rect) -> Rect {
        let map = |v: f32, axis: usize| {
            (v * self.input[axis] as f32 - self.offset[axis] as f32) / self.size[axis] as f32
        };
        Rect::new(map(r.x0, 0), map(r.y0, 1), map(r.x1, 0), map(r.y1, 1)).clamped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_picture_is_centred_with_grey_above_and_below() {
        let lb = Letterbox::new(640, 360, [320, 320]);
        assert_eq!(lb.size, [320, 180]);
        assert_eq!(lb.offset, [0, 70]);
        // 4×2 picture into 4×4: rows 1 and 2 carry it.
        let lb = Letterbox::new(4, 2, [4, 4]);
        let rgb: Vec<u8> = (0..8).flat_map(|i| [i * 10, 255, 0]).collect();
        let mut t = vec![0.0; 48];
        assert!(lb.fill(&rgb, 4, 2, 12, &mut t));
        assert_eq!(&t[0..4], &[0.5; 4], "grey top row, red plane");
        assert_eq!(t[4], 0.0);
        assert!((t[5] - 10.0 / 255.0).abs() < 1e-6);
        assert!((t[8] - 40.0 / 255.0).abs() < 1e-6, "second picture row");
        assert_eq!(t[16 + 4], 1.0, "green plane");
        assert!(!lb.fill(&rgb[..10], 4, 2, 12, &mut t), "short picture");
    }

    #[test]
    fn boxes_map_back_to_the_picture() {
        let lb = Letterbox::new(640, 360, [320, 320]);
        // The whole band the picture fills is the whole picture.
        let band = Rect::new(0.0, 70.0 / 320.0, 1.0, 250.0 / 320.0);
        let r = lb.to_picture(band);
        assert!((r.y0).abs() < 1e-6 && (r.y1 - 1.0).abs() < 1e-6, "{r:?}");
        // A box reaching into the grey is clamped.
        let r = lb.to_picture(Rect::new(0.5, 0.0, 0.6, 0.5));
        assert_eq!(r.y0, 0.0);
    }

    #[test]
    fn a_larger_picture_is_resampled_to_fit() {
        let lb = Letterbox::new(8, 8, [4, 4]);
        assert_eq!((lb.size, lb.offset), ([4, 4], [0, 0]));
        let rgb: Vec<u8> = (0..64u8).flat_map(|i| [i, i, i]).collect();
        let mut t = vec![0.0; 48];
        assert!(lb.fill(&rgb, 8, 8, 24, &mut t));
        // Output pixel (1, 1) takes picture pixel (2, 2), number 18.
        assert!((t[5] - 18.0 / 255.0).abs() < 1e-6);
    }
}
