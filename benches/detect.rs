//! Benchmarks of the object detector; prints tables (run with `make bench`).
//!
//! 1. Inference: loading the shipped model, and milliseconds per inference at its input
//!    size (p50, p95) on a real photograph, through the daemon's own code.
//! 2. Accuracy on real photographs no one here took (`tests/data/photos.toml`, fetched
//!    by `tests/data/fetch-photos.sh`): per label, whether the picture holds one, at the
//!    default labels and scores of `[detect]`: precision and recall.
//! 3. False objects on scenes with no one in them: the test pattern's ball, sensor
//!    noise, and the light changing: persons announced by the daemon's object tracker
//!    (which should be 0), with the whole picture counted as moving.
//! 4. The daemon's CPU with the detector on, a still scene against constant motion, and
//!    with it off: what detection costs, and that it costs nothing while nothing moves.
//! 5. From a person's first frame to her picture on MQTT: the daemon on its defaults
//!    (1280×720, detector on) with a real mosquitto, started again for each sample with
//!    the test scene 3 s before she walks in; from the scene's log line to the JPEG
//!    reaching a subscriber (p50, p95), and from the first picture in which the
//!    detector found her (its debug log), which leaves out how much of her must be in
//!    view before the model knows her.
//!
//! Arguments: `inference`, `accuracy`, `false`, `cpu` or `notify` to run only those
//! sections; `--quick` for shorter runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use edgecam::config::Detect;
use edgecam::detect::{Model, Picture};
use edgecam::events::{Objects, Rect};
use support::photos::{self, Rgb};

#[path = "../tests/it/support/mod.rs"]
mod support;

fn model_path() -> PathBuf {
    photos::model()
}

/// Packed RGB pictures of a GStreamer source that ends: its first `count`.
fn pictures(source: &str, count: usize) -> Vec<Rgb> {
    let mut all = photos::decode_all(source);
    all.truncate(count);
    all
}

fn picture(p: &Rgb) -> Picture<'_> {
    Picture {
        rgb: &p.data,
        width: p.width,
        height: p.height,
        stride: p.stride,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn inference(model: &Model, runs: usize) {
    let photo = photos::photo("skimage-astronaut");
    // As the pipeline gives it on a 16:9 camera: fitted to the input, 320×180.
    let source = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! video/x-raw,width=320,height=180 ! imagefreeze num-buffers=1",
        photo.display()
    );
    let pics = pictures(&source, 1);
    let thresholds = model.thresholds(&|_| Some(0.3));
    let mut tensor = Vec::new();
    let mut ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        model
            .detect(&picture(&pics[0]), &thresholds, &mut tensor)
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let [w, h] = model.input();
    println!("\nInference ({w}×{h} input, {runs} runs, one thread)");
    println!("| p50 ms | p95 ms | max ms |");
    println!("|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.1} |",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

#[derive(serde::Deserialize)]
struct PhotoSet {
    photo: Vec<Photo>,
}

#[derive(serde::Deserialize)]
struct Photo {
    name: String,
    labels: Vec<String>,
    #[serde(default)]
    ambiguous: Vec<String>,
}

fn accuracy(model: &Model) {
    let text = std::fs::read_to_string("tests/data/photos.toml").unwrap();
    let set: PhotoSet = toml::from_str(&text).unwrap();
    let detect = Detect::default();
    let scores = detect.scores();
    let thresholds = model.thresholds(&|l| scores.get(l).copied());
    // Per label: true positives, false positives, false negatives.
    let mut counts: BTreeMap<String, [u32; 3]> =
        scores.keys().map(|l| (l.clone(), [0; 3])).collect();
    let mut misses = Vec::new();
    for p in &set.photo {
        let pic = photos::decode(&photos::photo(&p.name));
        let found: BTreeSet<String> = model
            .detect(&picture(&pic), &thresholds, &mut Vec::new())
            .unwrap()
            .into_iter()
            .map(|d| d.label)
            .collect();
        for (label, c) in counts.iter_mut() {
            if p.ambiguous.contains(label) {
                continue;
            }
            match (p.labels.contains(label), found.contains(label)) {
                (true, true) => c[0] += 1,
                (false, true) => {
                    c[1] += 1;
                    misses.push(format!("{}: {label} not there", p.name));
                }
                (true, false) => {
                    c[2] += 1;
                    misses.push(format!("{}: {label} missed", p.name));
                }
                (false, false) => {}
            }
        }
    }
    println!(
        "\nAccuracy on {} real photographs, default labels and scores (min_score {})",
        set.photo.len(),
        detect.min_score
    );
    println!("| label | pictures with it | found | false | precision | recall |");
    println!("|---|---|---|---|---|---|");
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            "–".to_owned()
        } else {
            format!("{:.2}", f64::from(a) / f64::from(b))
        }
    };
    for (label, [tp, fp, fn_]) in &counts {
        println!(
            "| {label} | {} | {tp} | {fp} | {} | {} |",
            tp + fn_,
            ratio(*tp, tp + fp),
            ratio(*tp, tp + fn_)
        );
    }
    for m in misses {
        println!("  {m}");
    }
}

