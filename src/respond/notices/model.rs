//! The notice model: its states, texts, plan, approvals and history, the edit and manual-draft
//! inputs, list filters, and the id of an incident's notice.

use crate::detect::gazetteer::RegionRef;
use crate::incidents::IncidentKind;
use crate::respond::matrix::Platform;
use crate::respond::templates::{Lang, Purpose};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

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
    /// Approved by the policy (a pre-approved category with a trusted source) and waiting out
    /// its hold (`hold_until`): any operator can cancel it (reject) or publish it at once
    /// (approve); when the hold ends it is approved and enqueued.
    Held,
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
            NoticeState::Held => "held",
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
    /// The version of its texts: 0 as drafted, one more per edit. An approval names the
    /// version it approves (what the approver read); a changed notice refuses it.
    #[serde(default)]
    pub version: u32,
    /// Everyone who edited its texts: none of them may approve (the two-person rule is about
    /// the words published, not only who drafted them).
    #[serde(default)]
    pub editors: Vec<String>,
    /// Drafted at (ms).
    pub created_at: i64,
    /// Last change (ms).
    pub updated_at: i64,
    /// Held notices: when the hold ends (unix ms) and it is published unless cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<i64>,
    /// Automatically approved notices: why their incident was trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_source: Option<super::TrustedSource>,
    /// Why it was rejected.
    pub rejection: Option<String>,
    /// Outbox job ids, once enqueued (lead first).
    pub jobs: Vec<String>,
    /// Everything that happened to it.
    pub history: Vec<HistoryEntry>,
    /// What it is for: the incident's first notice, an update, or the all-clear.
    #[serde(default)]
    pub purpose: Purpose,
    /// The notice of the same incident it follows or replaces (updates, all-clears, redrafts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// Why it no longer matches its incident ("severity 4 → 5", "incident closed"), once it
    /// does not: the console and the wall flag it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// The notice drafted to follow or replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
}

impl Notice {
    /// One step of its history: `actor` did `action` at `at` (also its last change).
    pub(super) fn record(&mut self, at: i64, actor: &str, action: &str, detail: impl Into<String>) {
        self.updated_at = at;
        self.history.push(HistoryEntry {
            at,
            actor: actor.to_string(),
            action: action.to_string(),
            detail: detail.into(),
        });
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
    pub(super) fn matches(&self, n: &Notice) -> bool {
        self.state.is_none_or(|s| s == n.state)
            && self
                .incident_id
                .as_ref()
                .is_none_or(|i| *i == n.incident_id)
            && self.kind.is_none_or(|k| k == n.kind)
    }
}

/// The id of the notice drafted from incident `incident_id`.
pub fn notice_id_for_incident(incident_id: &str) -> String {
    let d = Sha256::digest([b"huiying/notice\0".as_slice(), incident_id.as_bytes()].concat());
    format!("n-{}", hex::encode(&d[..8]))
}

/// The id of the `n`-th notice (n ≥ 1) that follows an incident's first: deterministic, so
/// instances sharing Redis that see the same change draft the same notice once.
pub fn followup_notice_id(incident_id: &str, n: usize) -> String {
    let d = Sha256::digest(format!("huiying/notice-followup\0{incident_id}\0{n}"));
    format!("n-{}", hex::encode(&d[..8]))
}
