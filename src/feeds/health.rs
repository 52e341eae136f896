//! Per-feed health: connected, last message, reconnects, lag. Shared between the feed tasks
//! (which write) and `GET /api/feeds` (which reads); lock-free on the hot path.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Live health of one feed.
#[derive(Debug, Default)]
pub struct FeedHealth {
    /// Feed name.
    pub name: String,
    /// Feed kind (`generic`, `mastodon`, `jetstream`, `file`, `http`, `demo`).
    pub kind: String,
    connected: AtomicBool,
    last_message_at: AtomicI64,
    reconnects: AtomicU64,
    lag_ms: AtomicI64,
    messages: AtomicU64,
}

impl FeedHealth {
    /// Mark the connection up or down (also the `huiying_feed_connected` gauge).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        crate::metrics::global()
            .feed_connected
            .with_label_values(&[&self.name])
            .set(i64::from(up));
    }

    /// Count a reconnect attempt.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global()
            .feed_reconnects
            .with_label_values(&[&self.name])
            .inc();
    }

    /// Record a message of `kind` (a metric label from the protocol's fixed set); `event_ms`
    /// is the newest event time it carried, for the lag.
    pub fn message(&self, kind: &str, event_ms: Option<i64>) {
        let now = chrono::Utc::now().timestamp_millis();
        self.last_message_at.store(now, Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = event_ms {
            self.lag_ms.store((now - t).max(0), Ordering::Relaxed);
        }
        crate::metrics::global()
            .feed_messages
            .with_label_values(&[&self.name, kind])
            .inc();
    }

    /// Whether the feed is connected now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Reconnects so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// A snapshot for the API.
    pub fn snapshot(&self) -> FeedStatus {
        let last = self.last_message_at.load(Ordering::Relaxed);
        FeedStatus {
            name: self.name.clone(),
            kind: self.kind.clone(),
            connected: self.connected(),
            last_message_at: (last > 0).then_some(last),
            reconnects: self.reconnects(),
            lag_ms: self.lag_ms.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }
}

/// What `GET /api/feeds` shows for one feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    /// Feed name.
    pub name: String,
    /// Feed kind.
    pub kind: String,
    /// Connected now.
    pub connected: bool,
    /// Wall time (ms) of the last message received.
    pub last_message_at: Option<i64>,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Wall time minus the event time of the last message (ms).
    pub lag_ms: i64,
    /// Messages received.
    pub messages: u64,
}

/// Every feed's health, by name.
#[derive(Debug, Default)]
pub struct FeedRegistry {
    feeds: RwLock<BTreeMap<String, Arc<FeedHealth>>>,
}

impl FeedRegistry {
    /// The health record of `name`, created on first use.
    pub fn register(&self, name: &str, kind: &str) -> Arc<FeedHealth> {
        let mut g = self.feeds.write().unwrap_or_else(|p| p.into_inner());
        g.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(FeedHealth {
                    name: name.to_string(),
                    kind: kind.to_string(),
                    ..FeedHealth::default()
                })
            })
            .clone()
    }

    /// Snapshots of every feed, by name.
    pub fn snapshot(&self) -> Vec<FeedStatus> {
        let g = self.feeds.read().unwrap_or_else(|p| p.into_inner());
        g.values().map(|f| f.snapshot()).collect()
    }
}
