//! Bluesky Jetstream (`wss://HOST/subscribe`): the firehose as JSON, one event per text frame.
//!
//! The connection is [`websocket::run`]'s; this module is the [`Protocol`]: the URL (wanted
//! collections, and a cursor: the newest `time_us` delivered minus a few seconds of rewind, so
//! nothing is missed across a reconnect or a restart), the mapping of events to mentions, and
//! the resume state. The cursor is persisted at most once a second (or every 1,000 frames) and
//! when the feed stops; the events delivered within the rewind window are remembered (and, at
//! stop, persisted) so that the rewound replay does not deliver them a second time.
//!
//! Compressed streams (`compress=true`: zstd with Jetstream's own dictionary) are not
//! supported: their frames are binary, counted as `binary` and skipped.

use super::health::FeedHealth;
use super::websocket::{self, Frame, Protocol};
use super::FeedConfig;
use super::Ingest;
use crate::normalize::{Author, Mention};
use crate::store::Store;
use ahash::AHashSet;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Posts.
pub const POST: &str = "app.bsky.feed.post";
/// Reposts (their `subject.uri` is the reposted post).
pub const REPOST: &str = "app.bsky.feed.repost";
/// Rewind before the stored cursor when resuming, seconds.
pub const DEFAULT_REWIND_SECS: u64 = 5;
/// The `source` of every Jetstream mention.
pub const SOURCE: &str = "bluesky";

/// Persist the cursor after this much wall time…
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// …or after this many frames, whichever comes first.
const PERSIST_FRAMES: u32 = 1_000;
/// Most events remembered for replay suppression (the rewind window at firehose rates).
const RECENT_CAP: usize = 100_000;
/// Version byte of the persisted resume state.
const STATE_V1: u8 = 1;

/// The Jetstream URL: `base` with one `wantedCollections` per collection and the cursor.
pub fn build_url(base: &str, collections: &[String], cursor: Option<i64>) -> String {
    let mut url = base.to_string();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    if base.ends_with('?') || base.ends_with('&') {
        sep = '\0';
    }
    let mut push = |k: &str, v: &str| {
        if sep != '\0' {
            url.push(sep);
        }
        sep = '&';
        url.push_str(k);
        url.push('=');
        url.push_str(&query_escape(v));
    };
    for c in collections {
        push("wantedCollections", c);
    }
    if let Some(c) = cursor {
        push("cursor", &c.to_string());
    }
    url
}

/// Percent-encode everything but unreserved characters and `*` (collection prefixes).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'*') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Events delivered recently (by key), oldest first, for replay suppression.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<(i64, u64)>,
    keys: AHashSet<u64>,
}

impl Recent {
    fn contains(&self, key: u64) -> bool {
        self.keys.contains(&key)
    }

    fn insert(&mut self, time_us: i64, key: u64) {
        if self.keys.insert(key) {
            self.order.push_back((time_us, key));
        }
    }

    /// Forget events older than `oldest_us`, and the oldest beyond the cap.
    fn evict(&mut self, oldest_us: i64) {
        while let Some(&(t, k)) = self.order.front() {
            if t >= oldest_us && self.order.len() <= RECENT_CAP {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&k);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.order.len() * 16);
        out.push(STATE_V1);
        for (t, k) in &self.order {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&k.to_le_bytes());
        }
        out
    }

    /// Decode persisted state; anything unreadable is ignored (the engine still drops
    /// duplicates it has seen).
    fn decode(bytes: &[u8]) -> Recent {
        let mut r = Recent::default();
        let Some((&STATE_V1, rest)) = bytes.split_first() else {
            return r;
        };
        if rest.len() % 16 != 0 {
            return r;
        }
        for c in rest.chunks_exact(16) {
            let t = i64::from_le_bytes(c[..8].try_into().unwrap_or_default());
            let k = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
            r.insert(t, k);
        }
        r
    }
}

/// What must survive the protocol (which the connection loop owns): the cursor and the recent
/// events, persisted when the feed stops.
#[derive(Debug, Default)]
struct Progress {
    /// Newest `time_us` delivered (or the stored one at start).
    cursor: Option<i64>,
    /// The cursor last written to the store.
    persisted: Option<i64>,
    recent: Recent,
}

