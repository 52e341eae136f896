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
//!
//! Notices are stored as JSON in a `redb` table keyed by id ([`NoticeStore::open`]), or in memory
//! ([`NoticeStore::memory`]). Time is always an input (`now_ms`, Unix milliseconds).

use super::audit::{AuditAction, AuditError, AuditLog};
use super::matrix::{Matrix, Platform};
use super::outbox::{ActionKind, NewJob, OutboxError, OutboxStore, Priority};
use super::templates::{check_length, Lang, TemplateError, Templates};
use crate::cluster::{Incident, IncidentKind, IncidentState};
use crate::detect::gazetteer::RegionRef;
use crate::detect::RuleSet;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The actor of automatic drafts.
pub const SYSTEM: &str = "system";
/// The actor of automatic approvals.
pub const POLICY: &str = "policy";

/// Where a notice is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Being written and collecting approvals.
    Draft,
    /// Approved; its jobs are being enqueued.
    Approved,
    /// Refused by an operator (final).
    Rejected,
    /// Its jobs are in the outbox.
    Publishing,
    /// Every job finished (posted or failed permanently).
    Done,
}

impl NoticeState {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Draft => "draft",
            NoticeState::Approved => "approved",
            NoticeState::Rejected => "rejected",
            NoticeState::Publishing => "publishing",
            NoticeState::Done => "done",
        }
    }
}

impl fmt::Display for NoticeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One account's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountText {
    /// The account's platform (whose length rules apply).
    pub platform: Platform,
    /// The account's language.
    pub lang: Lang,
    /// The text, within the platform's limit.
    pub text: String,
}

/// Who publishes (a copy of the matrix's [`super::matrix::Plan`] taken at draft time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticePlan {
    /// Posts first.
    pub lead: String,
    /// Post the notice themselves, in parallel with the lead.
    pub co_publishers: Vec<String>,
    /// Repost the lead's post once it exists.
    pub amplifiers: Vec<String>,
}

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved (an operator, or `policy`).
    pub actor: String,
    /// When (ms).
    pub at: i64,
}

/// One entry of a notice's history (the same actions as its audit records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When (ms).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// `draft`, `edit`, `approve`, `reject`, `enqueue`, `done`.
    pub action: String,
    /// A short human-readable detail.
    pub detail: String,
}

/// A notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Stable id (`n-` + 16 hex digits).
    pub id: String,
    /// The incident it is about (manual drafts: the one given, or a synthetic id).
    pub incident_id: String,
    /// Emergency notice or rumor rebuttal.
    pub kind: IncidentKind,
    /// Category id.
    pub category: String,
    /// 1 to 5.
    pub severity: u8,
    /// The region the notice speaks about, if any.
    pub region: Option<RegionRef>,
    /// Per posting account (lead, co-publishers): its text.
    pub texts: BTreeMap<String, AccountText>,
    /// Who publishes.
    pub plan: NoticePlan,
    /// Where it is.
    pub state: NoticeState,
    /// Distinct approvers so far, in order (reset by an edit).
    pub approvals: Vec<Approval>,
    /// Approvals needed (from the policy at draft time).
    pub required_approvals: u8,
    /// The drafter (`system` for automatic drafts).
    pub created_by: String,
    /// Drafted at (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Why it was rejected.
    pub rejection: Option<String>,
    /// Outbox job ids, once enqueued (lead first).
    pub jobs: Vec<String>,
    /// Everything that happened to it.
    pub history: Vec<HistoryEntry>,
}

impl Notice {
    /// One step of its history: `actor` did `action` at `at` (also its last change).
    fn record(&mut self, at: i64, actor: &str, action: &str, detail: impl Into<String>) {
        self.updated_at = at;
        self.history.push(HistoryEntry {
            at,
            actor: actor.to_string(),
            action: action.to_string(),
            detail: detail.into(),
        });
    }
}

