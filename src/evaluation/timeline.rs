//! 传播力 (reach): each Mastodon and Weibo account of the matrix reads its own timeline through
//! its platform's documented API — Mastodon `GET /api/v1/accounts/verify_credentials`, then
//! `GET /api/v1/accounts/:id/statuses?limit=40`; Weibo `GET /2/statuses/user_timeline.json
//! ?count=50` — once per `[timeline] every` (30 min by default: one or two reads an account per
//! half hour, far inside Mastodon's 300 reads per 5 minutes and Weibo's hourly read limit).
//! Every post seen is kept with the counts the platform reports (reposts, replies, likes) and
//! whether it carries public-service content, in the case store (`account_posts`), so posts
//! made by hand count as well as huiying's own.

use crate::detect::{Analyzer, RuleSet};
use crate::normalize::Mention;
use crate::respond::matrix::{Account, Platform};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One of an account's own posts, as its timeline showed it last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnPost {
    /// The matrix account.
    pub account: String,
    /// The platform's post id.
    pub id: String,
    /// When it was posted (ms).
    pub at: i64,
    /// `post`, `repost` (a reblog / retweet) or `reply`.
    pub kind: String,
    /// Reposts of it (Mastodon `reblogs_count`, Weibo `reposts_count`).
    pub reposts: u64,
    /// Replies to it (`replies_count`, `comments_count`).
    pub replies: u64,
    /// Likes (`favourites_count`, `attitudes_count`).
    pub likes: u64,
    /// Whether it carries public-service content: a category, request kind or known claim of
    /// the rules, or one of `[reach] public_service_words`.
    pub public_service: bool,
}

impl OwnPost {
    /// The store key: one record per account and post.
    pub fn key(&self) -> String {
        format!("{}:{}", self.account, self.id)
    }
}

/// What reading a timeline found, or why it failed.
#[derive(Debug, Default)]
pub struct Read {
    /// Posts.
    pub posts: Vec<OwnPost>,
    /// Items skipped (no id or no parsable time), with the field.
    pub skipped: Vec<String>,
}

/// Whether `text` carries public-service content (see [`OwnPost::public_service`]).
pub fn public_service(text: &str, words: &[String], analyzer: &Analyzer, rules: &RuleSet) -> bool {
    if words
        .iter()
        .any(|w| !w.is_empty() && text.contains(w.as_str()))
    {
        return true;
    }
    let m = Mention {
        official: true,
        ..Mention::new(String::new(), 0, text)
    };
    let a = analyzer.analyze(rules, &m);
    !a.categories.is_empty() || !a.claims.is_empty() || !a.requests.is_empty()
}

fn count(v: &Value, field: &str) -> u64 {
    v.get(field).and_then(Value::as_u64).unwrap_or(0)
}

