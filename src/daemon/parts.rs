//! The daemon's long-lived parts as one list: each started with a stop token of its own,
//! all stopped in the reverse of the order they started, each waited for before the next
//! is told to stop.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

struct Part {
    name: &'static str,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The running parts, in start order.
#[derive(Default)]
pub struct Parts {
    root: CancellationToken,
    started: Vec<Part>,
}

impl Parts {
    /// Starts a part: `start` gets the part's stop token and returns what others reach
    /// it by (a handle, or nothing) and its tasks.
    pub fn start<F, T>(&mut self, name: &'static str, start: F) -> T
    where
        F: FnOnce(CancellationToken) -> (T, Vec<JoinHandle<()>>),
    {
        let stop = self.root.child_token();
        let (value, tasks) = start(stop.clone());
        debug!(part = name, tasks = tasks.len(), "started");
        self.started.push(Part { name, stop, tasks });
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
        debug!(part = name, tasks = tasks.len(), "started");
        self.started.push(Part { name, stop, tasks });
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
