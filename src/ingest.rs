//! The engine's input: [`Item`] (a mention, raw or parsed, a tick of event time, deletions,
//! fleet-wide window counts, operator changes) and [`Ingest`], the sending end of the bounded
//! ingest queue that the feeds, `POST /api/mentions` and the Redis sync share.

use crate::incidents::coord::FleetCount;
use crate::incidents::Control;
use crate::normalize::Mention;
use std::time::Instant;

/// One unit of input.
#[derive(Debug)]
pub enum Item {
    /// A raw JSON line (replay); parsed by the workers. `line` is 1-based.
    Raw {
        /// Line number in the file.
        line: u64,
        /// The bytes, without the newline.
        bytes: Vec<u8>,
    },
    /// An already parsed mention (websocket, HTTP, demo), with its arrival instant.
    Parsed(Box<Mention>, Instant),
    /// Live mode: event time advances to this (ms) even if no mention arrives.
    Tick(i64),
    /// Mentions deleted at the source (by id).
    Delete(Vec<String>),
    /// Distinct authors per emergency key over every instance (from the Redis sync task).
    Fleet(Vec<FleetCount>),
    /// An operator's change to incident state (console, API).
    Control(Control),
}

/// The sending end of the ingest queue, with the feed's name for metrics.
#[derive(Clone)]
pub struct Ingest {
    /// Feed name (a metric label).
    pub feed: String,
    tx: tokio::sync::mpsc::Sender<Item>,
    live: bool,
    official: bool,
    platform_verified: bool,
}

impl Ingest {
    /// An ingest handle for `feed`. In live mode a timestamp from the future is clamped to now.
    pub fn new(feed: impl Into<String>, tx: tokio::sync::mpsc::Sender<Item>, live: bool) -> Self {
        Ingest {
            feed: feed.into(),
            tx,
            live,
            official: false,
            platform_verified: true,
        }
    }

    /// Mark every mention of this feed as official (`official = true` in its `[[feeds]]`
    /// section): what an office's opt-in automatic approval trusts.
    pub fn official(mut self, official: bool) -> Self {
        self.official = official;
        self
    }

    /// Whether the input's `author.verified` is the platform's word (feeds) or only a claim
    /// (`POST /api/mentions`: cleared, so an ingest token cannot make verified authors).
    pub fn platform_verified(mut self, yes: bool) -> Self {
        self.platform_verified = yes;
        self
    }

    /// Queue one mention, waiting while the queue is full. False once the pipeline is gone.
    pub async fn send(&self, mut m: Mention) -> bool {
        m.official = self.official;
        if !self.platform_verified {
            if let Some(a) = m.author.as_mut() {
                a.verified = false;
            }
        }
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
