//! The notice workflow over the shipped rules, matrix and templates: drafts with per-account
//! texts and the matrix's plan, the approval policy (one operator, two different operators, no
//! self-approval, auto-approval), edits and rejection, the hand-over to the outbox (lead first,
//! amplifiers depending on it, deterministic ids) and the audit trail that `audit verify` accepts.

use huiying::detect::RuleSet;
use huiying::incidents::{Incident, IncidentKind, IncidentState};
use huiying::respond::audit::{self, AuditLog};
use huiying::respond::matrix::Matrix;
use huiying::respond::notices::{
    notice_id_for_incident, ApprovalPolicy, EditTarget, ManualDraft, NoticeError, NoticeFilter,
    NoticeState, NoticeStore, Notices,
};
use huiying::respond::outbox::{ActionKind, MemoryOutbox, Outbox, OutboxStore, Priority};
use huiying::respond::templates::{check_length, TemplateError, Templates};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn rules() -> &'static RuleSet {
    super::util::shipped_rules()
}

fn matrix() -> &'static Matrix {
    super::util::shipped_matrix()
}

fn templates() -> &'static Templates {
    super::util::shipped_templates()
}

/// 2024-07-01 14:05 in Beijing.
const T0: i64 = 1_719_813_900_000;

fn incident(id: &str, kind: IncidentKind, category: &str, region: &str, severity: u8) -> Incident {
    let g = &rules().gazetteer;
    let i = g
        .by_code(region)
        .unwrap_or_else(|| panic!("test region {region}"));
    Incident {
        categories: vec![category.into()],
        region: Some(g.region_ref(i)),
        first_seen: T0 - 60_000,
        opened_at: T0,
        updated_at: T0,
        mentions: 40,
        authors: 30,
        rate_per_min: 6.0,
        baseline_per_min: 0.01,
        severity,
        top_terms: vec!["爆炸".into()],
        ..Incident::new(id, kind, category, T0)
    }
}

struct Env {
    _dir: tempfile::TempDir,
    audit_path: PathBuf,
    outbox: Arc<dyn OutboxStore>,
    notices: Notices,
}

fn env_with(policy: ApprovalPolicy) -> Env {
    env_of(None, policy)
}

fn env_of(outbox: Option<Arc<dyn OutboxStore>>, policy: ApprovalPolicy) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&audit_path).expect("audit log");
    let outbox = outbox.unwrap_or_else(|| Arc::new(MemoryOutbox::new()));
    let store = NoticeStore::open(&dir.path().join("notices.redb")).expect("notice store");
    let notices = Notices::new(store, outbox.clone(), Arc::new(Mutex::new(log)), policy);
    Env {
        _dir: dir,
        audit_path,
        outbox,
        notices,
    }
}

fn env() -> Env {
    env_of(None, ApprovalPolicy::default())
}

impl Env {
    fn draft(
        &self,
        inc: &Incident,
        actor: &str,
    ) -> Result<huiying::respond::notices::Notice, NoticeError> {
        self.notices
            .draft_from_incident(inc, rules(), matrix(), templates(), T0, actor)
    }

    /// (actor, action, notice) of every audit record, after checking the chain like
    /// `huiying audit verify` does.
    fn audit_trail(&self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = audit::verify_command(&self.audit_path, None, &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        audit::read_all(&self.audit_path)
            .expect("read audit")
            .into_iter()
            .map(|r| (r.actor, r.action, r.notice))
            .collect()
    }
}

fn cli_verify(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .args(["audit", "verify"])
        .arg(path)
        .env("RUST_LOG", "off")
        .output()
        .expect("huiying runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flood_draft_has_the_plan_and_texts_within_limits_then_one_operator_enqueues_it() {
    let e = env();
    let inc = incident(
        "inc-flood-hd",
        IncidentKind::Emergency,
        "flood",
        "110108",
        3,
    );
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.state, NoticeState::Draft);
    assert_eq!(n.id, notice_id_for_incident("inc-flood-hd"));
    assert_eq!(n.required_approvals, 1);
    assert_eq!(n.created_by, "system");
    assert_eq!(n.region.as_ref().map(|r| r.code.as_str()), Some("110108"));

    // The plan is the matrix's.
    let plan = matrix().plan(&inc, rules());
    assert_eq!(n.plan.lead, plan.lead.as_str());
    let strs = |v: &[huiying::respond::matrix::AccountId]| -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    };
    assert_eq!(n.plan.co_publishers, strs(&plan.co_publishers));
    assert_eq!(n.plan.amplifiers, strs(&plan.amplifiers));
    assert!(!n.plan.amplifiers.is_empty(), "{plan:?}");

