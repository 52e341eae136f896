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
}

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
        Normalizer { t2s }
    }

    /// How many traditional characters the table simplifies.
    pub fn table_len(&self) -> usize {
        self.t2s.len()
    }

    /// Normalise `text`. ASCII-only text skips everything but lower-casing.
    pub fn normalize<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if text.is_ascii() {
            if text.bytes().any(|b| b.is_ascii_uppercase()) {
                return Cow::Owned(text.to_ascii_lowercase());
            }
            return Cow::Borrowed(text);
        }
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
