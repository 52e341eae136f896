//! A fake social platform on 127.0.0.1:0 that speaks the Mastodon and Weibo shapes the
//! publishers use, enforces per-account limits, injects faults and records every accepted post.
//! Shared by the integration tests and the load harness (`#[path]`); it depends only on `axum`,
//! `tokio` and `serde_json`.
//!
//! | endpoint | shape |
//! |---|---|
//! | `POST /api/v1/statuses` | Mastodon: `Authorization: Bearer`, JSON or form `status`, `in_reply_to_id`, `visibility`, `language`; honours `Idempotency-Key` for an hour (same key → the same status, nothing new) |
//! | `POST /api/v1/statuses/{id}/reblog` | Mastodon: a second reblog of the same status by the same account returns the first |
//! | `GET /api/v1/accounts/verify_credentials` | Mastodon account (404 after [`FakeHandle::remove_verify_credentials`]) |
//! | `GET /api/v1/accounts/{id}/statuses?limit&max_id` | newest first; `content` is HTML (paragraphs, `<br />`, linkified URLs) |
//! | `POST /2/statuses/share.json` | Weibo, form `access_token`, `status`; identical consecutive text → 400 `error_code` 20019 |
//! | `POST /2/statuses/repost.json` | form `access_token`, `id`, `status` |
//! | `POST /2/comments/create.json` | form `access_token`, `id`, `comment` |
//! | `POST /2/comments/reply.json` | form `access_token`, `cid`, `id`, `comment` (recorded with target `{id}/{cid}`) |
//! | `GET /2/statuses/user_timeline.json?access_token&count&max_id` | `{"statuses":[…]}`, links shortened to `http://t.cn/…` like Weibo does |
//! | `GET /2/comments/by_me.json?access_token&count&max_id` | `{"comments":[…]}` |
//!
//! Accounts are registered with [`FakeHandle::add_account`] (one token works on both shapes).
//! Limits ([`FakeHandle::set_limit`]) count accepted posts per token; a post over the limit is
//! refused (Mastodon: 429 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`; Weibo: HTTP 403
//! with `error_code` 10023) and counted in [`FakeHandle::violations`]: a client that respects the
//! limits keeps it at 0. Faults apply to the next publishing requests (the POSTs) in order:
//! [`FakeHandle::fail_next`] (answered with a status, nothing accepted), [`FakeHandle::delay_next`]
//! (accepted, then answered late: a client timeout), [`FakeHandle::drop_after_accept_next`]
//! (accepted, then the connection is dropped without an answer).
#![allow(dead_code)]

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Mastodon status ids: snowflake-like decimal strings.
const MASTODON_ID_BASE: u64 = 113_528_000_000_000_000;
/// Weibo ids: 16-digit numbers.
const WEIBO_ID_BASE: u64 = 4_942_000_000_000_000;
/// Account ids.
const ACCOUNT_ID_BASE: u64 = 1_090_000_000;
/// How long Mastodon keeps an idempotency key.
const IDEMPOTENCY_MS: i64 = 3_600_000;
/// Mastodon's default character limit.
const MASTODON_MAX_CHARS: usize = 500;
/// Weibo's limit (CJK characters; ASCII counts half; links not counted).
const WEIBO_MAX_CHARS: usize = 140;

/// One accepted post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `mastodon` or `weibo`.
    pub platform: &'static str,
    /// The account's handle.
    pub account: String,
    /// The platform's id of the new post.
    pub id: String,
    /// The text as sent (empty for a Mastodon reblog).
    pub text: String,
    /// `post`, `reply`, `repost` or `comment`.
    pub action: &'static str,
    /// The post replied to, reposted or commented on.
    pub target: Option<String>,
    /// When it was accepted (unix ms).
    pub at_ms: i64,
    /// The `Idempotency-Key` it came with (Mastodon).
    pub idempotency_key: Option<String>,
    /// Mastodon `visibility`.
    pub visibility: Option<String>,
    /// Mastodon `language`.
    pub language: Option<String>,
}

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// At most `max` posts in any interval of the window's length (strict).
    Sliding,
    /// At most `max` posts per window aligned to the epoch (Mastodon's rack-attack style, Weibo's
    /// hours).
    Fixed,
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    max: u32,
    window_ms: i64,
    mode: Window,
}

#[derive(Debug, Clone)]
struct Account {
    id: String,
    handle: String,
}

/// A stored post, with the token of its account.
#[derive(Debug, Clone)]
struct Stored {
    token: String,
    post: Accepted,
}

