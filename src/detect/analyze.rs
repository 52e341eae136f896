//! The pure per-mention analysis: `(&RuleSet, &Mention) -> Analysis`. It runs on a pool of
//! worker threads over batches; it touches no shared mutable state.
//!
//! The automaton runs once per mention. Tokenising (jieba) and sketches cost far more, so they
//! run only for mentions that hit a category, a rumor cue or a known claim.

use super::rules::{CueKind, PatternRef, RuleSet};
use super::rumor_model::PostSignals;
use super::sketch::{sketch, Sketch};
use crate::normalize::{Mention, Normalizer};
use jieba_rs::Jieba;

/// Rumor cue bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cues(pub u8);

impl Cues {
    /// Someone asks whether it is true.
    pub const ENQUIRY: u8 = 1;
    /// Someone says it is false.
    pub const CORRECTION: u8 = 2;
    /// Someone spreads it.
    pub const SPREADING: u8 = 4;

    /// Whether any cue hit.
    pub fn any(self) -> bool {
        self.0 != 0
    }
    /// Whether `bit` is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// What the rules see in one mention.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// Category indices hit (after exclusions), ascending.
    pub categories: Vec<u16>,
    /// A casualty/urgency booster hit (global, or of a category that hit).
    pub boosted: bool,
    /// Rumor cues.
    pub cues: Cues,
    /// Known claims matched.
    pub claims: Vec<u16>,
    /// Resolved regions, most specific first.
    pub regions: Vec<u32>,
    /// Request kinds hit.
    pub requests: Vec<u8>,
    /// Patterns that hit (indices into the rule set), in text order.
    pub matched: Vec<u32>,
    /// Significant tokens (only when something hit).
    pub terms: Vec<String>,
    /// Near-duplicate sketch of the text without cue words (only when a cue or claim hit and
    /// the text has enough of its own).
    pub sketch: Option<Box<Sketch>>,
    /// What the post brings to a cascade's rumor score (only with a rumor model).
    pub signals: Option<PostSignals>,
    /// Every term of the post, for the emerging-incident detector (when it is on): hashes
    /// with their place in the normalised text ([`Analysis::normalized`]).
    pub emerging: Vec<super::emerging::Term>,
    /// The normalised text `emerging` points into, when normalising changed the mention's
    /// text (most posts it leaves as they are: then they point into the mention's own text and
    /// no copy is made). Read it with [`Analysis::normalized`].
    pub text: Option<String>,
}

impl Analysis {
    /// Whether anything a detector cares about hit.
    pub fn is_relevant(&self) -> bool {
        !self.categories.is_empty() || self.cues.any() || !self.claims.is_empty()
    }

    /// The normalised text of `m` (the mention this is the analysis of), which `emerging`
    /// points into.
    pub fn normalized<'a>(&'a self, m: &'a Mention) -> &'a str {
        self.text.as_deref().unwrap_or(&m.text)
    }
}

/// Normaliser and tokenizer, built once and shared by the workers.
pub struct Analyzer {
    /// Text normaliser.
    pub normalizer: Normalizer,
    jieba: Jieba,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("normalizer", &self.normalizer)
            .finish()
    }
}

const MAX_TERMS: usize = 32;

/// jieba's own dictionary (`src/data/dict.txt` of jieba-rs 0.11.0, MIT; see `data/README.md`),
/// gzip'd. jieba-rs would embed the same file and keep it decompressed in a static for the life
/// of the process (8.4 MB of heap); this one is streamed into the trie and nothing is kept.
const JIEBA_DICT_GZ: &[u8] = include_bytes!("data/jieba-dict.txt.gz");

/// jieba with its own dictionary, read from [`JIEBA_DICT_GZ`].
fn jieba_with_its_dictionary() -> Jieba {
    let mut dict = std::io::BufReader::new(flate2::read::GzDecoder::new(JIEBA_DICT_GZ));
    // A constant built into the binary, not input: `the_embedded_dictionary_is_jiebas_own`
    // loads it and compares it with jieba's.
    let jieba = Jieba::with_dict(&mut dict).expect("the embedded jieba dictionary loads");
    // Loading grows the tables by doubling; a clone holds them at their length.
    jieba.clone()
}

const EN_STOP: [&str; 40] = [
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "her", "was", "one",
    "our", "out", "has", "his", "how", "its", "who", "did", "yes", "get", "got", "this", "that",
    "with", "have", "from", "they", "will", "just", "what", "when", "your", "been", "were", "http",
    "https", "amp",
];

