//! Mastodon streaming (`wss://HOST/api/v1/streaming`): one multiplexed websocket, one
//! `subscribe` message per configured stream, statuses turned into [`Mention`]s, deletions
//! passed on, and after a reconnect a REST backfill of what was posted while the socket was
//! down (`GET /api/v1/timelines/…?since_id=`).
//!
//! Mention ids are `mastodon:{host}:{status id}`: ids of different instances never collide and
//! two feeds on one instance (say `public:local` and `hashtag:暴雨`) share ids, so the engine's
//! id dedup drops the second copy. The protocol also remembers the ids it recently delivered and
//! does not send them twice (a status on two subscribed streams arrives twice; the backfill
//! overlaps the live stream).
//!
//! The REST client is a minimal HTTP/1.1 GET over plain TCP (`http://`) or rustls
//! (`https://`, Mozilla's roots from `webpki-roots`).

use super::health::FeedHealth;
use super::websocket::{self, Frame, Protocol};
use super::FeedConfig;
use super::Ingest;
use crate::normalize::html_to_text;
use crate::normalize::mention::parse_time;
use crate::normalize::{Author, Mention};
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Streams subscribed to when none are configured.
pub const DEFAULT_STREAMS: [&str; 1] = ["public:local"];
/// Items per backfill page (Mastodon's maximum for timelines).
const PAGE: usize = 40;
/// Pages per stream and backfill round at most.
const MAX_PAGES: usize = 10;
/// Recently delivered mention ids remembered, to not send one twice.
const RECENT_IDS: usize = 20_000;
/// One backfill HTTP request may take this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest backfill response body.
const MAX_BODY: usize = 16 << 20;
/// `source` of mentions from the streams.
const SOURCE: &str = "mastodon";
/// `source` of mentions of our account (notifications of type `mention`).
const SOURCE_NOTIFICATION: &str = "mastodon:notification";

/// Run a Mastodon feed until `cancel` fires.
pub async fn run(
    cfg: FeedConfig,
    token: Option<String>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let proto = match Mastodon::new(&cfg, token.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(feed = %cfg.name, error = %e, "Invalid Mastodon feed; feed stopped.");
            return;
        }
    };
    websocket::run(proto, token, ingest, health, cfg.ws_options(), cancel).await;
}

// ---------------------------------------------------------------------------------------------
// Streams

/// One configured stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stream {
    /// `public`, `public:local`, `public:remote`, and their `:media` variants.
    Public {
        name: String,
        local: bool,
        remote: bool,
        media: bool,
    },
    /// `hashtag:TAG` or `hashtag:local:TAG`.
    Hashtag { tag: String, local: bool },
    /// `list:ID`.
    List(String),
    /// `user`: the home timeline (and notifications).
    User,
    /// `user:notification`.
    Notifications,
    /// Anything else (`direct`, …): subscribed to as is, no backfill.
    Other(String),
}

impl Stream {
    fn parse(s: &str) -> Stream {
        let s = s.trim();
        match s {
            "public"
            | "public:local"
            | "public:remote"
            | "public:media"
            | "public:local:media"
            | "public:remote:media" => {
                return Stream::Public {
                    name: s.to_string(),
                    local: s.starts_with("public:local"),
                    remote: s.starts_with("public:remote"),
                    media: s.ends_with(":media"),
                }
            }
            "user" => return Stream::User,
            "user:notification" => return Stream::Notifications,
            _ => {}
        }
        if let Some(tag) = s.strip_prefix("hashtag:local:") {
            return Stream::Hashtag {
                tag: tag.trim_start_matches('#').to_string(),
                local: true,
            };
        }
        if let Some(tag) = s.strip_prefix("hashtag:") {
            return Stream::Hashtag {
                tag: tag.trim_start_matches('#').to_string(),
                local: false,
            };
        }
        if let Some(list) = s.strip_prefix("list:") {
            return Stream::List(list.to_string());
        }
        Stream::Other(s.to_string())
    }

    /// The stream as frames name it (their `stream` array joined with `:`), lower case.
    fn key(&self) -> String {
        match self {
            Stream::Public { name, .. } | Stream::Other(name) => name.to_lowercase(),
            Stream::Hashtag { tag, local: false } => format!("hashtag:{}", tag.to_lowercase()),
            Stream::Hashtag { tag, local: true } => {
                format!("hashtag:local:{}", tag.to_lowercase())
            }
            Stream::List(id) => format!("list:{id}"),
            Stream::User => "user".into(),
            Stream::Notifications => "user:notification".into(),
        }
    }

