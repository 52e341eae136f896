//! Mastodon streaming (`wss://HOST/api/v1/streaming`): not built yet.

use super::health::FeedHealth;
use super::Ingest;
use crate::config::FeedConfig;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Run a Mastodon feed until `cancel` fires.
pub async fn run(
    cfg: FeedConfig,
    token: Option<String>,
    ingest: Ingest,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let _ = (cfg, token, ingest, health, cancel);
    tracing::error!("The Mastodon feed is not built yet.");
}
