//! [`Cases`]: the workflow over the case store. Intake (a new case, or a requester joining the
//! case of the same problem), the transitions with their audit records, the acknowledgement and
//! the answer as outbox jobs, ratings and follow-ups read from replies, and supervision
//! (reminders, escalation, closing unrated cases) — every time an argument, so tests drive it.
//!
//! # Order of writes
//!
//! A change is checked on a copy of the case, then: the audit record (audit first: no record, no
//! change), the outbox jobs (idempotent: their ids come from the case, the action and the
//! requester, so a retry after a crash enqueues nothing twice), then the case itself with its
//! index entries. A crash between two steps leaves the case as it was, and repeating the action
//! produces the same jobs.

use super::config::CasesConfig;
use super::deadlines::{Calendar, Standing};
use super::model::{Case, CaseError, CaseState, Channel, Contact, Intake, Requester, Satisfaction};
use super::routing::Router;
use super::store::{CaseStore, CaseStoreError};
use super::texts::Texts;
use crate::live::LiveIncidents;
use crate::normalize::Mention;
use crate::respond::audit::{AuditAction, AuditError, SharedAudit};
use crate::respond::matrix::{Matrix, Platform};
use crate::respond::outbox::{ActionKind, NewJob, OutboxError, OutboxStore, Priority};
use crate::respond::replies::Target;
use crate::respond::templates::Lang;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The actor of the audit log for what the system does on its own.
pub const SYSTEM: &str = "system";

/// The actor of imported history.
pub const IMPORT: &str = "import";

/// One case of an existing system's history, as `huiying cases import` read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Imported {
    /// The old system's id.
    pub id: String,
    /// When it came in (ms).
    pub at: i64,
    /// The requester.
    pub author: Option<String>,
    /// The request.
    pub text: String,
    /// Its title.
    pub title: Option<String>,
    /// The department that handled it.
    pub department: Option<String>,
    /// The answer given.
    pub reply: Option<String>,
    /// When (ms).
    pub reply_at: Option<i64>,
    /// Where it stands (default: closed with a reply, else accepted).
    pub state: Option<CaseState>,
    /// Its kind.
    pub kind: Option<String>,
    /// A region code or name.
    pub region: Option<String>,
    /// The requester's rating.
    pub satisfaction: Option<Satisfaction>,
}

/// Longest request text taken (characters).
pub const MAX_TEXT_CHARS: usize = 5_000;

/// Who acts on a case.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// User or token name (the audit log's actor).
    pub name: &'a str,
    /// A department user's department: they act on its cases only. `None`: an operator.
    pub department: Option<&'a str>,
}

impl<'a> Actor<'a> {
    /// An operator (or the system).
    pub fn operator(name: &'a str) -> Actor<'a> {
        Actor {
            name,
            department: None,
        }
    }
}

/// Why a workflow step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The transition is not possible from the case's state.
    #[error(transparent)]
    Case(#[from] CaseError),
    /// A value given is not usable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The actor may not do this (another department's case, their own answer).
    #[error("{0}")]
    Forbidden(String),
    /// The case changed since the version the caller read.
    #[error("case {id} changed: it is at version {current}, the request read {read}")]
    Changed {
        /// The case.
        id: String,
        /// Its version now.
        current: u64,
        /// The version read.
        read: u64,
    },
    /// The answer does not fit the platform it goes back on.
    #[error("the answer is {len} characters as {platform} counts them; it allows {limit}")]
    TooLong {
        /// The platform.
        platform: &'static str,
        /// The counted length (with the answer's frame).
        len: usize,
        /// The platform's limit.
        limit: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] CaseStoreError),
    /// The audit log refused the record: nothing was done.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The outbox failed: nothing was changed; retry.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> WorkflowError {
    WorkflowError::Invalid {
        field,
        message: message.into(),
    }
}

/// Where acknowledgements, answers and e-mails go out: the respond stage's outbox and matrix.
#[derive(Clone)]
pub struct Outlet {
    /// The durable outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// The account matrix.
    pub matrix: Arc<Matrix>,
    /// Wakes the dispatcher after an enqueue.
    pub wake: Arc<Notify>,
    /// Whether e-mail goes out (the respond stage's `smtp` account).
    pub mail: bool,
}

/// What an intake did.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeOutcome {
    /// The case (new, joined, or the one this source item already made).
    pub case: Case,
    /// A new case.
    pub created: bool,
    /// The requester joined an existing case of the same problem.
    pub joined: bool,
}

/// What a mention did to the cases.
#[derive(Debug, Clone, PartialEq)]
pub enum MentionOutcome {
    /// Not addressed to an intake account, or without a request cue.
    Ignored,
    /// A new case, or a requester joining one.
    Intake(IntakeOutcome),
    /// A requester rated the answer (a dissatisfied rating reopens the case).
    Rated(Case),
    /// A follow-up on a case: recorded (and a closed case reopened).
    FollowUp(Case),
    /// A requester's reply to a post not known yet while a reply of theirs is still on its way
    /// out: looked at again in the next supervision rounds (for [`DEFER_MS`] at most).
    Deferred,
}

/// How long a requester's reply to an unknown post may wait for the reply it answers to be
/// indexed.
pub const DEFER_MS: i64 = 10 * 60_000;

/// What one supervision round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Supervision {
    /// Reminders sent (due soon).
    pub reminded: usize,
    /// Escalations (overdue, first time).
    pub escalated: usize,
    /// Answered cases closed without a rating.
    pub closed_unrated: usize,
    /// Open cases past a deadline now.
    pub overdue: usize,
    /// Posts of acknowledgements and answers newly indexed (so replies to them are found).
    pub posts_indexed: usize,
}

/// A case filter (the console's queue, the API, the CSV export).
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only these states.
    pub state: Option<CaseState>,
    /// Only with this kind.
    pub kind: Option<String>,
    /// Only this department's.
    pub department: Option<String>,
    /// Only in this region (code prefix).
    pub region: Option<String>,
    /// Only overdue ones.
    pub overdue: bool,
    /// Only open ones (not answered or closed).
    pub open: bool,
    /// Created at or after (ms).
    pub from: Option<i64>,
    /// Created before (ms).
    pub to: Option<i64>,
}

/// A manual correction the router learned: requests like this text go to `department`.
struct Learned {
    grams: HashSet<u64>,
    department: String,
}

/// The case workflow (see the module docs). Blocking: async callers use `spawn_blocking`.
pub struct Cases {
    store: CaseStore,
    router: Router,
    calendar: Calendar,
    texts: Texts,
    cfg: CasesConfig,
    outlet: Option<Outlet>,
    audit: Option<SharedAudit>,
    incidents: Option<LiveIncidents>,
    learned: Mutex<Vec<Learned>>,
    feedback: Option<std::path::PathBuf>,
    lock: Mutex<()>,
    /// Cases with replies whose posts are not all indexed yet.
    unindexed: Mutex<HashSet<String>>,
    /// Whether every case was looked at once since the start (then only `unindexed`).
    scanned: std::sync::atomic::AtomicBool,
    /// Requests the store or the audit log refused, retried each supervision round.
    pub(crate) pending: super::stage::Pending,
}

