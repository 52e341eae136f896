//! The websocket connection loop every socket feed shares: connect (with a bearer token if
//! configured), send the protocol's subscriptions, let it catch up on what was missed, read
//! text frames, keep the connection alive with pings, declare it dead after a read timeout, and
//! reconnect forever with capped exponential backoff and full jitter. One bad frame (malformed,
//! binary, unknown) is counted by reason and skipped; it never kills the connection. A frame
//! over `max_frame_bytes` is refused by the socket layer before it is buffered: counted as
//! `oversize`, it costs a reconnect.
//!
//! What a frame means is the [`Protocol`]'s business: [`Generic`] here, Mastodon and Jetstream
//! in their own modules.

use super::health::FeedHealth;
use super::{parse_payload_str, Ingest};
use crate::normalize::Mention;
use futures::{SinkExt, StreamExt};
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tokio_util::sync::CancellationToken;

/// Connection behaviour.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// First backoff delay.
    pub backoff_min: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// Ping interval.
    pub ping_every: Duration,
    /// No frame (data or pong) for this long: the connection is dead.
    pub read_timeout: Duration,
    /// Largest frame or message the socket accepts; a larger one is counted as `oversize` and
    /// closes the connection (it is never buffered).
    pub max_frame_bytes: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            ping_every: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            max_frame_bytes: 1 << 20,
        }
    }
}

/// Full jitter: a uniform delay in `[0, min(max, base·2^attempt)]`.
pub fn backoff(attempt: u32, opts: &WsOptions) -> Duration {
    let cap = opts
        .backoff_min
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(opts.backoff_max);
    let ms = rand::rng().random_range(0..=cap.as_millis().max(1) as u64);
    Duration::from_millis(ms)
}

/// What one text frame contained.
#[derive(Debug, Default)]
pub struct Frame {
    /// Message kind for `huiying_feed_messages_total{kind}` (a small fixed set per protocol).
    pub kind: &'static str,
    /// Mentions to ingest.
    pub mentions: Vec<Mention>,
    /// Rejected parts, by reason (metric labels).
    pub rejects: Vec<&'static str>,
    /// Ids of mentions deleted at the source.
    pub deleted: Vec<String>,
    /// Newest event time in the frame (ms), for the lag.
    pub event_ms: Option<i64>,
}

impl Frame {
    /// A frame that carried nothing usable, counted under `kind`.
    pub fn skipped(kind: &'static str) -> Self {
        Frame {
            kind,
            ..Frame::default()
        }
    }
}

/// A websocket protocol: how to connect, subscribe, catch up and read frames.
pub trait Protocol: Send + 'static {
    /// The URL to connect to now (Jetstream puts its cursor in it).
    fn url(&mut self) -> String;

    /// Text frames to send right after connecting.
    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }

    /// Once connected, before reading: fetch what was missed while disconnected (Mastodon's
    /// REST backfill). `reconnect` is false on the first connection.
    fn catch_up(&mut self, _reconnect: bool) -> impl Future<Output = Vec<Mention>> + Send {
        async { Vec::new() }
    }

    /// Interpret one text frame.
    fn on_text(&mut self, text: &str) -> Frame;

    /// After a frame's mentions were queued (Jetstream persists its cursor here).
    fn delivered(&mut self, _frame: &Frame) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The generic format: one mention object or an array of them per text frame.
#[derive(Debug, Clone)]
pub struct Generic {
    /// `ws://` or `wss://` URL.
    pub url: String,
}

impl Protocol for Generic {
    fn url(&mut self) -> String {
        self.url.clone()
    }

    fn on_text(&mut self, text: &str) -> Frame {
        match parse_payload_str(text) {
            Ok((mentions, bad)) => Frame {
                kind: "mentions",
                event_ms: mentions.iter().map(|m| m.ts).max(),
                rejects: bad.iter().map(|(_, r)| r.as_str()).collect(),
                mentions,
                deleted: Vec::new(),
            },
            Err(reason) => Frame {
                kind: "malformed",
                rejects: vec![reason.as_str()],
                ..Frame::default()
            },
        }
    }
}

