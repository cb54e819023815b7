//! Schema upgrades that cannot lose the index: before the daemon applies a migration to
//! an index written by an older edgecam, it copies the index aside as
//! `index.sqlite3.bak-<old version>` (a consistent copy, WAL included), and keeps only
//! the newest such copy. A fresh index needs no copy.

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::SqlitePool;
use tracing::{info, warn};

/// Why the index could not be brought to this edgecam's schema.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("could not copy the index to {path} before upgrading it ({error}): free some space and start again")]
    Backup { path: String, error: String },
    #[error("index schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The migrations this edgecam applies (`migrations/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The schema version this edgecam writes.
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The schema version the database is at (0 for a new one).
pub async fn version(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Where the copy of an index at `version` is kept.
pub fn backup_path(index: &Path, version: i64) -> PathBuf {
    let mut name = index.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".bak-{version}"));
    index.with_file_name(name)
}

/// Brings the index at `path` to the latest schema, copying it aside first when it holds
/// an older one.
pub async fn upgrade(pool: &SqlitePool, path: &Path) -> Result<(), UpgradeError> {
    let found = version(pool).await;
    let latest = latest_version();
    if found > 0 && found < latest {
        let backup = backup_path(path, found);
        copy_aside(pool, &backup).await?;
        info!(from = found, to = latest, backup = %backup.display(), "upgrading the index; the old one is kept");
        forget_older_backups(path, &backup);
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// A consistent copy of the whole database (`VACUUM INTO`), replacing an earlier copy of
/// the same version.
async fn copy_aside(pool: &SqlitePool, backup: &Path) -> Result<(), UpgradeError> {
    let _ = std::fs::remove_file(backup);
    let target = backup.to_string_lossy().into_owned();
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(&target)
        .execute(pool)
        .await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(backup);
        return Err(UpgradeError::Backup {
            path: target,
            error: e.to_string(),
        });
    }
    Ok(())
}

/// Removes copies of older versions: the newest copy is the one worth keeping.
fn forget_older_backups(index: &Path, keep: &Path) {
    let (Some(dir), Some(name)) = (index.parent(), index.file_name()) else {
        return;
    };
    let prefix = format!("{}.bak-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .file_name()
            .to_string_lossy()
            .strip_prefix(&prefix)
            .is_some_and(|v| v.parse::<i64>().is_ok());
        if old && path.file_name() != keep.file_name() {
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "could not remove an old index copy");
            }
        }
    }
}