const ZH_STOP: [&str; 24] = [
    "我们", "你们", "他们", "这个", "那个", "什么", "怎么", "就是", "还是", "没有", "已经", "现在",
    "一个", "大家", "自己", "可以", "因为", "所以", "但是", "如果", "这样", "然后", "今天", "真的",
];

impl Analyzer {
    /// Build the normaliser and load jieba's dictionary (a fraction of a second).
    pub fn new() -> Self {
        Analyzer {
            normalizer: Normalizer::new(),
            jieba: jieba_with_its_dictionary(),
        }
    }

    /// [`Analyzer::new`], with `beside(&normalizer)` run while jieba's dictionary loads on a
    /// second thread (the rule set's load needs the normaliser, not jieba): start-up is the
    /// longer of the two, not their sum (jieba is about two thirds of it).
    pub fn new_with<T>(beside: impl FnOnce(&Normalizer) -> T) -> (Self, T) {
        let normalizer = Normalizer::new();
        std::thread::scope(|s| {
            let jieba = s.spawn(jieba_with_its_dictionary);
            let t = beside(&normalizer);
            let jieba = jieba
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (Analyzer { normalizer, jieba }, t)
        })
    }

    /// Analyse one mention.
    pub fn analyze(&self, rules: &RuleSet, m: &Mention) -> Analysis {
        let mut a = Analysis::default();
        self.analyze_into(rules, m, &mut a);
        a
    }

    /// Analyse one mention into `a`, which must be empty ([`Analysis::default`]): the pipeline
    /// analyses in place, in the allocation that carries the mention to the engine, instead of
    /// moving a finished analysis there.
    pub fn analyze_into(&self, rules: &RuleSet, m: &Mention, a: &mut Analysis) {
        debug_assert!(
            *a == Analysis::default(),
            "analyze_into needs an empty analysis"
        );
        let text = self.normalizer.normalize(&m.text);
        let bytes = text.as_bytes();
        let mut region_hits: Vec<(&[u32], bool)> = Vec::new();
        let mut region_buf: Vec<(Vec<u32>, bool)> = Vec::new();
        let mut boosters: Vec<Option<u16>> = Vec::new();
        let mut excluded: Vec<u16> = Vec::new();
        let mut claim_hits: Vec<u16> = Vec::new();
        let mut claim_req: Vec<(u16, u8)> = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let Some(mat) = rules.scanner.find(&text, pos) else {
                break;
            };
            let p = &rules.patterns[mat.pattern().as_usize()];
            let cut_start =
                p.word_start && mat.start() > 0 && bytes[mat.start() - 1].is_ascii_alphanumeric();
            let cut_end =
                p.word_end && mat.end() < bytes.len() && bytes[mat.end()].is_ascii_alphanumeric();
            if cut_start || cut_end {
                // An English pattern inside a longer word: look again one character later, so
                // a shorter pattern starting inside it ("rainstorm" in "heavy rainstorm" after
                // "heavy rains" was rejected) still gets its chance.
                pos = mat.start() + 1;
                while pos < bytes.len() && !text.is_char_boundary(pos) {
                    pos += 1;
                }
                continue;
            }
            if p.short_region
                && !rules
                    .gazetteer
                    .stands_as_word(&self.jieba, &text, mat.start(), mat.end())
            {
                // A region's short form inside other words (天全 in 明天全天): not a place;
                // look again one character later, as for an English pattern inside a word.
                pos = mat.start() + 1;
                while pos < bytes.len() && !text.is_char_boundary(pos) {
                    pos += 1;
                }
                continue;
            }
            pos = mat.end();
            a.matched.push(mat.pattern().as_u32());
            let mut regions: Vec<u32> = Vec::new();
            let mut weak = false;
            for r in &p.refs {
                match *r {
                    PatternRef::Keyword(c) => push_unique(&mut a.categories, c),
                    PatternRef::Exclude(c) => push_unique(&mut excluded, c),
                    PatternRef::Booster(c) => boosters.push(c),
                    PatternRef::Cue(k) => {
                        a.cues.0 |= match k {
                            CueKind::Enquiry => Cues::ENQUIRY,
                            CueKind::Correction => Cues::CORRECTION,
                            CueKind::Spreading => Cues::SPREADING,
                        }
                    }
                    PatternRef::Claim(c) => push_unique(&mut claim_hits, c),
                    PatternRef::ClaimRequire(c, i) => {
                        if !claim_req.contains(&(c, i)) {
                            claim_req.push((c, i));
                        }
                    }
                    PatternRef::Region(i) => regions.push(i),
                    PatternRef::WeakRegion(i) => {
                        weak = true;
                        regions.push(i)
                    }
                    PatternRef::Request(k) => push_unique(&mut a.requests, k),
                }
            }
            if !regions.is_empty() {
                region_buf.push((regions, weak));
            }
        }
        a.categories.sort_unstable();
        a.boosted = !a.categories.is_empty()
            && boosters.iter().any(|b| match b {
                None => true,
                Some(c) => a.categories.contains(c),
            });
        for c in claim_hits {
            let need = rules.claims[c as usize].required;
            let have = claim_req.iter().filter(|(cc, _)| *cc == c).count();
            if have >= need {
                a.claims.push(c);
            }
        }
        a.claims.sort_unstable();
        region_hits.extend(region_buf.iter().map(|(v, w)| (v.as_slice(), *w)));
        if !region_hits.is_empty() || m.region.is_some() {
            a.regions = rules.gazetteer.resolve(&region_hits, m.region.as_deref());
        }
        if let Some(model) = &rules.rumor_model {
            a.signals = Some(PostSignals::of(&text, model));
        }
        if a.is_relevant() {
            a.terms = self.terms(&text);
            if a.cues.any() || !a.claims.is_empty() {
                let cues = a.matched.iter().filter_map(|p| {
                    let t = rules.pattern_text(*p);
                    rules.cue_words.contains(t).then_some(t)
                });
                a.sketch = sketch(&text, cues).map(Box::new);
            }
        }
        if rules.settings.emerging.enabled {
            a.emerging = super::emerging::terms(&text);
            if let std::borrow::Cow::Owned(t) = text {
                a.text = Some(t);
            }
        }
    }

    /// Significant tokens of normalised text: CJK words of two or more characters and ASCII
    /// words of three or more, minus stop words, links and mentions; at most 32.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for_each_word(&self.jieba, text, |_, w| keep_term(&mut out, w));
        // Links are noise for terms and similarity alike.
        out.retain(|t| t != "www" && t != "com" && t != "cn");
        out
    }
}

