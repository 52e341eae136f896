//! The Mastodon JSON this feed reads (only the fields it uses), and statuses as [`Mention`]s.

use super::{Mastodon, SOURCE};
use crate::normalize::html_to_text;
use crate::normalize::mention::parse_time;
use crate::normalize::{Author, Mention};
use serde::Deserialize;

/// An id: Mastodon sends strings; numbers are tolerated.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Id {
    S(String),
    N(u64),
}

impl Id {
    pub(super) fn into_string(self) -> String {
        match self {
            Id::S(s) => s,
            Id::N(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Status {
    pub(super) id: Id,
    pub(super) created_at: String,
    #[serde(default)]
    pub(super) edited_at: Option<String>,
    #[serde(default)]
    pub(super) in_reply_to_id: Option<Id>,
    #[serde(default)]
    pub(super) language: Option<String>,
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) spoiler_text: Option<String>,
    pub(super) account: Account,
    #[serde(default)]
    pub(super) reblog: Option<Box<Status>>,
    /// `public`, `unlisted`, `private` or `direct`.
    #[serde(default)]
    pub(super) visibility: Option<String>,
    /// The accounts the status mentions.
    #[serde(default)]
    pub(super) mentions: Vec<MentionRef>,
}

/// An account a status mentions (Mastodon's `Status::Mention`).
#[derive(Debug, Deserialize)]
pub(super) struct MentionRef {
    #[serde(default)]
    pub(super) acct: String,
}

/// A direct conversation (the `conversation` event of the `direct` stream).
#[derive(Debug, Deserialize)]
pub(super) struct Conversation {
    #[serde(default)]
    pub(super) last_status: Option<Status>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Account {
    pub(super) acct: String,
    #[serde(default)]
    pub(super) display_name: Option<String>,
    #[serde(default)]
    pub(super) followers_count: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Notification {
    pub(super) id: Id,
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) status: Option<Status>,
}

/// Why a payload was rejected: a reject reason label and a message for the debug log.
pub(super) type Reject = (&'static str, String);

pub(super) fn json_reject(e: serde_json::Error) -> Reject {
    use serde_json::error::Category;
    let label = match e.classify() {
        Category::Data => "bad_field",
        _ => "invalid_json",
    };
    (label, e.to_string())
}

impl Mastodon {
    /// A status as a mention. `edit`: the status was edited (its time is `edited_at`). `to` is
    /// the configured account when the status addresses it: a mention notification or a direct
    /// message (any `source` but the streams'), or a status whose mentions name it; never on
    /// the account's own statuses.
    pub(super) fn mention(&self, s: &Status, edit: bool, source: &str) -> Result<Mention, Reject> {
        let id = s.id.clone().into_string();
        if id.is_empty() {
            return Err(("bad_field", "empty status id".into()));
        }
        let when = match (edit, &s.edited_at) {
            (true, Some(e)) => e.as_str(),
            _ => s.created_at.as_str(),
        };
        let ts =
            parse_time(when).ok_or_else(|| ("bad_field", format!("cannot parse time {when:?}")))?;
        let (text, repost_of) = match &s.reblog {
            Some(r) => {
                let rid = r.id.clone().into_string();
                if rid.is_empty() {
                    return Err(("bad_field", "empty reblog id".into()));
                }
                (status_text(r), Some(self.mention_id(&rid)))
            }
            None => (status_text(s), None),
        };
        let a = &s.account;
        if a.acct.is_empty() {
            return Err(("bad_field", "empty account acct".into()));
        }
        let author_id = if a.acct.contains('@') {
            a.acct.clone()
        } else {
            format!("{}@{}", a.acct, self.domain)
        };
        let to = self.account.as_ref().and_then(|(handle, key)| {
            let ours = |acct: &str| full_acct(acct, &self.domain) == *key;
            let addressed = source != SOURCE || s.mentions.iter().any(|m| ours(&m.acct));
            (addressed && !ours(&a.acct)).then(|| handle.clone())
        });
        Ok(Mention {
            id: self.mention_id(&id),
            ts,
            text,
            author: Some(Author {
                id: author_id,
                name: a.display_name.clone().filter(|n| !n.is_empty()),
                followers: a.followers_count.and_then(|n| u64::try_from(n).ok()),
                verified: false,
            }),
            repost_of,
            reply_to: s
                .in_reply_to_id
                .clone()
                .map(Id::into_string)
                .filter(|r| !r.is_empty())
                .map(|r| self.mention_id(&r)),
            region: None,
            lang: s.language.clone().filter(|l| !l.is_empty()),
            source: Some(source.to_string()),
            official: false,
            to,
            thread: None,
        })
    }
}

/// An account's `user@domain`, lower case, for comparing: a local `acct` (no domain) is
/// completed with the instance's `domain`, a leading `@` dropped.
pub(super) fn full_acct(acct: &str, domain: &str) -> String {
    let a = acct.trim().trim_start_matches('@').to_lowercase();
    if a.contains('@') {
        a
    } else {
        format!("{a}@{}", domain.to_lowercase())
    }
}

/// A status's text: its content warning (if any) and its content, as plain text.
pub(super) fn status_text(s: &Status) -> String {
    let body = html_to_text(s.content.as_deref().unwrap_or(""));
    match s.spoiler_text.as_deref().map(str::trim) {
        Some(cw) if !cw.is_empty() => format!("{cw}\n{body}"),
        _ => body,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{proto, status};
    use super::super::SOURCE;
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn status_to_mention_cases() {
        let p = proto(&[]);
        let host = "mastodon:social.example:";
        let base = status("110", "alice", "<p>北京海淀区暴雨</p>");
        let mut reply = status("111", "bob@other.example", "<p>回复</p>");
        reply["in_reply_to_id"] = json!("110");
        let mut reblog = status("112", "carol", "");
        reblog["reblog"] = status("100", "dave@far.example", "<p>原文 &amp; 转发</p>");
        let mut edited = status("113", "erin", "<p>改过</p>");
        edited["edited_at"] = json!("2026-07-21T09:00:00.000Z");
        let mut cw = status("114", "frank", "<p>正文</p>");
        cw["spoiler_text"] = json!("暴雨预警");
        cw["language"] = Value::Null;
        cw["account"]["display_name"] = json!("");
        cw["account"]["followers_count"] = json!(-1);
        let mut numeric = status("115", "gina", "x");
        numeric["id"] = json!(115);
        let created = parse_time("2026-07-21T08:15:30.000Z").unwrap();
        let edit_ts = parse_time("2026-07-21T09:00:00.000Z").unwrap();

        type Want = (
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            &'static str,
            i64,
        );
        // (status, edit) → (id, text, repost_of, reply_to, author id, ts)
        let cases: Vec<(Value, bool, Want)> = vec![
            (
                base.clone(),
                false,
                (
                    "110",
                    "北京海淀区暴雨",
                    None,
                    None,
                    "alice@social.example",
                    created,
                ),
            ),
            (
                reply,
                false,
                (
                    "111",
                    "回复",
                    None,
                    Some("110"),
                    "bob@other.example",
                    created,
                ),
            ),
            (
                reblog,
                false,
                (
                    "112",
                    "原文 & 转发",
                    Some("100"),
                    None,
                    "carol@social.example",
                    created,
                ),
            ),
            (
                edited.clone(),
                true,
                ("113", "改过", None, None, "erin@social.example", edit_ts),
            ),
            (
                edited,
                false,
                ("113", "改过", None, None, "erin@social.example", created),
            ),
            (
                cw,
                false,
                (
                    "114",
                    "暴雨预警\n正文",
                    None,
                    None,
                    "frank@social.example",
                    created,
                ),
            ),
            (
                numeric,
                false,
                ("115", "x", None, None, "gina@social.example", created),
            ),
        ];
        for (v, edit, (id, text, repost, reply, author, ts)) in cases {
            let s: Status = serde_json::from_value(v.clone()).expect("a status");
            let m = p.mention(&s, edit, SOURCE).expect("a mention");
            assert_eq!(m.id, format!("{host}{id}"), "{v}");
            assert_eq!(m.text, text, "{v}");
            assert_eq!(m.repost_of, repost.map(|r| format!("{host}{r}")), "{v}");
            assert_eq!(m.reply_to, reply.map(|r| format!("{host}{r}")), "{v}");
            let a = m.author.as_ref().expect("author");
            assert_eq!(a.id, author, "{v}");
            assert!(!a.verified);
            assert_eq!(m.ts, ts, "{v}");
            assert_eq!(m.source.as_deref(), Some(SOURCE));
        }
        let s: Status = serde_json::from_value(base).unwrap();
        let m = p.mention(&s, false, SOURCE).unwrap();
        assert_eq!(m.lang.as_deref(), Some("zh"));
        let a = m.author.unwrap();
        assert_eq!((a.name.as_deref(), a.followers), (Some("市民"), Some(12)));

        let mut bad = status("116", "hal", "x");
        bad["created_at"] = json!("yesterday");
        let s: Status = serde_json::from_value(bad).unwrap();
        assert_eq!(p.mention(&s, false, SOURCE).unwrap_err().0, "bad_field");
    }
}
