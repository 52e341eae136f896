//! Severity 1-5 of an open incident. It never goes down within an incident: callers keep the
//! maximum.

use super::OpenIncident;
use crate::detect::rules::RuleSet;

pub(super) fn emergency_severity(
    base: u8,
    min_authors: u32,
    o: &OpenIncident,
    rate: f64,
    baseline: f64,
    window_authors: u64,
) -> u8 {
    let mut s = i32::from(base);
    if baseline > 0.0 && rate / baseline >= 50.0 {
        s += 1;
    }
    if window_authors >= u64::from(min_authors) * 6 || o.authors.len() >= 100 {
        s += 1;
    }
    if o.boosted.len() >= 3 {
        s += 1;
    }
    if o.verified.len() >= 2 {
        s += 1;
    }
    s.clamp(1, 5) as u8
}

/// A rumor's severity reflects its spread and the harm of what it claims, not the base severity
/// of the category it names: 2, plus one for a known (officially debunked) claim, one at 10 and
/// one at 100 distinct authors, one when it claims a hazard or a public-service failure (any
/// category: people act on it — store water, buy salt, flee), one more when that category is
/// grave (base ≥ 4: earthquake, explosion, …), one when its posts carry casualty words.
pub(super) fn rumor_severity(rules: &RuleSet, o: &OpenIncident) -> u8 {
    let mut s: i32 = if o.inc.rebuttal.is_some() { 3 } else { 2 };
    let n = o.authors_base as usize + o.authors.len();
    if n >= 10 {
        s += 1;
    }
    if n >= 100 {
        s += 1;
    }
    if let Some(c) = rules.category_index(&o.inc.category) {
        s += 1;
        if rules.categories[c as usize].severity >= 4 {
            s += 1;
        }
    }
    if !o.boosted.is_empty() {
        s += 1;
    }
    s.clamp(1, 5) as u8
}
