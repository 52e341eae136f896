//! What the rumor model reads: hashed character n-grams of a post's text, the features of one
//! post beyond its words, and the running counts of a cascade. The engine and the trainer use
//! exactly these functions, so a cascade scored live scores as it did in training.

use crate::detect::analyze::Cues;

/// Character n-gram orders hashed (1, 2 and 3).
const MAX_N: usize = 3;
/// Characters of a text looked at (a long post's tail adds little).
const MAX_CHARS: usize = 280;

/// Mix a character sequence into a bucket hash (the same in every process and run).
#[inline]
fn mix(h: u64, c: u32) -> u64 {
    (h ^ u64::from(c))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

#[inline]
fn finish(h: u64, bits: u8) -> u32 {
    let h = (h ^ (h >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (h >> (64 - u32::from(bits))) as u32
}

/// The text the model sees of a post: a repost's own words (Weibo's "//@who: …" chain of
/// earlier reposts and the placeholder "转发微博" removed), whitespace runs as one space.
pub fn own_text(normalised: &str) -> &str {
    // A searcher built once: `str::find` sets up a two-way searcher on every call.
    static CHAIN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"//@"));
    let t = match CHAIN.find(normalised.as_bytes()) {
        Some(i) => &normalised[..i],
        None => normalised,
    };
    let t = t.trim();
    match t.strip_prefix("转发微博") {
        Some(rest) => rest.trim_start_matches(['。', '.', ' ']),
        None => t,
    }
}

/// Whether `text` holds `http://` or `https://`.
fn has_link(text: &str) -> bool {
    static SEP: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"://"));
    let b = text.as_bytes();
    SEP.find_iter(b)
        .any(|i| b[..i].ends_with(b"http") || b[..i].ends_with(b"https"))
}

/// Whether a post has words of its own (a bare repost, an empty comment or one emoticon
/// carries nothing to score).
pub fn is_trivial(own: &str) -> bool {
    // Stops at the second letter or digit.
    own.chars().filter(|c| c.is_alphanumeric()).nth(1).is_none()
}

/// Call `f(bucket)` for every character 1-, 2- and 3-gram of `text` (whitespace runs as one
/// space) and return how many there were.
pub fn for_each_gram(text: &str, bits: u8, mut f: impl FnMut(u32)) -> u32 {
    const SEED: u64 = 0x51_7CC1_B727_220A;
    // The last three characters, newest first, and how many of them there are.
    let (mut c0, mut c1) = (0u32, 0u32);
    let mut len = 0u32;
    let mut count = 0u32;
    let mut last_space = true;
    for (i, ch) in text.chars().enumerate() {
        if i >= MAX_CHARS {
            break;
        }
        let c = if ch.is_whitespace() {
            if last_space {
                continue;
            }
            last_space = true;
            ' '
        } else {
            last_space = false;
            ch
        };
        let c2 = c1;
        (c1, c0) = (c0, c as u32);
        len = (len + 1).min(MAX_N as u32);
        // The n-gram ending here hashes its characters newest first; orders are told apart
        // so "水" and "水水" never share a bucket by design.
        let h = mix(SEED, c0);
        f(finish(h, bits));
        if len >= 2 {
            let h = mix(h, c1);
            f(finish(h ^ 1, bits));
            if len >= 3 {
                f(finish(mix(h, c2) ^ 2, bits));
            }
        }
        count += len;
    }
    count
}

/// `w · x` for the n-gram vector `x` of `text` (each occurrence weighs 1/√count), for both
/// weight vectors of a model (side by side per bucket) in one pass over the text (the grams are
/// hashed once, and each costs one memory access).
pub fn dot2(w: &[[f32; 2]], text: &str, bits: u8) -> [f32; 2] {
    let (mut a, mut b) = (0.0f32, 0.0f32);
    let n = for_each_gram(text, bits, |g| {
        if let Some([x, y]) = w.get(g as usize) {
            a += *x;
            b += *y;
        }
    });
    if n == 0 {
        [0.0, 0.0]
    } else {
        let d = (n as f32).sqrt();
        [a / d, b / d]
    }
}