    /// The subscribe message.
    fn subscribe(&self) -> String {
        let v = match self {
            Stream::Public { name, .. } | Stream::Other(name) => {
                serde_json::json!({"type": "subscribe", "stream": name})
            }
            Stream::Hashtag { tag, local } => serde_json::json!({
                "type": "subscribe",
                "stream": if *local { "hashtag:local" } else { "hashtag" },
                "tag": tag,
            }),
            Stream::List(id) => {
                serde_json::json!({"type": "subscribe", "stream": "list", "list": id})
            }
            Stream::User => serde_json::json!({"type": "subscribe", "stream": "user"}),
            Stream::Notifications => {
                serde_json::json!({"type": "subscribe", "stream": "user:notification"})
            }
        };
        v.to_string()
    }

    /// The REST path and fixed query parameters of the matching timeline, if there is one.
    fn timeline(&self) -> Option<(String, String)> {
        let mut params = Vec::new();
        let path = match self {
            Stream::Public {
                local,
                remote,
                media,
                ..
            } => {
                if *local {
                    params.push("local=true");
                }
                if *remote {
                    params.push("remote=true");
                }
                if *media {
                    params.push("only_media=true");
                }
                "/api/v1/timelines/public".to_string()
            }
            Stream::Hashtag { tag, local } => {
                if *local {
                    params.push("local=true");
                }
                format!("/api/v1/timelines/tag/{}", url_encode(tag))
            }
            Stream::List(id) => format!("/api/v1/timelines/list/{}", url_encode(id)),
            Stream::User => "/api/v1/timelines/home".to_string(),
            Stream::Notifications => {
                params.push("types%5B%5D=mention");
                "/api/v1/notifications".to_string()
            }
            Stream::Other(_) => return None,
        };
        Some((path, params.join("&")))
    }

    fn is_notifications(&self) -> bool {
        matches!(self, Stream::Notifications)
    }
}

// ---------------------------------------------------------------------------------------------
// The Mastodon JSON this feed reads (only the fields it uses).

