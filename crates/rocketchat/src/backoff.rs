//! Capped exponential backoff with jitter for reconnect attempts.
//!
//! The n-th consecutive failure waits `initial · 2ⁿ`, capped at `max`, then scaled by a random
//! factor in [0.75, 1] so that many gateways restarted together do not retry in lockstep.
//! The delay never exceeds `max` and never drops to zero, so a permanent failure (a server
//! that is down, wrong credentials) settles at about one attempt per `max`.

use std::time::Duration;

use rand::Rng;

/// The delay schedule of one connection's reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `max` (`max` is raised to `initial` if smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The un-jittered delay before the next attempt.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt (jittered), and counts the failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let factor = rand::thread_rng().gen_range(0.75..=1.0);
        ceiling.mul_f64(factor).max(Duration::from_millis(1))
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the initial delay (after a connection that stayed up).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let expected = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60];
        for secs in expected {
            let ceiling = Duration::from_secs(secs);
            assert_eq!(b.ceiling(), ceiling);
            let d = b.next_delay();
            assert!(
                d <= ceiling && d >= ceiling.mul_f64(0.75),
                "{d:?} vs {ceiling:?}"
            );
        }
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
        assert_eq!(b.failures(), 110);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn never_overflows_or_hits_zero() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        for _ in 0..1000 {
            assert!(b.next_delay() >= Duration::from_millis(1));
        }
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(5));
        assert!(b.next_delay() <= Duration::from_secs(5));
    }
}
