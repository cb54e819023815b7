//! Each event's picture. An event that motion or a command opened gets the snapshot of
//! its start; one the detector opened gets the snapshot nearest the moment its object
//! was seen best, with the boxes of the objects that matter drawn on it, and a better
//! sighting later replaces it. The picture becomes the thumbnail of the event's open
//! clips (`/api/clips/{id}.jpg`) and is published as a `BestShot` watch, which the MQTT
//! session sends on the snapshot topic.
//!
//! `Choice` decides (pure); a task of its own waits for the snapshot, draws the boxes
//! and writes the files, so the recorder never waits for a picture.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::events::{Rect, Trigger};
use crate::media::Snapshot;

/// A later sighting replaces the picture only when its score is this much better…
const BETTER_BY: f32 = 0.05;
/// …and this long after the last one: a notification is not sent five times a second.
const MIN_GAP: Duration = Duration::from_secs(2);
/// Pictures waiting to be drawn; more are skipped (a better one comes later).
const JOB_QUEUE: usize = 2;
/// Snapshots come once a second: one within this much of the moment will do.
const NEAR: Duration = Duration::from_millis(500);
/// How long to wait for a snapshot that near before taking the newest there is.
const SNAPSHOT_WAIT: Duration = Duration::from_millis(1500);

/// An event's picture, as the MQTT session publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BestShot {
    pub event_id: String,
    /// The label of the object that earned it (empty for a motion or command event).
    pub label: String,
    pub score: f32,
    /// When the snapshot was taken.
    pub captured_at: DateTime<Utc>,
    pub jpeg: Bytes,
}

/// Which sightings are worth a new picture (pure: time comes in).
#[derive(Debug, Default)]
struct Choice {
    event: Option<String>,
    best: f32,
    taken_at: Option<Instant>,
}

impl Choice {
    /// Whether a sighting of `score` in `event_id` at `now` earns the event a picture.
    fn offer(&mut self, event_id: &str, score: f32, now: Instant) -> bool {
        let same = self.event.as_deref() == Some(event_id);
        let take = !same
            || (score >= self.best + BETTER_BY
                && self
                    .taken_at
                    .is_none_or(|t| now.duration_since(t) >= MIN_GAP));
        if take {
            self.event = Some(event_id.to_owned());
            self.best = score;
            self.taken_at = Some(now);
        }
        take
    }
}

/// One picture to make.
#[derive(Debug)]
struct Job {
    event_id: String,
    label: String,
    score: f32,
    /// Drawn on the picture (none: the snapshot as it is).
    boxes: Vec<Rect>,
    /// The moment the picture should show.
    at: DateTime<Utc>,
    /// The thumbnails it replaces.
    thumbnails: Vec<PathBuf>,
}

/// What the recorder holds: the choice and the way to the drawing task.
#[derive(Debug)]
pub(super) struct Shots {
    choice: Choice,
    jobs: mpsc::Sender<Job>,
}

impl Shots {
    /// Starts the drawing task, which reads `snapshot` and publishes on `out`.
    pub fn spawn(
        snapshot: watch::Receiver<Option<Snapshot>>,
        out: watch::Sender<Option<BestShot>>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(JOB_QUEUE);
        tokio::spawn(draw(rx, snapshot, out));
        Self {
            choice: Choice::default(),
            jobs,
        }
    }

    /// An event that no object opened: its picture is the snapshot at `at`.
    pub fn plain(&mut self, event_id: &str, at: DateTime<Utc>, now: Instant) {
        if self.choice.offer(event_id, 0.0, now) {
            self.send(Job {
                event_id: event_id.to_owned(),
                label: String::new(),
                score: 0.0,
                boxes: Vec::new(),
                at,
                thumbnails: Vec::new(),
            });
        }
    }

    /// Objects that matter were `seen` in `event_id` in the picture of `at` (each as its
    /// trigger and box). A better sighting than the event had replaces its picture and
    /// `thumbnails`, with every box drawn.
    pub fn sighting(
        &mut self,
        event_id: &str,
        seen: &[(Trigger, Rect)],
        at: DateTime<Utc>,
        thumbnails: Vec<PathBuf>,
        now: Instant,
    ) {
        let best = seen.iter().map(|(t, _)| t);
        let Some(best) = best.max_by(|a, b| a.score.total_cmp(&b.score)) else {
            return;
        };
        if self.choice.offer(event_id, best.score, now) {
            self.send(Job {
                event_id: event_id.to_owned(),
                label: best.label.clone(),
                score: best.score,
                boxes: seen.iter().map(|(_, r)| *r).collect(),
                at,
                thumbnails,
            });
        }
    }

    fn send(&self, job: Job) {
        if self.jobs.try_send(job).is_err() {
            debug!("event pictures are behind; this one is skipped");
        }
    }
}

