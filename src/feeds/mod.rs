//! Feeds: where mentions come from. Each feed is a tokio task that parses what it receives and
//! pushes [`Mention`]s into the one bounded ingest queue; when the queue is full the feed waits
//! (back-pressure reaches its socket), and nothing is dropped silently.

pub mod config;
pub mod demo;
pub mod health;
pub mod jetstream;
pub mod jsonl;
pub mod mastodon;
pub mod websocket;

pub use config::{FeedConfig, FeedKind};

use crate::normalize::Mention;
use crate::pipeline::Item;
use std::time::Instant;

/// Make `wss://` and `https://` work: rustls with the `ring` provider and the Mozilla roots
/// (`webpki-roots`), so no system certificate store or OpenSSL is needed. Idempotent.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The sending end of the ingest queue, with the feed's name for metrics.
#[derive(Clone)]
pub struct Ingest {
    /// Feed name (a metric label).
    pub feed: String,
    tx: tokio::sync::mpsc::Sender<Item>,
    live: bool,
}

impl Ingest {
    /// An ingest handle for `feed`. In live mode a timestamp from the future is clamped to now.
    pub fn new(feed: impl Into<String>, tx: tokio::sync::mpsc::Sender<Item>, live: bool) -> Self {
        Ingest {
            feed: feed.into(),
            tx,
            live,
        }
    }

    /// Queue one mention, waiting while the queue is full. False once the pipeline is gone.
    pub async fn send(&self, mut m: Mention) -> bool {
        if self.live {
            let now = chrono::Utc::now().timestamp_millis();
            if m.ts > now + 1_000 {
                m.ts = now;
            }
        }
        crate::metrics::global().accepted(&self.feed, 1);
        let item = Item::Parsed(Box::new(m), Instant::now());
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(item)) => {
                crate::metrics::global()
                    .backpressure
                    .with_label_values(&[&self.feed])
                    .inc();
                self.tx.send(item).await.is_ok()
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Tell the pipeline that mentions were deleted at the source.
    pub async fn delete(&self, ids: &[String]) -> bool {
        self.tx.send(Item::Delete(ids.to_vec())).await.is_ok()
    }

    /// Count a rejected input of this feed.
    pub fn rejected(&self, reason: &str) {
        crate::metrics::global().rejected(&self.feed, reason);
    }
}

/// Mentions parsed from one payload, and the rejected elements with their index.
pub type Payload = (Vec<Mention>, Vec<(usize, crate::normalize::RejectReason)>);

/// Parse a websocket text frame or HTTP body: one mention object or an array of them.
/// Returns the mentions and the reasons of the rejected elements (with their index).
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, crate::normalize::RejectReason> {
    use crate::normalize::{mention::parse_value, parse_mention, RejectReason};
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let s =
            std::str::from_utf8(bytes).map_err(|e| RejectReason::InvalidUtf8(e.valid_up_to()))?;
        let arr: Vec<serde_json::Value> =
            serde_json::from_str(s).map_err(|e| RejectReason::InvalidJson(e.to_string()))?;
        let mut ok = Vec::with_capacity(arr.len());
        let mut bad = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            let size = v.to_string().len();
            if size > crate::normalize::MAX_LINE_BYTES {
                bad.push((i, RejectReason::TooLarge(size)));
                continue;
            }
            match parse_value(v) {
                Ok(m) => ok.push(m),
                Err(e) => bad.push((i, e)),
            }
        }
        Ok((ok, bad))
    } else {
        parse_mention(bytes).map(|m| (vec![m], Vec::new()))
    }
}
