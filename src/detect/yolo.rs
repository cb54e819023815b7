//! Decoding a Darknet YOLO model's raw outputs into boxes, and removing duplicate boxes.
//! Pure: numbers in, detections out.
//!
//! Each output ("head") is a grid of `grid_h × grid_w` cells for one stride; for each
//! cell and each of the head's anchors the model gives `5 + classes` channels: x, y, w,
//! h, objectness, then one per class, laid out as `[anchor][channel][row][column]`.
//! A box's centre is `(sigmoid(x) + column) / grid_w` of the model's input, its width
//! `exp(w) × anchor_w / input_w`; a class's score is `sigmoid(objectness) ×
//! sigmoid(class)`.

use crate::events::Rect;

/// One output of the model and the anchors (in input pixels) it predicts boxes for.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub name: String,
    pub anchors: Vec<[f32; 2]>,
}

/// A box before duplicates are removed, in fractions of the model's input.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub class: usize,
    pub score: f32,
    pub rect: Rect,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The inverse of `sigmoid`, to compare raw values with a score without computing the
/// sigmoid of every one.
fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// The output's layout, from its shape and the head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    pub classes: usize,
}

impl Grid {
    /// The layout of an output of `shape` (`[1, anchors × (5 + classes), rows, cols]`),
    /// or why it is not one.
    pub fn of(shape: &[usize], anchors: usize, classes: usize) -> Result<Grid, String> {
        let want = anchors * (5 + classes);
        match shape {
            [1, c, rows, cols] if *c == want && *rows > 0 && *cols > 0 => Ok(Grid {
                rows: *rows,
                cols: *cols,
                classes,
            }),
            _ => Err(format!(
                "shape {shape:?} is not [1, {want}, rows, columns] ({anchors} anchors × (5 + {classes} classes))"
            )),
        }
    }
}

/// The boxes of one head whose score for a class is at least that class's minimum
/// (`min_score[class]`, `None` for a class not wanted). `input` is the model's input size
/// in pixels, `[width, height]`.
pub fn decode(
    data: &[f32],
    grid: Grid,
    head: &Head,
    input: [f32; 2],
    min_score: &[Option<f32>],
) -> Vec<Candidate> {
    let cell_count = grid.rows * grid.cols;
    let channels = 5 + grid.classes;
    let lowest = min_score
        .iter()
        .flatten()
        .fold(f32::INFINITY, |a, &b| a.min(b));
    if !lowest.is_finite() || data.len() < head.anchors.len() * channels * cell_count {
        return Vec::new();
    }
    // Objectness alone bounds every class score from above.
    let objectness_floor = logit(lowest);
    let mut out = Vec::new();
    for (a, [anchor_w, anchor_h]) in head.anchors.iter().enumerate() {
        let base = a * channels * cell_count;
        let at = |ch: usize, cell: usize| data[base + ch * cell_count + cell];
        for cell in 0..cell_count {
            let raw_obj = at(4, cell);
            if raw_obj < objectness_floor {
                continue;
            }
            let obj = sigmoid(raw_obj);
            let (row, col) = (cell / grid.cols, cell % grid.cols);
            let mut rect = None;
            for (class, min) in min_score.iter().enumerate().take(grid.classes) {
                let Some(min) = min else { continue };
                let score = obj * sigmoid(at(5 + class, cell));
                if score < *min {
                    continue;
                }
                let r = *rect.get_or_insert_with(|| {
                    let cx = (sigmoid(at(0, cell)) + col as f32) / grid.cols as f32;
                    let cy = (sigmoid(at(1, cell)) + row as f32) / grid.rows as f32;
                    let w = at(2, cell).min(10.0).exp() * anchor_w / input[0];
                    let h = at(3, cell).min(10.0).exp() * anchor_h / input[1];
                    Rect::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
                });
                out.push(Candidate {
                    class,
                    score,
                    rect: r,
                });
            }
        }
    }
    out
}

/// A box this much inside a better one of its class is a part of the same object (a
/// person's upper body), not another one.
const INSIDE: f32 = 0.85;

