//! Recorder benchmarks; prints a table (run with `make bench`).
//!
//! 1. Recorder CPU per second of 1080p30 video (4 Mbit/s H.264 replayed at real time,
//!    no encode): pre-roll only, then with a clip open.
//! 2. RSS of a 10 s pre-roll at 4 Mbit/s.
//! 3. Trigger → clip file open: the `record` command's round trip, which returns after
//!    the `.part` file exists and the pre-roll is in it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use common::{cpu_time, encode_clip, passthrough, rss_bytes};
use edgecam::capture::{self, Heartbeat, Outputs, TaskConfig};
use edgecam::commands::Record;
use edgecam::events::{MotionSettings, TrackerSettings, TriggerKind};
use edgecam::index::{Index, INDEX_FILE};
use edgecam::media::{AnalysisBus, EncodedFrame, FrameBus};
use edgecam::metrics::CaptureCounters;
use edgecam::recorder::{self, PreRoll, RecorderCommand, RecorderConfig, RecorderDeps};
use gstreamer as gst;
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn preroll_rss() -> (f64, f64, usize) {
    // 10 s of 1080p30 at 4 Mbit/s: 14 KB P-frames, 120 KB keyframe every 2 s.
    let before = rss_bytes();
    let mut ring = PreRoll::new(Duration::from_secs(10), 512 << 20);
    let start = Utc::now();
    for i in 0..30 * 60u64 {
        let key = i % 60 == 0;
        let data = Bytes::from(vec![
            (i % 251) as u8;
            if key { 120 * 1024 } else { 14 * 1024 }
        ]);
        ring.push(EncodedFrame {
            data,
            pts: Duration::from_millis(i * 33),
            captured_at: start + chrono::Duration::milliseconds(i as i64 * 33),
            keyframe: key,
            generation: 1,
        });
    }
    let rss = rss_bytes().saturating_sub(before);
    (rss as f64 / 1e6, ring.bytes() as f64 / 1e6, ring.len())
}

fn main() {
    gst::init().unwrap();
    let quick = std::env::args().any(|a| a == "--quick");
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.h264");
    encode_clip(&clip, (window.as_secs() * 2 + 12) as u32);

    let (rss_mb, held_mb, frames) = preroll_rss();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (idle, open, latencies) = rt.block_on(async {
        let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
        let frames = FrameBus::new("frames");
        let outputs = Outputs::new(
            frames.clone(),
            AnalysisBus::new("analysis"),
            CaptureCounters::default(),
            Heartbeat::new(Instant::now()),
        );
        let stop = CancellationToken::new();
        let cfg = RecorderConfig {
            tracker: TrackerSettings {
                min_gap: Duration::ZERO,
                post_roll: Duration::ZERO,
                ..TrackerSettings::default()
            },
            motion: MotionSettings::default(),
            detect: false,
            pre_roll_max_bytes: 64 << 20,
            sight: None,
        };
        let deps = RecorderDeps {
            frames: frames.clone(),
            analysis: outputs.analysis.clone(),
            snapshot: outputs.snapshot.subscribe(),
            index: index.clone(),
            data_dir: dir.path().to_owned(),
            outbox: None,
            feed: None,
            audio: None,
            disk_full: None,
            motion: Default::default(),
            clock: None,
            sight: None,
        };
        let (recorder, task) = recorder::spawn(cfg, deps, stop.clone()).await;
        let task_cfg = TaskConfig {
            fps: 30,
            stall_timeout: Duration::from_secs(10),
        };
        let (_capture, capture_task) =
            capture::spawn(passthrough(&clip), task_cfg, outputs, stop.clone());
        tokio::time::sleep(Duration::from_secs(6)).await; // fill the pre-roll

        let measure = |w: Duration| async move {
            let c0 = cpu_time();
            tokio::time::sleep(w).await;
            (cpu_time() - c0).as_secs_f64() * 1000.0 / w.as_secs_f64()
        };
        let idle = measure(window).await;
        let start = RecorderCommand::Record(Record::Start {
            duration_s: Some(3600.0),
            label: "bench".into(),
        });
        recorder
            .execute(TriggerKind::Http, start.clone())
            .await
            .unwrap();
        let open = measure(window).await;
        recorder
            .execute(TriggerKind::Http, RecorderCommand::Record(Record::Stop))
            .await
            .unwrap();

        let mut latencies = Vec::new();
        for _ in 0..if quick { 5 } else { 20 } {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t = Instant::now();
            recorder
                .execute(TriggerKind::Http, start.clone())
                .await
                .unwrap();
            latencies.push(t.elapsed());
            recorder
                .execute(TriggerKind::Http, RecorderCommand::Record(Record::Stop))
                .await
                .unwrap();
        }
        latencies.sort();
        stop.cancel();
        let _ = task.await;
        let _ = capture_task.await;
        (idle, open, latencies)
    });

    println!(
        "recorder, 1080p30 H.264 at 4 Mbit/s replayed in real time ({} s windows)",
        window.as_secs()
    );
    println!("{:<48} {:>12}", "measure", "value");
    println!(
        "{:<48} {:>9.1} ms",
        "process CPU per second of video, pre-roll only", idle
    );
    println!(
        "{:<48} {:>9.1} ms",
        "process CPU per second of video, clip open", open
    );
    println!(
        "{:<48} {:>9.1} ms",
        "  recorder's clip writing (difference)",
        open - idle
    );
    println!("{:<48} {:>9.1} MB", "RSS added by a 10 s pre-roll", rss_mb);
    println!(
        "{:<48} {:>9.1} MB ({frames} frames)",
        "  frame bytes held", held_mb
    );
    println!(
        "{:<48} {:>9.1} ms p50, {:.1} ms p95, {:.1} ms max",
        "trigger → clip file open (with pre-roll written)",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0
    );

    let (at30, at60) = rt.block_on(index_growth(dir.path()));
    println!(
        "{:<48} {:>9.1} MB after 30 days, {:.1} MB after 60",
        "index, one event a minute, 30-day retention", at30, at60
    );
}

