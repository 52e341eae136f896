//! Weibo: the open API (`https://api.weibo.com`), form-encoded with the account's access token.
//!
//! | action | request |
//! |---|---|
//! | post | `POST /2/statuses/share.json` `access_token`, `status` |
//! | repost | `POST /2/statuses/repost.json` `access_token`, `id`, `status` (omitted when empty) |
//! | comment, reply | `POST /2/comments/create.json` `access_token`, `id`, `comment` |
//!
//! Weibo requires a posted `status` to contain a link to the app's safe domain; the text is sent
//! as it is (the templates put the link in). The answer is a status (or comment) with `id` and
//! `idstr`; `post_id` is `idstr` (or `id`). There is no URL in the answer and no rate-limit
//! header. Errors are `{"error": "…", "error_code": N, "request": "…"}` with HTTP 400/403: the
//! **code** decides the class ([`classify_code`]), the status only when there is none. Rate limits
//! (10022/10023/10024) are per hour: without a `Retry-After` the retry is at the top of the next
//! hour.
//!
//! **Guarantee.** Weibo has no idempotency header. The outbox records the attempt (and its time)
//! before sending; after an `Uncertain` outcome, and after `Duplicate` (20016 too fast, 20017 /
//! 20019 / 20111 repeated text: Weibo rejects identical consecutive text, so a blind resend of an
//! unchanged body after a lost answer would be refused — or, later, posted twice), the dispatcher
//! calls [`Publisher::find_recent`] before anything else: it reads
//! `GET /2/statuses/user_timeline.json?access_token=…&count=20` (`statuses[].text`, `idstr`, paged
//! back with `max_id`) and then `GET /2/comments/by_me.json` (comments), compares the text with
//! links removed (Weibo rewrites them to `t.cn`) and whitespace collapsed, and returns the post if
//! it is there. A retry never resends an unchanged body without that check.

use super::{
    check_target, match_key, now_ms, platform_message, read_response, status_error, Action,
    ErrorKind, PostRequest, Posted, PublishError, Publisher, FIND_RECENT_SKEW_MS,
};
use serde_json::Value;
use std::time::Duration;

/// The production API.
pub const WEIBO_API: &str = "https://api.weibo.com";

/// Pages `find_recent` reads at most per timeline.
const FIND_PAGES: usize = 5;

/// The text Weibo gives a repost sent without one.
const DEFAULT_REPOST_TEXT: &str = "转发微博";

/// One Weibo account that posts.
pub struct WeiboPublisher {
    client: reqwest::Client,
    base: String,
    token: String,
}

/// Never shows the token.
impl std::fmt::Debug for WeiboPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeiboPublisher")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The class of a Weibo `error_code`, if it is one this module knows.
pub fn classify_code(code: i64) -> Option<ErrorKind> {
    Some(match code {
        // IP / user / user-per-API request limits.
        10022..=10024 => ErrorKind::RateLimited,
        // Posting too fast; repeated content; "repeat content!"; repeated repost text.
        20016 | 20017 | 20019 | 20111 => ErrorKind::Duplicate,
        // Auth failed; token used / expired / revoked / rejected; accessor revoked; token
        // expired; invalid access token; app lacks the right; no app key.
        21301 | 21314..=21317 | 21319 | 21327 | 21332 | 10014 | 10006 => ErrorKind::Auth,
        // System error; service unavailable; remote service error; too many pending tasks; job
        // expired; RPC error.
        10001..=10003 | 10009..=10011 => ErrorKind::Server,
        // Text too long; illegal website; advertising; illegal content; target does not exist;
        // user does not exist; parameter errors.
        20012 | 20018 | 20020 | 20021 | 20101 | 20003 | 10008 | 10016 | 10017 => {
            ErrorKind::Rejected
        }
        _ => return None,
    })
}

/// Time until the top of the next hour (Weibo's limits are hourly).
fn until_next_hour(now_ms: i64) -> Duration {
    const HOUR: i64 = 3_600_000;
    Duration::from_millis(u64::try_from(HOUR - now_ms.rem_euclid(HOUR)).unwrap_or(0))
}

