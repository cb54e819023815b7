//! Privacy masks: what is behind them is black in every output, because it is blacked
//! out before the pipeline's tee. Checked by decoding each output and reading the
//! masked pixels: the encoded frames (what live view, clips, RTSP and the KVS stream
//! carry), the snapshot, the motion analysis and the detector's pictures.

use std::io::Write;
use std::time::{Duration, Instant};

use edgecam::capture::{self, template, Heartbeat, Outputs, Pictures, PipelineSpec, TaskConfig};
use edgecam::events::Polygon;
use edgecam::media::{AnalysisBus, FrameBus, RgbBus};
use edgecam::metrics::CaptureCounters;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::support::photos::{decode, decode_all, Rgb};
use crate::support::small_camera;

/// Inside the mask (the right half) and outside it (the left half), each kept a few
/// pixels away from the edge, where the encoder's blocks blur the two together.
const MASKED: [f32; 4] = [0.56, 0.05, 0.95, 0.95];
const CLEAR: [f32; 4] = [0.05, 0.05, 0.44, 0.95];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_pixels_are_black_in_every_output() {
    let camera = small_camera("test-pattern", 1.0);
    let spec = template::load(&camera).unwrap();
    // Colour bars everywhere (the scene's switching left out): nothing is black by chance.
    let text =
        spec.text
            .replace("name=scene", "name=bars")
            .replacen("pattern=ball", "pattern=smpte", 1);
    let frames = FrameBus::new("frames");
    let analysis = AnalysisBus::new("analysis");
    let pictures = RgbBus::new("pictures");
    let (_wanted, wanted_rx) = watch::channel(true);
    let outputs = Outputs::new(
        frames.clone(),
        analysis.clone(),
        CaptureCounters::default(),
        Heartbeat::new(Instant::now()),
    )
    .with_privacy(vec![Polygon::from_xywh([0.5, 0.0, 0.5, 1.0])])
    .with_pictures(Pictures {
        bus: pictures.clone(),
        wanted: wanted_rx,
        every: Duration::from_millis(100),
    });
    let mut snapshot = outputs.snapshot.subscribe();
    let mut encoded = frames.subscribe("test", 64);
    let mut gray = analysis.subscribe("test", 4);
    let mut rgb = pictures.subscribe("test", 4);
    let cancel = CancellationToken::new();
    let cfg = TaskConfig {
        fps: camera.fps,
        stall_timeout: Duration::from_secs(10),
    };
    let (_handle, task) =
        capture::spawn(PipelineSpec { text, ..spec }, cfg, outputs, cancel.clone());

    // The encoded stream, from its first keyframe, decoded as a viewer would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.h264");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut kept = 0;
    while kept < 20 {
        let f = timeout(Duration::from_secs(10), encoded.recv())
            .await
            .unwrap()
            .unwrap();
        if kept > 0 || f.keyframe {
            file.write_all(&f.data).unwrap();
            kept += 1;
        }
    }
    drop(file);
    let source = format!(
        "filesrc location=\"{}\" ! h264parse ! avdec_h264",
        path.display()
    );
    let decoded = tokio::task::spawn_blocking(move || decode_all(&source))
        .await
        .unwrap();
    assert!(decoded.len() >= 15, "{} frames decoded", decoded.len());
    for (i, f) in decoded.iter().enumerate() {
        check(&format!("encoded frame {i}"), f, 40);
    }

    // The motion detector's gray frames, and the detector's colour pictures.
    let g = timeout(Duration::from_secs(10), gray.recv())
        .await
        .unwrap()
        .unwrap();
    let as_rgb = Rgb {
        data: g.data.iter().flat_map(|&v| [v, v, v]).collect(),
        width: g.width as usize,
        height: g.height as usize,
        stride: g.width as usize * 3,
    };
    assert_eq!(g.stride, g.width, "packed gray rows");
    check("analysis frame", &as_rgb, 20);
    let p = timeout(Duration::from_secs(10), rgb.recv())
        .await
        .unwrap()
        .unwrap();
    let picture = Rgb {
        data: p.data.to_vec(),
        width: p.width as usize,
        height: p.height as usize,
        stride: p.stride as usize,
    };
    check("detector picture", &picture, 20);

    // The snapshot (JPEG).
    let jpeg = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(s) = snapshot.borrow_and_update().clone() {
                break s.jpeg;
            }
            snapshot.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    let still = dir.path().join("snapshot.jpg");
    std::fs::write(&still, &jpeg).unwrap();
    let still = tokio::task::spawn_blocking(move || decode(&still))
        .await
        .unwrap();
    check("snapshot", &still, 40);

    cancel.cancel();
    let _ = task.await;
}