/// The sparse n-gram vector of `text`, as the trainer needs it: (bucket, value) pairs, merged.
pub fn vector(text: &str, bits: u8) -> Vec<(u32, f32)> {
    let mut v: Vec<u32> = Vec::new();
    let n = for_each_gram(text, bits, |b| v.push(b));
    if n == 0 {
        return Vec::new();
    }
    v.sort_unstable();
    let unit = 1.0 / (n as f32).sqrt();
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(v.len());
    for b in v {
        match out.last_mut() {
            Some((lb, lv)) if *lb == b => *lv += unit,
            _ => out.push((b, unit)),
        }
    }
    out
}

/// What one post brings to its cascade besides its words, computed by the analysis workers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PostSignals {
    /// `w_orig · x` (the post read as a cascade's original).
    pub as_original: f32,
    /// `w_repost · x` (the post read as a repost or reply).
    pub as_repost: f32,
    /// Whether the post has words of its own.
    pub nontrivial: bool,
    /// Characters of its own text.
    pub chars: u16,
    /// Digits in it.
    pub digits: u8,
    /// Exclamation and question marks in it.
    pub exclaims: u8,
    pub questions: u8,
    /// A link, and @-mentions.
    pub link: bool,
    pub ats: u8,
}

impl PostSignals {
    /// The signals of a post's normalised text under a model's weights.
    pub fn of(normalised: &str, model: &super::RumorModel) -> PostSignals {
        let own = own_text(normalised);
        let mut s = Self::shape(own);
        if s.nontrivial {
            [s.as_original, s.as_repost] = dot2(&model.w_text, own, model.bits);
        }
        s
    }

    /// Everything but the two scores, from a post's own text (see [`own_text`]).
    pub fn shape(own: &str) -> PostSignals {
        let sat = |n: usize| n.min(255) as u8;
        // Counted over the bytes in blocks of 255 into one-byte counters (a block cannot overflow
        // them), which the compiler runs over many bytes at once: a character starts at every
        // byte that is not a UTF-8 continuation byte; digits, `!`, `?` and `@` are ASCII.
        let [mut chars, mut digits, mut exclaims, mut questions, mut ats] = [0usize; 5];
        for block in own.as_bytes().chunks(255) {
            let [mut c, mut d, mut e, mut q, mut a] = [0u8; 5];
            for &b in block {
                c += u8::from(b & 0xC0 != 0x80);
                d += u8::from(b.is_ascii_digit());
                e += u8::from(b == b'!');
                q += u8::from(b == b'?');
                a += u8::from(b == b'@');
            }
            chars += usize::from(c);
            digits += usize::from(d);
            exclaims += usize::from(e);
            questions += usize::from(q);
            ats += usize::from(a);
        }
        PostSignals {
            as_original: 0.0,
            as_repost: 0.0,
            nontrivial: !is_trivial(own),
            chars: chars.min(u16::MAX as usize) as u16,
            digits: sat(digits),
            exclaims: sat(exclaims),
            questions: sat(questions),
            link: has_link(own),
            ats: sat(ats),
        }
    }
}

/// Distinct authors a cascade remembers exactly (beyond that it counts new ones approximately).
const MAX_AUTHORS: usize = 4096;

/// The running counts of one cascade (its original and the reposts and replies after it).
#[derive(Debug, Clone, Default)]
pub struct CascadeStats {
    /// The original post, when seen.
    pub original: Option<(PostSignals, Cues)>,
    /// Time of the first post (ms).
    pub first_ts: i64,
    /// Time of the newest post (ms).
    pub last_ts: i64,
    /// Posts counted, the original included.
    pub posts: u32,
    /// Reposts with words of their own, and the sum of their repost scores.
    pub nontrivial: u32,
    pub repost_score: f32,
    /// Reposts asking whether it is true, saying it is false, urging to spread it.
    pub enquiry: u32,
    pub correction: u32,
    pub spreading: u32,
    authors: crate::SmallSet<u64>,
    extra_authors: u32,
}

