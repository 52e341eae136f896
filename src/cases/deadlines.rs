//! Deadlines (督办): how long a case may wait to be accepted and answered, per request kind, in
//! wall-clock time or in working hours and days of the office's calendar (`rules/cases/calendar.toml`:
//! the working day, public holidays and the weekend days worked instead, 调休), and where a case
//! stands against them (on time, due soon: remind, overdue: escalate).
//!
//! Durations are written `90m`, `2h` (wall clock), `4wh` (working hours) or `5wd` (working days:
//! due at the end of the fifth working day after the day it started). Time is always an
//! argument: nothing here reads a clock.

use crate::detect::diagnostics::{line_at, read_toml, Problems};
use crate::detect::RuleErrors;
use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use toml::Spanned;

/// A time allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Wall-clock minutes.
    Minutes(i64),
    /// Working minutes (inside the working day, on working days).
    WorkingMinutes(i64),
    /// Working days: due at the end of the n-th working day after the start's day.
    WorkingDays(u32),
}

impl Allowed {
    /// Parse `90m`, `2h`, `4wh`, `5wd`.
    pub fn parse(s: &str) -> Result<Allowed, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{s:?}: a number and a unit (m, h, wh, wd)"))?;
        let (n, unit) = s.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("{s:?}: a number and a unit (m, h, wh, wd)"))?;
        if n <= 0 || n > 10_000 {
            return Err(format!("{s:?}: between 1 and 10000"));
        }
        match unit {
            "m" => Ok(Allowed::Minutes(n)),
            "h" => Ok(Allowed::Minutes(n * 60)),
            "wh" => Ok(Allowed::WorkingMinutes(n * 60)),
            "wd" => Ok(Allowed::WorkingDays(n as u32)),
            _ => Err(format!("{s:?}: unit must be m, h, wh or wd")),
        }
    }
}

/// The deadlines of one request kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDeadlines {
    /// To accept (受理).
    pub accept: Allowed,
    /// To answer (反馈), from acceptance.
    pub answer: Allowed,
}

/// Where a case stands against a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Within the first part of its time.
    OnTime,
    /// Within the last `remind_share` of its time: remind the department.
    DueSoon,
    /// Past it: escalate to the supervising account.
    Overdue,
}

/// The office's calendar and deadlines.
#[derive(Debug, Clone)]
pub struct Calendar {
    offset_secs: i32,
    work_start: NaiveTime,
    work_end: NaiveTime,
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
    /// Share of a deadline's time left at which a reminder goes out.
    pub remind_share: f64,
    kinds: BTreeMap<String, KindDeadlines>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlineDef {
    kind: Spanned<String>,
    /// Only for this department's cases (overrides the kind's own line).
    #[serde(default)]
    department: Option<String>,
    accept: Spanned<String>,
    answer: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    utc_offset_hours: i32,
    work_start: Spanned<String>,
    work_end: Spanned<String>,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    workdays: Vec<Spanned<String>>,
    remind_share: f64,
    deadline: Vec<DeadlineDef>,
}

impl Calendar {
    /// Load `rules/cases/calendar.toml`; `kinds` are the request kinds a deadline may name.
    pub fn load(path: &Path, kinds: &[&str]) -> Result<Calendar, RuleErrors> {
        let (src, f) = read_toml::<CalendarFile>(path).map_err(|e| RuleErrors(vec![e]))?;
        let mut p = Problems::new();
        let line = |s: &Spanned<String>| line_at(&src, s.span().start);
        let time = |p: &mut Problems, s: &Spanned<String>| {
            NaiveTime::parse_from_str(s.get_ref(), "%H:%M")
                .map_err(|_| p.at(path, line(s), format!("{:?}: a time HH:MM", s.get_ref())))
                .ok()
        };
        let start = time(&mut p, &f.work_start);
        let end = time(&mut p, &f.work_end);
        if let (Some(a), Some(b)) = (start, end) {
            if a >= b {
                p.at(path, line(&f.work_end), "work_end must be after work_start");
            }
        }
        if !(-12..=14).contains(&f.utc_offset_hours) {
            p.at(
                path,
                1,
                format!("utc_offset_hours {} is not an offset", f.utc_offset_hours),
            );
        }
        if !(0.0..1.0).contains(&f.remind_share) {
            p.at(path, 1, "remind_share must be in [0, 1)");
        }
        let dates = |p: &mut Problems, v: &[Spanned<String>]| -> BTreeSet<NaiveDate> {
            v.iter()
                .filter_map(|d| {
                    NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d")
                        .map_err(|_| {
                            p.at(
                                path,
                                line(d),
                                format!("{:?}: a date YYYY-MM-DD", d.get_ref()),
                            )
                        })
                        .ok()
                })
                .collect()
        };
        let holidays = dates(&mut p, &f.holidays);
        let workdays = dates(&mut p, &f.workdays);
        let mut map = BTreeMap::new();
        for d in &f.deadline {
            let kind = d.kind.get_ref();
            if !kinds.contains(&kind.as_str()) {
                p.at(
                    path,
                    line(&d.kind),
                    format!("unknown request kind {kind:?}"),
                );
                continue;
            }
            let parse = |p: &mut Problems, s: &Spanned<String>| {
                Allowed::parse(s.get_ref())
                    .map_err(|m| p.at(path, line(s), m))
                    .ok()
            };
            let (a, b) = (parse(&mut p, &d.accept), parse(&mut p, &d.answer));
            let key = match &d.department {
                Some(dep) => format!("{kind}@{dep}"),
                None => kind.clone(),
            };
            match map.entry(key) {
                std::collections::btree_map::Entry::Occupied(_) => p.at(
                    path,
                    line(&d.kind),
                    format!(
                        "kind {kind:?} has two deadlines{}",
                        d.department
                            .as_ref()
                            .map(|d| format!(" for {d}"))
                            .unwrap_or_default()
                    ),
                ),
                std::collections::btree_map::Entry::Vacant(v) => {
                    if let (Some(accept), Some(answer)) = (a, b) {
                        v.insert(KindDeadlines { accept, answer });
                    }
                }
            }
        }
        p.finish()?;
        Ok(Calendar {
            offset_secs: f.utc_offset_hours * 3600,
            work_start: start.unwrap_or_default(),
            work_end: end.unwrap_or_default(),
            holidays,
            workdays,
            remind_share: f.remind_share,
            kinds: map,
        })
    }