/// An `error_code` as a number (Weibo sends a number; be lenient with a string).
fn code_of(v: &Value) -> Option<i64> {
    match v.get("error_code")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The error in an answer, if it is one: by `error_code` first, then by HTTP status.
fn answer_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Option<PublishError> {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let code = v.as_ref().and_then(code_of);
    let ok = (200..300).contains(&status);
    let Some(code) = code else {
        return (!ok)
            .then(|| status_error(status, headers, platform_message(status, body), now_ms));
    };
    let msg = format!("{} (error_code {code})", platform_message(status, body));
    let kind = match classify_code(code) {
        Some(k) => k,
        None if ok => ErrorKind::Rejected,
        None => status_error(status, headers, String::new(), now_ms).kind,
    };
    let mut err = PublishError::new(kind, msg).with_status(status);
    match kind {
        ErrorKind::RateLimited => {
            err.retry_after = Some(
                super::retry_after(headers, now_ms).unwrap_or_else(|| until_next_hour(now_ms)),
            );
        }
        ErrorKind::Server => err.retry_after = super::retry_after(headers, now_ms),
        _ => {}
    }
    Some(err)
}

/// `idstr`, else `id`.
/// What `find_recent` looks for.
struct Find<'a> {
    want: &'a str,
    /// The post answered or reposted (`None`: a top-level post).
    target: Option<&'a str>,
    /// The comment answered on `target` (`comments/reply`), if any.
    comment: Option<&'a str>,
    floor: i64,
}

impl Find<'_> {
    /// Whether `item` answers (comment: `status`) or reposts (`retweeted_status`) the target,
    /// or, without a target, is a top-level post.
    fn answers(&self, item: &Value) -> bool {
        let parent = ["status", "retweeted_status"]
            .iter()
            .find_map(|k| item.get(*k).filter(|v| v.is_object()).and_then(id_of));
        let answered = item
            .get("reply_comment")
            .filter(|v| v.is_object())
            .and_then(id_of);
        parent.as_deref() == self.target
            && (self.comment.is_none() || answered.is_none() || answered.as_deref() == self.comment)
    }
}

/// A comment target: a weibo's id (`comments/create` on it), or `{status}/{comment}` (answer
/// that comment on that weibo with `comments/reply`). Each part is checked like any target id.
fn comment_target(target: &str) -> Result<(&str, Option<&str>), PublishError> {
    match target.split_once('/') {
        Some((status, cid)) => Ok((check_target(status)?, Some(check_target(cid)?))),
        None => Ok((check_target(target)?, None)),
    }
}