/// The approval policy.
///
/// Defaults ([`ApprovalPolicy::default`]):
///
/// | setting | default |
/// |---|---|
/// | `draft_threshold` | 3: incidents of severity ≥ 3 get an automatic draft |
/// | `pre_approved` | `extreme_weather`, `rainstorm`, `typhoon` (official weather alerts) |
/// | `pre_approved_max_severity` | 3: those categories up to severity 3 are approved by `policy` at draft time |
/// | `two_operator_severity` | 4: severity ≥ 4 needs two different operators |
/// | `rumor_two_operators` | true: every rumor rebuttal needs two different operators |
///
/// Everything else needs one operator. Rumor rebuttals are never pre-approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Minimum incident severity for an automatic draft.
    pub draft_threshold: u8,
    /// Emergency categories approved automatically (up to `pre_approved_max_severity`).
    pub pre_approved: Vec<String>,
    /// The highest severity approved automatically.
    pub pre_approved_max_severity: u8,
    /// From this severity on, two different operators.
    pub two_operator_severity: u8,
    /// Rumor rebuttals always need two different operators.
    pub rumor_two_operators: bool,
    /// Replies to a rumor cascade's most-spread posts once its rebuttal is approved
    /// (`[respond.policy.replies]`, see [`crate::respond::replies`]).
    pub replies: crate::respond::replies::ReplyPolicy,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            draft_threshold: 3,
            pre_approved: vec![
                "extreme_weather".into(),
                "rainstorm".into(),
                "typhoon".into(),
            ],
            pre_approved_max_severity: 3,
            two_operator_severity: 4,
            rumor_two_operators: true,
            replies: Default::default(),
        }
    }
}

impl ApprovalPolicy {
    /// Whether a notice of this kind, category and severity is approved at draft time.
    pub fn auto_approves(&self, kind: IncidentKind, category: &str, severity: u8) -> bool {
        kind == IncidentKind::Emergency
            && severity <= self.pre_approved_max_severity
            && self.pre_approved.iter().any(|c| c == category)
    }

    /// Distinct operators needed (0 when auto-approved).
    pub fn required_approvals(&self, kind: IncidentKind, category: &str, severity: u8) -> u8 {
        if self.auto_approves(kind, category, severity) {
            0
        } else if severity >= self.two_operator_severity
            || (kind == IncidentKind::Rumor && self.rumor_two_operators)
        {
            2
        } else {
            1
        }
    }

    /// Whether an incident of this severity gets an automatic draft.
    pub fn drafts(&self, severity: u8) -> bool {
        severity >= self.draft_threshold
    }
}

/// Which texts an edit changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditTarget {
    /// One account's.
    Account(String),
    /// Every posting account's.
    All,
}

/// A notice drafted by hand (`POST /api/notices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualDraft {
    /// The incident it is about; a synthetic id (`manual-…`) when absent.
    #[serde(default)]
    pub incident_id: Option<String>,
    /// Emergency notice or rumor rebuttal.
    pub kind: IncidentKind,
    /// A category id (or `other` for rumors).
    pub category: String,
    /// 1 to 5.
    pub severity: u8,
    /// A region code from the gazetteer; the matrix's default region when absent.
    #[serde(default)]
    pub region: Option<String>,
    /// One text for every posting account instead of the rendered templates (length-checked).
    #[serde(default)]
    pub text: Option<String>,
}

/// Which notices [`Notices::list`] returns (all conditions must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NoticeFilter {
    /// Only in this state.
    pub state: Option<NoticeState>,
    /// Only about this incident.
    pub incident_id: Option<String>,
    /// Only of this kind.
    pub kind: Option<IncidentKind>,
}