/// An id: Mastodon sends strings; numbers are tolerated.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Id {
    S(String),
    N(u64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::S(s) => s,
            Id::N(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    id: Id,
    created_at: String,
    #[serde(default)]
    edited_at: Option<String>,
    #[serde(default)]
    in_reply_to_id: Option<Id>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    spoiler_text: Option<String>,
    account: Account,
    #[serde(default)]
    reblog: Option<Box<Status>>,
}

#[derive(Debug, Deserialize)]
struct Account {
    acct: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    followers_count: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Notification {
    id: Id,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    status: Option<Status>,
}

/// Why a payload was rejected: a reject reason label and a message for the debug log.
type Reject = (&'static str, String);

fn json_reject(e: serde_json::Error) -> Reject {
    use serde_json::error::Category;
    let label = match e.classify() {
        Category::Data => "bad_field",
        _ => "invalid_json",
    };
    (label, e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Ids

/// Order two ids: numerically if both are decimal (Mastodon's ids), else as strings.
fn id_cmp(a: &str, b: &str) -> Ordering {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if num(a) && num(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// Keep the larger id in `slot`.
fn bump(slot: &mut Option<String>, id: &str) {
    if slot
        .as_deref()
        .is_none_or(|cur| id_cmp(id, cur) == Ordering::Greater)
    {
        *slot = Some(id.to_string());
    }
}

/// A bounded set of recently delivered mention ids (oldest forgotten first).
#[derive(Debug, Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    /// False if `id` is already in.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The protocol

/// The Mastodon streaming protocol.
pub struct Mastodon {
    feed: String,
    url: String,
    token: Option<String>,
    /// Instance host (with a non-default port) in mention ids.
    host: String,
    /// Instance host name (no port) completing local account handles.
    domain: String,
    streams: Vec<Stream>,
    /// `http(s)://host[:port]` of the REST API.
    rest_base: String,
    /// Highest status id seen per stream key.
    last_seen: HashMap<String, String>,
    /// Highest status id seen on any stream (for streams that saw nothing yet).
    newest: Option<String>,
    /// Highest notification id seen.
    last_notification: Option<String>,
    recent: Recent,
    tls: Arc<rustls::ClientConfig>,
}

/// Never shows the token.
impl std::fmt::Debug for Mastodon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mastodon")
            .field("feed", &self.feed)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("host", &self.host)
            .field("streams", &self.streams)
            .field("rest_base", &self.rest_base)
            .field("last_seen", &self.last_seen)
            .field("last_notification", &self.last_notification)
            .finish_non_exhaustive()
    }
}

impl Mastodon {
    /// A protocol for `cfg` (streaming URL, streams, REST base). `token` is sent with the REST
    /// backfill; the connection loop sends it on connect.
    pub fn new(cfg: &FeedConfig, token: Option<String>) -> anyhow::Result<Mastodon> {
        let (scheme, authority) = split_origin(&cfg.url)
            .ok_or_else(|| anyhow::anyhow!("feed {}: bad streaming URL {:?}", cfg.name, cfg.url))?;
        let http_scheme = match scheme.as_str() {
            "ws" | "http" => "http",
            "wss" | "https" => "https",
            _ => anyhow::bail!(
                "feed {}: streaming URL {:?} is not ws:// or wss://",
                cfg.name,
                cfg.url
            ),
        };
        let rest = match &cfg.rest_url {
            Some(r) => r.trim_end_matches('/').to_string(),
            None => format!("{http_scheme}://{authority}"),
        };
        let (rest_scheme, rest_authority) = split_origin(&rest)
            .ok_or_else(|| anyhow::anyhow!("feed {}: bad rest_url {rest:?}", cfg.name))?;
        if !matches!(rest_scheme.as_str(), "http" | "https") {
            anyhow::bail!("feed {}: rest_url {rest:?} is not http(s)://", cfg.name);
        }
        let host = strip_default_port(&rest_scheme, &rest_authority);
        let domain = host_name(&host).to_string();
        let names: Vec<&str> = if cfg.streams.is_empty() {
            DEFAULT_STREAMS.to_vec()
        } else {
            cfg.streams.iter().map(String::as_str).collect()
        };
        let mut streams: Vec<Stream> = Vec::new();
        for n in names {
            let s = Stream::parse(n);
            if let Stream::Other(name) = &s {
                tracing::warn!(feed = %cfg.name, stream = %name, "Unknown Mastodon stream: subscribed to as is, no backfill.");
            }
            if !streams.contains(&s) {
                streams.push(s);
            }
        }
        Ok(Mastodon {
            feed: cfg.name.clone(),
            url: cfg.url.clone(),
            token,
            host,
            domain,
            streams,
            rest_base: rest,
            last_seen: HashMap::new(),
            newest: None,
            last_notification: None,
            recent: Recent::default(),
            tls: default_tls(),
        })
    }

    fn mention_id(&self, status_id: &str) -> String {
        format!("mastodon:{}:{status_id}", self.host)
    }

    /// A status as a mention. `edit`: the status was edited (its time is `edited_at`).
    fn mention(&self, s: &Status, edit: bool, source: &str) -> Result<Mention, Reject> {
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
        })
    }

    /// Remember a status id seen on the stream named by a frame's `stream` field.
    fn saw_status(&mut self, stream: Option<&str>, id: &str) {
        bump(&mut self.newest, id);
        let key = match stream {
            Some(k) if self.streams.iter().any(|s| s.key() == k) => Some(k.to_string()),
            // Unnamed: it belongs to the only status stream, if there is just one.
            _ => {
                let mut status_streams = self.streams.iter().filter(|s| !s.is_notifications());
                match (status_streams.next(), status_streams.next()) {
                    (Some(s), None) => Some(s.key()),
                    _ => None,
                }
            }
        };
        if let Some(k) = key {
            let mut slot = self.last_seen.remove(&k);
            bump(&mut slot, id);
            if let Some(v) = slot {
                self.last_seen.insert(k, v);
            }
        }
    }

    /// A frame with one status (update, edit, mention notification): new mentions only.
    fn status_frame(&mut self, kind: &'static str, m: Mention) -> Frame {
        let mut f = Frame {
            kind,
            event_ms: Some(m.ts),
            ..Frame::default()
        };
        if self.recent.insert(&m.id) {
            f.mentions.push(m);
        }
        f
    }

    fn malformed(&self, (reason, message): Reject) -> Frame {
        tracing::debug!(feed = %self.feed, reason, error = %message, "Malformed Mastodon frame.");
        Frame {
            kind: "malformed",
            rejects: vec![reason],
            ..Frame::default()
        }
    }

    /// Fetch one stream's timeline newer than `since`: every item (newest pages first).
    async fn fetch(&self, base: &str, stream: &Stream, since: &str) -> Result<Vec<Value>, Fetch> {
        let Some((path, fixed)) = stream.timeline() else {
            return Ok(Vec::new());
        };
        let mut items = Vec::new();
        let mut max_id: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = format!("{base}{path}?");
            if !fixed.is_empty() {
                url.push_str(&fixed);
                url.push('&');
            }
            url.push_str(&format!("since_id={}&limit={PAGE}", url_encode(since)));
            if let Some(m) = &max_id {
                url.push_str(&format!("&max_id={}", url_encode(m)));
            }
            let resp = http_get(&url, self.token.as_deref(), &self.tls)
                .await
                .map_err(Fetch::Failed)?;
            if resp.status == 429 {
                return Err(Fetch::RateLimited(
                    resp.header("x-ratelimit-reset").unwrap_or("?").to_string(),
                ));
            }
            if resp.status != 200 {
                let body = String::from_utf8_lossy(&resp.body);
                let body: String = body.chars().take(200).collect();
                return Err(Fetch::Failed(format!("HTTP {}: {body}", resp.status)));
            }
            let page: Vec<Value> = serde_json::from_slice(&resp.body)
                .map_err(|e| Fetch::Failed(format!("not a JSON array: {e}")))?;
            let full = page.len() >= PAGE;
            let mut oldest: Option<String> = None;
            for v in page {
                let Some(id) = value_id(&v) else { continue };
                if id_cmp(&id, since) != Ordering::Greater {
                    continue;
                }
                if oldest
                    .as_deref()
                    .is_none_or(|o| id_cmp(&id, o) == Ordering::Less)
                {
                    oldest = Some(id);
                }
                items.push(v);
            }
            match oldest {
                Some(o) if full => max_id = Some(o),
                _ => return Ok(items),
            }
        }
        tracing::warn!(
            feed = %self.feed,
            stream = %stream.key(),
            pages = MAX_PAGES,
            "Mastodon backfill capped; older missed statuses are skipped."
        );
        Ok(items)
    }

    async fn backfill(&mut self) -> Vec<Mention> {
        let base = self.rest_base.clone();
        let mut out = Vec::new();
        for stream in self.streams.clone() {
            if stream.timeline().is_none() {
                continue;
            }
            let key = stream.key();
            let since = if stream.is_notifications() {
                self.last_notification.clone()
            } else {
                self.last_seen.get(&key).cloned().or(self.newest.clone())
            };
            let Some(since) = since else {
                tracing::debug!(feed = %self.feed, stream = %key, "Nothing seen yet on this stream; no backfill.");
                continue;
            };
            let items = match self.fetch(&base, &stream, &since).await {
                Ok(items) => items,
                Err(Fetch::RateLimited(reset)) => {
                    tracing::warn!(
                        feed = %self.feed,
                        stream = %key,
                        reset = %reset,
                        "Mastodon backfill rate limited (HTTP 429); skipping it this time."
                    );
                    break;
                }
                Err(Fetch::Failed(e)) => {
                    tracing::warn!(feed = %self.feed, stream = %key, error = %e, "Mastodon backfill failed.");
                    continue;
                }
            };
            let (mut got, mut bad) = (0usize, 0usize);
            for v in items {
                let Some(id) = value_id(&v) else { continue };
                let m = if stream.is_notifications() {
                    bump(&mut self.last_notification, &id);
                    match Notification::deserialize(&v) {
                        Ok(Notification {
                            kind,
                            status: Some(s),
                            ..
                        }) if kind == "mention" => self.mention(&s, false, SOURCE_NOTIFICATION),
                        Ok(_) => continue,
                        Err(e) => Err(("bad_field", e.to_string())),
                    }
                } else {
                    self.saw_status(Some(&key), &id);
                    match Status::deserialize(&v) {
                        Ok(s) => self.mention(&s, false, SOURCE),
                        Err(e) => Err(("bad_field", e.to_string())),
                    }
                };
                match m {
                    Ok(m) => {
                        if self.recent.insert(&m.id) {
                            got += 1;
                            out.push(m);
                        }
                    }
                    Err((_, e)) => {
                        bad += 1;
                        tracing::debug!(feed = %self.feed, error = %e, "Bad status in the Mastodon backfill.");
                    }
                }
            }
            tracing::info!(feed = %self.feed, stream = %key, since = %since, mentions = got, bad, "Mastodon backfill.");
        }
        // Oldest first: by time, then by status id (the last part of the mention id).
        let sid = |m: &Mention| m.id.rsplit(':').next().unwrap_or("").to_string();
        out.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| id_cmp(&sid(a), &sid(b))));
        out
    }
}