fn id_of(v: &Value) -> Option<String> {
    if let Some(s) = v.get("idstr").and_then(Value::as_str) {
        if !s.is_empty() {
            return Some(s.to_string());
        }
    }
    match v.get("id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Weibo's `created_at` (`Tue May 31 17:46:55 +0800 2011`) as unix ms.
fn created_ms(v: &Value) -> Option<i64> {
    let s = v.get("created_at")?.as_str()?;
    chrono::DateTime::parse_from_str(s, "%a %b %d %H:%M:%S %z %Y")
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Whether a post's text is the text sent: equal after [`match_key`] (links removed), or the
/// sent text followed by Weibo's repost chain (`//@someone: …`).
fn same_text(candidate: &str, want: &str) -> bool {
    let cand = match_key(candidate, true);
    cand == want
        || cand
            .strip_prefix(want)
            .is_some_and(|rest| rest.trim_start().starts_with("//@"))
}

impl WeiboPublisher {
    /// A publisher for the account of `token`; `base_url` is [`WEIBO_API`] in production.
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        token: impl Into<String>,
    ) -> WeiboPublisher {
        WeiboPublisher {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.into(),
        }
    }

    /// Search one timeline (`path`, the list under `field`) for `want`.
    async fn search(
        &self,
        path: &str,
        field: &str,
        find: &Find<'_>,
    ) -> Result<Option<Posted>, PublishError> {
        let (want, floor) = (find.want, find.floor);
        let url = format!("{}{path}", self.base);
        let mut max_id: Option<i64> = None;
        for _ in 0..FIND_PAGES {
            let mut query: Vec<(&str, String)> = vec![
                ("access_token", self.token.clone()),
                ("count", "20".to_string()),
            ];
            if let Some(m) = max_id {
                query.push(("max_id", m.to_string()));
            }
            let resp = self.client.get(&url).query(&query).send().await;
            let (status, headers, body) = read_response(resp, false).await?;
            if let Some(err) = answer_error(status, &headers, &body, now_ms()) {
                return Err(err);
            }
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                PublishError::new(ErrorKind::Server, format!("{path}: not JSON: {e}"))
                    .with_status(status)
            })?;
            let Some(list) = v.get(field).and_then(Value::as_array) else {
                return Ok(None);
            };
            if list.is_empty() {
                return Ok(None);
            }
            let mut oldest: Option<i64> = None;
            for item in list {
                if created_ms(item).is_some_and(|c| c < floor) {
                    return Ok(None);
                }
                let text = item.get("text").and_then(Value::as_str).unwrap_or("");
                if same_text(text, want) && find.answers(item) {
                    if let Some(post_id) = id_of(item) {
                        return Ok(Some(Posted {
                            post_id,
                            url: None,
                            rate_remaining: None,
                            rate_reset_at: None,
                        }));
                    }
                }
                if let Some(id) = id_of(item).and_then(|s| s.parse::<i64>().ok()) {
                    oldest = Some(oldest.map_or(id, |o: i64| o.min(id)));
                }
            }
            // `max_id` is inclusive on Weibo.
            match oldest {
                Some(o) if o > 0 => max_id = Some(o - 1),
                _ => break,
            }
        }
        Ok(None)
    }
}