#[derive(Default)]
struct St {
    accounts: HashMap<String, Account>,
    tokens_by_id: HashMap<String, String>,
    next_account: u64,
    next_mastodon: u64,
    next_weibo: u64,
    stored: Vec<Stored>,
    index: HashMap<(&'static str, String), usize>,
    limits: HashMap<String, Limit>,
    hits: HashMap<String, VecDeque<i64>>,
    idem: HashMap<(String, String), (i64, usize)>,
    last_share: HashMap<String, String>,
    fail: VecDeque<u16>,
    delay: VecDeque<Duration>,
    drop_next: u32,
    no_verify: bool,
    violations: HashMap<String, u64>,
    requests: u64,
}

struct Inner {
    base: String,
    st: Mutex<St>,
}

impl Inner {
    fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake platform.
pub struct FakePlatform;

/// Control and inspection of a running fake platform. Cheap to clone.
#[derive(Clone)]
pub struct FakeHandle {
    inner: Arc<Inner>,
}

impl FakePlatform {
    /// Start on 127.0.0.1:0 (a task on the current runtime). Returns its address and handle.
    pub async fn start() -> (SocketAddr, FakeHandle) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake platform");
        let addr = listener.local_addr().expect("fake platform address");
        let inner = Arc::new(Inner {
            base: format!("http://{addr}"),
            st: Mutex::new(St::default()),
        });
        let app = Router::new()
            .route("/api/v1/statuses", post(m_create))
            .route("/api/v1/statuses/{id}/reblog", post(m_reblog))
            .route("/api/v1/accounts/verify_credentials", get(m_verify))
            .route("/api/v1/accounts/{id}/statuses", get(m_statuses))
            .route("/2/statuses/share.json", post(w_share))
            .route("/2/statuses/repost.json", post(w_repost))
            .route("/2/comments/create.json", post(w_comment))
            .route("/2/comments/reply.json", post(w_reply))
            .route("/2/statuses/user_timeline.json", get(w_timeline))
            .route("/2/comments/by_me.json", get(w_by_me))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(
                KillListener(listener),
                app.into_make_service_with_connect_info::<Kill>(),
            )
            .await;
        });
        (addr, FakeHandle { inner })
    }
}

