//! Weibo's statuses and comments as [`Mention`]s.
//!
//! Ids are the ones the Weibo publisher and the rebuttal replies use: a status is
//! `weibo:{idstr}` (the id `comments/create` and `statuses/repost` take), a comment
//! `weibo:c:{idstr}` (answering it takes `comments/reply` with the status id as well).

use super::api::Endpoint;
use crate::normalize::mention::parse_time;
use crate::normalize::{Author, Mention};
use serde_json::Value;

/// `source` of the mentions.
pub const SOURCE: &str = "weibo";

/// Why an item was refused: a reject label (`RejectReason`'s) and a message for the debug log.
pub type Reject = (&'static str, String);

/// An item's id: `idstr`, else `id` (Weibo's ids are decimal numbers).
pub fn id_of(v: &Value) -> Option<u64> {
    if let Some(s) = v.get("idstr").and_then(Value::as_str) {
        return s.trim().parse().ok();
    }
    match v.get("id")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The mention id of item `id` of `ep`.
pub fn mention_id(ep: Endpoint, id: u64) -> String {
    match ep {
        Endpoint::Mentions => format!("weibo:{id}"),
        Endpoint::Comments => format!("weibo:c:{id}"),
    }
}

/// Whether Weibo marks the item deleted (`"deleted": "1"`, its text replaced).
pub fn is_deleted(v: &Value) -> bool {
    match v.get("deleted") {
        Some(Value::String(s)) => s == "1",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::Bool(b)) => *b,
        _ => false,
    }
}

/// Item `v` of `ep` (its id already read) as a mention addressed to `to`: a status that @s the
/// account (`repost_of` its reposted status), or a comment to it (`reply_to` the comment it
/// answers, else the status it is on).
pub fn mention(ep: Endpoint, id: u64, v: &Value, to: &str) -> Result<Mention, Reject> {
    if !v.is_object() {
        return Err(("invalid_json", "not a JSON object".into()));
    }
    let created = match v.get("created_at") {
        None | Some(Value::Null) => return Err(("missing_field", "no created_at".into())),
        Some(c) => c
            .as_str()
            .ok_or_else(|| ("bad_field", "created_at is not a string".to_string()))?,
    };
    let ts = parse_time(created)
        .ok_or_else(|| ("bad_field", format!("created_at: cannot parse {created:?}")))?;
    let text = match v.get("text") {
        None | Some(Value::Null) => return Err(("missing_field", "no text".into())),
        Some(t) => t
            .as_str()
            .ok_or_else(|| ("bad_field", "text is not a string".to_string()))?,
    };
    let author = match v.get("user") {
        None | Some(Value::Null) => None,
        Some(u) => Some(author(u)?),
    };
    let parent = |field: &str| -> Result<Option<u64>, Reject> {
        match v.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(p) => id_of(p)
                .map(Some)
                .ok_or_else(|| ("bad_field", format!("{field} has no id"))),
        }
    };
    let (repost_of, reply_to, thread) = match ep {
        Endpoint::Mentions => (
            parent("retweeted_status")?.map(|p| mention_id(Endpoint::Mentions, p)),
            None,
            None,
        ),
        Endpoint::Comments => {
            let status = parent("status")?.map(|s| mention_id(Endpoint::Mentions, s));
            match parent("reply_comment")? {
                Some(c) => (None, Some(mention_id(Endpoint::Comments, c)), status),
                None => (None, status, None),
            }
        }
    };
    Ok(Mention {
        id: mention_id(ep, id),
        ts,
        text: text.to_string(),
        author,
        repost_of,
        reply_to,
        region: None,
        lang: None,
        source: Some(SOURCE.to_string()),
        official: false,
        to: Some(to.to_string()),
        thread,
    })
}

