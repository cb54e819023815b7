//! The object detector on real photographs no one here took (registry packages, see
//! tests/data/README), through the shipped model and the daemon's own code.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use edgecam::detect::{Model, Picture};
use edgecam::events::Detection;
use serde_json::Value;

use crate::support::daemon::{daemon_config, Daemon};
use crate::support::{free_port, photos, write_file};

fn detect(model: &Model, name: &str, min_score: f32) -> Vec<Detection> {
    let rgb = photos::decode(&photos::photo(name));
    let wanted: BTreeMap<String, f32> = model
        .labels()
        .iter()
        .map(|l| (l.clone(), min_score))
        .collect();
    let thresholds = model.thresholds(&|l| wanted.get(l).copied());
    let picture = Picture {
        rgb: &rgb.data,
        width: rgb.width,
        height: rgb.height,
        stride: rgb.stride,
    };
    model
        .detect(&picture, &thresholds, &mut Vec::new())
        .unwrap()
}

fn labels(found: &[Detection]) -> Vec<&str> {
    found.iter().map(|d| d.label.as_str()).collect()
}

#[test]
fn the_shipped_model_tells_a_person_from_a_cat_and_a_cup() {
    let model = Model::load(&photos::model()).unwrap();
    assert_eq!(model.input(), [320, 320]);
    assert_eq!(model.labels().len(), 80);

    let astronaut = detect(&model, "skimage-astronaut", 0.2);
    let person = astronaut.iter().find(|d| d.label == "person");
    let person = person.unwrap_or_else(|| panic!("no person: {:?}", labels(&astronaut)));
    // She fills the left two thirds of the picture, from near the top to the bottom.
    let r = person.rect;
    assert!(
        r.x0 < 0.2 && r.x1 > 0.5 && r.x1 < 0.8 && r.y1 > 0.9,
        "{r:?}"
    );

    let cat = detect(&model, "skimage-chelsea", 0.2);
    assert!(labels(&cat).contains(&"cat"), "{:?}", labels(&cat));
    assert!(!labels(&cat).contains(&"person"));

    let coffee = detect(&model, "skimage-coffee", 0.2);
    assert!(labels(&coffee).contains(&"cup"), "{:?}", labels(&coffee));
    assert!(!labels(&coffee).contains(&"person"));
}

/// The value of a Prometheus counter or gauge the daemon reports.
fn metric(d: &Daemon, name: &str) -> f64 {
    let (_, _, body) = d.get("/metrics").unwrap();
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn clips(d: &Daemon) -> Vec<Value> {
    let (_, _, body) = d.get("/api/clips").unwrap();
    serde_json::from_slice(&body).unwrap_or_default()
}

/// The daemon's test config with the detector on (events opened by objects).
fn with_detector(config: String, zones: &str) -> String {
    format!(
        "{config}\n[detect]\nenabled = true\nmodel = \"{}\"\nmin_scores = {{ person = 0.2 }}\n{zones}",
        photos::model().display()
    )
}

#[test]
fn a_cut_or_scrambled_model_file_is_an_error_not_a_crash() {
    let real = std::fs::read(photos::model()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut scrambled = real.clone();
    for (i, b) in scrambled.iter_mut().enumerate().skip(64).step_by(997) {
        *b ^= (i % 251) as u8 | 1;
    }
    for (name, bytes) in [
        ("cut.onnx", &real[..real.len() / 3]),
        ("head.onnx", &real[..4096]),
        ("scrambled.onnx", &scrambled[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        // Either refused with the file's name, or (a scrambled weight is still a model)
        // loaded: never a panic.
        if let Err(e) = Model::load(&path) {
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}

#[test]
fn a_missing_or_corrupt_model_stops_the_daemon_at_start_naming_detect_model() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write_file(dir.path(), "broken.onnx", "not a model");
    for model in [dir.path().join("missing.onnx"), broken] {
        let text = format!(
            "{}\n[detect]\nenabled = true\nmodel = \"{}\"\n",
            daemon_config(dir.path(), free_port()),
            model.display()
        );
        let path = write_file(dir.path(), "edgecam.toml", &text);
        for cmd in ["check-config", "run"] {
            let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
                .args([cmd, "--config", path.to_str().unwrap()])
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{cmd}: {said}");
            assert!(
                said.contains("detect.model") && said.contains(&*model.display().to_string()),
                "{cmd}: {said}"
            );
        }
    }
}

/// `edgecam detect PICTURE` says what the config's detector finds and how long it took;
/// a picture it cannot read and a broken model are errors that say so.
#[test]
fn the_detect_command_names_what_it_finds_in_a_photo_and_the_time_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let detect = |model: &std::path::Path, picture: &std::path::Path| {
        let text = format!(
            "[detect]\nmodel = \"{}\"\nlabels = [\"person\", \"cat\"]\nmin_score = 0.2\n",
            model.display()
        );
        let config = write_file(dir.path(), "edgecam.toml", &text);
        let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "detect",
                "--runs",
                "2",
            ])
            .arg(picture)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), said)
    };
    let model = photos::model();
    let (code, said) = detect(&model, &photos::photo("skimage-astronaut"));
    assert_eq!(code, Some(0), "{said}");
    assert!(said.lines().any(|l| l.starts_with("person")), "{said}");
    assert!(!said.lines().any(|l| l.starts_with("cat")), "{said}");
    assert!(said.contains("inference: 2 run(s), median"), "{said}");
    let (code, said) = detect(&model, &photos::photo("skimage-coffee"));
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("nothing found"),
        "a cup is not a label asked for: {said}"
    );
    let text = write_file(dir.path(), "notes.txt", "not a picture");
    let (code, said) = detect(&model, &text);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("notes.txt"), "{said}");
    let broken = write_file(dir.path(), "broken.onnx", "not a model");
    let (code, said) = detect(&broken, &photos::photo("skimage-astronaut"));
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("detect.model"), "{said}");
}

