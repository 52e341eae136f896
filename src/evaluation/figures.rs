//! The figures of one account or department over a period, computed from its cases, and the
//! scores made of them (see the module docs for each definition).

use super::weights::Weights;
use crate::cases::deadlines::Calendar;
use crate::cases::model::{Case, Channel, Satisfaction};
use serde::Serialize;

/// A period `[from, to)` in unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Start (inclusive).
    pub from: i64,
    /// End (exclusive).
    pub to: i64,
}

impl Period {
    /// The period of the same length just before this one.
    pub fn previous(&self) -> Period {
        let len = (self.to - self.from).max(0);
        Period {
            from: self.from - len,
            to: self.from,
        }
    }
}

/// Median and 90th percentile of some durations (seconds), and how many there were.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Secs {
    /// Median (the lower middle of an even count).
    pub median: Option<f64>,
    /// 90th percentile (nearest rank).
    pub p90: Option<f64>,
    /// Durations measured.
    pub n: usize,
}

impl Secs {
    fn of(mut v: Vec<f64>) -> Secs {
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least q of the values at or below it.
            let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            Some(v[k - 1])
        };
        Secs {
            median: rank(0.5),
            p90: rank(0.9),
            n: v.len(),
        }
    }
}

/// 服务力 figures: the requests received in the period and what became of them by its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Service {
    /// Requests received (cases created) in the period.
    pub received: usize,
    /// Of those, accepted (受理) by the end of the period.
    pub accepted: usize,
    /// Accepted at or before the accept deadline.
    pub accepted_on_time: usize,
    /// Answered (反馈: the answer went out) by the end of the period.
    pub answered: usize,
    /// Answered at or before the answer deadline (counted from acceptance, in working time).
    pub answered_on_time: usize,
    /// Not answered at the end of the period and past a deadline then.
    pub overdue: usize,
    /// Sent back (退回) as misrouted: by this department (for a department), of these
    /// requests (for an account).
    pub returned: usize,
    /// Reopened (不满意, a follow-up) by the end of the period.
    pub reopened: usize,
    /// From receipt to acceptance.
    pub ack_secs: Secs,
    /// From acceptance to the answer.
    pub answer_secs: Secs,
}

/// 认同度 figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Approval {
    /// Answers rated (by the requester's reply, or by an operator).
    pub rated: usize,
    /// Rated satisfied.
    pub satisfied: usize,
    /// `satisfied / rated`.
    pub satisfaction_rate: Option<f64>,
    /// Accounts: replies to its own posts that approve (点赞, 谢谢 …).
    pub replies_positive: usize,
    /// Replies that disapprove (敷衍, 不满意 …).
    pub replies_negative: usize,
    /// `replies_positive / (replies_positive + replies_negative)`.
    pub reply_positive_share: Option<f64>,
}

impl Approval {
    /// Count `replies` (an account's) made in `period` (as of its end, or `now`).
    pub fn with_replies(
        mut self,
        replies: &[&super::replies::Reply],
        period: Period,
        now: i64,
    ) -> Approval {
        let end = period.to.min(now);
        for r in replies.iter().filter(|r| r.at >= period.from && r.at < end) {
            match r.verdict.as_str() {
                "positive" => self.replies_positive += 1,
                "negative" => self.replies_negative += 1,
                _ => {}
            }
        }
        self.reply_positive_share = ratio(
            self.replies_positive,
            self.replies_positive + self.replies_negative,
        );
        self
    }
}

/// 认同度: the satisfaction rate (with at least `min_rated` ratings) and the share of positive
/// replies (with at least `min_rated` replies saying either way), weighted.
pub fn approval_score(a: &Approval, w: &Weights) -> Option<f64> {
    let said = a.replies_positive + a.replies_negative;
    weighted(&[
        (
            w.approval.satisfaction,
            a.satisfaction_rate.filter(|_| a.rated >= w.min_rated),
        ),
        (
            w.approval.replies,
            a.reply_positive_share.filter(|_| said >= w.min_rated),
        ),
    ])
    .map(|v| round1(100.0 * v))
}

