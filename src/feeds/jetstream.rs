//! Bluesky Jetstream (`wss://HOST/subscribe`): not built yet.

use super::health::FeedHealth;
use super::Ingest;
use crate::config::FeedConfig;
use crate::store::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Run a Jetstream feed until `cancel` fires.
pub async fn run(
    cfg: FeedConfig,
    store: Arc<dyn Store>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let _ = (cfg, store, ingest, health, cancel);
    tracing::error!("The Jetstream feed is not built yet.");
}