fn false_objects(model: &Model, seconds: usize) {
    let detect = Detect::default();
    let scores = detect.scores();
    let thresholds = model.thresholds(&|l| scores.get(l).copied());
    let n = seconds * 2;
    let scenes = [
        (
            "test pattern ball",
            format!("videotestsrc pattern=ball num-buffers={n} ! video/x-raw,width=320,height=180,framerate=2/1"),
        ),
        (
            "sensor noise",
            format!("videotestsrc pattern=snow num-buffers={n} ! video/x-raw,width=320,height=180,framerate=2/1"),
        ),
        (
            "light changing",
            format!("videotestsrc pattern=smpte num-buffers={n} ! video/x-raw,width=320,height=180,framerate=2/1"),
        ),
    ];
    println!("\nFalse objects on scenes with no one ({seconds} s at 2 pictures a second)");
    println!("| scene | pictures | boxes ≥ min score | persons announced | objects announced |");
    println!("|---|---|---|---|---|");
    for (name, source) in scenes {
        let mut pics = pictures(&source, n);
        if name == "light changing" {
            // Every picture brighter or darker than the last: a lamp, the sun, the IR cut.
            for (i, p) in pics.iter_mut().enumerate() {
                let gain = [0.3f32, 1.0, 0.6, 1.4, 0.1][i % 5];
                for v in p.data.iter_mut() {
                    *v = (f32::from(*v) * gain).min(255.0) as u8;
                }
            }
        }
        let mut objects = Objects::new(detect.objects());
        let (mut boxes, mut persons, mut announced) = (0, 0, 0);
        let start = Utc::now();
        for (i, p) in pics.iter().enumerate() {
            let found = model
                .detect(&picture(p), &thresholds, &mut Vec::new())
                .unwrap();
            boxes += found.len();
            let now = start + chrono::Duration::milliseconds(500 * i as i64);
            let frame = objects.handle(now, &found, Some(Rect::new(0.0, 0.0, 1.0, 1.0)));
            announced += frame.announced.len();
            persons += frame
                .announced
                .iter()
                .filter(|o| o.label == "person")
                .count();
        }
        println!(
            "| {name} | {} | {boxes} | {persons} | {announced} |",
            pics.len()
        );
    }
}

/// CPU seconds the process `pid` has used.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Runs the daemon on a 1280×720 scene for `seconds`: its CPU per second, and the
/// pictures its detector analysed per second.
fn daemon_cpu(scene: &str, detect: bool, seconds: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let pattern = std::fs::read_to_string("pipelines/test-pattern.pipeline").unwrap();
    let (video, _) = pattern.split_once("@audio").unwrap();
    let branches = &video[video.find("raw. !").unwrap()..];
    // No element named "scene": the pattern never changes.
    let pipeline = format!(
        "videotestsrc is-live=true pattern={scene} ! video/x-raw,width=320,height=180,framerate=${{fps}}/1\n  ! videoscale method=nearest-neighbour ! video/x-raw,width=${{width}},height=${{height}} ! tee name=raw\n{branches}"
    );
    std::fs::write(dir.path().join("bench.pipeline"), pipeline).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[camera]\npipeline = \"bench\"\npipeline_dir = \"{dir}\"\n[storage]\ndata_dir = \"{dir}/data\"\nmin_free_percent = 0\n[web]\nlisten = \"127.0.0.1:{port}\"\n[live]\nenabled = false\n[detect]\nenabled = {detect}\nmodel = \"{model}\"\n",
        dir = dir.path().display(),
        model = model_path().display()
    );
    let mut child = daemon(dir.path(), &config, &[("RUST_LOG", "warn")], false);
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, n0) = (process_cpu(child.id()), analysed(port));
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu, n) = (process_cpu(child.id()) - cpu0, analysed(port) - n0);
    let _ = child.kill();
    let _ = child.wait();
    (cpu.as_secs_f64() / seconds as f64, n / seconds as f64)
}

