//! Continuous mode's GOPs on disk (`upload::ring`): each is written as it is cut, read
//! back when memory no longer holds it (after a restart, or a long outage), and deleted
//! once KVS persisted it or it was skipped. Past `continuous_buffer_mb` the oldest go.

use std::collections::HashSet;
use std::path::PathBuf;

use tracing::{error, info, warn};

use super::Task;
use crate::index::FragmentRow;
use crate::upload::gop::Gop;
use crate::upload::ring;

impl Task {
    fn ring_dir(&self) -> PathBuf {
        self.deps.data_dir.join(ring::DIR)
    }

    fn ring_on(&self) -> bool {
        self.cfg.continuous && self.cfg.continuous_buffer_bytes > 0
    }

    /// At start: the GOP files a previous run left.
    pub(super) async fn open_ring(&mut self) {
        if !self.ring_on() {
            return;
        }
        let dir = self.ring_dir();
        self.ring = tokio::task::spawn_blocking(move || ring::scan(&dir))
            .await
            .unwrap_or_default();
        if !self.ring.is_empty() {
            let mb = self.ring.values().sum::<u64>() >> 20;
            info!(
                gops = self.ring.len(),
                mb, "continuous video waiting on disk"
            );
        }
    }

    /// After the backlog is queued: files of fragments no longer pending go.
    pub(super) async fn prune_ring(&mut self) {
        let pending: HashSet<i64> = self
            .units
            .values()
            .flat_map(|u| u.rows.iter().map(|r| r.id))
            .collect();
        let stale: Vec<i64> = self
            .ring
            .keys()
            .copied()
            .filter(|id| !pending.contains(id))
            .collect();
        self.forget_on_disk(&stale).await;
    }

    /// Keeps a GOP just cut on disk, making room by dropping the oldest.
    pub(super) async fn keep_on_disk(&mut self, id: i64, gop: &Gop) {
        if !self.ring_on() {
            return;
        }
        let bytes = ring::encode(gop);
        let size = bytes.len() as u64;
        let dir = self.ring_dir();
        match tokio::task::spawn_blocking(move || ring::write(&dir, id, &bytes)).await {
            Ok(Ok(())) => {
                self.ring.insert(id, size);
            }
            Ok(Err(e)) => warn!(fragment = id, error = %e, "cannot keep continuous video on disk"),
            Err(e) => warn!(fragment = id, error = %e, "cannot keep continuous video on disk"),
        }
        let full = ring::over(&self.ring, self.cfg.continuous_buffer_bytes);
        if full.is_empty() {
            return;
        }
        warn!(
            gops = full.len(),
            "the continuous buffer is full: the oldest video not yet in KVS is dropped"
        );
        for old in &full {
            self.cache.remove(*old);
            if let Err(e) = self.deps.index.fragment_skipped(*old, 0).await {
                error!(fragment = old, error = %e, "uploader: cannot record a skipped fragment");
            }
            if let Some(unit) = self.units.remove(&(*old as u64)) {
                self.machine.forget(*old as u64);
                for r in unit.rows.iter().skip(1) {
                    let _ = self.deps.index.fragment_skipped(r.id, 0).await;
                }
            }
        }
        self.forget_on_disk(&full).await;
    }

    /// Brings GOPs of continuous `rows` that memory no longer holds back from disk.
    pub(super) async fn restore(&mut self, rows: &[FragmentRow]) {
        for r in rows {
            if r.clip_id.is_some() || self.cache.contains(r.id) || !self.ring.contains_key(&r.id) {
                continue;
            }
            let file = ring::path(&self.ring_dir(), r.id);
            let read = tokio::task::spawn_blocking(move || std::fs::read(file)).await;
            match read.map(|r| r.map(|b| ring::decode(&b))) {
                Ok(Ok(Ok(gop))) => self.cache.insert(r.id, gop),
                _ => {
                    warn!(fragment = r.id, "a continuous GOP on disk cannot be read");
                    self.ring.remove(&r.id);
                }
            }
        }
    }

    /// Deletes the files of `ids` (persisted, skipped or dropped).
    pub(super) async fn forget_on_disk(&mut self, ids: &[i64]) {
        let dir = self.ring_dir();
        let gone: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| self.ring.remove(id).is_some())
            .collect();
        if gone.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for id in gone {
                let _ = std::fs::remove_file(ring::path(&dir, id));
            }
        })
        .await;
    }
}