/// Call `f` with every word jieba's `cut(text, true)` cuts from a block of `text`, in order,
/// and its byte offset, until it answers true.
///
/// jieba cuts each block (a run of [`is_block_char`] characters) on its own, and makes every
/// other character a token of one (`\r\n` of two), which no term is: so a short block's words
/// are remembered, per worker ([`BLOCK_MEMO_ENTRIES`]), and words of everyday use ("the",
/// "explosion", "转发微博") are cut once, not in every post. jieba was a fifth of the workers'
/// time in a replay of real text, cutting the 15 % of posts that hit a rule.
fn for_each_word<'t>(jieba: &Jieba, text: &'t str, mut f: impl FnMut(usize, &'t str) -> bool) {
    BLOCK_MEMO.with_borrow_mut(|memo| {
        let mut buf = [0u8; BLOCK_MEMO_BYTES];
        let mut pos = 0;
        while let Some(start) = text[pos..].find(is_block_char) {
            let pos0 = pos + start;
            let rest = &text[pos0..];
            let block = &rest[..rest.find(|c| !is_block_char(c)).unwrap_or(rest.len())];
            pos = pos0 + block.len();
            if block.len() <= BLOCK_MEMO_BYTES {
                let mut at = 0;
                for &len in memo.cuts(jieba, block, &mut buf) {
                    let len = usize::from(len);
                    if f(pos0 + at, &block[at..at + len]) {
                        return;
                    }
                    at += len;
                }
            } else {
                for tok in jieba.cut(block, true) {
                    if f(pos0 + tok.byte_start, tok.word) {
                        return;
                    }
                }
            }
        }
    })
}

/// Add `w` to `out` when it is a significant token not there yet; true when `out` is full.
fn keep_term(out: &mut Vec<String>, w: &str) -> bool {
    let w = w.trim();
    if w.is_empty() || w.starts_with('@') || w.starts_with('#') {
        return false;
    }
    let keep = if w.is_ascii() {
        w.len() >= 3
            && w.bytes().all(|b| b.is_ascii_alphanumeric())
            && !EN_STOP.contains(&w)
            && !w.bytes().all(|b| b.is_ascii_digit())
    } else {
        w.chars().count() >= 2 && w.chars().all(|c| c.is_alphanumeric()) && !ZH_STOP.contains(&w)
    };
    if keep && !out.iter().any(|o| o == w) {
        out.push(w.to_string());
        return out.len() >= MAX_TERMS;
    }
    false
}

