//! Text normalisation: NFKC (which also folds full-width forms to half-width), lower case, and
//! traditional → simplified Chinese.
//!
//! Traditional → simplified uses OpenCC's character table through `ferrous-opencc`, flattened at
//! start-up into a `char → char` map over the CJK blocks, so the per-mention cost is one table
//! look-up per character instead of a dictionary walk. Phrase-level conversions (rare, and never
//! needed to match a rule keyword) are not applied.

use ahash::AHashMap;
use std::borrow::Cow;
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Turns raw mention text into the form rules are matched against.
pub struct Normalizer {
    t2s: AHashMap<char, char>,
    /// The same table, dense over U+3400..=U+9FFF, for the fast path.
    dense: Vec<char>,
}

const DENSE_START: u32 = 0x3400;
const DENSE_END: u32 = 0x9FFF;

impl std::fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Normalizer({} t2s chars)", self.t2s.len())
    }
}

impl Normalizer {
    /// Build the table (tens of milliseconds; do it once and share).
    pub fn new() -> Self {
        let mut t2s = AHashMap::new();
        if let Ok(cc) =
            ferrous_opencc::OpenCC::from_config(ferrous_opencc::config::BuiltinConfig::T2s)
        {
            let ranges = [0x3400u32..=0x4DBF, 0x4E00..=0x9FFF, 0xF900..=0xFAFF];
            let mut buf = String::new();
            for range in ranges {
                for cp in range {
                    let Some(c) = char::from_u32(cp) else {
                        continue;
                    };
                    buf.clear();
                    buf.push(c);
                    let out = cc.convert(&buf);
                    let mut it = out.chars();
                    if let (Some(s), None) = (it.next(), it.next()) {
                        if s != c {
                            t2s.insert(c, s);
                        }
                    }
                }
            }
        } else {
            tracing::warn!(
                "OpenCC table unavailable; traditional characters will not be simplified."
            );
        }
        let dense = (DENSE_START..=DENSE_END)
            .map(|cp| {
                let c = char::from_u32(cp).unwrap_or(' ');
                t2s.get(&c).copied().unwrap_or(c)
            })
            .collect();
        Normalizer { t2s, dense }
    }

    /// How many traditional characters the table simplifies.
    pub fn table_len(&self) -> usize {
        self.t2s.len()
    }

