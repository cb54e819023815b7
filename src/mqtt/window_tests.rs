//! Scenario tests of the outbox window against a simulated outbox, client and broker:
//! each runs in microseconds what the session meets over minutes (outages, reconnects,
//! acknowledgements out of order, a full window).

use std::collections::{BTreeMap, VecDeque};

use super::*;

const WINDOW: usize = 50;

/// An outbox (seq → kind), a client that numbers packets as rumqttc does (1.. on each
/// connection), and a broker that records what it received.
struct Sim {
    outbox: BTreeMap<i64, &'static str>,
    next_seq: i64,
    window: Window,
    /// Handed to the client, not yet written: the outbox seq or `None` (a reply).
    client: VecDeque<Option<i64>>,
    next_pkid: u16,
    /// Written, PUBACK not yet sent: (pkid, seq).
    wire: Vec<(u16, Option<i64>)>,
    /// Outbox seqs the broker received, in order, duplicates included.
    delivered: Vec<i64>,
}

impl Sim {
    fn new() -> Self {
        Self {
            outbox: BTreeMap::new(),
            next_seq: 1,
            window: Window::new(WINDOW),
            client: VecDeque::new(),
            next_pkid: 1,
            wire: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn queue(&mut self, n: usize, kind: &'static str) {
        for _ in 0..n {
            self.outbox.insert(self.next_seq, kind);
            self.next_seq += 1;
        }
    }

    /// What the session does on a wake-up or a PUBACK: read the outbox, hand it over.
    fn top_up(&mut self) {
        while let Some(Fetch { after, limit }) = self.window.fetch() {
            let rows: Vec<i64> = self
                .outbox
                .range(after + 1..)
                .take(limit as usize)
                .map(|(s, _)| *s)
                .collect();
            if rows.is_empty() {
                return;
            }
            for seq in rows {
                self.window.handed(seq);
                self.client.push_back(Some(seq));
            }
        }
    }

    fn reply(&mut self) {
        self.window.handed_other();
        self.client.push_back(None);
    }

    /// The client writes what it was handed; the broker receives it.
    fn flush(&mut self) {
        while let Some(item) = self.client.pop_front() {
            let pkid = self.next_pkid;
            self.next_pkid += 1;
            self.window.sent(pkid);
            self.wire.push((pkid, item));
            if let Some(seq) = item {
                self.delivered.push(seq);
            }
        }
    }

    /// The broker acknowledges packet `pkid`; the session deletes what it confirms.
    fn ack(&mut self, pkid: u16) {
        self.wire.retain(|(p, _)| *p != pkid);
        if let Some(seq) = self.window.acked(pkid) {
            assert!(
                self.outbox.remove(&seq).is_some(),
                "seq {seq} deleted twice"
            );
            self.top_up();
        }
    }

    fn ack_all(&mut self) {
        while let Some(&(pkid, _)) = self.wire.first() {
            self.ack(pkid);
            self.flush();
        }
    }

    /// The connection drops: nothing on the wire is acknowledged; a new connection
    /// starts with a fresh client and window.
    fn reconnect(&mut self) {
        self.wire.clear();
        self.client.clear();
        self.next_pkid = 1;
        self.window = Window::new(WINDOW);
        self.top_up();
        self.flush();
    }
}

#[test]
fn a_full_window_waits_for_an_acknowledgement() {
    let mut s = Sim::new();
    s.queue(80, "update");
    s.top_up();
    s.flush();
    assert_eq!(s.delivered, (1..=50).collect::<Vec<_>>());
    assert_eq!(
        s.window.fetch(),
        None,
        "50 unacknowledged: the window is full"
    );
    s.ack(1);
    s.flush();
    assert_eq!(s.delivered.last(), Some(&51), "one ack makes room for one");
    s.ack_all();
    assert!(s.outbox.is_empty());
    assert_eq!(
        s.delivered,
        (1..=80).collect::<Vec<_>>(),
        "each sent once, in order"
    );
}

#[test]
fn an_outage_resends_what_was_not_acknowledged_oldest_first() {
    let mut s = Sim::new();
    s.queue(60, "update");
    s.top_up();
    s.flush();
    for pkid in 1..=20 {
        s.ack(pkid);
    }
    s.flush();
    // The broker goes away with 40 sent but unacknowledged; 5 more are queued meanwhile.
    s.queue(5, "end");
    let before = s.delivered.len();
    s.reconnect();
    let resent = &s.delivered[before..];
    assert_eq!(resent.first(), Some(&21), "the oldest unacknowledged first");
    assert!(resent.windows(2).all(|w| w[0] < w[1]), "in outbox order");
    s.ack_all();
    assert!(s.outbox.is_empty(), "everything acknowledged in the end");
    let mut seen: Vec<i64> = s.delivered.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=65).collect::<Vec<_>>(), "nothing lost");
}

