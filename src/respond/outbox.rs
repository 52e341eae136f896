//! The durable outbox: every post a notice needs (one per account and action) as a job that is
//! stored before it is attempted and marked done only after the platform answered.
//!
//! [`Outbox`] keeps jobs in their own `redb` file (every commit is fsynced); [`MemoryOutbox`] is
//! the same state machine in memory, for tests. Both implement [`OutboxStore`] and share the
//! transition code, so they behave alike (a unit test runs random operations on both and compares).
//!
//! # A job's life
//!
//! ```text
//!            enqueue                mark_attempting            mark_done
//! (new) ──────────────► pending ───────────────────► attempting ─────────► done
//!                          │   ▲ (dependency done)       │  │
//!              mark_failed │   └─ blocked while its      │  └─ mark_retry(at) ──► retry ─┐
//!                          ▼      lead is not done       ▼                               │
//!                        failed ◄────── mark_failed ─────┘◄──── mark_attempting ─────────┘
//! ```
//!
//! - **Deterministic identity.** A job's id and idempotency key derive from (notice, account,
//!   action, target = `in_reply_to`), so enqueueing the same job again is a no-op that returns the
//!   stored job ([`Enqueued::Existing`]): a plan can be re-enqueued after a restart safely. The
//!   first enqueue wins; content changes belong to the notice workflow, before approval.
//! - **Attempt before send.** [`OutboxStore::mark_attempting`] commits the `attempting` state
//!   (and increments `attempts`) *before* the platform call. It fails with
//!   [`OutboxError::Paused`] once publishing is paused, so after [`OutboxStore::pause`] returns no
//!   new attempt starts (calls already in flight finish).
//! - **Done after answer.** [`OutboxStore::mark_done`] records the platform's post id; retryable
//!   errors go to `retry` with a time ([`Backoff::retry_at`]), permanent ones to `failed` with the
//!   platform's message. A failed job fails its dependants too (an amplifier has nothing to
//!   repost), and blocks nobody else.
//! - **Crash recovery: no post lost.** Every job not `done`/`failed` survives a crash (kill -9)
//!   and is returned by [`OutboxStore::recover`]: `pending`/`retry` ones as runnable, and the
//!   ones left in `attempting` as **uncertain**: the call may or may not have reached the platform.
//! - **No duplicates: the caller's part.** An uncertain job must not simply be retried. Where the
//!   platform honours the job's [`Job::idempotency_key`] (Mastodon's `Idempotency-Key`, which it
//!   remembers for a limited time) a resend within that time is safe; otherwise (Weibo, or after
//!   that window) the caller must first look at the account's recent posts for this body (or the
//!   reply to `in_reply_to`): if found, [`OutboxStore::mark_done`] with that post's id; if not,
//!   [`OutboxStore::mark_retry`] and send again. With that check, each job is posted at most once
//!   and, unless it fails permanently, exactly once.
//! - **Dependencies.** A job with `depends_on` (an amplifier waiting for the lead) is not due until
//!   its dependency is `done`; from then on [`Job::dependency_post_id`] holds the lead's
//!   `platform_post_id` (recorded in the same transaction that marks the lead done).
//! - **Priority lanes.** [`OutboxStore::next_due`] returns due jobs ordered by lane (emergency,
//!   then rebuttal, then routine), then `next_attempt_at`, then `created_at`, then enqueue order:
//!   no backlog of routine posts delays an emergency notice. A paused outbox returns nothing; the
//!   flag is persisted.
//!
//! Time is always an input (`now_ms`, Unix milliseconds).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// A job's id (deterministic, see [`job_id`]).
pub type JobId = String;

/// What a job does on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// An original post (status, weibo).
    Post,
    /// A repost / reblog / share of another post.
    Repost,
    /// A reply in a thread (a status in reply to another).
    Reply,
    /// A comment on a post.
    Comment,
}

impl Action {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Post => "post",
            Action::Repost => "repost",
            Action::Reply => "reply",
            Action::Comment => "comment",
        }
    }
}

/// The lane a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// An emergency notice: before everything.
    Emergency,
    /// A rumor rebuttal.
    Rebuttal,
    /// Anything else.
    Routine,
}

impl Priority {
    /// 0 (first) to 2.
    pub fn lane(self) -> u8 {
        match self {
            Priority::Emergency => 0,
            Priority::Rebuttal => 1,
            Priority::Routine => 2,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Rebuttal => "rebuttal",
            Priority::Routine => "routine",
        }
    }
}

/// Where a job is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its first attempt (and for its dependency, if any).
    Pending,
    /// Recorded as being sent; after a crash: uncertain.
    Attempting,
    /// The platform accepted it.
    Done,
    /// Given up (permanent error, or its dependency failed).
    Failed,
    /// Waiting until `next_attempt_at` to try again.
    Retry,
}

impl JobState {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Attempting => "attempting",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Retry => "retry",
        }
    }

    /// Done or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The notice.
    pub notice_id: String,
    /// The account that posts.
    pub account_id: String,
    /// What it does.
    pub action: Action,
    /// Its lane.
    pub priority: Priority,
    /// The text (empty for a plain repost).
    pub body: String,
    /// The post replied to, commented on or reposted, when known at enqueue time; part of the
    /// job's identity.
    pub in_reply_to: Option<String>,
    /// A job that must be done first (the lead, for an amplifier).
    pub depends_on: Option<JobId>,
}

impl NewJob {
    /// A job with no target and no dependency.
    pub fn new(
        notice_id: &str,
        account_id: &str,
        action: Action,
        priority: Priority,
        body: &str,
    ) -> Self {
        NewJob {
            notice_id: notice_id.to_string(),
            account_id: account_id.to_string(),
            action,
            priority,
            body: body.to_string(),
            in_reply_to: None,
            depends_on: None,
        }
    }

    /// With a target post.
    pub fn in_reply_to(mut self, post_id: &str) -> Self {
        self.in_reply_to = Some(post_id.to_string());
        self
    }

    /// Waiting for another job.
    pub fn depends_on(mut self, job: &str) -> Self {
        self.depends_on = Some(job.to_string());
        self
    }

    /// The id this job gets.
    pub fn id(&self) -> JobId {
        job_id(
            &self.notice_id,
            &self.account_id,
            self.action,
            self.in_reply_to.as_deref(),
        )
    }
}

