//! The case workflow over the shipped rules, a memory store and outbox and a real audit log:
//! intake from mentions, duplicates, incident links, the two-person answer, ratings and
//! follow-ups from replies, 退回 and what the router learns, deadlines and escalation on an
//! injected time, and the refusals.

use crate::util::{rules_dir, shipped_matrix, shipped_rules};
use huiying::cases::deadlines::Calendar;
use huiying::cases::store::CaseStore;
use huiying::cases::texts::Texts;
use huiying::cases::workflow::{Outlet, SYSTEM};
use huiying::cases::{
    Actor, CaseState, Cases, CasesConfig, Channel, Contact, Intake, MentionOutcome, Router,
    WorkflowError,
};
use huiying::incidents::{Incident, IncidentKind};
use huiying::normalize::{Author, Mention};
use huiying::respond::audit::AuditLog;
use huiying::respond::outbox::{ActionKind, MemoryOutbox, OutboxStore, Priority};
use std::sync::{Arc, Mutex};

/// Thursday 2026-12-03 10:00 in Beijing (02:00 UTC), a working day, in ms.
pub const T0: i64 = 1_796_263_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

pub struct Setup {
    pub cases: Cases,
    pub outbox: Arc<MemoryOutbox>,
    pub audit: Arc<Mutex<AuditLog>>,
    pub incidents: huiying::live::LiveIncidents,
    _dir: tempfile::TempDir,
}

pub fn setup_with(cfg: CasesConfig, store: CaseStore) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let router = Router::load(&rules_dir()).expect("router");
    let calendar = Calendar::load(
        &rules_dir().join("cases/calendar.toml"),
        &huiying::cases::KINDS,
    )
    .expect("calendar");
    let texts = Texts::load(&rules_dir()).expect("texts");
    let outbox = Arc::new(MemoryOutbox::new());
    let audit = Arc::new(Mutex::new(
        AuditLog::open(&dir.path().join("audit.jsonl")).expect("audit"),
    ));
    let incidents: huiying::live::LiveIncidents = Default::default();
    let outlet = Outlet {
        outbox: outbox.clone(),
        matrix: Arc::new(shipped_matrix().clone()),
        wake: Default::default(),
        mail: true,
    };
    let cases = Cases::new(
        store,
        router,
        calendar,
        texts,
        cfg,
        Some(outlet),
        Some(audit.clone()),
        Some(incidents.clone()),
    );
    Setup {
        cases,
        outbox,
        audit,
        incidents,
        _dir: dir,
    }
}

pub fn setup() -> Setup {
    setup_with(CasesConfig::default(), CaseStore::memory())
}

/// A Weibo mention of `@北京发布` (account bj-publicity).
pub fn weibo(id: &str, author: &str, text: &str, ts: i64) -> Mention {
    Mention {
        id: format!("weibo:{id}"),
        ts,
        text: text.into(),
        author: Some(Author {
            id: author.into(),
            ..Author::default()
        }),
        repost_of: None,
        reply_to: None,
        region: None,
        lang: None,
        source: Some("weibo".into()),
        official: false,
        to: None,
        thread: None,
    }
}

fn kinds(k: &[&str]) -> Vec<String> {
    k.iter().map(|s| s.to_string()).collect()
}

fn intake(out: MentionOutcome) -> huiying::cases::IntakeOutcome {
    match out {
        MentionOutcome::Intake(i) => i,
        other => panic!("not an intake: {other:?}"),
    }
}

const WATER: &str = "@北京发布 海淀区学院路小区停水两天了，自来水一直没来，什么时候恢复供水？";
const WATER_2: &str = "@北京发布 海淀区学院路小区停水两天了还没来水，请尽快恢复供水";

fn operator() -> Actor<'static> {
    Actor::operator("duty-li")
}

fn water_staff() -> Actor<'static> {
    Actor {
        name: "water-zhang",
        department: Some("water"),
    }
}

fn audit_actions(s: &Setup) -> Vec<String> {
    let mut g = s.audit.lock().expect("audit");
    g.tail(1000)
        .expect("tail")
        .records
        .iter()
        .map(|r| r.action.clone())
        .collect()
}

