//! The notice workflow: drafts from incidents (or by hand), edits, the approval policy, and the
//! hand-over of an approved notice to the durable outbox as one job per account of its plan.
//!
//! # A notice's life
//!
//! ```text
//!   draft_from_incident / draft_manual        approve (enough distinct operators)
//! (new) ───────────────────────────► draft ─────────────────────────────► approved ──► publishing ──► done
//!                                     │  ▲ edit (resets approvals)        (jobs enqueued)   (every job finished,
//!                                     │  └────┘                                             see Notices::refresh)
//!                                     └──── reject ────► rejected
//! ```
//!
//! - **Texts.** Each posting account of the plan (the lead and the co-publishers) gets its own
//!   text, rendered in the account's language and checked against its platform's limit
//!   ([`check_length`]); amplifiers repost the lead's post and carry no text of their own.
//! - **Approval policy** ([`ApprovalPolicy`], defaults documented there): pre-approved alert
//!   categories up to a severity are approved at draft time by the actor `policy`; otherwise one
//!   operator, or two *different* operators for high severity and for every rumor rebuttal. The
//!   drafter may never approve their own notice, and the same operator approving twice counts
//!   once. Any edit resets the approvals collected so far.
//! - **Hand-over.** Once approved, the plan becomes outbox jobs in one atomic
//!   [`OutboxStore::enqueue_all`]: the lead's `post`, the co-publishers' `post`s (same lane, no
//!   dependency) and the amplifiers' `repost`s (depending on the lead's job). Job ids are the
//!   outbox's deterministic ones, so enqueueing again (after a crash between the two steps, see
//!   [`Notices::publish`]) is a no-op. The notice then moves to `publishing`.
//! - **Audit.** Every action (draft, edit, approve — including the policy's automatic approval —
//!   and reject) is appended to the hash-chained [`AuditLog`] with its actor and time *before*
//!   the new state is stored: the log may name an action whose storage then failed (and that the
//!   caller saw fail), never the other way round.
//! - **Idempotent drafting.** A notice drafted from an incident has an id derived from the
//!   incident's id; drafting again for the same incident returns the stored notice unchanged.
//! - **Following the incident** ([`Notices::follow_incident`]). When the incident's severity
//!   rises or its region grows past what its latest notice says, that notice is flagged
//!   `stale` and a follow-up is drafted (`purpose` `update`, `follows` the old one; the old one's
//!   `superseded_by` names it); when the incident closes after a notice went out, an
//!   `all_clear` is drafted. A follow-up is approved like any notice. A notice not out yet whose
//!   incident only became more severe carries the new severity itself (its text does not name
//!   it; it may need a second operator now, and a held one the policy no longer pre-approves
//!   goes back to the operators); one whose incident reached a wider region is withdrawn
//!   (rejected by `system`) and redrafted when it was automatic, flagged when an operator wrote
//!   or edited it. [`Notices::withdraw`] does the same for an incident merged into another.
//!
//! Notices are stored as JSON keyed by id, in a `redb` table ([`NoticeStore::open`]), in memory
//! ([`NoticeStore::memory`]) or in a Redis hash shared by a cluster ([`NoticeStore::redis`]).
//! Time is always an input (`now_ms`, Unix milliseconds).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`NoticeError`] and the store's [`StoreError`] |
//! | `model.rs` | [`Notice`] and its parts, edit and draft inputs, filters, ids |
//! | `policy.rs` | [`ApprovalPolicy`] |
//! | `store.rs` | [`NoticeStore`] and the backend trait every store implements |
//! | `redb.rs`, `memory.rs`, `redis.rs` | one backend each |
//! | `workflow.rs` | [`Notices`]: draft, edit, approve, reject, publish, refresh, follow, withdraw |

mod memory;
mod model;
mod policy;
mod redb;
mod redis;
mod store;
mod workflow;

pub use model::{
    followup_notice_id, notice_id_for_incident, AccountText, Approval, EditTarget, HistoryEntry,
    ManualDraft, Notice, NoticeFilter, NoticePlan, NoticeState, POLICY, SYSTEM,
};
pub use policy::{ApprovalPolicy, TrustedSource};
pub use store::NoticeStore;
pub use workflow::{Notices, PublishedListener};

