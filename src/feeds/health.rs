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
    /// Feed kind (`generic`, `mastodon`, `jetstream`, `weibo`, `file`, `http`, `demo`).
    pub kind: String,
    connected: AtomicBool,
    last_message_at: AtomicI64,
    reconnects: AtomicU64,
    lag_ms: AtomicI64,
    messages: AtomicU64,
    /// Why the feed stopped for good (`token_expired`, …), if it did.
    failed: RwLock<Option<String>>,
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

    /// Mark the feed stopped for a reason it cannot recover from by itself (a token that no
    /// longer works): disconnected, and unhealthy in `GET /api/feeds` with the reason (a short
    /// fixed word, never secret material).
    pub fn set_failed(&self, reason: &str) {
        *self.failed.write().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        self.set_connected(false);
    }

    /// Why the feed stopped for good, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        let error = self.failure();
        FeedStatus {
            name: self.name.clone(),
            kind: self.kind.clone(),
            healthy: error.is_none(),
            error,
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
    /// False once the feed stopped for good (see `error`).
    pub healthy: bool,
    /// Why it stopped (`token_expired`, `no_token`, `invalid_config`).
    pub error: Option<String>,
    /// Connected now (a polled feed: its last request was answered).
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