    // One text per posting account, in its language, within its platform's limit.
    // Amplifiers on another platform than the lead cannot repost it: they post a text too.
    let lead_platform = matrix().account(&n.plan.lead).expect("lead").platform;
    let cross: Vec<String> = n
        .plan
        .amplifiers
        .iter()
        .filter(|a| matrix().account(a).expect("amplifier").platform != lead_platform)
        .cloned()
        .collect();
    assert!(
        !cross.is_empty(),
        "the shipped matrix has a cross-platform amplifier here"
    );
    let posting: Vec<String> = std::iter::once(n.plan.lead.clone())
        .chain(n.plan.co_publishers.iter().cloned())
        .chain(cross.iter().cloned())
        .collect();
    assert_eq!(n.texts.keys().cloned().collect::<Vec<_>>(), {
        let mut p = posting.clone();
        p.sort();
        p
    });
    for (acc, t) in &n.texts {
        let a = matrix().account(acc).expect("account");
        assert_eq!(t.platform, a.platform);
        assert_eq!(t.lang, a.lang);
        assert!(
            check_length(a.platform, &t.text).is_ok(),
            "{acc}: {}",
            t.text
        );
        let expected = templates()
            .render(&inc, a.lang, a.platform)
            .expect("renders");
        assert_eq!(t.text, expected);
    }
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());

    // Stored: survives a reread and shows in the list.
    assert_eq!(e.notices.get(&n.id).expect("get"), Some(n.clone()));
    let drafts = e
        .notices
        .list(&NoticeFilter {
            state: Some(NoticeState::Draft),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(drafts.len(), 1);

    // One operator approves: jobs enqueued, lead first, amplifiers depend on the lead.
    let n = e
        .notices
        .approve(&n.id, 0, "op:li", T0 + 1_000)
        .expect("approve");
    assert_eq!(n.state, NoticeState::Publishing);
    assert_eq!(n.approvals.len(), 1);
    assert_eq!(n.approvals[0].actor, "op:li");
    let jobs = e.outbox.jobs_for_notice(&n.id).expect("jobs");
    assert_eq!(
        jobs.len(),
        1 + n.plan.co_publishers.len() + n.plan.amplifiers.len()
    );
    assert_eq!(
        n.jobs,
        jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>()
    );
    let lead = &jobs[0];
    assert_eq!(lead.account_id, n.plan.lead);
    assert_eq!(lead.action, ActionKind::Post);
    assert_eq!(lead.priority, Priority::Emergency);
    assert_eq!(lead.body, n.texts[&n.plan.lead].text);
    assert_eq!(lead.depends_on, None);
    for j in &jobs[1..=n.plan.co_publishers.len()] {
        assert_eq!(j.action, ActionKind::Post);
        assert_eq!(j.priority, Priority::Emergency);
        assert_eq!(j.depends_on, None);
        assert_eq!(j.body, n.texts[&j.account_id].text);
    }
    for j in &jobs[1 + n.plan.co_publishers.len()..] {
        assert!(n.plan.amplifiers.contains(&j.account_id));
        match n.texts.get(&j.account_id) {
            Some(t) => {
                assert_eq!(
                    j.action,
                    ActionKind::Post,
                    "{}: cross-platform",
                    j.account_id
                );
                assert_eq!(j.body, t.text);
            }
            None => assert_eq!(j.action, ActionKind::Repost),
        }
        assert_eq!(j.depends_on.as_deref(), Some(lead.id.as_str()));
        assert!(j.is_blocked());
    }
    // Only the lead and co-publishers are due before the lead is posted.
    let due = e.outbox.next_due(T0 + 2_000, 100).expect("due");
    assert_eq!(due.len(), 1 + n.plan.co_publishers.len());

    // Re-running the hand-over is a no-op (deterministic job ids).
    let again = e.notices.publish(&n.id, T0 + 3_000).expect("publish again");
    assert_eq!(again.jobs, n.jobs);
    assert_eq!(
        e.outbox.jobs_for_notice(&n.id).expect("jobs").len(),
        jobs.len()
    );
    // No more approvals once publishing.
    assert!(matches!(
        e.notices.approve(&n.id, 0, "op:wang", T0 + 4_000),
        Err(NoticeError::InvalidState { .. })
    ));

    // Done once every job finished.
    for j in &jobs {
        let id = j.id.as_str();
        if j.depends_on.is_none() {
            e.outbox.mark_attempting(id, T0 + 5_000).expect("attempt");
            e.outbox
                .mark_done(id, &format!("p-{}", j.account_id), T0 + 5_100)
                .expect("done");
        }
    }
    assert_eq!(
        e.notices.refresh(&n.id, T0 + 5_200).expect("refresh").state,
        NoticeState::Publishing
    );
    for j in &jobs {
        if j.depends_on.is_some() {
            e.outbox
                .mark_attempting(&j.id, T0 + 6_000)
                .expect("attempt");
            e.outbox.mark_done(&j.id, "r", T0 + 6_100).expect("done");
        }
    }
    assert_eq!(
        e.notices.refresh(&n.id, T0 + 6_200).expect("refresh").state,
        NoticeState::Done
    );

    let trail = e.audit_trail();
    assert_eq!(
        trail,
        vec![
            ("system".into(), "draft".into(), Some(n.id.clone())),
            ("op:li".into(), "approve".into(), Some(n.id.clone())),
        ]
    );
}

#[test]
fn severity_five_explosion_needs_two_different_operators_and_no_self_approval() {
    let e = env();
    let inc = incident(
        "inc-boom",
        IncidentKind::Emergency,
        "explosion",
        "110108",
        5,
    );
    // Drafted by an operator, so the drafter's own approval is refused.
    let n = e.draft(&inc, "op:zhang").expect("draft");
    assert_eq!(n.required_approvals, 2);
    let err = e
        .notices
        .approve(&n.id, 0, "op:zhang", T0 + 1)
        .expect_err("self-approval");
    assert!(matches!(err, NoticeError::SelfApproval { .. }), "{err}");
    assert!(err.to_string().contains("may not approve"), "{err}");
    // Reserved actors cannot approve by hand.
    assert!(matches!(
        e.notices.approve(&n.id, 0, "policy", T0 + 1),
        Err(NoticeError::Invalid(_))
    ));

    let n1 = e.notices.approve(&n.id, 0, "op:li", T0 + 2).expect("first");
    assert_eq!(n1.state, NoticeState::Draft);
    // The same operator again: refused by name (409 `already_approved`), nothing changes.
    let again = e.notices.approve(&n.id, 0, "op:li", T0 + 3);
    assert!(
        matches!(again, Err(NoticeError::AlreadyApproved { ref actor, .. }) if actor == "op:li"),
        "{again:?}"
    );
    let n2 = e.notices.get(&n.id).expect("get").expect("notice");
    assert_eq!(n2.state, NoticeState::Draft);
    assert_eq!(n2.approvals.len(), 1, "the same operator counts once");
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());

    let n3 = e
        .notices
        .approve(&n.id, 0, "op:wang", T0 + 4)
        .expect("second");
    assert_eq!(n3.state, NoticeState::Publishing);
    assert_eq!(
        n3.approvals
            .iter()
            .map(|a| a.actor.as_str())
            .collect::<Vec<_>>(),
        vec!["op:li", "op:wang"]
    );
    let jobs = e.outbox.jobs_for_notice(&n.id).expect("jobs");
    assert_eq!(jobs[0].account_id, n3.plan.lead);
    assert!(jobs.len() > 1);
    assert!(jobs.iter().all(|j| j.priority == Priority::Emergency));

    let trail = e.audit_trail();
    let actions: Vec<(&str, &str)> = trail
        .iter()
        .map(|(a, b, _)| (a.as_str(), b.as_str()))
        .collect();
    // Refused approvals are not actions: only what happened is logged.
    assert_eq!(
        actions,
        vec![
            ("op:zhang", "draft"),
            ("op:li", "approve"),
            ("op:wang", "approve"),
        ]
    );
    let recs = audit::read_all(&e.audit_path).expect("read");
    assert_eq!(recs[1].detail["approvals"], 1);
    assert_eq!(recs[2].detail["approvals"], 2);
}