fn identity_digest(
    domain: &[u8],
    notice: &str,
    account: &str,
    action: Action,
    target: Option<&str>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain);
    for part in [notice, account, action.as_str()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    match target {
        Some(t) => {
            h.update([1u8]);
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        None => h.update([0u8]),
    }
    h.finalize().into()
}

/// The id of the job (notice, account, action, target): `j` + 32 hex digits.
pub fn job_id(notice: &str, account: &str, action: Action, target: Option<&str>) -> JobId {
    let d = identity_digest(b"huiying/job\0", notice, account, action, target);
    format!("j{}", hex::encode(&d[..16]))
}

/// The idempotency key sent to platforms that support one: 64 hex digits, stable across
/// restarts, different from the id.
pub fn idempotency_key(
    notice: &str,
    account: &str,
    action: Action,
    target: Option<&str>,
) -> String {
    hex::encode(identity_digest(
        b"huiying/idempotency\0",
        notice,
        account,
        action,
        target,
    ))
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Deterministic id.
    pub id: JobId,
    /// The notice.
    pub notice_id: String,
    /// The account that posts.
    pub account_id: String,
    /// What it does.
    pub action: Action,
    /// Its lane.
    pub priority: Priority,
    /// The text.
    pub body: String,
    /// The target post, if any.
    pub in_reply_to: Option<String>,
    /// The job that must be done first.
    pub depends_on: Option<JobId>,
    /// The dependency's `platform_post_id`, once it is done (what an amplifier reposts).
    pub dependency_post_id: Option<String>,
    /// Sent to platforms that support one.
    pub idempotency_key: String,
    /// Where it is.
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// Not before this time (ms).
    pub next_attempt_at: i64,
    /// The last error (a retry's or the failure's).
    pub last_error: Option<String>,
    /// The platform's id of the post, once done.
    pub platform_post_id: Option<String>,
    /// Enqueued at (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Enqueue order (tie-break).
    pub seq: u64,
}

impl Job {
    /// Pending or retry, with its dependency (if any) done.
    pub fn is_runnable(&self) -> bool {
        matches!(self.state, JobState::Pending | JobState::Retry) && !self.is_blocked()
    }

    /// Waiting for its dependency.
    pub fn is_blocked(&self) -> bool {
        self.depends_on.is_some() && self.dependency_post_id.is_none()
    }

    /// Runnable and its time has come.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.is_runnable() && self.next_attempt_at <= now_ms
    }

    /// The order of [`OutboxStore::next_due`].
    pub fn queue_key(&self) -> (u8, i64, i64, u64) {
        (
            self.priority.lane(),
            self.next_attempt_at,
            self.created_at,
            self.seq,
        )
    }
}

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job.
    Created(Job),
    /// The job already existed: nothing changed.
    Existing(Job),
}

impl Enqueued {
    /// The job.
    pub fn job(&self) -> &Job {
        match self {
            Enqueued::Created(j) | Enqueued::Existing(j) => j,
        }
    }

    /// True when the job is new.
    pub fn created(&self) -> bool {
        matches!(self, Enqueued::Created(_))
    }
}

/// Unfinished jobs, after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Left in `attempting`: the post may or may not exist. Check the platform before retrying
    /// (see the module docs).
    pub uncertain: Vec<Job>,
    /// `pending`/`retry` and free to run (when due), in queue order.
    pub runnable: Vec<Job>,
    /// `pending`, waiting for their dependency.
    pub blocked: Vec<Job>,
}

/// An outbox failure.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The storage failed (I/O, corruption); the operation may be retried.
    #[error("outbox {op}: {message}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A stored job cannot be decoded.
    #[error("outbox: job {id} cannot be decoded: {message}")]
    Decode {
        /// The job.
        id: String,
        /// The error.
        message: String,
    },
    /// No such job.
    #[error("outbox: no job {0}")]
    UnknownJob(JobId),
    /// `depends_on` names no job.
    #[error("outbox: job {id} depends on unknown job {dependency}")]
    UnknownDependency {
        /// The new job.
        id: JobId,
        /// The missing one.
        dependency: JobId,
    },
    /// The transition is not allowed from the job's state.
    #[error("outbox: job {id}: cannot {op} a job in state {from}")]
    InvalidTransition {
        /// The job.
        id: JobId,
        /// The attempted operation.
        op: &'static str,
        /// Its state.
        from: JobState,
    },
    /// Publishing is paused: no attempt may start.
    #[error("outbox: publishing is paused")]
    Paused,
    /// The job's dependency is not done yet.
    #[error("outbox: job {id} waits for {dependency}")]
    DependencyNotDone {
        /// The job.
        id: JobId,
        /// Its dependency.
        dependency: JobId,
    },
    /// The job or argument is not acceptable.
    #[error("outbox: invalid: {0}")]
    Invalid(String),
}

fn storage<E: fmt::Display>(op: &'static str) -> impl Fn(E) -> OutboxError {
    move |e| OutboxError::Storage {
        op,
        message: e.to_string(),
    }
}