/// The time of the first clip the daemon lists, and the clip.
fn first_clip(d: &Daemon) -> Option<Value> {
    clips(d).into_iter().next()
}

#[test]
fn the_test_scene_ball_is_looked_at_only_while_it_moves_and_opens_no_event() {
    let mut d = Daemon::start_edited(|c| with_detector(c, ""));
    d.wait_healthy();
    // The ball moves for the first 10 s of the scene: the detector looks at it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&d, "edgecam_detect_frames_total") < 6.0 {
        assert!(
            Instant::now() < deadline,
            "the detector saw no pictures while the ball moved"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Then the scene rests (10–40 s): the valve shuts and nothing more is analysed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (_, s) = d.command(r#"{"command":"status"}"#);
        if s["result"]["motion"]["moving"] == false {
            break s;
        }
        assert!(Instant::now() < deadline, "the scene never rested");
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(Duration::from_millis(600));
    let resting = metric(&d, "edgecam_detect_frames_total");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric(&d, "edgecam_detect_frames_total"),
        resting,
        "no work while nothing moves: {status}"
    );
    assert!(
        first_clip(&d).is_none(),
        "the ball is no person: {:?}",
        clips(&d)
    );
    let objects = &status["result"]["objects"];
    assert_eq!(objects["enabled"], true, "{status}");
    assert_eq!(objects["trigger"], "objects", "{status}");
}

#[test]
fn the_test_scene_walking_person_opens_an_event_unless_her_zone_wants_only_cars() {
    let cars_zone = "[[zones]]\nname = \"street\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\nlabels = [\"car\"]\n";
    // The scene started 34 s into its cycle: the person walks at 6-16 s.
    let offset = [("EDGECAM_SCENE_OFFSET_S", "34")];
    let mut d = Daemon::start_env(&offset, |c| with_detector(c, ""));
    let mut cars_only = Daemon::start_env(&offset, |c| with_detector(c, cars_zone));
    d.wait_healthy();
    cars_only.wait_healthy();
    // She walks across: an event opens for her.
    let deadline = Instant::now() + Duration::from_secs(40);
    let clip = loop {
        if let Some(c) = first_clip(&d) {
            break c;
        }
        assert!(Instant::now() < deadline, "no event for the walking person");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(clip["trigger"], "object", "{clip}");
    assert_eq!(clip["label"], "person", "{clip}");
    let (_, status) = d.command(r#"{"command":"status"}"#);
    let objects = &status["result"]["objects"];
    assert_eq!(objects["enabled"], true, "{status}");
    assert!(
        objects["model"]
            .as_str()
            .is_some_and(|m| m.ends_with(".onnx")),
        "{status}"
    );
    assert!(clip["labels"]["person"].as_f64().unwrap() >= 0.2, "{clip}");
    let listed = |label: &str| {
        let (_, _, body) = d.get(&format!("/api/clips?label={label}")).unwrap();
        serde_json::from_slice::<Vec<Value>>(&body).unwrap().len()
    };
    assert_eq!((listed("person"), listed("car")), (1, 0));
    // Her clip's picture shows her with a box drawn around her.
    let id = clip["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let boxed = loop {
        let green = d
            .get(&format!("/api/clips/{id}.jpg"))
            .ok()
            .filter(|(status, _, _)| *status == 200)
            .map_or(0, |(_, _, jpeg)| photos::box_pixels(&jpeg));
        if green >= 200 || Instant::now() > deadline {
            break green;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        boxed >= 200,
        "no box on the clip's picture ({boxed} green pixels)"
    );
    // The other camera saw her too, but its only zone wants cars.
    let person = "edgecam_detect_objects_total{label=\"person\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&cars_only, person) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the cars-only camera never saw the person"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        first_clip(&cars_only).is_none(),
        "a zone that wants only cars ignores the person: {:?}",
        clips(&cars_only)
    );
}

/// A black 640×360 scene with `car` (a photograph) scaled to 256 pixels wide, its left
/// edge at `x` (a fraction of the width), its top at a third of the height.
fn scene_with(car: &photos::Rgb, x: f32) -> photos::Rgb {
    let (w, h) = (640usize, 360usize);
    let sw = 256usize;
    let sh = sw * car.height / car.width;
    let (left, top) = ((x * w as f32) as usize, h / 3);
    let mut data = vec![0u8; w * h * 3];
    for y in 0..sh.min(h - top) {
        let sy = y * car.height / sh;
        for cx in 0..sw.min(w.saturating_sub(left)) {
            let sx = cx * car.width / sw;
            let from = sy * car.stride + sx * 3;
            let to = (top + y) * w * 3 + (left + cx) * 3;
            data[to..to + 3].copy_from_slice(&car.data[from..from + 3]);
        }
    }
    photos::Rgb {
        data,
        width: w,
        height: h,
        stride: w * 3,
    }
}

/// The shipped model and the daemon's object tracker on a real photograph of a car
/// moved about a black scene, two pictures a second: a car that was parked before
/// anything moved is never announced; one that drives in and parks is announced once,
/// keeps its id while parked and is not announced again.
#[test]
fn a_car_that_drives_in_and_parks_is_announced_once_and_a_parked_one_never() {
    use edgecam::events::{ObjectSettings, Objects, Rect};
    let model = Model::load(&photos::model()).unwrap();
    let car = photos::decode(&photos::photo("vibrant-rally-car"));
    let settings = ObjectSettings {
        min_scores: BTreeMap::from([("car".to_owned(), 0.3)]),
        still_after: Duration::from_secs(5),
        ..ObjectSettings::default()
    };
    let thresholds = model.thresholds(&|l| (l == "car").then_some(0.3));
    let mut tensor = Vec::new();
    let mut look = |x: f32| {
        let scene = scene_with(&car, x);
        let picture = Picture {
            rgb: &scene.data,
            width: scene.width,
            height: scene.height,
            stride: scene.stride,
        };
        model.detect(&picture, &thresholds, &mut tensor).unwrap()
    };
    let t0 = chrono::Utc::now();
    let at = |i: i64| t0 + chrono::Duration::milliseconds(500 * i);

    // Parked before anything moved: seen, never announced.
    let mut parked = Objects::new(settings.clone());
    let mut seen = 0;
    for i in 0..10 {
        let found = look(0.5);
        seen += usize::from(found.iter().any(|d| d.label == "car"));
        let frame = parked.handle(at(i), &found, None);
        assert!(
            frame.announced.is_empty(),
            "picture {i}: {:?}",
            frame.announced
        );
    }
    assert!(
        seen >= 8,
        "the parked car was found in only {seen} of 10 pictures"
    );

    // Drives in from the left over 3 s (the motion detector's box around it), then
    // stands still for 15 s.
    let mut objects = Objects::new(settings);
    let mut announced = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..36 {
        let x = (i as f32 / 6.0).min(1.0) * 0.5;
        let motion = (i < 6).then(|| Rect::new(x, 0.3, x + 0.45, 0.75));
        let found = look(x);
        let frame = objects.handle(at(i), &found, motion);
        announced.extend(frame.announced.iter().map(|o| (i, o.id)));
        ids.extend(frame.present.iter().map(|o| o.id));
    }
    assert_eq!(announced.len(), 1, "announced: {announced:?}");
    assert!(
        announced[0].0 < 6,
        "announced while it drove in: {announced:?}"
    );
    assert_eq!(ids.len(), 1, "one car, one id while it stands: {ids:?}");
}