/// 互动力 figures (accounts): the requests addressed to the account on its platform.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interaction {
    /// Requests addressed to the account (an @, a comment, a message).
    pub addressed: usize,
    /// Acknowledged by it.
    pub acknowledged: usize,
    /// Answered by it.
    pub answered: usize,
    /// `answered / addressed`.
    pub reply_share: Option<f64>,
}

/// Scores 0–100; `None` where the period gives no data for a dimension.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    /// 传播力 (not measured yet: always `None`).
    pub reach: Option<f64>,
    /// 服务力.
    pub service: Option<f64>,
    /// 互动力.
    pub interaction: Option<f64>,
    /// 认同度.
    pub approval: Option<f64>,
    /// The weighted mean of the dimensions that have a score.
    pub overall: Option<f64>,
}

/// An open request past its deadline at the end of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overdue {
    /// The case.
    pub id: String,
    /// The deadline it missed (ms).
    pub due: i64,
    /// How late at the end of the period (seconds).
    pub late_secs: f64,
}

/// The deadline facts of one case at the end of a period.
struct Facts {
    accepted_at: Option<i64>,
    accept_due: Option<i64>,
    answered_at: Option<i64>,
    answer_due: Option<i64>,
    reopened: bool,
    returns: Vec<String>,
    rating: Option<Satisfaction>,
}

fn facts(c: &Case, calendar: &Calendar, end: i64) -> Facts {
    let first = |action: &str| {
        c.history
            .iter()
            .find(|e| e.action == action && e.at < end)
            .map(|e| e.at)
    };
    let kind = c.kinds.first().map_or("", String::as_str);
    let deadlines = calendar.deadlines_for(kind, c.department.as_deref());
    let accepted_at = first("accept");
    let accept_due = deadlines.map(|d| calendar.due(c.created_at, d.accept));
    let answer_due = match (deadlines, accepted_at) {
        (Some(d), Some(a)) => Some(calendar.due(a, d.answer)),
        _ => None,
    };
    // A rating counts once it was given before the end; an imported rating has no event.
    let rated_in_time = c
        .history
        .iter()
        .filter(|e| e.action == "rate")
        .all(|e| e.at < end);
    Facts {
        accepted_at,
        accept_due,
        answered_at: first("answer"),
        answer_due,
        reopened: first("reopen").is_some(),
        returns: returns(c, end),
        rating: c.satisfaction.filter(|_| rated_in_time),
    }
}

/// The departments that sent `c` back before `end`, one per return: the department it was
/// assigned to then (the last `assign` before the `return`).
fn returns(c: &Case, end: i64) -> Vec<String> {
    let mut current: Option<&str> = None;
    let mut out = Vec::new();
    for e in c.history.iter().filter(|e| e.at < end) {
        match e.action.as_str() {
            "assign" => current = Some(e.detail.as_str()),
            "return" => {
                out.push(current.unwrap_or_default().to_string());
                current = None;
            }
            _ => {}
        }
    }
    out
}

/// Everything measured of one unit's cases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// 服务力.
    pub service: Service,
    /// 认同度.
    pub approval: Approval,
    /// 互动力 (the platform cases among them).
    pub interaction: Interaction,
    /// Overdue cases, latest first.
    pub overdue: Vec<Overdue>,
}