fn id_of(v: &Value) -> Option<String> {
    match v.get("idstr").or_else(|| v.get("id"))? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse a Mastodon statuses array of `account`; `public` decides public service.
pub fn parse_mastodon(account: &str, body: &Value, public: &dyn Fn(&str) -> bool) -> Read {
    let mut r = Read::default();
    let Some(items) = body.as_array() else {
        r.skipped.push("the answer is not a JSON array".into());
        return r;
    };
    for (i, v) in items.iter().enumerate() {
        let Some(id) = id_of(v) else {
            r.skipped.push(format!("[{i}].id: missing"));
            continue;
        };
        let Some(at) = v
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        else {
            r.skipped
                .push(format!("[{i}].created_at: missing or not RFC 3339"));
            continue;
        };
        let reblog = v.get("reblog").filter(|x| x.is_object());
        let kind = if reblog.is_some() {
            "repost"
        } else if v.get("in_reply_to_id").is_some_and(|x| !x.is_null()) {
            "reply"
        } else {
            "post"
        };
        let text = crate::normalize::html::html_to_text(
            reblog
                .unwrap_or(v)
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        r.posts.push(OwnPost {
            account: account.to_string(),
            id,
            at: at.timestamp_millis(),
            kind: kind.into(),
            reposts: count(v, "reblogs_count"),
            replies: count(v, "replies_count"),
            likes: count(v, "favourites_count"),
            public_service: public(&text),
        });
    }
    r
}

/// Parse a Weibo `user_timeline` answer of `account`.
pub fn parse_weibo(account: &str, body: &Value, public: &dyn Fn(&str) -> bool) -> Read {
    let mut r = Read::default();
    let Some(items) = body.get("statuses").and_then(Value::as_array) else {
        r.skipped.push("statuses: missing".into());
        return r;
    };
    for (i, v) in items.iter().enumerate() {
        let Some(id) = id_of(v) else {
            r.skipped.push(format!("statuses[{i}].idstr: missing"));
            continue;
        };
        let Some(at) = v
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y").ok())
        else {
            r.skipped.push(format!(
                "statuses[{i}].created_at: missing or not Weibo's format"
            ));
            continue;
        };
        let repost = v.get("retweeted_status").filter(|x| x.is_object());
        let text = v.get("text").and_then(Value::as_str).unwrap_or("");
        let original = repost
            .and_then(|x| x.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("");
        r.posts.push(OwnPost {
            account: account.to_string(),
            id,
            at: at.timestamp_millis(),
            kind: if repost.is_some() { "repost" } else { "post" }.into(),
            reposts: count(v, "reposts_count"),
            replies: count(v, "comments_count"),
            likes: count(v, "attitudes_count"),
            public_service: public(text) || (repost.is_some() && public(original)),
        });
    }
    r
}

/// Read `account`'s own recent posts (`weibo_api` is the Weibo base URL when the account has
/// no `endpoint`).
pub async fn read(
    client: &reqwest::Client,
    account: &Account,
    weibo_api: &str,
    public: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Read, String> {
    let token = account
        .token()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no token".to_string())?;
    let id = account.id.as_str();
    let get = |url: String, bearer: bool| {
        let mut r = client.get(url);
        if bearer {
            r = r.bearer_auth(&token);
        }
        async move {
            let resp = r.send().await.map_err(|e| format!("request: {e}"))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
            if !status.is_success() {
                return Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
            }
            serde_json::from_slice::<Value>(&body).map_err(|e| format!("not JSON: {e}"))
        }
    };
    match account.platform {
        Platform::Mastodon => {
            let base = account
                .endpoint
                .as_deref()
                .ok_or_else(|| "a Mastodon account needs its endpoint".to_string())?
                .trim_end_matches('/');
            let me = get(format!("{base}/api/v1/accounts/verify_credentials"), true).await?;
            let Some(me_id) = id_of(&me) else {
                return Err("verify_credentials: no id".into());
            };
            let body = get(
                format!("{base}/api/v1/accounts/{me_id}/statuses?limit=40"),
                true,
            )
            .await?;
            Ok(parse_mastodon(id, &body, public))
        }
        Platform::Weibo => {
            let base = account
                .endpoint
                .as_deref()
                .unwrap_or(weibo_api)
                .trim_end_matches('/');
            let url = reqwest::Url::parse_with_params(
                &format!("{base}/2/statuses/user_timeline.json"),
                &[("access_token", token.as_str()), ("count", "50")],
            )
            .map_err(|e| format!("url: {e}"))?;
            let body = get(url.to_string(), false).await?;
            Ok(parse_weibo(id, &body, public))
        }
        _ => Ok(Read::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timelines_parse_counts_kinds_and_skip_bad_items_by_name() {
        let public = |t: &str| t.contains("预警");
        let m = json!([
            {"id": "11", "created_at": "2026-11-03T02:00:00.000Z", "in_reply_to_id": null,
             "reblog": null, "content": "<p>暴雨<b>预警</b></p>", "reblogs_count": 5,
             "replies_count": 2, "favourites_count": 9},
            {"id": "12", "created_at": "2026-11-03T03:00:00.000Z", "in_reply_to_id": "7",
             "content": "<p>谢谢</p>"},
            {"id": "13", "created_at": "2026-11-03T04:00:00.000Z",
             "reblog": {"id": "99", "content": "<p>大风预警</p>"}, "content": ""},
            {"created_at": "2026-11-03T04:00:00.000Z"},
            {"id": "15", "created_at": "yesterday"}
        ]);
        let r = parse_mastodon("bj", &m, &public);
        let got: Vec<(&str, &str, u64, u64, u64, bool)> = r
            .posts
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    p.kind.as_str(),
                    p.reposts,
                    p.replies,
                    p.likes,
                    p.public_service,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("11", "post", 5, 2, 9, true),
                ("12", "reply", 0, 0, 0, false),
                ("13", "repost", 0, 0, 0, true)
            ]
        );
        assert_eq!(
            r.skipped,
            ["[3].id: missing", "[4].created_at: missing or not RFC 3339"]
        );
        let w = json!({"statuses": [
            {"idstr": "4942", "created_at": "Tue Nov 03 10:00:00 +0800 2026", "text": "今日天气",
             "reposts_count": 1, "comments_count": 3, "attitudes_count": 4},
            {"idstr": "4943", "created_at": "Tue Nov 03 11:00:00 +0800 2026", "text": "转发微博",
             "retweeted_status": {"idstr": "1", "text": "寒潮预警"}}
        ]});
        let r = parse_weibo("wb", &w, &public);
        assert_eq!(r.posts.len(), 2);
        assert_eq!(
            (r.posts[0].at, r.posts[0].replies, r.posts[0].public_service),
            (1_793_671_200_000, 3, false)
        );
        assert_eq!(
            (r.posts[1].kind.as_str(), r.posts[1].public_service),
            ("repost", true)
        );
        assert!(parse_weibo("wb", &json!({"error": "x"}), &public)
            .posts
            .is_empty());
    }
}

/// Every post record in `store` (a record that does not decode is skipped and logged).
pub fn load(store: &crate::cases::store::CaseStore) -> Result<Vec<OwnPost>, String> {
    let raw = store
        .records(crate::cases::store::Table::AccountPosts)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        match serde_json::from_slice::<OwnPost>(&r) {
            Ok(p) => out.push(p),
            Err(e) => tracing::warn!(error = %e, "A stored account post does not decode."),
        }
    }
    Ok(out)
}

/// Keep `posts` in `store` (one record per account and post: the latest counts win).
pub fn keep(store: &crate::cases::store::CaseStore, posts: &[OwnPost]) -> Result<(), String> {
    let records: Vec<(String, Vec<u8>)> = posts
        .iter()
        .filter_map(|p| serde_json::to_vec(p).ok().map(|v| (p.key(), v)))
        .collect();
    store
        .put_records(crate::cases::store::Table::AccountPosts, &records)
        .map_err(|e| e.to_string())
}

/// What one round of reading found.
#[derive(Debug, Default)]
pub struct Round {
    /// Accounts read.
    pub accounts: usize,
    /// Posts kept.
    pub posts: usize,
    /// Items skipped, by account.
    pub skipped: Vec<(String, String)>,
    /// Accounts that could not be read, and why.
    pub failed: Vec<(String, String)>,
}

/// Read every Mastodon and Weibo account of `matrix` that has a token, and keep what their
/// timelines show in `store`.
pub async fn read_all(
    client: &reqwest::Client,
    matrix: &crate::respond::matrix::Matrix,
    store: &crate::cases::store::CaseStore,
    words: &[String],
    analyzer: &Analyzer,
    rules: &crate::detect::reload::SharedRules,
    weibo_api: &str,
) -> Round {
    let mut round = Round::default();
    let rs = rules.load_full();
    let public = |t: &str| public_service(t, words, analyzer, &rs);
    for a in matrix
        .accounts()
        .iter()
        .filter(|a| matches!(a.platform, Platform::Mastodon | Platform::Weibo))
        .filter(|a| a.token().ok().flatten().is_some())
    {
        match read(client, a, weibo_api, &public).await {
            Ok(r) => {
                round.accounts += 1;
                round.posts += r.posts.len();
                round.skipped.extend(
                    r.skipped
                        .into_iter()
                        .map(|s| (a.id.as_str().to_string(), s)),
                );
                if let Err(e) = keep(store, &r.posts) {
                    round.failed.push((a.id.as_str().to_string(), e));
                }
            }
            Err(e) => round.failed.push((a.id.as_str().to_string(), e)),
        }
    }
    round
}
