//! The motion detector on synthetic scenes: which trigger and which do not, precision and
//! recall per analysed frame, how soon a person is seen, and the CPU per frame. Prints a
//! table (`cargo bench --bench motion`).
//!
//! Each scene is drawn at 640×360 (a textured room: gradient, tiles, a window), reduced
//! to the 160×90 analysis frame by 4×4 averaging, then given sensor noise at that size
//! (GStreamer's bilinear `videoscale` averages little, so noise reaches the detector
//! nearly whole). Frames come at the analysis rate, 5 a second, for 60 s.

use std::time::{Duration, Instant};

use edgecam::events::{MotionDetector, MotionSettings};

const FULL_W: usize = 640;
const FULL_H: usize = 360;
const W: usize = 160;
const H: usize = 90;
const FPS: f32 = 5.0;
const SECONDS: f32 = 60.0;

/// A person: a dark upright box about a tenth of the picture wide, walking across.
#[derive(Clone, Copy)]
struct Walker {
    start_s: f32,
    crossing_s: f32,
}

impl Walker {
    const WIDTH: f32 = 0.08;
    const HEIGHT: f32 = 0.45;

    /// Left edge (fraction of the width) at `t`, while in the picture.
    fn left(&self, t: f32) -> Option<f32> {
        let p = (t - self.start_s) / self.crossing_s;
        (0.0..=1.0)
            .contains(&p)
            .then(|| -Self::WIDTH + p * (1.0 + Self::WIDTH))
    }

    /// Some of the person is in view.
    fn in_view(&self, t: f32) -> bool {
        self.left(t).is_some_and(|x| x > -Self::WIDTH && x < 1.0)
    }
}

struct Scene {
    name: &'static str,
    /// Noise amplitude at the analysis size (uniform ±).
    noise: f32,
    /// Light as (gain, offset) at time t.
    light: fn(f32) -> (f32, f32),
    walker: Option<Walker>,
}

fn steady(_: f32) -> (f32, f32) {
    (1.0, 0.0)
}
fn lamp_on(t: f32) -> (f32, f32) {
    if t < 30.0 {
        (1.0, 0.0)
    } else {
        (1.3, 40.0)
    }
}
fn ir_cut(t: f32) -> (f32, f32) {
    // Night mode: flatter, brighter picture under the IR light.
    if t < 30.0 {
        (0.5, 10.0)
    } else {
        (0.6, 90.0)
    }
}
fn dusk(t: f32) -> (f32, f32) {
    (1.0 - 0.6 * t / SECONDS, 0.0)
}
fn lamp_then_person(t: f32) -> (f32, f32) {
    if t < 20.0 {
        (0.7, 0.0)
    } else {
        (1.2, 30.0)
    }
}

fn scenes() -> Vec<Scene> {
    let walk = |start_s, crossing_s| {
        Some(Walker {
            start_s,
            crossing_s,
        })
    };
    vec![
        Scene {
            name: "still room",
            noise: 2.0,
            light: steady,
            walker: None,
        },
        Scene {
            name: "night sensor noise (±20)",
            noise: 20.0,
            light: steady,
            walker: None,
        },
        Scene {
            name: "lamp switched on",
            noise: 3.0,
            light: lamp_on,
            walker: None,
        },
        Scene {
            name: "IR-cut switch at dusk",
            noise: 8.0,
            light: ir_cut,
            walker: None,
        },
        Scene {
            name: "dusk: light falls 60 % in a minute",
            noise: 3.0,
            light: dusk,
            walker: None,
        },
        Scene {
            name: "person walks across (6 s)",
            noise: 3.0,
            light: steady,
            walker: walk(20.0, 6.0),
        },
        Scene {
            name: "person, slow (20 s)",
            noise: 3.0,
            light: steady,
            walker: walk(20.0, 20.0),
        },
        Scene {
            name: "person in night noise (±20)",
            noise: 20.0,
            light: steady,
            walker: walk(20.0, 6.0),
        },
        Scene {
            name: "person 1 s after a lamp",
            noise: 3.0,
            light: lamp_then_person,
            walker: walk(21.0, 6.0),
        },
    ]
}

/// The room at full size: gradient, tiles, a bright window.
fn room() -> Vec<f32> {
    (0..FULL_W * FULL_H)
        .map(|i| {
            let (x, y) = (i % FULL_W, i / FULL_W);
            let mut v = 70.0 + x as f32 * 0.12 + y as f32 * 0.1;
            if (x / 40 + y / 40) % 2 == 0 && y > FULL_H * 2 / 3 {
                v += 25.0; // floor tiles
            }
            if (400..560).contains(&x) && (40..160).contains(&y) {
                v = 200.0; // window
            }
            v
        })
        .collect()
}