/// A character jieba cuts within a block (jieba-rs 0.11's `is_han_default`, its `RE_HAN_DEFAULT`):
/// CJK ideographs (the main block and the extensions) and ASCII letters, digits and `+#&._%-`.
/// `blocks_cut_alone_give_jiebas_words` holds this to jieba's own.
fn is_block_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '+' | '#' | '&' | '.' | '_' | '%' | '-')
    } else {
        matches!(c,
            '\u{4E00}'..='\u{9FFF}'
            | '\u{3400}'..='\u{4DBF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{2A6DF}'
            | '\u{2A700}'..='\u{2B73F}'
            | '\u{2B740}'..='\u{2B81F}'
            | '\u{2B820}'..='\u{2CEAF}'
            | '\u{2CEB0}'..='\u{2EBEF}'
            | '\u{2F800}'..='\u{2FA1F}'
        )
    }
}

/// Blocks of at most this many bytes are remembered (a word or a short phrase; longer ones
/// seldom come again).
const BLOCK_MEMO_BYTES: usize = 48;
/// Blocks remembered per worker before the memo starts again (under 1 MB with the table).
const BLOCK_MEMO_ENTRIES: usize = 8_192;

thread_local! {
    static BLOCK_MEMO: std::cell::RefCell<BlockMemo> = std::cell::RefCell::new(BlockMemo::default());
}

/// Short blocks and the byte lengths of the words jieba cuts them into.
#[derive(Default)]
struct BlockMemo {
    cuts: ahash::AHashMap<Box<str>, Box<[u8]>>,
}

