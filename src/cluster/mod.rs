//! Cluster: the single owner of detection state. Applies analysed mentions in input order on
//! event time, keeps spike windows per (category, region) and rumor clusters per cascade or
//! near-duplicate claim, and turns them into incidents with a lifecycle and a severity.

pub mod control;
pub mod coord;
pub mod engine;
pub mod incident;
pub mod rumor;

pub use control::Control;
pub use engine::{Engine, EngineStats};
pub use incident::{
    Event, EventKind, Incident, IncidentKind, IncidentState, Rebuttal, SpreadPost, SPREAD_TOP,
};