impl std::fmt::Debug for Cases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cases").finish_non_exhaustive()
    }
}

/// Character bigrams of the normalised text, without @handles and punctuation.
fn grams(normalized: &str) -> HashSet<u64> {
    let mut cs: Vec<char> = Vec::new();
    let mut skip = false;
    for c in normalized.chars() {
        if c == '@' {
            skip = true;
            continue;
        }
        if skip {
            if c.is_whitespace() || c == ':' || c == '：' {
                skip = false;
            }
            continue;
        }
        if c.is_alphanumeric() {
            cs.push(c);
        }
    }
    cs.windows(2)
        .map(|w| crate::stable_hash(format!("{}{}", w[0], w[1]).as_bytes()))
        .collect()
}

fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    let inter = a.intersection(b).count();
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// The last `:`-separated part of a post id (`mastodon:host:123` → `123`, `weibo:456` →
/// `456`): what a platform's reply points at, and what a publisher returns as the post id.
fn native(id: &str) -> &str {
    id.rsplit(':').next().unwrap_or(id)
}

/// The contact `requester` just gave, by handle (for the e-mails that acknowledge them before
/// the contact is stored).
fn new_contact(requester: &Requester, contact: Option<&Contact>) -> BTreeMap<String, Contact> {
    contact
        .map(|k| BTreeMap::from([(requester.handle.clone(), k.clone())]))
        .unwrap_or_default()
}

/// A mention's post to reply to: for a Weibo comment (`weibo:c:…`) the comment itself on its
/// weibo, as `{status}/{comment}` (the Weibo publisher answers it with `comments/reply`, so the
/// citizen is notified and the answer sits under the comment); else the mention's own post.
/// A Weibo comment whose weibo is unknown cannot be answered on the platform: `None`.
fn reply_target(
    m_id: &str,
    reply_to: Option<&str>,
    thread: Option<&str>,
    source: Option<&str>,
) -> Option<String> {
    if let Some(cid) = m_id.strip_prefix("weibo:c:") {
        let status = thread
            .or(reply_to)
            .filter(|s| s.starts_with("weibo:") && !s.starts_with("weibo:c:"))?;
        return Some(format!("{}/{cid}", native(status)));
    }
    Target::from_id(m_id, source).map(|t| t.native_id().to_string())
}

