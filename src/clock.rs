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

/// One end of a period as given: a local date (`2026-11-01`: its start; as `to`, the day is
/// included), an RFC 3339 time, or unix ms.
pub fn bound(s: &str, field: &str, offset_secs: i32, end: bool) -> Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|e| format!("{field}: {e}"));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("{field}: {s:?} is not a date (2026-11-01), an RFC 3339 time or unix ms")
    })?;
    let d = if end { d.succ_opt().unwrap_or(d) } else { d };
    let local = d.and_time(chrono::NaiveTime::MIN);
    Ok(local.and_utc().timestamp_millis() - i64::from(offset_secs) * 1000)
}

/// A period `from`..`to` (ms) as given ([`bound`]): `to` by default `now`, `from` by default
/// `default_days` before `to`; `from` must be before `to`.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    offset_secs: i32,
    now: i64,
    default_days: i64,
) -> Result<(i64, i64), String> {
    let to = match to.filter(|s| !s.trim().is_empty()) {
        Some(s) => bound(s, "to", offset_secs, true)?,
        None => now,
    };
    let from = match from.filter(|s| !s.trim().is_empty()) {
        Some(s) => bound(s, "from", offset_secs, false)?,
        None => to - default_days * 86_400_000,
    };
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    Ok((from, to))
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
