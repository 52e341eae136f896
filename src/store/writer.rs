//! The store writer: subscribes to engine events, batches them (up to 100 ms or 1,000 events)
//! and writes each batch in one transaction. On shutdown it drains what is left: it reads the
//! bus to its end, so every event the engine emitted is written.

use super::Store;
use crate::incidents::Event;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The stage: every event, waited for (the store must see them all).
pub fn start(cx: &mut crate::stage::Context) -> crate::stage::Handle {
    use crate::bus::{Delivery, Interest};
    let rx = cx.bus.subscribe(
        "store",
        65_536,
        Delivery::Wait,
        Interest::IncidentsAndAssignments,
    );
    let store = cx.store.clone();
    let task = tokio::spawn(async move {
        let failed = run(store, rx).await;
        if failed > 0 {
            tracing::warn!(failed, "Some store batches failed to write.");
        }
    });
    crate::stage::Handle::new("store", vec![task])
}

/// Write events to `store` until `rx` closes; returns how many batches failed.
pub async fn run(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::Receiver<Arc<Event>>) -> u64 {
    let mut failed = 0;
    let mut buf: Vec<Arc<Event>> = Vec::new();
    loop {
        let n = rx.recv_many(&mut buf, 1_000).await;
        if n == 0 {
            break;
        }
        // Let a burst accumulate briefly so one transaction carries it.
        let deadline = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(deadline);
        while buf.len() < 1_000 {
            tokio::select! {
                _ = &mut deadline => break,
                more = rx.recv_many(&mut buf, 1_000) => if more == 0 { break },
            }
        }
        let batch = std::mem::take(&mut buf);
        let store = store.clone();
        let ok = tokio::task::spawn_blocking(move || write_batch(&*store, &batch))
            .await
            .unwrap_or(false);
        if !ok {
            failed += 1;
        }
    }
    let _ = store.flush();
    failed
}

/// Write one batch; the latest version of each incident wins.
pub fn write_batch(store: &dyn Store, batch: &[Arc<Event>]) -> bool {
    let mut incidents = BTreeMap::new();
    let mut pairs = Vec::new();
    let mut ok = true;
    for e in batch {
        match &**e {
            Event::Incident { incident, .. } => {
                incidents.insert(incident.id.clone(), incident.clone());
            }
            Event::Assigned {
                mention_id,
                incident_id,
                ..
            } => pairs.push((incident_id.clone(), mention_id.clone())),
            // An hour's figures reach this writer in a replay with `--store` (in the service,
            // the opinion stage keeps them).
            Event::Hour(h) => {
                if let Err(e) = store.add_hour(h) {
                    tracing::error!(error = %e, "Writing an hour's figures failed.");
                    ok = false;
                }
            }
            // Other stages' events (requests) are theirs to keep.
            _ => {}
        }
    }
    let incidents: Vec<_> = incidents.into_values().collect();
    if !incidents.is_empty() {
        if let Err(e) = store.put_incidents(&incidents) {
            tracing::error!(error = %e, "Writing incidents failed.");
            ok = false;
        }
    }
    if !pairs.is_empty() {
        if let Err(e) = store.put_assignments(&pairs) {
            tracing::error!(error = %e, "Writing the mention index failed.");
            ok = false;
        }
    }
    ok
}
