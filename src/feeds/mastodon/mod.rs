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
//! **Across restarts.** The last ids (per stream, the newest on any stream, the last
//! notification) are kept in the [`Store`] as the feed's state (JSON, like the Jetstream
//! cursor): written at most once a second while frames arrive, and on stop. On start a stored
//! state is read back and the first connection backfills from it too, so statuses posted while
//! huiying was down are fetched (a kill -9 loses at most the last second of progress: those
//! statuses are fetched again, and the engine drops the repeated ids).
//!
//! Files: `stream.rs` (the configured streams: subscribe messages, matching REST timelines),
//! `status.rs` (the Mastodon JSON read and statuses as [`Mention`]s), `backfill.rs` (the REST
//! backfill over `reqwest`: `since_id`, paging with `max_id`), `ids.rs` (id order, the ids
//! recently delivered), `url.rs` (origins, hosts, percent-encoding).

mod backfill;
mod ids;
mod status;
mod stream;
mod url;

use self::ids::{bump, Recent};
use self::status::{full_acct, json_reject, Conversation, Notification, Reject, Status};
use self::stream::Stream;
use self::url::{host_name, split_origin, strip_default_port};
use super::health::FeedHealth;
use super::save_state;
use super::websocket::{self, Frame, Protocol};
use super::FeedConfig;
use super::Ingest;
use crate::normalize::Mention;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Write the feed's state at most this often while frames arrive.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// Streams subscribed to when none are configured.
pub const DEFAULT_STREAMS: [&str; 1] = ["public:local"];
/// `source` of mentions from the streams.
const SOURCE: &str = "mastodon";
/// `source` of mentions of our account (notifications of type `mention`).
const SOURCE_NOTIFICATION: &str = "mastodon:notification";
/// `source` of direct messages to our account (the `direct` stream's conversations).
const SOURCE_DIRECT: &str = "mastodon:direct";

/// Run a Mastodon feed until `cancel` fires, resuming from (and keeping) its last ids in
/// `store`.
pub async fn run(
    cfg: FeedConfig,
    token: Option<String>,
    store: Arc<dyn Store>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let mut proto = match Mastodon::new(&cfg, token.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(feed = %cfg.name, error = %e, "Invalid Mastodon feed; feed stopped.");
            return;
        }
    };
    let feed = cfg.name.clone();
    if let Some(state) = super::load_state(&store, &feed).await {
        proto.resume(&state);
    }
    proto.store = Some(store.clone());
    let latest = Arc::clone(&proto.latest);
    websocket::run(proto, token, ingest, health, cfg.ws_options(), cancel).await;
    // Stopped: keep where we are.
    let last = latest.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(state) = last {
        save_state(store, feed, state).await;
    }
}

/// The ids a restart resumes from (the feed's state in the store, JSON).
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Resume {
    #[serde(default)]
    last_seen: HashMap<String, String>,
    #[serde(default)]
    newest: Option<String>,
    #[serde(default)]
    last_notification: Option<String>,
}