/// Measure `cases` (those of one unit) received in `period`, as things stood at its end (or
/// at `now`, if earlier). `returned_by` counts returns by that department instead of returns of
/// these cases (a department is measured on what it sent back, wherever the case is now).
pub fn measure(
    cases: &[&Case],
    all: &[Case],
    returned_by: Option<&str>,
    calendar: &Calendar,
    period: Period,
    now: i64,
) -> Measured {
    let end = period.to.min(now);
    let within = |c: &Case| c.created_at >= period.from && c.created_at < period.to;
    let mut m = Measured::default();
    let (mut ack, mut answer) = (Vec::new(), Vec::new());
    for c in cases.iter().copied().filter(|c| within(c)) {
        let f = facts(c, calendar, end);
        let s = &mut m.service;
        s.received += 1;
        if let Some(a) = f.accepted_at {
            s.accepted += 1;
            if f.accept_due.is_none_or(|d| a <= d) {
                s.accepted_on_time += 1;
            }
            ack.push((a - c.created_at).max(0) as f64 / 1000.0);
        }
        match f.answered_at {
            Some(t) => {
                s.answered += 1;
                if f.answer_due.is_none_or(|d| t <= d) {
                    s.answered_on_time += 1;
                }
                if let Some(a) = f.accepted_at {
                    answer.push((t - a).max(0) as f64 / 1000.0);
                }
            }
            None => {
                let due = match f.accepted_at {
                    None => f.accept_due,
                    Some(_) => f.answer_due,
                };
                if let Some(d) = due.filter(|d| *d < end) {
                    s.overdue += 1;
                    m.overdue.push(Overdue {
                        id: c.id.clone(),
                        due: d,
                        late_secs: (end - d) as f64 / 1000.0,
                    });
                }
            }
        }
        if returned_by.is_none() {
            s.returned += f.returns.len();
        }
        if f.reopened {
            s.reopened += 1;
        }
        if let Some(r) = f.rating {
            m.approval.rated += 1;
            if r == Satisfaction::Satisfied {
                m.approval.satisfied += 1;
            }
        }
        if matches!(c.channel, Channel::Platform { .. }) {
            let i = &mut m.interaction;
            i.addressed += 1;
            if f.accepted_at.is_some() {
                i.acknowledged += 1;
            }
            if f.answered_at.is_some() {
                i.answered += 1;
            }
        }
    }
    if let Some(d) = returned_by {
        // The returns this department made, of requests received in the period.
        m.service.returned = all
            .iter()
            .filter(|c| within(c))
            .map(|c| {
                facts(c, calendar, end)
                    .returns
                    .iter()
                    .filter(|r| r.as_str() == d)
                    .count()
            })
            .sum();
    }
    m.service.ack_secs = Secs::of(ack);
    m.service.answer_secs = Secs::of(answer);
    m.approval.satisfaction_rate = ratio(m.approval.satisfied, m.approval.rated);
    m.interaction.reply_share = ratio(m.interaction.answered, m.interaction.addressed);
    m.overdue
        .sort_by(|a, b| b.late_secs.total_cmp(&a.late_secs).then(a.id.cmp(&b.id)));
    m
}

/// Time from acceptance to the answer (seconds) of each of `cases` received in `period` and
/// answered by its end, by the weekday it came in (0 = Monday, in the office's time).
pub fn answer_secs_by_weekday(
    cases: &[&Case],
    calendar: &Calendar,
    period: Period,
    now: i64,
) -> [Vec<f64>; 7] {
    use chrono::Datelike;
    let end = period.to.min(now);
    let mut out: [Vec<f64>; 7] = Default::default();
    for c in cases
        .iter()
        .filter(|c| c.created_at >= period.from && c.created_at < period.to)
    {
        let f = facts(c, calendar, end);
        let (Some(a), Some(t)) = (f.accepted_at, f.answered_at) else {
            continue;
        };
        let local = c.created_at + i64::from(calendar.offset_secs()) * 1000;
        let Some(day) = chrono::DateTime::from_timestamp_millis(local) else {
            continue;
        };
        out[day.weekday().num_days_from_monday() as usize].push((t - a).max(0) as f64 / 1000.0);
    }
    out
}

/// The median of `v` (nearest rank), as [`Secs`] computes it.
pub fn median(v: Vec<f64>) -> Option<f64> {
    Secs::of(v).median
}