/// Durable post jobs. Thread-safe and blocking (async callers use `spawn_blocking`); every
/// mutation is atomic and durable when it returns.
pub trait OutboxStore: Send + Sync {
    /// Store a job (state `pending`, due at `now_ms`), or return the existing one with the same
    /// id unchanged. A dependency must exist; if it already failed, the job is created `failed`.
    fn enqueue(&self, job: NewJob, now_ms: i64) -> Result<Enqueued, OutboxError> {
        let mut v = self.enqueue_all(vec![job], now_ms)?;
        v.pop()
            .ok_or_else(|| OutboxError::Invalid("nothing enqueued".into()))
    }
    /// Enqueue several jobs in one atomic step (a notice's plan; later jobs may depend on
    /// earlier ones).
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError>;
    /// One job.
    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError>;
    /// Up to `limit` due jobs in lane order (nothing while paused).
    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError>;
    /// Record, durably, that the job is about to be sent (from `pending` or `retry`).
    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError>;
    /// The platform accepted the post (from `attempting`; repeating it with the same post id is
    /// a no-op). Dependants become due and see `post_id`.
    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError>;
    /// A retryable failure: try again at `at_ms` (from `attempting`).
    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError>;
    /// A permanent failure (from any unfinished state; no-op when already failed). Fails the
    /// job's dependants, transitively.
    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError>;
    /// Stop every attempt: `next_due` returns nothing and `mark_attempting` fails.
    fn pause(&self) -> Result<(), OutboxError>;
    /// Undo [`OutboxStore::pause`].
    fn resume(&self) -> Result<(), OutboxError>;
    /// The persisted pause flag.
    fn is_paused(&self) -> Result<bool, OutboxError>;
    /// Every unfinished job, sorted into uncertain, runnable and blocked (after a restart).
    fn recover(&self) -> Result<Recovery, OutboxError>;
    /// A notice's jobs, in enqueue order.
    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError>;
    /// Unfinished jobs (pending, retry, attempting).
    fn depth(&self) -> Result<usize, OutboxError>;
    /// Age of the oldest unfinished job, `None` when there is none.
    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError>;
    /// Unfinished jobs per lane ([`Priority::lane`] order: emergency, rebuttal, routine).
    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError>;
    /// Whether [`OutboxStore::recover`] has something new to hand over while running (a shared
    /// outbox that claimed the jobs of an instance that died). Local stores: only at start.
    fn needs_recovery(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// The state machine, shared by both stores.

/// What a store offers the shared transition code (inside one atomic step).
pub(crate) trait Backend {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError>;
    /// Store `new` and move it between indexes (`old` is `None` for a new job).
    fn save(&mut self, old: Option<&Job>, new: &Job) -> Result<(), OutboxError>;
    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError>;
    fn next_seq(&mut self) -> Result<u64, OutboxError>;
    fn paused(&self) -> Result<bool, OutboxError>;
}

fn load_existing<B: Backend>(b: &B, id: &str) -> Result<Job, OutboxError> {
    b.load(id)?
        .ok_or_else(|| OutboxError::UnknownJob(id.to_string()))
}

pub(crate) fn enqueue_in<B: Backend>(
    b: &mut B,
    new: NewJob,
    now: i64,
) -> Result<Enqueued, OutboxError> {
    if new.notice_id.trim().is_empty() || new.account_id.trim().is_empty() {
        return Err(OutboxError::Invalid("empty notice or account id".into()));
    }
    if new.body.trim().is_empty()
        && matches!(new.action, Action::Post | Action::Reply | Action::Comment)
    {
        return Err(OutboxError::Invalid(format!(
            "a {} needs a body",
            new.action.as_str()
        )));
    }
    if new.action != Action::Post && new.in_reply_to.is_none() && new.depends_on.is_none() {
        return Err(OutboxError::Invalid(format!(
            "a {} needs in_reply_to or depends_on",
            new.action.as_str()
        )));
    }
    let id = new.id();
    if let Some(j) = b.load(&id)? {
        return Ok(Enqueued::Existing(j));
    }
    let (dependency_post_id, failed) = match &new.depends_on {
        None => (None, None),
        Some(d) if *d == id => {
            return Err(OutboxError::Invalid(format!("job {id} depends on itself")))
        }
        Some(d) => {
            let dj = b.load(d)?.ok_or_else(|| OutboxError::UnknownDependency {
                id: id.clone(),
                dependency: d.clone(),
            })?;
            match dj.state {
                JobState::Done => (dj.platform_post_id, None),
                JobState::Failed => (
                    None,
                    Some(format!(
                        "dependency {d} failed: {}",
                        dj.last_error.unwrap_or_default()
                    )),
                ),
                _ => (None, None),
            }
        }
    };
    let key = idempotency_key(
        &new.notice_id,
        &new.account_id,
        new.action,
        new.in_reply_to.as_deref(),
    );
    let job = Job {
        id,
        notice_id: new.notice_id,
        account_id: new.account_id,
        action: new.action,
        priority: new.priority,
        body: new.body,
        in_reply_to: new.in_reply_to,
        depends_on: new.depends_on,
        dependency_post_id,
        idempotency_key: key,
        state: if failed.is_some() {
            JobState::Failed
        } else {
            JobState::Pending
        },
        attempts: 0,
        next_attempt_at: now,
        last_error: failed,
        platform_post_id: None,
        created_at: now,
        updated_at: now,
        seq: b.next_seq()?,
    };
    b.save(None, &job)?;
    Ok(Enqueued::Created(job))
}

pub(crate) fn attempt_in<B: Backend>(b: &mut B, id: &str, now: i64) -> Result<Job, OutboxError> {
    if b.paused()? {
        return Err(OutboxError::Paused);
    }
    let old = load_existing(b, id)?;
    if !matches!(old.state, JobState::Pending | JobState::Retry) {
        return Err(OutboxError::InvalidTransition {
            id: id.to_string(),
            op: "attempt",
            from: old.state,
        });
    }
    if let (true, Some(d)) = (old.is_blocked(), &old.depends_on) {
        return Err(OutboxError::DependencyNotDone {
            id: id.to_string(),
            dependency: d.clone(),
        });
    }
    let mut j = old.clone();
    j.state = JobState::Attempting;
    j.attempts = j.attempts.saturating_add(1);
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    Ok(j)
}

pub(crate) fn done_in<B: Backend>(
    b: &mut B,
    id: &str,
    post_id: &str,
    now: i64,
) -> Result<Job, OutboxError> {
    if post_id.trim().is_empty() {
        return Err(OutboxError::Invalid("empty platform post id".into()));
    }
    let old = load_existing(b, id)?;
    match old.state {
        JobState::Attempting => {}
        JobState::Done if old.platform_post_id.as_deref() == Some(post_id) => return Ok(old),
        from => {
            return Err(OutboxError::InvalidTransition {
                id: id.to_string(),
                op: "complete",
                from,
            })
        }
    }
    let mut j = old.clone();
    j.state = JobState::Done;
    j.platform_post_id = Some(post_id.to_string());
    j.last_error = None;
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    for d in b.dependants(id)? {
        let Some(dold) = b.load(&d)? else { continue };
        if dold.state.is_finished() || dold.dependency_post_id.is_some() {
            continue;
        }
        let mut dj = dold.clone();
        dj.dependency_post_id = Some(post_id.to_string());
        dj.updated_at = now;
        b.save(Some(&dold), &dj)?;
    }
    Ok(j)
}

pub(crate) fn retry_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    at: i64,
    error: &str,
) -> Result<Job, OutboxError> {
    let old = load_existing(b, id)?;
    if old.state != JobState::Attempting {
        return Err(OutboxError::InvalidTransition {
            id: id.to_string(),
            op: "retry",
            from: old.state,
        });
    }
    let mut j = old.clone();
    j.state = JobState::Retry;
    j.next_attempt_at = at;
    j.last_error = Some(error.to_string());
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    Ok(j)
}

pub(crate) fn fail_in<B: Backend>(
    b: &mut B,
    id: &str,
    now: i64,
    error: &str,
) -> Result<Job, OutboxError> {
    let old = load_existing(b, id)?;
    match old.state {
        JobState::Failed => return Ok(old),
        JobState::Done => {
            return Err(OutboxError::InvalidTransition {
                id: id.to_string(),
                op: "fail",
                from: JobState::Done,
            })
        }
        _ => {}
    }
    let mut j = old.clone();
    j.state = JobState::Failed;
    j.last_error = Some(error.to_string());
    j.updated_at = now;
    b.save(Some(&old), &j)?;
    // Dependants can never run: fail them, transitively.
    let mut stack = vec![id.to_string()];
    while let Some(failed) = stack.pop() {
        for d in b.dependants(&failed)? {
            let Some(dold) = b.load(&d)? else { continue };
            if dold.state.is_finished() {
                continue;
            }
            let mut dj = dold.clone();
            dj.state = JobState::Failed;
            dj.last_error = Some(format!("dependency {failed} failed: {error}"));
            dj.updated_at = now;
            b.save(Some(&dold), &dj)?;
            stack.push(d);
        }
    }
    Ok(j)
}

fn age(now: i64, created: Option<i64>) -> Option<Duration> {
    created.map(|c| Duration::from_millis(u64::try_from(now.saturating_sub(c)).unwrap_or(0)))
}

// ---------------------------------------------------------------------------------------------
// The redb store.

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_jobs");
/// Runnable jobs by (lane, next_attempt_at, created_at, seq).
const QUEUE: TableDefinition<(u8, i64, i64, u64), &str> = TableDefinition::new("outbox_queue");
/// Pending jobs waiting for their dependency.
const BLOCKED: TableDefinition<&str, ()> = TableDefinition::new("outbox_blocked");
/// Jobs in `attempting`.
const ATTEMPTING: TableDefinition<&str, ()> = TableDefinition::new("outbox_attempting");
const BY_NOTICE: TableDefinition<(&str, u64), &str> = TableDefinition::new("outbox_by_notice");
/// (dependency, dependant).
const DEPENDANTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("outbox_dependants");
const META: TableDefinition<&str, u64> = TableDefinition::new("outbox_meta");

const META_PAUSED: &str = "paused";
const META_SEQ: &str = "seq";

fn decode(id: &str, bytes: &[u8]) -> Result<Job, OutboxError> {
    serde_json::from_slice(bytes).map_err(|e| OutboxError::Decode {
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn load_from<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    id: &str,
) -> Result<Option<Job>, OutboxError> {
    match t.get(id).map_err(storage("read"))? {
        Some(v) => decode(id, v.value()).map(Some),
        None => Ok(None),
    }
}

/// The tables of one write transaction.
struct WriteTables<'t> {
    jobs: Table<'t, &'static str, &'static [u8]>,
    queue: Table<'t, (u8, i64, i64, u64), &'static str>,
    blocked: Table<'t, &'static str, ()>,
    attempting: Table<'t, &'static str, ()>,
    by_notice: Table<'t, (&'static str, u64), &'static str>,
    dependants: Table<'t, (&'static str, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> WriteTables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, OutboxError> {
        let e = storage("open table");
        Ok(WriteTables {
            jobs: tx.open_table(JOBS).map_err(&e)?,
            queue: tx.open_table(QUEUE).map_err(&e)?,
            blocked: tx.open_table(BLOCKED).map_err(&e)?,
            attempting: tx.open_table(ATTEMPTING).map_err(&e)?,
            by_notice: tx.open_table(BY_NOTICE).map_err(&e)?,
            dependants: tx.open_table(DEPENDANTS).map_err(&e)?,
            meta: tx.open_table(META).map_err(&e)?,
        })
    }

    fn set_meta(&mut self, key: &str, v: u64) -> Result<(), OutboxError> {
        self.meta.insert(key, v).map_err(storage("write"))?;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<u64, OutboxError> {
        Ok(self
            .meta
            .get(key)
            .map_err(storage("read"))?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

impl Backend for WriteTables<'_> {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        load_from(&self.jobs, id)
    }

    fn save(&mut self, old: Option<&Job>, new: &Job) -> Result<(), OutboxError> {
        let w = storage("write");
        match old {
            None => {
                self.by_notice
                    .insert((new.notice_id.as_str(), new.seq), new.id.as_str())
                    .map_err(&w)?;
                if let Some(d) = &new.depends_on {
                    self.dependants
                        .insert((d.as_str(), new.id.as_str()), ())
                        .map_err(&w)?;
                }
            }
            Some(o) => match o.state {
                JobState::Pending | JobState::Retry if o.is_blocked() => {
                    self.blocked.remove(o.id.as_str()).map_err(&w)?;
                }
                JobState::Pending | JobState::Retry => {
                    self.queue.remove(o.queue_key()).map_err(&w)?;
                }
                JobState::Attempting => {
                    self.attempting.remove(o.id.as_str()).map_err(&w)?;
                }
                JobState::Done | JobState::Failed => {}
            },
        }
        match new.state {
            JobState::Pending | JobState::Retry if new.is_blocked() => {
                self.blocked.insert(new.id.as_str(), ()).map_err(&w)?;
            }
            JobState::Pending | JobState::Retry => {
                self.queue
                    .insert(new.queue_key(), new.id.as_str())
                    .map_err(&w)?;
            }
            JobState::Attempting => {
                self.attempting.insert(new.id.as_str(), ()).map_err(&w)?;
            }
            JobState::Done | JobState::Failed => {}
        }
        let bytes = serde_json::to_vec(new).map_err(|e| OutboxError::Decode {
            id: new.id.clone(),
            message: e.to_string(),
        })?;
        self.jobs
            .insert(new.id.as_str(), bytes.as_slice())
            .map_err(&w)?;
        Ok(())
    }

    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError> {
        let mut out = Vec::new();
        for r in self.dependants.range((id, "")..).map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            let (dep, job) = k.value();
            if dep != id {
                break;
            }
            out.push(job.to_string());
        }
        Ok(out)
    }

    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        let s = self.meta(META_SEQ)? + 1;
        self.set_meta(META_SEQ, s)?;
        Ok(s)
    }

    fn paused(&self) -> Result<bool, OutboxError> {
        Ok(self.meta(META_PAUSED)? != 0)
    }
}

/// The durable outbox in its own `redb` file. Every mutation is one fsynced transaction.
pub struct Outbox {
    db: Database,
}

impl Outbox {
    /// Open (or create) the outbox file at `path`.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OutboxError::Storage {
                op: "open",
                message: format!("{}: {e}", dir.display()),
            })?;
        }
        let db = Database::create(path).map_err(|e| OutboxError::Storage {
            op: "open",
            message: format!("{}: {e}", path.display()),
        })?;
        let ob = Outbox { db };
        // Create the tables so readers never meet a missing one.
        ob.write("open", |_| Ok(()))?;
        Ok(ob)
    }

    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let tx = self.db.begin_write().map_err(storage(op))?;
        let out = {
            let mut t = WriteTables::open(&tx)?;
            f(&mut t)
        };
        match out {
            Ok(v) => {
                tx.commit().map_err(storage(op))?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    fn read_ids(
        jobs: &ReadOnlyTable<&'static str, &'static [u8]>,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<Vec<Job>, OutboxError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(j) = load_from(jobs, &id)? {
                out.push(j);
            }
        }
        Ok(out)
    }

    fn keys(t: &ReadOnlyTable<&'static str, ()>) -> Result<Vec<String>, OutboxError> {
        let mut out = Vec::new();
        for r in t.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    fn queue_ids(
        t: &ReadOnlyTable<(u8, i64, i64, u64), &'static str>,
        lane: u8,
        now: i64,
        limit: usize,
    ) -> Result<Vec<String>, OutboxError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for r in t
            .range((lane, i64::MIN, i64::MIN, 0u64)..=(lane, now, i64::MAX, u64::MAX))
            .map_err(storage("read"))?
        {
            let (_, v) = r.map_err(storage("read"))?;
            out.push(v.value().to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl OutboxStore for Outbox {
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError> {
        self.write("enqueue", |t| {
            jobs.into_iter().map(|j| enqueue_in(t, j, now_ms)).collect()
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        load_from(&jobs, id)
    }

    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let meta = tx.open_table(META).map_err(storage("read"))?;
        let paused = meta
            .get(META_PAUSED)
            .map_err(storage("read"))?
            .map(|v| v.value())
            .unwrap_or(0);
        if paused != 0 {
            return Ok(Vec::new());
        }
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let mut ids = Vec::new();
        for lane in 0..=2u8 {
            let rest = limit.saturating_sub(ids.len());
            ids.extend(Self::queue_ids(&queue, lane, now_ms, rest)?);
        }
        Self::read_ids(&jobs, ids)
    }

    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write("attempt", |t| attempt_in(t, id, now_ms))
    }

    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write("done", |t| done_in(t, id, post_id, now_ms))
    }

    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError> {
        self.write("retry", |t| retry_in(t, id, now_ms, at_ms, error))
    }

    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write("fail", |t| fail_in(t, id, now_ms, error))
    }

    fn pause(&self) -> Result<(), OutboxError> {
        self.write("pause", |t| t.set_meta(META_PAUSED, 1))
    }

    fn resume(&self) -> Result<(), OutboxError> {
        self.write("resume", |t| t.set_meta(META_PAUSED, 0))
    }

    fn is_paused(&self) -> Result<bool, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let meta = tx.open_table(META).map_err(storage("read"))?;
        Ok(meta
            .get(META_PAUSED)
            .map_err(storage("read"))?
            .is_some_and(|v| v.value() != 0))
    }

    fn recover(&self) -> Result<Recovery, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut runnable = Vec::new();
        for r in queue.iter().map_err(storage("read"))? {
            let (_, v) = r.map_err(storage("read"))?;
            runnable.push(v.value().to_string());
        }
        let attempting = tx.open_table(ATTEMPTING).map_err(storage("read"))?;
        let blocked = tx.open_table(BLOCKED).map_err(storage("read"))?;
        Ok(Recovery {
            uncertain: Self::read_ids(&jobs, Self::keys(&attempting)?)?,
            runnable: Self::read_ids(&jobs, runnable)?,
            blocked: Self::read_ids(&jobs, Self::keys(&blocked)?)?,
        })
    }

    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let idx = tx.open_table(BY_NOTICE).map_err(storage("read"))?;
        let mut ids = Vec::new();
        for r in idx
            .range((notice_id, 0u64)..=(notice_id, u64::MAX))
            .map_err(storage("read"))?
        {
            let (_, v) = r.map_err(storage("read"))?;
            ids.push(v.value().to_string());
        }
        Self::read_ids(&jobs, ids)
    }

    fn depth(&self) -> Result<usize, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let mut n = tx
            .open_table(QUEUE)
            .map_err(storage("read"))?
            .len()
            .map_err(storage("read"))?;
        for t in [BLOCKED, ATTEMPTING] {
            n += tx
                .open_table(t)
                .map_err(storage("read"))?
                .len()
                .map_err(storage("read"))?;
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut lanes = [0usize; 3];
        for r in queue.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            lanes[usize::from(k.value().0.min(2))] += 1;
        }
        for t in [BLOCKED, ATTEMPTING] {
            let t = tx.open_table(t).map_err(storage("read"))?;
            for j in Self::read_ids(&jobs, Self::keys(&t)?)? {
                lanes[usize::from(j.priority.lane())] += 1;
            }
        }
        Ok(lanes)
    }

    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError> {
        let tx = self.db.begin_read().map_err(storage("read"))?;
        let jobs = tx.open_table(JOBS).map_err(storage("read"))?;
        let queue = tx.open_table(QUEUE).map_err(storage("read"))?;
        let mut oldest: Option<i64> = None;
        for r in queue.iter().map_err(storage("read"))? {
            let (k, _) = r.map_err(storage("read"))?;
            let (_, _, created, _) = k.value();
            oldest = Some(oldest.map_or(created, |o| o.min(created)));
        }
        for t in [BLOCKED, ATTEMPTING] {
            let t = tx.open_table(t).map_err(storage("read"))?;
            for j in Self::read_ids(&jobs, Self::keys(&t)?)? {
                oldest = Some(oldest.map_or(j.created_at, |o| o.min(j.created_at)));
            }
        }
        Ok(age(now_ms, oldest))
    }
}

