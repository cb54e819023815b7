//! Retention: which clips to delete (a pure policy) and the task that applies it.
//!
//! Order: clips past `max_age` go first; then, while clips use more than `max_bytes` or
//! the disk has less than `min_free_percent` free, the oldest go — clips already
//! uploaded before those that exist only here, and clips still waiting for their upload
//! last. With `keep_until_uploaded` (the default) a clip whose upload is pending is kept
//! past its age and the byte limit, and goes only when the disk would otherwise fill. A
//! clip being recorded is never a candidate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::index::{ClipRow, ClipStatus, Index};

/// How often the policy runs.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How often free space is checked; below the minimum the policy runs at once.
pub const DISK_CHECK: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub start_at: DateTime<Utc>,
    pub bytes: u64,
    pub uploaded: bool,
    /// Its upload is pending (not yet, or not all, persisted at KVS).
    pub pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// 0 = no limit.
    pub max_bytes: u64,
    pub max_age: Option<Duration>,
    pub min_free_percent: f64,
    /// Clips waiting for their upload go only when the disk would otherwise fill.
    pub keep_until_uploaded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// The ids to delete, in order. `candidates` may be in any order.
pub fn plan(
    candidates: &[Candidate],
    limits: Limits,
    disk: Option<Disk>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by_key(|c| c.start_at);
    let mut delete: Vec<String> = Vec::new();
    let mut used: u64 = candidates.iter().map(|c| c.bytes).sum();
    let mut free = disk.map(|d| d.free_bytes);
    if let Some(age) = limits
        .max_age
        .and_then(|a| chrono::Duration::from_std(a).ok())
    {
        let kept = |c: &Candidate| c.pending && limits.keep_until_uploaded;
        for c in order.iter().filter(|c| now - c.start_at > age && !kept(c)) {
            delete.push(c.id.clone());
            used = used.saturating_sub(c.bytes);
            free = free.map(|f| f + c.bytes);
        }
    }
    // Uploaded clips first, then those kept only here, then those waiting for their
    // upload; each group oldest first.
    let mut rest: Vec<&Candidate> = order
        .into_iter()
        .filter(|c| !delete.contains(&c.id))
        .collect();
    rest.sort_by_key(|c| (!c.uploaded, c.pending, c.start_at));
    for c in rest {
        let over_bytes = limits.max_bytes > 0 && used > limits.max_bytes;
        let low_disk = match (free, disk) {
            (Some(f), Some(d)) if d.total_bytes > 0 => {
                (f as f64) * 100.0 / (d.total_bytes as f64) < limits.min_free_percent
            }
            _ => false,
        };
        if !over_bytes && !low_disk {
            break;
        }
        if c.pending && limits.keep_until_uploaded && !low_disk {
            continue; // the byte limit alone does not take a clip before its upload
        }
        delete.push(c.id.clone());
        used = used.saturating_sub(c.bytes);
        free = free.map(|f| f + c.bytes);
    }
    delete
}

/// Free and total bytes of the filesystem holding `path`.
pub fn disk_of(path: &Path) -> Option<Disk> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = s.fragment_size() as u64;
    Some(Disk {
        free_bytes: s.blocks_available() as u64 * unit,
        total_bytes: s.blocks() as u64 * unit,
    })
}

fn candidate(row: &ClipRow) -> Candidate {
    Candidate {
        id: row.id.clone(),
        start_at: row.start_at,
        bytes: row.bytes.unwrap_or(0).max(0) as u64,
        uploaded: row.upload_state == "uploaded",
        pending: matches!(row.upload_state.as_str(), "pending" | "uploading"),
    }
}

/// Runs the policy once; returns how many clips were deleted.
pub async fn run_once(index: &Index, data_dir: &Path, limits: Limits) -> usize {
    let mut rows = Vec::new();
    for status in [ClipStatus::Complete, ClipStatus::Recovered] {
        match index.clips_with_status(status).await {
            Ok(r) => rows.extend(r),
            Err(e) => {
                warn!(error = %e, "retention: cannot list clips");
                return 0;
            }
        }
    }
    let candidates: Vec<Candidate> = rows.iter().map(candidate).collect();
    let ids = plan(&candidates, limits, disk_of(data_dir), Utc::now());
    let mut deleted = 0;
    for id in &ids {
        let Some(row) = rows.iter().find(|r| &r.id == id) else {
            continue;
        };
        for rel in std::iter::once(&row.path).chain(row.thumbnail.as_ref()) {
            let path = data_dir.join(rel);
            if let Err(e) = tokio::fs::remove_file(&path).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(clip_id = %id, path = %path.display(), error = %e, "retention: cannot delete");
                }
            }
        }
        match index.set_clip_status(id, ClipStatus::Deleted).await {
            Ok(()) => deleted += 1,
            Err(e) => warn!(clip_id = %id, error = %e, "retention: cannot mark the clip deleted"),
        }
    }
    if deleted > 0 {
        info!(deleted, "retention deleted old clips");
    }
    // Rows of what no longer exists go too, so the index stays bounded.
    match index.prune(Utc::now()).await {
        Ok(p) if p != Default::default() => {
            info!(
                fragments = p.fragments,
                clips = p.clips,
                events = p.events,
                "index pruned"
            )
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "retention: cannot prune the index"),
    }
    deleted
}

