//! Rules: the immutable, validated [`RuleSet`] loaded from `rules/` (categories, known claims,
//! request kinds, the gazetteer and the scanner of every normalised pattern: a prefix filter in
//! front of a leftmost-longest Aho-Corasick automaton, a contiguous NFA, run anchored). Shared
//! behind an `ArcSwap` and swapped whole on reload.
//!
//! - `mod.rs`: the rule set model and what analysis reads from it.
//! - `settings.rs`: the global settings (`detection.toml` windows, emergency, rumor).
//! - `load.rs`: reading and validating the files, building the scanner; errors name
//!   `file:line`.
//! - `scan.rs`: the patterns' leftmost-longest matches in a text (the filter, the automaton).
//! - `edit.rs`: changes the service writes into the files (an emerging incident promoted to
//!   a category's keywords or a known claim), checked on a copy before the file is replaced.

pub mod edit;
mod load;
mod scan;
mod settings;

pub use load::{LoadOptions, RuleError, RuleErrors, CATEGORY_IDS, RULE_FILES};
pub use settings::{EmergencySettings, EmergingSettings, RumorSettings, Settings, WindowSettings};

use super::gazetteer::Gazetteer;
use ahash::AHashSet;
use std::path::PathBuf;
use std::sync::Arc;

/// An emergency category.
#[derive(Debug, Clone)]
pub struct Category {
    /// Public id (see [`CATEGORY_IDS`]).
    pub id: Arc<str>,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Base severity 1–5.
    pub severity: u8,
    /// Distinct authors needed to open.
    pub min_authors: u32,
    /// Baseline floor per key, authors per hour.
    pub prior_per_hour: f64,
    /// The group of related categories it belongs to (`group` in `categories.toml`; its own
    /// id when it has none). Categories of one group firing on one place are one incident.
    pub group: Arc<str>,
}

/// A known, officially debunked claim.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Claim {
    /// Stable id.
    pub id: Arc<str>,
    /// Category id or "other".
    pub category: Arc<str>,
    /// Official rebuttal, Chinese.
    pub rebuttal_zh: String,
    /// Official rebuttal, English.
    pub rebuttal_en: String,
    /// Link to the official debunk.
    pub link: String,
    /// Who debunked it.
    pub source: Option<String>,
    #[serde(skip)]
    pub(crate) required: usize,
}

/// A citizen-request kind (help, complaint, report, inquiry).
#[derive(Debug, Clone)]
pub struct RequestKind {
    /// Stable id.
    pub id: Arc<str>,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

/// Rumor cue kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CueKind {
    /// Someone asks whether it is true.
    Enquiry,
    /// Someone says it is false.
    Correction,
    /// Someone spreads it.
    Spreading,
}

/// What one automaton pattern stands for (a pattern may stand for several rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternRef {
    Keyword(u16),
    Exclude(u16),
    Booster(Option<u16>),
    Cue(CueKind),
    Claim(u16),
    ClaimRequire(u16, u8),
    Region(u32),
    /// A region name that is also an everyday word (东区, 矿区): it needs a co-mentioned parent.
    WeakRegion(u32),
    Request(u8),
}

/// One normalised automaton pattern and every rule it stands for.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) text: String,
    pub(crate) refs: Vec<PatternRef>,
    /// The pattern starts / ends with an ASCII letter or digit, so a word boundary is required.
    pub(crate) word_start: bool,
    pub(crate) word_end: bool,
    /// A Chinese short form of a region (海淀, 天全) that is no region's full name: it counts
    /// only where it stands as a word (see [`Gazetteer::stands_as_word`]).
    pub(crate) short_region: bool,
}

/// Immutable, validated rules with their compiled automaton. Shared behind an `ArcSwap`.
#[derive(Debug)]
pub struct RuleSet {
    /// Global settings.
    pub settings: Settings,
    /// Emergency categories, in file order.
    pub categories: Vec<Category>,
    /// Known debunked claims.
    pub claims: Vec<Claim>,
    /// Citizen-request kinds.
    pub requests: Vec<RequestKind>,
    /// Chinese regions.
    pub gazetteer: Gazetteer,
    pub(crate) scanner: scan::Scanner,
    pub(crate) patterns: Vec<Pattern>,
    /// Normalised texts of rumor cues (kept out of similarity tokens).
    pub(crate) cue_words: AHashSet<String>,
    /// The trained rumor scorer (`models/rumor.bin`), when present.
    pub rumor_model: Option<Arc<super::rumor_model::RumorModel>>,
    /// Where the rules were loaded from.
    pub dir: PathBuf,
}

impl RuleSet {
    /// Number of patterns in the automaton.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Index of a category by id.
    pub fn category_index(&self, id: &str) -> Option<u16> {
        self.categories
            .iter()
            .position(|c| &*c.id == id)
            .map(|i| i as u16)
    }

    /// The text of pattern `i`.
    pub fn pattern_text(&self, i: u32) -> &str {
        &self.patterns[i as usize].text
    }

    /// What `huiying rules test` prints for one analysed mention.
    pub fn describe(&self, id: &str, a: &super::Analysis) -> serde_json::Value {
        let mut excluded = Vec::new();
        let mut cues = Vec::new();
        for &p in &a.matched {
            let pat = &self.patterns[p as usize];
            if pat.refs.iter().any(|r| matches!(r, PatternRef::Exclude(_)))
                && !excluded.contains(&pat.text)
            {
                excluded.push(pat.text.clone());
            }
            if pat.refs.iter().any(|r| matches!(r, PatternRef::Cue(_))) && !cues.contains(&pat.text)
            {
                cues.push(pat.text.clone());
            }
        }
        serde_json::json!({
            "id": id,
            "categories": a.categories.iter().map(|c| &*self.categories[*c as usize].id).collect::<Vec<_>>(),
            "excluded": excluded,
            "rumor_cues": cues,
            "known_claims": a.claims.iter().map(|c| &*self.claims[*c as usize].id).collect::<Vec<_>>(),
            "regions": a.regions.iter().map(|r| self.gazetteer.region_ref(*r)).collect::<Vec<_>>(),
            "request": a.requests.iter().map(|r| &*self.requests[*r as usize].id).collect::<Vec<_>>(),
        })
    }
}
