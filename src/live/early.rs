//! ICE candidates that arrive before their offer (KVS and browsers trickle them early),
//! kept `EARLY_CANDIDATE_TTL` per client and bounded per client and in total, in count
//! and bytes, so a flood of candidates for made-up clients cannot grow memory. Pure: the
//! time is an input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::message::Candidate;

/// Candidates that arrive before their offer are kept this long.
pub const EARLY_CANDIDATE_TTL: Duration = Duration::from_secs(20);
const PER_CLIENT: usize = 64;
/// All clients together.
const TOTAL: usize = 1024;
const TOTAL_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct EarlyCandidates {
    by_client: HashMap<String, Vec<(Instant, Candidate)>>,
    count: usize,
    bytes: usize,
}

fn size(c: &Candidate) -> usize {
    c.candidate.len()
        + c.sdp_mid.as_ref().map_or(0, String::len)
        + c.username_fragment.as_ref().map_or(0, String::len)
}

impl EarlyCandidates {
    /// Keeps `c` for `client`; false when a bound is reached (the candidate is dropped).
    pub fn push(&mut self, client: String, c: Candidate, now: Instant) -> bool {
        let bytes = size(&c);
        if self.count >= TOTAL || self.bytes + bytes > TOTAL_BYTES {
            self.expire(now);
            if self.count >= TOTAL || self.bytes + bytes > TOTAL_BYTES {
                return false;
            }
        }
        let queue = self.by_client.entry(client).or_default();
        if queue.len() >= PER_CLIENT {
            return false;
        }
        queue.push((now, c));
        self.count += 1;
        self.bytes += bytes;
        true
    }

    /// The client's candidates, in arrival order, removed.
    pub fn take(&mut self, client: &str) -> Vec<Candidate> {
        let queue = self.by_client.remove(client).unwrap_or_default();
        self.count -= queue.len();
        self.bytes -= queue.iter().map(|(_, c)| size(c)).sum::<usize>();
        queue.into_iter().map(|(_, c)| c).collect()
    }

    /// Drops candidates older than `EARLY_CANDIDATE_TTL`.
    pub fn expire(&mut self, now: Instant) {
        let (mut count, mut bytes) = (0, 0);
        self.by_client.retain(|_, q| {
            q.retain(|(t, _)| now.duration_since(*t) < EARLY_CANDIDATE_TTL);
            count += q.len();
            bytes += q.iter().map(|(_, c)| size(c)).sum::<usize>();
            !q.is_empty()
        });
        (self.count, self.bytes) = (count, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(n: usize) -> Candidate {
        Candidate {
            candidate: format!("candidate:{n} 1 udp 2122260223 192.0.2.1 {n} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        }
    }

    #[test]
    fn candidates_wait_for_their_offer_then_expire() {
        let t0 = Instant::now();
        let mut e = EarlyCandidates::default();
        assert!(e.push("a".into(), cand(1), t0));
        assert!(e.push("a".into(), cand(2), t0));
        assert_eq!(e.take("a").len(), 2);
        assert!(e.take("a").is_empty());
        e.push("b".into(), cand(3), t0);
        e.expire(t0 + EARLY_CANDIDATE_TTL);
        assert!(e.take("b").is_empty());
        assert_eq!((e.count, e.bytes), (0, 0));
    }

    #[test]
    fn a_flood_for_made_up_clients_is_bounded() {
        let t0 = Instant::now();
        let mut e = EarlyCandidates::default();
        for i in 0..100 {
            e.push("one".into(), cand(i), t0);
        }
        assert_eq!(e.take("one").len(), PER_CLIENT);
        let kept = (0..10_000)
            .filter(|i| e.push(format!("c{i}"), cand(*i), t0))
            .count();
        assert!(
            kept <= TOTAL && e.bytes <= TOTAL_BYTES,
            "{kept} kept, {} bytes",
            e.bytes
        );
        // Once they expire, there is room again.
        assert!(e.push("late".into(), cand(1), t0 + EARLY_CANDIDATE_TTL));
    }
}
