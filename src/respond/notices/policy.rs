//! Who must approve a notice before it goes out.

use crate::incidents::{Incident, IncidentKind};
use serde::{Deserialize, Serialize};

/// Why an automatically approved notice's incident was trusted (what the console shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedSource {
    /// A mention of a feed marked `official`.
    OfficialFeed,
    /// This many distinct platform-verified authors (at least `verified_quorum`).
    VerifiedAuthors(u64),
}

impl std::fmt::Display for TrustedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustedSource::OfficialFeed => f.write_str("official feed"),
            TrustedSource::VerifiedAuthors(n) => write!(f, "{n} verified authors"),
        }
    }
}

/// The shortest hold of an automatically approved notice, seconds.
pub const MIN_HOLD_SECS: u64 = 60;

/// The approval policy.
///
/// Defaults ([`ApprovalPolicy::default`]):
///
/// | setting | default |
/// |---|---|
/// | `draft_threshold` | 3: incidents of severity ≥ 3 get an automatic draft |
/// | `pre_approved` | none: nothing goes out without an operator |
/// | `pre_approved_max_severity` | 3: categories an office lists in `pre_approved` are approved by `policy` at draft time up to this severity |
/// | `verified_quorum` | 3: … and only when the incident has a trusted source: a mention of an official feed (`official = true` in its `[[feeds]]` section) or this many distinct verified authors |
/// | `hold_secs` | 300: an automatically approved notice is held this long (at least 60 s) before it goes out; any operator can cancel it or publish it at once |
/// | `two_operator_severity` | 4: severity ≥ 4 needs two different operators |
/// | `rumor_two_operators` | true: every rumor rebuttal needs two different operators |
///
/// Everything else needs one operator. Rumor rebuttals are never pre-approved. Nothing is
/// pre-approved as shipped: drafts come from crowd input (five throwaway accounts can make a
/// rainstorm burst), so an automatic approval would let strangers make official accounts post.
/// Where an office opts in, crowd input alone is still not enough (the trusted source), and a
/// person can still stop the notice (the hold, shown on the console and the wall).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Minimum incident severity for an automatic draft.
    pub draft_threshold: u8,
    /// Emergency categories approved automatically (up to `pre_approved_max_severity`).
    pub pre_approved: Vec<String>,
    /// The highest severity approved automatically.
    pub pre_approved_max_severity: u8,
    /// Distinct verified authors that make an incident's source trusted (an official feed's
    /// mention always does).
    pub verified_quorum: u64,
    /// How long an automatically approved notice waits before it is published, seconds.
    pub hold_secs: u64,
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
            pre_approved: Vec::new(),
            pre_approved_max_severity: 3,
            verified_quorum: 3,
            hold_secs: 300,
            two_operator_severity: 4,
            rumor_two_operators: true,
            replies: Default::default(),
        }
    }
}

impl ApprovalPolicy {
    /// Whether the incident's notice is approved at draft time (then held, see
    /// [`ApprovalPolicy::hold_ms`]): an emergency of a pre-approved category, at most
    /// `pre_approved_max_severity`, with a trusted source.
    pub fn auto_approves(&self, inc: &Incident) -> bool {
        inc.kind == IncidentKind::Emergency
            && inc.severity <= self.pre_approved_max_severity
            && self.pre_approved.contains(&inc.category)
            && self.trusted_source(inc).is_some()
    }

    /// Why the incident's source is trusted, if it is: an official feed, or a quorum of
    /// verified authors (at least 1 whatever the setting).
    pub fn trusted_source(&self, inc: &Incident) -> Option<TrustedSource> {
        if inc.official {
            Some(TrustedSource::OfficialFeed)
        } else if inc.verified_authors >= self.verified_quorum.max(1) {
            Some(TrustedSource::VerifiedAuthors(inc.verified_authors))
        } else {
            None
        }
    }

    /// The hold of an automatically approved notice, milliseconds (at least a minute).
    pub fn hold_ms(&self) -> i64 {
        i64::try_from(self.hold_secs.max(MIN_HOLD_SECS))
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
    }

    /// Distinct operators needed (0 when auto-approved).
    pub fn required_approvals(&self, inc: &Incident) -> u8 {
        if self.auto_approves(inc) {
            0
        } else if inc.severity >= self.two_operator_severity
            || (inc.kind == IncidentKind::Rumor && self.rumor_two_operators)
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
