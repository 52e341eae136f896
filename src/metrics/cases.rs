//! Metrics of the cases stage: cases by state and kind, overdue ones, intake outcomes, and the
//! time from acceptance to the answer. Registered the first time [`cases`] is called (the
//! cases stage calls it when it starts).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use std::sync::OnceLock;

/// Intake outcomes (the `outcome` label).
pub const INTAKE_OUTCOMES: [&str; 10] = [
    "created",
    "joined",
    "duplicate",
    "rated",
    "follow_up",
    "ignored",
    "deferred",
    "retry",
    "retried",
    "lost",
];

/// The cases stage's metrics.
pub struct CaseMetrics {
    /// Cases now, by state and primary kind (`other` for a kind an office added).
    pub cases: IntGaugeVec,
    /// Open cases past their accept or answer deadline.
    pub overdue: IntGauge,
    /// Mentions and requests taken in, by outcome.
    pub intake: IntCounterVec,
    /// Time from acceptance (受理) to the answer (反馈), by primary kind.
    pub answer_seconds: HistogramVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = super::global().registry.register(Box::new(c.clone()));
    c
}

impl CaseMetrics {
    fn new() -> Self {
        let cases = register(
            IntGaugeVec::new(
                Opts::new(
                    "huiying_cases",
                    "Citizen requests now, by state and primary kind.",
                ),
                &["state", "kind"],
            )
            .expect("valid metric"),
        );
        let overdue = register(
            IntGauge::new(
                "huiying_cases_overdue",
                "Open citizen requests past their accept or answer deadline.",
            )
            .expect("valid metric"),
        );
        let intake = register(
            IntCounterVec::new(
                Opts::new(
                    "huiying_case_intake_total",
                    "Mentions and requests the cases stage took in, by outcome.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let answer_seconds = register(
            HistogramVec::new(
                HistogramOpts::new(
                    "huiying_case_answer_seconds",
                    "Time from acceptance to the answer going out, by primary kind.",
                )
                .buckets(vec![
                    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
                    172800.0, 432000.0, 864000.0,
                ]),
                &["kind"],
            )
            .expect("valid metric"),
        );
        for o in INTAKE_OUTCOMES {
            intake.with_label_values(&[o]);
        }
        for k in super::super::cases::KINDS.iter().copied().chain(["other"]) {
            answer_seconds.with_label_values(&[k]);
        }
        CaseMetrics {
            cases,
            overdue,
            intake,
            answer_seconds,
        }
    }
}

/// The cases metrics (registered on first use).
pub fn cases() -> &'static CaseMetrics {
    static M: OnceLock<CaseMetrics> = OnceLock::new();
    M.get_or_init(CaseMetrics::new)
}
