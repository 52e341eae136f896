//! Publishers: one post to one account on one platform, spoken exactly as the platform documents
//! it, with every failure classified so the dispatcher knows whether (and when) it may retry.
//!
//! | platform | module | endpoint(s) | duplicate protection on the wire |
//! |---|---|---|---|
//! | Mastodon | [`mastodon`] | `POST /api/v1/statuses`, `POST /api/v1/statuses/{id}/reblog` | `Idempotency-Key` header (the server keeps keys for 1 h); a reblog is idempotent per account and target |
//! | Weibo | [`weibo`] | `POST /2/statuses/share.json`, `/2/statuses/repost.json`, `/2/comments/create.json`, `/2/comments/reply.json` (a target `{status}/{comment}`) | none: the outbox records the attempt before sending, and an uncertain outcome is resolved with [`Publisher::find_recent`] |
//! | webhook | [`webhook`] | `POST <url>` (JSON, HMAC-SHA256 signed) | `Idempotency-Key` header and body field: receivers must de-duplicate by it |
//! | file | [`file`](mod@file) | one JSON line per post (drills) | exact: the keys already in the file are loaded on open |
//! | WeCom / DingTalk / Feishu group bot | [`imbot`] | `POST <webhook>` (DingTalk and Feishu signed with HMAC-SHA256) | none: no read API; an uncertain alert is resent |
//! | WebSub hub | [`websub`] | `POST <hub>` `hub.mode=publish&hub.url=<topic>` (the linkage stage's push) | none needed: a second ping is harmless |
//! | e-mail | [`email`] | SMTP (`[respond.smtp]`): `MAIL FROM`, `RCPT TO`, `DATA` | `Message-ID: <idempotency key@huiying>`: a resend after an uncertain outcome carries the same id, receivers de-duplicate by it |
//!
//! # One publisher per account
//!
//! A publisher holds one account's credentials (a Mastodon token, a Weibo access token, a webhook
//! secret) and posts as that account; [`PostRequest::account_handle`] is carried for logs, the
//! webhook body and the file sink. Publishers over HTTP take a [`reqwest::Client`] so that many
//! accounts share one connection pool: build it with [`http_client`].
//!
//! # Static dispatch
//!
//! [`Publisher`] uses `impl Future + Send` returns (no boxing, no `dyn`). A caller that holds
//! publishers of several platforms keeps a `Vec<AnyPublisher>`: [`AnyPublisher`] is an enum over
//! the four publishers and implements [`Publisher`] by matching.
//!
//! # Classification
//!
//! | outcome | [`ErrorKind`] | `retryable` | `retry_after` |
//! |---|---|---|---|
//! | HTTP 429; Weibo `error_code` 10022/10023/10024 | `RateLimited` | yes | `Retry-After` (seconds or HTTP-date), else `X-RateLimit-Reset` (ISO 8601, Mastodon), else (Weibo) the top of the next hour |
//! | HTTP 5xx; Weibo 10001/10002/10003/10009/10010/10011 | `Server` | yes | `Retry-After` if sent |
//! | HTTP 408; a read-only request (`find_recent`) timed out; a connect timeout | `Timeout` | yes | – |
//! | connect error (nothing was sent) | `Network` | yes | – |
//! | timeout, reset or unreadable answer *after* a post was sent; a 2xx whose body has no id | `Uncertain` | yes, **only after** [`Publisher::find_recent`] found nothing | – |
//! | HTTP 401/403; Weibo 21301/21314–21317/21319/21327/21332, 10014 | `Auth` | no | – |
//! | HTTP 400/404/422 and other 4xx; Weibo 20012, 20018, 20020, 20021, 20101, 10008, 10016, 10017 | `Rejected` | no | – |
//! | Weibo 20016/20017/20019/20111 (too fast, repeated / identical text) | `Duplicate` | no: call [`Publisher::find_recent`]; if the post is there it succeeded, else fail (never resend the unchanged body blindly) | – |
//!
//! Weibo answers errors with HTTP 400/403 and a JSON `error_code`: the code decides, the HTTP
//! status only when there is no code. Every error carries the platform's own message in
//! [`PublishError::message`] (the `error` field of the JSON body, or the body text); transport
//! errors never include the URL (a Weibo query string holds the access token).
//!
//! # The retry rule for dispatchers
//!
//! 1. `retryable && !must_check_before_retry()` → back off (at least `retry_after`) and resend with
//!    the same idempotency key.
//! 2. `must_check_before_retry()` (`Uncertain`, `Duplicate`) → call `find_recent(text, in_reply_to, since_ms)`
//!    with the time the attempt was recorded: `Some(posted)` → the post exists, mark it done with
//!    that id; `None` → for `Uncertain`, resend; for `Duplicate`, fail permanently with the message.
//! 3. otherwise (permanent) → fail this account's post with `message`.

