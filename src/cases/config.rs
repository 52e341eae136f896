//! `[cases]`: the citizen-request stage's settings.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[cases]` section of `huiying.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CasesConfig {
    /// Run the stage (it also needs `rules/routing/` and `rules/cases/`).
    pub enabled: bool,
    /// Where `cases.redb` lives (relative to the config file; ignored with a Redis store).
    /// Unset: the respond stage's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Matrix accounts that take requests (an @ of them, a reply or comment to them, a message);
    /// empty: every Mastodon and Weibo account of the matrix.
    pub accounts: Vec<String>,
    /// Accept (受理) every new case at once, sending the acknowledgement.
    pub auto_accept: bool,
    /// Transfer (转办) without a person when the router is at least this confident (1.01: never).
    pub auto_assign: f64,
    /// Requests about the same problem within this many days join one case.
    pub duplicate_days: u32,
    /// How alike two requests' texts must be to be the same problem (character-bigram Jaccard).
    pub duplicate_similarity: f64,
    /// Approvals an answer needs before it goes out (0 or 1; the approver is not its author).
    pub answer_approvals: u8,
    /// An answered case without a rating closes after this many days, as not rated.
    pub rating_days: u32,
    /// The supervising department (督办): escalations go to its duty address.
    pub supervisor: Option<String>,
    /// Departments' duty e-mail addresses (department id → address).
    pub duty_addresses: std::collections::BTreeMap<String, String>,
    /// Seconds between supervision rounds (reminders, escalations, unrated closes, post ids).
    pub supervise_secs: u64,
    /// Department users (`department` role): department id → user and token names. A
    /// department user not listed here sees no case.
    pub members: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for CasesConfig {
    fn default() -> Self {
        CasesConfig {
            enabled: true,
            data_dir: None,
            accounts: Vec::new(),
            auto_accept: true,
            auto_assign: 0.6,
            duplicate_days: 3,
            duplicate_similarity: 0.3,
            answer_approvals: 1,
            rating_days: 7,
            supervisor: None,
            duty_addresses: Default::default(),
            supervise_secs: 30,
            members: Default::default(),
        }
    }
}

impl CasesConfig {
    /// Problems with the values, each naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.01).contains(&self.auto_assign) {
            return Err("cases.auto_assign must be between 0 and 1.01".into());
        }
        if !(0.0..=1.0).contains(&self.duplicate_similarity) {
            return Err("cases.duplicate_similarity must be between 0 and 1".into());
        }
        if self.answer_approvals > 1 {
            return Err("cases.answer_approvals must be 0 or 1".into());
        }
        if self.supervise_secs == 0 {
            return Err("cases.supervise_secs must be at least 1".into());
        }
        if let Some((d, a)) = self
            .duty_addresses
            .iter()
            .find(|(_, a)| !a.contains('@') || a.contains(char::is_whitespace))
        {
            return Err(format!(
                "cases.duty_addresses.{d}: {a:?} is not an e-mail address"
            ));
        }
        Ok(())
    }
}