/// The index file (with its WAL) after 30 and 60 simulated days of one event a minute,
/// each with a clip of 10 uploaded fragments, clips deleted at 30 days as retention does
/// and the index pruned every day.
async fn index_growth(dir: &std::path::Path) -> (f64, f64) {
    let path = dir.join("growth.sqlite3");
    let index = Index::open(&path).await.unwrap();
    let day_ms: i64 = 86_400_000;
    let t0 = Utc::now() - chrono::Duration::days(60);
    let size = || {
        ["", "-wal"]
            .iter()
            .map(|s| std::fs::metadata(format!("{}{s}", path.display())).map_or(0, |m| m.len()))
            .sum::<u64>() as f64
            / 1e6
    };
    let mut at30 = 0.0;
    for day in 0..60i64 {
        let mut tx = index.pool().begin().await.unwrap();
        for m in 0..1440i64 {
            let at = t0.timestamp_millis() + day * day_ms + m * 60_000;
            let id = format!("{day:03}-{m:04}");
            sqlx::query(
                "INSERT INTO events (id, label, trigger, score, started_at, ended_at, status, \
                 start_queued, end_queued) VALUES (?1, 'motion', 'motion', 1.5, ?2, ?3, 'ended', 1, 1)",
            )
            .bind(&id)
            .bind(at)
            .bind(at + 20_000)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO clips (id, event_id, path, status, start_at, end_at, duration_ms, \
                 frame_count, bytes, width, height, thumbnail, upload_state, created_at) \
                 VALUES (?1, ?1, 'clips/2026/01/01/' || ?1 || '.mp4', 'complete', ?2, ?3, 20000, \
                 300, 2500000, 1280, 720, 'clips/2026/01/01/' || ?1 || '.jpg', 'uploaded', ?2)",
            )
            .bind(&id)
            .bind(at)
            .bind(at + 20_000)
            .execute(&mut *tx)
            .await
            .unwrap();
            for f in 0..10i64 {
                sqlx::query(
                    "INSERT INTO fragments (clip_id, first_frame, frames, start_at, end_at, state, \
                     fragment_number, persisted_at) VALUES (?1, ?2, 30, ?3, ?4, 'persisted', \
                     '91343852333181432392682062622220590765191907586', ?4)",
                )
                .bind(&id)
                .bind(f * 30)
                .bind(at + f * 2000)
                .bind(at + f * 2000 + 1967)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
        }
        // Retention: clips over 30 days old are deleted.
        let now = t0 + chrono::Duration::days(day + 1);
        sqlx::query("UPDATE clips SET status = 'deleted' WHERE start_at < ?1")
            .bind((now - chrono::Duration::days(30)).timestamp_millis())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        index.prune(now).await.unwrap();
        if day == 29 {
            at30 = size();
        }
    }
    (at30, size())
}