enum Fetch {
    RateLimited(String),
    Failed(String),
}

/// The `id` of a JSON object, string or number.
fn value_id(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A status's text: its content warning (if any) and its content, as plain text.
fn status_text(s: &Status) -> String {
    let body = html_to_text(s.content.as_deref().unwrap_or(""));
    match s.spoiler_text.as_deref().map(str::trim) {
        Some(cw) if !cw.is_empty() => format!("{cw}\n{body}"),
        _ => body,
    }
}

impl Protocol for Mastodon {
    fn url(&mut self) -> String {
        self.url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        self.streams.iter().map(Stream::subscribe).collect()
    }

    async fn catch_up(&mut self, reconnect: bool) -> Vec<Mention> {
        if reconnect {
            self.backfill().await
        } else {
            Vec::new()
        }
    }

    fn on_text(&mut self, text: &str) -> Frame {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.malformed(("invalid_json", e.to_string())),
        };
        let Some(obj) = v.as_object() else {
            return self.malformed(("invalid_json", "not a JSON object".into()));
        };
        let Some(event) = obj.get("event").and_then(Value::as_str) else {
            if let Some(err) = obj.get("error") {
                let msg = err.as_str().map(str::to_string).unwrap_or(err.to_string());
                let msg: String = msg.chars().take(300).collect();
                let status = obj.get("status").and_then(|s| s.as_i64());
                tracing::warn!(
                    feed = %self.feed,
                    error = %msg,
                    status = ?status,
                    "Mastodon streaming error."
                );
                return Frame::skipped("error");
            }
            return Frame::skipped("unknown");
        };
        let stream = match obj.get("stream") {
            Some(Value::Array(parts)) => Some(
                parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(":")
                    .to_lowercase(),
            ),
            Some(Value::String(s)) => Some(s.to_lowercase()),
            _ => None,
        };
        let kind: &'static str = match event {
            "update" => "update",
            "status.update" => "status.update",
            "delete" => "delete",
            "notification" => "notification",
            _ => return Frame::skipped("unknown"),
        };
        let payload = match obj.get("payload") {
            Some(Value::String(p)) => p.as_str(),
            Some(other) => {
                let t = match other {
                    Value::Null => "null",
                    Value::Object(_) => "an object",
                    Value::Array(_) => "an array",
                    _ => "not a string",
                };
                return self.malformed(("bad_field", format!("payload is {t}")));
            }
            None => return self.malformed(("bad_field", "no payload".into())),
        };
        match kind {
            "delete" => {
                let id = payload.trim();
                if id.is_empty() {
                    return self.malformed(("bad_field", "empty deleted id".into()));
                }
                Frame {
                    kind,
                    deleted: vec![self.mention_id(id)],
                    ..Frame::default()
                }
            }
            "notification" => {
                let n: Notification = match serde_json::from_str(payload) {
                    Ok(n) => n,
                    Err(e) => return self.malformed(json_reject(e)),
                };
                bump(&mut self.last_notification, &n.id.into_string());
                match n.status {
                    Some(s) if n.kind == "mention" => {
                        match self.mention(&s, false, SOURCE_NOTIFICATION) {
                            Ok(m) => self.status_frame(kind, m),
                            Err(r) => self.malformed(r),
                        }
                    }
                    _ => Frame::skipped(kind),
                }
            }
            _ => {
                let s: Status = match serde_json::from_str(payload) {
                    Ok(s) => s,
                    Err(e) => return self.malformed(json_reject(e)),
                };
                let m = match self.mention(&s, kind == "status.update", SOURCE) {
                    Ok(m) => m,
                    Err(r) => return self.malformed(r),
                };
                self.saw_status(stream.as_deref(), &s.id.into_string());
                self.status_frame(kind, m)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// URLs and a minimal HTTP/1.1 GET

/// `scheme://authority` of a URL: (lower-case scheme, authority without user info).
fn split_origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.is_empty() || scheme.is_empty() {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
}

/// The authority without the scheme's default port.
fn strip_default_port(scheme: &str, authority: &str) -> String {
    let default = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => return authority.to_string(),
    };
    authority
        .strip_suffix(default)
        .unwrap_or(authority)
        .to_string()
}

/// The host name of an authority (no port, no IPv6 brackets kept off).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |i| &authority[..=i]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP response.
#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The TLS client configuration for `https://` backfill: ring and Mozilla's roots
/// (`webpki-roots`), no system store.
fn default_tls() -> Arc<rustls::ClientConfig> {
    static CFG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CFG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        tls_config(roots)
    })
    .clone()
}

