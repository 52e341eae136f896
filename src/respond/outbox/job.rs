//! The job model: what a job is, its deterministic identity, its lane and its state.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A job's id (deterministic, see [`job_id`]).
pub type JobId = String;

/// What a job does on the platform, without the post it acts on (a job keeps that in
/// `in_reply_to`; [`crate::respond::publish::Action`] carries both). Stored as `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// An original post (status, weibo).
    Post,
    /// A repost / reblog / share of another post.
    Repost,
    /// A reply in a thread (a status in reply to another).
    Reply,
    /// A comment on a post.
    Comment,
    /// An e-mail (`in_reply_to` holds the recipient's address; the body's first line is the
    /// subject).
    Mail,
}

impl ActionKind {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Post => "post",
            ActionKind::Repost => "repost",
            ActionKind::Reply => "reply",
            ActionKind::Comment => "comment",
            ActionKind::Mail => "mail",
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
    /// Given up because an uncertain outcome could not be checked (the platform's read API
    /// failed for good, or kept failing) and resending was not safe: the post may or may not
    /// exist, an operator must look on the platform. Finished, like `failed`.
    CheckFailed,
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
            JobState::CheckFailed => "check_failed",
        }
    }

    /// Done, failed or check failed.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::CheckFailed
        )
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
    pub action: ActionKind,
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
        action: ActionKind,
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
    action: ActionKind,
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
pub fn job_id(notice: &str, account: &str, action: ActionKind, target: Option<&str>) -> JobId {
    let d = identity_digest(b"huiying/job\0", notice, account, action, target);
    format!("j{}", hex::encode(&d[..16]))
}

/// The idempotency key sent to platforms that support one: 64 hex digits, stable across
/// restarts, different from the id.
pub fn idempotency_key(
    notice: &str,
    account: &str,
    action: ActionKind,
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
    pub action: ActionKind,
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

    /// The order of [`OutboxStore::next_due`](super::OutboxStore::next_due).
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
