//! Detect: the rule set (one Aho-Corasick automaton over every pattern in `rules/`), the pure
//! per-mention analysis, the gazetteer, SimHash, spike statistics, hot reload, and the
//! `file:line` diagnostics every rules-file loader shares (`diagnostics`).

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