/// Keeps the best box of each group of same-class boxes overlapping more than `iou`, or
/// lying almost wholly inside a better one.
pub fn suppress(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        let inside = |k: &Candidate| {
            let shared = k.rect.intersection(&c.rect).area();
            c.rect.area() > 0.0 && shared / c.rect.area() > INSIDE
        };
        if !kept
            .iter()
            .any(|k| k.class == c.class && (k.rect.iou(&c.rect) > iou || inside(k)))
        {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head of one anchor over a 2×2 grid with 2 classes: 7 channels × 4 cells.
    fn head() -> Head {
        Head {
            name: "stride16".into(),
            anchors: vec![[16.0, 32.0]],
        }
    }

    const GRID: Grid = Grid {
        rows: 2,
        cols: 2,
        classes: 2,
    };

    /// Raw outputs with every objectness very low, and one confident box in cell
    /// (row 1, column 0) of class 1.
    fn outputs() -> Vec<f32> {
        let mut d = vec![0.0f32; 7 * 4];
        let cell = 2; // row 1, column 0
        for c in 0..4 {
            d[4 * 4 + c] = -10.0; // objectness
        }
        d[cell] = 0.0; // x: sigmoid 0.5, the cell's middle
        d[4 + cell] = 0.0; // y
        d[2 * 4 + cell] = 0.0; // w: exp 1 × the anchor
        d[3 * 4 + cell] = 2f32.ln(); // h: twice the anchor
        d[4 * 4 + cell] = 3.0; // objectness ≈ 0.95
        d[5 * 4 + cell] = -3.0; // class 0 ≈ 0.05
        d[6 * 4 + cell] = 3.0; // class 1 ≈ 0.95
        d
    }

    #[test]
    fn a_confident_cell_gives_its_box_in_input_fractions() {
        let found = decode(
            &outputs(),
            GRID,
            &head(),
            [32.0, 32.0],
            &[Some(0.3), Some(0.3)],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!(c.class, 1);
        assert!((c.score - 0.9526 * 0.9526).abs() < 1e-3, "{}", c.score);
        // Centre (0.25, 0.75); 16 px of 32 wide, 64 px of 32 high.
        let want = Rect::new(0.0, -0.25, 0.5, 1.75);
        for (a, b) in [
            (c.rect.x0, want.x0),
            (c.rect.y0, want.y0),
            (c.rect.x1, want.x1),
            (c.rect.y1, want.y1),
        ] {
            assert!((a - b).abs() < 1e-5, "{:?}", c.rect);
        }
    }

    #[test]
    fn classes_not_wanted_or_below_their_score_are_left_out() {
        let data = outputs();
        assert!(decode(&data, GRID, &head(), [32.0; 2], &[Some(0.3), None]).is_empty());
        assert!(decode(&data, GRID, &head(), [32.0; 2], &[None, Some(0.95)]).is_empty());
        assert!(decode(&data, GRID, &head(), [32.0; 2], &[None, None]).is_empty());
        assert!(
            decode(&data[..10], GRID, &head(), [32.0; 2], &[None, Some(0.1)]).is_empty(),
            "short output"
        );
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_best() {
        let c = |class, score, x0| Candidate {
            class,
            score,
            rect: Rect::new(x0, 0.0, x0 + 0.4, 0.4),
        };
        let kept = suppress(
            vec![
                c(0, 0.5, 0.0),
                c(0, 0.9, 0.05),
                c(1, 0.4, 0.0),
                c(0, 0.6, 0.6),
            ],
            0.45,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.6, 0.4]);
        // A head inside a whole person: one person.
        let person = Candidate {
            class: 0,
            score: 0.8,
            rect: Rect::new(0.2, 0.1, 0.6, 0.9),
        };
        let head = Candidate {
            class: 0,
            score: 0.3,
            rect: Rect::new(0.3, 0.1, 0.45, 0.3),
        };
        assert_eq!(suppress(vec![head, person.clone()], 0.45), vec![person]);
    }

    #[test]
    fn output_shapes_are_checked() {
        assert!(Grid::of(&[1, 255, 10, 10], 3, 80).is_ok());
        assert!(Grid::of(&[1, 255, 10], 3, 80).is_err());
        assert!(Grid::of(&[1, 254, 10, 10], 3, 80)
            .unwrap_err()
            .contains("3 anchors"));
    }
}