#[test]
fn rumor_rebuttal_needs_two_operators_and_goes_to_the_rebuttal_lane() {
    let e = env();
    let inc = incident("inc-rumor", IncidentKind::Rumor, "other", "110000", 3);
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.required_approvals, 2);
    e.notices.approve(&n.id, 0, "op:li", T0 + 1).expect("one");
    let n = e.notices.approve(&n.id, 0, "op:wang", T0 + 2).expect("two");
    assert_eq!(n.state, NoticeState::Publishing);
    let jobs = e.outbox.jobs_for_notice(&n.id).expect("jobs");
    assert!(!jobs.is_empty());
    assert!(jobs.iter().all(|j| j.priority == Priority::Rebuttal));
}

#[test]
fn a_rejected_notice_enqueues_nothing() {
    let e = env();
    let inc = incident("inc-fire", IncidentKind::Emergency, "fire", "110108", 4);
    let n = e.draft(&inc, "system").expect("draft");
    let r = e
        .notices
        .reject(
            &n.id,
            "op:li",
            "duplicate of the fire brigade's post",
            T0 + 1,
        )
        .expect("reject");
    assert_eq!(r.state, NoticeState::Rejected);
    assert_eq!(
        r.rejection.as_deref(),
        Some("duplicate of the fire brigade's post")
    );
    for op in ["op:wang", "op:zhao"] {
        assert!(matches!(
            e.notices.approve(&n.id, 0, op, T0 + 2),
            Err(NoticeError::InvalidState {
                state: NoticeState::Rejected,
                ..
            })
        ));
    }
    assert!(matches!(
        e.notices
            .edit(&n.id, &EditTarget::All, "x", "op:wang", T0 + 3),
        Err(NoticeError::InvalidState { .. })
    ));
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());
    assert_eq!(e.outbox.depth().expect("depth"), 0);
    let trail = e.audit_trail();
    assert_eq!(trail.len(), 2);
    assert_eq!(
        trail[1],
        ("op:li".into(), "reject".into(), Some(n.id.clone()))
    );
}