/// Run a feed until `cancel` fires.
pub async fn run<P: Protocol>(
    mut proto: P,
    token: Option<String>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    opts: WsOptions,
    cancel: CancellationToken,
) {
    let feed = ingest.feed.clone();
    let mut attempt = 0u32;
    let mut connected_before = false;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let url = proto.url();
        let req = match url.as_str().into_client_request() {
            Ok(mut r) => {
                if let Some(t) = &token {
                    if let Ok(v) = format!("Bearer {t}").parse() {
                        r.headers_mut().insert("authorization", v);
                    }
                }
                r
            }
            Err(e) => {
                tracing::error!(feed = %feed, error = %e, "Invalid feed URL; feed stopped.");
                return;
            }
        };
        let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_frame_size(Some(opts.max_frame_bytes))
            .max_message_size(Some(opts.max_frame_bytes));
        let conn = tokio::select! {
            _ = cancel.cancelled() => break,
            c = tokio_tungstenite::connect_async_with_config(req, Some(cfg), false) => c,
        };
        match conn {
            Ok((ws, _)) => {
                tracing::info!(feed = %feed, "Feed connected.");
                health.set_connected(true);
                attempt = 0;
                let (mut tx, mut rx) = ws.split();
                let mut ok = true;
                for s in proto.subscriptions() {
                    if tx.send(Message::Text(s.into())).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    let missed = tokio::select! {
                        _ = cancel.cancelled() => Vec::new(),
                        m = proto.catch_up(connected_before) => m,
                    };
                    connected_before = true;
                    for m in missed {
                        if !ingest.send(m).await {
                            health.set_connected(false);
                            return;
                        }
                    }
                }
                let mut ping = tokio::time::interval(opts.ping_every);
                ping.tick().await;
                let mut last_seen = tokio::time::Instant::now();
                // A failed subscription means a dead socket: straight to reconnecting.
                while ok && !cancel.is_cancelled() {
                    let dead_at = last_seen + opts.read_timeout;
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Message::Close(None))).await;
                            break;
                        }
                        _ = tokio::time::sleep_until(dead_at) => {
                            tracing::warn!(feed = %feed, "Feed read timeout; reconnecting.");
                            break;
                        }
                        _ = ping.tick() => {
                            if tx.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
                        }
                        msg = rx.next() => {
                            last_seen = tokio::time::Instant::now();
                            match msg {
                                Some(Ok(Message::Text(t))) => {
                                    let mut frame = proto.on_text(t.as_str());
                                    health.message(frame.kind, frame.event_ms);
                                    for r in &frame.rejects {
                                        ingest.rejected(r);
                                    }
                                    if !frame.deleted.is_empty() && !ingest.delete(&frame.deleted).await {
                                        health.set_connected(false);
                                        return;
                                    }
                                    for m in std::mem::take(&mut frame.mentions) {
                                        if !ingest.send(m).await {
                                            health.set_connected(false);
                                            return;
                                        }
                                    }
                                    proto.delivered(&frame).await;
                                }
                                Some(Ok(Message::Binary(_))) => {
                                    health.message("binary", None);
                                    ingest.rejected("binary_frame");
                                }
                                Some(Ok(Message::Close(_))) | None => break,
                                Some(Ok(_)) => {}
                                Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                                    health.message("oversize", None);
                                    ingest.rejected("oversize_frame");
                                    tracing::warn!(feed = %feed, error = %e, max = opts.max_frame_bytes, "Feed frame over max_frame_bytes; reconnecting.");
                                    break;
                                }
                                Some(Err(e)) => {
                                    tracing::warn!(feed = %feed, error = %e, "Feed read error; reconnecting.");
                                    break;
                                }
                            }
                        }
                    }
                }
                health.set_connected(false);
            }
            Err(e) => {
                tracing::warn!(feed = %feed, error = %e, attempt, "Feed connection failed.");
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        health.reconnected();
        let d = backoff(attempt, &opts);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(d) => {}
        }
    }
    health.set_connected(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let o = WsOptions::default();
        for attempt in 0..40 {
            let d = backoff(attempt, &o);
            assert!(d <= o.backoff_max, "{attempt}: {d:?}");
        }
        assert!(backoff(0, &o) <= o.backoff_min);
    }

    #[test]
    fn generic_frames_are_classified() {
        let mut g = Generic { url: String::new() };
        let f = g.on_text(r#"{"id":"1","ts":5,"text":"x"}"#);
        assert_eq!(
            (f.kind, f.mentions.len(), f.event_ms),
            ("mentions", 1, Some(5))
        );
        let f = g.on_text(r#"[{"id":"1","ts":5,"text":"x"},{"id":"2"}]"#);
        assert_eq!(
            (f.mentions.len(), f.rejects.as_slice()),
            (1, &["missing_field"][..])
        );
        let f = g.on_text("{oops");
        assert_eq!(
            (f.kind, f.rejects.as_slice()),
            ("malformed", &["invalid_json"][..])
        );
    }
}