#[test]
fn after_a_reconnect_packet_ids_start_again_and_map_to_the_new_sends() {
    // With or without a session on the broker, a fresh client numbers from 1 again; a
    // PUBACK must delete the message sent under that id on this connection.
    let mut s = Sim::new();
    s.queue(3, "start");
    s.top_up();
    s.flush();
    s.ack(2); // seq 2 acknowledged
    s.reconnect(); // seq 1 and 3 resent as pkid 1 and 2
    assert_eq!(s.wire, [(1, Some(1)), (2, Some(3))]);
    s.ack(2);
    assert_eq!(s.outbox.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(s.window.acked(7), None, "an id this connection never used");
    s.ack(1);
    assert!(s.outbox.is_empty());
}

#[test]
fn acknowledgements_out_of_order_delete_exactly_their_messages() {
    let mut s = Sim::new();
    s.queue(10, "update");
    s.top_up();
    s.flush();
    for pkid in [7, 2, 9, 1] {
        s.ack(pkid);
    }
    let left: Vec<i64> = s.outbox.keys().copied().collect();
    assert_eq!(left, [3, 4, 5, 6, 8, 10]);
    assert_eq!(s.window.outstanding(), 6);
    assert_eq!(
        s.window.fetch().map(|f| f.after),
        Some(10),
        "no resend on a live connection"
    );
}

#[test]
fn replies_share_the_client_but_not_the_window() {
    let mut s = Sim::new();
    s.queue(2, "start");
    s.reply();
    s.top_up(); // outbox messages handed after the reply
    s.reply();
    s.flush();
    assert_eq!(s.wire, [(1, None), (2, Some(1)), (3, Some(2)), (4, None)]);
    assert_eq!(s.window.outstanding(), 2);
    s.ack(1);
    s.ack(4);
    assert_eq!(s.outbox.len(), 2, "acks of replies delete nothing");
    s.ack(3);
    assert_eq!(s.outbox.keys().copied().collect::<Vec<_>>(), [1]);
}

#[test]
fn a_full_outbox_leaves_gaps_the_window_reads_past() {
    // While the broker was away the outbox dropped its oldest updates (the index's
    // bound): the sequence has gaps, and nothing older than what was sent comes back.
    let mut s = Sim::new();
    s.queue(1, "start");
    s.queue(8, "update");
    s.queue(1, "end");
    for dropped in 2..=6 {
        s.outbox.remove(&dropped);
    }
    s.reconnect();
    assert_eq!(s.delivered, [1, 7, 8, 9, 10]);
    s.ack_all();
    assert!(s.outbox.is_empty());
}

#[test]
fn a_message_passed_over_is_not_read_again() {
    let mut w = Window::new(WINDOW);
    w.passed_over(4);
    assert_eq!(
        w.fetch(),
        Some(Fetch {
            after: 4,
            limit: 50
        })
    );
}

#[test]
fn shutdown_waits_only_for_outbox_messages() {
    let mut w = Window::new(WINDOW);
    w.handed_other();
    assert!(!w.is_draining(), "a reply is not waited for");
    w.handed(1);
    assert!(w.is_draining());
    w.sent(1);
    w.sent(2);
    assert!(w.is_draining());
    assert_eq!(w.acked(2), Some(1));
    assert!(!w.is_draining());
}
