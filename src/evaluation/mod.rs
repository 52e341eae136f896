//! 绩效评估: every department and every account of the matrix scored over a period on what
//! huiying sees of them — 服务力 (service), 互动力 (interaction), 认同度 (approval), 传播力
//! (reach, from the accounts' own timelines: [`timeline`]) — with the silent ones (聋哑)
//! marked, ranked among peers and compared with the previous period.
//!
//! Figures (each in the JSON as named here; the README documents them for other systems):
//!
//! | figure | definition |
//! |---|---|
//! | `received` | cases created in the period (by the department they are with now, or the account they addressed) |
//! | `accepted`, `accepted_on_time` | of those, accepted (受理) by the end of the period; at or before the accept deadline (from receipt, `rules/cases/calendar.toml`) |
//! | `answered`, `answered_on_time` | the answer went out (反馈) by the end; at or before the answer deadline (from acceptance, in working days and hours, holidays and 调休 days counted) |
//! | `overdue` | not answered at the end and past the deadline that applied then |
//! | `returned` | a department: times it sent one of these requests back (退回); an account: returns of its requests |
//! | `reopened` | requests reopened (不满意, a follow-up) |
//! | `ack_secs`, `answer_secs` | `{median, p90, n}`: receipt → acceptance, acceptance → answer (nearest rank) |
//! | `rated`, `satisfied`, `satisfaction_rate` | answers rated, rated satisfied, their share |
//! | `replies_positive`, `replies_negative`, `reply_positive_share` | accounts: replies to its own posts read for approval ([`replies`]) |
//! | `addressed`, `acknowledged`, `answered`, `reply_share` | accounts: requests addressed to it on its platform, and what it did |
//! | `reach` | accounts: `posts` (`own_posts`, `reposts_made`, `replies_made`), `reposts`/`replies`/`likes` of its own posts, `engagement_per_post`, `public_service_share`, `last_post_at`, `quiet_days` |
//! | `scores` | 0–100 each: `service` (weighted shares of `received`), `interaction` (accounts), `approval` (`satisfaction_rate`), `reach` (activity and engagement; `null` before its timeline was read), `overall` (weighted mean of those present); weights in `rules/evaluation.toml` |
//! | `rank`, `peers` | by `overall` among departments, or among accounts of the same level and function |
//! | `previous`, `trend` | the same scores over the period of the same length just before; `overall − previous.overall` |
//! | `silent`, `silent_reason` | 聋哑: answered under `min_answer_share` of at least `min_requests`; or (an account) no post for `max_quiet_days` |
//! | `worst_overdue` | its three latest overdue cases: `{id, due, late_secs}` |
//!
//! Computed from the case store alone (cases, and the accounts' posts the stage reads into it;
//! `huiying cases import` history counts like live cases),
//! so `huiying report evaluation` and `GET /api/evaluation` give the same figures.

pub mod fanout;
pub mod figures;
pub mod monthly;
pub mod replies;
pub mod report;
pub mod stage;
pub mod timeline;
pub mod weights;

use crate::cases::deadlines::Calendar;
use crate::cases::model::{Case, Channel};
use figures::{
    measure, measure_reach, quiet, reach_score, scores, silence, Approval, Interaction, Overdue,
    Period, Reach, Scores, Service,
};
use serde::Serialize;
use std::collections::BTreeMap;
use timeline::OwnPost;
use weights::Weights;

/// Something evaluated: a department or an account, and the peers it is ranked among.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its id (`water`, `bj-publicity`).
    pub id: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Accounts: `level/function` (ranked among the same); departments: empty.
    pub peer_group: String,
}

/// The departments and accounts to evaluate (every one of them appears, with or without cases).
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    /// The departments (`rules/routing/`).
    pub departments: Vec<Subject>,
    /// The matrix's accounts.
    pub accounts: Vec<Subject>,
}

/// One department's or account's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// `department` or `account`.
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Accounts: the peer group (`level/function`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer_group: String,
    /// 服务力 figures.
    pub service: Service,
    /// 认同度 figures.
    pub approval: Approval,
    /// 互动力 figures (accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction: Option<Interaction>,
    /// 传播力 figures (accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<Reach>,
    /// Scores.
    pub scores: Scores,
    /// Scores of the previous period.
    pub previous: Scores,
    /// `overall − previous.overall`.
    pub trend: Option<f64>,
    /// Rank by `overall` among its peers (1 = best; none without a score).
    pub rank: Option<usize>,
    /// How many peers have a score.
    pub peers: usize,
    /// 聋哑.
    pub silent: bool,
    /// Why it is silent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_reason: Option<String>,
    /// Its three latest overdue cases.
    pub worst_overdue: Vec<Overdue>,
}

/// The evaluation of every department and account over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The period.
    pub period: Period,
    /// The previous period (for `trend`).
    pub previous_period: Period,
    /// When the figures were computed (ms); a period not over yet is measured up to it.
    pub generated_at: i64,
    /// The office's offset from UTC (seconds east): local days and weekdays use it.
    pub utc_offset_secs: i32,
    /// The weights used.
    pub weights: Weights,
    /// Departments, best first.
    pub departments: Vec<Unit>,
    /// Accounts, best first.
    pub accounts: Vec<Unit>,
    /// The departments' `overall` score step by step through the period (a day each up to 14
    /// days, else a week each).
    pub series: Vec<Step>,
    /// Median time to answer by department and the weekday requests came in.
    pub heat: Vec<HeatRow>,
}

