//! Terms of every mention for the detector of emerging incidents (bursts no rule names), and the
//! bounded-memory sketch that counts them.
//!
//! Terms are what a post is about in any language without a dictionary: Chinese (any Han text)
//! as character bigrams, other scripts as words of three or more letters; links, `@handles`,
//! numbers and stop words never count, nor a bigram holding a function character (的, 了, 是 …).
//! They are taken on every mention by the analysis workers ([`terms`]), as hashes with their
//! place in the normalised text, so the engine names only the few terms that matter.
//!
//! [`TermSketch`] counts them per event-time bucket in a count-min sketch (two rows of
//! [`SKETCH_WIDTH`] counters) beside a second sketch holding each cell's EWMA over past buckets:
//! its memory is fixed whatever the input rate ([`TermSketch::bytes`]), and the estimate of a
//! term's count is never below the truth. The engine (`incidents::engine::emerging`) follows
//! the few terms whose estimate rises far above their baseline exactly, by distinct author.

/// Terms taken from one mention at most (the first ones in text order).
pub const MAX_TERMS: usize = 48;
/// Counters per sketch row (a power of two).
pub const SKETCH_WIDTH: usize = 1 << 16;
const ROWS: usize = 2;

/// One term of a mention: its hash and where it is in the normalised text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// Stable hash of the term's text ([`term_hash`]).
    pub hash: u64,
    /// Byte offset in the normalised text.
    pub start: u32,
    /// Byte length.
    pub len: u16,
}

impl Term {
    /// The term's text in `text` (the normalised text it was taken from).
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        let s = self.start as usize;
        text.get(s..s + usize::from(self.len)).unwrap_or("")
    }
}

/// English stop words: function words and platform boilerplate, which every stream is full of.
pub const EN_STOP: &[&str] = &[
    "the",
    "and",
    "for",
    "are",
    "but",
    "not",
    "you",
    "all",
    "any",
    "can",
    "her",
    "was",
    "one",
    "our",
    "out",
    "has",
    "his",
    "how",
    "its",
    "who",
    "did",
    "yes",
    "get",
    "got",
    "this",
    "that",
    "with",
    "have",
    "from",
    "they",
    "will",
    "just",
    "what",
    "when",
    "your",
    "been",
    "were",
    "amp",
    "him",
    "she",
    "them",
    "their",
    "there",
    "then",
    "than",
    "about",
    "would",
    "could",
    "should",
    "into",
    "over",
    "after",
    "before",
    "more",
    "most",
    "some",
    "such",
    "only",
    "also",
    "very",
    "like",
    "love",
    "lol",
    "omg",
    "haha",
    "now",
    "new",
    "today",
    "tonight",
    "tomorrow",
    "day",
    "night",
    "time",
    "good",
    "great",
    "best",
    "happy",
    "know",
    "think",
    "want",
    "need",
    "make",
    "going",
    "gonna",
    "wanna",
    "don",
    "didn",
    "can't",
    "i'm",
    "it's",
    "via",
    "retweet",
    "follow",
    "please",
    "thanks",
    "thank",
    "people",
    "here",
    "still",
    "back",
    "being",
    "because",
    "why",
    "where",
    "which",
    "while",
    "every",
    "really",
    "right",
    "see",
    "say",
    "says",
    "said",
    "too",
    "off",
    "way",
    "well",
    "even",
    "much",
    "many",
    "other",
    "these",
    "those",
    "let",
    "let's",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekend",
    "week",
    "year",
    "morning",
    "http",
    "https",
    "www",
    "com",
    "html",
    "bit",
    "ly",
    // Contractions, auxiliaries and everyday words and interjections: never news, always
    // counted (they topped the terms of a day of real tweets).
    "don't",
    "doesn't",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "won't",
    "wouldn't",
    "couldn't",
    "shouldn't",
    "haven't",
    "hasn't",
    "hadn't",
    "that's",
    "there's",
    "what's",
    "who's",
    "you're",
    "we're",
    "they're",
    "i've",
    "you've",
    "we've",
    "they've",
    "i'll",
    "you'll",
    "we'll",
    "they'll",
    "i'd",
    "you'd",
    "he's",
    "she's",
    "had",
    "does",
    "doing",
    "done",
    "down",
    "home",
    "ours",
    "yours",
    "hers",
    "own",
    "same",
    "few",
    "both",
    "each",
    "again",
    "further",
    "once",
    "under",
    "until",
    "above",
    "below",
    "between",
    "through",
    "during",
    "against",
    "whom",
    "whose",
    "may",
    "might",
    "must",
    "shall",
    "two",
    "yet",
    "ever",
    "never",
    "always",
    "come",
    "came",
    "getting",
    "went",
    "goes",
    "look",
    "looks",
    "take",
    "tell",
    "thing",
    "things",
    "something",
    "anything",
    "nothing",
    "everything",
    "someone",
    "everyone",
    "guys",
    "guy",
    "man",
    "shit",
    "fuck",
    "fucking",
    "damn",
    "ass",
    "yeah",
    "okay",
    "hey",
    "wow",
    "lmao",
    "dont",
    "cant",
    "thats",
    "ive",
    "youre",
    "didnt",
    "doesnt",
    "isnt",
    "wont",
    "better",
    "feel",
    "feels",
    "last",
    "wish",
    "first",
    "hope",
    "real",
    "stop",
    "bad",
    "hate",
    "keep",
    "god",
    "life",
    "lot",
    "little",
    "big",
    "long",
    "old",
    "sure",
    "since",
    "ago",
    "already",
    "maybe",
    "actually",
    "probably",
    "literally",
    "pretty",
    "another",
    "around",
    "away",
    "without",
    "everybody",
    "anyone",
    "nobody",
    "gets",
    "didn't",
    "made",
    "next",
    "give",
];