fn analysis_frame(room: &[f32], scene: &Scene, t: f32, rng: &mut fastrand::Rng) -> Vec<u8> {
    let (gain, offset) = (scene.light)(t);
    let person = scene.walker.and_then(|w| w.left(t)).map(|left| {
        let x0 = (left * FULL_W as f32) as isize;
        let x1 = x0 + (Walker::WIDTH * FULL_W as f32) as isize;
        let y0 = (FULL_H as f32 * (0.9 - Walker::HEIGHT)) as isize;
        (x0, x1, y0, (FULL_H as f32 * 0.9) as isize)
    });
    let mut out = vec![0u8; W * H];
    for (i, px) in out.iter_mut().enumerate() {
        let (ax, ay) = (i % W, i / W);
        let mut sum = 0.0;
        for dy in 0..4 {
            for dx in 0..4 {
                let (x, y) = (ax * 4 + dx, ay * 4 + dy);
                let mut v = room[y * FULL_W + x];
                if let Some((x0, x1, y0, y1)) = person {
                    let (xi, yi) = (x as isize, y as isize);
                    if (x0..x1).contains(&xi) && (y0..y1).contains(&yi) {
                        v = 45.0; // dark clothes
                    }
                }
                sum += v;
            }
        }
        let noise = (rng.f32() * 2.0 - 1.0) * scene.noise;
        *px = ((sum / 16.0) * gain + offset + noise).clamp(0.0, 255.0) as u8;
    }
    out
}

/// The detector edgecam had before (kept here to compare): a running-average background
/// and a per-pixel threshold, no brightness matching, no cells.
struct Naive {
    background: Vec<u16>,
}

impl Naive {
    fn process(&mut self, data: &[u8]) -> bool {
        if self.background.is_empty() {
            self.background = data.iter().map(|&p| u16::from(p) << 8).collect();
            return false;
        }
        let mut changed = 0;
        for (bg, &px) in self.background.iter_mut().zip(data) {
            let value = u16::from(px) << 8;
            let diff = value.abs_diff(*bg);
            let step = (diff >> 4).max(u16::from(diff > 0));
            if value > *bg {
                *bg += step;
            } else {
                *bg -= step;
            }
            changed += usize::from(diff > 25 << 8);
        }
        changed as f32 * 100.0 / data.len() as f32 >= 0.5
    }
}

struct Outcome {
    motion_frames: usize,
    true_pos: usize,
    false_pos: usize,
    false_neg: usize,
    first_seen_after: Option<f32>,
    cpu: Duration,
    frames: usize,
}

fn run(scene: &Scene, room: &[f32], naive: bool) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut detector = MotionDetector::new(MotionSettings::default());
    let mut baseline = Naive {
        background: Vec::new(),
    };
    let frames = (SECONDS * FPS) as usize;
    let mut o = Outcome {
        motion_frames: 0,
        true_pos: 0,
        false_pos: 0,
        false_neg: 0,
        first_seen_after: None,
        cpu: Duration::ZERO,
        frames,
    };
    for n in 0..frames {
        let t = n as f32 / FPS;
        let frame = analysis_frame(room, scene, t, &mut rng);
        let started = Instant::now();
        let motion = if naive {
            baseline.process(&frame)
        } else {
            detector
                .process(&frame, W as u32, H as u32, W as u32)
                .motion
        };
        o.cpu += started.elapsed();
        // Motion is a change between frames: the frame after the person left changed too.
        let truth = scene
            .walker
            .is_some_and(|w| w.in_view(t) || w.in_view(t - 1.0 / FPS));
        match (motion, truth) {
            (true, true) => o.true_pos += 1,
            (true, false) => o.false_pos += 1,
            (false, true) => o.false_neg += 1,
            (false, false) => {}
        }
        if motion {
            o.motion_frames += 1;
            if let (Some(w), None) = (scene.walker, o.first_seen_after) {
                if t >= w.start_s {
                    o.first_seen_after = Some(t - w.start_s);
                }
            }
        }
    }
    o
}

fn main() {
    let room = room();
    println!("motion detector on synthetic scenes, 160x90 analysis frames at 5 fps, 60 s each");
    for (naive, title) in [
        (
            true,
            "before: running average, per-pixel threshold (for comparison)",
        ),
        (
            false,
            "edgecam: brightness/contrast matched, 4x4 cells, light guard",
        ),
    ] {
        println!("\n{title}");
        table(&room, naive);
    }
}

fn table(room: &[f32], naive: bool) {
    println!(
        "{:<38} {:>8} {:>8} {:>10} {:>10} {:>6} {:>6}",
        "scene", "expected", "triggers", "first seen", "motion fr", "false", "missed"
    );
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    let (mut cpu, mut frames) = (Duration::ZERO, 0);
    for scene in scenes() {
        let o = run(&scene, room, naive);
        let expected = if scene.walker.is_some() { "yes" } else { "no" };
        let triggers = if o.motion_frames > 0 { "yes" } else { "no" };
        let first = o
            .first_seen_after
            .map_or("-".to_owned(), |s| format!("{s:.1} s"));
        let mark = if expected == triggers {
            ""
        } else {
            "  <-- wrong"
        };
        println!(
            "{:<38} {:>8} {:>8} {:>10} {:>10} {:>6} {:>6}{mark}",
            scene.name,
            expected,
            triggers,
            first,
            format!("{}/{}", o.motion_frames, o.frames),
            o.false_pos,
            o.false_neg
        );
        tp += o.true_pos;
        fp += o.false_pos;
        fneg += o.false_neg;
        cpu += o.cpu;
        frames += o.frames;
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fneg).max(1) as f64;
    println!(
        "per frame, all scenes: precision {precision:.3} ({tp} true, {fp} false), recall {recall:.3} ({fneg} missed)"
    );
    println!(
        "CPU: {:.1} µs per analysed frame ({:.3} % of a core at 5 fps)",
        cpu.as_secs_f64() * 1e6 / frames as f64,
        cpu.as_secs_f64() / frames as f64 * 5.0 * 100.0
    );
}
