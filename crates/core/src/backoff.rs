//! Exponential backoff with "equal jitter", for retrying transient failures:
//! each delay is drawn uniformly from the upper half of its exponential
//! ceiling, so it grows for sure while no two retries line up.
//!
//! Jitter matters here: N writer replicas that lost the database together
//! must not all come back in the same millisecond. Full jitter (from zero
//! up) would spread them as well, but could also retry at once, again and
//! again; the lower bound of half keeps a failing dependency from being
//! hammered.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt: uniform in [c/2, c] where
    /// c = min(max, base·2^n) (at least 1 ms) after n earlier attempts.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100));
        assert!(first >= Duration::from_millis(50));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        assert_eq!(b.attempts(), 21);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