impl FakeHandle {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        self.inner.base.clone()
    }

    /// Register an account with its token (valid on both shapes). Returns its account id.
    pub fn add_account(&self, token: &str, handle: &str) -> String {
        let mut st = self.inner.st();
        if let Some(a) = st.accounts.get(token) {
            return a.id.clone();
        }
        st.next_account += 1;
        let id = (ACCOUNT_ID_BASE + st.next_account).to_string();
        st.accounts.insert(
            token.to_string(),
            Account {
                id: id.clone(),
                handle: handle.to_string(),
            },
        );
        st.tokens_by_id.insert(id.clone(), token.to_string());
        id
    }

    /// Every accepted post, in order.
    pub fn posts(&self) -> Vec<Accepted> {
        self.inner
            .st()
            .stored
            .iter()
            .map(|s| s.post.clone())
            .collect()
    }

    /// At most `max` accepted posts per `window` (sliding) for `token`'s account.
    pub fn set_limit(&self, token: &str, max: u32, window: Duration) {
        self.set_limit_mode(token, max, window, Window::Sliding);
    }

    /// At most `max` accepted posts per `window` aligned to the epoch.
    pub fn set_limit_fixed(&self, token: &str, max: u32, window: Duration) {
        self.set_limit_mode(token, max, window, Window::Fixed);
    }

    /// A limit with an explicit mode.
    pub fn set_limit_mode(&self, token: &str, max: u32, window: Duration, mode: Window) {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        self.inner.st().limits.insert(
            token.to_string(),
            Limit {
                max,
                window_ms,
                mode,
            },
        );
    }

    /// The next `n` publishing requests are answered with `status` and not accepted.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.inner.st();
        st.fail.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` accepted posts are answered only after `delay`.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        let mut st = self.inner.st();
        st.delay.extend(std::iter::repeat_n(delay, n));
    }

    /// The next `n` accepted posts get no answer: the connection is dropped.
    pub fn drop_after_accept_next(&self, n: u32) {
        self.inner.st().drop_next += n;
    }

    /// From now on `GET /api/v1/accounts/verify_credentials` answers 404, like a stand-in that
    /// does not implement it: a Mastodon client cannot learn its account id, so it cannot read
    /// its own statuses.
    pub fn remove_verify_credentials(&self) {
        self.inner.st().no_verify = true;
    }

    /// Posts refused for being over a limit (429 / 10023), all accounts.
    pub fn violations(&self) -> u64 {
        self.inner.st().violations.values().sum()
    }

    /// Posts refused for being over `token`'s limit.
    pub fn violations_for(&self, token: &str) -> u64 {
        self.inner.st().violations.get(token).copied().unwrap_or(0)
    }

    /// Requests received (all endpoints).
    pub fn requests(&self) -> u64 {
        self.inner.st().requests
    }
}

// ---------------------------------------------------------------------------------------------
// Connections that a handler can drop

/// The kill switch of the connection a request came on.
#[derive(Clone)]
struct Kill(Arc<AtomicBool>);

struct KillListener(TcpListener);

struct KillIo {
    io: TcpStream,
    kill: Arc<AtomicBool>,
}

fn dropped() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "fake platform: connection dropped",
    )
}

impl AsyncRead for KillIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(dropped()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl Listener for KillListener {
    type Io = KillIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (KillIo, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((io, addr)) => {
                    let _ = io.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (KillIo { io, kill }, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillListener>> for Kill {
    fn connect_info(stream: IncomingStream<'_, KillListener>) -> Self {
        Kill(Arc::clone(&stream.io().kill))
    }
}

// ---------------------------------------------------------------------------------------------
// Publishing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    MastodonStatus,
    MastodonReblog,
    WeiboShare,
    WeiboRepost,
    WeiboComment,
    WeiboReply,
}

impl Endpoint {
    fn weibo(self) -> bool {
        matches!(
            self,
            Endpoint::WeiboShare
                | Endpoint::WeiboRepost
                | Endpoint::WeiboComment
                | Endpoint::WeiboReply
        )
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::MastodonStatus => "/api/v1/statuses",
            Endpoint::MastodonReblog => "/api/v1/statuses/reblog",
            Endpoint::WeiboShare => "/2/statuses/share.json",
            Endpoint::WeiboRepost => "/2/statuses/repost.json",
            Endpoint::WeiboComment => "/2/comments/create.json",
            Endpoint::WeiboReply => "/2/comments/reply.json",
        }
    }
}

/// One publishing request, parsed.
struct Attempt {
    ep: Endpoint,
    token: Option<String>,
    text: Option<String>,
    target: Option<String>,
    key: Option<String>,
    visibility: Option<String>,
    language: Option<String>,
}

/// What to answer, and how.
struct Outcome {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Body,
    delay: Option<Duration>,
    drop: bool,
}

enum Body {
    Json(Value),
    Html(String),
}

impl Outcome {
    fn json(status: u16, body: Value) -> Outcome {
        Outcome {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: Vec::new(),
            body: Body::Json(body),
            delay: None,
            drop: false,
        }
    }

    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Body::Json(v) => (self.status, Json(v)).into_response(),
            Body::Html(h) => (
                self.status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                h,
            )
                .into_response(),
        };
        for (k, v) in self.headers {
            if let Ok(v) = v.parse() {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

fn mastodon_error(status: u16, message: &str) -> Outcome {
    Outcome::json(status, json!({ "error": message }))
}

fn weibo_error(status: u16, code: u32, message: &str, ep: Endpoint) -> Outcome {
    Outcome::json(
        status,
        json!({ "error": message, "error_code": code, "request": ep.path() }),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Weibo's length: non-ASCII characters count 1, ASCII ½ (rounded up), links nothing.
fn weibo_len(text: &str) -> usize {
    let (mut ascii, mut wide) = (0usize, 0usize);
    for word in split_links(text) {
        if let Piece::Text(t) = word {
            for c in t.chars() {
                if c.is_ascii() {
                    ascii += 1;
                } else {
                    wide += 1;
                }
            }
        }
    }
    wide + ascii.div_ceil(2)
}

enum Piece<'a> {
    Text(&'a str),
    Link(&'a str),
}

/// Text and `http(s)://` links (a link ends at whitespace or a non-ASCII character).
fn split_links(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let at = [rest.find("http://"), rest.find("https://")]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = at else {
            if !rest.is_empty() {
                out.push(Piece::Text(rest));
            }
            return out;
        };
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        let tail = &rest[at..];
        let end = tail
            .char_indices()
            .find(|(_, c)| !c.is_ascii() || c.is_ascii_whitespace())
            .map(|(i, _)| i)
            .unwrap_or(tail.len());
        out.push(Piece::Link(&tail[..end]));
        rest = &tail[end..];
    }
}

impl St {
    fn find(&self, platform: &'static str, id: &str) -> Option<usize> {
        self.index.get(&(platform, id.to_string())).copied()
    }