// ---------------------------------------------------------------------------------------------
// The in-memory store.

#[derive(Default)]
struct MemState {
    jobs: HashMap<JobId, Job>,
    paused: bool,
    seq: u64,
}

impl Backend for MemState {
    fn load(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        Ok(self.jobs.get(id).cloned())
    }

    fn save(&mut self, _old: Option<&Job>, new: &Job) -> Result<(), OutboxError> {
        self.jobs.insert(new.id.clone(), new.clone());
        Ok(())
    }

    fn dependants(&self, id: &str) -> Result<Vec<JobId>, OutboxError> {
        let mut v: Vec<&Job> = self
            .jobs
            .values()
            .filter(|j| j.depends_on.as_deref() == Some(id))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v.into_iter().map(|j| j.id.clone()).collect())
    }

    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        self.seq += 1;
        Ok(self.seq)
    }

    fn paused(&self) -> Result<bool, OutboxError> {
        Ok(self.paused)
    }
}

/// The outbox in memory (tests, drills): the same state machine, nothing survives the process.
#[derive(Default)]
pub struct MemoryOutbox {
    state: Mutex<MemState>,
}

impl MemoryOutbox {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on a copy and keep it only on success, so every operation is atomic.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut MemState) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut g = self.lock();
        let mut copy = MemState {
            jobs: g.jobs.clone(),
            paused: g.paused,
            seq: g.seq,
        };
        let out = f(&mut copy)?;
        *g = copy;
        Ok(out)
    }

    fn sorted(mut v: Vec<Job>) -> Vec<Job> {
        v.sort_by_key(|j| j.queue_key());
        v
    }
}

