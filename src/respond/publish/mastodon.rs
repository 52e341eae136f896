//! Mastodon: statuses, replies and reblogs through the documented REST API.
//!
//! - Post: `POST {base}/api/v1/statuses` with `Authorization: Bearer <token>`,
//!   `Idempotency-Key: <key>` and a JSON body `status`, `visibility`, `language`.
//! - Reply and comment (Mastodon has no comments): the same with `in_reply_to_id`.
//! - Repost: `POST {base}/api/v1/statuses/{id}/reblog` (`visibility` if given; the text is not
//!   sent). Mastodon answers a repeated reblog with the existing one, so it is idempotent per
//!   account and target on the server.
//! - The answer is a Status: `post_id` = `id`, `url` = `url`; `X-RateLimit-Remaining` and
//!   `X-RateLimit-Reset` (ISO 8601) go into [`Posted`]. Errors are `{"error": "…"}`.
//!
//! **Guarantee.** Mastodon keeps an `Idempotency-Key` for one hour per account: a post resent
//! with the same key within the hour returns the first status, no second post. Beyond that (or on
//! a server that ignores the header), an `Uncertain` outcome is resolved with
//! [`Publisher::find_recent`]: `GET /api/v1/accounts/{id}/statuses?limit=20` (the account id is
//! learned once from `GET /api/v1/accounts/verify_credentials`), paging back with `max_id` until
//! the statuses are older than `since_ms`; the content HTML is turned into plain text and compared
//! with the text sent (whitespace collapsed). Reblogs are not matched by text (resending a reblog
//! is harmless).

use super::{
    check_target, match_key, now_ms, platform_message, rate_info, read_response, status_error,
    Action, ErrorKind, PostRequest, Posted, PublishError, Publisher, FIND_RECENT_SKEW_MS,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// How long Mastodon keeps an `Idempotency-Key` (per account): a resend with the same key
/// within it returns the first status.
pub const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Pages of 20 statuses `find_recent` reads at most.
const FIND_PAGES: usize = 5;

/// One Mastodon account that posts.
pub struct MastodonPublisher {
    client: reqwest::Client,
    base: String,
    token: String,
    account_id: tokio::sync::OnceCell<String>,
}

/// Never shows the token.
impl std::fmt::Debug for MastodonPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MastodonPublisher")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("account_id", &self.account_id.get())
            .finish()
    }
}

/// The fields of a Status that matter here.
#[derive(Deserialize)]
struct Status {
    id: Value,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    reblog: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    in_reply_to_id: Option<Value>,
}

/// An id that is a JSON string (Mastodon) or number (some compatible servers).
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl MastodonPublisher {
    /// A publisher for the account of `token` on the instance at `base_url`
    /// (`https://mastodon.example`, no trailing path).
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        token: impl Into<String>,
    ) -> MastodonPublisher {
        MastodonPublisher {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.into(),
            account_id: tokio::sync::OnceCell::new(),
        }
    }

    /// The account's id, from `verify_credentials` (asked once, then cached).
    pub async fn account_id(&self) -> Result<String, PublishError> {
        self.account_id
            .get_or_try_init(|| async {
                let url = format!("{}/api/v1/accounts/verify_credentials", self.base);
                let resp = self.client.get(url).bearer_auth(&self.token).send().await;
                let (status, headers, body) = read_response(resp, false).await?;
                if !(200..300).contains(&status) {
                    let msg = platform_message(status, &body);
                    return Err(status_error(status, &headers, msg, now_ms()));
                }
                let v: Value = serde_json::from_slice(&body).map_err(|e| {
                    PublishError::new(
                        ErrorKind::Server,
                        format!("verify_credentials: not an account: {e}"),
                    )
                    .with_status(status)
                })?;
                v.get("id").and_then(id_string).ok_or_else(|| {
                    PublishError::new(ErrorKind::Server, "verify_credentials: no account id")
                        .with_status(status)
                })
            })
            .await
            .cloned()
    }

    fn posted(status: Status, headers: &reqwest::header::HeaderMap, now: i64) -> Option<Posted> {
        let (rate_remaining, rate_reset_at) = rate_info(headers, now);
        Some(Posted {
            post_id: id_string(&status.id)?,
            url: status.url,
            rate_remaining,
            rate_reset_at,
        })
    }
}

