//! Detect: the rule set (one Aho-Corasick automaton over every pattern in `rules/`), the pure
//! per-mention analysis, the gazetteer, SimHash, spike statistics and hot reload.
//!
//! - `rules/`: the [`RuleSet`] model, its settings, loading and validation.
//! - `diagnostics.rs`: the `file:line` diagnostics every rules-file loader shares (rules,
//!   matrix, templates, load-test scenarios).
//! - `analyze.rs`: the pure per-mention [`Analyzer`] (one automaton pass, regions, terms).
//! - `gazetteer.rs`: regions and the resolution of ambiguous names.
//! - `simhash.rs`: SimHash of a claim's tokens and its bands.
//! - `spike.rs`: bucketed author windows, the EWMA baseline and the Poisson tail.
//! - `reload.rs`: the shared, hot-reloaded rule set.

pub mod analyze;
pub mod diagnostics;
pub mod gazetteer;
pub mod reload;
pub mod rules;
pub mod simhash;
pub mod spike;

pub use analyze::{Analysis, Analyzer, Cues};
pub use gazetteer::{Gazetteer, Level, Region};
pub use rules::{RuleError, RuleErrors, RuleSet, Settings};
