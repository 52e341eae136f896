//! The stage contract: every stage of the service (the store writer, the fleet bridge, respond,
//! the feeds, the rules watcher, the API) starts the same way, from one [`Context`], and hands
//! back a [`Handle`]. The service (`app::service`) is the list of those starts.
//!
//! A stage takes from the context what it needs: a subscription to the event bus, the store,
//! the rules, the live view, the ingest queue (to feed the engine), the shared Redis, and the
//! cancellation token every task `select!`s on; it may hook into the engine before it starts
//! (the fleet's coordinator) and contribute HTTP routes, each declared with the access it needs
//! (`api::routes::Routes`). Its tasks end on cancel, or, for bus subscribers that must see every
//! event, when the bus closes after the engine has drained.

use crate::bus::Bus;
use crate::detect::reload::SharedRules;
use crate::detect::Analyzer;
use crate::incidents::Engine;
use crate::ingest::Item;
use crate::live::Live;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What every stage starts from.
pub struct Context {
    /// Subscribe here for the engine's events.
    pub bus: Bus,
    /// The engine before it starts (stages may attach to it).
    pub engine: Engine,
    /// The store (incidents, mention index, feed cursors).
    pub store: Arc<dyn Store>,
    /// The live rules.
    pub rules: SharedRules,
    /// Where the rules live (reloads, the respond stage's matrix and templates).
    pub rules_dir: PathBuf,
    /// The analyser the rules are compiled with (reloads).
    pub analyzer: Arc<Analyzer>,
    /// Open incidents and the event stream.
    pub live: Live,
    /// The engine's input queue (mentions, ticks, operator changes, fleet counts).
    pub ingest: tokio::sync::mpsc::Sender<Item>,
    /// The Redis shared by the instances of a fleet (`store = "redis://…"`).
    pub redis: Option<crate::store::redis::Redis>,
    /// Feed health, shared by the feeds and the API.
    pub feeds: Arc<crate::feeds::health::FeedRegistry>,
    /// The hash-chained audit log every stage appends its actions to (kept by the respond
    /// stage, on a file or the fleet's Redis; `None` while it is off).
    pub audit: Option<crate::respond::audit::SharedAudit>,
    /// The HTTP routes of the stages, each declared with its access; the API stage serves them.
    pub routes: crate::api::routes::Routes,
    /// Fires on shutdown.
    pub cancel: CancellationToken,
}

/// A started stage: its tasks, awaited when the service stops.
#[derive(Default)]
pub struct Handle {
    /// The stage's name (logs).
    pub name: &'static str,
    /// Its tasks.
    pub tasks: Vec<JoinHandle<()>>,
}

impl Handle {
    /// A handle for `name` with `tasks`.
    pub fn new(name: &'static str, tasks: Vec<JoinHandle<()>>) -> Handle {
        Handle { name, tasks }
    }

    /// Wait for every task of the stage.
    pub async fn join(self) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(stage = self.name, error = %e, "A stage task failed.");
            }
        }
    }
}
