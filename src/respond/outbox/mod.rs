//! The durable outbox: every post a notice needs (one per account and action) as a job that is
//! stored before it is attempted and marked done only after the platform answered.
//!
//! [`Outbox`] keeps jobs in their own `redb` file (every commit is fsynced); [`MemoryOutbox`] is
//! the same state machine in memory, for tests; [`RedisOutbox`] shares the jobs between the
//! instances of a cluster (Redis Streams). All implement [`OutboxStore`] and share the
//! transition code, so they behave alike (a unit test runs random operations on the first two and
//! compares).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the [`OutboxStore`] trait and [`OutboxError`] |
//! | `job.rs` | the job model: [`Job`], [`NewJob`], [`ActionKind`], [`Priority`], [`JobState`], ids |
//! | `machine.rs` | the transitions every store runs inside one atomic step |
//! | `redb.rs` | [`Outbox`], the embedded store |
//! | `memory.rs` | [`MemoryOutbox`] |
//! | `redis.rs` | [`RedisOutbox`], the store shared by a cluster |
//! | `backoff.rs` | [`Backoff`]: when to retry |
//! | `tests.rs` | the contract, run against the redb and in-memory stores |
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
//!
//!    attempting ── mark_check_failed ──► check_failed   (an uncertain outcome that cannot be
//!                                                        checked, and may not be resent)
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

mod backoff;
mod job;
mod machine;
mod memory;
mod redb;
mod redis;
#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use job::{
    idempotency_key, job_id, ActionKind, Enqueued, Job, JobId, JobState, NewJob, Priority, Recovery,
};
pub use memory::MemoryOutbox;
pub use redb::Outbox;
pub use redis::{RedisOutbox, RedisOutboxConfig, GROUP};

use std::path::PathBuf;
use std::time::Duration;

/// An outbox failure.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The embedded database failed (I/O, corruption); the operation may be retried.
    #[error("outbox {op}: {source}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// The database's error.
        #[source]
        source: ::redb::Error,
    },
    /// The outbox file (or its folder) cannot be opened or created.
    #[error("outbox open: {}: {source}", path.display())]
    Open {
        /// The file or folder.
        path: PathBuf,
        /// The database's error (an I/O error for the folder).
        #[source]
        source: ::redb::Error,
    },
    /// Redis failed (unreachable, or a command error); the operation may be retried.
    #[error("outbox {op}: redis: {source}")]
    Redis {
        /// The operation.
        op: &'static str,
        /// Redis's error.
        #[source]
        source: ::redis::RedisError,
    },
    /// The shared outbox's lock stayed held by another instance; the operation may be retried.
    #[error("outbox {op}: the outbox lock is busy")]
    Busy {
        /// The operation.
        op: &'static str,
    },
    /// A job cannot be decoded (or encoded).
    #[error("outbox: job {id} cannot be decoded: {source}")]
    Decode {
        /// The job.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
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

/// Wrap an embedded-database error of operation `op`.
fn storage<E: Into<::redb::Error>>(op: &'static str) -> impl Fn(E) -> OutboxError {
    move |e| OutboxError::Storage {
        op,
        source: e.into(),
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
    /// Give up an uncertain job whose outcome cannot be checked (from `attempting`; no-op when
    /// already `check_failed`): the post may exist, an operator must look. Fails the job's
    /// dependants, transitively.
    fn mark_check_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<Job, OutboxError>;
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