impl Publisher for MastodonPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        let mut body = Map::new();
        let url = match &req.action {
            Action::Mail { .. } => return Err(super::not_mail("Mastodon")),
            Action::Repost { target } => {
                format!(
                    "{}/api/v1/statuses/{}/reblog",
                    self.base,
                    check_target(target)?
                )
            }
            Action::Post | Action::Reply { .. } | Action::Comment { .. } => {
                body.insert("status".into(), Value::String(req.text.clone()));
                if let Some(target) = req.action.target() {
                    body.insert("in_reply_to_id".into(), Value::String(target.to_string()));
                }
                if let Some(lang) = &req.language {
                    body.insert("language".into(), Value::String(lang.clone()));
                }
                format!("{}/api/v1/statuses", self.base)
            }
        };
        if let Some(vis) = &req.visibility {
            body.insert("visibility".into(), Value::String(vis.clone()));
        }
        tracing::debug!(
            account = %req.account_handle,
            key = %req.idempotency_key,
            action = req.action.name(),
            "Mastodon: publishing."
        );
        let resp = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .header("Idempotency-Key", &req.idempotency_key)
            .json(&body)
            .send()
            .await;
        let (status, headers, body) = read_response(resp, true).await?;
        let now = now_ms();
        if !(200..300).contains(&status) {
            let msg = platform_message(status, &body);
            return Err(status_error(status, &headers, msg, now));
        }
        serde_json::from_slice::<Status>(&body)
            .ok()
            .and_then(|s| Self::posted(s, &headers, now))
            .ok_or_else(|| {
                PublishError::new(
                    ErrorKind::Uncertain,
                    format!(
                        "answered {status} without a status: {}",
                        platform_message(status, &body)
                    ),
                )
                .with_status(status)
            })
    }

    async fn find_recent(
        &self,
        text: &str,
        in_reply_to: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<Posted>, PublishError> {
        let id = self.account_id().await?;
        let url = format!(
            "{}/api/v1/accounts/{}/statuses",
            self.base,
            check_target(&id)?
        );
        let want = match_key(text, false);
        let floor = since_ms.saturating_sub(FIND_RECENT_SKEW_MS);
        let mut max_id: Option<String> = None;
        for _ in 0..FIND_PAGES {
            let mut query: Vec<(&str, &str)> = vec![("limit", "20")];
            if let Some(m) = &max_id {
                query.push(("max_id", m));
            }
            let resp = self
                .client
                .get(&url)
                .bearer_auth(&self.token)
                .query(&query)
                .send()
                .await;
            let (status, headers, body) = read_response(resp, false).await?;
            let now = now_ms();
            if !(200..300).contains(&status) {
                let msg = platform_message(status, &body);
                return Err(status_error(status, &headers, msg, now));
            }
            let list: Vec<Status> = serde_json::from_slice(&body).map_err(|e| {
                PublishError::new(
                    ErrorKind::Server,
                    format!("account statuses: not a list of statuses: {e}"),
                )
                .with_status(status)
            })?;
            let Some(last) = list.last() else {
                return Ok(None);
            };
            max_id = id_string(&last.id);
            for s in list {
                let created = s
                    .created_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis());
                // Newest first: once older than the attempt, it is not there.
                if created.is_some_and(|c| c < floor) {
                    return Ok(None);
                }
                let answers = s.in_reply_to_id.as_ref().and_then(id_string);
                if s.reblog.is_some() || answers.as_deref() != in_reply_to {
                    continue;
                }
                let plain = crate::normalize::html_to_text(s.content.as_deref().unwrap_or(""));
                if match_key(&plain, false) == want {
                    return Ok(Self::posted(s, &headers, now));
                }
            }
            if max_id.is_none() {
                break;
            }
        }
        Ok(None)
    }

    fn platform(&self) -> &'static str {
        "mastodon"
    }

    fn idempotency_window(&self) -> Option<std::time::Duration> {
        Some(IDEMPOTENCY_WINDOW)
    }
}
