//! Hourly figures of everything the engine applied (for public-opinion reports, 舆情报告):
//! mentions, reposts and replies, mentions per region named, the most frequent terms and the
//! most reposted posts of each event-time hour. The engine fills one [`HourAgg`] when a stage
//! asked for them ([`crate::incidents::Engine::emitting_hours`]) and emits it as
//! [`crate::incidents::Event::Hour`] when event time leaves the hour; the store keeps them, so a
//! report over any period is the sum of its hours, on every instance of a fleet.
//!
//! Memory: at most [`TERMS_CAP`] distinct terms, [`SPREAD_CAP`] reposted posts and
//! [`REGIONS_CAP`] regions are counted per hour (beyond, the rest is counted as `overflow`);
//! an hour keeps the top [`TERMS_KEPT`] terms and [`SPREAD_KEPT`] posts.

use crate::detect::analyze::Analysis;
use crate::normalize::Mention;
use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One hour, in ms.
pub const HOUR_MS: i64 = 3_600_000;
/// Distinct terms counted per hour at most.
pub const TERMS_CAP: usize = 65_536;
/// Terms an hour keeps (most frequent first).
pub const TERMS_KEPT: usize = 200;
/// Reposted posts counted per hour at most.
pub const SPREAD_CAP: usize = 16_384;
/// Most reposted posts an hour keeps.
pub const SPREAD_KEPT: usize = 20;
/// Regions counted per hour at most.
pub const REGIONS_CAP: usize = 4_096;
/// Characters of a post's text kept for the report.
const TEXT_CHARS: usize = 140;

/// A post and how often it was reposted (or replied to) in the hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourPost {
    /// The post's id (what reposts name).
    pub id: String,
    /// Reposts and replies of it counted.
    pub reposts: u64,
    /// Its text (the original's when seen, else what its first repost quoted), cut.
    pub text: String,
}

/// The figures of one event-time hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HourStats {
    /// Start of the hour (ms, a multiple of [`HOUR_MS`]).
    pub hour: i64,
    /// Mentions applied (duplicates not counted).
    pub mentions: u64,
    /// Of which reposts.
    pub reposts: u64,
    /// Of which replies.
    pub replies: u64,
    /// Mentions per region code named (the most specific region the mention names).
    pub regions: BTreeMap<u32, u64>,
    /// Most frequent terms (Chinese bigrams, words of other scripts) with their mention counts.
    pub terms: Vec<(String, u64)>,
    /// Most reposted posts.
    pub spread: Vec<HourPost>,
    /// Terms, posts or regions not counted because the hour's tables were full.
    pub overflow: u64,
}

impl HourStats {
    /// Add `other` (the same hour from another instance, or from before a restart).
    pub fn merge(&mut self, other: &HourStats) {
        self.mentions += other.mentions;
        self.reposts += other.reposts;
        self.replies += other.replies;
        self.overflow += other.overflow;
        for (r, n) in &other.regions {
            *self.regions.entry(*r).or_insert(0) += n;
        }
        let mut terms: BTreeMap<String, u64> = self.terms.drain(..).collect();
        for (t, n) in &other.terms {
            *terms.entry(t.clone()).or_insert(0) += n;
        }
        self.terms = top(terms.into_iter().collect(), TERMS_KEPT);
        let mut posts: BTreeMap<String, HourPost> =
            self.spread.drain(..).map(|p| (p.id.clone(), p)).collect();
        for p in &other.spread {
            posts
                .entry(p.id.clone())
                .and_modify(|q| q.reposts += p.reposts)
                .or_insert_with(|| p.clone());
        }
        let mut v: Vec<HourPost> = posts.into_values().collect();
        v.sort_by(|a, b| b.reposts.cmp(&a.reposts).then_with(|| a.id.cmp(&b.id)));
        v.truncate(SPREAD_KEPT);
        self.spread = v;
    }
}

