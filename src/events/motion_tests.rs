//! Motion detector tests on made-up frames: what must trigger and what must not.

use super::*;

const W: u32 = 160;
const H: u32 = 90;

/// A textured gray frame (so contrast means something) with a white 12×12 square at
/// (x, y), optional noise of ±`noise`, and a brightness `gain`/`offset` applied.
struct Scene {
    square: Option<(u32, u32)>,
    noise: i8,
    seed: u64,
    gain: f32,
    offset: f32,
}

impl Default for Scene {
    fn default() -> Self {
        Scene {
            square: None,
            noise: 0,
            seed: 1,
            gain: 1.0,
            offset: 0.0,
        }
    }
}

fn frame(scene: &Scene) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(scene.seed);
    (0..W * H)
        .map(|i| {
            let (x, y) = (i % W, i / W);
            // A fixed texture: stripes and a gradient.
            let mut v = 60.0 + (x as f32) * 0.5 + if (x / 8 + y / 8) % 2 == 0 { 20.0 } else { 0.0 };
            if let Some((sx, sy)) = scene.square {
                if (sx..sx + 12).contains(&x) && (sy..sy + 12).contains(&y) {
                    v = 250.0;
                }
            }
            let v = v * scene.gain + scene.offset;
            let n = if scene.noise > 0 {
                f32::from(rng.i8(-scene.noise..=scene.noise))
            } else {
                0.0
            };
            (v + n).clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn run(d: &mut MotionDetector, scenes: impl IntoIterator<Item = Scene>) -> Vec<MotionResult> {
    scenes
        .into_iter()
        .map(|s| d.process(&frame(&s), W, H, W))
        .collect()
}

fn square_at(x: u32) -> Scene {
    Scene {
        square: Some((x, 40)),
        ..Scene::default()
    }
}

#[test]
fn a_moving_square_is_motion_with_its_box() {
    let mut d = MotionDetector::new(MotionSettings::default());
    let results = run(&mut d, (0..6).map(|i| square_at(12 + i * 20)));
    assert!(
        !results[0].motion,
        "the first frame only seeds the background"
    );
    for r in &results[1..] {
        assert!(r.motion, "{r:?}");
    }
    // Frame 1: the square left (12..24) and arrived at (32..44): the box covers both,
    // to whole cells.
    let b = results[1].bbox.unwrap();
    assert_eq!((b.x, b.y, b.width, b.height), (12, 40, 32, 12));
    assert!(results[1].score > 1.0, "{}", results[1].score);
}

#[test]
fn still_and_noisy_scenes_are_not_motion() {
    let mut d = MotionDetector::new(MotionSettings::default());
    let still = run(&mut d, (0..20).map(|_| square_at(50)));
    assert!(still.iter().all(|r| !r.motion && r.score == 0.0));
    let mut d = MotionDetector::new(MotionSettings::default());
    // Noise up to ±30 crosses the threshold (25) here and there, never in whole cells.
    let noisy = run(
        &mut d,
        (0..50).map(|i| Scene {
            noise: 30,
            seed: i,
            ..Scene::default()
        }),
    );
    assert!(
        noisy.iter().all(|r| !r.motion),
        "{:?}",
        noisy.iter().map(|r| r.score).collect::<Vec<_>>()
    );
}

#[test]
fn a_masked_area_is_ignored() {
    let settings = MotionSettings {
        masks: vec![crate::events::Polygon::from_xywh([0.0, 0.0, 0.5, 1.0])], // left half
        ..MotionSettings::default()
    };
    let mut d = MotionDetector::new(settings);
    let left = run(&mut d, (0..5).map(|i| square_at(4 + i * 10)));
    assert!(left.iter().all(|r| !r.motion), "{left:?}");
    let right = run(&mut d, (0..5).map(|i| square_at(90 + i * 10)));
    assert!(right[1..].iter().all(|r| r.motion));
}

#[test]
fn a_change_below_the_minimum_area_is_not_motion() {
    let settings = MotionSettings {
        min_area_percent: 5.0,
        ..MotionSettings::default()
    };
    let mut d = MotionDetector::new(settings);
    let r = run(&mut d, [Scene::default(), square_at(12)]);
    assert!(r[1].score > 0.0 && !r[1].motion, "{:?}", r[1]);
}

#[test]
fn a_light_turned_on_is_not_motion() {
    let mut d = MotionDetector::new(MotionSettings::default());
    let mut scenes: Vec<Scene> = (0..5).map(|_| Scene::default()).collect();
    // A step: brighter and more contrasted, at once (a lamp, the IR-cut switch).
    scenes.extend((0..20).map(|_| Scene {
        gain: 1.4,
        offset: 30.0,
        ..Scene::default()
    }));
    let r = run(&mut d, scenes);
    assert!(
        r.iter().all(|r| !r.motion),
        "{:?}",
        r.iter().map(|r| r.score).collect::<Vec<_>>()
    );
}

#[test]
fn a_slow_drift_is_not_motion() {
    let mut d = MotionDetector::new(MotionSettings::default());
    // Dusk over two minutes at 5 fps: brightness halves.
    let r = run(
        &mut d,
        (0..600).map(|i| Scene {
            gain: 1.0 - 0.5 * i as f32 / 600.0,
            ..Scene::default()
        }),
    );
    assert!(r.iter().all(|r| !r.motion));
}

#[test]
fn motion_right_after_a_light_change_still_counts() {
    let mut d = MotionDetector::new(MotionSettings::default());
    let bright = |square| Scene {
        square,
        gain: 1.5,
        offset: 20.0,
        ..Scene::default()
    };
    let r = run(
        &mut d,
        [
            Scene::default(),
            bright(None),
            bright(Some((20, 40))),
            bright(Some((40, 40))),
        ],
    );
    assert!(!r[1].motion);
    assert!(r[2].motion && r[3].motion, "{r:?}");
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
