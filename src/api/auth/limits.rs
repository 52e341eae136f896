//! Login limits: failures counted per user name and per client address in a sliding window,
//! and the `huiying_login_failures_total{reason}` metric.

use std::collections::{HashMap, VecDeque};
use std::sync::OnceLock;

/// Why a login failed (the `reason` label of `huiying_login_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// No such user.
    UnknownUser,
    /// The password does not match.
    WrongPassword,
    /// Too many recent failures for this user or this client address.
    RateLimited,
    /// The request is not a login request (bad JSON, missing fields).
    BadRequest,
    /// The password was right but the login's audit record could not be written.
    AuditUnavailable,
}

impl LoginFailure {
    /// Every reason, for the metric's label set.
    pub const ALL: [LoginFailure; 5] = [
        LoginFailure::UnknownUser,
        LoginFailure::WrongPassword,
        LoginFailure::RateLimited,
        LoginFailure::BadRequest,
        LoginFailure::AuditUnavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::UnknownUser => "unknown_user",
            LoginFailure::WrongPassword => "wrong_password",
            LoginFailure::RateLimited => "rate_limited",
            LoginFailure::BadRequest => "bad_request",
            LoginFailure::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Count it.
    pub fn emit(self) {
        login_failures().with_label_values(&[self.as_str()]).inc();
        tracing::info!(reason = self.as_str(), "Login refused.");
    }
}

/// `huiying_login_failures_total{reason}`, registered in the global registry on first use.
pub fn login_failures() -> &'static prometheus::IntCounterVec {
    static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "huiying_login_failures_total",
                "Refused console logins, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for r in LoginFailure::ALL {
            c.with_label_values(&[r.as_str()]);
        }
        // Registered once per process; a second registry user would be a programming error
        // caught by the tests, not something to crash a server over.
        if let Err(e) = crate::metrics::global()
            .registry
            .register(Box::new(c.clone()))
        {
            tracing::error!(error = %e, "Cannot register huiying_login_failures_total.");
        }
        c
    })
}

/// Keys the limiter holds at most (about 1 MB).
const MAX_KEYS: usize = 10_000;

/// Failure timestamps per key (`u:<name>` / `ip:<addr>`), pruned to the window.
#[derive(Debug, Default)]
pub(super) struct Attempts(HashMap<String, VecDeque<i64>>);

impl Attempts {
    /// How many failures `key` has in the window ending `now`.
    pub(super) fn count(&mut self, key: &str, now: i64, window_ms: i64) -> usize {
        match self.0.get_mut(key) {
            Some(q) => {
                while q.front().is_some_and(|t| *t <= now - window_ms) {
                    q.pop_front();
                }
                q.len()
            }
            None => 0,
        }
    }

    /// When the oldest failure of `key` leaves the window.
    pub(super) fn free_at(&self, key: &str, window_ms: i64) -> Option<i64> {
        self.0.get(key)?.front().map(|t| t + window_ms)
    }

    pub(super) fn record(&mut self, key: String, now: i64, window_ms: i64) {
        // Bounded memory under a spray of user names: drop keys with nothing in the window,
        // and when that is not enough, every user-name key (the address keys still hold the
        // sprayer back).
        if self.0.len() > MAX_KEYS {
            self.0
                .retain(|_, q| q.back().is_some_and(|t| *t > now - window_ms));
            if self.0.len() > MAX_KEYS {
                self.0.retain(|k, _| !k.starts_with("u:"));
            }
        }
        self.0.entry(key).or_default().push_back(now);
    }

    /// Take back one failure of `key` recorded at `at` (a reserved attempt that succeeded).
    pub(super) fn unrecord(&mut self, key: &str, at: i64) {
        if let Some(q) = self.0.get_mut(key) {
            if let Some(i) = q.iter().rposition(|t| *t == at) {
                q.remove(i);
            }
            if q.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// Keys held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spray_of_user_names_stays_bounded_and_reserved_attempts_can_be_taken_back() {
        let mut a = Attempts::default();
        for i in 0..30_000 {
            a.record(format!("u:spray-{i}"), 1_000, 60_000);
        }
        assert!(a.len() <= MAX_KEYS + 1, "{}", a.len());
        a.record("ip:1.2.3.4".into(), 2_000, 60_000);
        a.record("ip:1.2.3.4".into(), 2_000, 60_000);
        a.unrecord("ip:1.2.3.4", 2_000);
        assert_eq!(a.count("ip:1.2.3.4", 2_000, 60_000), 1);
    }
}
