//! The dispatcher: takes due jobs from the outbox, asks the account's rate limiter, publishes
//! through the account's publisher and records the outcome, so that every post goes out exactly
//! once (or fails with the platform's message).
//!
//! # One step
//!
//! [`Dispatcher::step`] (`now_ms` is an input; [`Dispatcher::run`] reads it from the clock the
//! limiters run on, so one injected [`crate::clock`] clock drives both):
//!
//! 1. Nothing while the outbox is paused.
//! 2. [`OutboxStore::next_due`] (lane order: emergency, rebuttal, routine). At most **one job per
//!    account** per step (so at most one call in flight per account); an account's later due jobs
//!    wait for the next step ([`StepReport::more_due`]).
//! 3. For each chosen job, [`Limits::check`] takes a cell or refuses: a refused job stays
//!    `pending` (nothing consumed) and the wait is recorded ([`StepReport::next_wake_ms`]). An
//!    account without a publisher or limits, or whose profile forbids the action, fails the job.
//! 4. `publish_attempt` is audited, then `mark_attempting` committed, **before** the call.
//! 5. The calls of one step run concurrently (`join_all`), then each outcome is recorded:
//!    - accepted → `mark_done(post id)`, audit `publish_ok`;
//!    - `Uncertain` / `Duplicate` ([`PublishError::must_check_before_retry`]) →
//!      [`Publisher::find_recent`]`(text, job.created_at)`: found → `mark_done` with that post's
//!      id (nothing is sent again); not found → `Uncertain` is retried with backoff, `Duplicate`
//!      fails (the publish module's rule: never resend an unchanged body blindly); the check
//!      itself failed → see "When the check fails" below;
//!    - other retryable errors → `mark_retry` at [`Backoff::retry_at`] (at least `Retry-After`),
//!      audit `publish_failed` with `retryable: true`;
//!    - permanent errors (401, 403, 422…) → `mark_failed` with the platform's message, audit
//!      `publish_failed`; the outbox fails the job's dependants (an amplifier has nothing to
//!      repost) and nobody else.
//!
//! A repost, reply or comment answers [`Job::in_reply_to`] when it was named at enqueue time (a
//! rebuttal reply to a rumor post), else its dependency's post ([`Job::dependency_post_id`]: an
//! amplifier reposting the lead). `find_recent` is asked for posts answering that same target.
//!
//! # Audit first
//!
//! Every record is written before the state it reports: `publish_attempt` before
//! `mark_attempting` (and the call), `publish_ok` / `publish_failed` before `mark_done`,
//! `mark_retry` or `mark_failed`. When the audit log refuses a record the dispatcher **pauses**:
//! a job whose attempt record failed stays pending (its limiter cell is spent), an answered
//! call whose outcome record failed is held in memory with its job left `attempting`, and
//! nothing more is sent. [`AuditStatus`] shows the pause (`/healthz`, the console,
//! `huiying_dispatcher_paused{reason="audit"}`). Each later step (every [`AUDIT_PROBE_MS`])
//! first writes a `dispatcher_resume` record as a probe; once it is written the held outcomes
//! are recorded and publishing goes on. (A process that stops while holding outcomes leaves
//! those jobs `attempting`: recovery resolves them with `find_recent`.) A `publish_attempt`
//! whose `mark_attempting` then fails (paused, taken by another instance) has no outcome
//! record: nothing was sent.
//!
//! # When the check fails
//!
//! A failed `find_recent` is counted in `huiying_publish_check_failures_total{platform}`. Then:
//!
//! 1. the platform honours the job's idempotency key ([`Publisher::idempotency_window`],
//!    Mastodon: 1 h) and the job was enqueued less than that window minus [`KEY_MARGIN`] ago →
//!    retried at once; the next attempt checks first and, if the check fails again and the key
//!    is *still* honoured, **resends with the same key** (WARN) instead of waiting: the platform
//!    returns the first post if there was one. (Decided when sending: a job that waited past
//!    the window is not resent blindly.)
//! 2. the error is permanent (the stand-in has no `verify_credentials`: 404; a revoked token),
//!    or the job has made [`MAX_UNCHECKED_ATTEMPTS`] attempts → **`check_failed`** (WARN, audit
//!    `publish_failed` with `check_failed: true`): the job is finished, so the notice is no
//!    longer held by it, and the notice JSON, console and wall show it for an operator to look
//!    on the platform (its dependants fail: their target is unknown);
//! 3. otherwise → retried with [`UNCHECKED`] in `last_error`: the next attempt checks *before*
//!    sending.
//!
//! Only Weibo answers `Duplicate`, and it has no idempotency key: case 1 never applies to it.
//!
//! # Recovery
//!
//! [`Dispatcher::recover`] (called by the first step if not called before) resolves the jobs a
//! crash left `attempting` with `find_recent` before anything else: found → done; not found →
//! retry now; the check failed → as above. It also exhausts the limiters of the accounts that posted in the last hour (see
//! "After a restart" in [`crate::respond::limits`]).
//!
//! # Blocking calls
//!
//! The outbox and the audit log are blocking (each commit is fsynced); the dispatcher calls them
//! from its task between platform calls, which is fine for one dispatcher task.

