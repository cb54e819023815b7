//! A real small filesystem filling up during an event: no storm of clip files, the
//! oldest clips make room, recording resumes, and the index and the MQTT outbox (both in
//! SQLite on that disk) keep working: every event's `start` and `end` reaches the broker.
//! A disk held full to the last byte for half a minute: clips are tried again with a
//! growing backoff, failed attempts leave no files, and once the disk frees the index and
//! the files agree.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use edgecam::index::ClipStatus;
use serde_json::Value;

use crate::mqtt::{event_ids, EVENTS, THING};
use crate::support::daemon::Daemon;
use crate::support::http_get;
use crate::support::mosquitto::client_leaf;
use crate::support::small_disk::SmallDisk;

/// The clips the daemon lists (newest first).
fn clips(d: &Daemon) -> Vec<Value> {
    let (status, _, body) = http_get(d.addr, "/api/clips?limit=1000").unwrap();
    assert_eq!(
        status,
        200,
        "the index answers: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn complete(d: &Daemon) -> Vec<Value> {
    clips(d)
        .into_iter()
        .filter(|c| c["status"] == "complete")
        .collect()
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes a file until the disk says it is full.
fn fill(path: &std::path::Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => return written,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return written;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_an_event_evicts_old_clips_and_recording_resumes() {
    let s = crate::mqtt::setup().await;
    let client = client_leaf(&s.pki, THING);
    let mqtt = s.broker.daemon_config(&s.pki, &client, THING, "");
    let events = tokio::task::block_in_place(|| fill_during_an_event(&mqtt));
    let msgs = s
        .observer
        .wait(EVENTS, Duration::from_secs(30), |m| {
            event_ids(m, "end").is_superset(&events)
        })
        .await;
    assert!(
        event_ids(&msgs, "start").is_superset(&events),
        "every start arrived"
    );
    assert!(
        event_ids(&msgs, "end").is_superset(&events),
        "every end arrived"
    );
}

/// Runs the daemon on a small disk through the scenario; returns the events it made.
fn fill_during_an_event(mqtt: &str) -> BTreeSet<String> {
    let disk = SmallDisk::new(8);
    let data = disk.dir().join("data");
    let mut d = Daemon::start_in(tempfile::tempdir().unwrap(), disk.wrapper(), &[], |text| {
        let text = text
            .replace("min_free_percent = 0", "min_free_percent = 10")
            .replace("bitrate_kbps = 500", "bitrate_kbps = 1500");
        let text = with_data_dir(&text, &data.display().to_string());
        format!(
            "{text}\n{mqtt}\n[events]\npre_roll_s = 1\npost_roll_s = 1\nmin_gap_s = 0\n\
                 [motion]\nenabled = false\n"
        )
    });
    let root = disk.path(d.child.id());
    assert!(
        root.join("data").is_dir(),
        "the daemon's data is on the small disk"
    );

    // Three finished clips from before.
    for n in 1..=3 {
        d.command(r#"{"command":"record","duration_s":2}"#);
        wait_for(Duration::from_secs(20), "an old clip", || {
            complete(&d).len() >= n
        });
    }
    let old: Vec<String> = complete(&d)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let oldest = old.last().unwrap().clone();
    let event_of = |c: &Value| c["event_id"].as_str().map(str::to_owned);
    let mut events: BTreeSet<String> = complete(&d).iter().filter_map(event_of).collect();

    // A long event; the disk fills while it records.
    d.command(r#"{"command":"record","duration_s":60}"#);
    std::thread::sleep(Duration::from_secs(2));
    let before: HashSet<String> = clips(&d)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let event = clips(&d)[0]["event_id"].as_str().unwrap().to_owned();
    let filler = root.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the disk with {filled} bytes");

    // Room is made from the oldest clips, and recording of the event goes on.
    wait_for(Duration::from_secs(20), "the oldest clip evicted", || {
        !clips(&d).iter().any(|c| c["id"] == oldest.as_str())
    });
    let left = walk(&root.join("data/clips"));
    assert!(
        !left.iter().any(|p| p.to_string_lossy().contains(&oldest)),
        "the evicted clip's files are gone: {left:?}"
    );
    wait_for(
        Duration::from_secs(30),
        "recording resumed in a new clip",
        || {
            clips(&d).iter().any(|c| {
                c["event_id"] == event.as_str()
                    && !before.contains(c["id"].as_str().unwrap_or_default())
                    && c["status"] == "recording"
            })
        },
    );
    std::fs::remove_file(&filler).unwrap();
    d.command(r#"{"command":"record","action":"stop"}"#);
    wait_for(
        Duration::from_secs(20),
        "the event's clips finished",
        || {
            clips(&d)
                .iter()
                .filter(|c| c["event_id"] == event.as_str())
                .all(|c| c["status"] != "recording")
        },
    );

    // No storm: a handful of clips for the event, not one per frame, and no litter.
    let of_event: Vec<Value> = clips(&d)
        .into_iter()
        .filter(|c| c["event_id"] == event.as_str())
        .collect();
    eprintln!(
        "event clips: {:?}",
        of_event
            .iter()
            .map(|c| (c["status"].clone(), c["frame_count"].clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        (2..=6).contains(&of_event.len()),
        "{} clips for one event",
        of_event.len()
    );
    let files = walk(&root.join("data/clips"));
    let parts = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .count();
    assert_eq!(parts, 0, "no unfinished files left: {files:?}");
    assert!(
        files.len() <= 2 * (old.len() + of_event.len()),
        "files: {files:?}"
    );
    let (status, _, _) = http_get(d.addr, "/healthz").unwrap();
    assert_eq!(status, 200, "the daemon is healthy");
    events.extend(clips(&d).iter().filter_map(event_of));
    assert_eq!(events.len(), 4, "three old events and the long one");
    d.signal("-TERM");
    assert!(d.child.wait().unwrap().success(), "clean shutdown");
    events
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The test config with `storage.data_dir` pointing at `to`.
fn with_data_dir(text: &str, to: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("data_dir = ") {
                format!("data_dir = \"{to}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes to `path` until the disk is full, again and again for `hold`, so that every
/// byte anyone frees is taken back; meanwhile notes every clip file name seen under
/// `clips` (the attempts to open a clip, and what they left).
fn hold_full(path: &Path, clips: &Path, hold: Duration) -> BTreeSet<String> {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < hold {
        while f.write(&chunk).is_ok_and(|n| n > 0) {}
        // The last pages: a byte at a time.
        while f.write(&chunk[..1]).is_ok_and(|n| n > 0) {}
        for p in walk(clips) {
            seen.insert(p.file_name().unwrap().to_string_lossy().into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

/// Where the index and the files disagree: a row that is not deleted must name an
/// existing `.mp4` (and thumbnail), every clip file and thumbnail must be named by such a
/// row, and nothing unfinished or set aside is left.
async fn disagreements(data: &Path) -> Vec<String> {
    let index = edgecam::index::Index::open_read_only(&data.join("index.sqlite3"))
        .await
        .unwrap();
    let mut named = HashSet::new();
    let mut wrong = Vec::new();
    for status in [
        ClipStatus::Recording,
        ClipStatus::Complete,
        ClipStatus::Recovered,
    ] {
        for row in index.clips_with_status(status).await.unwrap() {
            if status == ClipStatus::Recording {
                wrong.push(format!("{} still recording at {}", row.id, row.path));
            }
            for rel in std::iter::once(&row.path).chain(row.thumbnail.as_ref()) {
                if !data.join(rel).exists() {
                    wrong.push(format!("{} names {rel}, which is not there", row.id));
                }
                named.insert(data.join(rel));
            }
        }
    }
    index.close().await;
    for file in walk(&data.join("clips")) {
        if !named.contains(&file) {
            wrong.push(format!("{} is in no row", file.display()));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_held_full_for_30_s_leaves_the_index_and_the_files_in_agreement() {
    let disk = SmallDisk::new(40);
    let data = disk.dir().join("data");
    let mut d = Daemon::start_in(tempfile::tempdir().unwrap(), disk.wrapper(), &[], |text| {
        let text = with_data_dir(&text, &data.display().to_string());
        format!("{text}\n[events]\npre_roll_s = 1\npost_roll_s = 1\n[motion]\nenabled = false\n")
    });
    let root = disk.path(d.child.id());
    d.command(r#"{"command":"record","duration_s":300}"#);
    wait_for(Duration::from_secs(10), "a clip being recorded", || {
        clips(&d).iter().any(|c| c["status"] == "recording")
    });
    let event = clips(&d)[0]["event_id"].as_str().unwrap().to_owned();

    // Another program takes every byte for 30 s, then gives them back.
    let filler = root.join("filler");
    let seen = tokio::task::block_in_place(|| {
        hold_full(&filler, &root.join("data/clips"), Duration::from_secs(30))
    });
    std::fs::remove_file(&filler).unwrap();
    eprintln!("clip files seen while the disk was full: {seen:?}");
    // 1 s doubling to 30 s: about six tries in 30 s, not one every 0.7 s.
    let tried: BTreeSet<&str> = seen.iter().filter_map(|n| n.split('.').next()).collect();
    assert!(tried.len() <= 10, "{} clips tried in 30 s", tried.len());
    assert!(
        !seen.iter().any(|n| n.ends_with(".bad")),
        "an attempt that wrote nothing leaves nothing: {seen:?}"
    );

    // Recording resumes in a new clip, which writes; the event is then stopped and its
    // clips settle.
    let data_on_disk = root.join("data");
    wait_for(
        Duration::from_secs(40),
        "recording resumed in a new clip",
        || {
            clips(&d).iter().any(|c| {
                let id = c["id"].as_str().unwrap_or_default();
                let part = data_on_disk.join(c["path"].as_str().unwrap_or_default());
                c["event_id"] == event.as_str()
                    && c["status"] == "recording"
                    && !seen.contains(&format!("{id}.mp4.part"))
                    && std::fs::metadata(part).is_ok_and(|m| m.len() > 20_000)
            })
        },
    );
    d.command(r#"{"command":"record","action":"stop"}"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut wrong = disagreements(&root.join("data")).await;
    while !wrong.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        wrong = disagreements(&root.join("data")).await;
    }
    assert_eq!(wrong, Vec::<String>::new(), "with the daemon running");
    let recorded: Vec<Value> = complete(&d)
        .into_iter()
        .filter(|c| c["event_id"] == event.as_str() && c["frame_count"].as_u64() > Some(0))
        .collect();
    assert!(!recorded.is_empty(), "the event has its clips");

    d.signal("-TERM");
    assert!(d.child.wait().unwrap().success(), "clean shutdown");
    if disk.survives_the_daemon() {
        assert_eq!(
            disagreements(&data).await,
            Vec::<String>::new(),
            "after a clean stop"
        );
    }
}
