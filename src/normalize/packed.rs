//! A [`Mention`] packed into one shared allocation, with a list of words beside it: what the
//! engine holds for each mention waiting in a window or a claim group until an incident opens.
//!
//! A `Mention` is ~250 bytes of fields (most of them empty `Option<String>`s) plus one
//! allocation per string it holds, and the engine used to keep a boxed copy per pending list
//! the mention went into (each category it named, its claim group). Packed, it is one string
//! of about its text's length, made once per mention and shared by every list that holds it.
//! The id, the text and the words are read in place; the whole mention is unpacked only for
//! the few kept as an incident's samples.
//!
//! The packing is a run of fields: strings as `len:bytes` (the length in decimal ASCII) or
//! `-` when absent, numbers as their digits and `;`. A word found in the mention's text (most
//! are: the words are cut from its normalised text) is three ASCII characters instead, its
//! byte offset and length in the text ([`WORD_REF`]), where `len:bytes` took 8 bytes for a
//! word of two Chinese characters. So the whole is a `str`, every cut falling on an ASCII byte.

use super::{Author, Mention};
use std::sync::Arc;

/// A mention and its words, packed (see the module doc). Cloning shares the allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Arc<str>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("id", &self.id())
            .field("bytes", &self.0.len())
            .finish()
    }
}

/// The flag field's bits: `official`, the author's presence, `verified`, a follower count.
const OFFICIAL: u64 = 1;
const AUTHOR: u64 = 2;
const VERIFIED: u64 = 4;
const FOLLOWERS: u64 = 8;

/// A string field: `len:bytes`, or `-` when absent.
fn put(buf: &mut String, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.push_str(itoa::Buffer::new().format(s.len()));
            buf.push(':');
            buf.push_str(s);
        }
        None => buf.push('-'),
    }
}

/// A number field: its digits (after a `-` when negative) and `;`.
fn put_num(buf: &mut String, n: impl itoa::Integer) {
    buf.push_str(itoa::Buffer::new().format(n));
    buf.push(';');
}

/// The 64 characters of a word's reference: none is a digit, `-`, `:` or `;`, so a reference
/// never reads as a string or number field. A reference is three of them: the word's byte
/// offset in the text (12 bits, the first two) and its length (6 bits).
const WORD_REF: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+<=>";

/// A word is referenced when under this many bytes long (the length is one character).
const REF_LEN: usize = WORD_REF.len();
/// A word is referenced when it starts before this byte (the offset is two characters).
const REF_OFFSET: usize = WORD_REF.len() * WORD_REF.len();

/// [`WORD_REF`] inverted: each ASCII byte's value as a reference character, or `u8::MAX`.
/// Built from the alphabet, which is checked here to hold none of the fields' own characters.
const REF_VALUE: [u8; 128] = {
    let mut t = [u8::MAX; 128];
    let mut i = 0;
    while i < WORD_REF.len() {
        let c = WORD_REF[i];
        assert!(c.is_ascii() && !c.is_ascii_digit() && c != b'-' && c != b':' && c != b';');
        assert!(t[c as usize] == u8::MAX, "a reference character twice");
        t[c as usize] = i as u8;
        i += 1;
    }
    t
};

/// The value of a reference character, or `None` for any other byte.
fn ref_value(b: u8) -> Option<usize> {
    REF_VALUE
        .get(usize::from(b))
        .filter(|&&v| v != u8::MAX)
        .map(|&v| usize::from(v))
}

/// Where `w` is first found in `text` starting in `from..before` (and before [`REF_OFFSET`]).
/// A rolling hash, not `str::find`: its searcher's set-up took more than the search in these
/// short texts (3 % of a real-text replay's CPU). A match of valid UTF-8 in valid UTF-8 starts
/// on a character boundary, so the bytes found are the word.
fn find_word(text: &str, w: &str, from: usize, before: usize) -> Option<usize> {
    let end = text
        .len()
        .min((before.min(REF_OFFSET) + w.len()).saturating_sub(1));
    let hay = text.as_bytes().get(from..end)?;
    memchr::arch::all::rabinkarp::Finder::new(w.as_bytes())
        .find(hay, w.as_bytes())
        .map(|o| o + from)
}

