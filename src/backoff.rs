//! Exponential backoff with jitter for rebuilding a failed pipeline (pure: the caller
//! supplies the randomness and decides when a run counts as healthy).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt. `jitter` in `[0, 1)` spreads it over the upper
    /// half of the window, so retries never fire in lock step yet never collapse to zero.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let window = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        window.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Like `next_delay` but over the whole window ("full jitter"): many clients that
    /// lost the same service spread their retries as widely as possible.
    pub fn next_delay_full(&mut self, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let window = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        window.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Call after a run that stayed healthy long enough to count as recovered.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<_> = (0..9).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.attempts(), 9);
        b.reset();
        let full: Vec<_> = (0..3).map(|_| b.next_delay_full(0.5).as_millis()).collect();
        assert_eq!(full, [250, 500, 1000], "full jitter spans the window");
        b.reset();
        assert_eq!(
            b.next_delay(0.0),
            Duration::from_millis(250),
            "half the window at zero jitter"
        );
    }
}
