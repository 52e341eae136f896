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
                        official: false,
                        to: None,
                        thread: None,
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
mod tests;