    /// The office's offset from UTC (seconds east).
    pub fn offset_secs(&self) -> i32 {
        self.offset_secs
    }

    /// The office's local day of `ms` as `YYYYMMDD` (case numbers restart each day).
    pub fn day_key(&self, ms: i64) -> String {
        self.local(ms).format("%Y%m%d").to_string()
    }

    /// The office's local time of `ms` as `YYYY-MM-DD HH:MM` (texts to citizens).
    pub fn local_text(&self, ms: i64) -> String {
        self.local(ms).format("%Y-%m-%d %H:%M").to_string()
    }

    /// The deadlines of a kind.
    pub fn deadlines(&self, kind: &str) -> Option<KindDeadlines> {
        self.kinds.get(kind).copied()
    }

    /// The deadlines of a kind for a department's cases: its own line if the calendar has one
    /// (`department = "…"`), else the kind's.
    pub fn deadlines_for(&self, kind: &str, department: Option<&str>) -> Option<KindDeadlines> {
        department
            .and_then(|d| self.kinds.get(&format!("{kind}@{d}")))
            .or_else(|| self.kinds.get(kind))
            .copied()
    }

    /// The departments named by department-specific deadlines (checked against `routing/`).
    pub fn departments(&self) -> impl Iterator<Item = &str> {
        self.kinds
            .keys()
            .filter_map(|k| k.split_once('@').map(|(_, d)| d))
    }

