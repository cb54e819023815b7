//! Zones: named parts of the picture and the labels that matter in each. An object is in
//! a zone when the middle of its box's bottom edge (where it stands) is inside.

use serde::{Deserialize, Serialize};

use super::geometry::Polygon;
use super::objects::Object;

/// The areas of the picture that mean something: zones, privacy masks (blacked out
/// before anything sees the picture) and motion masks (ignored by the motion detector).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Areas {
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub privacy_masks: Vec<Polygon>,
    #[serde(default)]
    pub motion_masks: Vec<Polygon>,
}

/// A named area and what matters there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// Its corners, each `[x, y]` in fractions of the picture.
    pub polygon: Polygon,
    /// Labels that matter in it; empty (the default) means every label detected.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Whether `object` matters, and in which zones: `None` when it is in no zone that wants
/// its label. With no zones at all, the whole picture is one nameless zone that wants
/// every label.
pub fn matters(zones: &[Zone], object: &Object) -> Option<Vec<String>> {
    if zones.is_empty() {
        return Some(Vec::new());
    }
    let foot = object.rect.foot();
    let names: Vec<String> = zones
        .iter()
        .filter(|z| z.labels.is_empty() || z.labels.contains(&object.label))
        .filter(|z| z.polygon.contains(foot))
        .map(|z| z.name.clone())
        .collect();
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::geometry::Rect;

    fn object(label: &str, rect: Rect) -> Object {
        Object {
            id: 1,
            label: label.into(),
            score: 0.9,
            rect,
            active: true,
        }
    }

    #[test]
    fn an_object_matters_where_it_stands_in_a_zone_that_wants_it() {
        let zones = vec![
            Zone {
                name: "driveway".into(),
                polygon: Polygon::from_xywh([0.5, 0.5, 0.5, 0.5]),
                labels: vec!["car".into()],
            },
            Zone {
                name: "porch".into(),
                polygon: Polygon::from_xywh([0.0, 0.5, 0.5, 0.5]),
                labels: vec![],
            },
        ];
        // A person whose head is over the driveway but who stands on the porch.
        let person = object("person", Rect::new(0.3, 0.1, 0.45, 0.8));
        assert_eq!(matters(&zones, &person), Some(vec!["porch".into()]));
        // The same person on the driveway: it wants only cars.
        let person = object("person", Rect::new(0.6, 0.1, 0.7, 0.8));
        assert_eq!(matters(&zones, &person), None);
        let car = object("car", Rect::new(0.6, 0.4, 0.9, 0.8));
        assert_eq!(matters(&zones, &car), Some(vec!["driveway".into()]));
        // Above both zones.
        let bird = object("bird", Rect::new(0.1, 0.0, 0.2, 0.1));
        assert_eq!(matters(&zones, &bird), None);
        assert_eq!(matters(&[], &bird), Some(vec![]), "no zones: everywhere");
    }
}