#[test]
fn edit_resets_approvals_and_an_over_length_edit_is_refused() {
    let e = env();
    let inc = incident(
        "inc-boom2",
        IncidentKind::Emergency,
        "explosion",
        "110108",
        4,
    );
    let n = e.draft(&inc, "system").expect("draft");
    let n = e.notices.approve(&n.id, 0, "op:li", T0 + 1).expect("first");
    assert_eq!(n.approvals.len(), 1);

    // Too long for a Weibo account (if the plan has one) or Mastodon: refused, nothing stored.
    let weibo = n
        .texts
        .iter()
        .find(|(_, t)| t.platform == huiying::respond::matrix::Platform::Weibo)
        .map(|(a, _)| a.clone());
    let target = weibo.clone().unwrap_or_else(|| n.plan.lead.clone());
    let huge = "积水".repeat(300);
    let err = e
        .notices
        .edit(
            &n.id,
            &EditTarget::Account(target.clone()),
            &huge,
            "op:wang",
            T0 + 2,
        )
        .expect_err("too long");
    match &err {
        NoticeError::TooLong {
            account,
            source: TemplateError::TooLong { len, limit, .. },
        } => {
            assert_eq!(account, &target);
            assert_eq!(*len, 600);
            assert!(*limit < 600);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&target) && msg.contains("too long"), "{msg}");
    assert_eq!(e.notices.get(&n.id).expect("get"), Some(n.clone()));

    // Unknown account.
    assert!(matches!(
        e.notices.edit(
            &n.id,
            &EditTarget::Account("nobody".into()),
            "x",
            "op:wang",
            T0 + 2
        ),
        Err(NoticeError::UnknownAccount { .. })
    ));

    // A valid edit of one account resets the approvals.
    let text = "【海淀区爆炸事故通报】请周边市民远离现场，听从现场指挥。";
    let n2 = e
        .notices
        .edit(
            &n.id,
            &EditTarget::Account(target.clone()),
            text,
            "op:wang",
            T0 + 3,
        )
        .expect("edit");
    assert_eq!(n2.texts[&target].text, text);
    assert!(n2.approvals.is_empty());
    assert_eq!(n2.state, NoticeState::Draft);
    // Edit all.
    let n3 = e
        .notices
        .edit(&n.id, &EditTarget::All, text, "op:wang", T0 + 4)
        .expect("edit all");
    assert!(n3.texts.values().all(|t| t.text == text));

    // Two approvals needed again, of the version now shown (two edits: version 2), and not
    // from the editor: the two-person rule is about the words that go out.
    assert_eq!(n3.version, 2);
    assert!(matches!(
        e.notices.approve(&n.id, 2, "op:wang", T0 + 5),
        Err(NoticeError::SelfApproval { .. })
    ));
    assert!(matches!(
        e.notices.approve(&n.id, 1, "op:li", T0 + 5),
        Err(NoticeError::Changed {
            current: 2,
            seen: 1,
            ..
        })
    ));
    let n4 = e.notices.approve(&n.id, 2, "op:li", T0 + 5).expect("again");
    assert_eq!(n4.state, NoticeState::Draft);
    let n5 = e
        .notices
        .approve(&n.id, 2, "op:zhang", T0 + 6)
        .expect("second");
    assert_eq!(n5.state, NoticeState::Publishing);
    let jobs = e.outbox.jobs_for_notice(&n.id).expect("jobs");
    assert!(jobs
        .iter()
        .filter(|j| j.action == ActionKind::Post)
        .all(|j| j.body == text));

    let trail = e.audit_trail();
    let actions: Vec<&str> = trail.iter().map(|(_, a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        vec!["draft", "approve", "edit", "edit", "approve", "approve"]
    );
}

#[test]
fn the_shipped_policy_lets_nothing_out_without_an_operator() {
    // A rainstorm burst any five accounts can make: its draft waits for an operator, even
    // with an official feed among its sources.
    let e = env();
    let mut inc = incident(
        "inc-rain",
        IncidentKind::Emergency,
        "rainstorm",
        "110108",
        3,
    );
    inc.official = true;
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.state, NoticeState::Draft);
    assert_eq!(n.required_approvals, 1);
    assert!(n.approvals.is_empty());
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());
    let p = ApprovalPolicy::default();
    for c in ["rainstorm", "typhoon", "extreme_weather", "flood", "fire"] {
        let mut i = inc.clone();
        i.category = c.into();
        i.severity = 1;
        assert!(!p.auto_approves(&i), "{c}");
    }
}

