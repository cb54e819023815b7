//! The outbox window of one MQTT connection, pure: which outbox messages are handed to
//! the client, which packet id each got, and which a PUBACK lets the outbox delete. At
//! most `capacity` outbox messages are unacknowledged at once. No network, no SQL: the
//! session task does what the answers say (in the manner of rumqttc's `MqttState`).
//!
//! A connection starts with an empty window, so after a reconnect every message still in
//! the outbox is sent again, oldest first (QoS 1: a message may arrive twice).

use std::collections::{HashMap, VecDeque};

/// Outbox rows to read and hand over: those after `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    pub after: i64,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    capacity: usize,
    /// Publishes handed to the client whose packet id is not known yet, in order: the
    /// outbox seq, or `None` for a message that is not in the outbox (a reply, discovery).
    awaiting: VecDeque<Option<i64>>,
    /// Packet id → outbox seq of messages waiting for their PUBACK.
    inflight: HashMap<u16, i64>,
    /// Highest outbox seq handed over (or passed over) on this connection.
    sent_upto: i64,
}

impl Window {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            awaiting: VecDeque::new(),
            inflight: HashMap::new(),
            sent_upto: 0,
        }
    }

    /// Outbox messages handed over and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.inflight.len() + self.awaiting.iter().flatten().count()
    }

    /// What to read from the outbox next, or `None` while the window is full.
    pub fn fetch(&self) -> Option<Fetch> {
        let room = self.capacity.saturating_sub(self.outstanding());
        (room > 0).then(|| Fetch {
            after: self.sent_upto,
            limit: u32::try_from(room).unwrap_or(u32::MAX),
        })
    }

    /// Outbox message `seq` was handed to the client.
    pub fn handed(&mut self, seq: i64) {
        self.awaiting.push_back(Some(seq));
        self.sent_upto = self.sent_upto.max(seq);
    }

    /// A message that is not in the outbox was handed to the client.
    pub fn handed_other(&mut self) {
        self.awaiting.push_back(None);
    }

    /// Outbox message `seq` will not be sent (it can never be); read past it.
    pub fn passed_over(&mut self, seq: i64) {
        self.sent_upto = self.sent_upto.max(seq);
    }

    /// The client sent the next handed message with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if let Some(Some(seq)) = self.awaiting.pop_front() {
            self.inflight.insert(pkid, seq);
        }
    }

    /// A PUBACK: the outbox seq it acknowledges, to delete (`None` for a message that
    /// was not in the outbox, or a packet id this connection never used).
    pub fn acked(&mut self, pkid: u16) -> Option<i64> {
        self.inflight.remove(&pkid)
    }

    /// Whether outbox messages are still waiting for a PUBACK (shutdown waits for them).
    pub fn is_draining(&self) -> bool {
        !self.inflight.is_empty() || self.awaiting.iter().any(Option::is_some)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