use super::audit::AuditError;
use super::outbox::OutboxError;
use super::templates::TemplateError;
use std::path::PathBuf;

/// A notice operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// No such notice.
    #[error("no notice {0}")]
    NotFound(String),
    /// The incident's severity is below the automatic draft threshold.
    #[error("incident {incident}: severity {severity} is below the draft threshold {threshold}")]
    BelowThreshold {
        /// The incident.
        incident: String,
        /// Its severity.
        severity: u8,
        /// The policy's threshold.
        threshold: u8,
    },
    /// A text does not fit its account's platform.
    #[error("notice text for account {account}: {source}")]
    TooLong {
        /// The account.
        account: String,
        /// The length error (platform, length, limit).
        #[source]
        source: TemplateError,
    },
    /// The operation is not allowed in the notice's state.
    #[error("notice {id} is {state}: cannot {op}")]
    InvalidState {
        /// The notice.
        id: String,
        /// Its state.
        state: NoticeState,
        /// The operation.
        op: &'static str,
    },
    /// The drafter or an editor tried to approve the notice.
    #[error(
        "notice {id}: {actor} drafted or edited it and may not approve it (another operator must)"
    )]
    SelfApproval {
        /// The notice.
        id: String,
        /// The drafter or editor.
        actor: String,
    },
    /// The same operator approved it already: nothing changes (one person counts once).
    #[error("notice {id}: {actor} approved it already; another operator must (已批准过)")]
    AlreadyApproved {
        /// The notice.
        id: String,
        /// The operator.
        actor: String,
    },
    /// The approval names a version the notice no longer has (it was edited since it was read).
    #[error("notice {id}: changed since it was read (version {current}, approval for {seen}): read it again")]
    Changed {
        /// The notice.
        id: String,
        /// Its version now.
        current: u32,
        /// The version the approver saw.
        seen: u32,
    },
    /// The account is not one of the notice's posting accounts.
    #[error("notice {id}: account {account} does not post this notice")]
    UnknownAccount {
        /// The notice.
        id: String,
        /// The account.
        account: String,
    },
    /// A bad argument (empty actor, reserved actor, unknown region or category, empty text…).
    #[error("notice: invalid: {0}")]
    Invalid(String),
    /// The matrix has no account for the plan's lead (never, for a validated matrix).
    #[error("notice: the plan names account {0}, which the matrix does not have")]
    MissingAccount(String),
    /// The store failed.
    #[error("notice store {op}: {source}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// What went wrong, with its cause (boxed: the error stays small on the happy path).
        #[source]
        source: Box<StoreError>,
    },
    /// The audit log refused the record: the action was not done.
    #[error("notice: audit log: {0}")]
    Audit(#[from] AuditError),
    /// The outbox failed: the notice stays approved; [`Notices::publish`] retries.
    #[error("notice: outbox: {0}")]
    Outbox(#[from] OutboxError),
}

/// What went wrong in a notice store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed.
    #[error("{0}")]
    Redb(#[source] ::redb::Error),
    /// The store's file (or folder) cannot be opened or created.
    #[error("{}: {source}", path.display())]
    Open {
        /// The file or folder.
        path: PathBuf,
        /// The database's error (an I/O error for the folder).
        #[source]
        source: ::redb::Error,
    },
    /// Redis failed (unreachable, or a command error).
    #[error("redis: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// Another instance held the cluster-wide lock for too long.
    #[error("the notices are locked by another instance")]
    Locked,
    /// A stored notice cannot be decoded.
    #[error("notice {id}: {source}")]
    Decode {
        /// The notice.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A notice cannot be encoded.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
}

/// Wrap a store error of operation `op`.
fn storage<E: Into<StoreError>>(op: &'static str) -> impl Fn(E) -> NoticeError {
    move |e| NoticeError::Storage {
        op,
        source: Box::new(e.into()),
    }
}

impl<E: Into<::redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Redb(e.into())
    }
}