fn opted_in() -> Env {
    // An office that opted in (`[respond.policy] pre_approved = ["rainstorm"]`).
    env_with(ApprovalPolicy {
        pre_approved: vec!["rainstorm".into()],
        ..ApprovalPolicy::default()
    })
}

fn rain(id: &str, severity: u8) -> Incident {
    incident(id, IncidentKind::Emergency, "rainstorm", "110108", severity)
}

#[test]
fn crowd_input_alone_is_not_a_trusted_source_even_where_an_office_opted_in() {
    let e = opted_in();
    // Thirty authors, two of them verified (the quorum is three): strangers can make that.
    let mut inc = rain("inc-rain-crowd", 3);
    inc.verified_authors = 2;
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.state, NoticeState::Draft);
    assert_eq!(n.required_approvals, 1);
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());
    // The quorum of verified authors, or one mention of an official feed, is a trusted source.
    let mut q = rain("inc-rain-quorum", 3);
    q.verified_authors = 3;
    assert_eq!(
        e.draft(&q, "system").expect("draft").state,
        NoticeState::Held
    );
    let mut o = rain("inc-rain-official", 3);
    o.official = true;
    assert_eq!(
        e.draft(&o, "system").expect("draft").state,
        NoticeState::Held
    );
    // A quorum of 0 in the config still needs one verified author.
    let p = ApprovalPolicy {
        pre_approved: vec!["rainstorm".into()],
        verified_quorum: 0,
        ..ApprovalPolicy::default()
    };
    assert!(!p.auto_approves(&rain("x", 3)));
}

#[test]
fn an_auto_approved_notice_is_held_then_published_when_the_hold_ends() {
    let e = opted_in();
    let mut inc = rain("inc-rain", 3);
    inc.official = true;
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.required_approvals, 0);
    assert_eq!(n.state, NoticeState::Held);
    let hold = ApprovalPolicy::default().hold_ms();
    assert_eq!(hold, 300_000);
    assert_eq!(n.hold_until, Some(T0 + hold));
    assert_eq!(n.approvals.len(), 1);
    assert_eq!(n.approvals[0].actor, "policy");
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());
    // Not before the hold ends.
    let early = e.notices.release_held(T0 + hold - 1).expect("release");
    assert!(early.is_empty());
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());
    let out = e.notices.release_held(T0 + hold).expect("release");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, NoticeState::Publishing);
    assert_eq!(out[0].hold_until, None);
    let jobs = e.outbox.jobs_for_notice(&n.id).expect("jobs");
    assert_eq!(jobs[0].account_id, n.plan.lead);
    assert_eq!(
        jobs.len(),
        1 + n.plan.co_publishers.len() + n.plan.amplifiers.len()
    );
    let trail: Vec<(String, String)> = e
        .audit_trail()
        .into_iter()
        .map(|(who, what, _)| (who, what))
        .collect();
    assert_eq!(
        trail,
        vec![
            ("system".into(), "draft".into()),
            ("policy".into(), "approve".into()),
            ("policy".into(), "approve".into()),
        ]
    );
    // Released once.
    assert!(e
        .notices
        .release_held(T0 + 2 * hold)
        .expect("again")
        .is_empty());

    // The same category above the pre-approved severity needs operators.
    let mut inc = rain("inc-rain-5", 5);
    inc.official = true;
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.state, NoticeState::Draft);
    assert_eq!(n.required_approvals, 2);
}

#[test]
fn an_operator_can_cancel_a_held_notice_or_publish_it_at_once() {
    let e = opted_in();
    let mut a = rain("inc-rain-a", 3);
    a.official = true;
    let na = e.draft(&a, "system").expect("draft");
    let cancelled = e
        .notices
        .reject(&na.id, "op:li", "气象台未发布预警", T0 + 1)
        .expect("cancel");
    assert_eq!(cancelled.state, NoticeState::Rejected);
    assert_eq!(cancelled.hold_until, None);
    // The end of the hold does not bring it back.
    assert!(e
        .notices
        .release_held(T0 + 3_600_000)
        .expect("release")
        .is_empty());
    assert!(e.outbox.jobs_for_notice(&na.id).expect("jobs").is_empty());

    let mut b = rain("inc-rain-b", 3);
    b.official = true;
    let nb = e.draft(&b, "system").expect("draft");
    // Held texts cannot be edited (cancel and draft anew).
    assert!(matches!(
        e.notices
            .edit(&nb.id, &EditTarget::All, "改过的", "op:li", T0 + 2),
        Err(NoticeError::InvalidState { .. })
    ));
    let now = e
        .notices
        .approve(&nb.id, nb.version, "op:li", T0 + 3)
        .expect("publish now");
    assert_eq!(now.state, NoticeState::Publishing);
    assert!(now.approvals.iter().any(|x| x.actor == "op:li"));
    assert!(!e.outbox.jobs_for_notice(&nb.id).expect("jobs").is_empty());
    // Reserved names cannot release a hold early.
    let mut c = rain("inc-rain-c", 3);
    c.official = true;
    let nc = e.draft(&c, "system").expect("draft");
    assert!(e.notices.approve(&nc.id, 0, "policy", T0 + 4).is_err());
    assert_eq!(
        e.notices.get(&nc.id).expect("get").expect("some").state,
        NoticeState::Held
    );
}

