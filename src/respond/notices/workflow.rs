//! The workflow: drafting, editing, approval, rejection, the hand-over to the outbox and the
//! refresh of a publishing notice from its jobs.

use super::store::NoticeStore;
use super::*;
use crate::detect::gazetteer::RegionRef;
use crate::detect::RuleSet;
use crate::incidents::{Incident, IncidentKind, IncidentState};
use crate::respond::audit::{AuditAction, AuditLog};
use crate::respond::matrix::Matrix;
use crate::respond::outbox::{ActionKind, NewJob, OutboxStore, Priority};
use crate::respond::templates::{check_length, Purpose, Templates};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Holds the right to change notices: the local mutex and, on Redis, the cluster-wide lock.
struct WriteGuard<'a> {
    _local: MutexGuard<'a, ()>,
    _shared: Option<crate::respond::redis::RedisLock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The notice workflow (see the module docs). Mutations are serialised.
pub struct Notices {
    store: NoticeStore,
    outbox: Arc<dyn OutboxStore>,
    audit: Arc<Mutex<AuditLog>>,
    policy: ApprovalPolicy,
    write: Mutex<()>,
    /// Told of each notice that began publishing ([`Notices::on_published`]).
    published: Mutex<Vec<PublishedListener>>,
}

/// A callback told of a notice that began publishing (see [`Notices::on_published`]).
pub type PublishedListener = Arc<dyn Fn(&Notice) + Send + Sync>;

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
            published: Mutex::new(Vec::new()),
        }
    }

    /// Call `f` with each notice that begins publishing (its jobs just went to the outbox), on
    /// this instance, after it is stored. `f` runs under the workflow's write lock: it must be
    /// quick (hand the notice on; a downstream stage's push, say) and must not call back.
    /// A process killed between the store and `f` does not call it: a listener that must see
    /// every notice also looks at the stored ones after a start.
    pub fn on_published(&self, f: PublishedListener) {
        lock(&self.published).push(f);
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
        self.create(
            id,
            incident,
            None,
            (Purpose::Notice, None),
            rules,
            matrix,
            templates,
            now_ms,
            actor,
        )
    }

    /// Keep an incident's notices in step with it (see the module docs): when its severity
    /// rose or its region grew past what its latest notice says, flag that notice stale and
    /// draft an update (or redraft an unapproved automatic draft); when it closed after a notice
    /// went out, draft the all-clear. Returns the notice drafted, if any. Idempotent: the same
    /// incident state drafts nothing more.
    pub fn follow_incident(
        &self,
        incident: &Incident,
        rules: &RuleSet,
        matrix: &Matrix,
        templates: &Templates,
        now_ms: i64,
    ) -> Result<Option<Notice>, NoticeError> {
        // Most incidents never had a notice: one lookup of the first notice's id (derived from
        // the incident's) answers, without reading every notice (a merge still looks: a hand-
        // drafted notice may name the incident).
        if incident.merged_into.is_none()
            && self
                .store
                .get(&notice_id_for_incident(&incident.id))?
                .is_none()
        {
            return Ok(None);
        }
        let _g = self.exclusive()?;
        let mut chain: Vec<Notice> = self
            .store
            .all()?
            .into_iter()
            .filter(|n| n.incident_id == incident.id)
            .collect();
        chain.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        // The notice that speaks for the incident now: the newest one not rejected and not
        // already followed by another.
        let Some(current) = chain
            .iter()
            .rev()
            .find(|n| n.state != NoticeState::Rejected && n.superseded_by.is_none())
            .cloned()
        else {
            return Ok(None);
        };
        let out = |n: &Notice| {
            matches!(
                n.state,
                NoticeState::Approved | NoticeState::Publishing | NoticeState::Done
            )
        };
        let published = out(&current);
        let anything_out = chain.iter().any(out);
        let g = &rules.gazetteer;
        if let Some(into) = incident.merged_into.as_deref() {
            // Merged away: the incident it joined speaks for it. What is not out is withdrawn,
            // what is out is flagged.
            let reason = format!("merged into {into} 已并入其他事件");
            self.withdraw_all(chain, &reason, now_ms)?;
            return Ok(None);
        }
        let (purpose, reason) = if incident.state == IncidentState::Closed {
            if current.purpose == Purpose::AllClear || current.stale.is_some() {
                return Ok(None);
            }
            if !anything_out {
                // Nothing went out: nothing to call off. The draft is flagged, not withdrawn
                // (an operator may still want it out).
                self.mark_stale(current, "incident closed 事件已结束", None, now_ms)?;
                return Ok(None);
            }
            (Purpose::AllClear, "incident closed 事件已结束".to_string())
        } else if incident.severity > current.severity {
            (
                Purpose::Update,
                format!(
                    "severity {} → {} 级别升高",
                    current.severity, incident.severity
                ),
            )
        } else if region_grew(current.region.as_ref(), incident.region.as_ref(), g) {
            (
                Purpose::Update,
                format!(
                    "region {} → {} 范围扩大",
                    current.region.as_ref().map_or("-", |r| r.name.as_str()),
                    incident.region.as_ref().map_or("-", |r| r.name.as_str())
                ),
            )
        } else {
            return Ok(None);
        };
        let grew = region_grew(current.region.as_ref(), incident.region.as_ref(), g);
        // Not out yet and only more severe: the same notice carries the new severity (its text
        // does not name it), so the link an operator holds and the approvals given stay; it may
        // need one more operator now, and a held notice the policy would no longer pre-approve
        // goes back to the operators instead of going out when its hold ends.
        if !published
            && !grew
            && purpose == Purpose::Update
            && matches!(current.state, NoticeState::Draft | NoticeState::Held)
        {
            return self
                .raise_in_place(current, incident, &reason, now_ms)
                .map(Some);
        }
        // An unpublished notice is replaced by one of its own purpose; a published one is
        // followed by an update or the all-clear.
        let purpose = if published || purpose == Purpose::AllClear {
            purpose
        } else {
            current.purpose
        };
        if !templates.has_followup(incident.kind, purpose) {
            self.mark_stale(current, &reason, None, now_ms)?;
            return Ok(None);
        }
        let id = followup_notice_id(&incident.id, chain.len());
        if let Some(n) = self.store.get(&id)? {
            return Ok(Some(n));
        }
        if purpose != Purpose::AllClear && !self.policy.drafts(incident.severity) {
            return Ok(None);
        }
        let automatic = current.created_by == SYSTEM && current.editors.is_empty();
        let fresh = self.create(
            id,
            incident,
            None,
            (purpose, Some(current.id.clone())),
            rules,
            matrix,
            templates,
            now_ms,
            SYSTEM,
        )?;
        if !published && automatic && current.state == NoticeState::Draft {
            let why = format!("superseded by {}: {reason} 已由新稿替代", fresh.id);
            self.withdraw_locked(current, &why, Some(&fresh.id), now_ms)?;
        } else {
            self.mark_stale(current, &reason, Some(&fresh.id), now_ms)?;
        }
        // `create` stored the fresh notice before the old one was flagged: read it back so
        // the caller sees what is stored.
        Ok(Some(self.load(&fresh.id)?))
    }

    /// The incident of an unpublished notice became more severe: record it on the notice (see
    /// [`Notices::follow_incident`]).
    fn raise_in_place(
        &self,
        mut n: Notice,
        incident: &Incident,
        reason: &str,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        let required = self
            .policy
            .required_approvals(incident)
            .max(n.required_approvals);
        let back = n.state == NoticeState::Held && required > 0;
        let audit = json!({"reason": reason, "severity": incident.severity,
                           "required_approvals": required, "hold_cancelled": back});
        n.severity = incident.severity;
        n.required_approvals = required;
        if back {
            n.state = NoticeState::Draft;
            n.hold_until = None;
            n.trusted_source = None;
            n.approvals.retain(|a| a.actor != POLICY);
        }
        let detail = if back {
            format!("{reason}; no longer pre-approved: {required} approval(s) needed")
        } else {
            format!("{reason}; {required} approval(s) needed")
        };
        self.noted_by_system(n, "follow", audit, detail, now_ms)
    }

    /// Withdraw an incident's notices because the incident is gone (merged into `into`): every
    /// draft or held notice is rejected by `system` with `reason`; a published one is flagged
    /// stale. Returns the notices changed.
    pub fn withdraw(
        &self,
        incident_id: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<Notice>, NoticeError> {
        let _g = self.exclusive()?;
        let chain: Vec<Notice> = self
            .store
            .all()?
            .into_iter()
            .filter(|n| n.incident_id == incident_id)
            .collect();
        self.withdraw_all(chain, reason, now_ms)
    }

    /// Withdraw what is not out, flag what is (the write lock is held).
    fn withdraw_all(
        &self,
        chain: Vec<Notice>,
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<Notice>, NoticeError> {
        let mut changed = Vec::new();
        for n in chain {
            match n.state {
                NoticeState::Draft | NoticeState::Held => {
                    changed.push(self.withdraw_locked(n, reason, None, now_ms)?);
                }
                NoticeState::Rejected => {}
                _ if n.stale.is_none() => changed.push(self.mark_stale(n, reason, None, now_ms)?),
                _ => {}
            }
        }
        Ok(changed)
    }

    fn withdraw_locked(
        &self,
        mut n: Notice,
        reason: &str,
        by: Option<&str>,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        n.superseded_by = by.map(str::to_string);
        let audit = json!({"reason": reason, "withdrawn": true, "superseded_by": by});
        self.refuse(n, SYSTEM, "withdraw", reason, audit, now_ms)
    }

    fn mark_stale(
        &self,
        mut n: Notice,
        reason: &str,
        by: Option<&str>,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        n.stale = Some(reason.to_string());
        n.superseded_by = by.map(str::to_string);
        let detail = match by {
            Some(b) => format!("{reason}; followed by {b}"),
            None => reason.to_string(),
        };
        let audit = json!({"reason": reason, "superseded_by": by});
        self.noted_by_system(n, "stale", audit, detail, now_ms)
    }

    /// A change `system` made to `n` (already applied to it): audited as `action` first, then
    /// recorded in its history and stored.
    fn noted_by_system(
        &self,
        mut n: Notice,
        action: &str,
        audit: serde_json::Value,
        detail: String,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        self.audit(
            now_ms,
            SYSTEM,
            AuditAction::Other(action.into()),
            &n.id,
            audit,
        )?;
        n.record(now_ms, SYSTEM, action, detail);
        self.store.put(&n)?;
        Ok(n)
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
            region,
            severity: draft.severity,
            ..Incident::new(
                draft
                    .incident_id
                    .clone()
                    .unwrap_or_else(|| format!("manual-{seq}")),
                draft.kind,
                draft.category.clone(),
                now_ms,
            )
        };
        self.create(
            id,
            &incident,
            draft.text.as_deref(),
            (Purpose::Notice, None),
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
        (purpose, follows): (Purpose, Option<String>),
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
        let cross_platform: Vec<&crate::respond::matrix::AccountId> = plan
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
                    .render_purpose(incident, purpose, acc.lang, acc.platform, None, now_ms)
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
        let strs =
            |v: &[crate::respond::matrix::AccountId]| v.iter().map(|a| a.to_string()).collect();
        let required = self.policy.required_approvals(incident);
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
            version: 0,
            editors: Vec::new(),
            created_at: now_ms,
            updated_at: now_ms,
            hold_until: None,
            trusted_source: None,
            rejection: None,
            jobs: Vec::new(),
            history: Vec::new(),
            purpose,
            follows,
            stale: None,
            superseded_by: None,
        };
        self.audit(
            now_ms,
            actor,
            AuditAction::Draft,
            &n.id,
            json!({
                "incident": n.incident_id,
                "purpose": n.purpose.as_str(),
                "follows": n.follows,
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
                "{}{} {} severity {} ({} approval(s) needed)",
                match n.purpose {
                    Purpose::Notice => "",
                    Purpose::Update => "update: ",
                    Purpose::AllClear => "all-clear: ",
                },
                n.kind.as_str(),
                n.category,
                n.severity,
                required
            ),
        );
        self.store.put(&n)?;
        if required == 0 {
            // A pre-approved category with a trusted source: held, not sent. Any operator can
            // still stop it; `release_held` sends it when the hold ends.
            let source = self.policy.trusted_source(incident);
            let shown = source.map(|s| s.to_string()).unwrap_or_default();
            let until = now_ms.saturating_add(self.policy.hold_ms());
            self.audit(
                now_ms,
                POLICY,
                AuditAction::Approve,
                &n.id,
                json!({"auto": true, "category": n.category, "severity": n.severity,
                       "source": shown, "hold_until": until}),
            )?;
            n.approvals.push(Approval {
                actor: POLICY.into(),
                at: now_ms,
            });
            n.record(
                now_ms,
                POLICY,
                "hold",
                format!("pre-approved category, {shown}: published at {until} unless cancelled"),
            );
            n.state = NoticeState::Held;
            n.hold_until = Some(until);
            n.trusted_source = source;
            self.store.put(&n)?;
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
        n.version += 1;
        if !n.editors.iter().any(|e| e == actor) {
            n.editors.push(actor.to_string());
        }
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

    /// Approve version `version` of a draft (the one `actor` read) as `actor`. Refused for
    /// the drafter and every editor ([`NoticeError::SelfApproval`]), for a version the notice
    /// no longer has ([`NoticeError::Changed`]) and for the reserved actors `system` and
    /// `policy`; a second approval by the same operator changes nothing (it is audited). Once
    /// enough distinct operators approved, the notice is enqueued and returned in state
    /// `publishing`.
    pub fn approve(
        &self,
        id: &str,
        version: u32,
        actor: &str,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        check_actor(actor)?;
        if actor == SYSTEM || actor == POLICY {
            return Err(NoticeError::Invalid(format!(
                "{actor:?} is reserved and cannot approve"
            )));
        }
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state == NoticeState::Held {
            return self.release(n, actor, now_ms);
        }
        if n.state != NoticeState::Draft {
            return Err(NoticeError::InvalidState {
                id: n.id,
                state: n.state,
                op: "approve",
            });
        }
        if n.created_by == actor || n.editors.iter().any(|e| e == actor) {
            return Err(NoticeError::SelfApproval {
                id: n.id,
                actor: actor.to_string(),
            });
        }
        if n.version != version {
            return Err(NoticeError::Changed {
                id: n.id,
                current: n.version,
                seen: version,
            });
        }
        // The same person again changes nothing and is refused, not logged as an action.
        if n.approvals.iter().any(|a| a.actor == actor) {
            return Err(NoticeError::AlreadyApproved {
                id: n.id,
                actor: actor.to_string(),
            });
        }
        let count = n.approvals.len() + 1;
        let required = usize::from(n.required_approvals);
        self.audit(
            now_ms,
            actor,
            AuditAction::Approve,
            &n.id,
            json!({"approvals": count, "required": required}),
        )?;
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
        let n = self.load(id)?;
        if !matches!(n.state, NoticeState::Draft | NoticeState::Held) {
            return Err(NoticeError::InvalidState {
                id: n.id,
                state: n.state,
                op: "reject",
            });
        }
        // A rejected draft says why; cancelling a held notice (approved by policy, not yet
        // out) may go without a reason.
        let reason = match reason.trim() {
            "" if n.state == NoticeState::Held => "cancelled 取消发布",
            "" => {
                return Err(NoticeError::Invalid(
                    "reason: required to reject a draft (驳回须说明理由)".into(),
                ))
            }
            r => r,
        };
        let audit = json!({"reason": reason});
        self.refuse(n, actor, "reject", reason, audit, now_ms)
    }

    /// Reject `n` as `actor` (a history entry `action`, the audit record `audit` first).
    fn refuse(
        &self,
        mut n: Notice,
        actor: &str,
        action: &str,
        reason: &str,
        audit: serde_json::Value,
        now_ms: i64,
    ) -> Result<Notice, NoticeError> {
        self.audit(now_ms, actor, AuditAction::Reject, &n.id, audit)?;
        n.state = NoticeState::Rejected;
        n.hold_until = None;
        n.rejection = Some(reason.to_string());
        n.record(now_ms, actor, action, reason);
        self.store.put(&n)?;
        Ok(n)
    }

    /// Send the held notices whose hold has ended (approved by `policy`, enqueued). Called
    /// periodically by the respond stage; the notices it enqueued are returned.
    pub fn release_held(&self, now_ms: i64) -> Result<Vec<Notice>, NoticeError> {
        let due: Vec<String> = self
            .list(&NoticeFilter {
                state: Some(NoticeState::Held),
                ..Default::default()
            })?
            .into_iter()
            .filter(|n| n.hold_until.is_none_or(|t| t <= now_ms))
            .map(|n| n.id)
            .collect();
        let mut out = Vec::new();
        for id in due {
            let _g = self.exclusive()?;
            let n = self.load(&id)?;
            // Cancelled, or sent by an operator, since the list was read.
            if n.state != NoticeState::Held || n.hold_until.is_some_and(|t| t > now_ms) {
                continue;
            }
            out.push(self.release(n, POLICY, now_ms)?);
        }
        Ok(out)
    }

    /// A held notice goes out: at the end of its hold (`policy`) or at once (an operator).
    fn release(&self, mut n: Notice, actor: &str, now_ms: i64) -> Result<Notice, NoticeError> {
        let early = actor != POLICY;
        self.audit(
            now_ms,
            actor,
            AuditAction::Approve,
            &n.id,
            json!({"release": true, "early": early, "hold_until": n.hold_until}),
        )?;
        if early {
            n.approvals.push(Approval {
                actor: actor.to_string(),
                at: now_ms,
            });
        }
        let detail = if early {
            "published before the end of the hold"
        } else {
            "hold ended"
        };
        n.record(now_ms, actor, "release", detail);
        n.state = NoticeState::Approved;
        n.hold_until = None;
        self.store.put(&n)?;
        self.enqueue(n, now_ms)
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
            IncidentKind::Emergency | IncidentKind::Emerging => Priority::Emergency,
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
            let began = n.state != NoticeState::Publishing;
            n.state = NoticeState::Publishing;
            n.record(
                now_ms,
                SYSTEM,
                "enqueue",
                format!("{} job(s), {created} new", n.jobs.len()),
            );
            self.store.put(&n)?;
            if began {
                let listeners = lock(&self.published).clone();
                for f in listeners {
                    f(&n);
                }
            }
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
        // A read takes no write lock (local or cluster-wide): only a notice that is about to
        // change does, and it is read again under the lock.
        let n = self.load(id)?;
        if n.state != NoticeState::Publishing || !self.all_finished(&n.id)? {
            return Ok(n);
        }
        let _g = self.exclusive()?;
        let mut n = self.load(id)?;
        if n.state != NoticeState::Publishing {
            return Ok(n);
        }
        if self.all_finished(&n.id)? {
            n.state = NoticeState::Done;
            n.record(
                now_ms,
                SYSTEM,
                "done",
                format!(
                    "{} job(s) finished",
                    self.outbox.jobs_for_notice(&n.id)?.len()
                ),
            );
            self.store.put(&n)?;
        }
        Ok(n)
    }

    /// Whether notice `id` has jobs and all of them finished.
    fn all_finished(&self, id: &str) -> Result<bool, NoticeError> {
        let jobs = self.outbox.jobs_for_notice(id)?;
        Ok(!jobs.is_empty() && jobs.iter().all(|j| j.state.is_finished()))
    }
}

/// Whether the incident's region now reaches beyond the notice's: a different region the
/// notice's does not contain (a notice without a region speaks for everywhere).
fn region_grew(
    notice: Option<&RegionRef>,
    incident: Option<&RegionRef>,
    g: &crate::detect::gazetteer::Gazetteer,
) -> bool {
    let (Some(n), Some(i)) = (notice, incident) else {
        return false;
    };
    if n.code == i.code {
        return false;
    }
    match (g.by_code(&n.code), g.by_code(&i.code)) {
        (Some(ni), Some(ii)) => !g.is_ancestor_or_self(ni, ii),
        _ => true,
    }
}