impl NoticeFilter {
    fn matches(&self, n: &Notice) -> bool {
        self.state.is_none_or(|s| s == n.state)
            && self
                .incident_id
                .as_ref()
                .is_none_or(|i| *i == n.incident_id)
            && self.kind.is_none_or(|k| k == n.kind)
    }
}

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
    /// The drafter tried to approve their own notice.
    #[error("notice {id}: {actor} drafted it and may not approve it (another operator must)")]
    SelfApproval {
        /// The notice.
        id: String,
        /// The drafter.
        actor: String,
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
    #[error("notice store {op}: {message}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The audit log refused the record: the action was not done.
    #[error("notice: audit log: {0}")]
    Audit(#[from] AuditError),
    /// The outbox failed: the notice stays approved; [`Notices::publish`] retries.
    #[error("notice: outbox: {0}")]
    Outbox(#[from] OutboxError),
}

fn storage<E: fmt::Display>(op: &'static str) -> impl Fn(E) -> NoticeError {
    move |e| NoticeError::Storage {
        op,
        message: e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

const NOTICES: TableDefinition<&str, &[u8]> = TableDefinition::new("notices");
const META: TableDefinition<&str, u64> = TableDefinition::new("notices_meta");

enum Backend {
    Redb(Database),
    Memory(Mutex<(BTreeMap<String, Vec<u8>>, u64)>),
    /// Shared by the instances of a cluster: hash `{NS:notices}:all` (id → JSON), counter
    /// `{NS:notices}:seq`, and the lock `{NS:notices}:lock` that serialises changes cluster-wide.
    Redis {
        db: std::sync::Arc<crate::respond::redis::Blocking>,
        tag: String,
    },
}

/// Holds the right to change notices: the local mutex and, on Redis, the cluster-wide lock.
pub(crate) struct WriteGuard<'a> {
    _local: MutexGuard<'a, ()>,
    _shared: Option<crate::respond::redis::RedisLock>,
}

fn redis_err(op: &'static str) -> impl Fn(redis::RedisError) -> NoticeError {
    move |e| NoticeError::Storage {
        op,
        message: format!("redis: {e}"),
    }
}

/// Where notices are kept: JSON values keyed by id, in a `redb` file or in memory.
pub struct NoticeStore {
    backend: Backend,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NoticeStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<NoticeStore, NoticeError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| NoticeError::Storage {
                op: "open",
                message: format!("{}: {e}", dir.display()),
            })?;
        }
        let db = Database::create(path).map_err(|e| NoticeError::Storage {
            op: "open",
            message: format!("{}: {e}", path.display()),
        })?;
        let tx = db.begin_write().map_err(storage("open"))?;
        tx.open_table(NOTICES).map_err(storage("open"))?;
        tx.open_table(META).map_err(storage("open"))?;
        tx.commit().map_err(storage("open"))?;
        Ok(NoticeStore {
            backend: Backend::Redb(db),
        })
    }

    /// The notices of namespace `ns`, shared through Redis.
    pub fn redis(db: std::sync::Arc<crate::respond::redis::Blocking>, ns: &str) -> NoticeStore {
        NoticeStore {
            backend: Backend::Redis {
                db,
                tag: format!("{{{ns}:notices}}"),
            },
        }
    }

    /// The cluster-wide lock (Redis only): changes to notices are serialised across instances.
    fn shared_lock(&self) -> Result<Option<crate::respond::redis::RedisLock>, NoticeError> {
        match &self.backend {
            Backend::Redis { db, tag } => crate::respond::redis::RedisLock::acquire(
                db,
                &format!("{tag}:lock"),
                std::time::Duration::from_secs(10),
                std::time::Duration::from_secs(5),
            )
            .map_err(redis_err("lock"))?
            .map(Some)
            .ok_or_else(|| NoticeError::Storage {
                op: "lock",
                message: "the notices are locked by another instance".into(),
            }),
            _ => Ok(None),
        }
    }

    /// A store in memory (tests, drills).
    pub fn memory() -> NoticeStore {
        NoticeStore {
            backend: Backend::Memory(Mutex::new((BTreeMap::new(), 0))),
        }
    }

    fn decode(id: &str, bytes: &[u8]) -> Result<Notice, NoticeError> {
        serde_json::from_slice(bytes).map_err(|e| NoticeError::Storage {
            op: "decode",
            message: format!("notice {id}: {e}"),
        })
    }

    /// One notice.
    pub fn get(&self, id: &str) -> Result<Option<Notice>, NoticeError> {
        match &self.backend {
            Backend::Memory(m) => match lock(m).0.get(id) {
                Some(b) => Self::decode(id, b).map(Some),
                None => Ok(None),
            },
            Backend::Redb(db) => {
                let tx = db.begin_read().map_err(storage("read"))?;
                let t = tx.open_table(NOTICES).map_err(storage("read"))?;
                match t.get(id).map_err(storage("read"))? {
                    Some(v) => Self::decode(id, v.value()).map(Some),
                    None => Ok(None),
                }
            }
            Backend::Redis { db, tag } => {
                let v: Option<Vec<u8>> = db
                    .run(|c| {
                        redis::cmd("HGET")
                            .arg(format!("{tag}:all"))
                            .arg(id)
                            .query(c)
                    })
                    .map_err(redis_err("read"))?;
                v.map(|b| Self::decode(id, &b)).transpose()
            }
        }
    }

    /// Store (insert or replace) a notice; durable when this returns (redb commits are fsynced).
    pub fn put(&self, n: &Notice) -> Result<(), NoticeError> {
        let bytes = serde_json::to_vec(n).map_err(storage("encode"))?;
        match &self.backend {
            Backend::Memory(m) => {
                lock(m).0.insert(n.id.clone(), bytes);
                Ok(())
            }
            Backend::Redb(db) => {
                let tx = db.begin_write().map_err(storage("write"))?;
                {
                    let mut t = tx.open_table(NOTICES).map_err(storage("write"))?;
                    t.insert(n.id.as_str(), bytes.as_slice())
                        .map_err(storage("write"))?;
                }
                tx.commit().map_err(storage("write"))
            }
            Backend::Redis { db, tag } => db
                .run(|c| {
                    redis::cmd("HSET")
                        .arg(format!("{tag}:all"))
                        .arg(&n.id)
                        .arg(bytes.as_slice())
                        .query::<i64>(c)
                })
                .map(|_| ())
                .map_err(redis_err("write")),
        }
    }

    /// Every notice, in id order.
    pub fn all(&self) -> Result<Vec<Notice>, NoticeError> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Memory(m) => {
                for (id, b) in &lock(m).0 {
                    out.push(Self::decode(id, b)?);
                }
            }
            Backend::Redb(db) => {
                let tx = db.begin_read().map_err(storage("read"))?;
                let t = tx.open_table(NOTICES).map_err(storage("read"))?;
                for r in t.iter().map_err(storage("read"))? {
                    let (k, v) = r.map_err(storage("read"))?;
                    out.push(Self::decode(k.value(), v.value())?);
                }
            }
            Backend::Redis { db, tag } => {
                let all: BTreeMap<String, Vec<u8>> = db
                    .run(|c| redis::cmd("HGETALL").arg(format!("{tag}:all")).query(c))
                    .map_err(redis_err("read"))?;
                for (id, b) in &all {
                    out.push(Self::decode(id, b)?);
                }
            }
        }
        Ok(out)
    }

    /// The next number for manual notice ids (persisted).
    fn next_seq(&self) -> Result<u64, NoticeError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut g = lock(m);
                g.1 += 1;
                Ok(g.1)
            }
            Backend::Redb(db) => {
                let tx = db.begin_write().map_err(storage("write"))?;
                let n = {
                    let mut t = tx.open_table(META).map_err(storage("write"))?;
                    let cur = t
                        .get("manual_seq")
                        .map_err(storage("read"))?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    t.insert("manual_seq", cur + 1).map_err(storage("write"))?;
                    cur + 1
                };
                tx.commit().map_err(storage("write"))?;
                Ok(n)
            }
            Backend::Redis { db, tag } => db
                .run(|c| redis::cmd("INCR").arg(format!("{tag}:seq")).query(c))
                .map_err(redis_err("write")),
        }
    }
}

