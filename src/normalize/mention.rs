//! The generic mention format: one JSON object per mention, parsed field by field so that a bad
//! line is rejected with a reason naming the field.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Lines (or POST bodies of one mention) longer than this are rejected unparsed.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Who wrote a mention.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Author {
    /// Platform id or handle of the author.
    pub id: String,
    /// Display name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Follower count, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub followers: Option<u64>,
    /// Whether the platform marks the author as verified.
    #[serde(default)]
    pub verified: bool,
}

/// One normalised mention, as every stage after parsing sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// Id as given by the source (numbers are turned into their decimal string).
    pub id: String,
    /// Event time, unix milliseconds.
    pub ts: i64,
    /// Raw text (not normalised; analysis normalises its own copy).
    pub text: String,
    /// Author, `None` when absent or empty (then the mention counts as an author of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
    /// Id of the post this one reposts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repost_of: Option<String>,
    /// Id of the post this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Region given by the source: a name or a 6-digit division code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Language tag given by the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Where the mention came from (platform or feed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// From a feed configured as official (`official = true` in its `[[feeds]]` section): set
    /// by the feed's [`crate::ingest::Ingest`], never read from input.
    #[serde(skip)]
    pub official: bool,
    /// The account this mention addresses, when the source says so (a Mastodon `mention`
    /// notification or `direct` message, a Weibo mention or comment to the account, the `to`
    /// field of the generic format): the account's handle or id. Read by the cases stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The post a comment thread hangs from, when the source gives it and `reply_to` is not
    /// it: a Weibo comment answering another comment carries its status here (answering it
    /// takes `comments/reply` with both ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl Mention {
    /// A mention of `text` with only an id and a time (no author, place or thread): what a
    /// probe of the analysis or a mention known only by its id is.
    pub fn new(id: impl Into<String>, ts: i64, text: impl Into<String>) -> Self {
        Mention {
            id: id.into(),
            ts,
            text: text.into(),
            author: None,
            repost_of: None,
            reply_to: None,
            region: None,
            lang: None,
            source: None,
            official: false,
            to: None,
            thread: None,
        }
    }

    /// A 64-bit key for the author; a mention without author is an author of its own.
    pub fn author_key(&self) -> u64 {
        match &self.author {
            Some(a) => crate::stable_hash(a.id.as_bytes()),
            None => crate::stable_hash(format!("\u{0}anon:{}", self.id).as_bytes()),
        }
    }

    /// Whether the author is verified by the platform.
    pub fn verified(&self) -> bool {
        self.author.as_ref().is_some_and(|a| a.verified)
    }
}

/// Why a line was rejected. The `as_str` names are metric label values (a small fixed set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("line is {0} bytes, over the 64 KiB limit")]
    TooLarge(usize),
    /// The bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// Not a JSON object.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A required field is absent.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type or an unparsable value.
    #[error("field `{field}`: {message}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl RejectReason {
    /// Metric label for this reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::TooLarge(_) => "too_large",
            RejectReason::InvalidUtf8(_) => "invalid_utf8",
            RejectReason::InvalidJson(_) => "invalid_json",
            RejectReason::MissingField(_) => "missing_field",
            RejectReason::BadField { .. } => "bad_field",
        }
    }

    /// Every label value, for pre-registering metrics and printing summaries in a fixed order.
    pub const ALL: [&'static str; 5] = [
        "too_large",
        "invalid_utf8",
        "invalid_json",
        "missing_field",
        "bad_field",
    ];
}

/// Parse one line of the generic format.
pub fn parse_mention(bytes: &[u8]) -> Result<Mention, RejectReason> {
    if bytes.len() > MAX_LINE_BYTES {
        return Err(RejectReason::TooLarge(bytes.len()));
    }
    let s = std::str::from_utf8(bytes).map_err(|e| RejectReason::InvalidUtf8(e.valid_up_to()))?;
    parse_mention_str(s)
}

/// [`parse_mention`] of text already known to be UTF-8 (an element of a payload checked whole).
pub fn parse_mention_str(s: &str) -> Result<Mention, RejectReason> {
    if s.len() > MAX_LINE_BYTES {
        return Err(RejectReason::TooLarge(s.len()));
    }
    let raw: RawMention = match serde_json::from_str(s) {
        Ok(r) => r,
        Err(e) => return Err(classify_json_error(e)),
    };
    raw.into_mention()
}