/// Runs the daemon on `config` (written into `dir`) with `env`; its log piped to the
/// caller when `log`, else dropped.
fn daemon(
    dir: &std::path::Path,
    config: &str,
    env: &[(&str, &str)],
    log: bool,
) -> std::process::Child {
    let path = dir.join("edgecam.toml");
    std::fs::write(&path, config).unwrap();
    let stderr = match log {
        true => std::process::Stdio::piped(),
        false => std::process::Stdio::null(),
    };
    std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The daemon's count of pictures the detector analysed.
fn analysed(port: u16) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find(|l| l.starts_with("edgecam_detect_frames_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn cpu(seconds: u64) {
    println!("\nThe daemon's CPU, 1280×720 at 15 fps, x264 included ({seconds} s each after 5 s)");
    println!("| scene | detector off | detector on | the detector's cost | pictures analysed/s |");
    println!("|---|---|---|---|---|");
    for (name, pattern) in [("still", "black"), ("constant motion", "ball")] {
        let (off, _) = daemon_cpu(pattern, false, seconds);
        let (on, rate) = daemon_cpu(pattern, true, seconds);
        println!(
            "| {name} | {:.1} % | {:.1} % | {:+.1} % of a core | {rate:.2} |",
            off * 100.0,
            on * 100.0,
            (on - off) * 100.0
        );
    }
}

/// One sample: a daemon whose scene's person walks in 3 s after it starts; how long
/// from her first frame (the scene's log line), and from the first picture the
/// detector found someone in, to her picture on `topic`.
fn one_notification(
    rt: &tokio::runtime::Runtime,
    observer: &support::mosquitto::Observer,
    mqtt: &str,
    topic: &str,
) -> Option<(Duration, Duration)> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = format!(
        "[camera]\npipeline_dir = \"{pipelines}\"\n[storage]\ndata_dir = \"{dir}/data\"\nmin_free_percent = 0\n\
         [web]\nlisten = \"127.0.0.1:{port}\"\n[live]\nenabled = false\n\
         [detect]\nenabled = true\nmodel = \"{model}\"\n{mqtt}",
        pipelines = support::repo().join("pipelines").display(),
        dir = dir.path().display(),
        model = model_path().display()
    );
    let env = [
        ("RUST_LOG", "info,edgecam::detect=debug"),
        ("EDGECAM_SCENE_OFFSET_S", "37"),
    ];
    let mut child = daemon(dir.path(), &config, &env, true);
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut walked = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("the person walks in") {
                walked = true;
                let _ = tx.send(Instant::now());
            } else if walked && line.contains("picture analysed") && !line.contains("found=0") {
                walked = false;
                let _ = tx.send(Instant::now());
            }
        }
    });
    let walked_in = rx.recv_timeout(Duration::from_secs(30)).ok();
    let found = walked_in.and_then(|_| rx.recv_timeout(Duration::from_secs(20)).ok());
    let arrived = walked_in.zip(found).and_then(|(t0, t1)| {
        let seen = rt.block_on(observer.wait(topic, Duration::from_secs(20), |m| {
            m.iter().any(|x| x.at > t0)
        }));
        seen.iter()
            .find(|x| x.at > t0)
            .map(|x| (x.at - t0, x.at.saturating_duration_since(t1)))
    });
    let _ = child.kill();
    let _ = child.wait();
    arrived
}

fn notify(samples: usize) {
    println!("\nFrom a person's first frame to her picture on MQTT ({samples} samples, the daemon on its defaults)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki::Pki::new(dir.path());
    let broker = support::mosquitto::Broker::start(dir.path(), &pki);
    let client = support::mosquitto::client_leaf(&pki, "bench-cam");
    let mqtt = broker.daemon_config(&pki, &client, "bench-cam", "");
    let topic = "edgecam/bench-cam/snapshot";
    let observer = rt.block_on(support::mosquitto::Observer::start(&broker, &pki, &[topic]));
    let (mut first_frame, mut first_found) = (Vec::new(), Vec::new());
    let mut missed = 0;
    for _ in 0..samples {
        match one_notification(&rt, &observer, &mqtt, topic) {
            Some((a, b)) => {
                first_frame.push(a.as_secs_f64() * 1000.0);
                first_found.push(b.as_secs_f64() * 1000.0);
            }
            None => missed += 1,
        }
    }
    println!("| from | samples | missed | p50 | p95 | max | target |");
    println!("|---|---|---|---|---|---|---|");
    for (from, times) in [
        ("her first frame", &mut first_frame),
        ("the detector first finding her", &mut first_found),
    ] {
        times.sort_by(f64::total_cmp);
        println!(
            "| {from} | {} | {missed} | {:.0} ms | {:.0} ms | {:.0} ms | p95 ≤ 2000 ms |",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.95),
            times.last().copied().unwrap_or(0.0)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let wants = |s: &str| {
        let sections = ["inference", "accuracy", "false", "cpu", "notify"];
        !args.iter().any(|a| sections.contains(&a.as_str())) || args.iter().any(|a| a == s)
    };
    let started = Instant::now();
    let model = Model::load(&model_path()).unwrap_or_else(|e| {
        panic!("{e} (run packaging/model/fetch-model.sh)");
    });
    println!(
        "Model {} loaded in {:.0} ms",
        model_path().display(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    if wants("inference") {
        inference(&model, if quick { 20 } else { 100 });
    }
    if wants("accuracy") {
        accuracy(&model);
    }
    if wants("false") {
        false_objects(&model, if quick { 30 } else { 120 });
    }
    if wants("cpu") {
        cpu(if quick { 10 } else { 30 });
    }
    if wants("notify") {
        notify(if quick { 5 } else { 20 });
    }
}