/// Whether the disk holding `data_dir` has less free space than the minimum.
fn disk_low(data_dir: &Path, limits: Limits) -> bool {
    disk_of(data_dir).is_some_and(|d| {
        d.total_bytes > 0
            && (d.free_bytes as f64) * 100.0 / (d.total_bytes as f64) < limits.min_free_percent
    })
}

/// Applies the policy every `interval`, and at once when the disk runs low (checked
/// every `DISK_CHECK`) or a clip could not be written (`disk_full`), until cancelled.
pub fn spawn(
    index: Index,
    data_dir: PathBuf,
    limits: Limits,
    interval: Duration,
    disk_full: Arc<Notify>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        let mut disk = tokio::time::interval(DISK_CHECK.min(interval));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => { run_once(&index, &data_dir, limits).await; }
                _ = disk_full.notified() => {
                    info!("a clip could not be written; running retention now");
                    run_once(&index, &data_dir, limits).await;
                }
                _ = disk.tick() => {
                    if disk_low(&data_dir, limits) {
                        run_once(&index, &data_dir, limits).await;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, 12, 0, 0).unwrap()
    }

    fn clip(id: &str, d: u32, bytes: u64, uploaded: bool) -> Candidate {
        Candidate {
            id: id.into(),
            start_at: day(d),
            bytes,
            uploaded,
            pending: false,
        }
    }

    fn waiting(id: &str, d: u32, bytes: u64) -> Candidate {
        Candidate {
            pending: true,
            ..clip(id, d, bytes, false)
        }
    }

    const NONE: Limits = Limits {
        max_bytes: 0,
        max_age: None,
        min_free_percent: 0.0,
        keep_until_uploaded: true,
    };

    #[test]
    fn nothing_to_do_within_limits() {
        let clips = [clip("a", 1, 100, false), clip("b", 2, 100, false)];
        assert!(plan(&clips, NONE, None, day(20)).is_empty());
    }

    #[test]
    fn age_limit_deletes_old_clips() {
        let clips = [
            clip("new", 19, 1, false),
            clip("old", 1, 1, false),
            clip("mid", 10, 1, false),
        ];
        let limits = Limits {
            max_age: Some(Duration::from_secs(7 * 86400)),
            ..NONE
        };
        assert_eq!(plan(&clips, limits, None, day(20)), ["old", "mid"]);
    }

    #[test]
    fn byte_limit_deletes_oldest_first_preferring_uploaded() {
        let clips = [
            clip("a", 1, 100, false),
            clip("b", 2, 100, true),
            clip("c", 3, 100, false),
            clip("d", 4, 100, true),
        ];
        let limits = Limits {
            max_bytes: 250,
            ..NONE
        };
        assert_eq!(plan(&clips, limits, None, day(5)), ["b", "d"]);
        let limits = Limits {
            max_bytes: 50,
            ..NONE
        };
        assert_eq!(plan(&clips, limits, None, day(5)), ["b", "d", "a", "c"]);
    }

    #[test]
    fn low_disk_frees_space_until_the_minimum() {
        let clips = [
            clip("a", 1, 50, false),
            clip("b", 2, 50, false),
            clip("c", 3, 50, false),
        ];
        let limits = Limits {
            min_free_percent: 10.0,
            ..NONE
        };
        let disk = Disk {
            free_bytes: 20,
            total_bytes: 1000,
        };
        // 2% free: deleting a (→7%) and b (→12%) is enough.
        assert_eq!(plan(&clips, limits, Some(disk), day(5)), ["a", "b"]);
    }

    #[test]
    fn a_clip_waiting_for_its_upload_goes_only_when_the_disk_would_fill() {
        let clips = [
            waiting("w1", 1, 100),
            clip("local", 2, 100, false),
            waiting("w2", 3, 100),
        ];
        let old = Limits {
            max_age: Some(Duration::from_secs(86400)),
            max_bytes: 50,
            ..NONE
        };
        // Past its age and over the byte limit: kept while its upload is pending.
        assert_eq!(plan(&clips, old, None, day(10)), ["local"]);
        let anyway = Limits {
            keep_until_uploaded: false,
            ..old
        };
        assert_eq!(plan(&clips, anyway, None, day(10)), ["w1", "local", "w2"]);
        // A disk about to fill takes them too, after every other clip, oldest first.
        let low = Limits {
            min_free_percent: 10.0,
            ..NONE
        };
        let disk = Disk {
            free_bytes: 0,
            total_bytes: 2000,
        };
        assert_eq!(plan(&clips, low, Some(disk), day(10)), ["local", "w1"]);
    }
}