/// The Jetstream protocol.
pub struct Jetstream {
    feed: String,
    base: String,
    collections: Vec<String>,
    rewind_us: i64,
    store: Arc<dyn Store>,
    progress: Arc<Mutex<Progress>>,
    /// `time_us` and event key of the frame being delivered (committed in `delivered`).
    pending: Option<(i64, Option<u64>)>,
    frames_unpersisted: u32,
    last_persist: Instant,
    replayed: u64,
}

impl Jetstream {
    /// A protocol for `cfg` that persists through `store` (nothing read from it yet: see
    /// [`Jetstream::resume`]).
    pub fn new(cfg: &FeedConfig, store: Arc<dyn Store>) -> Self {
        let mut collections: Vec<String> = Vec::new();
        for c in &cfg.collections {
            let c = c.trim();
            if !c.is_empty() && !collections.iter().any(|x| x == c) {
                collections.push(c.to_string());
            }
        }
        if collections.is_empty() {
            collections.push(POST.to_string());
        }
        let rewind = cfg.rewind_secs.unwrap_or(DEFAULT_REWIND_SECS);
        Jetstream {
            feed: cfg.name.clone(),
            base: cfg.url.clone(),
            collections,
            rewind_us: i64::try_from(rewind.saturating_mul(1_000_000)).unwrap_or(i64::MAX / 4),
            store,
            progress: Arc::default(),
            pending: None,
            frames_unpersisted: 0,
            last_persist: Instant::now(),
            replayed: 0,
        }
    }

    /// Resume from a stored cursor and state.
    pub fn resume(&mut self, cursor: Option<i64>, state: Option<&[u8]>) {
        let mut p = self.lock();
        p.cursor = cursor;
        p.persisted = cursor;
        p.recent = state.map(Recent::decode).unwrap_or_default();
        if let Some(c) = cursor {
            let keep = self.keep_us();
            p.recent.evict(c.saturating_sub(keep));
        }
    }

    /// The newest `time_us` delivered (or resumed from).
    pub fn cursor(&self) -> Option<i64> {
        self.lock().cursor
    }