    /// Normalise `text`. ASCII-only text skips everything but lower-casing; text made only of
    /// ASCII, CJK ideographs, full-width forms and common punctuation and emoji (almost every
    /// Chinese post) takes a single table-driven pass; anything else takes the full NFKC path.
    pub fn normalize<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.is_ascii() {
            if text.bytes().any(|b| b.is_ascii_uppercase()) {
                return Cow::Owned(text.to_ascii_lowercase());
            }
            return Cow::Borrowed(text);
        }
        match self.normalize_fast(text) {
            Some(s) => s,
            None => self.normalize_full(text),
        }
    }

    /// One pass over characters whose NFKC form is known without tables: `None` when the text
    /// holds any other character. Runs of characters that stay as they are are copied whole,
    /// and nothing is copied before the first one that changes (a text that needs no change is
    /// borrowed).
    fn normalize_fast<'a>(&self, text: &'a str) -> Option<Cow<'a, str>> {
        let mut out: Option<String> = None;
        // Start of the run of unchanged characters not yet copied into `out`.
        let mut run = 0;
        for (i, c) in text.char_indices() {
            let u = c as u32;
            let to = match u {
                0..=0x7F => c.to_ascii_lowercase(),
                0x3400..=0x4DBF | 0x4E00..=0x9FFF => self.dense[(u - DENSE_START) as usize],
                // Full-width forms are their ASCII counterparts shifted by 0xFEE0.
                0xFF01..=0xFF5E => char::from_u32(u - 0xFEE0).unwrap_or(c).to_ascii_lowercase(),
                0x3000 => ' ',
                0xB7
                | 0x2014
                | 0x2018
                | 0x2019
                | 0x201C
                | 0x201D
                | 0x3001..=0x3003
                | 0x3008..=0x3011
                | 0xFE0F
                | 0x1F300..=0x1FAFF => c,
                _ => return None,
            };
            if to != c {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[run..i]);
                o.push(to);
                run = i + c.len_utf8();
            }
        }
        Some(match out {
            None => Cow::Borrowed(text),
            Some(mut o) => {
                o.push_str(&text[run..]);
                Cow::Owned(o)
            }
        })
    }

    /// The general path: NFKC, then lower case and traditional → simplified.
    fn normalize_full<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let nfkc: Cow<str> = match is_nfkc_quick(text.chars()) {
            IsNormalized::Yes => Cow::Borrowed(text),
            _ => Cow::Owned(text.nfkc().collect()),
        };
        let needs = nfkc
            .chars()
            .any(|c| c.is_uppercase() || (c as u32 >= 0x3400 && self.t2s.contains_key(&c)));
        if !needs {
            return nfkc;
        }
        let mut out = String::with_capacity(nfkc.len());
        for c in nfkc.chars() {
            if let Some(s) = self.t2s.get(&c) {
                out.push(*s);
            } else if c.is_uppercase() {
                out.extend(c.to_lowercase());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

impl Default for Normalizer {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_full_nfkc_on_every_character_it_takes() {
        let n = Normalizer::new();
        let ranges = [
            0x20u32..=0x7E,
            0x3400..=0x4DBF,
            0x4E00..=0x9FFF,
            0xFF01..=0xFF5E,
            0x3000..=0x3003,
            0x3008..=0x3011,
            0x1F300..=0x1FAFF,
        ];
        let extra = [0xB7u32, 0x2014, 0x2018, 0x2019, 0x201C, 0x201D, 0xFE0F];
        let chars = ranges
            .into_iter()
            .flatten()
            .chain(extra)
            .filter_map(char::from_u32);
        for c in chars {
            // A CJK character next to the probe keeps the text off the ASCII-only path.
            let s = format!("中{c}");
            let fast = n.normalize_fast(&s).expect("fast path takes it");
            assert_eq!(fast, n.normalize_full(&s), "U+{:04X}", c as u32);
        }
        assert!(
            n.normalize_fast("中ⅰ").is_none(),
            "a compatibility character takes the full path"
        );
    }

    #[test]
    fn the_fast_path_copies_runs_as_the_full_path_writes_them() {
        // Characters that stay and characters that change, in every order up to four long:
        // each run copied whole, the first change after an unchanged prefix, a change last.
        let n = Normalizer::new();
        let pieces = [
            "中", "國", "Ａ", "a", "B", "，", "\u{3000}", "😀", "·", "暴雨",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
        }
        texts.dedup();
        assert!(texts.len() > 10_000);
        for t in &texts {
            // Keep it off the ASCII-only path, as a Chinese post is.
            let t = format!("{t}中");
            let fast = n.normalize_fast(&t).expect("fast path takes it");
            assert_eq!(fast, n.normalize_full(&t), "{t}");
            assert_eq!(matches!(fast, Cow::Borrowed(_)), fast == t.as_str(), "{t}");
        }
    }

    #[test]
    fn folds_width_case_and_script() {
        let n = Normalizer::new();
        assert!(n.table_len() > 1000, "t2s table has {}", n.table_len());
        let cases = [
            ("FLOOD in Town", "flood in town"),
            ("ＦＬＯＯＤ！", "flood!"),
            ("暴雨來襲，車輛被淹", "暴雨来袭,车辆被淹"),
            ("地震了", "地震了"),
            ("發生火災", "发生火灾"),
            ("１２３号", "123号"),
        ];
        for (input, want) in cases {
            assert_eq!(n.normalize(input), want, "{input}");
        }
    }
}
