//! The dispatcher against the fake platform: fan-out order, rate limits on a fake clock,
//! priority lanes, uncertain outcomes, crash recovery and pause. Time is driven by the test
//! (one `ManualClock` drives `now_ms` and the limiters); no test sleeps.

use crate::fake_platform::{FakeHandle, FakePlatform};
use huiying::clock::{Clock, ManualClock};
use huiying::respond::dispatch::{Dispatcher, Route};
use huiying::respond::limits::{Limits, Profile};
use huiying::respond::outbox::{
    ActionKind, Backoff, JobState, MemoryOutbox, NewJob, Outbox, OutboxStore, Priority,
};
use huiying::respond::publish::{
    http_client, Action as PublishAction, MastodonPublisher, PostRequest, Publisher, WeiboPublisher,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const LEAD_TEXT: &str = "【暴雨红色预警】海淀区未来3小时降雨量将达100毫米以上，请避免外出。";

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn client() -> reqwest::Client {
    http_client(Duration::from_secs(5)).expect("http client")
}

fn generous() -> Profile {
    Profile {
        posts_per_hour: 1000,
        comments_per_hour: 1000,
        reposts_per_hour: 1000,
        burst: 1,
    }
}

/// The test's one clock (the limiters' and the dispatcher's), and `now`: its reading in ms, for
/// the outbox.
struct Time {
    now: i64,
    clock: ManualClock,
}

impl Time {
    fn new() -> Self {
        let clock = ManualClock::new(wall_ms());
        Time {
            now: clock.now_ms(),
            clock,
        }
    }

    fn advance(&mut self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
        self.now = self.clock.now_ms();
    }
}

enum Kind {
    Mastodon,
    Weibo,
}

/// The fake platform, a clock and an empty outbox: what the tests here start from.
async fn start() -> (FakeHandle, Time, Arc<MemoryOutbox>) {
    let (_, f) = FakePlatform::start().await;
    (f, Time::new(), Arc::new(MemoryOutbox::new()))
}

/// Notice `n1`'s lead post from `account`.
fn lead_post(account: &str) -> NewJob {
    NewJob::new(
        "n1",
        account,
        ActionKind::Post,
        Priority::Emergency,
        LEAD_TEXT,
    )
}

fn dispatcher(
    f: &FakeHandle,
    outbox: Arc<dyn OutboxStore>,
    time: &Time,
    accounts: &[(&str, Kind, Profile)],
) -> Dispatcher<ManualClock> {
    let limits = Arc::new(Limits::new(time.clock.clone()));
    let mut d = Dispatcher::new(outbox, Arc::clone(&limits)).with_backoff(Backoff::new(
        Duration::from_secs(1),
        Duration::from_secs(10),
        7,
    ));
    for (id, kind, profile) in accounts {
        let token = format!("tok-{id}");
        f.add_account(&token, id);
        limits.add_account(id, *profile);
        let route = match kind {
            Kind::Mastodon => {
                Route::new(MastodonPublisher::new(client(), &f.base_url(), &token), id)
            }
            Kind::Weibo => Route::new(WeiboPublisher::new(client(), &f.base_url(), &token), id),
        };
        d.add_account(id, route);
    }
    d
}

/// Step, advancing `advance_ms` after each step, until nothing is unfinished (or `max` steps).
async fn drain(
    d: &mut Dispatcher<ManualClock>,
    outbox: &dyn OutboxStore,
    time: &mut Time,
    advance_ms: u64,
    max: usize,
) -> usize {
    for i in 0..max {
        if outbox.depth().expect("depth") == 0 {
            return i;
        }
        d.step(time.now).await.expect("step");
        time.advance(advance_ms);
    }
    panic!(
        "not drained after {max} steps: depth {}",
        outbox.depth().expect("depth")
    );
}

/// One notice, one lead per platform (a repost must target a post of its own platform), three
/// amplifiers each reposting their platform's lead once it exists.
fn fan_out(notice: &str) -> Vec<NewJob> {
    let mut v = Vec::new();
    for (lead, amps) in [("m-lead", &AMPS[..3]), ("w-lead", &AMPS[3..])] {
        let l = NewJob::new(
            notice,
            lead,
            ActionKind::Post,
            Priority::Emergency,
            LEAD_TEXT,
        );
        let lead_id = l.id();
        v.push(l);
        for a in amps {
            v.push(
                NewJob::new(
                    notice,
                    a,
                    ActionKind::Repost,
                    Priority::Emergency,
                    &format!("转发 {a}"),
                )
                .depends_on(&lead_id),
            );
        }
    }
    v
}

const AMPS: [&str; 6] = ["m-a1", "m-a2", "m-a3", "w-a1", "w-a2", "w-a3"];

fn fan_out_accounts() -> Vec<(&'static str, Kind, Profile)> {
    let mut v = Vec::new();
    for a in ["m-lead", "w-lead"].iter().chain(AMPS.iter()) {
        let k = if a.starts_with('m') {
            Kind::Mastodon
        } else {
            Kind::Weibo
        };
        v.push((*a, k, generous()));
    }
    v
}

/// Every post exactly once: one post per lead, one repost of its platform's lead per
/// amplifier, each after its lead.
fn assert_fan_out_once(f: &FakeHandle) {
    let posts = f.posts();
    assert_eq!(posts.len(), 8, "{posts:#?}");
    for lead in ["m-lead", "w-lead"] {
        let (li, l) = posts
            .iter()
            .enumerate()
            .find(|(_, p)| p.account == lead)
            .expect("the lead's post");
        assert_eq!(l.action, "post");
        let reposts: Vec<(usize, &str)> = posts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.action == "repost" && p.platform == l.platform)
            .map(|(i, p)| {
                assert_eq!(p.target.as_deref(), Some(l.id.as_str()), "{p:?}");
                (i, p.account.as_str())
            })
            .collect();
        assert_eq!(reposts.len(), 3, "{posts:#?}");
        assert!(reposts.iter().all(|&(i, _)| i > li), "the lead first");
    }
    let accounts: HashSet<&str> = posts.iter().map(|p| p.account.as_str()).collect();
    assert_eq!(accounts.len(), 8, "one post per account");
    assert_eq!(f.violations(), 0);
}

