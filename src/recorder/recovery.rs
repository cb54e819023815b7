//! Start-up recovery: clips torn by a crash or power cut are cut back to their last
//! complete fragment, renamed and marked `recovered`; files and index rows that lost
//! each other are reconciled (thumbnails too). Runs before the recorder starts; one clip
//! it cannot fix (the index refuses a write) does not stop it fixing the others.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use tracing::{info, warn};

use super::clip;
use crate::index::{ClipRow, ClipStats, ClipStatus, Index, IndexError};
use crate::media::fmp4::{self, Scan};

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Torn clips repaired.
    pub recovered: usize,
    /// Finished files whose row was never updated.
    pub completed: usize,
    /// Files on disk with no row, now indexed.
    pub adopted: usize,
    /// Rows whose file is gone (or held no complete fragment), marked deleted.
    pub missing: usize,
    /// Thumbnails given back to their clip's row, and those of no clip removed.
    pub thumbnails: usize,
    /// Clips the index would not take a write for (tried again at the next start).
    pub failed: usize,
}

/// Where a clip file recovery cannot use is moved: `<id>.mp4.part` → `<id>.mp4.bad`.
/// Never deleted (someone may want to look at it, or a better tool may read it), never
/// scanned again.
pub fn bad_path(part: &Path) -> PathBuf {
    clip::final_path(part).with_extension("mp4.bad")
}

/// What to do with a `.part` whose bytes do not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unreadable {
    /// Found at start-up (after a crash): move it aside as `.bad`.
    MoveAside,
    /// A clip the recorder failed to write just now: nothing in it is worth keeping.
    Remove,
}

/// Cuts a `.part` file back to its complete fragments, syncs it and renames it. `None`
/// when not even one fragment survived: a file that holds no frame at all (an attempt
/// that wrote nothing) is removed, one whose bytes do not parse goes as `unreadable`
/// says.
fn repair(part: &Path, unreadable: Unreadable) -> Result<Option<(PathBuf, Scan)>, fmp4::Fmp4Error> {
    let scan = match fmp4::scan(part) {
        Ok(s) if !s.samples.is_empty() => s,
        Ok(_) => {
            std::fs::remove_file(part)?;
            return Ok(None);
        }
        Err(fmp4::Fmp4Error::Format(_)) if std::fs::metadata(part)?.len() == 0 => {
            std::fs::remove_file(part)?;
            return Ok(None);
        }
        Err(fmp4::Fmp4Error::Format(_)) => {
            match unreadable {
                Unreadable::MoveAside => std::fs::rename(part, bad_path(part))?,
                Unreadable::Remove => std::fs::remove_file(part)?,
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let f = OpenOptions::new().write(true).open(part)?;
    if scan.valid_len < scan.file_len {
        f.set_len(scan.valid_len)?;
    }
    f.sync_all()?;
    let done = clip::final_path(part);
    std::fs::rename(part, &done)?;
    if let Some(dir) = done.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(Some((done, scan)))
}

fn stats(scan: &Scan, start_at: DateTime<Utc>) -> ClipStats {
    let duration = scan.duration();
    ClipStats {
        start_at,
        end_at: start_at + chrono::Duration::from_std(duration).unwrap_or_default(),
        duration,
        frame_count: scan.samples.len() as u64,
        bytes: scan.valid_len,
        width: scan.width,
        height: scan.height,
        frames_lost: 0,
    }
}

/// `path` relative to the data directory, as the index keeps it.
pub(super) fn rel(data_dir: &Path, path: &Path) -> String {
    path.strip_prefix(data_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The clip id of a `<id>.mp4` or `<id>.mp4.part` file.
fn clip_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let id = name
        .strip_suffix(".mp4.part")
        .or_else(|| name.strip_suffix(".mp4"))?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// When an orphan clip started: its ULID's time, else the file's modification time.
fn orphan_start(id: &str, path: &Path) -> DateTime<Utc> {
    if let Ok(u) = ulid::Ulid::from_string(&id.to_uppercase()) {
        if let Some(t) = Utc.timestamp_millis_opt(u.timestamp_ms() as i64).single() {
            return t;
        }
    }
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::<Utc>::from)
        .unwrap_or_default()
}

/// Every clip file and thumbnail under `dir`, recursively.
fn clip_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            clip_files(&path, out);
        } else if clip_id(&path).is_some() || path.extension().is_some_and(|e| e == "jpg") {
            out.push(path);
        }
    }
}

/// Repairs torn clips and reconciles files with the index.
pub async fn recover(index: &Index, data_dir: &Path) -> Result<Report, IndexError> {
    let mut report = Report::default();
    for row in index.clips_with_status(ClipStatus::Recording).await? {
        let done = recover_row(index, data_dir, &row, &mut report).await;
        failed(done, &row.id, &mut report);
    }
    for status in [ClipStatus::Complete, ClipStatus::Recovered] {
        for row in index.clips_with_status(status).await? {
            if !data_dir.join(&row.path).exists() {
                warn!(clip_id = %row.id, path = %row.path, "clip file is missing; marking it deleted");
                let done = index.set_clip_status(&row.id, ClipStatus::Deleted).await;
                report.missing += usize::from(done.is_ok());
                failed(done, &row.id, &mut report);
            }
        }
    }
    let dir = data_dir.join("clips");
    let files = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        clip_files(&dir, &mut out);
        out
    })
    .await
    .unwrap_or_default();
    let (clips, thumbnails): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|p| p.extension().is_none_or(|e| e != "jpg"));
    for path in clips {
        let Some(id) = clip_id(&path) else { continue };
        if index.clip(&id).await.is_ok() {
            continue;
        }
        let done = adopt(index, data_dir, &id, &path, &mut report).await;
        failed(done, &id, &mut report);
    }
    for path in thumbnails {
        let done = reconcile_thumbnail(index, data_dir, &path, &mut report).await;
        failed(done, &path.display().to_string(), &mut report);
    }
    let closed = index.close_open_events().await?;
    if report != Report::default() || closed > 0 {
        info!(?report, events_closed = closed, "recovery done");
    }
    Ok(report)
}

