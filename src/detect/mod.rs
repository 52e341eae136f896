//! Detect: the rule set (one Aho-Corasick automaton over every pattern in `rules/`, run where a
//! prefix filter says a pattern may start), the pure per-mention analysis, the gazetteer,
//! near-duplicate sketches, spike statistics and hot reload.
//!
//! - `rules/`: the [`RuleSet`] model, its settings, loading and validation.
//! - `diagnostics.rs`: the `file:line` diagnostics every rules-file loader shares (rules,
//!   matrix, templates, load-test scenarios).
//! - `analyze.rs`: the pure per-mention [`Analyzer`] (one automaton pass, regions, terms).
//! - `gazetteer.rs`: regions and the resolution of ambiguous names.
//! - `emerging.rs`: the terms of every mention and the count-min sketch of their counts
//!   (emerging incidents: bursts no rule names).
//! - `sketch.rs`: MinHash sketches of a post's character bigrams (near-duplicate copies of a claim).
//! - `spike.rs`: bucketed author windows, the EWMA baseline and the Poisson tail.
//! - `rumor_model/`: the trained rumor scorer (features, model file, training).
//! - `reload.rs`: the shared, hot-reloaded rule set.

pub mod analyze;
pub mod diagnostics;
pub mod emerging;
pub mod gazetteer;
pub mod reload;
pub mod rules;
pub mod rumor_model;
pub mod sketch;
pub mod spike;

pub use analyze::{Analysis, Analyzer, Cues};
pub use gazetteer::{Gazetteer, Level, Region};
pub use rules::{RuleError, RuleErrors, RuleSet, Settings};
