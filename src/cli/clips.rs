//! `edgecam clips list|show|export`: reads the index and clip files directly (the
//! daemon may be running: SQLite in WAL mode allows it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use edgecam::index::{ClipRow, ClipStatus, Index, INDEX_FILE};
use edgecam::media::fmp4;

pub async fn open_index(data_dir: &Path) -> anyhow::Result<Index> {
    let path = data_dir.join(INDEX_FILE);
    if !path.exists() {
        bail!(
            "no index at {}: edgecam has not recorded anything yet (check storage.data_dir)",
            path.display()
        );
    }
    // Read-only: only the daemon migrates and writes the index.
    Index::open_read_only(&path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Parses `--since`: RFC 3339, a date `YYYY-MM-DD` (UTC), or an age like `90m`, `6h`, `2d`.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| {
        anyhow::anyhow!("--since {s:?}: use 2026-11-21, an RFC 3339 time, or 30m / 6h / 2d")
    })?;
    let age = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => bail!("--since {s:?}: the unit must be m, h or d"),
    };
    Ok(now - age)
}

fn size(bytes: Option<i64>) -> String {
    let b = bytes.unwrap_or(0) as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

fn duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

/// The event's label, and the objects seen in it with their best scores.
fn labels(r: &ClipRow) -> String {
    let objects: Vec<String> = r
        .labels
        .iter()
        .filter(|(l, _)| **l != r.label)
        .map(|(l, s)| format!("{l} {s:.2}"))
        .collect();
    match (r.labels.get(&r.label), objects.is_empty()) {
        (Some(s), true) => format!("{} {s:.2}", r.label),
        (Some(s), false) => format!("{} {s:.2}, {}", r.label, objects.join(", ")),
        (None, true) => r.label.clone(),
        (None, false) => format!("{} ({})", r.label, objects.join(", ")),
    }
}

/// The `clips list` table.
pub fn table(rows: &[ClipRow]) -> String {
    let mut out = format!(
        "{:<26}  {:<20}  {:>9}  {:>8}  {:<9}  {}\n",
        "ID", "START (UTC)", "DURATION", "SIZE", "STATUS", "LABEL"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<26}  {:<20}  {:>9}  {:>8}  {:<9}  {}\n",
            r.id,
            r.start_at.format("%Y-%m-%d %H:%M:%S"),
            duration(r.duration_ms),
            size(r.bytes),
            r.status.as_str(),
            labels(r)
        ));
    }
    out
}

pub async fn list(
    data_dir: &Path,
    since: Option<DateTime<Utc>>,
    label: Option<&str>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let index = open_index(data_dir).await?;
    let rows = index.clips(since, label, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no clips");
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

pub async fn show(data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let index = open_index(data_dir).await?;
    let row = index.clip(id).await?;
    println!("{}", serde_json::to_string_pretty(&row)?);
    if row.status == ClipStatus::Deleted {
        return Ok(());
    }
    let path = data_dir.join(&row.path);
    match fmp4::scan(&path) {
        Ok(scan) => {
            println!(
                "file: {} ({} bytes, {} fragments{})",
                path.display(),
                scan.file_len,
                scan.fragments,
                if scan.finished { "" } else { ", not finished" }
            );
            println!(
                "video: H.264 {}x{}, {} frames, {} keyframes, {:.2} s",
                scan.width,
                scan.height,
                scan.samples.len(),
                scan.keyframes(),
                scan.duration().as_secs_f64(),
            );
            match &scan.audio {
                Some(a) => println!(
                    "audio: AAC {} Hz, {} channel(s), {} frames, {:.2} s from {:.3} s",
                    a.rate,
                    a.channels,
                    a.samples.len(),
                    a.duration().as_secs_f64(),
                    a.start().as_secs_f64(),
                ),
                None => println!("audio: none"),
            }
        }
        Err(e) => println!("file: {}: {e}", path.display()),
    }
    Ok(())
}

pub async fn export(data_dir: &Path, id: &str, out: &Path) -> anyhow::Result<()> {
    let index = open_index(data_dir).await?;
    let row = index.clip(id).await?;
    match row.status {
        ClipStatus::Deleted => bail!("clip {id} was deleted"),
        ClipStatus::Recording => {
            bail!("clip {id} is still being recorded; try again when it has ended")
        }
        _ => {}
    }
    let src: PathBuf = data_dir.join(&row.path);
    let out = out.to_owned();
    tokio::task::spawn_blocking(move || copy_with_progress(&src, &out)).await??;
    Ok(())
}

fn copy_with_progress(src: &Path, out: &Path) -> anyhow::Result<()> {
    let mut input =
        std::fs::File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let len = input.metadata()?.len();
    let tmp = out.with_extension("mp4.tmp");
    let mut output =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let bar = indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    output.sync_all()?;
    std::fs::rename(&tmp, out)?;
    bar.finish_and_clear();
    eprintln!("exported {} ({} bytes)", out.display(), len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_accepts_dates_times_and_ages() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        assert_eq!(
            parse_since("2026-11-20", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("6h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-21T10:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5y", now).is_err());
    }
}