/// A Weibo `user`: its `idstr` (or `id`), `screen_name`, `followers_count`, `verified`.
fn author(u: &Value) -> Result<Author, Reject> {
    let id = id_of(u).ok_or_else(|| ("bad_field", "user has no id".to_string()))?;
    Ok(Author {
        id: id.to_string(),
        name: u
            .get("screen_name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        followers: u.get("followers_count").and_then(Value::as_u64),
        verified: u.get("verified").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CREATED: &str = "Sat Nov 28 10:32:38 +0800 2026";

    fn user() -> Value {
        json!({"id": 1_404_376_560u64, "idstr": "1404376560", "screen_name": "银川市民",
               "followers_count": 210, "verified": true})
    }

    #[test]
    fn statuses_and_comments_become_mentions() {
        let to = "@问政银川";
        let status = json!({"id": 4_942_000_000_000_101u64, "idstr": "4942000000000101",
            "created_at": CREATED, "text": "@问政银川 兴庆区路灯坏了", "user": user()});
        let m = mention(Endpoint::Mentions, 4_942_000_000_000_101, &status, to).unwrap();
        assert_eq!(m.id, "weibo:4942000000000101");
        assert_eq!(m.to.as_deref(), Some(to));
        assert_eq!(m.source.as_deref(), Some("weibo"));
        assert_eq!(m.ts, parse_time(CREATED).unwrap());
        assert_eq!(
            (m.repost_of.as_deref(), m.reply_to.as_deref()),
            (None, None)
        );
        let a = m.author.unwrap();
        assert_eq!(
            (a.id.as_str(), a.name.as_deref(), a.followers, a.verified),
            ("1404376560", Some("银川市民"), Some(210), true)
        );

        let mut repost = status.clone();
        repost["retweeted_status"] = json!({"idstr": "4942000000000001", "text": "原文"});
        let m = mention(Endpoint::Mentions, 4_942_000_000_000_101, &repost, to).unwrap();
        assert_eq!(m.repost_of.as_deref(), Some("weibo:4942000000000001"));

        let comment = json!({"id": 5_001u64, "idstr": "5001", "created_at": CREATED,
            "text": "路灯还没修", "user": user(), "status": {"id": 4_942_000_000_000_001u64}});
        let m = mention(Endpoint::Comments, 5001, &comment, to).unwrap();
        assert_eq!(m.id, "weibo:c:5001");
        assert_eq!(m.reply_to.as_deref(), Some("weibo:4942000000000001"));
        let mut reply = comment.clone();
        reply["reply_comment"] = json!({"idstr": "4999", "text": "已转交"});
        let m = mention(Endpoint::Comments, 5001, &reply, to).unwrap();
        assert_eq!(m.reply_to.as_deref(), Some("weibo:c:4999"));
        assert_eq!(m.thread.as_deref(), Some("weibo:4942000000000001"));
    }

    #[test]
    fn bad_items_name_the_field() {
        let ok = json!({"id": 7, "created_at": CREATED, "text": "x", "user": user()});
        let mut cases: Vec<(Value, &str, &str)> =
            vec![(json!("just a string"), "invalid_json", "object")];
        for (field, value, label, says) in [
            ("created_at", Value::Null, "missing_field", "created_at"),
            ("created_at", json!("yesterday"), "bad_field", "created_at"),
            ("created_at", json!(5), "bad_field", "created_at"),
            ("text", Value::Null, "missing_field", "text"),
            ("text", json!(["a"]), "bad_field", "text"),
            ("user", json!({"screen_name": "无名"}), "bad_field", "user"),
            ("status", json!({"text": "no id"}), "bad_field", "status"),
        ] {
            let mut v = ok.clone();
            v[field] = value;
            cases.push((v, label, says));
        }
        for (v, label, says) in cases {
            let (l, msg) = mention(Endpoint::Comments, 7, &v, "@a").unwrap_err();
            assert_eq!(l, label, "{v}");
            assert!(msg.contains(says), "{msg} for {v}");
        }
        assert!(mention(Endpoint::Comments, 7, &ok, "@a").is_ok());
        assert_eq!(id_of(&json!({"idstr": "12", "id": 13})), Some(12));
        assert_eq!(id_of(&json!({"id": "14"})), Some(14));
        assert_eq!(id_of(&json!({"id": "x"})), None);
        assert!(is_deleted(&json!({"deleted": "1"})));
        assert!(!is_deleted(&json!({"deleted": "0"})));
    }
}