impl OutboxStore for MemoryOutbox {
    fn enqueue_all(&self, jobs: Vec<NewJob>, now_ms: i64) -> Result<Vec<Enqueued>, OutboxError> {
        self.write(|s| jobs.into_iter().map(|j| enqueue_in(s, j, now_ms)).collect())
    }

    fn get(&self, id: &str) -> Result<Option<Job>, OutboxError> {
        Ok(self.lock().jobs.get(id).cloned())
    }

    fn next_due(&self, now_ms: i64, limit: usize) -> Result<Vec<Job>, OutboxError> {
        let g = self.lock();
        if g.paused {
            return Ok(Vec::new());
        }
        let due = g
            .jobs
            .values()
            .filter(|j| j.is_due(now_ms))
            .cloned()
            .collect();
        let mut v = Self::sorted(due);
        v.truncate(limit);
        Ok(v)
    }

    fn mark_attempting(&self, id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write(|s| attempt_in(s, id, now_ms))
    }

    fn mark_done(&self, id: &str, post_id: &str, now_ms: i64) -> Result<Job, OutboxError> {
        self.write(|s| done_in(s, id, post_id, now_ms))
    }

    fn mark_retry(
        &self,
        id: &str,
        now_ms: i64,
        at_ms: i64,
        error: &str,
    ) -> Result<Job, OutboxError> {
        self.write(|s| retry_in(s, id, now_ms, at_ms, error))
    }

    fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError> {
        self.write(|s| fail_in(s, id, now_ms, error))
    }

    fn pause(&self) -> Result<(), OutboxError> {
        self.lock().paused = true;
        Ok(())
    }

    fn resume(&self) -> Result<(), OutboxError> {
        self.lock().paused = false;
        Ok(())
    }

    fn is_paused(&self) -> Result<bool, OutboxError> {
        Ok(self.lock().paused)
    }

    fn recover(&self) -> Result<Recovery, OutboxError> {
        let g = self.lock();
        let mut r = Recovery::default();
        for j in g.jobs.values() {
            match j.state {
                JobState::Attempting => r.uncertain.push(j.clone()),
                JobState::Pending | JobState::Retry if j.is_blocked() => r.blocked.push(j.clone()),
                JobState::Pending | JobState::Retry => r.runnable.push(j.clone()),
                JobState::Done | JobState::Failed => {}
            }
        }
        r.runnable = Self::sorted(r.runnable);
        r.uncertain.sort_by(|a, b| a.id.cmp(&b.id));
        r.blocked.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(r)
    }

    fn jobs_for_notice(&self, notice_id: &str) -> Result<Vec<Job>, OutboxError> {
        let g = self.lock();
        let mut v: Vec<Job> = g
            .jobs
            .values()
            .filter(|j| j.notice_id == notice_id)
            .cloned()
            .collect();
        v.sort_by_key(|j| j.seq);
        Ok(v)
    }

    fn depth(&self) -> Result<usize, OutboxError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_finished())
            .count())
    }

    fn depth_by_lane(&self) -> Result<[usize; 3], OutboxError> {
        let mut lanes = [0usize; 3];
        for j in self.lock().jobs.values().filter(|j| !j.state.is_finished()) {
            lanes[usize::from(j.priority.lane())] += 1;
        }
        Ok(lanes)
    }

    fn oldest_pending_age(&self, now_ms: i64) -> Result<Option<Duration>, OutboxError> {
        let oldest = self
            .lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_finished())
            .map(|j| j.created_at)
            .min();
        Ok(age(now_ms, oldest))
    }
}

// ---------------------------------------------------------------------------------------------
// Backoff.

/// Exponential backoff with full jitter: attempt `k` waits a uniform random time in
/// `[0, min(cap, base·2^(k−1))]`, and never less than the platform's `Retry-After`. The random
/// source is seeded by the caller, so runs and tests are reproducible.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first attempt's ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub cap: Duration,
    rng: StdRng,
}

