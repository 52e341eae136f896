//! The evaluation as files: JSON (everything, as [`super::Evaluation`] serialises) and CSV (one
//! row per department and account, the figures flat, formulas defused).

use super::{Evaluation, Unit};

/// The CSV header: every column of [`csv`].
pub const CSV_COLUMNS: [&str; 31] = [
    "kind",
    "id",
    "name_zh",
    "name_en",
    "peer_group",
    "received",
    "accepted",
    "accepted_on_time",
    "answered",
    "answered_on_time",
    "overdue",
    "returned",
    "reopened",
    "ack_secs_median",
    "ack_secs_p90",
    "answer_secs_median",
    "answer_secs_p90",
    "rated",
    "satisfaction_rate",
    "addressed",
    "reply_share",
    "service",
    "interaction",
    "approval",
    "reach",
    "overall",
    "previous_overall",
    "trend",
    "rank",
    "peers",
    "silent",
];

fn field(s: &str) -> String {
    crate::cases::api::csv_field(s)
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{}", (v * 1000.0).round() / 1000.0))
        .unwrap_or_default()
}

fn row(u: &Unit) -> String {
    let s = &u.service;
    let i = u.interaction.as_ref();
    let cells: Vec<String> = vec![
        field(u.kind),
        field(&u.id),
        field(&u.name_zh),
        field(&u.name_en),
        field(&u.peer_group),
        s.received.to_string(),
        s.accepted.to_string(),
        s.accepted_on_time.to_string(),
        s.answered.to_string(),
        s.answered_on_time.to_string(),
        s.overdue.to_string(),
        s.returned.to_string(),
        s.reopened.to_string(),
        opt(s.ack_secs.median),
        opt(s.ack_secs.p90),
        opt(s.answer_secs.median),
        opt(s.answer_secs.p90),
        u.approval.rated.to_string(),
        opt(u.approval.satisfaction_rate),
        i.map(|i| i.addressed.to_string()).unwrap_or_default(),
        opt(i.and_then(|i| i.reply_share)),
        opt(u.scores.service),
        opt(u.scores.interaction),
        opt(u.scores.approval),
        opt(u.scores.reach),
        opt(u.scores.overall),
        opt(u.previous.overall),
        opt(u.trend),
        u.rank.map(|r| r.to_string()).unwrap_or_default(),
        u.peers.to_string(),
        u.silent.to_string(),
    ];
    cells.join(",")
}

/// The evaluation as CSV: a header, then the departments, then the accounts.
pub fn csv(e: &Evaluation) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for u in e.departments.iter().chain(&e.accounts) {
        out.push_str(&row(u));
        out.push('\n');
    }
    out
}

/// The evaluation as pretty JSON.
pub fn json(e: &Evaluation) -> String {
    serde_json::to_string_pretty(e).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}