/// A word field: a reference into `text` where the word is found there (starting within the
/// first [`REF_OFFSET`] bytes, under [`REF_LEN`] bytes long), else the word itself as a string
/// field. The words come in text order, so each is looked for from where the last one found
/// ends (`from`) first, and only then before it.
fn put_word(buf: &mut String, text: &str, w: &str, from: &mut usize) {
    if !w.is_empty() && w.len() < REF_LEN {
        let found = match find_word(text, w, *from, REF_OFFSET) {
            None if *from > 0 => find_word(text, w, 0, *from),
            found => found,
        };
        if let Some(off) = found {
            for v in [off / REF_LEN, off % REF_LEN, w.len()] {
                buf.push(char::from(WORD_REF[v]));
            }
            *from = off + w.len();
            return;
        }
    }
    put(buf, Some(w));
}

/// Reads the fields back in order (each read is `None` when the packing ended or is broken,
/// which [`Packed::new`] never makes).
struct Fields<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Fields<'a> {
    /// The next string field: `Some(None)` when absent.
    fn next(&mut self) -> Option<Option<&'a str>> {
        let rest = self.s.get(self.pos..)?;
        if rest.starts_with('-') {
            self.pos += 1;
            return Some(None);
        }
        let colon = rest.find(':')?;
        let len: usize = rest.get(..colon)?.parse().ok()?;
        let start = self.pos + colon + 1;
        let v = self.s.get(start..start.checked_add(len)?)?;
        self.pos = start + len;
        Some(Some(v))
    }

    /// The next string field, which must be present.
    fn str(&mut self) -> Option<&'a str> {
        self.next()?
    }

    /// The next word field (see [`put_word`]), read from `text` when it is a reference.
    fn word(&mut self, text: &'a str) -> Option<&'a str> {
        let b = self.s.as_bytes().get(self.pos..)?;
        match b.first().copied().and_then(ref_value) {
            Some(hi) => {
                let lo = ref_value(*b.get(1)?)?;
                let len = ref_value(*b.get(2)?)?;
                self.pos += 3;
                let off = hi * REF_LEN + lo;
                text.get(off..off + len)
            }
            None => self.str(),
        }
    }

    /// The next string field, which may be absent.
    fn opt(&mut self) -> Option<Option<String>> {
        self.next().map(|v| v.map(str::to_string))
    }

    /// The next number field.
    fn num<T: std::str::FromStr>(&mut self) -> Option<T> {
        let rest = self.s.get(self.pos..)?;
        let end = rest.find(';')?;
        self.pos += end + 1;
        rest.get(..end)?.parse().ok()
    }
}

