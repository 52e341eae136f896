//! `gen`: realistic generic-format mentions as JSON Lines, fast and deterministic per seed.
//!
//! One line per mention: `{"id":"…","ts":…,"author":"u…","text":"…"}`, plus `"repost_of"` or
//! `"reply_to"` naming an earlier id for cascades. Numbers are formatted with `itoa`, text is
//! copied from a fixed vocabulary (escaped by hand only when needed) into one reused buffer.

use crate::vocab::{self, Emergency, W};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;

/// What `gen` produces.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Mentions to write.
    pub count: u64,
    /// RNG seed; the same seed gives the same bytes.
    pub seed: u64,
    /// Mentions per millisecond of event time.
    pub rate_per_ms: f64,
    /// Event time of the first mention (unix ms).
    pub start_ms: i64,
    /// Distinct authors.
    pub authors: u32,
    /// Zipf exponent of author activity.
    pub zipf: f64,
    /// Share of original posts that report an emergency.
    pub emergency_share: f64,
    /// Share of original posts that spread a rumor.
    pub rumor_share: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            count: 1000,
            seed: 42,
            rate_per_ms: 20.0,
            start_ms: 1_780_000_000_000,
            authors: 500_000,
            zipf: 0.8,
            emergency_share: P_EMERGENCY,
            rumor_share: P_RUMOR,
        }
    }
}

/// Share of mentions (of originals; reposts inherit their parent's kind).
pub const P_EMERGENCY: f64 = 0.02;
/// Default share of rumor originals.
pub const P_RUMOR: f64 = 0.01;
const P_ENGLISH: f64 = 0.05;
const P_REPOST: f64 = 0.12;
const P_REPLY: f64 = 0.05;
/// Emergency posts without a region.
const P_NO_REGION: f64 = 0.2;
/// Rumor posts repeating a known claim of `rules/claims.toml`.
const P_KNOWN_CLAIM: f64 = 0.15;
/// Recent posts that reposts and replies point to.
const RING: usize = 4096;
/// Rumor stories per run.
const STORIES: usize = 24;
const MIN_CHARS: usize = 60;
const MAX_CHARS: usize = 140;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chatter,
    Emergency,
    Rumor,
}

struct Post {
    id: u64,
    author: u32,
    kind: Kind,
    text: String,
    chars: usize,
}

/// Text under construction with its length in characters.
struct Text {
    s: String,
    chars: usize,
}

impl Text {
    fn w(&mut self, w: W) {
        self.s.push_str(w.s);
        self.chars += w.chars;
    }
    fn push(&mut self, x: &str) {
        self.s.push_str(x);
        self.chars += vocab::char_count(x);
    }
    fn clear(&mut self) {
        self.s.clear();
        self.chars = 0;
    }
}

/// Zipf-like sampler over `1..=n` by inverting the continuous power-law CDF (one `powf`).
struct Zipf {
    n: f64,
    one_minus_s: f64,
    span: f64,
}

impl Zipf {
    fn new(n: u32, s: f64) -> Self {
        let n = f64::from(n.max(1));
        let s = if (s - 1.0).abs() < 1e-9 {
            1.0 + 1e-6
        } else {
            s
        };
        let one_minus_s = 1.0 - s;
        Zipf {
            n,
            one_minus_s,
            span: (n + 1.0).powf(one_minus_s) - 1.0,
        }
    }
    fn sample(&self, rng: &mut StdRng) -> u32 {
        let u: f64 = rng.random();
        let x = (self.span * u + 1.0).powf(1.0 / self.one_minus_s);
        (x.floor().clamp(1.0, self.n)) as u32
    }
}