fn tls_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `GET url` over HTTP/1.1 (`Connection: close`), `http://` or `https://` (verified against
/// `tls`'s roots), with a bearer token if given.
async fn http_get(
    url: &str,
    token: Option<&str>,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<HttpResponse, String> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("unsupported URL {url:?}"));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let target = match &rest[end..] {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    let host = host_name(authority);
    let has_port = authority.len() > host.len();
    let addr = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", if secure { 443 } else { 80 })
    };
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nUser-Agent: huiying/{}\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    let io = async {
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        if !secure {
            return exchange(tcp, req.as_bytes()).await;
        }
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        exchange(s, req.as_bytes()).await
    };
    match tokio::time::timeout(HTTP_TIMEOUT, io).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {HTTP_TIMEOUT:?}")),
    }
}

/// Send `req` on `s` and read one response.
async fn exchange<S>(mut s: S, req: &[u8]) -> Result<HttpResponse, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req).await.map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(r) = parse_response(&buf, false) {
            return r;
        }
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // Servers often close TLS without close_notify once the body is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("read: {e}")),
        };
        if n == 0 {
            return parse_response(&buf, true)
                .unwrap_or_else(|| Err("connection closed early".into()));
        }
        if buf.len() + n > MAX_BODY {
            return Err(format!("response over {MAX_BODY} bytes"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Parse `buf` as a complete response; `None` if more bytes are needed (`eof`: no more come).
fn parse_response(buf: &[u8], eof: bool) -> Option<Result<HttpResponse, String>> {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return eof.then(|| Err("no end of headers".into()));
    };
    let head = match std::str::from_utf8(&buf[..split]) {
        Ok(h) => h,
        Err(e) => return Some(Err(format!("headers are not UTF-8: {e}"))),
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Some(Err(format!("bad status line {status_line:?}")));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let raw = &buf[split + 4..];
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(raw) {
            Ok(Some(b)) => b,
            Ok(None) if eof => return Some(Err("truncated chunked body".into())),
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        }
    } else if let Some(len) = get("content-length") {
        let Ok(n) = len.parse::<usize>() else {
            return Some(Err(format!("bad Content-Length {len:?}")));
        };
        if raw.len() < n {
            return eof.then(|| Err("truncated body".into()));
        }
        raw[..n].to_vec()
    } else if eof {
        raw.to_vec()
    } else {
        return None;
    };
    Some(Ok(HttpResponse {
        status,
        headers,
        body,
    }))
}

/// Decode a chunked body: `None` if incomplete.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&raw[..eol]).map_err(|e| e.to_string())?;
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if raw.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proto(streams: &[&str]) -> Mastodon {
        let cfg = FeedConfig {
            name: "m".into(),
            kind: crate::feeds::FeedKind::Mastodon,
            url: "wss://social.example/api/v1/streaming".into(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            ..FeedConfig::default()
        };
        Mastodon::new(&cfg, Some("secret".into())).expect("valid config")
    }

    fn status(id: &str, acct: &str, content: &str) -> Value {
        json!({
            "id": id,
            "created_at": "2026-07-21T08:15:30.000Z",
            "in_reply_to_id": null,
            "in_reply_to_account_id": null,
            "sensitive": false,
            "spoiler_text": "",
            "visibility": "public",
            "language": "zh",
            "uri": format!("https://social.example/users/{acct}/statuses/{id}"),
            "url": format!("https://social.example/@{acct}/{id}"),
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": null,
            "content": content,
            "reblog": null,
            "account": {
                "id": "1090",
                "username": acct.split('@').next().unwrap(),
                "acct": acct,
                "display_name": "市民",
                "followers_count": 12,
                "following_count": 3,
                "statuses_count": 40,
            },
            "media_attachments": [],
            "mentions": [],
            "tags": [],
        })
    }

    fn frame(event: &str, payload: &Value) -> String {
        json!({"stream": ["public:local"], "event": event, "payload": payload.to_string()})
            .to_string()
    }

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

    #[test]
    fn frames_are_classified() {
        let mut p = proto(&["public:local", "user:notification"]);
        let s1 = status("200", "alice", "<p>暴雨</p>");
        let mention_n = json!({"id": "9", "type": "mention", "created_at": "2026-07-21T08:15:30.000Z",
            "account": s1["account"], "status": status("201", "bob", "<p>@gov 暴雨</p>")});
        let fav_n = json!({"id": "10", "type": "favourite", "created_at": "2026-07-21T08:15:30.000Z",
            "account": s1["account"], "status": status("202", "gov", "<p>通知</p>")});
        // (frame, kind, mentions, rejects, deleted)
        type Case<'a> = (String, &'a str, usize, Vec<&'a str>, Vec<String>);
        let cases: Vec<Case> = vec![
            (frame("update", &s1), "update", 1, vec![], vec![]),
            // The same status again (e.g. on a second stream): not sent twice.
            (frame("update", &s1), "update", 0, vec![], vec![]),
            (
                frame("status.update", &status("203", "carol", "x")),
                "status.update",
                1,
                vec![],
                vec![],
            ),
            (
                json!({"stream": ["public:local"], "event": "delete", "payload": "200"})
                    .to_string(),
                "delete",
                0,
                vec![],
                vec!["mastodon:social.example:200".into()],
            ),
            (
                frame("notification", &mention_n),
                "notification",
                1,
                vec![],
                vec![],
            ),
            (
                frame("notification", &fav_n),
                "notification",
                0,
                vec![],
                vec![],
            ),
            (
                json!({"error": "Missing access token", "status": 401}).to_string(),
                "error",
                0,
                vec![],
                vec![],
            ),
            (
                frame("announcement", &json!({"id": "1"})),
                "unknown",
                0,
                vec![],
                vec![],
            ),
            (
                frame("filters_changed", &json!(null)),
                "unknown",
                0,
                vec![],
                vec![],
            ),
            (
                json!({"hello": 1}).to_string(),
                "unknown",
                0,
                vec![],
                vec![],
            ),
            (
                "not json{".into(),
                "malformed",
                0,
                vec!["invalid_json"],
                vec![],
            ),
            ("[1,2]".into(), "malformed", 0, vec!["invalid_json"], vec![]),
            (
                json!({"stream": ["public:local"], "event": "update", "payload": s1}).to_string(),
                "malformed",
                0,
                vec!["bad_field"],
                vec![],
            ),
            (
                json!({"event": "update", "payload": "{oops"}).to_string(),
                "malformed",
                0,
                vec!["invalid_json"],
                vec![],
            ),
            (
                json!({"event": "update", "payload": "{\"id\":\"5\"}"}).to_string(),
                "malformed",
                0,
                vec!["bad_field"],
                vec![],
            ),
            (
                json!({"event": "delete"}).to_string(),
                "malformed",
                0,
                vec!["bad_field"],
                vec![],
            ),
        ];
        for (text, kind, n, rejects, deleted) in cases {
            let f = p.on_text(&text);
            assert_eq!(f.kind, kind, "{text}");
            assert_eq!(f.mentions.len(), n, "{text}");
            assert_eq!(f.rejects, rejects, "{text}");
            assert_eq!(f.deleted, deleted, "{text}");
        }
        assert_eq!(
            p.last_seen.get("public:local").map(String::as_str),
            Some("203")
        );
        assert_eq!(p.last_notification.as_deref(), Some("10"));
        let f = p.on_text(&frame(
            "notification",
            &json!({"id": "11", "type": "mention",
            "status": status("204", "dan", "<p>求助</p>")}),
        ));
        assert_eq!(f.mentions[0].source.as_deref(), Some(SOURCE_NOTIFICATION));
        assert_eq!(f.event_ms, Some(f.mentions[0].ts));
    }

    #[test]
    fn subscriptions_and_timelines() {
        let p = proto(&[
            "public:local",
            "hashtag:暴雨",
            "hashtag:local:#flood",
            "list:42",
            "user",
            "user:notification",
            "public",
            "direct",
            "public:local",
        ]);
        let subs: Vec<Value> = p
            .subscriptions()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(
            subs,
            vec![
                json!({"type": "subscribe", "stream": "public:local"}),
                json!({"type": "subscribe", "stream": "hashtag", "tag": "暴雨"}),
                json!({"type": "subscribe", "stream": "hashtag:local", "tag": "flood"}),
                json!({"type": "subscribe", "stream": "list", "list": "42"}),
                json!({"type": "subscribe", "stream": "user"}),
                json!({"type": "subscribe", "stream": "user:notification"}),
                json!({"type": "subscribe", "stream": "public"}),
                json!({"type": "subscribe", "stream": "direct"}),
            ]
        );
        let tl: Vec<Option<(String, String)>> = p.streams.iter().map(Stream::timeline).collect();
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(
            tl,
            vec![
                s("/api/v1/timelines/public", "local=true"),
                s("/api/v1/timelines/tag/%E6%9A%B4%E9%9B%A8", ""),
                s("/api/v1/timelines/tag/flood", "local=true"),
                s("/api/v1/timelines/list/42", ""),
                s("/api/v1/timelines/home", ""),
                s("/api/v1/notifications", "types%5B%5D=mention"),
                s("/api/v1/timelines/public", ""),
                None,
            ]
        );
        let keys: Vec<String> = p.streams.iter().map(Stream::key).collect();
        assert_eq!(keys[1], "hashtag:暴雨");
        assert_eq!(keys[3], "list:42");
        let default: Vec<Value> = proto(&[])
            .subscriptions()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(
            default,
            vec![json!({"type": "subscribe", "stream": "public:local"})]
        );
    }

    #[test]
    fn origins_hosts_and_ids() {
        let cfg = |url: &str, rest: Option<&str>| FeedConfig {
            name: "m".into(),
            url: url.into(),
            rest_url: rest.map(str::to_string),
            ..FeedConfig::default()
        };
        let p = Mastodon::new(&cfg("ws://127.0.0.1:4000/api/v1/streaming", None), None).unwrap();
        assert_eq!(p.rest_base, "http://127.0.0.1:4000");
        assert_eq!(
            (p.host.as_str(), p.domain.as_str()),
            ("127.0.0.1:4000", "127.0.0.1")
        );
        let p = Mastodon::new(
            &cfg(
                "wss://streaming.example:443/api/v1/streaming",
                Some("http://social.example/"),
            ),
            None,
        )
        .unwrap();
        assert_eq!(p.rest_base, "http://social.example");
        assert_eq!(p.host, "social.example");
        let p = Mastodon::new(&cfg("wss://Social.Example/api/v1/streaming", None), None).unwrap();
        assert_eq!(p.rest_base, "https://social.example");
        assert_eq!(p.host, "social.example");
        assert!(Mastodon::new(&cfg("social.example", None), None).is_err());
        let p = Mastodon::new(&cfg("ws://h/", None), Some("s3cret-token".into())).unwrap();
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        assert!(Mastodon::new(&cfg("ftp://social.example/", None), None).is_err());

        assert_eq!(id_cmp("99", "100"), Ordering::Less);
        assert_eq!(
            id_cmp("110000000000000001", "110000000000000001"),
            Ordering::Equal
        );
        assert_eq!(id_cmp("b", "a"), Ordering::Greater);
        let mut slot = None;
        for id in ["5", "12", "7"] {
            bump(&mut slot, id);
        }
        assert_eq!(slot.as_deref(), Some("12"));
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(url_encode("a b/暴"), "a%20b%2F%E6%9A%B4");
    }

    #[test]
    fn http_responses_parse() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", false)
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[]", false).is_none());
        let r = parse_response(
            b"HTTP/1.1 429 Too Many Requests\r\nX-RateLimit-Reset: 2026-07-21T09:00:00Z\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.header("X-RateLimit-Reset"), Some("2026-07-21T09:00:00Z"));
        assert_eq!(r.body, b"[]");
        let r = parse_response(b"HTTP/1.0 200 OK\r\n\r\n[1]", true)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"[1]");
        assert!(parse_response(b"SMTP 200\r\n\r\n", true).unwrap().is_err());
    }

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let h: String = parts.concat();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    // A test CA and a `localhost` certificate it signed (P-256, valid 2000–2100), DER.
    const TEST_CA: &[&str] = &[
        "308201683082010da003020102020101300a06082a8648ce3d040302301a3118301606035504030c0f68756979",
        "696e6720746573742043413020170d3030303130313030303030305a180f32313030303130313030303030305a",
        "301a3118301606035504030c0f68756979696e6720746573742043413059301306072a8648ce3d020106082a86",
        "48ce3d03010703420004fd185763215ac3fc97dc8079ab9ff634b36660391db7a5d6936b99bfb852bb70be0176",
        "2138db65de61894df78779c720571dadcd931386b844b74b8017227e6fa3423040300f0603551d130101ff0405",
        "30030101ff300e0603551d0f0101ff040403020204301d0603551d0e04160414f78a81cdc58af227f2b3651b92",
        "3950c48f0fc440300a06082a8648ce3d0403020349003046022100ebd067ff0bbe5a24fb5962406505aab12200",
        "b6ad061afa55296aee8b7646458c022100815c21e05dfc3d2d33a89021cbe27471b641ffc4a9036230e509ccca",
        "131b35ef",
    ];
    const TEST_LEAF: &[&str] = &[
        "308201ab30820152a003020102020102300a06082a8648ce3d040302301a3118301606035504030c0f68756979",
        "696e6720746573742043413020170d3030303130313030303030305a180f32313030303130313030303030305a",
        "30143112301006035504030c096c6f63616c686f73743059301306072a8648ce3d020106082a8648ce3d030107",
        "03420004f7deabbe99d54f2bfd52a842ec2b19ae1137211923d6ae87b75daa72d5dc84f9fcee6e1940e0418a30",
        "f572c1f5d4f3b24c84fd8ed9ef21498124e2c667c09cb0a3818c308189300c0603551d130101ff04023000300e",
        "0603551d0f0101ff04040302078030130603551d25040c300a06082b0601050507030130140603551d11040d30",
        "0b82096c6f63616c686f7374301f0603551d23041830168014f78a81cdc58af227f2b3651b923950c48f0fc440",
        "301d0603551d0e04160414024ccc74832b7ea6c773e6daa5f67b7e0bfbd19d300a06082a8648ce3d0403020347",
        "00304402201b03906e92dd06641261378e6c5c415419451c0ac8ad2919aef7d0aed57f52ce02205146bd27c8f5",
        "1e82749d9a6d67b9e6a3b918cb4f9394d8be35eb9e8f713237a3",
    ];
    const TEST_LEAF_KEY: &[&str] = &[
        "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b020101042039112abda07000d15c",
        "91d2f16b6882298c041b4aa784c63a070a1ef9328e2cd1a14403420004f7deabbe99d54f2bfd52a842ec2b19ae",
        "1137211923d6ae87b75daa72d5dc84f9fcee6e1940e0418a30f572c1f5d4f3b24c84fd8ed9ef21498124e2c667",
        "c09cb0",
    ];

    /// `https://` backfill requests: verified TLS, the bearer token, chunked answers, servers
    /// that close without close_notify; an unknown CA is refused.
    #[tokio::test]
    async fn https_get_round_trip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rustls::pki_types::CertificateDer::from(unhex(TEST_LEAF));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(unhex(TEST_LEAF_KEY).into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("test certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut requests) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
                    .await;
                let _ = s.flush().await;
                // Dropped without close_notify.
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(unhex(TEST_CA)))
            .unwrap();
        let url = format!("https://localhost:{port}/api/v1/timelines/public?local=true");
        let r = http_get(&url, Some("secret"), &tls_config(roots))
            .await
            .expect("an answer over TLS");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[1,2]"[..]));
        let req = requests.recv().await.unwrap();
        assert!(
            req.starts_with("GET /api/v1/timelines/public?local=true HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.contains("\r\nAuthorization: Bearer secret\r\n"),
            "{req}"
        );
        assert!(
            req.contains(&format!("\r\nHost: localhost:{port}\r\n")),
            "{req}"
        );

        let e = http_get(&url, None, &default_tls()).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut r = Recent::default();
        for i in 0..RECENT_IDS + 10 {
            assert!(r.insert(&i.to_string()));
        }
        assert!(!r.insert(&(RECENT_IDS + 9).to_string()));
        assert!(r.insert("0"), "the oldest ids are forgotten");
        assert!(r.set.len() <= RECENT_IDS);
    }
}