/// The masked half is black (up to `noise`), the other half shows the bars.
pub(crate) fn check(what: &str, f: &Rgb, noise: u8) {
    let masked = f.brightest(MASKED);
    assert!(masked <= noise, "{what}: the masked half reaches {masked}");
    // Its white bar, among others.
    let clear = f.brightest(CLEAR);
    assert!(clear > 150, "{what}: the clear half is dark too ({clear})");
}

/// Writes `bars.pipeline` into `dir`: the shipped test pattern with colour bars, which
/// the scene leaves alone, so nothing is black by chance.
pub(crate) fn write_bars_pipeline(dir: &std::path::Path) {
    let pattern =
        std::fs::read_to_string(crate::support::repo().join("pipelines/test-pattern.pipeline"))
            .unwrap()
            .replace(
                "name=scene is-live=true pattern=ball",
                "name=bars is-live=true pattern=smpte",
            );
    std::fs::write(dir.join("bars.pipeline"), pattern).unwrap();
}

/// A daemon's config `c` changed to capture `dir`'s `bars.pipeline`, with `extra` in
/// its `[camera]` section.
pub(crate) fn bars(c: &str, dir: &std::path::Path, extra: &str) -> String {
    let shipped = crate::support::repo().join("pipelines");
    c.replace(
        &format!("pipeline_dir = \"{}\"", shipped.display()),
        &format!(
            "pipeline = \"bars\"\npipeline_dir = \"{}\"\n{extra}",
            dir.display()
        ),
    )
}

/// The same, with a privacy mask over the right half.
pub(crate) fn bars_masked(c: &str, dir: &std::path::Path) -> String {
    let mask = "privacy_masks = [[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]]";
    bars(c, dir, mask)
}

/// A clip the daemon recorded, read back from its file as a player would.
#[test]
fn masked_pixels_are_black_in_a_recorded_clip() {
    let pipelines = tempfile::tempdir().unwrap();
    write_bars_pipeline(pipelines.path());
    let dir = pipelines.path().to_owned();
    let mut d = crate::support::daemon::Daemon::start_edited(move |c| {
        let c = bars_masked(&c, &dir);
        format!("{c}\n[motion]\nenabled = false\n[events]\npre_roll_s = 0\npost_roll_s = 0\n")
    });
    d.wait_healthy();
    let (status, reply) = d.command(r#"{"command":"record","duration_s":2}"#);
    assert_eq!(status, 200, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let clip = loop {
        let (_, _, body) = d.get("/api/clips").unwrap();
        let clips: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(c) = clips.into_iter().find(|c| c["status"] == "complete") {
            break c;
        }
        assert!(Instant::now() < deadline, "no finished clip");
        std::thread::sleep(Duration::from_millis(200));
    };
    let path = d.data().join(clip["path"].as_str().unwrap());
    let source = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264",
        path.display()
    );
    let frames = decode_all(&source);
    assert!(frames.len() >= 15, "{} frames in the clip", frames.len());
    for (i, f) in frames.iter().enumerate() {
        check(&format!("clip frame {i}"), f, 40);
    }
}
