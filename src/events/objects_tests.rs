//! Scenarios of `Objects` on made-up frames, two a second.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};

use super::*;

fn settings() -> ObjectSettings {
    ObjectSettings {
        min_scores: BTreeMap::from([("person".into(), 0.4), ("car".into(), 0.5)]),
        ..ObjectSettings::default()
    }
}

/// The time of frame `n` (two frames a second).
fn at(n: i64) -> Time {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap() + chrono::Duration::milliseconds(500 * n)
}

fn person(x: f32, score: f32) -> Detection {
    Detection {
        label: "person".into(),
        score,
        rect: Rect::new(x, 0.3, x + 0.1, 0.9),
    }
}

fn car() -> Detection {
    Detection {
        label: "car".into(),
        score: 0.8,
        rect: Rect::new(0.5, 0.5, 0.9, 0.8),
    }
}

#[test]
fn a_person_walking_across_is_one_object_announced_once() {
    let mut objects = Objects::new(settings());
    let mut announced = Vec::new();
    let mut ids = Vec::new();
    for n in 0..12 {
        let p = person(0.05 * n as f32, 0.7);
        let frame = objects.handle(at(n), std::slice::from_ref(&p), Some(p.rect));
        announced.extend(frame.announced.iter().map(|o| (n, o.id)));
        ids.extend(frame.present.iter().map(|o| o.id));
    }
    assert_eq!(announced, vec![(1, 1)], "announced at the second sighting");
    assert!(ids.iter().all(|&id| id == 1), "one id all along: {ids:?}");
    assert_eq!(ids.len(), 11);
}

#[test]
fn a_glimpse_or_a_low_score_is_not_an_object() {
    let mut objects = Objects::new(settings());
    let p = person(0.2, 0.7);
    let first = objects.handle(at(0), std::slice::from_ref(&p), Some(p.rect));
    assert!(first.announced.is_empty());
    for n in 1..10 {
        let frame = objects.handle(at(n), &[], Some(p.rect));
        assert!(frame.announced.is_empty(), "frame {n}");
    }
    for n in 10..20 {
        let weak = person(0.2, 0.3);
        let frame = objects.handle(at(n), std::slice::from_ref(&weak), Some(weak.rect));
        assert!(frame.announced.is_empty(), "below min_score, frame {n}");
    }
    let dog = Detection {
        label: "dog".into(),
        ..person(0.2, 0.9)
    };
    for n in 20..25 {
        let frame = objects.handle(at(n), std::slice::from_ref(&dog), Some(dog.rect));
        assert!(frame.announced.is_empty(), "dog is not a wanted label");
    }
}

#[test]
fn a_parked_car_is_never_announced_while_a_person_walks_by() {
    let mut objects = Objects::new(settings());
    let mut labels = Vec::new();
    for n in 0..10 {
        let p = person(0.02 * n as f32, 0.7);
        // The motion detector sees only the person change.
        let frame = objects.handle(at(n), &[car(), p.clone()], Some(p.rect));
        labels.extend(frame.announced.iter().map(|o| o.label.clone()));
    }
    assert_eq!(labels, vec!["person"]);
}

#[test]
fn a_car_that_parks_is_announced_once_and_then_remembered() {
    let mut objects = Objects::new(settings());
    let mut announced = 0;
    // It drives in from the left over 3 s.
    for n in 0..6 {
        let mut c = car();
        let dx = 0.1 * (5 - n) as f32;
        c.rect = Rect::new(c.rect.x0 - dx, c.rect.y0, c.rect.x1 - dx, c.rect.y1);
        announced += objects
            .handle(at(n), std::slice::from_ref(&c), Some(c.rect))
            .announced
            .len();
    }
    assert_eq!(announced, 1);
    // Parked: seen now and then for two minutes while someone moves nearby.
    let mut active_at_end = true;
    for n in 6..250 {
        let seen = if n % 7 == 0 { vec![] } else { vec![car()] };
        let frame = objects.handle(at(n), &seen, Some(Rect::new(0.0, 0.0, 0.2, 0.2)));
        announced += frame.announced.len();
        if let Some(o) = frame.present.first() {
            assert_eq!(o.id, 1, "the same car");
            active_at_end = o.active;
        }
    }
    assert_eq!(announced, 1, "not announced again");
    assert!(!active_at_end, "still: no reason to keep an event going");
    // Hidden for longer than forget_misses, then back in place: still the same car.
    for n in 250..270 {
        objects.handle(at(n), &[], Some(car().rect));
    }
    let frame = objects.handle(at(270), &[car()], Some(car().rect));
    assert!(frame.announced.is_empty());
    assert_eq!(frame.present.first().map(|o| o.id), Some(1));
}

#[test]
fn two_people_side_by_side_keep_their_own_ids() {
    let mut objects = Objects::new(settings());
    let mut seen = BTreeMap::<u64, Vec<f32>>::new();
    for n in 0..8 {
        let a = person(0.1 + 0.03 * n as f32, 0.8);
        let b = person(0.6 - 0.03 * n as f32, 0.6);
        let motion = Rect::new(0.0, 0.0, 1.0, 1.0);
        for o in objects.handle(at(n), &[b, a], Some(motion)).present {
            seen.entry(o.id).or_default().push(o.rect.x0);
        }
    }
    assert_eq!(seen.len(), 2);
    for xs in seen.values() {
        let rising = xs.windows(2).all(|w| w[1] > w[0]);
        let falling = xs.windows(2).all(|w| w[1] < w[0]);
        assert!(rising || falling, "each id follows one person: {xs:?}");
    }
}

#[test]
fn a_person_walking_fast_past_the_camera_keeps_one_id() {
    let mut objects = Objects::new(settings());
    let mut ids = std::collections::BTreeSet::new();
    // Entering from the left edge, a third of her width a picture: the first boxes are
    // cut by the edge and barely overlap.
    for n in 0..10 {
        let x1 = 0.1 + 0.1 * n as f32;
        let x0 = (x1 - 0.3).max(0.0);
        let p = Detection {
            label: "person".into(),
            score: 0.8,
            rect: Rect::new(x0, 0.2, x1.min(1.0), 0.9),
        };
        for o in objects
            .handle(at(n), std::slice::from_ref(&p), Some(p.rect))
            .present
        {
            ids.insert(o.id);
        }
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}