    /// Events skipped because they had already been delivered (rewound replays).
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// The resume state to persist at stop.
    pub fn state(&self) -> Vec<u8> {
        self.lock().recent.encode()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long delivered events are remembered: twice the rewind, at least a second.
    fn keep_us(&self) -> i64 {
        self.rewind_us.saturating_mul(2).max(1_000_000)
    }

    fn commit(&mut self, v: &Value, time_us: Option<i64>, event_ms: Option<i64>) -> Frame {
        // Even a commit we cannot use moves the cursor past it once delivered.
        self.pending = time_us.map(|t| (t, None));
        let malformed = || Frame {
            kind: "malformed",
            rejects: vec!["bad_field"],
            event_ms,
            ..Frame::default()
        };
        let c = v.get("commit");
        let (Some(did), Some(time_us), Some(op), Some(collection), Some(rkey)) = (
            s(v.get("did")),
            time_us,
            s(c.and_then(|c| c.get("operation"))),
            s(c.and_then(|c| c.get("collection"))),
            s(c.and_then(|c| c.get("rkey"))),
        ) else {
            return malformed();
        };
        let c = c.unwrap_or(&Value::Null);
        let uri = format!("at://{did}/{collection}/{rkey}");
        // The same event from a rewound replay (or another instance: `rev` does not depend on
        // it) has the same key.
        let key = {
            let rev = s(c.get("rev"))
                .map(str::to_string)
                .unwrap_or_else(|| time_us.to_string());
            crate::stable_hash(format!("{op}\0{uri}\0{rev}").as_bytes())
        };
        let kind = if op == "delete" { "delete" } else { "commit" };
        if self.lock().recent.contains(key) {
            self.replayed += 1;
            return Frame {
                kind,
                event_ms,
                ..Frame::default()
            };
        }
        let mapped = collection == POST || collection == REPOST;
        let frame = match op {
            "delete" => Frame {
                kind,
                deleted: if mapped { vec![uri] } else { Vec::new() },
                event_ms,
                ..Frame::default()
            },
            "create" | "update" if !mapped => Frame {
                kind,
                event_ms,
                ..Frame::default()
            },
            "create" | "update" => {
                let Some(record) = c.get("record").filter(|r| r.is_object()) else {
                    return malformed();
                };
                let ts = s(record.get("createdAt"))
                    .and_then(crate::normalize::mention::parse_time)
                    .unwrap_or(time_us / 1000);
                let lang = record
                    .get("langs")
                    .and_then(Value::as_array)
                    .and_then(|l| s(l.first()))
                    .map(str::to_string);
                let (text, reply_to, repost_of) = if collection == POST {
                    let Some(text) = record.get("text").and_then(Value::as_str) else {
                        return malformed();
                    };
                    let parent = record
                        .get("reply")
                        .and_then(|r| r.get("parent"))
                        .and_then(|p| s(p.get("uri")));
                    (text.to_string(), parent.map(str::to_string), None)
                } else {
                    let Some(subject) = s(record.get("subject").and_then(|x| x.get("uri"))) else {
                        return malformed();
                    };
                    (String::new(), None, Some(subject.to_string()))
                };
                Frame {
                    kind,
                    mentions: vec![Mention {
                        id: uri,
                        ts,
                        text,
                        author: Some(Author {
                            id: did.to_string(),
                            ..Author::default()
                        }),
                        repost_of,
                        reply_to,
                        region: None,
                        lang,
                        source: Some(SOURCE.to_string()),
                    }],
                    event_ms,
                    ..Frame::default()
                }
            }
            _ => return malformed(),
        };
        self.pending = Some((time_us, Some(key)));
        frame
    }

    /// Write the cursor if it moved since the last write.
    async fn persist_cursor(&mut self) {
        self.frames_unpersisted = 0;
        self.last_persist = Instant::now();
        let (cursor, persisted) = {
            let p = self.lock();
            (p.cursor, p.persisted)
        };
        let Some(c) = cursor.filter(|c| Some(*c) != persisted) else {
            return;
        };
        if put_cursor(self.store.clone(), self.feed.clone(), c).await {
            self.lock().persisted = Some(c);
        }
    }
}

/// A non-empty string value.
fn s(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

async fn put_cursor(store: Arc<dyn Store>, feed: String, cursor: i64) -> bool {
    match tokio::task::spawn_blocking(move || store.put_cursor(&feed, cursor)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Cannot store the Jetstream cursor.");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot store the Jetstream cursor.");
            false
        }
    }
}

impl Protocol for Jetstream {
    fn url(&mut self) -> String {
        let cursor = self
            .cursor()
            .map(|c| c.saturating_sub(self.rewind_us).max(0));
        let url = build_url(&self.base, &self.collections, cursor);
        tracing::info!(feed = %self.feed, cursor, "Connecting to Jetstream.");
        url
    }

    fn on_text(&mut self, text: &str) -> Frame {
        self.pending = None;
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Frame {
                    kind: "malformed",
                    rejects: vec!["invalid_json"],
                    ..Frame::default()
                }
            }
        };
        let time_us = v.get("time_us").and_then(Value::as_i64).filter(|t| *t > 0);
        let event_ms = time_us.map(|t| t / 1000);
        let frame = match v.get("kind").and_then(Value::as_str) {
            Some("commit") => return self.commit(&v, time_us, event_ms),
            Some("identity") => Frame::skipped("identity"),
            Some("account") => Frame::skipped("account"),
            Some(_) => Frame::skipped("unknown"),
            None => Frame {
                kind: "malformed",
                rejects: vec!["bad_field"],
                ..Frame::default()
            },
        };
        self.pending = time_us.map(|t| (t, None));
        Frame { event_ms, ..frame }
    }

    async fn delivered(&mut self, _frame: &Frame) {
        if let Some((t, key)) = self.pending.take() {
            let keep = self.keep_us();
            let mut p = self.lock();
            let c = p.cursor.map_or(t, |c| c.max(t));
            p.cursor = Some(c);
            if let Some(k) = key {
                p.recent.insert(t, k);
            }
            p.recent.evict(c.saturating_sub(keep));
        }
        self.frames_unpersisted += 1;
        if self.frames_unpersisted >= PERSIST_FRAMES || self.last_persist.elapsed() >= PERSIST_EVERY
        {
            self.persist_cursor().await;
        }
    }
}

