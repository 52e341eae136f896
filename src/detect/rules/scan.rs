//! The rules' scan: the leftmost-longest match of the patterns in a normalised text, found by
//! a prefix filter and an anchored automaton instead of an automaton walked over every byte.
//!
//! Most positions of a post start no pattern. A bit set keyed by a hash of the first six bytes
//! of every pattern of six bytes or more (two Chinese characters), of the first three of every
//! pattern of three to five, and a table of the first byte of every shorter one tells, in a few
//! nanoseconds, where a pattern *may* start (no false negative; a false positive costs one
//! anchored look). Only there is the automaton run, anchored: the first position where it
//! matches is the leftmost start, and an anchored leftmost-longest search returns the longest
//! pattern starting there, so the result is exactly what one unanchored leftmost-longest
//! search returns (`scanning_finds_what_the_unanchored_automaton_finds` compares the two).
//! On the generator's long posts the unanchored contiguous NFA took 17 % of the engine's core
//! at 110k mentions/s (`loadtest/README.md`).
//!
//! A match can only start at a character boundary (the patterns are non-empty UTF-8 and so is
//! the text), so the filter is asked once a character, not once a byte.

use aho_corasick::{AhoCorasick, Anchored, Input, Match, MatchKind, StartKind};

/// Bytes of the long key (two Chinese characters).
const LONG: usize = 6;
/// Bytes of the middle key (one Chinese character, three ASCII letters).
const MID: usize = 3;
/// Bits of the filter per pattern (rounded up to a power of two): at most about 1 in 32
/// positions that start no pattern's prefix is looked at anyway (the shipped rules' 7,751
/// patterns: 4,199 distinct six-byte prefixes in 262,144 bits, 32 KB, about 1 in 60).
const BITS_PER_KEY: usize = 32;

/// The patterns' automaton and the filter in front of it.
#[derive(Debug)]
pub(crate) struct Scanner {
    automaton: AhoCorasick,
    /// `None` when a pattern is empty (it matches everywhere): the automaton alone, unanchored.
    filter: Option<Filter>,
}

#[derive(Debug)]
struct Filter {
    /// Bit set of key hashes, `1 << shift`-th of the hash space per bit.
    bits: Vec<u64>,
    shift: u32,
    /// First bytes of the patterns shorter than [`MID`].
    lead: [bool; 256],
    /// Whether any pattern is [`MID`] to [`LONG`]` - 1` bytes long.
    has_mid: bool,
}

impl Filter {
    fn new<'a>(patterns: impl Iterator<Item = &'a [u8]>) -> Option<Filter> {
        let mut keys = Vec::new();
        let mut lead = [false; 256];
        for p in patterns {
            match p.len() {
                0 => return None,
                n if n < MID => lead[usize::from(p[0])] = true,
                n if n < LONG => keys.push(mid_key(word(p))),
                _ => keys.push(long_key(word(p))),
            }
        }
        let has_mid = keys.iter().any(|k| k & MID_TAG != 0);
        let want = (keys.len() * BITS_PER_KEY).next_power_of_two().max(1 << 12);
        let log = want.trailing_zeros();
        let mut f = Filter {
            bits: vec![0; want / 64],
            shift: 64 - log,
            lead,
            has_mid,
        };
        for k in keys {
            let h = f.slot(k);
            f.bits[h / 64] |= 1 << (h % 64);
        }
        Some(f)
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn has(&self, key: u64) -> bool {
        let h = self.slot(key);
        self.bits[h / 64] & (1 << (h % 64)) != 0
    }

    /// Whether a pattern may start at `at` of `hay`.
    #[inline]
    fn may_start(&self, hay: &[u8], at: usize) -> bool {
        if self.lead[usize::from(hay[at])] {
            return true;
        }
        let rest = &hay[at..];
        // One load for both keys.
        let w = word(rest);
        (rest.len() >= LONG && self.has(long_key(w)))
            || (self.has_mid && rest.len() >= MID && self.has(mid_key(w)))
    }
}

