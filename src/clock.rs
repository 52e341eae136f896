//! The one injected clock: sessions, login limits, the dispatcher and the publishing limiters
//! read time from a [`Clock`], so tests move one [`ManualClock`] instead of sleeping.
//!
//! Our [`Clock`] gives wall-clock Unix milliseconds (object safe: `Arc<dyn Clock>`). The GCRA
//! limiters of `respond::limits` need governor's clock, which measures intervals; both clocks
//! here implement [`governor::clock::Clock`] too. [`SystemClock`] answers governor with the
//! monotonic clock, so a wall-clock step never opens or closes a limiter, and [`ManualClock`]
//! answers with its own reading, so limiters and `now_ms` move together in tests.

use governor::clock::Clock as GovernorClock;
use governor::nanos::Nanos;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock (wall clock for [`Clock::now_ms`], monotonic for the limiters).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

impl GovernorClock for SystemClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }
}

/// A clock moved by hand (tests). Clones share one reading.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    /// Nanoseconds since the Unix epoch (fits until 2262).
    ns: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `ms` (Unix milliseconds).
    pub fn new(ms: i64) -> Self {
        ManualClock {
            ns: Arc::new(AtomicI64::new(ms.saturating_mul(1_000_000))),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, d: Duration) {
        let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        self.ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ns.load(Ordering::SeqCst).div_euclid(1_000_000)
    }
}

impl GovernorClock for ManualClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        // Before the epoch reads as the epoch: governor's instants are unsigned.
        Nanos::from(u64::try_from(self.ns.load(Ordering::SeqCst)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_readings_together() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        let before = GovernorClock::now(&c);
        shared.advance(Duration::from_micros(2_500));
        assert_eq!(c.now_ms(), 1_002);
        assert_eq!(
            Duration::from(GovernorClock::now(&c).saturating_sub(before)),
            Duration::from_micros(2_500)
        );
    }
}