#[test]
fn drafting_is_idempotent_per_incident_and_respects_the_threshold() {
    let e = env();
    let inc = incident("inc-flood-2", IncidentKind::Emergency, "flood", "110108", 3);
    let a = e.draft(&inc, "system").expect("draft");
    let mut later = inc.clone();
    later.severity = 4;
    let b = e
        .notices
        .draft_from_incident(
            &later,
            rules(),
            matrix(),
            templates(),
            T0 + 60_000,
            "system",
        )
        .expect("again");
    assert_eq!(a, b);
    assert_eq!(
        e.notices
            .list(&NoticeFilter::default())
            .expect("list")
            .len(),
        1
    );
    assert_eq!(e.audit_trail().len(), 1, "the second call is not an action");

    let low = incident("inc-low", IncidentKind::Emergency, "flood", "110108", 2);
    assert!(matches!(
        e.draft(&low, "system"),
        Err(NoticeError::BelowThreshold {
            severity: 2,
            threshold: 3,
            ..
        })
    ));
    // A manual draft is not bound by the threshold and gets its own id.
    let m = e
        .notices
        .draft_manual(
            &ManualDraft {
                incident_id: Some("inc-low".into()),
                kind: IncidentKind::Emergency,
                category: "flood".into(),
                severity: 2,
                region: Some("110108".into()),
                text: Some("【海淀区】部分道路积水，请绕行。".into()),
            },
            rules(),
            matrix(),
            templates(),
            T0 + 1,
            "op:li",
        )
        .expect("manual");
    assert_eq!(m.state, NoticeState::Draft);
    assert_eq!(m.required_approvals, 1);
    assert_eq!(m.created_by, "op:li");
    assert!(m.texts.values().all(|t| t.text.contains("积水")));
    assert!(matches!(
        e.notices.approve(&m.id, 0, "op:li", T0 + 2),
        Err(NoticeError::SelfApproval { .. })
    ));
    assert_eq!(
        e.notices
            .list(&NoticeFilter {
                incident_id: Some("inc-low".into()),
                ..Default::default()
            })
            .expect("list")
            .len(),
        1
    );
    assert!(matches!(
        e.notices.draft_manual(
            &ManualDraft {
                incident_id: None,
                kind: IncidentKind::Emergency,
                category: "no_such".into(),
                severity: 3,
                region: None,
                text: None,
            },
            rules(),
            matrix(),
            templates(),
            T0,
            "op:li"
        ),
        Err(NoticeError::Invalid(_))
    ));
}

#[test]
fn notices_and_jobs_survive_a_reopen_and_the_audit_log_verifies_with_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox_path = dir.path().join("outbox.redb");
    let notices_path = dir.path().join("notices.redb");
    let audit_path = dir.path().join("audit.jsonl");
    let inc = incident("inc-flood-3", IncidentKind::Emergency, "flood", "110108", 3);
    let (id, jobs) = {
        let outbox: Arc<dyn OutboxStore> = Arc::new(Outbox::open(&outbox_path).expect("outbox"));
        let notices = Notices::new(
            NoticeStore::open(&notices_path).expect("store"),
            outbox.clone(),
            Arc::new(Mutex::new(AuditLog::open(&audit_path).expect("audit"))),
            ApprovalPolicy::default(),
        );
        let n = notices
            .draft_from_incident(&inc, rules(), matrix(), templates(), T0, "system")
            .expect("draft");
        let n = notices.approve(&n.id, 0, "op:li", T0 + 1).expect("approve");
        let jobs = outbox.jobs_for_notice(&n.id).expect("jobs");
        (n.id, jobs)
    };
    let outbox: Arc<dyn OutboxStore> = Arc::new(Outbox::open(&outbox_path).expect("reopen"));
    let notices = Notices::new(
        NoticeStore::open(&notices_path).expect("reopen store"),
        outbox.clone(),
        Arc::new(Mutex::new(
            AuditLog::open(&audit_path).expect("reopen audit"),
        )),
        ApprovalPolicy::default(),
    );
    let n = notices.get(&id).expect("get").expect("stored");
    assert_eq!(n.state, NoticeState::Publishing);
    assert_eq!(n.history.len(), 3, "{:?}", n.history);
    // Re-publishing after a restart is a no-op.
    notices.publish(&id, T0 + 10).expect("publish");
    assert_eq!(outbox.jobs_for_notice(&id).expect("jobs"), jobs);
    // Same incident again: the stored notice.
    let again = notices
        .draft_from_incident(&inc, rules(), matrix(), templates(), T0 + 20, "system")
        .expect("idempotent");
    assert_eq!(again.id, id);
    drop(notices);

    let (code, out, err) = cli_verify(&audit_path);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok — 2 records"), "{out}");
    let recs = audit::read_all(&audit_path).expect("read");
    assert_eq!(
        recs.iter()
            .map(|r| (r.actor.as_str(), r.action.as_str()))
            .collect::<Vec<_>>(),
        vec![("system", "draft"), ("op:li", "approve")]
    );
    assert_eq!(recs[0].detail["lead"], n.plan.lead.as_str());
}