/// Parse an already decoded JSON value (HTTP POST arrays).
pub fn parse_value(v: &serde_json::Value) -> Result<Mention, RejectReason> {
    let raw = RawMention::deserialize(v).map_err(classify_json_error)?;
    raw.into_mention()
}

fn classify_json_error(e: serde_json::Error) -> RejectReason {
    let msg = e.to_string();
    // Field errors are raised by our own visitor as "field `x`: …"; keep them as BadField.
    if let Some(rest) = msg.strip_prefix("field `") {
        if let Some((field, message)) = rest.split_once("`: ") {
            let field = FIELDS
                .iter()
                .find(|f| **f == field)
                .copied()
                .unwrap_or("unknown");
            let message = message
                .split(" at line")
                .next()
                .unwrap_or(message)
                .to_string();
            return RejectReason::BadField { field, message };
        }
    }
    RejectReason::InvalidJson(msg)
}

/// The fields a mention line may carry (anything else is unknown to the parser).
pub const MENTION_FIELDS: &[&str] = FIELDS.split_at(12).0;

const FIELDS: [&str; 13] = [
    "id",
    "text",
    "ts",
    "created_at",
    "author",
    "repost_of",
    "reply_to",
    "region",
    "lang",
    "source",
    "to",
    "thread",
    "unknown",
];

#[derive(Default)]
struct RawMention {
    id: Option<String>,
    text: Option<String>,
    ts: Option<i64>,
    created_at: Option<String>,
    author: Option<Author>,
    repost_of: Option<String>,
    reply_to: Option<String>,
    region: Option<String>,
    lang: Option<String>,
    source: Option<String>,
    to: Option<String>,
    thread: Option<String>,
}

impl RawMention {
    fn into_mention(self) -> Result<Mention, RejectReason> {
        let id = self.id.ok_or(RejectReason::MissingField("id"))?;
        if id.is_empty() {
            return Err(RejectReason::BadField {
                field: "id",
                message: "empty".into(),
            });
        }
        let text = self.text.ok_or(RejectReason::MissingField("text"))?;
        let ts = match (self.ts, self.created_at) {
            (Some(ts), _) => ts,
            (None, Some(c)) => parse_time(&c).ok_or_else(|| RejectReason::BadField {
                field: "created_at",
                message: format!(
                    "cannot parse {c:?} as RFC 3339 or `Sat Nov 28 10:32:38 +0800 2026`"
                ),
            })?,
            (None, None) => return Err(RejectReason::MissingField("ts")),
        };
        let author = self.author.filter(|a| !a.id.is_empty());
        Ok(Mention {
            id,
            ts,
            text,
            author,
            repost_of: self.repost_of.filter(|s| !s.is_empty()),
            reply_to: self.reply_to.filter(|s| !s.is_empty()),
            region: self.region.filter(|s| !s.is_empty()),
            lang: self.lang,
            source: self.source,
            official: false,
            to: self.to.filter(|s| !s.is_empty()),
            thread: self.thread.filter(|s| !s.is_empty()),
        })
    }
}

/// Parse RFC 3339 or Weibo's `Sat Nov 28 10:32:38 +0800 2026` into unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y")
        .ok()
        .map(|t| t.timestamp_millis())
}

fn bad<E: de::Error>(field: &str, message: impl fmt::Display) -> E {
    E::custom(format_args!("field `{field}`: {message}"))
}

/// A string, a number (turned into its decimal string) or null.
struct IdLike(Option<String>);