/// Characters that make a Chinese bigram a function-word pair, not a term (的人, 了一, 我们).
const ZH_STOP_CHARS: &str =
    "的了吗呢吧啊呀哦嗯是我你他她它这那们个么就都也还很在和与及把被让给不没有着过又再才而之其或";

/// [`ZH_STOP_CHARS`] as a bitmap, and the hashes of [`ZH_STOP`] and [`EN_STOP`]: looked up for
/// every term of every mention, so by bit and hash, not by scanning the lists.
struct Stops {
    /// One bit per character of the Basic Multilingual Plane (8 KB): every stop character is
    /// in it.
    chars: Vec<u64>,
    /// One bit per character of the Basic Multilingual Plane: `char::is_alphanumeric` of each,
    /// looked up once (most text is CJK and its punctuation, which the standard library
    /// answers with a table search per character).
    alnum: Vec<u64>,
    /// A filter of `terms`: most terms are no stop term, and one bit tells (a set's look-up is
    /// a hash of its own).
    term_bits: TermFilter,
    terms: ahash::AHashSet<u64>,
}

/// A one-hash Bloom filter of term hashes (64 Kbit, 8 KB: in L1): "certainly not in the set"
/// for most terms with one bit, before a hash set is looked at.
#[derive(Debug, Clone)]
pub struct TermFilter {
    bits: Vec<u64>,
}

impl Default for TermFilter {
    fn default() -> Self {
        TermFilter {
            bits: vec![0; (1 << 16) / 64],
        }
    }
}

impl TermFilter {
    #[inline]
    fn bit(hash: u64) -> (usize, u64) {
        let b = (hash >> 48) as usize;
        (b / 64, 1 << (b % 64))
    }

    /// Add `hash`.
    pub fn insert(&mut self, hash: u64) {
        let (w, m) = Self::bit(hash);
        self.bits[w] |= m;
    }

    /// False when `hash` was certainly never added.
    #[inline]
    pub fn may_contain(&self, hash: u64) -> bool {
        let (w, m) = Self::bit(hash);
        self.bits[w] & m != 0
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|x| *x = 0);
    }
}

fn stops() -> &'static Stops {
    static S: std::sync::OnceLock<Stops> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let mut chars = vec![0u64; 0x1_0000 / 64];
        for c in ZH_STOP_CHARS.chars() {
            let c = c as usize;
            chars[c / 64] |= 1 << (c % 64);
        }
        let terms: ahash::AHashSet<u64> = ZH_STOP
            .iter()
            .chain(EN_STOP)
            .map(|t| term_hash(t))
            .collect();
        let mut term_bits = TermFilter::default();
        for h in &terms {
            term_bits.insert(*h);
        }
        let mut alnum = vec![0u64; 0x1_0000 / 64];
        for c in (0..0x1_0000u32).filter_map(char::from_u32) {
            if c.is_alphanumeric() {
                let c = c as usize;
                alnum[c / 64] |= 1 << (c % 64);
            }
        }
        Stops {
            chars,
            alnum,
            term_bits,
            terms,
        }
    })
}

/// `c.is_alphanumeric()`, by the table for the Basic Multilingual Plane.
#[inline]
fn is_alnum(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    let i = c as usize;
    match stops().alnum.get(i / 64) {
        Some(w) => w & (1 << (i % 64)) != 0,
        None => c.is_alphanumeric(),
    }
}

impl Stops {
    #[inline]
    fn is_stop_char(&self, c: char) -> bool {
        let c = c as usize;
        self.chars
            .get(c / 64)
            .is_some_and(|w| w & (1 << (c % 64)) != 0)
    }
}