use crate::clock::{Clock, SystemClock};
use crate::respond::audit::{AuditAction, AuditLog, AuditStatus};
use crate::respond::limits::{LimitError, LimitKind, Limits, Scope, HOUR};
use crate::respond::outbox::{
    ActionKind, Backoff, Job, JobId, JobState, OutboxError, OutboxStore, Recovery,
};
use crate::respond::publish::{self, AnyPublisher, PostRequest, Posted, PublishError, Publisher};
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Prefix of `last_error` for a job whose uncertain outcome could not be checked: the next
/// attempt calls `find_recent` before sending.
pub const UNCHECKED: &str = "uncertain, unchecked: ";

/// Prefix of `last_error` for a job given up as `check_failed`.
pub const CHECK_FAILED: &str = "the post may exist; it could not be checked: ";

/// A job whose uncertain outcome still cannot be checked when it has made this many attempts
/// is given up as `check_failed` (unless resending under the idempotency key is safe).
pub const MAX_UNCHECKED_ATTEMPTS: u32 = 6;

/// Resend under the platform's idempotency window only while the job is younger than the
/// window minus this margin (clock skew; the first attempt came after the enqueue).
pub const KEY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The actor written in the audit log.
pub const ACTOR: &str = "dispatcher";

/// While paused for the audit log, how often (ms) a step probes it with a record.
pub const AUDIT_PROBE_MS: i64 = 2_000;

/// How the dispatcher posts as one account.
#[derive(Debug)]
pub struct Route {
    /// The account's publisher (holds its credentials).
    pub publisher: AnyPublisher,
    /// The account's handle (logs, webhook body, file sink).
    pub handle: String,
    /// ISO 639 language sent with posts (Mastodon `language`).
    pub language: Option<String>,
    /// Mastodon visibility.
    pub visibility: Option<String>,
}

impl Route {
    /// A route with no language or visibility.
    pub fn new(publisher: impl Into<AnyPublisher>, handle: &str) -> Self {
        Route {
            publisher: publisher.into(),
            handle: handle.to_string(),
            language: None,
            visibility: None,
        }
    }

    /// Which limiter an action uses on this account's platform: Mastodon counts replies and
    /// comments (statuses) as posts.
    pub fn limit_kind(&self, action: ActionKind) -> LimitKind {
        limit_kind(self.publisher.platform(), action)
    }
}

/// Which limiter an action uses on `platform`: Mastodon counts replies and comments (statuses)
/// as posts.
pub fn limit_kind(platform: &str, action: ActionKind) -> LimitKind {
    match (platform, action) {
        ("mastodon", ActionKind::Reply | ActionKind::Comment) => LimitKind::Post,
        (_, a) => LimitKind::from(a),
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// The outbox is paused, or the dispatcher waits for the audit log: nothing was attempted.
    pub paused: bool,
    /// The dispatcher is paused because an audit record could not be written: nothing is sent
    /// and no outcome is recorded until a probe record is written.
    pub audit_paused: bool,
    /// Jobs attempted (publish called, or an unchecked outcome checked).
    pub attempted: Vec<JobId>,
    /// Jobs done (accepted, or found by `find_recent`).
    pub done: Vec<JobId>,
    /// Of `done`: found by `find_recent` after an uncertain outcome (not sent again).
    pub found: Vec<JobId>,
    /// Jobs scheduled for a retry.
    pub retried: Vec<JobId>,
    /// Jobs failed permanently (with their dependants).
    pub failed: Vec<JobId>,
    /// Jobs given up as `check_failed`: their uncertain outcome could not be checked.
    pub check_failed: Vec<JobId>,
    /// Due jobs left pending because their account's (or the app's) limiter refused.
    pub rate_limited: Vec<JobId>,
    /// Due jobs left for the next step (one job per account per step).
    pub more_due: bool,
    /// The earliest time (ms) something may become possible: a limiter's wait, a retry.
    pub next_wake_ms: Option<i64>,
    /// Outbox or audit errors met on the way (the job stays where the outbox has it).
    pub errors: Vec<String>,
}

impl StepReport {
    fn wake(&mut self, at: i64) {
        self.next_wake_ms = Some(self.next_wake_ms.map_or(at, |w| w.min(at)));
    }
}

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Uncertain jobs whose post was found: done.
    pub found: Vec<JobId>,
    /// Uncertain jobs whose post was not found: retry now.
    pub retried: Vec<JobId>,
    /// Uncertain jobs that could not be checked (no route, the check failed): retried with the
    /// [`UNCHECKED`] mark, so the next attempt checks first.
    pub unchecked: Vec<JobId>,
    /// Uncertain jobs that could not be checked but whose idempotency key the platform still
    /// honours: retried now; the next attempt checks once more and, if that fails too, resends
    /// with the same key.
    pub resent: Vec<JobId>,
    /// Uncertain jobs that cannot be checked (a permanent error) and may not be resent: given
    /// up as `check_failed`.
    pub check_failed: Vec<JobId>,
    /// Jobs pending or retry.
    pub runnable: usize,
    /// Jobs waiting for their dependency.
    pub blocked: usize,
}

