//! Failed credentials per client address: after `MAX_FAILURES` within `WINDOW`, the address
//! waits until the oldest of them is `WINDOW` old (the server answers 429 with
//! Retry-After). Pure: the time is an input.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Wrong credentials an address may send within `WINDOW`.
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (a flood of addresses cannot grow memory).
const MAX_ADDRESSES: usize = 1024;

#[derive(Debug, Default)]
pub struct Throttle {
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Throttle {
    /// How long `addr` must still wait, if it must.
    pub fn blocked(&mut self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let times = self.failures.get_mut(&addr)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.failures.remove(&addr);
            return None;
        }
        (times.len() >= MAX_FAILURES)
            .then(|| times.front().map(|t| WINDOW - now.duration_since(*t)))
            .flatten()
    }

    /// `addr` sent a wrong credential.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) {
        if !self.failures.contains_key(&addr) && self.failures.len() >= MAX_ADDRESSES {
            self.failures
                .retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if self.failures.len() >= MAX_ADDRESSES {
                return; // every slot holds a recent offender; this one is not remembered
            }
        }
        let times = self.failures.entry(addr).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }

    /// `addr` gave the right credential: its failures are forgotten.
    pub fn succeeded(&mut self, addr: IpAddr) {
        self.failures.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_make_an_address_wait_a_minute_from_the_first() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        let mut t = Throttle::default();
        for i in 0..4 {
            t.failed(a, t0 + Duration::from_secs(i));
            assert_eq!(t.blocked(a, t0 + Duration::from_secs(i)), None);
        }
        t.failed(a, t0 + Duration::from_secs(10));
        let wait = t.blocked(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(t.blocked(b, t0), None, "other addresses are not affected");
        // A minute after the first failure, one slot is free again.
        assert_eq!(t.blocked(a, t0 + Duration::from_secs(60)), None);
        let later = t0 + Duration::from_millis(60_500);
        t.failed(a, later);
        assert!(
            t.blocked(a, later).is_some(),
            "five within the last minute again"
        );
    }

    #[test]
    fn success_forgets_and_memory_is_bounded() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        let mut t = Throttle::default();
        t.failed(a, t0);
        t.succeeded(a);
        assert!(t.failures.is_empty());
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            t.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(t.failures.len() <= MAX_ADDRESSES);
    }
}