#[tokio::test]
async fn fan_out_posts_the_lead_first_and_every_amplifier_reposts_it_once() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts());
    outbox
        .enqueue_all(fan_out("n1"), time.now)
        .expect("enqueue");

    let steps = drain(&mut d, outbox.as_ref(), &mut time, 1_000, 20).await;
    assert!(steps <= 3, "{steps} steps");
    assert_fan_out_once(&f);
    let jobs = outbox.jobs_for_notice("n1").expect("jobs");
    assert!(jobs.iter().all(|j| j.state == JobState::Done), "{jobs:#?}");
    // Nothing more to do.
    let r = d.step(time.now).await.expect("step");
    assert!(r.attempted.is_empty());
    assert_eq!(f.posts().len(), 8);
}

#[tokio::test]
async fn the_limiter_keeps_an_account_within_its_hourly_limit() {
    let (f, mut time, outbox) = start().await;
    let profile = Profile {
        posts_per_hour: 3,
        ..generous()
    };
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[("m-slow", Kind::Mastodon, profile)],
    );
    // The fake platform counts wall time: generous there; the dispatcher's limiter is the point.
    f.set_limit("tok-m-slow", 100, Duration::from_secs(3600));
    let jobs: Vec<NewJob> = (0..10)
        .map(|i| {
            NewJob::new(
                &format!("r{i}"),
                "m-slow",
                ActionKind::Post,
                Priority::Routine,
                &format!("例行通知第{i}号"),
            )
        })
        .collect();
    outbox.enqueue_all(jobs, time.now).expect("enqueue");

    // Step every 5 fake minutes; record when each post was accepted (fake time).
    let start = time.now;
    let mut accepted_at: Vec<i64> = Vec::new();
    let mut limited = 0;
    for _ in 0..(5 * 12) {
        let r = d.step(time.now).await.expect("step");
        limited += r.rate_limited.len();
        for _ in &r.done {
            accepted_at.push(time.now);
        }
        if outbox.depth().expect("depth") == 0 {
            break;
        }
        time.advance(5 * 60_000);
    }
    assert_eq!(accepted_at.len(), 10, "all done within 5 fake hours");
    assert!(limited > 0, "the limiter refused some steps");
    assert!(
        time.now - start <= 4 * 3_600_000,
        "done after {} min",
        (time.now - start) / 60_000
    );
    for (i, &t) in accepted_at.iter().enumerate() {
        let in_hour = accepted_at[i..]
            .iter()
            .filter(|&&u| u - t <= 3_600_000)
            .count();
        assert!(in_hour <= 3, "{in_hour} posts in the hour from {t}");
    }
    assert_eq!(f.violations(), 0);
    assert_eq!(f.posts().len(), 10);
}