    /// (max, used, reset ms) of `token`'s limit now, dropping expired hits.
    fn window(&mut self, token: &str, now: i64) -> Option<(u32, u32, i64)> {
        let limit = *self.limits.get(token)?;
        let hits = self.hits.entry(token.to_string()).or_default();
        let reset = match limit.mode {
            Window::Sliding => {
                let start = now - limit.window_ms;
                while hits.front().is_some_and(|&t| t <= start) {
                    hits.pop_front();
                }
                hits.front().map_or(now, |&t| t) + limit.window_ms
            }
            Window::Fixed => {
                let start = now - now.rem_euclid(limit.window_ms);
                while hits.front().is_some_and(|&t| t < start) {
                    hits.pop_front();
                }
                start + limit.window_ms
            }
        };
        let used = u32::try_from(hits.len()).unwrap_or(u32::MAX);
        Some((limit.max, used, reset))
    }

    fn rate_headers(&mut self, token: &str, now: i64) -> Vec<(&'static str, String)> {
        match self.window(token, now) {
            Some((max, used, reset)) => vec![
                ("x-ratelimit-limit", max.to_string()),
                (
                    "x-ratelimit-remaining",
                    max.saturating_sub(used).to_string(),
                ),
                ("x-ratelimit-reset", iso8601(reset)),
            ],
            None => Vec::new(),
        }
    }

    fn ok(&mut self, a: &Attempt, token: &str, idx: usize, base: &str, now: i64) -> Outcome {
        let body = match a.ep {
            Endpoint::MastodonStatus | Endpoint::MastodonReblog => mastodon_json(self, idx, base),
            Endpoint::WeiboShare | Endpoint::WeiboRepost => weibo_status_json(self, idx),
            Endpoint::WeiboComment | Endpoint::WeiboReply => weibo_comment_json(self, idx),
        };
        let mut out = Outcome::json(200, body);
        if !a.ep.weibo() {
            out.headers = self.rate_headers(token, now);
        }
        out
    }