/// Run a Jetstream feed until `cancel` fires.
pub async fn run(
    cfg: FeedConfig,
    store: Arc<dyn Store>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let feed = cfg.name.clone();
    if cfg.url.contains("compress=true") {
        tracing::warn!(feed = %feed, "Jetstream compression is not supported: its frames are binary and will be skipped; remove compress=true.");
    }
    let (st, name) = (store.clone(), feed.clone());
    let resume = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((st.get_cursor(&name)?, st.get_feed_state(&name)?))
    })
    .await;
    let (cursor, state) = match resume {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot read the Jetstream cursor; starting live.");
            (None, None)
        }
        Err(e) => {
            tracing::warn!(feed = %feed, error = %e, "Cannot read the Jetstream cursor; starting live.");
            (None, None)
        }
    };
    let mut proto = Jetstream::new(&cfg, store.clone());
    proto.resume(cursor, state.as_deref());
    let progress = proto.progress.clone();
    websocket::run(proto, None, ingest, health, cfg.ws_options(), cancel).await;

    // Stopped: persist where we are, and what was delivered just before it.
    let (cursor, persisted, state) = {
        let p = progress.lock().unwrap_or_else(|p| p.into_inner());
        (p.cursor, p.persisted, p.recent.encode())
    };
    if let Some(c) = cursor.filter(|c| Some(*c) != persisted) {
        put_cursor(store.clone(), feed.clone(), c).await;
    }
    if cursor.is_some() {
        let name = feed.clone();
        match tokio::task::spawn_blocking(move || store.put_feed_state(&name, &state)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(feed = %feed, error = %e, "Cannot store the Jetstream resume state.")
            }
            Err(e) => {
                tracing::warn!(feed = %feed, error = %e, "Cannot store the Jetstream resume state.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    const DID: &str = "did:plc:abc123";

    fn proto(rewind: u64) -> Jetstream {
        let cfg = FeedConfig {
            name: "js".into(),
            url: "ws://h/subscribe".into(),
            rewind_secs: Some(rewind),
            ..FeedConfig::default()
        };
        Jetstream::new(&cfg, Arc::new(MemoryStore::default()))
    }

    fn commit(op: &str, rkey: &str, time_us: i64, record: Option<Value>) -> String {
        let mut c = json!({"rev": format!("rev{time_us}"), "operation": op,
            "collection": POST, "rkey": rkey, "cid": "bafy"});
        if let Some(r) = record {
            c["record"] = r;
        }
        json!({"did": DID, "time_us": time_us, "kind": "commit", "commit": c}).to_string()
    }

    fn post(text: &str) -> Value {
        json!({"$type": POST, "createdAt": "2024-09-09T19:46:02.102Z", "langs": ["zh", "en"],
            "text": text})
    }

    /// Deliver one frame as the connection loop does.
    async fn feed(p: &mut Jetstream, text: &str) -> Frame {
        let f = p.on_text(text);
        p.delivered(&f).await;
        f
    }

    #[tokio::test]
    async fn frames_are_mapped() {
        let t = 1_725_911_162_329_308_i64;
        let uri = format!("at://{DID}/{POST}/3l3qo2vutsw2b");
        let mut reply = post("回复");
        reply["reply"] = json!({"parent": {"cid": "c1", "uri": "at://did:plc:p/app.bsky.feed.post/parent"},
            "root": {"cid": "c0", "uri": "at://did:plc:r/app.bsky.feed.post/root"}});
        let mut no_time = post("x");
        no_time["createdAt"] = json!("yesterday");
        let repost = json!({"did": DID, "time_us": t, "kind": "commit", "commit": {
            "rev": "r", "operation": "create", "collection": REPOST, "rkey": "rp",
            "record": {"$type": REPOST, "createdAt": "2024-09-09T19:46:02.102Z",
                "subject": {"cid": "c", "uri": "at://did:plc:o/app.bsky.feed.post/orig"}}}})
        .to_string();
        // (frame, kind, rejects, mention id, text, reply_to, repost_of, ts, deleted)
        type Row<'a> = (
            String,
            &'a str,
            &'a [&'a str],
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            i64,
            &'a [&'a str],
        );
        let deleted_uri = [uri.as_str()];
        let rows: Vec<Row> = vec![
            (
                commit("create", "3l3qo2vutsw2b", t, Some(post("海淀区暴雨"))),
                "commit",
                &[],
                Some(uri.as_str()),
                "海淀区暴雨",
                None,
                None,
                1_725_911_162_102,
                &[],
            ),
            (
                commit("update", "3l3qo2vutsw2b", t + 1, Some(post("改了"))),
                "commit",
                &[],
                Some(uri.as_str()),
                "改了",
                None,
                None,
                1_725_911_162_102,
                &[],
            ),
            (
                commit("create", "r1", t + 2, Some(reply)),
                "commit",
                &[],
                Some("at://did:plc:abc123/app.bsky.feed.post/r1"),
                "回复",
                Some("at://did:plc:p/app.bsky.feed.post/parent"),
                None,
                1_725_911_162_102,
                &[],
            ),
            (
                commit("create", "nt", t + 3, Some(no_time)),
                "commit",
                &[],
                Some("at://did:plc:abc123/app.bsky.feed.post/nt"),
                "x",
                None,
                None,
                (t + 3) / 1000,
                &[],
            ),
            (
                repost,
                "commit",
                &[],
                Some("at://did:plc:abc123/app.bsky.feed.repost/rp"),
                "",
                None,
                Some("at://did:plc:o/app.bsky.feed.post/orig"),
                1_725_911_162_102,
                &[],
            ),
            (
                commit("delete", "3l3qo2vutsw2b", t + 4, None),
                "delete",
                &[],
                None,
                "",
                None,
                None,
                0,
                &deleted_uri,
            ),
            (
                json!({"did": DID, "time_us": t, "kind": "identity",
                    "identity": {"did": DID, "handle": "a.bsky.social", "seq": 1}})
                .to_string(),
                "identity",
                &[],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                json!({"did": DID, "time_us": t, "kind": "account",
                    "account": {"active": true, "did": DID, "seq": 2}})
                .to_string(),
                "account",
                &[],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                json!({"did": DID, "time_us": t, "kind": "labels"}).to_string(),
                "unknown",
                &[],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                "not json".into(),
                "malformed",
                &["invalid_json"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                "[1,2]".into(),
                "malformed",
                &["invalid_json"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                commit("create", "nr", t, None),
                "malformed",
                &["bad_field"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                commit(
                    "create",
                    "nx",
                    t,
                    Some(json!({"createdAt": "2024-09-09T19:46:02Z"})),
                ),
                "malformed",
                &["bad_field"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                commit("explode", "ex", t, Some(post("x"))),
                "malformed",
                &["bad_field"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
            (
                json!({"time_us": t, "kind": "commit", "commit": {"operation": "create",
                    "collection": POST, "rkey": "k", "record": post("x")}})
                .to_string(),
                "malformed",
                &["bad_field"],
                None,
                "",
                None,
                None,
                0,
                &[],
            ),
        ];
        for (text, kind, rejects, id, body, reply_to, repost_of, ts, deleted) in rows {
            let f = feed(&mut proto(5), &text).await;
            assert_eq!(f.kind, kind, "{text}");
            assert_eq!(f.rejects, rejects, "{text}");
            assert_eq!(f.deleted, deleted, "{text}");
            if kind != "malformed" || text.contains("time_us") {
                assert_eq!(f.event_ms, Some(t / 1000), "{text}");
            }
            match id {
                None => assert!(f.mentions.is_empty(), "{text}: {:?}", f.mentions),
                Some(id) => {
                    assert_eq!(f.mentions.len(), 1, "{text}");
                    let m = &f.mentions[0];
                    assert_eq!(m.id, id, "{text}");
                    assert_eq!(m.text, body, "{text}");
                    assert_eq!(m.reply_to.as_deref(), reply_to, "{text}");
                    assert_eq!(m.repost_of.as_deref(), repost_of, "{text}");
                    assert_eq!(m.ts, ts, "{text}");
                    assert_eq!(m.author.as_ref().map(|a| a.id.as_str()), Some(DID));
                    let lang = repost_of.is_none().then_some("zh");
                    assert_eq!(m.lang.as_deref(), lang, "{text}");
                    assert_eq!(m.source.as_deref(), Some(SOURCE));
                }
            }
        }
    }

    #[tokio::test]
    async fn urls_with_and_without_cursor() {
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            build_url("ws://h/subscribe", &cols(&[POST]), None),
            "ws://h/subscribe?wantedCollections=app.bsky.feed.post"
        );
        assert_eq!(
            build_url("wss://h/subscribe", &cols(&[POST, REPOST]), Some(17)),
            "wss://h/subscribe?wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.feed.repost&cursor=17"
        );
        assert_eq!(
            build_url(
                "ws://h/subscribe?maxMessageSizeBytes=9",
                &cols(&["a b"]),
                None
            ),
            "ws://h/subscribe?maxMessageSizeBytes=9&wantedCollections=a%20b"
        );

        // The protocol: default collection, no cursor until one is known, then the newest
        // delivered time minus the rewind.
        let mut p = proto(5);
        assert_eq!(
            p.url(),
            "ws://h/subscribe?wantedCollections=app.bsky.feed.post"
        );
        p.resume(Some(100_000_000), None);
        assert!(p.url().ends_with("&cursor=95000000"), "{}", p.url());
        feed(&mut p, &commit("create", "a", 200_000_000, Some(post("x")))).await;
        assert!(p.url().ends_with("&cursor=195000000"), "{}", p.url());
        // An older event does not move the cursor back; an event-less frame does not move it.
        feed(&mut p, &commit("create", "b", 150_000_000, Some(post("x")))).await;
        feed(&mut p, "garbage").await;
        assert_eq!(p.cursor(), Some(200_000_000));
        // An unusable commit is still behind us once delivered.
        feed(&mut p, &commit("create", "c", 300_000_000, None)).await;
        assert_eq!(p.cursor(), Some(300_000_000));
    }

    #[tokio::test]
    async fn replays_are_suppressed_across_reconnects_and_restarts() {
        let mut a = proto(5);
        let frames: Vec<String> = (1..=5)
            .map(|i| commit("create", &format!("k{i}"), i * 1_000_000, Some(post("x"))))
            .collect();
        for f in &frames {
            assert_eq!(feed(&mut a, f).await.mentions.len(), 1);
        }
        // Reconnect: the rewound replay delivers nothing twice.
        for f in &frames {
            assert!(feed(&mut a, f).await.mentions.is_empty());
        }
        assert_eq!(a.replayed(), 5);
        // A delete of a delivered post is another event.
        assert_eq!(
            feed(&mut a, &commit("delete", "k5", 6_000_000, None))
                .await
                .deleted
                .len(),
            1
        );

        // Restart from the persisted cursor and state.
        let mut b = proto(5);
        b.resume(a.cursor(), Some(&a.state()));
        assert!(b.url().ends_with("&cursor=1000000"), "{}", b.url());
        for f in &frames[1..] {
            assert!(feed(&mut b, f).await.mentions.is_empty(), "{f}");
        }
        let new = commit("create", "k7", 7_000_000, Some(post("x")));
        assert_eq!(feed(&mut b, &new).await.mentions.len(), 1);
        // Garbage state is ignored.
        let mut c = proto(5);
        c.resume(Some(1), Some(b"\x09junk"));
        assert_eq!(feed(&mut c, &frames[0]).await.mentions.len(), 1);
    }

    #[tokio::test]
    async fn old_events_are_forgotten() {
        let mut p = proto(1);
        feed(&mut p, &commit("create", "old", 1_000_000, Some(post("x")))).await;
        feed(
            &mut p,
            &commit("create", "new", 10_000_000, Some(post("x"))),
        )
        .await;
        assert_eq!(p.lock().recent.order.len(), 1);
    }
}
