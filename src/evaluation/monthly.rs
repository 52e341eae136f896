//! The monthly report: on the first day of a month (and at start, if it is missing) the
//! previous calendar month's evaluation is written into `{data_dir}/reports/` as
//! `evaluation-YYYYMM.{json,csv,html}`; and the department gauges over the last 30 days.

use super::{report, Evaluation, Period};
use chrono::Datelike;
use std::path::{Path, PathBuf};

/// The calendar month before the one `now` is in, in the office's time, and its name
/// (`202611`).
pub fn last_month(now: i64, offset_secs: i32) -> (Period, String) {
    let off = i64::from(offset_secs) * 1000;
    let local = chrono::DateTime::from_timestamp_millis(now + off)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    let first = local.with_day(1).unwrap_or(local);
    let prev = first
        .pred_opt()
        .and_then(|d| d.with_day(1))
        .unwrap_or(first);
    let ms = |d: chrono::NaiveDate| {
        d.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
            - off
    };
    (
        Period {
            from: ms(prev),
            to: ms(first),
        },
        prev.format("%Y%m").to_string(),
    )
}

/// Write `e` as `{dir}/evaluation-{name}.{json,csv,html}` (each through a temporary file and a
/// rename, so a reader never sees half a report). The paths written.
pub fn write(dir: &Path, name: &str, e: &Evaluation) -> std::io::Result<Vec<PathBuf>> {
    crate::write_report_files(
        dir,
        &format!("evaluation-{name}"),
        &[
            ("json", report::json(e)),
            ("csv", report::csv(e)),
            ("html", report::html(e)),
        ],
    )
}

/// Whether the report `name` is already in `dir` (its HTML, written last).
pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(format!("evaluation-{name}.html")).is_file()
}

/// Set the department gauges from `e`.
pub fn gauges(e: &Evaluation) {
    let m = crate::metrics::evaluation::evaluation();
    for u in &e.departments {
        let d = u.id.as_str();
        for (dim, v) in [
            ("service", u.scores.service),
            ("approval", u.scores.approval),
            ("overall", u.scores.overall),
            ("previous_overall", u.previous.overall),
        ] {
            m.score
                .with_label_values(&[d, dim])
                .set(v.unwrap_or(f64::NAN));
        }
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        m.received
            .with_label_values(&[d])
            .set(n(u.service.received));
        m.answered_on_time
            .with_label_values(&[d])
            .set(n(u.service.answered_on_time));
        m.overdue.with_label_values(&[d]).set(n(u.service.overdue));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bj(y: i32, m: u32, d: u32, h: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|x| x.and_hms_opt(h, 0, 0))
            .expect("time")
            .and_utc()
            .timestamp_millis()
            - 8 * 3_600_000
    }

    #[test]
    fn the_gauges_show_each_departments_figures_and_nan_without_data() {
        use crate::cases::model::{Case, Requester};
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let calendar = crate::cases::deadlines::Calendar::load(
            &rules.join("cases/calendar.toml"),
            &crate::cases::KINDS,
        )
        .expect("calendar");
        let weights = super::super::weights::Weights::load(&rules).expect("weights");
        let at = bj(2026, 11, 3, 10);
        let mut c = Case::receive(
            "1",
            Requester {
                handle: "h".into(),
                mention_id: "m".into(),
                at,
                target: None,
            },
            "停水",
            vec!["complaint".into()],
            Some("water".into()),
            1.0,
            None,
        );
        c.record(at + 60_000, "duty", "accept", "");
        c.record(at + 3_600_000, "water", "answer", "");
        let subject = |id: &str| super::super::Subject {
            id: id.into(),
            name_zh: id.into(),
            name_en: id.into(),
            peer_group: String::new(),
        };
        let subjects = super::super::Subjects {
            departments: vec![subject("water"), subject("education")],
            accounts: Vec::new(),
        };
        let period = Period {
            from: bj(2026, 11, 1, 0),
            to: bj(2026, 12, 1, 0),
        };
        let e = super::super::evaluate(
            super::super::Inputs {
                cases: &[c],
                ..Default::default()
            },
            &subjects,
            &calendar,
            &weights,
            period,
            period.to,
        );
        gauges(&e);
        let m = crate::metrics::evaluation::evaluation();
        assert_eq!(m.received.with_label_values(&["water"]).get(), 1);
        assert_eq!(m.answered_on_time.with_label_values(&["water"]).get(), 1);
        assert_eq!(m.overdue.with_label_values(&["water"]).get(), 0);
        assert_eq!(
            m.score.with_label_values(&["water", "service"]).get(),
            100.0
        );
        assert!(m
            .score
            .with_label_values(&["education", "overall"])
            .get()
            .is_nan());
    }

    #[test]
    fn last_month_is_the_local_calendar_month_before() {
        // 1 December 00:30 in Beijing is still 30 November in UTC: the month before is November.
        let (p, name) = last_month(bj(2026, 12, 1, 0) + 1_800_000, 8 * 3600);
        assert_eq!(name, "202611");
        assert_eq!((p.from, p.to), (bj(2026, 11, 1, 0), bj(2026, 12, 1, 0)));
        // January: December of the year before.
        let (p, name) = last_month(bj(2027, 1, 15, 12), 8 * 3600);
        assert_eq!(name, "202612");
        assert_eq!((p.from, p.to), (bj(2026, 12, 1, 0), bj(2027, 1, 1, 0)));
    }
}