impl Cases {
    /// The workflow over `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: CaseStore,
        router: Router,
        calendar: Calendar,
        texts: Texts,
        cfg: CasesConfig,
        outlet: Option<Outlet>,
        audit: Option<SharedAudit>,
        incidents: Option<LiveIncidents>,
    ) -> Cases {
        Cases {
            store,
            router,
            calendar,
            texts,
            cfg,
            outlet,
            audit,
            incidents,
            learned: Mutex::new(Vec::new()),
            feedback: None,
            lock: Mutex::new(()),
            pending: Default::default(),
            unindexed: Default::default(),
            scanned: Default::default(),
        }
    }

    /// Append the router's corrections (a case assigned by a person elsewhere than the router
    /// said) to `path`, one training line each, for `huiying cases train`.
    pub fn with_feedback(mut self, path: std::path::PathBuf) -> Cases {
        self.feedback = Some(path);
        self
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The request kinds a case may have: (id, Chinese name, English name).
    pub fn kinds(&self) -> Vec<(String, String, String)> {
        self.router
            .request_kinds()
            .into_iter()
            .filter(|(k, _, _)| super::KINDS.contains(&k.as_str()))
            .collect()
    }

    /// The calendar.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// The settings.
    pub fn config(&self) -> &CasesConfig {
        &self.cfg
    }

    /// The store.
    pub fn store(&self) -> &CaseStore {
        &self.store
    }

    /// One case.
    pub fn get(&self, id: &str) -> Result<Case, WorkflowError> {
        self.store
            .get(id)?
            .ok_or_else(|| WorkflowError::NotFound(id.to_string()))
    }

    /// The cases `f` selects, newest first.
    pub fn list(&self, f: &CaseFilter, now: i64) -> Result<Vec<Case>, WorkflowError> {
        let mut v: Vec<Case> = self
            .store
            .all()?
            .into_iter()
            .filter(|c| {
                f.state.is_none_or(|s| c.state == s)
                    && f.kind.as_ref().is_none_or(|k| c.kinds.contains(k))
                    && f.department
                        .as_ref()
                        .is_none_or(|d| c.department.as_ref() == Some(d))
                    && f.region.as_ref().is_none_or(|r| {
                        c.region
                            .as_deref()
                            .is_some_and(|cr| cr.starts_with(r.trim_end_matches("00")))
                    })
                    && (!f.overdue || self.overdue(c, now))
                    && (!f.open || c.state.is_open())
                    && f.from.is_none_or(|t| c.created_at >= t)
                    && f.to.is_none_or(|t| c.created_at < t)
            })
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }

    fn deadlines(&self, c: &Case) -> Option<super::deadlines::KindDeadlines> {
        self.calendar.deadlines_for(
            c.kinds.first().map_or("", String::as_str),
            c.department.as_deref(),
        )
    }

    /// When case `c` must be answered: from its (last) acceptance, by its kind's and
    /// department's deadline.
    fn answer_due(&self, c: &Case) -> Option<i64> {
        let accepted = c.history.iter().rev().find(|e| e.action == "accept")?.at;
        self.deadlines(c)
            .map(|d| self.calendar.due(accepted, d.answer))
    }

    /// Whether an open case is past its accept or answer deadline at `now`.
    pub fn overdue(&self, c: &Case, now: i64) -> bool {
        match c.state {
            CaseState::Received => c.accept_due.is_some_and(|d| now > d),
            CaseState::Accepted | CaseState::Assigned | CaseState::InProgress => {
                c.answer_due.is_some_and(|d| now > d)
            }
            CaseState::Answered | CaseState::Closed => false,
        }
    }

    fn locked(
        &self,
    ) -> Result<
        (
            std::sync::MutexGuard<'_, ()>,
            Option<crate::respond::redis::RedisLock>,
        ),
        WorkflowError,
    > {
        let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let shared = self.store.shared_lock()?;
        Ok((g, shared))
    }

    fn audit(
        &self,
        at: i64,
        actor: &str,
        c: &Case,
        action: &str,
        detail: &str,
    ) -> Result<(), WorkflowError> {
        let Some(a) = &self.audit else {
            return Ok(());
        };
        let mut g = a.lock().unwrap_or_else(|p| p.into_inner());
        g.append(
            at,
            actor,
            AuditAction::Other(format!("case.{action}")),
            None,
            serde_json::json!({
                "case": c.id,
                "state": c.state.as_str(),
                "department": c.department,
                "detail": detail,
            }),
        )?;
        Ok(())
    }

    /// Audit every history entry after `from`, enqueue `jobs`, then store the case with
    /// `index` (the order of the module docs).
    fn commit(
        &self,
        c: &mut Case,
        from: usize,
        jobs: Vec<NewJob>,
        index: &[String],
        now: i64,
    ) -> Result<(), WorkflowError> {
        for e in &c.history[from.min(c.history.len())..] {
            self.audit(e.at, &e.actor, c, &e.action, &e.detail)?;
        }
        if !jobs.is_empty() {
            if let Some(o) = &self.outlet {
                for j in &jobs {
                    if !c.outbox.contains(&j.notice_id) {
                        c.outbox.push(j.notice_id.clone());
                    }
                }
                o.outbox.enqueue_all(jobs, now)?;
                self.unindexed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(c.id.clone());
                o.wake.notify_one();
            }
        }
        self.store.put(c, index)?;
        Ok(())
    }

    fn department_name(&self, id: Option<&str>, lang: Lang) -> String {
        match id.and_then(|d| self.router.departments.get(d)) {
            Some(d) if lang == Lang::En => d.name_en.clone(),
            Some(d) => d.name_zh.clone(),
            None if lang == Lang::En => "the responsible department".into(),
            None => "相关部门".into(),
        }
    }

    /// The account a platform case answers from, and its platform and language.
    fn speaker(&self, c: &Case) -> Option<(String, Platform, Lang)> {
        let Channel::Platform { account } = &c.channel else {
            return None;
        };
        let o = self.outlet.as_ref()?;
        let a = o.matrix.account(account)?;
        Some((account.clone(), a.platform, a.lang))
    }

    /// Reply jobs carrying `text(lang)` to `requesters` of a platform case, under `notice`.
    fn replies(
        &self,
        c: &Case,
        notice: &str,
        requesters: &[Requester],
        text: impl Fn(Lang) -> String,
    ) -> Vec<NewJob> {
        let Some((account, platform, lang)) = self.speaker(c) else {
            return Vec::new();
        };
        let action = match platform {
            Platform::Weibo => ActionKind::Comment,
            _ => ActionKind::Reply,
        };
        let priority = if c.urgent {
            Priority::Emergency
        } else {
            Priority::Routine
        };
        let body = text(lang);
        requesters
            .iter()
            .filter_map(|r| r.target.as_deref())
            .map(|t| NewJob::new(notice, &account, action, priority, &body).in_reply_to(t))
            .collect()
    }

    /// E-mails carrying `text` (Chinese, then English) to the requesters of a form or Open311
    /// case who gave an address (`contacts` by handle); platform cases are answered on the
    /// platform instead.
    fn mail_requesters(
        &self,
        c: &Case,
        what: &str,
        requesters: &[Requester],
        contacts: &BTreeMap<String, Contact>,
        text: impl Fn(Lang) -> String,
    ) -> Vec<NewJob> {
        if matches!(c.channel, Channel::Platform { .. }) {
            return Vec::new();
        }
        let body = format!("{}\n\n---\n\n{}", text(Lang::Zh), text(Lang::En));
        requesters
            .iter()
            .filter_map(|r| contacts.get(&r.handle)?.email.as_deref())
            .filter(|to| !to.trim().is_empty())
            .filter_map(|to| self.mail(c, what, to, body.clone()))
            .collect()
    }

    fn ack_text(&self, c: &Case, lang: Lang) -> String {
        let due = c.answer_due.or(c.accept_due).unwrap_or(c.created_at);
        let due = self.calendar.local_text(due);
        self.texts.ack.render(
            lang,
            &[
                ("id", &c.id),
                (
                    "department",
                    &self.department_name(c.department.as_deref(), lang),
                ),
                ("due", &due),
            ],
        )
    }

    /// The acknowledgement to `requesters`: a reply on the platform, or an e-mail to those of
    /// `contacts` who gave an address.
    fn ack_jobs(
        &self,
        c: &Case,
        requesters: &[Requester],
        contacts: &BTreeMap<String, Contact>,
    ) -> Vec<NewJob> {
        let mut jobs = self.replies(c, &format!("case:{}:ack", c.id), requesters, |lang| {
            self.ack_text(c, lang)
        });
        jobs.extend(
            self.mail_requesters(c, "ack", requesters, contacts, |lang| {
                self.ack_text(c, lang)
            }),
        );
        jobs
    }

    fn answer_text(&self, c: &Case, answer: &str, lang: Lang) -> String {
        self.texts.answer.render(
            lang,
            &[
                ("id", &c.id),
                (
                    "department",
                    &self.department_name(c.department.as_deref(), lang),
                ),
                ("answer", answer),
            ],
        )
    }

    fn answer_jobs(
        &self,
        c: &Case,
        answer: &str,
        requesters: &[Requester],
        contacts: &BTreeMap<String, Contact>,
    ) -> Vec<NewJob> {
        // The latest answer's number (0 for the first): a requester who joins later gets it too.
        let n = c
            .history
            .iter()
            .filter(|e| e.action == "answer")
            .count()
            .saturating_sub(1);
        let mut jobs = self.replies(
            c,
            &format!("case:{}:answer:{n}", c.id),
            requesters,
            |lang| self.answer_text(c, answer, lang),
        );
        jobs.extend(self.mail_requesters(
            c,
            &format!("answer:{n}"),
            requesters,
            contacts,
            |lang| self.answer_text(c, answer, lang),
        ));
        jobs
    }

    /// An e-mail job to `to` (none without a mail account).
    fn mail(&self, c: &Case, what: &str, to: &str, text: String) -> Option<NewJob> {
        if !self.outlet.as_ref()?.mail {
            return None;
        }
        // The case's version makes each e-mail its own job, and the same one on a retry.
        let notice = format!("case:{}:mail:{what}:{}", c.id, c.version);
        Some(
            NewJob::new(
                &notice,
                crate::respond::publish::email::MAIL_ACCOUNT,
                ActionKind::Mail,
                Priority::Routine,
                &text,
            )
            .in_reply_to(to),
        )
    }

    fn mail_department(
        &self,
        c: &Case,
        what: &str,
        department: &str,
        standing: &str,
    ) -> Option<NewJob> {
        let to = self.cfg.duty_addresses.get(department)?;
        let t = match what {
            "escalate" => &self.texts.mail_escalate,
            _ => &self.texts.mail_assign,
        };
        let due = self
            .calendar
            .local_text(c.answer_due.or(c.accept_due).unwrap_or(c.updated_at));
        let kind = c.kinds.first().cloned().unwrap_or_default();
        let vars = |lang| {
            t.render(
                lang,
                &[
                    ("id", &c.id),
                    ("department", &self.department_name(Some(department), lang)),
                    ("due", &due),
                    ("kind", &kind),
                    ("text", &c.text),
                    ("standing", standing),
                ],
            )
        };
        let text = format!("{}\n\n---\n\n{}", vars(Lang::Zh), vars(Lang::En));
        self.mail(c, what, to, text)
    }

    /// The department that leads the response to incident `category` (its lead function).
    fn lead_department(&self, category: &str) -> String {
        let function = self.outlet.as_ref().and_then(|o| {
            o.matrix
                .link(category)
                .and_then(|l| l.lead_function.clone())
        });
        match function.as_deref() {
            Some("police") => "public_security",
            Some("health") => "health",
            Some("water") => "water",
            Some("transport") => "transport",
            _ => "emergency_management",
        }
        .to_string()
    }

    /// An open emergency incident covering `region` (the most severe).
    fn incident_for(&self, region: &str) -> Option<(String, String)> {
        let inc = self.incidents.as_ref()?;
        let g = inc.read().unwrap_or_else(|p| p.into_inner());
        let gaz = self.router.gazetteer();
        let here = gaz.by_code(region)?;
        g.values()
            .filter(|i| i.kind == crate::incidents::IncidentKind::Emergency)
            .filter(|i| i.state == crate::incidents::IncidentState::Open)
            .filter(|i| {
                i.region
                    .as_ref()
                    .and_then(|r| gaz.by_code(&r.code))
                    .is_some_and(|a| {
                        gaz.is_ancestor_or_self(a, here) || gaz.is_ancestor_or_self(here, a)
                    })
            })
            .max_by_key(|i| i.severity)
            .map(|i| (i.id.clone(), i.category.clone()))
    }

    fn resolve_region(&self, given: Option<&str>, routed: Option<String>) -> Option<String> {
        let gaz = self.router.gazetteer();
        if let Some(g) = given.map(str::trim).filter(|g| !g.is_empty()) {
            if gaz.by_code(g).is_some() {
                return Some(g.to_string());
            }
            if let Some(i) = gaz.by_name(g).first() {
                return Some(gaz.get(*i).code.clone());
            }
        }
        routed
    }

    fn learned_department(&self, g: &HashSet<u64>) -> Option<String> {
        let l = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        l.iter()
            .map(|x| (jaccard(&x.grams, g), &x.department))
            .filter(|(s, _)| *s >= 0.6)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, d)| d.clone())
    }

    /// Take a request in: the case this source item already made, a requester joining the
    /// open case of the same problem, or a new case (accepted and transferred at once when
    /// the settings say so).
    pub fn intake(&self, i: Intake, actor: &str, now: i64) -> Result<IntakeOutcome, WorkflowError> {
        let text = i.text.trim();
        if text.is_empty() {
            return Err(invalid("text", "empty"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(invalid(
                "text",
                format!("longer than {MAX_TEXT_CHARS} characters"),
            ));
        }
        if i.handle.trim().is_empty() {
            return Err(invalid("handle", "empty: who raised it?"));
        }
        if i.source_id.trim().is_empty() {
            return Err(invalid("source_id", "empty"));
        }
        if let Some(k) = &i.kind {
            if !super::KINDS.contains(&k.as_str()) {
                return Err(invalid(
                    "kind",
                    format!("unknown request kind {k:?} ({})", super::KINDS.join(", ")),
                ));
            }
        }
        if let Some(d) = &i.department {
            if self.router.departments.get(d).is_none() {
                return Err(invalid("department", format!("unknown department {d:?}")));
            }
        }
        let (_g, _shared) = self.locked()?;
        let src_key = format!("src:{}", i.source_id);
        if let Some(id) = self.store.find(&src_key)? {
            return Ok(IntakeOutcome {
                case: self.get(&id)?,
                created: false,
                joined: false,
            });
        }
        let full = match &i.title {
            Some(t) if !t.trim().is_empty() => format!("{t}\n{text}"),
            _ => text.to_string(),
        };
        let probe = Mention {
            id: i.source_id.clone(),
            ts: i.at,
            text: full.clone(),
            author: None,
            repost_of: None,
            reply_to: None,
            region: i.region.clone(),
            lang: None,
            source: None,
            official: false,
            to: None,
            thread: None,
        };
        let routing = self.router.classify(&probe);
        let normalized = self.router.normalizer().normalize(&full);
        let g = grams(&normalized);
        let mut kinds = routing.kinds.clone();
        if let Some(k) = &i.kind {
            kinds.retain(|x| x != k);
            kinds.insert(0, k.clone());
        }
        let mut department = i
            .department
            .clone()
            .or_else(|| self.learned_department(&g))
            .or(routing.department.clone());
        let mut confidence = if i.department.is_some() {
            1.0
        } else {
            routing.confidence
        };
        let region = self.resolve_region(i.region.as_deref(), routing.region.clone());
        let mut incident = None;
        if kinds.first().is_some_and(|k| k == "help") || kinds.iter().any(|k| k == "help") {
            if let Some((id, category)) = region.as_deref().and_then(|r| self.incident_for(r)) {
                department = Some(self.lead_department(&category));
                confidence = 1.0;
                incident = Some(id);
            }
        }
        let requester = Requester {
            handle: i.handle.trim().to_string(),
            mention_id: i.source_id.clone(),
            at: i.at,
            target: i.reply_target.clone(),
        };

        // The same problem, open, recent, same place and department: join it.
        let since = now - i64::from(self.cfg.duplicate_days) * 86_400_000;
        if incident.is_none() && region.is_some() {
            let mut best: Option<(f64, Case)> = None;
            for c in self.store.all()? {
                if c.state == CaseState::Closed
                    || c.created_at < since
                    || c.region != region
                    || c.department != department
                    || c.channel != i.channel
                {
                    continue;
                }
                let s = jaccard(&g, &grams(&self.router.normalizer().normalize(&c.text)));
                if s >= self.cfg.duplicate_similarity && best.as_ref().is_none_or(|b| s > b.0) {
                    best = Some((s, c));
                }
            }
            if let Some((_, mut c)) = best {
                let from = c.history.len();
                let new = vec![requester.clone()];
                if !c.join(requester.clone()) {
                    // The same citizen again about the same problem: remember the item only.
                    self.store.put(&c, &[src_key])?;
                    return Ok(IntakeOutcome {
                        case: c,
                        created: false,
                        joined: false,
                    });
                }
                let contacts = new_contact(&requester, i.contact.as_ref());
                let jobs = match c.state {
                    CaseState::Received => Vec::new(),
                    CaseState::Answered | CaseState::Closed => {
                        let a = c.answer.clone().unwrap_or_default();
                        self.answer_jobs(&c, &a, &new, &contacts)
                    }
                    _ => self.ack_jobs(&c, &new, &contacts),
                };
                self.commit(&mut c, from, jobs, &[src_key], now)?;
                if let Some(k) = &i.contact {
                    self.store.put_contact(&c.id, &requester.handle, k)?;
                }
                return Ok(IntakeOutcome {
                    case: c,
                    created: false,
                    joined: true,
                });
            }
        }

        let day = self.calendar.day_key(i.at.max(0));
        let id = format!("{day}-{:04}", self.store.next_number(&day)?);
        let mut c = Case::receive(
            &id,
            requester.clone(),
            text,
            kinds,
            department,
            confidence,
            region,
        );
        c.title = i.title.clone().filter(|t| !t.trim().is_empty());
        c.address = i.address.clone();
        c.lat = i.lat;
        c.long = i.long;
        c.media = i.media.clone();
        c.channel = i.channel.clone();
        c.incident_id = incident.clone();
        c.urgent = incident.is_some();
        if let Some(inc) = &incident {
            c.record(i.at, SYSTEM, "link", format!("incident {inc}"));
        }
        c.accept_due = self
            .deadlines(&c)
            .map(|d| self.calendar.due(c.created_at, d.accept));
        let mut jobs = Vec::new();
        if self.cfg.auto_accept {
            c.accept(actor, now)?;
            c.answer_due = self.answer_due(&c);
            if let Some(d) = c
                .department
                .clone()
                .filter(|_| c.confidence >= self.cfg.auto_assign)
            {
                c.assign(&d, actor, now)?;
                c.answer_due = self.answer_due(&c);
                jobs.extend(self.mail_department(&c, "assign", &d, ""));
            }
            let contacts = new_contact(&requester, i.contact.as_ref());
            jobs.extend(self.ack_jobs(&c, std::slice::from_ref(&requester), &contacts));
        }
        self.commit(&mut c, 0, jobs, &[src_key], now)?;
        if let Some(k) = &i.contact {
            self.store.put_contact(&c.id, &requester.handle, k)?;
        }
        Ok(IntakeOutcome {
            case: c,
            created: true,
            joined: false,
        })
    }

    /// Load one case of an existing system's history (`huiying cases import`): kept as
    /// `import-<id>`, indexed by `src:import:<id>` so a second import of the same line changes
    /// nothing (`Ok(false)`). Its history says what the old system recorded, by `import`.
    pub fn import(&self, r: Imported) -> Result<bool, WorkflowError> {
        if r.id.trim().is_empty() {
            return Err(invalid("id", "empty"));
        }
        if r.text.trim().is_empty() {
            return Err(invalid("text", "empty"));
        }
        if let Some(d) = &r.department {
            if self.router.departments.get(d).is_none() {
                return Err(invalid("department", format!("unknown department {d:?}")));
            }
        }
        if let Some(k) = &r.kind {
            if !super::KINDS.contains(&k.as_str()) {
                return Err(invalid("kind", format!("unknown request kind {k:?}")));
            }
        }
        let (_g, _shared) = self.locked()?;
        let src = format!("src:import:{}", r.id);
        if self.store.find(&src)?.is_some() {
            return Ok(false);
        }
        let probe = Mention {
            id: r.id.clone(),
            ts: r.at,
            text: r.text.clone(),
            author: None,
            repost_of: None,
            reply_to: None,
            region: r.region.clone(),
            lang: None,
            source: None,
            official: false,
            to: None,
            thread: None,
        };
        let routing = self.router.classify(&probe);
        let mut kinds = routing.kinds.clone();
        if let Some(k) = &r.kind {
            kinds.retain(|x| x != k);
            kinds.insert(0, k.clone());
        }
        let region = self.resolve_region(r.region.as_deref(), routing.region.clone());
        let id: String = format!("import-{}", r.id)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let requester = Requester {
            handle: r.author.clone().unwrap_or_else(|| "imported".into()),
            mention_id: format!("import:{}", r.id),
            at: r.at,
            target: None,
        };
        let mut c = Case::receive(
            &id,
            requester,
            r.text.trim(),
            kinds,
            r.department.clone(),
            if r.department.is_some() {
                1.0
            } else {
                routing.confidence
            },
            region,
        );
        c.title = r.title.clone();
        c.history.clear();
        c.record(r.at, IMPORT, "receive", "imported");
        let state = r.state.unwrap_or(if r.reply.is_some() {
            CaseState::Closed
        } else {
            CaseState::Accepted
        });
        if state != CaseState::Received {
            c.record(r.at, IMPORT, "accept", "");
        }
        if let (Some(d), true) = (
            &r.department,
            !matches!(state, CaseState::Received | CaseState::Accepted),
        ) {
            c.record(r.at, IMPORT, "assign", d.clone());
        }
        if let Some(reply) = &r.reply {
            c.answer = Some(reply.clone());
            c.record(r.reply_at.unwrap_or(r.at), IMPORT, "answer", "");
        }
        if state == CaseState::Closed {
            c.record(r.reply_at.unwrap_or(r.at), IMPORT, "close", "");
        }
        c.satisfaction = r.satisfaction;
        c.state = state;
        self.store.put(&c, &[src])?;
        Ok(true)
    }

    /// Change case `id` by `f` (checked on a copy), with the version the caller read when
    /// given; `jobs` builds the outbox jobs from the changed case.
    fn change(
        &self,
        id: &str,
        version: Option<u64>,
        now: i64,
        f: impl FnOnce(&mut Case) -> Result<Vec<NewJob>, WorkflowError>,
    ) -> Result<Case, WorkflowError> {
        let (_g, _shared) = self.locked()?;
        let mut c = self.get(id)?;
        if let Some(v) = version {
            if v != c.version {
                return Err(WorkflowError::Changed {
                    id: id.to_string(),
                    current: c.version,
                    read: v,
                });
            }
        }
        let from = c.history.len();
        let jobs = f(&mut c)?;
        self.commit(&mut c, from, jobs, &[], now)?;
        Ok(c)
    }

    fn own(actor: &Actor, c: &Case) -> Result<(), WorkflowError> {
        match actor.department {
            Some(d) if c.department.as_deref() != Some(d) => Err(WorkflowError::Forbidden(
                format!("case {} is not with {d}; 该诉求不属于本部门", c.id),
            )),
            _ => Ok(()),
        }
    }

    fn operator_only(actor: &Actor, op: &str) -> Result<(), WorkflowError> {
        match actor.department {
            Some(_) => Err(WorkflowError::Forbidden(format!(
                "{op} is for the accepting office's operators; 该操作需由受理值班员执行"
            ))),
            None => Ok(()),
        }
    }

    /// 受理: acknowledge (the acknowledgement goes to every requester).
    pub fn accept(
        &self,
        id: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "accept")?;
        self.change(id, version, now, |c| {
            c.accept(actor.name, now)?;
            c.answer_due = self.answer_due(c);
            let rs = c.requesters.clone();
            let contacts = self.store.contacts(&c.id)?;
            Ok(self.ack_jobs(c, &rs, &contacts))
        })
    }

    /// 转办: transfer to `department` (the duty address gets an e-mail). A person's choice
    /// that differs from the router's teaches the router.
    pub fn assign(
        &self,
        id: &str,
        department: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "assign")?;
        if self.router.departments.get(department).is_none() {
            return Err(invalid(
                "department",
                format!("unknown department {department:?}"),
            ));
        }
        let c = self.change(id, version, now, |c| {
            let suggested = c.department.clone();
            let returned = !c.returned_by.is_empty();
            c.assign(department, actor.name, now)?;
            c.confidence = 0.0;
            // The department's own deadline for the kind, if the calendar has one.
            c.answer_due = self.answer_due(c);
            if returned || suggested.as_deref() != Some(department) {
                self.learn(&c.text, department);
            }
            Ok(self
                .mail_department(c, "assign", department, "")
                .into_iter()
                .collect())
        })?;
        Ok(c)
    }

    fn learn(&self, text: &str, department: &str) {
        let g = grams(&self.router.normalizer().normalize(text));
        if g.is_empty() {
            return;
        }
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Learned {
                grams: g,
                department: department.to_string(),
            });
        if let Some(p) = &self.feedback {
            let line = serde_json::json!({
                "id": format!("feedback-{}", crate::stable_hash(text.as_bytes())),
                "ts": 0,
                "text": text,
                "department": department,
            });
            let r = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())
                });
            if let Err(e) = r {
                tracing::warn!(path = %p.display(), error = %e, "Cannot record a routing correction.");
            }
        }
    }

    /// The department started work.
    pub fn start(
        &self,
        id: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        self.change(id, version, now, |c| {
            Self::own(actor, c)?;
            c.start(actor.name, now)?;
            Ok(Vec::new())
        })
    }

    /// 退回: not this department's; the router's next choice (never a department that returned
    /// it) is suggested, and an operator transfers it again.
    pub fn send_back(
        &self,
        id: &str,
        reason: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        self.change(id, version, now, |c| {
            Self::own(actor, c)?;
            c.send_back(actor.name, reason, now)?;
            let d = &self.router.departments;
            let normalized = self.router.normalizer().normalize(&c.text);
            let next = d
                .scores(&normalized)
                .into_iter()
                .filter(|(_, s)| *s > 0)
                .filter_map(|(i, _)| d.all().get(i as usize))
                .map(|dep| dep.id.clone())
                .find(|id| !c.returned_by.contains(id));
            c.department = next;
            Ok(Vec::new())
        })
    }

    fn check_answer(&self, c: &Case, text: &str) -> Result<(), WorkflowError> {
        if text.trim().is_empty() {
            return Err(invalid("text", "empty answer"));
        }
        if let Some((_, platform, lang)) = self.speaker(c) {
            let full = self.answer_text(c, text.trim(), lang);
            if let Err(crate::respond::templates::TemplateError::TooLong { len, limit, .. }) =
                crate::respond::templates::check_length(platform, &full)
            {
                return Err(WorkflowError::TooLong {
                    platform: platform.as_str(),
                    len,
                    limit,
                });
            }
        }
        Ok(())
    }

    fn publish_answer(
        &self,
        c: &mut Case,
        text: &str,
        by: &str,
        now: i64,
    ) -> Result<Vec<NewJob>, WorkflowError> {
        c.answer(text, by, now)?;
        c.pending_answer = None;
        if let Some(acc) = c.history.iter().rev().find(|e| e.action == "accept") {
            let kind = c
                .kinds
                .first()
                .map(String::as_str)
                .filter(|k| super::KINDS.contains(k))
                .unwrap_or("other");
            crate::metrics::cases::cases()
                .answer_seconds
                .with_label_values(&[kind])
                .observe((now - acc.at).max(0) as f64 / 1000.0);
        }
        let rs = c.requesters.clone();
        let contacts = self.store.contacts(&c.id)?;
        Ok(self.answer_jobs(c, text, &rs, &contacts))
    }

    /// 反馈: the department's answer. With `answer_approvals = 1` it waits for an operator
    /// who did not write it; otherwise it goes back to every requester now.
    pub fn answer(
        &self,
        id: &str,
        text: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        let text = text.trim().to_string();
        self.change(id, version, now, |c| {
            Self::own(actor, c)?;
            if !matches!(c.state, CaseState::Assigned | CaseState::InProgress) {
                return Err(CaseError::InvalidState {
                    id: c.id.clone(),
                    state: c.state,
                    op: "answer",
                }
                .into());
            }
            self.check_answer(c, &text)?;
            if self.cfg.answer_approvals == 0 {
                return self.publish_answer(c, &text, actor.name, now);
            }
            c.pending_answer = Some(super::model::PendingAnswer {
                text: text.clone(),
                by: actor.name.to_string(),
                at: now,
            });
            c.record(
                now,
                actor.name,
                "draft_answer",
                text.chars().take(80).collect::<String>(),
            );
            Ok(Vec::new())
        })
    }

    /// Approve the pending answer (an operator who did not write it): it goes out.
    pub fn approve_answer(
        &self,
        id: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "approve an answer")?;
        self.change(id, version, now, |c| {
            let Some(p) = c.pending_answer.clone() else {
                return Err(invalid(
                    "answer",
                    format!("case {} has no answer waiting for approval", c.id),
                ));
            };
            if p.by == actor.name {
                return Err(WorkflowError::Forbidden(
                    "the author of an answer cannot approve it (two people); 答复需由他人审核"
                        .into(),
                ));
            }
            c.record(now, actor.name, "approve_answer", "");
            self.publish_answer(c, &p.text, &p.by, now)
        })
    }

    /// Close an answered case.
    pub fn close(
        &self,
        id: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "close")?;
        self.change(id, version, now, |c| {
            c.close(actor.name, now)?;
            Ok(Vec::new())
        })
    }

    /// Reopen an answered or closed case.
    pub fn reopen(
        &self,
        id: &str,
        why: &str,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "reopen")?;
        if why.trim().is_empty() {
            return Err(invalid("reason", "a reopen needs a reason"));
        }
        self.change(id, version, now, |c| {
            c.reopen(actor.name, why.trim(), now)?;
            Ok(Vec::new())
        })
    }

    /// Retry the requests that failed (in order; those failing again stay).
    pub fn retry_pending(&self, now: i64) {
        let items: Vec<_> = {
            let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            q.drain(..).collect()
        };
        let mut again = Vec::new();
        for (m, kinds, since) in items {
            match self.on_mention_deferring(&m, &kinds, now, now - since < DEFER_MS) {
                Ok(MentionOutcome::Deferred) => again.push((m, kinds, since)),
                Ok(_) => crate::metrics::cases::cases()
                    .intake
                    .with_label_values(&["retried"])
                    .inc(),
                Err(e) => {
                    tracing::warn!(mention = %m.id, error = %e, "A request still cannot be taken in.");
                    again.push((m, kinds, since));
                }
            }
        }
        if !again.is_empty() {
            let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for f in again.into_iter().rev() {
                q.push_front(f);
            }
        }
    }

    /// Set the gauges: cases by state and primary kind, overdue ones.
    pub fn gauges(&self, now: i64) {
        let m = crate::metrics::cases::cases();
        let Ok(all) = self.store.all() else {
            return;
        };
        let mut n = std::collections::HashMap::<(&str, &str), i64>::new();
        let mut overdue = 0;
        for c in &all {
            let kind = c
                .kinds
                .first()
                .map(String::as_str)
                .filter(|k| super::KINDS.contains(k))
                .unwrap_or("other");
            *n.entry((c.state.as_str(), kind)).or_default() += 1;
            if self.overdue(c, now) {
                overdue += 1;
            }
        }
        for s in CaseState::ALL {
            for k in super::KINDS.iter().copied().chain(["other"]) {
                m.cases
                    .with_label_values(&[s.as_str(), k])
                    .set(n.get(&(s.as_str(), k)).copied().unwrap_or(0));
            }
        }
        m.overdue.set(overdue);
    }

    /// The replies of a case (acknowledgements, answers, e-mails) as the outbox has them.
    pub fn replies_of(&self, c: &Case) -> Result<Vec<serde_json::Value>, WorkflowError> {
        let Some(o) = &self.outlet else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for n in &c.outbox {
            for j in o.outbox.jobs_for_notice(n)? {
                out.push(serde_json::json!({
                    "what": n.split(':').nth(2).unwrap_or("reply"),
                    "account": j.account_id,
                    "action": j.action.as_str(),
                    "to": j.in_reply_to,
                    "state": j.state.as_str(),
                    "post_id": j.platform_post_id,
                    "error": j.last_error,
                    "at": j.updated_at,
                }));
            }
        }
        Ok(out)
    }

    /// Counts for the wall's board (民生诉求): no texts, no handles.
    pub fn summary(&self, now: i64) -> Result<serde_json::Value, WorkflowError> {
        let all = self.store.all()?;
        let today = self.calendar.day_key(now);
        let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
        // department → (open, overdue)
        let mut by_dept = std::collections::BTreeMap::<String, (usize, usize)>::new();
        let (mut open, mut overdue, mut answered_today, mut received_today) = (0, 0, 0, 0);
        let (mut satisfied, mut rated, mut urgent) = (0, 0, 0);
        for c in &all {
            if c.state.is_open() {
                open += 1;
                if let Some(k) = c.kinds.first() {
                    *by_kind.entry(k.clone()).or_default() += 1;
                }
                if c.urgent {
                    urgent += 1;
                }
            }
            let late = self.overdue(c, now);
            if late {
                overdue += 1;
            }
            if c.state.is_open() {
                let d = by_dept
                    .entry(c.department.clone().unwrap_or_default())
                    .or_default();
                d.0 += 1;
                d.1 += usize::from(late);
            }
            if self.calendar.day_key(c.created_at) == today {
                received_today += 1;
            }
            if c.history
                .iter()
                .any(|e| e.action == "answer" && self.calendar.day_key(e.at) == today)
            {
                answered_today += 1;
            }
            if let Some(s) = c.satisfaction {
                rated += 1;
                if s == Satisfaction::Satisfied {
                    satisfied += 1;
                }
            }
        }
        let mut depts: Vec<(String, (usize, usize))> = by_dept.into_iter().collect();
        depts.sort_by(|a, b| (b.1 .1, b.1 .0).cmp(&(a.1 .1, a.1 .0)).then(a.0.cmp(&b.0)));
        let departments: Vec<serde_json::Value> = depts
            .into_iter()
            .map(|(id, (open, overdue))| {
                let d = self.router.departments.get(&id);
                serde_json::json!({
                    "id": id,
                    "zh": d.map_or("待分派", |d| d.name_zh.as_str()),
                    "en": d.map_or("Unassigned", |d| d.name_en.as_str()),
                    "open": open,
                    "overdue": overdue,
                })
            })
            .collect();
        Ok(serde_json::json!({
            "open_by_department": departments,
            "open": open,
            "overdue": overdue,
            "urgent": urgent,
            "received_today": received_today,
            "answered_today": answered_today,
            "rated": rated,
            "satisfaction": if rated > 0 { Some((satisfied as f64 / rated as f64 * 1000.0).round() / 1000.0) } else { None },
            "open_by_kind": by_kind,
        }))
    }

    /// Whether `m` addresses intake account `id`: the feed says so (`to`), or the text has
    /// `@handle`.
    fn addressed(&self, m: &Mention) -> Option<String> {
        let o = self.outlet.as_ref()?;
        let takes =
            |id: &str| self.cfg.accounts.is_empty() || self.cfg.accounts.iter().any(|a| a == id);
        let text = m.text.to_lowercase();
        o.matrix
            .accounts()
            .iter()
            .filter(|a| matches!(a.platform, Platform::Mastodon | Platform::Weibo))
            .filter(|a| takes(a.id.as_str()))
            .find(|a| {
                let h = a.handle.trim_start_matches('@').to_lowercase();
                let short = h.split('@').next().unwrap_or(&h).to_string();
                let by_to = m.to.as_deref().is_some_and(|t| {
                    let t = t.trim_start_matches('@').to_lowercase();
                    t == h || t == short || t == a.id.as_str().to_lowercase()
                });
                by_to || (!short.is_empty() && text.contains(&format!("@{short}")))
            })
            .map(|a| a.id.as_str().to_string())
    }

    /// A mention from the engine (`mention.request`): a reply to one of the cases' posts is a
    /// rating or a follow-up; a request addressed to an intake account is taken in.
    pub fn on_mention(
        &self,
        m: &Mention,
        kinds: &[String],
        now: i64,
    ) -> Result<MentionOutcome, WorkflowError> {
        self.on_mention_deferring(m, kinds, now, true)
    }

    /// [`Cases::on_mention`]; with `may_defer`, a requester's reply to a post that may still
    /// be on its way out (a reply job of one of their cases is not finished) is
    /// [`MentionOutcome::Deferred`] rather than taken for a new request.
    pub fn on_mention_deferring(
        &self,
        m: &Mention,
        kinds: &[String],
        now: i64,
        may_defer: bool,
    ) -> Result<MentionOutcome, WorkflowError> {
        let author = m.author.as_ref().map(|a| a.id.clone());
        if let Some(parent) = m.reply_to.as_deref() {
            let key = format!("post:{}", native(parent));
            let mut found = self.store.find(&key)?;
            if found.is_none()
                && !self
                    .unindexed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty()
            {
                // A reply can come before the next supervision round indexed the post it answers.
                self.index_pending()?;
                found = self.store.find(&key)?;
            }
            if let Some(id) = found {
                let c = self.get(&id)?;
                let who = author.clone().unwrap_or_default();
                if c.requesters.iter().any(|r| r.handle == who) {
                    return self.follow_up(&id, m, &who, now);
                }
            } else if may_defer {
                let who = author.clone().unwrap_or_default();
                let waiting: Vec<String> = self
                    .unindexed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                for id in waiting {
                    if let Some(c) = self.store.get(&id)? {
                        if c.requesters.iter().any(|r| r.handle == who) {
                            return Ok(MentionOutcome::Deferred);
                        }
                    }
                }
            }
        }
        if kinds.is_empty() {
            return Ok(MentionOutcome::Ignored);
        }
        let Some(account) = self.addressed(m) else {
            return Ok(MentionOutcome::Ignored);
        };
        let handle = m
            .author
            .as_ref()
            .map(|a| a.id.clone())
            .unwrap_or_else(|| format!("anonymous:{}", m.id));
        let intake = Intake {
            source_id: m.id.clone(),
            at: m.ts,
            text: m.text.clone(),
            handle,
            region: m.region.clone(),
            kind: kinds.first().cloned(),
            channel: Channel::Platform { account },
            reply_target: reply_target(
                &m.id,
                m.reply_to.as_deref(),
                m.thread.as_deref(),
                m.source.as_deref(),
            ),
            ..Intake::default()
        };
        Ok(MentionOutcome::Intake(self.intake(intake, SYSTEM, now)?))
    }

    fn follow_up(
        &self,
        id: &str,
        m: &Mention,
        who: &str,
        now: i64,
    ) -> Result<MentionOutcome, WorkflowError> {
        let rating = super::model::read_satisfaction(&m.text);
        let mut rated = false;
        let c = self.change(id, None, now, |c| {
            match (c.state, rating) {
                (CaseState::Answered | CaseState::Closed, Some(s)) => {
                    c.rate(s, who, m.ts)?;
                    rated = true;
                }
                (CaseState::Closed, None) => c.reopen(who, "follow-up 追问", m.ts)?,
                _ => c.record(
                    m.ts,
                    who,
                    "follow_up",
                    m.text.chars().take(80).collect::<String>(),
                ),
            }
            Ok(Vec::new())
        })?;
        Ok(if rated {
            MentionOutcome::Rated(c)
        } else {
            MentionOutcome::FollowUp(c)
        })
    }

    /// A rating given by an operator for a requester (a phone call, a form).
    pub fn rate(
        &self,
        id: &str,
        s: Satisfaction,
        actor: &Actor,
        version: Option<u64>,
        now: i64,
    ) -> Result<Case, WorkflowError> {
        Self::operator_only(actor, "rate")?;
        self.change(id, version, now, |c| {
            c.rate(s, actor.name, now)?;
            Ok(Vec::new())
        })
    }

    /// One supervision round at `now`: index the posts of acknowledgements and answers that
    /// went out, remind before a deadline, escalate after it (once each), and close answered
    /// cases nobody rated within `rating_days`.
    pub fn supervise(&self, now: i64) -> Result<Supervision, WorkflowError> {
        let mut out = Supervision {
            posts_indexed: self.index_pending()?,
            ..Supervision::default()
        };
        let ids: Vec<String> = self.store.all()?.into_iter().map(|c| c.id).collect();
        for id in ids {
            let c = self.get(&id)?;
            if !matches!(c.state, CaseState::Closed) {
                self.supervise_one(&c, now, &mut out)?;
            }
        }
        Ok(out)
    }

    /// Index the platform posts of the replies that went out since the last call (every case's
    /// on the first call after a start), so a reply to one of them finds its case.
    fn index_pending(&self) -> Result<usize, WorkflowError> {
        let ids: Vec<String> = if self.scanned.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.unindexed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect()
        } else {
            self.store.all()?.into_iter().map(|c| c.id).collect()
        };
        let mut n = 0;
        let mut again = Vec::new();
        for id in ids {
            let Some(c) = self.store.get(&id)? else {
                continue;
            };
            let (k, finished) = self.index_posts(&c)?;
            n += k;
            if !finished {
                again.push(id);
            }
        }
        self.unindexed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(again);
        Ok(n)
    }

    /// Index the posts of case `c`'s replies that are out: (new keys, whether every reply job
    /// is finished).
    fn index_posts(&self, c: &Case) -> Result<(usize, bool), WorkflowError> {
        let Some(o) = &self.outlet else {
            return Ok((0, true));
        };
        if !matches!(c.channel, Channel::Platform { .. }) {
            return Ok((0, true));
        }
        let mut keys = Vec::new();
        let mut finished = true;
        for n in c.outbox.iter().filter(|n| !n.contains(":mail:")) {
            for j in o.outbox.jobs_for_notice(n)? {
                finished &= j.state.is_finished();
                if let Some(p) = j.platform_post_id.as_deref() {
                    let k = format!("post:{}", native(p));
                    if self.store.find(&k)?.is_none() {
                        keys.push(k);
                    }
                }
            }
        }
        if !keys.is_empty() {
            self.store.put_index(&c.id, &keys)?;
        }
        Ok((keys.len(), finished))
    }

    fn supervise_one(
        &self,
        c: &Case,
        now: i64,
        out: &mut Supervision,
    ) -> Result<(), WorkflowError> {
        if c.state == CaseState::Answered {
            let answered_at = c
                .history
                .iter()
                .rev()
                .find(|e| e.action == "answer")
                .map_or(c.updated_at, |e| e.at);
            if now - answered_at > i64::from(self.cfg.rating_days) * 86_400_000 {
                let unrated = c.satisfaction.is_none();
                self.change(&c.id, None, now, |c| {
                    if unrated {
                        c.record(
                            now,
                            SYSTEM,
                            "no_rating",
                            format!("{} days", self.cfg.rating_days),
                        );
                    }
                    c.close(SYSTEM, now)?;
                    Ok(Vec::new())
                })?;
                if unrated {
                    out.closed_unrated += 1;
                }
            }
            return Ok(());
        }
        let (stage, start, due) = match c.state {
            CaseState::Received => ("accept", c.created_at, c.accept_due),
            _ => (
                "answer",
                c.history
                    .iter()
                    .rev()
                    .find(|e| e.action == "accept")
                    .map_or(c.created_at, |e| e.at),
                c.answer_due,
            ),
        };
        let Some(due) = due else {
            return Ok(());
        };
        let standing = self.calendar.standing(start, due, now);
        let done = |action: &str| {
            c.history
                .iter()
                .any(|e| e.action == action && e.detail.starts_with(stage) && e.at >= start)
        };
        match standing {
            Standing::OnTime => {}
            Standing::DueSoon if !done("remind") => {
                let dept = c.department.clone();
                self.change(&c.id, None, now, |c| {
                    c.record(
                        now,
                        SYSTEM,
                        "remind",
                        format!("{stage} due {}", self.calendar.local_text(due)),
                    );
                    Ok(dept
                        .as_deref()
                        .and_then(|d| self.mail_department(c, "remind", d, "due soon 即将到期"))
                        .into_iter()
                        .collect())
                })?;
                out.reminded += 1;
            }
            Standing::Overdue => {
                out.overdue += 1;
                if !done("escalate") {
                    let late = format!("{stage} overdue since {}", self.calendar.local_text(due));
                    self.change(&c.id, None, now, |c| {
                        c.record(now, SYSTEM, "escalate", late.clone());
                        let to = self.cfg.supervisor.clone();
                        Ok(to
                            .as_deref()
                            .and_then(|s| self.mail_department(c, "escalate", s, &late))
                            .into_iter()
                            .collect())
                    })?;
                    out.escalated += 1;
                }
            }
            Standing::DueSoon => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weibo_comment_is_answered_under_itself() {
        // A comment on a weibo: `{status}/{comment}`.
        assert_eq!(
            reply_target("weibo:c:5001", Some("weibo:4942"), None, Some("weibo")).as_deref(),
            Some("4942/5001")
        );
        // A comment answering a comment: the weibo comes from `thread`, not from the parent
        // comment's id.
        assert_eq!(
            reply_target(
                "weibo:c:5002",
                Some("weibo:c:5001"),
                Some("weibo:4942"),
                None
            )
            .as_deref(),
            Some("4942/5002")
        );
        assert_eq!(
            reply_target("weibo:c:5002", Some("weibo:c:5001"), None, None),
            None
        );
        assert_eq!(
            reply_target("mastodon:gov.example:77", None, None, None).as_deref(),
            Some("77")
        );
    }

    #[test]
    fn similar_texts_are_similar_and_handles_do_not_count() {
        let a = grams("@问政银川 金凤区阅海万家小区停水两天了，什么时候来水");
        let b = grams("@银川发布 阅海万家小区停水两天了");
        let c = grams("兴庆区丽景街路灯不亮");
        assert!(jaccard(&a, &b) > 0.5, "{}", jaccard(&a, &b));
        assert!(jaccard(&a, &c) < 0.1);
        assert_eq!(native("mastodon:social.example:1099"), "1099");
        assert_eq!(native("4942"), "4942");
    }
}