/// One step of [`Evaluation::series`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Start (ms).
    pub from: i64,
    /// End (ms, exclusive).
    pub to: i64,
    /// `overall` by department id (those with requests in the period).
    pub overall: BTreeMap<String, Option<f64>>,
}

/// One department's row of [`Evaluation::heat`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeatRow {
    /// Department id.
    pub department: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Median seconds from acceptance to answer, Monday first (none: nothing answered).
    pub median_answer_secs: [Option<f64>; 7],
    /// Answers counted, Monday first.
    pub answered: [usize; 7],
}

use figures::round1;

/// What an evaluation reads: the cases, the accounts' own posts, the notices' fan-out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// Every case.
    pub cases: &'a [Case],
    /// The accounts' own posts ([`timeline`]).
    pub posts: &'a [OwnPost],
    /// The accounts planned for notices ([`fanout`]).
    pub fanout: &'a [fanout::Planned],
    /// Replies to the accounts' own posts ([`replies`]).
    pub replies: &'a [replies::Reply],
}

/// [`Inputs`] read from a case store.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Every case.
    pub cases: Vec<Case>,
    /// The accounts' own posts.
    pub posts: Vec<OwnPost>,
    /// The fan-out records.
    pub fanout: Vec<fanout::Planned>,
    /// The replies to the accounts' posts.
    pub replies: Vec<replies::Reply>,
}

impl Loaded {
    /// Everything the evaluation reads from `store`.
    pub fn from_store(store: &crate::cases::store::CaseStore) -> Result<Loaded, String> {
        Ok(Loaded {
            cases: store.all().map_err(|e| e.to_string())?,
            posts: timeline::load(store)?,
            fanout: fanout::load(store)?,
            replies: replies::load(store)?,
        })
    }

    /// The inputs borrowed.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            cases: &self.cases,
            posts: &self.posts,
            fanout: &self.fanout,
            replies: &self.replies,
        }
    }
}

