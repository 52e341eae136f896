//! The fleet stage (`store = "redis://…"`: several instances as one): the engine's coordinator
//! (incident ids claimed in Redis, emergency windows merged there) with its sync task, this
//! instance's incident events published to the others, and theirs shown here.

use crate::bus::{Delivery, Interest};
use crate::stage::{Context, Handle};
use std::time::Duration;

/// Start the fleet's tasks; a stage without tasks when there is no shared Redis. Returns once
/// subscribed to the other instances' events (or after 5 s with Redis down: the subscriber
/// keeps retrying).
pub async fn start(cx: &mut Context) -> Handle {
    let Some(r) = cx.redis.clone() else {
        return Handle::new("fleet", Vec::new());
    };
    let (coord, sync) = super::RedisCoordinator::new(r.clone(), tokio::runtime::Handle::current());
    let engine = std::mem::take(&mut cx.engine);
    cx.engine = engine.with_coordinator(Box::new(coord));
    tracing::info!(namespace = %r.namespace(), instance = %r.instance(), "Sharing incidents through Redis.");
    let mut tasks = vec![tokio::spawn(sync.run(cx.ingest.clone(), cx.cancel.clone()))];
    // Live-only: the other instances read the shared store after a gap.
    let events = cx
        .bus
        .subscribe("fleet", 4096, Delivery::DropWhenFull, Interest::Incidents);
    tasks.push(tokio::spawn(super::events::publish(r.clone(), events)));
    let sinks = super::events::Sinks {
        live: cx.live.clone(),
        store: cx.store.clone(),
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tasks.push(tokio::spawn(super::events::subscribe(
        r,
        sinks,
        ready_tx,
        cx.cancel.clone(),
    )));
    if tokio::time::timeout(Duration::from_secs(5), ready_rx)
        .await
        .is_err()
    {
        tracing::warn!("Not subscribed to the other instances' events yet; going on.");
    }
    Handle::new("fleet", tasks)
}