pub mod email;
pub mod file;
pub mod imbot;
pub mod mastodon;
pub mod webhook;
pub mod websub;
pub mod weibo;

pub use email::EmailPublisher;
pub use file::FilePublisher;
pub use mastodon::MastodonPublisher;
pub use webhook::WebhookPublisher;
pub use websub::WebSubPublisher;
pub use weibo::WeiboPublisher;

use crate::respond::outbox::ActionKind;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

/// What to do with the text: an [`ActionKind`] with the post it acts on (the outbox stores the
/// two apart, as `action` and `in_reply_to`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A new post.
    Post,
    /// Repost (Mastodon: reblog, the text is not sent; Weibo: repost with the text as comment).
    Repost {
        /// The platform's id of the post to repost.
        target: String,
    },
    /// Reply to a post (Mastodon: a status with `in_reply_to_id`; Weibo: a comment on it).
    Reply {
        /// The platform's id of the post to reply to.
        target: String,
    },
    /// Comment on a post (Weibo: `comments/create`; a target `{status}/{comment}` answers that
    /// comment with `comments/reply`; Mastodon has no comments: a reply).
    Comment {
        /// The platform's id of the post to comment on.
        target: String,
    },
    /// An e-mail to `to` (the e-mail publisher only; the text's first line is the subject).
    Mail {
        /// The recipient's address.
        to: String,
    },
}

impl Action {
    /// The action of `kind` on `target`; `None` when the kind needs a target and has none.
    pub fn with_target(kind: ActionKind, target: Option<String>) -> Option<Action> {
        Some(match (kind, target) {
            (ActionKind::Post, _) => Action::Post,
            (ActionKind::Repost, Some(target)) => Action::Repost { target },
            (ActionKind::Reply, Some(target)) => Action::Reply { target },
            (ActionKind::Comment, Some(target)) => Action::Comment { target },
            (ActionKind::Mail, Some(to)) => Action::Mail { to },
            (_, None) => return None,
        })
    }

    /// What it does, without the target.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Post => ActionKind::Post,
            Action::Repost { .. } => ActionKind::Repost,
            Action::Reply { .. } => ActionKind::Reply,
            Action::Comment { .. } => ActionKind::Comment,
            Action::Mail { .. } => ActionKind::Mail,
        }
    }

    /// `post`, `repost`, `reply` or `comment`.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The target post's id, if the action has one.
    pub fn target(&self) -> Option<&str> {
        match self {
            Action::Post => None,
            Action::Repost { target } | Action::Reply { target } | Action::Comment { target } => {
                Some(target)
            }
            Action::Mail { to } => Some(to),
        }
    }
}

/// One post to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRequest {
    /// Stable per (notice, account, action); sent where the platform supports it.
    pub idempotency_key: String,
    /// The account's handle (logs, webhook body, file sink).
    pub account_handle: String,
    /// The text, already within the platform's length limit.
    pub text: String,
    /// Post, repost, reply or comment.
    pub action: Action,
    /// ISO 639 language code (Mastodon `language`).
    pub language: Option<String>,
    /// Mastodon visibility: `public`, `unlisted`, `private`, `direct`. Ignored by Weibo.
    pub visibility: Option<String>,
}

/// A post the platform accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// The platform's id of the new post (for a Mastodon reblog: the reblog's id).
    pub post_id: String,
    /// Its public URL, when the platform says.
    pub url: Option<String>,
    /// Requests left in the current rate-limit window (`X-RateLimit-Remaining`), when sent.
    pub rate_remaining: Option<u32>,
    /// When the window resets (unix ms), when sent.
    pub rate_reset_at: Option<i64>,
}

