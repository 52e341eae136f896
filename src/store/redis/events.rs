//! Live events across instances: every instance publishes its incident events on the Redis
//! channel `{ns}:events` and shows the others' on its own `/api/stream` and live view
//! (`GET /api/incidents`).
//!
//! A message is `{instance}\n{event JSON line}`: an instance skips its own. An incident opened
//! on several instances (the same id, see `shared`) is announced once per stream (the live
//! view remembers which ids it announced as opened and closed, whoever reported them first). Pub/sub delivers at most once: after a reconnect the live view is
//! refreshed from the shared store's open incidents, so nothing stays missing from
//! `/api/incidents`.

use super::{metrics, round_trip, Redis};
use crate::incidents::{Event, EventKind, Incident};
use crate::live::Live;
use crate::store::Store;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The channel name.
pub fn channel(redis: &Redis) -> String {
    redis.key("events")
}

/// Publish this instance's incident events (one pipeline per batch) until `rx` closes.
pub async fn publish(redis: Redis, mut rx: tokio::sync::mpsc::Receiver<Arc<Event>>) {
    let ch = channel(&redis);
    let mut buf = Vec::new();
    while rx.recv_many(&mut buf, 256).await > 0 {
        let mut pipe = redis::pipe();
        for e in buf.drain(..) {
            let msg = format!("{}\n{}", redis.instance(), e.to_json());
            pipe.cmd("PUBLISH").arg(&ch).arg(msg).ignore();
        }
        let mut conn = redis.conn();
        let r = pipe.query_async::<()>(&mut conn).await;
        round_trip("events");
        if let Err(e) = redis.track(r) {
            // Pub/sub is live-only: the other instances read the store after reconnecting.
            metrics().errors.with_label_values(&["events"]).inc();
            tracing::debug!(error = %e, "Publishing incident events failed.");
        }
    }
}

#[derive(serde::Deserialize)]
struct Remote {
    event: String,
    at: i64,
    incident: Incident,
}

/// Where remote events go on this instance.
pub struct Sinks {
    /// The live view and its stream.
    pub live: Live,
    /// The shared store (to refresh the live view after a reconnect).
    pub store: Arc<dyn Store>,
}

/// Show one message from the channel; false when it is not a valid event.
pub fn show(sinks: &Sinks, own: &str, payload: &[u8]) -> bool {
    let Some((from, line)) = std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.split_once('\n'))
    else {
        return false;
    };
    if from == own {
        return true;
    }
    let Ok(r) = serde_json::from_str::<Remote>(line) else {
        return false;
    };
    let kind = match r.event.as_str() {
        "incident.opened" => EventKind::Opened,
        "incident.updated" => EventKind::Updated,
        "incident.closed" => EventKind::Closed,
        _ => return false,
    };
    let m = metrics();
    let e = Event::Incident {
        kind,
        at: r.at,
        incident: Arc::new(r.incident),
    };
    if sinks.live.apply_remote(&e, line) {
        m.remote_events.with_label_values(&["shown"]).inc();
    } else {
        m.remote_events.with_label_values(&["duplicate"]).inc();
    }
    true
}

/// Subscribe to the channel and show the other instances' events until cancelled;
/// reconnects with a capped backoff. `ready` fires once the first subscription holds.
pub async fn subscribe(
    redis: Redis,
    sinks: Sinks,
    ready: tokio::sync::oneshot::Sender<()>,
    cancel: CancellationToken,
) {
    let mut ready = Some(ready);
    let ch = channel(&redis);
    let mut backoff = Duration::from_millis(100);
    loop {
        let sub = async {
            let mut ps = redis.client().get_async_pubsub().await?;
            ps.subscribe(&ch).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sub => r,
        };
        let mut ps = match redis.track(ps) {
            Ok(ps) => ps,
            Err(e) => {
                metrics().errors.with_label_values(&["events"]).inc();
                tracing::debug!(error = %e, "Cannot subscribe to incident events; retrying.");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        refresh_live(&sinks).await;
        let mut msgs = ps.on_message();
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                m = msgs.next() => m,
            };
            let Some(msg) = msg else {
                tracing::warn!("The incident event subscription ended; reconnecting.");
                break;
            };
            if !show(&sinks, redis.instance(), msg.get_payload_bytes()) {
                metrics()
                    .remote_events
                    .with_label_values(&["invalid"])
                    .inc();
                tracing::warn!(channel = %ch, "Ignored a message that is not an incident event.");
            }
        }
    }
}

/// Put the shared store's open incidents into the live view (missed while unsubscribed).
async fn refresh_live(sinks: &Sinks) {
    let store = sinks.store.clone();
    match tokio::task::spawn_blocking(move || store.open_incidents()).await {
        Ok(Ok(open)) => sinks.live.add_missing(open),
        Ok(Err(e)) => tracing::warn!(error = %e, "Cannot read open incidents from the store."),
        Err(e) => tracing::warn!(error = %e, "Reading open incidents failed."),
    }
}