/// Counts and logs a clip recovery could not fix; the pass goes on with the others.
fn failed(done: Result<(), IndexError>, what: &str, report: &mut Report) {
    if let Err(e) = done {
        warn!(clip = what, error = %e, "could not reconcile the clip; the next start tries again");
        report.failed += 1;
    }
}

/// A thumbnail whose clip row does not name it gets named; one of no clip (or of a
/// deleted one) is removed.
async fn reconcile_thumbnail(
    index: &Index,
    data_dir: &Path,
    path: &Path,
    report: &mut Report,
) -> Result<(), IndexError> {
    let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
        return Ok(());
    };
    match index.clip(id).await {
        Ok(row) if row.status != ClipStatus::Deleted => {
            if row.thumbnail.is_none() {
                index.set_thumbnail(id, &rel(data_dir, path)).await?;
                report.thumbnails += 1;
            }
        }
        Ok(_) | Err(IndexError::NoSuchClip(_)) => {
            if tokio::fs::remove_file(path).await.is_ok() {
                report.thumbnails += 1;
            }
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Repairs one clip whose writer failed while the daemon runs: the file cut back to its
/// complete fragments and renamed, with what it holds; `Some(None)` when it held no
/// complete fragment (it is removed: nothing in it is worth keeping); `None` when it
/// could not be repaired now (it stays `.part`, and the next start tries again).
pub async fn repair_now(
    id: &str,
    part: &Path,
    start_at: DateTime<Utc>,
) -> Option<Option<(PathBuf, ClipStats)>> {
    let owned = part.to_owned();
    match tokio::task::spawn_blocking(move || repair(&owned, Unreadable::Remove)).await {
        Ok(Ok(Some((path, scan)))) => {
            let s = stats(&scan, start_at);
            info!(clip_id = %id, frames = s.frame_count, "clip repaired");
            Some(Some((path, s)))
        }
        Ok(Ok(None)) => {
            warn!(clip_id = %id, "failed clip held no complete fragment; removed");
            Some(None)
        }
        Ok(Err(e)) => {
            warn!(clip_id = %id, error = %e, "failed clip could not be repaired; recovery retries at next start");
            None
        }
        Err(e) => {
            warn!(clip_id = %id, error = %e, "repair task failed");
            None
        }
    }
}

/// The thumbnail beside a clip file, if there is one.
fn thumbnail_of(data_dir: &Path, clip: &Path) -> Option<String> {
    let jpg = clip::final_path(clip).with_extension("jpg");
    jpg.exists().then(|| rel(data_dir, &jpg))
}

async fn recover_row(
    index: &Index,
    data_dir: &Path,
    row: &ClipRow,
    report: &mut Report,
) -> Result<(), IndexError> {
    let part = data_dir.join(&row.path);
    let done = clip::final_path(&part);
    let thumbnail = row
        .thumbnail
        .clone()
        .or_else(|| thumbnail_of(data_dir, &done));
    if part.exists() && part != done {
        let repaired = tokio::task::spawn_blocking(move || repair(&part, Unreadable::MoveAside))
            .await
            .ok();
        match repaired {
            Some(Ok(Some((path, scan)))) => {
                let s = stats(&scan, row.start_at);
                info!(clip_id = %row.id, frames = s.frame_count, duration_s = s.duration.as_secs_f64(), "torn clip recovered");
                index
                    .finish_clip(
                        &row.id,
                        &rel(data_dir, &path),
                        ClipStatus::Recovered,
                        &s,
                        thumbnail.as_deref(),
                    )
                    .await?;
                report.recovered += 1;
                return Ok(());
            }
            Some(Ok(None)) => {
                warn!(clip_id = %row.id, "torn clip held no complete fragment; removed (or moved aside as .bad)")
            }
            Some(Err(e)) => warn!(clip_id = %row.id, error = %e, "torn clip could not be repaired"),
            None => warn!(clip_id = %row.id, "repair task failed"),
        }
    } else if done.exists() {
        let scanned = tokio::task::spawn_blocking({
            let done = done.clone();
            move || fmp4::scan(&done)
        })
        .await
        .ok()
        .and_then(Result::ok);
        if let Some(scan) = scanned {
            index
                .finish_clip(
                    &row.id,
                    &rel(data_dir, &done),
                    ClipStatus::Complete,
                    &stats(&scan, row.start_at),
                    thumbnail.as_deref(),
                )
                .await?;
            report.completed += 1;
            return Ok(());
        }
        warn!(clip_id = %row.id, "finished clip file is unreadable; moved aside as .bad");
        let _ = tokio::fs::rename(&done, bad_path(&done)).await;
    } else {
        warn!(clip_id = %row.id, path = %row.path, "clip being recorded has no file; marking it deleted");
    }
    index.set_clip_status(&row.id, ClipStatus::Deleted).await?;
    report.missing += 1;
    Ok(())
}

/// Indexes a clip file that has no row, under an event of its own.
async fn adopt(
    index: &Index,
    data_dir: &Path,
    id: &str,
    path: &Path,
    report: &mut Report,
) -> Result<(), IndexError> {
    let start = orphan_start(id, path);
    let owned = path.to_owned();
    let torn = path.extension().is_some_and(|e| e == "part");
    let result = tokio::task::spawn_blocking(move || {
        if torn {
            repair(&owned, Unreadable::MoveAside)
        } else {
            fmp4::scan(&owned).map(|s| Some((owned, s)))
        }
    })
    .await;
    let Ok(Ok(Some((file, scan)))) = result else {
        warn!(clip_id = %id, path = %path.display(), "unreadable clip file with no index row; left alone");
        return Ok(());
    };
    let s = stats(&scan, start);
    index.ensure_orphan_event(id, start).await?;
    index
        .insert_clip(id, id, &rel(data_dir, &file), start, Utc::now())
        .await?;
    let status = if torn {
        ClipStatus::Recovered
    } else {
        ClipStatus::Complete
    };
    let thumbnail = thumbnail_of(data_dir, &file);
    index
        .finish_clip(id, &rel(data_dir, &file), status, &s, thumbnail.as_deref())
        .await?;
    warn!(clip_id = %id, path = %file.display(), "clip file had no index row; indexed it");
    report.adopted += 1;
    Ok(())
}
