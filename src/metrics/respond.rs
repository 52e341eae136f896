//! Metrics of the respond stage: notices by state, posts by platform and outcome, publish
//! latency, rate-limit waits, failed checks of uncertain outcomes, the outbox's depth and oldest
//! job, whether the audit log takes writes and whether the dispatcher waits for it. Registered in the global
//! registry the first time [`respond`] is called (the respond stage calls it when it starts),
//! so an engine with the stage off does not export them.

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::sync::OnceLock;

/// Platforms (the `platform` label).
pub const PLATFORMS: [&str; 6] = ["mastodon", "weibo", "webhook", "file", "email", "websub"];
/// Post outcomes (the `outcome` label): accepted; scheduled for a retry; failed for good;
/// found on the platform after an uncertain outcome (not sent again).
pub const OUTCOMES: [&str; 4] = ["ok", "retry", "failed", "recovered"];
/// Notice states (the `state` label).
pub const NOTICE_STATES: [&str; 6] = [
    "draft",
    "held",
    "approved",
    "rejected",
    "publishing",
    "done",
];
/// Outbox lanes (the `lane` label).
pub const LANES: [&str; 3] = ["emergency", "rebuttal", "routine"];
/// Limiter scopes (the `scope` label).
pub const SCOPES: [&str; 2] = ["account", "app"];

/// The respond stage's metrics.
pub struct RespondMetrics {
    /// Notices now, by state.
    pub notices: IntGaugeVec,
    /// Post attempts, by platform and outcome.
    pub posts: IntCounterVec,
    /// Platform call latency, by platform.
    pub publish_seconds: HistogramVec,
    /// Due jobs held back by a limiter, by scope.
    pub rate_limit_waits: IntCounterVec,
    /// Checks of an uncertain outcome (`find_recent`) that failed, by platform.
    pub check_failures: IntCounterVec,
    /// Unfinished jobs, by lane.
    pub outbox_jobs: IntGaugeVec,
    /// Age of the oldest unfinished job (0 when none).
    pub outbox_oldest_age: Gauge,
    /// 1 while the audit log takes writes, 0 after a failed write until one succeeds.
    pub audit_writable: IntGauge,
    /// Dispatchers paused, by reason (`audit`: its record could not be written).
    pub dispatcher_paused: IntGaugeVec,
}

/// Register `c` in the global registry (once: `respond` is behind a `OnceLock`).
fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    // A second registration can only come from a test that built its own registry; ignore it.
    let _ = super::global().registry.register(Box::new(c.clone()));
    c
}

impl RespondMetrics {
    fn new() -> Self {
        let notices = register(
            IntGaugeVec::new(
                Opts::new("huiying_notices", "Notices now, by state."),
                &["state"],
            )
            .expect("valid metric"),
        );
        let posts = register(
            IntCounterVec::new(
                Opts::new(
                    "huiying_posts_total",
                    "Post attempts answered, by platform and outcome.",
                ),
                &["platform", "outcome"],
            )
            .expect("valid metric"),
        );
        let publish_seconds = register(
            HistogramVec::new(
                HistogramOpts::new(
                    "huiying_publish_duration_seconds",
                    "Platform call latency (one attempt), by platform.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
                ]),
                &["platform"],
            )
            .expect("valid metric"),
        );
        let rate_limit_waits = register(
            IntCounterVec::new(
                Opts::new(
                    "huiying_rate_limit_waits_total",
                    "Due post jobs held back by a rate limiter, by scope.",
                ),
                &["scope"],
            )
            .expect("valid metric"),
        );
        let check_failures = register(
            IntCounterVec::new(
                Opts::new(
                    "huiying_publish_check_failures_total",
                    "Checks of an uncertain post outcome on the platform (find_recent) that failed, by platform.",
                ),
                &["platform"],
            )
            .expect("valid metric"),
        );
        let outbox_jobs = register(
            IntGaugeVec::new(
                Opts::new("huiying_outbox_jobs", "Unfinished outbox jobs, by lane."),
                &["lane"],
            )
            .expect("valid metric"),
        );
        let outbox_oldest_age = register(
            Gauge::new(
                "huiying_outbox_oldest_pending_age_seconds",
                "Age of the oldest unfinished outbox job (0 when there is none).",
            )
            .expect("valid metric"),
        );
        let audit_writable = register(
            IntGauge::new(
                "huiying_audit_writable",
                "1 while the audit log takes writes; 0 after a failed write, until one succeeds.",
            )
            .expect("valid metric"),
        );
        audit_writable.set(1);
        let dispatcher_paused = register(
            IntGaugeVec::new(
                Opts::new(
                    "huiying_dispatcher_paused",
                    "1 while the dispatcher is paused, by reason (audit: its record cannot be written).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        dispatcher_paused.with_label_values(&["audit"]);
        for s in NOTICE_STATES {
            notices.with_label_values(&[s]);
        }
        for p in PLATFORMS {
            publish_seconds.with_label_values(&[p]);
            check_failures.with_label_values(&[p]);
            for o in OUTCOMES {
                posts.with_label_values(&[p, o]);
            }
        }
        for s in SCOPES {
            rate_limit_waits.with_label_values(&[s]);
        }
        for l in LANES {
            outbox_jobs.with_label_values(&[l]);
        }
        RespondMetrics {
            notices,
            posts,
            publish_seconds,
            rate_limit_waits,
            check_failures,
            outbox_jobs,
            outbox_oldest_age,
            audit_writable,
            dispatcher_paused,
        }
    }

    /// Count one answered attempt (`platform` and `outcome` from the fixed sets).
    pub fn post(&self, platform: &str, outcome: &str, seconds: Option<f64>) {
        self.posts.with_label_values(&[platform, outcome]).inc();
        if let Some(s) = seconds {
            self.publish_seconds
                .with_label_values(&[platform])
                .observe(s);
        }
    }
}

/// The respond stage's metrics, registered on first use.
pub fn respond() -> &'static RespondMetrics {
    static M: OnceLock<RespondMetrics> = OnceLock::new();
    M.get_or_init(RespondMetrics::new)
}
