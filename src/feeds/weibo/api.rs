//! The two endpoints polled, one request, and what an answer means.

use crate::feeds::http::{self, HttpResponse};
use serde_json::Value;

/// Largest answer read: a page of 200 statuses with their users and reposted statuses stays
/// well under it.
const MAX_BODY: usize = 8 << 20;

/// A platform's error text is cut to this many characters before it reaches the log or the
/// feed's health.
const MAX_MESSAGE_CHARS: usize = 300;

/// One of the polled endpoints of the Weibo API v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /2/statuses/mentions.json`: statuses that @ the account.
    Mentions,
    /// `GET /2/comments/to_me.json`: comments on the account's statuses and replies to its
    /// comments.
    Comments,
}

impl Endpoint {
    /// Both, in the order a round polls them.
    pub const ALL: [Endpoint; 2] = [Endpoint::Mentions, Endpoint::Comments];

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Mentions => "/2/statuses/mentions.json",
            Endpoint::Comments => "/2/comments/to_me.json",
        }
    }

    /// The list in the answer.
    pub fn field(self) -> &'static str {
        match self {
            Endpoint::Mentions => "statuses",
            Endpoint::Comments => "comments",
        }
    }

    /// The kind its items are counted as in `huiying_feed_messages_total`.
    pub fn kind(self) -> &'static str {
        match self {
            Endpoint::Mentions => "mention",
            Endpoint::Comments => "comment",
        }
    }
}

/// What one request brought.
#[derive(Debug)]
pub enum Answer {
    /// The page's items, as Weibo sends them (newest first).
    Page(Vec<Value>),
    /// HTTP 429 or `error_code` 10022–10024: the hourly limit is used up.
    RateLimited(String),
    /// `error_code` 21327 / 21332 (expired, invalid) and the other token failures (21301,
    /// 21314–21317, 21319): the token no longer works, asking again will not help.
    TokenExpired(String),
    /// Anything else: transport, a server error, an answer that is not the documented one.
    Failed(String),
}

/// Which page of `ep` to ask for: `count` items newer than `since_id`, not newer than `max_id`.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// Items per page (1–200).
    pub count: u32,
    /// Only items with a larger id.
    pub since_id: Option<u64>,
    /// Only items with this id or a smaller one (Weibo's `max_id` is inclusive).
    pub max_id: Option<u64>,
}

/// `GET {base}{path}?access_token=…&count=…[&since_id=…][&max_id=…]`, classified. The token
/// goes in the query as documented; no error text carries the URL.
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ep: Endpoint,
    q: Query,
) -> Answer {
    let mut params: Vec<(&str, String)> = vec![
        ("access_token", token.to_string()),
        ("count", q.count.to_string()),
    ];
    if let Some(s) = q.since_id {
        params.push(("since_id", s.to_string()));
    }
    if let Some(m) = q.max_id {
        params.push(("max_id", m.to_string()));
    }
    let req = client.get(format!("{base}{}", ep.path())).query(&params);
    match http::get(req, MAX_BODY).await {
        Ok(r) => classify(ep, &r),
        Err(e) => Answer::Failed(e),
    }
}

/// What an answer means: its `error_code` first, then the HTTP status, then the documented
/// list (`{"statuses": […]}` or `{"comments": […]}`).
pub fn classify(ep: Endpoint, r: &HttpResponse) -> Answer {
    let v: Option<Value> = serde_json::from_slice(&r.body).ok();
    if let Some(code) = v.as_ref().and_then(code_of) {
        let msg = message(r, v.as_ref(), Some(code));
        return match code {
            10022..=10024 => Answer::RateLimited(msg),
            21301 | 21314..=21317 | 21319 | 21327 | 21332 => Answer::TokenExpired(msg),
            _ => Answer::Failed(msg),
        };
    }
    if r.status == 429 {
        return Answer::RateLimited(message(r, v.as_ref(), None));
    }
    if !(200..300).contains(&r.status) {
        return Answer::Failed(message(r, v.as_ref(), None));
    }
    match v.and_then(|mut v| v.get_mut(ep.field()).map(Value::take)) {
        Some(Value::Array(items)) => Answer::Page(items),
        _ => Answer::Failed(format!(
            "HTTP {}: the answer has no `{}` list",
            r.status,
            ep.field()
        )),
    }
}

/// An `error_code` as a number (Weibo sends a number; a string is tolerated).
fn code_of(v: &Value) -> Option<i64> {
    match v.get("error_code")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `HTTP 403: text (error_code N)`, the platform's text cut to [`MAX_MESSAGE_CHARS`].
fn message(r: &HttpResponse, v: Option<&Value>, code: Option<i64>) -> String {
    let text = v
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
    let text = crate::truncate_chars(text.trim(), MAX_MESSAGE_CHARS);
    match code {
        Some(c) => format!("HTTP {}: {text} (error_code {c})", r.status),
        None => format!("HTTP {}: {text}", r.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        let r = HttpResponse {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        };
        classify(Endpoint::Comments, &r)
    }

    #[test]
    fn answers_are_classified() {
        let limited = r#"{"error":"User requests out of rate limit!","error_code":10023,"request":"/2/comments/to_me.json"}"#;
        let expired =
            r#"{"error":"expired_token","error_code":21327,"request":"/2/comments/to_me.json"}"#;
        let cases: Vec<(u16, &str, &str)> = vec![
            (
                200,
                r#"{"comments":[{"id":1},{"id":2}],"total_number":2}"#,
                "page 2",
            ),
            (200, r#"{"comments":[],"total_number":0}"#, "page 0"),
            (403, limited, "rate_limited"),
            (
                403,
                r#"{"error":"IP requests out of rate limit!","error_code":"10022"}"#,
                "rate_limited",
            ),
            (429, "Too Many Requests", "rate_limited"),
            (401, expired, "token_expired"),
            (
                403,
                r#"{"error":"invalid_access_token","error_code":21332}"#,
                "token_expired",
            ),
            (
                400,
                r#"{"error":"system error!","error_code":10001}"#,
                "failed",
            ),
            // A code on a 200 is still an error.
            (
                200,
                r#"{"error":"param error","error_code":10008}"#,
                "failed",
            ),
            (502, "<html>Bad Gateway</html>", "failed"),
            (200, r#"{"statuses":[]}"#, "failed"),
            (200, "not json", "failed"),
            (200, r#"{"comments":{"id":1}}"#, "failed"),
        ];
        for (status, body, want) in cases {
            let got = match answer(status, body) {
                Answer::Page(items) => format!("page {}", items.len()),
                Answer::RateLimited(_) => "rate_limited".into(),
                Answer::TokenExpired(_) => "token_expired".into(),
                Answer::Failed(_) => "failed".into(),
            };
            assert_eq!(got, want, "{status} {body}");
        }
        match answer(403, limited) {
            Answer::RateLimited(m) => assert_eq!(
                m,
                "HTTP 403: User requests out of rate limit! (error_code 10023)"
            ),
            other => panic!("{other:?}"),
        }
        let long = format!(r#"{{"error":"{}","error_code":10001}}"#, "错".repeat(1000));
        match answer(500, &long) {
            Answer::Failed(m) => assert!(m.chars().count() < 400, "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