/// Chinese bigrams that are frequent everywhere: platform boilerplate, weekdays, holidays.
pub const ZH_STOP: &[&str] = &[
    "转发", "发微", "微博", "分享", "图片", "链接", "网页", "视频", "全文", "评论", "回复", "点赞",
    "关注", "博主", "今天", "明天", "昨天", "现在", "时候", "星期", "周一", "周二", "周三", "周四",
    "周五", "周六", "周日", "周末", "春节", "元旦", "国庆", "中秋", "端午", "假期", "放假", "大家",
    "自己", "什么", "怎么", "可以", "如果", "因为", "所以", "但是", "然后", "已经", "真是", "真的",
    "一下", "一起", "一样", "知道", "觉得", "喜欢", "希望", "中国", "朋友", "哈哈", "呵呵", "谢谢",
    "应该", "出来", "起来", "不是", "这样", "那样", "还是", "就是", "只是", "一直", "一定", "一点",
    "时间", "看到", "终于", "其实", "还有", "为什", "为了", "可能", "需要", "开始", "快乐", "生日",
];

fn is_han(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Chinese bigrams that chain (the last character of one is the first of the next: 流星 + 星雨
/// → 流星雨, 一颗 + 颗陨 + 陨石 → 一颗陨石) and whose counts `joinable` accepts, joined into
/// phrases of at most 8 characters. Most frequent first (then by name), joined in that order;
/// each phrase with its count (its least frequent part's) and the terms it is made of.
pub fn chain_bigrams(
    mut terms: Vec<(String, u64)>,
    joinable: impl Fn(u64, u64) -> bool,
) -> Vec<(String, u64, Vec<String>)> {
    terms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut out: Vec<(String, u64, Vec<String>)> = terms
        .into_iter()
        .map(|(t, n)| (t.clone(), n, vec![t]))
        .collect();
    let han = |s: &str| s.chars().all(|c| !c.is_ascii());
    loop {
        let mut join = None;
        'find: for i in 0..out.len() {
            for j in 0..out.len() {
                let (a, b) = (&out[i], &out[j]);
                if i != j
                    && joinable(a.1, b.1)
                    && han(&a.0)
                    && han(&b.0)
                    && a.0.chars().count() + b.0.chars().count() <= 9
                    && a.0.chars().last().is_some()
                    && a.0.chars().last() == b.0.chars().next()
                {
                    join = Some((i, j));
                    break 'find;
                }
            }
        }
        let Some((i, j)) = join else {
            break;
        };
        let (b, nb, parts) = out.remove(j);
        let i = if j < i { i - 1 } else { i };
        let rest: String = b.chars().skip(1).collect();
        out[i].0.push_str(&rest);
        out[i].1 = out[i].1.min(nb);
        out[i].2.extend(parts);
    }
    out
}

/// A chained Chinese phrase cut where the texts holding it show it splitting a word: when the
/// character before it and its first character are a stop word (看到 in 看到一颗陨石落下来:
/// a stop word never counts as a term, so the chain started on 到一), that first character is
/// the word's, not the phrase's; so at its end. Cut when at least half of the texts holding it
/// show the split; a phrase keeps two characters at least.
pub fn trim_phrase(phrase: &str, texts: &[&str]) -> String {
    let chars: Vec<char> = phrase.chars().collect();
    if chars.len() < 3 || !chars.iter().all(|c| is_han(*c)) {
        return phrase.to_string();
    }
    let is_stop_word = |a: char, b: char| {
        let mut w = String::with_capacity(8);
        w.push(a);
        w.push(b);
        stops().terms.contains(&term_hash(&w))
    };
    let (mut holding, mut head, mut tail) = (0usize, 0usize, 0usize);
    for t in texts {
        let Some(at) = t.find(phrase) else {
            continue;
        };
        holding += 1;
        if t[..at]
            .chars()
            .next_back()
            .is_some_and(|p| is_stop_word(p, chars[0]))
        {
            head += 1;
        }
        if t[at + phrase.len()..]
            .chars()
            .next()
            .is_some_and(|n| is_stop_word(chars[chars.len() - 1], n))
        {
            tail += 1;
        }
    }
    let split = |n: usize| holding > 0 && n * 2 >= holding;
    let mut from = 0;
    let mut to = chars.len();
    if split(head) {
        from += 1;
    }
    if split(tail) && to - from > 2 {
        to -= 1;
    }
    if to - from < 2 {
        return phrase.to_string();
    }
    chars[from..to].iter().collect()
}

/// The hash of a term's text (what [`Term::hash`] holds): the same in every run, kept in memory
/// only.
#[inline]
pub fn term_hash(text: &str) -> u64 {
    crate::fast_hash(text.as_bytes())
}

/// The terms of every region's names (official, short forms, English, pinyin: "haidian",
/// "district"): a place is where an
/// event happens, not the event, and an incident names its region already. Without them a
/// district's name bursts with every busy hour there, and a burst posted in that district
/// joins the district's incident instead of opening its own.
pub fn place_terms(g: &crate::detect::gazetteer::Gazetteer) -> ahash::AHashSet<u64> {
    let mut out = ahash::AHashSet::new();
    for i in 0..g.len() as u32 {
        let r = g.get(i);
        for name in [&r.name, &r.name_en]
            .into_iter()
            .chain(&r.aliases)
            .chain(&r.en)
        {
            for_each_term(&name.to_lowercase(), |t| {
                out.insert(t.hash);
                true
            });
        }
    }
    out
}

/// The terms of normalised `text`, each once, in text order, at most [`MAX_TERMS`].
pub fn terms(text: &str) -> Vec<Term> {
    let mut out: Vec<Term> = Vec::with_capacity(MAX_TERMS.min(text.len() / 2 + 1));
    // One bit per hash's low eight bits: a term whose bit is clear is new without a scan of
    // the terms so far (64 bits were mostly set by the 30th term of a long post, and each set
    // bit cost a scan).
    let mut bits = [0u64; 4];
    for_each_term(text, |t| {
        if out.len() >= MAX_TERMS {
            return false;
        }
        let (word, bit) = ((t.hash >> 6 & 3) as usize, 1u64 << (t.hash & 63));
        if bits[word] & bit == 0 || !out.iter().any(|o| o.hash == t.hash) {
            bits[word] |= bit;
            out.push(t);
        }
        true
    });
    out
}

/// Call `f` with every term of `text` in text order (repeats included) until it answers false.
///
/// One pass over the characters: a run of non-whitespace characters is a chunk (links are
/// skipped whole); in a chunk, Han characters make bigrams unless a stop character is one of the
/// two, and runs of letters and digits (and apostrophes) make words; `@handles` and Weibo
/// emoticon codes (`[蜡烛]`) make neither.
fn for_each_term(text: &str, mut f: impl FnMut(Term) -> bool) {
    let st = stops();
    // Per chunk: its previous character when Han (offset, and whether a stop character), the
    // start of the word being read, inside an emoticon code or a handle, or a link to skip.
    let mut prev_han: Option<(usize, bool)> = None;
    let mut word_start: Option<usize> = None;
    let (mut in_emoticon, mut in_handle) = (false, false);
    let mut in_chunk = false;
    let mut skip = false;
    let mut it = text.char_indices();
    loop {
        let next = it.next();
        let (i, c) = next.unwrap_or((text.len(), ' '));
        if is_ws(c) {
            // The chunk ends: the word being read is flushed.
            if let Some(ws) = word_start.take() {
                if !flush_word(st, text, ws, i, &mut f) {
                    return;
                }
            }
            if next.is_none() {
                return;
            }
            (in_chunk, skip) = (false, false);
            continue;
        }
        if !in_chunk {
            in_chunk = true;
            let rest = &text[i..];
            skip = rest.starts_with("http://")
                || rest.starts_with("https://")
                || rest.starts_with("www.");
            prev_han = None;
            (in_emoticon, in_handle) = (false, false);
        }
        if skip {
            continue;
        }
        let han = is_han(c);
        let alnum = !han && is_alnum(c);
        if han || !(alnum || c == '\'') {
            if let Some(ws) = word_start.take() {
                if !flush_word(st, text, ws, i, &mut f) {
                    return;
                }
            }
        } else if word_start.is_none() && !in_handle && !in_emoticon {
            word_start = Some(i);
        }
        if c == '[' {
            in_emoticon = emoticon_follows(&text[i + 1..]);
        } else if c == ']' {
            in_emoticon = false;
        }
        if c == '@' {
            in_handle = true;
        } else if !(han || alnum || c == '_' || c == '-') {
            in_handle = false;
        }
        if han && !in_handle && !in_emoticon {
            let stop = st.is_stop_char(c);
            if let Some((pi, pstop)) = prev_han {
                if !pstop && !stop {
                    let bigram = &text[pi..i + c.len_utf8()];
                    if !emit(st, bigram, pi, &mut f) {
                        return;
                    }
                }
            }
            prev_han = Some((i, stop));
        } else {
            prev_han = None;
        }
    }
}

/// The word read from `ws` to `end` in `text`, apostrophes trimmed, to `f` when it is one to
/// keep; false when `f` wants no more.
fn flush_word(
    st: &Stops,
    text: &str,
    ws: usize,
    end: usize,
    f: &mut impl FnMut(Term) -> bool,
) -> bool {
    let raw = &text[ws..end];
    let w = raw.trim_matches('\'');
    // `w` is a part of `raw`: its offset without searching.
    let off = ws + (w.as_ptr() as usize - raw.as_ptr() as usize);
    !keep_word(w) || emit(st, w, off, f)
}

/// Whether the text after a `[` closes it within six characters of the same chunk (a Weibo
/// emoticon code: `[泪]`, `[doge]`).
fn emoticon_follows(rest: &str) -> bool {
    for c in rest.chars().take(7) {
        if c == ']' {
            return true;
        }
        if is_ws(c) {
            return false;
        }
    }
    false
}

/// `char::is_whitespace`, with the few non-ASCII white spaces named: most text is CJK, which the
/// standard library answers with a table search per character.
#[inline]
fn is_ws(c: char) -> bool {
    match c as u32 {
        0x09..=0x0D | 0x20 => true,
        0..=0x84 => false,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000 => true,
        _ => false,
    }
}

/// Hand `w` to `f` unless it is a stop term; false when `f` wants no more.
fn emit(st: &Stops, w: &str, off: usize, f: &mut impl FnMut(Term) -> bool) -> bool {
    let hash = term_hash(w);
    if st.term_bits.may_contain(hash) && st.terms.contains(&hash) {
        return true;
    }
    f(Term {
        hash,
        start: off as u32,
        len: w.len().min(usize::from(u16::MAX)) as u16,
    })
}

fn keep_word(w: &str) -> bool {
    let n = w.chars().count();
    (3..=30).contains(&n) && !w.chars().all(|c| c.is_ascii_digit() || c == '\'')
}

#[cfg(test)]
fn split_ws(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// The text of the term with hash `hash` in normalised `text`, if it has one.
pub fn term_text(text: &str, hash: u64) -> Option<&str> {
    let mut found = None;
    for_each_term(text, |t| {
        if t.hash == hash {
            found = Some(t);
            return false;
        }
        true
    });
    found.map(|t| t.text(text))
}

/// Counts of every term per event-time bucket, and an EWMA of past buckets, in two count-min
/// sketches of fixed size.
#[derive(Debug, Clone)]
pub struct TermSketch {
    /// Index of the bucket being counted.
    bucket: i64,
    cur: Vec<u32>,
    base: Vec<f32>,
    /// Buckets rolled into the baseline so far.
    pub rolled: u64,
    /// The sketch began in the second half of the bucket being counted: it has seen less than
    /// half of it.
    partial: bool,
}

impl Default for TermSketch {
    fn default() -> Self {
        TermSketch {
            bucket: i64::MIN,
            cur: vec![0; ROWS * SKETCH_WIDTH],
            base: vec![0.0; ROWS * SKETCH_WIDTH],
            rolled: 0,
            partial: false,
        }
    }
}

#[inline]
fn cells(hash: u64) -> [usize; ROWS] {
    let mask = SKETCH_WIDTH as u64 - 1;
    [
        (hash & mask) as usize,
        SKETCH_WIDTH + ((hash >> 32) & mask) as usize,
    ]
}

impl TermSketch {
    /// Memory held, in bytes (fixed).
    pub fn bytes(&self) -> usize {
        self.cur.len() * 4 + self.base.len() * 4
    }

    /// Move to the bucket of event time `now` (ms; buckets of `bucket_ms`): every bucket that
    /// ends is folded into the baseline with `decay` (per bucket). Earlier buckets change
    /// nothing.
    ///
    /// The first bucket, when the sketch began in its second half, is not folded, and the next
    /// one is the baseline's first: a bucket seen in part holds a part of every term's rate, and
    /// against that baseline every everyday word of the next bucket rose threefold half-way
    /// through it (a service started 50 s into a minute followed them all for 30 s, at half its
    /// speed).
    pub fn roll(&mut self, now: i64, bucket_ms: i64, decay: f32) {
        let bucket_ms = bucket_ms.max(1);
        let b = now.div_euclid(bucket_ms);
        if self.bucket == i64::MIN {
            self.bucket = b;
            self.partial = now.rem_euclid(bucket_ms) * 2 > bucket_ms;
            return;
        }
        if b <= self.bucket {
            return;
        }
        let gap = (b - self.bucket).min(10_000) as i32;
        if std::mem::take(&mut self.partial) {
            self.cur.fill(0);
            self.bucket = b;
            // The empty buckets after it are whole (and the baseline, all 0, stays 0).
            self.rolled += gap as u64 - 1;
            return;
        }
        // The bucket that ends, then `gap - 1` empty ones.
        let keep = decay.powi(gap - 1);
        for (base, cur) in self.base.iter_mut().zip(self.cur.iter_mut()) {
            *base = (*base * decay + (1.0 - decay) * *cur as f32) * keep;
            *cur = 0;
        }
        self.rolled += gap as u64;
        self.bucket = b;
    }

    /// Count one occurrence of `hash` in the current bucket; the new estimate.
    #[inline]
    pub fn add(&mut self, hash: u64) -> u32 {
        let [a, b] = cells(hash);
        let x = self.cur[a].saturating_add(1);
        let y = self.cur[b].saturating_add(1);
        self.cur[a] = x;
        self.cur[b] = y;
        x.min(y)
    }

    /// Index (event time / bucket width) of the bucket being counted (`i64::MIN` before the
    /// first).
    pub fn bucket(&self) -> i64 {
        self.bucket
    }

    /// Estimated count of `hash` in the current bucket (never below the truth).
    pub fn count(&self, hash: u64) -> u32 {
        let [a, b] = cells(hash);
        self.cur[a].min(self.cur[b])
    }

    /// Estimated EWMA of `hash` per bucket over past buckets (never below the truth's EWMA),
    /// raw: while few buckets have passed it is biased towards 0 (see
    /// [`TermSketch::baseline_corrected`]).
    pub fn baseline(&self, hash: u64) -> f64 {
        let [a, b] = cells(hash);
        f64::from(self.base[a].min(self.base[b]))
    }

    /// The baseline corrected for its start from 0 (divided by 1 − decay^buckets rolled, as
    /// Adam's moment estimates are), so after a few buckets it is the mean rate, not a fraction
    /// of it.
    pub fn baseline_corrected(&self, hash: u64, decay: f32) -> f64 {
        self.baseline_with(hash, self.correction(decay))
    }

    /// The divisor of [`TermSketch::baseline_corrected`] (1 − decay^buckets rolled): the same
    /// for every term until the next roll, so a sweep computes it once.
    pub fn correction(&self, decay: f32) -> f64 {
        1.0 - f64::from(decay).powf(self.rolled as f64)
    }

    /// [`TermSketch::baseline_corrected`] with its divisor ([`TermSketch::correction`]).
    pub fn baseline_with(&self, hash: u64, correction: f64) -> f64 {
        if correction <= 0.0 {
            return 0.0;
        }
        self.baseline(hash) / correction
    }
}

/// [`for_each_term`] as it was first written: whitespace-separated chunks, each scanned again
/// (the reference the one-pass scan is tested against).
#[cfg(test)]
fn for_each_term_chunked(text: &str, mut f: impl FnMut(Term) -> bool) {
    for (chunk_start, chunk) in split_ws(text) {
        if chunk.starts_with("http://")
            || chunk.starts_with("https://")
            || chunk.starts_with("www.")
        {
            continue;
        }
        let mut prev_han: Option<(usize, char)> = None;
        // Inside a Weibo emoticon code (`[蜡烛]`, `[泪]`, `[doge]`): platform boilerplate.
        let mut in_emoticon = false;
        let mut word_start: Option<usize> = None;
        // Inside an `@handle` (Latin or Chinese): it names an account, not a topic.
        let mut in_handle = false;
        let mut it = chunk.char_indices();
        loop {
            let next = it.next();
            let (i, c) = next.unwrap_or((chunk.len(), ' '));
            let han = next.is_some() && is_han(c);
            let alnum = !han && is_alnum(c);
            let wordy = next.is_some() && !han && (alnum || c == '\'');
            if !wordy {
                if let Some(ws) = word_start.take() {
                    let raw = &chunk[ws..i];
                    let w = raw.trim_matches('\'');
                    // `w` is a part of `raw`: its offset without searching.
                    let off = chunk_start + ws + (w.as_ptr() as usize - raw.as_ptr() as usize);
                    if keep_word(w) && !emit(stops(), w, off, &mut f) {
                        return;
                    }
                }
            } else if word_start.is_none() && !in_handle && !in_emoticon {
                word_start = Some(i);
            }
            if next.is_none() {
                break;
            }
            if c == '[' {
                in_emoticon = chunk[i + 1..]
                    .find(']')
                    .is_some_and(|end| chunk[i + 1..i + 1 + end].chars().count() <= 6);
            } else if c == ']' {
                in_emoticon = false;
            }
            if c == '@' {
                in_handle = true;
            } else if !(han || alnum || c == '_' || c == '-') {
                in_handle = false;
            }
            if han && !in_handle && !in_emoticon {
                if let Some((pi, pc)) = prev_han {
                    if !stops().is_stop_char(pc) && !stops().is_stop_char(c) {
                        let bigram = &chunk[pi..i + c.len_utf8()];
                        if !emit(stops(), bigram, chunk_start + pi, &mut f) {
                            return;
                        }
                    }
                }
                prev_han = Some((i, c));
            } else {
                prev_han = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &str) -> Vec<&str> {
        terms(t).iter().map(|x| x.text(t)).collect()
    }

    #[test]
    fn white_space_is_the_standard_librarys() {
        for c in (0..0x11_0000u32).filter_map(char::from_u32) {
            assert_eq!(is_ws(c), c.is_whitespace(), "U+{:04X}", c as u32);
        }
    }

    /// Every term (and where it is) of `text`, by `scan`, stopping after `stop` terms.
    fn all_terms(
        scan: fn(&str, &mut dyn FnMut(Term) -> bool),
        text: &str,
        stop: usize,
    ) -> Vec<Term> {
        let mut out = Vec::new();
        scan(text, &mut |t| {
            out.push(t);
            out.len() < stop
        });
        out
    }

    #[test]
    fn the_one_pass_scan_finds_the_terms_the_chunked_scan_finds() {
        use std::io::BufRead;
        let one: fn(&str, &mut dyn FnMut(Term) -> bool) = |t, f| for_each_term(t, f);
        let chunked: fn(&str, &mut dyn FnMut(Term) -> bool) = |t, f| for_each_term_chunked(t, f);
        // Every string of up to five pieces of these (links, handles, emoticon codes, stop
        // characters, apostrophes, every kind of white space).
        let pieces = [
            "雾", "霾", "的", "a", "bc", "1", "'", "[", "]", "@", "_", "-", " ", "\u{3000}", "\n",
            "http://", "www.", "😀", "é", "[泪]",
        ];
        let mut texts: Vec<String> = vec![String::new()];
        let mut level: Vec<String> = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for t in &level {
                for p in pieces {
                    next.push(format!("{t}{p}"));
                }
            }
            texts.extend(next.iter().cloned());
            level = next;
        }
        let n = crate::normalize::Normalizer::new();
        for f in [
            "tests/data/flood_haidian.jsonl",
            "tests/data/eval/bursts.jsonl",
        ] {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                texts.push(n.normalize(v["text"].as_str().unwrap_or("")).into_owned());
            }
        }
        let gz = std::fs::File::open("tests/data/crisislex/crisislex_t6.jsonl.gz").unwrap();
        let gz = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
        for line in gz.lines().take(20_000) {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            texts.push(n.normalize(v["text"].as_str().unwrap_or("")).into_owned());
        }
        let mut found = 0;
        for t in &texts {
            let all = all_terms(one, t, usize::MAX);
            assert_eq!(all, all_terms(chunked, t, usize::MAX), "{t:?}");
            // Stopped early, both stop at the same term.
            for stop in [1, 3] {
                assert_eq!(
                    all_terms(one, t, stop),
                    all_terms(chunked, t, stop),
                    "{t:?}"
                );
            }
            found += all.len();
        }
        assert!(
            texts.len() > 3_000_000 && found > 300_000,
            "{} {found}",
            texts.len()
        );
    }

    #[test]
    fn the_alphanumeric_table_agrees_with_the_standard_library() {
        for c in (0..0x11_0000u32).step_by(7).filter_map(char::from_u32) {
            assert_eq!(
                is_alnum(c),
                c.is_alphanumeric(),
                "{:?} U+{:04X}",
                c,
                c as u32
            );
        }
        for c in ['〇', '々', '〆', '，', '。', 'Ａ', '１', '①', 'é', '😀'] {
            assert_eq!(is_alnum(c), c.is_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn chinese_bigrams_and_words_without_links_handles_or_stop_words() {
        assert_eq!(
            texts("东郊化工厂冒黑烟 @某人abc: http://t.cn/xyz @人民日报 "),
            ["东郊", "郊化", "化工", "工厂", "厂冒", "冒黑", "黑烟"]
        );
        // Function characters end bigrams; boilerplate never counts.
        assert_eq!(texts("我的天 转发微博"), Vec::<&str>::new());
        assert_eq!(
            texts("huge #meteor over chelyabinsk!! 2013 the sky it's"),
            ["huge", "meteor", "chelyabinsk", "sky"]
        );
        // Weibo emoticon codes are boilerplate.
        assert_eq!(
            texts("[蜡烛][蜡烛]逝者安息[doge]"),
            ["逝者", "者安", "安息"]
        );
        // Other scripts are words too.
        assert_eq!(texts("метеорит упал"), ["метеорит", "упал"]);
        // Each term once.
        assert_eq!(texts("雾霾 雾霾 雾霾"), ["雾霾"]);
        let t = "雾霾严重";
        for x in terms(t) {
            assert_eq!(term_text(t, x.hash), Some(x.text(t)));
        }
    }

    #[test]
    fn a_phrase_is_cut_where_the_texts_show_it_splitting_a_word() {
        let texts = [
            "我刚才看到一颗陨石落下来了",
            "看到一颗陨石落下来，好大",
            "天上一颗陨石落下来",
        ];
        // Two of the three texts holding it split 看到.
        assert_eq!(trim_phrase("到一颗陨石落下来", &texts), "一颗陨石落下来");
        // At the end too (大家 is a stop word: 大 is its, not the phrase's).
        assert_eq!(
            trim_phrase("城区暴雨大", &["城区暴雨大家注意安全"]),
            "城区暴雨"
        );
        // Not shown by the texts, or too short, or not Chinese: as it is.
        assert_eq!(trim_phrase("流星雨", &["今晚的流星雨真美"]), "流星雨");
        assert_eq!(trim_phrase("到一", &texts), "到一");
        assert_eq!(trim_phrase("meteor", &["a meteor"]), "meteor");
        assert_eq!(trim_phrase("到一颗陨石", &[]), "到一颗陨石");
    }

    #[test]
    fn each_term_once_in_text_order_as_a_plain_scan_finds_them() {
        // Texts with many repeats (the filter of seen hashes fills), past MAX_TERMS distinct
        // terms, and Chinese bigrams mixed with words.
        let texts = [
            (0..300)
                .map(|i| format!("word{} ", i % 70))
                .collect::<String>(),
            "暴雨暴雨暴雨 红色预警 暴雨红色预警发布 rain rain storm 暴雨".repeat(20),
            "今天天气很好我们去公园散步然后回家吃饭看电视剧睡觉".repeat(5),
            {
                let c: Vec<char> = "城市区域道路河流山林".chars().collect();
                (0..200)
                    .map(|i| format!("{}{}{} ", c[i % 10], c[i % 7], c[i % 3]))
                    .collect::<String>()
            },
        ];
        for text in &texts {
            let mut want: Vec<Term> = Vec::new();
            for_each_term(text, |t| {
                if !want.iter().any(|w| w.hash == t.hash) {
                    want.push(t);
                }
                true
            });
            want.truncate(MAX_TERMS);
            assert!(want.len() > 5, "{text}");
            assert_eq!(terms(text), want, "{text}");
        }
    }

    #[test]
    fn at_most_max_terms_per_mention() {
        let long: String = (0..500).map(|i| format!("word{i} ")).collect();
        assert_eq!(terms(&long).len(), MAX_TERMS);
    }

    #[test]
    fn the_sketch_never_counts_below_the_truth_and_its_memory_is_fixed() {
        let mut s = TermSketch::default();
        let bytes = s.bytes();
        s.roll(0, 1000, 0.9);
        let mut truth = std::collections::HashMap::new();
        for i in 0..200_000u64 {
            let h = term_hash(&format!("t{}", i % 50_000));
            s.add(h);
            *truth.entry(h).or_insert(0u32) += 1;
        }
        for (h, n) in &truth {
            assert!(s.count(*h) >= *n);
        }
        // Overestimates are small for most terms at this load.
        let close = truth
            .iter()
            .filter(|(h, n)| s.count(**h) <= **n + 4)
            .count();
        assert!(close * 10 >= truth.len() * 9, "{close} of {}", truth.len());
        assert_eq!(s.bytes(), bytes);
        // Rolling folds the bucket into the baseline and empties it.
        let h = term_hash("t1");
        let before = s.count(h);
        s.roll(1999, 1000, 0.9);
        assert_eq!(s.count(h), 0);
        assert!((s.baseline(h) - 0.1 * f64::from(before)).abs() < 1e-3);
        assert_eq!(s.rolled, 1);
        s.roll(3000, 1000, 0.9);
        assert!((s.baseline(h) - 0.1 * f64::from(before) * 0.81).abs() < 1e-3);
        assert_eq!(s.rolled, 3);
    }

    #[test]
    fn a_first_bucket_seen_less_than_half_is_not_in_the_baseline() {
        let h = term_hash("停水");
        // Begun at 0.4 of the bucket (more than half seen): folded as every bucket is.
        let mut s = TermSketch::default();
        s.roll(400, 1000, 0.9);
        s.add(h);
        s.roll(1000, 1000, 0.9);
        assert_eq!((s.rolled, s.count(h)), (1, 0));
        assert!((s.baseline(h) - 0.1).abs() < 1e-6);
        // Begun at 0.6 (less than half seen): dropped; the next bucket is the baseline's first,
        // and buckets that pass empty after it are counted as whole.
        for (next, rolled) in [(1000, 0), (3500, 2)] {
            let mut s = TermSketch::default();
            s.roll(600, 1000, 0.9);
            s.add(h);
            s.roll(next, 1000, 0.9);
            assert_eq!((s.rolled, s.count(h), s.baseline(h)), (rolled, 0, 0.0));
            s.add(h);
            s.roll(next + 1000, 1000, 0.9);
            assert!((s.baseline(h) - 0.1).abs() < 1e-6, "then folded as usual");
        }
    }
}