/// Issue 16, item 3: a notice follows its incident. Published at severity 4, the incident rises
/// to 5: the published notice is flagged stale and an update is drafted that names it; the
/// region grows from 海淀区 to 北京市: another update; the incident closes: the all-clear. An
/// automatic draft not yet approved is redrafted (withdrawn, not left pending), and nothing
/// happens twice for the same incident state.
#[test]
fn notices_follow_their_incident_update_and_all_clear() {
    use huiying::respond::templates::Purpose;
    let e = env();
    let follow = |inc: &Incident, at: i64| {
        e.notices
            .follow_incident(inc, rules(), matrix(), templates(), at)
            .expect("follow")
    };
    let mut inc = incident(
        "inc-rain-hd",
        IncidentKind::Emergency,
        "rainstorm",
        "110108",
        4,
    );
    // No notice yet: nothing to follow.
    assert!(follow(&inc, T0).is_none());
    let first = e.draft(&inc, "system").expect("draft");
    assert_eq!(first.purpose, Purpose::Notice);
    // Same state: nothing.
    assert!(follow(&inc, T0 + 1).is_none());

    // Severity rises before the draft went out: the same notice carries it (the link and the
    // text stay), and at severity 5 it needs a second operator; one approval given before stays.
    e.notices
        .approve(&first.id, 0, "op:li", T0 + 30_000)
        .expect("first approval");
    inc.severity = 5;
    let raised = follow(&inc, T0 + 60_000).expect("raised");
    assert_eq!(raised.id, first.id);
    assert_eq!(raised.purpose, Purpose::Notice);
    assert_eq!(raised.severity, 5);
    assert_eq!(raised.required_approvals, 2);
    assert_eq!(raised.state, NoticeState::Draft);
    assert_eq!(raised.approvals.len(), 1, "{:?}", raised.history);
    assert_eq!(raised.version, 0, "the text did not change");
    assert!(raised
        .history
        .last()
        .is_some_and(|h| h.actor == "system" && h.detail.contains("severity 4 → 5")));
    assert!(follow(&inc, T0 + 61_000).is_none(), "idempotent");
    let redraft = raised;

    // Published (two operators: severity 5).
    let out = e
        .notices
        .approve(&redraft.id, 0, "op:wang", T0 + 71_000)
        .expect("2");
    assert_eq!(out.state, NoticeState::Publishing);

    // The region grows to all of Beijing: the published notice is stale, an update follows it.
    let g = &rules().gazetteer;
    inc.region = Some(g.region_ref(g.by_code("110000").expect("北京")));
    let update = follow(&inc, T0 + 120_000).expect("update");
    assert_eq!(update.purpose, Purpose::Update);
    assert_eq!(update.state, NoticeState::Draft);
    assert_eq!(update.follows.as_deref(), Some(redraft.id.as_str()));
    assert_eq!(
        update.region.as_ref().map(|r| r.code.as_str()),
        Some("110000")
    );
    let zh = update
        .texts
        .values()
        .find(|t| t.lang == huiying::respond::templates::Lang::Zh)
        .expect("a Chinese text");
    assert!(
        zh.text.contains("最新情况") || zh.text.contains("更新"),
        "{}",
        zh.text
    );
    let stale = e.notices.get(&redraft.id).expect("get").expect("published");
    assert_eq!(
        stale.state,
        NoticeState::Publishing,
        "a published notice stays published"
    );
    assert!(
        stale
            .stale
            .as_deref()
            .unwrap_or("")
            .contains("region 海淀区 → 北京市"),
        "{:?}",
        stale.stale
    );
    assert_eq!(stale.superseded_by.as_deref(), Some(update.id.as_str()));
    // A narrower region afterwards is not growth.
    let mut narrower = inc.clone();
    narrower.region = Some(g.region_ref(g.by_code("110105").expect("朝阳")));
    assert!(follow(&narrower, T0 + 130_000).is_none());

    // The incident closes: the pending update is flagged, and the all-clear follows it
    // (something went out, so the public is told it is over).
    inc.state = IncidentState::Closed;
    let clear = follow(&inc, T0 + 3_600_000).expect("all-clear");
    assert_eq!(clear.purpose, Purpose::AllClear);
    assert_eq!(clear.follows.as_deref(), Some(update.id.as_str()));
    let en = clear
        .texts
        .values()
        .find(|t| t.lang == huiying::respond::templates::Lang::En)
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert!(en.is_empty() || en.contains("all clear"), "{en}");
    assert!(follow(&inc, T0 + 3_700_000).is_none(), "one all-clear");
    // Both ways: every notice of the incident is listed by its id.
    let all = e
        .notices
        .list(&NoticeFilter {
            incident_id: Some("inc-rain-hd".into()),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(all.len(), 3);
    // Every step is in the audit trail by `system`.
    let trail = e.audit_trail();
    assert!(trail.iter().any(|(a, act, n)| a == "system"
        && act == "stale"
        && n.as_deref() == Some(redraft.id.as_str())));
}

/// An incident closed before anything went out: the draft is flagged, no all-clear is drafted.
/// Merged away: its drafts are withdrawn.
#[test]
fn a_closed_or_merged_incident_does_not_leave_a_draft_pending_unflagged() {
    let e = env();
    let follow = |inc: &Incident| {
        e.notices
            .follow_incident(inc, rules(), matrix(), templates(), T0 + 10)
            .expect("follow")
    };
    let mut inc = incident("inc-fire-cy", IncidentKind::Emergency, "fire", "110105", 4);
    let n = e.draft(&inc, "system").expect("draft");
    inc.state = IncidentState::Closed;
    assert!(follow(&inc).is_none());
    let n = e.notices.get(&n.id).expect("get").expect("n");
    assert_eq!(n.state, NoticeState::Draft);
    assert!(n.stale.as_deref().unwrap_or("").contains("incident closed"));

    let other = incident(
        "inc-flood-cy",
        IncidentKind::Emergency,
        "flood",
        "110105",
        4,
    );
    let m = e.draft(&other, "system").expect("draft");
    let changed = e
        .notices
        .withdraw("inc-flood-cy", "merged into inc-fire-cy 已合并", T0 + 20)
        .expect("withdraw");
    assert_eq!(changed.len(), 1);
    let m = e.notices.get(&m.id).expect("get").expect("m");
    assert_eq!(m.state, NoticeState::Rejected);
    assert!(m.rejection.as_deref().unwrap_or("").contains("merged into"));
}

/// A held notice (pre-approved at low severity) whose incident becomes more severe than the
/// office pre-approves goes back to the operators: it is not published when its hold ends.
/// An automatic draft whose incident spread to a wider region is redrafted for it (the plan
/// and the text name the region): the old draft is withdrawn, the new one follows it.
#[test]
fn a_held_notice_outgrown_goes_back_to_the_operators_and_a_wider_region_is_redrafted() {
    let e = opted_in();
    let mut inc = rain("inc-rain-up", 3);
    inc.official = true;
    let n = e.draft(&inc, "system").expect("draft");
    assert_eq!(n.state, NoticeState::Held);
    inc.severity = 4;
    let back = e
        .notices
        .follow_incident(&inc, rules(), matrix(), templates(), T0 + 1_000)
        .expect("follow")
        .expect("changed");
    assert_eq!(back.id, n.id);
    assert_eq!(back.state, NoticeState::Draft);
    assert_eq!(back.hold_until, None);
    assert!(back.required_approvals >= 1);
    assert!(back.approvals.is_empty(), "the policy's approval is gone");
    let hold = ApprovalPolicy::default().hold_ms();
    assert!(e
        .notices
        .release_held(T0 + hold + 1)
        .expect("release")
        .is_empty());
    assert!(e.outbox.jobs_for_notice(&n.id).expect("jobs").is_empty());

    let e = env();
    let mut inc = incident(
        "inc-fire-wide",
        IncidentKind::Emergency,
        "fire",
        "110108",
        3,
    );
    let first = e.draft(&inc, "system").expect("draft");
    let g = &rules().gazetteer;
    inc.region = Some(g.region_ref(g.by_code("110000").expect("北京")));
    let wider = e
        .notices
        .follow_incident(&inc, rules(), matrix(), templates(), T0 + 2_000)
        .expect("follow")
        .expect("redrafted");
    assert_ne!(wider.id, first.id);
    assert_eq!(wider.follows.as_deref(), Some(first.id.as_str()));
    assert_eq!(
        wider.region.as_ref().map(|r| r.code.as_str()),
        Some("110000")
    );
    let old = e.notices.get(&first.id).expect("get").expect("old");
    assert_eq!(old.state, NoticeState::Rejected);
    assert_eq!(old.superseded_by.as_deref(), Some(wider.id.as_str()));
    assert!(old
        .rejection
        .as_deref()
        .unwrap_or("")
        .contains("region 海淀区 → 北京市"));
}