/// The class of a publishing failure. See the module docs for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Over a platform limit (429, Weibo 1002x).
    RateLimited,
    /// The platform failed (5xx, Weibo system errors).
    Server,
    /// Timed out where nothing can have been published (a read, a connect, HTTP 408).
    Timeout,
    /// The connection could not be made: nothing was sent.
    Network,
    /// The token or secret is invalid, expired or lacks the right (401, 403).
    Auth,
    /// The platform refused the post itself (400, 404, 422, too long, bad target).
    Rejected,
    /// The platform says the same text was just posted (Weibo 20016/20017/20019/20111).
    Duplicate,
    /// The post was sent but no answer came back: it may or may not exist.
    Uncertain,
}

impl ErrorKind {
    /// Snake-case name (API, metrics, audit).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Auth => "auth",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Uncertain => "uncertain",
        }
    }

    /// Whether errors of this kind may be retried (for `Uncertain`: after `find_recent`).
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Network
                | ErrorKind::Uncertain
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified publishing failure. Never contains a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}{}: {message}", http_suffix(*.status))]
pub struct PublishError {
    /// The class.
    pub kind: ErrorKind,
    /// Whether the same request may be sent again (see [`PublishError::must_check_before_retry`]).
    pub retryable: bool,
    /// Wait at least this long before retrying, when the platform said.
    pub retry_after: Option<Duration>,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The platform's own message (or the transport error).
    pub message: String,
}

fn http_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

/// The refusal of an e-mail job routed to a social platform's publisher (a plan error).
pub(crate) fn not_mail(platform: &str) -> PublishError {
    PublishError::new(
        ErrorKind::Rejected,
        format!("{platform} does not send e-mail: route mail jobs to the `smtp` account"),
    )
}

/// Platform text kept in an error message, in characters (the rest is cut, with `…`).
pub const MAX_PLATFORM_TEXT_CHARS: usize = 300;
/// A whole error message at most, in characters: the platform's text and our context around it.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 400;
/// The largest answer to a post that is read (one status or an acknowledgement: a few KiB).
pub const MAX_POST_ANSWER_BYTES: usize = 64 << 10;
/// The largest answer to a lookup that is read (an account, a page of 20 statuses).
pub const MAX_LOOKUP_ANSWER_BYTES: usize = 1 << 20;

impl PublishError {
    /// An error of `kind` with its default retryability; the message is cut to
    /// [`MAX_ERROR_MESSAGE_CHARS`] (it goes to `last_error`, the audit log and the wall).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> PublishError {
        let message = message.into();
        let message = if message.len() > MAX_ERROR_MESSAGE_CHARS {
            crate::truncate_chars(&message, MAX_ERROR_MESSAGE_CHARS)
        } else {
            message
        };
        PublishError {
            kind,
            retryable: kind.default_retryable(),
            retry_after: None,
            status: None,
            message,
        }
    }

    /// With the HTTP status.
    pub fn with_status(mut self, status: u16) -> PublishError {
        self.status = Some(status);
        self
    }

    /// With a retry delay.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> PublishError {
        self.retry_after = after;
        self
    }

    /// True for `Uncertain` and `Duplicate`: the post may already exist, so the dispatcher must
    /// call [`Publisher::find_recent`] before it sends anything again.
    pub fn must_check_before_retry(&self) -> bool {
        matches!(self.kind, ErrorKind::Uncertain | ErrorKind::Duplicate)
    }
}

/// A platform account that can post.
///
/// Implementations must be cancel-safe in the sense that dropping a `publish` future leaves the
/// outcome *uncertain* (like a timeout), which the dispatcher resolves with `find_recent`.
pub trait Publisher: Send + Sync {
    /// Publish one post. See the module docs for how errors are classified.
    fn publish(
        &self,
        req: &PostRequest,
    ) -> impl Future<Output = Result<Posted, PublishError>> + Send;