/// 传播力 figures (accounts): its own posts as its timeline shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reach {
    /// Whether the account's timeline has been read at all (else nothing below is known).
    pub read: bool,
    /// Posts of any kind made in the period.
    pub posts: usize,
    /// Of those, its own posts (not reposts, not replies).
    pub own_posts: usize,
    /// Reposts it made (amplification).
    pub reposts_made: usize,
    /// Replies it made.
    pub replies_made: usize,
    /// Reposts, replies and likes of its own posts, as the platform reports them.
    pub reposts: u64,
    /// Replies to its own posts.
    pub replies: u64,
    /// Likes of its own posts.
    pub likes: u64,
    /// `(reposts + replies + likes) / own_posts`.
    pub engagement_per_post: Option<f64>,
    /// Share of the period's posts with public-service content.
    pub public_service_share: Option<f64>,
    /// Its last post before the period's end (ms).
    pub last_post_at: Option<i64>,
    /// Days from that post to the period's end.
    pub quiet_days: Option<f64>,
    /// Notices whose fan-out started in the period with this account in the plan.
    pub planned: usize,
    /// Of those, posted by the period's end.
    pub fanned_out: usize,
    /// `fanned_out / planned`.
    pub coverage: Option<f64>,
    /// From the fan-out's start to the account's post.
    pub fanout_secs: Secs,
}

/// Measure `posts` (one account's) over `period` as of its end (or `now`).
pub fn measure_reach(
    posts: &[&super::timeline::OwnPost],
    planned: &[&super::fanout::Planned],
    period: Period,
    now: i64,
) -> Reach {
    let end = period.to.min(now);
    let mut r = Reach {
        read: !posts.is_empty(),
        ..Reach::default()
    };
    let mut delays = Vec::new();
    for p in planned.iter().filter(|p| p.at >= period.from && p.at < end) {
        r.planned += 1;
        if let Some(d) = p.done_at.filter(|d| *d < end) {
            r.fanned_out += 1;
            delays.push((d - p.at).max(0) as f64 / 1000.0);
        }
    }
    r.coverage = ratio(r.fanned_out, r.planned);
    r.fanout_secs = Secs::of(delays);
    let mut public = 0;
    for p in posts {
        if p.at < end {
            r.last_post_at = Some(r.last_post_at.map_or(p.at, |l| l.max(p.at)));
        }
        if p.at < period.from || p.at >= end {
            continue;
        }
        r.posts += 1;
        if p.public_service {
            public += 1;
        }
        match p.kind.as_str() {
            "repost" => r.reposts_made += 1,
            "reply" => r.replies_made += 1,
            _ => {
                r.own_posts += 1;
                r.reposts += p.reposts;
                r.replies += p.replies;
                r.likes += p.likes;
            }
        }
    }
    r.engagement_per_post =
        (r.own_posts > 0).then(|| (r.reposts + r.replies + r.likes) as f64 / r.own_posts as f64);
    r.public_service_share = ratio(public, r.posts);
    r.quiet_days = r
        .last_post_at
        .map(|l| ((end - l) as f64 / 86_400_000.0 * 10.0).floor() / 10.0);
    r
}

/// The reach score of `r` over `period` (none when the timeline was never read).
pub fn reach_score(r: &Reach, w: &Weights, period: Period) -> Option<f64> {
    if !r.read {
        return None;
    }
    let weeks = ((period.to - period.from) as f64 / (7.0 * 86_400_000.0)).max(1.0 / 7.0);
    let activity = (r.posts as f64 / (w.reach.posts_per_week * weeks)).min(1.0);
    let engagement = r
        .engagement_per_post
        .map_or(0.0, |e| (e / w.reach.engagement_per_post).min(1.0));
    weighted(&[
        (w.reach.activity, Some(activity)),
        (w.reach.engagement, Some(engagement)),
    ])
    .map(|v| round1(100.0 * v))
}