impl Publisher for WeiboPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let mut form: Vec<(&str, &str)> = vec![("access_token", &self.token)];
        let path = match &req.action {
            Action::Mail { .. } => return Err(super::not_mail("Weibo")),
            Action::Post => {
                form.push(("status", &req.text));
                "/2/statuses/share.json"
            }
            Action::Repost { target } => {
                form.push(("id", check_target(target)?));
                if !req.text.is_empty() {
                    form.push(("status", &req.text));
                }
                "/2/statuses/repost.json"
            }
            Action::Reply { target } | Action::Comment { target } => {
                match comment_target(target)? {
                    (status, Some(cid)) => {
                        form.push(("id", status));
                        form.push(("cid", cid));
                        form.push(("comment", &req.text));
                        "/2/comments/reply.json"
                    }
                    (status, None) => {
                        form.push(("id", status));
                        form.push(("comment", &req.text));
                        "/2/comments/create.json"
                    }
                }
            }
        };
        tracing::debug!(
            account = %req.account_handle,
            key = %req.idempotency_key,
            action = req.action.name(),
            "Weibo: publishing."
        );
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await;
        let (status, headers, body) = read_response(resp, true).await?;
        if let Some(err) = answer_error(status, &headers, &body, now_ms()) {
            return Err(err);
        }
        let post_id = serde_json::from_slice::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(id_of)
            .ok_or_else(|| {
                PublishError::new(
                    ErrorKind::Uncertain,
                    format!(
                        "answered {status} without an id: {}",
                        platform_message(status, &body)
                    ),
                )
                .with_status(status)
            })?;
        Ok(Posted {
            post_id,
            url: None,
            rate_remaining: None,
            rate_reset_at: None,
        })
    }

    /// The account's statuses (`user_timeline`), then its comments (`comments/by_me`). An empty
    /// text matches Weibo's default repost text.
    async fn find_recent(
        &self,
        text: &str,
        in_reply_to: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<Posted>, PublishError> {
        let mut want = match_key(text, true);
        if want.is_empty() {
            want = DEFAULT_REPOST_TEXT.to_string();
        }
        let floor = since_ms.saturating_sub(FIND_RECENT_SKEW_MS);
        let (target, comment) = match in_reply_to {
            Some(t) => {
                let (s, c) = comment_target(t)?;
                (Some(s), c)
            }
            None => (None, None),
        };
        let find = Find {
            want: &want,
            target,
            comment,
            floor,
        };
        // A repost is in the timeline (with `retweeted_status`), a comment in `by_me` (with
        // `status`); a top-level post only in the timeline.
        if let Some(p) = self
            .search("/2/statuses/user_timeline.json", "statuses", &find)
            .await?
        {
            return Ok(Some(p));
        }
        if in_reply_to.is_none() {
            return Ok(None);
        }
        self.search("/2/comments/by_me.json", "comments", &find)
            .await
    }

    fn platform(&self) -> &'static str {
        "weibo"
    }

    fn idempotency_window(&self) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    const NOW: i64 = 1_780_000_000_000; // 20:26:40 UTC

    fn err(status: u16, body: &str) -> Option<PublishError> {
        answer_error(status, &HeaderMap::new(), body.as_bytes(), NOW)
    }

    #[test]
    fn codes_decide() {
        let e = err(
            403,
            r#"{"error":"User requests out of rate limit!","error_code":10023,"request":"/2/statuses/share.json"}"#,
        )
        .expect("an error");
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.retryable);
        // Top of the next hour: 21:00:00 is 33 min 20 s away.
        assert_eq!(e.retry_after, Some(Duration::from_secs(33 * 60 + 20)));
        assert_eq!(
            e.message,
            "User requests out of rate limit! (error_code 10023)"
        );
        // A 403 that is not a rate limit by code is Auth.
        let e = err(
            403,
            r#"{"error":"invalid_access_token","error_code":21332}"#,
        )
        .expect("error");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Auth, false));
        let e = err(400, r#"{"error":"repeat content!","error_code":20019}"#).expect("error");
        assert_eq!(e.kind, ErrorKind::Duplicate);
        assert!(!e.retryable && e.must_check_before_retry());
        let e = err(400, r#"{"error":"Text too long","error_code":"20012"}"#).expect("error");
        assert_eq!(e.kind, ErrorKind::Rejected);
        let e = err(500, r#"{"error":"system error!","error_code":10001}"#).expect("error");
        assert_eq!((e.kind, e.retryable), (ErrorKind::Server, true));
        // Unknown code: the status decides; on a 200 it is a refusal.
        assert_eq!(
            err(503, r#"{"error":"?","error_code":12345}"#).map(|e| e.kind),
            Some(ErrorKind::Server)
        );
        assert_eq!(
            err(200, r#"{"error":"?","error_code":12345}"#).map(|e| e.kind),
            Some(ErrorKind::Rejected)
        );
        // No code: the status.
        assert_eq!(
            err(502, "Bad Gateway").map(|e| e.kind),
            Some(ErrorKind::Server)
        );
        assert!(err(200, r#"{"id":1,"idstr":"1"}"#).is_none());
    }

    #[test]
    fn texts_and_ids() {
        let want = match_key("暴雨红色预警 详情 https://gov.example/n/1", true);
        assert!(same_text("暴雨红色预警 详情 http://t.cn/A6x9Yz", &want));
        assert!(same_text(
            "暴雨红色预警 详情 http://t.cn/A6x9Yz //@北京发布: 转发",
            &want
        ));
        assert!(!same_text("暴雨黄色预警 详情", &want));
        let v: Value = serde_json::from_str(
            r#"{"id":4942000000000001,"created_at":"Thu May 28 20:26:40 +0000 2026"}"#,
        )
        .expect("json");
        assert_eq!(id_of(&v).as_deref(), Some("4942000000000001"));
        assert_eq!(created_ms(&v), Some(NOW));
        let v: Value = serde_json::from_str(
            r#"{"idstr":"4942000000000002","created_at":"Fri May 29 04:26:40 +0800 2026"}"#,
        )
        .expect("json");
        assert_eq!(id_of(&v).as_deref(), Some("4942000000000002"));
        assert_eq!(created_ms(&v), Some(NOW));
    }

    #[test]
    fn debug_hides_token() {
        let client = crate::respond::publish::http_client(Duration::from_secs(1)).expect("client");
        let p = WeiboPublisher::new(client, WEIBO_API, "2.00SECRETTOKEN");
        assert!(!format!("{p:?}").contains("SECRET"));
    }
}