    /// Look through the account's recent posts (created at or after `since_ms`, unix ms, minus a
    /// minute of clock-skew slack) for one with the same text (compared as plain text, whitespace
    /// collapsed). This is how an `Uncertain` or `Duplicate` outcome is resolved before retrying:
    /// `Some` means the earlier attempt did publish. `Ok(None)` from a platform without a read API
    /// (the webhook) means "unknown; resending with the same idempotency key is safe".
    ///
    /// `in_reply_to` narrows the search to posts answering or reposting that post (a reply, a
    /// comment, a repost): one account may answer several posts of a rumor cascade with the
    /// same text, and only the one to this target counts. `None` looks for top-level posts.
    ///
    /// The default is that of a platform without a read API (a webhook, a hub, a group bot, a
    /// mailbox): `Ok(None)`, resend.
    fn find_recent(
        &self,
        text: &str,
        in_reply_to: Option<&str>,
        since_ms: i64,
    ) -> impl Future<Output = Result<Option<Posted>, PublishError>> + Send {
        let _ = (text, in_reply_to, since_ms);
        async { Ok(None) }
    }

    /// `mastodon`, `weibo`, `webhook` or `file`.
    fn platform(&self) -> &'static str;

    /// How long after a post the platform still honours its [`PostRequest::idempotency_key`]
    /// (a resend with the same key within it creates nothing new), if it does at all
    /// (Mastodon: 1 h). The dispatcher resends within it when an uncertain outcome cannot be
    /// checked with [`Publisher::find_recent`]. Default: none.
    fn idempotency_window(&self) -> Option<Duration> {
        None
    }
}

/// Any publisher, for callers that hold several platforms in one collection.
#[derive(Debug)]
pub enum AnyPublisher {
    /// Mastodon.
    Mastodon(MastodonPublisher),
    /// Weibo.
    Weibo(WeiboPublisher),
    /// E-mail over SMTP.
    Email(EmailPublisher),
    /// Signed webhook.
    Webhook(WebhookPublisher),
    /// JSON Lines file.
    File(FilePublisher),
    /// A WeCom, DingTalk or Feishu group bot (alerts to the people on duty).
    ImBot(imbot::ImBotPublisher),
    /// A WebSub hub's ping (the linkage stage's push).
    WebSub(WebSubPublisher),
}

impl Publisher for AnyPublisher {
    async fn publish(&self, req: &PostRequest) -> Result<Posted, PublishError> {
        match self {
            AnyPublisher::Mastodon(p) => p.publish(req).await,
            AnyPublisher::Weibo(p) => p.publish(req).await,
            AnyPublisher::Email(p) => p.publish(req).await,
            AnyPublisher::Webhook(p) => p.publish(req).await,
            AnyPublisher::File(p) => p.publish(req).await,
            AnyPublisher::ImBot(p) => p.publish(req).await,
            AnyPublisher::WebSub(p) => p.publish(req).await,
        }
    }

