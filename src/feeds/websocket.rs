//! The generic websocket feed: connects, reads text frames (one mention object or an array),
//! keeps the connection alive with pings, declares it dead after a read timeout, and
//! reconnects forever with capped exponential backoff and full jitter.

use super::{parse_payload, Ingest};
use futures::{SinkExt, StreamExt};
use rand::Rng;
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
    /// Largest accepted frame.
    pub max_frame_bytes: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            ping_every: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
            max_frame_bytes: 8 << 20,
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

/// Run the feed until `cancel` fires.
pub async fn run(
    url: String,
    token: Option<String>,
    ingest: Ingest,
    opts: WsOptions,
    cancel: CancellationToken,
) {
    let feed = ingest.feed.clone();
    let m = crate::metrics::global();
    let mut attempt = 0u32;
    loop {
        if cancel.is_cancelled() {
            break;
        }
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
                m.feed_connected.with_label_values(&[&feed]).set(1);
                attempt = 0;
                let (mut tx, mut rx) = ws.split();
                let mut ping = tokio::time::interval(opts.ping_every);
                ping.tick().await;
                let mut last_seen = tokio::time::Instant::now();
                loop {
                    let dead_at = last_seen + opts.read_timeout;
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            let _ = tx.send(Message::Close(None)).await;
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
                                    if !deliver(&ingest, t.as_bytes()).await { return; }
                                }
                                Some(Ok(Message::Binary(_))) => ingest.rejected("binary_frame"),
                                Some(Ok(Message::Close(_))) | None => break,
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(feed = %feed, error = %e, "Feed read error; reconnecting.");
                                    break;
                                }
                            }
                        }
                    }
                }
                m.feed_connected.with_label_values(&[&feed]).set(0);
            }
            Err(e) => {
                tracing::warn!(feed = %feed, error = %e, attempt, "Feed connection failed.");
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        m.feed_reconnects.with_label_values(&[&feed]).inc();
        let d = backoff(attempt, &opts);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(d) => {}
        }
    }
    m.feed_connected.with_label_values(&[&feed]).set(0);
}

/// Parse a frame and queue its mentions; a bad frame is counted and skipped.
async fn deliver(ingest: &Ingest, bytes: &[u8]) -> bool {
    match parse_payload(bytes) {
        Ok((ok, bad)) => {
            for (i, reason) in bad {
                tracing::debug!(feed = %ingest.feed, index = i, reason = %reason, "Mention rejected.");
                ingest.rejected(reason.as_str());
            }
            for mention in ok {
                if !ingest.send(mention).await {
                    return false;
                }
            }
            true
        }
        Err(reason) => {
            tracing::debug!(feed = %ingest.feed, reason = %reason, "Frame rejected.");
            ingest.rejected(reason.as_str());
            true
        }
    }
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
}