#[tokio::test]
async fn an_emergency_job_goes_before_a_routine_backlog() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[("m-busy", Kind::Mastodon, generous())],
    );
    let jobs: Vec<NewJob> = (0..20)
        .map(|i| {
            NewJob::new(
                &format!("r{i}"),
                "m-busy",
                ActionKind::Post,
                Priority::Routine,
                &format!("例行通知第{i}号"),
            )
        })
        .collect();
    outbox.enqueue_all(jobs, time.now).expect("enqueue");
    // A few routine posts go (one per step).
    for _ in 0..3 {
        let r = d.step(time.now).await.expect("step");
        assert_eq!(r.done.len(), 1);
        time.advance(10_000);
    }
    let emergency = NewJob::new(
        "e1",
        "m-busy",
        ActionKind::Post,
        Priority::Emergency,
        "【紧急】山洪预警，请立即转移。",
    );
    let eid = emergency.id();
    time.advance(1);
    outbox.enqueue(emergency, time.now).expect("enqueue");
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.done, vec![eid]);
    let posts = f.posts();
    assert_eq!(posts.len(), 4);
    assert_eq!(posts[3].text, "【紧急】山洪预警，请立即转移。");
}

#[tokio::test]
async fn an_uncertain_post_is_found_not_reposted() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[
            ("m-lead", Kind::Mastodon, generous()),
            ("w-lead", Kind::Weibo, generous()),
        ],
    );
    for acct in ["m-lead", "w-lead"] {
        let job = lead_post(acct);
        let id = job.id();
        outbox.enqueue(job, time.now).expect("enqueue");
        f.drop_after_accept_next(1);
        let r = d.step(time.now).await.expect("step");
        assert_eq!(r.found, vec![id.clone()], "{r:?}");
        let j = outbox.get(&id).expect("get").expect("job");
        assert_eq!(j.state, JobState::Done);
        let copies: Vec<_> = f
            .posts()
            .into_iter()
            .filter(|p| p.account == acct)
            .collect();
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(j.platform_post_id.as_deref(), Some(copies[0].id.as_str()));
        time.advance(1_000);
    }
}

#[tokio::test]
async fn a_server_error_is_retried_and_posts_once() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[("w-lead", Kind::Weibo, generous())],
    );
    let job = NewJob::new(
        "n1",
        "w-lead",
        ActionKind::Post,
        Priority::Emergency,
        LEAD_TEXT,
    );
    let id = job.id();
    outbox.enqueue(job, time.now).expect("enqueue");
    f.fail_next(1, 503);
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.retried, vec![id.clone()]);
    let wake = r.next_wake_ms.expect("a wake time for the retry");
    assert!(wake > time.now && wake <= time.now + 1_000, "{wake}");
    // Not due before its time.
    assert!(d.step(time.now).await.expect("step").attempted.is_empty());
    // At the retry time the account's limiter (one cell per 3.6 s here, the failed attempt took
    // one) may still refuse: follow the wake times.
    let mut wake = wake;
    let mut done = false;
    for _ in 0..3 {
        time.advance(u64::try_from(wake - time.now).expect("positive"));
        let r = d.step(time.now).await.expect("step");
        if r.done == vec![id.clone()] {
            done = true;
            break;
        }
        assert_eq!(r.rate_limited, vec![id.clone()], "{r:?}");
        wake = r.next_wake_ms.expect("the limiter's wait");
    }
    assert!(done);
    assert_eq!(f.posts().len(), 1);
    let j = outbox.get(&id).expect("get").expect("job");
    assert_eq!((j.state, j.attempts), (JobState::Done, 2));
}