    async fn find_recent(
        &self,
        text: &str,
        in_reply_to: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<Posted>, PublishError> {
        match self {
            AnyPublisher::Mastodon(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::Weibo(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::Email(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::Webhook(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::File(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::ImBot(p) => p.find_recent(text, in_reply_to, since_ms).await,
            AnyPublisher::WebSub(p) => p.find_recent(text, in_reply_to, since_ms).await,
        }
    }

    fn platform(&self) -> &'static str {
        match self {
            AnyPublisher::Mastodon(p) => p.platform(),
            AnyPublisher::Weibo(p) => p.platform(),
            AnyPublisher::Email(p) => p.platform(),
            AnyPublisher::Webhook(p) => p.platform(),
            AnyPublisher::File(p) => p.platform(),
            AnyPublisher::ImBot(p) => p.platform(),
            AnyPublisher::WebSub(p) => p.platform(),
        }
    }

    fn idempotency_window(&self) -> Option<Duration> {
        match self {
            AnyPublisher::Mastodon(p) => p.idempotency_window(),
            AnyPublisher::Weibo(p) => p.idempotency_window(),
            AnyPublisher::Email(p) => p.idempotency_window(),
            AnyPublisher::Webhook(p) => p.idempotency_window(),
            AnyPublisher::File(p) => p.idempotency_window(),
            AnyPublisher::ImBot(p) => p.idempotency_window(),
            AnyPublisher::WebSub(p) => p.idempotency_window(),
        }
    }
}

impl From<MastodonPublisher> for AnyPublisher {
    fn from(p: MastodonPublisher) -> Self {
        AnyPublisher::Mastodon(p)
    }
}

impl From<EmailPublisher> for AnyPublisher {
    fn from(p: EmailPublisher) -> Self {
        AnyPublisher::Email(p)
    }
}

impl From<WeiboPublisher> for AnyPublisher {
    fn from(p: WeiboPublisher) -> Self {
        AnyPublisher::Weibo(p)
    }
}

impl From<WebSubPublisher> for AnyPublisher {
    fn from(p: WebSubPublisher) -> Self {
        AnyPublisher::WebSub(p)
    }
}

impl From<WebhookPublisher> for AnyPublisher {
    fn from(p: WebhookPublisher) -> Self {
        AnyPublisher::Webhook(p)
    }
}

impl From<FilePublisher> for AnyPublisher {
    fn from(p: FilePublisher) -> Self {
        AnyPublisher::File(p)
    }
}

impl From<imbot::ImBotPublisher> for AnyPublisher {
    fn from(p: imbot::ImBotPublisher) -> Self {
        AnyPublisher::ImBot(p)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing shared by the publishers

/// Clock-skew slack applied to `since_ms` in `find_recent`.
pub const FIND_RECENT_SKEW_MS: i64 = 60_000;

/// A client for publishers: rustls ([`crate::install_tls`], done at start), the given overall request
/// `timeout`, a connect timeout of at most 10 s, and **no redirects** (a redirected POST would
/// be re-sent as a GET, or re-sent at all). Share one client between many publishers.
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    crate::install_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("huiying/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Now, unix ms.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Classify a transport error. `mutating`: the request publishes something, so a failure after
/// the connection was made is `Uncertain` (the platform may have acted on it).
pub(crate) fn transport_error(e: reqwest::Error, mutating: bool) -> PublishError {
    let kind = if e.is_builder() {
        ErrorKind::Rejected
    } else if e.is_connect() {
        if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Network
        }
    } else if mutating {
        ErrorKind::Uncertain
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Network
    };
    let status = e.status().map(|s| s.as_u16());
    // Without the URL (a Weibo query string carries the access token); the causes, which name
    // no URL, say what happened.
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    let mut err = PublishError::new(kind, message);
    err.status = status;
    err
}

/// Classify an HTTP error status (not 2xx) with the platform's `message`.
pub(crate) fn status_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    message: String,
    now_ms: i64,
) -> PublishError {
    let kind = match status {
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Server,
        408 => ErrorKind::Timeout,
        401 | 403 => ErrorKind::Auth,
        _ => ErrorKind::Rejected,
    };
    let after = match kind {
        ErrorKind::RateLimited | ErrorKind::Server => retry_after(headers, now_ms),
        _ => None,
    };
    PublishError::new(kind, message)
        .with_status(status)
        .with_retry_after(after)
}

/// The platform's message from an error body: the JSON `error_description`, `error` or `message`
/// field, else the body text; trimmed and cut to [`MAX_PLATFORM_TEXT_CHARS`]; else the status
/// reason.
pub(crate) fn platform_message(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for k in ["error_description", "error", "message"] {
            if let Some(s) = v.get(k).and_then(|s| s.as_str()) {
                if !s.trim().is_empty() {
                    return crate::truncate_chars(s.trim(), MAX_PLATFORM_TEXT_CHARS);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() {
        return crate::truncate_chars(text, MAX_PLATFORM_TEXT_CHARS);
    }
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!("HTTP {status} {r}"))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

/// How long to wait before retrying, from `Retry-After` (delta seconds or HTTP-date), else from
/// `X-RateLimit-Reset` (see [`parse_reset`]). Never negative.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now_ms: i64) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let at = if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        chrono::DateTime::parse_from_rfc2822(v)
            .ok()
            .map(|t| t.timestamp_millis())
    } else {
        None
    };
    let at = at.or_else(|| header("x-ratelimit-reset").and_then(|v| parse_reset(v, now_ms)))?;
    Some(Duration::from_millis(
        u64::try_from(at - now_ms).unwrap_or(0),
    ))
}

/// A rate-limit reset time as unix ms: an ISO 8601 / RFC 3339 time (Mastodon's
/// `X-RateLimit-Reset`), unix seconds (≥ 10⁹), or seconds from now (smaller numbers).
pub fn parse_reset(value: &str, now_ms: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp_millis());
    }
    let secs: f64 = value.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs >= 1e9 {
        Some((secs * 1000.0) as i64)
    } else {
        Some(now_ms + (secs * 1000.0) as i64)
    }
}

/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (unix ms), when sent.
pub(crate) fn rate_info(
    headers: &reqwest::header::HeaderMap,
    now_ms: i64,
) -> (Option<u32>, Option<i64>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let remaining = header("x-ratelimit-remaining").and_then(|v| v.trim().parse::<u32>().ok());
    let reset = header("x-ratelimit-reset").and_then(|v| parse_reset(v, now_ms));
    (remaining, reset)
}

/// Text as compared by `find_recent`: whitespace runs collapsed to one space, trimmed; with
/// `strip_urls`, `http(s)://…` tokens removed first (Weibo shortens links to `t.cn`).
pub(crate) fn match_key(text: &str, strip_urls: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let word = if strip_urls {
            strip_url_runs(word)
        } else {
            word.to_string()
        };
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
    }
    out
}

/// `word` without the URLs in it (a URL runs from `http://`/`https://` to the end of the word, or
/// to the first non-ASCII character: Chinese text often follows a link without a space).
fn strip_url_runs(word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    loop {
        let at = [rest.find("http://"), rest.find("https://")]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = at else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .char_indices()
            .find(|(_, c)| !c.is_ascii() || c.is_ascii_whitespace())
            .map(|(i, _)| i)
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
}

/// Reject ids that cannot be put in a URL path as they are (platform ids are alphanumeric).
pub(crate) fn check_target(target: &str) -> Result<&str, PublishError> {
    if !target.is_empty()
        && target.len() <= 64
        && target
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        Ok(target)
    } else {
        Err(PublishError::new(
            ErrorKind::Rejected,
            format!("invalid target post id {target:?}"),
        ))
    }
}

/// [`read_response`], and a status outside 2xx as its error (classified by [`status_error`],
/// the platform's message by [`platform_message`]): the headers, the body and when it was read
/// (unix ms).
pub(crate) async fn read_ok(
    resp: Result<reqwest::Response, reqwest::Error>,
    mutating: bool,
) -> Result<(reqwest::header::HeaderMap, Vec<u8>, i64), PublishError> {
    let (status, headers, body) = read_response(resp, mutating).await?;
    let now = now_ms();
    if !(200..300).contains(&status) {
        let msg = platform_message(status, &body);
        return Err(status_error(status, &headers, msg, now));
    }
    Ok((headers, body, now))
}

/// Read a response: `Ok((status, headers, body))`, or the transport error classified. At most
/// [`MAX_POST_ANSWER_BYTES`] of the answer to a post (`mutating`) are read, at most
/// [`MAX_LOOKUP_ANSWER_BYTES`] of any other: a longer 2xx answer is an error (`Uncertain` after a
/// post: the platform acted), a longer error answer is cut (its status decides).
pub(crate) async fn read_response(
    resp: Result<reqwest::Response, reqwest::Error>,
    mutating: bool,
) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), PublishError> {
    let mut resp = resp.map_err(|e| transport_error(e, mutating))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let limit = if mutating {
        MAX_POST_ANSWER_BYTES
    } else {
        MAX_LOOKUP_ANSWER_BYTES
    };
    match crate::read_body_capped(&mut resp, limit).await {
        Ok((_, false)) if (200..300).contains(&status) => {
            let kind = if mutating {
                ErrorKind::Uncertain
            } else {
                ErrorKind::Server
            };
            Err(PublishError::new(kind, format!("answer over {limit} bytes")).with_status(status))
        }
        Ok((b, _)) => Ok((status, headers, b)),
        // The platform answered 2xx but the body was cut: it acted, we do not know the id.
        Err(e) if (200..300).contains(&status) => {
            let mut err = transport_error(e, mutating);
            err.status = Some(status);
            Err(err)
        }
        // An error status with an unreadable body: the status decides.
        Err(_) => Ok((status, headers, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    const NOW: i64 = 1_780_000_000_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(7)));
        // 1_780_000_000 s = Thu, 28 May 2026 20:26:40 GMT; 30 s later:
        let h = headers(&[("retry-after", "Thu, 28 May 2026 20:27:10 GMT")]);
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(30)));
        let h = headers(&[("x-ratelimit-reset", "2026-05-28T20:28:40.000Z")]);
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(120)));
        // Already past: zero, not negative.
        let h = headers(&[("x-ratelimit-reset", "2026-05-28T20:00:00Z")]);
        assert_eq!(retry_after(&h, NOW), Some(Duration::ZERO));
        // Retry-After wins over the reset time.
        let h = headers(&[
            ("retry-after", "3"),
            ("x-ratelimit-reset", "2026-05-28T21:00:00Z"),
        ]);
        assert_eq!(retry_after(&h, NOW), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), NOW), None);
        assert_eq!(retry_after(&HeaderMap::new(), NOW), None);
    }

    #[test]
    fn reset_formats() {
        assert_eq!(parse_reset("1780000060", NOW), Some(NOW + 60_000));
        assert_eq!(parse_reset("60", NOW), Some(NOW + 60_000));
        assert_eq!(
            parse_reset("2026-05-28T20:26:40.5+00:00", NOW),
            Some(NOW + 500)
        );
        assert_eq!(parse_reset("-1", NOW), None);
        assert_eq!(parse_reset("later", NOW), None);
    }

    #[test]
    fn status_classification() {
        let h = HeaderMap::new();
        let c = |s| {
            let e = status_error(s, &h, "m".into(), NOW);
            (e.kind, e.retryable, e.status)
        };
        assert_eq!(c(429), (ErrorKind::RateLimited, true, Some(429)));
        assert_eq!(c(500), (ErrorKind::Server, true, Some(500)));
        assert_eq!(c(503), (ErrorKind::Server, true, Some(503)));
        assert_eq!(c(408), (ErrorKind::Timeout, true, Some(408)));
        assert_eq!(c(401), (ErrorKind::Auth, false, Some(401)));
        assert_eq!(c(403), (ErrorKind::Auth, false, Some(403)));
        assert_eq!(c(400), (ErrorKind::Rejected, false, Some(400)));
        assert_eq!(c(404), (ErrorKind::Rejected, false, Some(404)));
        assert_eq!(c(422), (ErrorKind::Rejected, false, Some(422)));
        assert_eq!(c(302), (ErrorKind::Rejected, false, Some(302)));
        let h = headers(&[("retry-after", "9")]);
        let e = status_error(503, &h, "busy".into(), NOW);
        assert_eq!(e.retry_after, Some(Duration::from_secs(9)));
        assert_eq!(e.to_string(), "server (HTTP 503): busy");
    }

    #[test]
    fn messages() {
        assert_eq!(
            platform_message(
                422,
                br#"{"error":"Validation failed: Text can't be blank"}"#
            ),
            "Validation failed: Text can't be blank"
        );
        assert_eq!(
            platform_message(
                401,
                br#"{"error":"invalid_token","error_description":"The access token is invalid"}"#
            ),
            "The access token is invalid"
        );
        assert_eq!(platform_message(502, b"  Bad Gateway\n"), "Bad Gateway");
        assert_eq!(platform_message(503, b""), "HTTP 503 Service Unavailable");
    }

    #[test]
    fn match_keys() {
        assert_eq!(match_key("  a\n\nb \t c ", false), "a b c");
        assert_eq!(
            match_key("暴雨预警 详情 https://gov.example/x?y=1 请避险", true),
            "暴雨预警 详情 请避险"
        );
        assert_eq!(
            match_key("详情http://t.cn/A6abc请避险", true),
            match_key("详情https://gov.example/a/b请避险", true)
        );
    }

    #[test]
    fn targets() {
        assert!(check_target("113528000000000001").is_ok());
        assert!(check_target("../admin").is_err());
        assert!(check_target("").is_err());
    }

    #[test]
    fn kinds_and_retry_rule() {
        let e = PublishError::new(ErrorKind::Uncertain, "timeout");
        assert!(e.retryable && e.must_check_before_retry());
        let e = PublishError::new(ErrorKind::Duplicate, "repeat content!");
        assert!(!e.retryable && e.must_check_before_retry());
        assert!(!PublishError::new(ErrorKind::Auth, "x").retryable);
        assert!(PublishError::new(ErrorKind::Network, "x").retryable);
    }
}