/// The `k` largest counts, ties by name: the same order every run.
fn top(mut v: Vec<(String, u64)>, k: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// The hour being counted.
#[derive(Debug)]
pub struct HourAgg {
    hour: i64,
    mentions: u64,
    reposts: u64,
    replies: u64,
    overflow: u64,
    regions: AHashMap<u32, u64>,
    terms: AHashMap<u64, (u64, Box<str>)>,
    /// Post id → (reposts, text, whether the text is the original's).
    spread: AHashMap<String, (u64, String, bool)>,
}

impl HourAgg {
    /// An empty hour starting at `hour` (ms).
    pub fn new(hour: i64) -> Self {
        HourAgg {
            hour,
            mentions: 0,
            reposts: 0,
            replies: 0,
            overflow: 0,
            regions: AHashMap::new(),
            terms: AHashMap::new(),
            spread: AHashMap::new(),
        }
    }

    /// Start of the hour (ms).
    pub fn hour(&self) -> i64 {
        self.hour
    }

    /// Count one applied mention; `region` is the 6-digit code of the region it names first.
    pub fn observe(&mut self, m: &Mention, a: &Analysis, region: Option<u32>) {
        self.mentions += 1;
        if let Some(r) = &region {
            if self.regions.len() < REGIONS_CAP || self.regions.contains_key(r) {
                *self.regions.entry(*r).or_insert(0) += 1;
            } else {
                self.overflow += 1;
            }
        }
        for t in &a.emerging {
            let room = self.terms.len() < TERMS_CAP;
            match self.terms.get_mut(&t.hash) {
                Some(e) => e.0 += 1,
                None if room => {
                    self.terms
                        .insert(t.hash, (1, t.text(a.normalized(m)).into()));
                }
                None => self.overflow += 1,
            }
        }
        let parent = if let Some(p) = &m.repost_of {
            self.reposts += 1;
            Some(p)
        } else if let Some(p) = &m.reply_to {
            self.replies += 1;
            Some(p)
        } else {
            None
        };
        if let Some(p) = parent {
            let room = self.spread.len() < SPREAD_CAP;
            match self.spread.get_mut(p.as_str()) {
                Some(e) => e.0 += 1,
                None if room => {
                    // A Weibo repost quotes the chain after `//@`: the last part is the
                    // original's author and text (`//@name:text`).
                    let quoted = match memchr::memmem::rfind(m.text.as_bytes(), b"//@") {
                        Some(i) => {
                            let q = &m.text[i + 3..];
                            q.split_once([':', '：']).map_or(q, |(_, t)| t).trim()
                        }
                        None => m.text.as_str(),
                    };
                    self.spread.insert(
                        p.clone(),
                        (1, crate::truncate_chars(quoted, TEXT_CHARS), false),
                    );
                }
                None => self.overflow += 1,
            }
        } else if let Some(e) = self.spread.get_mut(m.id.as_str()) {
            if !e.2 {
                e.1 = crate::truncate_chars(&m.text, TEXT_CHARS);
                e.2 = true;
            }
        }
    }

    /// The hour's figures.
    pub fn finish(self) -> HourStats {
        let terms = top(
            self.terms
                .into_values()
                .map(|(n, t)| (t.into_string(), n))
                .collect(),
            TERMS_KEPT,
        );
        let mut spread: Vec<HourPost> = self
            .spread
            .into_iter()
            .map(|(id, (reposts, text, _))| HourPost { id, reposts, text })
            .collect();
        spread.sort_by(|a, b| b.reposts.cmp(&a.reposts).then_with(|| a.id.cmp(&b.id)));
        spread.truncate(SPREAD_KEPT);
        HourStats {
            hour: self.hour,
            mentions: self.mentions,
            reposts: self.reposts,
            replies: self.replies,
            regions: self.regions.into_iter().collect(),
            terms,
            spread,
            overflow: self.overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(n: u64, terms: &[(&str, u64)], posts: &[(&str, u64)]) -> HourStats {
        HourStats {
            hour: 0,
            mentions: n,
            reposts: n / 2,
            replies: 0,
            regions: [(110108, n)].into_iter().collect(),
            terms: terms.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            spread: posts
                .iter()
                .map(|(id, n)| HourPost {
                    id: id.to_string(),
                    reposts: *n,
                    text: format!("post {id}"),
                })
                .collect(),
            overflow: 0,
        }
    }

    #[test]
    fn hours_of_two_instances_add_up() {
        let mut a = hour(10, &[("暴雨", 4), ("地铁", 2)], &[("p1", 3)]);
        a.merge(&hour(6, &[("地铁", 5)], &[("p1", 1), ("p2", 7)]));
        assert_eq!(a.mentions, 16);
        assert_eq!(a.reposts, 8);
        assert_eq!(a.regions[&110108], 16);
        assert_eq!(a.terms, [("地铁".to_string(), 7), ("暴雨".to_string(), 4)]);
        let posts: Vec<(&str, u64)> = a.spread.iter().map(|p| (&*p.id, p.reposts)).collect();
        assert_eq!(posts, [("p2", 7), ("p1", 4)]);
    }
}