/// The Mastodon streaming protocol.
pub struct Mastodon {
    feed: String,
    url: String,
    token: Option<String>,
    /// Instance host (with a non-default port) in mention ids.
    host: String,
    /// Instance host name (no port) completing local account handles.
    domain: String,
    /// The feed's own account: the handle as configured (set as `to` on mentions addressed
    /// to it) and its `user@domain` for comparing.
    account: Option<(String, String)>,
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
    /// The REST client of the backfill.
    client: reqwest::Client,
    /// Where the last ids are kept across restarts (none in unit tests).
    store: Option<Arc<dyn Store>>,
    /// Last ids were restored at start: the first connection backfills too.
    resumed: bool,
    /// The state after the last delivered frame or backfill, not yet written on stop.
    latest: Arc<Mutex<Option<Vec<u8>>>>,
    /// The state last written to the store.
    persisted: Option<Vec<u8>>,
    /// When it was written.
    last_persist: Instant,
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
        let account = cfg
            .account
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| (a.to_string(), full_acct(a, &domain)));
        if account.is_none() && streams.iter().any(Stream::is_notifications) {
            tracing::warn!(feed = %cfg.name, "Notifications or direct messages without `account`: their mentions are not marked as addressed to it.");
        }
        let client = super::http::client_builder()
            .build()
            .map_err(|e| anyhow::anyhow!("feed {}: HTTP client: {e}", cfg.name))?;
        Ok(Mastodon {
            feed: cfg.name.clone(),
            url: cfg.url.clone(),
            token,
            host,
            domain,
            account,
            streams,
            rest_base: rest,
            last_seen: HashMap::new(),
            newest: None,
            last_notification: None,
            recent: Recent::default(),
            client,
            store: None,
            resumed: false,
            latest: Arc::new(Mutex::new(None)),
            persisted: None,
            last_persist: Instant::now(),
        })
    }

    /// The last ids, encoded for the store.
    fn state(&self) -> Vec<u8> {
        let r = Resume {
            last_seen: self.last_seen.clone(),
            newest: self.newest.clone(),
            last_notification: self.last_notification.clone(),
        };
        serde_json::to_vec(&r).unwrap_or_default()
    }

    /// Resume from a stored state: the first connection backfills from these ids. Ids of
    /// streams no longer configured are dropped; an unreadable state is ignored (logged).
    pub fn resume(&mut self, state: &[u8]) {
        let r: Resume = match serde_json::from_slice(state) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(feed = %self.feed, error = %e, "Unreadable Mastodon feed state; no backfill at start.");
                return;
            }
        };
        let keys: Vec<String> = self.streams.iter().map(Stream::key).collect();
        self.last_seen = r
            .last_seen
            .into_iter()
            .filter(|(k, _)| keys.contains(k))
            .collect();
        self.newest = r.newest;
        self.last_notification = r.last_notification;
        self.resumed = self.newest.is_some() || self.last_notification.is_some();
        self.persisted = Some(self.state());
        tracing::info!(feed = %self.feed, newest = ?self.newest, "Mastodon feed resumes from its stored last ids.");
    }

    /// Note the current state for the write on stop; write it if a second passed since the
    /// last write.
    async fn keep(&mut self) {
        let state = self.state();
        if self.persisted.as_ref() == Some(&state) {
            return;
        }
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
        let Some(store) = self.store.clone() else {
            return;
        };
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.last_persist = Instant::now();
            if save_state(store, self.feed.clone(), state.clone()).await {
                self.persisted = Some(state);
                *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
    }

    /// Whether the feed's own account wrote `s`.
    fn is_ours(&self, s: &Status) -> bool {
        self.account
            .as_ref()
            .is_some_and(|(_, key)| full_acct(&s.account.acct, &self.domain) == *key)
    }

    fn mention_id(&self, status_id: &str) -> String {
        format!("mastodon:{}:{status_id}", self.host)
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
}

impl Protocol for Mastodon {
    fn url(&mut self) -> String {
        self.url.clone()
    }

    fn subscriptions(&self) -> Vec<String> {
        self.streams.iter().map(Stream::subscribe).collect()
    }

    async fn catch_up(&mut self, reconnect: bool) -> Vec<Mention> {
        // After a restart the first connection backfills from the stored ids too.
        let resumed = std::mem::take(&mut self.resumed);
        self.anchor_notifications().await;
        if reconnect || resumed {
            let missed = self.backfill().await;
            // Written with the next delivered frame or on stop, after these were queued.
            let state = self.state();
            if self.persisted.as_ref() != Some(&state) {
                *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
            }
            missed
        } else {
            Vec::new()
        }
    }

    async fn delivered(&mut self, _frame: &Frame) {
        self.keep().await;
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
            "conversation" => "conversation",
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
            "conversation" => {
                let c: Conversation = match serde_json::from_str(payload) {
                    Ok(c) => c,
                    Err(e) => return self.malformed(json_reject(e)),
                };
                // Our own message (an answer we sent) updates the conversation too.
                match c.last_status {
                    Some(s) if !self.is_ours(&s) => match self.mention(&s, false, SOURCE_DIRECT) {
                        Ok(m) => self.status_frame(kind, m),
                        Err(r) => self.malformed(r),
                    },
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

#[cfg(test)]
pub(super) mod tests {
    use super::ids::id_cmp;
    use super::url::url_encode;
    use super::*;
    use serde_json::json;
    use std::cmp::Ordering;

    pub(super) fn proto(streams: &[&str]) -> Mastodon {
        let cfg = FeedConfig {
            name: "m".into(),
            kind: crate::feeds::FeedKind::Mastodon,
            url: "wss://social.example/api/v1/streaming".into(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            ..FeedConfig::default()
        };
        Mastodon::new(&cfg, Some("secret".into())).expect("valid config")
    }

    pub(super) fn status(id: &str, acct: &str, content: &str) -> Value {
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

    /// With `account` set: mention notifications, direct messages (the `direct` stream's
    /// conversations) and statuses naming the account carry `to`; the account's own messages
    /// are not intake (its own direct answer is skipped, its own statuses carry no `to`).
    #[test]
    fn addressed_mentions_carry_to() {
        let cfg = FeedConfig {
            name: "m".into(),
            url: "wss://social.example/api/v1/streaming".into(),
            streams: vec![
                "public:local".into(),
                "user:notification".into(),
                "direct".into(),
            ],
            account: Some("wenzheng@Social.Example".into()),
            ..FeedConfig::default()
        };
        let mut p = Mastodon::new(&cfg, None).expect("valid config");
        let to = Some("wenzheng@Social.Example");
        let conv = |id: &str, last: Value| {
            json!({"stream": ["direct"], "event": "conversation",
                   "payload": json!({"id": id, "unread": true, "accounts": [], "last_status": last}).to_string()})
            .to_string()
        };
        let mut dm = status("300", "citizen", "<p>@wenzheng 小区停水三天了</p>");
        dm["visibility"] = json!("direct");
        let mut answer = status("301", "wenzheng", "<p>@citizen 已收到，编号 1</p>");
        answer["visibility"] = json!("direct");
        let mut naming = status("302", "bob@other.example", "<p>@wenzheng 路灯坏了</p>");
        naming["mentions"] = json!([{"id": "9", "username": "wenzheng", "acct": "wenzheng",
                                     "url": "https://social.example/@wenzheng"}]);
        let mut own = status("303", "wenzheng", "<p>@bob 收到</p>");
        own["mentions"] = json!([{"acct": "bob@other.example"}]);
        let notif = json!({"id": "12", "type": "mention", "status": status("304", "dan", "<p>@wenzheng 求助</p>")});
        // (frame, mentions, their source, their `to`)
        let cases: Vec<(String, usize, Option<&str>, Option<&str>)> = vec![
            (conv("1", dm.clone()), 1, Some(SOURCE_DIRECT), to),
            // The same message again (read marks update the conversation): not sent twice.
            (conv("1", dm), 0, None, None),
            (conv("1", answer), 0, None, None),
            (conv("2", Value::Null), 0, None, None),
            (frame("update", &naming), 1, Some(SOURCE), to),
            (frame("update", &own), 1, Some(SOURCE), None),
            (
                frame("update", &status("305", "erin", "<p>暴雨</p>")),
                1,
                Some(SOURCE),
                None,
            ),
            (
                frame("notification", &notif),
                1,
                Some(SOURCE_NOTIFICATION),
                to,
            ),
        ];
        for (text, n, source, want_to) in cases {
            let f = p.on_text(&text);
            assert_eq!(f.mentions.len(), n, "{text}");
            if let Some(m) = f.mentions.first() {
                assert_eq!(m.source.as_deref(), source, "{text}");
                assert_eq!(m.to.as_deref(), want_to, "{text}");
            }
        }
        let f = p.on_text(&json!({"event": "conversation", "payload": "{oops"}).to_string());
        assert_eq!(
            (f.kind, f.rejects.as_slice()),
            ("malformed", &["invalid_json"][..])
        );
        // Without `account` nothing is marked.
        let f = proto(&["user:notification"]).on_text(&frame(
            "notification",
            &json!({"id": "13", "type": "mention", "status": status("306", "fay", "<p>x</p>")}),
        ));
        assert_eq!(f.mentions[0].to, None);
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
                s("/api/v1/notifications", "types%5B%5D=mention"),
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
}