impl BlockMemo {
    /// The word lengths of `block` (at most [`BLOCK_MEMO_BYTES`] long, so at most that many
    /// words), cut now or before, copied into `buf`.
    fn cuts<'b>(
        &mut self,
        jieba: &Jieba,
        block: &str,
        buf: &'b mut [u8; BLOCK_MEMO_BYTES],
    ) -> &'b [u8] {
        let lens = match self.cuts.get(block) {
            Some(lens) => lens,
            None => {
                if self.cuts.len() >= BLOCK_MEMO_ENTRIES {
                    self.cuts.clear();
                }
                let lens: Box<[u8]> = jieba
                    .cut(block, true)
                    .iter()
                    .map(|t| t.word.len() as u8)
                    .collect();
                self.cuts.entry(block.into()).or_insert(lens)
            }
        };
        let n = lens.len().min(BLOCK_MEMO_BYTES);
        buf[..n].copy_from_slice(&lens[..n]);
        &buf[..n]
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// [`Analyzer::terms`] as it was before the block memo: jieba over the whole text.
    fn terms_whole_text(an: &Analyzer, text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for tok in an.jieba.cut(text, true) {
            if keep_term(&mut out, tok.word) {
                break;
            }
        }
        out.retain(|t| t != "www" && t != "com" && t != "cn");
        out
    }

    #[test]
    fn blocks_cut_alone_give_jiebas_words() {
        let an = Analyzer::new();
        let mut texts: Vec<String> = Vec::new();
        let mut gz = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/crisislex/crisislex_t6.jsonl.gz"
            ))
            .expect("CrisisLex T6"),
        )
        .read_to_string(&mut gz)
        .expect("gzip");
        for line in gz.lines().step_by(4) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            texts.push(v["text"].as_str().unwrap_or_default().to_string());
        }
        for f in ["flood_haidian.jsonl", "spam_single_author.jsonl"] {
            let body =
                std::fs::read_to_string(format!("{}/tests/data/{f}", env!("CARGO_MANIFEST_DIR")))
                    .expect("fixture");
            for line in body.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("json");
                texts.push(v["text"].as_str().unwrap_or_default().to_string());
            }
        }
        // Every kind of character at every boundary: CJK (main block, extension A and B, the
        // compatibility block), ASCII letters, digits and jieba's block punctuation, white
        // space and line ends, other scripts, full-width punctuation, emoji.
        let pool: Vec<char> =
            "暴雨北京海淀区积水转发微博求证谣言是真的吗地铁停运㐀㑄𠀀𠮷豈a Z9+#&._%-\t\r\n，。！？@é\u{0416}😀[]"
                .chars()
                .collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            let len = (seed >> 58) as usize + 1;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    pool[(seed % pool.len() as u64) as usize]
                })
                .collect();
            texts.push(text);
        }
        // Words of one block: as long as the memo keeps, longer, and many times that.
        texts.push("a".repeat(BLOCK_MEMO_BYTES));
        texts.push(format!("{} 暴雨", "b".repeat(BLOCK_MEMO_BYTES + 1)));
        texts.push("北京市海淀区".repeat(BLOCK_MEMO_BYTES / 3));
        let mut hits = 0;
        // Twice: the second pass reads the memo, which starts again several times on the way
        // (this quarter of CrisisLex alone holds ~38,000 distinct short blocks).
        for pass in 0..2 {
            for t in &texts {
                for t in [t.clone(), an.normalizer.normalize(t).into_owned()] {
                    let mut words: Vec<(usize, &str)> = Vec::new();
                    for_each_word(&an.jieba, &t, |at, w| {
                        words.push((at, w));
                        false
                    });
                    // jieba's tokens: those of the blocks, and single characters (or `\r\n`)
                    // of no block between them, none of which is a term.
                    let mut jieba: Vec<(usize, &str)> = Vec::new();
                    for tok in an.jieba.cut(&t, true) {
                        if tok.word.chars().all(is_block_char) {
                            jieba.push((tok.byte_start, tok.word));
                        } else {
                            assert!(tok.word.chars().count() == 1 || tok.word == "\r\n");
                            assert!(!keep_term(&mut Vec::new(), tok.word), "{tok:?}");
                        }
                    }
                    assert_eq!(words, jieba, "pass {pass}: {t:?}");
                    let want = terms_whole_text(&an, &t);
                    assert_eq!(an.terms(&t), want, "pass {pass}: {t:?}");
                    hits += usize::from(!want.is_empty());
                }
            }
        }
        // Stopped where asked.
        let mut seen = 0;
        for_each_word(&an.jieba, "暴雨 flood 积水", |_, _| {
            seen += 1;
            seen == 2
        });
        assert_eq!(seen, 2);
        assert!(
            texts.len() > 15_000 && hits > 10_000,
            "{} {hits}",
            texts.len()
        );
        BLOCK_MEMO.with_borrow(|m| {
            assert!(!m.cuts.is_empty() && m.cuts.len() <= BLOCK_MEMO_ENTRIES);
            assert!(m.cuts.keys().all(|k| k.len() <= BLOCK_MEMO_BYTES));
        });
    }

    #[test]
    fn new_with_runs_beside_the_dictionary_load_and_builds_the_same_analyzer() {
        let here = std::thread::current().id();
        let (an, (ran_on, text)) = Analyzer::new_with(|n| {
            (
                std::thread::current().id(),
                n.normalize("北京暴雨積水").into_owned(),
            )
        });
        assert_eq!(ran_on, here);
        assert_eq!(text, "北京暴雨积水");
        let words = an.terms(&text);
        assert!(words.contains(&"暴雨".to_string()), "{words:?}");
        assert_eq!(words, Analyzer::new().terms(&text));
        assert_eq!(
            format!("{:?}", an.jieba),
            format!("{:?}", Analyzer::new().jieba)
        );
    }

    #[test]
    fn the_embedded_dictionary_is_jiebas_own() {
        let ours = jieba_with_its_dictionary();
        let theirs = Jieba::new();
        // The Debug form holds the number of words and the sum of their frequencies.
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        assert!(
            format!("{ours:?}").contains("records_len: 349045"),
            "{ours:?}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(JIEBA_DICT_GZ)
            .read_to_string(&mut text)
            .expect("gzip");
        let mut words = 0;
        for line in text.lines() {
            let word = line.split(' ').next().expect("a word on every line");
            assert!(ours.has_word(word) && theirs.has_word(word), "{word}");
            words += 1;
        }
        assert_eq!(words, 349_045);
        // Segmentation reads the frequencies: the same cuts on the fixtures' Chinese posts.
        let fixture = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/flood_haidian.jsonl"
        ))
        .expect("fixture");
        assert!(fixture
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)));
        for hmm in [false, true] {
            assert_eq!(ours.cut(&fixture, hmm), theirs.cut(&fixture, hmm));
            assert_eq!(
                ours.cut_for_search(&fixture, hmm),
                theirs.cut_for_search(&fixture, hmm)
            );
        }
    }
}
