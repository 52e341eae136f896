//! Metrics of the evaluation stage: each department's scores and counts over the last 30 days,
//! refreshed every few minutes. The `department` label takes the ids of `rules/routing/` (a
//! small fixed set), never an account handle.

use prometheus::{GaugeVec, IntGaugeVec, Opts};
use std::sync::OnceLock;

/// The `dimension` label values of `huiying_evaluation_score`.
pub const DIMENSIONS: [&str; 4] = ["service", "approval", "overall", "previous_overall"];

/// The evaluation's metrics.
pub struct EvaluationMetrics {
    /// Scores 0–100 by department and dimension (NaN: no data in the window).
    pub score: GaugeVec,
    /// Requests received in the window, by department.
    pub received: IntGaugeVec,
    /// Requests answered on time in the window, by department.
    pub answered_on_time: IntGaugeVec,
    /// Requests overdue now (received in the window), by department.
    pub overdue: IntGaugeVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    let _ = super::global().registry.register(Box::new(c.clone()));
    c
}

impl EvaluationMetrics {
    fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            register(
                IntGaugeVec::new(Opts::new(name, help), &["department"]).expect("valid metric"),
            )
        };
        EvaluationMetrics {
            score: register(
                GaugeVec::new(
                    Opts::new(
                        "huiying_evaluation_score",
                        "Department scores 0-100 over the last 30 days, by dimension (NaN: no data).",
                    ),
                    &["department", "dimension"],
                )
                .expect("valid metric"),
            ),
            received: gauge(
                "huiying_evaluation_received",
                "Citizen requests received in the last 30 days, by department.",
            ),
            answered_on_time: gauge(
                "huiying_evaluation_answered_on_time",
                "Citizen requests received in the last 30 days and answered on time, by department.",
            ),
            overdue: gauge(
                "huiying_evaluation_overdue",
                "Citizen requests received in the last 30 days and overdue now, by department.",
            ),
        }
    }
}

/// The evaluation metrics (registered on first use).
pub fn evaluation() -> &'static EvaluationMetrics {
    static M: OnceLock<EvaluationMetrics> = OnceLock::new();
    M.get_or_init(EvaluationMetrics::new)
}