/// The generator: call [`Generator::next_line`] repeatedly.
pub struct Generator {
    cfg: GenConfig,
    rng: StdRng,
    i: u64,
    id_base: u64,
    authors: Zipf,
    author_mul: u64,
    regions: Zipf,
    emergency_total: u32,
    stories: Vec<(String, usize)>,
    ring: Vec<Post>,
    ring_next: usize,
    text: Text,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let n = u64::from(cfg.authors.max(1));
        // A bijection rank → author number, so activity does not follow the numbering.
        let mut author_mul = 2_654_435_761u64 % n.max(2);
        while n > 1 && gcd(author_mul, n) != 1 {
            author_mul += 1;
        }
        let mut stories = Vec::with_capacity(STORIES);
        for _ in 0..STORIES {
            let mut t = String::new();
            for list in [
                vocab::REGIONS,
                vocab::RUMOR_SUBJECT,
                vocab::RUMOR_PREDICATE,
                vocab::RUMOR_DETAIL,
                vocab::RUMOR_DETAIL,
            ] {
                t.push_str(pick(&mut rng, list).s);
            }
            let n = t.chars().count();
            stories.push((t, n));
        }
        Generator {
            id_base: 4_900_000_000_000_000 + (cfg.seed % 1000) * 1_000_000_000_000,
            authors: Zipf::new(cfg.authors, cfg.zipf),
            author_mul,
            regions: Zipf::new(vocab::REGIONS.len() as u32, 1.0),
            emergency_total: vocab::EMERGENCIES.iter().map(|e| e.weight).sum(),
            stories,
            ring: Vec::with_capacity(RING),
            ring_next: 0,
            text: Text {
                s: String::with_capacity(512),
                chars: 0,
            },
            rng,
            i: 0,
            cfg,
        }
    }

    fn author(&mut self) -> u32 {
        let rank = u64::from(self.authors.sample(&mut self.rng));
        let n = u64::from(self.cfg.authors.max(1));
        ((rank - 1) * self.author_mul % n + 1) as u32
    }

    fn region(&mut self) -> W {
        vocab::REGIONS[self.regions.sample(&mut self.rng) as usize - 1]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn sep(&mut self) {
        let s = pick(&mut self.rng, vocab::SEPARATORS);
        self.text.w(s);
    }

    /// Add chatter clauses (mostly on one topic) up to `target` characters, then decorate.
    fn chatter(&mut self, target: usize) {
        let topic = pick(&mut self.rng, vocab::TOPICS);
        let mut region = self.chance(0.15);
        let mut used = [std::ptr::null::<u8>(); 16];
        let mut n_used = 0;
        for _ in 0..16 {
            if self.text.chars >= target {
                break;
            }
            let mut r: u32 = 0;
            let mut clause = vocab::FILLERS[0];
            // No clause twice in one post (three tries, then accept a repeat).
            for _ in 0..3 {
                r = self.rng.random_range(0..100);
                clause = if r < 70 {
                    pick(&mut self.rng, topic)
                } else if r < 85 {
                    let t = pick(&mut self.rng, vocab::TOPICS);
                    pick(&mut self.rng, t)
                } else {
                    pick(&mut self.rng, vocab::FILLERS)
                };
                if !used[..n_used].contains(&clause.s.as_ptr()) {
                    break;
                }
            }
            if n_used < used.len() {
                used[n_used] = clause.s.as_ptr();
                n_used += 1;
            }
            if self.text.chars + clause.chars + 1 > MAX_CHARS - 8 && self.text.chars >= MIN_CHARS {
                break;
            }
            if self.text.chars > 0 && !self.text.s.ends_with('，') {
                self.sep();
            }
            if region && r < 70 {
                region = false;
                let p = pick(&mut self.rng, vocab::REGION_PREFIX);
                self.text.w(p);
                let reg = self.region();
                self.text.w(reg);
                self.text.push("，");
            }
            self.text.w(clause);
        }
        self.decorate();
    }

    /// Occasional emoji, hashtag or link.
    fn decorate(&mut self) {
        if self.chance(0.25) {
            let e = pick(&mut self.rng, vocab::EMOJI);
            self.text.w(e);
        }
        if self.chance(0.05) {
            let h = pick(&mut self.rng, vocab::HASHTAGS);
            self.text.w(h);
        }
        if self.chance(0.06) && self.text.chars < MAX_CHARS - 20 {
            let l = pick(&mut self.rng, vocab::LINKS);
            self.text.push(" ");
            self.text.w(l);
            let mut b = itoa::Buffer::new();
            let code = self.rng.random_range(10_000u32..99_999);
            self.text.push(b.format(code));
        }
    }

    fn english_chatter(&mut self, target: usize) {
        let mut first = true;
        while self.text.chars < target.min(110) {
            if !first {
                let sep = if self.chance(0.5) { ". " } else { ", " };
                self.text.push(sep);
            }
            first = false;
            let c = pick(&mut self.rng, vocab::EN_CHATTER);
            self.text.w(c);
            if self.chance(0.1) {
                self.text.push(" in ");
                let r = pick(&mut self.rng, vocab::REGIONS_EN);
                self.text.w(r);
            }
        }
        if self.chance(0.2) {
            let e = pick(&mut self.rng, vocab::EMOJI);
            self.text.push(" ");
            self.text.w(e);
        }
    }

    fn emergency_kind(&mut self) -> &'static Emergency {
        let mut x = self.rng.random_range(0..self.emergency_total);
        for e in vocab::EMERGENCIES {
            if x < e.weight {
                return e;
            }
            x -= e.weight;
        }
        &vocab::EMERGENCIES[0]
    }

    fn emergency(&mut self, english: bool, target: usize) {
        let e = self.emergency_kind();
        let located = !self.chance(P_NO_REGION);
        if english {
            let s = pick(&mut self.rng, e.en);
            self.text.w(s);
            if located {
                self.text.push(" in ");
                let r = pick(&mut self.rng, vocab::REGIONS_EN);
                self.text.w(r);
            }
            if self.chance(0.5) {
                self.text.push(", stay safe. ");
                self.english_chatter(target);
            }
            return;
        }
        if located {
            let r = self.region();
            self.text.w(r);
            let sep = if self.chance(0.5) { "，" } else { "这边" };
            self.text.push(sep);
        }
        let s = pick(&mut self.rng, e.zh);
        self.text.w(s);
        if self.chance(0.5) {
            self.text.push("，");
            let t = pick(&mut self.rng, vocab::EMERGENCY_TAIL);
            self.text.w(t);
        }
        self.text.push("！");
        // Usually followed by ordinary talk (people mention the event in passing).
        if self.chance(0.8) {
            self.chatter(target);
        } else {
            self.decorate();
        }
    }

    fn rumor(&mut self, english: bool) {
        if english {
            let s = pick(&mut self.rng, vocab::EN_RUMOR);
            self.text.w(s);
            return;
        }
        let r: u32 = self.rng.random_range(0..100);
        if self.chance(P_KNOWN_CLAIM) {
            if r < 50 {
                let s = pick(&mut self.rng, vocab::RUMOR_SPREAD);
                self.text.w(s);
            }
            let c = pick(&mut self.rng, vocab::KNOWN_CLAIMS);
            self.text.w(c);
            let d = pick(&mut self.rng, vocab::RUMOR_DETAIL);
            self.text.w(d);
        } else {
            let i = self.rng.random_range(0..self.stories.len());
            let (story, n) = (&self.stories[i].0, self.stories[i].1);
            if r < 60 {
                let s = pick(&mut self.rng, vocab::RUMOR_SPREAD);
                self.text.w(s);
                self.text.push("：");
                self.text.s.push_str(story);
                self.text.chars += n;
                if self.chance(0.5) {
                    let a = pick(&mut self.rng, vocab::RUMOR_ASK);
                    self.text.push("，");
                    self.text.w(a);
                }
            } else if r < 90 {
                self.text.s.push_str(story);
                self.text.chars += n;
                self.text.push("，");
                let a = pick(&mut self.rng, vocab::RUMOR_ASK);
                self.text.w(a);
            } else {
                let d = pick(&mut self.rng, vocab::RUMOR_DENY);
                self.text.w(d);
                self.text.s.push_str(story);
                self.text.chars += n;
            }
        }
        if self.chance(0.3) {
            let e = pick(&mut self.rng, vocab::EMOJI);
            self.text.w(e);
        }
    }

    /// An original post: its kind, with the text in `self.text`.
    fn original(&mut self) -> Kind {
        let english = self.chance(P_ENGLISH);
        let target = self.rng.random_range(MIN_CHARS..=MAX_CHARS);
        let u: f64 = self.rng.random();
        let (pe, pr) = (self.cfg.emergency_share, self.cfg.rumor_share);
        if u < pe {
            self.emergency(english, target);
            Kind::Emergency
        } else if u < pe + pr {
            self.rumor(english);
            Kind::Rumor
        } else {
            if english {
                self.english_chatter(target);
            } else {
                self.chatter(target);
            }
            Kind::Chatter
        }
    }

    /// A recent post, recent ones (and a few viral ones) more likely.
    fn parent(&mut self) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let len = self.ring.len();
        let u: f64 = self.rng.random();
        // Cubed: most picks land on a small set of posts just behind the newest.
        let back = ((u * u * u) * len as f64) as usize;
        Some((self.ring_next + len - 1 - back.min(len - 1)) % len)
    }

    /// Write the next line (with its newline) to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        let ts = self.cfg.start_ms + (self.i as f64 / self.cfg.rate_per_ms) as i64;
        self.next_line_at(ts, out);
    }

    /// The numeric id the next line will carry (ids are consecutive).
    pub fn next_id(&self) -> u64 {
        self.id_base + self.i
    }

    /// Write the next line with event time `ts` (live feeds stamp mentions when they send them).
    pub fn next_line_at(&mut self, ts: i64, out: &mut Vec<u8>) {
        let i = self.i;
        self.i += 1;
        let id = self.id_base + i;
        let author = self.author();
        self.text.clear();

        let roll: f64 = self.rng.random();
        let mut link: Option<(&'static str, u64)> = None;
        let mut kind = Kind::Chatter;
        let cascade = if roll < P_REPOST {
            self.parent().map(|p| (true, p))
        } else if roll < P_REPOST + P_REPLY {
            self.parent().map(|p| (false, p))
        } else {
            None
        };
        match cascade {
            Some((true, p)) => {
                let (pid, pauthor, pkind) = {
                    let post = &self.ring[p];
                    (post.id, post.author, post.kind)
                };
                kind = pkind;
                link = Some(("repost_of", pid));
                // Weibo style: comment//@author:original (cut to the length limit).
                let c = if pkind == Kind::Rumor && self.chance(0.5) {
                    pick(&mut self.rng, vocab::RUMOR_SPREAD)
                } else {
                    pick(&mut self.rng, vocab::REPOST_COMMENT)
                };
                self.text.w(c);
                self.text.push("//@u");
                let mut b = itoa::Buffer::new();
                self.text.push(b.format(pauthor));
                self.text.push(":");
                let room = MAX_CHARS.saturating_sub(self.text.chars);
                let post = &self.ring[p];
                if post.chars <= room {
                    self.text.s.push_str(&post.text);
                    self.text.chars += post.chars;
                } else {
                    let end = post
                        .text
                        .char_indices()
                        .nth(room)
                        .map_or(post.text.len(), |(i, _)| i);
                    self.text.s.push_str(&post.text[..end]);
                    self.text.chars += room;
                }
            }
            Some((false, p)) => {
                let (pid, pkind) = (self.ring[p].id, self.ring[p].kind);
                link = Some(("reply_to", pid));
                let target = self.rng.random_range(MIN_CHARS..=MAX_CHARS);
                if pkind == Kind::Rumor {
                    // Replies to a rumor ask or deny.
                    let a = if self.chance(0.7) {
                        pick(&mut self.rng, vocab::RUMOR_ASK)
                    } else {
                        pick(&mut self.rng, vocab::RUMOR_DENY)
                    };
                    self.text.w(a);
                    let b = pick(&mut self.rng, vocab::RUMOR_REPLY);
                    self.text.w(b);
                    kind = Kind::Rumor;
                } else {
                    let o = pick(&mut self.rng, vocab::REPLY_OPENER);
                    self.text.w(o);
                    self.text.push("，");
                    self.chatter(target);
                }
            }
            None => {
                kind = self.original();
            }
        }

        // Originals (and reposts of them) become possible parents.
        if link.is_none() || matches!(link, Some(("repost_of", _))) {
            let slot = if self.ring.len() < RING {
                self.ring.push(Post {
                    id,
                    author,
                    kind,
                    text: String::with_capacity(512),
                    chars: 0,
                });
                self.ring.len() - 1
            } else {
                self.ring_next
            };
            let post = &mut self.ring[slot];
            post.id = id;
            post.author = author;
            post.kind = kind;
            post.chars = self.text.chars;
            post.text.clear();
            post.text.push_str(&self.text.s);
            self.ring_next = (slot + 1) % RING;
        }

        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(num.format(id).as_bytes());
        out.extend_from_slice(b"\",\"ts\":");
        out.extend_from_slice(num.format(ts).as_bytes());
        out.extend_from_slice(b",\"author\":\"u");
        out.extend_from_slice(num.format(author).as_bytes());
        out.extend_from_slice(b"\",\"text\":\"");
        escape_into(&self.text.s, out);
        out.push(b'"');
        if let Some((field, pid)) = link {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(num.format(pid).as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
    }
}

fn pick<T: Copy>(rng: &mut StdRng, xs: &[T]) -> T {
    xs[rng.random_range(0..xs.len())]
}

/// Append `s` as the inside of a JSON string.
fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            b => out.push(b),
        }
    }
}

