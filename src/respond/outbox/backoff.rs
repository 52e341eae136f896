//! When to retry: exponential backoff with full jitter, floored by the platform's `Retry-After`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Exponential backoff with full jitter: attempt `k` waits a uniform random time in
/// `[0, min(cap, base·2^(k−1))]`, and never less than the platform's `Retry-After`. The random
/// source is seeded by the caller, so runs and tests are reproducible.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first attempt's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    rng: StdRng,
}

impl Backoff {
    /// A backoff with its random source seeded by `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Base 2 s, cap 10 min.
    pub fn with_seed(seed: u64) -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(600), seed)
    }

    /// When to try again after `attempt` attempts (1 for the first failure), at `now_ms`,
    /// given the platform's `Retry-After` if it sent one (a floor, even above the cap).
    pub fn retry_at(&mut self, attempt: u32, now_ms: i64, retry_after: Option<Duration>) -> i64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let ceiling = ms(self.base).saturating_mul(factor).min(ms(self.cap));
        let jitter = self.rng.random_range(0..=ceiling);
        let delay = jitter.max(retry_after.map_or(0, ms));
        now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
    }
}