/// Number of cascade features.
pub const CASCADE_FEATURES: usize = 20;

/// Names of the cascade features, in order (printed in the model's description).
pub const CASCADE_FEATURE_NAMES: [&str; CASCADE_FEATURES] = [
    "log_posts",
    "log_authors",
    "log_enquiry",
    "log_correction",
    "log_spreading",
    "enquiry_ratio",
    "correction_ratio",
    "spreading_ratio",
    "log_hours",
    "log_posts_per_hour",
    "nontrivial_ratio",
    "orig_log_chars",
    "orig_log_digits",
    "orig_exclaims",
    "orig_questions",
    "orig_link",
    "orig_log_ats",
    "orig_enquiry",
    "orig_spreading",
    "orig_correction",
];

/// Cascade features in standard units (the model's means and standard deviations).
pub fn standardise(
    f: &[f32; CASCADE_FEATURES],
    mean: &[f32; CASCADE_FEATURES],
    std: &[f32; CASCADE_FEATURES],
) -> [f32; CASCADE_FEATURES] {
    std::array::from_fn(|i| (f[i] - mean[i]) / std[i])
}

impl CascadeStats {
    /// Count one post. `original` is true for the cascade's root post.
    pub fn add(&mut self, ts: i64, author: u64, s: &PostSignals, cues: Cues, original: bool) {
        if self.posts == 0 {
            self.first_ts = ts;
        }
        self.first_ts = self.first_ts.min(ts);
        self.last_ts = self.last_ts.max(ts);
        self.posts += 1;
        if self.authors.len() < MAX_AUTHORS {
            self.authors.insert(author);
        } else if !self.authors.contains(&author) {
            self.extra_authors += 1;
        }
        if original && self.original.is_none() {
            self.original = Some((*s, cues));
            return;
        }
        if s.nontrivial {
            self.nontrivial += 1;
            self.repost_score += s.as_repost;
        }
        self.enquiry += u32::from(cues.has(Cues::ENQUIRY));
        self.correction += u32::from(cues.has(Cues::CORRECTION));
        self.spreading += u32::from(cues.has(Cues::SPREADING));
    }

    /// Distinct authors (approximate past [`MAX_AUTHORS`]).
    pub fn authors(&self) -> u64 {
        self.authors.len() as u64 + u64::from(self.extra_authors)
    }

    /// The cascade features, raw (the model standardises them).
    pub fn features(&self) -> [f32; CASCADE_FEATURES] {
        let ln = |x: f64| (1.0 + x.max(0.0)).ln() as f32;
        let reposts = f64::from(self.posts.saturating_sub(1));
        let ratio = |n: u32| {
            if reposts > 0.0 {
                (f64::from(n) / reposts) as f32
            } else {
                0.0
            }
        };
        let hours = (self.last_ts - self.first_ts).max(0) as f64 / 3_600_000.0;
        let (o, c) = self.original.unwrap_or_default();
        [
            ln(f64::from(self.posts)),
            ln(self.authors() as f64),
            ln(f64::from(self.enquiry)),
            ln(f64::from(self.correction)),
            ln(f64::from(self.spreading)),
            ratio(self.enquiry),
            ratio(self.correction),
            ratio(self.spreading),
            ln(hours),
            ln(reposts / hours.max(1.0 / 60.0)),
            ratio(self.nontrivial),
            ln(f64::from(o.chars)),
            ln(f64::from(o.digits)),
            f32::from(o.exclaims.min(5)),
            f32::from(o.questions.min(5)),
            f32::from(u8::from(o.link)),
            ln(f64::from(o.ats)),
            f32::from(u8::from(c.has(Cues::ENQUIRY))),
            f32::from(u8::from(c.has(Cues::SPREADING))),
            f32::from(u8::from(c.has(Cues::CORRECTION))),
        ]
    }

