//! Clip files on real GStreamer: the writer's fragmented MP4 holds every frame pushed,
//! decodes with ffprobe, and a file torn at any point scans back to its complete fragments.

use std::time::Duration;

use edgecam::capture::template;
use edgecam::media::fmp4;
use edgecam::media::EncodedFrame;
use edgecam::recorder::{clip, ClipWriter};
use tokio::time::timeout;

use crate::support::{ffprobe_frames, small_camera, Rig};

async fn capture_frames(n: usize) -> Vec<EncodedFrame> {
    let camera = small_camera("test-pattern", 1.0);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    let mut frames = Vec::new();
    while frames.len() < n {
        frames.push(
            timeout(Duration::from_secs(10), sub.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    rig.stop().await;
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_clip_holds_every_frame_and_survives_any_tear() {
    let frames = capture_frames(45).await; // 3 s at 15 fps, keyframe every 15
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("2026/11/21/clip.mp4");
    let mut writer = ClipWriter::create(&target, None).unwrap();
    assert!(
        writer.part().exists(),
        "the .part file exists while recording"
    );
    for f in &frames {
        writer.push(f).unwrap();
    }
    let (path, stats) = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, target);
    assert!(!clip::part_path(&target).exists());
    assert_eq!(stats.frame_count, 45);
    assert_eq!((stats.width, stats.height), (320, 240));
    assert_eq!(stats.start_at, frames[0].captured_at);
    assert_eq!(stats.end_at, frames[44].captured_at);
    let expected = frames[44].pts - frames[0].pts;
    assert!(stats.duration >= expected && stats.duration <= expected + Duration::from_millis(100));

    assert_eq!(ffprobe_frames(&path), 45);
    let scan = fmp4::scan(&path).unwrap();
    assert!(scan.finished);
    assert_eq!(scan.valid_len, scan.file_len);
    assert_eq!(scan.samples.len(), 45);
    assert_eq!(scan.keyframes(), 3);
    assert_eq!((scan.width, scan.height), (320, 240));
    assert!(
        scan.fragments >= 12,
        "3 s in fragments of at most 250 ms: {}",
        scan.fragments
    );
    let d = scan.duration().as_secs_f64();
    assert!(
        (d - stats.duration.as_secs_f64()).abs() < 0.1,
        "scan {d} vs writer {:?}",
        stats.duration
    );
    // Sample bytes are the frames' access units, converted to AVCC by h264parse.
    let mut f = std::fs::File::open(&path).unwrap();
    let first = fmp4::read_sample(&mut f, &scan.samples[0]).unwrap();
    let nal_len = u32::from_be_bytes(first[..4].try_into().unwrap()) as usize;
    assert!(
        nal_len + 4 <= first.len(),
        "first sample starts with a NAL length"
    );

    // Tear the file at many points: the scan never errors and keeps a prefix.
    let bytes = std::fs::read(&path).unwrap();
    let torn = dir.path().join("torn.mp4");
    for cut in (900..bytes.len()).step_by(997) {
        std::fs::write(&torn, &bytes[..cut]).unwrap();
        let s = fmp4::scan(&torn).unwrap();
        assert!(s.valid_len <= cut as u64 && !s.finished);
        assert_eq!(
            &s.samples[..],
            &scan.samples[..s.samples.len()],
            "cut at {cut}"
        );
        if !s.samples.is_empty() {
            let f = std::fs::OpenOptions::new().write(true).open(&torn).unwrap();
            f.set_len(s.valid_len).unwrap();
            drop(f);
            assert_eq!(
                ffprobe_frames(&torn),
                s.samples.len() as u64,
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn header_only_and_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not an mp4 file at all").unwrap();
    assert!(fmp4::scan(&junk).is_err());
    std::fs::write(&junk, b"").unwrap();
    assert!(fmp4::scan(&junk).is_err());
}