/// The drawing task: one picture at a time, until the recorder goes.
async fn draw(
    mut jobs: mpsc::Receiver<Job>,
    mut snapshot: watch::Receiver<Option<Snapshot>>,
    out: watch::Sender<Option<BestShot>>,
) {
    while let Some(job) = jobs.recv().await {
        let Some(snap) = near(&mut snapshot, job.at, SNAPSHOT_WAIT).await else {
            debug!(event_id = %job.event_id, "no snapshot for the event's picture");
            continue;
        };
        let jpeg = if job.boxes.is_empty() {
            snap.jpeg.clone()
        } else {
            let (jpeg, boxes) = (snap.jpeg.clone(), job.boxes.clone());
            let drawn =
                tokio::task::spawn_blocking(move || crate::media::jpeg::annotate(&jpeg, &boxes))
                    .await;
            match drawn {
                Ok(Ok(j)) => Bytes::from(j),
                Ok(Err(e)) => {
                    warn!(event_id = %job.event_id, error = %e, "could not draw on the event's picture");
                    continue;
                }
                Err(_) => continue,
            }
        };
        for path in &job.thumbnails {
            replace(path, &jpeg).await;
        }
        out.send_replace(Some(BestShot {
            event_id: job.event_id,
            label: job.label,
            score: job.score,
            captured_at: snap.captured_at,
            jpeg,
        }));
    }
}

/// The snapshot nearest `at`: the newest if it is near enough, else the next one, or
/// the newest after waiting `wait` for it.
async fn near(
    snapshot: &mut watch::Receiver<Option<Snapshot>>,
    at: DateTime<Utc>,
    wait: Duration,
) -> Option<Snapshot> {
    let near = chrono::Duration::from_std(NEAR).unwrap_or_default();
    let good = |s: &Option<Snapshot>| s.as_ref().is_some_and(|s| s.captured_at >= at - near);
    let found = match tokio::time::timeout(wait, snapshot.wait_for(good)).await {
        Ok(Ok(s)) => s.clone(),
        _ => None,
    };
    found.or_else(|| snapshot.borrow().clone())
}

/// Writes a thumbnail anew (to a new file, then renamed over the old one, so a reader
/// never sees half a picture). One that no longer exists (its clip was deleted) stays
/// gone.
async fn replace(path: &PathBuf, jpeg: &[u8]) {
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        return;
    }
    let tmp = path.with_extension("jpg.new");
    let written = match tokio::fs::write(&tmp, jpeg).await {
        Ok(()) => tokio::fs::rename(&tmp, path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        warn!(path = %path.display(), error = %e, "could not replace the clip's thumbnail");
        let _ = tokio::fs::remove_file(&tmp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_event_always_gets_a_picture_and_a_better_sighting_replaces_it_at_most_every_two_seconds(
    ) {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Choice::default();
        assert!(c.offer("a", 0.40, s(0)), "first sighting");
        assert!(!c.offer("a", 0.40, s(3000)), "no better");
        assert!(!c.offer("a", 0.43, s(3000)), "hardly better");
        assert!(!c.offer("a", 0.90, s(1000)), "too soon");
        assert!(c.offer("a", 0.90, s(3000)), "better, later");
        assert!(!c.offer("a", 0.95, s(4000)), "too soon again");
        assert!(c.offer("b", 0.30, s(4000)), "a new event starts afresh");
        assert!(c.offer("a", 0.10, s(4100)), "another event again");
    }

    #[tokio::test]
    async fn the_picture_is_the_snapshot_nearest_the_moment() {
        let at = Utc::now();
        let snap = |ms: i64, b: &'static [u8]| {
            Some(Snapshot {
                jpeg: Bytes::from_static(b),
                captured_at: at + chrono::Duration::milliseconds(ms),
            })
        };
        // The newest is near enough: taken at once.
        let (_tx, mut rx) = watch::channel(snap(-300, b"near"));
        assert_eq!(near(&mut rx, at, SNAPSHOT_WAIT).await.unwrap().jpeg, "near");
        // Too old: the next one is waited for.
        let (tx, mut rx) = watch::channel(snap(-900, b"old"));
        let next = tokio::spawn(async move { near(&mut rx, at, Duration::from_secs(10)).await });
        tx.send_replace(snap(100, b"next"));
        assert_eq!(next.await.unwrap().unwrap().jpeg, "next");
    }

    #[tokio::test]
    async fn without_a_newer_snapshot_the_newest_there_is_will_do() {
        let wait = Duration::from_millis(20);
        let at = Utc::now();
        let old = Snapshot {
            jpeg: Bytes::from_static(b"old"),
            captured_at: at - chrono::Duration::seconds(5),
        };
        let (_tx, mut rx) = watch::channel(Some(old));
        assert_eq!(near(&mut rx, at, wait).await.unwrap().jpeg, "old");
        let (_tx, mut none) = watch::channel(None);
        assert!(near(&mut none, at, wait).await.is_none());
    }
}
