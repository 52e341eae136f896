//! Wiring: the command line ([`cli`]), the one-shot commands ([`commands`]), `replay`
//! ([`replay`]), `eval` ([`eval`]: detection measured on labelled files), `train` (`train.rs`:
//! the rumor model from labelled cascades) and the service ([`service`]: `run`, `demo`, and
//! what the tests start).

mod cases;
mod cli;
mod commands;
pub mod eval;
pub mod replay;
mod report;
pub mod service;
mod train;

pub use cli::main;
pub use replay::{replay, replay_events, replay_into, Emit, EventSink, ReplayStore, ReplaySummary};
pub use service::{open_store, start, Service, ServiceOptions};

use std::path::PathBuf;

/// The rules directory to use when none is given: `./rules`, else the one in the source tree.
pub fn default_rules_dir() -> PathBuf {
    let here = PathBuf::from("rules");
    if here.join("categories.toml").is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}