    fn decide(&mut self, a: Attempt, base: &str) -> Outcome {
        let now = now_ms();
        let ep = a.ep;
        if let Some(code) = self.fail.pop_front() {
            return fault(ep, code);
        }
        let Some((token, acct)) = a
            .token
            .as_ref()
            .and_then(|t| self.accounts.get(t).map(|acc| (t.clone(), acc.clone())))
        else {
            return if ep.weibo() {
                weibo_error(401, 21332, "invalid_access_token", ep)
            } else {
                mastodon_error(401, "The access token is invalid")
            };
        };
        let text = a.text.clone().unwrap_or_default();
        // Validation, replays and targets.
        match ep {
            Endpoint::MastodonStatus => {
                if let Some(key) = &a.key {
                    if let Some(&(at, idx)) = self.idem.get(&(token.clone(), key.clone())) {
                        if now - at < IDEMPOTENCY_MS {
                            return self.ok(&a, &token, idx, base, now);
                        }
                    }
                }
                if text.trim().is_empty() {
                    return mastodon_error(422, "Validation failed: Text can't be blank");
                }
                if text.chars().count() > MASTODON_MAX_CHARS {
                    return mastodon_error(
                        422,
                        "Validation failed: Text character limit of 500 exceeded",
                    );
                }
                if let Some(v) = &a.visibility {
                    if !["public", "unlisted", "private", "direct"].contains(&v.as_str()) {
                        return mastodon_error(
                            422,
                            "Validation failed: Visibility is not included in the list",
                        );
                    }
                }
                if let Some(t) = &a.target {
                    if self.find("mastodon", t).is_none() {
                        return mastodon_error(
                            404,
                            "The post you are trying to reply to does not appear to exist.",
                        );
                    }
                }
            }
            Endpoint::MastodonReblog => {
                let target = a.target.clone().unwrap_or_default();
                let Some(orig) = self.find("mastodon", &target) else {
                    return mastodon_error(404, "Record not found");
                };
                let orig_id = self.stored[orig].post.id.clone();
                let existing = self.stored.iter().position(|s| {
                    s.token == token
                        && s.post.platform == "mastodon"
                        && s.post.action == "repost"
                        && s.post.target.as_deref() == Some(orig_id.as_str())
                });
                if let Some(idx) = existing {
                    return self.ok(&a, &token, idx, base, now);
                }
            }
            Endpoint::WeiboShare | Endpoint::WeiboComment | Endpoint::WeiboReply => {
                let field = if ep == Endpoint::WeiboShare {
                    "status"
                } else {
                    "comment"
                };
                if text.trim().is_empty() {
                    let msg = format!("miss required parameter ({field}), see doc for more info.");
                    return weibo_error(400, 10016, &msg, ep);
                }
                if weibo_len(&text) > WEIBO_MAX_CHARS {
                    return weibo_error(
                        400,
                        20012,
                        "Text too long, please input text less than 140 characters!",
                        ep,
                    );
                }
                if ep == Endpoint::WeiboComment {
                    let target = a.target.clone().unwrap_or_default();
                    if self.find("weibo", &target).is_none() {
                        return weibo_error(400, 20101, "target weibo does not exist!", ep);
                    }
                } else if ep == Endpoint::WeiboReply {
                    let target = a.target.clone().unwrap_or_default();
                    let Some((status, cid)) = target.split_once('/') else {
                        let msg = "miss required parameter (cid), see doc for more info.";
                        return weibo_error(400, 10016, msg, ep);
                    };
                    if self.find("weibo", status).is_none() {
                        return weibo_error(400, 20101, "target weibo does not exist!", ep);
                    }
                    let on_status = self.find("weibo", cid).is_some_and(|i| {
                        let p = &self.stored[i].post;
                        p.action == "comment"
                            && p.target.as_deref().map(|t| t.split('/').next())
                                == Some(Some(status))
                    });
                    if !on_status {
                        return weibo_error(400, 20201, "target weibo comment does not exist!", ep);
                    }
                } else if self.last_share.get(&token) == Some(&text) {
                    return weibo_error(400, 20019, "repeat content!", ep);
                }
            }
            Endpoint::WeiboRepost => {
                let target = a.target.clone().unwrap_or_default();
                if self.find("weibo", &target).is_none() {
                    return weibo_error(400, 20101, "target weibo does not exist!", ep);
                }
                if weibo_len(&text) > WEIBO_MAX_CHARS {
                    return weibo_error(
                        400,
                        20012,
                        "Text too long, please input text less than 140 characters!",
                        ep,
                    );
                }
            }
        }
        // The limit.
        if let Some((max, used, reset)) = self.window(&token, now) {
            if used >= max {
                *self.violations.entry(token.clone()).or_default() += 1;
                return if ep.weibo() {
                    weibo_error(403, 10023, "User requests out of rate limit!", ep)
                } else {
                    let mut out = mastodon_error(429, "Too many requests");
                    out.headers = vec![
                        ("x-ratelimit-limit", max.to_string()),
                        ("x-ratelimit-remaining", "0".to_string()),
                        ("x-ratelimit-reset", iso8601(reset)),
                    ];
                    out
                };
            }
        }
        // Accept.
        let (platform, id) = if ep.weibo() {
            self.next_weibo += 1;
            ("weibo", (WEIBO_ID_BASE + self.next_weibo).to_string())
        } else {
            self.next_mastodon += 1;
            (
                "mastodon",
                (MASTODON_ID_BASE + self.next_mastodon).to_string(),
            )
        };
        let action = match ep {
            Endpoint::MastodonStatus if a.target.is_some() => "reply",
            Endpoint::MastodonStatus | Endpoint::WeiboShare => "post",
            Endpoint::MastodonReblog | Endpoint::WeiboRepost => "repost",
            Endpoint::WeiboComment | Endpoint::WeiboReply => "comment",
        };
        let text = match ep {
            Endpoint::MastodonReblog => String::new(),
            Endpoint::WeiboRepost if text.is_empty() => "转发微博".to_string(),
            _ => text,
        };
        let idx = self.stored.len();
        self.stored.push(Stored {
            token: token.clone(),
            post: Accepted {
                platform,
                account: acct.handle.clone(),
                id: id.clone(),
                text: text.clone(),
                action,
                target: a.target.clone(),
                at_ms: now,
                idempotency_key: a.key.clone(),
                visibility: a.visibility.clone(),
                language: a.language.clone(),
            },
        });
        self.index.insert((platform, id), idx);
        if self.limits.contains_key(&token) {
            self.hits.entry(token.clone()).or_default().push_back(now);
        }
        if ep == Endpoint::MastodonStatus {
            if let Some(key) = &a.key {
                self.idem.insert((token.clone(), key.clone()), (now, idx));
            }
        }
        if ep == Endpoint::WeiboShare {
            self.last_share.insert(token.clone(), text);
        }
        let mut out = self.ok(&a, &token, idx, base, now);
        if self.drop_next > 0 {
            self.drop_next -= 1;
            out.drop = true;
        } else {
            out.delay = self.delay.pop_front();
        }
        out
    }
}

/// An injected failure.
fn fault(ep: Endpoint, code: u16) -> Outcome {
    match code {
        502..=504 => {
            let reason = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let mut out = Outcome::json(code, Value::Null);
            out.body = Body::Html(format!(
                "<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}</h1></center><hr><center>nginx</center></body></html>"
            ));
            out
        }
        500 if ep.weibo() => weibo_error(500, 10001, "system error!", ep),
        500 => mastodon_error(500, "We're sorry, but something went wrong on our end."),
        _ => Outcome::json(code, json!({ "error": "injected failure" })),
    }
}