#[test]
fn a_request_to_an_account_becomes_a_case_acknowledged_and_transferred() {
    let s = setup();
    let m = weibo("5001", "学院路居民", WATER, T0);
    let out = intake(
        s.cases
            .on_mention(&m, &kinds(&["complaint"]), T0)
            .expect("intake"),
    );
    assert!(out.created);
    let c = out.case;
    assert_eq!(c.state, CaseState::Assigned, "{c:#?}");
    assert_eq!(c.department.as_deref(), Some("water"));
    assert_eq!(c.region.as_deref(), Some("110108"), "海淀区");
    assert_eq!(
        c.channel,
        Channel::Platform {
            account: "bj-publicity".into()
        }
    );
    assert!(c.id.starts_with("20261203-"), "{}", c.id);
    // Deadlines from the calendar: a complaint is accepted within 1 h; the water department's
    // own line answers it within 2 working days (Thursday → the end of Monday, 17:30).
    assert_eq!(c.accept_due, Some(T0 + HOUR));
    assert_eq!(c.answer_due, Some(T0 + 4 * DAY + 7 * HOUR + 30 * MIN));
    // The acknowledgement: a comment on the citizen's weibo, naming the case number.
    let jobs = s
        .outbox
        .jobs_for_notice(&format!("case:{}:ack", c.id))
        .expect("jobs");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let j = &jobs[0];
    assert_eq!(j.account_id, "bj-publicity");
    assert_eq!(j.action, ActionKind::Comment);
    assert_eq!(j.priority, Priority::Routine);
    assert_eq!(j.in_reply_to.as_deref(), Some("5001"));
    assert!(
        j.body.contains(&c.id) && j.body.contains("水务"),
        "{}",
        j.body
    );
    // Every transition is in the audit log, with the actor.
    let actions = audit_actions(&s);
    for a in ["case.receive", "case.accept", "case.assign"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    // The same mention again (a feed's overlap) is the same case, and nothing is sent twice.
    let again = intake(
        s.cases
            .on_mention(&m, &kinds(&["complaint"]), T0)
            .expect("again"),
    );
    assert!(!again.created && !again.joined);
    assert_eq!(again.case.id, c.id);
    assert_eq!(s.outbox.depth().expect("depth"), 1);
}

#[test]
fn mentions_not_addressed_or_without_a_cue_are_not_cases() {
    let s = setup();
    let plain = weibo("5002", "路人", "海淀区学院路小区停水两天了", T0);
    assert_eq!(
        s.cases
            .on_mention(&plain, &kinds(&["complaint"]), T0)
            .expect("ok"),
        MentionOutcome::Ignored
    );
    let no_cue = weibo("5003", "路人", "@北京发布 今天天气不错", T0);
    assert_eq!(
        s.cases.on_mention(&no_cue, &[], T0).expect("ok"),
        MentionOutcome::Ignored
    );
    // A feed that says whom the mention addresses (a comment to the account) needs no @.
    let mut to = weibo("5004", "路人", "学院路小区停水两天了，什么时候恢复？", T0);
    to.to = Some("北京发布".into());
    assert!(matches!(
        s.cases
            .on_mention(&to, &kinds(&["complaint"]), T0)
            .expect("ok"),
        MentionOutcome::Intake(_)
    ));
}

#[test]
fn the_same_problem_from_several_citizens_is_one_case_and_each_is_answered() {
    let s = setup();
    let a = intake(
        s.cases
            .on_mention(
                &weibo("6001", "居民甲", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("a"),
    );
    let b = intake(
        s.cases
            .on_mention(
                &weibo("6002", "居民乙", WATER_2, T0 + HOUR),
                &kinds(&["complaint"]),
                T0 + HOUR,
            )
            .expect("b"),
    );
    assert!(b.joined, "{b:#?}");
    assert_eq!(b.case.id, a.case.id);
    assert_eq!(b.case.requesters.len(), 2);
    // Another problem in the same place is another case.
    let other = intake(
        s.cases
            .on_mention(
                &weibo(
                    "6003",
                    "居民丙",
                    "@北京发布 海淀区学院路路灯坏了一个月了，晚上很黑",
                    T0,
                ),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("c"),
    );
    assert!(other.created);
    // Not water: a complaint's 5 working days (Thursday → the end of the next Thursday).
    assert_ne!(other.case.department.as_deref(), Some("water"));
    assert_eq!(
        other.case.answer_due,
        Some(T0 + 7 * DAY + 7 * HOUR + 30 * MIN)
    );
    // Both requesters got an acknowledgement; the answer goes to both.
    let ack = s
        .outbox
        .jobs_for_notice(&format!("case:{}:ack", a.case.id))
        .expect("acks");
    assert_eq!(ack.len(), 2);
    let c = s
        .cases
        .answer(
            &a.case.id,
            "供水管道已抢修完毕，今晚八点前恢复供水。",
            &water_staff(),
            None,
            T0 + 2 * HOUR,
        )
        .expect("draft");
    assert!(c.pending_answer.is_some());
    let c = s
        .cases
        .approve_answer(&c.id, &operator(), Some(c.version), T0 + 2 * HOUR)
        .expect("approve");
    assert_eq!(c.state, CaseState::Answered);
    let answers = s
        .outbox
        .jobs_for_notice(&format!("case:{}:answer:0", c.id))
        .expect("answers");
    let mut targets: Vec<_> = answers
        .iter()
        .filter_map(|j| j.in_reply_to.clone())
        .collect();
    targets.sort();
    assert_eq!(targets, ["6001", "6002"]);
    assert!(answers[0].body.contains("恢复供水"), "{}", answers[0].body);
}

#[test]
fn answers_need_a_second_person_and_departments_act_on_their_own_cases_only() {
    let s = setup();
    let c = intake(
        s.cases
            .on_mention(
                &weibo("7001", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    let housing = Actor {
        name: "housing-wu",
        department: Some("housing"),
    };
    for r in [
        s.cases.start(&c.id, &housing, None, T0),
        s.cases.answer(&c.id, "不归我们", &housing, None, T0),
        s.cases.send_back(&c.id, "不归我们", &housing, None, T0),
    ] {
        assert!(matches!(r, Err(WorkflowError::Forbidden(_))), "{r:?}");
    }
    // Operator-only steps refuse a department user.
    assert!(matches!(
        s.cases.close(&c.id, &water_staff(), None, T0),
        Err(WorkflowError::Forbidden(_))
    ));
    let c = s
        .cases
        .start(&c.id, &water_staff(), None, T0 + MIN)
        .expect("start");
    let c = s
        .cases
        .answer(
            &c.id,
            "已安排维修。",
            &water_staff(),
            Some(c.version),
            T0 + 2 * MIN,
        )
        .expect("answer");
    // Nothing went out yet.
    assert!(s
        .outbox
        .jobs_for_notice(&format!("case:{}:answer:0", c.id))
        .expect("jobs")
        .is_empty());
    // The author cannot approve it, even as an operator under the same name.
    let same = Actor::operator("water-zhang");
    assert!(matches!(
        s.cases.approve_answer(&c.id, &same, Some(c.version), T0),
        Err(WorkflowError::Forbidden(_))
    ));
    // A stale version is refused.
    assert!(matches!(
        s.cases
            .approve_answer(&c.id, &operator(), Some(c.version - 1), T0),
        Err(WorkflowError::Changed { .. })
    ));
    let c = s
        .cases
        .approve_answer(&c.id, &operator(), Some(c.version), T0 + 3 * MIN)
        .expect("approve");
    assert_eq!(c.state, CaseState::Answered);
    assert_eq!(
        s.outbox
            .jobs_for_notice(&format!("case:{}:answer:0", c.id))
            .expect("jobs")
            .len(),
        1
    );
}

#[test]
fn without_answer_approval_the_answer_goes_out_at_once() {
    let s = setup_with(
        CasesConfig {
            answer_approvals: 0,
            ..CasesConfig::default()
        },
        CaseStore::memory(),
    );
    let c = intake(
        s.cases
            .on_mention(
                &weibo("7101", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    let c = s
        .cases
        .answer(&c.id, "已恢复供水。", &water_staff(), None, T0 + HOUR)
        .expect("answer");
    assert_eq!(c.state, CaseState::Answered);
}

/// Answer case `id` and let the platform accept the answer as post `post`.
fn answered(s: &Setup, id: &str, post: &str, at: i64) {
    let c = s.cases.get(id).expect("case");
    let c = s
        .cases
        .answer(&c.id, "水管已修好，已恢复供水。", &water_staff(), None, at)
        .expect("answer");
    s.cases
        .approve_answer(&c.id, &operator(), Some(c.version), at)
        .expect("approve");
    for j in s
        .outbox
        .jobs_for_notice(&format!("case:{id}:answer:0"))
        .expect("jobs")
    {
        s.outbox.mark_attempting(&j.id, at).expect("attempt");
        s.outbox.mark_done(&j.id, post, at).expect("done");
    }
    let r = s.cases.supervise(at).expect("supervise");
    assert!(
        r.posts_indexed >= 1,
        "{r:?} {:?} {:?}",
        s.cases.get(id).expect("c").outbox,
        s.outbox.jobs_for_notice(&format!("case:{id}:answer:0"))
    );
}

#[test]
fn a_requesters_reply_to_the_answer_is_read_as_a_rating() {
    let s = setup();
    let c = intake(
        s.cases
            .on_mention(
                &weibo("8001", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    answered(&s, &c.id, "990001", T0 + HOUR);
    // Someone else's reply is not a rating.
    let mut other = weibo("8002", "路人", "满意", T0 + 2 * HOUR);
    other.reply_to = Some("weibo:990001".into());
    assert_eq!(
        s.cases.on_mention(&other, &[], T0 + 2 * HOUR).expect("ok"),
        MentionOutcome::Ignored
    );
    let mut reply = weibo("8003", "居民", "还没解决，水还是黄的", T0 + 3 * HOUR);
    reply.reply_to = Some("weibo:990001".into());
    let MentionOutcome::Rated(c) = s
        .cases
        .on_mention(&reply, &[], T0 + 3 * HOUR)
        .expect("rate")
    else {
        panic!("not rated");
    };
    // 不满意 reopens it with its department.
    assert_eq!(c.state, CaseState::Assigned);
    assert_eq!(c.reopened, 1);
}

#[test]
fn a_follow_up_on_a_closed_case_reopens_it_and_satisfaction_is_kept() {
    let s = setup();
    let c = intake(
        s.cases
            .on_mention(
                &weibo("8101", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    answered(&s, &c.id, "990101", T0 + HOUR);
    let mut thanks = weibo("8102", "居民", "好的，谢谢！", T0 + 2 * HOUR);
    thanks.reply_to = Some("990101".into());
    let MentionOutcome::Rated(c) = s
        .cases
        .on_mention(&thanks, &[], T0 + 2 * HOUR)
        .expect("rate")
    else {
        panic!("not rated");
    };
    assert_eq!(
        c.satisfaction,
        Some(huiying::cases::Satisfaction::Satisfied)
    );
    let c = s
        .cases
        .close(&c.id, &operator(), None, T0 + 3 * HOUR)
        .expect("close");
    let mut again = weibo("8103", "居民", "今天又停水了", T0 + DAY);
    again.reply_to = Some("990101".into());
    let MentionOutcome::FollowUp(c2) = s.cases.on_mention(&again, &[], T0 + DAY).expect("f") else {
        panic!("not a follow-up");
    };
    assert_eq!(c2.id, c.id);
    assert_eq!(c2.state, CaseState::Assigned);
}

#[test]
fn an_unrated_answer_closes_after_the_rating_days() {
    let s = setup();
    let c = intake(
        s.cases
            .on_mention(
                &weibo("8201", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    answered(&s, &c.id, "990201", T0 + HOUR);
    assert_eq!(
        s.cases.supervise(T0 + 6 * DAY).expect("s").closed_unrated,
        0
    );
    assert_eq!(
        s.cases.supervise(T0 + 8 * DAY).expect("s").closed_unrated,
        1
    );
    let c = s.cases.get(&c.id).expect("case");
    assert_eq!(c.state, CaseState::Closed);
    assert_eq!(c.satisfaction, None);
    assert!(c.history.iter().any(|e| e.action == "no_rating"));
}

#[test]
fn deadlines_remind_then_escalate_once_each_on_an_injected_time() {
    let s = setup_with(
        CasesConfig {
            auto_accept: false,
            supervisor: Some("emergency_management".into()),
            duty_addresses: [(
                "emergency_management".to_string(),
                "duty@yjj.example".to_string(),
            )]
            .into_iter()
            .collect(),
            ..CasesConfig::default()
        },
        CaseStore::memory(),
    );
    // A plea for help: accept within 15 minutes.
    let c = s
        .cases
        .intake(
            Intake {
                source_id: "form-1".into(),
                at: T0,
                text: "我家老人摔倒了起不来，求助！海淀区学院路".into(),
                handle: "hotline-0001".into(),
                kind: Some("help".into()),
                ..Intake::default()
            },
            "hotline",
            T0,
        )
        .expect("intake")
        .case;
    assert_eq!(c.state, CaseState::Received);
    assert_eq!(c.accept_due, Some(T0 + 15 * MIN));
    let r = s.cases.supervise(T0 + 5 * MIN).expect("s");
    assert_eq!((r.reminded, r.escalated), (0, 0));
    let r = s.cases.supervise(T0 + 13 * MIN).expect("s");
    assert_eq!((r.reminded, r.escalated), (1, 0));
    let r = s.cases.supervise(T0 + 14 * MIN).expect("s");
    assert_eq!((r.reminded, r.escalated), (0, 0), "reminded once");
    let r = s.cases.supervise(T0 + 16 * MIN).expect("s");
    assert_eq!((r.escalated, r.overdue), (1, 1));
    let r = s.cases.supervise(T0 + 30 * MIN).expect("s");
    assert_eq!(
        (r.escalated, r.overdue),
        (0, 1),
        "escalated once, still overdue"
    );
    assert!(s
        .cases
        .overdue(&s.cases.get(&c.id).expect("c"), T0 + 30 * MIN));
    // Accepting it late starts the answer deadline (help: 2 h) from then.
    let c = s
        .cases
        .accept(&c.id, &operator(), None, T0 + 31 * MIN)
        .expect("accept");
    assert_eq!(c.answer_due, Some(T0 + 31 * MIN + 2 * HOUR));
    assert!(!s.cases.overdue(&c, T0 + 32 * MIN));
    assert!(audit_actions(&s).iter().any(|a| a == "case.escalate"));
    // The escalation went to the supervisor's duty address as an e-mail job, once.
    let c = s.cases.get(&c.id).expect("case");
    let mails: Vec<_> = c
        .outbox
        .iter()
        .filter(|n| n.contains(":mail:escalate:"))
        .flat_map(|n| s.outbox.jobs_for_notice(n).expect("jobs"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].action, ActionKind::Mail);
    assert_eq!(mails[0].account_id, "smtp");
    assert_eq!(mails[0].in_reply_to.as_deref(), Some("duty@yjj.example"));
    assert!(mails[0].body.starts_with("督办：诉求"), "{}", mails[0].body);
}

#[test]
fn a_return_reroutes_and_the_router_learns_the_persons_choice() {
    let s = setup();
    let text = "@北京发布 海淀区学院路小区楼道里的灯坏了半年，物业不管，谁来管？";
    let c = intake(
        s.cases
            .on_mention(&weibo("9001", "居民", text, T0), &kinds(&["complaint"]), T0)
            .expect("intake"),
    )
    .case;
    let first = c.department.clone().expect("routed");
    let staff = Actor {
        name: "staff",
        department: Some(first.as_str()),
    };
    let c = s
        .cases
        .send_back(&c.id, "不属于本部门职责", &staff, None, T0 + MIN)
        .expect("return");
    assert_eq!(c.state, CaseState::Accepted);
    assert_ne!(c.department.as_deref(), Some(first.as_str()));
    assert!(matches!(
        s.cases
            .assign(&c.id, &first, &operator(), None, T0 + 2 * MIN),
        Err(WorkflowError::Case(_))
    ));
    let target = if first == "urban_management" {
        "housing"
    } else {
        "urban_management"
    };
    s.cases
        .assign(&c.id, target, &operator(), None, T0 + 2 * MIN)
        .expect("assign");
    // The next request like it goes where the person sent it.
    let next = intake(
        s.cases
            .on_mention(
                &weibo(
                    "9002",
                    "另一居民",
                    "@北京发布 朝阳区某小区楼道里的灯坏了半年，物业不管，谁来管？",
                    T0 + DAY,
                ),
                &kinds(&["complaint"]),
                T0 + DAY,
            )
            .expect("next"),
    )
    .case;
    assert_eq!(next.department.as_deref(), Some(target));
}

fn emergency(category: &str, region: &str) -> Incident {
    let g = &shipped_rules().gazetteer;
    Incident {
        categories: vec![category.into()],
        region: Some(g.region_ref(g.by_code(region).expect("region"))),
        first_seen: T0 - HOUR,
        opened_at: T0 - HOUR,
        updated_at: T0,
        mentions: 40,
        authors: 30,
        rate_per_min: 5.0,
        baseline_per_min: 0.1,
        severity: 4,
        ..Incident::new(
            format!("inc-{category}"),
            IncidentKind::Emergency,
            category,
            T0,
        )
    }
}

#[test]
fn a_plea_for_help_during_an_open_emergency_is_linked_and_goes_first() {
    let s = setup();
    s.incidents
        .write()
        .expect("live")
        .insert("inc-fire".into(), Arc::new(emergency("fire", "110108")));
    let m = weibo(
        "9101",
        "被困居民",
        "@北京发布 求救！海淀区学院路着火了，我们被困在五楼出不去",
        T0,
    );
    let c = intake(
        s.cases
            .on_mention(&m, &kinds(&["help"]), T0)
            .expect("intake"),
    )
    .case;
    assert_eq!(c.incident_id.as_deref(), Some("inc-fire"));
    assert!(c.urgent);
    assert_eq!(c.department.as_deref(), Some("emergency_management"));
    let ack = s
        .outbox
        .jobs_for_notice(&format!("case:{}:ack", c.id))
        .expect("ack");
    assert_eq!(ack[0].priority, Priority::Emergency);
    // Elsewhere, no link.
    let far = weibo("9102", "居民", "@北京发布 求助！朝阳区望京我家水管爆了", T0);
    let c = intake(
        s.cases
            .on_mention(&far, &kinds(&["help"]), T0)
            .expect("far"),
    )
    .case;
    assert_eq!(c.incident_id, None);
    assert!(!c.urgent);
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let s = setup();
    let base = Intake {
        source_id: "api:form:1".into(),
        at: T0,
        text: "路灯坏了".into(),
        handle: "form".into(),
        ..Intake::default()
    };
    let field = |r: Result<huiying::cases::IntakeOutcome, WorkflowError>| match r {
        Err(WorkflowError::Invalid { field, .. }) => field,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        field(s.cases.intake(
            Intake {
                text: " ".into(),
                ..base.clone()
            },
            SYSTEM,
            T0
        )),
        "text"
    );
    assert_eq!(
        field(s.cases.intake(
            Intake {
                handle: "".into(),
                ..base.clone()
            },
            SYSTEM,
            T0
        )),
        "handle"
    );
    assert_eq!(
        field(s.cases.intake(
            Intake {
                department: Some("ministry_of_magic".into()),
                ..base.clone()
            },
            SYSTEM,
            T0
        )),
        "department"
    );
    assert_eq!(
        field(s.cases.intake(
            Intake {
                kind: Some("wish".into()),
                ..base.clone()
            },
            SYSTEM,
            T0
        )),
        "kind"
    );
    assert_eq!(
        field(s.cases.intake(
            Intake {
                text: "长".repeat(5_001),
                ..base.clone()
            },
            SYSTEM,
            T0
        )),
        "text"
    );
    assert!(s
        .cases
        .list(&Default::default(), T0)
        .expect("list")
        .is_empty());
    assert!(matches!(
        s.cases.get("20261203-9999"),
        Err(WorkflowError::NotFound(_))
    ));
    assert!(matches!(
        s.cases.accept("nope", &operator(), None, T0),
        Err(WorkflowError::NotFound(_))
    ));
    // An answer over the platform's length (Weibo: 140 with the frame) is refused, nothing queued.
    let c = intake(
        s.cases
            .on_mention(
                &weibo("9201", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    let r = s
        .cases
        .answer(&c.id, &"已处理。".repeat(40), &water_staff(), None, T0);
    assert!(
        matches!(r, Err(WorkflowError::TooLong { limit: 140, .. })),
        "{r:?}"
    );
    assert_eq!(s.cases.get(&c.id).expect("c").version, c.version);
    // Contacts are kept apart and never in the case.
    let c = s
        .cases
        .intake(
            Intake {
                contact: Some(Contact {
                    email: Some("citizen@example.org".into()),
                    ..Contact::default()
                }),
                ..base
            },
            "form",
            T0,
        )
        .expect("ok")
        .case;
    assert!(!serde_json::to_string(&c)
        .expect("json")
        .contains("citizen@example.org"));
    assert_eq!(
        s.cases.store().contacts(&c.id).expect("contacts")["form"]
            .email
            .as_deref(),
        Some("citizen@example.org")
    );
}

#[test]
fn the_redb_store_keeps_cases_and_indexes_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("cases.redb");
    let id = {
        let s = setup_with(
            CasesConfig::default(),
            CaseStore::open(&path).expect("open"),
        );
        intake(
            s.cases
                .on_mention(
                    &weibo("9301", "居民", WATER, T0),
                    &kinds(&["complaint"]),
                    T0,
                )
                .expect("intake"),
        )
        .case
        .id
    };
    let s = setup_with(
        CasesConfig::default(),
        CaseStore::open(&path).expect("reopen"),
    );
    let again = intake(
        s.cases
            .on_mention(
                &weibo("9301", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("again"),
    );
    assert!(!again.created);
    assert_eq!(again.case.id, id);
    // The day's numbering continues.
    let next = intake(
        s.cases
            .on_mention(
                &weibo("9302", "居民", "@北京发布 朝阳区路灯坏了一个月", T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("next"),
    )
    .case;
    assert_eq!(next.id, "20261203-0002");
}

fn redis_store(ns: &str) -> CaseStore {
    let url = crate::redis_server::require_shared();
    let client = redis::Client::open(url).expect("redis url");
    CaseStore::redis(
        Arc::new(huiying::respond::redis::Blocking::with_client(client)),
        ns,
    )
}

#[test]
fn two_instances_on_one_redis_make_one_case_per_request_and_unique_numbers() {
    let ns = crate::redis_server::namespace("cases");
    let a = setup_with(CasesConfig::default(), redis_store(&ns));
    let b = setup_with(CasesConfig::default(), redis_store(&ns));
    let m = weibo("9401", "居民", WATER, T0);
    let first = intake(
        a.cases
            .on_mention(&m, &kinds(&["complaint"]), T0)
            .expect("a"),
    );
    let second = intake(
        b.cases
            .on_mention(&m, &kinds(&["complaint"]), T0)
            .expect("b"),
    );
    assert!(first.created && !second.created);
    assert_eq!(first.case.id, second.case.id);
    // Concurrent intakes of different requests on both instances: unique numbers.
    let texts = [
        "@北京发布 朝阳区望京路灯坏了",
        "@北京发布 西城区某小区电梯坏了一周",
        "@北京发布 东城区噪音扰民，工地夜间施工",
        "@北京发布 丰台区学校门口交通拥堵",
    ];
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let w = if i % 2 == 0 { &a } else { &b };
                let m = weibo(&format!("95{i:02}"), &format!("居民{i}"), t, T0);
                s.spawn(move || {
                    intake(
                        w.cases
                            .on_mention(&m, &kinds(&["complaint"]), T0)
                            .expect("intake"),
                    )
                    .case
                    .id
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), texts.len(), "{ids:?}");
    // Both see every case, and a change made on one is seen by the other.
    assert_eq!(
        b.cases.list(&Default::default(), T0).expect("list").len(),
        5
    );
    let c = a
        .cases
        .start(&first.case.id, &water_staff(), None, T0 + MIN)
        .expect("start");
    assert_eq!(
        b.cases.get(&c.id).expect("get").state,
        CaseState::InProgress
    );
    // A stale version from the other instance is refused.
    assert!(matches!(
        b.cases
            .answer(&c.id, "已处理", &water_staff(), Some(c.version - 1), T0),
        Err(WorkflowError::Changed { .. })
    ));
}

#[test]
fn a_reply_that_comes_before_its_answer_is_marked_sent_waits_for_it() {
    let s = setup();
    let c = intake(
        s.cases
            .on_mention(
                &weibo("9501", "居民", WATER, T0),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    let c = s
        .cases
        .answer(&c.id, "已恢复供水。", &water_staff(), None, T0 + HOUR)
        .expect("answer");
    s.cases
        .approve_answer(&c.id, &operator(), Some(c.version), T0 + HOUR)
        .expect("approve");
    let job = s
        .outbox
        .jobs_for_notice(&format!("case:{}:answer:0", c.id))
        .expect("jobs")
        .remove(0);
    s.outbox
        .mark_attempting(&job.id, T0 + HOUR)
        .expect("attempt");
    // The platform took the answer (post 990501) and the requester already replied to it, but
    // the outbox has not recorded the post yet.
    let mut reply = weibo("9502", "居民", "收到，谢谢，水已经来了", T0 + HOUR);
    reply.reply_to = Some("weibo:990501".into());
    assert_eq!(
        s.cases
            .on_mention(&reply, &kinds(&["praise"]), T0 + HOUR)
            .expect("deferred"),
        MentionOutcome::Deferred
    );
    // A stranger's reply is not held back.
    let mut other = weibo("9503", "路人", "谢谢", T0 + HOUR);
    other.reply_to = Some("weibo:990501".into());
    assert_ne!(
        s.cases.on_mention(&other, &[], T0 + HOUR).expect("ok"),
        MentionOutcome::Deferred
    );
    s.outbox
        .mark_done(&job.id, "990501", T0 + HOUR + 1_000)
        .expect("done");
    let MentionOutcome::Rated(c) = s
        .cases
        .on_mention(&reply, &kinds(&["praise"]), T0 + HOUR + 2_000)
        .expect("rated")
    else {
        panic!("not rated");
    };
    assert_eq!(
        c.satisfaction,
        Some(huiying::cases::Satisfaction::Satisfied)
    );
    assert_eq!(
        s.cases.list(&Default::default(), T0).expect("list").len(),
        1
    );
}

/// The e-mails a case's outbox notices named `what` hold (`case:{id}:mail:{what}:…`).
fn mails_of(s: &Setup, id: &str, what: &str) -> Vec<huiying::respond::outbox::Job> {
    let c = s.cases.get(id).expect("case");
    let prefix = format!("case:{id}:mail:{what}:");
    c.outbox
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .flat_map(|n| s.outbox.jobs_for_notice(n).expect("jobs"))
        .collect()
}

#[test]
fn a_form_requester_who_gave_an_address_is_acknowledged_and_answered_by_e_mail() {
    let s = setup();
    let form = |handle: &str, email: Option<&str>| Intake {
        source_id: format!("api:{handle}"),
        at: T0,
        text: "海淀区学院路小区停水两天了，自来水一直没来，什么时候恢复供水？".into(),
        handle: handle.into(),
        contact: email.map(|e| Contact {
            email: Some(e.into()),
            ..Contact::default()
        }),
        region: Some("110108".into()),
        kind: Some("complaint".into()),
        department: Some("water".into()),
        channel: Channel::Api,
        ..Intake::default()
    };
    let c = s
        .cases
        .intake(form("form-1", Some("zhang@example.org")), "form", T0)
        .expect("intake")
        .case;
    let acks = mails_of(&s, &c.id, "ack");
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].action, ActionKind::Mail);
    assert_eq!(acks[0].in_reply_to.as_deref(), Some("zhang@example.org"));
    assert!(acks[0].body.contains(&c.id), "{}", acks[0].body);
    assert!(
        acks[0].body.contains("---") && acks[0].body.contains("Hello"),
        "Chinese then English: {}",
        acks[0].body
    );
    // A second citizen with the same problem and no address joins without an e-mail; a third
    // with an address gets their own acknowledgement.
    let joined = s
        .cases
        .intake(form("form-2", None), "form", T0 + MIN)
        .expect("intake");
    assert!(joined.joined, "{:?}", joined.case.requesters);
    assert_eq!(mails_of(&s, &c.id, "ack").len(), 1);
    s.cases
        .intake(form("form-3", Some("li@example.org")), "form", T0 + 2 * MIN)
        .expect("intake");
    let mut to: Vec<_> = mails_of(&s, &c.id, "ack")
        .into_iter()
        .filter_map(|j| j.in_reply_to)
        .collect();
    to.sort();
    assert_eq!(to, ["li@example.org", "zhang@example.org"]);
    // The answer goes to both addresses, once each, and to nobody else.
    let c = s.cases.get(&c.id).expect("case");
    let c = s
        .cases
        .answer(
            &c.id,
            "已恢复供水。",
            &water_staff(),
            Some(c.version),
            T0 + HOUR,
        )
        .expect("answer");
    assert!(
        mails_of(&s, &c.id, "answer").is_empty(),
        "not before approval"
    );
    s.cases
        .approve_answer(&c.id, &operator(), Some(c.version), T0 + HOUR + MIN)
        .expect("approve");
    let answers = mails_of(&s, &c.id, "answer");
    let mut to: Vec<_> = answers
        .iter()
        .filter_map(|j| j.in_reply_to.clone())
        .collect();
    to.sort();
    assert_eq!(to, ["li@example.org", "zhang@example.org"]);
    assert!(answers.iter().all(|j| j.body.contains("已恢复供水。")));
    // A platform case's requester is answered on the platform, never by e-mail.
    let p = intake(
        s.cases
            .on_mention(
                &weibo(
                    "7901",
                    "居民",
                    "@北京发布 朝阳区望京路灯不亮了，请尽快修",
                    T0,
                ),
                &kinds(&["complaint"]),
                T0,
            )
            .expect("intake"),
    )
    .case;
    assert!(mails_of(&s, &p.id, "ack").is_empty());
}