/// The id of the notice drafted from incident `incident_id`.
pub fn notice_id_for_incident(incident_id: &str) -> String {
    let d = Sha256::digest([b"huiying/notice\0".as_slice(), incident_id.as_bytes()].concat());
    format!("n-{}", hex::encode(&d[..8]))
}

// ---------------------------------------------------------------------------------------------
// The service

/// The notice workflow (see the module docs). Mutations are serialised.
pub struct Notices {
    store: NoticeStore,
    outbox: Arc<dyn OutboxStore>,
    audit: Arc<Mutex<AuditLog>>,
    policy: ApprovalPolicy,
    write: Mutex<()>,
}

fn check_actor(actor: &str) -> Result<(), NoticeError> {
    if actor.trim().is_empty() {
        return Err(NoticeError::Invalid("empty actor".into()));
    }
    Ok(())
}

impl Notices {
    /// The service over a store, the outbox its approved notices go to, and the audit log.
    pub fn new(
        store: NoticeStore,
        outbox: Arc<dyn OutboxStore>,
        audit: Arc<Mutex<AuditLog>>,
        policy: ApprovalPolicy,
    ) -> Notices {
        Notices {
            store,
            outbox,
            audit,
            policy,
            write: Mutex::new(()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &ApprovalPolicy {
        &self.policy
    }

    fn audit(
        &self,
        at: i64,
        actor: &str,
        action: AuditAction,
        notice: &str,
        detail: serde_json::Value,
    ) -> Result<(), NoticeError> {
        lock(&self.audit).append(at, actor, action, Some(notice), detail)?;
        Ok(())
    }

    /// The right to change notices (local, and cluster-wide on Redis).
    fn exclusive(&self) -> Result<WriteGuard<'_>, NoticeError> {
        let local = lock(&self.write);
        Ok(WriteGuard {
            _shared: self.store.shared_lock()?,
            _local: local,
        })
    }

    fn load(&self, id: &str) -> Result<Notice, NoticeError> {
        self.store
            .get(id)?
            .ok_or_else(|| NoticeError::NotFound(id.to_string()))
    }

    /// One notice.
    pub fn get(&self, id: &str) -> Result<Option<Notice>, NoticeError> {
        self.store.get(id)
    }

    /// The notices matching `filter`, oldest first (then by id).
    pub fn list(&self, filter: &NoticeFilter) -> Result<Vec<Notice>, NoticeError> {
        let mut v: Vec<Notice> = self
            .store
            .all()?
            .into_iter()
            .filter(|n| filter.matches(n))
            .collect();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(v)
    }

    /// Draft the notice for an incident (severity ≥ the policy's threshold, else
    /// [`NoticeError::BelowThreshold`]). Idempotent: if a notice for this incident was drafted
    /// before, it is returned unchanged, whatever its state. Pre-approved categories are
    /// approved (by `policy`) and enqueued at once.
    pub fn draft_from_incident(
        &self,
        incident: &Incident,
        rules: &RuleSet,
        matrix: &Matrix,
        templates: &Templates,
        now_ms: i64,
        actor: &str,
    ) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        let _g = self.exclusive()?;
        let id = notice_id_for_incident(&incident.id);
        if let Some(n) = self.store.get(&id)? {
            return Ok(n);
        }
        if !self.policy.drafts(incident.severity) {
            return Err(NoticeError::BelowThreshold {
                incident: incident.id.clone(),
                severity: incident.severity,
                threshold: self.policy.draft_threshold,
            });
        }
        self.create(id, incident, None, rules, matrix, templates, now_ms, actor)
    }

    /// Draft a notice by hand. The plan comes from the matrix for the given kind, category and
    /// region; the texts are rendered from the templates, or `draft.text` for every posting
    /// account (length-checked per platform). The policy applies as for automatic drafts.
    pub fn draft_manual(
        &self,
        draft: &ManualDraft,
        rules: &RuleSet,
        matrix: &Matrix,
        templates: &Templates,
        now_ms: i64,
        actor: &str,
    ) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        if !(1..=5).contains(&draft.severity) {
            return Err(NoticeError::Invalid(format!(
                "severity {} (1 to 5)",
                draft.severity
            )));
        }
        let known = rules.category_index(&draft.category).is_some()
            || (draft.kind == IncidentKind::Rumor && draft.category == "other");
        if !known {
            return Err(NoticeError::Invalid(format!(
                "unknown category {:?}",
                draft.category
            )));
        }
        let region = match &draft.region {
            None => None,
            Some(code) => {
                let g = &rules.gazetteer;
                let i = g
                    .by_code(code)
                    .ok_or_else(|| NoticeError::Invalid(format!("unknown region code {code:?}")))?;
                Some(g.region_ref(i))
            }
        };
        if let Some(t) = &draft.text {
            if t.trim().is_empty() {
                return Err(NoticeError::Invalid("empty text".into()));
            }
        }
        let _g = self.exclusive()?;
        let seq = self.store.next_seq()?;
        let id = {
            let d = Sha256::digest(format!("huiying/manual-notice\0{seq}\0{actor}\0{now_ms}"));
            format!("n-{}", hex::encode(&d[..8]))
        };
        let incident = Incident {
            id: draft
                .incident_id
                .clone()
                .unwrap_or_else(|| format!("manual-{seq}")),
            kind: draft.kind,
            category: draft.category.clone(),
            region,
            first_seen: now_ms,
            opened_at: now_ms,
            updated_at: now_ms,
            mentions: 0,
            authors: 0,
            rate_per_min: 0.0,
            baseline_per_min: 0.0,
            severity: draft.severity,
            top_terms: Vec::new(),
            sample_mention_ids: Vec::new(),
            root_mention_id: None,
            rebuttal: None,
            state: IncidentState::Open,
            spread: Vec::new(),
            samples: Vec::new(),
        };
        self.create(
            id,
            &incident,
            draft.text.as_deref(),
            rules,
            matrix,
            templates,
            now_ms,
            actor,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        id: String,
        incident: &Incident,
        text: Option<&str>,
        rules: &RuleSet,
        matrix: &Matrix,
        templates: &Templates,
        now_ms: i64,
        actor: &str,
    ) -> Result<Notice, NoticeError> {
        let plan = matrix.plan(incident, rules);
        let mut texts = BTreeMap::new();
        // An amplifier on another platform than the lead cannot repost the lead's post: it posts
        // the notice itself (after the lead), so it needs a text of its own.
        let lead_platform = matrix.account(plan.lead.as_str()).map(|a| a.platform);
        let cross_platform: Vec<&super::matrix::AccountId> = plan
            .amplifiers
            .iter()
            .filter(|a| matrix.account(a.as_str()).map(|x| x.platform) != lead_platform)
            .collect();
        for acc_id in std::iter::once(&plan.lead)
            .chain(&plan.co_publishers)
            .chain(cross_platform)
        {
            let acc = matrix
                .account(acc_id.as_str())
                .ok_or_else(|| NoticeError::MissingAccount(acc_id.to_string()))?;
            let too_long = |source| NoticeError::TooLong {
                account: acc_id.to_string(),
                source,
            };
            let body = match text {
                Some(t) => {
                    check_length(acc.platform, t).map_err(too_long)?;
                    t.to_string()
                }
                None => templates
                    .render(incident, acc.lang, acc.platform)
                    .map_err(too_long)?,
            };
            texts.insert(
                acc_id.to_string(),
                AccountText {
                    platform: acc.platform,
                    lang: acc.lang,
                    text: body,
                },
            );
        }
        let strs = |v: &[super::matrix::AccountId]| v.iter().map(|a| a.to_string()).collect();
        let required =
            self.policy
                .required_approvals(incident.kind, &incident.category, incident.severity);
        let mut n = Notice {
            id,
            incident_id: incident.id.clone(),
            kind: incident.kind,
            category: incident.category.clone(),
            severity: incident.severity,
            region: incident.region.clone(),
            texts,
            plan: NoticePlan {
                lead: plan.lead.to_string(),
                co_publishers: strs(&plan.co_publishers),
                amplifiers: strs(&plan.amplifiers),
            },
            state: NoticeState::Draft,
            approvals: Vec::new(),
            required_approvals: required,
            created_by: actor.to_string(),
            created_at: now_ms,
            updated_at: now_ms,
            rejection: None,
            jobs: Vec::new(),
            history: Vec::new(),
        };
        self.audit(
            now_ms,
            actor,
            AuditAction::Draft,
            &n.id,
            json!({
                "incident": n.incident_id,
                "kind": n.kind.as_str(),
                "category": n.category,
                "severity": n.severity,
                "region": n.region.as_ref().map(|r| r.code.as_str()),
                "lead": n.plan.lead,
                "co_publishers": n.plan.co_publishers,
                "amplifiers": n.plan.amplifiers,
                "required_approvals": required,
            }),
        )?;
        n.record(
            now_ms,
            actor,
            "draft",
            format!(
                "{} {} severity {} ({} approval(s) needed)",
                n.kind.as_str(),
                n.category,
                n.severity,
                required
            ),
        );
        self.store.put(&n)?;
        if required == 0 {
            self.audit(
                now_ms,
                POLICY,
                AuditAction::Approve,
                &n.id,
                json!({"auto": true, "category": n.category, "severity": n.severity}),
            )?;
            n.approvals.push(Approval {
                actor: POLICY.into(),
                at: now_ms,
            });
            n.record(now_ms, POLICY, "approve", "pre-approved category");
            n.state = NoticeState::Approved;
            self.store.put(&n)?;
            n = self.enqueue(n, now_ms)?;
        }
        Ok(n)
    }

    /// Replace one account's text, or every posting account's, in a draft. The text is checked
    /// against each account's platform limit (nothing is stored if one does not fit) and the
    /// approvals collected so far are reset.
    pub fn edit(
        &self,
        id: &str,
        target: &EditTarget,
        text: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        if text.trim().is_empty() {
            return Err(NoticeError::Invalid("empty text".into()));
        }
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state != NoticeState::Draft {
            return Err(NoticeError::InvalidState {
                id: n.id,
                state: n.state,
                op: "edit",
            });
        }
        let accounts: Vec<String> = match target {
            EditTarget::All => n.texts.keys().cloned().collect(),
            EditTarget::Account(a) => {
                if !n.texts.contains_key(a) {
                    return Err(NoticeError::UnknownAccount {
                        id: n.id,
                        account: a.clone(),
                    });
                }
                vec![a.clone()]
            }
        };
        for a in &accounts {
            if let Some(t) = n.texts.get(a) {
                check_length(t.platform, text).map_err(|source| NoticeError::TooLong {
                    account: a.clone(),
                    source,
                })?;
            }
        }
        let reset = n.approvals.len();
        self.audit(
            now_ms,
            actor,
            AuditAction::Edit,
            &n.id,
            json!({"accounts": accounts, "text": text, "approvals_reset": reset}),
        )?;
        for a in &accounts {
            if let Some(t) = n.texts.get_mut(a) {
                t.text = text.to_string();
            }
        }
        n.approvals.clear();
        n.record(
            now_ms,
            actor,
            "edit",
            format!(
                "{} ({reset} approval(s) reset)",
                match target {
                    EditTarget::All => "all accounts".to_string(),
                    EditTarget::Account(a) => a.clone(),
                }
            ),
        );
        self.store.put(&n)?;
        Ok(n)
    }

    /// Approve a draft as `actor`. Refused for the drafter ([`NoticeError::SelfApproval`]) and
    /// for the reserved actors `system` and `policy`; a second approval by the same operator
    /// changes nothing (it is audited). Once enough distinct operators approved, the notice is
    /// enqueued and returned in state `publishing`.
    pub fn approve(&self, id: &str, actor: &str, now_ms: i64) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        if actor == SYSTEM || actor == POLICY {
            return Err(NoticeError::Invalid(format!(
                "{actor:?} is reserved and cannot approve"
            )));
        }
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state != NoticeState::Draft {
            return Err(NoticeError::InvalidState {
                id: n.id,
                state: n.state,
                op: "approve",
            });
        }
        if n.created_by == actor {
            return Err(NoticeError::SelfApproval {
                id: n.id,
                actor: actor.to_string(),
            });
        }
        let repeat = n.approvals.iter().any(|a| a.actor == actor);
        let count = n.approvals.len() + usize::from(!repeat);
        let required = usize::from(n.required_approvals);
        self.audit(
            now_ms,
            actor,
            AuditAction::Approve,
            &n.id,
            json!({"repeat": repeat, "approvals": count, "required": required}),
        )?;
        if repeat {
            return Ok(n);
        }
        n.approvals.push(Approval {
            actor: actor.to_string(),
            at: now_ms,
        });
        n.record(now_ms, actor, "approve", format!("{count} of {required}"));
        if count >= required {
            n.state = NoticeState::Approved;
            self.store.put(&n)?;
            return self.enqueue(n, now_ms);
        }
        self.store.put(&n)?;
        Ok(n)
    }