#[tokio::test]
async fn an_account_without_limits_fails_without_blocking_the_others() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts());
    // An account with a publisher but no limits configured.
    d.add_account(
        "m-revoked",
        Route::new(
            MastodonPublisher::new(client(), &f.base_url(), "tok-unknown"),
            "m-revoked",
        ),
    );
    let mut plan = fan_out("n1");
    let revoked = NewJob::new(
        "n1",
        "m-revoked",
        ActionKind::Repost,
        Priority::Emergency,
        "转发",
    )
    .depends_on(&plan[0].id());
    let revoked_id = revoked.id();
    plan.push(revoked);
    let revoked = revoked_id;
    outbox.enqueue_all(plan, time.now).expect("enqueue");
    drain(&mut d, outbox.as_ref(), &mut time, 1_000, 20).await;
    let j = outbox.get(&revoked).expect("get").expect("job");
    assert_eq!(j.state, JobState::Failed);
    // m-revoked has no limits configured: it fails on the limiter (unknown account) before any
    // call; the others are unaffected.
    assert!(j.last_error.is_some(), "{j:?}");
    assert_fan_out_once(&f);
}

#[tokio::test]
async fn a_401_fails_with_the_platform_message_while_others_complete() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts());
    let plan = fan_out("n1");
    outbox.enqueue_all(plan, time.now).expect("enqueue");
    // The leads go alone in the first step.
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.done.len(), 2);
    time.advance(1_000);
    // The six reposts go in one step; the first request the platform sees is refused with 401.
    f.fail_next(1, 401);
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.attempted.len(), 6);
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(r.done.len(), 5, "{r:?}");
    let failed = outbox.get(&r.failed[0]).expect("get").expect("job");
    assert_eq!(failed.state, JobState::Failed);
    let msg = failed.last_error.expect("message");
    assert!(
        msg.contains("401") && msg.contains("injected failure"),
        "the platform's message: {msg}"
    );
    assert_eq!(f.posts().len(), 7);
}

#[tokio::test]
async fn after_a_crash_every_post_goes_exactly_once() {
    let (_, f) = FakePlatform::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("outbox.redb");
    let mut time = Time::new();
    let plan = fan_out("n1");
    let w2 = plan
        .iter()
        .find(|j| j.account_id == "w-a2")
        .expect("w-a2")
        .id();
    {
        let outbox: Arc<dyn OutboxStore> = Arc::new(Outbox::open(&path).expect("open"));
        // Three due jobs per step, so the fan-out stops half way.
        let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts()).with_batch(3);
        outbox.enqueue_all(plan, time.now).expect("enqueue");
        let r = d.step(time.now).await.expect("leads");
        assert_eq!(r.done.len(), 2);
        time.advance(1_000);
        let r = d.step(time.now).await.expect("half");
        assert_eq!(r.done.len(), 3, "{r:?}");
        assert!(!r.done.contains(&w2));
        time.advance(1_000);
        // The process dies while w-a2's repost is in flight: `attempting` is committed, the
        // platform accepted the post, the answer was lost.
        let j = outbox.mark_attempting(&w2, time.now).expect("attempting");
        let target = j.dependency_post_id.clone().expect("lead's post");
        let p = WeiboPublisher::new(client(), &f.base_url(), "tok-w-a2");
        f.drop_after_accept_next(1);
        let e = p
            .publish(&PostRequest {
                idempotency_key: j.idempotency_key.clone(),
                account_handle: "w-a2".into(),
                text: j.body.clone(),
                action: PublishAction::Repost { target },
                language: None,
                visibility: None,
            })
            .await
            .expect_err("dropped");
        assert!(e.must_check_before_retry(), "{e}");
        assert_eq!(f.posts().len(), 6);
        drop(d);
        drop(outbox);
    }
    let outbox: Arc<dyn OutboxStore> = Arc::new(Outbox::open(&path).expect("reopen"));
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts());
    let rec = d.recover(time.now).await.expect("recover");
    assert_eq!(rec.found, vec![w2.clone()], "{rec:?}");
    assert_eq!(rec.runnable, 2, "{rec:?}");
    // The limiters start exhausted after a restart: stepping advances past one period.
    drain(&mut d, outbox.as_ref(), &mut time, 10_000, 20).await;
    let jobs = outbox.jobs_for_notice("n1").expect("jobs");
    assert!(jobs.iter().all(|j| j.state == JobState::Done), "{jobs:#?}");
    assert_fan_out_once(&f);
    let j = outbox.get(&w2).expect("get").expect("job");
    let accepted = f
        .posts()
        .into_iter()
        .find(|p| p.account == "w-a2")
        .expect("w-a2's post");
    assert_eq!(j.platform_post_id.as_deref(), Some(accepted.id.as_str()));
}