impl Inner {
    async fn run(&self, a: Attempt, kill: Kill) -> Response {
        let out = {
            let mut st = self.st();
            st.requests += 1;
            st.decide(a, &self.base)
        };
        if out.drop {
            kill.0.store(true, Ordering::SeqCst);
            return StatusCode::OK.into_response();
        }
        if let Some(d) = out.delay {
            tokio::time::sleep(d).await;
        }
        out.into_response()
    }

    /// The account of a token, counting the request.
    fn account(&self, token: Option<&str>) -> Option<(String, Account)> {
        let mut st = self.st();
        st.requests += 1;
        let token = token?;
        st.accounts
            .get(token)
            .map(|a| (token.to_string(), a.clone()))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("OAuth2 "))
        .map(|t| t.trim().to_string())
}

/// Request parameters from a JSON or form body (scalars as strings).
async fn params(req: Request) -> Result<HashMap<String, String>, Response> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let Json(v) = Json::<Value>::from_request(req, &())
            .await
            .map_err(IntoResponse::into_response)?;
        let mut out = HashMap::new();
        if let Value::Object(map) = v {
            for (k, v) in map {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                out.insert(k, s);
            }
        }
        Ok(out)
    } else {
        let Form(map) = Form::<HashMap<String, String>>::from_request(req, &())
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(map)
    }
}

fn non_empty(p: &HashMap<String, String>, k: &str) -> Option<String> {
    p.get(k).filter(|s| !s.is_empty()).cloned()
}

async fn m_create(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let p = match params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let a = Attempt {
        ep: Endpoint::MastodonStatus,
        token: bearer(&headers),
        text: p.get("status").cloned(),
        target: non_empty(&p, "in_reply_to_id"),
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        visibility: non_empty(&p, "visibility"),
        language: non_empty(&p, "language"),
    };
    s.run(a, kill).await
}

async fn m_reblog(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let p = params(req).await.unwrap_or_default();
    let a = Attempt {
        ep: Endpoint::MastodonReblog,
        token: bearer(&headers),
        text: None,
        target: Some(id),
        key: None,
        visibility: non_empty(&p, "visibility"),
        language: None,
    };
    s.run(a, kill).await
}

async fn w_post(s: Arc<Inner>, kill: Kill, req: Request, ep: Endpoint) -> Response {
    let headers = req.headers().clone();
    let p = match params(req).await {
        Ok(p) => p,
        Err(_) => {
            return weibo_error(400, 10008, "param error, see doc for more info.", ep)
                .into_response()
        }
    };
    let text_field = if matches!(ep, Endpoint::WeiboComment | Endpoint::WeiboReply) {
        "comment"
    } else {
        "status"
    };
    let a = Attempt {
        ep,
        token: non_empty(&p, "access_token").or_else(|| bearer(&headers)),
        text: p.get(text_field).cloned(),
        target: match (non_empty(&p, "id"), ep) {
            (Some(id), Endpoint::WeiboReply) => non_empty(&p, "cid").map(|c| format!("{id}/{c}")),
            (id, _) => id,
        },
        key: None,
        visibility: None,
        language: None,
    };
    s.run(a, kill).await
}

async fn w_share(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    req: Request,
) -> Response {
    w_post(s, kill, req, Endpoint::WeiboShare).await
}

async fn w_repost(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    req: Request,
) -> Response {
    w_post(s, kill, req, Endpoint::WeiboRepost).await
}

async fn w_reply(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    req: Request,
) -> Response {
    w_post(s, kill, req, Endpoint::WeiboReply).await
}

async fn w_comment(
    State(s): State<Arc<Inner>>,
    ConnectInfo(kill): ConnectInfo<Kill>,
    req: Request,
) -> Response {
    w_post(s, kill, req, Endpoint::WeiboComment).await
}

// ---------------------------------------------------------------------------------------------
// Reading

async fn m_verify(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let Some((_, acct)) = s.account(bearer(&headers).as_deref()) else {
        return mastodon_error(401, "The access token is invalid").into_response();
    };
    if s.st().no_verify {
        return mastodon_error(404, "Not Found").into_response();
    }
    Json(mastodon_account(&acct, &s.base)).into_response()
}

fn id_num(id: &str) -> u64 {
    id.parse().unwrap_or(0)
}