/// Evaluate `subjects` on `input` over `period` at `now`.
pub fn evaluate(
    input: Inputs<'_>,
    subjects: &Subjects,
    calendar: &Calendar,
    weights: &Weights,
    period: Period,
    now: i64,
) -> Evaluation {
    let (cases, posts) = (input.cases, input.posts);
    let mut replies_of: BTreeMap<&str, Vec<&replies::Reply>> = BTreeMap::new();
    for r in input.replies {
        replies_of.entry(r.account.as_str()).or_default().push(r);
    }
    let mut planned_of: BTreeMap<&str, Vec<&fanout::Planned>> = BTreeMap::new();
    for p in input.fanout {
        planned_of.entry(p.account.as_str()).or_default().push(p);
    }
    let mut by_department: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    let mut by_account: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for c in cases {
        if let Some(d) = &c.department {
            by_department.entry(d.as_str()).or_default().push(c);
        }
        if let Channel::Platform { account } = &c.channel {
            by_account.entry(account.as_str()).or_default().push(c);
        }
    }
    let mut posts_of: BTreeMap<&str, Vec<&OwnPost>> = BTreeMap::new();
    for p in posts {
        posts_of.entry(p.account.as_str()).or_default().push(p);
    }
    let previous_period = period.previous();
    let unit = |kind: &'static str, s: &Subject, mine: &[&Case]| -> Unit {
        let department = kind == "department";
        let returned_by = department.then_some(s.id.as_str());
        let mut m = measure(mine, cases, returned_by, calendar, period, now);
        let mut p = measure(mine, cases, returned_by, calendar, previous_period, now);
        if !department {
            let said = replies_of.get(s.id.as_str()).map_or(&[][..], Vec::as_slice);
            m.approval = m.approval.with_replies(said, period, now);
            p.approval = p.approval.with_replies(said, previous_period, now);
        }
        let reach = (!department).then(|| {
            let own = posts_of.get(s.id.as_str()).map_or(&[][..], Vec::as_slice);
            let planned = planned_of.get(s.id.as_str()).map_or(&[][..], Vec::as_slice);
            (
                measure_reach(own, planned, period, now),
                measure_reach(own, planned, previous_period, now),
            )
        });
        let sc = scores(
            &m,
            weights,
            !department,
            reach
                .as_ref()
                .and_then(|(r, _)| reach_score(r, weights, period)),
        );
        let prev = scores(
            &p,
            weights,
            !department,
            reach
                .as_ref()
                .and_then(|(_, pr)| reach_score(pr, weights, previous_period)),
        );
        let reasons: Vec<String> = [
            silence(&m, weights),
            reach.as_ref().and_then(|(r, _)| quiet(r, weights)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        Unit {
            kind,
            id: s.id.clone(),
            name_zh: s.name_zh.clone(),
            name_en: s.name_en.clone(),
            peer_group: s.peer_group.clone(),
            trend: match (sc.overall, prev.overall) {
                (Some(a), Some(b)) => Some(round1(a - b)),
                _ => None,
            },
            service: m.service,
            approval: m.approval,
            interaction: (!department).then_some(m.interaction),
            reach: reach.map(|(r, _)| r),
            scores: sc,
            previous: prev,
            rank: None,
            peers: 0,
            silent: reason.is_some(),
            silent_reason: reason,
            worst_overdue: m.overdue.into_iter().take(3).collect(),
        }
    };
    let none: Vec<&Case> = Vec::new();
    let mut departments: Vec<Unit> = subjects
        .departments
        .iter()
        .map(|s| {
            unit(
                "department",
                s,
                by_department.get(s.id.as_str()).unwrap_or(&none),
            )
        })
        .collect();
    let mut accounts: Vec<Unit> = subjects
        .accounts
        .iter()
        .map(|s| unit("account", s, by_account.get(s.id.as_str()).unwrap_or(&none)))
        .collect();
    rank(&mut departments);
    rank(&mut accounts);
    let active: Vec<&Subject> = subjects
        .departments
        .iter()
        .filter(|s| {
            departments
                .iter()
                .any(|u| u.id == s.id && u.service.received > 0)
        })
        .collect();
    let day = 86_400_000;
    let step = if period.to - period.from <= 14 * day {
        day
    } else {
        7 * day
    };
    let mut series = Vec::new();
    let mut from = period.from;
    while from < period.to && series.len() < 60 {
        let to = (from + step).min(period.to);
        let p = Period { from, to };
        let overall = active
            .iter()
            .map(|s| {
                let mine = by_department.get(s.id.as_str()).unwrap_or(&none);
                let m = measure(mine, cases, Some(s.id.as_str()), calendar, p, now);
                (s.id.clone(), scores(&m, weights, false, None).overall)
            })
            .collect();
        series.push(Step { from, to, overall });
        from = to;
    }
    let heat = active
        .iter()
        .map(|s| {
            let mine = by_department.get(s.id.as_str()).unwrap_or(&none);
            let by_day = figures::answer_secs_by_weekday(mine, calendar, period, now);
            HeatRow {
                department: s.id.clone(),
                name_zh: s.name_zh.clone(),
                name_en: s.name_en.clone(),
                answered: std::array::from_fn(|i| by_day[i].len()),
                median_answer_secs: by_day.map(figures::median),
            }
        })
        .collect();
    Evaluation {
        period,
        previous_period,
        generated_at: now,
        utc_offset_secs: calendar.offset_secs(),
        weights: weights.clone(),
        departments,
        accounts,
        series,
        heat,
    }
}

/// Rank units by `overall` within their peer group (ties share a rank), best first overall.
fn rank(units: &mut [Unit]) {
    units.sort_by(|a, b| {
        let key = |u: &Unit| u.scores.overall.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then(a.id.cmp(&b.id))
    });
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for u in units.iter() {
        if let Some(o) = u.scores.overall {
            groups.entry(u.peer_group.clone()).or_default().push(o);
        }
    }
    for u in units.iter_mut() {
        let scores = groups.get(&u.peer_group).cloned().unwrap_or_default();
        u.peers = scores.len();
        u.rank = u
            .scores
            .overall
            .map(|o| 1 + scores.iter().filter(|s| **s > o).count());
    }
}

impl Subjects {
    /// The departments of `router` and the Mastodon and Weibo accounts of `matrix`.
    pub fn of(
        router: &crate::cases::Router,
        matrix: Option<&crate::respond::matrix::Matrix>,
    ) -> Subjects {
        use crate::respond::matrix::Platform;
        let departments = router
            .departments
            .all()
            .iter()
            .map(|d| Subject {
                id: d.id.clone(),
                name_zh: d.name_zh.clone(),
                name_en: d.name_en.clone(),
                peer_group: String::new(),
            })
            .collect();
        let accounts = matrix
            .map(|m| {
                m.accounts()
                    .iter()
                    .filter(|a| matches!(a.platform, Platform::Mastodon | Platform::Weibo))
                    .map(|a| Subject {
                        id: a.id.as_str().to_string(),
                        name_zh: a.name.clone(),
                        name_en: a.handle.clone(),
                        peer_group: format!(
                            "{}/{}",
                            format!("{:?}", a.level).to_lowercase(),
                            a.function
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Subjects {
            departments,
            accounts,
        }
    }

    /// Only the department `id` (and no account), or only the account `id`.
    pub fn only(mut self, department: Option<&str>, account: Option<&str>) -> Subjects {
        if let Some(d) = department {
            self.departments.retain(|s| s.id == d);
            self.accounts.clear();
        }
        if let Some(a) = account {
            self.accounts.retain(|s| s.id == a);
            if department.is_none() {
                self.departments.clear();
            }
        }
        self
    }
}

/// The period `from`..`to` ([`crate::clock::period`]); by default the 30 days up to `now`.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    offset_secs: i32,
    now: i64,
) -> Result<Period, String> {
    let (from, to) = crate::clock::period(from, to, offset_secs, now, 30)?;
    Ok(Period { from, to })
}
