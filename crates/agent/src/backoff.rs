//! Capped exponential back-off with jitter, for retrying while the server is unreachable.
//!
//! The n-th delay is drawn from `[c/2, c]` where `c = min(max, initial * 2^n)` ("equal jitter"):
//! it keeps growing, never exceeds the cap, and agents on many nodes do not retry in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// `seed` only decides the jitter; any value works.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: seed | 1,
        }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; each call makes the following one longer, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*: good enough to spread retries, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let half = ceiling / 2;
        let span = (ceiling - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { r % (span + 1) })
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_stop_at_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 42);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (n, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << n.min(5)).min(Duration::from_secs(30));
            assert!(
                *d <= ceiling && *d >= ceiling / 2,
                "delay {n} = {d:?}, ceiling {ceiling:?}"
            );
        }
        assert!(delays[11] >= Duration::from_secs(15));
        // Jitter: not every capped delay is identical.
        assert!(delays[6..].windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