async fn m_statuses(
    State(s): State<Arc<Inner>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if s.account(bearer(&headers).as_deref()).is_none() {
        return mastodon_error(401, "The access token is invalid").into_response();
    }
    let st = s.st();
    let Some(token) = st.tokens_by_id.get(&id).cloned() else {
        return mastodon_error(404, "Record not found").into_response();
    };
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 40);
    let max_id = q.get("max_id").map(|m| id_num(m));
    let list: Vec<Value> = (0..st.stored.len())
        .rev()
        .filter(|&i| {
            let p = &st.stored[i];
            p.token == token
                && p.post.platform == "mastodon"
                && max_id.is_none_or(|m| id_num(&p.post.id) < m)
        })
        .take(limit)
        .map(|i| mastodon_json(&st, i, &s.base))
        .collect();
    Json(Value::Array(list)).into_response()
}

/// A Weibo timeline of `token`'s posts of the given actions.
fn weibo_list(
    s: &Inner,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    comments: bool,
    path: &str,
) -> Response {
    let token = q.get("access_token").cloned().or_else(|| bearer(headers));
    let Some((token, _)) = s.account(token.as_deref()) else {
        return Outcome::json(
            401,
            json!({ "error": "invalid_access_token", "error_code": 21332, "request": path }),
        )
        .into_response();
    };
    let st = s.st();
    let count = q
        .get("count")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let max_id = q.get("max_id").map(|m| id_num(m)).filter(|&m| m > 0);
    let items: Vec<Value> = (0..st.stored.len())
        .rev()
        .filter(|&i| {
            let p = &st.stored[i];
            p.token == token
                && p.post.platform == "weibo"
                && (p.post.action == "comment") == comments
                && max_id.is_none_or(|m| id_num(&p.post.id) <= m)
        })
        .take(count)
        .map(|i| {
            if comments {
                weibo_comment_json(&st, i)
            } else {
                weibo_status_json(&st, i)
            }
        })
        .collect();
    let total = items.len();
    let field = if comments { "comments" } else { "statuses" };
    Json(json!({ field: items, "total_number": total, "previous_cursor": 0, "next_cursor": 0 }))
        .into_response()
}

async fn w_timeline(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    weibo_list(&s, &q, &headers, false, "/2/statuses/user_timeline.json")
}

async fn w_by_me(
    State(s): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    weibo_list(&s, &q, &headers, true, "/2/comments/by_me.json")
}

// ---------------------------------------------------------------------------------------------
// JSON shapes

fn mastodon_account(a: &Account, base: &str) -> Value {
    json!({
        "id": a.id,
        "username": a.handle,
        "acct": a.handle,
        "display_name": a.handle,
        "locked": false,
        "bot": false,
        "note": "",
        "url": format!("{base}/@{}", a.handle),
        "followers_count": 0,
        "following_count": 0,
    })
}

fn account_of(st: &St, token: &str) -> Account {
    st.accounts.get(token).cloned().unwrap_or(Account {
        id: "0".into(),
        handle: "unknown".into(),
    })
}

use huiying::html_escape;

/// Status HTML the way Mastodon renders plain text: paragraphs, `<br />`, linkified URLs.
fn mastodon_html(text: &str) -> String {
    let mut html = String::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        html.push_str("<p>");
        for (i, line) in para.split('\n').enumerate() {
            if i > 0 {
                html.push_str("<br />");
            }
            for piece in split_links(line) {
                match piece {
                    Piece::Text(t) => html.push_str(&html_escape(t)),
                    Piece::Link(l) => {
                        let (scheme, rest) = l.split_at(l.find("://").map_or(0, |i| i + 3));
                        html.push_str(&format!(
                            "<a href=\"{}\" rel=\"nofollow noopener\" target=\"_blank\"><span class=\"invisible\">{}</span><span class=\"\">{}</span><span class=\"invisible\"></span></a>",
                            html_escape(l),
                            html_escape(scheme),
                            html_escape(rest)
                        ));
                    }
                }
            }
        }
        html.push_str("</p>");
    }
    html
}

fn mastodon_json(st: &St, idx: usize, base: &str) -> Value {
    let s = &st.stored[idx];
    let p = &s.post;
    let acct = account_of(st, &s.token);
    let reblog = (p.action == "repost")
        .then(|| p.target.as_deref().and_then(|t| st.find("mastodon", t)))
        .flatten()
        .map(|orig| mastodon_json(st, orig, base));
    let url = if reblog.is_some() {
        format!("{base}/users/{}/statuses/{}/activity", acct.handle, p.id)
    } else {
        format!("{base}/@{}/{}", acct.handle, p.id)
    };
    let in_reply_to = (p.action == "reply").then(|| p.target.clone()).flatten();
    json!({
        "id": p.id,
        "created_at": iso8601(p.at_ms),
        "in_reply_to_id": in_reply_to,
        "in_reply_to_account_id": null,
        "sensitive": false,
        "spoiler_text": "",
        "visibility": p.visibility.as_deref().unwrap_or("public"),
        "language": p.language,
        "uri": format!("{base}/users/{}/statuses/{}", acct.handle, p.id),
        "url": url,
        "replies_count": answers(st, "mastodon", "reply", &p.id),
        "reblogs_count": answers(st, "mastodon", "repost", &p.id),
        "favourites_count": 0,
        "content": if reblog.is_some() { String::new() } else { mastodon_html(&p.text) },
        "reblog": reblog,
        "account": mastodon_account(&acct, base),
        "media_attachments": [],
        "mentions": [],
        "tags": [],
        "emojis": [],
    })
}