impl<'de> Deserialize<'de> for IdLike {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdLike;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdLike, E> {
                Ok(IdLike(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<IdLike, E> {
                Ok(IdLike(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdLike, E> {
                Ok(IdLike(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdLike, E> {
                Ok(IdLike(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdLike, E> {
                if v.fract() == 0.0 && v.abs() < 9e15 {
                    Ok(IdLike(Some(format!("{}", v as i64))))
                } else {
                    Err(E::custom("not an integer"))
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<IdLike, E> {
                Ok(IdLike(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<IdLike, E> {
                Ok(IdLike(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An author: a string, an integer (its decimal string), an object `{id, name, followers, verified}`, or null.
struct AuthorLike(Option<Author>);

impl<'de> Deserialize<'de> for AuthorLike {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Obj {
            #[serde(default)]
            id: Option<IdLike>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            followers: Option<u64>,
            #[serde(default)]
            verified: Option<bool>,
        }
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Null => Ok(AuthorLike(None)),
            serde_json::Value::String(s) => Ok(AuthorLike(Some(Author {
                id: s,
                ..Author::default()
            }))),
            // A number is an id only when it is an integer (as for `id`): a float would be
            // spelt differently by different parsing paths.
            n @ serde_json::Value::Number(_) => {
                let id = IdLike::deserialize(n).map_err(|e| bad("author", e))?;
                Ok(AuthorLike(id.0.map(|id| Author {
                    id,
                    ..Author::default()
                })))
            }
            obj @ serde_json::Value::Object(_) => {
                let o: Obj = serde_json::from_value(obj).map_err(|e| bad("author", e))?;
                let id =
                    o.id.and_then(|i| i.0)
                        .or_else(|| o.name.clone())
                        .unwrap_or_default();
                Ok(AuthorLike(Some(Author {
                    id,
                    name: o.name,
                    followers: o.followers,
                    verified: o.verified.unwrap_or(false),
                })))
            }
            other => Err(bad(
                "author",
                format!("expected a string or an object, got {other}"),
            )),
        }
    }
}

/// A key of a mention's object, read without copying it (a `String` per key was four of the
/// ~15 allocations per mention). The names are [`FIELDS`]' first twelve.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Id,
    Text,
    Ts,
    CreatedAt,
    Author,
    RepostOf,
    ReplyTo,
    Region,
    Lang,
    Source,
    To,
    Thread,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RawMention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMention;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMention, A::Error> {
                let mut r = RawMention::default();
                while let Some(key) = map.next_key::<Field>()? {
                    match key {
                        Field::Id => {
                            r.id = map.next_value::<IdLike>().map_err(|e| bad("id", e))?.0;
                        }
                        Field::Text => {
                            r.text = Some(
                                map.next_value::<Option<String>>()
                                    .map_err(|e| bad("text", e))?
                                    .unwrap_or_default(),
                            );
                        }
                        Field::Ts => {
                            let v = map.next_value::<serde_json::Value>()?;
                            r.ts = match v {
                                serde_json::Value::Null => None,
                                serde_json::Value::Number(n) => Some(
                                    n.as_i64()
                                        .or_else(|| n.as_f64().map(|f| f as i64))
                                        .ok_or_else(|| bad::<A::Error>("ts", "not an integer"))?,
                                ),
                                other => {
                                    return Err(bad(
                                        "ts",
                                        format!("expected unix milliseconds, got {other}"),
                                    ))
                                }
                            };
                        }
                        Field::CreatedAt => {
                            r.created_at = map
                                .next_value::<Option<String>>()
                                .map_err(|e| bad("created_at", e))?;
                        }
                        Field::Author => r.author = map.next_value::<AuthorLike>()?.0,
                        Field::RepostOf => {
                            r.repost_of = map
                                .next_value::<IdLike>()
                                .map_err(|e| bad("repost_of", e))?
                                .0
                        }
                        Field::ReplyTo => {
                            r.reply_to = map
                                .next_value::<IdLike>()
                                .map_err(|e| bad("reply_to", e))?
                                .0
                        }
                        Field::Region => {
                            r.region = map.next_value::<IdLike>().map_err(|e| bad("region", e))?.0
                        }
                        Field::Lang => {
                            r.lang = map
                                .next_value::<Option<String>>()
                                .map_err(|e| bad("lang", e))?
                        }
                        Field::Source => {
                            r.source = map
                                .next_value::<Option<String>>()
                                .map_err(|e| bad("source", e))?
                        }
                        Field::To => r.to = map.next_value::<IdLike>().map_err(|e| bad("to", e))?.0,
                        Field::Thread => {
                            r.thread = map.next_value::<IdLike>().map_err(|e| bad("thread", e))?.0
                        }
                        Field::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_shape() {
        let cases: &[(&str, &str, i64)] = &[
            (r#"{"id":"a1","text":"hi","ts":1000}"#, "a1", 1000),
            (r#"{"id":42,"text":"hi","ts":5}"#, "42", 5),
            (
                r#"{"id":"x","text":"","created_at":"2026-11-28T10:32:38+08:00"}"#,
                "x",
                1_795_833_158_000,
            ),
            (
                r#"{"id":"w","text":"t","created_at":"Sat Nov 28 10:32:38 +0800 2026"}"#,
                "w",
                1_795_833_158_000,
            ),
        ];
        for (line, id, ts) in cases {
            let m = parse_mention(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(m.id, *id);
            assert_eq!(m.ts, *ts, "{line}");
        }
    }

    #[test]
    fn authors_in_both_forms_and_empty() {
        let m = parse_mention(br#"{"id":1,"text":"a","ts":1,"author":"alice"}"#).unwrap();
        assert_eq!(m.author.unwrap().id, "alice");
        let m = parse_mention(
            br#"{"id":1,"text":"a","ts":1,"author":{"id":7,"name":"B","followers":10,"verified":true}}"#,
        )
        .unwrap();
        let a = m.author.unwrap();
        assert_eq!(
            (a.id.as_str(), a.followers, a.verified),
            ("7", Some(10), true)
        );
        let m = parse_mention(br#"{"id":1,"text":"a","ts":1,"author":""}"#).unwrap();
        assert!(m.author.is_none());
        let m2 = parse_mention(br#"{"id":2,"text":"a","ts":1}"#).unwrap();
        assert_ne!(m.author_key(), m2.author_key());
    }

    #[test]
    fn rejects_with_reasons_naming_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "invalid_json"),
            (br#"{"text":"a","ts":1}"#, "missing_field"),
            (br#"{"id":"a","ts":1}"#, "missing_field"),
            (br#"{"id":"a","text":"x"}"#, "missing_field"),
            (br#"{"id":"a","text":"x","ts":"yesterday"}"#, "bad_field"),
            (
                br#"{"id":"a","text":"x","created_at":"yesterday"}"#,
                "bad_field",
            ),
            (br#"{"id":{"x":1},"text":"x","ts":1}"#, "bad_field"),
            (b"{\"id\":\"a\",\"text\":\"\xff\",\"ts\":1}", "invalid_utf8"),
            (b"[1,2]", "invalid_json"),
        ];
        for (line, reason) in cases {
            let e = parse_mention(line).unwrap_err();
            assert_eq!(
                e.as_str(),
                *reason,
                "{}: {e}",
                String::from_utf8_lossy(line)
            );
        }
        let e = parse_mention(br#"{"id":"a","text":"x","ts":"yesterday"}"#).unwrap_err();
        assert!(e.to_string().contains("`ts`"), "{e}");
        let big = format!(
            r#"{{"id":"a","text":"{}","ts":1}}"#,
            "x".repeat(MAX_LINE_BYTES)
        );
        assert_eq!(
            parse_mention(big.as_bytes()).unwrap_err().as_str(),
            "too_large"
        );
    }

    #[test]
    fn keys_are_matched_as_written_escaped_or_not_and_unknown_ones_skipped() {
        // A key spelt with an escape is the same key; a key that only resembles one
        // (case, prefix, suffix) is unknown and skipped with its value, whatever it holds.
        let m = parse_mention(
            br#"{"i\u0064":"a","te\u0078t":"x","ts":5,"Text":"no","tex":{"a":[1]},"texts":3,"author":"u"}"#,
        )
        .expect("parses");
        assert_eq!((m.id.as_str(), m.text.as_str(), m.ts), ("a", "x", 5));
        assert_eq!(m.author.map(|a| a.id).as_deref(), Some("u"));
        // The last of a repeated key wins, as before.
        let m = parse_mention(br#"{"id":"a","id":"b","text":"x","ts":1}"#).expect("parses");
        assert_eq!(m.id, "b");
        // Without its `text` (only look-alikes), the line is rejected naming the field.
        let e = parse_mention(br#"{"id":"a","Text":"x","ts":1}"#).unwrap_err();
        assert_eq!(e, RejectReason::MissingField("text"));
    }
}