    /// The mean repost score (0 without reposts of substance).
    pub fn mean_repost_score(&self) -> f32 {
        if self.nontrivial == 0 {
            0.0
        } else {
            self.repost_score / self.nontrivial as f32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_text_drops_the_repost_chain_and_the_placeholder() {
        assert_eq!(own_text("真的假的？//@某人: 网传明天停水"), "真的假的？");
        assert_eq!(own_text("转发微博。"), "");
        assert_eq!(own_text("转发微博"), "");
        assert!(is_trivial(own_text("转发微博。//@a: 求证")));
        assert!(is_trivial("[哈]"));
        assert!(!is_trivial("求证"));
    }

    #[test]
    fn a_link_is_http_or_https_followed_by_colon_slash_slash() {
        for t in [
            "",
            "http",
            "http:/",
            "://",
            "见 http://t.cn/x",
            "见https://t.cn/x",
            "ftp://x",
            "httpss://x",
            "xhttp://",
            "https:/ http//",
            "://http://",
            "HTTP://x",
        ] {
            assert_eq!(
                has_link(t),
                t.contains("http://") || t.contains("https://"),
                "{t}"
            );
        }
        assert!(has_link("a https://b") && !has_link("a https:/b"));
    }

    #[test]
    fn grams_are_counted_and_stable() {
        let mut a = Vec::new();
        let n = for_each_gram("停水", 16, |b| a.push(b));
        // 停, 停水, 水 (a 2-char text has 1+2 grams)
        assert_eq!(n, 3);
        let mut b = Vec::new();
        for_each_gram("停水", 16, |x| b.push(x));
        assert_eq!(a, b);
        assert!(a.iter().all(|x| *x < 1 << 16));
        // Whitespace runs count once.
        assert_eq!(
            for_each_gram("a  b", 16, |_| {}),
            for_each_gram("a b", 16, |_| {})
        );
    }

    #[test]
    fn the_shape_counts_characters_digits_and_marks_as_a_character_scan_does() {
        let texts = [
            String::new(),
            "网传明天全市停水！！请转发？@某人 123".to_string(),
            "Is it true?? 2 dead @cnn http://t.co/x 😀é".to_string(),
            // Counts under the cap spread over several of the 255-byte blocks.
            "网传明天停水!请转发? @某人 12 ".repeat(40),
            "!".repeat(300) + &"9".repeat(70_000),
            "雾".repeat(70_000),
        ];
        for t in &texts {
            let s = PostSignals::shape(t);
            let n = |f: fn(char) -> bool| t.chars().filter(|c| f(*c)).count();
            let sat = |x: usize| x.min(255) as u8;
            assert_eq!(
                usize::from(s.chars),
                t.chars().count().min(65_535),
                "{t:.40}"
            );
            assert_eq!(s.digits, sat(n(|c| c.is_ascii_digit())));
            assert_eq!(s.exclaims, sat(n(|c| c == '!')));
            assert_eq!(s.questions, sat(n(|c| c == '?')));
            assert_eq!(s.ats, sat(n(|c| c == '@')));
        }
    }

    #[test]
    fn vector_and_dot_agree() {
        let bits = 12;
        let w: Vec<f32> = (0..1u32 << bits).map(|i| (i % 7) as f32 - 3.0).collect();
        let text = "网传明天全市停水，请转发扩散！";
        let v = vector(text, bits);
        let d: f32 = v.iter().map(|(b, x)| w[*b as usize] * x).sum();
        let both: Vec<[f32; 2]> = w.iter().map(|x| [*x, -2.0 * x]).collect();
        let [x, y] = dot2(&both, text, bits);
        assert!((d - x).abs() < 1e-4, "{d} {x}");
        assert!((-2.0 * d - y).abs() < 1e-3, "{d} {y}");
    }
}