#[tokio::test]
async fn pause_stops_every_post_and_resume_sends_them() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts());
    outbox
        .enqueue_all(fan_out("n1"), time.now)
        .expect("enqueue");
    outbox.pause().expect("pause");
    for _ in 0..3 {
        let r = d.step(time.now).await.expect("step");
        assert!(r.paused && r.attempted.is_empty());
        time.advance(60_000);
    }
    assert!(f.posts().is_empty());
    outbox.resume().expect("resume");
    drain(&mut d, outbox.as_ref(), &mut time, 1_000, 20).await;
    assert_fan_out_once(&f);
}

/// A file audit log shared like the service shares it, and its status (failure injection).
fn audit_log(
    dir: &std::path::Path,
) -> (
    huiying::respond::audit::SharedAudit,
    Arc<huiying::respond::audit::AuditStatus>,
) {
    let log = huiying::respond::audit::AuditLog::open(&dir.join("audit.jsonl")).expect("audit");
    let status = log.status();
    (Arc::new(std::sync::Mutex::new(log)), status)
}

/// The fan-out accounts' dispatcher with a file audit log.
struct Audited {
    f: FakeHandle,
    dir: tempfile::TempDir,
    status: Arc<huiying::respond::audit::AuditStatus>,
    time: Time,
    outbox: Arc<MemoryOutbox>,
    d: Dispatcher<ManualClock>,
}

async fn audited() -> Audited {
    let (_, f) = FakePlatform::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, status) = audit_log(dir.path());
    let time = Time::new();
    let outbox = Arc::new(MemoryOutbox::new());
    let d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts()).with_audit(log);
    Audited {
        f,
        dir,
        status,
        time,
        outbox,
        d,
    }
}

/// The actions of the audit file, in order.
fn audit_actions(dir: &std::path::Path) -> Vec<String> {
    huiying::respond::audit::read_all(&dir.join("audit.jsonl"))
        .expect("the audit log verifies")
        .into_iter()
        .map(|r| r.action)
        .collect()
}

fn job_states(outbox: &dyn OutboxStore, notice: &str) -> Vec<JobState> {
    outbox
        .jobs_for_notice(notice)
        .expect("jobs")
        .into_iter()
        .map(|j| j.state)
        .collect()
}

