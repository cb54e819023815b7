//! Fan-out of frames to any number of subscribers, each with its own bounded queue.
//!
//! `publish` never waits: a subscriber whose queue is full loses that frame and every
//! frame after it until the next sync point (a keyframe for encoded video), so it always
//! resumes on something it can decode. Its losses are counted under its name; capture and
//! the other subscribers are not affected. A new subscriber starts at the next sync point.
//! `listeners` tells a producer whether anyone subscribes, so work for nobody can stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};

use super::frame::SyncPoint;

/// The publishing side; clone it freely (all clones are the same bus).
pub struct Bus<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> std::fmt::Debug for Bus<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct Inner<T> {
    name: &'static str,
    slots: Mutex<Vec<Slot<T>>>,
    /// Counters by subscriber name, kept after a subscriber leaves so totals never go back.
    known: Mutex<Vec<Arc<SubscriberStats>>>,
    published: AtomicU64,
    sync_points: AtomicU64,
    /// Subscriptions alive now (each decrements it when dropped).
    listeners: Arc<watch::Sender<usize>>,
}

struct Slot<T> {
    tx: mpsc::Sender<T>,
    stats: Arc<SubscriberStats>,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// New: waiting for its first sync point; skipped frames are not losses.
    Starting,
    Live,
    /// Lost a frame; skipping (and counting) until the next sync point.
    Resyncing,
}

/// Counters of one subscriber name.
#[derive(Debug)]
pub struct SubscriberStats {
    name: String,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl SubscriberStats {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A point-in-time copy of a bus's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStats {
    pub published: u64,
    pub sync_points: u64,
    /// Current subscribers.
    pub subscribers: usize,
    /// `(name, delivered, dropped)` for every name that ever subscribed.
    pub per_subscriber: Vec<(String, u64, u64)>,
}

/// The receiving side of one subscriber. Dropping it unsubscribes.
pub struct Subscription<T> {
    rx: mpsc::Receiver<T>,
    stats: Arc<SubscriberStats>,
    listeners: Arc<watch::Sender<usize>>,
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.listeners.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl<T> Subscription<T> {
    /// The next frame, or `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// For subscribers on plain threads (never call inside an async task).
    pub fn blocking_recv(&mut self) -> Option<T> {
        self.rx.blocking_recv()
    }

    pub fn try_recv(&mut self) -> Result<T, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }

    /// Frames this subscriber's name has lost so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }
}

fn lock<U>(m: &Mutex<U>) -> MutexGuard<'_, U> {
    // A panic elsewhere while holding the lock leaves plain data behind: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: SyncPoint + Clone> Bus<T> {
    /// A bus; `name` labels its log lines.
    pub fn new(name: &'static str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                slots: Mutex::new(Vec::new()),
                known: Mutex::new(Vec::new()),
                published: AtomicU64::new(0),
                sync_points: AtomicU64::new(0),
                listeners: Arc::new(watch::Sender::new(0)),
            }),
        }
    }

    /// Adds a subscriber with a queue of `capacity` frames (at least 1).
    pub fn subscribe(&self, name: &str, capacity: usize) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = self.stats_for(name);
        lock(&self.inner.slots).push(Slot {
            tx,
            stats: Arc::clone(&stats),
            state: SlotState::Starting,
        });
        self.inner.listeners.send_modify(|n| *n += 1);
        Subscription {
            rx,
            stats,
            listeners: Arc::clone(&self.inner.listeners),
        }
    }

    /// How many subscriptions are alive, as it changes.
    pub fn listeners(&self) -> watch::Receiver<usize> {
        self.inner.listeners.subscribe()
    }

    fn stats_for(&self, name: &str) -> Arc<SubscriberStats> {
        let mut known = lock(&self.inner.known);
        if let Some(s) = known.iter().find(|s| s.name == name) {
            return Arc::clone(s);
        }
        let s = Arc::new(SubscriberStats {
            name: name.to_owned(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        known.push(Arc::clone(&s));
        s
    }

    /// Hands `frame` to every subscriber that has room; never blocks.
    pub fn publish(&self, frame: T) {
        let sync = frame.is_sync_point();
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        if sync {
            self.inner.sync_points.fetch_add(1, Ordering::Relaxed);
        }
        let mut slots = lock(&self.inner.slots);
        slots.retain_mut(|slot| {
            if slot.state != SlotState::Live && !sync {
                if slot.state == SlotState::Resyncing {
                    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return !slot.tx.is_closed();
            }
            match slot.tx.try_send(frame.clone()) {
                Ok(()) => {
                    slot.state = SlotState::Live;
                    slot.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if slot.state == SlotState::Live {
                        tracing::debug!(bus = self.inner.name, subscriber = %slot.stats.name, "subscriber fell behind; skipping to the next sync point");
                    }
                    slot.state = SlotState::Resyncing;
                    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    pub fn stats(&self) -> BusStats {
        let subscribers = lock(&self.inner.slots).len();
        let per_subscriber = lock(&self.inner.known)
            .iter()
            .map(|s| (s.name.clone(), s.delivered(), s.dropped()))
            .collect();
        BusStats {
            published: self.inner.published.load(Ordering::Relaxed),
            sync_points: self.inner.sync_points.load(Ordering::Relaxed),
            subscribers,
            per_subscriber,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct F(u32, bool);
    impl SyncPoint for F {
        fn is_sync_point(&self) -> bool {
            self.1
        }
    }

    fn drain(sub: &mut Subscription<F>) -> Vec<u32> {
        std::iter::from_fn(|| sub.try_recv().ok())
            .map(|f| f.0)
            .collect()
    }

    /// Frame n is a keyframe every 5 frames.
    fn gop5(n: u32) -> F {
        F(n, n.is_multiple_of(5))
    }

    #[test]
    fn listeners_count_live_subscriptions() {
        let bus: Bus<F> = Bus::new("test");
        let listeners = bus.listeners();
        assert_eq!(*listeners.borrow(), 0);
        let a = bus.subscribe("a", 1);
        let b = bus.subscribe("b", 1);
        assert_eq!(*listeners.borrow(), 2);
        drop(a);
        assert_eq!(*listeners.borrow(), 1);
        drop(b);
        assert_eq!(*listeners.borrow(), 0);
    }

    #[test]
    fn new_subscriber_starts_at_a_sync_point() {
        let bus = Bus::new("test");
        bus.publish(gop5(0));
        bus.publish(gop5(1));
        let mut sub = bus.subscribe("late", 16);
        for n in 2..7 {
            bus.publish(gop5(n));
        }
        assert_eq!(drain(&mut sub), [5, 6]);
        assert_eq!(sub.dropped(), 0, "frames before joining are not losses");
    }

    #[test]
    fn slow_subscriber_loses_its_own_frames_and_resumes_on_a_keyframe() {
        let bus = Bus::new("test");
        let mut fast = bus.subscribe("fast", 4);
        let mut slow = bus.subscribe("slow", 3);
        let mut fast_got = Vec::new();
        for n in 0..12 {
            bus.publish(gop5(n));
            fast_got.extend(drain(&mut fast));
        }
        assert_eq!(fast_got, (0..12).collect::<Vec<_>>());
        // slow took 0,1,2 then its queue was full: 3,4 lost, 5 too (still full), 6..9
        // skipped while resyncing, 10 is a keyframe but the queue is still full.
        assert_eq!(drain(&mut slow), [0, 1, 2]);
        assert_eq!(slow.dropped(), 9);
        for n in 12..17 {
            bus.publish(gop5(n));
        }
        assert_eq!(drain(&mut slow), [15, 16], "resumes at the next keyframe");
        let stats = bus.stats();
        assert_eq!(stats.published, 17);
        assert_eq!(stats.sync_points, 4);
        assert_eq!(stats.per_subscriber[1], ("slow".to_string(), 5, 12));
    }

    #[test]
    fn dropped_subscription_is_removed_and_its_totals_kept() {
        let bus = Bus::new("test");
        let sub = bus.subscribe("viewer", 1);
        bus.publish(gop5(0));
        assert_eq!(bus.stats().subscribers, 1);
        drop(sub);
        bus.publish(gop5(1));
        bus.publish(gop5(5));
        let stats = bus.stats();
        assert_eq!(stats.subscribers, 0);
        assert_eq!(stats.per_subscriber, [("viewer".to_string(), 1, 0)]);
        let again = bus.subscribe("viewer", 1);
        bus.publish(gop5(10));
        assert_eq!(again.stats.delivered(), 2, "same name, same counters");
    }

    #[tokio::test]
    async fn async_receive_works_across_tasks() {
        let bus = Bus::new("test");
        let mut sub = bus.subscribe("task", 8);
        let publisher = bus.clone();
        tokio::spawn(async move {
            for n in 0..5 {
                publisher.publish(gop5(n));
            }
        });
        let mut got = Vec::new();
        while got.len() < 5 {
            got.push(sub.recv().await.unwrap().0);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }
}