/// Tells a middle key from a long one (a long key never has its top byte set).
const MID_TAG: u64 = 1 << 63;

/// The first eight bytes of `b` as a little-endian word (zeros past its end).
#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    match b.get(..8) {
        Some(head) => w.copy_from_slice(head),
        None => w[..b.len()].copy_from_slice(b),
    }
    u64::from_le_bytes(w)
}

/// The key of a text's (or a pattern's) first [`LONG`] bytes, from its [`word`].
#[inline]
fn long_key(w: u64) -> u64 {
    w & ((1 << (8 * LONG)) - 1)
}

/// The key of its first [`MID`] bytes, tagged apart from the long keys.
#[inline]
fn mid_key(w: u64) -> u64 {
    w & ((1 << (8 * MID)) - 1) | MID_TAG
}

/// Bytes of the UTF-8 character whose first byte is `b` (1 for a byte inside a character).
#[inline]
fn char_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

impl Scanner {
    /// The scanner of `patterns` (their order is their index in matches).
    pub(crate) fn new(patterns: &[&str]) -> Result<Scanner, aho_corasick::BuildError> {
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .start_kind(StartKind::Both)
                .kind(kind)
                .build(patterns)
        };
        // A contiguous NFA, not a DFA: the shipped rules' 7,751 patterns (6,147 of them the
        // gazetteer's names) make a 0.7 MB automaton where the DFA took 18.7 MB; with the
        // filter it runs only a few bytes at a few positions a post.
        let automaton = match build(Some(aho_corasick::AhoCorasickKind::ContiguousNFA)) {
            Ok(a) => a,
            Err(e) => {
                // Past the contiguous NFA's limits (very large rule sets): the crate's choice.
                tracing::warn!(error = %e, "contiguous NFA too large; using the crate's choice.");
                build(None)?
            }
        };
        Ok(Scanner {
            automaton,
            filter: Filter::new(patterns.iter().map(|p| p.as_bytes())),
        })
    }

    /// The leftmost-longest match starting at `at` or after it, as an unanchored
    /// leftmost-longest search of `text[at..]` finds it. `at` is a character boundary.
    pub(crate) fn find(&self, text: &str, mut at: usize) -> Option<Match> {
        let hay = text.as_bytes();
        let Some(f) = &self.filter else {
            return self.automaton.find(Input::new(hay).span(at..hay.len()));
        };
        while at < hay.len() {
            if f.may_start(hay, at) {
                let found = self
                    .automaton
                    .find(Input::new(hay).span(at..hay.len()).anchored(Anchored::Yes));
                if found.is_some() {
                    return found;
                }
            }
            at += char_len(hay[at]);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: one unanchored leftmost-longest search.
    fn reference(patterns: &[&str]) -> AhoCorasick {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)
            .unwrap()
    }

    fn all(s: &Scanner, text: &str) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(m) = s.find(text, at) {
            out.push((m.pattern().as_usize(), m.start(), m.end()));
            // Also restart inside a match, as the analysis does after a rejected one.
            match text.as_bytes().get(m.start()) {
                Some(b) => at = m.start() + char_len(*b),
                None => break,
            }
        }
        out
    }

    fn all_ref(r: &AhoCorasick, text: &str) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(m) = r.find(Input::new(text).span(at..text.len())) {
            out.push((m.pattern().as_usize(), m.start(), m.end()));
            match text.as_bytes().get(m.start()) {
                Some(b) => at = m.start() + char_len(*b),
                None => break,
            }
        }
        out
    }

    #[test]
    fn scanning_finds_what_the_unanchored_automaton_finds() {
        // Patterns of every length class, sharing prefixes, one inside another, ASCII and
        // Chinese, a four-byte character.
        let patterns = [
            "北京",
            "北京市",
            "海淀",
            "海淀区",
            "暴雨",
            "雨",
            "大雨",
            "特大暴雨",
            "sos",
            "so",
            "s",
            "flood",
            "floods",
            "flooding",
            "help",
            "icu",
            "🆘",
            "🆘救命",
            "救命",
            "ab",
            "区",
            "市海",
            "淀区暴",
            "火",
        ];
        let s = Scanner::new(&patterns).unwrap();
        assert!(s.filter.is_some());
        let r = reference(&patterns);
        let texts = [
            "",
            "北",
            "北京",
            "北京市海淀区特大暴雨，救命🆘救命",
            "sos so s help icu floods flooding flood",
            "abababab",
            "海淀区暴雨区市海淀区暴",
            "no pattern here at all, 完全没有",
            "大雨大暴雨特大暴雨雨",
            "🆘",
            "x🆘",
            "火火火",
            "末尾北京",
            "末尾北京市",
        ];
        for t in texts {
            assert_eq!(all(&s, t), all_ref(&r, t), "{t}");
        }
        // Every string of up to four pieces drawn from the patterns and a few fillers.
        let pieces: Vec<&str> = patterns
            .iter()
            .copied()
            .chain(["的", " ", "x", "京", "淀", "o", "暴"])
            .collect();
        let mut n = 0;
        for a in &pieces {
            for b in &pieces {
                for c in &pieces {
                    let t = format!("{a}{b}{c}");
                    assert_eq!(all(&s, &t), all_ref(&r, &t), "{t}");
                    n += 1;
                }
            }
        }
        assert!(n > 20_000);
    }

    #[test]
    fn an_empty_pattern_leaves_the_automaton_alone() {
        let patterns = ["", "ab"];
        let s = Scanner::new(&patterns).unwrap();
        assert!(s.filter.is_none());
        let r = reference(&patterns);
        for t in ["", "ab", "xaby"] {
            assert_eq!(all(&s, t), all_ref(&r, t), "{t}");
        }
    }

    #[test]
    fn the_filter_has_no_false_negative_and_few_false_positives() {
        // Many six-byte keys: every position where a pattern starts passes; most others not.
        let chars: Vec<char> =
            "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会"
                .chars()
                .collect();
        let mut patterns = Vec::new();
        for a in &chars {
            for b in chars.iter().take(20) {
                patterns.push(format!("{a}{b}区"));
            }
        }
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let s = Scanner::new(&refs).unwrap();
        let f = s.filter.as_ref().unwrap();
        for p in &refs {
            assert!(f.may_start(p.as_bytes(), 0), "{p}");
        }
        let mut passed = 0;
        let mut total = 0;
        for a in &chars {
            for b in chars.iter().skip(20) {
                let t = format!("{a}{b}区");
                total += 1;
                passed += usize::from(f.may_start(t.as_bytes(), 0));
            }
        }
        assert!(passed * 10 < total, "{passed} of {total} passed");
    }

    #[test]
    fn the_shipped_rules_scan_real_posts_as_the_unanchored_automaton_does() {
        use std::io::BufRead;
        let n = crate::normalize::Normalizer::new();
        let rules = crate::detect::rules::RuleSet::load(std::path::Path::new("rules"), &n)
            .expect("the shipped rules load");
        let texts: Vec<&str> = rules.patterns.iter().map(|p| p.text.as_str()).collect();
        let r = reference(&texts);
        let mut lines: Vec<String> = Vec::new();
        for f in [
            "tests/data/flood_haidian.jsonl",
            "tests/data/eval/bursts.jsonl",
        ] {
            lines.extend(
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(String::from),
            );
        }
        let gz = std::fs::File::open("tests/data/crisislex/crisislex_t6.jsonl.gz").unwrap();
        let gz = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
        lines.extend(gz.lines().take(20_000).map(Result::unwrap));
        let (mut posts, mut matches) = (0, 0);
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = n.normalize(v["text"].as_str().unwrap_or(""));
            let found = all(&rules.scanner, &text);
            assert_eq!(found, all_ref(&r, &text), "{text}");
            posts += 1;
            matches += found.len();
        }
        assert!(
            posts > 20_000 && matches > 5_000,
            "{posts} posts, {matches} matches"
        );
    }
}