#[tokio::test]
async fn an_unwritable_audit_log_pauses_the_dispatcher_until_a_probe_record_is_written() {
    let mut a = audited().await;
    a.outbox
        .enqueue_all(fan_out("n1"), a.time.now)
        .expect("enqueue");
    a.status.inject_failure(true);
    for _ in 0..3 {
        let r = a.d.step(a.time.now).await.expect("step");
        assert!(
            r.paused && r.audit_paused && r.attempted.is_empty(),
            "{r:?}"
        );
        assert_eq!(
            r.next_wake_ms,
            Some(a.time.now + huiying::respond::dispatch::AUDIT_PROBE_MS),
            "the next probe"
        );
        assert!(a.d.audit_paused_since().is_some());
        assert!(a.status.dispatcher_paused_since().is_some() && !a.status.writable());
        a.time.advance(60_000);
    }
    // Nothing sent, nothing marked: every job is still pending.
    assert!(a.f.posts().is_empty());
    assert!(job_states(a.outbox.as_ref(), "n1")
        .iter()
        .all(|s| *s == JobState::Pending));
    assert!(audit_actions(a.dir.path()).is_empty());

    a.status.inject_failure(false);
    drain(&mut a.d, a.outbox.as_ref(), &mut a.time, 1_000, 20).await;
    assert_fan_out_once(&a.f);
    assert!(a.status.dispatcher_paused_since().is_none() && a.status.writable());
    let actions = audit_actions(a.dir.path());
    assert_eq!(
        actions[0], "dispatcher_resume",
        "the probe first: {actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "publish_attempt").count(),
        8,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "publish_ok").count(),
        8,
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_post_whose_outcome_cannot_be_recorded_is_held_not_sent_again() {
    let mut a = audited().await;
    let lead = lead_post("m-lead");
    let lead_id = lead.id();
    let amp = NewJob::new(
        "n1",
        AMPS[0],
        ActionKind::Repost,
        Priority::Emergency,
        "转发",
    )
    .depends_on(&lead_id);
    a.outbox
        .enqueue_all(vec![lead, amp], a.time.now)
        .expect("enqueue");
    // The attempt's record is written, the post goes out, its outcome's record fails.
    a.status.inject_failure_after(1);
    let r = a.d.step(a.time.now).await.expect("step");
    assert!(r.audit_paused && r.done.is_empty(), "{r:?}");
    assert_eq!(a.f.posts().len(), 1);
    let lead_job = a.outbox.get(&lead_id).expect("get").expect("lead");
    assert_eq!(
        lead_job.state,
        JobState::Attempting,
        "the outcome is pending"
    );
    for _ in 0..3 {
        a.time.advance(10_000);
        let r = a.d.step(a.time.now).await.expect("step");
        assert!(r.audit_paused && r.attempted.is_empty(), "{r:?}");
    }
    assert_eq!(a.f.posts().len(), 1, "nothing more is sent while paused");
    assert_eq!(audit_actions(a.dir.path()), vec!["publish_attempt"]);

    a.status.inject_failure(false);
    a.time.advance(10_000);
    let r = a.d.step(a.time.now).await.expect("step");
    assert_eq!(
        r.done.first(),
        Some(&lead_id),
        "the held outcome is recorded first, then the repost goes: {r:?}"
    );
    drain(&mut a.d, a.outbox.as_ref(), &mut a.time, 1_000, 10).await;
    let posts = a.f.posts();
    assert_eq!(posts.len(), 2, "the lead once, then its repost: {posts:?}");
    assert_eq!(
        audit_actions(a.dir.path()),
        vec![
            "publish_attempt",
            "dispatcher_resume",
            "publish_ok",
            "publish_attempt",
            "publish_ok"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_audit_log_pauses_publishing_and_a_restarted_one_resumes_it() {
    use crate::redis_server::OwnRedis;
    use huiying::respond::redis::Blocking;
    let (_, f) = FakePlatform::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = OwnRedis::start(dir.path(), false);
    let db = Arc::new(Blocking::new(&redis.url(), &Default::default()).expect("redis url"));
    let ns = crate::redis_server::namespace("audit-pause");
    let log = huiying::respond::audit::AuditLog::shared(db.clone(), &ns).expect("shared log");
    let status = log.status();
    let log = Arc::new(std::sync::Mutex::new(log));
    let mut time = Time::new();
    let outbox = Arc::new(MemoryOutbox::new());
    let mut d = dispatcher(&f, outbox.clone(), &time, &fan_out_accounts()).with_audit(log.clone());
    outbox
        .enqueue_all(fan_out("n1"), time.now)
        .expect("enqueue");
    redis.kill();
    for _ in 0..2 {
        let r = d.step(time.now).await.expect("step");
        assert!(r.audit_paused && r.attempted.is_empty(), "{r:?}");
        time.advance(5_000);
    }
    assert!(f.posts().is_empty());
    assert!(!status.writable());
    redis.restart();
    drain(&mut d, outbox.as_ref(), &mut time, 1_000, 20).await;
    assert_fan_out_once(&f);
    assert!(status.dispatcher_paused_since().is_none());
    let tail = log
        .lock()
        .expect("log")
        .tail(1000)
        .expect("the shared chain verifies");
    let actions: Vec<&str> = tail
        .records
        .iter()
        .rev()
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(actions[0], "dispatcher_resume", "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "publish_ok").count(), 8);
}

fn check_failures(platform: &str) -> u64 {
    huiying::metrics::respond::respond()
        .check_failures
        .with_label_values(&[platform])
        .get()
}

/// The stand-in has no `verify_credentials` (404): an uncertain Mastodon post cannot be
/// checked. Within the hour Mastodon honours the idempotency key, so the job is resent with
/// it (the platform answers with the first status) instead of waiting forever.
#[tokio::test]
async fn an_uncheckable_post_is_resent_with_its_key_within_the_hour() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[("m-lead", Kind::Mastodon, generous())],
    );
    f.remove_verify_credentials();
    let job = lead_post("m-lead");
    let id = job.id();
    outbox.enqueue(job, time.now).expect("enqueue");
    let before = check_failures("mastodon");
    f.drop_after_accept_next(1);
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.retried, vec![id.clone()], "{r:?}");
    drain(&mut d, outbox.as_ref(), &mut time, 15_000, 5).await;
    let j = outbox.get(&id).expect("get").expect("job");
    assert_eq!(j.state, JobState::Done, "{j:?}");
    let copies: Vec<_> = f
        .posts()
        .into_iter()
        .filter(|p| p.account == "m-lead")
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(j.platform_post_id.as_deref(), Some(copies[0].id.as_str()));
    assert!(check_failures("mastodon") > before);
}

/// Past the idempotency key's hour an uncheckable uncertain post may not be resent: the job
/// is given up as `check_failed` at once (a 404 is permanent), its amplifier fails, and the
/// notice has nothing left unfinished.
#[tokio::test]
async fn an_uncheckable_post_past_the_hour_is_marked_check_failed() {
    let (f, mut time, outbox) = start().await;
    let mut d = dispatcher(
        &f,
        outbox.clone(),
        &time,
        &[
            ("m-lead", Kind::Mastodon, generous()),
            ("m-a1", Kind::Mastodon, generous()),
        ],
    );
    f.remove_verify_credentials();
    let lead = lead_post("m-lead");
    let id = lead.id();
    let amp =
        NewJob::new("n1", "m-a1", ActionKind::Repost, Priority::Emergency, "").depends_on(&id);
    let amp_id = amp.id();
    outbox
        .enqueue_all(vec![lead, amp], time.now)
        .expect("enqueue");
    // Publishing was held for two hours (paused, say): the key would be forgotten by now.
    time.advance(2 * 3_600_000);
    let before = check_failures("mastodon");
    f.drop_after_accept_next(1);
    let r = d.step(time.now).await.expect("step");
    assert_eq!(r.check_failed, vec![id.clone()], "{r:?}");
    let j = outbox.get(&id).expect("get").expect("job");
    assert_eq!(j.state, JobState::CheckFailed, "{j:?}");
    let msg = j.last_error.clone().unwrap_or_default();
    assert!(
        msg.starts_with(huiying::respond::dispatch::CHECK_FAILED),
        "{msg}"
    );
    let a = outbox.get(&amp_id).expect("get").expect("amp");
    assert_eq!(a.state, JobState::Failed, "{a:?}");
    assert_eq!(outbox.depth().expect("depth"), 0);
    assert!(check_failures("mastodon") > before);
    // Nothing more is sent: one post (the one whose answer was lost).
    time.advance(60_000);
    let r = d.step(time.now).await.expect("step");
    assert!(r.attempted.is_empty(), "{r:?}");
    assert_eq!(f.posts().len(), 1);
}

/// After a crash, an uncertain job that cannot be checked and is past the key's hour is given
/// up by recovery, not retried forever.
#[tokio::test]
async fn recovery_gives_up_an_uncheckable_post_past_the_hour() {
    let (f, mut time, outbox) = start().await;
    let accounts = [("m-lead", Kind::Mastodon, generous())];
    let job = lead_post("m-lead");
    let id = job.id();
    outbox.enqueue(job, time.now).expect("enqueue");
    time.advance(2 * 3_600_000);
    // The process died while the post was in flight.
    outbox.mark_attempting(&id, time.now).expect("attempting");
    f.remove_verify_credentials();
    let mut d = dispatcher(&f, outbox.clone(), &time, &accounts);
    let rec = d.recover(time.now).await.expect("recover");
    assert_eq!(rec.check_failed, vec![id.clone()], "{rec:?}");
    let j = outbox.get(&id).expect("get").expect("job");
    assert_eq!(j.state, JobState::CheckFailed, "{j:?}");
    assert_eq!(outbox.depth().expect("depth"), 0);
    assert!(f.posts().is_empty());
}