/// A dispatcher failure that stops a step (the outbox could not be read).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

enum Outcome {
    Posted(Posted),
    Found(Posted),
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    Failed(String),
    /// The outcome of an earlier attempt cannot be checked and resending is not safe.
    CheckFailed(String),
}

/// What to do when a check of an uncertain outcome (`find_recent`) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unchecked {
    /// The platform still honours the job's idempotency key: resend with it (decided again
    /// when sending: a job that waits past the window is not resent blindly).
    Resend,
    /// Check again on the next attempt.
    Later,
    /// Give up: `check_failed`.
    GiveUp,
}

/// Whether resending `job` with its idempotency key is safe at `now_ms`: the platform honours
/// the key for a window, and the job was enqueued (so every attempt, and the post if one was
/// made, came after) less than that window minus [`KEY_MARGIN`] ago.
fn key_still_honoured(route: &Route, job: &Job, now_ms: i64) -> bool {
    route.publisher.idempotency_window().is_some_and(|w| {
        now_ms.saturating_sub(job.created_at) < ms(w).saturating_sub(ms(KEY_MARGIN))
    })
}

/// Decide after a failed check of `job`'s uncertain outcome (and count it in
/// `huiying_publish_check_failures_total`): resend under the idempotency key while it is
/// still honoured; give up on a permanent error or after [`MAX_UNCHECKED_ATTEMPTS`]; else
/// check again later.
fn after_failed_check(route: &Route, job: &Job, now_ms: i64, err: &PublishError) -> Unchecked {
    let platform = route.publisher.platform();
    crate::metrics::respond::respond()
        .check_failures
        .with_label_values(&[platform])
        .inc();
    if key_still_honoured(route, job, now_ms) {
        Unchecked::Resend
    } else if !err.retryable || job.attempts >= MAX_UNCHECKED_ATTEMPTS {
        Unchecked::GiveUp
    } else {
        tracing::info!(
            job = %job.id,
            account = %route.handle,
            platform,
            attempts = job.attempts,
            error = %err,
            "Cannot check whether an uncertain post exists yet; checking again later."
        );
        Unchecked::Later
    }
}

/// Takes jobs from the outbox and publishes them. See the module docs.
pub struct Dispatcher<C: governor::clock::Clock = SystemClock> {
    outbox: Arc<dyn OutboxStore>,
    limits: Arc<Limits<C>>,
    routes: HashMap<String, Route>,
    audit: Option<Arc<Mutex<AuditLog>>>,
    status: Option<Arc<AuditStatus>>,
    /// Since when (ms) nothing is sent because an audit record could not be written.
    audit_paused: Option<i64>,
    /// Answered calls whose record the audit log refused: their jobs stay `attempting` until
    /// the record is written (first thing after the pause).
    held: Vec<(Job, Outcome)>,
    backoff: Backoff,
    batch: usize,
    notify: Arc<Notify>,
    recovered: bool,
    /// Retry times scheduled (by this process or found at recovery), to wake `run`.
    wakes: BTreeSet<i64>,
}