/// Write `cfg.count` lines to `w`. A closed pipe (e.g. `| head`) ends the run quietly.
pub fn run<W: Write>(cfg: GenConfig, w: W) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, w);
    let mut g = Generator::new(cfg.clone());
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut left = cfg.count;
    while left > 0 {
        buf.clear();
        // Batch lines so the BufWriter sees few large writes.
        let n = left.min(128);
        for _ in 0..n {
            g.next_line(&mut buf);
        }
        left -= n;
        if let Err(e) = out.write_all(&buf) {
            return ignore_broken_pipe(e);
        }
    }
    out.flush().or_else(ignore_broken_pipe)
}

fn ignore_broken_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cfg: GenConfig) -> Vec<u8> {
        let mut v = Vec::new();
        run(cfg, &mut v).unwrap();
        v
    }

    #[test]
    fn deterministic_valid_json_with_cascades() {
        let cfg = GenConfig {
            count: 20_000,
            seed: 7,
            ..GenConfig::default()
        };
        let a = lines(cfg.clone());
        assert_eq!(a, lines(cfg.clone()), "same seed, same bytes");
        assert_ne!(
            a,
            lines(GenConfig {
                seed: 8,
                ..cfg.clone()
            })
        );
        let mut ids = std::collections::HashSet::new();
        let (mut reposts, mut replies, mut last_ts, mut in_range) = (0, 0, i64::MIN, 0);
        for l in a.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(l).expect("valid JSON");
            let id = v["id"].as_str().unwrap().to_string();
            let ts = v["ts"].as_i64().unwrap();
            assert!(ts >= last_ts);
            last_ts = ts;
            let n = v["text"].as_str().unwrap().chars().count();
            assert!((4..=170).contains(&n), "{n}: {v}");
            in_range += usize::from((MIN_CHARS..=MAX_CHARS).contains(&n));
            assert!(v["author"].as_str().unwrap().starts_with('u'));
            for (f, c) in [("repost_of", &mut reposts), ("reply_to", &mut replies)] {
                if let Some(p) = v.get(f) {
                    assert!(ids.contains(p.as_str().unwrap()), "{f} points back");
                    *c += 1;
                }
            }
            ids.insert(id);
        }
        assert_eq!(ids.len(), 20_000);
        assert!(
            in_range > 19_000,
            "{in_range} of 20 000 have 60-140 characters"
        );
        assert!(reposts > 1500 && replies > 500, "{reposts} {replies}");
        // 20 per ms: the last of 20 000 is 999 ms after the first.
        assert_eq!(last_ts, cfg.start_ms + 999);
    }

    #[test]
    fn escapes_when_needed() {
        let mut v = Vec::new();
        escape_into("a\"b\\c\nd\u{1}", &mut v);
        assert_eq!(v, b"a\\\"b\\\\c\\nd\\u0001");
    }
}