/// Weibo's rendering of a text: links shortened to `http://t.cn/…`.
fn weibo_text(text: &str) -> String {
    let mut out = String::new();
    for piece in split_links(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Link(l) => {
                const ALPHABET: &[u8] =
                    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in l.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
                out.push_str("http://t.cn/A6");
                for _ in 0..6 {
                    out.push(char::from(ALPHABET[(h % 62) as usize]));
                    h /= 62;
                }
            }
        }
    }
    out
}

fn weibo_user(a: &Account) -> Value {
    json!({
        "id": id_num(&a.id),
        "idstr": a.id,
        "screen_name": a.handle,
        "name": a.handle,
    })
}

/// How many accepted posts of `platform` are an `action` of post `id` (the counts a timeline
/// reports: replies, reblogs, comments, reposts). A comment answering a comment on `id`
/// (`{id}/{cid}`) counts for `id`.
fn answers(st: &St, platform: &str, action: &str, id: &str) -> usize {
    st.stored
        .iter()
        .filter(|s| s.post.platform == platform && s.post.action == action)
        .filter(|s| {
            s.post
                .target
                .as_deref()
                .is_some_and(|t| t == id || t.split('/').next() == Some(id))
        })
        .count()
}

fn weibo_status_json(st: &St, idx: usize) -> Value {
    let s = &st.stored[idx];
    let p = &s.post;
    let acct = account_of(st, &s.token);
    let retweeted = (p.action == "repost")
        .then(|| p.target.as_deref().and_then(|t| st.find("weibo", t)))
        .flatten()
        .map(|orig| weibo_status_json(st, orig));
    let mut v = json!({
        "created_at": weibo_date(p.at_ms),
        "id": id_num(&p.id),
        "idstr": p.id,
        "mid": p.id,
        "text": weibo_text(&p.text),
        "source": "<a href=\"https://app.example\" rel=\"nofollow\">huiying</a>",
        "favorited": false,
        "truncated": false,
        "reposts_count": answers(st, "weibo", "repost", &p.id),
        "comments_count": answers(st, "weibo", "comment", &p.id),
        "attitudes_count": 0,
        "user": weibo_user(&acct),
    });
    if let (Some(r), Value::Object(map)) = (retweeted, &mut v) {
        map.insert("retweeted_status".into(), r);
    }
    v
}

fn weibo_comment_json(st: &St, idx: usize) -> Value {
    let s = &st.stored[idx];
    let p = &s.post;
    let acct = account_of(st, &s.token);
    let (status_id, cid) = match p.target.as_deref().map(|t| t.split_once('/')) {
        Some(Some((s, c))) => (Some(s), Some(c)),
        Some(None) => (p.target.as_deref(), None),
        None => (None, None),
    };
    let status = status_id
        .and_then(|t| st.find("weibo", t))
        .map(|i| weibo_status_json(st, i));
    let reply_comment = cid.map(|c| json!({"id": id_num(c), "idstr": c}));
    json!({
        "created_at": weibo_date(p.at_ms),
        "id": id_num(&p.id),
        "idstr": p.id,
        "mid": p.id,
        "text": weibo_text(&p.text),
        "source": "<a href=\"https://app.example\" rel=\"nofollow\">huiying</a>",
        "user": weibo_user(&acct),
        "status": status,
        "reply_comment": reply_comment,
    })
}

// ---------------------------------------------------------------------------------------------
// Dates without a date library

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-05-28T20:26:40.000Z`.
fn iso8601(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Weibo's `created_at` in China time: `Fri May 29 04:26:40 +0800 2026`.
fn weibo_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = ms + 8 * 3_600_000;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil(days);
    format!(
        "{} {} {d:02} {:02}:{:02}:{:02} +0800 {y}",
        DAYS[(days + 4).rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(1_780_000_000_000), "2026-05-28T20:26:40.000Z");
        assert_eq!(
            weibo_date(1_780_000_000_000),
            "Fri May 29 04:26:40 +0800 2026"
        );
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
    }
}
