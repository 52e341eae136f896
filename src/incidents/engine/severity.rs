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

pub(super) fn rumor_severity(rules: &RuleSet, o: &OpenIncident) -> u8 {
    let mut s: i32 = if o.inc.rebuttal.is_some() { 3 } else { 2 };
    let n = o.authors_base as usize + o.authors.len();
    if n >= 30 {
        s += 1;
    }
    if n >= 200 {
        s += 1;
    }
    if rules
        .category_index(&o.inc.category)
        .is_some_and(|c| rules.categories[c as usize].severity >= 4)
    {
        s += 1;
    }
    s.clamp(1, 5) as u8
}
