//! Store: where incidents (with sample mentions) and the index of mentions per incident live.
//! The embedded default is a `redb` file; `memory` is for throwaway runs; [`redis`] shares
//! them between instances (opened by `app::open_store`, which needs the async runtime).
//!
//! Writes are behind: the store writer task batches events (the event stream is the source of
//! truth). A restart re-opens the incidents that were open.

pub mod embedded;
pub mod memory;
pub mod redis;
pub mod writer;

use crate::incidents::hours::HourStats;
use crate::incidents::Incident;
use crate::normalize::Mention;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;

/// A store failure (I/O, corruption, encoding); the operation may be retried.
#[derive(Debug, thiserror::Error)]
#[error("store {op}: {message}")]
pub struct StoreError {
    /// Which operation failed (a metric label).
    pub op: &'static str,
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(op: &'static str, e: impl std::fmt::Display) -> Self {
        crate::metrics::global()
            .store_errors
            .with_label_values(&[op])
            .inc();
        StoreError {
            op,
            message: e.to_string(),
        }
    }
}

/// An incident as stored: with its sample mentions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredIncident {
    /// The incident.
    pub incident: Incident,
    /// Its first few mentions.
    pub samples: Vec<Mention>,
}

impl StoredIncident {
    /// Wrap an incident, moving its samples alongside.
    pub fn from_incident(i: &Incident) -> Self {
        StoredIncident {
            incident: i.clone(),
            samples: i.samples.clone(),
        }
    }

    /// The incident with its samples put back.
    pub fn into_incident(self) -> Incident {
        let mut i = self.incident;
        i.samples = self.samples;
        i
    }
}

/// Persistence of incidents and their mention index. Implementations are thread-safe and
/// blocking; async callers use `spawn_blocking`.
pub trait Store: Send + Sync {
    /// Insert or replace incidents (open ones stay in the open index, closed ones leave it).
    fn put_incidents(&self, incidents: &[Arc<Incident>]) -> Result<(), StoreError>;
    /// Record that mentions joined incidents: `(incident_id, mention_id)`.
    fn put_assignments(&self, pairs: &[(Arc<str>, String)]) -> Result<(), StoreError>;
    /// One incident with its samples.
    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Every incident still open.
    fn open_incidents(&self) -> Result<Vec<Incident>, StoreError>;
    /// Mention ids of an incident, in id order, at most `limit`.
    fn incident_mentions(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// A feed's resume cursor (Jetstream's `time_us`), if stored.
    fn get_cursor(&self, feed: &str) -> Result<Option<i64>, StoreError>;
    /// Store a feed's resume cursor.
    fn put_cursor(&self, feed: &str, cursor: i64) -> Result<(), StoreError>;
    /// A feed's opaque resume state besides the cursor (Jetstream: the events delivered just
    /// before it, so a rewound resume does not deliver them twice), if stored.
    fn get_feed_state(&self, _feed: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    /// Store a feed's resume state. Stores that do not keep it lose nothing but exactness: the
    /// feed then may deliver a few seconds of events again after a restart.
    fn put_feed_state(&self, _feed: &str, _state: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every incident (open or closed, still kept) that opened in `[from, to)` (ms), by opening
    /// time.
    fn incidents_between(&self, from: i64, to: i64) -> Result<Vec<Incident>, StoreError>;
    /// Add an hour's figures (to what is stored for that hour: a restart mid-hour, and every
    /// instance of a fleet, each add theirs).
    fn add_hour(&self, hour: &HourStats) -> Result<(), StoreError>;
    /// The stored hours in `[from, to)` (ms), in order, each summed over what was added.
    fn hours(&self, from: i64, to: i64) -> Result<Vec<HourStats>, StoreError>;
    /// Make everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Short name for logs and `/healthz` (`embedded`, `memory`).
    fn kind(&self) -> &'static str;
}

/// Open the store named by a config value: `memory`, or a path to a redb file.
pub fn open(spec: &str) -> Result<Arc<dyn Store>, StoreError> {
    if spec == "memory" {
        return Ok(Arc::new(MemoryStore::default()));
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        return Err(StoreError::new(
            "open",
            "a Redis store is opened with app::open_store (it connects asynchronously)",
        ));
    }
    let path = spec.strip_prefix("redb://").unwrap_or(spec);
    Ok(Arc::new(EmbeddedStore::open(std::path::Path::new(path))?))
}