impl Packed {
    /// Pack `m` with `words` (the terms the engine counts for the incident it joins).
    pub fn new<S: AsRef<str>>(m: &Mention, words: &[S]) -> Packed {
        thread_local! {
            // Packed here, then copied into the shared allocation at its exact size.
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            Self::pack_into(buf, m, words);
            Packed(Arc::from(buf.as_str()))
        })
    }

    fn pack_into<S: AsRef<str>>(buf: &mut String, m: &Mention, words: &[S]) {
        let mut flags = 0;
        if m.official {
            flags |= OFFICIAL;
        }
        if let Some(a) = &m.author {
            flags |= AUTHOR;
            if a.verified {
                flags |= VERIFIED;
            }
            if a.followers.is_some() {
                flags |= FOLLOWERS;
            }
        }
        // The id, the text, the flags and the words first: they are read in place, the rest
        // only when the mention is unpacked.
        put(buf, Some(&m.id));
        put(buf, Some(&m.text));
        put_num(buf, flags);
        put_num(buf, words.len());
        let mut from = 0;
        for w in words {
            put_word(buf, &m.text, w.as_ref(), &mut from);
        }
        put_num(buf, m.ts);
        if let Some(a) = &m.author {
            put(buf, Some(&a.id));
            put(buf, a.name.as_deref());
            if let Some(f) = a.followers {
                put_num(buf, f);
            }
        }
        for o in [
            &m.repost_of,
            &m.reply_to,
            &m.region,
            &m.lang,
            &m.source,
            &m.to,
            &m.thread,
        ] {
            put(buf, o.as_deref());
        }
    }

    fn fields(&self) -> Fields<'_> {
        Fields { s: &self.0, pos: 0 }
    }

    /// The mention's id.
    pub fn id(&self) -> &str {
        self.fields().str().unwrap_or_default()
    }

    /// The mention's raw text.
    pub fn text(&self) -> &str {
        let mut f = self.fields();
        f.str();
        f.str().unwrap_or_default()
    }

    /// Whether the mention came from a feed configured as official.
    pub fn official(&self) -> bool {
        let mut f = self.fields();
        f.str();
        f.str();
        f.num::<u64>().is_some_and(|fl| fl & OFFICIAL != 0)
    }

    /// The mention unpacked.
    fn unpack(&self) -> Option<Mention> {
        let mut f = self.fields();
        let id = f.str()?.to_string();
        let text = f.str()?;
        let flags: u64 = f.num()?;
        let n: usize = f.num()?;
        for _ in 0..n {
            f.word(text)?;
        }
        let text = text.to_string();
        let ts: i64 = f.num()?;
        let author = if flags & AUTHOR != 0 {
            Some(Author {
                id: f.str()?.to_string(),
                name: f.opt()?,
                followers: if flags & FOLLOWERS != 0 {
                    Some(f.num()?)
                } else {
                    None
                },
                verified: flags & VERIFIED != 0,
            })
        } else {
            None
        };
        Some(Mention {
            id,
            ts,
            text,
            author,
            repost_of: f.opt()?,
            reply_to: f.opt()?,
            region: f.opt()?,
            lang: f.opt()?,
            source: f.opt()?,
            official: flags & OFFICIAL != 0,
            to: f.opt()?,
            thread: f.opt()?,
        })
    }

    /// The whole mention again (for an incident's samples).
    pub fn mention(&self) -> Mention {
        match self.unpack() {
            Some(m) => m,
            None => Mention::new(self.id(), 0, self.text()),
        }
    }

    /// The words packed with the mention, in their order.
    pub fn words(&self) -> impl Iterator<Item = &str> + '_ {
        let mut f = self.fields();
        f.str();
        let text = f.str().unwrap_or_default();
        f.num::<u64>();
        let n = f.num::<usize>().unwrap_or(0);
        (0..n).map_while(move |_| f.word(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Mention {
        Mention {
            id: "4:77-x".into(),
            ts: -1_700_000_000_123,
            text: "网传-明天停水:3天 - 12:34".into(),
            author: Some(Author {
                id: "u:9".into(),
                name: Some("".into()),
                followers: Some(u64::MAX),
                verified: true,
            }),
            repost_of: Some("-".into()),
            reply_to: Some("".into()),
            region: Some("310000".into()),
            lang: None,
            source: Some("weibo".into()),
            official: true,
            to: Some("@上海发布".into()),
            thread: Some("1:2".into()),
        }
    }

    #[test]
    fn every_field_comes_back_as_it_went_in() {
        let words = ["停水", "", "-", "3:天"];
        let m = full();
        let p = Packed::new(&m, &words);
        assert_eq!(p.mention(), m);
        assert_eq!(p.id(), "4:77-x");
        assert_eq!(p.text(), m.text);
        assert!(p.official());
        assert_eq!(p.words().collect::<Vec<_>>(), words);

        let bare = Mention::new("", 0, "");
        let p = Packed::new::<&str>(&bare, &[]);
        assert_eq!(p.mention(), bare);
        assert!(!p.official());
        assert_eq!(p.words().count(), 0);

        let mut anon = full();
        anon.author = Some(Author {
            id: "a".into(),
            name: None,
            followers: None,
            verified: false,
        });
        anon.official = false;
        let p = Packed::new(&anon, &["x".to_string()]);
        assert_eq!(p.mention(), anon);
        assert!(!p.official());
        assert_eq!(p.words().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn a_packed_mention_is_smaller_than_the_mention_it_holds() {
        let m = full();
        let p = Packed::new(&m, &["停水"]);
        let strings = m.id.len() + m.text.len() + 40;
        assert!(
            p.0.len() < std::mem::size_of::<Mention>() + strings,
            "{} bytes packed",
            p.0.len()
        );
        // Shared, not copied, by a clone.
        let q = p.clone();
        assert!(std::ptr::eq(p.0.as_ptr(), q.0.as_ptr()));
    }

    #[test]
    fn words_found_in_the_text_take_three_bytes_and_others_stay_whole() {
        // A long post (past the 4,096 bytes a reference reaches) and its words: found early,
        // found only late, not found (lower-cased), the longest a reference takes and one
        // longer, a word that is all reference characters.
        let head = "网传明天全市停水，请市民储水。AbZ!#";
        let long = "长".repeat(21); // 63 bytes
        let text = format!("{head}{long}长{}尾巴 Tail", "中".repeat(1_500));
        let m = Mention::new("1", 0, text.clone());
        let words = [
            "停水".to_string(),
            "储水".to_string(),
            "AbZ!#".to_string(),
            long.clone(),
            format!("{long}长"),
            "尾巴".to_string(),
            "tail".to_string(),
        ];
        let p = Packed::new(&m, &words);
        assert_eq!(p.words().collect::<Vec<_>>(), words);
        assert_eq!(p.text(), text);
        assert_eq!(p.mention(), m);
        // Four references of three bytes; the 64-byte word, the one past 4,096 bytes and the
        // one not in the text whole.
        let literal = |w: &str| w.len().to_string().len() + 1 + w.len();
        let expect = literal("1")
            + literal(&text)
            + "0;7;".len()
            + 4 * 3
            + literal(&words[4])
            + literal("尾巴")
            + literal("tail")
            + "0;".len()
            + 7;
        assert_eq!(p.0.len(), expect, "{:?}", &p.0[p.0.len() - 40..]);
    }

    #[test]
    fn arbitrary_mentions_round_trip() {
        // A small deterministic generator over the characters that mean something to the
        // packing (digits, ':' and '-') and multi-byte ones.
        let alphabet = ['0', '9', ':', '-', 'a', '水', '🙂', ' '];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let s = |n: u64| -> String {
            let len = (n % 7) as usize;
            (0..len)
                .map(|i| alphabet[((n >> (i * 3)) % 8) as usize])
                .collect()
        };
        for _ in 0..2_000 {
            let r = next();
            let o = |bit: u32, v: String| (r >> bit & 1 == 1).then_some(v);
            let m = Mention {
                id: s(next()),
                ts: next() as i64,
                text: s(next()),
                author: o(1, String::new()).map(|_| Author {
                    id: s(r),
                    name: o(2, s(r >> 5)),
                    followers: o(3, String::new()).map(|_| r >> 9),
                    verified: r >> 4 & 1 == 1,
                }),
                repost_of: o(5, s(r >> 11)),
                reply_to: o(6, s(r >> 13)),
                region: o(7, s(r >> 17)),
                lang: o(8, s(r >> 19)),
                source: o(9, s(r >> 23)),
                official: r >> 10 & 1 == 1,
                to: o(12, s(r >> 29)),
                thread: o(14, s(r >> 31)),
            };
            let mut words: Vec<String> = (0..(r % 4)).map(|i| s(r >> (i * 7))).collect();
            // And words cut from the text, which go in as references.
            let cuts: Vec<usize> = (0..=m.text.len())
                .filter(|&i| m.text.is_char_boundary(i))
                .collect();
            for _ in 0..(r >> 40) % 3 {
                let a = cuts[(next() % cuts.len() as u64) as usize];
                let b = cuts[(next() % cuts.len() as u64) as usize];
                words.push(m.text[a.min(b)..a.max(b)].to_string());
            }
            let p = Packed::new(&m, &words);
            assert_eq!(p.mention(), m);
            assert_eq!(p.id(), m.id);
            assert_eq!(p.text(), m.text);
            assert_eq!(p.official(), m.official);
            assert_eq!(p.words().collect::<Vec<_>>(), words);
        }
    }
}
