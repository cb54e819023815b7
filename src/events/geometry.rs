//! Shapes in picture fractions (0.0–1.0 from the left and from the top), the same at any
//! resolution: boxes around detected objects, and the polygons of zones and masks.

use serde::{Deserialize, Serialize};

/// A box: left, top, right, bottom, as fractions of the picture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The box both cover (empty, with no area, when they are apart).
    pub fn intersection(&self, other: &Rect) -> Rect {
        Rect::new(
            self.x0.max(other.x0),
            self.y0.max(other.y0),
            self.x1.min(other.x1),
            self.y1.min(other.y1),
        )
    }

    /// Intersection over union: 1 for the same box, 0 for boxes apart.
    pub fn iou(&self, other: &Rect) -> f32 {
        let inter = self.intersection(other).area();
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    pub fn intersects(&self, other: &Rect) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    /// Where the object stands: the middle of the box's bottom edge.
    pub fn foot(&self) -> [f32; 2] {
        [(self.x0 + self.x1) / 2.0, self.y1]
    }

    pub fn centre(&self) -> [f32; 2] {
        [(self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0]
    }

    /// The box clamped to the picture.
    pub fn clamped(&self) -> Rect {
        let c = |v: f32| v.clamp(0.0, 1.0);
        Rect::new(c(self.x0), c(self.y0), c(self.x1), c(self.y1))
    }

    /// `[x, y, width, height]`, the form motion masks are written in.
    pub fn from_xywh([x, y, w, h]: [f32; 4]) -> Rect {
        Rect::new(x, y, x + w, y + h)
    }
}

/// A polygon: its corners in order, each `[x, y]` in picture fractions. Read from
/// `[[x, y], …]`, or from a rectangle written `[x, y, width, height]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(from = "Shape")]
pub struct Polygon(pub Vec<[f32; 2]>);

/// The two ways a config writes a polygon.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a polygon [[x, y], [x, y], [x, y], …] or a rectangle [x, y, width, height], in fractions of the picture"
)]
enum Shape {
    Rectangle([f32; 4]),
    Corners(Vec<[f32; 2]>),
}

impl From<Shape> for Polygon {
    fn from(s: Shape) -> Polygon {
        match s {
            Shape::Rectangle(r) => Polygon::from_xywh(r),
            Shape::Corners(c) => Polygon(c),
        }
    }
}

impl Polygon {
    /// The polygon of a rectangle given as `[x, y, width, height]`.
    pub fn from_xywh(r: [f32; 4]) -> Polygon {
        let r = Rect::from_xywh(r);
        Polygon(vec![[r.x0, r.y0], [r.x1, r.y0], [r.x1, r.y1], [r.x0, r.y1]])
    }

    /// Whether `p` lies inside (even-odd rule; a point on an edge may go either way).
    pub fn contains(&self, [x, y]: [f32; 2]) -> bool {
        let pts = &self.0;
        let mut inside = false;
        let mut j = pts.len().wrapping_sub(1);
        for i in 0..pts.len() {
            let ([xi, yi], [xj, yj]) = (pts[i], pts[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    /// What is wrong with it, if anything: fewer than 3 corners, or a corner outside
    /// the picture.
    pub fn problem(&self) -> Option<String> {
        if self.0.len() < 3 {
            return Some(format!(
                "a polygon needs at least 3 corners, got {}",
                self.0.len()
            ));
        }
        self.0
            .iter()
            .find(|[x, y]| !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y))
            .map(|[x, y]| {
                format!("corner [{x}, {y}] is outside the picture (each must be 0.0–1.0)")
            })
    }

    /// The smallest box around it.
    pub fn bounds(&self) -> Rect {
        let mut r = Rect::new(f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &[x, y] in &self.0 {
            r = Rect::new(r.x0.min(x), r.y0.min(y), r.x1.max(x), r.y1.max(y));
        }
        if self.0.is_empty() {
            Rect::default()
        } else {
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_overlap_by_their_shared_area() {
        let a = Rect::new(0.0, 0.0, 0.5, 0.5);
        assert_eq!(a.iou(&a), 1.0);
        // Half of a, shifted right by a quarter: shared 0.125×0.5, union 0.375.
        let b = Rect::new(0.25, 0.0, 0.75, 0.5);
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&Rect::new(0.6, 0.6, 0.9, 0.9)), 0.0);
        assert_eq!(Rect::default().iou(&Rect::default()), 0.0, "empty boxes");
    }

    #[test]
    fn a_point_is_inside_a_concave_polygon_only_where_it_covers() {
        // An L: the bottom row and the left column of a 2×2 grid.
        let l = Polygon(vec![
            [0.0, 0.0],
            [0.5, 0.0],
            [0.5, 0.5],
            [1.0, 0.5],
            [1.0, 1.0],
            [0.0, 1.0],
        ]);
        assert!(l.contains([0.25, 0.25]));
        assert!(l.contains([0.75, 0.75]));
        assert!(!l.contains([0.75, 0.25]), "the missing corner");
        assert!(!l.contains([1.5, 0.75]));
        assert_eq!(l.bounds(), Rect::new(0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn polygons_that_cannot_be_drawn_say_why() {
        assert!(Polygon(vec![[0.0, 0.0], [1.0, 1.0]])
            .problem()
            .is_some_and(|p| p.contains("at least 3")));
        assert!(Polygon(vec![[0.0, 0.0], [1.2, 0.0], [0.0, 1.0]])
            .problem()
            .is_some_and(|p| p.contains("[1.2, 0]")));
        assert_eq!(Polygon::from_xywh([0.1, 0.1, 0.2, 0.2]).problem(), None);
    }

    #[test]
    fn a_polygon_is_read_from_its_corners_or_from_a_rectangle_and_written_as_corners() {
        let read = |s: &str| serde_json::from_str::<Polygon>(s);
        let corners = read("[[0.5, 0], [1, 0], [1, 1]]").unwrap();
        assert_eq!(corners.0, [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0]]);
        let rect = read("[0.5, 0, 0.5, 1]").unwrap();
        assert_eq!(rect, Polygon::from_xywh([0.5, 0.0, 0.5, 1.0]));
        assert_eq!(
            serde_json::to_string(&rect).unwrap(),
            "[[0.5,0.0],[1.0,0.0],[1.0,1.0],[0.5,1.0]]"
        );
        let wrong = read("[0.5, 0, 1]").unwrap_err().to_string();
        assert!(wrong.contains("a polygon [[x, y]"), "{wrong}");
    }
}