    /// Reject a draft (final; nothing is enqueued).
    pub fn reject(
        &self,
        id: &str,
        actor: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state != NoticeState::Draft {
            return Err(NoticeError::InvalidState {
                id: n.id,
                state: n.state,
                op: "reject",
            });
        }
        self.audit(
            now_ms,
            actor,
            AuditAction::Reject,
            &n.id,
            json!({"reason": reason}),
        )?;
        n.state = NoticeState::Rejected;
        n.rejection = Some(reason.to_string());
        n.record(now_ms, actor, "reject", reason);
        self.store.put(&n)?;
        Ok(n)
    }

    /// (Re-)enqueue an approved or publishing notice's jobs: after an outbox failure during
    /// approval, or on restart. A no-op for jobs already in the outbox.
    pub fn publish(&self, id: &str, now_ms: i64) -> Result<Notice, NoticeError> {
        let _g = self.exclusive()?;
        let n = self.load(id)?;
        match n.state {
            NoticeState::Approved | NoticeState::Publishing => self.enqueue(n, now_ms),
            state => Err(NoticeError::InvalidState {
                id: n.id,
                state,
                op: "publish",
            }),
        }
    }

    /// The jobs of an approved notice (lead, co-publishers, amplifiers depending on the lead).
    pub fn jobs(n: &Notice) -> Vec<NewJob> {
        let priority = match n.kind {
            IncidentKind::Emergency => Priority::Emergency,
            IncidentKind::Rumor => Priority::Rebuttal,
        };
        let text = |a: &str| n.texts.get(a).map(|t| t.text.as_str()).unwrap_or("");
        let lead = NewJob::new(
            &n.id,
            &n.plan.lead,
            ActionKind::Post,
            priority,
            text(&n.plan.lead),
        );
        let lead_id = lead.id();
        let mut jobs = vec![lead];
        for a in &n.plan.co_publishers {
            jobs.push(NewJob::new(&n.id, a, ActionKind::Post, priority, text(a)));
        }
        for a in &n.plan.amplifiers {
            // A text of its own means a cross-platform amplifier: it posts after the lead.
            let job = match n.texts.get(a) {
                Some(t) => NewJob::new(&n.id, a, ActionKind::Post, priority, &t.text),
                None => NewJob::new(&n.id, a, ActionKind::Repost, priority, ""),
            };
            jobs.push(job.depends_on(&lead_id));
        }
        jobs
    }