    /// Whether `day` is a working day (a weekday not a holiday, or a weekend day worked).
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.workdays.contains(&day) {
            return true;
        }
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&day)
    }

    fn local(&self, ms: i64) -> chrono::NaiveDateTime {
        Utc.timestamp_millis_opt(ms)
            .single()
            .unwrap_or_default()
            .naive_utc()
            + Duration::seconds(i64::from(self.offset_secs))
    }

    fn utc_ms(&self, local: chrono::NaiveDateTime) -> i64 {
        (local - Duration::seconds(i64::from(self.offset_secs)))
            .and_utc()
            .timestamp_millis()
    }

    /// When something started at `start_ms` with `allowed` time is due (unix ms).
    pub fn due(&self, start_ms: i64, allowed: Allowed) -> i64 {
        match allowed {
            Allowed::Minutes(m) => start_ms.saturating_add(m.saturating_mul(60_000)),
            Allowed::WorkingDays(n) => {
                let mut day = self.local(start_ms).date();
                let mut left = n;
                // A bounded walk: at most ten years of days.
                for _ in 0..3660 {
                    day = day.succ_opt().unwrap_or(day);
                    if self.is_working_day(day) {
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                }
                self.utc_ms(day.and_time(self.work_end))
            }
            Allowed::WorkingMinutes(m) => {
                let mut t = self.local(start_ms);
                let mut left = Duration::minutes(m);
                for _ in 0..3660 {
                    let day = t.date();
                    let (open, close) =
                        (day.and_time(self.work_start), day.and_time(self.work_end));
                    if self.is_working_day(day) && t < close {
                        let from = t.max(open);
                        let room = close - from;
                        if left <= room {
                            return self.utc_ms(from + left);
                        }
                        left -= room;
                    }
                    t = day.succ_opt().unwrap_or(day).and_time(NaiveTime::MIN);
                }
                self.utc_ms(t)
            }
        }
    }

    /// Where something started at `start_ms`, due at `due_ms`, stands at `now_ms`.
    pub fn standing(&self, start_ms: i64, due_ms: i64, now_ms: i64) -> Standing {
        if now_ms > due_ms {
            return Standing::Overdue;
        }
        let total = (due_ms - start_ms).max(1) as f64;
        let left = (due_ms - now_ms) as f64;
        if left <= total * self.remind_share {
            Standing::DueSoon
        } else {
            Standing::OnTime
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [&str; 6] = [
        "help",
        "complaint",
        "report",
        "inquiry",
        "suggestion",
        "praise",
    ];

    fn shipped() -> Calendar {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/cases/calendar.toml");
        Calendar::load(&path, &KINDS).expect("the shipped calendar loads")
    }

    /// Unix ms of a Beijing local time.
    fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        let local = NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, 0))
            .expect("valid");
        (local - Duration::hours(8)).and_utc().timestamp_millis()
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_and_count_days_worked_instead() {
        let c = shipped();
        // Friday 2026-09-25 (中秋) is a holiday; the answer of a complaint accepted on
        // Thursday 24 September is due at the end of the fifth working day after it.
        let start = bj(2026, 9, 24, 10, 0);
        let due = c.due(start, Allowed::WorkingDays(5));
        // 25 (holiday), 26–27 weekend; 28, 29, 30 Sep work; 1–7 Oct holidays; 8 Oct, 9 Oct.
        assert_eq!(due, bj(2026, 10, 9, 17, 30));
        // A weekend day worked (调休) counts: Sunday 2026-09-20 is a working day.
        assert!(c.is_working_day(NaiveDate::from_ymd_opt(2026, 9, 20).expect("date")));
        assert!(!c.is_working_day(NaiveDate::from_ymd_opt(2026, 10, 3).expect("date")));
    }

    #[test]
    fn working_hours_run_only_inside_the_working_day() {
        let c = shipped();
        // Friday 4 December 2026, 16:30 + 4 working hours: 1 h on Friday, 3 h on Monday.
        assert_eq!(
            c.due(bj(2026, 12, 4, 16, 30), Allowed::WorkingMinutes(240)),
            bj(2026, 12, 7, 12, 0)
        );
        // Before opening: counted from 09:00.
        assert_eq!(
            c.due(bj(2026, 12, 7, 6, 0), Allowed::WorkingMinutes(60)),
            bj(2026, 12, 7, 10, 0)
        );
        // Wall clock is wall clock.
        assert_eq!(
            c.due(bj(2026, 12, 5, 23, 0), Allowed::Minutes(120)),
            bj(2026, 12, 6, 1, 0)
        );
    }

    #[test]
    fn standing_reminds_in_the_last_share_and_escalates_after() {
        let c = shipped();
        let (s, d) = (0, 100_000);
        assert_eq!(c.standing(s, d, 10_000), Standing::OnTime);
        assert_eq!(c.standing(s, d, 90_000), Standing::DueSoon);
        assert_eq!(c.standing(s, d, 100_001), Standing::Overdue);
        let help = c.deadlines("help").expect("help");
        assert_eq!(help.accept, Allowed::Minutes(15));
    }

    #[test]
    fn durations_and_bad_calendars_say_what_is_wrong_and_where() {
        assert_eq!(Allowed::parse("90m"), Ok(Allowed::Minutes(90)));
        assert_eq!(Allowed::parse("2h"), Ok(Allowed::Minutes(120)));
        assert_eq!(Allowed::parse("4wh"), Ok(Allowed::WorkingMinutes(240)));
        assert_eq!(Allowed::parse("5wd"), Ok(Allowed::WorkingDays(5)));
        for bad in ["", "5", "h", "0h", "5d", "-1h"] {
            assert!(Allowed::parse(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("calendar.toml");
        std::fs::write(
            &path,
            "utc_offset_hours = 8\nwork_start = \"09:00\"\nwork_end = \"8:00pm\"\n\
             holidays = [\"2026-13-01\"]\nremind_share = 0.2\n\n\
             [[deadline]]\nkind = \"help\"\naccept = \"15m\"\nanswer = \"2days\"\n\n\
             [[deadline]]\nkind = \"gossip\"\naccept = \"1h\"\nanswer = \"1h\"\n",
        )
        .expect("write");
        let e = Calendar::load(&path, &KINDS).expect_err("bad").to_string();
        for want in [
            "calendar.toml:3: \"8:00pm\": a time HH:MM",
            "calendar.toml:4: \"2026-13-01\": a date YYYY-MM-DD",
            "calendar.toml:10: \"2days\": unit must be m, h, wh or wd",
            "calendar.toml:13: unknown request kind \"gossip\"",
        ] {
            assert!(e.contains(want), "{want} not in:\n{e}");
        }
    }
}