/// Unix milliseconds from the system clock.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<C: governor::clock::Clock + Clock + Clone> Dispatcher<C> {
    /// A dispatcher over `outbox` and `limits`, with no accounts, no audit log, a backoff of
    /// 2 s … 10 min and batches of 256; [`Dispatcher::run`] reads the limits' clock.
    pub fn new(outbox: Arc<dyn OutboxStore>, limits: Arc<Limits<C>>) -> Self {
        Dispatcher {
            outbox,
            limits,
            routes: HashMap::new(),
            audit: None,
            status: None,
            audit_paused: None,
            held: Vec::new(),
            backoff: Backoff::with_seed(system_now_ms() as u64),
            batch: 256,
            notify: Arc::new(Notify::new()),
            recovered: false,
            wakes: BTreeSet::new(),
        }
    }

    /// Post as `account_id` through `route`. The account's limits must be in [`Limits`].
    pub fn add_account(&mut self, account_id: &str, route: Route) {
        self.routes.insert(account_id.to_string(), route);
    }

    /// Append publish attempts and outcomes to `audit`.
    pub fn with_audit(mut self, audit: Arc<Mutex<AuditLog>>) -> Self {
        self.status = Some(audit.lock().unwrap_or_else(|p| p.into_inner()).status());
        self.audit = Some(audit);
        self
    }

    /// Since when (ms) the dispatcher waits for the audit log, if it does.
    pub fn audit_paused_since(&self) -> Option<i64> {
        self.audit_paused
    }

    /// Use this backoff (seeded, for reproducible tests).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How many due jobs one step reads from the outbox (at least 1).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Notify this after enqueueing or resuming, to wake [`Dispatcher::run`] at once.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// Append the record of `job`'s `action`; `Err` when the log refused it.
    fn audit(
        &self,
        now: i64,
        action: AuditAction,
        job: &Job,
        detail: serde_json::Value,
    ) -> Result<(), String> {
        let mut detail = detail;
        if let Some(o) = detail.as_object_mut() {
            o.insert("job".into(), json!(job.id));
            o.insert("account".into(), json!(job.account_id));
            o.insert("action".into(), json!(job.action.as_str()));
            o.entry("attempt").or_insert(json!(job.attempts));
        }
        self.append(now, action, Some(&job.notice_id), detail)
    }

    fn append(
        &self,
        now: i64,
        action: AuditAction,
        notice: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), String> {
        let Some(log) = self.audit.as_ref() else {
            return Ok(());
        };
        let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
        g.append(now, ACTOR, action, notice, detail)
            .map(|_| ())
            .map_err(|e| format!("audit: {e}"))
    }

    /// A record could not be written: send nothing more and record no outcome until a probe
    /// record is written (see "Audit first" in the module docs).
    fn pause_for_audit(&mut self, now_ms: i64, error: &str) {
        if self.audit_paused.is_none() {
            tracing::error!(
                error,
                "Dispatcher paused: the audit log cannot be written; nothing is sent until it can."
            );
            self.audit_paused = Some(now_ms);
            if let Some(s) = &self.status {
                s.set_dispatcher_paused(Some(now_ms));
            }
        }
    }

    fn report_audit_pause(&self, now_ms: i64, report: &mut StepReport) {
        report.paused = true;
        report.audit_paused = true;
        report.wake(now_ms.saturating_add(AUDIT_PROBE_MS));
    }

    /// While paused for the audit log, probe it with a `dispatcher_resume` record; then record
    /// the held outcomes. False while the log still refuses.
    fn audit_ready(&mut self, now_ms: i64, report: &mut StepReport) -> bool {
        if let Some(since) = self.audit_paused {
            let detail = json!({"paused_at": since, "held": self.held.len()});
            let probe = self.append(
                now_ms,
                AuditAction::Other("dispatcher_resume".into()),
                None,
                detail,
            );
            if let Err(e) = probe {
                report.errors.push(e);
                self.report_audit_pause(now_ms, report);
                return false;
            }
            tracing::info!(
                paused_at = since,
                "Dispatcher resumed: the audit log takes writes again."
            );
            self.audit_paused = None;
            if let Some(s) = &self.status {
                s.set_dispatcher_paused(None);
            }
        }
        let mut held = std::mem::take(&mut self.held).into_iter();
        while let Some((job, outcome)) = held.next() {
            if let Err(outcome) = self.settle(now_ms, &job, outcome, report) {
                self.held.push((job, outcome));
                self.held.extend(held);
                self.report_audit_pause(now_ms, report);
                return false;
            }
        }
        true
    }

    /// Record an answered call: its audit record first, then the outbox. `Err` gives the
    /// outcome back when the log refused the record (nothing recorded; the job stays
    /// `attempting`; the dispatcher is paused).
    fn settle(
        &mut self,
        now_ms: i64,
        job: &Job,
        outcome: Outcome,
        report: &mut StepReport,
    ) -> Result<(), Outcome> {
        let mut retry_at = now_ms;
        let (action, detail) = match &outcome {
            Outcome::Posted(p) => (
                AuditAction::PublishOk,
                json!({"post_id": p.post_id, "url": p.url}),
            ),
            Outcome::Found(p) => (
                AuditAction::PublishOk,
                json!({"post_id": p.post_id, "url": p.url, "resolved": "find_recent"}),
            ),
            Outcome::Retry {
                message,
                retry_after,
            } => {
                retry_at = self.backoff.retry_at(job.attempts, now_ms, *retry_after);
                (
                    AuditAction::PublishFailed,
                    json!({"retryable": true, "retry_at": retry_at, "error": message}),
                )
            }
            Outcome::Failed(message) => (
                AuditAction::PublishFailed,
                json!({"retryable": false, "error": message}),
            ),
            Outcome::CheckFailed(message) => (
                AuditAction::PublishFailed,
                json!({"retryable": false, "check_failed": true, "error": message}),
            ),
        };
        if let Err(e) = self.audit(now_ms, action, job, detail) {
            report.errors.push(e.clone());
            self.pause_for_audit(now_ms, &e);
            return Err(outcome);
        }
        let recorded = match &outcome {
            Outcome::Posted(p) | Outcome::Found(p) => {
                self.outbox.mark_done(&job.id, &p.post_id, now_ms).map(|_| {
                    if matches!(outcome, Outcome::Found(_)) {
                        report.found.push(job.id.clone());
                    }
                    report.done.push(job.id.clone());
                })
            }
            Outcome::Retry { message, .. } => self
                .outbox
                .mark_retry(&job.id, now_ms, retry_at, message)
                .map(|_| {
                    self.wakes.insert(retry_at);
                    report.retried.push(job.id.clone());
                }),
            Outcome::Failed(message) => self
                .outbox
                .mark_failed(&job.id, now_ms, message)
                .map(|_| report.failed.push(job.id.clone())),
            Outcome::CheckFailed(message) => self
                .outbox
                .mark_check_failed(&job.id, now_ms, message)
                .map(|_| {
                    warn_check_failed(job, message);
                    report.check_failed.push(job.id.clone());
                }),
        };
        if let Err(e) = recorded {
            self.stranded(report, e);
        }
        Ok(())
    }

    /// Exhaust the limiters of the accounts that posted within the last hour (+ margin): the
    /// uncertain jobs' and the done jobs of the unfinished jobs' notices.
    fn exhaust_recent(&self, rec: &Recovery, now_ms: i64) -> Result<(), DispatchError> {
        let recent = now_ms.saturating_sub(ms(HOUR + crate::respond::limits::DEFAULT_MARGIN));
        let mut exhausted = HashSet::new();
        let mut any = false;
        let mut touched = |j: &Job| {
            if let Some(r) = self.routes.get(&j.account_id) {
                if exhausted.insert((j.account_id.clone(), r.limit_kind(j.action))) {
                    self.limits.exhaust(&j.account_id, r.limit_kind(j.action));
                }
                any = true;
            }
        };
        for j in &rec.uncertain {
            touched(j);
        }
        // Done jobs are not in the recovery: look at the unfinished jobs' notices for them.
        let mut notices: Vec<&str> = rec
            .uncertain
            .iter()
            .chain(&rec.runnable)
            .chain(&rec.blocked)
            .map(|j| j.notice_id.as_str())
            .collect();
        notices.sort_unstable();
        notices.dedup();
        for n in notices {
            for j in self.outbox.jobs_for_notice(n)? {
                if j.state == JobState::Done && j.updated_at >= recent {
                    touched(&j);
                }
            }
        }
        if any {
            self.limits.exhaust_app();
        }
        Ok(())
    }

    /// Resolve the jobs a crash left `attempting` (see the module docs), and exhaust the
    /// limiters of accounts that posted within the last hour (+ margin).
    pub async fn recover(&mut self, now_ms: i64) -> Result<RecoveryReport, DispatchError> {
        let rec = self.outbox.recover()?;
        let mut report = RecoveryReport {
            runnable: rec.runnable.len(),
            blocked: rec.blocked.len(),
            ..RecoveryReport::default()
        };
        for j in &rec.runnable {
            if j.next_attempt_at > now_ms {
                self.wakes.insert(j.next_attempt_at);
            }
        }
        // The process that died may have posted just now: start with used-up limiters (not
        // needed when a cluster-wide limiter keeps the state outside this process).
        if !self.limits.is_shared() {
            self.exhaust_recent(&rec, now_ms)?;
        }

        for job in rec.uncertain {
            let Some(route) = self.routes.get(&job.account_id) else {
                self.outbox.mark_retry(
                    &job.id,
                    now_ms,
                    now_ms,
                    &format!("{UNCHECKED}no publisher for account {}", job.account_id),
                )?;
                report.unchecked.push(job.id);
                continue;
            };
            match route
                .publisher
                .find_recent(&job.body, target_of(&job), job.created_at)
                .await
            {
                Ok(Some(p)) if !job.body.trim().is_empty() => {
                    // Audit first: without its record the job stays `attempting`.
                    let detail =
                        json!({"post_id": p.post_id, "url": p.url, "resolved": "find_recent"});
                    if let Err(e) = self.audit(now_ms, AuditAction::PublishOk, &job, detail) {
                        self.pause_for_audit(now_ms, &e);
                        return Ok(report);
                    }
                    self.outbox.mark_done(&job.id, &p.post_id, now_ms)?;
                    crate::metrics::respond::respond().post(
                        route.publisher.platform(),
                        "recovered",
                        None,
                    );
                    report.found.push(job.id);
                }
                Ok(_) => {
                    self.outbox.mark_retry(
                        &job.id,
                        now_ms,
                        now_ms,
                        "uncertain after a restart; not found on the platform",
                    )?;
                    report.retried.push(job.id);
                }
                Err(e) => match after_failed_check(route, &job, now_ms, &e) {
                    Unchecked::GiveUp => {
                        let message = format!("{CHECK_FAILED}{e}");
                        // Audit first: without its record the job stays `attempting`.
                        if let Err(e) = self.give_up(now_ms, &job, &message)? {
                            self.pause_for_audit(now_ms, &e);
                            return Ok(report);
                        }
                        report.check_failed.push(job.id);
                    }
                    // The next attempt checks again, and resends if the check still fails
                    // and the key is still honoured then.
                    u => {
                        self.outbox.mark_retry(
                            &job.id,
                            now_ms,
                            now_ms,
                            &format!("{UNCHECKED}{e}"),
                        )?;
                        match u {
                            Unchecked::Resend => report.resent.push(job.id),
                            _ => report.unchecked.push(job.id),
                        }
                    }
                },
            }
        }
        self.recovered = true;
        if !(report.found.is_empty()
            && report.retried.is_empty()
            && report.unchecked.is_empty()
            && report.resent.is_empty()
            && report.check_failed.is_empty())
        {
            tracing::info!(
                found = report.found.len(),
                retried = report.retried.len(),
                unchecked = report.unchecked.len(),
                resent = report.resent.len(),
                check_failed = report.check_failed.len(),
                runnable = report.runnable,
                blocked = report.blocked,
                "Outbox recovered: jobs a crash left in flight are resolved."
            );
        }
        Ok(report)
    }

    /// Attempt every due job that may go now (see the module docs).
    pub async fn step(&mut self, now_ms: i64) -> Result<StepReport, DispatchError> {
        let mut report = StepReport::default();
        if !self.audit_ready(now_ms, &mut report) {
            return Ok(report);
        }
        if !self.recovered || self.outbox.needs_recovery() {
            self.recover(now_ms).await?;
            if self.audit_paused.is_some() {
                self.report_audit_pause(now_ms, &mut report);
                return Ok(report);
            }
        }
        let stale: Vec<i64> = self.wakes.range(..=now_ms).copied().collect();
        for w in stale {
            self.wakes.remove(&w);
        }
        if self.outbox.is_paused()? {
            report.paused = true;
            return Ok(report);
        }
        let due = self.outbox.next_due(now_ms, self.batch)?;
        if due.len() >= self.batch {
            report.more_due = true;
        }
        // Choose at most one job per account, in lane order.
        let mut busy: HashSet<String> = HashSet::new();
        let mut chosen: Vec<Job> = Vec::new();
        let mut refused: Option<String> = None;
        for job in due {
            if busy.contains(&job.account_id) {
                report.more_due = true;
                continue;
            }
            let Some(route) = self.routes.get(&job.account_id) else {
                let msg = format!("no publisher for account {}", job.account_id);
                if let Err(e) = self.fail(now_ms, &job, &msg, &mut report)? {
                    refused = Some(e);
                    break;
                }
                continue;
            };
            match self
                .limits
                .check(&job.account_id, route.limit_kind(job.action))
            {
                Ok(()) => {}
                Err(LimitError::Wait { wait, scope }) => {
                    let scope = match scope {
                        Scope::Account => "account",
                        Scope::App => "app",
                    };
                    crate::metrics::respond::respond()
                        .rate_limit_waits
                        .with_label_values(&[scope])
                        .inc();
                    report.rate_limited.push(job.id.clone());
                    report.wake(now_ms.saturating_add(ms(wait).max(1)));
                    continue;
                }
                Err(LimitError::Unavailable(e)) => {
                    // Never post without the cluster-wide limit: wait for Redis.
                    report.errors.push(e);
                    report.rate_limited.push(job.id.clone());
                    report.wake(now_ms.saturating_add(1000));
                    continue;
                }
                Err(e) => {
                    if let Err(e) = self.fail(now_ms, &job, &e.to_string(), &mut report)? {
                        refused = Some(e);
                        break;
                    }
                    continue;
                }
            }
            // Audit first: no record, no attempt (the job stays pending).
            let detail = json!({
                "platform": route.publisher.platform(),
                "attempt": job.attempts.saturating_add(1),
            });
            if let Err(e) = self.audit(now_ms, AuditAction::PublishAttempt, &job, detail) {
                refused = Some(e);
                break;
            }
            let job = match self.outbox.mark_attempting(&job.id, now_ms) {
                Ok(j) => j,
                Err(OutboxError::Paused) => {
                    report.paused = true;
                    break;
                }
                Err(e) => {
                    report.errors.push(e.to_string());
                    continue;
                }
            };
            busy.insert(job.account_id.clone());
            report.attempted.push(job.id.clone());
            chosen.push(job);
        }
        if let Some(e) = refused {
            report.errors.push(e.clone());
            self.pause_for_audit(now_ms, &e);
        }

        let routes = &self.routes;
        let outcomes = futures::future::join_all(chosen.iter().map(|job| async move {
            match routes.get(&job.account_id) {
                Some(route) => {
                    let started = std::time::Instant::now();
                    let outcome = attempt(route, job, now_ms).await;
                    count_outcome(
                        route.publisher.platform(),
                        &outcome,
                        started.elapsed().as_secs_f64(),
                    );
                    outcome
                }
                None => Outcome::Failed(format!("no publisher for account {}", job.account_id)),
            }
        }))
        .await;

        for (job, outcome) in chosen.into_iter().zip(outcomes) {
            if self.audit_paused.is_some() {
                self.held.push((job, outcome));
                continue;
            }
            if let Err(outcome) = self.settle(now_ms, &job, outcome, &mut report) {
                self.held.push((job, outcome));
            }
        }
        if self.audit_paused.is_some() {
            // Only the probe wakes a paused dispatcher.
            report.next_wake_ms = None;
            self.report_audit_pause(now_ms, &mut report);
            return Ok(report);
        }
        if report.more_due {
            report.wake(now_ms);
        }
        if let Some(&w) = self.wakes.iter().next() {
            report.wake(w);
        }
        Ok(report)
    }

    /// An outcome could not be recorded: the job stays `attempting`. Run recovery again on the
    /// next step, which resolves it with `find_recent` like after a crash.
    fn stranded(&mut self, report: &mut StepReport, e: impl std::fmt::Display) {
        report.errors.push(e.to_string());
        self.recovered = false;
        report.more_due = true;
    }

    /// Fail a job that is not attempted (no publisher, the profile forbids the action): audit
    /// first; `Ok(Err(..))` when the log refused the record (the job stays pending).
    fn fail(
        &self,
        now_ms: i64,
        job: &Job,
        message: &str,
        report: &mut StepReport,
    ) -> Result<Result<(), String>, DispatchError> {
        let detail = json!({"retryable": false, "error": message});
        if let Err(e) = self.audit(now_ms, AuditAction::PublishFailed, job, detail) {
            return Ok(Err(e));
        }
        self.outbox.mark_failed(&job.id, now_ms, message)?;
        report.failed.push(job.id.clone());
        Ok(Ok(()))
    }

    /// Give up `job` as `check_failed` (its dependants fail) after recovery could not check
    /// it: the audit record first (`Ok(Err(..))` when the log refused it: nothing changed).
    fn give_up(
        &self,
        now_ms: i64,
        job: &Job,
        message: &str,
    ) -> Result<Result<(), String>, DispatchError> {
        let detail = json!({"retryable": false, "check_failed": true, "error": message});
        if let Err(e) = self.audit(now_ms, AuditAction::PublishFailed, job, detail) {
            return Ok(Err(e));
        }
        self.outbox.mark_check_failed(&job.id, now_ms, message)?;
        warn_check_failed(job, message);
        Ok(Ok(()))
    }

    /// Step until `cancel`: after a step that finished a job, step again at once (its
    /// dependants may be due); otherwise wait until the earliest wake time, a
    /// [`Dispatcher::notifier`] notification, or at most `idle` (a safety net).
    pub async fn run(&mut self, cancel: CancellationToken, idle: Duration) {
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let now = self.limits.clock().now_ms();
            let wait = match self.step(now).await {
                // A job just finished: its dependants (the amplifiers of a lead) may be due now.
                Ok(r) if !r.done.is_empty() || !r.found.is_empty() => Duration::ZERO,
                Ok(r) => match r.next_wake_ms {
                    Some(w) => Duration::from_millis(u64::try_from(w - now).unwrap_or(0)).min(idle),
                    None => idle,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "Dispatcher: step failed; retrying shortly.");
                    Duration::from_secs(1).min(idle)
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The post a repost, reply or comment answers: the one named at enqueue time (a rumor post
/// answered by a rebuttal), else its dependency's post (an amplifier reposting the lead).
/// `None` for an original post.
fn target_of(job: &Job) -> Option<&str> {
    match job.action {
        ActionKind::Post => None,
        _ => job
            .in_reply_to
            .as_deref()
            .or(job.dependency_post_id.as_deref()),
    }
}

/// Count an answered attempt in `huiying_posts_total` and its latency.
fn count_outcome(platform: &str, outcome: &Outcome, seconds: f64) {
    let o = match outcome {
        Outcome::Posted(_) => "ok",
        Outcome::Found(_) => "recovered",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed(_) | Outcome::CheckFailed(_) => "failed",
    };
    crate::metrics::respond::respond().post(platform, o, Some(seconds));
}

/// One attempt: check first if an earlier outcome was left unchecked, then publish, then
/// resolve an uncertain or duplicate answer with `find_recent`.
async fn attempt(route: &Route, job: &Job, now_ms: i64) -> Outcome {
    let checkable = !job.body.trim().is_empty();
    if checkable
        && job
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(UNCHECKED))
    {
        match route
            .publisher
            .find_recent(&job.body, target_of(job), job.created_at)
            .await
        {
            Ok(Some(p)) => return Outcome::Found(p),
            Ok(None) => {}
            Err(e) => match after_failed_check(route, job, now_ms, &e) {
                Unchecked::Resend => tracing::warn!(
                    job = %job.id,
                    account = %route.handle,
                    platform = route.publisher.platform(),
                    error = %e,
                    "Cannot check whether an uncertain post exists; resending it with the same idempotency key, which the platform still honours."
                ),
                Unchecked::Later => {
                    return Outcome::Retry {
                        message: format!("{UNCHECKED}{e}"),
                        retry_after: e.retry_after,
                    }
                }
                Unchecked::GiveUp => return Outcome::CheckFailed(format!("{CHECK_FAILED}{e}")),
            },
        }
    }
    let target = target_of(job).map(str::to_string);
    let Some(action) = publish::Action::with_target(job.action, target) else {
        return Outcome::Failed(format!("{} without a target post", job.action.as_str()));
    };
    let req = PostRequest {
        idempotency_key: job.idempotency_key.clone(),
        account_handle: route.handle.clone(),
        text: job.body.clone(),
        action,
        language: route.language.clone(),
        visibility: route.visibility.clone(),
    };
    match route.publisher.publish(&req).await {
        Ok(p) => Outcome::Posted(p),
        Err(e) if e.must_check_before_retry() => resolve(route, job, e, now_ms).await,
        Err(e) if e.retryable => Outcome::Retry {
            message: e.to_string(),
            retry_after: e.retry_after,
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn resolve(route: &Route, job: &Job, err: PublishError, now_ms: i64) -> Outcome {
    let found = if job.body.trim().is_empty() {
        // Nothing to match by text (a Mastodon reblog, idempotent per target): resend.
        Ok(None)
    } else {
        route
            .publisher
            .find_recent(&job.body, target_of(job), job.created_at)
            .await
    };
    match found {
        Ok(Some(p)) => Outcome::Found(p),
        Ok(None) if err.kind == publish::ErrorKind::Duplicate => Outcome::Failed(err.to_string()),
        Ok(None) => Outcome::Retry {
            message: err.to_string(),
            retry_after: err.retry_after,
        },
        // The next attempt checks again, and resends if the check still fails and the key is
        // still honoured then.
        Err(e) => match after_failed_check(route, job, now_ms, &e) {
            Unchecked::Resend | Unchecked::Later => Outcome::Retry {
                message: format!("{UNCHECKED}{err}; check failed: {e}"),
                retry_after: e.retry_after,
            },
            Unchecked::GiveUp => Outcome::CheckFailed(format!("{CHECK_FAILED}{e} (after: {err})")),
        },
    }
}

/// One WARN per job given up as `check_failed`.
fn warn_check_failed(job: &Job, message: &str) {
    tracing::warn!(
        job = %job.id,
        notice = %job.notice_id,
        account = %job.account_id,
        error = %message,
        "An uncertain post cannot be checked and may not be resent: marked check_failed; look on the platform whether it exists."
    );
}
