//! An open incident's term counts. Every term's bytes sit in one string and the table holds
//! offsets into it: 12 bytes a term, where a map of `String`s took 32 and an allocation of its
//! own. Each open incident holds up to 2,000 terms (then keeps the 1,000 most frequent).

use crate::ProcessHasher;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Counts per term, in no order (readers sort what they take).
#[derive(Clone, Default)]
pub(super) struct TermCounts {
    /// The terms, one after another.
    bytes: String,
    table: HashTable<Slot>,
}

/// One term: its place in `bytes` and its count.
#[derive(Clone, Copy)]
struct Slot {
    at: u32,
    len: u32,
    n: u32,
}

impl Slot {
    fn term(self, bytes: &str) -> &str {
        let at = self.at as usize;
        bytes.get(at..at + self.len as usize).unwrap_or_default()
    }
}

fn hash(term: &str) -> u64 {
    ProcessHasher.hash_one(term)
}

impl TermCounts {
    /// Add `n` to the count of `term`.
    pub(super) fn add(&mut self, term: &str, n: u32) {
        let bytes = &self.bytes;
        let h = hash(term);
        if let Some(s) = self.table.find_mut(h, |s| s.term(bytes) == term) {
            s.n += n;
            return;
        }
        // Offsets are 32 bits: a term that would start past them is not counted (2,000 terms
        // of a post's words never come near 4 GB; the bound keeps the cast honest).
        let (Ok(at), Ok(len)) = (u32::try_from(bytes.len()), u32::try_from(term.len())) else {
            return;
        };
        if at.checked_add(len).is_none() {
            return;
        }
        self.bytes.push_str(term);
        let bytes = &self.bytes;
        self.table
            .insert_unique(h, Slot { at, len, n }, |s| hash(s.term(bytes)));
    }

    /// Terms counted.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Each term with its count, in no order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.table.iter().map(|s| (s.term(&self.bytes), s.n))
    }

    /// Keep the `keep` most frequent terms (ties by term), in a fresh string and table.
    pub(super) fn keep_top(&mut self, keep: usize) {
        let mut kept = TermCounts::default();
        for (t, n) in ranked(self.iter()).into_iter().take(keep) {
            kept.add(t, n);
        }
        *self = kept;
    }
}

/// Terms with their counts, most frequent first, then by term (deterministic whatever the
/// order they come in).
pub(super) fn ranked<'a>(counts: impl Iterator<Item = (&'a str, u32)>) -> Vec<(&'a str, u32)> {
    let mut v: Vec<(&str, u32)> = counts.collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn counts_as_a_map_of_strings_does() {
        // Terms that share bytes and prefixes (one string holds them all, one after another).
        let words = [
            "暴雨",
            "暴",
            "雨",
            "暴雨预警",
            "",
            "rain",
            "raining",
            "暴雨",
            "rain",
            "雨",
        ];
        let mut counts = TermCounts::default();
        let mut map: HashMap<String, u32> = HashMap::new();
        for (i, w) in words.iter().cycle().take(1_000).enumerate() {
            let n = (i % 3) as u32 + 1;
            counts.add(w, n);
            *map.entry(w.to_string()).or_insert(0) += n;
        }
        let mut got: Vec<(String, u32)> = counts.iter().map(|(t, n)| (t.to_string(), n)).collect();
        let mut want: Vec<(String, u32)> = map.into_iter().collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(counts.len(), 7);
    }

    #[test]
    fn keeping_the_top_keeps_the_most_frequent_then_by_term() {
        let mut counts = TermCounts::default();
        for i in 0..3_000u32 {
            counts.add(&format!("词{i}"), i % 10);
        }
        counts.keep_top(1_000);
        assert_eq!(counts.len(), 1_000);
        // 300 terms have each count 9..=7 (900), then the first 100 of count 6 by term.
        let mut sixes: Vec<&str> = counts.iter().filter(|t| t.1 == 6).map(|t| t.0).collect();
        sixes.sort_unstable();
        assert_eq!(sixes.len(), 100);
        let mut all6: Vec<String> = (0..3_000u32)
            .filter(|i| i % 10 == 6)
            .map(|i| format!("词{i}"))
            .collect();
        all6.sort();
        assert_eq!(
            sixes,
            all6[..100].iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(counts.iter().all(|(_, n)| n >= 6));
        // The string holds only what is kept.
        assert_eq!(
            counts.bytes.len(),
            counts.iter().map(|(t, _)| t.len()).sum::<usize>()
        );
        // Counting goes on after the rebuild.
        counts.add("词9", 5);
        assert_eq!(counts.iter().find(|t| t.0 == "词9").map(|t| t.1), Some(14));
    }
}