/// Why an account counts as silent for its posting, if it does: it posted none of the notices
/// it was planned for, or (its timeline read) it has not posted for too long.
pub fn quiet(r: &Reach, w: &Weights) -> Option<String> {
    if r.planned > 0 && r.fanned_out == 0 {
        return Some(format!(
            "posted none of the {} notices it was planned for; 未转发 {} 条通报",
            r.planned, r.planned
        ));
    }
    if !r.read {
        return None;
    }
    match r.quiet_days {
        Some(d) if d < w.silence.max_quiet_days => None,
        Some(d) => Some(format!(
            "no post for {d:.0} days (≥ {:.0}); {d:.0} 天无发布",
            w.silence.max_quiet_days
        )),
        None => Some("no post before the period's end; 期末前无发布".into()),
    }
}

/// `n / d`, none of nothing.
pub fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// A weighted mean of the parts that exist (their weights shared among them).
pub(crate) fn weighted(parts: &[(f64, Option<f64>)]) -> Option<f64> {
    let (mut sum, mut w) = (0.0, 0.0);
    for (weight, v) in parts {
        if let Some(v) = v {
            sum += weight * v;
            w += weight;
        }
    }
    (w > 0.0).then(|| sum / w)
}

/// Round to one decimal (scores) so reports and tests read the same figure.
pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The scores of `m` under `w`; `interaction` only for accounts, `reach` as measured
/// ([`reach_score`], accounts whose timeline was read).
pub fn scores(m: &Measured, w: &Weights, account: bool, reach: Option<f64>) -> Scores {
    let s = &m.service;
    let service = (s.received > 0).then(|| {
        let share = |n: usize| n as f64 / s.received as f64;
        let sw = &w.service;
        weighted(&[
            (sw.accepted_on_time, Some(share(s.accepted_on_time))),
            (sw.answered, Some(share(s.answered))),
            (sw.answered_on_time, Some(share(s.answered_on_time))),
            (sw.not_returned, Some((1.0 - share(s.returned)).max(0.0))),
            (sw.not_reopened, Some(1.0 - share(s.reopened))),
        ])
        .map(|v| round1(100.0 * v))
    });
    let service = service.flatten();
    let i = &m.interaction;
    let interaction = if account && i.addressed > 0 {
        let share = |n: usize| n as f64 / i.addressed as f64;
        weighted(&[
            (w.interaction.acknowledged, Some(share(i.acknowledged))),
            (w.interaction.answered, Some(share(i.answered))),
        ])
        .map(|v| round1(100.0 * v))
    } else {
        None
    };
    let approval = approval_score(&m.approval, w);
    let d = &w.dimensions;
    let overall = weighted(&[
        (d.reach, reach),
        (d.service, service),
        (d.interaction, interaction),
        (d.approval, approval),
    ])
    .map(round1);
    Scores {
        reach,
        service,
        interaction,
        approval,
        overall,
    }
}

/// Why a unit counts as silent (聋哑) in the period, if it does: it answered under the
/// threshold share of enough requests.
pub fn silence(m: &Measured, w: &Weights) -> Option<String> {
    let s = &m.service;
    if s.received == 0 || s.received < w.silence.min_requests {
        return None;
    }
    let share = s.answered as f64 / s.received as f64;
    (share < w.silence.min_answer_share).then(|| {
        format!(
            "answered {} of {} requests ({:.0}% < {:.0}%); 答复 {}/{}",
            s.answered,
            s.received,
            share * 100.0,
            w.silence.min_answer_share * 100.0,
            s.answered,
            s.received
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Secs::of(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.p90, s.n), (Some(3.0), Some(5.0), 5));
        let s = Secs::of(vec![10.0, 20.0]);
        assert_eq!((s.median, s.p90), (Some(10.0), Some(20.0)));
        assert_eq!(Secs::of(Vec::new()), Secs::default());
    }

    #[test]
    fn a_missing_dimension_shares_its_weight() {
        assert_eq!(weighted(&[(1.0, Some(0.5)), (3.0, None)]), Some(0.5));
        assert_eq!(weighted(&[(1.0, None)]), None);
        assert_eq!(weighted(&[(1.0, Some(1.0)), (3.0, Some(0.0))]), Some(0.25));
    }
}
