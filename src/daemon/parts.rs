//! The daemon's long-lived parts as one list: each started with a stop token of its own,
//! all stopped in the reverse of the order they started, each waited for before the next
//! is told to stop. A part's task that ends before it is told to (it panicked, or gave
//! up) is reported by `failure`: the daemon then stops and exits non-zero, so systemd
//! restarts it rather than it running on without that part.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A part whose task ended before it was told to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub part: &'static str,
    /// "panicked: …", "ended" or "was aborted".
    pub how: String,
}

struct Part {
    name: &'static str,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The running parts, in start order.
pub struct Parts {
    root: CancellationToken,
    started: Vec<Part>,
    failures: mpsc::UnboundedSender<Failure>,
    failed: mpsc::UnboundedReceiver<Failure>,
}

impl Default for Parts {
    fn default() -> Self {
        let (failures, failed) = mpsc::unbounded_channel();
        Self {
            root: CancellationToken::default(),
            started: Vec::new(),
            failures,
            failed,
        }
    }
}

/// Watches a part's task: what it ended with, if it ended before `stop`.
fn watch(
    part: &'static str,
    stop: CancellationToken,
    task: JoinHandle<()>,
    failures: mpsc::UnboundedSender<Failure>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let ended = task.await;
        if stop.is_cancelled() {
            return;
        }
        let how = match ended {
            Ok(()) => "ended".to_owned(),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("panicked: {text}")
            }
            Err(_) => "was aborted".to_owned(),
        };
        let _ = failures.send(Failure { part, how });
    })
}

impl Parts {
    /// The first part that ended before it was told to stop (waits for one).
    pub async fn failure(&mut self) -> Failure {
        match self.failed.recv().await {
            Some(f) => f,
            // The list holds a sender itself: this does not happen.
            None => std::future::pending().await,
        }
    }

    fn push(&mut self, name: &'static str, stop: CancellationToken, tasks: Vec<JoinHandle<()>>) {
        let mut tasks: Vec<JoinHandle<()>> = tasks
            .into_iter()
            .map(|t| watch(name, stop.clone(), t, self.failures.clone()))
            .collect();
        if let Some(t) = injected_panic(name) {
            tasks.push(watch(name, stop.clone(), t, self.failures.clone()));
        }
        debug!(part = name, tasks = tasks.len(), "started");
        self.started.push(Part { name, stop, tasks });
    }

    /// Starts a part: `start` gets the part's stop token and returns what others reach
    /// it by (a handle, or nothing) and its tasks.
    pub fn start<F, T>(&mut self, name: &'static str, start: F) -> T
    where
        F: FnOnce(CancellationToken) -> (T, Vec<JoinHandle<()>>),
    {
        let stop = self.root.child_token();
        let (value, tasks) = start(stop.clone());
        self.push(name, stop, tasks);
        value
    }

    /// Like `start`, for a part whose set-up is async and may fail.
    pub async fn try_start<F, Fut, T, E>(&mut self, name: &'static str, start: F) -> Result<T, E>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(T, Vec<JoinHandle<()>>), E>>,
    {
        let stop = self.root.child_token();
        let (value, tasks) = start(stop.clone()).await?;
        self.push(name, stop, tasks);
        Ok(value)
    }

    /// Names in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.started.iter().map(|p| p.name).collect()
    }

    /// Stops the parts last-started first, waiting for each.
    pub async fn stop(mut self) {
        while let Some(part) = self.started.pop() {
            part.stop.cancel();
            for task in part.tasks {
                let _ = task.await;
            }
            debug!(part = part.name, "stopped");
        }
    }
}

/// Debug builds only: `EDGECAM_INJECT_PANIC=<part>` adds a task to that part that panics
/// after a second, so a test can check that the daemon exits non-zero.
#[cfg(debug_assertions)]
fn injected_panic(part: &'static str) -> Option<JoinHandle<()>> {
    let wanted = std::env::var("EDGECAM_INJECT_PANIC").ok()?;
    (wanted == part).then(|| {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            panic!("injected panic in {part} (EDGECAM_INJECT_PANIC)");
        })
    })
}

#[cfg(not(debug_assertions))]
fn injected_panic(_: &'static str) -> Option<JoinHandle<()>> {
    None
}

impl Drop for Parts {
    /// Parts not stopped in order (an exit on a start-up error) are told to stop.
    fn drop(&mut self) {
        self.root.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn parts_stop_in_reverse_order_each_awaited() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut parts = Parts::default();
        for name in ["index", "capture", "recorder", "web"] {
            let log = Arc::clone(&log);
            parts.start(name, move |stop| {
                let task = tokio::spawn(async move {
                    stop.cancelled().await;
                    // A part that takes a while to stop still finishes before the next.
                    tokio::task::yield_now().await;
                    log.lock().unwrap().push(name);
                });
                ((), vec![task])
            });
        }
        assert_eq!(parts.names(), ["index", "capture", "recorder", "web"]);
        parts.stop().await;
        assert_eq!(
            *log.lock().unwrap(),
            ["web", "recorder", "capture", "index"]
        );
    }

    #[tokio::test]
    async fn a_part_that_panics_or_ends_early_is_reported_and_a_stopped_one_is_not() {
        let mut parts = Parts::default();
        parts.start("quiet", |stop| {
            (
                (),
                vec![tokio::spawn(async move { stop.cancelled().await })],
            )
        });
        parts.start("brittle", |_| {
            ((), vec![tokio::spawn(async { panic!("bad input") })])
        });
        let f = parts.failure().await;
        assert_eq!(f.part, "brittle");
        assert_eq!(f.how, "panicked: bad input");
        parts.start("gives_up", |_| ((), vec![tokio::spawn(async {})]));
        assert_eq!(parts.failure().await.how, "ended");
        parts.stop().await; // "quiet" stops when told: no failure
    }

    #[tokio::test]
    async fn dropping_the_list_stops_every_part() {
        let mut parts = Parts::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        parts.start("one", move |stop| {
            let task = tokio::spawn(async move {
                stop.cancelled().await;
                let _ = tx.send(());
            });
            ((), vec![task])
        });
        drop(parts);
        rx.await.unwrap();
    }
}
