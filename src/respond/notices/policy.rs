//! Who must approve a notice before it goes out.

use crate::incidents::IncidentKind;
use serde::{Deserialize, Serialize};

/// The approval policy.
///
/// Defaults ([`ApprovalPolicy::default`]):
///
/// | setting | default |
/// |---|---|
/// | `draft_threshold` | 3: incidents of severity ≥ 3 get an automatic draft |
/// | `pre_approved` | none: nothing goes out without an operator |
/// | `pre_approved_max_severity` | 3: categories an office lists in `pre_approved` are approved by `policy` at draft time up to this severity |
/// | `two_operator_severity` | 4: severity ≥ 4 needs two different operators |
/// | `rumor_two_operators` | true: every rumor rebuttal needs two different operators |
///
/// Everything else needs one operator. Rumor rebuttals are never pre-approved. Nothing is
/// pre-approved as shipped: drafts come from crowd input (five throwaway accounts can make a
/// rainstorm burst), so an automatic approval would let strangers make official accounts post.
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
            pre_approved: Vec::new(),
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