impl Backoff {
    /// A backoff with its random source seeded by `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Base 2 s, cap 10 min.
    pub fn with_seed(seed: u64) -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(600), seed)
    }

    /// When to try again after `attempt` attempts (1 for the first failure), at `now_ms`,
    /// given the platform's `Retry-After` if it sent one (a floor, even above the cap).
    pub fn retry_at(&mut self, attempt: u32, now_ms: i64, retry_after: Option<Duration>) -> i64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let ceiling = ms(self.base).saturating_mul(factor).min(ms(self.cap));
        let jitter = self.rng.random_range(0..=ceiling);
        let delay = jitter.max(retry_after.map_or(0, ms));
        now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(notice: &str, account: &str, p: Priority) -> NewJob {
        NewJob::new(notice, account, Action::Post, p, "暴雨预警：请避免外出")
    }

    fn stores() -> Vec<(
        &'static str,
        Box<dyn OutboxStore>,
        Option<tempfile::TempDir>,
    )> {
        let d = tempfile::tempdir().expect("tempdir");
        let ob = Outbox::open(&d.path().join("outbox.redb")).expect("open");
        vec![
            ("memory", Box::new(MemoryOutbox::new()), None),
            ("redb", Box::new(ob), Some(d)),
        ]
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = job_id("n1", "acct", Action::Post, None);
        assert_eq!(a, job_id("n1", "acct", Action::Post, None));
        assert_eq!(a.len(), 33);
        assert_ne!(a, job_id("n1", "acct", Action::Repost, None));
        assert_ne!(a, job_id("n1", "acct", Action::Post, Some("")));
        // No ambiguity from concatenation.
        assert_ne!(
            job_id("a/b", "c", Action::Post, None),
            job_id("a", "b/c", Action::Post, None)
        );
        let k = idempotency_key("n1", "acct", Action::Post, None);
        assert_eq!(k.len(), 64);
        assert!(!k.contains(&a[1..]));
    }

    #[test]
    fn state_machine_on_both_stores() {
        for (name, s, _d) in stores() {
            let j = s
                .enqueue(post("n1", "a", Priority::Routine), 100)
                .expect("enqueue");
            assert!(j.created(), "{name}");
            let id = j.job().id.clone();
            assert!(!s
                .enqueue(post("n1", "a", Priority::Emergency), 200)
                .expect("again")
                .created());
            assert_eq!(s.depth().expect("depth"), 1);
            assert!(matches!(
                s.mark_done(&id, "p1", 101),
                Err(OutboxError::InvalidTransition { .. })
            ));
            assert!(matches!(
                s.mark_retry(&id, 101, 105, "x"),
                Err(OutboxError::InvalidTransition { .. })
            ));
            let a = s.mark_attempting(&id, 110).expect("attempt");
            assert_eq!((a.state, a.attempts), (JobState::Attempting, 1));
            assert!(matches!(
                s.mark_attempting(&id, 111),
                Err(OutboxError::InvalidTransition { .. })
            ));
            assert!(s.next_due(1_000, 10).expect("due").is_empty(), "{name}");
            let r = s.mark_retry(&id, 120, 500, "HTTP 503").expect("retry");
            assert_eq!((r.state, r.next_attempt_at), (JobState::Retry, 500));
            assert!(s.next_due(499, 10).expect("due").is_empty(), "{name}");
            assert_eq!(s.next_due(500, 10).expect("due").len(), 1, "{name}");
            s.mark_attempting(&id, 500).expect("attempt 2");
            let d = s.mark_done(&id, "p-9", 510).expect("done");
            assert_eq!(d.attempts, 2);
            assert_eq!(d.platform_post_id.as_deref(), Some("p-9"));
            assert_eq!(d.last_error, None);
            // Repeating done with the same id is fine; with another it is not.
            s.mark_done(&id, "p-9", 520).expect("idempotent done");
            assert!(s.mark_done(&id, "p-10", 520).is_err());
            assert!(s.mark_failed(&id, 520, "late").is_err());
            assert_eq!(s.depth().expect("depth"), 0);
            assert_eq!(s.oldest_pending_age(1_000).expect("age"), None);
            assert!(matches!(
                s.mark_attempting("nope", 1),
                Err(OutboxError::UnknownJob(_))
            ));
        }
    }

    #[test]
    fn failure_cascades_to_dependants_and_invalid_jobs_are_refused() {
        for (name, s, _d) in stores() {
            let lead = s
                .enqueue(post("n2", "lead", Priority::Emergency), 1)
                .expect("lead")
                .job()
                .id
                .clone();
            let amp =
                NewJob::new("n2", "amp", Action::Repost, Priority::Emergency, "").depends_on(&lead);
            let amp_id = s.enqueue(amp, 1).expect("amp").job().id.clone();
            let amp2 = NewJob::new("n2", "amp2", Action::Comment, Priority::Emergency, "转发")
                .depends_on(&amp_id);
            let amp2_id = s.enqueue(amp2, 1).expect("amp2").job().id.clone();
            assert!(matches!(
                s.mark_attempting(&amp_id, 2),
                Err(OutboxError::DependencyNotDone { .. })
            ));
            s.mark_failed(&lead, 3, "HTTP 403: forbidden")
                .expect("fail");
            for id in [&amp_id, &amp2_id] {
                let j = s.get(id).expect("get").expect("exists");
                assert_eq!(j.state, JobState::Failed, "{name}");
                assert!(j.last_error.as_deref().unwrap_or("").contains("403"));
            }
            assert_eq!(s.depth().expect("depth"), 0, "{name}");
            // Enqueued after the lead failed: created failed.
            let late =
                NewJob::new("n2", "late", Action::Repost, Priority::Routine, "").depends_on(&lead);
            assert_eq!(
                s.enqueue(late, 4).expect("late").job().state,
                JobState::Failed
            );
            // Refusals.
            assert!(matches!(
                s.enqueue(
                    NewJob::new("n2", "x", Action::Repost, Priority::Routine, "").depends_on("jzz"),
                    5
                ),
                Err(OutboxError::UnknownDependency { .. })
            ));
            assert!(matches!(
                s.enqueue(
                    NewJob::new("n2", "x", Action::Post, Priority::Routine, " "),
                    5
                ),
                Err(OutboxError::Invalid(_))
            ));
            assert!(matches!(
                s.enqueue(
                    NewJob::new("n2", "x", Action::Reply, Priority::Routine, "hi"),
                    5
                ),
                Err(OutboxError::Invalid(_))
            ));
            // A failing batch changes nothing.
            let before = s.jobs_for_notice("n2").expect("jobs").len();
            assert!(s
                .enqueue_all(
                    vec![
                        post("n2", "ok", Priority::Routine),
                        NewJob::new("n2", "", Action::Post, Priority::Routine, "x"),
                    ],
                    6
                )
                .is_err());
            assert_eq!(
                s.jobs_for_notice("n2").expect("jobs").len(),
                before,
                "{name}"
            );
        }
    }

    #[test]
    fn paused_blocks_attempts() {
        for (name, s, _d) in stores() {
            let id = s
                .enqueue(post("n3", "a", Priority::Emergency), 1)
                .expect("enqueue")
                .job()
                .id
                .clone();
            s.pause().expect("pause");
            assert!(s.is_paused().expect("flag"));
            assert!(s.next_due(10, 10).expect("due").is_empty(), "{name}");
            assert!(matches!(
                s.mark_attempting(&id, 10),
                Err(OutboxError::Paused)
            ));
            s.resume().expect("resume");
            assert_eq!(s.next_due(10, 10).expect("due").len(), 1);
            s.mark_attempting(&id, 10).expect("attempt");
        }
    }

    #[test]
    fn backoff_is_exponential_jittered_capped_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
        let mut b2 = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 7);
        for attempt in 1..=40u32 {
            let at = b.retry_at(attempt, 1_000, None);
            assert_eq!(
                at,
                b2.retry_at(attempt, 1_000, None),
                "same seed, same delays"
            );
            let ceiling = (1_000i64 << (attempt - 1).min(20)).min(60_000);
            assert!(
                (1_000..=1_000 + ceiling).contains(&at),
                "attempt {attempt}: {at}"
            );
        }
        // Full jitter spreads over the whole range.
        let delays: Vec<i64> = (0..2_000).map(|_| b.retry_at(10, 0, None)).collect();
        assert!(delays.iter().any(|&d| d < 10_000));
        assert!(delays.iter().any(|&d| d > 50_000));
        // Retry-After is a floor, even above the cap.
        for _ in 0..100 {
            assert!(b.retry_at(1, 0, Some(Duration::from_secs(30))) >= 30_000);
        }
        assert_eq!(
            b.retry_at(3, 5, Some(Duration::from_secs(3_600))),
            3_600_005
        );
        // No overflow anywhere.
        assert!(b.retry_at(u32::MAX, i64::MAX - 1, None) >= i64::MAX - 1);
    }

    /// Random operations on both stores give the same results (the redb indexes agree with the
    /// plain model).
    #[test]
    fn redb_and_memory_agree_under_random_operations() {
        let d = tempfile::tempdir().expect("tempdir");
        let disk = Outbox::open(&d.path().join("o.redb")).expect("open");
        let mem = MemoryOutbox::new();
        let stores: [&dyn OutboxStore; 2] = [&mem, &disk];
        let mut rng = StdRng::seed_from_u64(2026);
        let mut ids: Vec<JobId> = Vec::new();
        let prios = [Priority::Emergency, Priority::Rebuttal, Priority::Routine];
        let mut now = 0i64;
        let mut successes: HashMap<i32, u32> = HashMap::new();
        for step in 0..1_500 {
            now += rng.random_range(0..50);
            let op = rng.random_range(0..10);
            let pick = |rng: &mut StdRng| {
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids[rng.random_range(0..ids.len())].clone()
                }
            };
            // Mostly a job in a state where the operation applies (per the model), sometimes any.
            let pick_from = |rng: &mut StdRng, candidates: Vec<Job>| {
                if candidates.is_empty() || rng.random_bool(0.2) {
                    pick(rng)
                } else {
                    candidates[rng.random_range(0..candidates.len())].id.clone()
                }
            };
            let uncertain = || mem.recover().map(|r| r.uncertain).unwrap_or_default();
            let results: Vec<String> = match op {
                0..=2 => {
                    let notice = format!("n{}", rng.random_range(0..4));
                    let acct = format!("a{}", rng.random_range(0..6));
                    let p = prios[rng.random_range(0..3)];
                    let j = if !ids.is_empty() && rng.random_bool(0.4) {
                        let dep = pick(&mut rng);
                        NewJob::new(&notice, &acct, Action::Repost, p, "").depends_on(&dep)
                    } else {
                        NewJob::new(&notice, &acct, Action::Post, p, "body")
                    };
                    let r: Vec<String> = stores
                        .iter()
                        .map(|s| format!("{:?}", s.enqueue(j.clone(), now)))
                        .collect();
                    if !ids.contains(&j.id()) && r[0].contains("Created") {
                        ids.push(j.id());
                    }
                    r
                }
                3 | 4 => {
                    let due = mem.next_due(now, 100).unwrap_or_default();
                    let id = pick_from(&mut rng, due);
                    stores
                        .iter()
                        .map(|s| format!("{:?}", s.mark_attempting(&id, now)))
                        .collect()
                }
                5 => {
                    let id = pick_from(&mut rng, uncertain());
                    let post = format!("p{step}");
                    stores
                        .iter()
                        .map(|s| format!("{:?}", s.mark_done(&id, &post, now)))
                        .collect()
                }
                6 => {
                    let id = pick_from(&mut rng, uncertain());
                    let at = now + rng.random_range(0..200);
                    stores
                        .iter()
                        .map(|s| format!("{:?}", s.mark_retry(&id, now, at, "503")))
                        .collect()
                }
                7 if rng.random_bool(0.3) => {
                    let id = pick(&mut rng);
                    stores
                        .iter()
                        .map(|s| format!("{:?}", s.mark_failed(&id, now, "403")))
                        .collect()
                }
                7 | 8 => {
                    let pause = rng.random_bool(0.2);
                    for s in stores {
                        if pause {
                            s.pause().expect("pause");
                        } else {
                            s.resume().expect("resume");
                        }
                    }
                    vec![String::new(), String::new()]
                }
                _ => stores
                    .iter()
                    .map(|s| {
                        format!(
                            "{:?} {:?} {:?} {:?}",
                            s.next_due(now, 7),
                            s.depth(),
                            s.oldest_pending_age(now),
                            s.jobs_for_notice("n1")
                        )
                    })
                    .collect(),
            };
            assert_eq!(results[0], results[1], "step {step} op {op}");
            if results[0].starts_with("Ok(") {
                *successes.entry(op).or_insert(0u32) += 1;
            }
        }
        // Every transition really happened, many times.
        for op in 0..=7 {
            assert!(
                successes.get(&op).copied().unwrap_or(0) >= 5,
                "op {op}: {successes:?}"
            );
        }
        assert_eq!(
            format!("{:?}", mem.recover()),
            format!("{:?}", {
                let mut r = disk.recover().expect("recover");
                r.uncertain.sort_by(|a, b| a.id.cmp(&b.id));
                r.blocked.sort_by(|a, b| a.id.cmp(&b.id));
                Ok::<_, OutboxError>(r)
            })
        );
    }
}
