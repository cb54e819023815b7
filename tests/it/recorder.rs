//! The recorder in-process on a real test-pattern pipeline: a trigger gives a clip that
//! starts on the right keyframe before it, ends after the post-roll, and holds every
//! frame the bus delivered in between; retention deletes the oldest clips first.

use crate::support;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use edgecam::capture::template;
use edgecam::commands::Record;
use edgecam::events::{MotionSettings, TriggerKind};
use edgecam::index::{ClipStats, ClipStatus, Index, INDEX_FILE};
use edgecam::media::fmp4;
use edgecam::recorder::{self, retention, RecorderCommand};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::support::{small_camera, Rig};

const PRE_ROLL: f64 = 2.0;
const POST_ROLL: f64 = 1.0;
const KEYFRAME_S: f64 = 1.0;
const FRAME_S: f64 = 1.0 / 15.0;

fn secs(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_gives_a_clip_with_exact_pre_roll_and_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    // Everything the bus delivers, to compare with the clip.
    let mut witness = rig.frames.subscribe("witness", 1024);
    let stop = CancellationToken::new();
    let (recorder, task) = start_recorder(&rig, &index, dir.path(), &stop).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // fill the pre-roll

    let t = Utc::now();
    let record = RecorderCommand::Record(Record::Start {
        duration_s: Some(1.0),
        label: "test".into(),
    });
    let reply = recorder.execute(TriggerKind::Http, record).await.unwrap();
    let reply = serde_json::to_value(reply).unwrap();
    let event_id = reply["event_id"].as_str().unwrap().to_owned();

    // Wait for the clip to be complete.
    let row = timeout(Duration::from_secs(15), async {
        loop {
            if let Some(r) = index
                .clips(None, None, 10)
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.status == ClipStatus::Complete)
            {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("clip completes");
    let mut seen = Vec::new();
    while let Ok(f) = witness.try_recv() {
        seen.push(f);
    }
    stop.cancel();
    task.await.unwrap();
    rig.stop().await;

    assert_eq!(row.event_id, event_id);
    let ended: i64 = sqlx::query_scalar("SELECT ended_at FROM events WHERE id = ?1")
        .bind(&event_id)
        .fetch_one(index.pool())
        .await
        .unwrap();
    let end = Utc.timestamp_millis_opt(ended).unwrap();
    let start = secs(row.start_at);
    let want = secs(t) - PRE_ROLL;
    assert!(
        start <= want + 1e-3,
        "clip starts at {start}, after trigger − pre-roll {want}"
    );
    assert!(
        start >= want - KEYFRAME_S - 1e-3,
        "clip starts {} s before trigger − pre-roll",
        want - start
    );
    let end_at = secs(row.end_at.unwrap());
    assert!(
        end_at >= secs(end) + POST_ROLL - FRAME_S - 1e-3,
        "clip ends at {end_at}, event end {}",
        secs(end)
    );

    // Every frame the bus delivered in [start, end] is in the clip, and nothing else.
    // (The index keeps milliseconds.)
    let (first_ms, last_ms) = (
        row.start_at.timestamp_millis(),
        row.end_at.unwrap().timestamp_millis(),
    );
    let span: Vec<_> = seen
        .iter()
        .filter(|f| (first_ms..=last_ms).contains(&f.captured_at.timestamp_millis()))
        .collect();
    assert!(span[0].keyframe, "the clip's first frame is a keyframe");
    assert_eq!(
        row.frame_count,
        Some(span.len() as i64),
        "no gap, no extra frame"
    );
    assert_eq!(row.frames_lost, 0);

    let path = dir.path().join(&row.path);
    let scan = fmp4::scan(&path).unwrap();
    assert_eq!(scan.samples.len(), span.len());
    assert!(scan.samples[0].keyframe);
    assert_eq!(
        row.bytes,
        Some(std::fs::metadata(&path).unwrap().len() as i64),
        "index row matches the file"
    );
    assert!((scan.duration().as_millis() as i64 - row.duration_ms.unwrap()).abs() <= 100);
    assert!(
        dir.path().join(row.thumbnail.unwrap_or_default()).is_file() || row.path.ends_with(".mp4")
    );
    ffprobe_ok(&path);
}

async fn start_recorder(
    rig: &Rig,
    index: &Index,
    data: &Path,
    stop: &CancellationToken,
) -> (recorder::RecorderHandle, tokio::task::JoinHandle<()>) {
    let rolls = (
        Duration::from_secs_f64(PRE_ROLL),
        Duration::from_secs_f64(POST_ROLL),
    );
    support::spawn_recorder(rig, index, data, stop, rolls, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_restart_mid_event_continues_in_a_new_clip() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let spec = template::load(&camera).unwrap();
    // The camera stream ends every 45 frames (3 s) and the pipeline is rebuilt.
    let text = spec
        .text
        .replacen("is-live=true", "is-live=true num-buffers=45", 1);
    let rig = Rig::start(edgecam::capture::PipelineSpec { text, ..spec }, &camera);
    let stop = CancellationToken::new();
    let (recorder, task) = start_recorder(&rig, &index, dir.path(), &stop).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let record = RecorderCommand::Record(Record::Start {
        duration_s: Some(4.0),
        label: "restart".into(),
    });
    let reply = recorder.execute(TriggerKind::Http, record).await.unwrap();
    let event_id = serde_json::to_value(reply).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.cancel();
    task.await.unwrap();
    rig.stop().await;

    let clips: Vec<_> = index
        .clips(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.event_id == event_id)
        .collect();
    assert!(clips.len() >= 2, "a new clip after the restart: {clips:?}");
    for c in &clips {
        assert_eq!(c.status, ClipStatus::Complete, "{c:?}");
        ffprobe_ok(&dir.path().join(&c.path));
    }
    let frames: i64 = clips.iter().map(|c| c.frame_count.unwrap()).sum();
    assert!(
        frames >= 75,
        "about 5 s of video across the clips, got {frames} frames"
    );
}

fn ffprobe_ok(path: &Path) {
    support::ffprobe_frames(path);
}

#[tokio::test]
async fn retention_deletes_the_oldest_and_keeps_the_open_clip() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    let base = Utc::now() - chrono::Duration::hours(5);
    let event = edgecam::events::EventInfo {
        id: "e".into(),
        label: "x".into(),
        trigger: TriggerKind::Motion,
        score: 1.0,
        started_at: base,
        ended_at: Some(base),
        clip_ids: vec![],
        labels: Default::default(),
        zones: Default::default(),
    };
    index.upsert_event(&event).await.unwrap();
    for i in 0..5 {
        let id = format!("c{i}");
        let rel = format!("clips/{id}.mp4");
        std::fs::create_dir_all(dir.path().join("clips")).unwrap();
        std::fs::write(dir.path().join(&rel), vec![0u8; 1000]).unwrap();
        let at = base + chrono::Duration::minutes(i);
        index.insert_clip(&id, "e", &rel, at, at).await.unwrap();
        if i < 4 {
            let stats = ClipStats {
                start_at: at,
                end_at: at,
                duration: Duration::from_secs(1),
                frame_count: 1,
                bytes: 1000,
                width: 2,
                height: 2,
                frames_lost: 0,
            };
            index
                .finish_clip(&id, &rel, ClipStatus::Complete, &stats, None)
                .await
                .unwrap();
        }
    }
    // c4 is still recording. Allow 2.5 kB: c0 and c1 must go.
    let limits = retention::Limits {
        max_bytes: 2500,
        max_age: None,
        min_free_percent: 0.0,
        keep_until_uploaded: true,
    };
    assert_eq!(retention::run_once(&index, dir.path(), limits).await, 2);
    for (id, gone) in [
        ("c0", true),
        ("c1", true),
        ("c2", false),
        ("c3", false),
        ("c4", false),
    ] {
        assert_eq!(
            !dir.path().join(format!("clips/{id}.mp4")).exists(),
            gone,
            "{id}"
        );
        let status = index.clip(id).await.unwrap().status;
        assert_eq!(status == ClipStatus::Deleted, gone, "{id}: {status:?}");
    }
    assert_eq!(
        index.clip("c4").await.unwrap().status,
        ClipStatus::Recording
    );
}

/// Runs `spec`'s analysis frames through the detector for about 3 s; returns how many
/// frames saw motion and how many were scored.
async fn motion_frames(text: String) -> (usize, usize) {
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let spec = edgecam::capture::PipelineSpec {
        path: "test.pipeline".into(),
        text,
    };
    let rig = Rig::start(spec, &camera);
    let mut analysis = rig.analysis.subscribe("motion", 16);
    let mut detector = edgecam::events::MotionDetector::new(MotionSettings::default());
    let (mut moving, mut scored) = (0, 0);
    for _ in 0..15 {
        let a = timeout(Duration::from_secs(5), analysis.recv())
            .await
            .unwrap()
            .unwrap();
        let r = detector.process(&a.data, a.width, a.height, a.stride);
        scored += 1;
        moving += usize::from(r.motion);
    }
    rig.stop().await;
    (moving, scored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_pattern_ball_is_motion_and_a_still_scene_is_not() {
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let ball = template::load(&camera).unwrap().text;
    let (moving, scored) = motion_frames(ball.clone()).await;
    assert!(
        moving >= scored - 2,
        "the moving ball triggers: {moving}/{scored}"
    );
    // The same pipeline with a still picture.
    let still =
        ball.replacen("pattern=ball", "pattern=colors", 1)
            .replacen("name=scene", "name=still", 1);
    assert_ne!(still, ball);
    let (moving, _) = motion_frames(still).await;
    assert_eq!(moving, 0, "a still scene never triggers");
}

/// A finished real clip's bytes (45 frames of the test pattern).
async fn real_clip_bytes(dir: &Path) -> Vec<u8> {
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    let path = dir.join("source.mp4");
    let mut writer = edgecam::recorder::ClipWriter::create(&path, None).unwrap();
    for _ in 0..45 {
        writer
            .push(
                &timeout(Duration::from_secs(10), sub.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            )
            .unwrap();
    }
    rig.stop().await;
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .unwrap()
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_repairs_torn_clips_and_reconciles_files_and_rows() {
    use edgecam::recorder::recovery::{recover, Report};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let index = Index::open(&data.join(INDEX_FILE)).await.unwrap();
    let clip = real_clip_bytes(data).await;
    let torn = &clip[..clip.len() * 6 / 10];
    let day = data.join("clips/2026/11/21");
    std::fs::create_dir_all(&day).unwrap();
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let event = edgecam::events::EventInfo {
        id: "e1".into(),
        label: "motion".into(),
        trigger: TriggerKind::Motion,
        score: 1.0,
        started_at: t0,
        ended_at: None, // the crash left it open
        clip_ids: vec![],
        labels: Default::default(),
        zones: Default::default(),
    };
    index.upsert_event(&event).await.unwrap();

    // A clip being recorded when the power went: a torn .part and its row.
    std::fs::write(day.join("torn.mp4.part"), torn).unwrap();
    index
        .insert_clip("torn", "e1", "clips/2026/11/21/torn.mp4.part", t0, t0)
        .await
        .unwrap();
    // A torn file recovery cannot read (no header): moved aside, never deleted.
    std::fs::write(day.join("mangled.mp4.part"), b"\0\0\0\x10ftypmangled!").unwrap();
    index
        .insert_clip("mangled", "e1", "clips/2026/11/21/mangled.mp4.part", t0, t0)
        .await
        .unwrap();
    // A row whose file is gone.
    index
        .insert_clip("gone", "e1", "clips/2026/11/21/gone.mp4", t0, t0)
        .await
        .unwrap();
    let stats = ClipStats {
        start_at: t0,
        end_at: t0,
        duration: Duration::from_secs(3),
        frame_count: 45,
        bytes: clip.len() as u64,
        width: 320,
        height: 240,
        frames_lost: 0,
    };
    index
        .finish_clip(
            "gone",
            "clips/2026/11/21/gone.mp4",
            ClipStatus::Complete,
            &stats,
            None,
        )
        .await
        .unwrap();
    // Files with no row: a finished clip and a torn one (index lost or restored).
    let orphan_id = "01kaf0000000000000000000zz";
    std::fs::write(day.join(format!("{orphan_id}.mp4")), &clip).unwrap();
    std::fs::write(day.join("strayclip.mp4.part"), torn).unwrap();
    // Garbage that is not a clip at all stays untouched.
    std::fs::write(day.join("junk.mp4"), b"not a clip").unwrap();

    let report = recover(&index, data).await.unwrap();
    assert_eq!(
        report,
        Report {
            recovered: 1,
            completed: 0,
            adopted: 2,
            missing: 2,
            ..Report::default()
        }
    );
    assert!(!day.join("mangled.mp4.part").exists());
    assert_eq!(
        std::fs::read(day.join("mangled.mp4.bad")).unwrap(),
        b"\0\0\0\x10ftypmangled!",
        "the unreadable file is kept, as it was"
    );
    assert_eq!(
        index.clip("mangled").await.unwrap().status,
        ClipStatus::Deleted
    );

    let torn_row = index.clip("torn").await.unwrap();
    assert_eq!(torn_row.status, ClipStatus::Recovered);
    assert_eq!(torn_row.path, "clips/2026/11/21/torn.mp4");
    let scan = fmp4::scan(&day.join("torn.mp4")).unwrap();
    assert!(
        scan.samples.len() >= 10 && scan.samples.len() < 45,
        "{} frames kept",
        scan.samples.len()
    );
    assert_eq!(torn_row.frame_count, Some(scan.samples.len() as i64));
    assert_eq!(
        torn_row.bytes,
        Some(std::fs::metadata(day.join("torn.mp4")).unwrap().len() as i64)
    );
    ffprobe_ok(&day.join("torn.mp4"));

    assert_eq!(
        index.clip("gone").await.unwrap().status,
        ClipStatus::Deleted
    );
    let orphan = index.clip(orphan_id).await.unwrap();
    assert_eq!(
        (orphan.status, orphan.frame_count),
        (ClipStatus::Complete, Some(45))
    );
    assert_eq!(
        orphan.start_at.timestamp_millis(),
        ulid::Ulid::from_string(&orphan_id.to_uppercase())
            .unwrap()
            .timestamp_ms() as i64
    );
    assert_eq!(
        index.clip("strayclip").await.unwrap().status,
        ClipStatus::Recovered
    );
    assert!(day.join("junk.mp4").exists());
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = 'open'")
        .fetch_one(index.pool())
        .await
        .unwrap();
    assert_eq!(open, 0, "events left open by the crash are closed");

    // Running recovery again finds nothing to do.
    assert_eq!(recover(&index, data).await.unwrap(), Report::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_cannot_be_written_is_retried_with_backoff_and_recording_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let index = Index::open(&data.join(INDEX_FILE)).await.unwrap();
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let stop = CancellationToken::new();
    // The clips directory cannot be made (a file is in its way), as on a broken disk.
    std::fs::write(data.join("clips"), b"in the way").unwrap();
    let (handle, task) = start_recorder(&rig, &index, data, &stop).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Utc::now();
    let reply = handle
        .execute(
            TriggerKind::Http,
            RecorderCommand::Record(Record::Start {
                duration_s: Some(8.0),
                label: String::new(),
            }),
        )
        .await
        .unwrap();
    let edgecam::commands::Outcome::Recording { event_id, .. } = reply else {
        panic!("{reply:?}");
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        index.clips(None, None, 10).await.unwrap().is_empty(),
        "no clip while nothing can be written"
    );
    // The disk comes back: the event's recording resumes within the backoff.
    std::fs::remove_file(data.join("clips")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let clips = loop {
        let clips = index.clips(None, None, 10).await.unwrap();
        if !clips.is_empty() || tokio::time::Instant::now() > deadline {
            break clips;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !clips.is_empty(),
        "recording resumed once the disk was back"
    );
    assert_eq!(clips.len(), 1, "one clip, not one per frame");
    assert_eq!(Some(clips[0].event_id.clone()), event_id, "the same event");
    assert!(clips[0].start_at > started + chrono::Duration::seconds(1));
    stop.cancel();
    let _ = timeout(Duration::from_secs(5), task).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_bounds_the_clip_queue_and_writing_resumes_at_a_keyframe() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // One GOP of real frames, repeated: a stream as long as the test needs.
    let camera = small_camera("test-pattern", KEYFRAME_S);
    let rig = Rig::start(template::load(&camera).unwrap(), &camera);
    let mut sub = rig.frames.subscribe("test", 256);
    let mut gop = Vec::new();
    loop {
        let f = timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap();
        if f.keyframe && !gop.is_empty() {
            break;
        }
        if f.keyframe || !gop.is_empty() {
            gop.push(f);
        }
    }
    rig.stop().await;
    let t0 = Utc::now();
    let frame = |i: usize| {
        let mut f = gop[i % gop.len()].clone();
        let step = Duration::from_secs_f64(FRAME_S);
        f.pts = step * i as u32;
        f.captured_at = t0 + chrono::Duration::from_std(step * i as u32).unwrap();
        f
    };

    // The clip's file is a pipe nobody reads: the disk has stalled.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stalled.mp4");
    let part = recorder::clip::part_path(&path);
    let made = std::process::Command::new("mkfifo").arg(&part).status();
    assert!(made.unwrap().success());
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&part)
        .unwrap();
    let mut writer = recorder::ClipWriter::create(&path, None).unwrap();
    let biggest = gop.iter().map(|f| f.data.len() as u64).max().unwrap();
    let mut i = 0;
    while writer.frames_lost() == 0 {
        writer.push(&frame(i)).unwrap();
        i += 1;
        assert!(i < 1_000_000, "the queue never filled");
    }
    for _ in 0..(3 * gop.len()) {
        writer.push(&frame(i)).unwrap();
        i += 1;
    }
    let queued = writer.queued_bytes();
    eprintln!(
        "queue stopped at {queued} bytes after {i} frames, {} lost",
        writer.frames_lost()
    );
    assert!(queued <= recorder::clip::QUEUE_HEADROOM + biggest);

    // The disk comes back: everything queued is written, then new frames from the next
    // keyframe on, and the file decodes without an error.
    let drained = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    while writer.queued_bytes() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = writer.frames_lost();
    // Writing picks up at the next keyframe (the frames before it need the lost ones).
    let to_keyframe = (gop.len() - i % gop.len()) % gop.len();
    for _ in 0..(2 * gop.len()) {
        writer.push(&frame(i)).unwrap();
        i += 1;
    }
    assert_eq!(
        writer.frames_lost() - lost,
        to_keyframe as u64,
        "nothing lost from the keyframe after the disk came back"
    );
    let written = writer.frames();
    // The muxer ends the file; then `finish` opens the pipe to sync it, which waits for
    // a writer: give it one (a pipe cannot be synced, so that step fails, as it may).
    let finishing = tokio::task::spawn_blocking(move || writer.finish());
    let bytes = drained.join().unwrap();
    let mut unblocked = None;
    for _ in 0..500 {
        let w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&part);
        if let Ok(w) = w {
            unblocked = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = finishing.await;
    drop(unblocked);
    let copy = dir.path().join("copy.mp4");
    std::fs::write(&copy, &bytes).unwrap();
    let scan = fmp4::scan(&copy).unwrap();
    assert_eq!(
        scan.samples.len() as u64,
        written,
        "every frame written is in the file"
    );
    support::decodes_silently(&copy);
}