    fn enqueue(&self, mut n: Notice, now_ms: i64) -> Result<Notice, NoticeError> {
        let jobs = Self::jobs(&n);
        let done = self.outbox.enqueue_all(jobs, now_ms)?;
        let created = done.iter().filter(|e| e.created()).count();
        n.jobs = done.iter().map(|e| e.job().id.clone()).collect();
        if n.state != NoticeState::Publishing || created > 0 {
            n.state = NoticeState::Publishing;
            n.record(
                now_ms,
                SYSTEM,
                "enqueue",
                format!("{} job(s), {created} new", n.jobs.len()),
            );
            self.store.put(&n)?;
        }
        Ok(n)
    }

    /// Add rebuttal replies ([`crate::respond::replies::plan`]) to an approved notice: enqueued
    /// with the notice's jobs, audited, and the notice back to `publishing` while they run.
    /// Jobs that exist already are not added twice.
    pub fn add_replies(
        &self,
        id: &str,
        jobs: Vec<NewJob>,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if jobs.is_empty() || !matches!(n.state, NoticeState::Publishing | NoticeState::Done) {
            return Ok(n);
        }
        let targets: Vec<String> = jobs.iter().filter_map(|j| j.in_reply_to.clone()).collect();
        let done = self.outbox.enqueue_all(jobs, now_ms)?;
        let new: Vec<String> = done
            .iter()
            .filter(|e| e.created())
            .map(|e| e.job().id.clone())
            .filter(|j| !n.jobs.contains(j))
            .collect();
        if new.is_empty() {
            return Ok(n);
        }
        self.audit(
            now_ms,
            SYSTEM,
            AuditAction::Other("enqueue_replies".into()),
            &n.id,
            serde_json::json!({"jobs": new, "in_reply_to": targets}),
        )?;
        n.jobs.extend(new.iter().cloned());
        n.state = NoticeState::Publishing;
        n.record(
            now_ms,
            SYSTEM,
            "replies",
            format!("{} rebuttal repl(ies) to the most-spread posts", new.len()),
        );
        self.store.put(&n)?;
        Ok(n)
    }

    /// Move a publishing notice to `done` once every one of its jobs is finished (posted or
    /// failed). Returns the notice as stored.
    pub fn refresh(&self, id: &str, now_ms: i64) -> Result<Notice, NoticeError> {
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state != NoticeState::Publishing {
            return Ok(n);
        }
        let jobs = self.outbox.jobs_for_notice(&n.id)?;
        if !jobs.is_empty() && jobs.iter().all(|j| j.state.is_finished()) {
            n.state = NoticeState::Done;
            n.record(
                now_ms,
                SYSTEM,
                "done",
                format!("{} job(s) finished", jobs.len()),
            );
            self.store.put(&n)?;
        }
        Ok(n)
    }
}
